/*
 * lmtpd - accept loop, session threads, and a stop that waits for them.
 *
 * The accepting thread polls the listening socket and a pipe; stopping
 * writes to the pipe.  Sessions are tracked in slots under one mutex: a
 * session frees its slot before closing its descriptor, and the stop shuts
 * down the reading side of the descriptors still in slots under the same
 * mutex, so it can never touch a descriptor number already reused.
 */
#include "provider/lmtpd.h"
#include "util/sock.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#define SPOOL_MEM (1024 * 1024)

struct pec_lmtpd {
    int fd;
    char *unix_path; /* to remove at stop */
    char hostname[256];
    struct pec_lmtpd_hooks hooks;
    int wake[2]; /* the stop's pipe */
    pthread_t acceptor;
    int started;

    pthread_mutex_t lock;
    pthread_cond_t idle;
    int slot_fd[PEC_LMTPD_MAX_CONN]; /* -1: free */
    int active;
    unsigned long nconn;
};

struct session {
    struct pec_lmtpd *d;
    int slot;
    int fd;
    unsigned long conn;
};

static void say(const struct pec_lmtpd *d, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const struct pec_lmtpd *d, int prio, const char *fmt, ...)
{
    char text[600];
    va_list ap;

    if (d->hooks.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    d->hooks.log(prio, NULL, text);
}

struct pec_lmtpd *pec_lmtpd_listen(const char *spec, char *err, size_t errlen)
{
    struct pec_lmtpd *d;
    const char *path = pec_sock_unix_path(spec);
    int fd = pec_sock_listen(spec, 128, err, errlen);

    if (fd < 0)
        return NULL;
    d = xcalloc(1, sizeof(*d));
    d->fd = fd;
    d->unix_path = path ? xstrdup(path) : NULL;
    d->wake[0] = d->wake[1] = -1;
    if (gethostname(d->hostname, sizeof(d->hostname) - 1) != 0 || d->hostname[0] == '\0')
        snprintf(d->hostname, sizeof(d->hostname), "localhost");
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->idle, NULL);
    for (int i = 0; i < PEC_LMTPD_MAX_CONN; i++)
        d->slot_fd[i] = -1;
    return d;
}

static void deliver_adapter(void *arg, const struct pec_lmtp_msg *m, struct pec_lmtp_reply *res)
{
    pec_dp_deliver(arg, m, res);
}

static void *session_main(void *arg)
{
    struct session *s = arg;
    struct pec_lmtpd *d = s->d;
    struct pec_dp_env env = {0};
    void *token = d->hooks.acquire(d->hooks.arg, &env);

    if (token == NULL) {
        static const char busy[] = "421 4.3.0 delivery point not available, try again later\r\n";
        if (send(s->fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL) < 0)
            say(d, LOG_INFO, "lmtp%lu: client gone before the greeting", s->conn);
    } else {
        env.hostname = d->hostname;
        struct pec_lmtp_proto p = {
            .hostname = d->hostname,
            .timeout = d->hooks.timeout,
            .max_size = (size_t)env.cfg->size_limit * 2,
            .spool_dir = env.cfg->spool_dir,
            .spool_mem = SPOOL_MEM,
            .deliver = deliver_adapter,
            .arg = &env,
            .log = d->hooks.log,
            .conn = s->conn,
        };
        pec_lmtp_session(s->fd, &p);
        d->hooks.release(d->hooks.arg, token);
    }
    pthread_mutex_lock(&d->lock);
    d->slot_fd[s->slot] = -1;
    d->active--;
    pthread_cond_broadcast(&d->idle);
    pthread_mutex_unlock(&d->lock);
    close(s->fd);
    free(s);
    return NULL;
}

