/*
 * test_access - the access point's decisions, without an MTA.
 *
 * MAIL FROM: authentication, our domains, login against sender and the
 * sender_logins setting.  The formal checks, each failing alone on a
 * crafted message, with the SMTP reply and errore-esteso words that name it.
 * Classification: envelope recipients, To before Cc, certificato/esterno by
 * the test index, ours by the configuration.  An accepted message: the busta
 * (no client PEC header among its top-level fields, X-TipoRicevuta
 * honoured), and one batch committed to a real store holding the
 * transaction, three log records, the accettazione to the sender and the
 * presa in carico to our receipt_address for the recipients that are ours,
 * whose state is then "taken".  A refused message: the avviso di non
 * accettazione with the error in its text and errore-esteso, and its record.
 * The same submission again (same sender, client Message-ID and recipients,
 * as a client retries after a crash): the same busta, and nothing new in the
 * store; anything else that differs: a new transaction.
 */
#include "provider/access.h"
#include "message/busta.h"
#include "msgcheck.h"
#include "message/original.h"
#include "store/store.h"

#include <stdarg.h>

static struct testenv env;
static char dir[] = "/tmp/test_access.XXXXXX";

static struct pec_config *config_with(const char *extra)
{
    char *path = xasprintf("%s/pecmilter.conf", dir);
    FILE *f = fopen(path, "w");
    char err[1024];
    struct pec_config *cfg;

    CHECK(f != NULL);
    fprintf(f,
            "provider_name = \"Gestore A S.p.A.\";\n"
            "domains = [ \"pec-a.test\", \"pec-a2.test\" ];\n"
            "service_address = \"posta-certificata@pec-a.test\";\n"
            "receipt_address = \"ricevute@pec-a.test\";\n"
            "sign_cert = \"x\"; sign_key = \"x\"; trust_anchors = \"x\"; index_file = \"x\";\n"
            "%s\n",
            extra);
    fclose(f);
    cfg = pec_config_load(path, err, sizeof(err));
    if (cfg == NULL)
        fprintf(stderr, "config: %s\n", err);
    free(path);
    return cfg;
}

/* ---------------------------------------------------------------- MAIL FROM */

static void test_sender(void)
{
    struct pec_config *cfg = config_with(
        "sender_logins = ( { login = \"mario\"; senders = [ \"Mario.Rossi@pec-a.test\", "
        "\"ufficio@pec-a2.test\" ]; } );");
    struct pec_access_reply r;

    if (cfg == NULL) {
        CHECK(0);
        return;
    }
    CHECK(pec_access_sender(cfg, NULL, "<mario@pec-a.test>", &r) < 0);
    CHECK(r.fault == PEC_ACCESS_NOT_AUTHENTICATED);
    CHECK_STR(r.rcode, "530");
    CHECK_STR(r.xcode, "5.7.0");
    CHECK(pec_access_sender(cfg, "", "<mario@pec-a.test>", &r) < 0);
    CHECK(r.fault == PEC_ACCESS_NOT_AUTHENTICATED);

    CHECK(pec_access_sender(cfg, "mario", "<>", &r) < 0);
    CHECK(r.fault == PEC_ACCESS_NULL_SENDER);

    CHECK(pec_access_sender(cfg, "x@example.org", "<x@example.org>", &r) < 0);
    CHECK(r.fault == PEC_ACCESS_FOREIGN_SENDER);
    CHECK_STR(r.rcode, "553");
    CHECK_STR(r.xcode, "5.7.1");
    CHECK(strstr(r.text, "x@example.org") != NULL);
    CHECK(strstr(r.text, "non e' una casella di posta certificata di questo gestore") != NULL);

    /* the login itself, any case; the listed senders; nothing else */
    CHECK(pec_access_sender(cfg, "luigi@pec-a.test", "<Luigi@PEC-A.test>", &r) == 0);
    CHECK(r.fault == PEC_ACCESS_OK);
    CHECK(pec_access_sender(cfg, "mario", "<mario.rossi@pec-a.test>", &r) == 0);
    CHECK(pec_access_sender(cfg, "MARIO", "ufficio@pec-a2.test", &r) == 0);
    CHECK(pec_access_sender(cfg, "luigi@pec-a.test", "<mario.rossi@pec-a.test>", &r) < 0);
    CHECK(r.fault == PEC_ACCESS_NOT_YOUR_SENDER);
    CHECK(strstr(r.text, "luigi@pec-a.test non puo' inviare come mario.rossi@pec-a.test") != NULL);
    CHECK(strstr(r.text, "may not send as") != NULL);

    /* what a reply quotes is printable ASCII, whatever the client sent */
    CHECK(pec_access_sender(cfg, "mario\r\n", "<m\xc3\xa0rio@pec-a.test>", &r) < 0);
    for (const char *p = r.text; *p; p++)
        CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    pec_config_unref(cfg);
}

