/*
 * test_clock - the temporal reference: Europe/Rome across both DST changes,
 * RFC 5322 dates whatever the locale, fixed clocks, bad configuration.
 */
#include "check.h"
#include "util/clock.h"

#include <locale.h>
#include <pthread.h>
#include <time.h>

static time_t at(const char *iso)
{
    struct pec_clock c;
    char err[256];

    if (pec_clock_init(&c, NULL, iso, err, sizeof(err)) != 0) {
        fprintf(stderr, "bad test instant %s: %s\n", iso, err);
        exit(1);
    }
    return pec_clock_now(&c);
}

static void check_when(const struct pec_clock *c, const char *iso, const char *giorno,
                       const char *ora, const char *zona, const char *date)
{
    struct pec_when w;

    CHECK(pec_time_format(c, at(iso), &w) == 0);
    CHECK_STR(w.giorno, giorno);
    CHECK_STR(w.ora, ora);
    CHECK_STR(w.zona, zona);
    if (date != NULL)
        CHECK_STR(w.date, date);
}

static void test_rome(void)
{
    struct pec_clock c;
    char err[256] = "";

    CHECK(pec_clock_init(&c, NULL, NULL, err, sizeof(err)) == 0);
    CHECK_STR(c.zone, "Europe/Rome");
    CHECK(c.fixed == 0);

    /* spring forward: 02:00 CET becomes 03:00 CEST */
    check_when(&c, "2024-03-31T00:59:59Z", "31/03/2024", "01:59:59", "+0100",
               "Sun, 31 Mar 2024 01:59:59 +0100");
    check_when(&c, "2024-03-31T01:00:00Z", "31/03/2024", "03:00:00", "+0200",
               "Sun, 31 Mar 2024 03:00:00 +0200");
    /* fall back: 03:00 CEST becomes 02:00 CET, so 02:xx happens twice */
    check_when(&c, "2024-10-27T00:59:59Z", "27/10/2024", "02:59:59", "+0200", NULL);
    check_when(&c, "2024-10-27T01:00:00Z", "27/10/2024", "02:00:00", "+0100", NULL);
    /* the instants of the real Aruba messages, and their Date: headers */
    check_when(&c, "2014-11-14T17:26:32Z", "14/11/2014", "18:26:32", "+0100",
               "Fri, 14 Nov 2014 18:26:32 +0100");
    check_when(&c, "2014-11-07T15:52:00Z", "07/11/2014", "16:52:00", "+0100",
               "Fri, 7 Nov 2014 16:52:00 +0100");
    /* a leap day and a year boundary */
    check_when(&c, "2024-02-29T23:30:00Z", "01/03/2024", "00:30:00", "+0100",
               "Fri, 1 Mar 2024 00:30:00 +0100");
    check_when(&c, "2025-12-31T23:00:00Z", "01/01/2026", "00:00:00", "+0100",
               "Thu, 1 Jan 2026 00:00:00 +0100");
}

/* zones west of UTC and with half hours; clocks of two zones side by side */
static void test_other_zones(void)
{
    struct pec_clock utc, ny, stj, rome;
    char err[256] = "";

    CHECK(pec_clock_init(&utc, "UTC", NULL, err, sizeof(err)) == 0);
    CHECK(pec_clock_init(&ny, "America/New_York", NULL, err, sizeof(err)) == 0);
    CHECK(pec_clock_init(&stj, "America/St_Johns", NULL, err, sizeof(err)) == 0);
    CHECK(pec_clock_init(&rome, "Europe/Rome", NULL, err, sizeof(err)) == 0);
    check_when(&utc, "2024-03-31T01:00:00Z", "31/03/2024", "01:00:00", "+0000",
               "Sun, 31 Mar 2024 01:00:00 +0000");
    check_when(&ny, "2024-01-15T12:00:00Z", "15/01/2024", "07:00:00", "-0500", NULL);
    check_when(&stj, "2024-01-15T12:00:00Z", "15/01/2024", "08:30:00", "-0330",
               "Mon, 15 Jan 2024 08:30:00 -0330");
    check_when(&rome, "2024-07-01T10:00:00Z", "01/07/2024", "12:00:00", "+0200", NULL);
    check_when(&utc, "2024-07-01T10:00:00Z", "01/07/2024", "10:00:00", "+0000", NULL);
}

