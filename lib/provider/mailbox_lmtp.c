/*
 * mailbox_lmtp - the mailbox backend that is an LMTP server (Dovecot's
 * lmtp, Cyrus...): the client half of RFC 2033, one session per message.
 *
 * No pipelining: a few recipients per message on a local socket do not
 * need it, and one command at a time keeps every reply tied to the
 * recipient it is about.  BODY=8BITMIME is sent when our client said it
 * and the server offers it.  Every wait is bounded by the timeout.
 */
#include "provider/mailbox.h"
#include "util/sock.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/xalloc.h"

#define WBUF (64 * 1024)

struct client {
    int fd;
    int timeout;
    unsigned char rbuf[4096];
    size_t rpos, rlen;
    unsigned char wbuf[WBUF];
    size_t wlen;
    int bol; /* the last byte of the body sent ended a line */
};

struct reply {
    int code; /* 0: the session broke */
    char esc[16];
    char text[256];
    int eightbit; /* an LHLO reply offered 8BITMIME */
};

static int flush_out(struct client *cl)
{
    size_t off = 0;

    while (off < cl->wlen) {
        struct pollfd p = {.fd = cl->fd, .events = POLLOUT};
        ssize_t n;
        if (poll(&p, 1, cl->timeout * 1000) <= 0)
            return -1;
        n = send(cl->fd, cl->wbuf + off, cl->wlen - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    cl->wlen = 0;
    return 0;
}

static int put(struct client *cl, const void *buf, size_t n)
{
    const unsigned char *p = buf;

    while (n > 0) {
        size_t k = WBUF - cl->wlen < n ? WBUF - cl->wlen : n;
        memcpy(cl->wbuf + cl->wlen, p, k);
        cl->wlen += k;
        p += k;
        n -= k;
        if (cl->wlen == WBUF && flush_out(cl) != 0)
            return -1;
    }
    return 0;
}

/* One line of a reply, line end removed; 0, or -1 when the session broke. */
static int read_line(struct client *cl, char *line, size_t cap)
{
    size_t n = 0;

    for (;;) {
        while (cl->rpos < cl->rlen) {
            char ch = (char)cl->rbuf[cl->rpos++];
            if (ch == '\n') {
                if (n > 0 && line[n - 1] == '\r')
                    n--;
                line[n] = '\0';
                return 0;
            }
            if (n + 1 < cap)
                line[n++] = ch;
        }
        struct pollfd p = {.fd = cl->fd, .events = POLLIN};
        ssize_t r;
        if (poll(&p, 1, cl->timeout * 1000) <= 0)
            return -1;
        r = read(cl->fd, cl->rbuf, sizeof(cl->rbuf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        cl->rpos = 0;
        cl->rlen = (size_t)r;
    }
}

/* "5.1.1 text" -> esc "5.1.1", text "text"; without an enhanced code, one made from CODE. */
static void split_status(int code, const char *s, struct reply *r)
{
    size_t n = strspn(s, "0123456789.");
    int dots = 0;

    for (size_t i = 0; i < n; i++)
        dots += s[i] == '.';
    if (n >= 5 && n < sizeof(r->esc) && dots == 2 && s[0] == '0' + code / 100 &&
        (s[n] == ' ' || s[n] == '\0')) {
        memcpy(r->esc, s, n);
        r->esc[n] = '\0';
        s += n;
        while (*s == ' ')
            s++;
    } else {
        snprintf(r->esc, sizeof(r->esc), "%d.0.0", code / 100);
    }
    snprintf(r->text, sizeof(r->text), "%s", s);
}

static void read_reply(struct client *cl, struct reply *r)
{
    char line[1024];

    memset(r, 0, sizeof(*r));
    if (flush_out(cl) != 0)
        return;
    for (;;) {
        if (read_line(cl, line, sizeof(line)) != 0 || strlen(line) < 3 ||
            !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
            !isdigit((unsigned char)line[2]) || (line[3] != ' ' && line[3] != '-' && line[3])) {
            r->code = 0;
            return;
        }
        if (strncasecmp(line + 4, "8BITMIME", 8) == 0)
            r->eightbit = 1;
        if (line[3] != '-')
            break;
    }
    r->code = atoi(line);
    split_status(r->code, line[3] ? line + 4 : "", r);
}

static void command(struct client *cl, struct reply *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void command(struct client *cl, struct reply *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2) {
        memset(r, 0, sizeof(*r));
        return;
    }
    memcpy(line + n, "\r\n", 3);
    if (put(cl, line, (size_t)n + 2) != 0) {
        memset(r, 0, sizeof(*r));
        return;
    }
    read_reply(cl, r);
}

/* The body, dot-stuffed (RFC 5321 4.5.2), then the lone dot. */
static int body_chunk(const unsigned char *chunk, size_t n, void *arg)
{
    struct client *cl = arg;
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        if (cl->bol && chunk[i] == '.') {
            if (put(cl, chunk + start, i - start) != 0 || put(cl, ".", 1) != 0)
                return -1;
            start = i;
        }
        cl->bol = chunk[i] == '\n';
    }
    return put(cl, chunk + start, n - start) == 0 ? 0 : -1;
}

static int send_body(struct client *cl, const struct pec_spool *msg)
{
    cl->bol = 1;
    if (pec_spool_each(msg, 0, pec_spool_size(msg), body_chunk, cl) != 0)
        return -1;
    if (!cl->bol && put(cl, "\r\n", 2) != 0)
        return -1;
    return put(cl, ".\r\n", 3);
}

/* What the server's reply R means for one recipient. */
static void outcome(const struct reply *r, struct pec_mbox_result *res)
{
    if (r->code == 0)
        pec_mbox_result_set(res, PEC_MBOX_TEMP, 451, "4.4.2",
                            "mailbox server: connection lost or timed out");
    else if (r->code < 400)
        pec_mbox_result_set(res, PEC_MBOX_STORED, 250, "2.0.0", "delivered to its mailbox");
    else
        pec_mbox_result_set(res, r->code < 500 ? PEC_MBOX_TEMP : PEC_MBOX_PERM, r->code, r->esc,
                            "mailbox server: %s", r->text);
}

static void all(const struct reply *r, size_t n, struct pec_mbox_result *res, const int *only)
{
    for (size_t i = 0; i < n; i++)
        if (only == NULL || only[i])
            outcome(r, &res[i]);
}

/* The session, on a connected client; fills every RES. */
static void session(struct client *cl, const struct pec_mbox_conf *mc, const char *sender,
                    const char *const *rcpt, size_t n, const struct pec_spool *msg, int eight_bit,
                    struct pec_mbox_result *res)
{
    int *accepted = xcalloc(n ? n : 1, sizeof(int)), any = 0, broken;
    struct reply r;

    read_reply(cl, &r);
    if (r.code == 220)
        command(cl, &r, "LHLO %s", mc->hostname);
    if (r.code != 250) {
        if (r.code >= 500) /* a server that will not talk to us: an operator's problem */
            r.code = 421;
        all(&r, n, res, NULL);
        goto out;
    }
    command(cl, &r, "MAIL FROM:<%s>%s", sender, eight_bit && r.eightbit ? " BODY=8BITMIME" : "");
    if (r.code != 250) {
        all(&r, n, res, NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        command(cl, &r, "RCPT TO:<%s>", rcpt[i]);
        outcome(&r, &res[i]);
        if (r.code == 0) {
            all(&r, n, res, NULL);
            goto out;
        }
        accepted[i] = r.code >= 200 && r.code < 300;
        any |= accepted[i];
    }
    if (!any || msg == NULL) { /* msg NULL: pec_mbox_probe() asks about the recipients only */
        command(cl, &r, "QUIT");
        goto out;
    }
    command(cl, &r, "DATA");
    if (r.code != 354) {
        all(&r, n, res, accepted);
        goto out;
    }
    broken = send_body(cl, msg) != 0;
    for (size_t i = 0; i < n; i++) {
        if (!accepted[i])
            continue;
        if (!broken) {
            read_reply(cl, &r);
            broken = r.code == 0;
        }
        if (broken)
            memset(&r, 0, sizeof(r));
        outcome(&r, &res[i]);
    }
    if (r.code != 0)
        command(cl, &r, "QUIT");
out:
    free(accepted);
}

void pec_mbox_lmtp_deliver(const struct pec_mbox_conf *mc, const char *sender,
                           const char *const *rcpt, size_t n, const struct pec_spool *msg,
                           int eight_bit, struct pec_mbox_result *res)
{
    struct client *cl;
    char err[512];
    int timeout = mc->timeout > 0 ? mc->timeout : 300;
    int fd = pec_sock_connect(mc->lmtp, timeout, err, sizeof(err));

    if (fd < 0) {
        for (size_t i = 0; i < n; i++)
            pec_mbox_result_set(&res[i], PEC_MBOX_TEMP, 451, "4.4.1",
                                "mailbox server unavailable: %s", err);
        return;
    }
    cl = xcalloc(1, sizeof(*cl));
    cl->fd = fd;
    cl->timeout = timeout;
    session(cl, mc, sender, rcpt, n, msg, eight_bit, res);
    close(fd);
    free(cl);
}