/* ---------------------------------------------------------------- formal checks */

#define GOOD_HEAD                                                                                  \
    "From: Mario Rossi <mario@pec-a.test>\r\n"                                                     \
    "To: luigi@pec-b.test, ext@example.org\r\n"                                                    \
    "Cc: anna@pec-a.test\r\n"                                                                      \
    "Subject: prova\r\n"                                                                           \
    "Message-ID: <1@client.test>\r\n"

static const char *const good_rcpts[] = {"<anna@pec-a.test>", "<luigi@pec-b.test>",
                                         "<ext@example.org>"};

static int parse(struct pec_original *o, const char *msg, const char *from,
                 const char *const *rcpts, size_t n)
{
    char err[512];
    int rc =
        pec_original_from_mem(o, msg, strlen(msg), NULL, 1 << 20, from, rcpts, n, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "parse: %s\n", err);
    return rc;
}

#define PARSE_FAILED ((enum pec_access_fault)99)

/* the first failing check of MSG, or PEC_ACCESS_OK; *R is filled */
static enum pec_access_fault formal(const char *msg, const char *from, const char *const *rcpts,
                                    size_t n, long long limit, struct pec_access_reply *r)
{
    struct pec_original o;

    if (parse(&o, msg, from, rcpts, n) != 0) {
        pec_original_free(&o);
        return PARSE_FAILED;
    }
    pec_access_formal(&o, limit, r);
    pec_original_free(&o);
    return r->fault;
}

static void expect(const char *msg, const char *from, const char *const *rcpts, size_t n,
                   long long limit, enum pec_access_fault want, const char *code, const char *words)
{
    struct pec_access_reply r;
    enum pec_access_fault got = formal(msg, from, rcpts, n, limit, &r);

    if (got != want)
        fprintf(stderr, "expected fault %s, got %s (%s)\n", pec_access_fault_name(want),
                pec_access_fault_name(got), r.text);
    CHECK(got == want);
    if (want == PEC_ACCESS_OK || got != want)
        return;
    CHECK_STR(r.xcode, code);
    CHECK(r.rcode[0] == '5');
    CHECK(strstr(r.errore, words) != NULL);
    CHECK(strstr(r.text, words) != NULL);
    CHECK(strncmp(r.text, "Messaggio non accettato: ", 25) == 0);
}

