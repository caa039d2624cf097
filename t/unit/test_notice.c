/*
 * test_notice - the notice builder's own promises, the ones the end-to-end
 * test of every kind (t/test_generated.py) does not reach: the caller's facts
 * are left alone, the headers come in their order and cannot be split by a
 * hostile subject or address, subjects are folded or encoded, the fallbacks
 * (no client msgid, no virus name, a text that does not fit Latin-1) hold,
 * and requests that cannot make a valid notice are refused with a reason.
 */
#include "check.h"
#include "message/notice.h"
#include "util/xalloc.h"

#include <openssl/evp.h>
#include <time.h>

static struct pec_clock clk;
static struct pec_ident ident;
static struct pec_issuer iss;

static struct pec_destinatario dests[] = {
    {"luigi@pec-b.test", PEC_DEST_CERTIFICATO},
    {"carla@example.com", PEC_DEST_ESTERNO},
};

static struct pec_daticert sample(void)
{
    struct pec_daticert d = {0};

    d.mittente = "mario@pec-a.test";
    d.destinatari = dests;
    d.n_destinatari = 2;
    d.risposte = "mario@pec-a.test";
    d.oggetto = "Prova";
    d.identificativo = "opec1.20240315102030.00000.1.00000001@pec-a.test";
    d.msgid = "<client-1@pec-a.test>";
    d.giorno = "01/01/2000"; /* the builder must not use these */
    d.tipo = PEC_TIPO_POSTA_CERTIFICATA;
    return d;
}

static void setup(void)
{
    const char *pki = check_env("PEC_PKI_DIR");
    char err[512], cert[4096], chain[4096], key[4096];
    struct pec_signer *signer;

    snprintf(cert, sizeof(cert), "%s/a/cert.pem", pki);
    snprintf(chain, sizeof(chain), "%s/a/chain.pem", pki);
    snprintf(key, sizeof(key), "%s/a/key.pem", pki);
    signer = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err));
    if (signer == NULL ||
        pec_clock_init(&clk, "Europe/Rome", "2024-03-15T10:20:30Z", err, sizeof(err)) != 0 ||
        pec_ident_init(&ident, 1, "pec-a.test", &clk, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        exit(1);
    }
    pec_ident_set_deterministic(7);
    iss = (struct pec_issuer){
        .provider_name = "Gestore A S.p.A.",
        .service_address = "posta-certificata@pec-a.test",
        .signer = signer,
        .clock = &clk,
        .ident = &ident,
        .spool_mem_limit = 1 << 20,
    };
}

/* the whole body, NUL-terminated */
static char *body_of(const struct pec_built *b)
{
    size_t n = pec_spool_size(b->body);
    char *s = xmalloc(n + 1);

    CHECK(pec_spool_pread(b->body, 0, s, n) == (ssize_t)n);
    s[n] = '\0';
    return s;
}

/* daticert.xml of a built notice, decoded, NUL-terminated */
static char *daticert_of(const char *body)
{
    const char *mark = "filename=\"daticert.xml\"\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    const char *p = strstr(body, mark), *end;
    char *b64, *xml;
    size_t n = 0;
    int len;

    if (p == NULL)
        return xstrdup("");
    p += strlen(mark);
    end = strstr(p, "\r\n\r\n");
    b64 = xmalloc(strlen(p) + 1);
    for (; *p != '\0' && p != end; p++)
        if (*p != '\r' && *p != '\n')
            b64[n++] = *p;
    xml = xmalloc(n + 1);
    len = EVP_DecodeBlock((unsigned char *)xml, (const unsigned char *)b64, (int)n);
    CHECK(len >= 0);
    xml[len < 0 ? 0 : len] = '\0';
    free(b64);
    return xml;
}

static int build(struct pec_notice *n, struct pec_built *b)
{
    char err[512] = "";
    int rc = pec_build_notice(&iss, n, b, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "pec_build_notice: %s\n", err);
    return rc;
}

/* ---- cases ---- */

static void test_tables(void)
{
    char *e = pec_errore_esteso("5.1.1", "Gestore B", "casella\r\ninesistente");

    CHECK_STR(e, "5.1.1 - Gestore B - casella  inesistente");
    free(e);
    for (int k = 0; k < PEC_NOTICE_KIND_COUNT; k++) {
        CHECK(pec_notice_kind_name((enum pec_notice_kind)k) != NULL);
        CHECK(pec_notice_x_ricevuta((enum pec_notice_kind)k) != NULL);
        for (int j = 0; j < k; j++)
            CHECK(strcmp(pec_notice_kind_name((enum pec_notice_kind)k),
                         pec_notice_kind_name((enum pec_notice_kind)j)) != 0);
    }
    CHECK(pec_notice_kind_name(PEC_NOTICE_KIND_COUNT) == NULL);
    CHECK_STR(pec_notice_x_ricevuta(PEC_NOTICE_MANCATA_CONSEGNA_VIRUS), "errore-consegna");
    CHECK(pec_notice_errore(PEC_NOTICE_MANCATA_CONSEGNA, PEC_ERRORE_NO_DOMINIO) ==
          PEC_ERRORE_NO_DOMINIO);
    CHECK(pec_notice_errore(PEC_NOTICE_MANCATA_CONSEGNA, PEC_ERRORE_NESSUNO) == PEC_ERRORE_ALTRO);
    CHECK(pec_notice_errore(PEC_NOTICE_MANCATA_CONSEGNA, PEC_ERRORE_VIRUS) == PEC_ERRORE_ALTRO);
    CHECK(pec_notice_errore(PEC_NOTICE_ACCETTAZIONE, PEC_ERRORE_ALTRO) == PEC_ERRORE_NESSUNO);
    CHECK(pec_notice_errore(PEC_NOTICE_PREAVVISO_12H, PEC_ERRORE_ALTRO) == PEC_ERRORE_NESSUNO);
    CHECK(pec_notice_errore(PEC_NOTICE_PREAVVISO_24H, PEC_ERRORE_NESSUNO) == PEC_ERRORE_ALTRO);
    CHECK(pec_notice_tipo(PEC_NOTICE_RILEVAZIONE_VIRUS) == PEC_TIPO_RILEVAZIONE_VIRUS);
}

