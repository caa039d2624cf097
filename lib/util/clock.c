/*
 * clock - the single temporal reference of a PEC transaction.
 *
 * Local time comes from the C library's reading of the system tz database
 * (localtime_r with TZ set), so the rules for daylight saving time are the
 * ones the operating system keeps up to date; we only refuse a zone name the
 * database does not have, instead of letting the C library silently fall
 * back to UTC.
 */
#include "util/clock.h"
#include "util/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the zone TZ currently names; guarded by tz_lock */
static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static char tz_current[PEC_ZONE_MAX];

/*
 * Fields of a struct tm, already range-checked, as the unsigned the format
 * wants; the modulo also tells the compiler how wide they print.
 */
#define D2(v) ((unsigned)(v) % 100u)
#define D4(v) ((unsigned)(v) % 10000u)

static const char *const day_names[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/*
 * A zone name is a relative path below the tz directory: refuse anything
 * that could point elsewhere before touching the file system.
 */
static int zone_name_ok(const char *zone)
{
    size_t len = strlen(zone);

    if (len == 0 || len >= PEC_ZONE_MAX || zone[0] == '/' || strstr(zone, "..") != NULL)
        return 0;
    for (const char *p = zone; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '/' || *p == '_' || *p == '-' || *p == '+'))
            return 0;
    return 1;
}

/* the zone must exist as a TZif file, or glibc would quietly use UTC */
static int zone_file_ok(const char *zone, char *err, size_t errlen)
{
    const char *dir = getenv("TZDIR");
    char path[4096];
    char magic[4];
    FILE *fp;
    size_t got;

    if (dir == NULL || *dir == '\0')
        dir = "/usr/share/zoneinfo";
    if (snprintf(path, sizeof(path), "%s/%s", dir, zone) >= (int)sizeof(path)) {
        pec_seterr(err, errlen, "time zone %s: path too long", zone);
        return -1;
    }
    fp = fopen(path, "rb");
    if (fp == NULL) {
        pec_seterr(err, errlen, "unknown time zone %s: %s: %s", zone, path, strerror(errno));
        return -1;
    }
    got = fread(magic, 1, sizeof(magic), fp);
    if (fclose(fp) != 0 || got != sizeof(magic) || memcmp(magic, "TZif", 4) != 0) {
        pec_seterr(err, errlen, "unknown time zone %s: %s is not a tz database file", zone, path);
        return -1;
    }
    return 0;
}

/* called with tz_lock held */
static int apply_zone(const char *zone)
{
    char value[PEC_ZONE_MAX + 1];

    /* the leading colon tells the C library to read a file, not a POSIX rule */
    snprintf(value, sizeof(value), ":%s", zone);
    if (setenv("TZ", value, 1) != 0)
        return -1;
    tzset();
    snprintf(tz_current, sizeof(tz_current), "%s", zone);
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SSZ", checked character by character and by a round trip */
static int parse_iso_utc(const char *s, time_t *out)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
    struct tm tm, back;
    time_t t;

    if (strlen(s) != sizeof(pattern) - 1)
        return -1;
    for (size_t i = 0; pattern[i]; i++)
        if (pattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pattern[i])
            return -1;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    back = tm;
    t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_year != back.tm_year || tm.tm_mon != back.tm_mon ||
        tm.tm_mday != back.tm_mday || tm.tm_hour != back.tm_hour || tm.tm_min != back.tm_min ||
        tm.tm_sec != back.tm_sec)
        return -1;
    *out = t;
    return 0;
}

static int parse_epoch(const char *s, time_t *out)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (time_t)v;
    return 0;
}