static void test_formal(void)
{
    const char *const one[] = {"<luigi@pec-b.test>"};
    const char *const extra[] = {"<luigi@pec-b.test>", "<nascosto@pec-b.test>"};

    expect(GOOD_HEAD "\r\nbody\r\n", "<mario@pec-a.test>", good_rcpts, 3, 30 << 20, PEC_ACCESS_OK,
           NULL, NULL);
    /* case does not matter in addresses */
    expect(GOOD_HEAD "\r\nbody\r\n", "<MARIO@pec-a.test>", good_rcpts, 3, 30 << 20, PEC_ACCESS_OK,
           NULL, NULL);
    /* a quoted local part may hold blanks */
    expect("From: \"Mario Rossi\"@pec-a.test\r\nTo: luigi@pec-b.test\r\n\r\nb\r\n",
           "<\"Mario Rossi\"@pec-a.test>", (const char *const[]){"<luigi@pec-b.test>"}, 1, 30 << 20,
           PEC_ACCESS_OK, NULL, NULL);

    expect("To: luigi@pec-b.test\r\nSubject: x\r\n\r\nb\r\n", "<mario@pec-a.test>", one, 1,
           30 << 20, PEC_ACCESS_FROM_MISSING, "5.6.0", "manca il campo From");
    expect("From: mario@pec-a.test, altro@pec-a.test\r\nTo: luigi@pec-b.test\r\n\r\nb\r\n",
           "<mario@pec-a.test>", one, 1, 30 << 20, PEC_ACCESS_FROM_MULTIPLE, "5.6.0",
           "un solo indirizzo");
    expect("From: mario@pec-a.test\r\nFrom: altro@pec-a.test\r\nTo: luigi@pec-b.test\r\n\r\nb\r\n",
           "<mario@pec-a.test>", one, 1, 30 << 20, PEC_ACCESS_FROM_MULTIPLE, "5.6.0",
           "un solo indirizzo");
    expect("From: mario\r\nTo: luigi@pec-b.test\r\n\r\nb\r\n", "<mario@pec-a.test>", one, 1,
           30 << 20, PEC_ACCESS_FROM_INVALID, "5.1.7", "nel campo From non e' valido");
    expect("From: mario@pec-a.test\r\nCc: luigi@pec-b.test\r\n\r\nb\r\n", "<mario@pec-a.test>", one,
           1, 30 << 20, PEC_ACCESS_TO_MISSING, "5.6.0", "manca il campo To");
    expect("From: mario@pec-a.test\r\nTo: undisclosed-recipients:;\r\n\r\nb\r\n",
           "<mario@pec-a.test>", one, 1, 30 << 20, PEC_ACCESS_TO_MISSING, "5.6.0",
           "manca il campo To");
    expect("From: mario@pec-a.test\r\nTo: luigi@pec-b.test, pippo\r\n\r\nb\r\n",
           "<mario@pec-a.test>", one, 1, 30 << 20, PEC_ACCESS_TO_INVALID, "5.1.3",
           "nel campo To non e' valido");
    expect(GOOD_HEAD "\r\nb\r\n", "<ufficio@pec-a.test>", good_rcpts, 3, 30 << 20,
           PEC_ACCESS_FROM_MISMATCH, "5.7.1",
           "il mittente SMTP (MAIL FROM) ufficio@pec-a.test non coincide con il campo From "
           "mario@pec-a.test");
    expect("From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n\r\nb\r\n", "<mario@pec-a.test>",
           extra, 2, 30 << 20, PEC_ACCESS_RCPT_NOT_IN_HEADER, "5.7.1",
           "il destinatario nascosto@pec-b.test non compare nei campi To o Cc");
    /* a Bcc recipient is named as the Bcc it is, not as a stray recipient */
    expect(
        "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\nBcc: nascosto@pec-b.test\r\n\r\nb\r\n",
        "<mario@pec-a.test>", extra, 2, 30 << 20, PEC_ACCESS_BCC, "5.7.1", "il campo Bcc");
    /* an empty Bcc is allowed */
    expect("From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\nBcc:\r\n\r\nb\r\n",
           "<mario@pec-a.test>", one, 1, 30 << 20, PEC_ACCESS_OK, NULL, NULL);
    /* size x recipients: 3 x 70 bytes against 200 and 300 */
    {
        const char *m = "From: mario@pec-a.test\r\nTo: luigi@pec-b.test, ext@example.org\r\n"
                        "Cc: anna@pec-a.test\r\n\r\n";
        const char *const r3[] = {"<luigi@pec-b.test>", "<ext@example.org>", "<anna@pec-a.test>"};
        size_t size = strlen(m);
        struct pec_access_reply r;
        char want[200];

        expect(m, "<mario@pec-a.test>", r3, 3, (long long)size * 3, PEC_ACCESS_OK, NULL, NULL);
        snprintf(want, sizeof(want), "(%zu byte) per il numero di destinatari (3) supera il limite",
                 size);
        expect(m, "<mario@pec-a.test>", r3, 3, (long long)size * 3 - 1, PEC_ACCESS_TOO_BIG, "5.3.4",
               want);
        formal(m, "<mario@pec-a.test>", r3, 3, 10, &r);
        CHECK_STR(r.rcode, "552");
    }
}

/* ---------------------------------------------------------------- classification */

static void test_classify(const struct pec_index *idx, const struct pec_config *cfg)
{
    struct pec_original o;
    struct pec_access_rcpts rc;
    const char *const rcpts[] = {"<Anna@pec-a.test>", "<ext@example.org>", "<luigi@pec-b.test>",
                                 "<anna@pec-a.test>", "<both@pec-a2.test>"};
    const char *msg = "From: mario@pec-a.test\r\n"
                      "To: luigi@pec-b.test, ext@example.org, both@pec-a2.test\r\n"
                      "Cc: anna@pec-a.test, both@pec-a2.test\r\n\r\nb\r\n";

    if (parse(&o, msg, "<mario@pec-a.test>", rcpts, 5) != 0) {
        CHECK(0);
        return;
    }
    pec_access_classify(&o, idx, cfg, &rc);
    /* To first in RCPT order, then Cc; a duplicate RCPT once; To wins over Cc */
    CHECK(rc.n == 4);
    if (rc.n == 4) {
        CHECK_STR(rc.v[0].address, "ext@example.org");
        CHECK(!rc.v[0].certificato && !rc.v[0].ours && !rc.v[0].cc);
        CHECK_STR(rc.v[1].address, "luigi@pec-b.test");
        CHECK(rc.v[1].certificato && !rc.v[1].ours && !rc.v[1].cc);
        CHECK_STR(rc.v[2].address, "both@pec-a2.test");
        CHECK(rc.v[2].certificato && rc.v[2].ours && !rc.v[2].cc);
        CHECK_STR(rc.v[3].address, "Anna@pec-a.test");
        CHECK(rc.v[3].certificato && rc.v[3].ours && rc.v[3].cc);
    }
    pec_access_rcpts_free(&rc);
    pec_original_free(&o);
}

