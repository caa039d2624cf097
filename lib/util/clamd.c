/*
 * clamd - ClamAV's daemon, asked over its socket (see clamd.h).
 *
 * Commands are sent in the "z" form (NUL-terminated, one command per
 * connection) and answers read up to their NUL.  The socket is non-blocking
 * after the connection, and every wait is a poll() against the one
 * deadline of the call, so a clamd that stops reading or never answers costs
 * TIMEOUT seconds at most.
 */
#include "util/clamd.h"
#include "util/sock.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* the most sent in one INSTREAM chunk: clamd reads each into its own buffer */
#define CHUNK_MAX 65536

struct session {
    int fd;
    long long deadline; /* CLOCK_MONOTONIC, milliseconds */
};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connected within TIMEOUT seconds, non-blocking: 0, or -1 with err. */
static int session_open(struct session *s, const char *spec, int timeout, char *err, size_t errlen)
{
    int flags;

    s->deadline = now_ms() + (long long)timeout * 1000;
    s->fd = pec_sock_connect(spec, timeout, err, errlen);
    if (s->fd < 0)
        return -1;
    flags = fcntl(s->fd, F_GETFL);
    if (flags < 0 || fcntl(s->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        pec_seterr(err, errlen, "%s: %s", spec, strerror(errno));
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    return 0;
}

/* Until the socket is ready for EVENTS: 0, or -1 with errno (ETIMEDOUT past the deadline). */
static int session_wait(struct session *s, short events)
{
    struct pollfd p = {.fd = s->fd, .events = events};

    for (;;) {
        long long left = s->deadline - now_ms();
        int rc;

        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        rc = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static int send_all(struct session *s, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    while (len > 0) {
        ssize_t w;

        if (session_wait(s, POLLOUT) < 0)
            return -1;
        w = send(s->fd, p, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The answer up to its NUL (or the end of the connection) into BUF: 0, or -1 with errno. */
static int read_answer(struct session *s, char *buf, size_t len)
{
    size_t n = 0;

    while (n + 1 < len) {
        ssize_t r;

        if (session_wait(s, POLLIN) < 0)
            return -1;
        r = recv(s->fd, buf + n, len - 1 - n, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        if (memchr(buf + n, '\0', (size_t)r) != NULL) {
            n += (size_t)r;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    /* one line, printable: clamd's words end up in logs and replies */
    buf[strcspn(buf, "\r\n")] = '\0';
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    if (n == 0) {
        errno = ECONNRESET;
        return -1;
    }
    return 0;
}

static int send_chunk(const unsigned char *chunk, size_t n, void *arg)
{
    struct session *s = arg;

    while (n > 0) {
        size_t k = n < CHUNK_MAX ? n : CHUNK_MAX;
        unsigned char head[4] = {(unsigned char)(k >> 24), (unsigned char)(k >> 16),
                                 (unsigned char)(k >> 8), (unsigned char)k};

        if (send_all(s, head, sizeof(head)) < 0 || send_all(s, chunk, k) < 0)
            return -1;
        chunk += k;
        n -= k;
    }
    return 0;
}

static void result(struct pec_clamd_result *r, enum pec_clamd_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void result(struct pec_clamd_result *r, enum pec_clamd_verdict v, const char *fmt, ...)
{
    va_list ap;

    r->verdict = v;
    va_start(ap, fmt);
    vsnprintf(r->what, sizeof(r->what), fmt, ap);
    va_end(ap);
}

/* Does S end with SUFFIX?  Then its length without it. */
static size_t ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && strcmp(s + n - k, suffix) == 0 ? n - k : 0;
}

/* What clamd's ANSWER to INSTREAM says. */
static void judge(const char *answer, struct pec_clamd_result *r)
{
    const char *a = strncmp(answer, "stream: ", 8) == 0 ? answer + 8 : answer;
    size_t n;

    if (strcmp(a, "OK") == 0) {
        result(r, PEC_CLAMD_CLEAN, "OK");
    } else if ((n = ends_with(a, " FOUND")) > 0) {
        if (strncmp(a, "Heuristics.Limits.Exceeded", 26) == 0)
            result(r, PEC_CLAMD_ERROR, "clamd left part of it unscanned (%.*s)", (int)n, a);
        else
            result(r, PEC_CLAMD_FOUND, "%.*s", (int)n, a);
    } else if ((n = ends_with(a, " ERROR")) > 0) {
        result(r, PEC_CLAMD_ERROR, "clamd: %.*s", (int)n, a);
    } else {
        result(r, PEC_CLAMD_ERROR, "clamd answered \"%.120s\"", a);
    }
}

void pec_clamd_scan(const char *spec, int timeout, const struct pec_spool *sp,
                    struct pec_clamd_result *r)
{
    static const char cmd[] = "zINSTREAM";
    static const unsigned char end[4] = {0, 0, 0, 0};
    struct session s;
    char err[512], answer[512];
    int sent;

    if (session_open(&s, spec, timeout, err, sizeof(err)) < 0) {
        result(r, PEC_CLAMD_ERROR, "clamd does not answer: %s", err);
        return;
    }
    sent = send_all(&s, cmd, sizeof(cmd)) == 0 &&
           pec_spool_each(sp, 0, pec_spool_size(sp), send_chunk, &s) == 0 &&
           send_all(&s, end, sizeof(end)) == 0;
    /*
     * clamd stops reading and answers as soon as the stream is over its
     * StreamMaxLength, so a failed send may still have an answer behind it.
     */
    if (sent || errno == EPIPE || errno == ECONNRESET) {
        int lost = sent ? 0 : errno;

        if (read_answer(&s, answer, sizeof(answer)) == 0)
            judge(answer, r);
        else if (errno == ETIMEDOUT)
            result(r, PEC_CLAMD_ERROR, "clamd gave no answer within %d s", timeout);
        else
            result(r, PEC_CLAMD_ERROR, "clamd closed the connection%s%s: %s",
                   lost ? " while the message was being sent" : "", lost ? "" : " unanswered",
                   strerror(lost ? lost : errno));
    } else if (errno == ETIMEDOUT) {
        result(r, PEC_CLAMD_ERROR, "clamd did not take the message within %d s", timeout);
    } else {
        result(r, PEC_CLAMD_ERROR, "cannot send the message to clamd: %s", strerror(errno));
    }
    close(s.fd);
}

/* Copy the field of S up to the next '/' into OUT; S moves past it. */
static void field(const char **s, char *out, size_t len)
{
    size_t n = strcspn(*s, "/");

    snprintf(out, len, "%.*s", (int)n, *s);
    *s += n;
    if (**s == '/')
        (*s)++;
}

int pec_clamd_version(const char *spec, int timeout, struct pec_clamd_version *v, char *err,
                      size_t errlen)
{
    static const char cmd[] = "zVERSION";
    struct session s;
    char answer[256];
    const char *p = answer;

    memset(v, 0, sizeof(*v));
    if (session_open(&s, spec, timeout, err, errlen) < 0)
        return -1;
    if (send_all(&s, cmd, sizeof(cmd)) < 0 || read_answer(&s, answer, sizeof(answer)) < 0) {
        pec_seterr(err, errlen, "%s: no answer to VERSION: %s", spec, strerror(errno));
        close(s.fd);
        return -1;
    }
    close(s.fd);
    if (strncmp(answer, "ClamAV ", 7) != 0) {
        pec_seterr(err, errlen, "%s: not clamd's answer to VERSION: \"%.80s\"", spec, answer);
        return -1;
    }
    field(&p, v->engine, sizeof(v->engine));
    field(&p, v->database, sizeof(v->database));
    field(&p, v->signed_at, sizeof(v->signed_at));
    return 0;
}
