/*
 * fuzz_clamd - clamd's replies as the client reads them (util/clamd.h): the answer to
 * INSTREAM and to VERSION, over a real unix socket, cut into the pieces the input says.
 *
 * The harness is clamd: a thread listens on a socket in a temporary directory, takes the
 * client's whole request (zINSTREAM and its chunks up to the zero length, or zVERSION),
 * then writes the input's bytes back in writes of the sizes its first byte chooses, and
 * closes.  The first bit of the first byte picks the command.
 *
 * Promises held: a scan always ends with a verdict and a one-line printable reason; it is
 * clean only when clamd's first line says exactly "OK" (after "stream: " or not); a
 * finding names what clamd named before " FOUND", and the "Heuristics.Limits.Exceeded"
 * pseudo-findings are failures, not findings.  A VERSION answer is accepted only when it
 * begins "ClamAV ", and its fields are NUL-terminated and printable.
 */
#include "harness.h"

#include "util/clamd.h"
#include "util/spool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char sockpath[108];
static int listener = -1;

/* what the clamd thread answers, and how it cuts it */
static const uint8_t *reply;
static size_t replylen, piece;
static int version;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int turn; /* 1: the thread has a reply to serve; 0: it served it */

static const char body[] = "From: a@example.org\r\n\r\nhello\r\n";

/* Read the client's request to its end: "zVERSION\0", or "zINSTREAM\0" and chunks. */
static void take_request(int fd)
{
    size_t want = version ? 9 : 10 + 4 + (sizeof(body) - 1) + 4, got = 0;
    char buf[256];

    while (got < want) {
        ssize_t r = read(fd, buf, sizeof(buf));

        if (r <= 0)
            return;
        got += (size_t)r;
    }
}

static void *clamd(void *arg)
{
    (void)arg;
    for (;;) {
        int fd;

        pthread_mutex_lock(&lock);
        while (turn == 0)
            pthread_cond_wait(&go, &lock);
        pthread_mutex_unlock(&lock);
        fd = accept(listener, NULL, NULL);
        if (fd >= 0) {
            take_request(fd);
            for (size_t off = 0; off < replylen;) {
                size_t n = replylen - off < piece ? replylen - off : piece;
                ssize_t w = send(fd, reply + off, n, MSG_NOSIGNAL);

                if (w <= 0)
                    break;
                off += (size_t)w;
            }
            close(fd);
        }
        pthread_mutex_lock(&lock);
        turn = 0;
        pthread_cond_signal(&done);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* The first line of the reply as the client sees it: up to NUL, CR or LF, at most 511. */
static void first_line(char *out, size_t len)
{
    size_t n = 0;

    while (n < replylen && n + 1 < len && reply[n] != '\0' && reply[n] != '\r' && reply[n] != '\n')
        n++;
    for (size_t i = 0; i < n; i++)
        out[i] = reply[i] < 0x20 || reply[i] >= 0x7f ? '?' : (char)reply[i];
    out[n] = '\0';
}

static void check_scan(const struct pec_clamd_result *r)
{
    char line[512];
    const char *a;
    size_t n;

    first_line(line, sizeof(line));
    a = strncmp(line, "stream: ", 8) == 0 ? line + 8 : line;
    n = strlen(a);
    FUZZ_CHECK(memchr(r->what, '\0', sizeof(r->what)) != NULL && printable(r->what));
    FUZZ_CHECK((r->verdict == PEC_CLAMD_CLEAN) == (strcmp(a, "OK") == 0));
    if (r->verdict == PEC_CLAMD_FOUND) {
        FUZZ_CHECK(n > 6 && strcmp(a + n - 6, " FOUND") == 0);
        FUZZ_CHECK(strncmp(a, "Heuristics.Limits.Exceeded", 26) != 0);
        FUZZ_CHECK(strncmp(r->what, a, strlen(r->what)) == 0);
    }
    FUZZ_CHECK(r->verdict == PEC_CLAMD_CLEAN || r->verdict == PEC_CLAMD_FOUND ||
               r->verdict == PEC_CLAMD_ERROR);
}

static void check_version(int ret, const struct pec_clamd_version *v, const char *err)
{
    char line[256];

    first_line(line, sizeof(line));
    if (ret < 0) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }
    FUZZ_CHECK(strncmp(line, "ClamAV ", 7) == 0);
    FUZZ_CHECK(strncmp(v->engine, "ClamAV ", 7) == 0);
    FUZZ_CHECK(printable(v->engine) && printable(v->database) && printable(v->signed_at));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char dir[] = "/tmp/fuzz_clamd.XXXXXX";
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    pthread_t t;

    (void)argc;
    (void)argv;
    fuzz_lib_init();
    if (mkdtemp(dir) == NULL)
        fuzz_fail("mkdtemp");
    snprintf(sockpath, sizeof(sockpath), "%s/clamd.sock", dir);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sockpath);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        listen(listener, 4) < 0)
        fuzz_fail("cannot listen on %s", sockpath);
    if (pthread_create(&t, NULL, clamd, NULL) != 0)
        fuzz_fail("pthread_create");
    pthread_detach(t);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char spec[120];

    if (size < 1 || size > 4096)
        return 0;
    snprintf(spec, sizeof(spec), "unix:%s", sockpath);
    pthread_mutex_lock(&lock);
    version = data[0] & 1;
    piece = (size_t)(data[0] >> 1) + 1;
    reply = data + 1;
    replylen = size - 1;
    turn = 1;
    pthread_cond_signal(&go);
    pthread_mutex_unlock(&lock);

    if (version) {
        struct pec_clamd_version v;
        char err[512] = "";
        int ret = pec_clamd_version(spec, 5, &v, err, sizeof(err));

        check_version(ret, &v, err);
    } else {
        struct pec_spool *sp = pec_spool_new(NULL, 1 << 16);
        struct pec_clamd_result r;

        pec_spool_write(sp, body, sizeof(body) - 1);
        pec_clamd_scan(spec, 5, sp, &r);
        check_scan(&r);
        pec_spool_free(sp);
    }
    pthread_mutex_lock(&lock);
    while (turn != 0)
        pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    return 0;
}
