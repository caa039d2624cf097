/*
 * test_scheduler - the sender side's deadlines over a real store, with
 * chosen instants: the three cases of pec-rules.md 4.9 each get exactly the
 * notices the rules say, esterno recipients none, a notice comes once, and
 * a run long after both deadlines (the daemon was down) emits what is owed,
 * once, and so does a run after a first receipt that came late (after the
 * 12 h, before any run), also through the reception point.  Every notice is taken back out of the
 * outbox and inspected as a peer would (signature, daticert against the DTD, tipo, consegna,
 * errore-esteso); the log records say the same.  Then the daily seal time
 * and seal + purge.
 */
#include "msgcheck.h"
#include "message/notice.h"
#include "message/original.h"
#include "provider/reception.h"
#include "store/quarantine.h"
#include "store/registro.h"
#include "provider/scheduler.h"
#include "store/store.h"
#include "message/verify.h"

#include <sys/stat.h>

static struct testenv env;
static char dir[] = "/tmp/test_scheduler.XXXXXX";

#define T0 ((time_t)1709290800) /* 2024-03-01T11:00:00Z, the test clock */
#define H (60 * 60)

static const struct pec_sched_conf conf = {12 * H, 24 * H, 22 * H};

static struct pec_store *open_store(const char *name)
{
    char err[1024], *p = path_join(dir, name);
    struct pec_store *st = pec_store_open(p, 0, err, sizeof(err));

    if (st == NULL)
        fprintf(stderr, "open %s: %s\n", p, err);
    free(p);
    return st;
}

/* A transaction as the access point opens it, all recipients sent at WHEN. */
static void open_tx(struct pec_store *st, const char *id, const struct pec_tx_rcpt *r, size_t n,
                    time_t when)
{
    struct pec_batch *b = pec_batch_new();
    char err[1024];

    pec_batch_tx(b, &(struct pec_tx){.identificativo = id,
                                     .client_msgid = "<client.1@mua.test>",
                                     .mittente = "mario@pec-a.test",
                                     .oggetto = "Fattura marzo",
                                     .tipo_ricevuta = "completa",
                                     .queue_id = "4QTEST",
                                     .submitted = when,
                                     .rcpt = r,
                                     .nrcpt = n});
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
}

/*
 * A receipt arrived for ADDRESS: what the reception point puts in its
 * commit (lib/provider/reception.c), the state and, for a late first receipt, the
 * 12 h notice's mark; from TX when given (as read a while ago), else read
 * now.
 */
static void receipt_read(struct pec_store *st, const struct pec_tx_info *tx, const char *id,
                         const char *address, enum pec_rcpt_state state, time_t when)
{
    struct pec_batch *b = pec_batch_new();
    struct pec_tx_info own;
    char err[1024];

    pec_batch_rcpt_state(b, id, address, state, when, "");
    if (tx == NULL && pec_store_tx_get(st, id, &own, err, sizeof(err)) == 1) {
        pec_sched_heard(b, &own, address, when, conf.warning_after);
        pec_tx_info_free(&own);
    } else if (tx != NULL) {
        pec_sched_heard(b, tx, address, when, conf.warning_after);
    }
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
}

static void receipt(struct pec_store *st, const char *id, const char *address,
                    enum pec_rcpt_state state, time_t when)
{
    receipt_read(st, NULL, id, address, state, when);
}

static struct pec_sched_result run_at(struct pec_store *st, time_t now, time_t *next)
{
    struct pec_sched_result res;
    char err[1024] = "";

    if (pec_sched_timeouts(st, &env.iss, &conf, now, &res, next, err, sizeof(err)) != 0) {
        fprintf(stderr, "pec_sched_timeouts at +%ld: %s\n", (long)(now - T0), err);
        CHECK(0);
    }
    return res;
}

static enum pec_rcpt_state state_of(struct pec_store *st, const char *id, const char *address)
{
    struct pec_tx_info tx;
    char err[1024];
    enum pec_rcpt_state s = (enum pec_rcpt_state) - 1;

