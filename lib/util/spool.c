/*
 * spool - a byte buffer that moves to a temporary file when it grows.
 *
 * Up to mem_limit the bytes live in one growing heap buffer.  The write that
 * would pass the limit creates a file with mkstemp() in the spool directory,
 * unlinks it at once (so a crash or a kill -9 leaves nothing behind and no
 * other process can open it by name), moves the buffered bytes there and
 * frees the buffer.  From then on writes go through a small write-behind
 * buffer, because the builders append a line at a time (base64 is 78 bytes
 * a line) and a write(2) per line would cost more than the encoding.
 *
 * Readers never flush that buffer: a read takes what is already in the file
 * with pread(2) and the rest from the buffer, so reading needs no mutation
 * and works on a const spool.
 *
 * A failed write leaves the spool unusable: every later write fails with the
 * same errno, so a builder that checks only its last write still notices.
 */
#include "util/spool.h"
#include "util/xalloc.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPOOL_WBUF (64 * 1024)
#define SPOOL_CHUNK (64 * 1024)

struct pec_spool {
    char *dir;
    size_t mem_limit;
    size_t size; /* bytes written, wherever they are */
    int error;   /* errno of the first failed write, 0 while healthy */
    int last_cr; /* the last byte written was a CR */

    /* in memory: fd < 0 */
    unsigned char *mem;
    size_t cap;

    /* on file: fd >= 0; the file holds [0, flushed), wbuf holds [flushed, size) */
    int fd;
    size_t flushed;
    unsigned char *wbuf;
};

struct pec_spool *pec_spool_new(const char *dir, size_t mem_limit)
{
    struct pec_spool *sp = xcalloc(1, sizeof(*sp));
    const char *tmp = getenv("TMPDIR");

    if (dir == NULL || *dir == '\0')
        dir = tmp != NULL && *tmp != '\0' ? tmp : "/tmp";
    sp->dir = xstrdup(dir);
    sp->mem_limit = mem_limit;
    sp->fd = -1;
    return sp;
}

void pec_spool_free(struct pec_spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->fd >= 0)
        close(sp->fd);
    free(sp->mem);
    free(sp->wbuf);
    free(sp->dir);
    free(sp);
}

static int fail(struct pec_spool *sp, int err)
{
    sp->error = err ? err : EIO;
    errno = sp->error;
    return -1;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int flush_wbuf(struct pec_spool *sp)
{
    size_t pending = sp->size - sp->flushed;

    if (pending == 0)
        return 0;
    if (write_all(sp->fd, sp->wbuf, pending) < 0)
        return fail(sp, errno);
    sp->flushed = sp->size;
    return 0;
}

/* Leave memory for an unlinked file holding what was buffered so far. */
static int move_to_file(struct pec_spool *sp)
{
    char *path = xasprintf("%s/pecspool.XXXXXX", sp->dir);
    int fd = mkstemp(path);
    int saved;

    if (fd < 0) {
        saved = errno;
        free(path);
        return fail(sp, saved);
    }
    if (unlink(path) < 0 || write_all(fd, sp->mem, sp->size) < 0) {
        saved = errno;
        close(fd);
        unlink(path);
        free(path);
        return fail(sp, saved);
    }
    free(path);
    free(sp->mem);
    sp->mem = NULL;
    sp->cap = 0;
    sp->fd = fd;
    sp->flushed = sp->size;
    sp->wbuf = xmalloc(SPOOL_WBUF);
    return 0;
}

static void mem_append(struct pec_spool *sp, const void *buf, size_t len)
{
    size_t need = sp->size + len;

    if (need > sp->cap) {
        size_t cap = sp->cap ? sp->cap : 4096;

        while (cap < need)
            cap *= 2;
        if (cap > sp->mem_limit)
            cap = need > sp->mem_limit ? need : sp->mem_limit;
        sp->mem = xrealloc(sp->mem, cap);
        sp->cap = cap;
    }
    memcpy(sp->mem + sp->size, buf, len);
    sp->size = need;
}

static int file_append(struct pec_spool *sp, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        size_t room = SPOOL_WBUF - (sp->size - sp->flushed);
        size_t n = len < room ? len : room;

        /* a big write that finds the buffer empty goes straight to the file */
        if (sp->size == sp->flushed && len >= SPOOL_WBUF) {
            if (write_all(sp->fd, buf, len) < 0)
                return fail(sp, errno);
            sp->size += len;
            sp->flushed = sp->size;
            return 0;
        }
        memcpy(sp->wbuf + (sp->size - sp->flushed), buf, n);
        sp->size += n;
        buf += n;
        len -= n;
        if (sp->size - sp->flushed == SPOOL_WBUF && flush_wbuf(sp) < 0)
            return -1;
    }
    return 0;
}

