/*
 * test_store - the store: atomic batches, recipients' states, the outbox's
 * life cycle, log queries, and the faults the daemon must survive (locked,
 * disk full, unwritable, corrupt) with one clear error and recovery once the
 * cause is gone.
 *
 * With PEC_TEST_STORE set to a PostgreSQL connection string (ctest's
 * unit.test_store.postgresql, through t/pectest/postgres.py) the same tests
 * run on PostgreSQL, each in a schema of its own; the faults of a file
 * (locked, full, unwritable, corrupt) and the SQLite migration are SQLite's
 * alone and are skipped there, saying so.
 */
#include "check.h"
#include "pgtest.h"
#include "store/registro.h"
#include "store/store.h"
#include "util/xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/test_store.XXXXXX";
static int log_lines, hook_calls;
static char last_line[2048];

static int last_qid_given;

static void on_log(int prio, const char *qid, const char *text)
{
    (void)prio;
    last_qid_given = qid != NULL && *qid != '\0';
    log_lines++;
    snprintf(last_line, sizeof(last_line), "%s", text);
}

static void on_outbox(void *arg)
{
    (void)arg;
    hook_calls++;
}

/* PEC_TEST_STORE: the PostgreSQL database to run on; NULL: SQLite files in dir */
static const char *pg_base;

