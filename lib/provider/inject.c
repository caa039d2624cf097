/*
 * inject - the SMTP and sendmail ways into the MTA, and the injector's workers.
 *
 * The SMTP client is the smallest one that is correct for a loopback
 * listener we configure ourselves: EHLO (HELO if refused), no PIPELINING,
 * BODY=8BITMIME when the message has 8-bit bytes and the server offers it,
 * dot-stuffing and bare-LF repair while streaming the message out, and a
 * timeout on every wait (RFC 5321 §4.5.3.2 values, shortened for the
 * connection).  Any I/O failure, timeout or 421 ends the session; the next
 * message opens a new one.
 *
 * A recipient refused with 4xx defers the whole message rather than sending
 * to the others now and to it later: a row is sent once, as one message.
 * Recipients refused with 5xx while others are accepted are dropped and
 * named in the row's note; all refused with 5xx fails the row.
 *
 * A worker's loop: claim, send, record; when nothing is due, end its SMTP
 * session and sleep until the next attempt is due or a commit wakes it.  If
 * the store cannot record a 250, the worker records nothing else and claims
 * nothing until that one is recorded, so a sent row is never left looking
 * unsent while the process lives.
 */
#include "provider/inject.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_TIMEOUT 30
#define REPLY_TIMEOUT 300
#define DATA_END_TIMEOUT 600
#define WBUF 65536

extern char **environ;

enum mta_kind { MTA_SMTP, MTA_SENDMAIL };

struct pec_mta {
    enum mta_kind kind;
    char *host, *port; /* smtp */
    char *path;        /* sendmail */
    char *mail_from;
    char *helo;
    int fd; /* the SMTP session, -1 when none */
    int eightbit;
    char rbuf[4096];
    size_t rlen;
    unsigned char wbuf[WBUF];
    size_t wlen;
};

/* ---------------------------------------------------------------- target */

/* "smtp:HOST:PORT", HOST possibly "[v6]"; 0, or -1 with err. */
static int parse_smtp(struct pec_mta *m, const char *spec, char *err, size_t errlen)
{
    const char *hp = spec + 5, *colon;

    if (*hp == '[') {
        const char *close = strchr(hp, ']');
        if (close == NULL || close[1] != ':') {
            pec_seterr(err, errlen, "reinject: \"%s\": expected smtp:[ADDRESS]:PORT", spec);
            return -1;
        }
        m->host = xstrndup(hp + 1, (size_t)(close - hp - 1));
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL || colon == hp) {
            pec_seterr(err, errlen, "reinject: \"%s\": expected smtp:HOST:PORT", spec);
            return -1;
        }
        m->host = xstrndup(hp, (size_t)(colon - hp));
    }
    m->port = xstrdup(colon + 1);
    if (m->port[0] == '\0' || strspn(m->port, "0123456789") != strlen(m->port) ||
        atoi(m->port) < 1 || atoi(m->port) > 65535) {
        pec_seterr(err, errlen, "reinject: \"%s\": bad port", spec);
        return -1;
    }
    return 0;
}

struct pec_mta *pec_mta_new(const char *spec, const char *mail_from, char *err, size_t errlen)
{
    struct pec_mta *m = xcalloc(1, sizeof(*m));
    const char *at = strrchr(mail_from, '@');

    m->fd = -1;
    m->mail_from = xstrdup(mail_from);
    m->helo = xstrdup(at && at[1] ? at + 1 : "localhost");
    if (strncmp(spec, "smtp:", 5) == 0) {
        m->kind = MTA_SMTP;
        if (parse_smtp(m, spec, err, errlen) == 0)
            return m;
    } else if (strncmp(spec, "sendmail:", 9) == 0 && spec[9] == '/') {
        m->kind = MTA_SENDMAIL;
        m->path = xstrdup(spec + 9);
        return m;
    } else {
        pec_seterr(err, errlen, "reinject: \"%s\": expected smtp:HOST:PORT or sendmail:/path",
                   spec);
    }
    pec_mta_free(m);
    return NULL;
}

void pec_mta_free(struct pec_mta *m)
{
    if (m == NULL)
        return;
    pec_mta_close(m);
    free(m->host);
    free(m->port);
    free(m->path);
    free(m->mail_from);
    free(m->helo);
    free(m);
}

/* ---------------------------------------------------------------- results */

