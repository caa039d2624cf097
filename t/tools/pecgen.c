/*
 * pecgen - writes one message of every kind the provider emits, for the
 * tests to check from outside (t/test_generated.py).
 *
 * usage: pecgen [-p PKI_DIR] OUTDIR
 *
 * Everything is reproducible: the clock is fixed at 2024-03-15T10:20:30Z
 * (Europe/Rome), identifiers are deterministic, and the signatures are
 * deterministic for a given test PKI (PKI_DIR, default $PEC_PKI_DIR).  One
 * transaction is told through all its messages: mario.rossi@pec-a.test, a
 * user of provider A, writes to a PEC user of provider B (To), another one
 * (Cc) and an ordinary mailbox.  Provider A (certificate a) signs what the
 * sender's side emits, provider B (certificate b) what the recipients' side
 * emits.
 *
 * OUTDIR gets one file per kind and manifest.txt, one line per file:
 * "<file> <kind> <x-ricevuta or x-trasporto> <daticert tipo> <errore>"
 * ("-" for what the anomaly, which has no daticert.xml, lacks).  The buste
 * are written as the MTA delivers them (pec_built_full): the original's
 * inherited fields first.  The notices about the message carry the busta's
 * own postacert.eml.
 */
#include "message/busta.h"
#include "message/daticert.h"
#include "message/notice.h"
#include "message/original.h"
#include "message/pecmsg.h"
#include "util/spool.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXED_TIME "2024-03-15T10:20:30Z"
#define SENDER "mario.rossi@pec-a.test"
#define CLIENT_MSGID "<20240315101500.4242@client.pec-a.test>"

struct provider {
    const char *dir;     /* under the PKI */
    const char *name;    /* providerName */
    const char *domain;  /* mail domain of the certificate */
    const char *receipt; /* mailReceipt */
    struct pec_signer *signer;
    struct pec_ident ident;
    struct pec_issuer iss;
};

static struct pec_clock clock_;
static struct provider prov_a = {.dir = "a",
                                 .name = "Gestore A S.p.A.",
                                 .domain = "pec-a.test",
                                 .receipt = "ricevute@pec-a.test"};
static struct provider prov_b = {.dir = "b",
                                 .name = "Gestore B S.p.A.",
                                 .domain = "pec-b.test",
                                 .receipt = "ricevute@pec-b.test"};
static const char *outdir;
static FILE *manifest;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "pecgen: %s: %s\n", what, why);
    exit(1);
}

static void provider_load(struct provider *p, const char *pki)
{
    char err[512], cert[4096], chain[4096], key[4096];

    snprintf(cert, sizeof(cert), "%s/%s/cert.pem", pki, p->dir);
    snprintf(chain, sizeof(chain), "%s/%s/chain.pem", pki, p->dir);
    snprintf(key, sizeof(key), "%s/%s/key.pem", pki, p->dir);
    if ((p->signer = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err))) == NULL)
        die(cert, err);
    if (pec_ident_init(&p->ident, p->dir[0] == 'a' ? 1 : 2, p->domain, &clock_, err, sizeof(err)) !=
        0)
        die(p->domain, err);
    p->iss = (struct pec_issuer){
        .provider_name = p->name,
        .service_address = pec_signer_address(p->signer),
        .signer = p->signer,
        .clock = &clock_,
        .ident = &p->ident,
        .spool_dir = NULL,
        .spool_mem_limit = 1 << 20,
    };
}

/* ---- the transaction ---- */

static struct pec_destinatario dests[] = {
    {"luigi.bianchi@pec-b.test", PEC_DEST_CERTIFICATO},
    {"carla.neri@example.com", PEC_DEST_ESTERNO},
    {"anna.verdi@pec-b.test", PEC_DEST_CERTIFICATO},
};
static const int dests_cc[] = {0, 0, 1};
static char *ricezioni[] = {"luigi.bianchi@pec-b.test", "anna.verdi@pec-b.test"};