    if (pec_store_tx_get(st, id, &tx, err, sizeof(err)) == 1) {
        for (size_t i = 0; i < tx.nrcpt; i++)
            if (strcasecmp(tx.rcpt[i].address, address) == 0)
                s = tx.rcpt[i].state;
        pec_tx_info_free(&tx);
    }
    return s;
}

/* ---------------------------------------------------------------- the outbox,
 * inspected */

struct notice_seen {
    char identificativo[128];
    char consegna[128];
    int final; /* 5.4.1: the 24 h notice; 0: 4.4.7, the 12 h one */
    char message_id[256];
};

struct seen {
    struct notice_seen v[400];
    size_t n;
};

/* Claim every queued row, inspect it, mark it sent; the notices go to SEEN in
 * outbox order. */
static void drain(struct pec_store *st, struct seen *seen)
{
    struct pec_outbox_row row;
    struct pec_inspect_opts opts = {.trust = env.trust, .at_mode = PEC_AT_GIVEN, .at = T0};
    time_t next;
    char err[1024], prefix[256];

    while (pec_store_outbox_claim(st, T0 + 1000 * H, 1, &row, &next, err, sizeof(err)) == 1) {
        struct pec_inspection in;
        const struct pec_daticert *d = &in.daticert;
        struct notice_seen *s = &seen->v[seen->n < 400 ? seen->n : 399];

        memset(s, 0, sizeof(*s));
        CHECK(pec_inspect(row.data, row.len, &opts, &in) == 0);
        if (!in.valid)
            fprintf(stderr, "notice not valid: %s\n", in.reason);
        CHECK(in.kind == PEC_KIND_NOTICE && in.has_daticert && !in.has_postacert);
        CHECK_STR(in.x_ricevuta, "preavviso-errore-consegna");
        CHECK_STR(row.tipo, "preavviso-errore-consegna");
        CHECK(row.nrcpt == 1 && strcmp(row.rcpt[0], "mario@pec-a.test") == 0);
        CHECK(in.x_riferimento_message_id != NULL &&
              strcmp(in.x_riferimento_message_id, "<client.1@mua.test>") == 0);
        CHECK(in.subject != NULL &&
              strcmp(in.subject, "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: "
                                 "Fattura marzo") == 0);
        if (in.has_daticert) {
            CHECK(d->tipo == PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA);
            CHECK_STR(d->mittente, "mario@pec-a.test");
            CHECK_STR(d->identificativo, row.identificativo);
            CHECK(d->consegna != NULL && d->errore_esteso != NULL);
            if (d->consegna != NULL && d->errore_esteso != NULL) {
                snprintf(s->identificativo, sizeof(s->identificativo), "%s", d->identificativo);
                snprintf(s->consegna, sizeof(s->consegna), "%s", d->consegna);
                s->final = strncmp(d->errore_esteso, "5.", 2) == 0;
                snprintf(prefix, sizeof(prefix), "%s - Gestore A S.p.A. - ",
                         s->final ? "5.4.1" : "4.4.7");
                CHECK(strncmp(d->errore_esteso, prefix, strlen(prefix)) == 0);
                CHECK(d->errore == (s->final ? PEC_ERRORE_ALTRO : PEC_ERRORE_NESSUNO));
                /* the 12 h one is 4.x.x */
                CHECK(s->final || (d->errore_esteso[0] == '4' && d->errore_esteso[1] == '.'));
            }
        }
        snprintf(s->message_id, sizeof(s->message_id), "%s", row.message_id);
        seen->n++;
        CHECK(pec_store_outbox_sent(st, row.id, T0, "", "", err, sizeof(err)) == 0);
        pec_inspection_free(&in);
        pec_outbox_row_free(&row);
    }
}

/* How many notices of SEEN are about ID and ADDRESS, 12 h (FINAL 0) or 24 h
 * (FINAL 1). */
static int count_seen(const struct seen *seen, const char *id, const char *address, int final)
{
    int n = 0;

    for (size_t i = 0; i < seen->n; i++)
        if (strcmp(seen->v[i].identificativo, id) == 0 &&
            strcasecmp(seen->v[i].consegna, address) == 0 && seen->v[i].final == final)
            n++;
    return n;
}

