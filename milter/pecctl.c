/*
 * pecctl - the operator's view of pecmilter's store: the legal log, the
 * outbox, transactions, the quarantine.
 *
 * It reads the daemon's own configuration (-c, same default), opens the
 * store it names without ever creating one, and works beside a running
 * daemon: reads never block it, and the few writes (seal, purge, retry)
 * are short transactions the daemon's busy timeout absorbs.
 *
 * Exit status: 0 done; 1 the log does not verify, or no such transaction;
 * 64 usage; 74 the store or a file could not be read or written; 78 the
 * configuration.  See pecctl(8).
 */
#include "util/clock.h"
#include "provider/conf.h"
#include "store/quarantine.h"
#include "store/registro.h"
#include "message/smime.h"
#include "store/store.h"
#include "util/xalloc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pecctl.h"

void usage(FILE *out)
{
    fprintf(out,
            "usage: pecctl [-c config] command\n"
            "  log [--id ID] [--sender ADDR] [--recipient ADDR] [--since T] [--until T] [--json]\n"
            "  log verify             check the hash chain and every daily seal\n"
            "  log seal               seal every finished day not sealed yet\n"
            "  log purge              remove sealed days older than retention_months, and\n"
            "                         infected messages older than virus_retention_months\n"
            "  outbox                 depth, oldest message, failures with their last error\n"
            "  outbox retry ID|all    send failed messages again\n"
            "  tx IDENTIFICATIVO      a transaction and its recipients' states\n"
            "  store check            full integrity check of the store file\n"
            "  store copy FROM TO     copy a store into a new one (SQLite file to PostgreSQL)\n"
            "  audit [--since T] [--json]  check the log against the PEC invariants\n"
            "  status [--json]        daemon, clamd, outbox, pending receipts, deadlines, "
            "certificate\n"
            "  index record [--sign]  our record of the providers' index (LDIF, or the .p7m)\n"
            "  index show             the copy of the providers' index in use\n"
            "  tls-policy [--format postfix|sendmail] [-o FILE]\n"
            "                         the MTA's TLS policy table: TLS towards every domain of\n"
            "                         the other providers in the index\n"
            "  quarantine list [--json]  the infected messages kept (quarantine_dir)\n"
            "  quarantine show ID     what is known of one\n"
            "  quarantine export ID   its bytes, as received, on standard output\n"
            "  mailbox list           the Maildir mailboxes, with their messages\n"
            "  mailbox add ADDR...    make mailboxes (nothing makes one at a delivery)\n"
            "  mailbox del ADDR...    remove them, their messages moved aside\n"
            "  mailbox check ADDR...  does each exist (Maildir, or the LMTP server)?\n"
            "T: YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] (local time, Z for UTC) or @EPOCH\n");
}

const char *local_time(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (t == 0)
        snprintf(buf, len, "-");
    else if (localtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
        snprintf(buf, len, "@%lld", (long long)t);
    return buf;
}

int ctl_options(const char *cmd, int argc, char **argv, const char *allowed, struct ctl_opts *o)
{
    static const struct option all[] = {
        {"id", required_argument, NULL, 'i'},        {"sender", required_argument, NULL, 's'},
        {"recipient", required_argument, NULL, 'r'}, {"since", required_argument, NULL, 'S'},
        {"until", required_argument, NULL, 'U'},     {"json", no_argument, NULL, 'j'},
    };
    /* only the command's own: getopt_long then refuses the others, by name */
    struct option opts[sizeof(all) / sizeof(all[0]) + 1];
    size_t n = 0;
    int opt;

    memset(o, 0, sizeof(*o));
    memset(opts, 0, sizeof(opts));
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strchr(allowed, all[i].val) != NULL)
            opts[n++] = all[i];
    optind = 0; /* GNU getopt: start over, at argv[1] */
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'i':
            o->id = optarg;
            break;
        case 's':
            o->sender = optarg;
            break;
        case 'r':
            o->recipient = optarg;
            break;
        case 'S':
        case 'U':
            if (parse_time(optarg, opt == 'S' ? &o->since : &o->until) < 0) {
                fprintf(stderr, "pecctl: %s: \"%s\" is not a time\n", cmd, optarg);
                return EX_USAGE;
            }
            break;
        case 'j':
            o->json = 1;
            break;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }
    return 0;
}