/* The submission: two attachments (one named the RFC 2231 way) and a forwarded message. */
static const char submission[] =
    "Return-Path: <" SENDER ">\r\n"
    "Received: from [192.0.2.10] (client.pec-a.test [192.0.2.10])\r\n"
    "\tby smtp.pec-a.test (Postfix) with ESMTPSA id 4TwXYZ1234;\r\n"
    "\tFri, 15 Mar 2024 11:20:29 +0100 (CET)\r\n"
    "From: Mario Rossi <" SENDER ">\r\n"
    "To: luigi.bianchi@pec-b.test, carla.neri@example.com\r\n"
    "Cc: anna.verdi@pec-b.test\r\n"
    "Subject: =?UTF-8?Q?Fattura_n=2E_42_=C3=A8_pronta?=\r\n"
    "Date: Fri, 15 Mar 2024 11:15:00 +0100\r\n"
    "Message-ID: " CLIENT_MSGID "\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"=_orig_1\"\r\n"
    "\r\n"
    "This is a multi-part message in MIME format.\r\n"
    "--=_orig_1\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Buongiorno,\r\n"
    "in allegato la fattura n. 42 e la ricevuta; inoltro anche il messaggio=\r\n"
    " di conferma. Cos=C3=AC =C3=A8 tutto pronto.\r\n"
    "\r\n"
    "Mario\r\n"
    "--=_orig_1\r\n"
    "Content-Type: application/pdf; name=\"fattura-42.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"fattura-42.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nL1BhZ2VzIDIgMCBSPj4K\r\n"
    "ZW5kb2JqCjIgMCBvYmoKPDwvVHlwZS9QYWdlcy9LaWRzW10vQ291bnQgMD4+CmVuZG9iagp0cmFp\r\n"
    "bGVyCjw8L1Jvb3QgMSAwIFI+PgolJUVPRgo=\r\n"
    "--=_orig_1\r\n"
    "Content-Type: text/csv; charset=UTF-8\r\n"
    "Content-Disposition: attachment;\r\n"
    " filename*=UTF-8''ricevuta%20pi%C3%B9%20rapida.csv\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "numero;importo;valuta\r\n"
    "42;1250,00;EUR\r\n"
    "--=_orig_1\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Disposition: attachment; filename=\"conferma.eml\"\r\n"
    "\r\n"
    "From: ufficio.acquisti@example.com\r\n"
    "To: " SENDER "\r\n"
    "Subject: Conferma ordine\r\n"
    "Date: Thu, 14 Mar 2024 09:00:00 +0100\r\n"
    "Message-ID: <conferma-42@example.com>\r\n"
    "\r\n"
    "Ordine 42 confermato.\r\n"
    "--=_orig_1--\r\n";

/* Ordinary mail reaching a PEC mailbox of B: what a busta di anomalia wraps. */
static const char ordinary[] = "Return-Path: <offerte@example.com>\r\n"
                               "Received: from mx.example.com (mx.example.com [198.51.100.7])\r\n"
                               "\tby mx.pec-b.test (Postfix) with ESMTPS id 4TwABC9876;\r\n"
                               "\tFri, 15 Mar 2024 11:20:30 +0100 (CET)\r\n"
                               "From: Offerte <offerte@example.com>\r\n"
                               "To: luigi.bianchi@pec-b.test\r\n"
                               "Subject: Offerta speciale\r\n"
                               "Date: Fri, 15 Mar 2024 11:20:00 +0100\r\n"
                               "Message-ID: <offerta-1@example.com>\r\n"
                               "\r\n"
                               "Una mail ordinaria, senza firma.\r\n";

static const char *const rcpts[] = {"luigi.bianchi@pec-b.test", "carla.neri@example.com",
                                    "anna.verdi@pec-b.test"};

static struct pec_daticert facts_of(const struct pec_original *o, const char *identificativo)
{
    struct pec_daticert d = {0};

    d.mittente = (char *)pec_original_mittente(o);
    d.destinatari = dests;
    d.n_destinatari = sizeof(dests) / sizeof(dests[0]);
    d.risposte = (char *)pec_original_mittente(o);
    d.oggetto = o->subject;
    d.identificativo = (char *)identificativo;
    d.msgid = o->message_id;
    return d;
}

/* ---- output ---- */

static void write_built(const char *file, const struct pec_built *b)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", outdir, file);
    if ((f = fopen(path, "wb")) == NULL)
        die(path, strerror(errno));
    if (pec_built_write(b, f) != 0)
        die(path, strerror(errno));
    if (fclose(f) != 0)
        die(path, strerror(errno));
}

static int put_file(const unsigned char *chunk, size_t n, void *f)
{
    return fwrite(chunk, 1, n, f) == n ? 0 : -1;
}