static void test_headers(void)
{
    static const char *const order[] = {"X-Ricevuta", "Date",         "Subject",
                                        "From",       "To",           "X-Riferimento-Message-ID",
                                        "Message-ID", "MIME-Version", "Content-Type"};
    struct pec_daticert f = sample(), copy = f;
    struct pec_notice n = {.kind = PEC_NOTICE_ACCETTAZIONE, .facts = &f, .to = "mario@pec-a.test"};
    struct pec_built b;

    if (build(&n, &b) != 0) {
        CHECK(0);
        return;
    }
    CHECK(memcmp(&f, &copy, sizeof(f)) == 0);
    CHECK(b.headers.n == sizeof(order) / sizeof(order[0]));
    for (size_t i = 0; i < b.headers.n && i < sizeof(order) / sizeof(order[0]); i++)
        CHECK_STR(b.headers.v[i].name, order[i]);
    CHECK_STR(pec_headers_get(&b.headers, "Date"), "Fri, 15 Mar 2024 11:20:30 +0100");
    CHECK_STR(pec_headers_get(&b.headers, "Subject"), "ACCETTAZIONE: Prova");
    CHECK_STR(pec_headers_get(&b.headers, "From"), "posta-certificata@pec-a.test");
    CHECK_STR(pec_headers_get(&b.headers, "X-Riferimento-Message-ID"), "<client-1@pec-a.test>");
    CHECK(b.message_id != NULL && strcmp(b.message_id, f.identificativo) != 0);
    CHECK(b.message_id != NULL && strncmp(b.message_id, "npec", 4) == 0);
    pec_built_free(&b);

    /* no client id: the header still correlates, through the identificativo */
    f.msgid = NULL;
    n.kind = PEC_NOTICE_RILEVAZIONE_VIRUS;
    f.consegna = "luigi@pec-b.test";
    n.to = "ricevute@pec-a.test";
    if (build(&n, &b) == 0) {
        char *body = body_of(&b), *xml = daticert_of(body);
        CHECK_STR(pec_headers_get(&b.headers, "X-Riferimento-Message-ID"),
                  "<opec1.20240315102030.00000.1.00000001@pec-a.test>");
        CHECK_STR(pec_headers_get(&b.headers, "X-Mittente"), "mario@pec-a.test");
        CHECK(pec_headers_get(&b.headers, "X-VerificaSicurezza") == NULL);
        /* no virus name given: the errore-esteso says so rather than nothing */
        CHECK(strstr(xml, "<errore-esteso>5.7.1 - Gestore A S.p.A. - virus rilevato: non "
                          "identificato</errore-esteso>") != NULL);
        CHECK(strstr(body, "il messaggio contiene il virus \"non identificato\".") != NULL);
        /* the facts' fields the builder owns are its own: data, gestore, tipo */
        CHECK(strstr(xml, "<giorno>15/03/2024</giorno>") != NULL);
        CHECK(strstr(xml, "<gestore-emittente>Gestore A S.p.A.</gestore-emittente>") != NULL);
        CHECK(strstr(xml, "<postacert tipo=\"rilevazione-virus\" errore=\"virus\">") != NULL);
        CHECK(strstr(xml, "<msgid>") == NULL);
        free(xml);
        free(body);
        pec_built_free(&b);
    } else {
        CHECK(0);
    }
}

static int lines_fit(const char *field, const char *v)
{
    size_t col = strlen(field) + 2;

    for (; *v != '\0'; v++) {
        if (*v == '\r' && v[1] == '\n') {
            if (v[2] != ' ' && v[2] != '\t')
                return 0; /* a line break that is not a fold */
            col = 0;
            v++;
            continue;
        }
        if (++col > 78)
            return 0;
    }
    return 1;
}

