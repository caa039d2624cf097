/*
 * pecmilter - a milter and LMTP server that makes an MTA a PEC provider.
 *
 * main() loads and checks everything before it opens a socket, so a bad
 * configuration, certificate or key is one line on stderr and a non-zero
 * exit, never a half-started daemon.  Start-up order: configuration and the
 * files it names (as root if need be), the milter and LMTP sockets, then
 * the privilege drop to `user`, the store (opened as `user`, so its files are
 * the daemon's; checked before detaching, so a bad store is a line on
 * stderr), then the outbox injector, the LMTP delivery point, the scheduler
 * (timeout notices, daily seal and purge) and the milter loop.  SIGTERM and
 * SIGINT stop cleanly (libmilter's own signal thread): the scheduler ends
 * its round, deliveries in progress queue their receipts, the injector lets
 * the message in flight get its answer, then the store is closed.  SIGUSR1
 * reloads.
 */
#include "callbacks.h"
#include "provider/conf.h"
#include "injector.h"
#include "lmtp.h"
#include "log.h"
#include "runtime.h"
#include "scheduler.h"
#include "selfcheck.h"
#include "util/sock.h"

#include <errno.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/pecmilter/pecmilter.conf"

static void usage(FILE *out)
{
    fprintf(out, "usage: pecmilter [-f] [-n] [-c config] [-V]\n"
                 "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
                 "  -f       stay in the foreground and log to stderr\n"
                 "  -n       check the configuration and the files it names, print the\n"
                 "           effective configuration, and exit\n"
                 "  -V       print the version and exit\n");
}

static int drop_privileges(const char *user)
{
    struct passwd *pw;

    if (*user == '\0')
        return 0;
    pw = getpwnam(user);
    if (pw == NULL) {
        fprintf(stderr, "pecmilter: user: no such user \"%s\"\n", user);
        return -1;
    }
    /* already that user (systemd's User=): nothing to drop, and no right to */
    if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
        return 0;
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "pecmilter: cannot become user %s: %s\n", user, strerror(errno));
        return -1;
    }
    return 0;
}

/* libmilter leaves its unix socket behind; a stale one misleads monitoring. */
static void remove_socket(const char *spec)
{
    const char *path = NULL;

    if (strncmp(spec, "unix:", 5) == 0)
        path = spec + 5;
    else if (strncmp(spec, "local:", 6) == 0)
        path = spec + 6;
    else if (spec[0] == '/')
        path = spec;
    if (path && unlink(path) != 0 && errno != ENOENT)
        log_warn(NULL, "cannot remove %s: %s", path, strerror(errno));
}

/*
 * libmilter's stop flag (its signal.c; 0 while running).  Not in mfapi.h, but
 * exported by libmilter since 8.10 and what smfi_stop() and the signal thread set.
 */
extern int mi_stop(void);

/*
 * Once libmilter has been told to stop (SIGTERM, SIGINT, SIGHUP), its listener
 * notices only when its select() on the milter socket returns: at the next
 * connection or after up to five seconds (MI_CHK_TIME), holding the mutex the
 * stop waits for all along.  The waker watches the flag and then connects to
 * the socket itself until the loop has ended, so a stop takes a fraction of a
 * second; the connection it makes closes at once, before any milter command.
 */
static atomic_int milter_loop_done;

static void *listener_waker(void *arg)
{
    const char *spec = arg;
    const struct timespec tick = {0, 50 * 1000 * 1000};
    char err[256];

    while (!atomic_load(&milter_loop_done) && mi_stop() == 0)
        nanosleep(&tick, NULL);
    while (!atomic_load(&milter_loop_done)) {
        int fd = pec_sock_connect(spec, 1, err, sizeof(err));

        if (fd >= 0)
            close(fd);
        nanosleep(&tick, NULL);
    }
    return NULL;
}

