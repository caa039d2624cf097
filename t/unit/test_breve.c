/*
 * test_breve - the original of a ricevuta breve: which parts become hashes,
 * what the hashes cover, and that everything else is kept byte for byte,
 * with the original in memory and in a file alike.
 */
#include "check.h"
#include "message/breve.h"
#include "message/mime.h"
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
    size_t replaced = 9;
    char *out;

    out = breve(opaque, 1 << 20, &replaced);
    CHECK_STR(out, opaque);
    CHECK(replaced == 0);
    free(out);
    out = breve(plain, 1 << 20, &replaced);
    CHECK_STR(out, plain);
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

/*
 * A delimiter line with more transport padding than breve's line prefix holds (found by
 * fuzz_breve): the MIME layer, and GMime, read it as a delimiter, so the attachment
 * after it is one and is replaced, not carried.
 */
static void test_long_padding(void)
{
    char msg[1024], pad[301], *out, *h;
    size_t replaced = 0;

    memset(pad, '\t', 300);
    pad[300] = '\0';
    pad[0] = '\r';
    snprintf(msg, sizeof(msg),
             "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
             "--b%s\r\n"
             "Content-Disposition: attachment; filename=\"segreto.txt\"\r\n\r\n"
             "contenuto dell'allegato che non deve restare\r\n"
             "--b--%s\r\n",
             pad, pad);
    out = breve(msg, 1 << 20, &replaced);
    h = sha1_hex("contenuto dell'allegato che non deve restare", 44);
    CHECK(replaced == 1);
    CHECK(!contains(out, "contenuto dell'allegato"));
    CHECK(contains(out, h));
    free(out);
    free(h);
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

/* ---- depth ---- */

#define SECRET "PAYLOAD-RISERVATO-0123456789"

/*
 * LEVELS multipart/mixed nested one in the other (boundaries "d0" outermost to
 * "d<LEVELS-1>"), the innermost holding INNER, one or more whole body parts
 * separated by "--d<LEVELS-1>" lines.
 */
static char *nested(int levels, const char *inner)
{
    size_t cap = (size_t)levels * 100 + strlen(inner) + 1, n = 0;
    char *in = xmalloc(cap);

    for (int i = 0; i < levels; i++)
        n += (size_t)snprintf(in + n, cap - n,
                              "Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n", i,
                              i);
    n += (size_t)snprintf(in + n, cap - n, "%s", inner);
    for (int i = levels - 1; i >= 0; i--)
        n += (size_t)snprintf(in + n, cap - n, "\r\n--d%d--", i);
    snprintf(in + n, cap - n, "\r\n");
    return in;
}

/*
 * Parses OUT with the MIME layer through LEVELS multiparts of one part each but
 * the last, which must be closed and have NPARTS parts; fills PARTS with them.
 * Returns whether every level parsed as expected.
 */
static int descend(const char *out, int levels, struct pec_span *parts, size_t nparts)
{
    struct pec_span ent = {(const unsigned char *)out, strlen(out)}, head, body;

    for (int i = 0; i < levels; i++) {
        struct pec_mime_ctype ct;
        struct pec_mime_multipart mp;
        char *value, want[16];
        const char *b;
        int ok;

        if (pec_mime_split(ent.p, ent.len, &head, &body) != 1) {
            fprintf(stderr, "level %d: no end of headers\n", i);
            return 0;
        }
        value = pec_mime_header(head, "Content-Type");
        pec_mime_ctype_parse(value, &ct);
        free(value);
        b = pec_mime_param(&ct.params, "boundary");
        snprintf(want, sizeof(want), "d%d", i);
        ok = pec_mime_ctype_is(&ct, "multipart", "mixed") && b != NULL && strcmp(b, want) == 0 &&
             pec_mime_multipart_split(body, b, 16, &mp) == 0 && mp.closed &&
             mp.nparts == (i + 1 < levels ? 1 : nparts);
        if (ok && i + 1 < levels)
            ent = mp.parts[0];
        else if (ok)
            memcpy(parts, mp.parts, nparts * sizeof(*parts));
        pec_mime_multipart_free(&mp);
        pec_mime_ctype_free(&ct);
        if (!ok) {
            fprintf(stderr, "level %d: not the multipart/mixed expected\n", i);
            return 0;
        }
    }
    return 1;
}

/* the replacement of an attachment called NAME whose body hashes to HEX */
static char *hash_part(const char *name, const char *hex)
{
    return xasprintf("Content-Type: text/plain; charset=us-ascii;\r\n"
                     "\tname=\"%s.hash\"\r\n"
                     "Content-Disposition: attachment;\r\n"
                     "\tfilename=\"%s.hash\"\r\n"
                     "Content-Transfer-Encoding: 7bit\r\n"
                     "\r\n"
                     "%s",
                     name, name, hex);
}

/* PART is the replacement of an attachment called NAME whose body hashes to HEX */
static int is_hash_part(struct pec_span part, const char *name, const char *hex)
{
    char *got = xmalloc(part.len + 1), *want = hash_part(name, hex);
    int ok;

    memcpy(got, part.p, part.len);
    got[part.len] = '\0';
    ok = strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "part:\n%s\nexpected:\n%s\n", got, want);
    free(got);
    free(want);
    return ok;
}