static enum pec_inject_status result(struct pec_inject_result *res, enum pec_inject_status status,
                                     int unreachable, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static enum pec_inject_status result(struct pec_inject_result *res, enum pec_inject_status status,
                                     int unreachable, int code, const char *fmt, ...)
{
    va_list ap;

    res->status = status;
    res->unreachable = unreachable;
    res->code = code;
    va_start(ap, fmt);
    vsnprintf(res->text, sizeof(res->text), fmt, ap);
    va_end(ap);
    return status;
}

/* ---------------------------------------------------------------- SMTP I/O */

static void session_drop(struct pec_mta *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    m->rlen = 0;
    m->wlen = 0;
}

static int wait_fd(int fd, short events, int timeout_s)
{
    struct pollfd p = {.fd = fd, .events = events};
    int rc;

    do
        rc = poll(&p, 1, timeout_s * 1000);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        errno = ETIMEDOUT;
    return rc > 0 ? 0 : -1;
}

static int write_all(struct pec_mta *m, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(m->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(m->fd, POLLOUT, REPLY_TIMEOUT) < 0)
                return -1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int flush_w(struct pec_mta *m)
{
    int rc = write_all(m, m->wbuf, m->wlen);

    m->wlen = 0;
    return rc;
}

static int put_w(struct pec_mta *m, const void *buf, size_t len)
{
    if (m->wlen + len > sizeof(m->wbuf) && flush_w(m) < 0)
        return -1;
    if (len > sizeof(m->wbuf))
        return write_all(m, buf, len);
    memcpy(m->wbuf + m->wlen, buf, len);
    m->wlen += len;
    return 0;
}

/* One line (without CRLF) into LINE; -1 on timeout, EOF or error. */
static int read_line(struct pec_mta *m, char *line, size_t linelen, int timeout_s)
{
    for (;;) {
        char *nl = memchr(m->rbuf, '\n', m->rlen);
        if (nl != NULL) {
            size_t n = (size_t)(nl - m->rbuf);
            size_t keep = n > 0 && m->rbuf[n - 1] == '\r' ? n - 1 : n;
            snprintf(line, linelen, "%.*s", (int)keep, m->rbuf);
            memmove(m->rbuf, nl + 1, m->rlen - n - 1);
            m->rlen -= n + 1;
            return 0;
        }
        if (m->rlen == sizeof(m->rbuf))
            m->rlen = 0; /* an absurdly long line: drop its start, keep reading */
        if (wait_fd(m->fd, POLLIN, timeout_s) < 0)
            return -1;
        ssize_t got = recv(m->fd, m->rbuf + m->rlen, sizeof(m->rbuf) - m->rlen, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = ECONNRESET;
            return -1;
        }
        m->rlen += (size_t)got;
    }
}

/*
 * Read a whole (possibly multi-line) reply: *CODE and its lines joined in
 * TEXT.  Lines saying 8BITMIME set m->eightbit (EHLO).  -1 on I/O failure.
 */
static int read_reply(struct pec_mta *m, int *code, char *text, size_t textlen, int timeout_s)
{
    char line[1024];
    size_t used = 0;

    text[0] = '\0';
    for (;;) {
        if (read_line(m, line, sizeof(line), timeout_s) < 0)
            return -1;
        if (strlen(line) < 3 || strspn(line, "0123456789") < 3) {
            errno = EPROTO;
            return -1;
        }
        if (strncasecmp(line + 4, "8BITMIME", 8) == 0)
            m->eightbit = 1;
        if (used + 2 < textlen)
            used += (size_t)snprintf(text + used, textlen - used, "%s%s", used ? " / " : "", line);
        if (line[3] != '-') {
            *code = atoi(line);
            return 0;
        }
    }
}

/* Send CMD (without CRLF) and read the reply; -1 on I/O failure. */
static int command(struct pec_mta *m, const char *cmd, int *code, char *text, size_t textlen)
{
    char buf[1100];
    int n = snprintf(buf, sizeof(buf), "%s\r\n", cmd);

    if (n < 0 || (size_t)n >= sizeof(buf)) {
        errno = E2BIG;
        return -1;
    }
    if (write_all(m, buf, (size_t)n) < 0)
        return -1;
    return read_reply(m, code, text, textlen, REPLY_TIMEOUT);
}

static int connect_to(struct pec_mta *m, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL, *a;
    int rc = getaddrinfo(m->host, m->port, &hints, &ai);
    int fd = -1, e = 0;

    if (rc != 0) {
        pec_seterr(why, whylen, "%s: %s", m->host, gai_strerror(rc));
        return -1;
    }
    for (a = ai; a != NULL && fd < 0; a = a->ai_next) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, CONNECT_TIMEOUT) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
            e = soerr ? soerr : errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        pec_seterr(why, whylen, "connect to %s:%s: %s", m->host, m->port, strerror(e));
    m->fd = fd;
    return fd < 0 ? -1 : 0;
}

/* Connect, greeting, EHLO.  OK, or TEMP with res->unreachable. */
static enum pec_inject_status session_open(struct pec_mta *m, struct pec_inject_result *res)
{
    char text[512], cmd[300];
    int code;

    m->eightbit = 0;
    if (connect_to(m, text, sizeof(text)) < 0)
        return result(res, PEC_INJECT_TEMP, 1, 0, "%s", text);
    if (read_reply(m, &code, text, sizeof(text), REPLY_TIMEOUT) < 0 || code != 220) {
        session_drop(m);
        return result(res, PEC_INJECT_TEMP, 1, code, "%s:%s greeting: %s", m->host, m->port,
                      text[0] ? text : strerror(errno));
    }
    snprintf(cmd, sizeof(cmd), "EHLO %s", m->helo);
    if (command(m, cmd, &code, text, sizeof(text)) == 0 && code / 100 != 2) {
        snprintf(cmd, sizeof(cmd), "HELO %s", m->helo);
        if (command(m, cmd, &code, text, sizeof(text)) < 0)
            code = 0;
    } else if (code == 0) {
        code = -1;
    }
    if (code / 100 != 2) {
        session_drop(m);
        return result(res, PEC_INJECT_TEMP, 1, code, "%s:%s EHLO: %s", m->host, m->port,
                      text[0] ? text : strerror(errno));
    }
    return PEC_INJECT_OK;
}

void pec_mta_close(struct pec_mta *m)
{
    char text[256];
    int code;

    if (m->fd < 0)
        return;
    command(m, "QUIT", &code, text, sizeof(text)); /* the answer changes nothing */
    session_drop(m);
}

/* A broken session: drop it and say so. */
static enum pec_inject_status broken(struct pec_mta *m, struct pec_inject_result *res,
                                     const char *stage)
{
    int e = errno;

    session_drop(m);
    return result(res, PEC_INJECT_TEMP, 1, 0, "%s:%s: session broke at %s: %s", m->host, m->port,
                  stage, strerror(e));
}

/* After a refusal inside a transaction: RSET, or drop the session if that fails. */
static void reset(struct pec_mta *m)
{
    char text[256];
    int code;

    if (command(m, "RSET", &code, text, sizeof(text)) < 0 || code != 250)
        session_drop(m);
}

/* The class of a refusal: 421 ends the session, other 4xx are temporary, 5xx final. */
static enum pec_inject_status refusal(struct pec_mta *m, struct pec_inject_result *res, int code,
                                      const char *stage, const char *text)
{
    if (code == 421) {
        session_drop(m);
        return result(res, PEC_INJECT_TEMP, 1, code, "%s: %s", stage, text);
    }
    reset(m);
    return result(res, code / 100 == 5 ? PEC_INJECT_PERM : PEC_INJECT_TEMP, 0, code, "%s: %s",
                  stage, text);
}

/* Stream DATA dot-stuffed, bare LF made CRLF, then the final dot. */
static int send_body(struct pec_mta *m, const unsigned char *data, size_t len)
{
    int bol = 1;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = data[i];
        if (bol && c == '.' && put_w(m, ".", 1) < 0)
            return -1;
        if (c == '\n' && (i == 0 || data[i - 1] != '\r') && put_w(m, "\r", 1) < 0)
            return -1;
        if (put_w(m, &c, 1) < 0)
            return -1;
        bol = c == '\n';
    }
    if (!bol && put_w(m, "\r\n", 2) < 0)
        return -1;
    if (put_w(m, ".\r\n", 3) < 0)
        return -1;
    return flush_w(m);
}

