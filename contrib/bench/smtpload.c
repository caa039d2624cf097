/*
 * smtpload - SMTP load for contrib/bench.sh: like Postfix's smtp-source (N
 * parallel sessions, one message per session), but it can say XCLIENT
 * LOGIN= before MAIL FROM, which the access role needs in place of a SASL
 * login and smtp-source cannot do, and it records when each message got its
 * final reply, for the latency figures.
 *
 *   smtpload -H IP -P PORT -s SESSIONS -m MESSAGES -l BYTES -f FROM -t TO
 *            [-x LOGIN] [-S SUBJECT-PREFIX] [-o RESULTS] [-w MS]
 *
 * Message i (0-based) has Subject "SUBJECT-PREFIX i" (the accettazione
 * repeats it, so a result can be matched with its receipt) and is padded
 * with text lines to BYTES in all.  RESULTS gets one line per message:
 * "i code end_ns" where end_ns is CLOCK_REALTIME at the final reply (the
 * clock of a Maildir file's mtime).  -w: each session waits MS milliseconds
 * after each message (a light, paced load).  Exit 0 when every message got 250.
 *
 * Not part of pecmilter: built by contrib/bench.sh with cc -O2 -pthread.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1", *from, *to, *login, *prefix = "bench";
static int port, sessions = 20, messages = 100, wait_ms;
static long size = 4096;
static char *body;      /* shared padding, CRLF lines, ends in CRLF */
static size_t body_len; /* filled per message up to its own length */
static atomic_int next_msg;
static int *codes;
static long long *ends;

struct conn {
    int fd;
    char buf[4096];
    size_t have;
};

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The code of the next (possibly multi-line) reply, -1 on error. */
static int reply(struct conn *c)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl != NULL) {
            size_t len = (size_t)(nl - c->buf) + 1;
            int code = atoi(c->buf);
            int last = len < 4 || c->buf[3] != '-';
            memmove(c->buf, nl + 1, c->have - len);
            c->have -= len;
            if (last)
                return code;
            continue;
        }
        if (c->have == sizeof c->buf)
            return -1;
        ssize_t r = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c->have += (size_t)r;
    }
}

static int cmd(struct conn *c, const char *line)
{
    if (send_all(c->fd, line, strlen(line)) < 0)
        return -1;
    return reply(c);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One session: connect, one message, QUIT.  The final reply's code. */
static int one(int i)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct conn c = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    char line[1024], head[2048];
    int code = -1, one_ = 1;

    inet_pton(AF_INET, host, &sa.sin_addr);
    if (c.fd < 0)
        return -1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
    if (connect(c.fd, (struct sockaddr *)&sa, sizeof sa) < 0 || reply(&c) != 220)
        goto out;
    if (cmd(&c, "EHLO load.bench.test\r\n") != 250)
        goto out;
    if (login != NULL) {
        snprintf(line, sizeof line, "XCLIENT LOGIN=%s\r\n", login);
        if (cmd(&c, line) != 220 || cmd(&c, "EHLO load.bench.test\r\n") != 250)
            goto out;
    }
    snprintf(line, sizeof line, "MAIL FROM:<%s>\r\n", from);
    if ((code = cmd(&c, line)) != 250)
        goto out;
    snprintf(line, sizeof line, "RCPT TO:<%s>\r\n", to);
    if ((code = cmd(&c, line)) != 250)
        goto out;
    if ((code = cmd(&c, "DATA\r\n")) != 354)
        goto out;
    time_t t = time(NULL);
    struct tm tm;
    char date[64];
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    int hl = snprintf(head, sizeof head,
                      "From: <%s>\r\nTo: <%s>\r\nSubject: %s %d\r\nDate: %s\r\n"
                      "Message-ID: <%s.%d.%lld@load.bench.test>\r\nMIME-Version: 1.0\r\n"
                      "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                      from, to, prefix, i, date, prefix, i, (long long)now_ns());
    size_t want = size > hl + 2 ? (size_t)size - (size_t)hl : 2;
    if (want > body_len)
        want = body_len;
    /* end the padding on a line boundary */
    while (want > 2 && !(body[want - 2] == '\r' && body[want - 1] == '\n'))
        want--;
    if (send_all(c.fd, head, (size_t)hl) < 0 || send_all(c.fd, body, want) < 0 ||
        send_all(c.fd, ".\r\n", 3) < 0) {
        code = -1;
        goto out;
    }
    code = reply(&c);
    ends[i] = now_ns();
    cmd(&c, "QUIT\r\n");
out:
    close(c.fd);
    return code;
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        int i = atomic_fetch_add(&next_msg, 1);
        if (i >= messages)
            return NULL;
        codes[i] = one(i);
        if (wait_ms > 0) {
            struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    int o;

    while ((o = getopt(argc, argv, "H:P:s:m:l:f:t:x:S:o:w:")) != -1) {
        switch (o) {
        case 'H':
            host = optarg;
            break;
        case 'P':
            port = atoi(optarg);
            break;
        case 's':
            sessions = atoi(optarg);
            break;
        case 'm':
            messages = atoi(optarg);
            break;
        case 'l':
            size = atol(optarg);
            break;
        case 'f':
            from = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'x':
            login = optarg;
            break;
        case 'S':
            prefix = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'w':
            wait_ms = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: smtpload -H IP -P PORT -s N -m N -l BYTES -f FROM -t TO "
                            "[-x LOGIN] [-S PREFIX] [-o FILE] [-w MS]\n");
            return 64;
        }
    }
    if (port <= 0 || from == NULL || to == NULL || sessions <= 0 || messages < 0) {
        fprintf(stderr, "smtpload: -P, -f and -t are needed\n");
        return 64;
    }
    /* padding: 76 letters and CRLF per line */
    body_len = (size_t)size + 80;
    body = malloc(body_len);
    codes = calloc((size_t)messages + 1, sizeof *codes);
    ends = calloc((size_t)messages + 1, sizeof *ends);
    if (body == NULL || codes == NULL || ends == NULL)
        return 71;
    for (size_t k = 0; k < body_len; k++) {
        size_t col = k % 78;
        body[k] = col == 76 ? '\r' : col == 77 ? '\n' : (char)('a' + (k / 78 + col) % 26);
    }

    pthread_t *th = calloc((size_t)sessions, sizeof *th);
    for (int k = 0; k < sessions; k++)
        pthread_create(&th[k], NULL, worker, NULL);
    for (int k = 0; k < sessions; k++)
        pthread_join(th[k], NULL);

    FILE *f = out ? fopen(out, "w") : NULL;
    int bad = 0;
    for (int i = 0; i < messages; i++) {
        if (codes[i] != 250)
            bad++;
        if (f)
            fprintf(f, "%d %d %lld\n", i, codes[i], ends[i]);
    }
    if (f)
        fclose(f);
    if (bad)
        fprintf(stderr, "smtpload: %d of %d messages not accepted\n", bad, messages);
    return bad ? 1 : 0;
}
