/*
 * test_spool - the byte buffer that moves to a file.
 *
 * What goes in comes back, at any offset and through every reader, whether
 * it stayed in memory, moved to the file at the limit, or still partly sits
 * in the write-behind buffer; the file leaves no name behind; a directory
 * that cannot hold the file is an error, not a crash; the encoders built on
 * the spool write what RFC 2045 and RFC 2047 say.
 */
#include "check.h"
#include "util/encode.h"
#include "util/spool.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test_spool.XXXXXX";

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 7 + i / 251) & 0xff);
}

static size_t files_in(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    if (d == NULL)
        return (size_t)-1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int same_as_pattern(const unsigned char *p, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pattern(off + i))
            return 0;
    return 1;
}

struct collect {
    unsigned char *buf;
    size_t len;
    size_t calls;
};

static int collect(const unsigned char *chunk, size_t n, void *arg)
{
    struct collect *c = arg;

    c->buf = xrealloc(c->buf, c->len + n + 1);
    memcpy(c->buf + c->len, chunk, n);
    c->len += n;
    c->calls++;
    return 0;
}

static int stop_early(const unsigned char *chunk, size_t n, void *arg)
{
    (*(int *)arg)++;
    return 42;
}

/* write TOTAL bytes of the pattern in pieces of STEP */
static struct pec_spool *filled(size_t limit, size_t total, size_t step)
{
    struct pec_spool *sp = pec_spool_new(tmpdir, limit);
    unsigned char *buf = xmalloc(step);

    for (size_t off = 0; off < total; off += step) {
        size_t n = total - off < step ? total - off : step;

        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(off + i);
        CHECK(pec_spool_write(sp, buf, n) == 0);
    }
    free(buf);
    return sp;
}

static void check_reads(struct pec_spool *sp, size_t total)
{
    static const size_t offs[] = {0, 1, 4095, 4096, 65535, 65536, 70000, 199999};
    unsigned char buf[100000];
    struct collect c = {0};

    CHECK(pec_spool_size(sp) == total);
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        size_t off = offs[i];
        ssize_t n;

        if (off >= total)
            continue;
        n = pec_spool_pread(sp, off, buf, sizeof(buf));
        CHECK(n == (ssize_t)(total - off < sizeof(buf) ? total - off : sizeof(buf)));
        CHECK(n > 0 && same_as_pattern(buf, off, (size_t)n));
    }
    CHECK(pec_spool_pread(sp, total, buf, 10) == 0);
    CHECK(pec_spool_each(sp, 3, total - 3, collect, &c) == 0);
    CHECK(c.len == total - 3 && same_as_pattern(c.buf, 3, c.len));
    free(c.buf);
}

static void test_memory(void)
{
    struct pec_spool *sp = filled(1 << 20, 100000, 333);

    CHECK(pec_spool_mem(sp) != NULL);
    CHECK(same_as_pattern(pec_spool_mem(sp), 0, 100000));
    check_reads(sp, 100000);
    CHECK(files_in(tmpdir) == 0);
    pec_spool_free(sp);

    sp = pec_spool_new(NULL, 10);
    CHECK(pec_spool_size(sp) == 0);
    CHECK(pec_spool_mem(sp) != NULL);
    CHECK(pec_spool_write(sp, "", 0) == 0);
    pec_spool_free(sp);
}

static void test_switch_to_file(void)
{
    /* 200000 bytes through a 50000-byte limit, in odd pieces, then one large write */
    struct pec_spool *sp = filled(50000, 200000, 777);
    int calls = 0;

    CHECK(pec_spool_mem(sp) == NULL);
    CHECK(files_in(tmpdir) == 0); /* unlinked at once */
    check_reads(sp, 200000);
    CHECK(pec_spool_each(sp, 0, 200000, stop_early, &calls) == 42 && calls == 1);
    pec_spool_free(sp);

    /* exactly at the limit stays in memory; one byte more goes to the file */
    sp = filled(1000, 1000, 1000);
    CHECK(pec_spool_mem(sp) != NULL);
    CHECK(pec_spool_write(sp, "x", 1) == 0);
    CHECK(pec_spool_mem(sp) == NULL);
    CHECK(pec_spool_size(sp) == 1001);
    pec_spool_free(sp);

    /* limit 0: everything on file, even a spool of small writes */
    sp = filled(0, 130000, 78);
    CHECK(pec_spool_mem(sp) == NULL);
    check_reads(sp, 130000);
    pec_spool_free(sp);
}

static void test_copy_and_printf(void)
{
    struct pec_spool *src = filled(10000, 150000, 4096);
    struct pec_spool *dst = pec_spool_new(tmpdir, 1 << 20);
    struct pec_spool *small = pec_spool_new(tmpdir, 64);
    unsigned char buf[64];
    char *big = xmalloc(5001);

    CHECK(pec_spool_copy(dst, src, 100, 120000) == 0);
    CHECK(pec_spool_size(dst) == 120000);
    CHECK(same_as_pattern(pec_spool_mem(dst), 100, 120000));
    /* a range past the end is cut to what there is */
    CHECK(pec_spool_copy(dst, src, 149990, 100) == 0);
    CHECK(pec_spool_size(dst) == 120010);
    CHECK(pec_spool_copy(dst, dst, 0, 1) == -1 && errno == EINVAL);

    memset(big, 'z', 5000);
    big[5000] = '\0';
    CHECK(pec_spool_printf(small, "%s=%d;", "n", 42) == 0);
    CHECK(pec_spool_printf(small, "%s", big) == 0);
    CHECK(pec_spool_puts(small, "end") == 0);
    CHECK(pec_spool_size(small) == 5 + 5000 + 3);
    CHECK(pec_spool_pread(small, 0, buf, 5) == 5 && memcmp(buf, "n=42;", 5) == 0);
    CHECK(pec_spool_pread(small, 5005, buf, 10) == 3 && memcmp(buf, "end", 3) == 0);
    free(big);
    pec_spool_free(small);
    pec_spool_free(dst);
    pec_spool_free(src);
}