static char *path_of(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

/* NAME's schema on PostgreSQL: "tx.db" is tx_db */
static char *schema_of(const char *name)
{
    char *s = xstrdup(name);

    for (char *p = s; *p; p++)
        if (*p == '.')
            *p = '_';
    return s;
}

/* The store NAME: a file in dir, or a fresh schema of the PostgreSQL database. */
static char *spec_of(const char *name)
{
    char *schema, *spec;

    if (pg_base == NULL)
        return path_of(name);
    schema = schema_of(name);
    spec = pg_fresh_schema(pg_base, schema);
    CHECK(spec != NULL);
    free(schema);
    return spec ? spec : xstrdup("");
}

/* Does the error ERR name the store NAME, as a file or as its schema? */
static int names_store(const char *err, const char *name)
{
    char *schema = schema_of(name);
    int yes = strstr(err, pg_base ? schema : name) != NULL;

    free(schema);
    return yes;
}

static struct pec_store *open_new(const char *name)
{
    char err[1024], *p = spec_of(name);
    struct pec_store *st = pec_store_open(p, 0, err, sizeof(err));

    if (st == NULL)
        fprintf(stderr, "open %s: %s\n", p, err);
    free(p);
    return st;
}

static const struct pec_tx_rcpt rcpts[] = {
    {"b1@pec-b.test", 1, 0},
    {"ext@example.org", 0, 0},
    {"b2@pec-b.test", 1, 1},
};

static void fill_tx(struct pec_tx *tx, const char *id)
{
    memset(tx, 0, sizeof(*tx));
    tx->identificativo = id;
    tx->client_msgid = "client.1@mua";
    tx->mittente = "mario@pec-a.test";
    tx->oggetto = "Fattura";
    tx->tipo_ricevuta = "completa";
    tx->queue_id = "4Q1";
    tx->submitted = 1706695200;
    tx->rcpt = rcpts;
    tx->nrcpt = 3;
}

/* A batch as the access point makes it: transaction, accettazione queued, two records. */
static struct pec_batch *submission(const char *id, const char *msgid, const unsigned char *msg,
                                    size_t len)
{
    struct pec_batch *b = pec_batch_new();
    struct pec_tx tx;
    struct pec_record r;
    const char *to[] = {"mario@pec-a.test"};
    struct pec_outmsg m = {msgid, id, "accettazione", to, 1, msg, len};

    fill_tx(&tx, id);
    pec_batch_tx(b, &tx);
    pec_batch_outbox(b, &m);
    pec_record_init(&r, PEC_REG_BUSTA_TRASPORTO, PEC_REG_EMISSIONE, tx.submitted, id);
    r.mittente = tx.mittente;
    r.destinatari = "b1@pec-b.test (certificato), ext@example.org (esterno)";
    r.oggetto = tx.oggetto;
    r.queue_id = "4Q1";
    pec_batch_record(b, &r);
    pec_record_init(&r, PEC_REG_ACCETTAZIONE, PEC_REG_EMISSIONE, tx.submitted, id);
    r.mittente = tx.mittente;
    r.message_id = msgid;
    pec_batch_record(b, &r);
    return b;
}

static int count_rec(const struct pec_record *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

static int count_log(struct pec_store *st, const struct pec_log_filter *f)
{
    char err[1024];
    int n = 0;

    CHECK(pec_store_log_each(st, f, count_rec, &n, err, sizeof(err)) == 0);
    return n;
}

static void test_batch_and_tx(void)
{
    struct pec_store *st = open_new("tx.db");
    struct pec_tx_info tx;
    struct pec_batch *b;
    char err[1024];
    const unsigned char msg[] = "Message-ID: <n1@pec-a.test>\r\n\r\nbody\r\n";

    CHECK(st != NULL);
    if (st == NULL)
        return;
    pec_store_set_log(st, on_log);
    pec_store_set_outbox_hook(st, on_outbox, NULL);
    b = submission("opec1@pec-a.test", "n1@pec-a.test", msg, sizeof(msg) - 1);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    CHECK(log_lines == 2 && hook_calls == 1);
    CHECK(strstr(last_line, "opec1@pec-a.test: queueid=: tipo=accettazione (Accettazione): "
                            "mittente=") == last_line);
    CHECK(!last_qid_given); /* the syslog copy is the line itself, nothing before it */

    /* the same batch again: duplicate identificativo, nothing of it applied */
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == -1);
    printf("duplicate: %s\n", err);
    CHECK(names_store(err, "tx.db") && strcasestr(err, "unique") != NULL);
    CHECK(count_log(st, NULL) == 2);
    pec_batch_free(b);

    CHECK(pec_store_tx_get(st, "opec1@pec-a.test", &tx, err, sizeof(err)) == 1);
    CHECK_STR(tx.mittente, "mario@pec-a.test");
    CHECK(tx.nrcpt == 3);
    if (tx.nrcpt == 3) {
        CHECK_STR(tx.rcpt[1].address, "ext@example.org");
        CHECK(tx.rcpt[1].certificato == 0 && tx.rcpt[2].cc == 1);
        CHECK(tx.rcpt[0].state == PEC_RCPT_SENT);
    }
    pec_tx_info_free(&tx);
    CHECK(pec_store_tx_get(st, "nope", &tx, err, sizeof(err)) == 0);

    /* states: forward only; case-insensitive address; NULL = all */
    b = pec_batch_new();
    pec_batch_rcpt_state(b, "opec1@pec-a.test", "B1@PEC-B.TEST", PEC_RCPT_DELIVERED, 1000, "ok");
    pec_batch_rcpt_state(b, "opec1@pec-a.test", "b1@pec-b.test", PEC_RCPT_TAKEN, 1001, "");
    pec_batch_rcpt_state(b, "opec1@pec-a.test", "b2@pec-b.test", PEC_RCPT_TAKEN, 1002, "");
    pec_batch_rcpt_state(b, "opec1@pec-a.test", NULL, PEC_RCPT_TIMEDOUT, 1003, "5.4.1");
    pec_batch_rcpt_state(b, "unknown@x", NULL, PEC_RCPT_FAILED, 1004, "");
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    CHECK(hook_calls == 1); /* no outbox rows: no wake-up */
    pec_batch_free(b);
    CHECK(pec_store_tx_get(st, "opec1@pec-a.test", &tx, err, sizeof(err)) == 1);
    if (tx.nrcpt == 3) {
        CHECK(tx.rcpt[0].state == PEC_RCPT_DELIVERED && tx.rcpt[0].done_at == 1000 &&
              tx.rcpt[0].taken_at == 0);
        CHECK(tx.rcpt[1].state == PEC_RCPT_TIMEDOUT);
        CHECK(tx.rcpt[2].state == PEC_RCPT_TIMEDOUT && tx.rcpt[2].taken_at == 1002);
        CHECK_STR(tx.rcpt[2].detail, "5.4.1");
    }
    pec_tx_info_free(&tx);
    pec_store_close(st);
}

static void test_outbox(void)
{
    struct pec_store *st = open_new("outbox.db");
    struct pec_outbox_row row;
    struct pec_outbox_stats s;
    struct pec_batch *b;
    char err[1024];
    time_t next;
    unsigned char bin[300];

    CHECK(st != NULL);
    if (st == NULL)
        return;
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)i;
    b = submission("opec2@pec-a.test", "n2@pec-a.test", bin, sizeof(bin));
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    b = submission("opec3@pec-a.test", "n3@pec-a.test", (const unsigned char *)"x", 1);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);

    /* oldest first, bytes intact, NUL included */
    CHECK(pec_store_outbox_claim(st, 100, 1, &row, &next, err, sizeof(err)) == 1);
    CHECK_STR(row.message_id, "n2@pec-a.test");
    CHECK(row.len == sizeof(bin) && memcmp(row.data, bin, sizeof(bin)) == 0);
    CHECK(row.nrcpt == 1 && strcmp(row.rcpt[0], "mario@pec-a.test") == 0);
    CHECK(row.attempts == 1 && row.state == PEC_OUT_SENDING);
    CHECK(pec_store_outbox_defer(st, row.id, 100, 160, "451 try later", err, sizeof(err)) == 0);
    CHECK(pec_store_outbox_defer(st, row.id, 100, 160, "again", err, sizeof(err)) == -1);
    pec_outbox_row_free(&row);

    CHECK(pec_store_outbox_claim(st, 100, 1, &row, &next, err, sizeof(err)) == 1);
    CHECK_STR(row.message_id, "n3@pec-a.test");
    long long id3 = row.id;
    pec_outbox_row_free(&row);
    /* n2 waits until 160, n3 is "sending" */
    CHECK(pec_store_outbox_claim(st, 100, 1, &row, &next, err, sizeof(err)) == 0);
    CHECK(next == 160);

    /* a crash: n3 back in the queue, counted as a doubt; only our node's rows */
    CHECK(pec_store_outbox_recover(st, 2, err, sizeof(err)) == 0);
    CHECK(pec_store_outbox_recover(st, 1, err, sizeof(err)) == 1);
    CHECK(pec_store_outbox_claim(st, 100, 1, &row, &next, err, sizeof(err)) == 1);
    CHECK(row.id == id3 && row.doubts == 1 && row.attempts == 2);
    CHECK(pec_store_outbox_sent(st, row.id, 101, "4QX", "", err, sizeof(err)) == 0);
    pec_outbox_row_free(&row);
    CHECK(pec_store_outbox_tidy(st, err, sizeof(err)) == 1);
    CHECK(pec_store_outbox_tidy(st, err, sizeof(err)) == 0);

    CHECK(pec_store_outbox_claim(st, 200, 1, &row, &next, err, sizeof(err)) == 1);
    CHECK_STR(row.last_error, "451 try later");
    CHECK(pec_store_outbox_fail(st, row.id, 201, "550 no", err, sizeof(err)) == 0);
    pec_outbox_row_free(&row);
    CHECK(pec_store_outbox_claim(st, 300, 1, &row, &next, err, sizeof(err)) == 0 && next == 0);

    CHECK(pec_store_outbox_stats(st, &s, err, sizeof(err)) == 0);
    CHECK(s.count[PEC_OUT_SENT] == 1 && s.count[PEC_OUT_FAILED] == 1 &&
          s.count[PEC_OUT_QUEUED] == 0);
    CHECK(s.oldest_id != 0 && s.oldest_id != id3);
    CHECK(pec_store_outbox_requeue(st, 0, 300, err, sizeof(err)) == 1);
    CHECK(pec_store_outbox_note(st, 300, "connect: refused", err, sizeof(err)) == 0);
    CHECK(pec_store_outbox_claim(st, 300, 1, &row, &next, err, sizeof(err)) == 1);
    CHECK_STR(row.last_error, "connect: refused");
    CHECK(pec_store_outbox_sent(st, row.id, 301, "", "", err, sizeof(err)) == 0);
    pec_outbox_row_free(&row);

    /* a Message-ID is unique in the outbox */
    b = submission("opec4@pec-a.test", "n2@pec-a.test", bin, 1);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == -1);
    pec_batch_free(b);
    pec_store_close(st);
}

