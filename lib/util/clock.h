/*
 * clock - the single temporal reference of a PEC transaction.
 *
 * The rules (DM 2/11/2005 art. 9) want one instant per event, reused in the
 * log, the receipts and the envelope.  An instant is a UTC time_t; it is shown
 * to people in the provider's legal time: dd/mm/yyyy, hh:mm:ss and the offset
 * "+hhmm" (daticert.xml <data>, the text parts) and as an RFC 5322 Date.
 *
 * pec_clock_init() checks the zone name against the system tz database and
 * makes it the zone of the process (TZ in the environment, then tzset()).
 * Setting TZ is not thread-safe, so call it at start-up, before any thread.
 * A process has one zone in practice; should two clocks with different zones
 * be used, pec_time_format() switches zone under a lock, which is correct
 * within libpec but races with getenv() elsewhere: only tests do that.
 *
 * A fixed clock ("YYYY-MM-DDTHH:MM:SSZ" or decimal epoch seconds) makes
 * pec_clock_now() always return that instant, so tests can reproduce every
 * generated message byte for byte.  It is never meant for production.
 */
#ifndef PEC_CLOCK_H
#define PEC_CLOCK_H

#include <stddef.h>
#include <time.h>

#define PEC_CLOCK_DEFAULT_ZONE "Europe/Rome"
#define PEC_ZONE_MAX 64

struct pec_clock {
    char zone[PEC_ZONE_MAX]; /* tz database name, e.g. "Europe/Rome" */
    int fixed;               /* nonzero: now() returns fixed_at */
    time_t fixed_at;
};

/* one instant rendered in the clock's zone */
struct pec_when {
    time_t t;        /* the instant, UTC */
    char giorno[11]; /* "dd/mm/yyyy" */
    char ora[9];     /* "hh:mm:ss" */
    char zona[6];    /* "+hhmm", no colon, as real messages write it */
    char date[40];   /* RFC 5322: "Fri, 7 Nov 2014 16:52:00 +0100" */
};

/*
 * zone NULL or "" means Europe/Rome; fixed NULL or "" means the system clock.
 * Returns 0, or -1 with a reason in err for an unknown zone or a fixed time
 * that is not one of the two accepted forms.
 */
int pec_clock_init(struct pec_clock *clock, const char *zone, const char *fixed, char *err,
                   size_t errlen);

/* the current instant: the fixed one when configured */
time_t pec_clock_now(const struct pec_clock *clock);

/*
 * Renders t in the clock's zone.  Returns 0, or -1 when the instant cannot be
 * shown (year outside 1..9999).  Day and month names are English whatever
 * the locale, as RFC 5322 requires.
 */
int pec_time_format(const struct pec_clock *clock, time_t t, struct pec_when *out);

/* "yyyymmddhhmmss" of t in UTC, as used in identifiers; -1 as above */
int pec_time_utc_stamp(time_t t, char out[15]);

/*
 * MONTHS calendar months before NOW, at local midnight: where a retention
 * period of MONTHS ends.  0 when NOW cannot be read as a local time (nothing
 * is older than that, so nothing is purged).
 */
time_t pec_months_before(time_t now, int months);

#endif