/*
 * Nested as deep as the walk goes (PEC_BREVE_MAX_DEPTH multiparts): every
 * attachment of the innermost one is still replaced by itself.
 */
static void test_depth_limit(void)
{
    static const char inner[] = "Content-Type: application/octet-stream; name=\"uno.bin\"\r\n"
                                "\r\n" SECRET "-uno\r\n"
                                "--d%d\r\n"
                                "Content-Disposition: attachment; filename=\"due.txt\"\r\n"
                                "\r\n" SECRET "-due";
    char *parts_in = xasprintf(inner, PEC_BREVE_MAX_DEPTH - 1);
    char *in = nested(PEC_BREVE_MAX_DEPTH, parts_in), *out;
    const char *tail;
    char *h_uno = sha1_hex(SECRET "-uno", strlen(SECRET "-uno")),
         *h_due = sha1_hex(SECRET "-due", strlen(SECRET "-due"));
    struct pec_span parts[2];
    size_t replaced = 0;

    out = breve(in, 1 << 20, &replaced);
    CHECK(replaced == 2);
    CHECK(strstr(out, SECRET) == NULL);
    CHECK(descend(out, PEC_BREVE_MAX_DEPTH, parts, 2));
    CHECK(is_hash_part(parts[0], "uno.bin", h_uno));
    CHECK(is_hash_part(parts[1], "due.txt", h_due));
    /* the structure around them is the original's, byte for byte */
    CHECK(strncmp(out, in, (size_t)(strstr(in, "Content-Type: application/") - in)) == 0);
    tail = strstr(in, "-due") + strlen("-due");
    CHECK(strlen(out) > strlen(tail) && strcmp(out + strlen(out) - strlen(tail), tail) == 0);
    free(out);
    free(in);
    free(parts_in);
    free(h_uno);
    free(h_due);
}

/*
 * Deeper than the walk goes: the multipart past the limit is replaced whole,
 * its body hashed like an attachment's, so none of the attachments below it
 * comes through, at one level past the limit as at 210.
 */
