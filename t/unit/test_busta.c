/*
 * test_busta - the original as the access point sees it, and the buste built around it.
 *
 * pec_original: every fact the formal checks need, from awkward headers too
 * (folded, duplicated, 8-bit, encoded-words, groups), and a sane error for a
 * header section too large to parse.  pec_feed: milter pieces give back the
 * message byte for byte.  Busta di trasporto, from originals with CRLF and LF
 * line ends, an 8-bit body, nested multiparts, no Message-ID and forged PEC
 * headers: postacert.eml is the original except the identity lines (bytes
 * compared), no client PEC header reaches the top level, daticert.xml is
 * valid (our parser and xmllint against the normative DTD), the signature
 * verifies (ours and openssl), the layout is the one peers expect (Python's
 * email package), and the same inputs give the same bytes.  Busta di
 * anomalia: only a text and the received message, which it keeps whole.  A
 * 30 MB original goes through the feed and the busta with 1 MB spool limits:
 * everything large lives in files, and openssl still verifies the result.
 * Every busta is left in $PEC_BUILD_DIR/t/out/ for inspection.
 */
#include "message/busta.h"
#include "message/feed.h"
#include "msgcheck.h"
#include "message/original.h"
#include "message/sevenbit.h"

static struct testenv env;

#define ID "opec7.20240301110000.00000.1.00000001@pec-a.test"

static const char *const envelope_rcpts[] = {"<dest@pec-b.test>", "<copia@example.org>"};

/* ---------------------------------------------------------------- originals */

static const char msg_crlf[] = "Received: from client (client [192.0.2.1])\r\n"
                               "\tby smtp.pec-a.test (Postfix) with ESMTPSA id 4A1B2C3D;\r\n"
                               "\tFri,  1 Mar 2024 12:00:00 +0100 (CET)\r\n"
                               "Date: Fri, 1 Mar 2024 11:59:58 +0100\r\n"
                               "From: Mario Rossi <mario.rossi@pec-a.test>\r\n"
                               "To: dest@pec-b.test\r\n"
                               "Cc: copia@example.org\r\n"
                               "Subject: Fattura marzo\r\n"
                               "Message-ID: <abc.123@client.example>\r\n"
                               "MIME-Version: 1.0\r\n"
                               "Content-Type: text/plain; charset=us-ascii\r\n"
                               "\r\n"
                               "In allegato la fattura.\r\n"
                               "--\r\n"
                               "Mario\r\n";

static const char msg_8bit[] = "From: mario.rossi@pec-a.test\r\n"
                               "To: dest@pec-b.test, copia@example.org\r\n"
                               "Subject: Citt\xc3\xa0 \xe2\x82\xac 100\r\n"
                               "Message-ID: <8bit@client.example>\r\n"
                               "MIME-Version: 1.0\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Transfer-Encoding: 8bit\r\n"
                               "\r\n"
                               "Perch\xc3\xa9 la citt\xc3\xa0 costa 100 \xe2\x82\xac.\r\n";

static const char msg_nested[] =
    "From: mario.rossi@pec-a.test\r\n"
    "To: dest@pec-b.test\r\n"
    "Cc: copia@example.org\r\n"
    "Subject: Documenti\r\n"
    "Message-ID: <nested@client.example>\r\n"
    "Reply-To: ufficio@pec-a.test\r\n"
    "X-TipoRicevuta: sintetica\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "testo\r\n"
    "--inner\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<p>testo</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"fattura.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"fattura.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n"
    "--outer\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: x@example.org\r\n"
    "Subject: inoltrato\r\n"
    "Message-ID: <inner-forwarded@example.org>\r\n"
    "\r\n"
    "corpo inoltrato\r\n"
    "--outer--\r\n";

static const char msg_nomsgid[] = "From: mario.rossi@pec-a.test\r\n"
                                  "To: dest@pec-b.test\r\n"
                                  "Subject: senza id\r\n"
                                  "\r\n"
                                  "corpo\r\n";

/* forged PEC headers, folded and encoded Subject, a second Message-ID */
static const char msg_forged[] = "X-Trasporto: posta-certificata\r\n"
                                 "X-Ricevuta: accettazione\r\n"
                                 "X-VerificaSicurezza: errore\r\n"
                                 "X-Mittente: admin@pec-b.test\r\n"
                                 "X-Riferimento-Message-ID: <forged@pec-b.test>\r\n"
                                 "From: mario.rossi@pec-a.test\r\n"
                                 "To: dest@pec-b.test\r\n"
                                 "Subject: =?ISO-8859-1?Q?Perch=E9?= un oggetto\r\n"
                                 " piegato su due righe\r\n"
                                 "Message-Id: <forged.1@client.example>\r\n"
                                 "x-tiporicevuta: Breve\r\n"
                                 "Message-ID: <forged.2@client.example>\r\n"
                                 "\r\n"
                                 "corpo\r\n";

