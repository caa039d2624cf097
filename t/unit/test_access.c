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
 * What could not travel intact (a line over 998 octets, a NUL byte, a field
 * over 16 KB, a header section over 1 MB): refused the same way, the reply
 * naming the line or the field.
 * The same submission again (same sender, client Message-ID and recipients,
 * as a client retries after a crash): the same busta, and nothing new in the
 * store; anything else that differs: a new transaction.
 */
#include "provider/access.h"
#include "message/busta.h"
#include "message/feed.h"
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
            "sign_cert = \"x\"; sign_key = \"x\"; trust_anchors = \"x\"; index_source = "
            "\"file:x\"; index_signer = \"x\";\n"
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

/* A submission comes over TLS; cleartext only from loopback, and only when configured. */
static void test_channel(void)
{
    struct pec_config *strict = config_with(""),
                      *loopback = config_with("submission_cleartext = \"loopback\";");
    struct pec_access_reply r;

    if (strict == NULL || loopback == NULL) {
        CHECK(0);
        pec_config_unref(strict);
        pec_config_unref(loopback);
        return;
    }
    CHECK(pec_access_channel(strict, "TLSv1.3", 0, &r) == 0);
    CHECK(pec_access_channel(strict, NULL, 1, &r) < 0);
    CHECK(r.fault == PEC_ACCESS_NOT_TLS);
    CHECK_STR(r.rcode, "530");
    CHECK_STR(r.xcode, "5.7.0");
    CHECK(strstr(r.text, "STARTTLS") != NULL);
    CHECK(pec_access_channel(strict, "", 1, &r) < 0);
    CHECK(pec_access_channel(loopback, NULL, 1, &r) == 0);
    CHECK(pec_access_channel(loopback, "", 0, &r) < 0);
    CHECK(r.fault == PEC_ACCESS_NOT_TLS);
    CHECK(pec_access_channel(loopback, "TLSv1.2", 0, &r) == 0);
    pec_config_unref(strict);
    pec_config_unref(loopback);
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

/* ---------------------------------------------------------------- what cannot travel intact */

#define PLAIN_HEAD "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\nSubject: prova\r\n"

/* a string of N copies of C, then TAIL (static buffer; one at a time) */
static const char *run_of(char c, size_t n, const char *tail)
{
    static char *buf;

    free(buf);
    buf = xmalloc(n + strlen(tail) + 1);
    memset(buf, c, n);
    strcpy(buf + n, tail);
    return buf;
}

/*
 * The fault MSG (LEN bytes, mario to luigi) earns, by its stable name, with
 * *R filled; "parse-failed" when the message could not even be read.
 */
static const char *fault_of(const char *msg, size_t len, struct pec_access_reply *r)
{
    const char *const one[] = {"<luigi@pec-b.test>"};
    struct pec_original o;
    char err[512];

    memset(r, 0, sizeof(*r));
    if (pec_original_from_mem(&o, msg, len, NULL, 1 << 20, "<mario@pec-a.test>", one, 1, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "parse: %s\n", err);
        pec_original_free(&o);
        return "parse-failed";
    }
    pec_access_formal(&o, 30 << 20, r);
    pec_original_free(&o);
    return pec_access_fault_name(r->fault);
}

/* MSG earns the fault named WANT, with CODE and XCODE, and both texts say IT and EN */
static void expect_intact(const char *what, const char *msg, size_t len, const char *want,
                          const char *code, const char *xcode, const char *it, const char *en)
{
    struct pec_access_reply r;
    const char *got = fault_of(msg, len, &r);

    if (strcmp(got, want) != 0)
        fprintf(stderr, "%s: expected %s, got %s (%s)\n", what, want, got, r.text);
    CHECK_STR(got, want);
    if (strcmp(want, "ok") == 0 || strcmp(got, want) != 0)
        return;
    CHECK_STR(r.rcode, code);
    CHECK_STR(r.xcode, xcode);
    if (strstr(r.errore, it) == NULL || strstr(r.text, en) == NULL)
        fprintf(stderr, "%s: errore \"%s\", text \"%s\"\n", what, r.errore, r.text);
    CHECK(strstr(r.errore, it) != NULL);
    CHECK(strstr(r.text, it) != NULL);
    CHECK(strstr(r.text, en) != NULL);
    CHECK(strncmp(r.text, "Messaggio non accettato: ", 25) == 0);
}

static void expect_msg(const char *what, const char *msg, const char *want, const char *code,
                       const char *xcode, const char *it, const char *en)
{
    expect_intact(what, msg, strlen(msg), want, code, xcode, it, en);
}

/*
 * A line over RFC 5322's 998 octets would be folded by the MTA in transit,
 * breaking the signature the recipient's provider checks; a NUL byte is not
 * mail at all; a header field past 16 KB may have been cut by the MTA before
 * pecmilter saw it (Postfix cuts at 60,000 bytes when milters are on).  Each
 * is refused, naming where it is, never certified.
 */
static void test_intact(void)
{
    char *m;

    expect_msg("998 octets", (m = xasprintf(PLAIN_HEAD "\r\nuno\r\n%s", run_of('x', 998, "\r\n"))),
               "ok", NULL, NULL, NULL, NULL);
    free(m);
    expect_msg("999 octets in the body",
               (m = xasprintf(PLAIN_HEAD "\r\nuno\r\ndue\r\n%s", run_of('x', 999, "\r\nfine\r\n"))),
               "line-too-long", "550", "5.6.0",
               "la riga 3 del corpo del messaggio e' lunga 999 byte, oltre i 998 ammessi",
               "line 3 of the message body is 999 octets long, over the 998 allowed");
    free(m);
    /* the HTML line of the issue: 3,000 characters on one line */
    expect_msg("3000 characters of HTML",
               (m = xasprintf(PLAIN_HEAD "Content-Type: text/html\r\n\r\n<p>%s",
                              run_of('a', 3000, "</p>\r\n"))),
               "line-too-long", "550", "5.6.0",
               "la riga 1 del corpo del messaggio e' lunga 3007 byte",
               "line 1 of the message body is 3007 octets long");
    free(m);
    /* the last line without its CRLF counts too */
    expect_msg("last line", (m = xasprintf(PLAIN_HEAD "\r\n%s", run_of('z', 1500, ""))),
               "line-too-long", "550", "5.6.0",
               "la riga 1 del corpo del messaggio e' lunga 1500 byte",
               "line 1 of the message body is 1500 octets long");
    free(m);
    expect_msg("a header line",
               (m = xasprintf("From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\nSubject: %s"
                              "\r\n\r\nbody\r\n",
                              run_of('s', 1200, "\r\n  ancora"))),
               "line-too-long", "550", "5.6.0",
               "una riga del campo Subject e' lunga 1209 byte, oltre i 998 ammessi",
               "a line of the Subject header field is 1209 octets long, over the 998 allowed");
    free(m);

    {
        static const char body_nul[] = PLAIN_HEAD "\r\nuno\r\nd\0ue\r\n";
        static const char head_nul[] = "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n"
                                       "X-Nul: prima\0dopo il nul\r\n\r\nbody\r\n";

        expect_intact("NUL in the body", body_nul, sizeof(body_nul) - 1, "nul", "550", "5.6.0",
                      "la riga 2 del corpo del messaggio contiene un byte NUL",
                      "line 2 of the message body contains a NUL byte");
        expect_intact("NUL in a header", head_nul, sizeof(head_nul) - 1, "nul", "550", "5.6.0",
                      "una riga del campo X-Nul contiene un byte NUL",
                      "a line of the X-Nul header field contains a NUL byte");
    }

    /* one field over 16 KB: the MTA may have cut it; folded, every line is short */
    {
        char *subject = xstrdup("");

        while (strlen(subject) < 20000) {
            char *more = xasprintf("%s parola\r\n", subject);
            free(subject);
            subject = more;
        }
        m = xasprintf("From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\nSubject:%s"
                      "Message-ID: <x@client.test>\r\n\r\nbody\r\n",
                      subject);
        expect_msg("a 20 KB Subject", m, "field-too-big", "552", "5.6.0",
                   "il campo Subject supera i 16384 byte ammessi",
                   "the Subject header field is longer than the 16384 octets allowed");
        free(m);
        free(subject);
    }

    /* more fields than the MTA can delete when the busta replaces them */
    {
        char *fields = xstrdup("");

        for (int i = 0; i < PEC_HEADER_FIELDS_MAX; i++) {
            char *more = xasprintf("%sX-R: %d\r\n", fields, i);
            free(fields);
            fields = more;
        }
        m = xasprintf("From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n%s\r\nbody\r\n", fields);
        expect_msg("a thousand and two fields", m, "too-many-fields", "552", "5.6.0",
                   "l'intestazione del messaggio ha 1002 campi, oltre i 1000 ammessi",
                   "the header section has 1002 fields, over the 1000 allowed");
        free(m);
        free(fields);
    }
}

/* a line of N bytes of C and its CRLF, at the end of M (LEN bytes so far); *COUNT++ */
static char *add_line(char *m, size_t *len, size_t *count, size_t n, char c)
{
    m = xrealloc(m, *len + n + 3);
    memset(m + *len, c, n);
    memcpy(m + *len + n, "\r\n", 3);
    *len += n + 2;
    (*count)++;
    return m;
}

/*
 * On a file spool the message is read 64 KB at a time: a CRLF split between
 * two reads still ends one line of 998 octets, and a line of 999 across two
 * reads is still found, with its number in the body.
 */
static void test_lines_across_reads(void)
{
    const char *const one[] = {"<luigi@pec-b.test>"};
    const size_t chunk = 64 * 1024;
    size_t len = strlen(PLAIN_HEAD "\r\n"), lines = 0, rest, want;
    char *m = xstrdup(PLAIN_HEAD "\r\n"), err[512];
    struct pec_original o;
    struct pec_access_reply r;

    /* short lines up to where a line of 998 puts its CR last in the first read */
    rest = chunk - 1 - 998 - len;
    while (rest > 200) {
        m = add_line(m, &len, &lines, 78, 'a');
        rest -= 80;
    }
    m = add_line(m, &len, &lines, rest - 2, 'b');
    m = add_line(m, &len, &lines, 998, 'c');
    CHECK(m[chunk - 1] == '\r' && m[chunk] == '\n');
    /* then a line of 999 across the second read's end */
    while (len < 2 * chunk - 500)
        m = add_line(m, &len, &lines, 78, 'd');
    m = add_line(m, &len, &lines, 999, 'e');
    want = lines;
    m = add_line(m, &len, &lines, 10, 'f');
    if (pec_original_from_mem(&o, m, len, NULL, 1024, "<mario@pec-a.test>", one, 1, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "parse: %s\n", err);
        CHECK(0);
    } else {
        CHECK(pec_spool_mem(o.raw) == NULL); /* in a file: read in chunks */
        CHECK(o.long_line.len == 999 && o.long_line.number == want);
        CHECK(pec_access_formal(&o, 30 << 20, &r) < 0);
        CHECK_STR(pec_access_fault_name(r.fault), "line-too-long");
    }
    pec_original_free(&o);
    free(m);
}

/*
 * A Subject as long as a field may be, in raw 8-bit bytes (each becomes two
 * in UTF-8, then encoded words): the busta still carries it in one request
 * the MTA can take (a milter's are at most 64 KB), so it is accepted.
 */
static void test_longest_subject(const struct pec_access_env *e)
{
    const char *const one[] = {"<luigi@pec-b.test>"};
    const char *head = "From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\nSubject:";
    size_t len = strlen(head), lines = 0;
    char *m = xstrdup(head), err[512];
    struct pec_original o;
    struct pec_access_reply r;
    struct pec_access_outcome out;
    const char *subject;

    /* folded lines of " " and 8-bit bytes, the field just within the limit */
    while (len - strlen("From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\n") + 80 <=
           PEC_ACCESS_FIELD_MAX) {
        m = add_line(m, &len, &lines, 78, '\xe8');
        m[len - 80] = ' ';
    }
    m = xrealloc(m, len + 32);
    memcpy(m + len, "\r\nCiao.\r\n", 10);
    len += 9;
    if (pec_original_from_mem(&o, m, len, NULL, 1 << 20, "<mario@pec-a.test>", one, 1, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "parse: %s\n", err);
        CHECK(0);
    } else {
        CHECK(o.fields[2].len > PEC_ACCESS_FIELD_MAX - 80 &&
              o.fields[2].len <= PEC_ACCESS_FIELD_MAX);
        CHECK(pec_access_formal(&o, 30 << 20, &r) == 0);
        CHECK(pec_access_accept(e, &o, "", &out, err, sizeof(err)) == 0);
        subject = pec_headers_get(&out.busta.headers, "Subject");
        CHECK(subject != NULL && strlen("Subject") + strlen(subject) + 2 < 65535);
        CHECK(subject != NULL && strlen(subject) > 3 * (PEC_ACCESS_FIELD_MAX - 80));
        pec_access_outcome_free(&out);
    }
    pec_original_free(&o);
    free(m);
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

/* the value of header field NAME in message B, folds kept, without its final CRLF */
static char *field_of(const struct bytes *b, const char *name)
{
    char *needle = xasprintf("\r\n%s: ", name);
    const unsigned char *at = b->p ? find(b->p, b->n, needle) : NULL, *end;
    char *v = NULL;

    if (at != NULL) {
        at += strlen(needle);
        end = at;
        while ((end = find(end, b->n - (size_t)(end - b->p), "\r\n")) != NULL &&
               (end[2] == ' ' || end[2] == '\t'))
            end += 2;
        if (end != NULL)
            v = xstrndup((const char *)at, (size_t)(end - at));
    }
    free(needle);
    return v;
}

/*
 * Refuse O as the milter does, commit, and give back the avviso's bytes
 * (empty when anything failed); *R is the refusal.
 */
static struct bytes refuse_and_claim(const struct pec_access_env *e, const char *dbname,
                                     struct pec_original *o, struct pec_access_reply *r,
                                     struct records *rec)
{
    struct pec_store *st = fresh_store(dbname);
    struct pec_access_outcome out;
    struct bytes b = {0};
    char err[1024];

    if (st == NULL)
        return b;
    CHECK(pec_access_formal(o, 30 << 20, r) < 0);
    if (pec_access_refuse(e, o, r, "QIDX", &out, err, sizeof(err)) != 0) {
        fprintf(stderr, "refuse: %s\n", err);
        CHECK(0);
    } else {
        CHECK(out.busta.body == NULL);
        CHECK(pec_store_commit(st, out.batch, err, sizeof(err)) == 0);
        CHECK(pec_store_log_each(st, NULL, each_record, rec, err, sizeof(err)) == 0);
        b = claim(st);
        pec_access_outcome_free(&out);
    }
    pec_store_close(st);
    return b;
}

/*
 * What cannot travel intact is refused like any formal error: the avviso di
 * non accettazione to the sender, with the reason in its text and
 * errore-esteso, and its record; never the original.  A header section over
 * PEC_HEADER_MAX (50,000 header lines) too: the fields that fit still name
 * the message.  A subject that is itself the trouble is quoted shortened.
 */
static void test_refuse_intact(const struct pec_access_env *e)
{
    const char *const one[] = {"<luigi@pec-b.test>"};
    struct pec_original o;
    struct pec_access_reply r;
    struct records rec = {0};
    struct bytes avviso;
    char err[512], *m, *subject;

    m = xasprintf(PLAIN_HEAD "Message-ID: <lunga@client.test>\r\nContent-Type: text/html\r\n"
                             "\r\n<p>%s",
                  run_of('a', 3000, "</p>\r\n"));
    if (pec_original_from_mem(&o, m, strlen(m), NULL, 1 << 20, "<mario@pec-a.test>", one, 1, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "parse: %s\n", err);
        CHECK(0);
    } else {
        avviso = refuse_and_claim(e, "intact-line.db", &o, &r, &rec);
        CHECK_STR(pec_access_fault_name(r.fault), "line-too-long");
        CHECK(rec.n == 1);
        CHECK_STR(rec.label[0], "NonAccettazione");
        CHECK(strstr(rec.esteso[0], "5.6.0 - Gestore A S.p.A. - la riga 1 del corpo del "
                                    "messaggio e' lunga 3007 byte") != NULL);
        CHECK(avviso.p && find(avviso.p, avviso.n, "X-Ricevuta: non-accettazione\r\n"));
        CHECK(avviso.p &&
              find(avviso.p, avviso.n, "Subject: AVVISO DI NON ACCETTAZIONE: prova\r\n"));
        CHECK(avviso.p && !find(avviso.p, avviso.n, "postacert.eml"));
        free(avviso.p);
    }
    pec_original_free(&o);
    free(m);

    /* 50,000 header lines, about 1.7 MB: the fields past 1 MB are not kept, nor needed */
    {
        struct pec_feed *f = pec_feed_new(NULL, 1 << 20);
        int ok = pec_feed_header(f, "From", " mario@pec-a.test") == 0 &&
                 pec_feed_header(f, "To", " luigi@pec-b.test") == 0 &&
                 pec_feed_header(f, "Subject", " tante righe") == 0 &&
                 pec_feed_header(f, "Message-ID", " <righe@client.test>") == 0;

        for (int i = 0; i < 50000 && ok; i++) {
            char v[64];

            snprintf(v, sizeof(v), " riga di riempimento numero %05d", i);
            ok = pec_feed_header(f, "X-Riempimento", v) == 0;
        }
        ok = ok && pec_feed_eoh(f) == 0 &&
             pec_feed_body(f, (const unsigned char *)"Ciao.\r\n", 7) == 0;
        CHECK(ok);
        rec.n = 0;
        if (pec_feed_finish(f, "<mario@pec-a.test>", one, 1, &o, err, sizeof(err)) != 0) {
            fprintf(stderr, "feed: %s\n", err);
            CHECK(0);
        } else {
            avviso = refuse_and_claim(e, "intact-header.db", &o, &r, &rec);
            CHECK_STR(pec_access_fault_name(r.fault), "header-too-big");
            CHECK_STR(r.rcode, "552");
            CHECK_STR(r.xcode, "5.6.0");
            CHECK(strstr(r.text, "l'intestazione del messaggio supera i 1048576 byte ammessi") !=
                  NULL);
            CHECK(strstr(r.text, "the header section is larger than the 1048576 octets allowed") !=
                  NULL);
            CHECK(rec.n == 1);
            CHECK(avviso.p &&
                  find(avviso.p, avviso.n, "Subject: AVVISO DI NON ACCETTAZIONE: tante righe\r\n"));
            CHECK(avviso.p && find(avviso.p, avviso.n, "<righe@client.test>"));
            free(avviso.p);
        }
        pec_original_free(&o);
        pec_feed_free(f);
    }

    /* a Subject of 59,000 bytes (what Postfix leaves of 100 KB): quoted shortened, marked */
    subject = xstrdup("");
    while (strlen(subject) < 59000) {
        char *more = xasprintf("%s oggetto\r\n", subject);
        free(subject);
        subject = more;
    }
    m = xasprintf("From: mario@pec-a.test\r\nTo: luigi@pec-b.test\r\nSubject:%s\r\nbody\r\n",
                  subject);
    rec.n = 0;
    if (pec_original_from_mem(&o, m, strlen(m), NULL, 1 << 20, "<mario@pec-a.test>", one, 1, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "parse: %s\n", err);
        CHECK(0);
    } else {
        char *quoted;

        avviso = refuse_and_claim(e, "intact-subject.db", &o, &r, &rec);
        CHECK_STR(pec_access_fault_name(r.fault), "field-too-big");
        quoted = field_of(&avviso, "Subject");
        CHECK(quoted != NULL &&
              strncmp(quoted, "AVVISO DI NON ACCETTAZIONE: oggetto oggetto", 43) == 0);
        CHECK(quoted != NULL && strlen(quoted) < 1200);
        CHECK(quoted != NULL && strstr(quoted, " oggetto [...]") != NULL);
        free(quoted);
        free(avviso.p);
    }
    pec_original_free(&o);
    free(m);
    free(subject);
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
        test_channel();
        test_formal();
        test_intact();
        test_lines_across_reads();
        test_classify(idx, cfg);
        test_accept(&e);
        test_accept_elsewhere(&e);
        test_longest_subject(&e);
        test_refuse(&e);
        test_refuse_intact(&e);
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
