/*
 * test_lmtp - the LMTP server protocol against a scripted client, with a
 * fake delivery that answers by the recipient's local part.
 *
 * What RFC 2033 and lmtp.h promise: LHLO and its extensions, commands out
 * of order, parameters, pipelined commands answered in order, one reply per
 * recipient after DATA and in RCPT order, dot-unstuffing, bare LF made
 * CRLF, 8-bit bytes and text lines of any length kept, the size limit,
 * overlong command lines, the error limit, the timeout, a client that
 * goes away mid-DATA; and the queue id the delivery point reads from
 * Received.
 */
#include "check.h"
#include "provider/deliver.h"
#include "util/lmtp.h"
#include "util/xalloc.h"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

/* ---- the fake delivery ---- */

struct seen {
    int calls;
    char *sender;
    char *rcpt[4];
    size_t nrcpt;
    unsigned char *data;
    size_t len;
    int eight_bit;
    char session[64];
};

static struct seen seen;

static void seen_reset(void)
{
    free(seen.sender);
    for (size_t i = 0; i < seen.nrcpt && i < 4; i++)
        free(seen.rcpt[i]);
    free(seen.data);
    memset(&seen, 0, sizeof(seen));
}

/* "perm..." 550, "temp..." 451, "bad..." a malformed reply, anything else 250 */
static void fake_deliver(void *arg, const struct pec_lmtp_msg *m, struct pec_lmtp_reply *res)
{
    seen_reset();
    seen.calls = 1;
    seen.sender = xstrdup(m->sender);
    seen.nrcpt = m->nrcpt;
    for (size_t i = 0; i < m->nrcpt && i < 4; i++)
        seen.rcpt[i] = xstrdup(m->rcpt[i]);
    seen.len = pec_spool_size(m->data);
    seen.data = xmalloc(seen.len + 1);
    CHECK(pec_spool_pread(m->data, 0, seen.data, seen.len) == (ssize_t)seen.len);
    seen.eight_bit = m->eight_bit;
    snprintf(seen.session, sizeof(seen.session), "%s", m->session);
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (strncmp(m->rcpt[i], "perm", 4) == 0)
            pec_lmtp_reply_set(&res[i], 550, "5.1.1", "<%s> no\r\nsuch user", m->rcpt[i]);
        else if (strncmp(m->rcpt[i], "temp", 4) == 0)
            pec_lmtp_reply_set(&res[i], 451, "4.3.0", "<%s> later", m->rcpt[i]);
        else if (strncmp(m->rcpt[i], "bad", 3) != 0)
            pec_lmtp_reply_set(&res[i], 250, "2.0.0", "<%s> delivered", m->rcpt[i]);
    }
}

static void quiet(int prio, const char *qid, const char *text)
{
}

/* ---- a session in a thread ---- */

struct run {
    int sv[2];
    pthread_t tid;
    struct pec_lmtp_proto p;
    int rc;
};

static void *session_thread(void *arg)
{
    struct run *r = arg;
    r->rc = pec_lmtp_session(r->sv[1], &r->p);
    shutdown(r->sv[1], SHUT_RDWR);
    return NULL;
}

static void start(struct run *r, int timeout, size_t max_size)
{
    memset(r, 0, sizeof(*r));
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, r->sv) == 0);
    r->p = (struct pec_lmtp_proto){.hostname = "lmtp.test",
                                   .timeout = timeout,
                                   .max_size = max_size,
                                   .spool_mem = 4096,
                                   .deliver = fake_deliver,
                                   .log = quiet,
                                   .conn = 7};
    CHECK(pthread_create(&r->tid, NULL, session_thread, r) == 0);
}

static int finish(struct run *r)
{
    pthread_join(r->tid, NULL);
    close(r->sv[0]);
    close(r->sv[1]);
    return r->rc;
}

static void put(struct run *r, const char *s)
{
    size_t n = strlen(s);
    CHECK(send(r->sv[0], s, n, MSG_NOSIGNAL) == (ssize_t)n);
}