static int parse_umask(const char *text, mode_t *out)
{
    char *end;
    long v = strtol(text, &end, 8);

    if (*text == '\0' || *end != '\0' || v < 0 || v > 0777)
        return -1;
    *out = (mode_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = DEFAULT_CONFIG;
    int foreground = 0, check_only = 0, opt;
    char err[1024], *shown;
    struct runtime *rt;
    struct pec_config *cfg;
    sigset_t set;
    mode_t mask;
    int rc, waker_started;
    pthread_t waker;

    while ((opt = getopt(argc, argv, "c:fnVh")) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'n':
            check_only = 1;
            break;
        case 'V':
            printf("pecmilter %s\n", PECMILTER_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 64;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 64;
    }

    rt = runtime_load(config, err, sizeof(err));
    if (rt == NULL) {
        fprintf(stderr, "pecmilter: %s\n", err);
        return PEC_EX_CONFIG;
    }
    cfg = rt->cfg;
    if (parse_umask(cfg->umask, &mask) < 0) {
        fprintf(stderr, "pecmilter: %s: umask: \"%s\" is not an octal mode\n", config, cfg->umask);
        return PEC_EX_CONFIG;
    }
    if (check_only) {
        if (selfcheck(rt, err, sizeof(err)) < 0) {
            fprintf(stderr, "pecmilter: %s\n", err);
            runtime_put(rt);
            return PEC_EX_CONFIG;
        }
        pec_config_print(cfg, stdout);
        printf("# signer: %s <%s>, sha1 %s\n", pec_signer_subject(rt->signer),
               pec_signer_address(rt->signer), pec_signer_cert_sha1(rt->signer));
        {
            struct pec_index *idx = runtime_index(rt);

            for (int i = 0; i < rt->index_load.nwarnings; i++)
                printf("# warning: %s\n", rt->index_load.warning[i]);
            printf("# providers' index: %zu providers, %zu CRLs, from %s\n", pec_index_count(idx),
                   rt->index_load.crls, cfg->index_source);
            pec_index_free(idx);
        }
        rc = selfcheck_antivirus(cfg, err, sizeof(err));
        printf("# %santivirus: %s\n", rc < 0 ? "warning: " : "", err);
        printf("# %s: OK\n", config);
        runtime_put(rt);
        return 0;
    }
    if (log_open("pecmilter", foreground, cfg->syslog_facility) < 0) {
        fprintf(stderr, "pecmilter: syslog_facility: unknown facility %s\n", cfg->syslog_facility);
        return PEC_EX_CONFIG;
    }
    log_set_test_mode(pec_config_is_test(cfg));
    if (pec_config_is_test(cfg))
        log_warn(NULL, "test_mode = \"yes\": the settings the PEC rules fix may differ "
                       "(fixed_clock, deadlines, retention): not a production provider");
    if (rt->cert_warning[0] != '\0')
        log_warn(NULL, "%s: %s", cfg->sign_cert, rt->cert_warning);
    runtime_log_index_load(rt);
    if (selfcheck_antivirus(cfg, err, sizeof(err)) < 0 || strcmp(cfg->antivirus, "none") == 0)
        log_warn(NULL, "antivirus: %s", err);
    else
        log_info(NULL, "antivirus: %s", err);

    if (smfi_register(*callbacks_descriptor()) != MI_SUCCESS) {
        fprintf(stderr, "pecmilter: smfi_register failed\n");
        return 70;
    }
    if (smfi_setconn(cfg->milter_socket) != MI_SUCCESS) {
        fprintf(stderr, "pecmilter: milter_socket: cannot use \"%s\"\n", cfg->milter_socket);
        return PEC_EX_CONFIG;
    }
    signal(SIGPIPE, SIG_IGN);
    /*
     * Block the signals before any thread exists, so every thread inherits
     * the mask: libmilter's signal thread then takes SIGTERM/SIGINT/SIGHUP
     * (clean stop) and the reloader takes SIGUSR1.  A thread without the
     * mask would let SIGTERM kill the process outright.  Blocked before the
     * socket listens, too: whoever sees it accept may send SIGTERM at once,
     * and it must wait, pending, for the clean stop.
     */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    umask(mask);
    if (smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "pecmilter: milter_socket: cannot open %s: %s\n", cfg->milter_socket,
                strerror(errno));
        return 71;
    }
    /* the delivery point's socket too is opened before the privilege drop */
    if (lmtp_open(cfg) < 0) {
        remove_socket(cfg->milter_socket);
        return 71;
    }
    if (drop_privileges(cfg->user) < 0)
        return 71;
    if (runtime_store_open(rt, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecmilter: %s\n", err);
        remove_socket(cfg->milter_socket);
        runtime_put(rt); /* nothing left behind: a sanitizer build would exit 1, not 73 */
        return 73;
    }
    if (!foreground) {
        /* SQLite's locks belong to the process that took them: reopen in the child */
        runtime_store_close();
        if (daemon(0, 0) != 0) {
            fprintf(stderr, "pecmilter: cannot detach: %s\n", strerror(errno));
            return 71;
        }
        if (runtime_store_open(rt, err, sizeof(err)) < 0) {
            log_err(NULL, "%s", err);
            remove_socket(cfg->milter_socket);
            return 73;
        }
    }

    /* our own reference: a reload may retire RT while we still need these settings */
    pec_config_ref(cfg);
    runtime_set(rt);
    if (injector_start(cfg, rt->store) < 0) {
        remove_socket(cfg->milter_socket);
        return 71;
    }
    if (lmtp_start(rt->store) < 0) {
        lmtp_stop();
        injector_stop();
        remove_socket(cfg->milter_socket);
        return 71;
    }
    if (scheduler_start() < 0) {
        lmtp_stop();
        injector_stop();
        remove_socket(cfg->milter_socket);
        return 71;
    }
    if (runtime_start_reloader(config) != 0) {
        log_err(NULL, "cannot start the reload thread");
        return 71;
    }

    shown = pec_store_display(cfg->store);
    log_info(NULL, "pecmilter %s starting: milter on %s, LMTP on %s, store %s", PECMILTER_VERSION,
             cfg->milter_socket, cfg->lmtp_socket, shown);
    free(shown);
    waker_started = pthread_create(&waker, NULL, listener_waker, (void *)cfg->milter_socket) == 0;
    rc = smfi_main();
    atomic_store(&milter_loop_done, 1);
    if (waker_started)
        pthread_join(waker, NULL);
    log_info(NULL, "pecmilter stopping");
    remove_socket(cfg->milter_socket);
    /* deliveries in progress queue their receipts before the injector and store go */
    scheduler_stop();
    lmtp_stop();
    injector_stop();
    runtime_set(NULL);
    runtime_store_close();
    pec_config_unref(cfg);
    log_close();
    return rc == MI_SUCCESS ? 0 : 1;
}
