/*
 * quarantine - the virus store, one directory of files (see quarantine.h).
 */
#include "store/quarantine.h"
#include "util/clock.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define ID_MIN 8 /* hex digits an abbreviated ID must have */
#define META_MAX 8192

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* NAME is "<64 hex>.txt": an entry's facts */
static int is_meta(const char *name)
{
    return strlen(name) == 68 && strcmp(name + 64, ".txt") == 0 && is_hex(name, 64);
}

/* S in one line for the facts file, at most LEN - 1 bytes */
static void one_line(char *dst, size_t len, const char *s)
{
    size_t j = 0;

    for (s = s ? s : ""; *s && j + 1 < len; s++)
        dst[j++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
    dst[j] = '\0';
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---------------------------------------------------------------- the facts file */

static void put_time(FILE *f, const char *key, time_t t)
{
    struct tm tm;
    char iso[32] = "?";

    if (gmtime_r(&t, &tm) != NULL)
        strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "%s: %lld (%s)\n", key, (long long)t, iso);
}

/* E as the text of its facts file; the caller frees it. */
static char *meta_text(const struct pec_qentry *e)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return NULL;
    fprintf(f, "sha256: %s\nsize: %lld\n", e->sha256, e->size);
    put_time(f, "first", e->first_at);
    put_time(f, "last", e->last_at);
    fprintf(f,
            "detections: %lld\npoint: %s\nidentificativo: %s\nqueue-id: %s\nmittente: %s\n"
            "finding: %s\n",
            e->detections, e->point, e->identificativo, e->queue_id, e->mittente, e->finding);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void meta_field(struct pec_qentry *e, const char *key, const char *v)
{
    if (strcmp(key, "size") == 0)
        e->size = strtoll(v, NULL, 10);
    else if (strcmp(key, "first") == 0)
        e->first_at = (time_t)strtoll(v, NULL, 10);
    else if (strcmp(key, "last") == 0)
        e->last_at = (time_t)strtoll(v, NULL, 10);
    else if (strcmp(key, "detections") == 0)
        e->detections = strtoll(v, NULL, 10);
    else if (strcmp(key, "point") == 0)
        one_line(e->point, sizeof(e->point), v);
    else if (strcmp(key, "identificativo") == 0)
        one_line(e->identificativo, sizeof(e->identificativo), v);
    else if (strcmp(key, "queue-id") == 0)
        one_line(e->queue_id, sizeof(e->queue_id), v);
    else if (strcmp(key, "mittente") == 0)
        one_line(e->mittente, sizeof(e->mittente), v);
    else if (strcmp(key, "finding") == 0)
        one_line(e->finding, sizeof(e->finding), v);
}

/* The facts of entry SHA256 in DIR into E: 1, 0 when there is none, -1 with err. */
static int meta_read(const char *dir, const char *sha256, struct pec_qentry *e, char *err,
                     size_t errlen)
{
    char *path = xasprintf("%s/%s.txt", dir, sha256), buf[META_MAX], *line, *save = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    memset(e, 0, sizeof(*e));
    if (fd < 0) {
        int missing = errno == ENOENT;

        if (!missing)
            pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        free(path);
        return missing ? 0 : -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    free(path);
    buf[n] = '\0';
    snprintf(e->sha256, sizeof(e->sha256), "%s", sha256);
    for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');

        if (colon == NULL)
            continue;
        *colon = '\0';
        meta_field(e, line, colon + 1 + (colon[1] == ' '));
    }
    return 1;
}

/* Write E's facts file in DIR through a temporary name; 0, or -1 with err. */
static int meta_write(const char *dir, const struct pec_qentry *e, char *err, size_t errlen)
{
    char *tmp = xasprintf("%s/.new-XXXXXX", dir), *path = xasprintf("%s/%s.txt", dir, e->sha256);
    char *text = meta_text(e);
    int fd = -1, rc = -1;

    if (text == NULL) {
        pec_seterr(err, errlen, "cannot hold the facts of %s: %s", e->sha256, strerror(errno));
        goto done;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        pec_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    if (fchmod(fd, 0640) < 0 || write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0 ||
        close(fd) < 0) {
        pec_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        fd = -1;
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) < 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    free(text);
    free(tmp);
    free(path);
    return rc;
}

/* The directory's lock, held until close; -1 with err. */
static int lock_dir(const char *dir, char *err, size_t errlen)
{
    char *path = xasprintf("%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);

    if (fd < 0 || flock(fd, LOCK_EX) < 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    free(path);
    return fd;
}

/* ---------------------------------------------------------------- put */

struct copy {
    int fd;
    EVP_MD_CTX *md;
};

static int copy_chunk(const unsigned char *chunk, size_t n, void *arg)
{
    struct copy *c = arg;

    if (EVP_DigestUpdate(c->md, chunk, n) != 1) {
        errno = EIO;
        return -1;
    }
    return write_all(c->fd, chunk, n);
}

static void hex(const unsigned char *md, char out[PEC_HASH_HEX])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* MSG into DIR/<sha256>.eml (kept when it is there already); 0, or -1 with err. */
static int put_message(const char *dir, const struct pec_spool *msg, char sha256[PEC_HASH_HEX],
                       char *err, size_t errlen)
{
    char *tmp = xasprintf("%s/.new-XXXXXX", dir), *path = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    struct copy c = {.md = EVP_MD_CTX_new()};
    struct stat st;
    int rc = -1;

    c.fd = mkstemp(tmp);
    if (c.fd < 0) {
        pec_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    if (c.md == NULL || EVP_DigestInit_ex(c.md, EVP_sha256(), NULL) != 1 ||
        fchmod(c.fd, 0640) < 0 ||
        pec_spool_each(msg, 0, pec_spool_size(msg), copy_chunk, &c) != 0 || fsync(c.fd) < 0 ||
        EVP_DigestFinal_ex(c.md, md, &mdlen) != 1 || mdlen != 32) {
        pec_seterr(err, errlen, "%s: cannot keep the message: %s", tmp, strerror(errno));
        close(c.fd);
        unlink(tmp);
        goto done;
    }
    if (close(c.fd) < 0) {
        pec_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    hex(md, sha256);
    path = xasprintf("%s/%s.eml", dir, sha256);
    if (stat(path, &st) == 0 && (long long)st.st_size == (long long)pec_spool_size(msg)) {
        unlink(tmp); /* the same bytes, kept already */
    } else if (rename(tmp, path) < 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    EVP_MD_CTX_free(c.md);
    free(tmp);
    free(path);
    return rc;
}

int pec_quarantine_put(const char *dir, const struct pec_spool *msg, const struct pec_qfacts *f,
                       char sha256[PEC_HASH_HEX], char *err, size_t errlen)
{
    struct pec_qentry e;
    int lock, found, rc = -1;

    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        pec_seterr(err, errlen, "%s: cannot make the quarantine directory: %s", dir,
                   strerror(errno));
        return -1;
    }
    if (put_message(dir, msg, sha256, err, errlen) < 0)
        return -1;
    lock = lock_dir(dir, err, errlen);
    if (lock < 0)
        return -1;
    found = meta_read(dir, sha256, &e, err, errlen);
    if (found < 0)
        goto done;
    if (found == 0) {
        snprintf(e.sha256, sizeof(e.sha256), "%s", sha256);
        e.size = (long long)pec_spool_size(msg);
        e.first_at = e.last_at = f->when;
        one_line(e.point, sizeof(e.point), f->point);
        one_line(e.identificativo, sizeof(e.identificativo), f->identificativo);
        one_line(e.queue_id, sizeof(e.queue_id), f->queue_id);
        one_line(e.mittente, sizeof(e.mittente), f->mittente);
        one_line(e.finding, sizeof(e.finding), f->finding);
    } else if (f->when > e.last_at) {
        e.last_at = f->when;
    }
    e.detections++;
    if (meta_write(dir, &e, err, errlen) < 0)
        goto done;
    if (sync_dir(dir) < 0) {
        pec_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    close(lock);
    return rc;
}

/* ---------------------------------------------------------------- reading */

struct entries {
    struct pec_qentry *v;
    size_t n;
};

static int by_first(const void *a, const void *b)
{
    const struct pec_qentry *x = a, *y = b;

    if (x->first_at != y->first_at)
        return x->first_at < y->first_at ? -1 : 1;
    return strcmp(x->sha256, y->sha256);
}

/*
 * Every entry of DIR whose ID starts with PREFIX ("" for all) into OUT;
 * 0, or -1 with err.
 */
static int entries_read(const char *dir, const char *prefix, struct entries *out, char *err,
                        size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t plen = strlen(prefix);
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        pec_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        char sha[PEC_HASH_HEX];

        if (!is_meta(de->d_name) || strncmp(de->d_name, prefix, plen) != 0)
            continue;
        snprintf(sha, sizeof(sha), "%.64s", de->d_name);
        out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
        if (meta_read(dir, sha, &out->v[out->n], err, errlen) < 0)
            rc = -1;
        else
            out->n++;
    }
    if (rc == 0 && errno != 0) {
        pec_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        rc = -1;
    }
    closedir(d);
    if (rc == 0 && out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), by_first);
    return rc;
}

int pec_quarantine_each(const char *dir, int (*fn)(const struct pec_qentry *e, void *arg),
                        void *arg, char *err, size_t errlen)
{
    struct entries all;
    int rc = 0;

    if (entries_read(dir, "", &all, err, errlen) < 0) {
        free(all.v);
        return -1;
    }
    for (size_t i = 0; i < all.n && rc == 0; i++)
        rc = fn(&all.v[i], arg);
    free(all.v);
    return rc;
}

int pec_quarantine_find(const char *dir, const char *id, struct pec_qentry *e, char *err,
                        size_t errlen)
{
    struct entries hits;
    size_t n = strlen(id);
    int rc;

    if (n < ID_MIN || n > 64 || !is_hex(id, n)) {
        pec_seterr(err, errlen, "\"%s\" is no quarantine ID (%d to 64 lowercase hex digits)", id,
                   ID_MIN);
        return -1;
    }
    if (entries_read(dir, id, &hits, err, errlen) < 0) {
        free(hits.v);
        return -1;
    }
    rc = hits.n == 1;
    if (hits.n == 1)
        *e = hits.v[0];
    else if (hits.n > 1) {
        pec_seterr(err, errlen, "%s names %zu entries: give more of the ID", id, hits.n);
        rc = -1;
    }
    free(hits.v);
    return rc;
}

int pec_quarantine_export(const char *dir, const struct pec_qentry *e, int fd, char *err,
                          size_t errlen)
{
    char *path = xasprintf("%s/%s.eml", dir, e->sha256), got[PEC_HASH_HEX];
    unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int in = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
    ssize_t n = 0;

    if (in < 0 || ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        if (n < 0)
            continue;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1 || write_all(fd, buf, (size_t)n) < 0) {
            pec_seterr(err, errlen, "cannot write %s out: %s", path, strerror(errno));
            goto done;
        }
    }
    if (n < 0 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    hex(md, got);
    if (strcmp(got, e->sha256) != 0) {
        pec_seterr(err, errlen, "%s: changed since it was kept (its SHA-256 is now %s)", path, got);
        goto done;
    }
    rc = 0;
done:
    if (in >= 0)
        close(in);
    EVP_MD_CTX_free(ctx);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- purge */

/* Remove DIR/SHA256.EXT; a file already gone is fine. */
static int remove_file(const char *dir, const char *sha256, const char *ext, char *err,
                       size_t errlen)
{
    char *path = xasprintf("%s/%s.%s", dir, sha256, ext);
    int rc = 0;

    if (unlink(path) < 0 && errno != ENOENT) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    free(path);
    return rc;
}

int pec_quarantine_purge(const char *dir, int months, time_t now, long long *nremoved, char *err,
                         size_t errlen)
{
    struct entries all;
    time_t cutoff = pec_months_before(now, months);
    int lock, rc = 0;

    *nremoved = 0;
    if (access(dir, F_OK) < 0 && errno == ENOENT)
        return 0;
    lock = lock_dir(dir, err, errlen);
    if (lock < 0)
        return -1;
    if (entries_read(dir, "", &all, err, errlen) < 0)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < all.n; i++) {
        if (all.v[i].last_at >= cutoff)
            continue;
        /* the message first: facts without it would still be listed, and purged next time */
        if (remove_file(dir, all.v[i].sha256, "eml", err, errlen) < 0 ||
            remove_file(dir, all.v[i].sha256, "txt", err, errlen) < 0)
            rc = -1;
        else
            ++*nremoved;
    }
    if (*nremoved > 0 && sync_dir(dir) < 0 && rc == 0) {
        pec_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        rc = -1;
    }
    free(all.v);
    close(lock);
    return rc;
}