static void test_depth_past(void)
{
    static const char inner[] = "Content-Type: application/octet-stream\r\n"
                                "Content-Disposition: attachment; filename=\"profondo.bin\"\r\n"
                                "\r\n" SECRET;
    int depths[] = {PEC_BREVE_MAX_DEPTH + 1, 210};

    for (size_t k = 0; k < sizeof(depths) / sizeof(depths[0]); k++) {
        char *in = nested(depths[k], inner), *out, *cut, *h_sub;
        const char *lim, *sub, *tail;
        struct pec_span part;
        size_t replaced = 0;

        /*
         * the multipart PEC_BREVE_MAX_DEPTH deep runs from LIM to TAIL, where
         * its parent's close delimiter begins; SUB is its body
         */
        cut = xasprintf("Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n",
                        PEC_BREVE_MAX_DEPTH);
        lim = strstr(in, cut);
        sub = lim + strlen(cut);
        free(cut);
        cut = xasprintf("\r\n--d%d--", PEC_BREVE_MAX_DEPTH - 1);
        tail = strstr(in, cut);
        free(cut);
        h_sub = sha1_hex(sub, (size_t)(tail - sub));

        out = breve(in, 1 << 20, &replaced);
        CHECK(strstr(out, SECRET) == NULL);
        CHECK(strstr(out, "profondo.bin") == NULL);
        CHECK(replaced == 1);
        CHECK(descend(out, PEC_BREVE_MAX_DEPTH, &part, 1));
        CHECK(is_hash_part(part, "allegato", h_sub));
        /* above the limit nothing changed */
        CHECK(strncmp(out, in, (size_t)(lim - in)) == 0);
        CHECK(strlen(out) > strlen(tail) && strcmp(out + strlen(out) - strlen(tail), tail) == 0);
        free(out);

        /* the same through a spool in a file */
        out = breve(in, 8, &replaced);
        CHECK(strstr(out, SECRET) == NULL);
        CHECK(replaced == 1);
        free(out);
        free(h_sub);
        free(in);
    }
}

/* ---- parts the walk does not read into ---- */

/* OUT is WANT; else where they part, as they may be hundreds of kilobytes long */
static int same(const char *out, const char *want)
{
    size_t i = 0, from;

    while (out[i] != '\0' && out[i] == want[i])
        i++;
    if (out[i] == want[i])
        return 1;
    from = i > 40 ? i - 40 : 0;
    fprintf(stderr,
            "output differs at byte %zu (%zu bytes, expected %zu):\n"
            "  got:      \"%.120s\"\n  expected: \"%.120s\"\n",
            i, strlen(out), strlen(want), out + from, want + from);
    return 0;
}

/* header lines, with their line breaks, more than PEC_BREVE_MAX_HEADER bytes in all */
static char *filler(void)
{
    static const char line[] =
        "X-Riempitivo: rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr\r\n";
    size_t n = PEC_BREVE_MAX_HEADER / (sizeof(line) - 1) + 2;
    char *s = xmalloc(n * (sizeof(line) - 1) + 1);

    for (size_t i = 0; i < n; i++)
        memcpy(s + i * (sizeof(line) - 1), line, sizeof(line) - 1);
    s[n * (sizeof(line) - 1)] = '\0';
    return s;
}

/*
 * The breve of IN is WANT, with REPLACED parts hashed and no byte of SECRET,
 * with the original in memory and in a file.
 */
static void check_breve(const char *in, const char *want, size_t replaced)
{
    size_t limits[] = {1 << 20, 8};

    for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
        size_t got = 0;
        char *out = breve(in, limits[k], &got);

        CHECK(strstr(out, SECRET) == NULL);
        CHECK(got == replaced);
        CHECK(same(out, want));
        free(out);
    }
}

/*
 * A part whose header section is too large to read is replaced whole, its body
 * hashed, as "allegato" since its name is not read.  The message's own header
 * section, too large, stays as it is, and its body becomes the hash.
 */
static void test_header_too_large(void)
{
    static const char head[] = "From: a@pec.example\r\n"
                               "Content-Type: multipart/mixed; boundary=\"H\"\r\n"
                               "\r\n"
                               "--H\r\n"
                               "Content-Type: text/plain\r\n"
                               "\r\n"
                               "testo\r\n"
                               "--H\r\n";
    static const char payload[] = SECRET "-grande\r\n" SECRET "-grande";
    char *fill = filler(), *in, *want, *part, *hex;
    const char *body;

    in = xasprintf("%sContent-Type: application/octet-stream; name=\"grande.bin\"\r\n%s\r\n%s"
                   "\r\n--H--\r\n",
                   head, fill, payload);
    hex = sha1_hex(payload, strlen(payload));
    part = hash_part("allegato", hex);
    want = xasprintf("%s%s\r\n--H--\r\n", head, part);
    check_breve(in, want, 1);
    free(in);
    free(hex);
    free(part);
    free(want);

    in = xasprintf("From: a@pec.example\r\n%sContent-Type: multipart/mixed; boundary=\"H\"\r\n\r\n"
                   "--H\r\nContent-Disposition: attachment; filename=\"grande.bin\"\r\n\r\n%s"
                   "\r\n--H--\r\n",
                   fill, payload);
    body = strstr(in, "\r\n\r\n") + 4;
    hex = sha1_hex(body, strlen(body));
    want = xasprintf("%.*s%s\r\n", (int)(body - in), in, hex);
    check_breve(in, want, 1);
    free(in);
    free(hex);
    free(want);
    free(fill);
}

