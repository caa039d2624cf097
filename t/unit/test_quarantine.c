/*
 * test_quarantine - the virus store.
 *
 * A message kept comes back byte for byte under the SHA-256 of its bytes
 * (which sha256sum would give), whether the spool held it in memory or in
 * a file; the same bytes found again are one entry, its first facts kept,
 * its last detection and count moved on; an ID abbreviated to 8 digits finds
 * it, fewer are refused; a file changed behind the store's back is reported
 * on export; the list comes oldest first; the purge removes what was last
 * seen before the retention and nothing else, and a missing directory holds
 * nothing.  Facts that hold line breaks stay one line each.
 */
#include "check.h"
#include "store/quarantine.h"
#include "util/xalloc.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test_quarantine.XXXXXX";

#define DAY 86400
#define T0 1700000000 /* 2023-11-14 */

static struct pec_spool *spool_of(const char *text, size_t mem_limit)
{
    struct pec_spool *sp = pec_spool_new(tmpdir, mem_limit);

    CHECK(pec_spool_puts(sp, text) == 0);
    return sp;
}

static void sha256_of(const char *text, char out[PEC_HASH_HEX])
{
    unsigned char md[32];
    unsigned int n = 0;

    CHECK(EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL) == 1 && n == 32);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = xcalloc(1, 65536);

    if (f == NULL)
        return buf;
    CHECK(fread(buf, 1, 65535, f) < 65535);
    fclose(f);
    return buf;
}

struct order {
    char ids[4][PEC_HASH_HEX];
    int n;
};

static int collect(const struct pec_qentry *e, void *arg)
{
    struct order *o = arg;

    if (o->n < 4)
        memcpy(o->ids[o->n], e->sha256, PEC_HASH_HEX);
    o->n++;
    return 0;
}