static int has_8bit(const unsigned char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (data[i] & 0x80)
            return 1;
    return 0;
}

static void queue_id(const char *text, char *out, size_t outlen)
{
    const char *p = strstr(text, "queued as ");
    size_t n;

    out[0] = '\0';
    if (p == NULL)
        return;
    p += strlen("queued as ");
    n = strspn(p, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
    snprintf(out, outlen, "%.*s", (int)n, p);
}

/* RCPT TO each; *ACCEPTED counts the 250s; TEMP/PERM when the message cannot go now. */
static enum pec_inject_status recipients(struct pec_mta *m, const char *const *rcpt, size_t n,
                                         size_t *accepted, struct pec_inject_result *res)
{
    char cmd[600], text[512], last[600] = "";
    int code, temp = 0, lastcode = 0;
    size_t used = 0;

    *accepted = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>", rcpt[i]);
        if (command(m, cmd, &code, text, sizeof(text)) < 0)
            return broken(m, res, "RCPT");
        if (code == 421)
            return refusal(m, res, code, "RCPT", text);
        if (code / 100 == 2) {
            (*accepted)++;
            continue;
        }
        temp |= code / 100 == 4;
        lastcode = code;
        snprintf(last, sizeof(last), "<%s>: %s", rcpt[i], text);
        if (code / 100 == 5 && used + 2 < sizeof(res->refused))
            used += (size_t)snprintf(res->refused + used, sizeof(res->refused) - used, "%s<%s>: %s",
                                     used ? "; " : "", rcpt[i], text);
    }
    if (temp)
        return refusal(m, res, 450, "RCPT", last); /* 4xx on one: the whole message waits */
    if (*accepted == 0)
        return refusal(m, res, lastcode, "RCPT", last);
    return PEC_INJECT_OK;
}