#define B70 "b123456789012345678901234567890123456789012345678901234567890123456789"
#define B71 B70 "9"

/*
 * A multipart the walk cannot split, for want of a boundary of 1 to 70
 * characters, is replaced whole like one too deep; as the message itself it
 * keeps its header section and its body becomes the hash.  A boundary of 70
 * characters is still walked.
 */
static void test_unsplittable(void)
{
    static const char *const ctypes[] = {
        "multipart/mixed",
        "multipart/mixed; boundary=\"\"",
        "multipart/mixed; boundary=\"" B71 "\"",
    };
    static const char head[] = "From: a@pec.example\r\n"
                               "Content-Type: multipart/mixed; boundary=\"U\"\r\n"
                               "\r\n"
                               "--U\r\n"
                               "Content-Type: text/plain\r\n"
                               "\r\n"
                               "testo\r\n"
                               "--U\r\n";
    static const char sub[] = "--" B71 "\r\n"
                              "Content-Type: application/octet-stream\r\n"
                              "Content-Disposition: attachment; filename=\"dentro.bin\"\r\n"
                              "\r\n" SECRET "-dentro\r\n"
                              "--" B71 "--";
    static const char walked[] = "Content-Type: multipart/mixed; boundary=\"" B70 "\"\r\n"
                                 "\r\n"
                                 "--" B70 "\r\n"
                                 "Content-Disposition: attachment; filename=\"dentro.bin\"\r\n"
                                 "\r\n" SECRET "-dentro\r\n"
                                 "--" B70 "--\r\n";
    char *in, *want, *part, *hex, *body;

    for (size_t k = 0; k < sizeof(ctypes) / sizeof(ctypes[0]); k++) {
        /* a part */
        in = xasprintf("%sContent-Type: %s\r\n\r\n%s\r\n--U--\r\n", head, ctypes[k], sub);
        hex = sha1_hex(sub, strlen(sub));
        part = hash_part("allegato", hex);
        want = xasprintf("%s%s\r\n--U--\r\n", head, part);
        check_breve(in, want, 1);
        free(in);
        free(hex);
        free(part);
        free(want);

        /* the message */
        in = xasprintf("From: a@pec.example\r\nContent-Type: %s\r\n\r\n%s\r\n", ctypes[k], sub);
        body = xasprintf("%s\r\n", sub);
        hex = sha1_hex(body, strlen(body));
        want = xasprintf("From: a@pec.example\r\nContent-Type: %s\r\n\r\n%s\r\n", ctypes[k], hex);
        check_breve(in, want, 1);
        free(in);
        free(body);
        free(hex);
        free(want);
    }

    hex = sha1_hex(SECRET "-dentro", strlen(SECRET "-dentro"));
    part = hash_part("dentro.bin", hex);
    want = xasprintf("Content-Type: multipart/mixed; boundary=\"" B70 "\"\r\n\r\n--" B70 "\r\n"
                     "%s\r\n--" B70 "--\r\n",
                     part);
    check_breve(walked, want, 1);
    free(hex);
    free(part);
    free(want);
}

int main(void)
{
    test_mixed();
    test_signed();
    test_whole();
    test_shapes();
    test_names();
    test_depth_limit();
    test_depth_past();
    test_header_too_large();
    test_unsplittable();
    test_long_padding();
    return check_exit();
}