/* the CRLF message, with Unix line ends */
static char *lf_version(const char *crlf)
{
    char *s = xstrdup(crlf), *o = s;

    for (const char *p = crlf; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n'))
            *o++ = *p;
    *o = '\0';
    return s;
}

/*
 * What postacert.eml must be, computed the simple way: the first Message-ID line
 * replaced by ours and the client's reference, other Message-ID lines dropped, or
 * both lines added before the blank line.
 */
static struct bytes expected_postacert(const char *crlf, const char *client_id)
{
    struct bytes e = {xmalloc(strlen(crlf) + 512), 0};
    const char *p = crlf, *blank = strstr(crlf, "\r\n\r\n");
    char ident[256];
    int done = 0;

    if (client_id)
        snprintf(ident, sizeof(ident), "Message-ID: <%s>\r\nX-Riferimento-Message-ID: %s\r\n", ID,
                 client_id);
    else
        snprintf(ident, sizeof(ident), "Message-ID: <%s>\r\n", ID);
    while (p < blank + 2) {
        const char *eol = strstr(p, "\r\n") + 2;

        if (strncasecmp(p, "Message-ID:", 11) == 0) {
            if (!done)
                memcpy(e.p + e.n, ident, strlen(ident)), e.n += strlen(ident);
            done = 1;
        } else {
            memcpy(e.p + e.n, p, (size_t)(eol - p));
            e.n += (size_t)(eol - p);
        }
        p = eol;
    }
    if (!done)
        memcpy(e.p + e.n, ident, strlen(ident)), e.n += strlen(ident);
    memcpy(e.p + e.n, p, strlen(p));
    e.n += strlen(p);
    return e;
}

/* ---------------------------------------------------------------- pec_original */

static int parse(struct pec_original *o, const char *text, size_t len)
{
    char err[256] = "";
    int ret = pec_original_from_mem(o, text, len, NULL, 1 << 20, "<mario.rossi@pec-a.test>",
                                    envelope_rcpts, 2, err, sizeof(err));

    if (ret != 0)
        fprintf(stderr, "parse: %s\n", err);
    return ret;
}

static void test_original_facts(void)
{
    struct pec_original o;
    static const char many[] =
        "From: a@pec-a.test, b@pec-a.test\r\n"
        "From: c@pec-a.test\r\n"
        "To: Gruppo: x@pec-b.test, \"Y Z\" <y@pec-b.test>;, w@example.org\r\n"
        "Cc:\r\n"
        "Bcc: nascosto@example.org\r\n"
        "Subject: =?ISO-8859-1?Q?caff=E8?= e\r\n"
        "\t=?UTF-8?B?4oKs?=\r\n"
        "\r\n";
    static const char latin1[] = "From: a@pec-a.test\r\nSubject: perch\xe9\r\nBcc:  \r\n\r\nx";
    static const char headonly[] = "From: a@pec-a.test\r\nSubject: solo intestazione";

    CHECK(parse(&o, msg_crlf, sizeof(msg_crlf) - 1) == 0);
    CHECK_STR(o.mail_from, "mario.rossi@pec-a.test");
    CHECK(o.n_rcpts == 2 && strcmp(o.rcpts[1], "copia@example.org") == 0);
    CHECK(o.n_from == 1 && strcmp(o.from[0], "mario.rossi@pec-a.test") == 0);
    CHECK(o.n_to == 1 && o.n_cc == 1 && !o.bcc_has_value && !o.has_reply_to);
    CHECK_STR(o.subject, "Fattura marzo");
    CHECK_STR(o.message_id, "<abc.123@client.example>");
    CHECK(o.tipo_ricevuta == PEC_RICEVUTA_COMPLETA);
    CHECK(!o.eight_bit);
    CHECK(o.n_fields == 9 && strcmp(o.fields[0].name, "Received") == 0);
    CHECK(o.body_offset == o.header_len + 2 &&
          o.header_len == (size_t)(strstr(msg_crlf, "\r\n\r\n") - msg_crlf) + 2);
    pec_original_free(&o);

    CHECK(parse(&o, many, sizeof(many) - 1) == 0);
    CHECK(o.n_from == 3); /* two fields, three addresses: the formal check will refuse it */
    CHECK(o.n_to == 3 && strcmp(o.to[0], "x@pec-b.test") == 0 &&
          strcmp(o.to[1], "y@pec-b.test") == 0);
    CHECK(o.n_cc == 0);
    CHECK(o.bcc_has_value);
    CHECK_STR(o.subject, "caff\xc3\xa8 e\t\xe2\x82\xac"); /* unfolding keeps the tab */
    CHECK_STR(o.subject_raw, "=?ISO-8859-1?Q?caff=E8?= e\r\n\t=?UTF-8?B?4oKs?=");
    CHECK(o.message_id == NULL);
    pec_original_free(&o);

    CHECK(parse(&o, latin1, sizeof(latin1) - 1) == 0);
    CHECK_STR(o.subject, "perch\xc3\xa9"); /* raw ISO-8859-1 read as such */
    CHECK(!o.bcc_has_value);
    CHECK(o.eight_bit);
    pec_original_free(&o);

    CHECK(parse(&o, msg_forged, sizeof(msg_forged) - 1) == 0);
    CHECK(o.tipo_ricevuta == PEC_RICEVUTA_BREVE);
    CHECK_STR(o.message_id, "<forged.1@client.example>");
    CHECK_STR(o.subject, "Perch\xc3\xa9 un oggetto piegato su due righe");
    pec_original_free(&o);

    /* no blank line, no final CRLF: all header */
    CHECK(parse(&o, headonly, sizeof(headonly) - 1) == 0);
    CHECK(o.header_len == sizeof(headonly) - 1 && o.body_offset == o.header_len);
    CHECK_STR(o.subject, "solo intestazione");
    pec_original_free(&o);

    /* a client id that is no id: none, and nothing 8-bit can reach our headers */
    {
        static const char *const ids[] = {
            "Message-ID: <caf\xc3\xa8@x>\r\n\r\n", "Message-ID: <>\r\n\r\n",
            "Message-ID: due parole\r\n\r\n", "Message-ID:   nudo@x  \r\n\r\n"};

        for (size_t i = 0; i < 4; i++) {
            CHECK(parse(&o, ids[i], strlen(ids[i])) == 0);
            CHECK(i < 3 ? o.message_id == NULL : strcmp(o.message_id, "<nudo@x>") == 0);
            pec_original_free(&o);
        }
    }

    CHECK(parse(&o, "", 0) == 0);
    CHECK(o.n_fields == 0 && o.subject == NULL);
    pec_original_free(&o);

    /* LF only: stored as CRLF */
    {
        char *lf = lf_version(msg_crlf);
        struct bytes raw;

        CHECK(parse(&o, lf, strlen(lf)) == 0);
        raw = spool_bytes(o.raw);
        CHECK(raw.n == sizeof(msg_crlf) - 1 && memcmp(raw.p, msg_crlf, raw.n) == 0);
        free(raw.p);
        free(lf);
        pec_original_free(&o);
    }
}

static void test_original_huge_header(void)
{
    size_t big = 2 * 1024 * 1024, ok = 512 * 1024;
    char *m = xmalloc(big + 64);
    struct pec_original o;
    char err[256] = "";
    int n = snprintf(m, 64, "Subject: ");

    /* a 2 MB header line: refused with a reason, not a crash */
    memset(m + n, 'a', big);
    memcpy(m + n + big, "\r\n\r\nbody\r\n", 11);
    CHECK(pec_original_from_mem(&o, m, strlen(m), NULL, 1 << 20, NULL, NULL, 0, err, sizeof(err)) ==
          -1);
    CHECK(strstr(err, "header section is larger than") != NULL);
    pec_original_free(&o);

    /* 80000 tiny fields, half of them To with one address: linear, not quadratic */
    {
        char *many = xmalloc(1 << 20);
        size_t len = 0;

        for (int i = 0; i < 80000; i++)
            len += (size_t)sprintf(many + len, i % 2 ? "X-%d: y\r\n" : "To: a%d@b\r\n", i % 1000);
        memcpy(many + len, "\r\nbody\r\n", 9);
        CHECK(parse(&o, many, len + 8) == 0);
        CHECK(o.n_fields == 80000 && o.n_to == 40000);
        pec_original_free(&o);
        free(many);
    }

    /* half a megabyte still parses */
    memcpy(m + n + ok, "\r\n\r\nbody\r\n", 11);
    CHECK(parse(&o, m, strlen(m)) == 0);
    CHECK(o.subject != NULL && strlen(o.subject) == ok);
    pec_original_free(&o);
    free(m);
}

/* ---------------------------------------------------------------- feed */

static void test_feed(void)
{
    static const char want[] = "Received: from client\r\n\tby mx; Fri, 1 Mar 2024\r\n"
                               "Subject:senza spazio\r\n"
                               "From:  a@pec-a.test\r\n"
                               "X-Folded: uno\r\n due\r\n"
                               "X-Cr: a\rb\r\n"
                               "\r\n"
                               "riga 1\r\nriga 2\r\n";
    struct pec_feed *f = pec_feed_new(NULL, 16);
    struct pec_original o;
    struct bytes raw;
    char err[256] = "";
    const char *rcpt[] = {"<b@pec-b.test>"};

    /* as Postfix hands them with SMFIP_HDR_LEADSPC: folds as "\n", leading space kept */
    CHECK(pec_feed_header(f, "Received", " from client\n\tby mx; Fri, 1 Mar 2024") == 0);
    CHECK(pec_feed_header(f, "Subject", "senza spazio") == 0);
    CHECK(pec_feed_header(f, "From", "  a@pec-a.test") == 0);
    CHECK(pec_feed_header(f, "X-Folded", " uno\r\n due") == 0); /* Sendmail's way */
    CHECK(pec_feed_header(f, "X-Cr", " a\rb") == 0);            /* a lone CR is not a fold */
    CHECK(pec_feed_eoh(f) == 0);
    CHECK(pec_feed_body(f, (const unsigned char *)"riga 1\r", 7) == 0);
    CHECK(pec_feed_body(f, (const unsigned char *)"\nriga 2\n", 8) == 0);
    CHECK(pec_feed_finish(f, "<a@pec-a.test>", rcpt, 1, &o, err, sizeof(err)) == 0);
    CHECK(pec_feed_body(f, (const unsigned char *)"x", 1) == -1);
    pec_feed_free(f);
    raw = spool_bytes(o.raw);
    CHECK(raw.n == sizeof(want) - 1 && memcmp(raw.p, want, raw.n) == 0);
    CHECK(pec_spool_mem(o.raw) == NULL); /* past 16 bytes: on file */
    CHECK_STR(o.subject, "senza spazio");
    CHECK(o.n_from == 1 && o.n_rcpts == 1 && strcmp(o.rcpts[0], "b@pec-b.test") == 0);
    free(raw.p);
    pec_original_free(&o);
}

/* ---------------------------------------------------------------- busta di trasporto */

static struct pec_destinatario *classify(const struct pec_original *o, size_t *n)
{
    struct pec_destinatario *d = xcalloc(o->n_to + o->n_cc + 1, sizeof(*d));

    *n = 0;
    for (size_t i = 0; i < o->n_to + o->n_cc; i++) {
        const char *a = i < o->n_to ? o->to[i] : o->cc[i - o->n_to];

        d[*n].address = (char *)a;
        d[*n].tipo = strstr(a, "@pec-") ? PEC_DEST_CERTIFICATO : PEC_DEST_ESTERNO;
        (*n)++;
    }
    return d;
}

static int build_busta(const struct pec_original *o, struct pec_built *b)
{
    size_t n;
    struct pec_destinatario *d = classify(o, &n);
    char err[512] = "";
    int ret = pec_build_busta(&env.iss, o, d, n, ID, env.clock.fixed_at, b, err, sizeof(err));

    if (ret != 0)
        fprintf(stderr, "pec_build_busta: %s\n", err);
    free(d);
    return ret;
}

/* the standalone message, written under the build directory; returns its path */
static char *save_full(const struct pec_built *b, const struct pec_spool *raw,
                       int (*keeps)(const char *), const char *stem)
{
    struct pec_spool *sp = pec_spool_new(NULL, 1 << 20);
    char *path = xasprintf("%s/%s.eml", env.outdir, stem);
    char err[256] = "";
    FILE *fp = fopen(path, "wb");

    CHECK(pec_built_full(b, raw, keeps, sp, err, sizeof(err)) == 0);
    CHECK(fp != NULL);
    if (fp != NULL) {
        /* a piece at a time, so a 30 MB message is not loaded here either */
        for (size_t off = 0; off < pec_spool_size(sp); off += 65536) {
            unsigned char buf[65536];
            ssize_t got = pec_spool_pread(sp, off, buf, sizeof(buf));

            CHECK(got > 0 && fwrite(buf, 1, (size_t)got, fp) == (size_t)got);
        }
        CHECK(fclose(fp) == 0);
    }
    pec_spool_free(sp);
    return path;
}

static const char *const forbidden_top[] = {"X-Ricevuta", "X-VerificaSicurezza", "X-Mittente",
                                            NULL};

static void check_top_headers(const struct pec_built *b, const struct pec_original *o)
{
    static const char *const order_no_reply[] = {"X-Trasporto",
                                                 "Date",
                                                 "Subject",
                                                 "From",
                                                 "Reply-To",
                                                 "Message-ID",
                                                 "X-Riferimento-Message-ID",
                                                 "X-TipoRicevuta",
                                                 "MIME-Version",
                                                 "Content-Type"};
    const char *v;
    size_t k = 0;

    for (size_t i = 0; i < sizeof(order_no_reply) / sizeof(order_no_reply[0]); i++) {
        if (strcmp(order_no_reply[i], "Reply-To") == 0 && o->has_reply_to)
            continue;
        if (strcmp(order_no_reply[i], "X-Riferimento-Message-ID") == 0 && o->message_id == NULL)
            continue;
        CHECK(k < b->headers.n && strcmp(b->headers.v[k].name, order_no_reply[i]) == 0);
        k++;
    }
    CHECK(k == b->headers.n);
    for (size_t i = 0; forbidden_top[i]; i++)
        CHECK(pec_headers_get(&b->headers, forbidden_top[i]) == NULL);
    CHECK_STR(pec_headers_get(&b->headers, "X-Trasporto"), "posta-certificata");
    CHECK_STR(pec_headers_get(&b->headers, "Message-ID"), "<" ID ">");
    CHECK_STR(pec_headers_get(&b->headers, "Date"), "Fri, 1 Mar 2024 12:00:00 +0100");
    CHECK_STR(pec_headers_get(&b->headers, "From"),
              "\"Per conto di: mario.rossi@pec-a.test\" <posta-certificata@pec-a.test>");
    if (o->message_id)
        CHECK_STR(pec_headers_get(&b->headers, "X-Riferimento-Message-ID"), o->message_id);
    if (!o->has_reply_to)
        CHECK_STR(pec_headers_get(&b->headers, "Reply-To"), "mario.rossi@pec-a.test");
    v = pec_headers_get(&b->headers, "Subject");
    CHECK(v != NULL && STARTS(v, "POSTA CERTIFICATA: "));
    CHECK_STR(b->message_id, ID);
    CHECK_STR(pec_headers_get(&b->headers, "X-TipoRicevuta"), pec_ricevuta_name(o->tipo_ricevuta));
}

/* the top level of the standalone file: kept original fields, then ours, nothing forged */
static void check_full_top(const char *path)
{
    struct bytes m = read_file(path);
    size_t hend = body_start(m.p, m.n);
    int x_trasporto = 0;

    for (size_t i = 0; i < hend; i++) {
        if (i > 0 && m.p[i - 1] != '\n')
            continue;
        for (size_t k = 0; forbidden_top[k]; k++)
            CHECK(strncasecmp((char *)m.p + i, forbidden_top[k], strlen(forbidden_top[k])) != 0);
        CHECK(strncasecmp((char *)m.p + i, "Message-Id: <forged", 19) != 0);
        CHECK(strncasecmp((char *)m.p + i, "Subject: Fattura", 16) != 0);
        x_trasporto += strncasecmp((char *)m.p + i, "X-Trasporto:", 12) == 0;
    }
    CHECK(x_trasporto == 1);
    free(m.p);
}

static void check_daticert(const unsigned char *part, size_t n, const struct pec_original *o,
                           const char *stem)
{
    size_t bs = body_start(part, n);
    struct bytes xml = b64_decode(part + bs, n - bs);
    struct pec_daticert d;
    char err[256] = "";
    const char *shared = getenv("PEC_SHARED_DIR");

    CHECK(pec_daticert_parse((char *)xml.p, xml.n, &d, err, sizeof(err)) == 0);
    if (err[0])
        fprintf(stderr, "daticert: %s\n", err);
    CHECK(d.tipo == PEC_TIPO_POSTA_CERTIFICATA && d.errore == PEC_ERRORE_NESSUNO);
    CHECK_STR(d.mittente, "mario.rossi@pec-a.test");
    CHECK(d.n_destinatari == o->n_to + o->n_cc);
    CHECK(d.n_destinatari > 0 && d.destinatari[0].tipo == PEC_DEST_CERTIFICATO);
    CHECK_STR(d.identificativo, ID);
    CHECK_STR(d.gestore_emittente, "Gestore A S.p.A.");
    CHECK_STR(d.giorno, "01/03/2024");
    CHECK_STR(d.ora, "12:00:00");
    CHECK_STR(d.zona, "+0100");
    CHECK(d.ricevuta == o->tipo_ricevuta);
    CHECK(o->message_id ? d.msgid && strcmp(d.msgid, o->message_id) == 0 : d.msgid == NULL);
    CHECK_STR(d.risposte, o->n_reply_to ? o->reply_to[0] : "mario.rossi@pec-a.test");
    CHECK(o->subject ? d.oggetto && strcmp(d.oggetto, o->subject) == 0 : d.oggetto == NULL);
    pec_daticert_free(&d);
    if (shared != NULL && *shared != '\0' && access("/usr/bin/xmllint", X_OK) == 0) {
        char *path = xasprintf("%s/%s.daticert.xml", env.outdir, stem);
        char *cmd =
            xasprintf("xmllint --noout --dtdvalid '%s/spec/daticert.dtd' '%s'", shared, path);

        CHECK(write_file(path, xml.p, xml.n) == 0);
        CHECK(run(cmd) == 0);
        free(cmd);
        free(path);
    }
    free(xml.p);
}

/* text and html: the facts are there, nothing active or external */
static void check_texts(const unsigned char *alt, size_t n)
{
    size_t bs = body_start(alt, n);
    char *ctype = part_header(alt, n, "Content-Type");
    char *boundary = boundary_of(ctype);
    struct range parts[MAX_PARTS];

    CHECK(ctype != NULL && STARTS(ctype, "multipart/alternative"));
    CHECK(boundary != NULL && split(alt + bs, n - bs, boundary, parts) == 2);
    if (boundary != NULL && split(alt + bs, n - bs, boundary, parts) == 2) {
        const unsigned char *t = alt + bs + parts[0].off, *h = alt + bs + parts[1].off;
        char *tt = xstrndup((const char *)t, parts[0].len),
             *hh = xstrndup((const char *)h, parts[1].len);

        CHECK(strstr(tt, "Content-Type: text/plain; charset=") != NULL);
        CHECK(strstr(tt, "Messaggio di posta certificata") != NULL);
        CHECK(strstr(tt, "indirizzato a:\r\ndest@pec-b.test\r\n") != NULL);
        CHECK(strstr(hh, "Content-Type: text/html; charset=\"iso-8859-1\"") != NULL);
        for (const char *bad = "<script|<style|src=|href=|http:|https:|url(|<img|<link"; *bad;) {
            size_t len = strcspn(bad, "|");
            char *word = xstrndup(bad, len);

            CHECK(strcasestr(hh, word) == NULL);
            free(word);
            bad += len + (bad[len] == '|');
        }
        free(tt);
        free(hh);
    }
    free(ctype);
    free(boundary);
}

static char *inner_boundary(const struct signed_parts *sp)
{
    char *ctype = part_header(sp->inner.p, sp->inner.n, "Content-Type");
    char *b = boundary_of(ctype);

    free(ctype);
    return b;
}

/* everything a busta must be */
static void check_busta(const struct pec_built *b, const struct pec_original *o,
                        const char *original_crlf, const char *stem)
{
    struct bytes body = spool_bytes(b->body), want;
    struct signed_parts sp;
    struct range parts[MAX_PARTS];
    char *path = save_full(b, o->raw, pec_busta_keeps, stem);
    char *boundary;
    size_t bs;

    check_top_headers(b, o);
    check_full_top(path);
    CHECK(take_apart(b, body.p, body.n, &sp) == 0);
    CHECK(verify_ours(&env, &sp) == 0);
    CHECK(verify_openssl(&env, &sp, path, stem) == 0);
    boundary = inner_boundary(&sp);
    bs = body_start(sp.inner.p, sp.inner.n);
    CHECK(boundary != NULL && split(sp.inner.p + bs, sp.inner.n - bs, boundary, parts) == 3);
    if (boundary != NULL && split(sp.inner.p + bs, sp.inner.n - bs, boundary, parts) == 3) {
        const unsigned char *pa = sp.inner.p + bs + parts[2].off;
        size_t pb = body_start(pa, parts[2].len);
        char *cte = part_header(pa, parts[2].len, "Content-Transfer-Encoding");
        char *ct = part_header(pa, parts[2].len, "Content-Type");

        check_texts(sp.inner.p + bs + parts[0].off, parts[0].len);
        check_daticert(sp.inner.p + bs + parts[1].off, parts[1].len, o, stem);
        CHECK_STR(ct, "message/rfc822; name=\"postacert.eml\"");
        /* the busta's parts travel on 7-bit transport: an 8-bit original is re-encoded */
        CHECK_STR(cte, "7bit");
        want = expected_postacert(original_crlf, o->message_id);
        if (o->eight_bit) {
            struct pec_spool *seven = pec_spool_new(NULL, 1 << 20);

            CHECK(pec_7bit(want.p, want.n, seven, NULL, 0) == 0);
            free(want.p);
            want.n = pec_spool_size(seven);
            want.p = xmalloc(want.n);
            memcpy(want.p, pec_spool_mem(seven), want.n);
            pec_spool_free(seven);
            for (size_t i = 0; i < want.n; i++)
                CHECK(want.p[i] < 0x80);
        }
        CHECK(parts[2].len - pb == want.n && memcmp(pa + pb, want.p, want.n) == 0);
        free(want.p);
        free(cte);
        free(ct);
    }
    free(boundary);
    signed_parts_free(&sp);
    free(body.p);
    free(path);
}

static void test_busta(const char *stem, const char *text, const char *crlf)
{
    struct pec_original o;
    struct pec_built b;

    CHECK(parse(&o, text, strlen(text)) == 0);
    CHECK(build_busta(&o, &b) == 0);
    check_busta(&b, &o, crlf, stem);
    pec_built_free(&b);
    pec_original_free(&o);
}

static void test_bustas(void)
{
    char *lf = lf_version(msg_crlf);
    struct pec_original o;
    struct pec_built b1, b2;
    struct bytes m1, m2;

    test_busta("busta-crlf", msg_crlf, msg_crlf);
    test_busta("busta-lf", lf, msg_crlf);
    test_busta("busta-8bit", msg_8bit, msg_8bit);
    test_busta("busta-nested", msg_nested, msg_nested);
    test_busta("busta-nomsgid", msg_nomsgid, msg_nomsgid);
    test_busta("busta-forged", msg_forged, msg_forged);
    free(lf);

    /* the non-ASCII subject as encoded-words; the forged one as written */
    CHECK(parse(&o, msg_8bit, sizeof(msg_8bit) - 1) == 0);
    CHECK(build_busta(&o, &b1) == 0);
    CHECK_STR(pec_headers_get(&b1.headers, "Subject"),
              "POSTA CERTIFICATA: =?UTF-8?B?Q2l0dMOgIOKCrCAxMDA=?=");
    pec_built_free(&b1);
    pec_original_free(&o);
    CHECK(parse(&o, msg_forged, sizeof(msg_forged) - 1) == 0);
    CHECK(build_busta(&o, &b1) == 0);
    CHECK_STR(pec_headers_get(&b1.headers, "Subject"),
              "POSTA CERTIFICATA: =?ISO-8859-1?Q?Perch=E9?= un oggetto\r\n piegato su due righe");
    CHECK_STR(pec_headers_get(&b1.headers, "X-TipoRicevuta"), "breve");

    pec_built_free(&b1);
    pec_original_free(&o);

    /* a bare CR or a line past 998 characters is not copied to the top level as written */
    {
        static const char bare_cr[] = "From: mario.rossi@pec-a.test\r\nTo: dest@pec-b.test\r\n"
                                      "Subject: a\rb\r\n\r\nx\r\n";
        char *longsub = xmalloc(1200);
        const char *v;
        int k = snprintf(longsub, 200,
                         "From: mario.rossi@pec-a.test\r\nTo: dest@pec-b.test\r\n"
                         "Subject: ");

        CHECK(parse(&o, bare_cr, sizeof(bare_cr) - 1) == 0);
        CHECK(build_busta(&o, &b1) == 0);
        CHECK_STR(pec_headers_get(&b1.headers, "Subject"), "POSTA CERTIFICATA: a b");
        pec_built_free(&b1);
        pec_original_free(&o);

        memset(longsub + k, 'x', 990);
        strcpy(longsub + k + 990, "\r\n\r\nx\r\n");
        CHECK(parse(&o, longsub, strlen(longsub)) == 0);
        CHECK(build_busta(&o, &b1) == 0);
        v = pec_headers_get(&b1.headers, "Subject");
        CHECK(v != NULL && STARTS(v, "POSTA CERTIFICATA: =?UTF-8?B?eHh4"));
        /* every line within 78 columns, the first one counting "Subject: " */
        for (const char *line = v, *eol; line != NULL; line = eol ? eol + 2 : NULL) {
            eol = strstr(line, "\r\n");
            CHECK((eol ? (size_t)(eol - line) : strlen(line)) +
                      (line == v ? strlen("Subject: ") : 0) <=
                  78);
        }
        free(longsub);
        pec_built_free(&b1);
        pec_original_free(&o);
    }

    CHECK(parse(&o, msg_forged, sizeof(msg_forged) - 1) == 0);
    CHECK(build_busta(&o, &b1) == 0);

    /* reproducible */
    CHECK(build_busta(&o, &b2) == 0);
    m1 = built_bytes(&b1);
    m2 = built_bytes(&b2);
    CHECK(m1.n == m2.n && memcmp(m1.p, m2.p, m1.n) == 0);
    free(m1.p);
    free(m2.p);
    pec_built_free(&b1);
    pec_built_free(&b2);
    pec_original_free(&o);

    /* refusals */
    {
        char err[256] = "";

        CHECK(parse(&o, msg_crlf, sizeof(msg_crlf) - 1) == 0);
        CHECK(pec_build_busta(&env.iss, &o, NULL, 0, ID, 0, &b1, err, sizeof(err)) == -1);
        CHECK(pec_build_busta(&env.iss, &o, NULL, 0, "<bad id>", 0, &b1, err, sizeof(err)) == -1);
        CHECK(strstr(err, "identificativo") != NULL);
        pec_original_free(&o);
    }
}

/* Python's email package reads the layout peers expect */
static void test_layout_python(void)
{
    char *path = xasprintf("%s/busta-nested.eml", env.outdir);
    char *cmd = xasprintf(
        "python3 -c '\n"
        "import email, sys\n"
        "m = email.message_from_binary_file(open(sys.argv[1], \"rb\"))\n"
        "assert m.get_content_type() == \"multipart/signed\"\n"
        "assert m.get_param(\"protocol\") == \"application/pkcs7-signature\"\n"
        "assert m.get_param(\"micalg\") == \"sha-256\"\n"
        "mixed, sig = m.get_payload()\n"
        "assert mixed.get_content_type() == \"multipart/mixed\"\n"
        "assert sig.get_content_type() == \"application/pkcs7-signature\"\n"
        "alt, dati, post = mixed.get_payload()\n"
        "assert alt.get_content_type() == \"multipart/alternative\"\n"
        "assert [p.get_content_type() for p in alt.get_payload()] == [\"text/plain\", "
        "\"text/html\"]\n"
        "assert dati.get_content_type() == \"application/xml\" and dati.get_filename() == "
        "\"daticert.xml\"\n"
        "assert post.get_content_type() == \"message/rfc822\" and post.get_filename() == "
        "\"postacert.eml\"\n"
        "orig = post.get_payload()[0]\n"
        "assert orig[\"Message-ID\"] == \"<" ID ">\", orig[\"Message-ID\"]\n"
        "assert orig[\"X-Riferimento-Message-ID\"] == \"<nested@client.example>\"\n"
        "assert orig.get_content_type() == \"multipart/mixed\"\n"
        "t = alt.get_payload()[0].get_payload(decode=True).decode(\"iso-8859-1\")\n"
        "assert \"Identificativo messaggio: " ID "\" in t, t\n"
        "assert \"\\u00e8 stato inviato da \\\"mario.rossi@pec-a.test\\\"\" in t, t\n"
        "for h in (\"X-Ricevuta\", \"X-VerificaSicurezza\", \"X-Mittente\"): assert h not in m\n"
        "assert m[\"Reply-To\"] == \"ufficio@pec-a.test\"\n"
        "assert m.get_all(\"To\") == [\"dest@pec-b.test\"] and m[\"Cc\"] == \"copia@example.org\"\n"
        "' '%s'",
        path);

    CHECK(run(cmd) == 0);
    free(cmd);
    free(path);
}

/* ---------------------------------------------------------------- busta di anomalia */

static void test_anomalia(void)
{
    struct pec_spool *received = pec_spool_new(NULL, 1 << 20);
    struct pec_built b;
    struct bytes body;
    struct signed_parts sp;
    struct range parts[MAX_PARTS];
    char err[512] = "";
    char *path, *boundary;
    size_t bs;
    static const char *const order[] = {"X-Trasporto", "Date",         "Subject",     "From",
                                        "Reply-To",    "MIME-Version", "Content-Type"};

    CHECK(pec_spool_write(received, msg_forged, sizeof(msg_forged) - 1) == 0);
    CHECK(pec_build_anomalia(&env.iss, received,
                             "la firma digitale del messaggio non risulta attendibile",
                             env.clock.fixed_at, &b, err, sizeof(err)) == 0);
    if (err[0])
        fprintf(stderr, "anomalia: %s\n", err);
    CHECK(b.headers.n == 7);
    for (size_t i = 0; i < 7 && i < b.headers.n; i++)
        CHECK_STR(b.headers.v[i].name, order[i]);
    CHECK_STR(pec_headers_get(&b.headers, "X-Trasporto"), "errore");
    CHECK(STARTS(pec_headers_get(&b.headers, "Subject"), "ANOMALIA MESSAGGIO: =?ISO-8859-1?Q?"));
    CHECK_STR(pec_headers_get(&b.headers, "From"),
              "\"Per conto di: mario.rossi@pec-a.test\" <posta-certificata@pec-a.test>");
    CHECK_STR(b.message_id, "forged.1@client.example");
    CHECK(pec_anomalia_keeps("message-id") && !pec_busta_keeps("Message-ID"));
    CHECK(pec_busta_keeps("received") && pec_busta_keeps("RETURN-PATH") &&
          !pec_busta_keeps("X-Trasporto") && !pec_busta_keeps("Subject"));

    path = save_full(&b, received, pec_anomalia_keeps, "anomalia-forged");
    body = spool_bytes(b.body);
    CHECK(take_apart(&b, body.p, body.n, &sp) == 0);
    CHECK(verify_ours(&env, &sp) == 0);
    CHECK(verify_openssl(&env, &sp, path, "anomalia-forged") == 0);
    boundary = inner_boundary(&sp);
    bs = body_start(sp.inner.p, sp.inner.n);
    /* only the text and the received message, whole */
    CHECK(boundary != NULL && split(sp.inner.p + bs, sp.inner.n - bs, boundary, parts) == 2);
    if (boundary != NULL && split(sp.inner.p + bs, sp.inner.n - bs, boundary, parts) == 2) {
        const unsigned char *t = sp.inner.p + bs + parts[0].off;
        const unsigned char *r = sp.inner.p + bs + parts[1].off;
        size_t rb = body_start(r, parts[1].len);
        char *tt = xstrndup((const char *)t, parts[0].len);

        CHECK(STARTS(t, "Content-Type: text/plain;"));
        CHECK(strstr(tt, "Anomalia nel messaggio") != NULL);
        CHECK(strstr(tt, "Tali dati non sono stati certificati per il seguente errore:\r\n"
                         "la firma digitale del messaggio non risulta attendibile") != NULL);
        CHECK(parts[1].len - rb == sizeof(msg_forged) - 1 &&
              memcmp(r + rb, msg_forged, sizeof(msg_forged) - 1) == 0);
        free(tt);
    }
    {
        struct bytes m = read_file(path);

        /* the received Message-ID stays at the top, the forged PEC headers do not */
        CHECK(find(m.p, body_start(m.p, m.n), "\r\nMessage-ID: <forged.2@client.example>") != NULL);
        CHECK(find(m.p, body_start(m.p, m.n), "X-Ricevuta") == NULL);
        free(m.p);
    }
    free(boundary);
    signed_parts_free(&sp);
    free(body.p);
    free(path);
    pec_built_free(&b);

    CHECK(pec_build_anomalia(&env.iss, received, "", 0, &b, err, sizeof(err)) == -1);
    pec_spool_free(received);
}

/* ---------------------------------------------------------------- 30 MB */

static void test_large(void)
{
    const size_t total = 30u * 1024 * 1024, chunk = 65536;
    struct pec_feed *f = pec_feed_new(NULL, 1 << 20);
    struct pec_issuer saved = env.iss;
    struct pec_original o;
    struct pec_built b;
    char err[512] = "";
    unsigned char *buf = xmalloc(chunk);
    char *path, *cmd;
    const char *rcpt[] = {"<dest@pec-b.test>"};

    /* base64-like lines of 76 characters with CRLF */
    for (size_t i = 0; i < chunk; i++)
        buf[i] = (i % 78) == 76 ? '\r' : (i % 78) == 77 ? '\n' : (unsigned char)('A' + i % 26);
    CHECK(pec_feed_header(f, "From", " mario.rossi@pec-a.test") == 0);
    CHECK(pec_feed_header(f, "To", " dest@pec-b.test") == 0);
    CHECK(pec_feed_header(f, "Subject", " allegato grande") == 0);
    CHECK(pec_feed_header(f, "Message-ID", " <large@client.example>") == 0);
    CHECK(pec_feed_eoh(f) == 0);
    for (size_t off = 0; off < total; off += chunk)
        CHECK(pec_feed_body(f, buf, chunk) == 0);
    CHECK(pec_feed_finish(f, "<mario.rossi@pec-a.test>", rcpt, 1, &o, err, sizeof(err)) == 0);
    pec_feed_free(f);
    free(buf);
    CHECK(pec_spool_mem(o.raw) == NULL);
    CHECK(pec_spool_size(o.raw) > total);

    env.iss.spool_mem_limit = 1 << 20;
    CHECK(build_busta(&o, &b) == 0);
    CHECK(b.body != NULL && pec_spool_mem(b.body) == NULL);
    CHECK(b.body != NULL && pec_spool_size(b.body) > total);
    path = save_full(&b, o.raw, pec_busta_keeps, "busta-30mb");
    cmd = xasprintf("openssl smime -verify -in '%s' -CAfile '%s/trust.pem' -purpose any "
                    "-out /dev/null 2>/dev/null",
                    path, env.pki);
    CHECK(run(cmd) == 0);
    /* too big to keep around */
    unlink(path);
    free(cmd);
    free(path);
    pec_built_free(&b);
    pec_original_free(&o);
    env.iss = saved;
}

int main(void)
{
    testenv_init(&env);
    test_original_facts();
    test_original_huge_header();
    test_feed();
    test_bustas();
    test_layout_python();
    test_anomalia();
    test_large();
    testenv_free(&env);
    return check_exit();
}
