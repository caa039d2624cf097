/*
 * scheduler - the daemon's timer thread around lib/provider/scheduler.c, and
 * the keeper of the providers' index (lib/provider/directory.h): refreshed
 * at start and every index_refresh, sooner after a failure, its age
 * watched against index_max_age.  The index runs on real time, not the
 * runtime's (possibly fixed) clock: it is about servers out there.
 */
#include "scheduler.h"
#include "log.h"
#include "runtime.h"

#include "message/certprofile.h"
#include "provider/mailbox.h"
#include "provider/scheduler.h"
#include "util/clocksync.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define MAX_SLEEP 600    /* seconds: reloads and new transactions are picked up by then */
#define NOTICE_RETRY 60  /* after a store or builder failure */
#define SEAL_RETRY 300   /* after a failed seal or purge */
#define CLOCK_EVERY 3600 /* the clock discipline's state is read hourly */
#define INDEX_RETRY 600  /* at most, after a failed refresh of the index */
#define STALE_EVERY 3600 /* a stale index is warned of hourly */

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static int started, stopping;

static long long min_ll(long long a, long long b)
{
    return a < b ? a : b;
}

/*
 * Once a day, with the seal: the Maildir's duplicate-delivery markers that
 * outlived their use (lib/provider/mailbox.h).  Their ages are the file system's, so
 * real time, not the runtime's clock.
 */
static void prune_markers(const struct pec_config *cfg)
{
    long long n = 0, days;
    char err[1024];

    if (strcmp(cfg->mailbox_backend, "maildir") != 0)
        return;
    /* a century at most, so the cut-off cannot overflow */
    days = cfg->maildir_marker_days < 36500 ? cfg->maildir_marker_days : 36500;
    if (pec_maildir_prune(cfg->maildir_root, time(NULL) - (time_t)days * 86400, &n, err,
                          sizeof(err)) < 0)
        log_err(NULL, "scheduler: pruning Maildir markers: %s", err);
    if (n > 0)
        log_info(NULL, "scheduler: %lld Maildir marker(s) older than %lld day(s) removed", n, days);
}

/*
 * Once a day, with the seal: the signing certificate is judged again, so
 * its expiry coming near is said daily, and one that can no longer sign
 * loudly (a reload or restart would be refused with it).
 */
static void check_certificate(struct runtime *rt)
{
    char err[512], warn[512];
    struct pec_cert_facts f = {.provider_name = rt->cfg->provider_name,
                               .service_address = rt->cfg->service_address,
                               .now = pec_clock_now(&rt->clock),
                               .warn_days = rt->cfg->cert_warn_days};
    size_t len;
    const unsigned char *der = pec_signer_cert_der(rt->signer, &len);

    if (pec_cert_profile_check(der, len, &f, err, sizeof(err), warn, sizeof(warn)) < 0)
        log_err(NULL, "%s: the signing certificate may not sign any more: %s", rt->cfg->sign_cert,
                err);
    else if (warn[0] != '\0')
        log_warn(NULL, "%s: %s", rt->cfg->sign_cert, warn);
}

/* At start and hourly: the kernel's word on the clock (util/clocksync.h), real time. */
static void check_clock(time_t *clock_at)
{
    time_t now = time(NULL);
    char why[512];

    if (*clock_at != 0 && now < *clock_at)
        return;
    *clock_at = now + CLOCK_EVERY;
    if (pec_clocksync_check(pec_clocksync_kernel, why, sizeof(why)) != 0)
        log_warn(NULL, "clock: %s", why);
}

/* A transfer in progress stops when the daemon does. */
static int cancelled(void *arg)
{
    (void)arg;
    return __atomic_load_n(&stopping, __ATOMIC_SEQ_CST);
}

static void refresh_index(struct runtime *rt, time_t now, time_t *due)
{
    const struct pec_config *cfg = rt->cfg;
    struct pec_dir_report rep;
    int ok = pec_directory_refresh(rt->dir, cancelled, NULL, &rep) == 0;

    for (int i = 0; i < rep.nwarnings; i++)
        log_warn(NULL, "%s", rep.warning[i]);
    if (ok) {
        log_info(NULL, "providers' index: refreshed from %s: %zu providers, %zu CRLs%s%s%s",
                 cfg->index_source, rep.providers, rep.crls,
                 rep.domains_changed ? "; managedDomains changed" : "",
                 rep.tls_policy > 0 ? "; TLS policy written to " : "",
                 rep.tls_policy > 0 ? cfg->tls_policy_file : "");
        *due = now + (time_t)cfg->index_refresh;
    } else {
        log_err(NULL, "providers' index: cannot refresh from %s, the copy in use stays: %s",
                cfg->index_source, rep.index_err);
        *due = now + (time_t)min_ll(cfg->index_refresh, INDEX_RETRY);
    }
}

/*
 * The providers' index: refreshed when due, its age against index_max_age.
 * Returns the seconds until it next needs looking at.
 */
