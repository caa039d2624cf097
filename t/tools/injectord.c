/*
 * injectord - a stand-in for pecmilter's store side, for the outbox tests.
 *
 *   injectord -c CONF enqueue N RCPT[,RCPT...] [-p PREFIX] [-a EPOCH -s STEP] [-S]
 *   injectord -c CONF run [-n N -r RCPT[,RCPT...] -p PREFIX -e MS] [-S]
 *
 * enqueue commits N events the way the access point will: each one batch
 * with a transaction, a generated message in the outbox (Message-ID
 * PREFIX.I@domain of the service address) and two log records (at EPOCH +
 * I*STEP when -a is given, else now).  run starts the injector (lib/inject)
 * on the configured store and target, logging to stderr, until SIGTERM; with
 * -n it also produces events itself, one every MS milliseconds, continuing
 * after a restart with the first event not yet in the store, so a test can
 * kill -9 it at any moment.  With -S the generated message is a real
 * ricevuta di accettazione signed with the configured key (lib/message/notice.h),
 * with a Message-ID of the provider's generator instead of PREFIX.I@domain:
 * what pecmilter's delivery point verifies and delivers once per mailbox.
 */
#include "util/clock.h"
#include "provider/conf.h"
#include "message/ident.h"
#include "provider/inject.h"
#include "message/notice.h"
#include "store/registro.h"
#include "message/smime.h"
#include "store/store.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

struct opts {
    const char *config;
    long n;
    char *rcpt;
    const char *prefix;
    time_t at;
    long step;
    long every_ms;
    int sign;
};

static struct pec_config *cfg;
static struct pec_store *st;
static atomic_int stop_producing;
static struct pec_clock clock_;
static struct pec_ident ident;
static struct pec_issuer issuer; /* with -S */

static void to_stderr(int prio, const char *qid, const char *text)
{
    char stamp[32];
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
    fprintf(stderr, "%s.%06ld injectord[%d]: %s%s%s\n", stamp, ts.tv_nsec / 1000, prio,
            qid && *qid ? qid : "", qid && *qid ? ": " : "", text);
    fflush(stderr);
}

static const char *domain(void)
{
    return strchr(cfg->service_address, '@') + 1;
}

/* Recipients "a,b,c" as a vector (pointing into RCPT, which is modified). */
static size_t split(char *rcpt, const char **v, size_t max)
{
    size_t n = 0;

    for (char *tok = strtok(rcpt, ","); tok && n < max; tok = strtok(NULL, ","))
        v[n++] = tok;
    return n;
}

