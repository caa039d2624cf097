/*
 * log - the daemon's one log stream (see log.h).
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int to_stderr = 1;
static int test_mode; /* read without the lock: a word, set before threads or at a reload */
static pthread_mutex_t stderr_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
    const char *name;
    int facility;
} facilities[] = {
    {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},
    {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
    {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

int log_open(const char *ident, int foreground, const char *facility)
{
    for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++) {
        if (strcmp(facilities[i].name, facility) == 0) {
            to_stderr = foreground;
            if (!foreground)
                openlog(ident, LOG_PID | LOG_NDELAY, facilities[i].facility);
            return 0;
        }
    }
    return -1;
}

void log_set_test_mode(int on)
{
    __atomic_store_n(&test_mode, on, __ATOMIC_RELAXED);
}

void log_close(void)
{
    if (!to_stderr)
        closelog();
}

static const char *prio_name(int prio)
{
    switch (prio) {
    case LOG_ERR:
        return "error";
    case LOG_WARNING:
        return "warning";
    case LOG_DEBUG:
        return "debug";
    default:
        return "info";
    }
}

void log_msg(int prio, const char *qid, const char *fmt, ...)
{
    char text[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    const char *mode = __atomic_load_n(&test_mode, __ATOMIC_RELAXED) ? "TEST MODE: " : "";

    if (!to_stderr) {
        if (qid && *qid)
            syslog(prio, "%s%s: %s", mode, qid, text);
        else
            syslog(prio, "%s%s", mode, text);
        return;
    }

    char stamp[32];
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    pthread_mutex_lock(&stderr_lock);
    fprintf(stderr, "%s pecmilter[%s]: %s%s%s%s\n", stamp, prio_name(prio), mode,
            qid && *qid ? qid : "", qid && *qid ? ": " : "", text);
    fflush(stderr);
    pthread_mutex_unlock(&stderr_lock);
}
