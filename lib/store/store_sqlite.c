/*
 * store_sqlite - the embedded store backend: one SQLite file in WAL mode.
 *
 * One connection per handle, serialised by the handle's mutex: the writes
 * are short (the batch was built beforehand), WAL lets pecctl read from
 * another process meanwhile, and the 5 s busy timeout covers pecctl's own
 * short writes (seal, purge, retry).  When that timeout runs out, the callers
 * that queued on the mutex meanwhile try once without waiting: a lock held
 * that long is not let go in the next moment, and N threads waiting 5 s
 * each in turn would keep the last of them (an SMTP client at end of data)
 * N times 5 s.  synchronous=FULL: a commit is on disk
 * before the MTA hears 250, because the legal log and the owed receipts
 * must survive a power cut, not only a crash.
 *
 * The schema version is PRAGMA user_version; migrations[] holds one SQL
 * script per version and an older file is brought forward, inside one
 * transaction, when opened.
 *
 * Error handling: every failed call names the store file and SQLite's own
 * words.  After an error that may have left the connection unusable (I/O,
 * disk full, read-only, corrupt, cannot open) the connection is closed and
 * the next call reopens the file, without creating it, so a fault that goes
 * away (space freed, permissions fixed, file restored) needs no restart.
 */
#include "store/store.h"
#include "store/store_int.h"
#include "util/xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#define BUSY_TIMEOUT_MS 5000
#define STMT_CACHE 64 /* more than the distinct statements of this file */
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/*
 * A prepared statement kept for the next call with the same SQL: preparing
 * cost more than running most of them.  Finalized with the connection.
 */
struct cached_stmt {
    unsigned long hash; /* of sql */
    char *sql;
    sqlite3_stmt *s;
    int busy; /* handed out by prep(), not yet given back by release() */
};

struct pec_store {
    pthread_mutex_t lock;
    sqlite3 *db; /* NULL after a fault: reopened by the next call */
    struct cached_stmt cache[STMT_CACHE];
    size_t ncache;
    int broken;  /* the last error calls for a reopen */
    int relaxed; /* synchronous=NORMAL for the call in progress */
    int busy_ms; /* how long a call waits for another connection's lock */
    /* calls that waited busy_ms in vain; enter() reads it before queueing */
    unsigned long lock_timeouts;
    int hurried; /* the call in progress does not wait for a lock */
    char *path;
    pec_log_fn *log;
    void (*outbox_hook)(void *);
    void *outbox_arg;
};

/* Version 1. Times are Unix seconds, UTC. */
static const char schema_v1[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE transactions ("
    " identificativo TEXT PRIMARY KEY, client_msgid TEXT NOT NULL, mittente TEXT NOT NULL,"
    " oggetto TEXT NOT NULL, tipo_ricevuta TEXT NOT NULL, queue_id TEXT NOT NULL,"
    " submitted INTEGER NOT NULL);"
    "CREATE INDEX transactions_submitted ON transactions(submitted);"
    "CREATE TABLE recipients ("
    " identificativo TEXT NOT NULL REFERENCES transactions(identificativo) ON DELETE CASCADE,"
    " address TEXT NOT NULL COLLATE NOCASE, certificato INTEGER NOT NULL, cc INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('sent','taken','delivered','failed','timedout')),"
    " sent_at INTEGER NOT NULL, taken_at INTEGER NOT NULL DEFAULT 0,"
    " done_at INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (identificativo, address));"
    "CREATE INDEX recipients_open ON recipients(state, sent_at);"
    "CREATE TABLE outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,"
    " identificativo TEXT NOT NULL, tipo TEXT NOT NULL, rcpt TEXT NOT NULL,"
    " message BLOB NOT NULL, size INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued','sending','sent','failed')),"
    " node INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
    " next_attempt INTEGER NOT NULL DEFAULT 0, last_try INTEGER NOT NULL DEFAULT 0,"
    " sent_at INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
    " doubts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',"
    " mta_queue_id TEXT NOT NULL DEFAULT '', kept INTEGER NOT NULL DEFAULT 1);"
    "CREATE INDEX outbox_due ON outbox(state, next_attempt);"
    "CREATE INDEX outbox_kept ON outbox(id) WHERE kept = 1 AND state = 'sent';"
    "CREATE TABLE registro ("
    " seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, evento TEXT NOT NULL, tipo TEXT NOT NULL,"
    " label TEXT NOT NULL, identificativo TEXT NOT NULL, queue_id TEXT NOT NULL,"
    " mittente TEXT NOT NULL, destinatari TEXT NOT NULL, oggetto TEXT NOT NULL,"
    " message_id TEXT NOT NULL, gestore TEXT NOT NULL, tipo_ricevuta TEXT NOT NULL,"
    " consegna TEXT NOT NULL, ricezione TEXT NOT NULL, errore TEXT NOT NULL,"
    " virus TEXT NOT NULL, errore_esteso TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE INDEX registro_identificativo ON registro(identificativo);"
    "CREATE INDEX registro_at ON registro(at);"
    "CREATE TABLE seals ("
    " first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, day TEXT NOT NULL,"
    " file TEXT NOT NULL UNIQUE, last_hash TEXT NOT NULL, file_sha256 TEXT NOT NULL,"
    " sealed_at INTEGER NOT NULL);"
    "INSERT INTO meta VALUES ('registro_head_seq', '0'), ('registro_head_hash', '" ZERO_HASH "'),"
    " ('registro_purged_seq', '0'), ('registro_purged_hash', '" ZERO_HASH "');";

/*
 * Version 2: when the 12 h notice went out for a recipient (the scheduler's
 * "once only"), and what the delivery point already put into which mailbox
 * (so a busta re-sent after a crash is not delivered twice).
 */
static const char schema_v2[] =
    "ALTER TABLE recipients ADD COLUMN warned_at INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE delivered ("
    " mailbox TEXT NOT NULL COLLATE NOCASE, message_id TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY (mailbox, message_id)) WITHOUT ROWID;"
    "CREATE INDEX delivered_at ON delivered(at);";

/*
 * Version 3: the access point looks a submission up by the client's
 * Message-ID, to know a retry of one it accepted already (access.h).
 */
static const char schema_v3[] =
    "CREATE INDEX transactions_client ON transactions(client_msgid, submitted);";

/*
 * Version 4: the scheduler's walk (pec_store_pending_each) reads its rows in
 * this index's order, so it stops at the first one not yet due instead of
 * sorting every pending recipient first; partial, it holds only the rows
 * the walk may visit, not the history.  A recipient whose 12 h notice is
 * owed after its first receipt (warned_at < 0, scheduler.h) stays in it
 * until the notice is emitted.
 */
static const char schema_v4[] =
    "CREATE INDEX recipients_due ON recipients(sent_at, identificativo)"
    " WHERE certificato = 1 AND (state IN ('sent', 'taken') OR warned_at < 0);";

/*
 * Version 5: the access point's refusals by client Message-ID, so a client
 * retrying one after a crash between the commit of its avviso di non
 * accettazione and the MTA's reply gets no second avviso (access.h).
 */
static const char schema_v5[] =
    "CREATE TABLE refused ("
    " mittente TEXT NOT NULL COLLATE NOCASE, client_msgid TEXT NOT NULL,"
    " identificativo TEXT NOT NULL, oggetto TEXT NOT NULL, errore TEXT NOT NULL,"
    " at INTEGER NOT NULL, PRIMARY KEY (mittente, client_msgid)) WITHOUT ROWID;"
    "CREATE INDEX refused_at ON refused(at);";

static const char *const migrations[] = {schema_v1, schema_v2, schema_v3, schema_v4, schema_v5};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Errors after which the connection is closed and the file reopened. */
static int needs_reopen(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        return 1;
    default:
        return 0;
    }
}

/* Report the connection's last error as "store PATH: WHAT: reason"; returns -1. */
static int db_fail(struct pec_store *st, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_extended_errcode(st->db);
    int sys = sqlite3_system_errno(st->db);

    if (needs_reopen(rc) && sys != 0)
        seterr(err, errlen, "store %s: %s: %s (%s)", st->path, what, sqlite3_errmsg(st->db),
               strerror(sys));
    else
        seterr(err, errlen, "store %s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
    if (needs_reopen(rc))
        st->broken = 1;
    /* plain SQLITE_BUSY: the busy handler gave up (not BUSY_SNAPSHOT or RECOVERY) */
    if (rc == SQLITE_BUSY && !st->hurried)
        __atomic_add_fetch(&st->lock_timeouts, 1, __ATOMIC_RELAXED);
    return -1;
}

/* What a statement is for, as an error message says it. */
static const char *stage(const char *sql)
{
    if (strncmp(sql, "SELECT", 6) == 0)
        return "reading";
    if (strncmp(sql, "PRAGMA", 6) == 0)
        return "opening";
    return "writing";
}

static unsigned long sql_hash(const char *sql)
{
    unsigned long h = 5381;

    while (*sql != '\0')
        h = h * 33 + (unsigned char)*sql++;
    return h;
}

/*
 * The statement for SQL, from the connection's cache when it is there and
 * not in use (a statement nested in another's loop gets one of its own).
 * Give it back with release().  A PRAGMA is never kept: some (synchronous)
 * take effect when prepared, not when run.
 */
static sqlite3_stmt *prep(struct pec_store *st, const char *sql, char *err, size_t errlen)
{
    unsigned long h = sql_hash(sql);
    struct cached_stmt *c = NULL;
    sqlite3_stmt *s = NULL;

    for (size_t i = 0; i < st->ncache; i++)
        if (st->cache[i].hash == h && strcmp(st->cache[i].sql, sql) == 0) {
            c = &st->cache[i];
            break;
        }
    if (c != NULL && !c->busy) {
        c->busy = 1;
        return c->s;
    }
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_fail(st, stage(sql), err, errlen);
        sqlite3_finalize(s);
        return NULL;
    }
    if (c == NULL && s != NULL && st->ncache < STMT_CACHE && strncmp(sql, "PRAGMA", 6) != 0) {
        c = &st->cache[st->ncache++];
        c->hash = h;
        c->sql = xstrdup(sql);
        c->s = s;
        c->busy = 1;
    }
    return s;
}

/* Give back a statement from prep(): reset for the next call, or finalized. */
static void release(struct pec_store *st, sqlite3_stmt *s)
{
    for (size_t i = 0; i < st->ncache; i++)
        if (st->cache[i].s == s) {
            sqlite3_reset(s);
            sqlite3_clear_bindings(s); /* the strings bound are the caller's */
            st->cache[i].busy = 0;
            return;
        }
    sqlite3_finalize(s);
}

/* SQL, one statement or several (a script is not kept prepared). */
static int exec(struct pec_store *st, const char *sql, const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if (strchr(sql, ';') != NULL) {
        if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return db_fail(st, what, err, errlen);
        return 0;
    }
    if ((s = prep(st, sql, err, errlen)) == NULL)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE) {
        db_fail(st, what, err, errlen);
        release(st, s);
        return -1;
    }
    release(st, s);
    return 0;
}

