/*
 * test_store_pg - the store on PostgreSQL as several nodes use it: two
 * handles on one database, as two pecmilters would hold them, racing in
 * threads.  The registro stays one chain, an outbox row is claimed by one
 * node only, a conditional batch (a 12 h notice) is applied by one node
 * only, receipts recorded by one node close the transaction for the other,
 * a node_id is held by one live handle, a deadlock is retried, and a
 * connection the server drops is a temporary error followed by a
 * reconnect.  Needs PEC_TEST_STORE (ctest's unit.test_store_pg.postgresql
 * starts a private server through t/pectest/postgres.py).
 */
#include "check.h"
#include "pgtest.h"
#include "store/db_int.h"
#include "store/registro.h"
#include "store/store.h"
#include "util/xalloc.h"

#include <pthread.h>

static const char *base;

/* The one number SQL gives on the test's database, or -1. */
static long long pg_number(const char *sql)
{
    PGconn *c = PQconnectdb(base);
    PGresult *r = PQexec(c, sql);
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;

    PQclear(r);
    PQfinish(c);
    return n;
}

/* Two handles on a fresh schema NAME: node 1 and node 2. */
static int open_nodes(const char *name, struct pec_store *st[2])
{
    char err[1024], *spec = pg_fresh_schema(base, name);

    CHECK(spec != NULL);
    for (int i = 0; i < 2; i++) {
        st[i] = spec ? pec_store_open(spec, 0, err, sizeof(err)) : NULL;
        if (st[i] == NULL)
            fprintf(stderr, "open %s: %s\n", name, spec ? err : "no schema");
        CHECK(st[i] != NULL);
        if (st[i] != NULL)
            pec_store_set_node(st[i], i == 0 ? "1" : "2");
    }
    free(spec);
    return st[0] != NULL && st[1] != NULL ? 0 : -1;
}

static void close_nodes(struct pec_store *st[2])
{
    pec_store_close(st[0]);
    pec_store_close(st[1]);
}

/* Both nodes start each round together, to meet in the database. */
static pthread_barrier_t together;

struct node_run {
    struct pec_store *st;
    int node;
    int rounds;
    int applied; /* commits that returned 0 */
    int failed;  /* that returned -1 */
    long long claimed[200];
    int nclaimed;
    char err[1024];
};

/* ---------------------------------------------------------------- one chain */

#define CHAIN_ROUNDS 60

static void *append_records(void *arg)
{
    struct node_run *n = arg;

    for (int i = 0; i < n->rounds; i++) {
        struct pec_batch *b = pec_batch_new();
        char id[64];
        struct pec_record r;
        int rc;

        snprintf(id, sizeof(id), "opec-%d-%d@pec-a.test", n->node, i);
        for (int k = 0; k < 2; k++) {
            pec_record_init(&r, PEC_REG_ACCETTAZIONE, PEC_REG_EMISSIONE, 1000 + i, id);
            r.mittente = "mario@pec-a.test";
            pec_batch_record(b, &r);
        }
        pthread_barrier_wait(&together);
        rc = pec_store_commit(n->st, b, n->err, sizeof(n->err));
        if (rc == 0)
            n->applied++;
        else
            n->failed++;
        pec_batch_free(b);
    }
    return NULL;
}

struct chain_walk {
    long long records, last_seq, breaks;
    char last_hash[PEC_HASH_HEX];
    long long by_node[3];
};

static int walk_chain(const struct pec_record *r, void *arg)
{
    struct chain_walk *w = arg;
    char hash[PEC_HASH_HEX];

    pec_record_hash(r, hash);
    if (r->seq != w->last_seq + 1 || strcmp(r->prev, w->last_hash) != 0 ||
        strcmp(hash, r->hash) != 0)
        w->breaks++;
    w->records++;
    w->last_seq = r->seq;
    snprintf(w->last_hash, sizeof(w->last_hash), "%s", r->hash);
    if (strcmp(r->node, "1") == 0 || strcmp(r->node, "2") == 0)
        w->by_node[atoi(r->node)]++;
    return 0;
}

