/*
 * test_breve - the original of a ricevuta breve: which parts become hashes,
 * what the hashes cover, and that everything else is kept byte for byte,
 * with the original in memory and in a file alike.
 */
#include "check.h"
#include "message/breve.h"
#include "util/spool.h"
#include "util/xalloc.h"

#include <openssl/evp.h>

/* ---- helpers ---- */

static char *sha1_hex(const char *s, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    char *hex = xmalloc(41);

    if (EVP_Digest(s, n, md, &len, EVP_sha1(), NULL) != 1 || len != 20) {
        fprintf(stderr, "EVP_Digest failed\n");
        exit(2);
    }
    for (unsigned i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/* The breve form of IN, NUL-terminated; spools keep MEM_LIMIT bytes in memory. */
static char *breve(const char *in, size_t mem_limit, size_t *replaced)
{
    struct pec_spool *src = pec_spool_new(NULL, mem_limit), *dst = pec_spool_new(NULL, mem_limit);
    char err[256] = "", *out;
    size_t n;

    CHECK(src != NULL && dst != NULL);
    CHECK(pec_spool_puts(src, in) == 0);
    if (pec_breve_build(src, dst, replaced, err, sizeof(err)) != 0) {
        fprintf(stderr, "pec_breve_build: %s\n", err);
        CHECK(0);
    }
    n = pec_spool_size(dst);
    out = xmalloc(n + 1);
    CHECK(pec_spool_pread(dst, 0, out, n) == (ssize_t)n || n == 0);
    out[n] = '\0';
    pec_spool_free(src);
    pec_spool_free(dst);
    return out;
}

static int contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL)
        return 1;
    fprintf(stderr, "expected to find:\n%s\nin:\n%s\n", needle, hay);
    return 0;
}

/* ---- cases ---- */

#define PDF_B64 "JVBERi0xLjQK\r\nJSVFT0YK"

static const char mixed[] = "From: a@pec.example\r\n"
                            "Subject: tre allegati\r\n"
                            "MIME-Version: 1.0\r\n"
                            "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
                            "\r\n"
                            "preambolo\r\n"
                            "--XX\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n"
                            "\r\n"
                            "testo del messaggio\r\n"
                            "--XX\r\n"
                            "Content-Type: application/pdf; name=\"f.pdf\"\r\n"
                            "Content-Transfer-Encoding: base64\r\n"
                            "\r\n" PDF_B64 "\r\n"
                            "--XX\r\n"
                            "Content-Type: text/csv\r\n"
                            "Content-Disposition: attachment;\r\n"
                            " filename*=iso-8859-1''caf%E8.csv\r\n"
                            "\r\n"
                            "a;b\r\n"
                            "--XX\r\n"
                            "Content-Type: message/rfc822\r\n"
                            "\r\n"
                            "Subject: inoltrato\r\n"
                            "\r\n"
                            "corpo\r\n"
                            "--XX--\r\n"
                            "epilogo\r\n";