/* Bind helpers: strings are bound SQLITE_STATIC, they outlive the statement's step. */
static void bt(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

static void bi(sqlite3_stmt *s, int i, long long v)
{
    sqlite3_bind_int64(s, i, v);
}

/* Step S to completion and finalize it; returns the rows changed, or -1. */
static int run(struct pec_store *st, sqlite3_stmt *s, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(s);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        db_fail(st, what, err, errlen);
        release(st, s);
        return -1;
    }
    release(st, s);
    return sqlite3_changes(st->db);
}

static const char *col(sqlite3_stmt *s, int i)
{
    const char *v = (const char *)sqlite3_column_text(s, i);
    return v ? v : "";
}

static char *coldup(sqlite3_stmt *s, int i)
{
    return xstrdup(col(s, i));
}

static void db_close(struct pec_store *st)
{
    for (size_t i = 0; i < st->ncache; i++) {
        sqlite3_finalize(st->cache[i].s);
        free(st->cache[i].sql);
    }
    st->ncache = 0;
    if (st->db != NULL && sqlite3_close(st->db) != SQLITE_OK)
        sqlite3_close_v2(st->db); /* a leaked statement: let SQLite close when it is freed */
    st->db = NULL;
}

/* ---------------------------------------------------------------- opening */

static int user_version(struct pec_store *st, int *version, char *err, size_t errlen)
{
    sqlite3_stmt *s = prep(st, "PRAGMA user_version", err, errlen);

    if (s == NULL)
        return -1;
    if (sqlite3_step(s) != SQLITE_ROW) {
        db_fail(st, "reading the schema version", err, errlen);
        release(st, s);
        return -1;
    }
    *version = sqlite3_column_int(s, 0);
    release(st, s);
    return 0;
}

