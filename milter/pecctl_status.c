/*
 * pecctl status [--json] - is this provider well: the daemon answers on
 * its milter and LMTP sockets, clamd answers and how old its signatures
 * are, the outbox drains, receipts awaited and the next deadlines, the age
 * of the providers' index, the days left on the signing certificate, what
 * the quarantine holds, the size of the store.
 *
 * Exit 0 when healthy, 1 when something needs the operator: a socket that
 * does not answer (clamd's too: mail waits for it), signatures older than a
 * week, the certificate unreadable or expiring within 30 days, failed
 * outbox messages, a deadline overdue by more than 10 minutes (the daemon's
 * scheduler is not running).  74 when the store cannot be read.
 */
#include "store/quarantine.h"
#include "util/clamd.h"
#include "util/clocksync.h"
#include "util/sock.h"
#include "provider/directory.h"

#include <errno.h>
#include <openssl/asn1.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pecctl.h"
#include "util/xalloc.h"

#define PROBE_TIMEOUT 3
#define OVERDUE_GRACE 600
#define NEXT_SHOWN 5
#define SIGNATURES_STALE_DAYS 7 /* freshclam updates them several times a day */

/* ---------------------------------------------------------------- the daemon */

struct probe {
    const char *name; /* "milter", "lmtp" */
    const char *spec;
    int up;
    char answer[256]; /* what it said, or why it did not */
};

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;

    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static int connect_probe(struct probe *p)
{
    struct timeval tv = {.tv_sec = PROBE_TIMEOUT};
    char err[256];
    int fd = pec_sock_connect(p->spec, PROBE_TIMEOUT, err, sizeof(err));

    if (fd < 0) {
        snprintf(p->answer, sizeof(p->answer), "%s", err);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static void put32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/*
 * The milter protocol's option negotiation, as an MTA opens it (version 6,
 * every action and protocol step offered), then quit: up when the daemon
 * answers with its own negotiation packet.
 */
static void probe_milter(struct probe *p)
{
    unsigned char pkt[17], head[5];
    int fd = connect_probe(p);

    if (fd < 0)
        return;
    put32(pkt, 13);
    pkt[4] = 'O';
    put32(pkt + 5, 6);
    put32(pkt + 9, 0x1ff);
    put32(pkt + 13, 0x1fffff);
    if (write_all(fd, pkt, sizeof(pkt)) < 0 || read_full(fd, head, sizeof(head)) < 0) {
        snprintf(p->answer, sizeof(p->answer), "connected, but no answer to the negotiation");
    } else if (head[4] != 'O') {
        snprintf(p->answer, sizeof(p->answer), "answered the negotiation with '%c'",
                 head[4] >= 0x20 && head[4] < 0x7f ? head[4] : '?');
    } else {
        p->up = 1;
        snprintf(p->answer, sizeof(p->answer), "milter negotiation answered");
        put32(pkt, 1);
        pkt[4] = 'Q';
        (void)write_all(fd, pkt, 5);
    }
    close(fd);
}

/* The LMTP greeting: up when it is a 220. */
static void probe_lmtp(struct probe *p)
{
    char line[256];
    size_t n = 0;
    int fd = connect_probe(p);

    if (fd < 0)
        return;
    while (n + 1 < sizeof(line)) {
        ssize_t r = read(fd, line + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "220", 3) == 0) {
        p->up = 1;
        (void)write_all(fd, "QUIT\r\n", 6);
    }
    snprintf(p->answer, sizeof(p->answer), "%s", *line ? line : "connected, but no greeting");
    close(fd);
}

/* ---------------------------------------------------------------- pending receipts */

struct deadline {
    time_t at;
    int final; /* 0: the 12 h notice is due, 1: the 24 h one */
    char *identificativo;
    char *address;
};

struct pending {
    const struct pec_config *cfg;
    time_t now;
    long long recipients, transactions, overdue;
    char *last_id;
    struct deadline next[NEXT_SHOWN];
    int nnext;
};

static int pending_one(const struct pec_pending_rcpt *r, void *arg)
{
    struct pending *p = arg;
    struct deadline d;
    int i;

    p->recipients++;
    if (p->last_id == NULL || strcmp(p->last_id, r->identificativo) != 0) {
        p->transactions++;
        free(p->last_id);
        p->last_id = xstrdup(r->identificativo);
    }
    /* the 12 h notice is next while nothing came, or when a late receipt marked it owed */
    d.final = !((r->state == PEC_RCPT_SENT && r->warned_at == 0) || r->warned_at == PEC_WARN_OWED);
    d.at = r->sent_at + (time_t)(d.final ? p->cfg->deadline_after : p->cfg->warning_after);
    if (d.at + OVERDUE_GRACE < p->now)
        p->overdue++;
    /* keep the NEXT_SHOWN earliest, in order */
    for (i = p->nnext; i > 0 && p->next[i - 1].at > d.at; i--)
        ;
    if (i >= NEXT_SHOWN)
        return 0;
    if (p->nnext == NEXT_SHOWN) {
        free(p->next[NEXT_SHOWN - 1].identificativo);
        free(p->next[NEXT_SHOWN - 1].address);
        p->nnext--;
    }
    memmove(&p->next[i + 1], &p->next[i], (size_t)(p->nnext - i) * sizeof(p->next[0]));
    d.identificativo = xstrdup(r->identificativo);
    d.address = xstrdup(r->address);
    p->next[i] = d;
    p->nnext++;
    return 0;
}

/* ---------------------------------------------------------------- antivirus, quarantine */

struct antivirus {
    int off; /* antivirus = "none" */
    int up;  /* clamd answered VERSION */
    struct pec_clamd_version v;
    char err[512];
    time_t signed_at; /* the signatures' date, 0 when clamd names none or it does not parse */
};

static void probe_clamd(const struct pec_config *cfg, struct antivirus *av)
{
    struct tm tm;

    av->off = strcmp(cfg->antivirus, "none") == 0;
    if (av->off)
        return;
    av->up =
        pec_clamd_version(cfg->clamd_socket, PROBE_TIMEOUT, &av->v, av->err, sizeof(av->err)) == 0;
    memset(&tm, 0, sizeof(tm));
    tm.tm_isdst = -1;
    /*
     * as clamd writes it: "Sun Dec  6 09:23:45 2026", in clamd's local time,
     * read here in the configured zone: at worst hours off, which the age in
     * days shown and warned of can bear
     */
    if (av->up && *av->v.signed_at &&
        strptime(av->v.signed_at, "%a %b %d %H:%M:%S %Y", &tm) != NULL)
        av->signed_at = mktime(&tm);
}

struct quarantined {
    long long messages, bytes;
    time_t oldest;
    char err[512];
};

static int count_entry(const struct pec_qentry *e, void *arg)
{
    struct quarantined *q = arg;

    q->messages++;
    q->bytes += e->size;
    if (q->oldest == 0 || e->first_at < q->oldest)
        q->oldest = e->first_at;
    return 0;
}

/* ---------------------------------------------------------------- files */

/* notAfter of the PEM certificate in PATH; 0, or -1 with err. */
static int cert_not_after(const char *path, time_t *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    X509 *x;
    struct tm tm;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        snprintf(err, errlen, "%s: no PEM certificate", path);
        return -1;
    }
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
        snprintf(err, errlen, "%s: unreadable notAfter", path);
        X509_free(x);
        return -1;
    }
    X509_free(x);
    *out = timegm(&tm);
    return 0;
}