/* The generated message of event I: CRLF, a dot-led line to stuff, 8-bit text. */
static char *message(const char *msgid, const char *const *to, size_t nto, long i, time_t when)
{
    char date[64];
    struct tm tm;

    gmtime_r(&when, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    return xasprintf("Message-ID: <%s>\r\nDate: %s\r\nFrom: %s\r\nTo: %s%s\r\n"
                     "Subject: ACCETTAZIONE: prova %ld\r\nX-Ricevuta: accettazione\r\n"
                     "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n\r\n"
                     "Ricevuta di accettazione numero %ld\r\n.a line that starts with a dot\r\n"
                     "..and one with two\r\n.\r\nperch\xe8 s\xec\r\n",
                     msgid, date, cfg->service_address, to[0], nto > 1 ? ", ..." : "", i, i);
}

/* Commit event I (one batch); its Message-ID goes to SAY when not NULL. */
static int event(const struct opts *o, long i, FILE *say, char *err, size_t errlen)
{
    const char *to[16];
    char *rcpt = xstrdup(o->rcpt);
    size_t nto = split(rcpt, to, 16);
    char *id = xasprintf("opec.%s.%ld@%s", o->prefix, i, domain());
    char *msgid = xasprintf("%s.%ld@%s", o->prefix, i, domain());
    time_t when = o->at ? o->at + i * o->step : time(NULL);
    char *msg = NULL;
    struct pec_built built = {0};
    struct pec_spool *sp = NULL;
    struct pec_tx_rcpt tr[16];
    struct pec_outmsg out = {msgid, id, "accettazione", to, nto, NULL, 0};
    struct pec_tx tx = {id, "client@mua", "mario@pec-a.test", "prova", "completa", "", when,
                        tr, nto,          "mario@pec-a.test"};
    struct pec_batch *b = pec_batch_new();
    struct pec_record r;
    char *dest;
    struct pec_dest d[16];
    int rc;

    for (size_t k = 0; k < nto; k++) {
        tr[k] = (struct pec_tx_rcpt){to[k], 1, k > 0};
        d[k] = (struct pec_dest){to[k], 1};
    }
    if (o->sign) {
        struct pec_destinatario dd[16];
        struct pec_daticert f = {.mittente = "mario@pec-a.test",
                                 .destinatari = dd,
                                 .n_destinatari = nto,
                                 .risposte = "mario@pec-a.test",
                                 .oggetto = "prova",
                                 .identificativo = id};
        for (size_t k = 0; k < nto; k++)
            dd[k] = (struct pec_destinatario){(char *)to[k], PEC_DEST_CERTIFICATO};
        if (pec_build_notice(
                &issuer,
                &(struct pec_notice){
                    .kind = PEC_NOTICE_ACCETTAZIONE, .facts = &f, .to = to[0], .when = when},
                &built, err, errlen) != 0) {
            free(msgid);
            free(id);
            free(rcpt);
            return -1;
        }
        sp = pec_spool_new(NULL, SIZE_MAX);
        if (pec_built_to_spool(&built, sp) != 0 || pec_spool_mem(sp) == NULL) {
            snprintf(err, errlen, "cannot serialise the accettazione");
            pec_spool_free(sp);
            pec_built_free(&built);
            free(msgid);
            free(id);
            free(rcpt);
            return -1;
        }
        free(msgid);
        msgid = xstrdup(built.message_id);
        out.message_id = msgid;
        out.data = pec_spool_mem(sp);
        out.len = pec_spool_size(sp);
    } else {
        msg = message(msgid, to, nto, i, when);
        out.data = (unsigned char *)msg;
        out.len = strlen(msg);
    }
    dest = pec_destinatari_format(d, nto);
    pec_batch_tx(b, &tx);
    pec_batch_outbox(b, &out);
    pec_record_init(&r, PEC_REG_BUSTA_TRASPORTO, PEC_REG_EMISSIONE, when, id);
    r.mittente = tx.mittente;
    r.destinatari = dest;
    r.oggetto = "prova";
    r.gestore = cfg->provider_name;
    r.tipo_ricevuta = "completa";
    pec_batch_record(b, &r);
    pec_record_init(&r, PEC_REG_ACCETTAZIONE, PEC_REG_EMISSIONE, when, id);
    r.mittente = tx.mittente;
    r.destinatari = dest;
    r.oggetto = "prova";
    r.message_id = msgid;
    r.gestore = cfg->provider_name;
    pec_batch_record(b, &r);
    rc = pec_store_commit(st, b, err, errlen);
    if (rc == 0 && say != NULL)
        fprintf(say, "%s\n", msgid);
    pec_batch_free(b);
    pec_spool_free(sp);
    if (o->sign)
        pec_built_free(&built);
    free(dest);
    free(msg);
    free(msgid);
    free(id);
    free(rcpt);
    return rc;
}

static int enqueue(const struct opts *o)
{
    char err[1024];

    for (long i = 0; i < o->n; i++) {
        if (event(o, i, stdout, err, sizeof(err)) < 0) {
            fprintf(stderr, "injectord: %s\n", err);
            return 1;
        }
    }
    return 0;
}

/* The first event of this prefix not in the store yet. */
static long first_missing(const struct opts *o)
{
    struct pec_tx_info tx;
    char err[1024];
    long i;

    for (i = 0; i < o->n; i++) {
        char *id = xasprintf("opec.%s.%ld@%s", o->prefix, i, domain());
        int rc = pec_store_tx_get(st, id, &tx, err, sizeof(err));
        free(id);
        if (rc != 1)
            break;
        pec_tx_info_free(&tx);
    }
    return i;
}

static void *producer(void *arg)
{
    const struct opts *o = arg;
    struct timespec pause = {o->every_ms / 1000, (o->every_ms % 1000) * 1000000};
    char err[1024], line[1200];

    for (long i = first_missing(o); i < o->n && !stop_producing; i++) {
        while (event(o, i, NULL, err, sizeof(err)) < 0 && !stop_producing) {
            to_stderr(LOG_ERR, NULL, err);
            sleep(1);
        }
        snprintf(line, sizeof(line), "produced event %ld", i);
        to_stderr(LOG_DEBUG, NULL, line);
        nanosleep(&pause, NULL);
    }
    to_stderr(LOG_INFO, NULL, "producer done");
    return NULL;
}

static int run(struct opts *o)
{
    struct pec_injector_conf ic = {.reinject = cfg->reinject,
                                   .mail_from = cfg->service_address,
                                   .node = cfg->node_id,
                                   .max_backoff = (int)cfg->outbox_retry_max_backoff,
                                   .sessions = (int)cfg->reinject_sessions,
                                   .log = to_stderr};
    struct pec_injector *inj;
    pthread_t prod;
    sigset_t set;
    char err[1024];
    int sig;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    inj = pec_injector_start(&ic, st, err, sizeof(err));
    if (inj == NULL) {
        fprintf(stderr, "injectord: %s\n", err);
        return 1;
    }
    to_stderr(LOG_INFO, NULL, "running");
    if (o->n > 0 && pthread_create(&prod, NULL, producer, o) != 0) {
        fprintf(stderr, "injectord: cannot start the producer\n");
        return 1;
    }
    sigwait(&set, &sig);
    to_stderr(LOG_INFO, NULL, "stopping");
    stop_producing = 1;
    if (o->n > 0)
        pthread_join(prod, NULL);
    pec_injector_stop(inj);
    to_stderr(LOG_INFO, NULL, "stopped");
    return 0;
}

/* The provider of the configuration as the issuer of -S messages: 0, or -1 with err. */
static int load_issuer(char *err, size_t errlen)
{
    struct pec_signer *signer;

    if (pec_clock_init(&clock_, cfg->timezone, cfg->fixed_clock, err, errlen) < 0 ||
        pec_ident_init(&ident, (unsigned long)cfg->node_id, cfg->domains.v[0], &clock_, err,
                       errlen) < 0)
        return -1;
    signer = pec_signer_load(cfg->sign_cert, cfg->sign_chain, cfg->sign_key, "sha256", err, errlen);
    if (signer == NULL)
        return -1;
    issuer = (struct pec_issuer){.provider_name = cfg->provider_name,
                                 .service_address = cfg->service_address,
                                 .signer = signer,
                                 .clock = &clock_,
                                 .ident = &ident,
                                 .spool_mem_limit = 1 << 20};
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: injectord -c CONF enqueue N RCPT[,RCPT] [-p PREFIX] [-a EPOCH -s STEP] [-S]\n"
            "       injectord -c CONF run [-n N -r RCPT[,RCPT] -p PREFIX -e MS] [-S]\n");
    return 64;
}