/* ---------------------------------------------------------------- outcomes */

struct seen {
    int n;
    char tipo[4][64];
    char rcpt[4][128];
    long long id[4];
};

static int each_out(const struct pec_outbox_row *row, void *arg)
{
    struct seen *s = arg;

    if (s->n < 4) {
        snprintf(s->tipo[s->n], sizeof(s->tipo[0]), "%s", row->tipo);
        snprintf(s->rcpt[s->n], sizeof(s->rcpt[0]), "%s", row->nrcpt == 1 ? row->rcpt[0] : "?");
        s->id[s->n] = row->id;
    }
    s->n++;
    return 0;
}

struct records {
    int n;
    char label[4][32];
    char ricezione[4][256];
    char esteso[4][512];
    char message_id[4][256];
};

static int each_record(const struct pec_record *r, void *arg)
{
    struct records *s = arg;

    if (s->n < 4) {
        snprintf(s->label[s->n], sizeof(s->label[0]), "%s", r->label);
        snprintf(s->ricezione[s->n], sizeof(s->ricezione[0]), "%s", r->ricezione);
        snprintf(s->esteso[s->n], sizeof(s->esteso[0]), "%s", r->errore_esteso);
        snprintf(s->message_id[s->n], sizeof(s->message_id[0]), "%s", r->message_id);
    }
    s->n++;
    return 0;
}

/* the bytes of the queued row number I (oldest first): claimed, so keep it last */
static struct bytes claim(struct pec_store *st)
{
    struct pec_outbox_row row;
    struct bytes b = {0};
    time_t next;
    char err[512];

    if (pec_store_outbox_claim(st, time(NULL) + 3600, 1, &row, &next, err, sizeof(err)) == 1) {
        b.p = xmalloc(row.len + 1);
        memcpy(b.p, row.data, row.len);
        b.p[row.len] = '\0';
        b.n = row.len;
        pec_outbox_row_free(&row);
    }
    return b;
}

static struct pec_store *fresh_store(const char *name)
{
    char *p = xasprintf("%s/%s", dir, name), err[512];
    struct pec_store *st = pec_store_open(p, 0, err, sizeof(err));

    if (st == NULL)
        fprintf(stderr, "store %s: %s\n", p, err);
    free(p);
    return st;
}

static const char accepted_msg[] = "Received: from client by smtp.pec-a.test; Fri, 1 Mar 2024\r\n"
                                   "From: Mario Rossi <mario@pec-a.test>\r\n"
                                   "To: luigi@pec-b.test, ext@example.org\r\n"
                                   "Cc: anna@pec-a.test\r\n"
                                   "Subject: prova\r\n"
                                   "Message-ID: <1@client.test>\r\n"
                                   "X-Trasporto: posta-certificata\r\n"
                                   "X-Ricevuta: avvenuta-consegna\r\n"
                                   "X-VerificaSicurezza: errore\r\n"
                                   "X-Mittente: qualcuno@pec-b.test\r\n"
                                   "X-Riferimento-Message-ID: <falso@pec-b.test>\r\n"
                                   "X-TipoRicevuta: sintetica\r\n"
                                   "\r\n"
                                   "Ciao.\r\n";