/* What status shows of the store: its file, or the database without its password. */
static char *store_shown(const char *spec)
{
    return pec_store_display(pec_store_file(spec) ? pec_store_file(spec) : spec);
}

static long long file_size(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* "3 d", "5 h", "12 min", "40 s" */
static const char *span(long long s, char *buf, size_t len)
{
    if (s < 0)
        s = -s;
    if (s >= 2 * 86400)
        snprintf(buf, len, "%lld d", s / 86400);
    else if (s >= 2 * 3600)
        snprintf(buf, len, "%lld h", s / 3600);
    else if (s >= 120)
        snprintf(buf, len, "%lld min", s / 60);
    else
        snprintf(buf, len, "%lld s", s);
    return buf;
}

/* ---------------------------------------------------------------- the report */

struct status {
    struct probe probe[2];
    struct antivirus av;
    struct quarantined q;
    struct pec_outbox_stats out;
    struct pending pend;
    char *index_copy;   /* the file whose time is the index's age */
    time_t index_mtime; /* 0: unreadable */
    char index_err[256];
    time_t not_after; /* 0: unreadable */
    char cert_err[1280];
    int clock_state; /* pec_clocksync_check(): 0 in step, 1 a problem, -1 unreadable */
    char clock_why[512];
    long long days_left;
    long long store_bytes, wal_bytes;
    char attention[10][512];
    int nattention;
};

static void attention(struct status *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void attention(struct status *s, const char *fmt, ...)
{
    va_list ap;

    if (s->nattention >= (int)(sizeof(s->attention) / sizeof(s->attention[0])))
        return;
    va_start(ap, fmt);
    vsnprintf(s->attention[s->nattention++], sizeof(s->attention[0]), fmt, ap);
    va_end(ap);
}

/* ,"KEY":null,"error":"WHY"} */
static void json_error(const char *key, const char *why)
{
    printf(",\"%s\":null,\"error\":", key);
    json_string(why);
    putchar('}');
}

static void print_json(const struct ctl *c, const struct status *s, time_t now)
{
    char *shown;

    printf("{\"daemon\":{");
    for (int i = 0; i < 2; i++) {
        printf("%s\"%s\":{\"socket\":", i ? "," : "", s->probe[i].name);
        json_string(s->probe[i].spec);
        printf(",\"up\":%s,\"answer\":", s->probe[i].up ? "true" : "false");
        json_string(s->probe[i].answer);
        putchar('}');
    }
    printf("},\n \"outbox\":{\"queued\":%lld,\"sending\":%lld,\"sent\":%lld,\"failed\":%lld,"
           "\"oldest_id\":%lld,\"oldest_created\":%lld},\n",
           s->out.count[PEC_OUT_QUEUED], s->out.count[PEC_OUT_SENDING], s->out.count[PEC_OUT_SENT],
           s->out.count[PEC_OUT_FAILED], s->out.oldest_id, (long long)s->out.oldest_created);
    printf(" \"pending\":{\"recipients\":%lld,\"transactions\":%lld,\"overdue\":%lld,\"next\":[",
           s->pend.recipients, s->pend.transactions, s->pend.overdue);
    for (int i = 0; i < s->pend.nnext; i++) {
        const struct deadline *d = &s->pend.next[i];

        printf("%s{\"at\":%lld,\"notice\":\"%s\",\"identificativo\":", i ? "," : "",
               (long long)d->at, d->final ? "24h" : "12h");
        json_string(d->identificativo);
        printf(",\"address\":");
        json_string(d->address);
        putchar('}');
    }
    printf("]},\n \"antivirus\":{\"engine\":\"%s\"", s->av.off ? "none" : "clamd");
    if (!s->av.off) {
        printf(",\"socket\":");
        json_string(c->cfg->clamd_socket);
        printf(",\"up\":%s,\"version\":", s->av.up ? "true" : "false");
        json_string(s->av.v.engine);
        printf(",\"database\":");
        json_string(s->av.v.database);
        printf(",\"signatures\":");
        json_string(s->av.v.signed_at);
        printf(",\"age_days\":%lld",
               s->av.signed_at ? (long long)(now - s->av.signed_at) / 86400 : -1LL);
        if (!s->av.up) {
            printf(",\"error\":");
            json_string(s->av.err);
        }
    }
    printf("},\n \"quarantine\":{\"dir\":");
    json_string(c->cfg->quarantine_dir);
    printf(",\"messages\":%lld,\"bytes\":%lld,\"oldest\":%lld", s->q.messages, s->q.bytes,
           (long long)s->q.oldest);
    if (*s->q.err) {
        printf(",\"error\":");
        json_string(s->q.err);
    }
    printf("},\n \"index\":{\"source\":");
    json_string(c->cfg->index_source);
    printf(",\"file\":");
    json_string(s->index_copy);
    printf(",\"max_age\":%lld", c->cfg->index_max_age);
    if (s->index_mtime)
        printf(",\"mtime\":%lld,\"age_seconds\":%lld,\"stale\":%s}", (long long)s->index_mtime,
               (long long)(now - s->index_mtime),
               now - s->index_mtime > c->cfg->index_max_age ? "true" : "false");
    else
        json_error("mtime", s->index_err);
    printf(",\n \"certificate\":{\"file\":");
    json_string(c->cfg->sign_cert);
    if (s->not_after)
        printf(",\"not_after\":%lld,\"days_left\":%lld}", (long long)s->not_after, s->days_left);
    else
        json_error("not_after", s->cert_err);
    printf(",\n \"clock\":{\"synchronised\":%s", s->clock_state == 0 ? "true" : "false");
    if (s->clock_state != 0) {
        printf(",\"problem\":");
        json_string(s->clock_why);
    }
    printf("},\n \"test_mode\":%s", pec_config_is_test(c->cfg) ? "true" : "false");
    shown = store_shown(c->cfg->store);
    printf(",\n \"store\":{\"backend\":\"%s\",\"file\":",
           pec_store_file(c->cfg->store) ? "sqlite" : "postgresql");
    json_string(shown);
    free(shown);
    printf(",\"bytes\":%lld,\"wal_bytes\":%lld},\n \"healthy\":%s,\"attention\":[", s->store_bytes,
           s->wal_bytes < 0 ? 0 : s->wal_bytes, s->nattention ? "false" : "true");
    for (int i = 0; i < s->nattention; i++) {
        if (i)
            putchar(',');
        json_string(s->attention[i]);
    }
    printf("]}\n");
}

static void print_text(const struct ctl *c, const struct status *s, time_t now)
{
    char t[40], a[32], *shown;

    printf("daemon:      %s\n", s->probe[0].up && s->probe[1].up   ? "up"
                                : s->probe[0].up || s->probe[1].up ? "partly up"
                                                                   : "down");
    for (int i = 0; i < 2; i++)
        printf("  %-6s     %s: %s%s\n", s->probe[i].name, s->probe[i].spec,
               s->probe[i].up ? "" : "NOT ANSWERING: ", s->probe[i].answer);
    if (s->av.off)
        printf("antivirus:   none: NOTHING IS SCANNED\n");
    else if (!s->av.up)
        printf("antivirus:   clamd %s: NOT ANSWERING: %s\n", c->cfg->clamd_socket, s->av.err);
    else if (*s->av.v.signed_at)
        printf("antivirus:   clamd %s: %s, signatures %s of %s (%s old)\n", c->cfg->clamd_socket,
               s->av.v.engine, s->av.v.database, s->av.v.signed_at,
               s->av.signed_at ? span(now - s->av.signed_at, a, sizeof(a)) : "?");
    else
        printf("antivirus:   clamd %s: %s, signatures of no official database (date unknown)\n",
               c->cfg->clamd_socket, s->av.v.engine);
    if (*s->q.err)
        printf("quarantine:  %s\n", s->q.err);
    else
        printf("quarantine:  %s, %lld messages, %lld bytes%s%s\n", c->cfg->quarantine_dir,
               s->q.messages, s->q.bytes, s->q.oldest ? ", oldest " : "",
               s->q.oldest ? local_time(s->q.oldest, t, sizeof(t)) : "");
    printf("outbox:      %lld queued, %lld sending, %lld sent, %lld failed\n",
           s->out.count[PEC_OUT_QUEUED], s->out.count[PEC_OUT_SENDING], s->out.count[PEC_OUT_SENT],
           s->out.count[PEC_OUT_FAILED]);
    if (s->out.oldest_id)
        printf("  oldest     #%lld, waiting since %s (%s)\n", s->out.oldest_id,
               local_time(s->out.oldest_created, t, sizeof(t)),
               span(now - s->out.oldest_created, a, sizeof(a)));
    printf("pending:     %lld recipients in %lld transactions awaiting receipts",
           s->pend.recipients, s->pend.transactions);
    if (s->pend.overdue)
        printf(", %lld deadlines overdue", s->pend.overdue);
    putchar('\n');
    for (int i = 0; i < s->pend.nnext; i++) {
        const struct deadline *d = &s->pend.next[i];

        printf("  %s %s %s notice for %s, %s\n",
               i ? "          " : "next:     ", local_time(d->at, t, sizeof(t)),
               d->final ? "24 h" : "12 h", d->address, d->identificativo);
    }
    if (s->index_mtime)
        printf("index:       %s, fetched %s ago (%s)%s\n  copy       %s\n", c->cfg->index_source,
               span(now - s->index_mtime, a, sizeof(a)), local_time(s->index_mtime, t, sizeof(t)),
               now - s->index_mtime > c->cfg->index_max_age ? ", OVER index_max_age" : "",
               s->index_copy);
    else
        printf("index:       %s\n", s->index_err);
    if (s->not_after)
        printf("certificate: %s, %s %s (%lld days)\n", c->cfg->sign_cert,
               s->not_after < now ? "EXPIRED" : "expires", local_time(s->not_after, t, sizeof(t)),
               s->days_left);
    else
        printf("certificate: %s\n", s->cert_err);
    printf("clock:       %s%s\n", s->clock_state == 0 ? "synchronised" : "NOT IN STEP: ",
           s->clock_state == 0 ? "" : s->clock_why);
    if (pec_config_is_test(c->cfg))
        printf("mode:        TEST (test_mode = \"yes\"): not a production provider\n");
    shown = store_shown(c->cfg->store);
    if (pec_store_file(c->cfg->store) != NULL)
        printf("store:       %s, %lld bytes", shown, s->store_bytes);
    else
        printf("store:       PostgreSQL, %s", shown);
    free(shown);
    if (s->wal_bytes > 0)
        printf(" + %lld bytes of WAL", s->wal_bytes);
    putchar('\n');
    if (s->nattention == 0) {
        printf("status:      OK\n");
        return;
    }
    printf("status:      ATTENTION\n");
    for (int i = 0; i < s->nattention; i++)
        printf("  - %s\n", s->attention[i]);
}

int pecctl_status(struct ctl *c, int argc, char **argv)
{
    struct ctl_opts co;
    struct status s;
    struct stat sb;
    char err[1024], wal[4096];
    time_t now = time(NULL);
    int json, rc = 0;

    if (ctl_options("status", argc, argv, "j", &co) != 0)
        return EX_USAGE;
    json = co.json;
    memset(&s, 0, sizeof(s));
    s.pend.cfg = c->cfg;
    s.pend.now = now;

    s.probe[0] = (struct probe){.name = "milter", .spec = c->cfg->milter_socket};
    s.probe[1] = (struct probe){.name = "lmtp", .spec = c->cfg->lmtp_socket};
    probe_milter(&s.probe[0]);
    probe_lmtp(&s.probe[1]);
    for (int i = 0; i < 2; i++)
        if (!s.probe[i].up)
            attention(&s, "the daemon does not answer on %s (%s)", s.probe[i].spec,
                      s.probe[i].answer);

    probe_clamd(c->cfg, &s.av);
    if (!s.av.off && !s.av.up)
        attention(&s, "clamd does not answer (%s): submissions and incoming buste wait", s.av.err);
    else if (s.av.signed_at && now - s.av.signed_at > SIGNATURES_STALE_DAYS * 86400)
        attention(&s, "clamd's signatures are %lld days old (is freshclam running?)",
                  (long long)(now - s.av.signed_at) / 86400);
    if (pec_quarantine_each(c->cfg->quarantine_dir, count_entry, &s.q, s.q.err, sizeof(s.q.err)) <
        0)
        attention(&s, "the quarantine: %s", s.q.err);

    if (pec_store_outbox_stats(c->st, &s.out, err, sizeof(err)) < 0 ||
        pec_store_pending_each(c->st, 0, pending_one, &s.pend, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: status: %s\n", err);
        rc = EX_IOERR;
        goto done;
    }
    if (s.out.count[PEC_OUT_FAILED] > 0)
        attention(&s, "%lld outbox messages failed (pecctl outbox; pecctl outbox retry)",
                  s.out.count[PEC_OUT_FAILED]);
    if (s.pend.overdue > 0)
        attention(&s, "%lld receipt deadlines overdue by more than %d minutes", s.pend.overdue,
                  OVERDUE_GRACE / 60);

    s.index_copy = pec_directory_copy_path(c->cfg);
    if (stat(s.index_copy, &sb) == 0) {
        s.index_mtime = sb.st_mtime;
        if (now - s.index_mtime > c->cfg->index_max_age)
            attention(&s,
                      "the providers' index was fetched %s ago, over index_max_age: the daemon "
                      "cannot refresh it from %s (its log says why)",
                      span(now - s.index_mtime, err, sizeof(err)), c->cfg->index_source);
    } else {
        /* the daemon refuses to start without one: a daemon down says it already */
        snprintf(s.index_err, sizeof(s.index_err), "%s: %s", s.index_copy, strerror(errno));
    }

    if (cert_not_after(c->cfg->sign_cert, &s.not_after, err, sizeof(err)) == 0) {
        s.days_left = (long long)(s.not_after - now) / 86400;
        if (s.not_after <= now)
            attention(&s, "the signing certificate expired %s", c->cfg->sign_cert);
        else if (s.not_after - now < c->cfg->cert_warn_days * 86400)
            attention(&s, "the signing certificate expires in %lld days", s.days_left);
    } else {
        snprintf(s.cert_err, sizeof(s.cert_err), "%s", err);
        s.not_after = 0;
        attention(&s, "the signing certificate: %s", err);
    }

    s.clock_state = pec_clocksync_check(pec_clocksync_kernel, s.clock_why, sizeof(s.clock_why));
    if (s.clock_state != 0)
        attention(&s, "%s", s.clock_why);
    if (pec_config_is_test(c->cfg))
        attention(&s, "test_mode = \"yes\": the deadlines, clock and retention may differ from "
                      "the rules'");

    if (pec_store_file(c->cfg->store) != NULL) {
        s.store_bytes = file_size(pec_store_file(c->cfg->store));
        snprintf(wal, sizeof(wal), "%s-wal", pec_store_file(c->cfg->store));
        s.wal_bytes = file_size(wal);
    }

    if (json)
        print_json(c, &s, now);
    else
        print_text(c, &s, now);
    rc = s.nattention ? 1 : 0;

done:
    free(s.index_copy);
    for (int i = 0; i < s.pend.nnext; i++) {
        free(s.pend.next[i].identificativo);
        free(s.pend.next[i].address);
    }
    free(s.pend.last_id);
    return rc;
}