int main(int argc, char **argv)
{
    struct opts o = {.prefix = "t", .step = 60, .every_ms = 20};
    const char *cmd;
    char err[1024];
    int opt, rc;

    while ((opt = getopt(argc, argv, "c:n:r:p:a:s:e:S")) != -1) {
        switch (opt) {
        case 'c':
            o.config = optarg;
            break;
        case 'n':
            o.n = atol(optarg);
            break;
        case 'r':
            o.rcpt = optarg;
            break;
        case 'p':
            o.prefix = optarg;
            break;
        case 'a':
            o.at = (time_t)atoll(optarg);
            break;
        case 's':
            o.step = atol(optarg);
            break;
        case 'e':
            o.every_ms = atol(optarg);
            break;
        case 'S':
            o.sign = 1;
            break;
        default:
            return usage();
        }
    }
    if (o.config == NULL || optind >= argc)
        return usage();
    cmd = argv[optind];
    if (strcmp(cmd, "enqueue") == 0) {
        if (argc - optind != 3)
            return usage();
        o.n = atol(argv[optind + 1]);
        o.rcpt = argv[optind + 2];
    } else if (strcmp(cmd, "run") != 0 || argc - optind != 1 || (o.n > 0 && o.rcpt == NULL)) {
        return usage();
    }
    cfg = pec_config_load(o.config, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "injectord: %s\n", err);
        return 78;
    }
    if (o.sign && load_issuer(err, sizeof(err)) != 0) {
        fprintf(stderr, "injectord: %s\n", err);
        pec_config_unref(cfg);
        return 78;
    }
    st = pec_store_open(cfg->store, 0, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "injectord: %s\n", err);
        pec_config_unref(cfg);
        return 74;
    }
    pec_store_set_log(st, to_stderr);
    rc = strcmp(cmd, "enqueue") == 0 ? enqueue(&o) : run(&o);
    pec_store_close(st);
    if (issuer.signer != NULL)
        pec_signer_free((struct pec_signer *)issuer.signer);
    pec_config_unref(cfg);
    return rc;
}