int main(void)
{
    static const char eicar[] = "From: a@pec-a.test\r\nSubject: x\r\n\r\nEICAR body\r\n";
    static const char other[] = "From: b@pec-b.test\r\nSubject: y\r\n\r\nanother\r\n";
    char dir[512], sha[PEC_HASH_HEX], sha2[PEC_HASH_HEX], want[PEC_HASH_HEX], err[1024];
    char *path, *text;
    struct pec_spool *mem, *file, *sp2;
    struct pec_qentry e;
    struct order o = {.n = 0};
    long long n = -1;
    int fd;

    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s/quarantine", tmpdir);

    /* nothing there yet: nothing listed, nothing found, nothing purged */
    CHECK(pec_quarantine_each(dir, collect, &o, err, sizeof(err)) == 0 && o.n == 0);
    CHECK(pec_quarantine_find(dir, "0123456789abcdef", &e, err, sizeof(err)) == 0);
    CHECK(pec_quarantine_purge(dir, 30, T0, &n, err, sizeof(err)) == 0 && n == 0);

    mem = spool_of(eicar, 1 << 20);
    file = spool_of(eicar, 4); /* the same bytes, from the spool's file */
    CHECK(pec_spool_mem(file) == NULL);
    CHECK(pec_quarantine_put(dir, mem,
                             &(struct pec_qfacts){.when = T0,
                                                  .point = "access",
                                                  .identificativo = "id1@pec-a.test",
                                                  .queue_id = "Q1",
                                                  .mittente = "a@pec-a.test",
                                                  .finding = "Eicar-Test-Signature"},
                             sha, err, sizeof(err)) == 0);
    sha256_of(eicar, want);
    CHECK_STR(sha, want);
    CHECK(pec_quarantine_put(dir, file,
                             &(struct pec_qfacts){.when = T0 + 10 * DAY,
                                                  .point = "reception",
                                                  .identificativo = "other\nline",
                                                  .finding = "Other"},
                             sha2, err, sizeof(err)) == 0);
    CHECK_STR(sha2, want);

    /* one entry, the first facts, the last detection */
    CHECK(pec_quarantine_find(dir, sha, &e, err, sizeof(err)) == 1);
    CHECK(e.detections == 2 && e.first_at == T0 && e.last_at == T0 + 10 * DAY);
    CHECK(e.size == (long long)strlen(eicar));
    CHECK_STR(e.point, "access");
    CHECK_STR(e.identificativo, "id1@pec-a.test");
    CHECK_STR(e.queue_id, "Q1");
    CHECK_STR(e.finding, "Eicar-Test-Signature");

    /* 8 digits are enough, 7 are not */
    memset(&e, 0, sizeof(e));
    sha[8] = '\0';
    CHECK(pec_quarantine_find(dir, sha, &e, err, sizeof(err)) == 1);
    CHECK_STR(e.sha256, want);
    sha[7] = '\0';
    CHECK(pec_quarantine_find(dir, sha, &e, err, sizeof(err)) == -1);
    CHECK(pec_quarantine_find(dir, "ZZZZZZZZ", &e, err, sizeof(err)) == -1);

    /* export: the bytes exactly */
    path = xasprintf("%s/out.eml", tmpdir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(pec_quarantine_find(dir, want, &e, err, sizeof(err)) == 1);
    CHECK(fd >= 0 && pec_quarantine_export(dir, &e, fd, err, sizeof(err)) == 0);
    close(fd);
    text = read_all(path);
    CHECK_STR(text, eicar);
    free(text);

    /* a facts file holds one fact a line: the line break became a space elsewhere */
    free(path);
    path = xasprintf("%s/%s.txt", dir, want);
    text = read_all(path);
    CHECK(strstr(text, "\npoint: access\n") != NULL);
    CHECK(strstr(text, "\ndetections: 2\n") != NULL);
    free(text);

    /* a second message, found later: listed after the first */
    sp2 = spool_of(other, 1 << 20);
    CHECK(pec_quarantine_put(dir, sp2,
                             &(struct pec_qfacts){.when = T0 + 40 * DAY,
                                                  .point = "reception",
                                                  .identificativo = "id2\nbroken",
                                                  .finding = "Other"},
                             sha2, err, sizeof(err)) == 0);
    CHECK(pec_quarantine_find(dir, sha2, &e, err, sizeof(err)) == 1);
    CHECK_STR(e.identificativo, "id2 broken");
    CHECK(pec_quarantine_each(dir, collect, &o, err, sizeof(err)) == 0 && o.n == 2);
    CHECK_STR(o.ids[0], want);
    CHECK_STR(o.ids[1], sha2);

    /* a kept file changed: export says so */
    free(path);
    path = xasprintf("%s/%s.eml", dir, want);
    chmod(path, 0600);
    fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "X", 1) == 1);
    close(fd);
    fd = open("/dev/null", O_WRONLY);
    CHECK(pec_quarantine_find(dir, want, &e, err, sizeof(err)) == 1);
    CHECK(pec_quarantine_export(dir, &e, fd, err, sizeof(err)) == -1);
    CHECK(strstr(err, "changed since it was kept") != NULL);
    close(fd);

    /*
     * retention: 1 month after the first's last detection (T0 + 10 days)
     * nothing is old enough; 2 months after, the first goes, the second
     * (T0 + 40 days) stays; then it goes too
     */
    CHECK(pec_quarantine_purge(dir, 1, T0 + 35 * DAY, &n, err, sizeof(err)) == 0 && n == 0);
    CHECK(pec_quarantine_purge(dir, 2, T0 + 75 * DAY, &n, err, sizeof(err)) == 0 && n == 1);
    CHECK(access(path, F_OK) != 0);
    CHECK(pec_quarantine_find(dir, want, &e, err, sizeof(err)) == 0);
    CHECK(pec_quarantine_find(dir, sha2, &e, err, sizeof(err)) == 1);
    CHECK(pec_quarantine_purge(dir, 2, T0 + 120 * DAY, &n, err, sizeof(err)) == 0 && n == 1);
    o.n = 0;
    CHECK(pec_quarantine_each(dir, collect, &o, err, sizeof(err)) == 0 && o.n == 0);

    free(path);
    pec_spool_free(mem);
    pec_spool_free(file);
    pec_spool_free(sp2);
    path = xasprintf("rm -rf '%s'", tmpdir);
    CHECK(system(path) == 0);
    free(path);
    return check_exit();
}
