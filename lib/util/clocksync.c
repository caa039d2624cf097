/*
 * clocksync - the kernel's clock discipline state (see clocksync.h).
 */
#include "util/clocksync.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/timex.h>

#define MAX_ERROR_US 1000000L /* one second */

int pec_clocksync_kernel(struct pec_clocksync *s, char *err, size_t errlen)
{
    struct timex tx;
    int state;

    memset(&tx, 0, sizeof(tx)); /* modes 0: read, change nothing */
    state = ntp_adjtime(&tx);
    if (state == -1) {
        snprintf(err, errlen, "ntp_adjtime: %s", strerror(errno));
        return -1;
    }
    s->synchronised = state != TIME_ERROR && !(tx.status & STA_UNSYNC);
    s->esterror_us = tx.esterror;
    s->maxerror_us = tx.maxerror;
    return 0;
}

int pec_clocksync_check(pec_clocksync_source *source, char *why, size_t whylen)
{
    struct pec_clocksync s;
    char err[256];

    if (source(&s, err, sizeof(err)) < 0) {
        snprintf(why, whylen, "cannot read the clock's synchronisation state: %s", err);
        return -1;
    }
    if (!s.synchronised) {
        snprintf(why, whylen,
                 "the system clock is not synchronised (no NTP discipline such as chrony or "
                 "systemd-timesyncd keeps it): the rules want it within one second of UTC");
        return 1;
    }
    if (s.esterror_us > MAX_ERROR_US) {
        snprintf(why, whylen,
                 "the system clock's estimated error is %ld.%06ld s, over the one second the "
                 "rules allow",
                 s.esterror_us / 1000000, s.esterror_us % 1000000);
        return 1;
    }
    return 0;
}