static int migrate(struct pec_store *st, char *err, size_t errlen)
{
    int version;
    char sql[64];

    if (exec(st, "BEGIN IMMEDIATE", "starting the schema check", err, errlen) < 0)
        return -1;
    if (user_version(st, &version, err, errlen) < 0)
        goto fail;
    if (version > SCHEMA_VERSION) {
        seterr(err, errlen,
               "store %s: schema version %d was written by a newer pecmilter (this one knows %d)",
               st->path, version, SCHEMA_VERSION);
        goto fail;
    }
    for (int v = version; v < SCHEMA_VERSION; v++) {
        snprintf(sql, sizeof(sql), "migrating the schema to version %d", v + 1);
        if (exec(st, migrations[v], sql, err, errlen) < 0)
            goto fail;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (exec(st, sql, "setting the schema version", err, errlen) < 0 ||
        exec(st, "COMMIT", "committing the schema", err, errlen) < 0)
        goto fail;
    return 0;
fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static int integrity(struct pec_store *st, char *err, size_t errlen)
{
    sqlite3_stmt *s = prep(st, "PRAGMA integrity_check(1)", err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        db_fail(st, "integrity check", err, errlen);
        release(st, s);
        return -1;
    }
    if (strcmp(col(s, 0), "ok") != 0) {
        char *why = coldup(s, 0);
        for (char *p = why; *p; p++)
            if (*p == '\n')
                *p = ' ';
        seterr(err, errlen, "store %s: integrity check failed: %s", st->path, why);
        free(why);
        release(st, s);
        return -1;
    }
    release(st, s);
    return 0;
}

static int wal_mode(struct pec_store *st, char *err, size_t errlen)
{
    sqlite3_stmt *s = prep(st, "PRAGMA journal_mode=WAL", err, errlen);

    if (s == NULL)
        return -1;
    if (sqlite3_step(s) != SQLITE_ROW) {
        db_fail(st, "setting WAL mode", err, errlen);
        release(st, s);
        return -1;
    }
    if (strcasecmp(col(s, 0), "wal") != 0) {
        seterr(err, errlen, "store %s: cannot use WAL mode (journal mode stays %s)", st->path,
               col(s, 0));
        release(st, s);
        return -1;
    }
    release(st, s);
    return 0;
}

static int db_open(struct pec_store *st, int flags, char *err, size_t errlen)
{
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

    if (!(flags & PEC_STORE_NOCREATE))
        oflags |= SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(st->path, &st->db, oflags, NULL) != SQLITE_OK) {
        if (st->db == NULL) {
            seterr(err, errlen, "store %s: cannot open: out of memory", st->path);
            return -1;
        }
        seterr(err, errlen, "store %s: cannot open: %s", st->path, sqlite3_errmsg(st->db));
        db_close(st);
        return -1;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, st->busy_ms);
    if (wal_mode(st, err, errlen) < 0 ||
        exec(st, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "setting up", err, errlen) <
            0 ||
        ((flags & PEC_STORE_CHECK) && integrity(st, err, errlen) < 0) ||
        migrate(st, err, errlen) < 0) {
        db_close(st);
        st->broken = 0;
        return -1;
    }
    return 0;
}

struct pec_store *pec_store_open(const char *spec, int flags, char *err, size_t errlen)
{
    struct pec_store *st;

    if (strncmp(spec, "sqlite:", 7) == 0)
        spec += 7;
    if (*spec == '\0') {
        seterr(err, errlen, "store: no file name given");
        return NULL;
    }
    st = xcalloc(1, sizeof(*st));
    st->path = xstrdup(spec);
    st->busy_ms = BUSY_TIMEOUT_MS;
    pthread_mutex_init(&st->lock, NULL);
    if (db_open(st, flags, err, errlen) < 0) {
        pthread_mutex_destroy(&st->lock);
        free(st->path);
        free(st);
        return NULL;
    }
    return st;
}

void pec_store_close(struct pec_store *st)
{
    if (st == NULL)
        return;
    db_close(st);
    pthread_mutex_destroy(&st->lock);
    free(st->path);
    free(st);
}

void pec_store_set_log(struct pec_store *st, pec_log_fn *fn)
{
    pthread_mutex_lock(&st->lock);
    st->log = fn;
    pthread_mutex_unlock(&st->lock);
}

void pec_store_set_outbox_hook(struct pec_store *st, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&st->lock);
    st->outbox_hook = fn;
    st->outbox_arg = arg;
    pthread_mutex_unlock(&st->lock);
}

void pec_store_set_busy_timeout(struct pec_store *st, int ms)
{
    pthread_mutex_lock(&st->lock);
    st->busy_ms = ms;
    if (st->db != NULL)
        sqlite3_busy_timeout(st->db, ms);
    pthread_mutex_unlock(&st->lock);
}

/*
 * Take the handle, reopening the file after a fault; -1 with err when it
 * cannot.  If a call ran out of busy timeout while this one queued, this
 * one does not wait for the lock again (see the top of the file).
 */
static int enter(struct pec_store *st, char *err, size_t errlen)
{
    unsigned long seen = __atomic_load_n(&st->lock_timeouts, __ATOMIC_RELAXED);

    pthread_mutex_lock(&st->lock);
    if (st->db == NULL && db_open(st, PEC_STORE_NOCREATE, err, errlen) < 0) {
        pthread_mutex_unlock(&st->lock);
        return -1;
    }
    if (__atomic_load_n(&st->lock_timeouts, __ATOMIC_RELAXED) != seen) {
        sqlite3_busy_timeout(st->db, 0);
        st->hurried = 1;
    }
    return 0;
}

/*
 * enter() for the injector's bookkeeping (claim, sent, defer, fail): those
 * commits skip the fsync.  They still survive a crash or kill -9 (the WAL
 * is in the page cache); a power cut may undo the last of them, which only
 * means a row is sent again, identical.  The fsync they save is most of the
 * time between the MTA's 250 and its record, the window in which a crash
 * makes a resend.
 */
static int enter_relaxed(struct pec_store *st, char *err, size_t errlen)
{
    if (enter(st, err, errlen) < 0)
        return -1;
    st->relaxed = sqlite3_exec(st->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) == SQLITE_OK;
    return 0;
}