/*
 * A node dies with a row claimed: no other node takes it while the lease
 * runs, the first to claim after it does, with the same bytes and a doubt.
 */
static void test_outbox_lease(void)
{
    struct pec_store *st = open_new("lease.db");
    struct pec_outbox_row row;
    struct pec_batch *b;
    char err[1024];
    time_t next;
    const unsigned char msg[] = "Message-ID: <l1@pec-a.test>\r\n\r\nx\r\n";
    long long id;

    CHECK(st != NULL);
    if (st == NULL)
        return;
    b = submission("opec-l@pec-a.test", "l1@pec-a.test", msg, sizeof(msg) - 1);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    CHECK(pec_store_outbox_claim(st, 1000, 1, &row, &next, err, sizeof(err)) == 1);
    id = row.id;
    pec_outbox_row_free(&row);
    /* node 1 is gone; node 2 finds nothing until the lease is over */
    CHECK(pec_store_outbox_claim(st, 1000 + PEC_OUTBOX_LEASE - 1, 2, &row, &next, err,
                                 sizeof(err)) == 0);
    CHECK(pec_store_outbox_claim(st, 1000 + PEC_OUTBOX_LEASE, 2, &row, &next, err, sizeof(err)) ==
          1);
    CHECK(row.id == id && row.doubts == 1 && row.attempts == 2);
    CHECK(row.len == sizeof(msg) - 1 && memcmp(row.data, msg, row.len) == 0);
    pec_outbox_row_free(&row);
    /* node 2 holds it now, for a whole lease */
    CHECK(pec_store_outbox_claim(st, 1000 + 2 * PEC_OUTBOX_LEASE - 1, 1, &row, &next, err,
                                 sizeof(err)) == 0);
    CHECK(pec_store_outbox_sent(st, id, 1000 + PEC_OUTBOX_LEASE + 5, "4QL", "", err, sizeof(err)) ==
          0);
    CHECK(pec_store_outbox_claim(st, 1000 + 3 * PEC_OUTBOX_LEASE, 1, &row, &next, err,
                                 sizeof(err)) == 0);
    pec_store_close(st);
}

/* A job one node at a time runs: held until its time, by one node, given back when done. */
static void test_jobs(void)
{
    struct pec_store *st = open_new("jobs.db");
    char err[1024];

    CHECK(st != NULL);
    if (st == NULL)
        return;
    CHECK(pec_store_job_take(st, "housekeeping", 1, 1000, 2000, err, sizeof(err)) == 1);
    CHECK(pec_store_job_take(st, "housekeeping", 2, 1500, 2500, err, sizeof(err)) == 0);
    CHECK(pec_store_job_take(st, "other", 2, 1500, 2500, err, sizeof(err)) == 1);
    CHECK(pec_store_job_take(st, "housekeeping", 1, 1500, 2600, err, sizeof(err)) == 1);
    CHECK(pec_store_job_take(st, "housekeeping", 2, 2599, 3000, err, sizeof(err)) == 0);
    CHECK(pec_store_job_take(st, "housekeeping", 2, 2600, 3000, err, sizeof(err)) == 1);
    /* node 1 is no longer the holder: its "done" changes nothing */
    CHECK(pec_store_job_done(st, "housekeeping", 1, err, sizeof(err)) == 0);
    CHECK(pec_store_job_take(st, "housekeeping", 1, 2700, 3100, err, sizeof(err)) == 0);
    CHECK(pec_store_job_done(st, "housekeeping", 2, err, sizeof(err)) == 0);
    CHECK(pec_store_job_take(st, "housekeeping", 1, 2700, 3100, err, sizeof(err)) == 1);
    pec_store_close(st);
}