static void test_subjects(void)
{
    struct pec_daticert f = sample();
    struct pec_notice n = {.kind = PEC_NOTICE_CONSEGNA_SINTETICA, .facts = &f, .to = f.mittente};
    struct pec_built b;
    const char *s;
    char *body;

    f.consegna = "luigi@pec-b.test";
    /* a long ASCII subject is folded at its spaces */
    n.subject_raw =
        "Re: verbale della riunione del consiglio di amministrazione tenutasi il giorno "
        "quattordici marzo duemilaventiquattro presso la sede";
    if (build(&n, &b) == 0) {
        s = pec_headers_get(&b.headers, "Subject");
        CHECK(s != NULL && strstr(s, "\r\n ") != NULL && lines_fit("Subject", s));
        pec_built_free(&b);
    }
    /* a raw subject cannot add a header: line breaks go, folds become spaces */
    n.subject_raw = "ciao\r\nBcc: x@example.com\r\n\tcontinua";
    if (build(&n, &b) == 0) {
        CHECK_STR(pec_headers_get(&b.headers, "Subject"),
                  "CONSEGNA: ciaoBcc: x@example.com\tcontinua");
        pec_built_free(&b);
    }
    /* not ASCII: UTF-8 encoded words, and a text that does not fit Latin-1 stays UTF-8 */
    n.subject_raw = NULL;
    f.oggetto = "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 "
                "(\xc3\xa8 un saluto)";
    if (build(&n, &b) == 0) {
        s = pec_headers_get(&b.headers, "Subject");
        CHECK(s != NULL && strncmp(s, "CONSEGNA: =?UTF-8?B?", 20) == 0 && lines_fit("Subject", s));
        body = body_of(&b);
        CHECK(strstr(body, "text/plain; charset=\"utf-8\"") != NULL);
        CHECK(strstr(body, "&#922;&#945;") != NULL); /* the HTML: character references */
        free(body);
        pec_built_free(&b);
    }
    /* Latin-1 is enough: the text is ISO-8859-1 */
    f.oggetto = "caff\xc3\xa8";
    if (build(&n, &b) == 0) {
        body = body_of(&b);
        CHECK(strstr(body, "text/plain; charset=\"iso-8859-1\"") != NULL);
        CHECK(strstr(body, "\"caff=E8\" inviato da") != NULL);
        free(body);
        pec_built_free(&b);
    }
}

static void expect_refused(struct pec_notice *n, const char *reason)
{
    struct pec_built b;
    char err[512] = "";

    memset(&b, 0x5a, sizeof(b));
    CHECK(pec_build_notice(&iss, n, &b, err, sizeof(err)) == -1);
    CHECK(b.body == NULL && b.headers.n == 0 && b.message_id == NULL);
    if (strstr(err, reason) == NULL) {
        fprintf(stderr, "refusal says \"%s\", expected \"%s\"\n", err, reason);
        CHECK(0);
    }
}

static void test_refusals(void)
{
    struct pec_daticert f = sample();
    struct pec_notice n = {.kind = PEC_NOTICE_CONSEGNA_COMPLETA, .facts = &f, .to = f.mittente};

    f.consegna = "luigi@pec-b.test";
    expect_refused(&n, "postacert.eml missing");
    n.kind = PEC_NOTICE_ACCETTAZIONE;
    n.to = "mario@pec-a.test\r\nBcc: x@example.com";
    expect_refused(&n, "To");
    n.to = f.mittente;
    n.kind = (enum pec_notice_kind)PEC_NOTICE_KIND_COUNT;
    expect_refused(&n, "unknown kind");
    n.kind = PEC_NOTICE_NON_ACCETTAZIONE; /* the reason is the caller's to give */
    expect_refused(&n, "errore");
    n.kind = PEC_NOTICE_MANCATA_CONSEGNA;
    f.consegna = NULL;
    expect_refused(&n, "consegna");
    n.kind = PEC_NOTICE_PRESA_IN_CARICO;
    expect_refused(&n, "ricezione");
}

/* An opaque signed original cannot be split: breve carries it whole. */
static void test_breve_opaque(void)
{
    static const char orig[] = "Subject: firmato\r\n"
                               "Content-Type: application/pkcs7-mime; name=\"smime.p7m\"\r\n"
                               "Content-Transfer-Encoding: base64\r\n"
                               "\r\n"
                               "MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n";
    struct pec_spool *sp = pec_spool_new(NULL, 1 << 20);
    struct pec_daticert f = sample();
    struct pec_notice n = {
        .kind = PEC_NOTICE_CONSEGNA_BREVE, .facts = &f, .to = f.mittente, .postacert = sp};
    struct pec_built b;

    f.consegna = "luigi@pec-b.test";
    CHECK(pec_spool_puts(sp, orig) == 0);
    if (build(&n, &b) == 0) {
        char *body = body_of(&b);
        CHECK(strstr(body, orig) != NULL);
        CHECK(strstr(body, ".hash") == NULL || strstr(body, "smime.p7m.hash") == NULL);
        free(body);
        pec_built_free(&b);
    } else {
        CHECK(0);
    }
    pec_spool_free(sp);
}

int main(void)
{
    setup();
    test_tables();
    test_headers();
    test_subjects();
    test_refusals();
    test_breve_opaque();
    pec_signer_free((struct pec_signer *)iss.signer);
    return check_exit();
}