static void leave(struct pec_store *st)
{
    if (st->relaxed && !st->broken &&
        sqlite3_exec(st->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK)
        st->broken = 1; /* never go on with fsync off: reopen, which sets it again */
    st->relaxed = 0;
    if (st->hurried && !st->broken)
        sqlite3_busy_timeout(st->db, st->busy_ms);
    st->hurried = 0;
    if (st->broken) {
        db_close(st);
        st->broken = 0;
    }
    pthread_mutex_unlock(&st->lock);
}

static int begin(struct pec_store *st, char *err, size_t errlen)
{
    return exec(st, "BEGIN IMMEDIATE", "starting a transaction", err, errlen);
}

static int commit(struct pec_store *st, char *err, size_t errlen)
{
    if (exec(st, "COMMIT", "commit", err, errlen) < 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

static int rollback(struct pec_store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int pec_store_check(struct pec_store *st, char *err, size_t errlen)
{
    int rc;

    if (enter(st, err, errlen) < 0)
        return -1;
    rc = integrity(st, err, errlen);
    leave(st);
    return rc;
}

/* ---------------------------------------------------------------- meta */

static int meta_get(struct pec_store *st, const char *key, char *out, size_t outlen, char *err,
                    size_t errlen)
{
    sqlite3_stmt *s = prep(st, "SELECT value FROM meta WHERE key = ?", err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    bt(s, 1, key);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            seterr(err, errlen, "store %s: meta key %s is missing", st->path, key);
        else
            db_fail(st, "reading meta", err, errlen);
        release(st, s);
        return -1;
    }
    snprintf(out, outlen, "%s", col(s, 0));
    release(st, s);
    return 0;
}

static int meta_set(struct pec_store *st, const char *key, const char *value, char *err,
                    size_t errlen)
{
    sqlite3_stmt *s = prep(st, "UPDATE meta SET value = ? WHERE key = ?", err, errlen);

    if (s == NULL)
        return -1;
    bt(s, 1, value);
    bt(s, 2, key);
    return run(st, s, "writing meta", err, errlen) < 0 ? -1 : 0;
}

static int meta_get_seq(struct pec_store *st, const char *key, long long *v, char *err,
                        size_t errlen)
{
    char buf[32], *end;

    if (meta_get(st, key, buf, sizeof(buf), err, errlen) < 0)
        return -1;
    *v = strtoll(buf, &end, 10);
    if (*buf == '\0' || *end != '\0' || *v < 0) {
        seterr(err, errlen, "store %s: meta %s is not a number: \"%s\"", st->path, key, buf);
        return -1;
    }
    return 0;
}

static int meta_set_seq(struct pec_store *st, const char *key, long long v, char *err,
                        size_t errlen)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lld", v);
    return meta_set(st, key, buf, err, errlen);
}

/* ---------------------------------------------------------------- commit */

static int insert_tx(struct pec_store *st, const struct pec_tx *tx, char *err, size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "INSERT INTO transactions (identificativo, client_msgid, mittente,"
                           " oggetto, tipo_ricevuta, queue_id, submitted)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)",
                           err, errlen);

    if (s == NULL)
        return -1;
    bt(s, 1, tx->identificativo);
    bt(s, 2, tx->client_msgid);
    bt(s, 3, tx->mittente);
    bt(s, 4, tx->oggetto);
    bt(s, 5, tx->tipo_ricevuta);
    bt(s, 6, tx->queue_id);
    bi(s, 7, tx->submitted);
    if (run(st, s, "recording a transaction", err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < tx->nrcpt; i++) {
        s = prep(st,
                 "INSERT OR IGNORE INTO recipients (identificativo, address, certificato, cc,"
                 " state, sent_at) VALUES (?, ?, ?, ?, 'sent', ?)",
                 err, errlen);
        if (s == NULL)
            return -1;
        bt(s, 1, tx->identificativo);
        bt(s, 2, tx->rcpt[i].address);
        bi(s, 3, tx->rcpt[i].certificato != 0);
        bi(s, 4, tx->rcpt[i].cc != 0);
        bi(s, 5, tx->submitted);
        if (run(st, s, "recording a recipient", err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int update_state(struct pec_store *st, const struct batch_state *u, char *err, size_t errlen)
{
    const char *sql;
    sqlite3_stmt *s;

    switch (u->state) {
    case PEC_RCPT_SENT:
        return 0;
    case PEC_RCPT_TAKEN:
        sql = "UPDATE recipients SET state = ?1, taken_at = ?2, detail = ?3"
              " WHERE identificativo = ?4 AND (?5 IS NULL OR address = ?5) AND state = 'sent'";
        break;
    default:
        sql = "UPDATE recipients SET state = ?1, done_at = ?2, detail = ?3"
              " WHERE identificativo = ?4 AND (?5 IS NULL OR address = ?5)"
              " AND state IN ('sent', 'taken')";
        break;
    }
    if ((s = prep(st, sql, err, errlen)) == NULL)
        return -1;
    bt(s, 1, pec_rcpt_state_name(u->state));
    bi(s, 2, u->when);
    bt(s, 3, u->detail);
    bt(s, 4, u->identificativo);
    if (u->address)
        bt(s, 5, u->address);
    else
        sqlite3_bind_null(s, 5);
    return run(st, s, "updating a recipient", err, errlen) < 0 ? -1 : 0;
}

/*
 * The notice: only for a recipient still awaiting its outcome or marked as
 * owed, and only the first time.  The mark (PEC_WARN_OWED): only where no
 * notice went out, whatever the state (it comes with the receipt's own).
 */
static int update_warned(struct pec_store *st, const struct batch_warned *w, char *err,
                         size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "UPDATE recipients SET warned_at = ?1 WHERE identificativo = ?2"
                           " AND address = ?3 AND (warned_at = 0 AND (?1 < 0 OR state IN"
                           " ('sent', 'taken')) OR warned_at < 0 AND ?1 > 0)",
                           err, errlen);

    if (s == NULL)
        return -1;
    bi(s, 1, w->when);
    bt(s, 2, w->identificativo);
    bt(s, 3, w->address);
    return run(st, s, "updating a recipient", err, errlen) < 0 ? -1 : 0;
}

static int insert_refused(struct pec_store *st, const struct batch_refused *d, char *err,
                          size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "INSERT OR REPLACE INTO refused"
                           " (mittente, client_msgid, identificativo, oggetto, errore, at)"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           err, errlen);

    if (s == NULL)
        return -1;
    bt(s, 1, d->mittente);
    bt(s, 2, d->client_msgid);
    bt(s, 3, d->r.identificativo);
    bt(s, 4, d->r.oggetto);
    bt(s, 5, d->r.errore);
    bi(s, 6, d->r.when);
    return run(st, s, "recording a refusal", err, errlen) < 0 ? -1 : 0;
}

static int insert_delivered(struct pec_store *st, const struct batch_delivered *d, char *err,
                            size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "INSERT OR IGNORE INTO delivered (mailbox, message_id, at)"
                           " VALUES (?, ?, ?)",
                           err, errlen);

    if (s == NULL)
        return -1;
    bt(s, 1, d->mailbox);
    bt(s, 2, d->message_id);
    bi(s, 3, d->when);
    return run(st, s, "recording a delivery", err, errlen) < 0 ? -1 : 0;
}

static char *join_lines(char *const *v, size_t n)
{
    size_t len = 1;
    char *out, *p;

    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    p = out = xmalloc(len);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]);
        if (i > 0)
            *p++ = '\n';
        memcpy(p, v[i], l);
        p += l;
    }
    *p = '\0';
    return out;
}

static int insert_out(struct pec_store *st, const struct batch_out *o, time_t now, char *err,
                      size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "INSERT INTO outbox (message_id, identificativo, tipo, rcpt, message,"
                           " size, state, created) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                           err, errlen);
    char *rcpt;
    int rc;

    if (s == NULL)
        return -1;
    rcpt = join_lines(o->rcpt, o->nrcpt);
    bt(s, 1, o->message_id);
    bt(s, 2, o->identificativo);
    bt(s, 3, o->tipo);
    bt(s, 4, rcpt);
    sqlite3_bind_blob64(s, 5, o->len ? (const void *)o->data : "", o->len, SQLITE_STATIC);
    bi(s, 6, (long long)o->len);
    bi(s, 7, now);
    rc = run(st, s, "queueing a message", err, errlen);
    free(rcpt);
    return rc < 0 ? -1 : 0;
}

static int insert_record(struct pec_store *st, const struct pec_record *r, char *err, size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "INSERT INTO registro (seq, at, evento, tipo, label, identificativo,"
                           " queue_id, mittente, destinatari, oggetto, message_id, gestore,"
                           " tipo_ricevuta, consegna, ricezione, errore, virus, errore_esteso,"
                           " prev, hash) VALUES"
                           " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           err, errlen);
    const char *v[] = {
        r->evento,      r->tipo,    r->label,      r->identificativo, r->queue_id,      r->mittente,
        r->destinatari, r->oggetto, r->message_id, r->gestore,        r->tipo_ricevuta, r->consegna,
        r->ricezione,   r->errore,  r->virus,      r->errore_esteso,  r->prev,          r->hash};

    if (s == NULL)
        return -1;
    bi(s, 1, r->seq);
    bi(s, 2, r->at);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        bt(s, (int)i + 3, v[i]);
    return run(st, s, "appending to the log", err, errlen) < 0 ? -1 : 0;
}

/* Number, link and hash the batch's records after the current head, and append them. */
static int append_records(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen)
{
    long long seq;
    char prev[PEC_HASH_HEX];

    if (b->nrec == 0)
        return 0;
    if (meta_get_seq(st, "registro_head_seq", &seq, err, errlen) < 0 ||
        meta_get(st, "registro_head_hash", prev, sizeof(prev), err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < b->nrec; i++) {
        struct pec_record *r = &b->rec[i].r;
        r->seq = ++seq;
        memcpy(r->prev, prev, sizeof(prev));
        pec_record_hash(r, r->hash);
        if (insert_record(st, r, err, errlen) < 0)
            return -1;
        memcpy(prev, r->hash, sizeof(prev));
    }
    if (meta_set_seq(st, "registro_head_seq", seq, err, errlen) < 0 ||
        meta_set(st, "registro_head_hash", prev, err, errlen) < 0)
        return -1;
    return 0;
}

/* 1 when the recipient is not as E expects, 0 when it is, -1 on error. */
static int check_expect(struct pec_store *st, const struct batch_expect *e, char *err,
                        size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "SELECT state, warned_at FROM recipients"
                           " WHERE identificativo = ? AND address = ?",
                           err, errlen);
    int rc, off = 1;

    if (s == NULL)
        return -1;
    bt(s, 1, e->identificativo);
    bt(s, 2, e->address);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
            if (strcmp(col(s, 0), pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0 &&
                (e->states & (1u << k)))
                off = 0;
        if (e->unwarned && sqlite3_column_int64(s, 1) > 0)
            off = 1;
    } else if (rc != SQLITE_DONE) {
        off = db_fail(st, "reading a recipient", err, errlen);
    }
    release(st, s);
    return off;
}

static int apply(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen)
{
    time_t now = time(NULL);
    int rc;

    for (size_t i = 0; i < b->nexpect; i++)
        if ((rc = check_expect(st, &b->expect[i], err, errlen)) != 0)
            return rc;

    for (size_t i = 0; i < b->ntx; i++)
        if (insert_tx(st, &b->tx[i], err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < b->nstate; i++)
        if (update_state(st, &b->state[i], err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < b->nwarned; i++)
        if (update_warned(st, &b->warned[i], err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < b->ndelivered; i++)
        if (insert_delivered(st, &b->delivered[i], err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < b->nrefused; i++)
        if (insert_refused(st, &b->refused[i], err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < b->nout; i++)
        if (insert_out(st, &b->out[i], now, err, errlen) < 0)
            return -1;
    return append_records(st, b, err, errlen);
}

static void announce(pec_log_fn *log, const struct pec_batch *b)
{
    for (size_t i = 0; log != NULL && i < b->nrec; i++) {
        char *line = pec_record_line(&b->rec[i].r);
        log(LOG_INFO, b->rec[i].r.queue_id, line);
        free(line);
    }
}

int pec_store_commit(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen)
{
    pec_log_fn *log;
    void (*hook)(void *);
    void *hook_arg;

    int rc = 0;

    if (enter(st, err, errlen) < 0)
        return -1;
    if (begin(st, err, errlen) < 0 || (rc = apply(st, b, err, errlen)) < 0 ||
        (rc == 0 && commit(st, err, errlen) < 0)) {
        rollback(st);
        leave(st);
        return -1;
    }
    if (rc == 1) { /* an expectation failed: nothing written, nothing to announce */
        rollback(st);
        leave(st);
        return 1;
    }
    log = st->log;
    hook = b->nout ? st->outbox_hook : NULL;
    hook_arg = st->outbox_arg;
    leave(st);
    announce(log, b);
    if (hook)
        hook(hook_arg);
    return 0;
}

/* ---------------------------------------------------------------- transactions */

static void read_rcpt(sqlite3_stmt *s, struct pec_rcpt_info *r)
{
    const char *state = col(s, 3);

    r->address = coldup(s, 0);
    r->certificato = sqlite3_column_int(s, 1);
    r->cc = sqlite3_column_int(s, 2);
    r->state = PEC_RCPT_SENT;
    for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
        if (strcmp(state, pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0)
            r->state = (enum pec_rcpt_state)k;
    r->sent_at = (time_t)sqlite3_column_int64(s, 4);
    r->taken_at = (time_t)sqlite3_column_int64(s, 5);
    r->done_at = (time_t)sqlite3_column_int64(s, 6);
    r->detail = coldup(s, 7);
    r->warned_at = (time_t)sqlite3_column_int64(s, 8);
}

static int read_rcpts(struct pec_store *st, struct pec_tx_info *out, char *err, size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "SELECT address, certificato, cc, state, sent_at, taken_at, done_at,"
                           " detail, warned_at FROM recipients WHERE identificativo = ?"
                           " ORDER BY rowid",
                           err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    bt(s, 1, out->identificativo);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        out->rcpt = xrealloc(out->rcpt, (out->nrcpt + 1) * sizeof(*out->rcpt));
        read_rcpt(s, &out->rcpt[out->nrcpt++]);
    }
    if (rc != SQLITE_DONE) {
        db_fail(st, "reading recipients", err, errlen);
        release(st, s);
        return -1;
    }
    release(st, s);
    return 0;
}

/* The transaction S (bound and ready) finds, with its recipients: 1, 0 when none, -1. */
static int read_tx(struct pec_store *st, sqlite3_stmt *s, struct pec_tx_info *out, char *err,
                   size_t errlen)
{
    int rc = sqlite3_step(s), found = 0;

    if (rc == SQLITE_ROW) {
        found = 1;
        out->identificativo = coldup(s, 0);
        out->client_msgid = coldup(s, 1);
        out->mittente = coldup(s, 2);
        out->oggetto = coldup(s, 3);
        out->tipo_ricevuta = coldup(s, 4);
        out->queue_id = coldup(s, 5);
        out->submitted = (time_t)sqlite3_column_int64(s, 6);
    } else if (rc != SQLITE_DONE) {
        found = db_fail(st, "reading a transaction", err, errlen);
    }
    release(st, s);
    if (found == 1 && read_rcpts(st, out, err, errlen) < 0)
        found = -1;
    if (found != 1)
        pec_tx_info_free(out);
    return found;
}

#define TX_COLUMNS                                                                                 \
    "SELECT identificativo, client_msgid, mittente, oggetto, tipo_ricevuta, queue_id,"             \
    " submitted FROM transactions"

int pec_store_tx_get(struct pec_store *st, const char *identificativo, struct pec_tx_info *out,
                     char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int found;

    memset(out, 0, sizeof(*out));
    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st, TX_COLUMNS " WHERE identificativo = ?", err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bt(s, 1, identificativo);
    found = read_tx(st, s, out, err, errlen);
    leave(st);
    return found;
}

int pec_store_tx_find_client(struct pec_store *st, const char *mittente, const char *client_msgid,
                             time_t since, struct pec_tx_info *out, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int found;

    memset(out, 0, sizeof(*out));
    if (client_msgid == NULL || *client_msgid == '\0')
        return 0;
    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             TX_COLUMNS " WHERE client_msgid = ? AND submitted >= ? AND mittente = ? COLLATE NOCASE"
                        " ORDER BY submitted DESC, rowid DESC LIMIT 1",
             err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bt(s, 1, client_msgid);
    bi(s, 2, since);
    bt(s, 3, mittente);
    found = read_tx(st, s, out, err, errlen);
    leave(st);
    return found;
}

/* ---------------------------------------------------------------- deadlines */

int pec_store_pending_each(struct pec_store *st, time_t sent_before,
                           int (*fn)(const struct pec_pending_rcpt *r, void *arg), void *arg,
                           char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, stop = 0;

    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             "SELECT t.identificativo, t.client_msgid, t.mittente, t.oggetto, t.tipo_ricevuta,"
             " r.address, r.cc, r.state, r.sent_at, r.warned_at"
             " FROM recipients r JOIN transactions t ON t.identificativo = r.identificativo"
             /* exactly the condition of the index recipients_due */
             " WHERE r.certificato = 1 AND (r.state IN ('sent', 'taken') OR r.warned_at < 0)"
             " AND (?1 = 0 OR r.sent_at < ?1)"
             " ORDER BY r.sent_at, r.identificativo, r.rowid",
             err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bi(s, 1, sent_before);
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct pec_pending_rcpt r;
        r.identificativo = col(s, 0);
        r.client_msgid = col(s, 1);
        r.mittente = col(s, 2);
        r.oggetto = col(s, 3);
        r.tipo_ricevuta = col(s, 4);
        r.address = col(s, 5);
        r.cc = sqlite3_column_int(s, 6);
        r.state = PEC_RCPT_SENT;
        for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
            if (strcmp(col(s, 7), pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0)
                r.state = (enum pec_rcpt_state)k;
        r.sent_at = (time_t)sqlite3_column_int64(s, 8);
        r.warned_at = (time_t)sqlite3_column_int64(s, 9);
        stop = fn(&r, arg);
    }
    if (!stop && rc != SQLITE_DONE)
        stop = db_fail(st, "reading pending recipients", err, errlen);
    release(st, s);
    leave(st);
    return stop;
}

/* ---------------------------------------------------------------- delivery point dedupe */

int pec_store_delivered(struct pec_store *st, const char *mailbox, const char *message_id,
                        char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, found;

    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st, "SELECT 1 FROM delivered WHERE mailbox = ? AND message_id = ?", err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bt(s, 1, mailbox);
    bt(s, 2, message_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        found = 1;
    else if (rc == SQLITE_DONE)
        found = 0;
    else
        found = db_fail(st, "reading deliveries", err, errlen);
    release(st, s);
    leave(st);
    return found;
}

/* ---------------------------------------------------------------- access point refusals */

int pec_store_refused(struct pec_store *st, const char *mittente, const char *client_msgid,
                      time_t since, struct pec_refusal *out, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, found;

    memset(out, 0, sizeof(*out));
    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             "SELECT identificativo, oggetto, errore, at FROM refused"
             " WHERE mittente = ? AND client_msgid = ? AND at >= ?",
             err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bt(s, 1, mittente);
    bt(s, 2, client_msgid);
    bi(s, 3, since);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->identificativo = coldup(s, 0);
        out->oggetto = coldup(s, 1);
        out->errore = coldup(s, 2);
        out->when = (time_t)sqlite3_column_int64(s, 3);
        found = 1;
    } else if (rc == SQLITE_DONE) {
        found = 0;
    } else {
        found = db_fail(st, "reading refusals", err, errlen);
    }
    release(st, s);
    leave(st);
    return found;
}

/* ---------------------------------------------------------------- outbox */

#define OUTBOX_COLS                                                                                \
    "id, message_id, identificativo, tipo, rcpt, state, created, next_attempt, sent_at,"           \
    " attempts, doubts, last_error, mta_queue_id, size"

static void split_lines(const char *text, struct pec_outbox_row *row)
{
    const char *p = text;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        row->rcpt = xrealloc(row->rcpt, (row->nrcpt + 1) * sizeof(char *));
        row->rcpt[row->nrcpt++] = xstrndup(p, len);
        p += len + (nl != NULL);
    }
}

static void read_row(sqlite3_stmt *s, struct pec_outbox_row *row)
{
    const char *state = col(s, 5);

    memset(row, 0, sizeof(*row));
    row->id = sqlite3_column_int64(s, 0);
    row->message_id = coldup(s, 1);
    row->identificativo = coldup(s, 2);
    row->tipo = coldup(s, 3);
    split_lines(col(s, 4), row);
    for (int k = PEC_OUT_QUEUED; k <= PEC_OUT_FAILED; k++)
        if (strcmp(state, pec_outbox_state_name((enum pec_outbox_state)k)) == 0)
            row->state = (enum pec_outbox_state)k;
    row->created = (time_t)sqlite3_column_int64(s, 6);
    row->next_attempt = (time_t)sqlite3_column_int64(s, 7);
    row->sent_at = (time_t)sqlite3_column_int64(s, 8);
    row->attempts = sqlite3_column_int(s, 9);
    row->doubts = sqlite3_column_int(s, 10);
    row->last_error = coldup(s, 11);
    row->mta_queue_id = coldup(s, 12);
    row->len = (size_t)sqlite3_column_int64(s, 13);
}

/* The earliest next attempt of a queued row, 0 when none is queued. */
static int next_due(struct pec_store *st, time_t *when, char *err, size_t errlen)
{
    sqlite3_stmt *s =
        prep(st, "SELECT min(next_attempt) FROM outbox WHERE state = 'queued'", err, errlen);

    if (s == NULL)
        return -1;
    if (sqlite3_step(s) != SQLITE_ROW) {
        db_fail(st, "reading the outbox", err, errlen);
        release(st, s);
        return -1;
    }
    *when = (time_t)sqlite3_column_int64(s, 0);
    release(st, s);
    return 0;
}

/*
 * Load the oldest due row with its bytes: 1 found, 0 none, -1 error.  The id
 * is chosen first, from the index alone: ordering the due rows themselves
 * sorted every queued message's bytes on every claim.
 */
static int load_due(struct pec_store *st, time_t now, struct pec_outbox_row *row, char *err,
                    size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "SELECT " OUTBOX_COLS ", message FROM outbox WHERE id ="
                           " (SELECT id FROM outbox WHERE state = 'queued' AND next_attempt <= ?"
                           " ORDER BY id LIMIT 1)",
                           err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    bi(s, 1, now);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(s, 14);
        size_t n = (size_t)sqlite3_column_bytes(s, 14);
        read_row(s, row);
        row->data = xmalloc(n + 1);
        if (n)
            memcpy(row->data, blob, n);
        row->len = n;
        release(st, s);
        return 1;
    }
    if (rc != SQLITE_DONE)
        db_fail(st, "reading the outbox", err, errlen);
    release(st, s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int pec_store_outbox_claim(struct pec_store *st, time_t now, long long node,
                           struct pec_outbox_row *row, time_t *next, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int found;

    memset(row, 0, sizeof(*row));
    *next = 0;
    if (enter_relaxed(st, err, errlen) < 0)
        return -1;
    if (begin(st, err, errlen) < 0)
        goto fail;
    found = load_due(st, now, row, err, errlen);
    if (found < 0)
        goto fail;
    if (found == 0) {
        if (next_due(st, next, err, errlen) < 0)
            goto fail;
    } else {
        s = prep(st,
                 "UPDATE outbox SET state = 'sending', node = ?, attempts = attempts + 1,"
                 " last_try = ? WHERE id = ?",
                 err, errlen);
        if (s == NULL)
            goto fail;
        bi(s, 1, node);
        bi(s, 2, now);
        bi(s, 3, row->id);
        if (run(st, s, "claiming an outbox row", err, errlen) < 0)
            goto fail;
        row->state = PEC_OUT_SENDING;
        row->attempts++;
    }
    if (commit(st, err, errlen) < 0)
        goto fail;
    leave(st);
    return found;
fail:
    rollback(st);
    leave(st);
    pec_outbox_row_free(row);
    return -1;
}

/*
 * Finish an UPDATE of one "sending" row, prepared and bound by the caller:
 * 0, or -1 when it failed or the row was not "sending".
 */
static int finish_sending(struct pec_store *st, sqlite3_stmt *s, long long id, const char *what,
                          char *err, size_t errlen)
{
    int n = run(st, s, what, err, errlen);

    if (n == 0)
        seterr(err, errlen, "store %s: %s: outbox row %lld is not being sent", st->path, what, id);
    return n == 1 ? 0 : -1;
}

int pec_store_outbox_sent(struct pec_store *st, long long id, time_t now, const char *mta_qid,
                          const char *note, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc = -1;

    if (enter_relaxed(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             "UPDATE outbox SET state = 'sent', sent_at = ?, mta_queue_id = ?, last_error = ?"
             " WHERE id = ? AND state = 'sending'",
             err, errlen);
    if (s != NULL) {
        bi(s, 1, now);
        bt(s, 2, mta_qid);
        bt(s, 3, note);
        bi(s, 4, id);
        rc = finish_sending(st, s, id, "marking a row sent", err, errlen);
    }
    leave(st);
    return rc;
}

int pec_store_outbox_defer(struct pec_store *st, long long id, time_t now, time_t next,
                           const char *why, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc = -1;

    if (enter_relaxed(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             "UPDATE outbox SET state = 'queued', last_try = ?, next_attempt = ?, last_error = ?"
             " WHERE id = ? AND state = 'sending'",
             err, errlen);
    if (s != NULL) {
        bi(s, 1, now);
        bi(s, 2, next);
        bt(s, 3, why);
        bi(s, 4, id);
        rc = finish_sending(st, s, id, "deferring a row", err, errlen);
    }
    leave(st);
    return rc;
}

int pec_store_outbox_fail(struct pec_store *st, long long id, time_t now, const char *why,
                          char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc = -1;

    if (enter_relaxed(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             "UPDATE outbox SET state = 'failed', last_try = ?, last_error = ?"
             " WHERE id = ? AND state = 'sending'",
             err, errlen);
    if (s != NULL) {
        bi(s, 1, now);
        bt(s, 2, why);
        bi(s, 3, id);
        rc = finish_sending(st, s, id, "failing a row", err, errlen);
    }
    leave(st);
    return rc;
}

/* One UPDATE whose two parameters are integers; returns the rows changed, or -1. */
static int update_many(struct pec_store *st, const char *sql, long long a, long long b,
                       const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int n;

    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st, sql, err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bi(s, 1, a);
    bi(s, 2, b);
    n = run(st, s, what, err, errlen);
    leave(st);
    return n;
}

int pec_store_outbox_recover(struct pec_store *st, long long node, char *err, size_t errlen)
{
    return update_many(st,
                       "UPDATE outbox SET state = 'queued', doubts = doubts + 1, next_attempt = ?"
                       " WHERE state = 'sending' AND node = ?",
                       0, node, "recovering the outbox", err, errlen);
}

int pec_store_outbox_note(struct pec_store *st, time_t now, const char *why, char *err,
                          size_t errlen)
{
    sqlite3_stmt *s;
    int n;

    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             "UPDATE outbox SET last_error = ?1, last_try = ?2"
             " WHERE state = 'queued' AND next_attempt <= ?2",
             err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bt(s, 1, why);
    bi(s, 2, now);
    n = run(st, s, "noting an outbox error", err, errlen);
    leave(st);
    return n < 0 ? -1 : 0;
}

int pec_store_outbox_tidy(struct pec_store *st, char *err, size_t errlen)
{
    int n;

    if (enter_relaxed(st, err, errlen) < 0)
        return -1;
    /*
     * Through the partial index of the rows still holding their bytes: the
     * planner would otherwise walk outbox_due over every row ever sent, and
     * this runs each time the outbox empties, holding the store.
     */
    n = exec(st,
             "UPDATE outbox INDEXED BY outbox_kept SET message = X'', kept = 0"
             " WHERE kept = 1 AND state = 'sent'",
             "dropping sent messages", err, errlen);
    if (n == 0)
        n = sqlite3_changes(st->db);
    leave(st);
    return n;
}

int pec_store_outbox_requeue(struct pec_store *st, long long id, time_t now, char *err,
                             size_t errlen)
{
    return update_many(st,
                       "UPDATE outbox SET state = 'queued', next_attempt = ?2"
                       " WHERE state = 'failed' AND (?1 = 0 OR id = ?1)",
                       id, now, "requeueing", err, errlen);
}

int pec_store_outbox_stats(struct pec_store *st, struct pec_outbox_stats *out, char *err,
                           size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    memset(out, 0, sizeof(*out));
    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st, "SELECT state, count(*) FROM outbox GROUP BY state", err, errlen);
    if (s == NULL)
        goto fail;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        for (int k = PEC_OUT_QUEUED; k <= PEC_OUT_FAILED; k++)
            if (strcmp(col(s, 0), pec_outbox_state_name((enum pec_outbox_state)k)) == 0)
                out->count[k] = sqlite3_column_int64(s, 1);
    release(st, s);
    if (rc != SQLITE_DONE) {
        db_fail(st, "counting the outbox", err, errlen);
        goto fail;
    }
    /* by the states a row waits in, so the rows ever sent are not read one by one */
    s = prep(st,
             "SELECT id, created FROM outbox WHERE state IN ('queued', 'sending', 'failed')"
             " ORDER BY id LIMIT 1",
             err, errlen);
    if (s == NULL)
        goto fail;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->oldest_id = sqlite3_column_int64(s, 0);
        out->oldest_created = (time_t)sqlite3_column_int64(s, 1);
    }
    release(st, s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_fail(st, "reading the outbox", err, errlen);
        goto fail;
    }
    leave(st);
    return 0;
fail:
    leave(st);
    return -1;
}

int pec_store_outbox_each(struct pec_store *st, unsigned states,
                          int (*fn)(const struct pec_outbox_row *row, void *arg), void *arg,
                          char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, stop = 0;

    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st, "SELECT " OUTBOX_COLS " FROM outbox ORDER BY id", err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct pec_outbox_row row;
        read_row(s, &row);
        if (states & (1u << row.state))
            stop = fn(&row, arg);
        pec_outbox_row_free(&row);
    }
    if (!stop && rc != SQLITE_DONE)
        stop = db_fail(st, "reading the outbox", err, errlen);
    release(st, s);
    leave(st);
    return stop < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- the log */

static void read_record(sqlite3_stmt *s, struct pec_record *r)
{
    const char **v[] = {&r->evento,     &r->tipo,     &r->label,         &r->identificativo,
                        &r->queue_id,   &r->mittente, &r->destinatari,   &r->oggetto,
                        &r->message_id, &r->gestore,  &r->tipo_ricevuta, &r->consegna,
                        &r->ricezione,  &r->errore,   &r->virus,         &r->errore_esteso};

    r->seq = sqlite3_column_int64(s, 0);
    r->at = (time_t)sqlite3_column_int64(s, 1);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        *v[i] = col(s, (int)i + 2);
    snprintf(r->prev, sizeof(r->prev), "%s", col(s, 18));
    snprintf(r->hash, sizeof(r->hash), "%s", col(s, 19));
}

/* Is ADDR one of "a (certificato), b (esterno)"? Case-insensitive, whole addresses. */
static int dest_contains(const char *list, const char *addr)
{
    size_t n = strlen(addr);
    const char *p = list;

    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (strncasecmp(p, addr, n) == 0 && (p[n] == ' ' || p[n] == ',' || p[n] == '\0'))
            return 1;
        p = strchr(p, ',');
        if (p == NULL)
            break;
    }
    return 0;
}

int pec_store_log_each(struct pec_store *st, const struct pec_log_filter *f,
                       int (*fn)(const struct pec_record *r, void *arg), void *arg, char *err,
                       size_t errlen)
{
    static const struct pec_log_filter none;
    sqlite3_stmt *s;
    int rc, stop = 0;

    if (f == NULL)
        f = &none;
    if (enter(st, err, errlen) < 0)
        return -1;
#define LOG_QUERY(BY_ID)                                                                           \
    "SELECT seq, at, evento, tipo, label, identificativo, queue_id, mittente,"                     \
    " destinatari, oggetto, message_id, gestore, tipo_ricevuta, consegna, ricezione,"              \
    " errore, virus, errore_esteso, prev, hash FROM registro WHERE " BY_ID                         \
    " AND (?2 IS NULL OR mittente = ?2 COLLATE NOCASE)"                                            \
    " AND (?3 = 0 OR at >= ?3) AND (?4 = 0 OR at < ?4)"                                            \
    " AND seq >= ?5 AND (?6 = 0 OR seq <= ?6) ORDER BY seq"
    /*
     * By identificativo (the reception point asks for each busta it
     * receives) the condition must be plain, or SQLite walks the whole log
     * instead of using registro_identificativo.
     */
    s = prep(st, f->identificativo ? LOG_QUERY("identificativo = ?1") : LOG_QUERY("?1 IS NULL"),
             err, errlen);
#undef LOG_QUERY
    if (s == NULL) {
        leave(st);
        return -1;
    }
    if (f->identificativo)
        bt(s, 1, f->identificativo);
    if (f->mittente)
        bt(s, 2, f->mittente);
    bi(s, 3, f->since);
    bi(s, 4, f->until);
    bi(s, 5, f->from_seq);
    bi(s, 6, f->to_seq);
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct pec_record r;
        read_record(s, &r);
        if (f->destinatario == NULL || dest_contains(r.destinatari, f->destinatario))
            stop = fn(&r, arg);
    }
    if (!stop && rc != SQLITE_DONE)
        stop = db_fail(st, "reading the log", err, errlen);
    release(st, s);
    leave(st);
    return stop;
}

int pec_store_log_bounds(struct pec_store *st, long long *purged_seq,
                         char purged_hash[PEC_HASH_HEX], long long *head_seq,
                         char head_hash[PEC_HASH_HEX], char *err, size_t errlen)
{
    int rc;

    if (enter(st, err, errlen) < 0)
        return -1;
    rc = (meta_get_seq(st, "registro_purged_seq", purged_seq, err, errlen) < 0 ||
          meta_get(st, "registro_purged_hash", purged_hash, PEC_HASH_HEX, err, errlen) < 0 ||
          meta_get_seq(st, "registro_head_seq", head_seq, err, errlen) < 0 ||
          meta_get(st, "registro_head_hash", head_hash, PEC_HASH_HEX, err, errlen) < 0)
             ? -1
             : 0;
    leave(st);
    return rc;
}

int pec_store_seal_add(struct pec_store *st, const struct pec_seal *sl, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int n;

    if (enter(st, err, errlen) < 0)
        return -1;
    s = prep(st,
             "INSERT INTO seals (first_seq, last_seq, day, file, last_hash, file_sha256,"
             " sealed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
             err, errlen);
    if (s == NULL) {
        leave(st);
        return -1;
    }
    bi(s, 1, sl->first_seq);
    bi(s, 2, sl->last_seq);
    bt(s, 3, sl->day);
    bt(s, 4, sl->file);
    bt(s, 5, sl->last_hash);
    bt(s, 6, sl->file_sha256);
    bi(s, 7, sl->sealed_at);
    n = run(st, s, "recording a seal", err, errlen);
    leave(st);
    return n < 0 ? -1 : 0;
}

static void free_seals(struct pec_seal *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].file);
    free(v);
}

/* Every seal, in first_seq order, into *OUT (caller frees with free_seals). */
static int read_seals(struct pec_store *st, struct pec_seal **out, size_t *n, char *err,
                      size_t errlen)
{
    sqlite3_stmt *s = prep(st,
                           "SELECT day, file, first_seq, last_seq, last_hash, file_sha256,"
                           " sealed_at FROM seals ORDER BY first_seq",
                           err, errlen);
    int rc;

    *out = NULL;
    *n = 0;
    if (s == NULL)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct pec_seal *sl;
        *out = xrealloc(*out, (*n + 1) * sizeof(**out));
        sl = &(*out)[(*n)++];
        memset(sl, 0, sizeof(*sl));
        snprintf(sl->day, sizeof(sl->day), "%s", col(s, 0));
        sl->file = coldup(s, 1);
        sl->first_seq = sqlite3_column_int64(s, 2);
        sl->last_seq = sqlite3_column_int64(s, 3);
        snprintf(sl->last_hash, sizeof(sl->last_hash), "%s", col(s, 4));
        snprintf(sl->file_sha256, sizeof(sl->file_sha256), "%s", col(s, 5));
        sl->sealed_at = (time_t)sqlite3_column_int64(s, 6);
    }
    release(st, s);
    if (rc != SQLITE_DONE) {
        free_seals(*out, *n);
        return db_fail(st, "reading the seals", err, errlen);
    }
    return 0;
}

int pec_store_seals_each(struct pec_store *st, int (*fn)(const struct pec_seal *s, void *arg),
                         void *arg, char *err, size_t errlen)
{
    struct pec_seal *v;
    size_t n;
    int rc, stop = 0;

    if (enter(st, err, errlen) < 0)
        return -1;
    rc = read_seals(st, &v, &n, err, errlen);
    leave(st);
    if (rc < 0)
        return -1;
    /* called without the handle's lock: FN may use the store */
    for (size_t i = 0; i < n && !stop; i++)
        stop = fn(&v[i], arg);
    free_seals(v, n);
    return stop;
}

/* The log part of a purge: records through THROUGH, their seals, the new anchor. */
static int purge_log(struct pec_store *st, long long through, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    char hash[PEC_HASH_HEX];
    int rc;

    s = prep(st, "SELECT last_hash FROM seals WHERE last_seq = ?", err, errlen);
    if (s == NULL)
        return -1;
    bi(s, 1, through);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(hash, sizeof(hash), "%s", col(s, 0));
    else if (rc == SQLITE_DONE)
        seterr(err, errlen, "store %s: purge: record %lld does not end a seal", st->path, through);
    else
        db_fail(st, "purge", err, errlen);
    release(st, s);
    if (rc != SQLITE_ROW)
        return -1;
    if ((s = prep(st, "DELETE FROM registro WHERE seq <= ?", err, errlen)) == NULL)
        return -1;
    bi(s, 1, through);
    if (run(st, s, "purging the log", err, errlen) < 0)
        return -1;
    if ((s = prep(st, "DELETE FROM seals WHERE last_seq <= ?", err, errlen)) == NULL)
        return -1;
    bi(s, 1, through);
    if (run(st, s, "purging the seals", err, errlen) < 0)
        return -1;
    return meta_set_seq(st, "registro_purged_seq", through, err, errlen) < 0 ||
                   meta_set(st, "registro_purged_hash", hash, err, errlen) < 0
               ? -1
               : 0;
}

static int purge_before(struct pec_store *st, const char *sql, time_t before, char *err,
                        size_t errlen)
{
    sqlite3_stmt *s = prep(st, sql, err, errlen);

    if (s == NULL)
        return -1;
    bi(s, 1, before);
    return run(st, s, "purge", err, errlen) < 0 ? -1 : 0;
}

int pec_store_log_purge(struct pec_store *st, long long through_seq, time_t before, char *err,
                        size_t errlen)
{
    if (enter(st, err, errlen) < 0)
        return -1;
    if (begin(st, err, errlen) < 0 ||
        (through_seq > 0 && purge_log(st, through_seq, err, errlen) < 0) ||
        purge_before(st, "DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?", before, err,
                     errlen) < 0 ||
        purge_before(st, "DELETE FROM transactions WHERE submitted < ?", before, err, errlen) < 0 ||
        purge_before(st, "DELETE FROM delivered WHERE at < ?", before, err, errlen) < 0 ||
        purge_before(st, "DELETE FROM refused WHERE at < ?", before, err, errlen) < 0 ||
        commit(st, err, errlen) < 0) {
        rollback(st);
        leave(st);
        return -1;
    }
    leave(st);
    return 0;
}
