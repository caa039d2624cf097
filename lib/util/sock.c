/*
 * sock - parse a socket spec, listen on it, connect to it.
 */
#include "util/sock.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct spec {
    const char *path;  /* unix */
    char *host, *port; /* inet */
};

const char *pec_sock_unix_path(const char *spec)
{
    if (strncmp(spec, "unix:", 5) == 0)
        return spec + 5;
    if (strncmp(spec, "local:", 6) == 0)
        return spec + 6;
    if (spec[0] == '/')
        return spec;
    return NULL;
}

static void spec_free(struct spec *s)
{
    free(s->host);
    free(s->port);
}

/* "host:port" or "port@host"; an IPv6 literal may be written [addr]:port. */
static int parse_inet(const char *a, struct spec *s)
{
    const char *at = strchr(a, '@'), *colon;

    if (at != NULL) {
        s->port = xstrndup(a, (size_t)(at - a));
        s->host = xstrdup(at + 1);
    } else if (a[0] == '[' && (colon = strstr(a, "]:")) != NULL) {
        s->host = xstrndup(a + 1, (size_t)(colon - a - 1));
        s->port = xstrdup(colon + 2);
    } else if ((colon = strrchr(a, ':')) != NULL) {
        s->host = xstrndup(a, (size_t)(colon - a));
        s->port = xstrdup(colon + 1);
    } else {
        return -1;
    }
    if (*s->host == '\0' || *s->port == '\0' || strspn(s->port, "0123456789") != strlen(s->port))
        return -1;
    return 0;
}

static int parse(const char *spec, struct spec *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if ((s->path = pec_sock_unix_path(spec)) != NULL) {
        if (s->path[0] != '/' || strlen(s->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            pec_seterr(err, errlen,
                       "\"%s\": a unix socket needs an absolute path of at most %zu bytes", spec,
                       sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return -1;
        }
        return 0;
    }
    if ((strncmp(spec, "inet:", 5) == 0 && parse_inet(spec + 5, s) == 0) ||
        (strncmp(spec, "inet6:", 6) == 0 && parse_inet(spec + 6, s) == 0))
        return 0;
    spec_free(s);
    pec_seterr(err, errlen, "\"%s\" is not unix:/path, inet:host:port or inet:port@host", spec);
    return -1;
}

static void unix_addr(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
}

/* A socket file nobody answers on is what a crash left: remove it.  -1: in use. */
static int clear_stale(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        pec_seterr(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        pec_seterr(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    unix_addr(path, &sun);
    rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
    if (rc == 0) {
        pec_seterr(err, errlen, "%s: another process is listening there", path);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        pec_seterr(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int listen_unix(const char *path, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    int fd;

    if (clear_stale(path, err, errlen) < 0)
        return -1;
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        pec_seterr(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    unix_addr(path, &sun);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || listen(fd, backlog) != 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static struct addrinfo *resolve(const struct spec *s, int passive, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(s->host, s->port, &hints, &res);

    if (rc != 0) {
        pec_seterr(err, errlen, "%s port %s: %s", s->host, s->port, gai_strerror(rc));
        return NULL;
    }
    return res;
}

static int listen_inet(const struct spec *s, int backlog, char *err, size_t errlen)
{
    struct addrinfo *res = resolve(s, 1, err, errlen);
    int fd = -1, one = 1;

    if (res == NULL)
        return -1;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
            pec_seterr(err, errlen, "%s port %s: %s", s->host, s->port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

int pec_sock_listen(const char *spec, int backlog, char *err, size_t errlen)
{
    struct spec s;
    int fd;

    if (parse(spec, &s, err, errlen) < 0)
        return -1;
    fd = s.path ? listen_unix(s.path, backlog, err, errlen) : listen_inet(&s, backlog, err, errlen);
    spec_free(&s);
    return fd;
}

/* connect(2) on a non-blocking FD, waiting at most TIMEOUT seconds; 0 or -1 (errno). */
static int connect_wait(int fd, const struct sockaddr *sa, socklen_t len, int timeout)
{
    int flags = fcntl(fd, F_GETFL), soerr = 0;
    socklen_t sl = sizeof(soerr);
    struct pollfd p = {.fd = fd, .events = POLLOUT};

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    if (connect(fd, sa, len) != 0) {
        if (errno != EINPROGRESS)
            return -1;
        if (poll(&p, 1, timeout * 1000) <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            errno = soerr ? soerr : ECONNREFUSED;
            return -1;
        }
    }
    return fcntl(fd, F_SETFL, flags);
}

int pec_sock_connect(const char *spec, int timeout, char *err, size_t errlen)
{
    struct spec s;
    int fd = -1;

    if (parse(spec, &s, err, errlen) < 0)
        return -1;
    if (s.path != NULL) {
        struct sockaddr_un sun;
        unix_addr(s.path, &sun);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            pec_seterr(err, errlen, "socket: %s", strerror(errno));
        } else if (connect_wait(fd, (struct sockaddr *)&sun, sizeof(sun), timeout) != 0) {
            pec_seterr(err, errlen, "%s: %s", s.path, strerror(errno));
            close(fd);
            fd = -1;
        }
    } else {
        struct addrinfo *res = resolve(&s, 0, err, errlen);
        for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd >= 0 && connect_wait(fd, ai->ai_addr, ai->ai_addrlen, timeout) != 0) {
                pec_seterr(err, errlen, "%s port %s: %s", s.host, s.port, strerror(errno));
                close(fd);
                fd = -1;
            }
        }
        if (res != NULL)
            freeaddrinfo(res);
    }
    spec_free(&s);
    return fd;
}