static void test_log_query(void)
{
    struct pec_store *st = open_new("query.db");
    struct pec_log_filter f;
    struct pec_batch *b;
    struct pec_record r;
    char err[1024];

    CHECK(st != NULL);
    if (st == NULL)
        return;
    b = pec_batch_new();
    for (int i = 0; i < 6; i++) {
        pec_record_init(&r, PEC_REG_CONSEGNA, PEC_REG_RICEZIONE, 1000 + i * 100,
                        i % 2 ? "opecA@x" : "opecB@x");
        r.mittente = i < 3 ? "Mario@pec-a.test" : "luigi@pec-a.test";
        r.destinatari = i == 0 ? "ab@pec-b.test (certificato)"
                               : "b@pec-b.test (certificato), "
                                 "c@ext.test (esterno)";
        pec_batch_record(b, &r);
    }
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    memset(&f, 0, sizeof(f));
    CHECK(count_log(st, &f) == 6);
    f.identificativo = "opecA@x";
    CHECK(count_log(st, &f) == 3);
    memset(&f, 0, sizeof(f));
    f.mittente = "mario@PEC-A.test";
    CHECK(count_log(st, &f) == 3);
    memset(&f, 0, sizeof(f));
    f.destinatario = "b@pec-b.test"; /* not ab@pec-b.test */
    CHECK(count_log(st, &f) == 5);
    f.destinatario = "C@EXT.TEST";
    CHECK(count_log(st, &f) == 5);
    memset(&f, 0, sizeof(f));
    f.since = 1100;
    f.until = 1300;
    CHECK(count_log(st, &f) == 2);
    pec_store_close(st);
}

/* ---------------------------------------------------------------- faults */

static int commit_one(struct pec_store *st, const char *id, size_t len, char *err, size_t errlen)
{
    unsigned char *msg = xcalloc(1, len + 1);
    char *mid = xasprintf("n.%s", id);
    struct pec_batch *b = submission(id, mid, msg, len);
    int rc = pec_store_commit(st, b, err, errlen);

    pec_batch_free(b);
    free(mid);
    free(msg);
    return rc;
}

