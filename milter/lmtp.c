/*
 * lmtp - the daemon's glue around libpec's LMTP listener: runtime and store
 * in, log lines out.
 */
#include "lmtp.h"
#include "provider/lmtpd.h"
#include "log.h"
#include "runtime.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>

static struct pec_lmtpd *listener;
static struct pec_store *the_store;
static char spec[512];

static void to_daemon_log(int prio, const char *qid, const char *text)
{
    log_msg(prio, qid, "%s", text);
}

/* What one LMTP session holds: the runtime, and the index in use when it began. */
struct held {
    struct runtime *rt;
    struct pec_index *index;
};

static void *acquire(void *arg, struct pec_dp_env *env)
{
    struct runtime *rt = runtime_get();
    struct held *h;

    if (rt == NULL)
        return NULL;
    h = xmalloc(sizeof(*h));
    h->rt = rt;
    h->index = runtime_index(rt);
    env->cfg = rt->cfg;
    env->issuer = &rt->issuer;
    env->trust = rt->trust;
    env->index = h->index;
    env->store = the_store;
    env->log = to_daemon_log;
    return h;
}

static void release(void *arg, void *token)
{
    struct held *h = token;

    pec_index_free(h->index);
    runtime_put(h->rt);
    free(h);
}

int lmtp_open(const struct pec_config *cfg)
{
    char err[1024];

    listener = pec_lmtpd_listen(cfg->lmtp_socket, err, sizeof(err));
    if (listener == NULL) {
        fprintf(stderr, "pecmilter: lmtp_socket: %s\n", err);
        return -1;
    }
    snprintf(spec, sizeof(spec), "%s", cfg->lmtp_socket);
    return 0;
}

int lmtp_start(struct pec_store *store)
{
    struct pec_lmtpd_hooks hooks = {.acquire = acquire, .release = release, .log = to_daemon_log};
    char err[1024];

    the_store = store;
    if (pec_lmtpd_start(listener, &hooks, err, sizeof(err)) != 0) {
        log_err(NULL, "%s", err);
        return -1;
    }
    log_info(NULL, "delivery point: LMTP on %s", spec);
    return 0;
}

void lmtp_stop(void)
{
    pec_lmtpd_stop(listener);
    listener = NULL;
}