void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* "2024-01-31", "2024-01-31 10:00[:00]", T instead of the space, Z for UTC, "@EPOCH". */
int parse_time(const char *s, time_t *out)
{
    struct tm tm;
    char *end;
    int n = 0, utc = 0;

    if (s[0] == '@') {
        long long v = strtoll(s + 1, &end, 10);
        if (end == s + 1 || *end != '\0')
            return -1;
        *out = (time_t)v;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3)
        return -1;
    s += n;
    if ((*s == ' ' || *s == 'T') && sscanf(s + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &n) == 2) {
        s += 1 + n;
        if (*s == ':' && sscanf(s + 1, "%2d%n", &tm.tm_sec, &n) == 1)
            s += 1 + n;
    }
    if (*s == 'Z') {
        utc = 1;
        s++;
    }
    if (*s != '\0')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    *out = utc ? timegm(&tm) : mktime(&tm);
    return *out == (time_t)-1 ? -1 : 0;
}

/* ---------------------------------------------------------------- log */

static int print_record(const struct pec_record *r, void *arg)
{
    int json = *(int *)arg;
    char when[40], *text;

    if (json) {
        text = pec_record_json(r);
        printf("%s\n", text);
    } else {
        text = pec_record_line(r);
        printf("%s #%lld %s\n", local_time(r->at, when, sizeof(when)), r->seq, text);
    }
    free(text);
    return 0;
}