static void test_accept(const struct pec_access_env *e)
{
    struct pec_store *st = fresh_store("accept.db");
    struct pec_original o;
    struct pec_access_outcome out;
    struct pec_tx_info tx;
    struct seen seen = {0};
    struct records rec = {0};
    char err[1024];
    struct bytes acc, pic;

    if (st == NULL || parse(&o, accepted_msg, "<mario@pec-a.test>", good_rcpts, 3) != 0) {
        CHECK(0);
        return;
    }
    CHECK(pec_access_accept(e, &o, "QID1", &out, err, sizeof(err)) == 0);
    if (out.batch == NULL) {
        fprintf(stderr, "accept: %s\n", err);
        pec_original_free(&o);
        pec_store_close(st);
        return;
    }
    /* our headers only: the client's PEC fields stay inside postacert.eml */
    CHECK_STR(pec_headers_get(&out.busta.headers, "X-Trasporto"), "posta-certificata");
    CHECK_STR(pec_headers_get(&out.busta.headers, "X-TipoRicevuta"), "sintetica");
    CHECK(pec_headers_get(&out.busta.headers, "X-Ricevuta") == NULL);
    CHECK(pec_headers_get(&out.busta.headers, "X-VerificaSicurezza") == NULL);
    CHECK(pec_headers_get(&out.busta.headers, "X-Mittente") == NULL);
    CHECK_STR(pec_headers_get(&out.busta.headers, "X-Riferimento-Message-ID"), "<1@client.test>");
    /* what the MTA keeps of the original: inherited fields only */
    CHECK(pec_busta_keeps("Received") && pec_busta_keeps("to") && pec_busta_keeps("Cc"));
    CHECK(!pec_busta_keeps("X-Ricevuta") && !pec_busta_keeps("X-Trasporto") &&
          !pec_busta_keeps("X-Riferimento-Message-ID") && !pec_busta_keeps("Content-Type"));

    CHECK(pec_store_commit(st, out.batch, err, sizeof(err)) == 0);

    CHECK(pec_store_tx_get(st, out.identificativo, &tx, err, sizeof(err)) == 1);
    CHECK_STR(tx.mittente, "mario@pec-a.test");
    CHECK_STR(tx.client_msgid, "<1@client.test>");
    CHECK_STR(tx.tipo_ricevuta, "sintetica");
    CHECK_STR(tx.queue_id, "QID1");
    CHECK(tx.nrcpt == 3);
    for (size_t i = 0; i < tx.nrcpt; i++) {
        const struct pec_rcpt_info *r = &tx.rcpt[i];
        if (strcmp(r->address, "anna@pec-a.test") == 0)
            CHECK(r->state == PEC_RCPT_TAKEN && r->certificato && r->cc);
        else if (strcmp(r->address, "luigi@pec-b.test") == 0)
            CHECK(r->state == PEC_RCPT_SENT && r->certificato && !r->cc);
        else
            CHECK(r->state == PEC_RCPT_SENT && !r->certificato);
    }
    pec_tx_info_free(&tx);

    CHECK(pec_store_outbox_each(st, 1u << PEC_OUT_QUEUED, each_out, &seen, err, sizeof(err)) == 0);
    CHECK(seen.n == 2);
    CHECK_STR(seen.tipo[0], "accettazione");
    CHECK_STR(seen.rcpt[0], "mario@pec-a.test");
    CHECK_STR(seen.tipo[1], "presa-in-carico");
    CHECK_STR(seen.rcpt[1], "ricevute@pec-a.test");

    CHECK(pec_store_log_each(st, NULL, each_record, &rec, err, sizeof(err)) == 0);
    CHECK(rec.n == 3);
    CHECK_STR(rec.label[0], "BustaTrasporto");
    CHECK_STR(rec.message_id[0], out.identificativo);
    CHECK_STR(rec.label[1], "Accettazione");
    CHECK_STR(rec.label[2], "PresaInCarico");
    CHECK_STR(rec.ricezione[2], "anna@pec-a.test");

    /* the receipts as queued: to whom, which kind, each recipient's class in words */
    acc = claim(st);
    pic = claim(st);
    CHECK(acc.p && find(acc.p, acc.n, "X-Ricevuta: accettazione\r\n"));
    CHECK(acc.p && find(acc.p, acc.n, "To: mario@pec-a.test\r\n"));
    CHECK(acc.p && find(acc.p, acc.n, "Subject: ACCETTAZIONE: prova\r\n"));
    CHECK(pic.p && find(pic.p, pic.n, "X-Ricevuta: presa-in-carico\r\n"));
    CHECK(pic.p && find(pic.p, pic.n, "To: ricevute@pec-a.test\r\n"));
    free(acc.p);
    free(pic.p);

    pec_access_outcome_free(&out);
    pec_original_free(&o);
    pec_store_close(st);
}

/* No recipient of ours: no presa in carico, nothing taken. */
static void test_accept_elsewhere(const struct pec_access_env *e)
{
    struct pec_original o;
    struct pec_access_outcome out;
    const char *const one[] = {"<luigi@pec-b.test>"};
    char err[1024];

    if (parse(&o, "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n\r\nb\r\n",
              "<mario@pec-a.test>", one, 1) != 0) {
        CHECK(0);
        return;
    }
    CHECK(pec_access_accept(e, &o, "", &out, err, sizeof(err)) == 0);
    CHECK(out.n_blobs == 1);
    CHECK_STR(pec_headers_get(&out.busta.headers, "X-TipoRicevuta"), "completa");
    pec_access_outcome_free(&out);
    pec_original_free(&o);
}