static long long index_round(time_t *due, time_t *stale_at)
{
    struct runtime *rt = runtime_get();
    time_t now = time(NULL), fetched;
    long long wait, age;

    if (rt == NULL)
        return NOTICE_RETRY;
    if (*due == 0 || now >= *due)
        refresh_index(rt, now, due);
    now = time(NULL);
    fetched = pec_directory_fetched_at(rt->dir);
    age = (long long)(now - fetched);
    wait = *due > now ? (long long)(*due - now) : 0;
    if (age > rt->cfg->index_max_age) {
        if (now >= *stale_at) {
            log_warn(NULL,
                     "providers' index: the copy in use was fetched %lld s ago, over index_max_age "
                     "(%lld s): peers' new certificates and domains are unknown here until a "
                     "refresh from %s succeeds",
                     age, rt->cfg->index_max_age, rt->cfg->index_source);
            *stale_at = now + STALE_EVERY;
        }
        wait = min_ll(wait, (long long)(*stale_at - now));
    } else {
        *stale_at = 0;
        wait = min_ll(wait, rt->cfg->index_max_age - age + 1);
    }
    runtime_put(rt);
    return wait;
}

/* One round at the runtime's NOW; returns the seconds to sleep. */
static long long round_once(time_t *seal_at)
{
    struct runtime *rt = runtime_get();
    const struct pec_config *cfg;
    struct pec_sched_conf conf;
    struct pec_sched_result res;
    time_t now, next;
    long long wait;
    char err[1024];
    int failed;

    if (rt == NULL || rt->store == NULL) {
        runtime_put(rt);
        return NOTICE_RETRY;
    }
    cfg = rt->cfg;
    now = pec_clock_now(&rt->clock);
    if (*seal_at == 0 || now >= *seal_at) {
        struct pec_sched_keep keep = {.gestore = cfg->provider_name,
                                      .seal_dir = cfg->seal_dir,
                                      .months = (int)cfg->retention_months,
                                      .quarantine_dir = cfg->quarantine_dir,
                                      .virus_months = (int)cfg->virus_retention_months,
                                      .node = cfg->node_id};
        struct pec_sched_kept kept;

        if (pec_sched_seal_purge(rt->store, rt->signer, &keep, now, &kept, err, sizeof(err)) < 0) {
            log_err(NULL, "scheduler: %s (trying again in %d s)", err, SEAL_RETRY);
            *seal_at = now + SEAL_RETRY;
        } else if (kept.elsewhere) {
            /* another node seals; look again later in case it dies before it is done */
            *seal_at = now + SEAL_RETRY;
        } else {
            if (kept.sealed > 0 || kept.purged > 0 || kept.virus_purged > 0)
                log_info(NULL,
                         "scheduler: %d day(s) of the log sealed in %s, %lld record(s) "
                         "and %lld infected message(s) past retention purged",
                         kept.sealed, cfg->seal_dir, kept.purged, kept.virus_purged);
            *seal_at = pec_sched_seal_time(now);
            prune_markers(cfg);
            check_certificate(rt);
        }
    }
    conf.warning_after = cfg->warning_after;
    conf.deadline_after = cfg->deadline_after;
    conf.deadline_not_before = cfg->deadline_not_before;
    wait = min_ll(MAX_SLEEP, cfg->warning_after > 0 ? cfg->warning_after : 1);
    failed =
        pec_sched_timeouts(rt->store, &rt->issuer, &conf, now, &res, &next, err, sizeof(err)) < 0;
    if (failed) {
        /* what failed is still due: NEXT says "now", which would spin on it */
        log_err(NULL, "scheduler: timeout notices: %s (trying again in %d s)", err, NOTICE_RETRY);
        wait = min_ll(wait, NOTICE_RETRY);
    }
    if (res.warned > 0 || res.expired > 0)
        log_info(NULL, "scheduler: %d preavviso (12 h) and %d final (24 h) notice(s) queued",
                 res.warned, res.expired);
    if (next != 0 && !failed)
        wait = min_ll(wait, next > now ? (long long)(next - now) : 0);
    wait = min_ll(wait, *seal_at > now ? (long long)(*seal_at - now) : 0);
    runtime_put(rt);
    return wait;
}

static void *run(void *arg)
{
    time_t seal_at = 0, clock_at = 0, index_due = 0, stale_at = 0;

    (void)arg;
    pthread_mutex_lock(&lock);
    while (!stopping) {
        long long wait;
        struct timespec ts;

        pthread_mutex_unlock(&lock);
        check_clock(&clock_at);
        wait = min_ll(index_round(&index_due, &stale_at), round_once(&seal_at));
        pthread_mutex_lock(&lock);
        if (wait <= 0)
            continue; /* more is due already */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)wait;
        while (!stopping && pthread_cond_timedwait(&cond, &lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int scheduler_start(void)
{
    pthread_condattr_t ca;
    int rc;

    if ((rc = pthread_condattr_init(&ca)) != 0 ||
        (rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
        (rc = pthread_cond_init(&cond, &ca)) != 0) {
        log_err(NULL, "scheduler: cannot set up its timer: %s", strerror(rc));
        return -1;
    }
    pthread_condattr_destroy(&ca);
    stopping = 0;
    if ((rc = pthread_create(&thread, NULL, run, NULL)) != 0) {
        log_err(NULL, "scheduler: cannot start the thread: %s", strerror(rc));
        pthread_cond_destroy(&cond);
        return -1;
    }
    started = 1;
    return 0;
}

void scheduler_stop(void)
{
    if (!started)
        return;
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&cond);
    started = 0;
}