/* The log records of the timeouts agree with the notices: one each, same
 * Message-ID and code. */
struct rec_check {
    const struct seen *seen;
    int n12, n24, matched;
};

static int on_record(const struct pec_record *r, void *arg)
{
    struct rec_check *c = arg;
    int final;

    if (strcmp(r->label, "MancataConsegna12h") == 0)
        final = 0;
    else if (strcmp(r->label, "MancataConsegna24h") == 0)
        final = 1;
    else
        return 0;
    final ? c->n24++ : c->n12++;
    CHECK_STR(r->evento, "emissione");
    CHECK(strncmp(r->errore_esteso, final ? "5.4.1 - Gestore A S.p.A. - " : "4.4.7 - Gestore A",
                  final ? 27 : 17) == 0);
    for (size_t i = 0; i < c->seen->n; i++)
        if (strcmp(c->seen->v[i].message_id, r->message_id) == 0 && c->seen->v[i].final == final &&
            strcmp(c->seen->v[i].consegna, r->consegna) == 0)
            c->matched++;
    return 0;
}

/* ---------------------------------------------------------------- the cases */

#define C1 "opec-case1@pec-a.test" /* presa in carico within 12 h, no consegna */
#define C2                                                                                         \
    "opec-case2@pec-a.test"        /* no presa in carico, consegna between 12 h and 24             \
                                      h */
#define C3 "opec-case3@pec-a.test" /* nothing at all, two recipients */

