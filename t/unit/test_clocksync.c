/*
 * test_clocksync - the clock watch judges the discipline state it is given:
 * synchronised within a second passes; unsynchronised, an estimated error
 * over a second, and a state that cannot be read each say why.  The kernel's
 * own state is read without error (whatever it is on this machine).
 */
#include "check.h"
#include "util/clocksync.h"

static struct pec_clocksync given;
static int fail_reading;

static int stand_in(struct pec_clocksync *s, char *err, size_t errlen)
{
    if (fail_reading) {
        snprintf(err, errlen, "no such device");
        return -1;
    }
    *s = given;
    return 0;
}

static int judge(int synchronised, long esterror_us, char *why, size_t whylen)
{
    given = (struct pec_clocksync){.synchronised = synchronised, .esterror_us = esterror_us};
    return pec_clocksync_check(stand_in, why, whylen);
}

int main(void)
{
    char why[512];
    struct pec_clocksync k;

    CHECK(judge(1, 0, why, sizeof(why)) == 0);
    CHECK(judge(1, 1000000, why, sizeof(why)) == 0); /* exactly one second: allowed */

    CHECK(judge(0, 0, why, sizeof(why)) == 1);
    CHECK(strstr(why, "not synchronised") != NULL && strstr(why, "chrony") != NULL);

    CHECK(judge(1, 1500000, why, sizeof(why)) == 1);
    CHECK_STR(why, "the system clock's estimated error is 1.500000 s, over the one second the "
                   "rules allow");

    fail_reading = 1;
    CHECK(judge(1, 0, why, sizeof(why)) == -1);
    CHECK(strstr(why, "cannot read") != NULL && strstr(why, "no such device") != NULL);
    fail_reading = 0;

    /* the real kernel: readable here, whatever its verdict */
    CHECK(pec_clocksync_kernel(&k, why, sizeof(why)) == 0);
    CHECK(pec_clocksync_check(pec_clocksync_kernel, why, sizeof(why)) >= 0);
    return check_exit();
}