static enum pec_inject_status smtp_send(struct pec_mta *m, const char *const *rcpt, size_t n,
                                        const unsigned char *data, size_t len,
                                        struct pec_inject_result *res)
{
    char cmd[600], text[512];
    int code;
    size_t accepted;

    if (m->fd < 0 && session_open(m, res) != PEC_INJECT_OK)
        return res->status;
    snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>%s", m->mail_from,
             m->eightbit && has_8bit(data, len) ? " BODY=8BITMIME" : "");
    if (command(m, cmd, &code, text, sizeof(text)) < 0)
        return broken(m, res, "MAIL");
    if (code != 250)
        return refusal(m, res, code, "MAIL", text);
    if (recipients(m, rcpt, n, &accepted, res) != PEC_INJECT_OK)
        return res->status;
    if (command(m, "DATA", &code, text, sizeof(text)) < 0)
        return broken(m, res, "DATA");
    if (code != 354)
        return refusal(m, res, code, "DATA", text);
    if (send_body(m, data, len) < 0 ||
        read_reply(m, &code, text, sizeof(text), DATA_END_TIMEOUT) < 0)
        return broken(m, res, "end of data");
    if (code != 250)
        return refusal(m, res, code, "end of data", text);
    queue_id(text, res->queue_id, sizeof(res->queue_id));
    return result(res, PEC_INJECT_OK, 0, code, "%s", text);
}

/* ---------------------------------------------------------------- sendmail */