static void write_spool(const char *file, const struct pec_spool *sp)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", outdir, file);
    if ((f = fopen(path, "wb")) == NULL)
        die(path, strerror(errno));
    if (pec_spool_each(sp, 0, pec_spool_size(sp), put_file, f) != 0)
        die(path, strerror(errno));
    if (fclose(f) != 0)
        die(path, strerror(errno));
}

static void list(const char *file, const char *kind, const char *header, const char *tipo,
                 const char *errore)
{
    if (fprintf(manifest, "%s %s %s %s %s\n", file, kind, header, tipo, errore) < 0)
        die("manifest.txt", strerror(errno));
}

/* B as the MTA delivers it: the fields of RAW that KEEPS inherits, then B */
static void write_envelope(const char *file, const struct pec_built *b, const struct pec_spool *raw,
                           int (*keeps)(const char *))
{
    struct pec_spool *full = pec_spool_new(NULL, 1 << 20);
    char err[512];

    if (full == NULL)
        die(file, strerror(errno));
    if (pec_built_full(b, raw, keeps, full, err, sizeof(err)) != 0)
        die(file, err);
    write_spool(file, full);
    pec_spool_free(full);
}

/* The busta di trasporto of O, and its postacert.eml for the notices. */
static struct pec_spool *busta(const struct pec_original *o, const char *id)
{
    struct pec_spool *pc = pec_spool_new(NULL, 1 << 20);
    struct pec_built b;
    char err[512];

    if (pec_build_busta(&prov_a.iss, o, dests, sizeof(dests) / sizeof(dests[0]), id,
                        pec_clock_now(&clock_), &b, err, sizeof(err)) != 0)
        die("busta", err);
    write_envelope("busta.eml", &b, o->raw, pec_busta_keeps);
    pec_built_free(&b);
    list("busta.eml", "busta", "posta-certificata", pec_tipo_name(PEC_TIPO_POSTA_CERTIFICATA),
         pec_errore_name(PEC_ERRORE_NESSUNO));
    if (pc == NULL || pec_postacert_write(o, id, pc) != 0)
        die("postacert.eml", strerror(errno));
    return pc;
}

static void anomalia(void)
{
    struct pec_spool *received = pec_spool_new(NULL, 1 << 20);
    struct pec_built b;
    char err[512];

    if (received == NULL || pec_spool_puts(received, ordinary) != 0)
        die("anomalia", strerror(errno));
    if (pec_build_anomalia(&prov_b.iss, received,
                           "il messaggio non \xc3\xa8 firmato da un gestore di posta certificata",
                           pec_clock_now(&clock_), &b, err, sizeof(err)) != 0)
        die("anomalia", err);
    write_envelope("anomalia.eml", &b, received, pec_anomalia_keeps);
    pec_built_free(&b);
    pec_spool_free(received);
    list("anomalia.eml", "anomalia", "errore", "-", "-");
}

static const struct pec_original *original;

static void notice(const struct provider *p, enum pec_notice_kind kind, struct pec_daticert facts,
                   const char *to, const char *virus, const struct pec_spool *orig)
{
    struct pec_notice n = {
        .kind = kind,
        .facts = &facts,
        .to = to,
        .subject_raw = original->subject_raw,
        .is_cc = dests_cc,
        .postacert = orig,
        .virus = virus,
    };
    struct pec_built b;
    char err[512], file[128];
    const char *name = pec_notice_kind_name(kind);

    if (pec_build_notice(&p->iss, &n, &b, err, sizeof(err)) != 0)
        die(name, err);
    snprintf(file, sizeof(file), "%s.eml", name);
    write_built(file, &b);
    pec_built_free(&b);
    list(file, name, pec_notice_x_ricevuta(kind), pec_tipo_name(pec_notice_tipo(kind)),
         pec_errore_name(pec_notice_errore(kind, facts.errore)));
}

