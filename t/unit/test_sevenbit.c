/*
 * test_sevenbit - an original made 7-bit for the busta (message/sevenbit.h): 8-bit
 * leaf bodies re-encoded (quoted-printable for text, base64 for the rest) and
 * decoding to the same bytes, everything else unchanged, and what cannot be made
 * 7-bit refused with the reason.
 */
#include "check.h"
#include "message/mime.h"
#include "message/sevenbit.h"
#include "util/encode.h"
#include "util/spool.h"
#include "util/xalloc.h"

/* IN made 7-bit: the result's bytes (NUL-terminated) and its return code in *RC. */
static char *seven(const char *in, int *rc, char *why, size_t whylen)
{
    struct pec_spool *out = pec_spool_new(NULL, 1 << 20);
    char *s;
    size_t n;

    *rc = pec_7bit((const unsigned char *)in, strlen(in), out, why, whylen);
    n = pec_spool_size(out);
    s = xmalloc(n + 1);
    memcpy(s, pec_spool_mem(out), n);
    s[n] = '\0';
    pec_spool_free(out);
    /* the check-only walk agrees */
    CHECK(pec_7bit((const unsigned char *)in, strlen(in), NULL, NULL, 0) == *rc);
    return s;
}

static int all7(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* The body of the part at [P, P+N) decoded per its Content-Transfer-Encoding. */
static char *decoded(const char *p, size_t n)
{
    struct pec_span head, body;
    unsigned char *out = NULL;
    size_t len = 0;
    char *enc, *s;

    pec_mime_split((const unsigned char *)p, n, &head, &body);
    enc = pec_mime_encoding(head);
    if (strcmp(enc, "quoted-printable") == 0)
        CHECK(pec_qp_decode(body.p, body.len, &out, &len) == 0);
    else if (strcmp(enc, "base64") == 0)
        CHECK(pec_base64_decode(body.p, body.len, &out, &len) == 0);
    else {
        out = xmalloc(body.len + 1);
        memcpy(out, body.p, body.len);
        len = body.len;
    }
    free(enc);
    s = xmalloc(len + 1);
    memcpy(s, out, len);
    s[len] = '\0';
    free(out);
    return s;
}

static void test_unchanged(void)
{
    static const char plain[] = "From: a@b\r\nSubject: x\r\n\r\ntutto ASCII\r\n";
    char why[200];
    int rc;
    char *out = seven(plain, &rc, why, sizeof(why));

    CHECK(rc == 0);
    CHECK_STR(out, plain);
    free(out);
}

static void test_text_and_binary(void)
{
    static const char msg[] = "From: a@b\r\nMIME-Version: 1.0\r\n"
                              "Content-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n"
                              "preambolo\r\n"
                              "--xx\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Transfer-Encoding: 8bit\r\n\r\n"
                              "Perch\xc3\xa9 cos\xc3\xac = s\xc3\xac\r\nseconda riga\r\n"
                              "--xx\r\n"
                              "Content-Type: application/octet-stream\r\n"
                              "Content-Disposition: attachment; filename=\"dati.bin\"\r\n"
                              "Content-Transfer-Encoding: binary\r\n\r\n"
                              "\x80\x81\xfe\xff binario\r\n"
                              "--xx\r\n"
                              "Content-Type: text/plain\r\n\r\n"
                              "gia' 7 bit\r\n"
                              "--xx--\r\n";
    struct pec_mime_multipart mp;
    struct pec_span head, body;
    struct pec_mime_ctype ct;
    char why[200], *out, *d, *v;
    int rc;

    out = seven(msg, &rc, why, sizeof(why));
    CHECK(rc == 0);
    CHECK(all7(out));
    /* the header, the preamble and the 7-bit part keep their bytes */
    CHECK(strncmp(out, msg, strlen("From: a@b\r\nMIME-Version: 1.0\r\n")) == 0);
    CHECK(strstr(out, "preambolo\r\n--xx\r\n") != NULL);
    CHECK(strstr(out, "--xx\r\nContent-Type: text/plain\r\n\r\ngia' 7 bit\r\n--xx--\r\n") != NULL);

    pec_mime_split((const unsigned char *)out, strlen(out), &head, &body);
    v = pec_mime_header(head, "Content-Type");
    pec_mime_ctype_parse(v, &ct);
    CHECK(pec_mime_multipart_split(body, pec_mime_param(&ct.params, "boundary"), 0, &mp) == 0);
    CHECK(mp.nparts == 3);
    if (mp.nparts == 3) {
        struct pec_span h;

        pec_mime_split(mp.parts[0].p, mp.parts[0].len, &h, &body);
        free(v);
        v = pec_mime_header(h, "Content-Transfer-Encoding");
        CHECK_STR(v, "quoted-printable");
        CHECK(pec_mime_header_count(h, "Content-Transfer-Encoding") == 1);
        d = decoded((const char *)mp.parts[0].p, mp.parts[0].len);
        CHECK_STR(d, "Perch\xc3\xa9 cos\xc3\xac = s\xc3\xac\r\nseconda riga");
        free(d);
        pec_mime_split(mp.parts[1].p, mp.parts[1].len, &h, &body);
        free(v);
        v = pec_mime_header(h, "Content-Transfer-Encoding");
        CHECK_STR(v, "base64");
        d = decoded((const char *)mp.parts[1].p, mp.parts[1].len);
        CHECK(memcmp(d, "\x80\x81\xfe\xff binario", 12) == 0 && strlen(d) == 12);
        free(d);
    }
    free(v);
    pec_mime_multipart_free(&mp);
    pec_mime_ctype_free(&ct);
    free(out);
}

/* A message that is one 8-bit text, without MIME-Version: it gets one. */
static void test_single_part(void)
{
    static const char msg[] = "From: a@b\r\nSubject: x\r\n\r\ncaff\xc3\xa8\r\n";
    char why[200], *out, *d;
    int rc;

    out = seven(msg, &rc, why, sizeof(why));
    CHECK(rc == 0 && all7(out));
    CHECK(strncmp(out,
                  "From: a@b\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
                  "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaff=C3=A8\r\n",
                  strlen(out)) == 0);
    d = decoded(out, strlen(out));
    CHECK_STR(d, "caff\xc3\xa8\r\n");
    free(d);
    free(out);
}

/* A forwarded message, 8-bit inside: re-encoded inside, the wrapper unchanged. */
static void test_nested(void)
{
    static const char msg[] = "From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                              "--b\r\nContent-Type: message/rfc822\r\n\r\n"
                              "From: c@d\r\nContent-Type: text/plain; charset=latin1\r\n\r\n"
                              "citt\xe0\r\n"
                              "--b--\r\n";
    char why[200], *out;
    int rc;

    out = seven(msg, &rc, why, sizeof(why));
    CHECK(rc == 0 && all7(out));
    CHECK(strstr(out, "--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d\r\n"
                      "Content-Type: text/plain; charset=latin1\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n\r\ncitt=E0\r\n--b--\r\n") !=
          NULL);
    free(out);
}

/* Raw 8-bit text in a Subject: encoded words, the text unchanged for a reader. */
static void test_header_text(void)
{
    static const char msg[] = "From: a@b\r\nSubject: caff\xc3\xa8 e\r\n perch\xe9\r\n"
                              "X-Note: ok\r\n\r\nx\r\n";
    struct pec_span head, body;
    char why[200], *out, *v, *text;
    int rc;

    out = seven(msg, &rc, why, sizeof(why));
    CHECK(rc == 0 && all7(out));
    CHECK(strncmp(out, "From: a@b\r\nSubject: =?UTF-8?B?", 30) == 0);
    CHECK(strstr(out, "X-Note: ok\r\n\r\nx\r\n") != NULL);
    pec_mime_split((const unsigned char *)out, strlen(out), &head, &body);
    v = pec_mime_header(head, "Subject");
    text = pec_mime_decode_text(v);
    /* UTF-8 stays, a Latin-1 byte is read as Latin-1 (as every reader of ours does) */
    CHECK_STR(text, "caff\xc3\xa8 e perch\xc3\xa9");
    free(text);
    free(v);
    free(out);
}

static void test_refused(void)
{
    static const struct {
        const char *msg, *why;
    } cases[] = {
        {"From: Niccol\xc3\xb2 <a@b>\r\n\r\nx\r\n",
         "the message: 8-bit characters in the From header field"},
        {"Content-Type: multipart/signed; boundary=s; "
         "protocol=\"application/pkcs7-signature\"\r\n\r\n"
         "--s\r\nContent-Type: text/plain\r\n\r\nfirmat\xc3\xa0\r\n--s\r\n"
         "Content-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--s--\r\n",
         "signed part"},
        {"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\xff\xfe\r\n",
         "encoded base64 or quoted-printable"},
        {"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\xff\r\n",
         "do not know"},
        {"Content-Type: multipart/mixed; boundary=b\r\n\r\npreambolo "
         "\xe8\r\n--b\r\n\r\nx\r\n--b--\r\n",
         "outside any part"},
        {"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Disposition: attachment; filename=\xe8.txt\r\n\r\nx\r\n--b--\r\n",
         "the message, part 1: 8-bit characters in the Content-Disposition header field"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char why[300], *out;
        int rc;

        out = seven(cases[i].msg, &rc, why, sizeof(why));
        CHECK(rc == 1);
        if (strstr(why, cases[i].why) == NULL)
            fprintf(stderr, "case %zu: \"%s\" does not say \"%s\"\n", i, why, cases[i].why);
        CHECK(strstr(why, cases[i].why) != NULL);
        free(out);
    }
}

int main(void)
{
    test_unchanged();
    test_text_and_binary();
    test_single_part();
    test_nested();
    test_header_text();
    test_refused();
    return check_exit();
}