static void put_bytes(struct run *r, const void *s, size_t n)
{
    const char *p = s;
    while (n > 0) {
        ssize_t w = send(r->sv[0], p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            CHECK(w > 0);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* One line from the server, CRLF removed; "" at the end of input or after 10 s. */
static void get_line(struct run *r, char *line, size_t cap)
{
    size_t n = 0;

    for (;;) {
        struct pollfd p = {.fd = r->sv[0], .events = POLLIN};
        char ch;
        if (poll(&p, 1, 10000) <= 0 || read(r->sv[0], &ch, 1) != 1)
            break;
        if (ch == '\n')
            break;
        if (ch != '\r' && n + 1 < cap)
            line[n++] = ch;
    }
    line[n] = '\0';
}

/* A whole reply; its last line in LAST, every line joined with '|' in ALL. */
static void get_reply(struct run *r, char *last, char *all, size_t cap)
{
    char line[1024];

    all[0] = '\0';
    do {
        get_line(r, line, sizeof(line));
        if (all[0] != '\0')
            strncat(all, "|", cap - strlen(all) - 1);
        strncat(all, line, cap - strlen(all) - 1);
    } while (strlen(line) > 3 && line[3] == '-');
    snprintf(last, cap, "%s", line);
}

/* The next reply must start with PREFIX. */
static void expect(struct run *r, const char *prefix, int line)
{
    char last[1024], all[4096];

    get_reply(r, last, all, sizeof(last));
    if (strncmp(all, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "test_lmtp.c:%d: expected \"%s...\", got \"%s\"\n", line, prefix, all);
        check_failures++;
    }
    check_count++;
}
#define EXPECT(r, prefix) expect(r, prefix, __LINE__)

/* ---- the tests ---- */

static void test_greeting_and_lhlo(void)
{
    struct run r;
    char last[1024], all[4096];

    start(&r, 10, 1000000);
    EXPECT(&r, "220 lmtp.test ");
    put(&r, "HELO x\r\n");
    EXPECT(&r, "500 5.5.1 ");
    put(&r, "EHLO x\r\n");
    EXPECT(&r, "500 5.5.1 ");
    put(&r, "MAIL FROM:<a@x>\r\n");
    EXPECT(&r, "503 5.5.1 ");
    put(&r, "LHLO\r\n");
    EXPECT(&r, "501 ");
    put(&r, "lhlo client.test\r\n");
    get_reply(&r, last, all, sizeof(all));
    CHECK_STR(all, "250-lmtp.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250-8BITMIME|"
                   "250 SIZE 1000000");
    put(&r, "NOOP\r\n");
    EXPECT(&r, "250 2.0.0 ");
    put(&r, "VRFY x\r\n");
    EXPECT(&r, "252 2.5.2 ");
    put(&r, "XYZZY\r\n");
    EXPECT(&r, "500 5.5.2 ");
    put(&r, "QUIT\r\n");
    EXPECT(&r, "221 2.0.0 ");
    CHECK(finish(&r) == 0);
}

static void test_commands_out_of_order_and_parameters(void)
{
    struct run r;

    start(&r, 10, 1000);
    EXPECT(&r, "220 ");
    put(&r, "LHLO c\r\n");
    EXPECT(&r, "250-");
    put(&r, "RCPT TO:<b@y>\r\n");
    EXPECT(&r, "503 5.5.1 ");
    put(&r, "DATA\r\n");
    EXPECT(&r, "503 5.5.1 ");
    put(&r, "MAIL FROM:<a@x> SIZE=1001\r\n");
    EXPECT(&r, "552 5.3.4 ");
    put(&r, "MAIL FROM:<a@x> SIZE=12x\r\n");
    EXPECT(&r, "501 5.5.4 ");
    put(&r, "MAIL FROM:<a@x> BODY=BINARYMIME\r\n");
    EXPECT(&r, "501 5.5.4 ");
    put(&r, "MAIL FROM:<a@x> AUTH=<>\r\n");
    EXPECT(&r, "555 5.5.4 ");
    put(&r, "MAIL FROM:a@x\r\n");
    EXPECT(&r, "501 5.1.7 ");
    put(&r, "MAIL FROM:<a@x\r\n");
    EXPECT(&r, "501 5.1.7 ");
    put(&r, "MAIL FROM: <@relay.x:a@x> SIZE=1000 BODY=7BIT\r\n");
    EXPECT(&r, "250 2.1.0 sender <a@x> ");
    put(&r, "MAIL FROM:<a@x>\r\n");
    EXPECT(&r, "503 5.5.1 ");
    put(&r, "DATA\r\n");
    EXPECT(&r, "503 5.5.1 no valid recipients");
    put(&r, "RCPT TO:<nodomain>\r\n");
    EXPECT(&r, "553 5.1.3 ");
    put(&r, "RCPT TO:<b@y> NOTIFY=NEVER\r\n");
    EXPECT(&r, "555 5.5.4 ");
    put(&r, "RCPT TO:<\"odd \\\" name\"@y>\r\n");
    EXPECT(&r, "250 2.1.5 ");
    put(&r, "RSET\r\n");
    EXPECT(&r, "250 2.0.0 ");
    put(&r, "RCPT TO:<b@y>\r\n");
    EXPECT(&r, "503 5.5.1 ");
    put(&r, "MAIL FROM:<>\r\n");
    EXPECT(&r, "250 2.1.0 ");
    put(&r, "DATA extra\r\n");
    EXPECT(&r, "501 5.5.4 ");
    put(&r, "QUIT\r\n");
    EXPECT(&r, "221 ");
    CHECK(finish(&r) == 0);
}

static void test_pipelined_transaction(void)
{
    static const char body[] = "Subject: dots\r\n"
                               "\r\n"
                               "..leading dot\n"
                               ". \r\n"
                               "..\r\n"
                               "caf\xc3\xa8 8-bit\r\n"
                               "no final line end";
    static const char want[] = "Subject: dots\r\n"
                               "\r\n"
                               ".leading dot\r\n"
                               " \r\n"
                               ".\r\n"
                               "caf\xc3\xa8 8-bit\r\n"
                               "no final line end\r\n";
    struct run r;

    seen_reset();
    start(&r, 10, 1000000);
    /* everything up to DATA in one write, as a PIPELINING client sends it */
    put(&r, "LHLO c\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\nRCPT TO:<b@y>\r\nRCPT TO:<perm@y>\r\n"
            "RCPT TO:<temp@y>\r\nRCPT TO:<bad@y>\r\nDATA\r\n");
    EXPECT(&r, "220 ");
    EXPECT(&r, "250-lmtp.test");
    EXPECT(&r, "250 2.1.0 ");
    EXPECT(&r, "250 2.1.5 recipient <b@y>");
    EXPECT(&r, "250 2.1.5 recipient <perm@y>");
    EXPECT(&r, "250 2.1.5 recipient <temp@y>");
    EXPECT(&r, "250 2.1.5 recipient <bad@y>");
    EXPECT(&r, "354 ");
    put(&r, body);
    put(&r, "\r\n.\r\n");
    /* one reply per recipient, in RCPT order; control characters never reach the wire */
    EXPECT(&r, "250 2.0.0 <b@y> delivered");
    EXPECT(&r, "550 5.1.1 <perm@y> no  such user");
    EXPECT(&r, "451 4.3.0 <temp@y> later");
    EXPECT(&r, "451 4.3.0 <bad@y> internal error");
    CHECK(seen.calls == 1);
    CHECK_STR(seen.sender, "a@x");
    CHECK(seen.nrcpt == 4);
    CHECK_STR(seen.rcpt[1], "perm@y");
    CHECK(seen.eight_bit == 1);
    CHECK_STR(seen.session, "lmtp7.1");
    CHECK(seen.len == strlen(want) && memcmp(seen.data, want, seen.len) == 0);

    /* a second transaction on the same connection, ending with a bare-LF dot */
    put(&r, "MAIL FROM:<>\r\nRCPT TO:<c@y>\r\nDATA\r\n");
    EXPECT(&r, "250 2.1.0 ");
    EXPECT(&r, "250 2.1.5 ");
    EXPECT(&r, "354 ");
    put(&r, "x\n.\n");
    EXPECT(&r, "250 2.0.0 <c@y>");
    CHECK_STR(seen.sender, "");
    CHECK(seen.eight_bit == 0);
    CHECK_STR(seen.session, "lmtp7.2");
    CHECK(seen.len == 3 && memcmp(seen.data, "x\r\n", 3) == 0);
    put(&r, "QUIT\r\n");
    EXPECT(&r, "221 ");
    CHECK(finish(&r) == 0);
}

/* Lines far longer than any buffer, a message that moves to a file, byte for byte. */
static void test_long_lines(void)
{
    size_t n = 300000;
    char *big = xmalloc(n + 16);
    struct run r;

    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[0] = '.';
    big[65535] = '.'; /* not at a line start: kept */
    memcpy(big + n, "\r\n.\r\n", 6);
    seen_reset();
    start(&r, 10, 1000000);
    put(&r, "LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    EXPECT(&r, "220 ");
    EXPECT(&r, "250-");
    EXPECT(&r, "250 ");
    EXPECT(&r, "250 ");
    EXPECT(&r, "354 ");
    put_bytes(&r, big, n + 5);
    EXPECT(&r, "250 2.0.0 <b@y>");
    CHECK(seen.len == n + 1);
    CHECK(seen.len == n + 1 && memcmp(seen.data, big + 1, n - 1) == 0);
    CHECK(seen.len == n + 1 && memcmp(seen.data + n - 1, "\r\n", 2) == 0);

    /* a command line over the limit is refused whole, and the session goes on */
    memset(big, 'N', 3000);
    memcpy(big, "NOOP ", 5);
    memcpy(big + 3000, "\r\n", 3);
    put(&r, big);
    EXPECT(&r, "500 5.5.2 line too long");
    put(&r, "NOOP\r\n");
    EXPECT(&r, "250 ");
    put(&r, "QUIT\r\n");
    EXPECT(&r, "221 ");
    CHECK(finish(&r) == 0);
    free(big);
}

static void test_size_limit(void)
{
    char body[400];
    struct run r;

    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    seen_reset();
    start(&r, 10, 100);
    put(&r, "LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n");
    EXPECT(&r, "220 ");
    EXPECT(&r, "250-");
    EXPECT(&r, "250 ");
    EXPECT(&r, "250 ");
    EXPECT(&r, "250 ");
    EXPECT(&r, "354 ");
    put(&r, body);
    put(&r, "\r\n.\r\n");
    EXPECT(&r, "552 5.3.4 <b@y>");
    EXPECT(&r, "552 5.3.4 <c@y>");
    CHECK(seen.calls == 0);
    put(&r, "QUIT\r\n");
    EXPECT(&r, "221 ");
    CHECK(finish(&r) == 0);
}

static void test_too_many_recipients(void)
{
    struct run r;
    char cmd[64];

    start(&r, 10, 1000);
    EXPECT(&r, "220 ");
    put(&r, "LHLO c\r\nMAIL FROM:<a@x>\r\n");
    EXPECT(&r, "250-");
    EXPECT(&r, "250 ");
    for (int i = 0; i < PEC_LMTP_MAX_RCPT; i++) {
        snprintf(cmd, sizeof(cmd), "RCPT TO:<r%d@y>\r\n", i);
        put(&r, cmd);
        EXPECT(&r, "250 2.1.5 ");
    }
    put(&r, "RCPT TO:<one.more@y>\r\n");
    EXPECT(&r, "452 4.5.3 ");
    put(&r, "QUIT\r\n");
    EXPECT(&r, "221 ");
    CHECK(finish(&r) == 0);
}

static void test_error_limit_timeout_and_eof(void)
{
    struct run r;

    start(&r, 10, 1000);
    EXPECT(&r, "220 ");
    for (int i = 0; i <= PEC_LMTP_MAX_ERRORS; i++) {
        put(&r, "BOGUS\r\n");
        EXPECT(&r, "500 ");
    }
    EXPECT(&r, "421 4.7.0 ");
    CHECK(finish(&r) == -1);

    start(&r, 1, 1000);
    EXPECT(&r, "220 ");
    EXPECT(&r, "421 4.4.2 "); /* a second of silence */
    CHECK(finish(&r) == -1);

    seen_reset();
    start(&r, 10, 1000);
    put(&r, "LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\npart of a message\r\n");
    shutdown(r.sv[0], SHUT_WR);
    CHECK(finish(&r) == -1);
    CHECK(seen.calls == 0);
}

static void test_queue_id(void)
{
    static const char head[] = "Received: from mx.pec-a.test (mx.pec-a.test [127.0.0.11])\r\n"
                               "\tby mx.pec-b.test (Postfix) with ESMTP id 4TwQ7m0Xyz;\r\n"
                               "\tFri, 15 Mar 2024 11:20:30 +0100 (CET)\r\n"
                               "Received: from x by y with ESMTPSA id OLDER;\r\n";
    char qid[64];

    pec_dp_queue_id((const unsigned char *)head, strlen(head), qid, sizeof(qid));
    CHECK_STR(qid, "4TwQ7m0Xyz");
    pec_dp_queue_id((const unsigned char *)"Subject: x\r\n", 12, qid, sizeof(qid));
    CHECK_STR(qid, "");
    pec_dp_queue_id((const unsigned char *)"Received: by h id ;\r\n", 21, qid, sizeof(qid));
    CHECK_STR(qid, "");
}

int main(void)
{
    test_greeting_and_lhlo();
    test_commands_out_of_order_and_parameters();
    test_pipelined_transaction();
    test_long_lines();
    test_size_limit();
    test_too_many_recipients();
    test_error_limit_timeout_and_eof();
    test_queue_id();
    seen_reset();
    return check_exit();
}
