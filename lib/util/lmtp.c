/*
 * lmtp - the LMTP server protocol: a buffered reader and writer around one
 * socket, the command table, and DATA into a spool.
 *
 * The read buffer is also what makes PIPELINING work: a command is taken
 * from the buffer when a whole line is there, and the socket is read (and
 * the pending replies written first) only when it is not, i.e. when the
 * client waits for us.
 */
#include "util/lmtp.h"
#include "util/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#define RBUF (64 * 1024)
#define WBUF (8 * 1024)
#define DATA_PIECE 4096 /* a text line longer than this is passed on in pieces */
#define PATH_MAX_LEN 256

struct conn {
    int fd;
    const struct pec_lmtp_proto *p;
    int timeout;
    unsigned char rbuf[RBUF];
    size_t rpos, rlen;
    char wbuf[WBUF];
    size_t wlen;
    int dead; /* the client is gone, timed out or the socket failed: stop */
    int errors;
    unsigned long ntx;

    int lhlo;
    int have_mail;
    char *sender;
    char **rcpt;
    size_t nrcpt;
    int eight_bit;
};

static void say(const struct conn *c, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const struct conn *c, int prio, const char *fmt, ...)
{
    char text[600], name[48];
    va_list ap;

    if (c->p->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    snprintf(name, sizeof(name), "lmtp%lu", c->p->conn);
    c->p->log(prio, name, text);
}

/* ---- output ---- */

static int flush_out(struct conn *c)
{
    size_t off = 0;

    while (off < c->wlen && !c->dead) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        ssize_t n;

        if (poll(&pfd, 1, c->timeout * 1000) <= 0) {
            say(c, LOG_INFO, "the client does not read its replies; closing");
            c->dead = 1;
            break;
        }
        n = send(c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->dead = 1;
            break;
        }
        off += (size_t)n;
    }
    c->wlen = 0;
    return c->dead ? -1 : 0;
}

static void reply_line(struct conn *c, const char *line)
{
    size_t n = strlen(line);

    if (c->wlen + n + 2 > WBUF)
        flush_out(c);
    memcpy(c->wbuf + c->wlen, line, n);
    c->wlen += n;
    memcpy(c->wbuf + c->wlen, "\r\n", 2);
    c->wlen += 2;
}

