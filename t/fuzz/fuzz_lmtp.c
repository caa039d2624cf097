/*
 * fuzz_lmtp - the LMTP server's command reader and DATA collector (lmtp.h), fed the
 * bytes a client would send, all at once as a pipelining client may: commands, paths
 * and parameters, DATA with dots and bare LFs, lines too long, garbage.
 *
 * The session runs on one end of a socket pair in this thread; a second thread writes
 * the input into the other end, closes its writing side (the client is done) and reads
 * every reply until the session closes.  The delivery is a fake that checks what it is
 * handed.  Promises held: the session ends (on QUIT or end of input), a message
 * delivered is CRLF throughout, at most max_size bytes, with one to PEC_LMTP_MAX_RCPT
 * recipients; every reply line is "NNN" then a space or a hyphen, at most
 * PEC_LMTP_REPLY_MAX bytes, CRLF-terminated.
 */
#include "harness.h"

#include "util/lmtp.h"
#include "util/spool.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SIZE 4096  /* small, so that "too big" is reachable */
#define SPOOL_MEM 1024 /* smaller still, so that spools move to files */

struct client {
    int fd;
    const uint8_t *in;
    size_t inlen;
    char *out;
    size_t outlen, outcap;
};

static char spool_dir[] = "/tmp/fuzz_lmtp.XXXXXX";

static void keep(struct client *cl, const char *buf, size_t n)
{
    if (cl->outlen + n > cl->outcap) {
        cl->outcap = 2 * (cl->outlen + n);
        cl->out = realloc(cl->out, cl->outcap);
        FUZZ_CHECK(cl->out != NULL);
    }
    memcpy(cl->out + cl->outlen, buf, n);
    cl->outlen += n;
}

/* Write the input and read the replies at once, as a pipelining client does. */
static void *client(void *arg)
{
    struct client *cl = arg;
    size_t off = 0;
    int writing = 1;
    char buf[4096];

    for (;;) {
        struct pollfd pfd = {.fd = cl->fd, .events = POLLIN | (writing ? POLLOUT : 0)};
        ssize_t n;

        if (writing && off == cl->inlen) {
            writing = 0;
            if (shutdown(cl->fd, SHUT_WR) != 0 && errno != ENOTCONN)
                fuzz_fail("shutdown: %s", strerror(errno));
            continue;
        }
        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            fuzz_fail("poll: %s", strerror(errno));
        }
        if (pfd.revents & (POLLIN | POLLHUP)) {
            n = read(cl->fd, buf, sizeof(buf));
            if (n == 0 || (n < 0 && errno != EINTR))
                break; /* the session is over */
            if (n > 0)
                keep(cl, buf, (size_t)n);
        } else if (writing && (pfd.revents & (POLLOUT | POLLERR))) {
            n = send(cl->fd, cl->in + off, cl->inlen - off, MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EINTR)
                writing = 0; /* the session hung up early (QUIT, too many errors) */
        }
    }
    return NULL;
}

static void deliver(void *arg, const struct pec_lmtp_msg *m, struct pec_lmtp_reply *res)
{
    size_t size = pec_spool_size(m->data);
    unsigned char *b = malloc(size + 1);

    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(m->nrcpt >= 1 && m->nrcpt <= PEC_LMTP_MAX_RCPT && m->sender != NULL);
    FUZZ_CHECK(size <= 2 * MAX_SIZE); /* bare LFs grow by their CRs */
    FUZZ_CHECK(pec_spool_pread(m->data, 0, b, size) == (ssize_t)size);
    for (size_t i = 0; i < size; i++)
        FUZZ_CHECK(b[i] != '\n' || (i > 0 && b[i - 1] == '\r'));
    for (size_t i = 0; i < m->nrcpt; i++) {
        FUZZ_CHECK(m->rcpt[i] != NULL);
        pec_lmtp_reply_set(&res[i], i % 2 ? 250 : 550, i % 2 ? "2.0.0" : "5.1.1", "<%s> %s",
                           m->rcpt[i], i % 2 ? "delivered" : "unknown");
    }
    free(b);
}

static void check_replies(const char *out, size_t len)
{
    const char *p = out, *end = out + len;

    FUZZ_CHECK(len >= 5 && memcmp(out, "220 ", 4) == 0);
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));

        FUZZ_CHECK(lf != NULL && lf - p >= 5 && lf[-1] == '\r');
        FUZZ_CHECK(lf - p - 1 <= PEC_LMTP_REPLY_MAX);
        FUZZ_CHECK(p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
                   p[2] <= '9' && (p[3] == ' ' || p[3] == '-'));
        p = lf + 1;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (mkdtemp(spool_dir) == NULL) {
        fprintf(stderr, "fuzz_lmtp: mkdtemp: %s\n", strerror(errno));
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pec_lmtp_proto proto = {
        .hostname = "lmtp.fuzz.test",
        .timeout = 5,
        .max_size = MAX_SIZE,
        .spool_dir = spool_dir,
        .spool_mem = SPOOL_MEM,
        .deliver = deliver,
    };
    struct client cl = {.in = data, .inlen = size};
    pthread_t t;
    int sv[2], rc;

    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    cl.fd = sv[1];
    rc = pthread_create(&t, NULL, client, &cl);
    if (rc != 0)
        fuzz_fail("pthread_create: %s", strerror(rc));
    pec_lmtp_session(sv[0], &proto);
    FUZZ_CHECK(close(sv[0]) == 0);
    rc = pthread_join(t, NULL);
    if (rc != 0)
        fuzz_fail("pthread_join: %s", strerror(rc));
    FUZZ_CHECK(close(sv[1]) == 0);
    check_replies(cl.out, cl.outlen);
    free(cl.out);
    return 0;
}