static void test_three_cases(void)
{
    static const struct pec_tx_rcpt r1[] = {{"uno@pec-b.test", 1, 0}, {"ext@example.org", 0, 0}};
    static const struct pec_tx_rcpt r2[] = {{"due@pec-b.test", 1, 0}};
    static const struct pec_tx_rcpt r3[] = {
        {"tre@pec-b.test", 1, 0}, {"quattro@pec-b.test", 1, 1}, {"ext3@example.org", 0, 1}};
    struct pec_store *st = open_store("cases.db");
    struct pec_sched_result res;
    struct seen *seen = xcalloc(1, sizeof(*seen));
    struct rec_check rc = {seen, 0, 0, 0};
    char err[1024];
    time_t next;

    CHECK(st != NULL);
    if (st == NULL)
        return;
    res = run_at(st, T0, &next);
    CHECK(res.warned == 0 && res.expired == 0 && next == 0); /* nothing pending at all */

    open_tx(st, C1, r1, 2, T0);
    open_tx(st, C2, r2, 1, T0);
    open_tx(st, C3, r3, 3, T0);
    res = run_at(st, T0 + 100, &next);
    CHECK(res.warned == 0 && res.expired == 0);
    CHECK(next == T0 + 12 * H);

    receipt(st, C1, "uno@pec-b.test", PEC_RCPT_TAKEN, T0 + 1 * H);
    res = run_at(st, T0 + 12 * H - 1, &next);
    CHECK(res.warned == 0 && res.expired == 0 && next == T0 + 12 * H);

    /* 12 h: case 2 and both of case 3, not case 1 (taken), never an esterno */
    res = run_at(st, T0 + 12 * H, &next);
    CHECK(res.warned == 3 && res.expired == 0 && res.raced == 0);
    CHECK(next == T0 + 24 * H);
    res = run_at(st, T0 + 12 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0); /* once */

    receipt(st, C2, "due@pec-b.test", PEC_RCPT_DELIVERED, T0 + 14 * H);

    /* inside the window but before the end of it: the final notice waits for 24 h
     */
    res = run_at(st, T0 + 22 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0 && next == T0 + 24 * H);
    res = run_at(st, T0 + 24 * H - 1, &next);
    CHECK(res.warned == 0 && res.expired == 0);

    /* 24 h: case 1 and both of case 3 */
    res = run_at(st, T0 + 24 * H, &next);
    CHECK(res.warned == 0 && res.expired == 3);
    CHECK(next == 0); /* nobody is tracked any more */
    res = run_at(st, T0 + 30 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0 && next == 0);

    CHECK(state_of(st, C1, "uno@pec-b.test") == PEC_RCPT_TIMEDOUT);
    CHECK(state_of(st, C2, "due@pec-b.test") == PEC_RCPT_DELIVERED);
    CHECK(state_of(st, C3, "tre@pec-b.test") == PEC_RCPT_TIMEDOUT);
    CHECK(state_of(st, C3, "quattro@pec-b.test") == PEC_RCPT_TIMEDOUT);
    CHECK(state_of(st, C1, "ext@example.org") == PEC_RCPT_SENT);

    /* a consegna after the final notice is only logged: the state stays */
    receipt(st, C3, "tre@pec-b.test", PEC_RCPT_DELIVERED, T0 + 25 * H);
    CHECK(state_of(st, C3, "tre@pec-b.test") == PEC_RCPT_TIMEDOUT);

    drain(st, seen);
    CHECK(seen->n == 6);
    CHECK(count_seen(seen, C1, "uno@pec-b.test", 0) == 0);
    CHECK(count_seen(seen, C1, "uno@pec-b.test", 1) == 1);
    CHECK(count_seen(seen, C2, "due@pec-b.test", 0) == 1);
    CHECK(count_seen(seen, C2, "due@pec-b.test", 1) == 0);
    CHECK(count_seen(seen, C3, "tre@pec-b.test", 0) == 1);
    CHECK(count_seen(seen, C3, "tre@pec-b.test", 1) == 1);
    CHECK(count_seen(seen, C3, "quattro@pec-b.test", 0) == 1);
    CHECK(count_seen(seen, C3, "quattro@pec-b.test", 1) == 1);
    CHECK(count_seen(seen, C1, "ext@example.org", 0) + count_seen(seen, C1, "ext@example.org", 1) +
              count_seen(seen, C3, "ext3@example.org", 0) +
              count_seen(seen, C3, "ext3@example.org", 1) ==
          0);

    CHECK(pec_store_log_each(st, NULL, on_record, &rc, err, sizeof(err)) == 0);
    CHECK(rc.n12 == 3 && rc.n24 == 3 && rc.matched == 6);

    /* the day's records are sealed the next day, and purged once old enough */
    {
        char *seals = path_join(dir, "seals"), *quarantine = path_join(dir, "quarantine");
        struct pec_sched_keep keep = {.gestore = "Gestore A S.p.A.",
                                      .seal_dir = seals,
                                      .months = 30,
                                      .quarantine_dir = quarantine,
                                      .virus_months = 30};
        struct pec_sched_kept kept;
        struct pec_spool *virus = pec_spool_new(NULL, 1 << 20);
        char sha[PEC_HASH_HEX];

        mkdir(seals, 0755);
        /* an infected message found with the first deadline: purged with its day's records */
        CHECK(pec_spool_puts(virus, "Subject: x\r\n\r\nEICAR\r\n") == 0);
        CHECK(pec_quarantine_put(quarantine, virus,
                                 &(struct pec_qfacts){.when = T0 + 12 * H, .finding = "Eicar"}, sha,
                                 err, sizeof(err)) == 0);
        /* another node sharing the store holds the housekeeping: nothing done here */
        CHECK(pec_store_job_take(st, "housekeeping", 2, T0 + 40 * H, T0 + 41 * H, err,
                                 sizeof(err)) == 1);
        CHECK(pec_sched_seal_purge(st, env.signer, &keep, T0 + 40 * H, &kept, err, sizeof(err)) ==
              0);
        CHECK(kept.elsewhere == 1 && kept.sealed == 0);
        CHECK(pec_store_job_done(st, "housekeeping", 2, err, sizeof(err)) == 0);
        CHECK(pec_sched_seal_purge(st, env.signer, &keep, T0 + 40 * H, &kept, err, sizeof(err)) ==
              0);
        CHECK(kept.elsewhere == 0);
        /* both deadlines fell on 2 March (local): sealed on the 3rd */
        CHECK(kept.sealed == 1 && kept.purged == 0 && kept.virus_purged == 0);
        CHECK(pec_sched_seal_purge(st, env.signer, &keep, T0 + 41 * H, &kept, err, sizeof(err)) ==
              0);
        CHECK(kept.sealed == 0 && kept.purged == 0 && kept.virus_purged == 0);
        keep.months = keep.virus_months = 1;
        CHECK(pec_sched_seal_purge(st, env.signer, &keep, T0 + 70 * 24 * H, &kept, err,
                                   sizeof(err)) == 0);
        /* a month later: gone, seal and all */
        CHECK(kept.sealed == 0 && kept.purged == 6 && kept.virus_purged == 1);
        pec_spool_free(virus);
        free(seals);
        free(quarantine);
    }
    free(seen);
    pec_store_close(st);
}

