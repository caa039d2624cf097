/*
 * sqlite - the embedded store backend: one SQLite file in WAL mode.
 *
 * This file is the driver (db_int.h): it opens the file, keeps the
 * prepared statements, steps them and reads their columns; the SQL lives
 * by subject in the db_*.c files, shared with the PostgreSQL driver.
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
 * The schema version is PRAGMA user_version; migrations[] (db_schema.c)
 * holds one SQL script per version and an older file is brought forward,
 * inside one transaction, when opened.
 *
 * Error handling: every failed call names the store file and SQLite's own
 * words.  After an error that may have left the connection unusable (I/O,
 * disk full, read-only, corrupt, cannot open) the connection is closed and
 * the next call reopens the file, without creating it, so a fault that goes
 * away (space freed, permissions fixed, file restored) needs no restart.
 */
#include "store/db_int.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STMT_CACHE 64 /* more than the distinct statements of the store */

/*
 * A prepared statement kept for the next call with the same SQL: preparing
 * cost more than running most of them.  Finalized with the connection.
 */
struct sq_stmt {
    struct db_stmt base;
    sqlite3_stmt *s;
    int bound;          /* the parameters went to SQLite (at the first step) */
    unsigned long hash; /* of base.sql */
    int cached;
    int busy; /* handed out by prep, not yet given back by release */
};

struct sq_conn {
    sqlite3 *db;
    struct sq_stmt *cache[STMT_CACHE];
    size_t ncache;
    int relaxed; /* synchronous=NORMAL for the call in progress */
    int hurried; /* the call in progress does not wait for a lock */
};

/* calls that waited busy_ms in vain; enter reads it before queueing (drv_state) */
struct sq_state {
    unsigned long lock_timeouts;
};

static const struct db_token sq_tokens[] = {
    {"int", "INTEGER"},
    {"id", "INTEGER PRIMARY KEY AUTOINCREMENT"},
    {"blob", "BLOB"},
    {"rowid", ""},
    {"norowid", " WITHOUT ROWID"},
    {"for update", ""},
    {"skip locked", ""},
    {"indexed by outbox_kept", " INDEXED BY outbox_kept"},
    {NULL, NULL},
};