static int log_query(struct ctl *c, int argc, char **argv)
{
    struct pec_log_filter f;
    struct ctl_opts o;
    char err[1024];
    int json;

    if (ctl_options("log", argc, argv, "isrSUj", &o) != 0)
        return EX_USAGE;
    memset(&f, 0, sizeof(f));
    f.identificativo = o.id;
    f.mittente = o.sender;
    f.destinatario = o.recipient;
    f.since = o.since;
    f.until = o.until;
    json = o.json;
    if (pec_store_log_each(c->st, &f, print_record, &json, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: %s\n", err);
        return EX_IOERR;
    }
    return 0;
}

static int log_verify(struct ctl *c)
{
    struct pec_registro_report rep;
    struct pec_trust *trust;
    char err[1024];
    int rc;

    trust = pec_trust_load(c->cfg->trust_anchors, err, sizeof(err));
    if (trust == NULL) {
        fprintf(stderr, "pecctl: trust_anchors: %s\n", err);
        return EX_IOERR;
    }
    rc = pec_registro_verify(c->st, c->cfg->seal_dir, trust, c->cfg->service_address, &rep);
    pec_trust_free(trust);
    if (rc < 0) {
        fprintf(stderr, "pecctl: log verify: %s\n", rep.problem);
        return EX_IOERR;
    }
    if (rc > 0) {
        printf("log verify: FAILED: %s\n", rep.problem);
        return 1;
    }
    if (rep.records == 0)
        printf("log verify: OK: no records, %d seals\n", rep.seals);
    else
        printf("log verify: OK: %lld records (#%lld to #%lld), %d seals\n", rep.records,
               rep.first_seq, rep.last_seq, rep.seals);
    return 0;
}

static int log_seal(struct ctl *c)
{
    struct pec_signer *signer;
    char err[1024];
    int n, rc;

    signer = pec_signer_load(c->cfg->sign_cert, c->cfg->sign_chain, c->cfg->sign_key,
                             c->cfg->sign_digest, err, sizeof(err));
    if (signer == NULL) {
        fprintf(stderr, "pecctl: %s\n", err);
        return EX_IOERR;
    }
    rc = pec_registro_seal(c->st, signer, c->cfg->provider_name, c->cfg->seal_dir, time(NULL), &n,
                           err, sizeof(err));
    pec_signer_free(signer);
    printf("log seal: %d day(s) sealed in %s\n", n, c->cfg->seal_dir);
    if (rc < 0) {
        fprintf(stderr, "pecctl: log seal: %s\n", err);
        return EX_IOERR;
    }
    return 0;
}

/* The retention job the daemon runs daily: the log's purge, then the quarantine's. */
static int log_purge(struct ctl *c)
{
    char err[1024];
    long long n;
    time_t now = time(NULL);

    if (pec_registro_purge(c->st, c->cfg->seal_dir, (int)c->cfg->retention_months, now, &n, err,
                           sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: log purge: %s\n", err);
        return EX_IOERR;
    }
    printf("log purge: %lld record(s) older than %lld months removed\n", n,
           c->cfg->retention_months);
    if (pec_quarantine_purge(c->cfg->quarantine_dir, (int)c->cfg->virus_retention_months, now, &n,
                             err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: log purge: quarantine: %s\n", err);
        return EX_IOERR;
    }
    printf("log purge: %lld infected message(s) last seen over %lld months ago removed from %s\n",
           n, c->cfg->virus_retention_months, c->cfg->quarantine_dir);
    return 0;
}

/* ---------------------------------------------------------------- outbox */

static int print_row(const struct pec_outbox_row *row, void *arg)
{
    char when[40], next[40];

    (void)arg;
    printf("  #%lld <%s> %s %s, %s since %s, %d attempt(s)%s\n", row->id, row->message_id,
           row->tipo, row->identificativo, pec_outbox_state_name(row->state),
           local_time(row->created, when, sizeof(when)), row->attempts,
           row->doubts ? ", resent after an unclean stop" : "");
    if (row->state == PEC_OUT_QUEUED && row->next_attempt > time(NULL))
        printf("      next attempt %s\n", local_time(row->next_attempt, next, sizeof(next)));
    if (row->last_error[0])
        printf("      last error: %s\n", row->last_error);
    return 0;
}

static int outbox_show(struct ctl *c)
{
    struct pec_outbox_stats s;
    char err[1024], when[40];

    if (pec_store_outbox_stats(c->st, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: %s\n", err);
        return EX_IOERR;
    }
    printf("outbox: %lld waiting, %lld being sent, %lld sent, %lld failed\n",
           s.count[PEC_OUT_QUEUED], s.count[PEC_OUT_SENDING], s.count[PEC_OUT_SENT],
           s.count[PEC_OUT_FAILED]);
    if (s.oldest_id)
        printf("oldest not sent: #%lld, queued %s (%lld s ago)\n", s.oldest_id,
               local_time(s.oldest_created, when, sizeof(when)),
               (long long)(time(NULL) - s.oldest_created));
    if (s.count[PEC_OUT_FAILED] + s.count[PEC_OUT_QUEUED] + s.count[PEC_OUT_SENDING] == 0)
        return 0;
    printf("not sent:\n");
    if (pec_store_outbox_each(c->st,
                              1u << PEC_OUT_QUEUED | 1u << PEC_OUT_SENDING | 1u << PEC_OUT_FAILED,
                              print_row, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: %s\n", err);
        return EX_IOERR;
    }
    return 0;
}

static int outbox_retry(struct ctl *c, const char *which)
{
    char err[1024], *end;
    long long id = 0;
    int n;

    if (strcmp(which, "all") != 0) {
        id = strtoll(which, &end, 10);
        if (*which == '\0' || *end != '\0' || id <= 0) {
            fprintf(stderr, "pecctl: outbox retry: \"%s\" is neither a row number nor all\n",
                    which);
            return EX_USAGE;
        }
    }
    n = pec_store_outbox_requeue(c->st, id, time(NULL), err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "pecctl: %s\n", err);
        return EX_IOERR;
    }
    printf("outbox retry: %d failed message(s) queued again\n", n);
    return 0;
}

/* ---------------------------------------------------------------- tx */

static int tx_show(struct ctl *c, const char *id)
{
    struct pec_tx_info tx;
    char err[1024], a[40], b[40], d[40];
    int rc = pec_store_tx_get(c->st, id, &tx, err, sizeof(err));

    if (rc < 0) {
        fprintf(stderr, "pecctl: %s\n", err);
        return EX_IOERR;
    }
    if (rc == 0) {
        printf("tx %s: no such transaction\n", id);
        return 1;
    }
    printf("identificativo: %s\nclient Message-ID: %s\nmittente: %s\noggetto: %s\n"
           "tipo_ricevuta: %s\nqueue id: %s\nsubmitted: %s\nrecipients:\n",
           tx.identificativo, tx.client_msgid, tx.mittente, tx.oggetto, tx.tipo_ricevuta,
           tx.queue_id, local_time(tx.submitted, a, sizeof(a)));
    for (size_t i = 0; i < tx.nrcpt; i++) {
        const struct pec_rcpt_info *r = &tx.rcpt[i];
        printf("  %s (%s, %s): %s; sent %s, taken %s, done %s%s%s\n", r->address,
               r->certificato ? "certificato" : "esterno", r->cc ? "Cc" : "To",
               pec_rcpt_state_name(r->state), local_time(r->sent_at, a, sizeof(a)),
               local_time(r->taken_at, b, sizeof(b)), local_time(r->done_at, d, sizeof(d)),
               r->detail[0] ? ": " : "", r->detail);
    }
    pec_tx_info_free(&tx);
    return 0;
}

static int store_check(struct ctl *c)
{
    char err[1024], *shown;

    if (pec_store_check(c->st, err, sizeof(err)) < 0) {
        printf("store check: FAILED: %s\n", err);
        return 1;
    }
    shown = pec_store_display(c->cfg->store);
    printf("store check: %s: OK\n", shown);
    free(shown);
    return 0;
}

/*
 * pecctl store copy FROM TO: the provider's store moved, say from its
 * SQLite file to the PostgreSQL database several nodes will share.  TO is
 * created (its tables; a database must exist) and must hold nothing yet.
 */
static int store_copy(const char *from_spec, const char *to_spec)
{
    struct pec_store *from, *to = NULL;
    char err[1024], *from_shown = pec_store_display(from_spec),
                    *to_shown = pec_store_display(to_spec);
    long long rows = 0;
    int rc = 1;

    from = pec_store_open(from_spec, PEC_STORE_NOCREATE, err, sizeof(err));
    if (from != NULL)
        to = pec_store_open(to_spec, 0, err, sizeof(err));
    if (from != NULL && to != NULL && pec_store_copy(from, to, &rows, err, sizeof(err)) == 0) {
        printf("store copy: %s -> %s: %lld rows\n", from_shown, to_shown, rows);
        rc = 0;
    } else {
        fprintf(stderr, "pecctl: store copy: %s\n", err);
    }
    pec_store_close(to);
    pec_store_close(from);
    free(from_shown);
    free(to_shown);
    return rc;
}

/* ---------------------------------------------------------------- main */

static int dispatch(struct ctl *c, int argc, char **argv)
{
    const char *cmd = argv[0], *sub = argc > 1 ? argv[1] : NULL;

    if (strcmp(cmd, "log") == 0 && sub && strcmp(sub, "verify") == 0 && argc == 2)
        return log_verify(c);
    if (strcmp(cmd, "log") == 0 && sub && strcmp(sub, "seal") == 0 && argc == 2)
        return log_seal(c);
    if (strcmp(cmd, "log") == 0 && sub && strcmp(sub, "purge") == 0 && argc == 2)
        return log_purge(c);
    if (strcmp(cmd, "log") == 0)
        return log_query(c, argc, argv);
    if (strcmp(cmd, "outbox") == 0 && argc == 1)
        return outbox_show(c);
    if (strcmp(cmd, "outbox") == 0 && argc == 3 && strcmp(sub, "retry") == 0)
        return outbox_retry(c, argv[2]);
    if (strcmp(cmd, "tx") == 0 && argc == 2)
        return tx_show(c, sub);
    if (strcmp(cmd, "store") == 0 && argc == 2 && strcmp(sub, "check") == 0)
        return store_check(c);
    if (strcmp(cmd, "store") == 0 && argc == 4 && strcmp(sub, "copy") == 0)
        return store_copy(argv[2], argv[3]);
    if (strcmp(cmd, "audit") == 0)
        return pecctl_audit(c, argc, argv);
    if (strcmp(cmd, "status") == 0)
        return pecctl_status(c, argc, argv);
    if (strcmp(cmd, "index") == 0 || strcmp(cmd, "tls-policy") == 0)
        return pecctl_index(c, argc, argv);
    if (strcmp(cmd, "quarantine") == 0)
        return pecctl_quarantine(c, argc, argv);
    if (strcmp(cmd, "mailbox") == 0)
        return pecctl_mailbox(c, argc, argv);
    usage(stderr);
    return EX_USAGE;
}

static int known_command(const char *cmd)
{
    return strcmp(cmd, "log") == 0 || strcmp(cmd, "outbox") == 0 || strcmp(cmd, "tx") == 0 ||
           strcmp(cmd, "store") == 0 || strcmp(cmd, "audit") == 0 || strcmp(cmd, "status") == 0 ||
           strcmp(cmd, "index") == 0 || strcmp(cmd, "tls-policy") == 0 ||
           strcmp(cmd, "quarantine") == 0 || strcmp(cmd, "mailbox") == 0;
}

int main(int argc, char **argv)
{
    const char *config = DEFAULT_CONFIG;
    struct pec_clock clock;
    struct ctl c;
    char err[1024];
    int opt, rc, nostore;

    while ((opt = getopt(argc, argv, "+c:hV")) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("pecctl %s\n", PECMILTER_VERSION);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind >= argc || !known_command(argv[optind])) {
        usage(stderr);
        return EX_USAGE;
    }
    c.config_path = config;
    c.cfg = pec_config_load(config, err, sizeof(err));
    if (c.cfg == NULL) {
        fprintf(stderr, "pecctl: %s\n", err);
        return PEC_EX_CONFIG;
    }
    /* the configured zone makes "days" and printed times the provider's legal time */
    if (pec_clock_init(&clock, c.cfg->timezone, "", err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: %s: timezone: %s\n", config, err);
        pec_config_unref(c.cfg);
        return PEC_EX_CONFIG;
    }
    /*
     * The index and the mailboxes need no store: a provider prepares its record, its
     * MTA's TLS policy and its users' mailboxes before it runs; store copy names its two.
     */
    nostore = strcmp(argv[optind], "index") == 0 || strcmp(argv[optind], "tls-policy") == 0 ||
              strcmp(argv[optind], "mailbox") == 0 ||
              (strcmp(argv[optind], "store") == 0 && optind + 1 < argc &&
               strcmp(argv[optind + 1], "copy") == 0);
    c.st = nostore ? NULL : pec_store_open(c.cfg->store, PEC_STORE_NOCREATE, err, sizeof(err));
    if (c.st == NULL && !nostore) {
        fprintf(stderr, "pecctl: %s\n", err);
        pec_config_unref(c.cfg);
        return EX_IOERR;
    }
    rc = dispatch(&c, argc - optind, argv + optind);
    pec_store_close(c.st);
    pec_config_unref(c.cfg);
    return rc;
}
