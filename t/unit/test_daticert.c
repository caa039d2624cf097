/*
 * test_daticert - daticert.xml written for every tipo and checked by an
 * independent validator (xmllint with the normative DTD and with ours), read
 * back unchanged, escaped, refused when the rules say so; hostile and broken
 * input rejected with a reason; the real providers' corpus parsed and, for
 * Aruba's files, rewritten byte for byte.
 */
#include "check.h"
#include "message/daticert.h"

#include <dirent.h>
#include <libxml/xmlerror.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#if LIBXML_VERSION >= 21200
typedef const xmlError test_xml_error;
#else
typedef xmlError test_xml_error;
#endif

static char normative_dtd[4096]; /* PEC_SHARED_DIR/spec/daticert.dtd, or "" */
static char embedded_dtd[64];    /* our DTD written to a temporary file */
static int have_xmllint;

/* ---- helpers ---- */

static struct pec_destinatario dests[] = {
    {"mario.rossi@pec.example.it", PEC_DEST_CERTIFICATO},
    {"anna.bianchi@example.com", PEC_DEST_ESTERNO},
};
static char *ricezioni[] = {"mario.rossi@pec.example.it", "luca.verdi@pec.example.it"};

/* a struct that satisfies the usage table for tipo */
static struct pec_daticert sample(enum pec_tipo tipo)
{
    struct pec_daticert d = {0};

