/*
 * runtime - what the daemon loaded from its configuration, and reloading it.
 */
#include "runtime.h"
#include "message/certprofile.h"

#include "message/libinit.h"
#include "log.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime *current;
static struct pec_store *shared_store; /* under current_lock */
static char *shared_store_spec;

int runtime_check_files(const struct pec_config *cfg, char *err, size_t errlen)
{
    struct stat st;
    char why[512];

    if (pec_check_readable_file(cfg->sign_cert, why, sizeof(why)) < 0)
        goto bad_cert;
    if (cfg->sign_chain[0] && pec_check_readable_file(cfg->sign_chain, why, sizeof(why)) < 0)
        goto bad_cert;
    if (pec_check_private_file(cfg->sign_key, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "sign_key: %s", why);
        return -1;
    }
    if (stat(cfg->trust_anchors, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (pec_check_readable_file(cfg->trust_anchors, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "trust_anchors: %s", why);
            return -1;
        }
    }
    if (cfg->index_signer[0] && pec_check_readable_file(cfg->index_signer, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "index_signer: %s", why);
        return -1;
    }
    if (cfg->index_tls_cert[0] &&
        pec_check_readable_file(cfg->index_tls_cert, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "index_tls_cert: %s", why);
        return -1;
    }
    if (cfg->index_tls_key[0] && pec_check_private_file(cfg->index_tls_key, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "index_tls_key: %s", why);
        return -1;
    }
    if (cfg->index_tls_ca[0] && pec_check_readable_file(cfg->index_tls_ca, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "index_tls_ca: %s", why);
        return -1;
    }
    if (cfg->spool_dir[0] != '\0' && (stat(cfg->spool_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(err, errlen, "spool_dir: %s is not a directory", cfg->spool_dir);
        return -1;
    }
    return 0;

bad_cert:
    snprintf(err, errlen, "signing certificate: %s", why);
    return -1;
}

static void runtime_free(struct runtime *rt)
{
    pec_signer_free(rt->signer);
    pec_trust_free(rt->trust);
    pec_directory_close(rt->dir);
    pec_config_unref(rt->cfg);
    free(rt);
}

struct pec_index *runtime_index(const struct runtime *rt)
{
    return pec_directory_index(rt->dir);
}

void runtime_log_index_load(const struct runtime *rt)
{
    for (int i = 0; i < rt->index_load.nwarnings; i++)
        log_warn(NULL, "%s", rt->index_load.warning[i]);
}

int runtime_check_cert(struct runtime *rt, char *err, size_t errlen)
{
    const struct pec_config *cfg = rt->cfg;
    struct pec_cert_facts f = {.provider_name = cfg->provider_name,
                               .service_address = cfg->service_address,
                               .now = pec_clock_now(&rt->clock),
                               .warn_days = cfg->cert_warn_days};
    size_t len;
    const unsigned char *der = pec_signer_cert_der(rt->signer, &len);
    char why[512];

    if (pec_cert_profile_check(der, len, &f, why, sizeof(why), rt->cert_warning,
                               sizeof(rt->cert_warning)) < 0) {
        snprintf(err, errlen, "%s: %s", cfg->sign_cert, why);
        return -1;
    }
    return 0;
}

/* The loaded objects; each failure names the setting and the file. */
static int load_objects(struct runtime *rt, char *err, size_t errlen)
{
    const struct pec_config *cfg = rt->cfg;
    char why[768];

    if (pec_lib_init(why, sizeof(why)) < 0) {
        snprintf(err, errlen, "library initialisation failed: %s", why);
        return -1;
    }
    rt->signer = pec_signer_load(cfg->sign_cert, cfg->sign_chain, cfg->sign_key, cfg->sign_digest,
                                 why, sizeof(why));
    if (rt->signer == NULL) {
        /* the message starts with the file at fault, the key or the certificate */
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    rt->trust = pec_trust_load(cfg->trust_anchors, why, sizeof(why));
    if (rt->trust == NULL) {
        snprintf(err, errlen, "trust_anchors: %s", why);
        return -1;
    }
    rt->dir = pec_directory_open(cfg, rt->trust, rt->signer, why, sizeof(why));
    if (rt->dir == NULL || pec_directory_load(rt->dir, 1, &rt->index_load, why, sizeof(why)) < 0) {
        /* the message starts with the key at fault */
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (pec_clock_init(&rt->clock, cfg->timezone, cfg->fixed_clock, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "timezone/fixed_clock: %s", why);
        return -1;
    }
    if (pec_ident_init(&rt->ident, (unsigned long)cfg->node_id, cfg->domains.v[0], &rt->clock, why,
                       sizeof(why)) < 0) {
        snprintf(err, errlen, "node_id/domains: %s", why);
        return -1;
    }
    if (runtime_check_cert(rt, err, errlen) < 0)
        return -1;
    rt->issuer.provider_name = cfg->provider_name;
    rt->issuer.service_address = cfg->service_address;
    rt->issuer.signer = rt->signer;
    rt->issuer.clock = &rt->clock;
    rt->issuer.ident = &rt->ident;
    rt->issuer.spool_dir = cfg->spool_dir[0] != '\0' ? cfg->spool_dir : NULL;
    rt->issuer.spool_mem_limit = 1024 * 1024;
    return 0;
}

struct runtime *runtime_load(const char *config, char *err, size_t errlen)
{
    struct pec_config *cfg = pec_config_load(config, err, errlen);
    struct runtime *rt;

    if (cfg == NULL)
        return NULL;
    if (runtime_check_files(cfg, err, errlen) < 0) {
        pec_config_unref(cfg);
        return NULL;
    }
    rt = xcalloc(1, sizeof(*rt));
    rt->refs = 1;
    rt->cfg = cfg;
    if (load_objects(rt, err, errlen) < 0) {
        runtime_free(rt);
        return NULL;
    }
    pthread_mutex_lock(&current_lock);
    rt->store = shared_store;
    pthread_mutex_unlock(&current_lock);
    return rt;
}

int runtime_store_open(struct runtime *rt, char *err, size_t errlen)
{
    char why[1024];
    struct pec_store *st = pec_store_open(rt->cfg->store, 0, why, sizeof(why));

    if (st == NULL) {
        snprintf(err, errlen, "store: %s", why);
        return -1;
    }
    {
        char node[32];

        snprintf(node, sizeof(node), "%lld", rt->cfg->node_id);
        pec_store_set_node(st, node);
    }
    if (pec_store_claim_node(st, rt->cfg->node_id, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "store: %s", why);
        pec_store_close(st);
        return -1;
    }
    pthread_mutex_lock(&current_lock);
    shared_store = st;
    free(shared_store_spec);
    shared_store_spec = xstrdup(rt->cfg->store);
    rt->store = st;
    pthread_mutex_unlock(&current_lock);
    return 0;
}

void runtime_store_close(void)
{
    struct pec_store *st;

    pthread_mutex_lock(&current_lock);
    st = shared_store;
    shared_store = NULL;
    free(shared_store_spec);
    shared_store_spec = NULL;
    pthread_mutex_unlock(&current_lock);
    pec_store_close(st);
}

struct runtime *runtime_get(void)
{
    struct runtime *rt;

    pthread_mutex_lock(&current_lock);
    rt = current;
    if (rt)
        rt->refs++;
    pthread_mutex_unlock(&current_lock);
    return rt;
}

void runtime_put(struct runtime *rt)
{
    int last;

    if (rt == NULL)
        return;
    pthread_mutex_lock(&current_lock);
    last = --rt->refs == 0;
    pthread_mutex_unlock(&current_lock);
    if (!last)
        return;
    runtime_free(rt);
}

void runtime_set(struct runtime *rt)
{
    struct runtime *old;

    pthread_mutex_lock(&current_lock);
    old = current;
    current = rt;
    pthread_mutex_unlock(&current_lock);
    runtime_put(old);
}

static void *reloader(void *arg)
{
    const char *config = arg;
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        char err[1024];
        struct runtime *rt;

        if (sigwait(&set, &sig) != 0)
            continue;
        rt = runtime_load(config, err, sizeof(err));
        if (rt == NULL) {
            log_err(NULL, "reload failed, keeping the running configuration: %s", err);
            continue;
        }
        pthread_mutex_lock(&current_lock);
        if (shared_store_spec != NULL && strcmp(shared_store_spec, rt->cfg->store) != 0) {
            char *now = pec_store_display(rt->cfg->store),
                 *kept = pec_store_display(shared_store_spec);
            log_warn(NULL, "store: the configuration now names %s; %s stays in use until restart",
                     now, kept);
            free(now);
            free(kept);
        }
        pthread_mutex_unlock(&current_lock);
        log_set_test_mode(pec_config_is_test(rt->cfg));
        runtime_set(rt);
        log_info(NULL, "configuration reloaded from %s", config);
        runtime_log_index_load(rt);
        if (rt->cert_warning[0] != '\0')
            log_warn(NULL, "%s: %s", rt->cfg->sign_cert, rt->cert_warning);
    }
    return NULL;
}

int runtime_start_reloader(const char *config)
{
    pthread_t tid;

    if (pthread_create(&tid, NULL, reloader, (void *)config) != 0)
        return -1;
    pthread_detach(tid);
    return 0;
}