static void run_pair(struct pec_store *st[2], void *(*fn)(void *), struct node_run runs[2],
                     int rounds)
{
    pthread_t th[2];

    memset(runs, 0, 2 * sizeof(runs[0]));
    pthread_barrier_init(&together, NULL, 2);
    for (int i = 0; i < 2; i++) {
        runs[i].st = st[i];
        runs[i].node = i + 1;
        runs[i].rounds = rounds;
        CHECK(pthread_create(&th[i], NULL, fn, &runs[i]) == 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&together);
    for (int i = 0; i < 2; i++)
        if (runs[i].failed)
            printf("node %d: %d commits failed, last: %s\n", i + 1, runs[i].failed, runs[i].err);
}

/* Two nodes append at the same moments: one linear chain, every record once. */
static void test_one_chain(void)
{
    struct pec_store *st[2];
    struct node_run runs[2];
    struct chain_walk w;
    char err[1024], purged_hash[PEC_HASH_HEX], head_hash[PEC_HASH_HEX];
    long long purged, head;

    if (open_nodes("chain", st) < 0)
        return;
    run_pair(st, append_records, runs, CHAIN_ROUNDS);
    CHECK(runs[0].applied == CHAIN_ROUNDS && runs[1].applied == CHAIN_ROUNDS);
    memset(&w, 0, sizeof(w));
    memset(w.last_hash, '0', PEC_HASH_HEX - 1);
    CHECK(pec_store_log_each(st[0], NULL, walk_chain, &w, err, sizeof(err)) == 0);
    printf("one chain: %lld records (node 1: %lld, node 2: %lld), %lld breaks\n", w.records,
           w.by_node[1], w.by_node[2], w.breaks);
    CHECK(w.records == 4 * CHAIN_ROUNDS && w.breaks == 0);
    CHECK(w.by_node[1] == 2 * CHAIN_ROUNDS && w.by_node[2] == 2 * CHAIN_ROUNDS);
    CHECK(pec_store_log_bounds(st[1], &purged, purged_hash, &head, head_hash, err, sizeof(err)) ==
          0);
    CHECK(head == w.last_seq && strcmp(head_hash, w.last_hash) == 0);
    close_nodes(st);
}

/* ---------------------------------------------------------------- the outbox */

#define OUTBOX_ROWS 120

static void *claim_rows(void *arg)
{
    struct node_run *n = arg;
    struct pec_outbox_row row;
    time_t next;
    int rc;

    pthread_barrier_wait(&together);
    while ((rc = pec_store_outbox_claim(n->st, 100, n->node, &row, &next, n->err,
                                        sizeof(n->err))) == 1) {
        if (n->nclaimed < (int)(sizeof(n->claimed) / sizeof(n->claimed[0])))
            n->claimed[n->nclaimed++] = row.id;
        if (pec_store_outbox_sent(n->st, row.id, 101, "", "", n->err, sizeof(n->err)) < 0)
            n->failed++;
        pec_outbox_row_free(&row);
    }
    if (rc < 0)
        n->failed++;
    return NULL;
}

/* Two injectors drain one outbox: every row claimed once, by one of them. */
static void test_claim_once(void)
{
    struct pec_store *st[2];
    struct node_run runs[2];
    struct pec_outbox_stats s;
    struct pec_batch *b;
    char err[1024], mid[64];
    const char *to[] = {"mario@pec-a.test"};
    int dup = 0;

    if (open_nodes("claim", st) < 0)
        return;
    b = pec_batch_new();
    for (int i = 0; i < OUTBOX_ROWS; i++) {
        struct pec_outmsg m = {
            mid, "opec@pec-a.test", "accettazione", to, 1, (const unsigned char *)"x\r\n", 3};
        snprintf(mid, sizeof(mid), "out-%d@pec-a.test", i);
        pec_batch_outbox(b, &m);
    }
    CHECK(pec_store_commit(st[0], b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    run_pair(st, claim_rows, runs, 0);
    for (int i = 0; i < runs[0].nclaimed; i++)
        for (int j = 0; j < runs[1].nclaimed; j++)
            dup += runs[0].claimed[i] == runs[1].claimed[j];
    printf("claim once: node 1 sent %d, node 2 sent %d, %d rows claimed by both\n",
           runs[0].nclaimed, runs[1].nclaimed, dup);
    CHECK(runs[0].failed == 0 && runs[1].failed == 0);
    CHECK(dup == 0 && runs[0].nclaimed + runs[1].nclaimed == OUTBOX_ROWS);
    CHECK(pec_store_outbox_stats(st[1], &s, err, sizeof(err)) == 0);
    CHECK(s.count[PEC_OUT_SENT] == OUTBOX_ROWS && s.count[PEC_OUT_SENDING] == 0);
    close_nodes(st);
}

/* ---------------------------------------------------------------- deadlines */

#define NOTICE_ROUNDS 40

static const struct pec_tx_rcpt one_rcpt[] = {{"b1@pec-b.test", 1, 0}};

/* A transaction ID with one certified recipient, sent at 1000, into B. */
static void batch_tx(struct pec_batch *b, const char *id)
{
    struct pec_tx tx = {0};

    tx.identificativo = id;
    tx.mittente = "mario@pec-a.test";
    tx.submitted = 1000;
    tx.rcpt = one_rcpt;
    tx.nrcpt = 1;
    pec_batch_tx(b, &tx);
}

static void *warn_once(void *arg)
{
    struct node_run *n = arg;
    const char *to[] = {"mario@pec-a.test"};

    for (int i = 0; i < n->rounds; i++) {
        struct pec_batch *b = pec_batch_new();
        char id[64], mid[64];
        struct pec_outmsg m = {
            mid, id, "preavviso-errore-consegna", to, 1, (const unsigned char *)"x\r\n", 3};
        int rc;

        snprintf(id, sizeof(id), "opec-w%d@pec-a.test", i);
        snprintf(mid, sizeof(mid), "warn-%d-%d@pec-a.test", n->node, i);
        pec_batch_expect(b, id, "b1@pec-b.test", 1u << PEC_RCPT_SENT | 1u << PEC_RCPT_TAKEN, 1);
        pec_batch_outbox(b, &m);
        pec_batch_rcpt_warned(b, id, "b1@pec-b.test", 5000);
        pthread_barrier_wait(&together);
        rc = pec_store_commit(n->st, b, n->err, sizeof(n->err));
        if (rc == 0)
            n->applied++;
        else if (rc < 0)
            n->failed++;
        pec_batch_free(b);
    }
    return NULL;
}

/* Both schedulers find the same recipient due: its 12 h notice is queued once. */
static void test_notice_once(void)
{
    struct pec_store *st[2];
    struct node_run runs[2];
    struct pec_outbox_stats s;
    struct pec_batch *b;
    char err[1024];

    if (open_nodes("notice", st) < 0)
        return;
    b = pec_batch_new();
    for (int i = 0; i < NOTICE_ROUNDS; i++) {
        char id[64];
        snprintf(id, sizeof(id), "opec-w%d@pec-a.test", i);
        batch_tx(b, id);
    }
    CHECK(pec_store_commit(st[0], b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    run_pair(st, warn_once, runs, NOTICE_ROUNDS);
    printf("notice once: node 1 queued %d, node 2 queued %d of %d\n", runs[0].applied,
           runs[1].applied, NOTICE_ROUNDS);
    CHECK(runs[0].failed == 0 && runs[1].failed == 0);
    CHECK(runs[0].applied + runs[1].applied == NOTICE_ROUNDS);
    CHECK(pec_store_outbox_stats(st[1], &s, err, sizeof(err)) == 0);
    CHECK(s.count[PEC_OUT_QUEUED] == NOTICE_ROUNDS);
    close_nodes(st);
}

static int count_pending(const struct pec_pending_rcpt *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

/*
 * Node 1 sent the busta; the presa in carico and the consegna reach node 2:
 * the transaction is closed for node 1's scheduler too.  A copy delivered
 * by node 1 is known to node 2's delivery point.
 */
static void test_receipts_other_node(void)
{
    struct pec_store *st[2];
    struct pec_batch *b;
    char err[1024];
    int pending = 0;

    if (open_nodes("receipts", st) < 0)
        return;
    b = pec_batch_new();
    batch_tx(b, "opec-r1@pec-a.test");
    CHECK(pec_store_commit(st[0], b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    CHECK(pec_store_pending_each(st[0], 0, count_pending, &pending, err, sizeof(err)) == 0);
    CHECK(pending == 1);
    b = pec_batch_new();
    pec_batch_rcpt_state(b, "opec-r1@pec-a.test", "b1@pec-b.test", PEC_RCPT_TAKEN, 1100, "");
    pec_batch_rcpt_state(b, "opec-r1@pec-a.test", "B1@pec-b.test", PEC_RCPT_DELIVERED, 1200, "");
    pec_batch_delivered(b, "b1@pec-b.test", "m-r1@pec-a.test", 1200);
    CHECK(pec_store_commit(st[1], b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    pending = 0;
    CHECK(pec_store_pending_each(st[0], 0, count_pending, &pending, err, sizeof(err)) == 0);
    CHECK(pending == 0);
    CHECK(pec_store_delivered(st[0], "B1@PEC-B.test", "m-r1@pec-a.test", err, sizeof(err)) == 1);
    close_nodes(st);
}

/* ---------------------------------------------------------------- faults */

static int commit_tx(struct pec_store *st, const char *id, char *err, size_t errlen)
{
    struct pec_batch *b = pec_batch_new();
    int rc;

    batch_tx(b, id);
    rc = pec_store_commit(st, b, err, errlen);
    pec_batch_free(b);
    return rc;
}

/* Every connection to the test's database but this one ended, as a server restart would. */
static int drop_connections(void)
{
    return pg_sql(base, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()");
}

/* The server drops the connection (a restart, a failover): one error, then it works again. */
static void test_connection_lost(void)
{
    struct pec_store *st[2];
    struct pec_tx_info tx;
    char err[1024];

    if (open_nodes("lost", st) < 0)
        return;
    CHECK(commit_tx(st[0], "opec-l1@pec-a.test", err, sizeof(err)) == 0);
    /* the store's own connection settings are there, the spec's too (its schema) */
    CHECK(pg_number("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pecmilter'"
                    " AND datname = current_database()") == 2);
    CHECK(pg_number("SELECT count(*) FROM lost.transactions") == 1);
    CHECK(drop_connections() == 0);
    CHECK(commit_tx(st[0], "opec-l2@pec-a.test", err, sizeof(err)) == -1);
    printf("connection lost: %s\n", err);
    CHECK(strstr(err, "lost") != NULL); /* the store named: its schema is in the spec */
    CHECK(commit_tx(st[0], "opec-l2@pec-a.test", err, sizeof(err)) == 0);
    /* the other handle, dropped too, reads again after one error */
    if (pec_store_tx_get(st[1], "opec-l1@pec-a.test", &tx, err, sizeof(err)) < 0)
        printf("connection lost (node 2): %s\n", err);
    CHECK(pec_store_tx_get(st[1], "opec-l2@pec-a.test", &tx, err, sizeof(err)) == 1);
    pec_tx_info_free(&tx);
    close_nodes(st);
}

struct committer {
    struct pec_store *st;
    int rc;
    char err[1024];
};

static void *commit_record(void *arg)
{
    struct committer *c = arg;
    struct pec_batch *b = pec_batch_new();
    struct pec_record r;

    pec_record_init(&r, PEC_REG_ACCETTAZIONE, PEC_REG_EMISSIONE, 1000, "opec-dl@pec-a.test");
    pec_batch_record(b, &r);
    c->rc = pec_store_commit(c->st, b, c->err, sizeof(c->err));
    pec_batch_free(b);
    return NULL;
}

static long long deadlocks(void)
{
    return pg_number("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
}

static int lock_waiters(void)
{
    return pg_number("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                     " AND datname = current_database()") > 0;
}

/*
 * Another transaction and a commit lock the registro's two head rows in
 * opposite orders (a commit locks both at once, the hash's row first: in
 * the order of their keys): the server breaks the deadlock by failing the
 * commit's transaction (it waited first), whose batch is applied again and
 * goes through.
 */
static void test_deadlock_retried(void)
{
    struct pec_store *st[2];
    struct committer c = {0};
    struct chain_walk w;
    char *spec = xasprintf("%s options='-csearch_path=deadlock'", base);
    PGconn *x;
    PGresult *r;
    pthread_t th;
    long long before = deadlocks();

    if (open_nodes("deadlock", st) < 0) {
        free(spec);
        return;
    }
    x = PQconnectdb(spec);
    PQclear(PQexec(x, "BEGIN"));
    r = PQexec(x, "UPDATE meta SET value = value WHERE key = 'registro_head_seq'");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    c.st = st[0];
    CHECK(pthread_create(&th, NULL, commit_record, &c) == 0);
    /* until the commit waits for x: then it waits longer, and its backend finds the deadlock */
    for (int i = 0; i < 100 && !lock_waiters(); i++)
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    /*
     * The commit's transaction gives way; its retry may meet x again, and
     * then x is the one that waited first and gives way: what x gets does
     * not matter, the commit must go through.
     */
    r = PQexec(x, "UPDATE meta SET value = value WHERE key = 'registro_head_hash'");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        printf("deadlock: the other transaction: %s", PQerrorMessage(x));
    PQclear(r);
    PQclear(PQexec(x, "COMMIT"));
    PQfinish(x);
    pthread_join(th, NULL);
    printf("deadlock: the commit returned %d%s%s; the server counted %lld deadlock(s)\n", c.rc,
           c.rc ? ": " : "", c.rc ? c.err : "", deadlocks() - before);
    CHECK(c.rc == 0);
    CHECK(deadlocks() - before >= 1);
    memset(&w, 0, sizeof(w));
    memset(w.last_hash, '0', PEC_HASH_HEX - 1);
    CHECK(pec_store_log_each(st[1], NULL, walk_chain, &w, NULL, 0) == 0);
    CHECK(w.records == 1 && w.breaks == 0);
    close_nodes(st);
    free(spec);
}

/*
 * A node whose connection runs serializable transactions (default_transaction_isolation,
 * as a DBA may set it for the database): its commit waits for the registro's head row,
 * which another transaction updates and commits meanwhile, so the server fails the commit
 * with a serialisation error (SQLSTATE 40001), and its batch is applied again and goes
 * through.  Without the retry the commit returns -1.
 */
static void test_serialization_retried(void)
{
    struct pec_store *st[2], *ser;
    struct committer c = {0};
    struct chain_walk w;
    char err[1024];
    char *spec = xasprintf(
        "%s options='-csearch_path=serial -cdefault_transaction_isolation=serializable'", base);
    PGconn *x;
    PGresult *r;
    pthread_t th;

    if (open_nodes("serial", st) < 0) {
        free(spec);
        return;
    }
    ser = pec_store_open(spec, 0, err, sizeof(err));
    CHECK(ser != NULL);
    if (ser == NULL) {
        fprintf(stderr, "open serial: %s\n", err);
        close_nodes(st);
        free(spec);
        return;
    }
    pec_store_set_node(ser, "3");
    x = PQconnectdb(spec);
    PQclear(PQexec(x, "BEGIN"));
    r = PQexec(x, "UPDATE meta SET value = value WHERE key = 'registro_head_hash'");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    c.st = ser;
    CHECK(pthread_create(&th, NULL, commit_record, &c) == 0);
    for (int i = 0; i < 100 && !lock_waiters(); i++)
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    CHECK(lock_waiters());
    r = PQexec(x, "COMMIT");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(x);
    pthread_join(th, NULL);
    printf("serialisation: the commit returned %d%s%s\n", c.rc, c.rc ? ": " : "",
           c.rc ? c.err : "");
    CHECK(c.rc == 0);
    memset(&w, 0, sizeof(w));
    memset(w.last_hash, '0', PEC_HASH_HEX - 1);
    CHECK(pec_store_log_each(st[1], NULL, walk_chain, &w, NULL, 0) == 0);
    CHECK(w.records == 1 && w.breaks == 0);
    pec_store_close(ser);
    close_nodes(st);
    free(spec);
}

/* Two live pecmilters with one node_id are refused; the id is free again when its node is gone. */
static void test_node_unique(void)
{
    struct pec_store *st[2], *third;
    char err[1024], *spec = xasprintf("%s options='-csearch_path=nodes'", base);

    if (open_nodes("nodes", st) < 0) {
        free(spec);
        return;
    }
    CHECK(pec_store_claim_node(st[0], 1, err, sizeof(err)) == 0);
    CHECK(pec_store_claim_node(st[1], 1, err, sizeof(err)) == -1);
    printf("node unique: %s\n", err);
    CHECK(strstr(err, "node_id 1 is in use") != NULL);
    CHECK(pec_store_claim_node(st[1], 2, err, sizeof(err)) == 0);
    /* a reconnect takes the claim again: node 2's id stays its own */
    CHECK(drop_connections() == 0);
    CHECK(pec_store_claim_node(st[0], 1, err, sizeof(err)) == -1); /* the dropped connection */
    CHECK(pec_store_claim_node(st[0], 1, err, sizeof(err)) == 0);
    third = pec_store_open(spec, 0, err, sizeof(err));
    CHECK(third != NULL);
    if (third != NULL) {
        struct pec_outbox_stats s;
        /* st[1]'s dropped connection fails once, then it reconnects, claiming 2 again */
        if (pec_store_outbox_stats(st[1], &s, err, sizeof(err)) < 0)
            CHECK(pec_store_outbox_stats(st[1], &s, err, sizeof(err)) == 0);
        CHECK(pec_store_claim_node(third, 2, err, sizeof(err)) == -1);
        pec_store_close(st[0]);
        st[0] = NULL;
        CHECK(pec_store_claim_node(third, 1, err, sizeof(err)) == 0);
        pec_store_close(third);
    }
    close_nodes(st);
    free(spec);
}

/* ---------------------------------------------------------------- synchronous_commit */

/*
 * The connection's synchronous_commit as a call sees it, RELAXED or not,
 * in a transaction of its own (BATCH: db_begin_batch, 0: db_begin, -1:
 * none), rolled back.
 */
static char *sync_setting(struct pec_store *st, int relaxed, int batch)
{
    char err[1024], *v = NULL;
    struct db_stmt *s;

    if ((relaxed ? db_enter_relaxed(st, err, sizeof(err)) : db_enter(st, err, sizeof(err))) < 0)
        return xstrdup(err);
    if ((batch < 0 ||
         (batch ? db_begin_batch(st, err, sizeof(err)) : db_begin(st, err, sizeof(err))) == 0) &&
        (s = db_prep(st, "SELECT current_setting('synchronous_commit')", err, sizeof(err))) !=
            NULL) {
        v = xstrdup(db_step(st, s) == 1 ? db_col(s, 0) : "(error)");
        db_release(st, s);
    }
    if (batch >= 0)
        db_rollback(st);
    db_leave(st);
    return v ? v : xstrdup(err);
}

#define CHECK_SYNC(st, relaxed, batch, want)                                                       \
    do {                                                                                           \
        char *v_ = sync_setting(st, relaxed, batch);                                               \
        CHECK_STR(v_, want);                                                                       \
        free(v_);                                                                                  \
    } while (0)

/*
 * The injector's bookkeeping (relaxed calls) does not wait for the WAL's
 * flush, in its own transactions only; every other call does, whatever
 * went before.  A relaxed write that fails leaves no transaction open.
 */
static void test_relaxed_only(void)
{
    struct pec_store *st[2];
    struct pec_outbox_row row[2];
    struct pec_batch *b;
    char err[1024], *spec = xasprintf("%s options='-csearch_path=relaxed'", base);
    const unsigned char msg[] = "Message-ID: <r1@pec-a.test>\r\n\r\nbody\r\n";
    const char *to[] = {"mario@pec-a.test"};
    struct pec_outmsg m[2] = {
        {"r1@pec-a.test", "opec.r1@pec-a.test", "accettazione", to, 1, msg, sizeof(msg) - 1},
        {"r2@pec-a.test", "opec.r2@pec-a.test", "accettazione", to, 1, msg, sizeof(msg) - 1}};
    time_t next;

    if (open_nodes("relaxed", st) < 0) {
        free(spec);
        return;
    }
    CHECK_SYNC(st[0], 0, -1, "on");
    CHECK_SYNC(st[0], 1, -1, "on"); /* nothing committed: nothing relaxed */
    CHECK_SYNC(st[0], 1, 1, "off");
    CHECK_SYNC(st[0], 0, -1, "on");
    CHECK_SYNC(st[0], 1, 0, "off");
    CHECK_SYNC(st[0], 0, 1, "on");
    CHECK_SYNC(st[0], 0, 0, "on");
    /* the bookkeeping of two rows, then an ordinary call */
    b = pec_batch_new();
    pec_batch_outbox(b, &m[0]);
    pec_batch_outbox(b, &m[1]);
    CHECK(pec_store_commit(st[0], b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    for (int i = 0; i < 2; i++)
        CHECK(pec_store_outbox_claim(st[0], time(NULL), 1, &row[i], &next, err, sizeof(err)) == 1);
    CHECK(pec_store_outbox_sent(st[0], row[0].id, time(NULL), "Q1", "", err, sizeof(err)) == 0);
    CHECK(pec_store_outbox_sent(st[0], row[0].id, time(NULL), "Q1", "", err, sizeof(err)) < 0);
    CHECK(strstr(err, "is not being sent") != NULL);
    CHECK_SYNC(st[0], 0, -1, "on");
    /* a relaxed write the database refuses (its statement prepared): the handle goes on */
    CHECK(pg_sql(spec, "ALTER TABLE outbox ADD CONSTRAINT not_bad CHECK (mta_queue_id <> 'bad')") ==
          0);
    CHECK(pec_store_outbox_sent(st[0], row[1].id, time(NULL), "bad", "", err, sizeof(err)) < 0);
    printf("relaxed write refused: %s\n", err);
    CHECK(strstr(err, "not_bad") != NULL);
    CHECK_SYNC(st[0], 0, -1, "on");
    CHECK(pec_store_outbox_sent(st[0], row[1].id, time(NULL), "Q2", "", err, sizeof(err)) == 0);
    for (int i = 0; i < 2; i++)
        pec_outbox_row_free(&row[i]);
    CHECK_SYNC(st[0], 0, 1, "on");
    close_nodes(st);
    free(spec);
}

int main(void)
{
    base = getenv("PEC_TEST_STORE");
    if (base == NULL || *base == '\0')
        SKIP("PEC_TEST_STORE is not set (ctest runs this as unit.test_store_pg.postgresql)");
    test_one_chain();
    test_claim_once();
    test_notice_once();
    test_receipts_other_node();
    test_connection_lost();
    test_node_unique();
    test_deadlock_retried();
    test_serialization_retried();
    test_relaxed_only();
    return check_exit();
}
