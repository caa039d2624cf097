/*
 * injector - the daemon's glue around libpec's injector: configuration in,
 * log lines out.
 */
#include "injector.h"
#include "provider/inject.h"
#include "log.h"

#include <stddef.h>

/* a day: longer waits would only hide an MTA that is down */
#define MAX_BACKOFF_CAP 86400
/* more parallel sessions than this only queue up in front of the MTA's own fsyncs */
#define SESSIONS_CAP 64

static struct pec_injector *running;

static void to_daemon_log(int prio, const char *qid, const char *text)
{
    log_msg(prio, qid, "%s", text);
}

int injector_start(const struct pec_config *cfg, struct pec_store *store)
{
    struct pec_injector_conf conf = {
        .reinject = cfg->reinject,
        .mail_from = cfg->service_address,
        .node = cfg->node_id,
        .max_backoff = cfg->outbox_retry_max_backoff > MAX_BACKOFF_CAP
                           ? MAX_BACKOFF_CAP
                           : (int)cfg->outbox_retry_max_backoff,
        .sessions =
            cfg->reinject_sessions > SESSIONS_CAP ? SESSIONS_CAP : (int)cfg->reinject_sessions,
        .log = to_daemon_log,
    };
    char err[1024];

    pec_store_set_log(store, to_daemon_log);
    running = pec_injector_start(&conf, store, err, sizeof(err));
    if (running == NULL) {
        log_err(NULL, "%s", err);
        return -1;
    }
    log_info(NULL, "outbox: injecting into %s as %s, %d session(s)", cfg->reinject,
             cfg->service_address, conf.sessions);
    return 0;
}

void injector_stop(void)
{
    pec_injector_stop(running);
    running = NULL;
}