static void test_bad_dir(void)
{
    struct pec_spool *sp = pec_spool_new("/nonexistent/pec/spool", 4);

    CHECK(pec_spool_write(sp, "abc", 3) == 0);
    errno = 0;
    CHECK(pec_spool_write(sp, "defgh", 5) == -1 && errno == ENOENT);
    /* the failure sticks */
    errno = 0;
    CHECK(pec_spool_write(sp, "i", 1) == -1 && errno == ENOENT);
    pec_spool_free(sp);
}

static char *spool_string(struct pec_spool *sp)
{
    size_t n = pec_spool_size(sp);
    char *s = xmalloc(n + 1);

    CHECK(pec_spool_pread(sp, 0, s, n) == (ssize_t)n);
    s[n] = '\0';
    return s;
}

static char *qp(const char *in)
{
    struct pec_spool *sp = pec_spool_new(tmpdir, 1 << 20);
    struct pec_qp e;
    char *s;

    pec_qp_init(&e, sp);
    /* byte by byte: the pending whitespace and CR must survive chunk ends */
    for (const char *p = in; *p; p++)
        CHECK(pec_qp_update(&e, (const unsigned char *)p, 1) == 0);
    CHECK(pec_qp_final(&e) == 0);
    s = spool_string(sp);
    pec_spool_free(sp);
    return s;
}

static void test_encoders(void)
{
    struct pec_spool *sp = pec_spool_new(tmpdir, 1 << 20);
    struct pec_b64 e;
    char *s, *line;
    unsigned char data[200];
    int lossless;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)i;
    pec_b64_init(&e, sp);
    CHECK(pec_b64_update(&e, data, 10) == 0 && pec_b64_update(&e, data + 10, 190) == 0);
    CHECK(pec_b64_final(&e) == 0);
    s = spool_string(sp);
    /* 200 bytes: three lines of 76 (57 bytes each) and one of 40 (29 bytes), each with CRLF */
    CHECK(strlen(s) == 3 * 78 + 40 + 2);
    CHECK(strncmp(
              s, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\r\n",
              78) == 0);
    CHECK_STR(s + 3 * 78, "q6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsc=\r\n");
    free(s);
    pec_spool_free(sp);

    s = qp("Il messaggio \xe8 qui.  \r\nSecondo=riga\t\r\n");
    CHECK_STR(s, "Il messaggio =E8 qui. =20\r\nSecondo=3Driga=09\r\n");
    free(s);
    s = qp("lone\rcr and\nlf, trailing space ");
    CHECK_STR(s, "lone=0Dcr and=0Alf, trailing space=20");
    free(s);
    s = qp("end with cr \r");
    CHECK_STR(s, "end with cr =0D");
    free(s);
    s = qp(
        "Identificativo messaggio: opec275.20141107165200.03048.08.1.17@pec.aruba.it.example\r\n");
    line = strstr(s, "=\r\n");
    CHECK(line != NULL && line - s == 75);
    CHECK_STR(s, "Identificativo messaggio: opec275.20141107165200.03048.08.1.17@pec.aruba.it=\r\n"
                 ".example\r\n");
    free(s);
    /* a triplet is never cut by a soft break */
    s = qp("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xe8\xe8");
    CHECK_STR(s, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=\r\n"
                 "=E8=E8");
    free(s);

    s = pec_rfc2047_value("Subject", "POSTA CERTIFICATA: ", "plain ascii");
    CHECK_STR(s, "POSTA CERTIFICATA: plain ascii");
    free(s);
    s = pec_rfc2047_value("Subject", "POSTA CERTIFICATA: ", "Caff\xc3\xa8");
    CHECK_STR(s, "POSTA CERTIFICATA: =?UTF-8?B?Q2FmZsOo?=");
    free(s);
    /* long: words of whole characters, folded, every line within 78 columns */
    s = pec_rfc2047_value(
        "Subject", "POSTA CERTIFICATA: ",
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac");
    CHECK(strncmp(s, "POSTA CERTIFICATA: =?UTF-8?B?4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs?=\r\n ",
                  70) == 0);
    CHECK(strlen("Subject: ") + strcspn(s, "\r") <= 78);
    CHECK(strstr(s, "\r\n =?UTF-8?B?") != NULL);
    free(s);

    s = pec_utf8_to_latin1("caff\xc3\xa8 \xe2\x82\xac", &lossless);
    CHECK_STR(s, "caff\xe8 ?");
    CHECK(lossless == 0);
    free(s);
    s = pec_utf8_to_latin1("citt\xc3\xa0", &lossless);
    CHECK_STR(s, "citt\xe0");
    CHECK(lossless == 1);
    free(s);
}

int main(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_memory();
    test_switch_to_file();
    test_copy_and_printf();
    test_bad_dir();
    test_encoders();
    CHECK(files_in(tmpdir) == 0);
    rmdir(tmpdir);
    return check_exit();
}