    d.tipo = tipo;
    d.mittente = "giulia.neri@pec.provider.example";
    d.destinatari = dests;
    d.n_destinatari = 2;
    d.risposte = "giulia.neri@pec.provider.example";
    d.oggetto = "Fattura n. 12";
    d.gestore_emittente = "Provider di Prova S.p.A.";
    d.giorno = "31/03/2024";
    d.ora = "03:00:00";
    d.zona = "+0200";
    d.identificativo = "opec1.20240331010000.01234.7.0a1b2c3d@pec.provider.example";
    d.msgid = "<20240331.abc@client.example>";
    switch (tipo) {
    case PEC_TIPO_NON_ACCETTAZIONE:
        d.errore = PEC_ERRORE_ALTRO;
        d.errore_esteso = "5.7.1 - Provider di Prova S.p.A. - destinatario in Bcc";
        break;
    case PEC_TIPO_PRESA_IN_CARICO:
        d.ricezione = ricezioni;
        d.n_ricezione = 2;
        break;
    case PEC_TIPO_AVVENUTA_CONSEGNA:
        d.ricevuta = PEC_RICEVUTA_COMPLETA;
        d.consegna = "mario.rossi@pec.example.it";
        break;
    case PEC_TIPO_POSTA_CERTIFICATA:
        d.ricevuta = PEC_RICEVUTA_BREVE;
        break;
    case PEC_TIPO_ERRORE_CONSEGNA:
        d.errore = PEC_ERRORE_NO_DEST;
        d.consegna = "mario.rossi@pec.example.it";
        d.errore_esteso = "5.1.1 - Provider di Prova S.p.A. - indirizzo non valido";
        break;
    case PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA:
        d.consegna = "mario.rossi@pec.example.it";
        d.errore_esteso = "4.4.7 - Provider di Prova S.p.A. - nessuna conferma entro 12 ore";
        break;
    case PEC_TIPO_RILEVAZIONE_VIRUS:
        d.errore = PEC_ERRORE_VIRUS;
        d.consegna = "mario.rossi@pec.example.it";
        d.errore_esteso = "Eicar-Signature";
        break;
    default:
        break;
    }
    return d;
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* the name of the first field that differs, or NULL */
static const char *differs(const struct pec_daticert *a, const struct pec_daticert *b)
{
    if (a->tipo != b->tipo)
        return "tipo";
    if (a->errore != b->errore)
        return "errore";
    if (!same_str(a->mittente, b->mittente))
        return "mittente";
    if (a->n_destinatari != b->n_destinatari)
        return "n_destinatari";
    for (size_t i = 0; i < a->n_destinatari; i++)
        if (!same_str(a->destinatari[i].address, b->destinatari[i].address) ||
            a->destinatari[i].tipo != b->destinatari[i].tipo)
            return "destinatari";
    if (!same_str(a->risposte, b->risposte))
        return "risposte";
    if (!same_str(a->oggetto, b->oggetto))
        return "oggetto";
    if (!same_str(a->gestore_emittente, b->gestore_emittente))
        return "gestore_emittente";
    if (!same_str(a->giorno, b->giorno) || !same_str(a->ora, b->ora) || !same_str(a->zona, b->zona))
        return "data";
    if (!same_str(a->identificativo, b->identificativo))
        return "identificativo";
    if (!same_str(a->msgid, b->msgid))
        return "msgid";
    if (a->ricevuta != b->ricevuta)
        return "ricevuta";
    if (!same_str(a->consegna, b->consegna))
        return "consegna";
    if (a->n_ricezione != b->n_ricezione)
        return "n_ricezione";
    for (size_t i = 0; i < a->n_ricezione; i++)
        if (!same_str(a->ricezione[i], b->ricezione[i]))
            return "ricezione";
    if (!same_str(a->errore_esteso, b->errore_esteso))
        return "errore_esteso";
    return NULL;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    if (fp == NULL || fwrite(data, 1, len, fp) != len || fclose(fp) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (fp == NULL)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, fp) == (size_t)n) {
            buf[n] = '\0';
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(fp);
    return buf;
}

/* xmllint --noout --dtdvalid dtd on the document: 1 valid, 0 not */
static int xmllint_valid(const char *dtd, const char *xml, size_t len)
{
    char path[] = "/tmp/test_daticert.XXXXXX";
    char cmd[8192];
    int fd = mkstemp(path), rc;

    if (fd < 0) {
        perror("mkstemp");
        return 0;
    }
    close(fd);
    write_file(path, xml, len);
    snprintf(cmd, sizeof(cmd), "xmllint --noout --dtdvalid '%s' '%s'", dtd, path);
    rc = system(cmd);
    unlink(path);
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

static void check_external_validity(const char *xml, size_t len)
{
    static int control_done;

    if (!have_xmllint)
        return;
    if (!control_done) {
        /* the checker itself must say no to an invalid document */
        static const char invalid[] = "<postacert tipo=\"accettazione\"><dati/></postacert>";
        control_done = 1;
        printf("xmllint on an invalid document, expected to complain:\n");
        fflush(stdout);
        CHECK(!xmllint_valid(embedded_dtd, invalid, sizeof(invalid) - 1));
    }
    if (normative_dtd[0])
        CHECK(xmllint_valid(normative_dtd, xml, len));
    CHECK(xmllint_valid(embedded_dtd, xml, len));
}

/* ---- names ---- */

static void test_names(void)
{
    for (int t = 0; t < PEC_TIPO_COUNT; t++) {
        enum pec_tipo back;
        CHECK(pec_tipo_name((enum pec_tipo)t) != NULL);
        CHECK(pec_tipo_parse(pec_tipo_name((enum pec_tipo)t), &back) == 0 &&
              back == (enum pec_tipo)t);
    }
    for (int e = 0; e < PEC_ERRORE_COUNT; e++) {
        enum pec_errore back;
        CHECK(pec_errore_parse(pec_errore_name((enum pec_errore)e), &back) == 0 &&
              back == (enum pec_errore)e);
    }
    CHECK_STR(pec_tipo_name(PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA), "preavviso-errore-consegna");
    CHECK_STR(pec_errore_name(PEC_ERRORE_NO_DOMINIO), "no-dominio");
    CHECK_STR(pec_ricevuta_name(PEC_RICEVUTA_SINTETICA), "sintetica");
    CHECK_STR(pec_dest_tipo_name(PEC_DEST_ESTERNO), "esterno");
    CHECK(pec_ricevuta_name(PEC_RICEVUTA_NONE) == NULL);
    CHECK(pec_tipo_name((enum pec_tipo)PEC_TIPO_COUNT) == NULL);
    CHECK(pec_errore_name((enum pec_errore) - 1) == NULL);

    enum pec_tipo t;
    enum pec_ricevuta r;
    CHECK(pec_tipo_parse("mancata-consegna", &t) == -1); /* not a value: errore-consegna is */
    CHECK(pec_tipo_parse("Accettazione", &t) == -1);
    CHECK(pec_tipo_parse(NULL, &t) == -1);
    CHECK(pec_ricevuta_parse("breve", &r) == 0 && r == PEC_RICEVUTA_BREVE);
    CHECK(pec_ricevuta_parse("complet", &r) == -1);
}

/* ---- writing ---- */

static void test_every_tipo(void)
{
    for (int t = 0; t < PEC_TIPO_COUNT; t++) {
        struct pec_daticert d = sample((enum pec_tipo)t), back;
        char err[256] = "", head[128], *xml = NULL;
        size_t len = 0;
        const char *diff;

        CHECK(pec_daticert_write(&d, &xml, &len, err, sizeof(err)) == 0);
        if (xml == NULL) {
            fprintf(stderr, "  %s: %s\n", pec_tipo_name(d.tipo), err);
            continue;
        }
        CHECK(strlen(xml) == len);
        snprintf(head, sizeof(head),
                 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<postacert tipo=\"%s\" "
                 "errore=\"%s\">\n    <intestazione>\n        <mittente>",
                 pec_tipo_name(d.tipo), pec_errore_name(d.errore));
        CHECK(strncmp(xml, head, strlen(head)) == 0);
        CHECK(strstr(xml, "DOCTYPE") == NULL);
        CHECK(len > 13 && strcmp(xml + len - 13, "</postacert>\n") == 0);
        check_external_validity(xml, len);

        CHECK(pec_daticert_parse(xml, len, &back, err, sizeof(err)) == 0);
        diff = differs(&d, &back);
        CHECK(diff == NULL);
        if (diff != NULL)
            fprintf(stderr, "  %s: %s differs after the round trip\n", pec_tipo_name(d.tipo), diff);
        pec_daticert_free(&back);
        free(xml);
    }
}

/* the exact layout, as real providers write it */
static void test_golden(void)
{
    static const char expected[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<postacert tipo=\"avvenuta-consegna\" errore=\"nessuno\">\n"
        "    <intestazione>\n"
        "        <mittente>giulia.neri@pec.provider.example</mittente>\n"
        "        <destinatari tipo=\"certificato\">mario.rossi@pec.example.it</destinatari>\n"
        "        <destinatari tipo=\"esterno\">anna.bianchi@example.com</destinatari>\n"
        "        <risposte>giulia.neri@pec.provider.example</risposte>\n"
        "        <oggetto>Fattura n. 12</oggetto>\n"
        "    </intestazione>\n"
        "    <dati>\n"
        "        <gestore-emittente>Provider di Prova S.p.A.</gestore-emittente>\n"
        "        <data zona=\"+0200\">\n"
        "            <giorno>31/03/2024</giorno>\n"
        "            <ora>03:00:00</ora>\n"
        "        </data>\n"
        "        <identificativo>opec1.20240331010000.01234.7.0a1b2c3d@pec.provider.example"
        "</identificativo>\n"
        "        <msgid>&lt;20240331.abc@client.example&gt;</msgid>\n"
        "        <ricevuta tipo=\"completa\" />\n"
        "        <consegna>mario.rossi@pec.example.it</consegna>\n"
        "    </dati>\n"
        "</postacert>\n";
    struct pec_daticert d = sample(PEC_TIPO_AVVENUTA_CONSEGNA);
    char err[256] = "", *xml = NULL;
    size_t len = 0;

    CHECK(pec_daticert_write(&d, &xml, &len, err, sizeof(err)) == 0);
    CHECK_STR(xml, expected);
    CHECK(len == sizeof(expected) - 1);
    free(xml);

    /* optional elements absent, ricezione repeated */
    d = sample(PEC_TIPO_PRESA_IN_CARICO);
    d.oggetto = NULL;
    d.msgid = NULL;
    CHECK(pec_daticert_write(&d, &xml, &len, err, sizeof(err)) == 0);
    CHECK(xml != NULL && strstr(xml, "<oggetto>") == NULL && strstr(xml, "<msgid>") == NULL);
    CHECK(xml != NULL &&
          strstr(xml, "</identificativo>\n        <ricezione>mario.rossi@pec.example."
                      "it</ricezione>\n        <ricezione>luca.verdi@") != NULL);
    free(xml);
}

static void test_escaping(void)
{
    struct pec_daticert d = sample(PEC_TIPO_ACCETTAZIONE), back;
    char err[256] = "", *xml = NULL;
    size_t len = 0;

    d.oggetto = "<b>Fattura & \"nota\" 'x' ]]> perché € \xf0\x9f\x98\x80\ttab";
    d.msgid = "<a&b<c>@x>";
    d.mittente = "o'brien&co@pec.example.it";
    d.gestore_emittente = "Prova \"&\" Figli S.r.l. <PEC>";
    CHECK(pec_daticert_write(&d, &xml, &len, err, sizeof(err)) == 0);
    if (xml == NULL) {
        fprintf(stderr, "  escaping: %s\n", err);
        return;
    }
    CHECK(strstr(xml,
                 "<oggetto>&lt;b&gt;Fattura &amp; \"nota\" 'x' ]]&gt; perché € \xf0\x9f\x98\x80"
                 "\ttab</oggetto>") != NULL);
    CHECK(strstr(xml, "<msgid>&lt;a&amp;b&lt;c&gt;@x&gt;</msgid>") != NULL);
    CHECK(strstr(xml, "<mittente>o'brien&amp;co@pec.example.it</mittente>") != NULL);
    CHECK(strstr(xml, "&#") == NULL); /* non-ASCII written as UTF-8, not as references */
    check_external_validity(xml, len);
    CHECK(pec_daticert_parse(xml, len, &back, err, sizeof(err)) == 0);
    CHECK(differs(&d, &back) == NULL);
    pec_daticert_free(&back);
    free(xml);

    /* an empty subject is still an element */
    d.oggetto = "";
    CHECK(pec_daticert_write(&d, &xml, &len, err, sizeof(err)) == 0);
    CHECK(pec_daticert_parse(xml, len, &back, err, sizeof(err)) == 0);
    CHECK_STR(back.oggetto, "");
    pec_daticert_free(&back);
    free(xml);
}

struct refusal {
    const char *what;
    void (*spoil)(struct pec_daticert *d);
    enum pec_tipo tipo;
    const char *reason; /* substring expected in the error */
};

static void no_ricezione(struct pec_daticert *d)
{
    d->ricezione = NULL;
    d->n_ricezione = 0;
}
static void no_consegna(struct pec_daticert *d)
{
    d->consegna = NULL;
}
static void no_ricevuta(struct pec_daticert *d)
{
    d->ricevuta = PEC_RICEVUTA_NONE;
}
static void no_destinatari(struct pec_daticert *d)
{
    d->n_destinatari = 0;
}
static void add_consegna(struct pec_daticert *d)
{
    d->consegna = "x@pec.example.it";
}
static void add_ricezione(struct pec_daticert *d)
{
    d->ricezione = ricezioni;
    d->n_ricezione = 1;
}
static void add_ricevuta(struct pec_daticert *d)
{
    d->ricevuta = PEC_RICEVUTA_SINTETICA;
}
static void add_errore_esteso(struct pec_daticert *d)
{
    d->errore_esteso = "5.0.0 - x - y";
}
static void errore_virus(struct pec_daticert *d)
{
    d->errore = PEC_ERRORE_VIRUS;
}
static void errore_nessuno(struct pec_daticert *d)
{
    d->errore = PEC_ERRORE_NESSUNO;
}
static void errore_altro(struct pec_daticert *d)
{
    d->errore = PEC_ERRORE_ALTRO;
}
static void errore_bogus(struct pec_daticert *d)
{
    d->errore = (enum pec_errore)17;
}
static void no_errore_esteso(struct pec_daticert *d)
{
    d->errore_esteso = NULL;
}
static void latin1_oggetto(struct pec_daticert *d)
{
    d->oggetto = "caff\xe8 e cornetto";
}
static void control_oggetto(struct pec_daticert *d)
{
    d->oggetto = "ding\x07";
}
static void newline_oggetto(struct pec_daticert *d)
{
    d->oggetto = "two\nlines";
}
static void nonchar_oggetto(struct pec_daticert *d)
{
    d->oggetto = "x\xef\xbf\xbe";
}
static void overlong_mittente(struct pec_daticert *d)
{
    d->mittente = "a\xc0\xaf"
                  "b@pec.example.it";
}
static void no_mittente(struct pec_daticert *d)
{
    d->mittente = NULL;
}
static void empty_risposte(struct pec_daticert *d)
{
    d->risposte = "";
}
static void empty_identificativo(struct pec_daticert *d)
{
    d->identificativo = "";
}
static void no_gestore(struct pec_daticert *d)
{
    d->gestore_emittente = NULL;
}
static void iso_giorno(struct pec_daticert *d)
{
    d->giorno = "2024-03-31";
}
static void short_ora(struct pec_daticert *d)
{
    d->ora = "3:00:00";
}
static void colon_zona(struct pec_daticert *d)
{
    d->zona = "+01:00";
}
static void bare_msgid(struct pec_daticert *d)
{
    d->msgid = "abc@x";
}
static void bogus_tipo(struct pec_daticert *d)
{
    d->tipo = (enum pec_tipo)99;
}
static void bogus_ricevuta(struct pec_daticert *d)
{
    d->ricevuta = (enum pec_ricevuta)9;
}
static struct pec_destinatario bad_dests[] = {{"", PEC_DEST_CERTIFICATO}};
static void empty_destinatario(struct pec_daticert *d)
{
    d->destinatari = bad_dests;
    d->n_destinatari = 1;
}
static struct pec_destinatario bogus_dests[] = {{"a@b.it", (enum pec_dest_tipo)5}};
static void bogus_dest_tipo(struct pec_daticert *d)
{
    d->destinatari = bogus_dests;
    d->n_destinatari = 1;
}

static void test_refusals(void)
{
    static const struct refusal table[] = {
        {"presa in carico without ricezione", no_ricezione, PEC_TIPO_PRESA_IN_CARICO,
         "presa-in-carico needs ricezione"},
        {"consegna without consegna", no_consegna, PEC_TIPO_AVVENUTA_CONSEGNA,
         "avvenuta-consegna needs consegna"},
        {"consegna without ricevuta", no_ricevuta, PEC_TIPO_AVVENUTA_CONSEGNA,
         "avvenuta-consegna needs ricevuta"},
        {"busta without ricevuta", no_ricevuta, PEC_TIPO_POSTA_CERTIFICATA,
         "posta-certificata needs ricevuta"},
        {"no destinatari", no_destinatari, PEC_TIPO_ACCETTAZIONE, "no destinatari"},
        {"accettazione with consegna", add_consegna, PEC_TIPO_ACCETTAZIONE,
         "accettazione must not have consegna"},
        {"accettazione with ricevuta", add_ricevuta, PEC_TIPO_ACCETTAZIONE,
         "must not have ricevuta"},
        {"busta with ricezione", add_ricezione, PEC_TIPO_POSTA_CERTIFICATA,
         "must not have ricezione"},
        {"consegna with errore-esteso", add_errore_esteso, PEC_TIPO_AVVENUTA_CONSEGNA,
         "must not have errore-esteso"},
        {"accettazione with errore virus", errore_virus, PEC_TIPO_ACCETTAZIONE,
         "errore virus not allowed with tipo accettazione"},
        {"errore-consegna with errore nessuno", errore_nessuno, PEC_TIPO_ERRORE_CONSEGNA,
         "errore nessuno not allowed"},
        {"non-accettazione with errore nessuno", errore_nessuno, PEC_TIPO_NON_ACCETTAZIONE,
         "errore nessuno not allowed"},
        {"rilevazione-virus with errore altro", errore_altro, PEC_TIPO_RILEVAZIONE_VIRUS,
         "errore altro not allowed"},
        {"errore out of range", errore_bogus, PEC_TIPO_ACCETTAZIONE, "errore (unknown)"},
        {"errore-consegna without errore-esteso", no_errore_esteso, PEC_TIPO_ERRORE_CONSEGNA,
         "needs errore-esteso"},
        {"Latin-1 oggetto", latin1_oggetto, PEC_TIPO_ACCETTAZIONE, "oggetto is not valid UTF-8"},
        {"BEL in oggetto", control_oggetto, PEC_TIPO_ACCETTAZIONE, "control character U+0007"},
        {"newline in oggetto", newline_oggetto, PEC_TIPO_ACCETTAZIONE, "U+000A"},
        {"U+FFFE in oggetto", nonchar_oggetto, PEC_TIPO_ACCETTAZIONE, "U+FFFE"},
        {"overlong UTF-8 in mittente", overlong_mittente, PEC_TIPO_ACCETTAZIONE,
         "mittente is not valid UTF-8"},
        {"no mittente", no_mittente, PEC_TIPO_ACCETTAZIONE, "mittente missing"},
        {"empty risposte", empty_risposte, PEC_TIPO_ACCETTAZIONE, "risposte missing"},
        {"empty identificativo", empty_identificativo, PEC_TIPO_ACCETTAZIONE,
         "identificativo missing"},
        {"no gestore", no_gestore, PEC_TIPO_ACCETTAZIONE, "gestore-emittente missing"},
        {"ISO date", iso_giorno, PEC_TIPO_ACCETTAZIONE, "giorno is not dd/mm/yyyy"},
        {"short time", short_ora, PEC_TIPO_ACCETTAZIONE, "ora is not hh:mm:ss"},
        {"zone with colon", colon_zona, PEC_TIPO_ACCETTAZIONE, "zona is not [+|-]hhmm"},
        {"msgid without brackets", bare_msgid, PEC_TIPO_ACCETTAZIONE, "angle brackets"},
        {"tipo out of range", bogus_tipo, PEC_TIPO_ACCETTAZIONE, "unknown tipo"},
        {"ricevuta out of range", bogus_ricevuta, PEC_TIPO_POSTA_CERTIFICATA,
         "ricevuta has no valid tipo"},
        {"empty destinatario", empty_destinatario, PEC_TIPO_ACCETTAZIONE, "destinatari missing"},
        {"destinatario tipo out of range", bogus_dest_tipo, PEC_TIPO_ACCETTAZIONE,
         "has no valid tipo"},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        struct pec_daticert d = sample(table[i].tipo);
        char err[256] = "", *xml = (char *)"untouched";
        size_t len = 1;

        table[i].spoil(&d);
        CHECK(pec_daticert_check(&d, NULL, 0) == -1);
        CHECK(pec_daticert_write(&d, &xml, &len, err, sizeof(err)) == -1);
        CHECK(xml == NULL && len == 0);
        CHECK(strncmp(err, "daticert.xml: ", 14) == 0);
        if (strstr(err, table[i].reason) == NULL) {
            CHECK(strstr(err, table[i].reason) != NULL);
            fprintf(stderr, "  %s: got \"%s\", wanted \"%s\"\n", table[i].what, err,
                    table[i].reason);
        }
    }
    /* what the table allows stays allowed */
    struct pec_daticert ok = sample(PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA);
    ok.errore_esteso = NULL;
    CHECK(pec_daticert_check(&ok, NULL, 0) == 0);
    ok.errore = PEC_ERRORE_ALTRO;
    CHECK(pec_daticert_check(&ok, NULL, 0) == 0);
    ok = sample(PEC_TIPO_NON_ACCETTAZIONE);
    ok.errore = PEC_ERRORE_VIRUS;
    CHECK(pec_daticert_check(&ok, NULL, 0) == 0);
}

/* ---- UTF-8 ---- */

static void check_sanitize(const char *in, size_t len, const char *want)
{
    char *out = pec_utf8_sanitize(in, len);
    CHECK_STR(out, want);
    free(out);
}

static unsigned long lcg_state = 12345;
static unsigned lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005UL + 1442695040888963407UL;
    return (unsigned)(lcg_state >> 33);
}

static void test_sanitize(void)
{
    check_sanitize("caff\xe8", 5, "caff\xc3\xa8");
    check_sanitize("perch\xc3\xa9 \xe2\x82\xac", 11, "perch\xc3\xa9 \xe2\x82\xac");
    check_sanitize("a\x01"
                   "b\r\nc\td\x7f",
                   9, "abc\td\x7f");
    check_sanitize("nul\0x", 5, "nulx");
    check_sanitize("\xc0\xaf", 2, "\xc3\x80\xc2\xaf");                         /* overlong '/' */
    check_sanitize("\xed\xa0\x80", 3, "\xc3\xad\xc2\xa0\xc2\x80");             /* a surrogate */
    check_sanitize("\xf4\x90\x80\x80", 4, "\xc3\xb4\xc2\x90\xc2\x80\xc2\x80"); /* > U+10FFFF */
    check_sanitize("end\xe2\x82", 5, "end\xc3\xa2\xc2\x82");                   /* truncated */
    check_sanitize("x\xef\xbf\xbey\xef\xbf\xbf", 8, "xy");
    check_sanitize("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80");
    check_sanitize("", 0, "");

    /* whatever the bytes, the result is accepted by the writer and reads back the same */
    size_t failures = 0;
    for (int i = 0; i < 3000; i++) {
        char raw[96], err[256], *xml = NULL;
        size_t n = lcg() % sizeof(raw), len;
        struct pec_daticert d = sample(PEC_TIPO_ACCETTAZIONE), back;

        for (size_t k = 0; k < n; k++)
            raw[k] = (char)(lcg() & 0xff);
        d.oggetto = pec_utf8_sanitize(raw, n);
        if (pec_daticert_write(&d, &xml, &len, err, sizeof(err)) != 0 ||
            pec_daticert_parse(xml, len, &back, err, sizeof(err)) != 0) {
            failures++;
        } else {
            if (!same_str(back.oggetto, d.oggetto))
                failures++;
            pec_daticert_free(&back);
        }
        free(xml);
        free(d.oggetto);
    }
    CHECK(failures == 0);
}

/* ---- parsing ---- */

static const char good_doc[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<postacert tipo=\"accettazione\" errore=\"nessuno\">\n"
    "  <intestazione>\n"
    "    <mittente>a@pec.example.it</mittente>\n"
    "    <destinatari tipo=\"certificato\">b@pec.example.it</destinatari>\n"
    "    <risposte>a@pec.example.it</risposte>\n"
    "    <oggetto>prova</oggetto>\n"
    "  </intestazione>\n"
    "  <dati>\n"
    "    <gestore-emittente>Prova S.p.A.</gestore-emittente>\n"
    "    <data zona=\"+0100\"><giorno>05/12/2024</giorno><ora>00:02:10</ora></data>\n"
    "    <identificativo>opec1.x@pec.example.it</identificativo>\n"
    "    <msgid>&lt;m@client&gt;</msgid>\n"
    "  </dati>\n"
    "</postacert>\n";

/* good_doc with the first occurrence of from replaced by to */
static char *good_but(const char *from, const char *to)
{
    const char *at = strstr(good_doc, from);
    size_t head = at ? (size_t)(at - good_doc) : 0;
    char *out = malloc(sizeof(good_doc) + strlen(to) + 1);

    if (at == NULL) {
        fprintf(stderr, "test bug: \"%s\" not in good_doc\n", from);
        exit(1);
    }
    memcpy(out, good_doc, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

static void test_parse_good(void)
{
    struct pec_daticert d;
    char err[256] = "";
    char *doc;

    CHECK(pec_daticert_parse(good_doc, sizeof(good_doc) - 1, &d, err, sizeof(err)) == 0);
    CHECK(d.tipo == PEC_TIPO_ACCETTAZIONE && d.errore == PEC_ERRORE_NESSUNO);
    CHECK_STR(d.mittente, "a@pec.example.it");
    CHECK(d.n_destinatari == 1 && d.destinatari[0].tipo == PEC_DEST_CERTIFICATO);
    CHECK_STR(d.zona, "+0100");
    CHECK_STR(d.giorno, "05/12/2024");
    CHECK_STR(d.ora, "00:02:10");
    CHECK_STR(d.msgid, "<m@client>");
    CHECK(d.ricevuta == PEC_RICEVUTA_NONE && d.consegna == NULL && d.n_ricezione == 0);
    pec_daticert_free(&d);
    CHECK(d.mittente == NULL && d.destinatari == NULL);
    pec_daticert_free(NULL);

    /* what some providers write: an external DOCTYPE (never loaded), a style sheet, CRLF */
    doc =
        good_but("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<?xml-stylesheet type=\"text/xsl\" "
                 "href=\"https://127.0.0.1:1/postacert.xsl\"?>\r\n<!DOCTYPE postacert PUBLIC "
                 "\"posta certificata\" \"https://127.0.0.1:1/postacert.dtd\">\r\n");
    CHECK(pec_daticert_parse(doc, strlen(doc), &d, err, sizeof(err)) == 0);
    pec_daticert_free(&d);
    free(doc);

    /* defaults of the DTD, comments, white space around values */
    doc = good_but("<destinatari tipo=\"certificato\">b@pec.example.it</destinatari>",
                   "<destinatari>\n   b@pec.example.it <!-- x --></destinatari>");
    CHECK(pec_daticert_parse(doc, strlen(doc), &d, err, sizeof(err)) == 0);
    CHECK(d.n_destinatari == 1 && d.destinatari[0].tipo == PEC_DEST_CERTIFICATO);
    CHECK(d.n_destinatari == 1 && strcmp(d.destinatari[0].address, "b@pec.example.it") == 0);
    pec_daticert_free(&d);
    free(doc);
    doc = good_but(" errore=\"nessuno\"", "");
    CHECK(pec_daticert_parse(doc, strlen(doc), &d, err, sizeof(err)) == 0);
    CHECK(d.errore == PEC_ERRORE_NESSUNO);
    pec_daticert_free(&d);
    free(doc);
    doc = good_but("<oggetto>prova</oggetto>", "<oggetto><![CDATA[<a> & b]]> c</oggetto>");
    CHECK(pec_daticert_parse(doc, strlen(doc), &d, err, sizeof(err)) == 0);
    CHECK_STR(d.oggetto, "<a> & b c");
    pec_daticert_free(&d);
    free(doc);

    /* another declared encoding comes out as UTF-8 */
    char *latin = good_but("<oggetto>prova</oggetto>", "<oggetto>caff\xe8</oggetto>");
    doc = malloc(strlen(latin) + 16);
    strcpy(doc, "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>");
    strcat(doc, strchr(latin, '\n'));
    CHECK(pec_daticert_parse(doc, strlen(doc), &d, err, sizeof(err)) == 0);
    CHECK_STR(d.oggetto, "caff\xc3\xa8");
    pec_daticert_free(&d);
    free(doc);
    free(latin);
}

struct bad_input {
    const char *what;
    char *xml; /* owned */
    size_t len;
    const char *reason; /* substring expected in the error */
};

static struct bad_input bad(const char *what, char *xml, size_t len, const char *reason)
{
    struct bad_input b = {what, xml, len ? len : strlen(xml), reason};
    return b;
}

static char *copy(const char *s)
{
    return strdup(s);
}

static char *copyn(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

static char *billion_laughs(void)
{
    char *s = malloc(4096), *p = s;

    p += sprintf(p, "<?xml version=\"1.0\"?>\n<!DOCTYPE postacert [\n <!ENTITY lol0 \"lol\">\n");
    for (int i = 1; i < 10; i++) {
        p += sprintf(p, " <!ENTITY lol%d \"", i);
        for (int k = 0; k < 10; k++)
            p += sprintf(p, "&lol%d;", i - 1);
        p += sprintf(p, "\">\n");
    }
    sprintf(p, "]>\n<postacert tipo=\"accettazione\"><intestazione><mittente>&lol9;</mittente>"
               "<destinatari>b@x</destinatari><risposte>a@x</risposte></intestazione><dati>"
               "<gestore-emittente>g</gestore-emittente><data zona=\"+0100\"><giorno>g</giorno>"
               "<ora>o</ora></data><identificativo>i</identificativo></dati></postacert>\n");
    return s;
}

static char *junk(size_t n, int printable)
{
    char *s = malloc(n + 1);

    for (size_t i = 0; i < n; i++)
        s[i] = printable ? (char)(' ' + lcg() % 95) : (char)(lcg() & 0xff);
    s[n] = '\0';
    return s;
}

static char *deep(int levels)
{
    char *s = malloc((size_t)levels * 7 + 64), *p = s;

    p += sprintf(p, "<postacert tipo=\"accettazione\">");
    for (int i = 0; i < levels; i++)
        p += sprintf(p, "<a>");
    for (int i = 0; i < levels; i++)
        p += sprintf(p, "</a>");
    sprintf(p, "</postacert>");
    return s;
}

static void test_parse_bad(void)
{
    size_t big = 5u * 1024 * 1024;
    char *huge = malloc(big);
    char *all_bytes = malloc(256);
    char *half = copy(good_doc);
    struct bad_input table[40];
    size_t n = 0;

    memset(huge, ' ', big);
    memcpy(huge, good_doc, sizeof(good_doc) - 1);
    for (int i = 0; i < 256; i++)
        all_bytes[i] = (char)i;
    half[sizeof(good_doc) / 2] = '\0';

    table[n++] = bad("empty file", copy(""), 0, "empty");
    table[n++] = bad("only white space", copy(" \n\t\n"), 0, "not well-formed");
    table[n++] =
        bad("not well-formed", copy("<postacert tipo=\"accettazione\"><intestazione></postacert>"),
            0, "not well-formed XML at line 1");
    table[n++] = bad("tag mismatch on line 6",
                     good_but("<risposte>a@pec.example.it</risposte>", "<risposte>a</mittente>"), 0,
                     "not well-formed XML at line 6");
    table[n++] = bad("wrong root", copy("<?xml version=\"1.0\"?>\n<ricevuta tipo=\"completa\"/>"),
                     0, "root element is <ricevuta>, not <postacert>");
    table[n++] =
        bad("root in a namespace", good_but("<postacert tipo", "<postacert xmlns=\"urn:x\" tipo"),
            0, "namespace");
    table[n++] = bad("unknown tipo", good_but("tipo=\"accettazione\"", "tipo=\"mancata-consegna\""),
                     0, "not valid at line 2");
    table[n++] =
        bad("unknown errore", good_but("errore=\"nessuno\"", "errore=\"grave\""), 0, "not valid");
    table[n++] = bad("tipo missing", good_but(" tipo=\"accettazione\"", ""), 0, "not valid");
    table[n++] = bad("dati missing",
                     good_but("<dati>\n    <gestore-emittente>Prova S.p.A.</gestore-emittente>\n"
                              "    <data zona=\"+0100\"><giorno>05/12/2024</giorno><ora>00:02:10"
                              "</ora></data>\n    <identificativo>opec1.x@pec.example.it"
                              "</identificativo>\n    <msgid>&lt;m@client&gt;</msgid>\n  </dati>\n",
                              ""),
                     0, "not valid");
    table[n++] = bad("wrong element order",
                     good_but("<msgid>&lt;m@client&gt;</msgid>",
                              "<ricevuta tipo=\"completa\"/><msgid>&lt;m@client&gt;</msgid>"),
                     0, "not valid");
    table[n++] =
        bad("unknown element", good_but("<msgid>", "<firma>x</firma><msgid>"), 0, "not valid");
    table[n++] = bad("zona missing", good_but(" zona=\"+0100\"", ""), 0, "not valid");
    table[n++] = bad("ricevuta tipo unknown",
                     good_but("</msgid>", "</msgid><ricevuta tipo=\"lunga\"/>"), 0, "not valid");
    table[n++] = bad("billion laughs", billion_laughs(), 0, "internal subset");
    table[n++] = bad("external entity",
                     copy("<?xml version=\"1.0\"?>\n<!DOCTYPE postacert [<!ENTITY xxe SYSTEM "
                          "\"file:///etc/passwd\">]>\n<postacert tipo=\"accettazione\">"
                          "<intestazione><mittente>&xxe;</mittente></intestazione></postacert>"),
                     0, "internal subset");
    table[n++] =
        bad("external parameter entity",
            copy("<?xml version=\"1.0\"?>\n<!DOCTYPE postacert [<!ENTITY % p SYSTEM "
                 "\"http://127.0.0.1:1/x.dtd\"> %p;]>\n<postacert tipo=\"accettazione\"/>"),
            0, "internal subset");
    table[n++] = bad("attribute default smuggled in",
                     good_but("<postacert tipo=\"accettazione\" errore=\"nessuno\">",
                              "<!DOCTYPE postacert [<!ATTLIST postacert errore CDATA \"virus\">]>\n"
                              "<postacert tipo=\"accettazione\">"),
                     0, "internal subset");
    table[n++] = bad("undeclared entity behind an external DOCTYPE",
                     copy("<!DOCTYPE postacert SYSTEM \"file:///etc/passwd\"><postacert "
                          "tipo=\"accettazione\"><intestazione><mittente>&passwd;</mittente>"
                          "<destinatari>b@x</destinatari><risposte>a@x</risposte></intestazione>"
                          "<dati><gestore-emittente>g</gestore-emittente><data zona=\"+0100\">"
                          "<giorno>g</giorno><ora>o</ora></data><identificativo>i</identificativo>"
                          "</dati></postacert>"),
                     0, "entity reference");
    table[n++] = bad("1 MB of junk", junk(1000000, 1), 0, "not well-formed");
    table[n++] = bad("binary", all_bytes, 256, "not well-formed");
    table[n++] = bad("NUL inside", copy(good_doc), sizeof(good_doc) - 1, "not well-formed");
    table[n - 1].xml[100] = '\0';
    table[n++] = bad("truncated", half, 0, "not well-formed");
    table[n++] = bad("too large", huge, big, "too large");
    table[n++] = bad("10000 levels deep", deep(10000), 0, "not well-formed");
    table[n++] = bad("busta without ricevuta",
                     good_but("tipo=\"accettazione\"", "tipo=\"posta-certificata\""), 0,
                     "element ricevuta missing (required for posta-certificata)");
    table[n++] = bad("consegna without consegna",
                     good_but("tipo=\"accettazione\"", "tipo=\"avvenuta-consegna\""), 0,
                     "element consegna missing");
    table[n++] = bad("presa in carico without ricezione",
                     good_but("tipo=\"accettazione\"", "tipo=\"presa-in-carico\""), 0,
                     "element ricezione missing");
    table[n++] = bad("empty identificativo", good_but("opec1.x@pec.example.it", " "), 0,
                     "identificativo missing");
    table[n++] = bad("truncated UTF-16", copyn("\xff\xfe<\0p\0", 6), 6, "not well-formed");

    for (size_t i = 0; i < n; i++) {
        struct pec_daticert d;
        char err[256] = "";
        int rc;

        memset(&d, 0xa5, sizeof(d));
        rc = pec_daticert_parse(table[i].xml, table[i].len, &d, err, sizeof(err));
        CHECK(rc == -1);
        CHECK(d.mittente == NULL && d.destinatari == NULL && d.identificativo == NULL);
        CHECK(strncmp(err, "daticert.xml: ", 14) == 0);
        if (rc != -1 || strstr(err, table[i].reason) == NULL) {
            CHECK(strstr(err, table[i].reason) != NULL);
            fprintf(stderr, "  %s: rc %d, got \"%s\", wanted \"%s\"\n", table[i].what, rc, err,
                    table[i].reason);
        }
        printf("rejected %-45s %s\n", table[i].what, err);
        if (rc == 0)
            pec_daticert_free(&d);
        free(table[i].xml);
    }
}

/* ---- libxml2 state of the calling program ---- */

static int app_errors;
static void app_handler(void *ctx, test_xml_error *e)
{
    app_errors++;
}

static void test_error_handler_kept(void)
{
    int marker;
    char *doc = good_but("errore=\"nessuno\"", "errore=\"grave\"");
    struct pec_daticert d;
    char err[256] = "";

    xmlSetStructuredErrorFunc(&marker, app_handler);
    CHECK(pec_daticert_parse(doc, strlen(doc), &d, err, sizeof(err)) == -1);
    CHECK(strstr(err, "grave") != NULL);
    CHECK(app_errors == 0);
    CHECK(xmlStructuredError == app_handler);
    CHECK(xmlStructuredErrorContext == &marker);
    xmlSetStructuredErrorFunc(NULL, NULL);
    free(doc);
}

/* ---- threads: the shared DTD ---- */

static int thread_failures;

static void *round_trips(void *arg)
{
    int base = (int)(long)arg;

    for (int i = 0; i < 400; i++) {
        struct pec_daticert d = sample((enum pec_tipo)((base + i) % PEC_TIPO_COUNT)), back;
        char err[256], *xml = NULL;
        size_t len;

        if (pec_daticert_write(&d, &xml, &len, err, sizeof(err)) != 0 ||
            pec_daticert_parse(xml, len, &back, err, sizeof(err)) != 0) {
            __atomic_add_fetch(&thread_failures, 1, __ATOMIC_RELAXED);
        } else {
            if (differs(&d, &back) != NULL)
                __atomic_add_fetch(&thread_failures, 1, __ATOMIC_RELAXED);
            pec_daticert_free(&back);
        }
        free(xml);
        /* and an invalid one, so error capture runs concurrently too */
        if (pec_daticert_parse(good_doc, 40, &back, err, sizeof(err)) != -1)
            __atomic_add_fetch(&thread_failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];

    for (long i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, round_trips, (void *)i) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(thread_failures == 0);
}

/* ---- the DTDs ---- */

/* declarations only: no XML declaration, no comments, white space collapsed */
static char *declarations(const char *dtd)
{
    char *out = malloc(strlen(dtd) + 1), *o = out;
    int space = 0;

    for (const char *p = dtd; *p;) {
        if (strncmp(p, "<!--", 4) == 0 || strncmp(p, "<?", 2) == 0) {
            const char *end = strstr(p, p[1] == '!' ? "-->" : "?>");
            p = end ? end + (p[1] == '!' ? 3 : 2) : p + strlen(p);
            continue;
        }
        if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            space = 1;
            p++;
            continue;
        }
        if (space && o != out)
            *o++ = ' ';
        space = 0;
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

static void test_dtd_matches(void)
{
    size_t len;
    char *text, *ours, *theirs;

    CHECK(pec_daticert_dtd_len == strlen(pec_daticert_dtd));
    if (!normative_dtd[0])
        return;
    text = read_file(normative_dtd, &len);
    CHECK(text != NULL);
    if (text == NULL)
        return;
    theirs = declarations(text);
    ours = declarations(pec_daticert_dtd);
    CHECK_STR(ours, theirs);
    free(text);
    free(theirs);
    free(ours);
}

/* ---- the corpus ---- */

/*
 * The daticert.xml part of a message, base64-decoded: the part whose headers
 * name daticert.xml, from the blank line after them to the next boundary.
 */
static char *extract_daticert(const char *eml, size_t *len)
{
    const char *name = strstr(eml, "name=\"daticert.xml\"");
    const char *body, *end;
    char *b64, *out;
    size_t n = 0;
    int decoded, pad = 0;

    if (name == NULL)
        return NULL;
    body = strstr(name, "\n\n");
    if (body == NULL || (strstr(name, "\r\n\r\n") && strstr(name, "\r\n\r\n") < body))
        body = strstr(name, "\r\n\r\n");
    if (body == NULL)
        return NULL;
    end = strstr(body + 2, "\n--");
    if (end == NULL)
        return NULL;
    b64 = malloc((size_t)(end - body) + 1);
    for (const char *p = body; p < end; p++)
        if (*p != '\n' && *p != '\r' && *p != ' ' && *p != '\t')
            b64[n++] = *p;
    b64[n] = '\0';
    out = malloc(n + 1);
    decoded = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)b64, (int)n);
    for (size_t i = n; i > 0 && b64[i - 1] == '='; i--)
        pad++;
    free(b64);
    if (decoded < 0) {
        free(out);
        return NULL;
    }
    *len = (size_t)(decoded - pad);
    out[*len] = '\0';
    return out;
}

static const struct {
    const char *file, *tipo, *identificativo;
} corpus_expect[] = {
    {"aruba2014-busta-1.eml", "posta-certificata",
     "opec275.20141107165200.03048.08.1.17@pec.aruba.it"},
    {"aruba2014-busta-2.eml", "posta-certificata",
     "opec275.20141127151216.06559.08.1.17@pec.aruba.it"},
    {"aruba2014-accettazione.eml", "accettazione",
     "opec275.20141114182632.23219.07.1.48@pec.aruba.it"},
    {"aruba2014-consegna.eml", "avvenuta-consegna",
     "opec275.20141114182632.23219.07.1.48@pec.aruba.it"},
    {"aruba2018-accettazione.eml", "accettazione",
     "opec288.20181113163926.01838.310.1.63@pec.aruba.it"},
};

static int check_corpus_file(const char *dir, const char *file)
{
    char path[4096], err[256] = "", *eml, *xml, *again = NULL;
    size_t len, xlen, alen;
    struct pec_daticert d;
    int known = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    eml = read_file(path, &len);
    CHECK(eml != NULL);
    if (eml == NULL)
        return 0;
    xml = extract_daticert(eml, &xlen);
    CHECK(xml != NULL);
    free(eml);
    if (xml == NULL)
        return 0;
    CHECK(pec_daticert_parse(xml, xlen, &d, err, sizeof(err)) == 0);
    if (err[0])
        fprintf(stderr, "  %s: %s\n", file, err);
    for (size_t i = 0; i < sizeof(corpus_expect) / sizeof(corpus_expect[0]); i++) {
        if (strcmp(file, corpus_expect[i].file) != 0)
            continue;
        known = 1;
        CHECK_STR(pec_tipo_name(d.tipo), corpus_expect[i].tipo);
        CHECK_STR(d.identificativo, corpus_expect[i].identificativo);
        CHECK_STR(d.gestore_emittente, "ARUBA PEC S.p.A.");
        CHECK(d.msgid != NULL && d.msgid[0] == '<');
    }
    /* written again from the struct: the same bytes Aruba wrote */
    if (d.identificativo != NULL) {
        CHECK(pec_daticert_write(&d, &again, &alen, err, sizeof(err)) == 0);
        CHECK_STR(again, xml);
        check_external_validity(xml, xlen);
    }
    printf("corpus %-28s %-18s %s\n", file, pec_tipo_name(d.tipo),
           d.identificativo ? d.identificativo : "-");
    pec_daticert_free(&d);
    free(again);
    free(xml);
    return known;
}

static void test_corpus(const char *shared)
{
    char dir[4096];
    DIR *dp;
    struct dirent *de;
    int known = 0;

    if (shared == NULL) {
        printf("skip corpus: PEC_SHARED_DIR is not set\n");
        return;
    }
    snprintf(dir, sizeof(dir), "%s/corpus", shared);
    dp = opendir(dir);
    if (dp == NULL) {
        printf("skip corpus: %s is absent\n", dir);
        return;
    }
    while ((de = readdir(dp)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".eml") == 0)
            known += check_corpus_file(dir, de->d_name);
    }
    closedir(dp);
    CHECK(known == (int)(sizeof(corpus_expect) / sizeof(corpus_expect[0])));
}

/* ---- set-up ---- */

static void setup(const char **shared)
{
    char path[] = "/tmp/test_daticert_dtd.XXXXXX";
    int fd;

    *shared = getenv("PEC_SHARED_DIR");
    if (*shared != NULL && **shared == '\0')
        *shared = NULL;
    if (*shared != NULL) {
        snprintf(normative_dtd, sizeof(normative_dtd), "%s/spec/daticert.dtd", *shared);
        if (access(normative_dtd, R_OK) != 0) {
            printf("skip xmllint with the normative DTD: %s is absent\n", normative_dtd);
            normative_dtd[0] = '\0';
        }
    } else {
        printf("skip xmllint with the normative DTD: PEC_SHARED_DIR is not set\n");
    }
    have_xmllint = system("xmllint --version >/dev/null 2>&1") == 0;
    if (!have_xmllint)
        printf("skip external validation: xmllint is not installed\n");
    fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    close(fd);
    write_file(path, pec_daticert_dtd, pec_daticert_dtd_len);
    snprintf(embedded_dtd, sizeof(embedded_dtd), "%s", path);
}

/* Replace the first FROM in *XML by TO (the document is rewritten in place). */
static void edit(char **xml, size_t *len, const char *from, const char *to)
{
    char *at = strstr(*xml, from), *out;

    CHECK(at != NULL);
    if (at == NULL)
        return;
    out = malloc(*len - strlen(from) + strlen(to) + 1);
    memcpy(out, *xml, (size_t)(at - *xml));
    strcpy(out + (at - *xml), to);
    strcat(out, at + strlen(from));
    free(*xml);
    *xml = out;
    *len = strlen(out);
}

/*
 * A peer's busta whose facts our own writer would refuse is refused on
 * parsing: the presa in carico and the consegna copy those facts, so a
 * busta taken with them could be stored but never earn its receipt.
 */
static void test_parse_busta_facts(void)
{
    static const struct {
        const char *what, *from, *to, *reason;
    } table[] = {
        {"newline in oggetto", "<oggetto>Fattura n. 12</oggetto>",
         "<oggetto>Fattura&#10;n. 12</oggetto>", "oggetto contains control character U+000A"},
        {"msgid without brackets", "<msgid>&lt;20240331.abc@client.example&gt;</msgid>",
         "<msgid>20240331.abc@client.example</msgid>", "msgid must be enclosed"},
        {"empty destinatari", "<destinatari tipo=\"certificato\">mario.rossi@pec.example.it<",
         "<destinatari tipo=\"certificato\"><", "destinatari missing"},
    };
    struct pec_daticert d = sample(PEC_TIPO_POSTA_CERTIFICATA), back;
    char err[256], *good = NULL;
    size_t goodlen = 0;

    CHECK(pec_daticert_write(&d, &good, &goodlen, err, sizeof(err)) == 0);
    if (good == NULL)
        return;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        char *xml = strdup(good);
        size_t len = goodlen;

        edit(&xml, &len, table[i].from, table[i].to);
        err[0] = '\0';
        if (pec_daticert_parse(xml, len, &back, err, sizeof(err)) == 0) {
            fprintf(stderr, "  busta with %s: parsed, but no receipt could be built from it\n",
                    table[i].what);
            CHECK(0);
            pec_daticert_free(&back);
        } else if (strstr(err, table[i].reason) == NULL) {
            fprintf(stderr, "  busta with %s: refused as \"%s\"\n", table[i].what, err);
            CHECK(0);
        }
        /* the same facts in a notice are the peer's business: still read */
        edit(&xml, &len, "tipo=\"posta-certificata\"", "tipo=\"accettazione\"");
        edit(&xml, &len, "<ricevuta tipo=\"breve\" />", "");
        if (i < 2) {
            CHECK(pec_daticert_parse(xml, len, &back, err, sizeof(err)) == 0);
            pec_daticert_free(&back);
        }
        free(xml);
    }
    /* the unspoilt busta still parses, and a consegna can be written from its facts */
    CHECK(pec_daticert_parse(good, goodlen, &back, err, sizeof(err)) == 0);
    back.tipo = PEC_TIPO_AVVENUTA_CONSEGNA;
    back.consegna = strdup("mario.rossi@pec.example.it");
    CHECK(pec_daticert_check(&back, err, sizeof(err)) == 0);
    pec_daticert_free(&back);
    free(good);
}

int main(void)
{
    const char *shared;

    setup(&shared);
    CHECK(pec_daticert_init() == 0);
    CHECK(pec_daticert_init() == 0);
    test_names();
    test_every_tipo();
    test_golden();
    test_escaping();
    test_refusals();
    test_sanitize();
    test_parse_good();
    test_parse_bad();
    test_parse_busta_facts();
    test_error_handler_kept();
    test_threads();
    test_dtd_matches();
    test_corpus(shared);
    unlink(embedded_dtd);
    return check_exit();
}