static void test_locale(void)
{
    struct pec_clock c;
    struct pec_when w;
    char err[256] = "";
    const char *loc = setlocale(LC_ALL, "it_IT.UTF-8");

    if (loc == NULL)
        printf("note: locale it_IT.UTF-8 not installed; checking under the C locale only\n");
    CHECK(pec_clock_init(&c, "Europe/Rome", NULL, err, sizeof(err)) == 0);
    CHECK(pec_time_format(&c, at("2014-11-14T17:26:32Z"), &w) == 0);
    CHECK_STR(w.date, "Fri, 14 Nov 2014 18:26:32 +0100");
    setlocale(LC_ALL, "C");
}

static void test_fixed(void)
{
    struct pec_clock a, b;
    char err[256] = "";
    char stamp[15];

    CHECK(pec_clock_init(&a, "Europe/Rome", "2024-03-31T00:59:59Z", err, sizeof(err)) == 0);
    CHECK(a.fixed == 1);
    CHECK(pec_clock_now(&a) == (time_t)1711846799);
    CHECK(pec_clock_now(&a) == (time_t)1711846799);
    CHECK(pec_clock_init(&b, "", "1711846799", err, sizeof(err)) == 0);
    CHECK(pec_clock_now(&b) == pec_clock_now(&a));
    CHECK(pec_time_utc_stamp(pec_clock_now(&a), stamp) == 0);
    CHECK_STR(stamp, "20240331005959");
    CHECK(pec_clock_init(&b, NULL, "0", err, sizeof(err)) == 0);
    CHECK(pec_clock_now(&b) == 0);

    /* instants that cannot be written as dd/mm/yyyy are refused, not garbled */
    struct pec_when w;
    CHECK(pec_time_format(&a, (time_t)1 << 60, &w) == -1);
    CHECK(pec_time_format(&a, (time_t)253402300800LL, &w) == -1); /* 10000-01-01 */
    CHECK(pec_time_utc_stamp((time_t)1 << 60, stamp) == -1);
    CHECK(pec_time_utc_stamp((time_t)253402300799LL, stamp) == 0);
    CHECK_STR(stamp, "99991231235959");
}

static void test_system_clock(void)
{
    struct pec_clock c;
    char err[256] = "";
    time_t before = time(NULL), now;

    CHECK(pec_clock_init(&c, NULL, "", err, sizeof(err)) == 0);
    now = pec_clock_now(&c);
    CHECK(now >= before && now <= time(NULL));
}

static void test_refused(void)
{
    static const char *const bad_fixed[] = {
        "2024-02-30T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-03-31 00:59:59Z",
        "2024-03-31T00:59:59",
        "2024-03-31T00:59:59+01:00",
        "2024-03-31T24:00:00Z",
        "+024-03-31T00:59:59Z",
        "abc",
        "-5",
        "12x",
        "99999999999999999999999",
    };
    static const char *const bad_zones[] = {
        "Europe/Nowhere", "../../etc/passwd", "/etc/localtime", "Europe/Rome ", "Europe/",
    };
    struct pec_clock c;

    for (size_t i = 0; i < sizeof(bad_fixed) / sizeof(bad_fixed[0]); i++) {
        char err[256] = "";
        CHECK(pec_clock_init(&c, NULL, bad_fixed[i], err, sizeof(err)) == -1);
        CHECK(strstr(err, "fixed clock") != NULL);
    }
    for (size_t i = 0; i < sizeof(bad_zones) / sizeof(bad_zones[0]); i++) {
        char err[256] = "";
        CHECK(pec_clock_init(&c, bad_zones[i], NULL, err, sizeof(err)) == -1);
        CHECK(strstr(err, "time zone") != NULL);
        printf("refused zone \"%s\": %s\n", bad_zones[i], err);
    }
}

/* formatting from several threads while another zone's clock is in use */
static struct pec_clock thread_rome, thread_utc;
static int thread_bad;

static void *format_loop(void *arg)
{
    const struct pec_clock *c = arg;
    const char *want = c == &thread_rome ? "03:00:00" : "01:00:00";

    for (int i = 0; i < 20000; i++) {
        struct pec_when w;
        if (pec_time_format(c, 1711846800, &w) != 0 || strcmp(w.ora, want) != 0)
            __atomic_add_fetch(&thread_bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    char err[256] = "";

    CHECK(pec_clock_init(&thread_rome, "Europe/Rome", NULL, err, sizeof(err)) == 0);
    CHECK(pec_clock_init(&thread_utc, "UTC", NULL, err, sizeof(err)) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, format_loop, i % 2 ? &thread_utc : &thread_rome) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(thread_bad == 0);
}

int main(void)
{
    test_rome();
    test_other_zones();
    test_locale();
    test_fixed();
    test_system_clock();
    test_refused();
    test_threads();
    return check_exit();
}