int pec_spool_write(struct pec_spool *sp, const void *buf, size_t len)
{
    if (sp->error) {
        errno = sp->error;
        return -1;
    }
    if (len == 0)
        return 0;
    sp->last_cr = ((const unsigned char *)buf)[len - 1] == '\r';
    if (sp->fd < 0 && sp->size + len <= sp->mem_limit) {
        mem_append(sp, buf, len);
        return 0;
    }
    if (sp->fd < 0 && move_to_file(sp) < 0)
        return -1;
    return file_append(sp, buf, len);
}

int pec_spool_write_crlf(struct pec_spool *sp, const void *buf, size_t len)
{
    const unsigned char *p = buf, *end = p + len;

    while (p < end) {
        const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));
        int bare;

        if (lf == NULL)
            return pec_spool_write(sp, p, (size_t)(end - p));
        bare = lf > p ? lf[-1] != '\r' : !sp->last_cr;
        if (pec_spool_write(sp, p, (size_t)(lf - p)) < 0 ||
            pec_spool_write(sp, bare ? "\r\n" : "\n", bare ? 2 : 1) < 0)
            return -1;
        p = lf + 1;
    }
    return 0;
}

int pec_spool_puts(struct pec_spool *sp, const char *s)
{
    return pec_spool_write(sp, s, strlen(s));
}

int pec_spool_printf(struct pec_spool *sp, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return fail(sp, EINVAL);
    if ((size_t)n < sizeof(small))
        return pec_spool_write(sp, small, (size_t)n);

    char *big = xmalloc((size_t)n + 1);
    int ret;

    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ret = pec_spool_write(sp, big, (size_t)n);
    free(big);
    return ret;
}

size_t pec_spool_size(const struct pec_spool *sp)
{
    return sp->size;
}

int pec_spool_error(const struct pec_spool *sp)
{
    return sp->error;
}

const unsigned char *pec_spool_mem(const struct pec_spool *sp)
{
    if (sp->fd >= 0)
        return NULL;
    return sp->mem != NULL ? sp->mem : (const unsigned char *)"";
}

static ssize_t pread_all(int fd, unsigned char *buf, size_t len, size_t off)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            /* the file is shorter than we wrote: someone truncated it */
            errno = EIO;
            return -1;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t pec_spool_pread(const struct pec_spool *sp, size_t off, void *buf, size_t len)
{
    unsigned char *out = buf;
    size_t from_file = 0;

    if (off >= sp->size || len == 0)
        return 0;
    if (len > sp->size - off)
        len = sp->size - off;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    if (sp->fd < 0) {
        memcpy(out, sp->mem + off, len);
        return (ssize_t)len;
    }
    if (off < sp->flushed) {
        from_file = sp->flushed - off < len ? sp->flushed - off : len;
        if (pread_all(sp->fd, out, from_file, off) < 0)
            return -1;
    }
    if (from_file < len)
        memcpy(out + from_file, sp->wbuf + (off + from_file - sp->flushed), len - from_file);
    return (ssize_t)len;
}

int pec_spool_each(const struct pec_spool *sp, size_t off, size_t len,
                   int (*fn)(const unsigned char *chunk, size_t n, void *arg), void *arg)
{
    unsigned char *buf;
    int ret = 0;

    if (off > sp->size)
        off = sp->size;
    if (len > sp->size - off)
        len = sp->size - off;
    if (len == 0)
        return 0;
    if (sp->fd < 0)
        return fn(sp->mem + off, len, arg);
    buf = xmalloc(SPOOL_CHUNK);
    while (ret == 0 && len > 0) {
        ssize_t n = pec_spool_pread(sp, off, buf, len < SPOOL_CHUNK ? len : SPOOL_CHUNK);

        if (n <= 0) {
            ret = -1;
            break;
        }
        ret = fn(buf, (size_t)n, arg);
        off += (size_t)n;
        len -= (size_t)n;
    }
    free(buf);
    return ret;
}

static int copy_chunk(const unsigned char *chunk, size_t n, void *arg)
{
    return pec_spool_write(arg, chunk, n);
}

int pec_spool_copy(struct pec_spool *dst, const struct pec_spool *src, size_t off, size_t len)
{
    if (dst == src) {
        errno = EINVAL;
        return -1;
    }
    return pec_spool_each(src, off, len, copy_chunk, dst) != 0 ? -1 : 0;
}

const unsigned char *pec_spool_whole(const struct pec_spool *sp, unsigned char **copy)
{
    size_t size = pec_spool_size(sp);
    const unsigned char *mem = pec_spool_mem(sp);

    *copy = NULL;
    if (mem != NULL || size == 0)
        return mem ? mem : (const unsigned char *)"";
    *copy = xmalloc(size);
    if (pec_spool_pread(sp, 0, *copy, size) != (ssize_t)size) {
        free(*copy);
        *copy = NULL;
        return NULL;
    }
    return *copy;
}