static void test_refuse(const struct pec_access_env *e)
{
    struct pec_store *st = fresh_store("refuse.db");
    const char *const rcpts[] = {"<luigi@pec-b.test>", "<nascosto@pec-b.test>"};
    const char *msg = "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n"
                      "Bcc: nascosto@pec-b.test\r\nSubject: segreto\r\n\r\nb\r\n";
    struct pec_original o;
    struct pec_access_reply r;
    struct pec_access_outcome out;
    struct seen seen = {0};
    struct records rec = {0};
    struct pec_tx_info tx;
    char err[1024];
    struct bytes avviso;

    if (st == NULL || parse(&o, msg, "<mario@pec-a.test>", rcpts, 2) != 0) {
        CHECK(0);
        return;
    }
    CHECK(pec_access_formal(&o, 30 << 20, &r) < 0);
    CHECK(r.fault == PEC_ACCESS_BCC);
    CHECK(pec_access_refuse(e, &o, &r, "QID2", &out, err, sizeof(err)) == 0);
    CHECK(out.busta.body == NULL);
    CHECK(pec_store_commit(st, out.batch, err, sizeof(err)) == 0);
    /* no transaction for a message that was not accepted */
    CHECK(pec_store_tx_get(st, out.identificativo, &tx, err, sizeof(err)) == 0);
    CHECK(pec_store_outbox_each(st, 1u << PEC_OUT_QUEUED, each_out, &seen, err, sizeof(err)) == 0);
    CHECK(seen.n == 1);
    CHECK_STR(seen.tipo[0], "non-accettazione");
    CHECK_STR(seen.rcpt[0], "mario@pec-a.test");
    CHECK(pec_store_log_each(st, NULL, each_record, &rec, err, sizeof(err)) == 0);
    CHECK(rec.n == 1);
    CHECK_STR(rec.label[0], "NonAccettazione");
    CHECK_STR(rec.esteso[0], "5.7.1 - Gestore A S.p.A. - il campo Bcc (copia nascosta) non deve "
                             "contenere indirizzi");
    avviso = claim(st);
    CHECK(avviso.p && find(avviso.p, avviso.n, "X-Ricevuta: non-accettazione\r\n"));
    CHECK(avviso.p && find(avviso.p, avviso.n, "Subject: AVVISO DI NON ACCETTAZIONE: segreto\r\n"));
    /* the original is never part of a non-accettazione */
    CHECK(avviso.p && !find(avviso.p, avviso.n, "postacert.eml"));
    free(avviso.p);
    pec_access_outcome_free(&out);
    pec_original_free(&o);
    pec_store_close(st);
}

/* the daticert.xml inside busta B; 0, or -1 */
static int busta_daticert(const struct pec_built *b, struct pec_daticert *d)
{
    struct bytes body = spool_bytes(b->body);
    struct signed_parts sp;
    struct range parts[MAX_PARTS];
    char err[256], *ct = NULL, *boundary = NULL;
    int ret = -1;

    memset(d, 0, sizeof(*d));
    if (take_apart(b, body.p, body.n, &sp) == 0) {
        size_t bs = body_start(sp.inner.p, sp.inner.n);

        ct = part_header(sp.inner.p, sp.inner.n, "Content-Type");
        boundary = boundary_of(ct);
        if (boundary != NULL && split(sp.inner.p + bs, sp.inner.n - bs, boundary, parts) == 3) {
            const unsigned char *x = sp.inner.p + bs + parts[1].off;
            size_t xb = body_start(x, parts[1].len);
            struct bytes xml = b64_decode(x + xb, parts[1].len - xb);

            ret = pec_daticert_parse((char *)xml.p, xml.n, d, err, sizeof(err));
            if (ret != 0)
                fprintf(stderr, "daticert: %s\n", err);
            free(xml.p);
        }
    }
    free(ct);
    free(boundary);
    signed_parts_free(&sp);
    free(body.p);
    return ret;
}

static int count_rows(const struct pec_outbox_row *row, void *arg)
{
    (void)row;
    (*(int *)arg)++;
    return 0;
}