static void test_locked(void)
{
    struct pec_store *st = open_new("locked.db");
    char err[1024], *p = path_of("locked.db");
    sqlite3 *other = NULL;
    time_t t0;

    CHECK(st != NULL);
    CHECK(sqlite3_open(p, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK);
    t0 = time(NULL);
    CHECK(commit_one(st, "lock1", 10, err, sizeof(err)) == -1);
    CHECK(time(NULL) - t0 >= 4); /* the busy timeout was waited out */
    CHECK(strstr(err, "database is locked") != NULL);
    printf("locked: %s\n", err);
    CHECK(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(commit_one(st, "lock1", 10, err, sizeof(err)) == 0);
    sqlite3_close(other);
    pec_store_close(st);
    free(p);
}

#define QUEUED 8
#define SHORT_BUSY_MS 400

struct queued_call {
    struct pec_store *st;
    char id[16];
    int rc;
    char err[1024];
};

static void *queued_commit(void *arg)
{
    struct queued_call *c = arg;

    c->rc = commit_one(c->st, c->id, 10, c->err, sizeof(c->err));
    return NULL;
}

static long long ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Threads queued on the handle while another process holds the write lock
 * wait one busy timeout between them, not one each: the last of eight must
 * not wait eight timeouts (an SMTP client at end of data would time out).
 * Once the lock is gone the timeout is whole again.
 */
static void test_locked_queue(void)
{
    struct pec_store *st = open_new("queue.db");
    char err[1024], *p = path_of("queue.db");
    struct queued_call calls[QUEUED];
    pthread_t th[QUEUED];
    sqlite3 *other = NULL;
    long long t0, took;

    CHECK(st != NULL);
    pec_store_set_busy_timeout(st, SHORT_BUSY_MS);
    CHECK(commit_one(st, "q-first", 10, err, sizeof(err)) == 0); /* the tables exist */
    CHECK(sqlite3_open(p, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK);
    t0 = ms_now();
    for (int i = 0; i < QUEUED; i++) {
        calls[i].st = st;
        snprintf(calls[i].id, sizeof(calls[i].id), "q%d", i);
        CHECK(pthread_create(&th[i], NULL, queued_commit, &calls[i]) == 0);
    }
    for (int i = 0; i < QUEUED; i++)
        pthread_join(th[i], NULL);
    took = ms_now() - t0;
    for (int i = 0; i < QUEUED; i++) {
        CHECK(calls[i].rc == -1);
        CHECK(strstr(calls[i].err, "database is locked") != NULL);
    }
    printf("locked queue: %d calls failed in %lld ms (busy timeout %d ms)\n", QUEUED, took,
           SHORT_BUSY_MS);
    CHECK(took >= SHORT_BUSY_MS - 50);
    CHECK(took < 3 * SHORT_BUSY_MS); /* one each would be QUEUED * SHORT_BUSY_MS */
    /* a later call waits the whole timeout again */
    t0 = ms_now();
    CHECK(commit_one(st, "q-later", 10, err, sizeof(err)) == -1);
    CHECK(ms_now() - t0 >= SHORT_BUSY_MS - 50);
    CHECK(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(commit_one(st, "q0", 10, err, sizeof(err)) == 0);
    sqlite3_close(other);
    pec_store_close(st);
    free(p);
}

static void test_disk_full(void)
{
    struct pec_store *st = open_new("full.db");
    struct rlimit old, lim;
    char err[1024];

    CHECK(st != NULL);
    CHECK(commit_one(st, "full0", 10, err, sizeof(err)) == 0);
    /* a file size limit stands in for a full disk: writes past it fail (EFBIG) */
    signal(SIGXFSZ, SIG_IGN);
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 256 * 1024;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK(commit_one(st, "full1", 1024 * 1024, err, sizeof(err)) == -1);
    printf("disk full: %s\n", err);
    CHECK(strstr(err, "full.db") != NULL);
    CHECK(commit_one(st, "full2", 1024 * 1024, err, sizeof(err)) == -1);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    /* space is back: the same handle works again, nothing half-written */
    CHECK(commit_one(st, "full1", 1024 * 1024, err, sizeof(err)) == 0);
    CHECK(count_log(st, NULL) == 4);
    CHECK(pec_store_check(st, err, sizeof(err)) == 0);
    signal(SIGXFSZ, SIG_DFL);
    pec_store_close(st);
}

/* As an unprivileged user (root writes anything): a read-only store file, then fixed. */
static void test_unwritable(void)
{
    struct passwd *pw = getpwnam("nobody");
    char *sub = path_of("ro"), *p = path_of("ro/ro.db");
    int status = 0;
    pid_t pid;

    if (geteuid() != 0 || pw == NULL) {
        printf("unwritable: skipped (needs root and user nobody)\n");
        free(sub);
        free(p);
        return;
    }
    CHECK(mkdir(sub, 0755) == 0 && chown(sub, pw->pw_uid, pw->pw_gid) == 0);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char err[1024];
        struct pec_store *st;
        int bad = 0;
        if (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
            _exit(2);
        st = pec_store_open(p, 0, err, sizeof(err));
        bad |= st == NULL || commit_one(st, "ro1", 10, err, sizeof(err)) != 0;
        pec_store_close(st);
        bad |= chmod(p, 0444) != 0 || chmod(sub, 0555) != 0;
        st = pec_store_open(p, 0, err, sizeof(err));
        if (st == NULL) {
            printf("unwritable (open): %s\n", err);
            bad |= strstr(err, "ro.db") == NULL;
        } else {
            bad |= commit_one(st, "ro2", 10, err, sizeof(err)) != -1;
            printf("unwritable (commit): %s\n", err);
        }
        bad |= chmod(sub, 0755) != 0 || chmod(p, 0644) != 0;
        if (st == NULL)
            st = pec_store_open(p, 0, err, sizeof(err));
        bad |= st == NULL || commit_one(st, "ro2", 10, err, sizeof(err)) != 0;
        pec_store_close(st);
        fflush(stdout);
        _exit(bad);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(sub);
    free(p);
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[8192];
    size_t n;
    int rc = (a && b) ? 0 : -1;

    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), a)) > 0)
        if (fwrite(buf, 1, n, b) != n)
            rc = -1;
    if (a)
        fclose(a);
    if (b && fclose(b) != 0)
        rc = -1;
    return rc;
}

static void scribble(const char *path, long off, size_t len)
{
    FILE *f = fopen(path, "r+b");

    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(fseek(f, off, SEEK_SET) == 0);
    for (size_t i = 0; i < len; i++)
        fputc(0x5a, f);
    CHECK(fclose(f) == 0);
}

static void test_corrupt(void)
{
    struct pec_store *st = open_new("bad.db");
    char err[1024], *p = path_of("bad.db"), *backup = path_of("bad.db.backup");

    CHECK(st != NULL);
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof(id), "c%d", i);
        CHECK(commit_one(st, id, 3000, err, sizeof(err)) == 0);
    }
    pec_store_close(st); /* checkpoints the WAL into the file */
    CHECK(copy_file(p, backup) == 0);

    /* damaged b-tree pages: found by the integrity check on open, when asked */
    scribble(p, 3 * 4096 + 8, 4000);
    scribble(p, 9 * 4096 + 8, 4000);
    st = pec_store_open(p, PEC_STORE_CHECK, err, sizeof(err));
    CHECK(st == NULL);
    printf("corrupt pages: %s\n", err);
    CHECK(strstr(err, "bad.db") != NULL);
    pec_store_close(st);

    /* a file that is not a database at all */
    scribble(p, 0, 100);
    st = pec_store_open(p, 0, err, sizeof(err));
    CHECK(st == NULL);
    printf("corrupt header: %s\n", err);
    CHECK(strstr(err, "not a database") != NULL);

    /* restored from the backup: works */
    CHECK(copy_file(backup, p) == 0);
    st = pec_store_open(p, PEC_STORE_CHECK | PEC_STORE_NOCREATE, err, sizeof(err));
    CHECK(st != NULL);
    if (st) {
        CHECK(count_log(st, NULL) == 80);
        pec_store_close(st);
    }

    /* the handle of a running daemon: the file is damaged under it, then restored */
    st = pec_store_open(p, 0, err, sizeof(err));
    CHECK(st != NULL);
    scribble(p, 0, 100);
    {
        int rc = commit_one(st, "during", 10, err, sizeof(err));
        printf("corrupt under a running handle: rc %d: %s\n", rc, rc ? err : "(not noticed yet)");
    }
    CHECK(copy_file(backup, p) == 0);
    CHECK(pec_store_check(st, err, sizeof(err)) == 0 || pec_store_check(st, err, sizeof(err)) == 0);
    pec_store_close(st);

    /* the file gone: never silently recreated by a running handle */
    st = pec_store_open(p, 0, err, sizeof(err));
    CHECK(st != NULL);
    free(p);
    free(backup);
    pec_store_close(st);
    p = path_of("missing.db");
    CHECK(pec_store_open(p, PEC_STORE_NOCREATE, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "missing.db") != NULL);
    CHECK(access(p, F_OK) != 0);
    free(p);
}