static void test_mixed(void)
{
    size_t replaced = 0;
    char *out = breve(mixed, 1 << 20, &replaced), *h_pdf = sha1_hex(PDF_B64, strlen(PDF_B64)),
         *h_csv = sha1_hex("a;b", 3), *h_eml = sha1_hex("Subject: inoltrato\r\n\r\ncorpo", 27);
    char *want_pdf = xasprintf("Content-Type: text/plain; charset=us-ascii;\r\n"
                               "\tname=\"f.pdf.hash\"\r\n"
                               "Content-Disposition: attachment;\r\n"
                               "\tfilename=\"f.pdf.hash\"\r\n"
                               "Content-Transfer-Encoding: 7bit\r\n"
                               "\r\n"
                               "%s\r\n--XX\r\n",
                               h_pdf);
    char *want_csv = xasprintf("\tname*=iso-8859-1''caf%%E8.csv.hash\r\n"
                               "Content-Disposition: attachment;\r\n"
                               "\tfilename*=iso-8859-1''caf%%E8.csv.hash\r\n"
                               "Content-Transfer-Encoding: 7bit\r\n\r\n%s\r\n--XX\r\n",
                               h_csv);
    char *want_eml = xasprintf("\tfilename=\"messaggio.eml.hash\"\r\n"
                               "Content-Transfer-Encoding: 7bit\r\n\r\n%s\r\n--XX--\r\nepilogo\r\n",
                               h_eml);

    CHECK(replaced == 3);
    CHECK(strncmp(out, mixed, strlen("From: a@pec.example\r\n")) == 0);
    CHECK(contains(out, "preambolo\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                        "testo del messaggio\r\n--XX\r\n"));
    CHECK(contains(out, want_pdf));
    CHECK(contains(out, want_csv));
    CHECK(contains(out, want_eml));
    CHECK(strstr(out, "corpo") == NULL && strstr(out, "JVBER") == NULL);
    free(out);

    /* the same through a spool that lives in a file from the first bytes */
    out = breve(mixed, 8, &replaced);
    CHECK(replaced == 3);
    CHECK(contains(out, want_pdf) && contains(out, want_eml));
    free(out);
    free(h_pdf);
    free(h_csv);
    free(h_eml);
    free(want_pdf);
    free(want_csv);
    free(want_eml);
}

/* A signed original: attachments of the first part hashed, the signature kept. */
static void test_signed(void)
{
    static const char in[] =
        "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n"
        "\tmicalg=sha-256; boundary=\"S\"\r\n"
        "\r\n"
        "--S\r\n"
        "Content-Type: multipart/mixed; boundary=\"M\"\r\n"
        "\r\n"
        "--M\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "firmato\r\n"
        "--M\r\n"
        "Content-Type: application/octet-stream; name=\"dati.bin\"\r\n"
        "\r\n"
        "xyz\r\n"
        "--M--\r\n"
        "\r\n"
        "--S\r\n"
        "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "MIIB\r\n"
        "--S--\r\n";
    size_t replaced = 0;
    char *out = breve(in, 1 << 20, &replaced), *h = sha1_hex("xyz", 3);

    CHECK(replaced == 1);
    CHECK(contains(out, h));
    CHECK(contains(out, "name=\"dati.bin.hash\""));
    CHECK(contains(out, "--S\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
                        "Content-Transfer-Encoding: base64\r\n\r\nMIIB\r\n--S--\r\n"));
    CHECK(strstr(out, "smime.p7s.hash") == NULL);
    free(out);
    free(h);
}

/* The message itself is never replaced: opaque S/MIME and single parts stay whole. */
static void test_whole(void)
{
    static const char opaque[] =
        "From: a@pec.example\r\n"
        "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\r\n"
        "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n";
    static const char plain[] = "Subject: x\r\n\r\nsolo testo\r\n";
    static const char no_boundary[] =
        "Content-Type: multipart/mixed\r\n\r\n--X\r\n\r\na\r\n--X--\r\n";
    size_t replaced = 9;
    char *out;

    out = breve(opaque, 1 << 20, &replaced);
    CHECK_STR(out, opaque);
    CHECK(replaced == 0);
    free(out);
    out = breve(plain, 1 << 20, &replaced);
    CHECK_STR(out, plain);
    free(out);
    out = breve(no_boundary, 1 << 20, &replaced);
    CHECK_STR(out, no_boundary);
    free(out);
}

/* Nested multiparts, LF line ends, a missing closing delimiter, an empty named part. */
static void test_shapes(void)
{
    static const char nested[] = "Content-Type: multipart/mixed; boundary=a\n"
                                 "\n"
                                 "--a\n"
                                 "Content-Type: multipart/related; boundary=\"b\"\n"
                                 "\n"
                                 "--b\n"
                                 "Content-Type: text/html\n"
                                 "\n"
                                 "<img src=cid:x>\n"
                                 "--b\n"
                                 "Content-Type: image/png; name=logo.png\n"
                                 "Content-ID: <x>\n"
                                 "\n"
                                 "iVBORw0K\n"
                                 "--b--\n"
                                 "--a\n"
                                 "Content-Disposition: attachment; filename=\"vuoto.txt\"\n"
                                 "\n"
                                 "\n"
                                 "--a\n"
                                 "Content-Type: text/plain; name=\"senza-chiusura.txt\"\n"
                                 "\n"
                                 "ultima parte\n";
    size_t replaced = 0;
    char *out = breve(nested, 1 << 20, &replaced), *h_png = sha1_hex("iVBORw0K", 8),
         *h_last = sha1_hex("ultima parte\n", 13);

    CHECK(replaced == 3);
    CHECK(contains(out, "<img src=cid:x>\n--b\nContent-Type: text/plain; charset=us-ascii;\r\n"
                        "\tname=\"logo.png.hash\""));
    CHECK(contains(out, h_png));
    /* an empty body hashes as the empty string */
    CHECK(contains(out, "da39a3ee5e6b4b0d3255bfef95601890afd80709\n--a\n"));
    /* without a closing delimiter the last part runs to the end */
    CHECK(contains(out, h_last));
    CHECK(contains(out, "--b--\n--a\n"));
    free(out);
    free(h_png);
    free(h_last);
}

/* Names: RFC 2047 words decoded, long or odd names written as RFC 2231 segments. */
static void test_names(void)
{
    static const char fmt[] = "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
                              "--B\r\nContent-Type: application/pdf; name=\"%s\"\r\n\r\nx\r\n"
                              "--B--\r\n";
    char long_name[121];
    char *in, *out;

    in = xasprintf(fmt, "=?UTF-8?B?w6hzdGF0ZS5wZGY=?=");
    out = breve(in, 1 << 20, NULL);
    CHECK(contains(out, "\tname*=UTF-8''%C3%A8state.pdf.hash\r\n"));
    free(in);
    free(out);

    in = xasprintf(fmt, "a \\\"b\\\".pdf");
    out = breve(in, 1 << 20, NULL);
    CHECK(contains(out, "\tname*=utf-8''a%20%22b%22.pdf.hash\r\n"));
    free(in);
    free(out);

    memset(long_name, 'n', 120);
    long_name[120] = '\0';
    in = xasprintf(fmt, long_name);
    out = breve(in, 1 << 20, NULL);
    CHECK(contains(
        out, ";\r\n\tname*0*=utf-8''nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn;"
             "\r\n\tname*1*=nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn;"
             "\r\n\tname*2*=.hash\r\n"));
    free(in);
    free(out);

    /* continuations in the original are joined */
    out = breve("Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\n"
                "Content-Disposition: attachment; filename*0=\"parte\"; filename*1=\"uno.txt\"\r\n"
                "\r\nx\r\n--B--\r\n",
                1 << 20, NULL);
    CHECK(contains(out, "filename=\"parteuno.txt.hash\""));
    free(out);
}

/* Deeper than PEC_BREVE_MAX_DEPTH: copied, not walked, and no crash. */
static void test_depth(void)
{
    size_t cap = 200000, n = 0;
    char *in = xmalloc(cap), *out;
    int depth = PEC_BREVE_MAX_DEPTH + 8;

    for (int i = 0; i < depth; i++)
        n += (size_t)snprintf(in + n, cap - n,
                              "Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n", i,
                              i);
    n += (size_t)snprintf(in + n, cap - n,
                          "Content-Type: text/plain; name=\"profondo.txt\"\r\n\r\nx\r\n");
    for (int i = depth - 1; i >= 0; i--)
        n += (size_t)snprintf(in + n, cap - n, "--d%d--\r\n", i);
    out = breve(in, 1 << 20, NULL);
    CHECK_STR(out, in);
    free(out);
    free(in);
}

int main(void)
{
    test_mixed();
    test_signed();
    test_whole();
    test_shapes();
    test_names();
    test_depth();
    return check_exit();
}