/* Write DATA to FD (the child's stdin); -1 with errno. */
static int feed(int fd, const unsigned char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The child's output, a line of it for the log. */
static void drain(int fd, char *out, size_t outlen)
{
    size_t used = 0;
    ssize_t n;

    out[0] = '\0';
    while ((n = read(fd, out + used, outlen - 1 - used)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0 && (used += (size_t)n) == outlen - 1)
            break;
    out[used] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

/* Run PATH with ARGV, stdin from IN, stdout and stderr to OUT; 0, or an errno value. */
static int spawn(const char *path, char **argv, int in, int out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);

    if (rc != 0)
        return rc;
    if ((rc = posix_spawn_file_actions_adddup2(&fa, in, 0)) == 0 &&
        (rc = posix_spawn_file_actions_adddup2(&fa, out, 1)) == 0 &&
        (rc = posix_spawn_file_actions_adddup2(&fa, out, 2)) == 0)
        rc = posix_spawn(pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* sysexits codes that mean "this message will never be taken" */
static int sendmail_permanent(int status)
{
    return status == 64 || status == 65 || status == 67 || status == 68;
}

static enum pec_inject_status sendmail_send(struct pec_mta *m, const char *const *rcpt, size_t n,
                                            const unsigned char *data, size_t len,
                                            struct pec_inject_result *res)
{
    char **argv = xcalloc(n + 6, sizeof(char *));
    int in[2] = {-1, -1}, out[2] = {-1, -1}, status, wrote;
    char text[400];
    pid_t pid;
    size_t k = 0;

    argv[k++] = m->path;
    argv[k++] = "-i";
    argv[k++] = "-f";
    argv[k++] = m->mail_from;
    argv[k++] = "--";
    for (size_t i = 0; i < n; i++)
        argv[k++] = (char *)rcpt[i];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
        int e = errno;
        free(argv);
        for (int i = 0; i < 2; i++) {
            if (in[i] >= 0)
                close(in[i]);
            if (out[i] >= 0)
                close(out[i]);
        }
        return result(res, PEC_INJECT_TEMP, 1, 0, "%s: pipe: %s", m->path, strerror(e));
    }
    int e = spawn(m->path, argv, in[0], out[1], &pid);
    free(argv);
    close(in[0]);
    close(out[1]);
    if (e != 0) {
        close(in[1]);
        close(out[0]);
        return result(res, PEC_INJECT_TEMP, 1, 0, "%s: cannot run: %s", m->path, strerror(e));
    }
    wrote = feed(in[1], data, len);
    close(in[1]);
    drain(out[0], text, sizeof(text));
    close(out[0]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return result(res, PEC_INJECT_TEMP, 1, 0, "%s: waitpid: %s", m->path, strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && wrote == 0)
        return result(res, PEC_INJECT_OK, 0, 0, "%s: accepted", m->path);
    if (!WIFEXITED(status))
        return result(res, PEC_INJECT_TEMP, 1, 0, "%s: killed by signal %d %s", m->path,
                      WTERMSIG(status), text);
    return result(res, sendmail_permanent(WEXITSTATUS(status)) ? PEC_INJECT_PERM : PEC_INJECT_TEMP,
                  0, WEXITSTATUS(status), "%s: exit status %d%s %s", m->path, WEXITSTATUS(status),
                  wrote < 0 ? " (input not taken)" : "", text);
}

enum pec_inject_status pec_mta_send(struct pec_mta *m, const char *const *rcpt, size_t n,
                                    const unsigned char *data, size_t len,
                                    struct pec_inject_result *res)
{
    memset(res, 0, sizeof(*res));
    if (n == 0)
        return result(res, PEC_INJECT_PERM, 0, 0, "no recipients");
    if (m->kind == MTA_SENDMAIL)
        return sendmail_send(m, rcpt, n, data, len, res);
    return smtp_send(m, rcpt, n, data, len, res);
}

/* ---------------------------------------------------------------- the injector */

struct sent_unrecorded {
    long long id;
    char message_id[256];
    char queue_id[64];
    char note[512];
};

/* One worker: its own session with the MTA, claiming rows one at a time. */
struct worker {
    struct pec_injector *inj;
    pthread_t thread;
    struct pec_mta *mta;
    unsigned long seen;  /* the wake-up generation it last looked at the outbox in */
    int backoff;         /* seconds; 0 while the MTA and the store answer */
    int have_unrecorded; /* a 250 the store has not recorded yet */
    struct sent_unrecorded unrecorded;
    /* how long 250s waited to be recorded: the window in which a crash means a resend */
    long long sent_count;
    double window_sum_us, window_max_us;
};

struct pec_injector {
    struct pec_store *st;
    long long node;
    int max_backoff;
    pec_log_fn *log;
    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t cond;
    unsigned long kicks; /* wake-up generation: a commit added rows */
    int stopping;        /* pec_injector_stop was called */
    int recovered;       /* the rows of an earlier run are queued again */
    int mta_down;        /* a worker's last attempt could not reach the MTA, and none since did */
    int store_down;      /* likewise for the store */
    size_t nworkers, started;
    struct worker *w;
};

static void say(struct pec_injector *inj, int prio, const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(struct pec_injector *inj, int prio, const char *qid, const char *fmt, ...)
{
    char text[2048];
    va_list ap;

    if (inj->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    inj->log(prio, qid, text);
}

static void wake_hook(void *arg)
{
    pec_injector_wake(arg);
}

void pec_injector_wake(struct pec_injector *inj)
{
    pthread_mutex_lock(&inj->lock);
    inj->kicks++;
    pthread_cond_broadcast(&inj->cond);
    pthread_mutex_unlock(&inj->lock);
}

/* Note the wake-up generation before looking at the outbox, so no wake-up is missed. */
static void look(struct worker *w)
{
    pthread_mutex_lock(&w->inj->lock);
    w->seen = w->inj->kicks;
    pthread_mutex_unlock(&w->inj->lock);
}

/*
 * Sleep until DEADLINE (Unix seconds), a wake-up since the worker last
 * looked, or stop.  With USE_KICK 0 (backing off) a wake-up does not end
 * the sleep, but the MTA and the store answering again does.  Nonzero when
 * stopping.
 */
static int sleep_until(struct worker *w, time_t deadline, int use_kick)
{
    struct pec_injector *inj = w->inj;
    struct timespec ts;
    int stopping;

    pthread_mutex_lock(&inj->lock);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += deadline - time(NULL);
    while (!inj->stopping &&
           !(use_kick ? inj->kicks != w->seen : !inj->mta_down && !inj->store_down))
        if (pthread_cond_timedwait(&inj->cond, &inj->lock, &ts) == ETIMEDOUT)
            break;
    stopping = inj->stopping;
    pthread_mutex_unlock(&inj->lock);
    return stopping;
}

static int next_backoff(struct worker *w)
{
    w->backoff = w->backoff ? w->backoff * 2 : 1;
    if (w->backoff > w->inj->max_backoff)
        w->backoff = w->inj->max_backoff;
    return w->backoff;
}

/*
 * Put the injector as a whole in or out of a trouble (*FLAG: the MTA or the
 * store is down).  1 when that changed, for the one log line that says so.
 * Out of it, the workers backing off go on at once.
 */
static int set_down(struct pec_injector *inj, int *flag, int down)
{
    int changed;

    pthread_mutex_lock(&inj->lock);
    changed = *flag != down;
    *flag = down;
    if (changed && !down)
        pthread_cond_broadcast(&inj->cond);
    pthread_mutex_unlock(&inj->lock);
    return changed;
}

static int is_down(struct pec_injector *inj)
{
    int down;

    pthread_mutex_lock(&inj->lock);
    down = inj->mta_down || inj->store_down;
    pthread_mutex_unlock(&inj->lock);
    return down;
}

/* The store failed: say so once, until it works again. */
static void store_failed(struct worker *w, const char *err)
{
    if (set_down(w->inj, &w->inj->store_down, 1))
        say(w->inj, LOG_ERR, NULL, "outbox: %s; retrying", err);
}

static void store_works(struct worker *w)
{
    if (set_down(w->inj, &w->inj->store_down, 0))
        say(w->inj, LOG_INFO, NULL, "outbox: the store works again");
}

/* Record the 250 kept in w->unrecorded; 0 when done. */
static int record_unrecorded(struct worker *w)
{
    struct sent_unrecorded *u = &w->unrecorded;
    char err[1024];

    if (pec_store_outbox_sent(w->inj->st, u->id, time(NULL), u->queue_id, u->note, err,
                              sizeof(err)) < 0) {
        store_failed(w, err);
        return -1;
    }
    store_works(w);
    w->have_unrecorded = 0;
    return 0;
}

static void rcpt_list(const struct pec_outbox_row *row, char *out, size_t outlen)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < row->nrcpt && used + 2 < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%s", i ? "," : "", row->rcpt[i]);
}

/* The MTA answered (whatever it said): no more backing off from it. */
static void mta_answers(struct worker *w)
{
    if (set_down(w->inj, &w->inj->mta_down, 0))
        say(w->inj, LOG_INFO, NULL, "outbox: the MTA answers again");
    w->backoff = 0;
}

static void sent(struct worker *w, const struct pec_outbox_row *row,
                 const struct pec_inject_result *res)
{
    struct sent_unrecorded *u = &w->unrecorded;
    struct timespec t0, t1;
    char to[512];

    u->id = row->id;
    snprintf(u->message_id, sizeof(u->message_id), "%s", row->message_id);
    snprintf(u->queue_id, sizeof(u->queue_id), "%s", res->queue_id);
    snprintf(u->note, sizeof(u->note), "%s%s", res->refused[0] ? "refused: " : "", res->refused);
    w->have_unrecorded = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (record_unrecorded(w) == 0) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double us = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
        w->sent_count++;
        w->window_sum_us += us;
        if (us > w->window_max_us)
            w->window_max_us = us;
    }
    rcpt_list(row, to, sizeof(to));
    say(w->inj, LOG_INFO, res->queue_id, "outbox: <%s> (%s %s) to %s: sent%s%s%s", row->message_id,
        row->tipo, row->identificativo, to,
        row->doubts ? ", again after an unclean stop (the MTA may have had it already)" : "",
        res->refused[0] ? "; refused for good: " : "", res->refused);
    mta_answers(w);
}

static void deferred(struct worker *w, const struct pec_outbox_row *row,
                     const struct pec_inject_result *res)
{
    struct pec_injector *inj = w->inj;
    time_t now = time(NULL), next;
    char err[1024];
    int wait;

    if (res->unreachable) {
        wait = next_backoff(w);
        if (set_down(inj, &inj->mta_down, 1))
            say(inj, LOG_WARNING, NULL, "outbox: the MTA cannot take messages: %s", res->text);
        if (pec_store_outbox_note(inj->st, now, res->text, err, sizeof(err)) < 0)
            store_failed(w, err);
    } else {
        mta_answers(w);
        wait = row->attempts >= 30 ? inj->max_backoff : 1 << (row->attempts - 1);
        if (wait > inj->max_backoff)
            wait = inj->max_backoff;
        say(inj, LOG_WARNING, NULL, "outbox: <%s> (%s %s): deferred for %d s: %s", row->message_id,
            row->tipo, row->identificativo, wait, res->text);
    }
    next = now + wait;
    if (pec_store_outbox_defer(inj->st, row->id, now, next, res->text, err, sizeof(err)) < 0)
        store_failed(w, err);
}

static void failed(struct worker *w, const struct pec_outbox_row *row,
                   const struct pec_inject_result *res)
{
    char err[1024];

    mta_answers(w);
    say(w->inj, LOG_ERR, NULL,
        "outbox: <%s> (%s %s): refused by the MTA, kept for `pecctl outbox retry %lld`: %s",
        row->message_id, row->tipo, row->identificativo, row->id, res->text);
    if (pec_store_outbox_fail(w->inj->st, row->id, time(NULL), res->text, err, sizeof(err)) < 0)
        store_failed(w, err);
}

/* Claim and send one row.  Returns the time to sleep until (0: go on at once). */
static time_t step(struct worker *w)
{
    struct pec_injector *inj = w->inj;
    struct pec_outbox_row row;
    struct pec_inject_result res;
    char err[1024];
    time_t next;
    int rc;

    if (w->have_unrecorded && record_unrecorded(w) < 0)
        return time(NULL) + next_backoff(w);
    look(w);
    rc = pec_store_outbox_claim(inj->st, time(NULL), inj->node, &row, &next, err, sizeof(err));
    if (rc < 0) {
        store_failed(w, err);
        return time(NULL) + next_backoff(w);
    }
    store_works(w);
    if (rc == 0) {
        /* rows queued by another process (pecctl outbox retry) wake nobody: look again anyway */
        time_t poll = time(NULL) + inj->max_backoff;
        pec_mta_close(w->mta);
        if (w == &inj->w[0] && pec_store_outbox_tidy(inj->st, err, sizeof(err)) < 0)
            store_failed(w, err);
        return next > 0 && next < poll ? next : poll;
    }
    switch (
        pec_mta_send(w->mta, (const char *const *)row.rcpt, row.nrcpt, row.data, row.len, &res)) {
    case PEC_INJECT_OK:
        sent(w, &row, &res);
        break;
    case PEC_INJECT_TEMP:
        deferred(w, &row, &res);
        break;
    case PEC_INJECT_PERM:
        failed(w, &row, &res);
        break;
    }
    pec_outbox_row_free(&row);
    return is_down(inj) ? time(NULL) + w->backoff : 0;
}

/*
 * Queue again the rows an earlier run of this node left "sending", before
 * any worker claims: those of a worker of this run are in the MTA's hands.
 */
static void recover(struct worker *w)
{
    struct pec_injector *inj = w->inj;
    char err[1024];
    int n;

    while ((n = pec_store_outbox_recover(inj->st, inj->node, err, sizeof(err))) < 0) {
        store_failed(w, err);
        if (sleep_until(w, time(NULL) + next_backoff(w), 0))
            return;
    }
    store_works(w);
    w->backoff = 0;
    if (n > 0)
        say(inj, LOG_WARNING, NULL,
            "outbox: %d message(s) were in the MTA's hands when pecmilter stopped; sending them "
            "again with the same Message-ID (the MTA may already have some)",
            n);
}

/* The first worker recovers; the others wait for it.  Nonzero when stopping. */
static int await_recovery(struct worker *w)
{
    struct pec_injector *inj = w->inj;
    int stopping;

    if (w == &inj->w[0])
        recover(w);
    pthread_mutex_lock(&inj->lock);
    if (w == &inj->w[0]) {
        inj->recovered = 1;
        pthread_cond_broadcast(&inj->cond);
    }
    while (!inj->recovered && !inj->stopping)
        pthread_cond_wait(&inj->cond, &inj->lock);
    stopping = inj->stopping;
    pthread_mutex_unlock(&inj->lock);
    return stopping;
}

static int is_stopping(struct pec_injector *inj)
{
    int stopping;

    pthread_mutex_lock(&inj->lock);
    stopping = inj->stopping;
    pthread_mutex_unlock(&inj->lock);
    return stopping;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int stopping = await_recovery(w);

    while (!stopping) {
        time_t until = step(w);
        /* backing off from a failing MTA or store: a new row does not cut the wait short */
        int backing_off = is_down(w->inj);
        if (until == 0)
            stopping = is_stopping(w->inj);
        else
            stopping = sleep_until(w, until, !backing_off);
    }
    pec_mta_close(w->mta);
    if (w->have_unrecorded)
        say(w->inj, LOG_ERR, w->unrecorded.queue_id,
            "outbox: <%s> was taken by the MTA but the store could not record it; it will be "
            "sent again at the next start",
            w->unrecorded.message_id);
    return NULL;
}

/* The figures of the run, summed over the workers, in one line. */
static void say_figures(struct pec_injector *inj)
{
    long long n = 0;
    double sum = 0, max = 0;

    for (size_t i = 0; i < inj->nworkers; i++) {
        n += inj->w[i].sent_count;
        sum += inj->w[i].window_sum_us;
        if (inj->w[i].window_max_us > max)
            max = inj->w[i].window_max_us;
    }
    if (n > 0)
        say(inj, LOG_INFO, NULL,
            "outbox: %lld message(s) sent; recording a 250 took %.0f us on average, %.0f us at "
            "most",
            n, sum / (double)n, max);
}

/* Stop and join the workers started so far. */
static void stop_workers(struct pec_injector *inj)
{
    pthread_mutex_lock(&inj->lock);
    inj->stopping = 1;
    pthread_cond_broadcast(&inj->cond);
    pthread_mutex_unlock(&inj->lock);
    for (size_t i = 0; i < inj->started; i++)
        pthread_join(inj->w[i].thread, NULL);
}

static void injector_free(struct pec_injector *inj)
{
    for (size_t i = 0; i < inj->nworkers; i++)
        pec_mta_free(inj->w[i].mta);
    free(inj->w);
    pthread_cond_destroy(&inj->cond);
    pthread_mutex_destroy(&inj->lock);
    free(inj);
}

struct pec_injector *pec_injector_start(const struct pec_injector_conf *conf, struct pec_store *st,
                                        char *err, size_t errlen)
{
    struct pec_injector *inj = xcalloc(1, sizeof(*inj));
    pthread_condattr_t ca;
    int rc;

    if ((rc = pthread_condattr_init(&ca)) != 0 ||
        (rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
        (rc = pthread_cond_init(&inj->cond, &ca)) != 0) {
        pec_seterr(err, errlen, "injector: condition variable: %s", strerror(rc));
        free(inj);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&inj->lock, NULL);
    inj->st = st;
    inj->node = conf->node;
    inj->max_backoff = conf->max_backoff > 0 ? conf->max_backoff : 1;
    inj->log = conf->log;
    inj->nworkers = conf->sessions > 0 ? (size_t)conf->sessions : 1;
    inj->w = xcalloc(inj->nworkers, sizeof(*inj->w));
    for (size_t i = 0; i < inj->nworkers; i++) {
        inj->w[i].inj = inj;
        if ((inj->w[i].mta = pec_mta_new(conf->reinject, conf->mail_from, err, errlen)) == NULL) {
            injector_free(inj);
            return NULL;
        }
    }
    pec_store_set_outbox_hook(st, wake_hook, inj);
    for (; inj->started < inj->nworkers; inj->started++)
        if ((rc = pthread_create(&inj->w[inj->started].thread, NULL, worker_main,
                                 &inj->w[inj->started])) != 0) {
            pec_seterr(err, errlen, "injector: cannot start a thread: %s", strerror(rc));
            stop_workers(inj);
            pec_store_set_outbox_hook(st, NULL, NULL);
            injector_free(inj);
            return NULL;
        }
    return inj;
}

void pec_injector_stop(struct pec_injector *inj)
{
    if (inj == NULL)
        return;
    stop_workers(inj);
    pec_store_set_outbox_hook(inj->st, NULL, NULL);
    say_figures(inj);
    injector_free(inj);
}