int pec_clock_init(struct pec_clock *clock, const char *zone, const char *fixed, char *err,
                   size_t errlen)
{
    int rc;

    memset(clock, 0, sizeof(*clock));
    if (zone == NULL || *zone == '\0')
        zone = PEC_CLOCK_DEFAULT_ZONE;
    if (!zone_name_ok(zone)) {
        pec_seterr(err, errlen, "invalid time zone name \"%s\"", zone);
        return -1;
    }
    if (zone_file_ok(zone, err, errlen) != 0)
        return -1;
    snprintf(clock->zone, sizeof(clock->zone), "%s", zone);

    if (fixed != NULL && *fixed != '\0') {
        if (parse_iso_utc(fixed, &clock->fixed_at) != 0 &&
            parse_epoch(fixed, &clock->fixed_at) != 0) {
            pec_seterr(err, errlen,
                       "fixed clock \"%s\": expected YYYY-MM-DDTHH:MM:SSZ or epoch seconds", fixed);
            return -1;
        }
        clock->fixed = 1;
    }

    pthread_mutex_lock(&tz_lock);
    rc = strcmp(tz_current, zone) == 0 ? 0 : apply_zone(zone);
    pthread_mutex_unlock(&tz_lock);
    if (rc != 0) {
        pec_seterr(err, errlen, "time zone %s: setenv TZ: %s", zone, strerror(errno));
        return -1;
    }
    return 0;
}

time_t pec_clock_now(const struct pec_clock *clock)
{
    return clock->fixed ? clock->fixed_at : time(NULL);
}

/* years 1..9999 fit every field we print; tm_year is compared before adding */
static int year_ok(const struct tm *tm)
{
    return tm->tm_year >= 1 - 1900 && tm->tm_year <= 9999 - 1900;
}

static int local_time(const struct pec_clock *clock, time_t t, struct tm *tm)
{
    struct tm *ok = NULL;

    pthread_mutex_lock(&tz_lock);
    if (strcmp(tz_current, clock->zone) == 0 || apply_zone(clock->zone) == 0)
        ok = localtime_r(&t, tm);
    pthread_mutex_unlock(&tz_lock);
    return ok != NULL ? 0 : -1;
}

int pec_time_format(const struct pec_clock *clock, time_t t, struct pec_when *out)
{
    struct tm tm;
    long off, aoff;
    char sign;

    memset(out, 0, sizeof(*out));
    if (local_time(clock, t, &tm) != 0 || !year_ok(&tm))
        return -1;
    off = tm.tm_gmtoff;
    sign = off < 0 ? '-' : '+';
    aoff = off < 0 ? -off : off;

    out->t = t;
    snprintf(out->giorno, sizeof(out->giorno), "%02u/%02u/%04u", D2(tm.tm_mday), D2(tm.tm_mon + 1),
             D4(tm.tm_year + 1900));
    snprintf(out->ora, sizeof(out->ora), "%02u:%02u:%02u", D2(tm.tm_hour), D2(tm.tm_min),
             D2(tm.tm_sec));
    snprintf(out->zona, sizeof(out->zona), "%c%02u%02u", sign, D2(aoff / 3600),
             D2(aoff % 3600 / 60));
    /* day of month without padding, as Aruba and Postfix write it */
    snprintf(out->date, sizeof(out->date), "%s, %u %s %04u %s %s", day_names[tm.tm_wday % 7],
             D2(tm.tm_mday), month_names[tm.tm_mon % 12], D4(tm.tm_year + 1900), out->ora,
             out->zona);
    return 0;
}

int pec_time_utc_stamp(time_t t, char out[15])
{
    struct tm tm;

    out[0] = '\0';
    if (gmtime_r(&t, &tm) == NULL || !year_ok(&tm))
        return -1;
    snprintf(out, 15, "%04u%02u%02u%02u%02u%02u", D4(tm.tm_year + 1900), D2(tm.tm_mon + 1),
             D2(tm.tm_mday), D2(tm.tm_hour), D2(tm.tm_min), D2(tm.tm_sec));
    return 0;
}

time_t pec_months_before(time_t now, int months)
{
    struct tm tm;

    if (localtime_r(&now, &tm) == NULL)
        return 0;
    tm.tm_mon -= months;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return mktime(&tm);
}