/* A store written by a newer pecmilter is refused, not downgraded. */
static void test_schema(void)
{
    char err[1024], *p = spec_of("newer.db");
    sqlite3 *db;
    struct pec_store *st = pec_store_open(p, 0, err, sizeof(err));

    CHECK(st != NULL);
    pec_store_close(st);
    if (pg_base != NULL) {
        CHECK(pg_sql(pg_base,
                     "UPDATE newer_db.meta SET value = '99' WHERE key = 'schema_version'") == 0);
    } else {
        CHECK(sqlite3_open(p, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
    }
    CHECK(pec_store_open(p, 0, err, sizeof(err)) == NULL);
    printf("newer schema: %s\n", err);
    CHECK(strstr(err, "newer pecmilter") != NULL);
    free(p);
}

/* NOCREATE finds a store or fails; it never makes one (pecctl). */
static void test_nocreate(void)
{
    char err[1024], *p = spec_of("absent.db");
    struct pec_store *st = pec_store_open(p, PEC_STORE_NOCREATE, err, sizeof(err));

    CHECK(st == NULL);
    printf("nocreate: %s\n", err);
    CHECK(names_store(err, "absent.db"));
    pec_store_close(st);
    free(p);
}

struct pending_seen {
    int n;
    char ids[8][64];
    char addr[8][64];
    enum pec_rcpt_state state[8];
    time_t warned[8];
    int cc[8];
};

static int on_pending(const struct pec_pending_rcpt *r, void *arg)
{
    struct pending_seen *p = arg;

    if (p->n < 8) {
        snprintf(p->ids[p->n], sizeof(p->ids[0]), "%s", r->identificativo);
        snprintf(p->addr[p->n], sizeof(p->addr[0]), "%s", r->address);
        p->state[p->n] = r->state;
        p->warned[p->n] = r->warned_at;
        p->cc[p->n] = r->cc;
        CHECK_STR(r->mittente, "mario@pec-a.test");
        CHECK_STR(r->tipo_ricevuta, "completa");
        CHECK_STR(r->client_msgid, "client.1@mua");
        CHECK_STR(r->oggetto, "Fattura");
    }
    p->n++;
    return 0;
}

static int stop_pending(const struct pec_pending_rcpt *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 7;
}

static void receipt_now(struct pec_store *st, const char *id, const char *address,
                        enum pec_rcpt_state state)
{
    struct pec_batch *b = pec_batch_new();
    char err[1024];

    pec_batch_rcpt_state(b, id, address, state, 1200, "");
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
}

static void commit_tx_at(struct pec_store *st, const char *id, time_t submitted)
{
    struct pec_batch *b = pec_batch_new();
    struct pec_tx tx;
    char err[1024];

    fill_tx(&tx, id);
    tx.submitted = submitted;
    pec_batch_tx(b, &tx);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
}

/* The scheduler's view: certified recipients awaiting an outcome, oldest first; warned_at kept. */
static void test_pending(void)
{
    struct pec_store *st = open_new("pending.db");
    struct pending_seen p;
    struct pec_batch *b;
    char err[1024];
    int n = 0;

    CHECK(st != NULL);
    if (st == NULL)
        return;
    commit_tx_at(st, "opec-late@pec-a.test", 2000);
    commit_tx_at(st, "opec-early@pec-a.test", 1000);

    memset(&p, 0, sizeof(p));
    CHECK(pec_store_pending_each(st, 0, on_pending, &p, err, sizeof(err)) == 0);
    CHECK(p.n == 4); /* the esterno recipient of each is never pending */
    CHECK_STR(p.ids[0], "opec-early@pec-a.test");
    CHECK_STR(p.addr[0], "b1@pec-b.test");
    CHECK_STR(p.addr[1], "b2@pec-b.test");
    CHECK(p.cc[0] == 0 && p.cc[1] == 1);
    CHECK_STR(p.ids[2], "opec-late@pec-a.test");
    CHECK(p.state[0] == PEC_RCPT_SENT && p.warned[0] == 0);

    memset(&p, 0, sizeof(p));
    CHECK(pec_store_pending_each(st, 2000, on_pending, &p, err, sizeof(err)) == 0);
    CHECK(p.n == 2); /* sent_at < 2000 only */
    CHECK(pec_store_pending_each(st, 0, stop_pending, &n, err, sizeof(err)) == 7 && n == 1);

    /* warned: once, first time kept; a taken recipient stays pending, a final one leaves */
    b = pec_batch_new();
    pec_batch_rcpt_warned(b, "opec-early@pec-a.test", "B1@pec-b.test", 1500);
    pec_batch_rcpt_warned(b, "opec-early@pec-a.test", "b1@pec-b.test", 1600);
    pec_batch_rcpt_warned(b, "opec-early@pec-a.test", "ext@example.org", 1500);
    pec_batch_rcpt_state(b, "opec-early@pec-a.test", "b2@pec-b.test", PEC_RCPT_TAKEN, 1100, "");
    pec_batch_rcpt_state(b, "opec-late@pec-a.test", "b1@pec-b.test", PEC_RCPT_DELIVERED, 2100, "");
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    memset(&p, 0, sizeof(p));
    CHECK(pec_store_pending_each(st, 0, on_pending, &p, err, sizeof(err)) == 0);
    CHECK(p.n == 3);
    CHECK(p.warned[0] == 1500 && p.state[0] == PEC_RCPT_SENT);
    CHECK(p.warned[1] == 0 && p.state[1] == PEC_RCPT_TAKEN);
    CHECK_STR(p.addr[2], "b2@pec-b.test");

    /* a warning for a recipient already final changes nothing */
    b = pec_batch_new();
    pec_batch_rcpt_state(b, "opec-early@pec-a.test", "b2@pec-b.test", PEC_RCPT_TIMEDOUT, 3000,
                         "5.4.1");
    pec_batch_rcpt_warned(b, "opec-early@pec-a.test", "b2@pec-b.test", 3000);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    memset(&p, 0, sizeof(p));
    CHECK(pec_store_pending_each(st, 0, on_pending, &p, err, sizeof(err)) == 0);
    CHECK(p.n == 2);
    pec_store_close(st);
}

/* The delivery point's memory: per mailbox (no case), duplicates harmless, purged with the rest. */
static void test_delivered(void)
{
    struct pec_store *st = open_new("delivered.db");
    struct pec_batch *b;
    char err[1024];

    CHECK(st != NULL);
    if (st == NULL)
        return;
    CHECK(pec_store_delivered(st, "b1@pec-b.test", "m1@pec-a.test", err, sizeof(err)) == 0);
    b = pec_batch_new();
    pec_batch_delivered(b, "b1@pec-b.test", "m1@pec-a.test", 1000);
    pec_batch_delivered(b, "B1@PEC-B.TEST", "m1@pec-a.test", 1001);
    pec_batch_delivered(b, "b2@pec-b.test", "m2@pec-a.test", 5000);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    /* again: a duplicate is not an error */
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    CHECK(pec_store_delivered(st, "B1@Pec-B.test", "m1@pec-a.test", err, sizeof(err)) == 1);
    CHECK(pec_store_delivered(st, "b2@pec-b.test", "m1@pec-a.test", err, sizeof(err)) == 0);
    CHECK(pec_store_delivered(st, "b1@pec-b.test", "M1@pec-a.test", err, sizeof(err)) == 0);
    CHECK(pec_store_delivered(st, "b2@pec-b.test", "m2@pec-a.test", err, sizeof(err)) == 1);
    CHECK(pec_store_log_purge(st, 0, 2000, err, sizeof(err)) == 0);
    CHECK(pec_store_delivered(st, "b1@pec-b.test", "m1@pec-a.test", err, sizeof(err)) == 0);
    CHECK(pec_store_delivered(st, "b2@pec-b.test", "m2@pec-a.test", err, sizeof(err)) == 1);
    pec_store_close(st);
}

/* A conditional batch: applied only while the recipients are as it expects. */
static void test_expect(void)
{
    struct pec_store *st = open_new("expect.db");
    struct pec_batch *b;
    struct pending_seen p;
    const unsigned char msg[] = "Message-ID: <e1@pec-a.test>\r\n\r\nx\r\n";
    const char *to[] = {"mario@pec-a.test"};
    struct pec_outmsg m = {
        "e1@pec-a.test", "opec-x@pec-a.test", "preavviso-errore-consegna", to, 1, msg,
        sizeof(msg) - 1};
    struct pec_outbox_stats os;
    char err[1024];

    CHECK(st != NULL);
    if (st == NULL)
        return;
    commit_tx_at(st, "opec-x@pec-a.test", 1000);
    b = pec_batch_new();
    pec_batch_expect(b, "opec-x@pec-a.test", "b1@pec-b.test", 1u << PEC_RCPT_SENT, 1);
    pec_batch_outbox(b, &m);
    pec_batch_rcpt_warned(b, "opec-x@pec-a.test", "b1@pec-b.test", 1500);
    /* a presa in carico arrives while the batch is being built */
    receipt_now(st, "opec-x@pec-a.test", "b1@pec-b.test", PEC_RCPT_TAKEN);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 1);
    CHECK(pec_store_outbox_stats(st, &os, err, sizeof(err)) == 0 && os.count[PEC_OUT_QUEUED] == 0);
    pec_batch_free(b);

    /* as expected: applied; then the same expectation fails (warned now) */
    b = pec_batch_new();
    pec_batch_expect(b, "opec-x@pec-a.test", "b1@pec-b.test",
                     1u << PEC_RCPT_SENT | 1u << PEC_RCPT_TAKEN, 1);
    pec_batch_expect(b, "opec-x@pec-a.test", "B2@pec-b.test", 1u << PEC_RCPT_SENT, 1);
    pec_batch_outbox(b, &m);
    pec_batch_rcpt_warned(b, "opec-x@pec-a.test", "b1@pec-b.test", 1500);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    CHECK(pec_store_outbox_stats(st, &os, err, sizeof(err)) == 0 && os.count[PEC_OUT_QUEUED] == 1);
    b = pec_batch_new();
    pec_batch_expect(b, "opec-x@pec-a.test", "b1@pec-b.test", 1u << PEC_RCPT_TAKEN, 1);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 1);
    pec_batch_free(b);
    /* an unknown recipient is never as expected */
    b = pec_batch_new();
    pec_batch_expect(b, "opec-x@pec-a.test", "nobody@pec-b.test", 0x1f, 0);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 1);
    pec_batch_free(b);
    memset(&p, 0, sizeof(p));
    CHECK(pec_store_pending_each(st, 0, on_pending, &p, err, sizeof(err)) == 0);
    CHECK(p.n == 2 && p.warned[0] == 1500 && p.state[0] == PEC_RCPT_TAKEN);
    pec_store_close(st);
}