/* Hand FD to a new session thread, or refuse it when every slot is taken. */
static void dispatch(struct pec_lmtpd *d, int fd)
{
    static const char full[] = "421 4.3.2 too many connections, try again later\r\n";
    struct session *s = xcalloc(1, sizeof(*s));
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    s->d = d;
    s->fd = fd;
    s->slot = -1;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < PEC_LMTPD_MAX_CONN && s->slot < 0; i++)
        if (d->slot_fd[i] < 0)
            s->slot = i;
    if (s->slot >= 0) {
        d->slot_fd[s->slot] = fd;
        d->active++;
        s->conn = ++d->nconn;
    }
    pthread_mutex_unlock(&d->lock);
    if (s->slot < 0) {
        say(d, LOG_WARNING, "%d LMTP sessions already running: connection refused",
            PEC_LMTPD_MAX_CONN);
        if (send(fd, full, sizeof(full) - 1, MSG_NOSIGNAL) < 0)
            say(d, LOG_INFO, "client gone before the refusal");
        close(fd);
        free(s);
        return;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, session_main, s);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        say(d, LOG_ERR, "cannot start an LMTP session thread: %s", strerror(rc));
        pthread_mutex_lock(&d->lock);
        d->slot_fd[s->slot] = -1;
        d->active--;
        pthread_cond_broadcast(&d->idle);
        pthread_mutex_unlock(&d->lock);
        if (send(fd, full, sizeof(full) - 1, MSG_NOSIGNAL) < 0)
            say(d, LOG_INFO, "client gone before the refusal");
        close(fd);
        free(s);
    }
}

static void *acceptor_main(void *arg)
{
    struct pec_lmtpd *d = arg;
    struct pollfd p[2] = {{.fd = d->fd, .events = POLLIN}, {.fd = d->wake[0], .events = POLLIN}};

    for (;;) {
        int fd;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            say(d, LOG_ERR, "LMTP listener: poll: %s", strerror(errno));
            break;
        }
        if (p[1].revents)
            break;
        if (p[0].revents & (POLLERR | POLLNVAL)) {
            say(d, LOG_ERR, "LMTP listener: the listening socket failed; no more connections");
            break;
        }
        if (!(p[0].revents & POLLIN))
            continue;
        fd = accept4(d->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                say(d, LOG_ERR, "LMTP listener: accept: %s", strerror(errno));
                usleep(100 * 1000); /* out of descriptors: do not spin */
            }
            continue;
        }
        dispatch(d, fd);
    }
    return NULL;
}

int pec_lmtpd_start(struct pec_lmtpd *d, const struct pec_lmtpd_hooks *hooks, char *err,
                    size_t errlen)
{
    int rc;

    d->hooks = *hooks;
    if (pipe2(d->wake, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "LMTP listener: pipe: %s", strerror(errno));
        return -1;
    }
    if ((rc = pthread_create(&d->acceptor, NULL, acceptor_main, d)) != 0) {
        snprintf(err, errlen, "LMTP listener: cannot start its thread: %s", strerror(rc));
        return -1;
    }
    d->started = 1;
    return 0;
}

void pec_lmtpd_stop(struct pec_lmtpd *d)
{
    if (d == NULL)
        return;
    if (d->started) {
        if (write(d->wake[1], "x", 1) != 1)
            say(d, LOG_ERR, "LMTP listener: cannot wake the accepting thread: %s", strerror(errno));
        pthread_join(d->acceptor, NULL);
    }
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < PEC_LMTPD_MAX_CONN; i++)
        if (d->slot_fd[i] >= 0)
            shutdown(d->slot_fd[i], SHUT_RD);
    while (d->active > 0)
        pthread_cond_wait(&d->idle, &d->lock);
    pthread_mutex_unlock(&d->lock);
    close(d->fd);
    if (d->unix_path != NULL && unlink(d->unix_path) != 0 && errno != ENOENT)
        say(d, LOG_WARNING, "cannot remove %s: %s", d->unix_path, strerror(errno));
    for (int i = 0; i < 2; i++)
        if (d->wake[i] >= 0)
            close(d->wake[i]);
    pthread_cond_destroy(&d->idle);
    pthread_mutex_destroy(&d->lock);
    free(d->unix_path);
    free(d);
}