/* The daemon was down across both deadlines: at its next run each owed notice
 * comes, once. */
static void test_down_across_deadlines(void)
{
    static const struct pec_tx_rcpt r[] = {{"b1@pec-b.test", 1, 0}, {"b2@pec-b.test", 1, 0}};
    struct pec_store *st = open_store("down.db");
    struct pec_sched_result res;
    struct seen *seen = xcalloc(1, sizeof(*seen));
    time_t next;

    CHECK(st != NULL);
    if (st == NULL)
        return;
    open_tx(st, "opec-down@pec-a.test", r, 2, T0);
    receipt(st, "opec-down@pec-a.test", "b2@pec-b.test", PEC_RCPT_TAKEN, T0 + 3 * H);
    res = run_at(st, T0 + 55 * H, &next);
    CHECK(res.warned == 1 && res.expired == 2 && next == 0);
    res = run_at(st, T0 + 55 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0);
    res = run_at(st, T0 + 80 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0);
    drain(st, seen);
    CHECK(seen->n == 3);
    /* the 12 h notice is queued before the final one */
    CHECK(seen->n == 3 && seen->v[0].final == 0 &&
          strcmp(seen->v[0].consegna, "b1@pec-b.test") == 0);
    CHECK(count_seen(seen, "opec-down@pec-a.test", "b1@pec-b.test", 1) == 1);
    CHECK(count_seen(seen, "opec-down@pec-a.test", "b2@pec-b.test", 1) == 1);
    CHECK(count_seen(seen, "opec-down@pec-a.test", "b2@pec-b.test", 0) == 0);

    /* down between 12 h and 24 h only: the 12 h notice came in time, the final
     * one late */
    open_tx(st, "opec-down2@pec-a.test", r, 1, T0 + 100 * H);
    res = run_at(st, T0 + 112 * H, &next);
    CHECK(res.warned == 1 && res.expired == 0 && next == T0 + 124 * H);
    res = run_at(st, T0 + 200 * H, &next);
    CHECK(res.warned == 0 && res.expired == 1 && next == 0);
    free(seen);
    pec_store_close(st);
}

/*
 * Nothing came within 12 h, but no run happened between the 12 h and the
 * first receipt (the daemon was down, the MTA held the receipts and gave
 * them before the first run): the 12 h notice is still owed, once, and only
 * for a first receipt that came late.
 */