static sqlite3 *db_of(struct pec_store *st)
{
    return ((struct sq_conn *)st->conn)->db;
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
static int sq_fail(struct pec_store *st, const char *what, char *err, size_t errlen)
{
    struct sq_conn *c = st->conn;
    int rc = sqlite3_extended_errcode(c->db);
    int sys = sqlite3_system_errno(c->db);

    if (needs_reopen(rc) && sys != 0)
        pec_seterr(err, errlen, "store %s: %s: %s (%s)", st->path, what, sqlite3_errmsg(c->db),
                   strerror(sys));
    else
        pec_seterr(err, errlen, "store %s: %s: %s", st->path, what, sqlite3_errmsg(c->db));
    if (needs_reopen(rc))
        st->broken = 1;
    /* plain SQLITE_BUSY: the busy handler gave up (not BUSY_SNAPSHOT or RECOVERY) */
    if (rc == SQLITE_BUSY && !c->hurried)
        __atomic_add_fetch(&((struct sq_state *)st->drv_state)->lock_timeouts, 1, __ATOMIC_RELAXED);
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
 * A PRAGMA is never kept: some (synchronous) take effect when prepared, not
 * when run.
 */
static struct db_stmt *sq_prep(struct pec_store *st, const char *sql, char *err, size_t errlen)
{
    struct sq_conn *c = st->conn;
    unsigned long h = sql_hash(sql);
    struct sq_stmt *found = NULL, *s;
    sqlite3_stmt *raw = NULL;
    char *text;
    int npar;

    for (size_t i = 0; i < c->ncache; i++)
        if (c->cache[i]->hash == h && strcmp(c->cache[i]->base.sql, sql) == 0) {
            found = c->cache[i];
            break;
        }
    if (found != NULL && !found->busy) {
        found->busy = 1;
        return &found->base;
    }
    text = db_expand(&db_sqlite, sql, &npar);
    if (sqlite3_prepare_v2(c->db, text, -1, &raw, NULL) != SQLITE_OK) {
        sq_fail(st, stage(sql), err, errlen);
        sqlite3_finalize(raw);
        free(text);
        return NULL;
    }
    free(text);
    s = xcalloc(1, sizeof(*s));
    s->base.drv = &db_sqlite;
    s->base.sql = xstrdup(sql);
    s->s = raw;
    s->hash = h;
    s->busy = 1;
    if (found == NULL && c->ncache < STMT_CACHE && strncmp(sql, "PRAGMA", 6) != 0) {
        s->cached = 1;
        c->cache[c->ncache++] = s;
    }
    return &s->base;
}

static void stmt_free(struct sq_stmt *s)
{
    sqlite3_finalize(s->s);
    free((char *)s->base.sql);
    free(s);
}

static void sq_release(struct pec_store *st, struct db_stmt *base)
{
    struct sq_stmt *s = (struct sq_stmt *)base;

    (void)st;
    if (!s->cached) {
        stmt_free(s);
        return;
    }
    sqlite3_reset(s->s);
    sqlite3_clear_bindings(s->s); /* the strings bound are the caller's */
    s->bound = 0;
    s->busy = 0;
}

static void bind_all(struct sq_stmt *s)
{
    int n = sqlite3_bind_parameter_count(s->s);

    for (int i = 1; i <= n && i <= DB_MAX_PARAMS; i++) {
        const struct db_param *p = &s->base.par[i];
        switch (p->type) {
        case DB_NULL:
            sqlite3_bind_null(s->s, i);
            break;
        case DB_TEXT:
            sqlite3_bind_text(s->s, i, p->p, (int)p->n, SQLITE_STATIC);
            break;
        case DB_INT:
            sqlite3_bind_int64(s->s, i, p->i);
            break;
        case DB_BLOB:
            sqlite3_bind_blob64(s->s, i, p->p, p->n, SQLITE_STATIC);
            break;
        }
    }
    s->bound = 1;
}

static int sq_step(struct pec_store *st, struct db_stmt *base)
{
    struct sq_stmt *s = (struct sq_stmt *)base;
    int rc;

    (void)st;
    if (!s->bound)
        bind_all(s);
    rc = sqlite3_step(s->s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int sq_changes(struct pec_store *st, struct db_stmt *s)
{
    (void)s;
    return sqlite3_changes(db_of(st));
}

static const char *sq_col(struct db_stmt *s, int i)
{
    const char *v = (const char *)sqlite3_column_text(((struct sq_stmt *)s)->s, i);
    return v ? v : "";
}

static long long sq_col_int(struct db_stmt *s, int i)
{
    return sqlite3_column_int64(((struct sq_stmt *)s)->s, i);
}

static const void *sq_col_blob(struct db_stmt *s, int i, size_t *n)
{
    sqlite3_stmt *raw = ((struct sq_stmt *)s)->s;
    const void *v = sqlite3_column_blob(raw, i);

    *n = (size_t)sqlite3_column_bytes(raw, i);
    return v ? v : "";
}

static int sq_script(struct pec_store *st, const char *sql, const char *what, char *err,
                     size_t errlen)
{
    int npar;
    char *text = db_expand(&db_sqlite, sql, &npar);
    int rc = sqlite3_exec(db_of(st), text, NULL, NULL, NULL);

    free(text);
    return rc == SQLITE_OK ? 0 : sq_fail(st, what, err, errlen);
}

static int sq_in_tx(struct pec_store *st)
{
    return !sqlite3_get_autocommit(db_of(st));
}

static void sq_close(struct pec_store *st)
{
    struct sq_conn *c = st->conn;

    if (c == NULL)
        return;
    for (size_t i = 0; i < c->ncache; i++)
        stmt_free(c->cache[i]);
    if (c->db != NULL && sqlite3_close(c->db) != SQLITE_OK)
        sqlite3_close_v2(c->db); /* a leaked statement: let SQLite close when it is freed */
    free(c);
    st->conn = NULL;
}

static void sq_free_state(struct pec_store *st)
{
    free(st->drv_state);
    st->drv_state = NULL;
}

/* ---------------------------------------------------------------- schema, checks */

static int pragma_row(struct pec_store *st, const char *sql, const char *what, char **out,
                      char *err, size_t errlen)
{
    struct db_stmt *s = sq_prep(st, sql, err, errlen);

    if (s == NULL)
        return -1;
    if (sq_step(st, s) != 1) {
        sq_fail(st, what, err, errlen);
        sq_release(st, s);
        return -1;
    }
    *out = xstrdup(sq_col(s, 0));
    sq_release(st, s);
    return 0;
}

static int sq_version_get(struct pec_store *st, int *v, char *err, size_t errlen)
{
    char *text;

    if (pragma_row(st, "PRAGMA user_version", "reading the schema version", &text, err, errlen) < 0)
        return -1;
    *v = atoi(text);
    free(text);
    return 0;
}

static int sq_version_set(struct pec_store *st, int v, char *err, size_t errlen)
{
    char sql[64];

    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
    return db_exec(st, sql, "setting the schema version", err, errlen);
}

static int sq_integrity(struct pec_store *st, char *err, size_t errlen)
{
    char *why;

    if (pragma_row(st, "PRAGMA integrity_check(1)", "integrity check", &why, err, errlen) < 0)
        return -1;
    if (strcmp(why, "ok") != 0) {
        for (char *p = why; *p; p++)
            if (*p == '\n')
                *p = ' ';
        pec_seterr(err, errlen, "store %s: integrity check failed: %s", st->path, why);
        free(why);
        return -1;
    }
    free(why);
    return 0;
}

static int wal_mode(struct pec_store *st, char *err, size_t errlen)
{
    char *mode;

    if (pragma_row(st, "PRAGMA journal_mode=WAL", "setting WAL mode", &mode, err, errlen) < 0)
        return -1;
    if (strcasecmp(mode, "wal") != 0) {
        pec_seterr(err, errlen, "store %s: cannot use WAL mode (journal mode stays %s)", st->path,
                   mode);
        free(mode);
        return -1;
    }
    free(mode);
    return 0;
}

/* ---------------------------------------------------------------- opening */

static int sq_open(struct pec_store *st, int flags, char *err, size_t errlen)
{
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    struct sq_conn *c = xcalloc(1, sizeof(*c));

    if (st->drv_state == NULL)
        st->drv_state = xcalloc(1, sizeof(struct sq_state));
    if (!(flags & PEC_STORE_NOCREATE))
        oflags |= SQLITE_OPEN_CREATE;
    st->conn = c;
    if (sqlite3_open_v2(st->spec, &c->db, oflags, NULL) != SQLITE_OK) {
        if (c->db == NULL)
            pec_seterr(err, errlen, "store %s: cannot open: out of memory", st->path);
        else
            pec_seterr(err, errlen, "store %s: cannot open: %s", st->path, sqlite3_errmsg(c->db));
        sq_close(st);
        return -1;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, st->busy_ms);
    if (wal_mode(st, err, errlen) < 0 ||
        db_exec(st, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "setting up", err, errlen) <
            0 ||
        ((flags & PEC_STORE_CHECK) && sq_integrity(st, err, errlen) < 0) ||
        db_migrate(st, err, errlen) < 0) {
        sq_close(st);
        st->broken = 0;
        return -1;
    }
    return 0;
}

static void sq_set_busy(struct pec_store *st, int ms)
{
    if (st->conn != NULL)
        sqlite3_busy_timeout(db_of(st), ms);
}

/*
 * Take the handle, reopening the file after a fault; -1 with err when it
 * cannot.  If a call ran out of busy timeout while this one queued, this
 * one does not wait for the lock again (see the top of the file).
 *
 * RELAXED, for the injector's bookkeeping (claim, sent, defer, fail): those
 * commits skip the fsync.  They still survive a crash or kill -9 (the WAL
 * is in the page cache); a power cut may undo the last of them, which only
 * means a row is sent again, identical.  The fsync they save is most of the
 * time between the MTA's 250 and its record, the window in which a crash
 * makes a resend.
 */
static int sq_enter(struct pec_store *st, int relaxed, char *err, size_t errlen)
{
    struct sq_state *state = st->drv_state;
    unsigned long seen = __atomic_load_n(&state->lock_timeouts, __ATOMIC_RELAXED);
    struct sq_conn *c;

    pthread_mutex_lock(&st->lock);
    if (st->conn == NULL && sq_open(st, PEC_STORE_NOCREATE, err, errlen) < 0) {
        pthread_mutex_unlock(&st->lock);
        return -1;
    }
    c = st->conn;
    if (__atomic_load_n(&state->lock_timeouts, __ATOMIC_RELAXED) != seen) {
        sqlite3_busy_timeout(c->db, 0);
        c->hurried = 1;
    }
    if (relaxed)
        c->relaxed =
            sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) == SQLITE_OK;
    return 0;
}

static void sq_leave(struct pec_store *st)
{
    struct sq_conn *c = st->conn;

    if (c->relaxed && !st->broken &&
        sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK)
        st->broken = 1; /* never go on with fsync off: reopen, which sets it again */
    c->relaxed = 0;
    if (c->hurried && !st->broken)
        sqlite3_busy_timeout(c->db, st->busy_ms);
    c->hurried = 0;
    if (st->broken) {
        sq_close(st);
        st->broken = 0;
    }
    pthread_mutex_unlock(&st->lock);
}

static int sq_claim_node(struct pec_store *st, char *err, size_t errlen)
{
    (void)st, (void)err, (void)errlen; /* one node has the file */
    return 0;
}

const struct db_driver db_sqlite = {
    .name = "sqlite",
    .tokens = sq_tokens,
    .numbered = 0,
    .open = sq_open,
    .close = sq_close,
    .free_state = sq_free_state,
    .enter = sq_enter,
    .leave = sq_leave,
    .fail = sq_fail,
    .prep = sq_prep,
    .release = sq_release,
    .step = sq_step,
    .changes = sq_changes,
    .col = sq_col,
    .col_int = sq_col_int,
    .col_blob = sq_col_blob,
    .script = sq_script,
    .begin_sql = "BEGIN IMMEDIATE",
    .in_tx = sq_in_tx,
    .version_get = sq_version_get,
    .version_set = sq_version_set,
    .check = sq_integrity,
    .set_busy = sq_set_busy,
    .claim_node = sq_claim_node,
};