static void reply(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply(struct conn *c, const char *fmt, ...)
{
    char line[PEC_LMTP_REPLY_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    reply_line(c, line);
}

/* a refused command: counts towards the limit of bad commands */
static void refuse(struct conn *c, const char *line)
{
    reply_line(c, line);
    c->errors++;
}

void pec_lmtp_reply_set(struct pec_lmtp_reply *r, int code, const char *status, const char *fmt,
                        ...)
{
    char text[PEC_LMTP_REPLY_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (char *s = text; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
    snprintf(r->text, sizeof(r->text), "%03d %s %s", code, status, text);
}

/* ---- input ---- */

/* Read more into the buffer, after writing what is pending.  1, or 0 when the client is gone. */
static int fill(struct conn *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    ssize_t n;

    if (c->dead || flush_out(c) < 0)
        return 0;
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    for (;;) {
        int rc = poll(&pfd, 1, c->timeout * 1000);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0) {
            say(c, LOG_INFO, "no input for %d s; closing", c->timeout);
            reply(c, "421 4.4.2 timeout exceeded, closing connection");
            flush_out(c);
            c->dead = 1;
            return 0;
        }
        n = rc < 0 ? -1 : read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->dead = 1;
            return 0;
        }
        c->rlen += (size_t)n;
        return 1;
    }
}

/*
 * The next command line, NUL-terminated, line end removed, into LINE.  1, 0 when the
 * client is gone, -1 for a line longer than PEC_LMTP_LINE_MAX (consumed).
 */
static int read_command(struct conn *c, char *line)
{
    int too_long = 0;

    for (;;) {
        unsigned char *s = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        unsigned char *lf = memchr(s, '\n', avail);

        if (lf != NULL) {
            size_t n = (size_t)(lf - s);
            c->rpos += n + 1;
            if (too_long || n + 1 > PEC_LMTP_LINE_MAX)
                return -1;
            if (n > 0 && s[n - 1] == '\r')
                n--;
            memcpy(line, s, n);
            line[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if (line[i] == '\0')
                    line[i] = ' ';
            return 1;
        }
        if (avail >= PEC_LMTP_LINE_MAX) {
            too_long = 1;
            c->rpos = c->rlen;
        }
        if (!fill(c))
            return 0;
    }
}

/* ---- the transaction ---- */

static void tx_reset(struct conn *c)
{
    free(c->sender);
    c->sender = NULL;
    for (size_t i = 0; i < c->nrcpt; i++)
        free(c->rcpt[i]);
    free(c->rcpt);
    c->rcpt = NULL;
    c->nrcpt = 0;
    c->have_mail = 0;
    c->eight_bit = 0;
}

/*
 * Parse "<path>" at *S into a new string (the mailbox, source route dropped) and
 * advance *S past it.  NULL when it is not a path.
 */
static char *parse_path(const char **s)
{
    const char *p = *s, *start;
    int quoted = 0;
    size_t n;

    if (*p != '<')
        return NULL;
    p++;
    if (*p == '@') { /* a source route, "@a,@b:" */
        const char *colon = strchr(p, ':');
        if (colon == NULL)
            return NULL;
        p = colon + 1;
    }
    start = p;
    for (; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return NULL;
        if (*p == '\\' && quoted && p[1] != '\0')
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == '>' && !quoted)
            break;
    }
    if (*p != '>')
        return NULL;
    n = (size_t)(p - start);
    if (n > PATH_MAX_LEN)
        return NULL;
    *s = p + 1;
    return xstrndup(start, n);
}

/* Skip "FROM:" or "TO:" (any case) and the spaces some clients put after it. */
static const char *after_keyword(const char *args, const char *kw)
{
    size_t n = strlen(kw);

    if (strncasecmp(args, kw, n) != 0)
        return NULL;
    args += n;
    while (*args == ' ')
        args++;
    return args;
}

/* Check the MAIL parameters in S; NULL when they are fine, else the reply. */
static const char *mail_params(struct conn *c, const char *s)
{
    char *copy = xstrdup(s), *save = NULL;
    const char *bad = NULL;

    for (char *w = strtok_r(copy, " ", &save); w != NULL && bad == NULL;
         w = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(w, '=');
        const char *v = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        if (strcasecmp(w, "SIZE") == 0) {
            char *end;
            unsigned long long size = strtoull(v, &end, 10);
            if (*v == '\0' || *end != '\0' || !isdigit((unsigned char)*v))
                bad = "501 5.5.4 bad SIZE parameter";
            else if (size > c->p->max_size)
                bad = "552 5.3.4 message size exceeds the fixed maximum message size";
        } else if (strcasecmp(w, "BODY") == 0) {
            if (strcasecmp(v, "8BITMIME") == 0)
                c->eight_bit = 1;
            else if (strcasecmp(v, "7BIT") != 0)
                bad = "501 5.5.4 BODY must be 7BIT or 8BITMIME";
        } else {
            bad = "555 5.5.4 unsupported MAIL parameter";
        }
    }
    free(copy);
    return bad;
}

static void cmd_mail(struct conn *c, const char *args)
{
    const char *p = after_keyword(args, "FROM:"), *bad;
    char *path;

    if (!c->lhlo) {
        refuse(c, "503 5.5.1 say LHLO first");
        return;
    }
    if (c->have_mail) {
        refuse(c, "503 5.5.1 nested MAIL command");
        return;
    }
    if (p == NULL || (path = parse_path(&p)) == NULL) {
        refuse(c, "501 5.1.7 syntax: MAIL FROM:<address>");
        return;
    }
    if (*p != '\0' && *p != ' ') {
        free(path);
        refuse(c, "501 5.1.7 syntax: MAIL FROM:<address>");
        return;
    }
    c->eight_bit = 0;
    if ((bad = mail_params(c, p)) != NULL) {
        free(path);
        refuse(c, bad);
        return;
    }
    c->sender = path;
    c->have_mail = 1;
    reply(c, "250 2.1.0 sender <%s> OK", path);
}

static void cmd_rcpt(struct conn *c, const char *args)
{
    const char *p = after_keyword(args, "TO:");
    char *path;

    if (!c->have_mail) {
        refuse(c, "503 5.5.1 need MAIL before RCPT");
        return;
    }
    if (p == NULL || (path = parse_path(&p)) == NULL) {
        refuse(c, "501 5.1.3 syntax: RCPT TO:<address>");
        return;
    }
    while (*p == ' ')
        p++;
    if (*p != '\0') {
        free(path);
        refuse(c, "555 5.5.4 unsupported RCPT parameter");
        return;
    }
    if (strchr(path, '@') == NULL || path[0] == '@' || path[strlen(path) - 1] == '@') {
        refuse(c, "553 5.1.3 a recipient needs a local part and a domain");
        free(path);
        return;
    }
    if (c->nrcpt >= PEC_LMTP_MAX_RCPT) {
        free(path);
        reply(c, "452 4.5.3 too many recipients");
        return;
    }
    c->rcpt = xrealloc(c->rcpt, (c->nrcpt + 1) * sizeof(*c->rcpt));
    c->rcpt[c->nrcpt++] = path;
    reply(c, "250 2.1.5 recipient <%s> OK", path);
}

/*
 * The next piece of DATA: a whole line (through its LF) when one is buffered or fits
 * the buffer, else at least DATA_PIECE bytes of a longer one.  1, or 0 when the client
 * is gone.
 */
static int data_piece(struct conn *c, const unsigned char **p, size_t *n, int *whole)
{
    for (;;) {
        unsigned char *s = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        unsigned char *lf = memchr(s, '\n', avail);

        if (lf != NULL || avail >= DATA_PIECE) {
            *p = s;
            *n = lf ? (size_t)(lf - s) + 1 : avail;
            *whole = lf != NULL;
            c->rpos += *n;
            return 1;
        }
        if (!fill(c))
            return 0;
    }
}

struct data_state {
    struct pec_spool *sp;
    size_t size;
    int too_big;
    int failed; /* errno of the spool */
};

static void data_keep(struct conn *c, struct data_state *d, const unsigned char *p, size_t n)
{
    if (d->too_big || d->failed)
        return;
    if (d->size + n > c->p->max_size) {
        d->too_big = 1;
        return;
    }
    if (pec_spool_write_crlf(d->sp, p, n) != 0)
        d->failed = errno ? errno : EIO;
    d->size += n;
}

/* Read DATA to the lone dot.  1 when it came, 0 when the client went away first. */
static int read_data(struct conn *c, struct data_state *d)
{
    int bol = 1;

    for (;;) {
        const unsigned char *p;
        size_t n;
        int whole;

        if (!data_piece(c, &p, &n, &whole))
            return 0;
        if (bol && whole && ((n == 3 && memcmp(p, ".\r\n", 3) == 0) || (n == 2 && p[0] == '.')))
            return 1;
        if (bol && p[0] == '.') {
            p++;
            n--;
        }
        data_keep(c, d, p, n);
        bol = whole;
    }
}

static void deliver(struct conn *c, const struct data_state *d)
{
    struct pec_lmtp_reply *res = xcalloc(c->nrcpt, sizeof(*res));
    char session[64];
    struct pec_lmtp_msg m = {
        .sender = c->sender,
        .rcpt = (const char *const *)c->rcpt,
        .nrcpt = c->nrcpt,
        .data = d->sp,
        .eight_bit = c->eight_bit,
        .session = session,
    };

    snprintf(session, sizeof(session), "lmtp%lu.%lu", c->p->conn, ++c->ntx);
    c->p->deliver(c->p->arg, &m, res);
    for (size_t i = 0; i < c->nrcpt; i++) {
        const char *t = res[i].text;
        if (strlen(t) < 5 || !isdigit((unsigned char)t[0]) || t[3] != ' ')
            reply(c, "451 4.3.0 <%s> internal error, try again later", c->rcpt[i]);
        else
            reply_line(c, t);
    }
    free(res);
}

static void cmd_data(struct conn *c, const char *args)
{
    struct data_state d = {0};

    if (*args != '\0') {
        refuse(c, "501 5.5.4 DATA takes no argument");
        return;
    }
    if (!c->have_mail) {
        refuse(c, "503 5.5.1 need MAIL before DATA");
        return;
    }
    if (c->nrcpt == 0) {
        refuse(c, "503 5.5.1 no valid recipients");
        return;
    }
    reply(c, "354 send the message, end with <CRLF>.<CRLF>");
    d.sp = pec_spool_new(c->p->spool_dir, c->p->spool_mem);
    if (!read_data(c, &d)) {
        say(c, LOG_INFO, "client gone during DATA; nothing delivered");
    } else if (d.too_big) {
        for (size_t i = 0; i < c->nrcpt; i++)
            reply(c, "552 5.3.4 <%s> message size exceeds the fixed maximum message size",
                  c->rcpt[i]);
    } else if (d.failed) {
        say(c, LOG_ERR, "cannot spool the message: %s", strerror(d.failed));
        for (size_t i = 0; i < c->nrcpt; i++)
            reply(c, "451 4.3.1 <%s> cannot store the message now, try again later", c->rcpt[i]);
    } else {
        deliver(c, &d);
    }
    pec_spool_free(d.sp);
    tx_reset(c);
}

static void cmd_lhlo(struct conn *c, const char *args)
{
    if (*args == '\0') {
        refuse(c, "501 5.5.4 syntax: LHLO hostname");
        return;
    }
    tx_reset(c);
    c->lhlo = 1;
    reply(c, "250-%s", c->p->hostname);
    reply_line(c, "250-PIPELINING");
    reply_line(c, "250-ENHANCEDSTATUSCODES");
    reply_line(c, "250-8BITMIME");
    reply(c, "250 SIZE %zu", c->p->max_size);
}

/* One command.  0 to go on, 1 after QUIT. */
static int command(struct conn *c, char *line)
{
    char *args = line + strcspn(line, " ");

    if (*args != '\0')
        *args++ = '\0';
    while (*args == ' ')
        args++;
    for (size_t n = strlen(args); n > 0 && args[n - 1] == ' '; n--)
        args[n - 1] = '\0';

    if (strcasecmp(line, "LHLO") == 0)
        cmd_lhlo(c, args);
    else if (strcasecmp(line, "MAIL") == 0)
        cmd_mail(c, args);
    else if (strcasecmp(line, "RCPT") == 0)
        cmd_rcpt(c, args);
    else if (strcasecmp(line, "DATA") == 0)
        cmd_data(c, args);
    else if (strcasecmp(line, "RSET") == 0) {
        tx_reset(c);
        reply_line(c, "250 2.0.0 OK");
    } else if (strcasecmp(line, "NOOP") == 0)
        reply_line(c, "250 2.0.0 OK");
    else if (strcasecmp(line, "QUIT") == 0) {
        reply(c, "221 2.0.0 %s closing connection", c->p->hostname);
        return 1;
    } else if (strcasecmp(line, "VRFY") == 0)
        reply_line(c, "252 2.5.2 send some mail, it will be tried");
    else if (strcasecmp(line, "HELO") == 0 || strcasecmp(line, "EHLO") == 0)
        refuse(c, "500 5.5.1 this is LMTP: say LHLO");
    else
        refuse(c, "500 5.5.2 command not recognized");
    return 0;
}

int pec_lmtp_session(int fd, const struct pec_lmtp_proto *p)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    char line[PEC_LMTP_LINE_MAX + 1];
    int quit = 0;

    c->fd = fd;
    c->p = p;
    c->timeout = p->timeout > 0 ? p->timeout : PEC_LMTP_TIMEOUT;
    reply(c, "220 %s LMTP pecmilter ready", p->hostname);
    while (!quit && !c->dead) {
        int rc = read_command(c, line);
        if (rc == 0)
            break;
        if (rc < 0)
            refuse(c, "500 5.5.2 line too long");
        else
            quit = command(c, line);
        if (c->errors > PEC_LMTP_MAX_ERRORS) {
            say(c, LOG_INFO, "too many bad commands; closing");
            reply_line(c, "421 4.7.0 too many errors, closing connection");
            break;
        }
    }
    flush_out(c);
    tx_reset(c);
    free(c);
    return quit ? 0 : -1;
}
