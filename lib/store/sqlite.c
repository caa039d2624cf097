/*
 * sqlite - the embedded store backend: one SQLite file in WAL mode.
 *
 * This file opens the file and holds the handle; the statements live by
 * subject beside it: sqlite_schema.c (tables and migrations),
 * sqlite_commit.c (a batch committed, transactions and recipients),
 * sqlite_outbox.c (the injector's queue), sqlite_log.c (the registro read,
 * sealed and purged).  sqlite_int.h is what they share.
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
 * The schema version is PRAGMA user_version; migrations[] (sqlite_schema.c)
 * holds one SQL script per version and an older file is brought forward, inside one
 * transaction, when opened.
 *
 * Error handling: every failed call names the store file and SQLite's own
 * words.  After an error that may have left the connection unusable (I/O,
 * disk full, read-only, corrupt, cannot open) the connection is closed and
 * the next call reopens the file, without creating it, so a fault that goes
 * away (space freed, permissions fixed, file restored) needs no restart.
 */
#include "store/sqlite_int.h"
#include "store/store_int.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_TIMEOUT_MS 5000

void sq_seterr(char *err, size_t errlen, const char *fmt, ...)
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
int sq_db_fail(struct pec_store *st, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_extended_errcode(st->db);
    int sys = sqlite3_system_errno(st->db);

    if (needs_reopen(rc) && sys != 0)
        sq_seterr(err, errlen, "store %s: %s: %s (%s)", st->path, what, sqlite3_errmsg(st->db),
                  strerror(sys));
    else
        sq_seterr(err, errlen, "store %s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
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
 * Give it back with sq_release().  A PRAGMA is never kept: some (synchronous)
 * take effect when prepared, not when run.
 */
sqlite3_stmt *sq_prep(struct pec_store *st, const char *sql, char *err, size_t errlen)
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
        sq_db_fail(st, stage(sql), err, errlen);
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

/* Give back a statement from sq_prep(): reset for the next call, or finalized. */
void sq_release(struct pec_store *st, sqlite3_stmt *s)
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
int sq_exec(struct pec_store *st, const char *sql, const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if (strchr(sql, ';') != NULL) {
        if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return sq_db_fail(st, what, err, errlen);
        return 0;
    }
    if ((s = sq_prep(st, sql, err, errlen)) == NULL)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE) {
        sq_db_fail(st, what, err, errlen);
        sq_release(st, s);
        return -1;
    }
    sq_release(st, s);
    return 0;
}

/* Bind helpers: strings are bound SQLITE_STATIC, they outlive the statement's step. */
void sq_bt(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

void sq_bi(sqlite3_stmt *s, int i, long long v)
{
    sqlite3_bind_int64(s, i, v);
}

/* Step S to completion and finalize it; returns the rows changed, or -1. */
int sq_run(struct pec_store *st, sqlite3_stmt *s, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(s);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        sq_db_fail(st, what, err, errlen);
        sq_release(st, s);
        return -1;
    }
    sq_release(st, s);
    return sqlite3_changes(st->db);
}

const char *sq_col(sqlite3_stmt *s, int i)
{
    const char *v = (const char *)sqlite3_column_text(s, i);
    return v ? v : "";
}

char *sq_coldup(sqlite3_stmt *s, int i)
{
    return xstrdup(sq_col(s, i));
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

static int db_open(struct pec_store *st, int flags, char *err, size_t errlen)
{
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

    if (!(flags & PEC_STORE_NOCREATE))
        oflags |= SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(st->path, &st->db, oflags, NULL) != SQLITE_OK) {
        if (st->db == NULL) {
            sq_seterr(err, errlen, "store %s: cannot open: out of memory", st->path);
            return -1;
        }
        sq_seterr(err, errlen, "store %s: cannot open: %s", st->path, sqlite3_errmsg(st->db));
        db_close(st);
        return -1;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, st->busy_ms);
    if (sq_wal_mode(st, err, errlen) < 0 ||
        sq_exec(st, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "setting up", err, errlen) <
            0 ||
        ((flags & PEC_STORE_CHECK) && sq_integrity(st, err, errlen) < 0) ||
        sq_migrate(st, err, errlen) < 0) {
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
        sq_seterr(err, errlen, "store: no file name given");
        return NULL;
    }
    st = xcalloc(1, sizeof(*st));
    st->path = xstrdup(spec);
    st->node = xstrdup("");
    st->busy_ms = BUSY_TIMEOUT_MS;
    pthread_mutex_init(&st->lock, NULL);
    if (db_open(st, flags, err, errlen) < 0) {
        pthread_mutex_destroy(&st->lock);
        free(st->path);
        free(st->node);
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
    free(st->node);
    free(st);
}

void pec_store_set_log(struct pec_store *st, pec_log_fn *fn)
{
    pthread_mutex_lock(&st->lock);
    st->log = fn;
    pthread_mutex_unlock(&st->lock);
}

void pec_store_set_node(struct pec_store *st, const char *node)
{
    pthread_mutex_lock(&st->lock);
    free(st->node);
    st->node = xstrdup(node);
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
int sq_enter(struct pec_store *st, char *err, size_t errlen)
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
 * sq_enter() for the injector's bookkeeping (claim, sent, defer, fail): those
 * commits skip the fsync.  They still survive a crash or kill -9 (the WAL
 * is in the page cache); a power cut may undo the last of them, which only
 * means a row is sent again, identical.  The fsync they save is most of the
 * time between the MTA's 250 and its record, the window in which a crash
 * makes a resend.
 */
int sq_enter_relaxed(struct pec_store *st, char *err, size_t errlen)
{
    if (sq_enter(st, err, errlen) < 0)
        return -1;
    st->relaxed = sqlite3_exec(st->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) == SQLITE_OK;
    return 0;
}

void sq_leave(struct pec_store *st)
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

int sq_begin(struct pec_store *st, char *err, size_t errlen)
{
    return sq_exec(st, "BEGIN IMMEDIATE", "starting a transaction", err, errlen);
}

int sq_commit(struct pec_store *st, char *err, size_t errlen)
{
    if (sq_exec(st, "COMMIT", "commit", err, errlen) < 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

int sq_rollback(struct pec_store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int pec_store_check(struct pec_store *st, char *err, size_t errlen)
{
    int rc;

    if (sq_enter(st, err, errlen) < 0)
        return -1;
    rc = sq_integrity(st, err, errlen);
    sq_leave(st);
    return rc;
}

/* ---------------------------------------------------------------- meta */

int sq_meta_get(struct pec_store *st, const char *key, char *out, size_t outlen, char *err,
                size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st, "SELECT value FROM meta WHERE key = ?", err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    sq_bt(s, 1, key);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            sq_seterr(err, errlen, "store %s: meta key %s is missing", st->path, key);
        else
            sq_db_fail(st, "reading meta", err, errlen);
        sq_release(st, s);
        return -1;
    }
    snprintf(out, outlen, "%s", sq_col(s, 0));
    sq_release(st, s);
    return 0;
}

int sq_meta_set(struct pec_store *st, const char *key, const char *value, char *err, size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st, "UPDATE meta SET value = ? WHERE key = ?", err, errlen);

    if (s == NULL)
        return -1;
    sq_bt(s, 1, value);
    sq_bt(s, 2, key);
    return sq_run(st, s, "writing meta", err, errlen) < 0 ? -1 : 0;
}

int sq_meta_get_seq(struct pec_store *st, const char *key, long long *v, char *err, size_t errlen)
{
    char buf[32], *end;

    if (sq_meta_get(st, key, buf, sizeof(buf), err, errlen) < 0)
        return -1;
    *v = strtoll(buf, &end, 10);
    if (*buf == '\0' || *end != '\0' || *v < 0) {
        sq_seterr(err, errlen, "store %s: meta %s is not a number: \"%s\"", st->path, key, buf);
        return -1;
    }
    return 0;
}

int sq_meta_set_seq(struct pec_store *st, const char *key, long long v, char *err, size_t errlen)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lld", v);
    return sq_meta_set(st, key, buf, err, errlen);
}