static int count_records(const struct pec_record *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

/* what the store holds: outbox rows + 1000 * log records */
static int store_size(struct pec_store *st)
{
    char err[512];
    int rows = 0, recs = 0;

    CHECK(pec_store_outbox_each(st, 0xf, count_rows, &rows, err, sizeof(err)) == 0);
    CHECK(pec_store_log_each(st, NULL, count_records, &recs, err, sizeof(err)) == 0);
    return rows + 1000 * recs;
}

/*
 * Decide MSG (sent to RCPTS) over E as the milter does (a formal error is
 * refused, a good message accepted) and commit what it prepared; OUT is
 * kept for the caller.
 */
static int decide(const struct pec_access_env *e, struct pec_store *st, const char *msg,
                  const char *const *rcpts, size_t n, struct pec_access_outcome *out)
{
    struct pec_original o;
    struct pec_access_reply r;
    char err[1024];
    int ret = -1, rc;

    memset(out, 0, sizeof(*out));
    if (parse(&o, msg, "<mario@pec-a.test>", rcpts, n) != 0)
        return -1;
    if (pec_access_formal(&o, 30 << 20, &r) < 0)
        rc = pec_access_refuse(e, &o, &r, "QID", out, err, sizeof(err));
    else
        rc = pec_access_accept(e, &o, "QID", out, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "decide: %s\n", err);
    else if (pec_store_commit(st, out->batch, err, sizeof(err)) != 0)
        fprintf(stderr, "commit: %s\n", err);
    else
        ret = 0;
    pec_original_free(&o);
    return ret;
}

/*
 * The same submission again (a client's retry after a crash): the busta is
 * rebuilt with the first identificativo and instant, byte for byte, and
 * nothing is queued, logged or opened.  Another Message-ID, other
 * recipients, another sender, no Message-ID, or a first transaction older
 * than deadline_after: a new transaction.
 */
static void test_resubmission(const struct pec_access_env *base)
{
    struct pec_store *st = fresh_store("resubmit.db");
    struct pec_access_env e = *base;
    struct pec_access_outcome first, again, other;
    const char *const shuffled[] = {"<ext@example.org>", "<Luigi@PEC-B.test>", "<anna@pec-a.test>"};
    const char *const fewer[] = {"<anna@pec-a.test>", "<luigi@pec-b.test>"};
    const time_t t0 = env.clock.fixed_at;
    struct pec_tx_info tx;
    struct pec_daticert d;
    struct bytes b1, b2;
    char err[512], *msg;
    int size;

    e.store = st;
    if (st == NULL || decide(&e, st, accepted_msg, good_rcpts, 3, &first) != 0) {
        CHECK(0);
        pec_store_close(st);
        return;
    }
    CHECK(!first.resubmission && first.n_blobs == 2 && first.when == t0);
    size = store_size(st);
    CHECK(size == 3002);

    /* ten minutes later the client sends it again, recipients in another order */
    env.clock.fixed_at = t0 + 600;
    CHECK(decide(&e, st, accepted_msg, shuffled, 3, &again) == 0);
    CHECK(again.resubmission == 1);
    CHECK_STR(again.identificativo, first.identificativo);
    CHECK(again.when == t0);
    CHECK(again.n_blobs == 0);
    CHECK(store_size(st) == size);
    CHECK(pec_store_tx_find_client(st, "mario@pec-a.test", "<1@client.test>", 0, &tx, err,
                                   sizeof(err)) == 1);
    CHECK_STR(tx.identificativo, first.identificativo);
    pec_tx_info_free(&tx);
    /* the busta that leaves now is the one the first accettazione announced */
    b1 = built_bytes(&first.busta);
    b2 = built_bytes(&again.busta);
    CHECK(b1.n == b2.n && memcmp(b1.p, b2.p, b1.n) == 0);
    free(b1.p);
    free(b2.p);
    CHECK(busta_daticert(&again.busta, &d) == 0);
    CHECK_STR(d.identificativo, first.identificativo);
    CHECK_STR(d.giorno, "01/03/2024");
    CHECK_STR(d.ora, "12:00:00"); /* the first acceptance, not 12:10 */
    CHECK(d.n_destinatari == 3 && strcmp(d.destinatari[0].address, "luigi@pec-b.test") == 0);
    pec_daticert_free(&d);
    pec_access_outcome_free(&again);

    /* another Message-ID: a new message */
    msg = xstrdup(accepted_msg);
    memcpy(strstr(msg, "<1@client.test>"), "<2@client.test>", 15);
    CHECK(decide(&e, st, msg, good_rcpts, 3, &other) == 0);
    CHECK(!other.resubmission && other.n_blobs == 2 && other.when == t0 + 600);
    CHECK(strcmp(other.identificativo, first.identificativo) != 0);
    CHECK(store_size(st) == (size += 3002));
    pec_access_outcome_free(&other);
    free(msg);

    /* the same Message-ID without the esterno recipient: a new message */
    msg = xstrdup(accepted_msg);
    memcpy(strstr(msg, ", ext@example.org"), "                 ", 17);
    CHECK(decide(&e, st, msg, fewer, 2, &other) == 0);
    CHECK(!other.resubmission && other.n_blobs == 2);
    CHECK(store_size(st) == (size += 3002));
    pec_access_outcome_free(&other);
    free(msg);

    /* no Message-ID: every copy is new */
    for (int i = 0; i < 2; i++) {
        CHECK(decide(&e, st, "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n\r\nb\r\n",
                     fewer + 1, 1, &other) == 0);
        CHECK(!other.resubmission && other.n_blobs == 1);
        CHECK(store_size(st) == (size += 2001));
        pec_access_outcome_free(&other);
    }

    /* past deadline_after the first transaction is not looked at any more */
    env.clock.fixed_at = t0 + e.cfg->deadline_after + 1;
    CHECK(decide(&e, st, accepted_msg, good_rcpts, 3, &other) == 0);
    CHECK(!other.resubmission && other.n_blobs == 2);
    CHECK(strcmp(other.identificativo, first.identificativo) != 0);
    pec_access_outcome_free(&other);

    env.clock.fixed_at = t0;
    pec_access_outcome_free(&first);
    pec_store_close(st);
}

/*
 * A refused submission sent again (a client's retry after a crash between
 * the commit of the avviso and the MTA's reply): the same refusal, no second
 * avviso or record.  Another subject or Message-ID, no Message-ID, or a
 * refusal older than deadline_after: a new avviso.
 */
static void test_refusal_retry(const struct pec_access_env *base)
{
    static const char msg[] = "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n"
                              "Bcc: nascosto@pec-b.test\r\nMessage-ID: <r1@client.test>\r\n"
                              "Subject: segreto\r\n\r\nb\r\n";
    const char *const rcpts[] = {"<luigi@pec-b.test>", "<nascosto@pec-b.test>"};
    struct pec_store *st = fresh_store("refusal-retry.db");
    struct pec_access_env e = *base;
    struct pec_access_outcome first, again;
    const time_t t0 = env.clock.fixed_at;
    char *other;
    int size;

    e.store = st;
    if (st == NULL || decide(&e, st, msg, rcpts, 2, &first) != 0) {
        CHECK(0);
        pec_store_close(st);
        return;
    }
    CHECK(!first.resubmission);
    CHECK((size = store_size(st)) == 1001);

    env.clock.fixed_at = t0 + 600;
    CHECK(decide(&e, st, msg, rcpts, 2, &again) == 0);
    CHECK(again.resubmission == 1);
    CHECK_STR(again.identificativo, first.identificativo);
    CHECK(again.when == t0);
    CHECK(store_size(st) == size);
    pec_access_outcome_free(&again);

    /* another subject under the same Message-ID: another refusal */
    other = xstrdup(msg);
    memcpy(strstr(other, "segreto"), "diverso", 7);
    CHECK(decide(&e, st, other, rcpts, 2, &again) == 0);
    CHECK(!again.resubmission && strcmp(again.identificativo, first.identificativo) != 0);
    CHECK(store_size(st) == (size += 1001));
    pec_access_outcome_free(&again);
    free(other);

    /* no Message-ID: every copy is new */
    for (int i = 0; i < 2; i++) {
        CHECK(decide(&e, st,
                     "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n"
                     "Bcc: nascosto@pec-b.test\r\nSubject: segreto\r\n\r\nb\r\n",
                     rcpts, 2, &again) == 0);
        CHECK(!again.resubmission);
        CHECK(store_size(st) == (size += 1001));
        pec_access_outcome_free(&again);
    }

    /* past deadline_after the refusal is not looked at any more */
    env.clock.fixed_at = t0 + e.cfg->deadline_after + 601;
    CHECK(decide(&e, st, msg, rcpts, 2, &again) == 0);
    CHECK(!again.resubmission && strcmp(again.identificativo, first.identificativo) != 0);
    CHECK(store_size(st) == (size += 1001));
    pec_access_outcome_free(&again);

    env.clock.fixed_at = t0;
    pec_access_outcome_free(&first);
    pec_store_close(st);
}

static void rm_rf(const char *path)
{
    char *cmd = xasprintf("rm -rf '%s'", path);

    CHECK(system(cmd) == 0);
    free(cmd);
}

int main(void)
{
    struct pec_config *cfg;
    struct pec_index *idx;
    char err[512], *index_path;

    testenv_init(&env);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    index_path = path_join(env.pki, "index.ldif");
    idx = pec_index_load(index_path, err, sizeof(err));
    if (idx == NULL)
        fprintf(stderr, "index: %s\n", err);
    cfg = config_with("");
    CHECK(idx != NULL && cfg != NULL);
    if (idx != NULL && cfg != NULL) {
        struct pec_access_env e = {.iss = &env.iss, .cfg = cfg, .index = idx};

        test_sender();
        test_formal();
        test_classify(idx, cfg);
        test_accept(&e);
        test_accept_elsewhere(&e);
        test_refuse(&e);
        test_resubmission(&e);
        test_refusal_retry(&e);
    }
    pec_config_unref(cfg);
    pec_index_free(idx);
    free(index_path);
    testenv_free(&env);
    rm_rf(dir);
    return check_exit();
}
