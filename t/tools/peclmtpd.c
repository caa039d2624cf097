/*
 * peclmtpd - the delivery point alone, for tests: the LMTP listener of
 * libpec with everything it needs loaded from a pecmilter.conf, as the
 * daemon loads it, but no milter and no injector, so a test can read the
 * receipts from the store's outbox.
 *
 * usage: peclmtpd -c CONFIG [-t TIMEOUT]
 *
 * Listens on lmtp_socket; logs to stderr, one line per event, the queue id
 * (or session name) first; stops cleanly on SIGTERM or SIGINT, letting
 * deliveries in flight finish, and exits 0.  TIMEOUT: seconds of client
 * silence before a session ends (default: the protocol's 300).
 */
#include "provider/conf.h"
#include "provider/deliver.h"
#include "message/ident.h"
#include "message/index.h"
#include "provider/directory.h"
#include "message/libinit.h"
#include "provider/lmtpd.h"
#include "message/pecmsg.h"
#include "message/smime.h"
#include "store/store.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

struct loaded {
    struct pec_config *cfg;
    struct pec_signer *signer;
    struct pec_trust *trust;
    struct pec_directory *dir;
    struct pec_index *index;
    struct pec_store *store;
    struct pec_clock clock;
    struct pec_ident ident;
    struct pec_issuer issuer;
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_line(int prio, const char *qid, const char *text)
{
    static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                        "warning", "notice", "info", "debug"};
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;

    strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime_r(&now, &tm));
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s peclmtpd %s: %s%s%s\n", stamp, names[prio & 7], qid ? qid : "",
            qid ? ": " : "", text);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "peclmtpd: %s: %s\n", what, why);
    exit(1);
}

static void load(struct loaded *l, const char *config)
{
    struct pec_config *cfg;
    struct pec_dir_report rep;
    char err[1024];

    if (pec_lib_init(err, sizeof(err)) != 0)
        die("libraries", err);
    if ((cfg = l->cfg = pec_config_load(config, err, sizeof(err))) == NULL)
        die(config, err);
    l->signer = pec_signer_load(cfg->sign_cert, cfg->sign_chain, cfg->sign_key, cfg->sign_digest,
                                err, sizeof(err));
    if (l->signer == NULL)
        die("sign_cert/sign_key", err);
    if ((l->trust = pec_trust_load(cfg->trust_anchors, err, sizeof(err))) == NULL)
        die("trust_anchors", err);
    if ((l->dir = pec_directory_open(cfg, l->trust, l->signer, err, sizeof(err))) == NULL ||
        pec_directory_load(l->dir, 1, &rep, err, sizeof(err)) < 0)
        die("index", err);
    l->index = pec_directory_index(l->dir);
    if (pec_clock_init(&l->clock, cfg->timezone, cfg->fixed_clock, err, sizeof(err)) != 0)
        die("timezone/fixed_clock", err);
    if (pec_ident_init(&l->ident, (unsigned long)cfg->node_id, cfg->domains.v[0], &l->clock, err,
                       sizeof(err)) != 0)
        die("node_id/domains", err);
    if ((l->store = pec_store_open(cfg->store, 0, err, sizeof(err))) == NULL)
        die("store", err);
    pec_store_set_log(l->store, log_line);
    l->issuer = (struct pec_issuer){
        .provider_name = cfg->provider_name,
        .service_address = cfg->service_address,
        .signer = l->signer,
        .clock = &l->clock,
        .ident = &l->ident,
        .spool_dir = cfg->spool_dir[0] ? cfg->spool_dir : NULL,
        .spool_mem_limit = 1024 * 1024,
    };
}

static void *acquire(void *arg, struct pec_dp_env *env)
{
    struct loaded *l = arg;

    env->cfg = l->cfg;
    env->issuer = &l->issuer;
    env->trust = l->trust;
    env->index = l->index;
    env->store = l->store;
    env->log = log_line;
    return l;
}

static void release(void *arg, void *token)
{
}

int main(int argc, char **argv)
{
    struct loaded l = {0};
    struct pec_lmtpd *d;
    const char *config = NULL;
    char err[1024];
    sigset_t set;
    int opt, sig, timeout = 0;

    while ((opt = getopt(argc, argv, "c:t:")) != -1) {
        if (opt == 'c') {
            config = optarg;
        } else if (opt == 't') {
            timeout = atoi(optarg);
        } else {
            config = NULL;
            break;
        }
    }
    if (config == NULL || optind != argc) {
        fprintf(stderr, "usage: peclmtpd -c CONFIG [-t TIMEOUT]\n");
        return 2;
    }
    load(&l, config);
    umask((mode_t)strtol(l.cfg->umask, NULL, 8));
    if ((d = pec_lmtpd_listen(l.cfg->lmtp_socket, err, sizeof(err))) == NULL)
        die("lmtp_socket", err);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (pec_lmtpd_start(d,
                        &(struct pec_lmtpd_hooks){.acquire = acquire,
                                                  .release = release,
                                                  .arg = &l,
                                                  .log = log_line,
                                                  .timeout = timeout},
                        err, sizeof(err)) != 0)
        die("lmtp", err);
    log_line(LOG_INFO, NULL, "listening");
    while (sigwait(&set, &sig) != 0)
        ;
    log_line(LOG_INFO, NULL, "stopping");
    pec_lmtpd_stop(d);
    pec_store_close(l.store);
    pec_index_free(l.index);
    pec_directory_close(l.dir);
    pec_trust_free(l.trust);
    pec_signer_free(l.signer);
    pec_config_unref(l.cfg);
    return 0;
}