/* The access point's resubmission lookup: same sender (any case), same client Message-ID, recent.
 */
static void test_find_client(void)
{
    struct pec_store *st = open_new("client.db");
    struct pec_tx_info tx;
    char err[1024];

    CHECK(st != NULL);
    if (st == NULL)
        return;
    CHECK(pec_store_tx_find_client(st, "mario@pec-a.test", "client.1@mua", 0, &tx, err,
                                   sizeof(err)) == 0);
    commit_tx_at(st, "opec-old@pec-a.test", 1000);
    commit_tx_at(st, "opec-new@pec-a.test", 2000);
    CHECK(pec_store_tx_find_client(st, "Mario@PEC-A.test", "client.1@mua", 0, &tx, err,
                                   sizeof(err)) == 1);
    CHECK_STR(tx.identificativo, "opec-new@pec-a.test");
    CHECK(tx.submitted == 2000 && tx.nrcpt == 3);
    CHECK_STR(tx.rcpt[0].address, "b1@pec-b.test");
    CHECK(tx.rcpt[2].cc == 1);
    pec_tx_info_free(&tx);
    CHECK(pec_store_tx_find_client(st, "mario@pec-a.test", "client.1@mua", 2000, &tx, err,
                                   sizeof(err)) == 1);
    pec_tx_info_free(&tx);
    /* too old, another sender, another Message-ID, no Message-ID */
    CHECK(pec_store_tx_find_client(st, "mario@pec-a.test", "client.1@mua", 2001, &tx, err,
                                   sizeof(err)) == 0);
    CHECK(pec_store_tx_find_client(st, "luigi@pec-a.test", "client.1@mua", 0, &tx, err,
                                   sizeof(err)) == 0);
    CHECK(pec_store_tx_find_client(st, "mario@pec-a.test", "client.2@mua", 0, &tx, err,
                                   sizeof(err)) == 0);
    CHECK(pec_store_tx_find_client(st, "mario@pec-a.test", "", 0, &tx, err, sizeof(err)) == 0);
    CHECK(pec_store_tx_find_client(st, "mario@pec-a.test", NULL, 0, &tx, err, sizeof(err)) == 0);
    CHECK(tx.identificativo == NULL);
    pec_store_close(st);
}