static void test_late_receipts(void)
{
    static const struct pec_tx_rcpt r[] = {{"b@pec-b.test", 1, 0}};
    static const struct pec_tx_rcpt r2[] = {{"b@pec-b.test", 1, 0}, {"c@pec-b.test", 1, 0}};
    struct pec_store *st = open_store("late.db");
    struct pec_sched_result res;
    struct seen *seen = xcalloc(1, sizeof(*seen));
    struct pec_tx_info tx;
    char err[1024];
    time_t next;

#define LC "opec-late-consegna@pec-a.test"   /* consegna at 13 h, nothing before */
#define LP "opec-late-presa@pec-a.test"      /* presa in carico at 13 h, then nothing */
#define LF "opec-late-mancata@pec-a.test"    /* mancata consegna at 15 h, nothing before */
#define LB "opec-late-both@pec-a.test"       /* presa at 13 h, consegna at 14 h, no run between */
#define IP "opec-intime-presa@pec-a.test"    /* presa at 11 h, consegna at 13 h */
#define IC "opec-intime-consegna@pec-a.test" /* consegna at 11 h */
#define LR "opec-late-raced@pec-a.test"      /* read before the 12 h run, committed after it */
    CHECK(st != NULL);
    if (st == NULL) {
        free(seen);
        return;
    }
    open_tx(st, LC, r, 1, T0);
    open_tx(st, LP, r, 1, T0);
    open_tx(st, LF, r, 1, T0);
    open_tx(st, LB, r2, 2, T0);
    open_tx(st, IP, r, 1, T0);
    open_tx(st, IC, r, 1, T0);
    res = run_at(st, T0 + 60, &next);
    CHECK(res.warned == 0 && res.expired == 0 && next == T0 + 12 * H);

    /* before 12 h: nothing owed by these */
    receipt(st, IP, "b@pec-b.test", PEC_RCPT_TAKEN, T0 + 11 * H);
    receipt(st, IC, "b@pec-b.test", PEC_RCPT_DELIVERED, T0 + 11 * H);
    /* down from before 12 h to 15 h; the held receipts come first */
    receipt(st, LC, "b@pec-b.test", PEC_RCPT_DELIVERED, T0 + 13 * H);
    receipt(st, LP, "b@pec-b.test", PEC_RCPT_TAKEN, T0 + 13 * H);
    receipt(st, LB, "b@pec-b.test", PEC_RCPT_TAKEN, T0 + 13 * H);
    receipt(st, LB, "b@pec-b.test", PEC_RCPT_DELIVERED, T0 + 14 * H);
    receipt(st, LF, "b@pec-b.test", PEC_RCPT_FAILED, T0 + 15 * H);
    receipt(st, IP, "b@pec-b.test", PEC_RCPT_DELIVERED, T0 + 13 * H);
    res = run_at(st, T0 + 15 * H, &next);
    /* LC, LP, LF, and both of LB (c heard nothing at all) */
    CHECK(res.warned == 5 && res.expired == 0 && res.raced == 0);
    CHECK(next == T0 + 24 * H); /* LP and LB's c are still open */
    res = run_at(st, T0 + 15 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0); /* once */
    CHECK(state_of(st, LC, "b@pec-b.test") == PEC_RCPT_DELIVERED);
    CHECK(state_of(st, LF, "b@pec-b.test") == PEC_RCPT_FAILED);
    CHECK(state_of(st, LP, "b@pec-b.test") == PEC_RCPT_TAKEN);

    /* a first receipt read before the 12 h run and committed after it: one notice */
    open_tx(st, LR, r, 1, T0 + 1 * H);
    CHECK(pec_store_tx_get(st, LR, &tx, err, sizeof(err)) == 1);
    res = run_at(st, T0 + 13 * H, &next);
    CHECK(res.warned == 1 && res.expired == 0);
    receipt_read(st, &tx, LR, "b@pec-b.test", PEC_RCPT_DELIVERED, T0 + 14 * H);
    pec_tx_info_free(&tx);
    res = run_at(st, T0 + 14 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0);

    /* 24 h: only the two still open get the final notice */
    res = run_at(st, T0 + 25 * H + 1 * H, &next);
    CHECK(res.warned == 0 && res.expired == 2 && next == 0);

    drain(st, seen);
    CHECK(seen->n == 8);
    CHECK(count_seen(seen, LC, "b@pec-b.test", 0) == 1 &&
          count_seen(seen, LC, "b@pec-b.test", 1) == 0);
    CHECK(count_seen(seen, LP, "b@pec-b.test", 0) == 1 &&
          count_seen(seen, LP, "b@pec-b.test", 1) == 1);
    CHECK(count_seen(seen, LF, "b@pec-b.test", 0) == 1 &&
          count_seen(seen, LF, "b@pec-b.test", 1) == 0);
    CHECK(count_seen(seen, LB, "b@pec-b.test", 0) == 1 &&
          count_seen(seen, LB, "b@pec-b.test", 1) == 0);
    CHECK(count_seen(seen, LB, "c@pec-b.test", 0) == 1 &&
          count_seen(seen, LB, "c@pec-b.test", 1) == 1);
    CHECK(count_seen(seen, LR, "b@pec-b.test", 0) == 1);
    CHECK(count_seen(seen, IP, "b@pec-b.test", 0) + count_seen(seen, IP, "b@pec-b.test", 1) +
              count_seen(seen, IC, "b@pec-b.test", 0) + count_seen(seen, IC, "b@pec-b.test", 1) ==
          0);
    free(seen);
    pec_store_close(st);
}