/* what the sender's provider (A) emits */
static void sender_side(const char *id)
{
    struct pec_daticert f = facts_of(original, id);
    char *esteso;

    notice(&prov_a, PEC_NOTICE_ACCETTAZIONE, f, SENDER, NULL, NULL);

    esteso = pec_errore_esteso("5.7.1", prov_a.name, "il campo Bcc non \xc3\xa8 ammesso");
    f.errore = PEC_ERRORE_ALTRO;
    f.errore_esteso = esteso;
    notice(&prov_a, PEC_NOTICE_NON_ACCETTAZIONE, f, SENDER, NULL, NULL);
    free(esteso);

    f = facts_of(original, id);
    notice(&prov_a, PEC_NOTICE_NON_ACCETTAZIONE_VIRUS, f, SENDER, "Eicar-Signature", NULL);

    f.consegna = "luigi.bianchi@pec-b.test";
    notice(&prov_a, PEC_NOTICE_MANCATA_CONSEGNA_VIRUS, f, SENDER, "Eicar-Signature", NULL);
    f.consegna = "anna.verdi@pec-b.test";
    notice(&prov_a, PEC_NOTICE_PREAVVISO_12H, f, SENDER, NULL, NULL);
    notice(&prov_a, PEC_NOTICE_PREAVVISO_24H, f, SENDER, NULL, NULL);
}

/* what the recipients' provider (B) emits */
static void recipient_side(const char *id, const struct pec_spool *orig)
{
    struct pec_daticert f = facts_of(original, id);
    char *esteso;

    f.ricezione = ricezioni;
    f.n_ricezione = sizeof(ricezioni) / sizeof(ricezioni[0]);
    notice(&prov_b, PEC_NOTICE_PRESA_IN_CARICO, f, prov_a.receipt, NULL, NULL);

    f = facts_of(original, id);
    f.consegna = "luigi.bianchi@pec-b.test";
    notice(&prov_b, PEC_NOTICE_CONSEGNA_COMPLETA, f, SENDER, NULL, orig);
    notice(&prov_b, PEC_NOTICE_CONSEGNA_BREVE, f, SENDER, NULL, orig);
    f.consegna = "anna.verdi@pec-b.test";
    notice(&prov_b, PEC_NOTICE_CONSEGNA_SINTETICA, f, SENDER, NULL, NULL);

    esteso = pec_errore_esteso("5.1.1", prov_b.name, "casella inesistente");
    f.errore = PEC_ERRORE_NO_DEST;
    f.errore_esteso = esteso;
    notice(&prov_b, PEC_NOTICE_MANCATA_CONSEGNA, f, SENDER, NULL, NULL);
    free(esteso);

    f = facts_of(original, id);
    f.consegna = "luigi.bianchi@pec-b.test";
    notice(&prov_b, PEC_NOTICE_RILEVAZIONE_VIRUS, f, prov_a.receipt, "Eicar-Signature", NULL);
}

int main(int argc, char **argv)
{
    const char *pki = getenv("PEC_PKI_DIR");
    char err[512], path[4096], *id;
    struct pec_original o;
    struct pec_spool *pc;
    int opt;

    while ((opt = getopt(argc, argv, "p:")) != -1) {
        if (opt != 'p') {
            fprintf(stderr, "usage: pecgen [-p PKI_DIR] OUTDIR\n");
            return 2;
        }
        pki = optarg;
    }
    if (optind + 1 != argc || pki == NULL || *pki == '\0') {
        fprintf(stderr, "usage: pecgen [-p PKI_DIR] OUTDIR (or PEC_PKI_DIR in the environment)\n");
        return 2;
    }
    outdir = argv[optind];
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST)
        die(outdir, strerror(errno));
    if (pec_clock_init(&clock_, "Europe/Rome", FIXED_TIME, err, sizeof(err)) != 0)
        die("clock", err);
    pec_ident_set_deterministic(1);
    provider_load(&prov_a, pki);
    provider_load(&prov_b, pki);
    snprintf(path, sizeof(path), "%s/manifest.txt", outdir);
    if ((manifest = fopen(path, "w")) == NULL)
        die(path, strerror(errno));

    if (pec_original_from_mem(&o, submission, strlen(submission), NULL, 1 << 20, SENDER, rcpts,
                              sizeof(rcpts) / sizeof(rcpts[0]), err, sizeof(err)) != 0)
        die("the submission", err);
    original = &o;
    id = pec_ident_new(&prov_a.ident);
    pc = busta(&o, id);
    sender_side(id);
    recipient_side(id, pc);
    anomalia();

    if (fclose(manifest) != 0)
        die(path, strerror(errno));
    pec_spool_free(pc);
    pec_original_free(&o);
    free(id);
    pec_signer_free(prov_a.signer);
    pec_signer_free(prov_b.signer);
    return 0;
}