/* A version 1 store is brought forward: its open recipients become pending, unwarned. */
static void test_migrate_v1(void)
{
    char err[1024], *p = path_of("v1.db");
    struct pec_store *st = pec_store_open(p, 0, err, sizeof(err));
    struct pending_seen seen;
    sqlite3 *db;

    CHECK(st != NULL);
    if (st == NULL) {
        free(p);
        return;
    }
    commit_tx_at(st, "opec-v1@pec-a.test", 1000);
    pec_store_close(st);
    /* make it what version 1 wrote */
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "DROP TABLE refused; DROP INDEX recipients_due; DROP TABLE delivered;"
                       " ALTER TABLE recipients DROP COLUMN warned_at;"
                       " DROP INDEX transactions_client; ALTER TABLE transactions DROP COLUMN"
                       " risposte; ALTER TABLE registro DROP COLUMN client_msgid; ALTER TABLE"
                       " registro DROP COLUMN node; ALTER TABLE registro DROP COLUMN form;"
                       " DROP INDEX outbox_lease; ALTER TABLE outbox DROP COLUMN lease_until;"
                       " DROP TABLE jobs;"
                       " PRAGMA user_version = 1",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    st = pec_store_open(p, 0, err, sizeof(err));
    CHECK(st != NULL);
    if (st != NULL) {
        memset(&seen, 0, sizeof(seen));
        CHECK(pec_store_pending_each(st, 0, on_pending, &seen, err, sizeof(err)) == 0);
        CHECK(seen.n == 2 && seen.warned[0] == 0);
        CHECK(pec_store_delivered(st, "b1@pec-b.test", "x@y", err, sizeof(err)) == 0);
        pec_store_close(st);
        /* version 3: the client Message-ID index is there again; version 4: the walk's;
         * version 5: the refusals */
        CHECK(sqlite3_open(p, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "CREATE INDEX transactions_client ON transactions(submitted)", NULL,
                           NULL, NULL) != SQLITE_OK);
        CHECK(sqlite3_exec(db, "CREATE INDEX recipients_due ON recipients(sent_at)", NULL, NULL,
                           NULL) != SQLITE_OK);
        CHECK(sqlite3_exec(db, "SELECT identificativo, oggetto, errore, at FROM refused", NULL,
                           NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
    }
    free(p);
}

int main(void)
{
    pg_base = getenv("PEC_TEST_STORE");
    if (pg_base != NULL && *pg_base == '\0')
        pg_base = NULL;
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    chmod(dir, 0755);
    printf("store: %s\n", pg_base ? pg_base : dir);
    test_batch_and_tx();
    test_outbox();
    test_outbox_lease();
    test_jobs();
    test_log_query();
    test_schema();
    test_nocreate();
    test_pending();
    test_delivered();
    test_expect();
    test_find_client();
    if (pg_base == NULL) {
        test_migrate_v1();
        test_locked();
        test_locked_queue();
        test_disk_full();
        test_unwritable();
        test_corrupt();
    } else {
        printf("skipped on PostgreSQL: the SQLite migration and the faults of a file "
               "(locked, full, unwritable, corrupt); test_store_pg has its own\n");
    }
    if (check_failures == 0) {
        char *cmd = xasprintf("rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", dir);
        free(cmd);
    }
    return check_exit();
}