/*
 * The same through the reception point (lib/provider/reception.c): an avvenuta
 * consegna signed by provider B, about a transaction sent 13 h before the
 * test clock's now, marks the 12 h notice owed; one about a transaction
 * sent 11 h before does not.
 */
static void test_through_reception(void)
{
    static const struct pec_tx_rcpt r[] = {{"luigi@pec-b.test", 1, 0}};
    static const char *const ids[2] = {"opec-rp-late@pec-a.test", "opec-rp-intime@pec-a.test"};
    static const char *const at_a[] = {"<ricevute@pec-a.test>"};
    char err[1024];
    char *conf_path = path_join(dir, "pecmilter.conf");
    char *index_path = path_join(env.pki, "index.ldif");
    char *cert = path_join(env.pki, "b/cert.pem"), *chain = path_join(env.pki, "b/chain.pem");
    char *key = path_join(env.pki, "b/key.pem");
    struct pec_store *st = open_store("reception.db");
    struct pec_signer *signer_b = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err));
    struct pec_index *idx = pec_index_load(index_path, err, sizeof(err));
    struct pec_config *cfg = NULL;
    struct pec_issuer iss_b = env.iss;
    struct pec_sched_result res;
    time_t next;
    FILE *f = fopen(conf_path, "w");

    CHECK(f != NULL);
    if (f != NULL) {
        fprintf(f, "provider_name = \"Gestore A S.p.A.\";\n"
                   "domains = [ \"pec-a.test\" ];\n"
                   "service_address = \"posta-certificata@pec-a.test\";\n"
                   "receipt_address = \"ricevute@pec-a.test\";\n"
                   "sign_cert = \"x\"; sign_key = \"x\"; trust_anchors = \"x\";"
                   " index_source = \"file:x\"; index_signer = \"x\";\n");
        fclose(f);
        cfg = pec_config_load(conf_path, err, sizeof(err));
    }
    CHECK(st != NULL && signer_b != NULL && idx != NULL && cfg != NULL);
    if (st == NULL || signer_b == NULL || idx == NULL || cfg == NULL)
        goto done;
    CHECK(cfg->warning_after == 12 * H); /* the default, as conf says */
    iss_b.provider_name = "Gestore B S.p.A.";
    iss_b.service_address = "posta-certificata@pec-b.test";
    iss_b.signer = signer_b;
    open_tx(st, ids[0], r, 1, env.clock.fixed_at - 13 * H);
    open_tx(st, ids[1], r, 1, env.clock.fixed_at - 11 * H);
    for (int i = 0; i < 2; i++) {
        struct pec_destinatario dest = {.address = "luigi@pec-b.test",
                                        .tipo = PEC_DEST_CERTIFICATO};
        struct pec_daticert fa = {.mittente = "mario@pec-a.test",
                                  .destinatari = &dest,
                                  .n_destinatari = 1,
                                  .risposte = "mario@pec-a.test",
                                  .oggetto = "Fattura marzo",
                                  .identificativo = (char *)ids[i],
                                  .consegna = "luigi@pec-b.test"};
        struct pec_rp_env rp = {
            .iss = &env.iss, .cfg = cfg, .trust = env.trust, .index = idx, .store = st};
        struct pec_rp_outcome out;
        struct pec_original o;
        struct pec_built b;
        struct bytes msg;

        if (pec_build_notice(&iss_b,
                             &(struct pec_notice){.kind = PEC_NOTICE_CONSEGNA_SINTETICA,
                                                  .facts = &fa,
                                                  .to = "ricevute@pec-a.test"},
                             &b, err, sizeof(err)) != 0) {
            fprintf(stderr, "notice: %s\n", err);
            CHECK(0);
            continue;
        }
        msg = built_bytes(&b);
        pec_built_free(&b);
        CHECK(pec_original_from_mem(&o, msg.p, msg.n, NULL, 1 << 20,
                                    "<posta-certificata@pec-b.test>", at_a, 1, err,
                                    sizeof(err)) == 0);
        CHECK(pec_rp_decide(&rp, &o, "QR", &out, err, sizeof(err)) == 0);
        CHECK(out.action == PEC_RP_PASS && out.batch != NULL);
        if (out.batch != NULL)
            CHECK(pec_store_commit(st, out.batch, err, sizeof(err)) == 0);
        pec_rp_outcome_free(&out);
        pec_original_free(&o);
        free(msg.p);
        CHECK(state_of(st, ids[i], "luigi@pec-b.test") == PEC_RCPT_DELIVERED);
    }
    /* the first run after them: only the late one owes the 12 h notice */
    res = run_at(st, env.clock.fixed_at + 60, &next);
    CHECK(res.warned == 1 && res.expired == 0 && next == 0);
    res = run_at(st, env.clock.fixed_at + 30 * H, &next);
    CHECK(res.warned == 0 && res.expired == 0 && next == 0);
