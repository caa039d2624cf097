/*
 * clocksync - is the system clock kept in step with UTC?
 *
 * The rules want the provider's clock within one second of UTC
 * (pec-rules.md 3.5): receipts are legal evidence of when.  The kernel
 * knows whether a discipline (chrony, systemd-timesyncd, ntpd) keeps it
 * synchronised and how large its estimated error is; ntp_adjtime() reads
 * both without changing anything.  The reading is a function pointer so a
 * test can stand in for the kernel.
 */
#ifndef PEC_CLOCKSYNC_H
#define PEC_CLOCKSYNC_H

#include <stddef.h>

struct pec_clocksync {
    int synchronised; /* the kernel's STA_UNSYNC is clear */
    long esterror_us; /* estimated error, microseconds */
    long maxerror_us; /* maximum error, microseconds */
};

/* Fills S; 0, or -1 with err when the state cannot be read. */
typedef int pec_clocksync_source(struct pec_clocksync *s, char *err, size_t errlen);

/* The kernel's state, through ntp_adjtime() with no mode bits (read only). */
int pec_clocksync_kernel(struct pec_clocksync *s, char *err, size_t errlen);

/*
 * Read SOURCE and judge: 0 when the clock is synchronised with an estimated
 * error of one second or less; 1 with the problem in why; -1 with why when
 * the state cannot be read at all.
 */
int pec_clocksync_check(pec_clocksync_source *source, char *why, size_t whylen);

#endif