done:
    pec_config_unref(cfg);
    pec_index_free(idx);
    pec_signer_free(signer_b);
    if (st != NULL)
        pec_store_close(st);
    free(conf_path);
    free(index_path);
    free(cert);
    free(chain);
    free(key);
}

/* Many transactions due at once: a bounded batch per call, NOW as the next due,
 * then the rest. */
static void test_many(void)
{
    static const struct pec_tx_rcpt r[] = {{"b@pec-b.test", 1, 0}};
    struct pec_store *st = open_store("many.db");
    struct pec_sched_result res;
    time_t next;
    char id[64];

    CHECK(st != NULL);
    if (st == NULL)
        return;
    for (int i = 0; i < PEC_SCHED_BATCH + 5; i++) {
        snprintf(id, sizeof(id), "opec-%04d@pec-a.test", i);
        open_tx(st, id, r, 1, T0 + i);
    }
    /* at 12 h + 2 s only the first three are due; the next is the fourth's */
    res = run_at(st, T0 + 12 * H + 2, &next);
    CHECK(res.warned == 3 && next == T0 + 12 * H + 3);
    res = run_at(st, T0 + 13 * H, &next);
    CHECK(res.warned == PEC_SCHED_BATCH && next == T0 + 13 * H);
    res = run_at(st, T0 + 13 * H, &next);
    CHECK(res.warned == 2 && next == T0 + 24 * H);
    pec_store_close(st);
}

/* The daily seal falls due soon after local midnight, summer time included. */
static void test_seal_time(void)
{
    /* 12:00 CET -> 00:00 CET = 23:00Z */
    CHECK(pec_sched_seal_time(T0) == (time_t)1709334000 + PEC_SCHED_SEAL_DELAY);
    /* Sat 30 March 2024 12:00Z -> Sunday 00:00 CET = 23:00Z (the clocks change
     * that night) */
    CHECK(pec_sched_seal_time(1711800000) == (time_t)1711839600 + PEC_SCHED_SEAL_DELAY);
    /* Sun 31 March 12:00Z, now CEST -> Monday 00:00 CEST = 22:00Z */
    CHECK(pec_sched_seal_time(1711886400) == (time_t)1711922400 + PEC_SCHED_SEAL_DELAY);
    /* just before midnight and just after it */
    CHECK(pec_sched_seal_time(1709333999) == (time_t)1709334000 + PEC_SCHED_SEAL_DELAY);
    CHECK(pec_sched_seal_time(1709334000) == (time_t)1709420400 + PEC_SCHED_SEAL_DELAY);
}

int main(void)
{
    testenv_init(&env);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_seal_time();
    test_three_cases();
    test_down_across_deadlines();
    test_late_receipts();
    test_through_reception();
    test_many();
    testenv_free(&env);
    if (check_failures == 0) {
        char *cmd = xasprintf("rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", dir);
        free(cmd);
    }
    return check_exit();
}
