/*
 * sqlite_int - what the files of the SQLite backend share: the handle, and
 * the helpers every statement goes through.  Not for callers; they see only
 * store.h.
 *
 * Every helper that fails says why in err ("store PATH: what: SQLite's
 * words") and returns -1 (NULL for sq_prep); the calls that may have left
 * the connection unusable mark the handle for a reopen (sqlite.c).
 */
#ifndef PEC_STORE_SQLITE_INT_H
#define PEC_STORE_SQLITE_INT_H

#include "store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>

#define STMT_CACHE 64 /* more than the distinct statements of the backend */

/*
 * A prepared statement kept for the next call with the same SQL: preparing
 * cost more than running most of them.  Finalized with the connection.
 */
struct cached_stmt {
    unsigned long hash; /* of sql */
    char *sql;
    sqlite3_stmt *s;
    int busy; /* handed out by sq_prep(), not yet given back by sq_release() */
};

struct pec_store {
    pthread_mutex_t lock;
    sqlite3 *db; /* NULL after a fault: reopened by the next call */
    struct cached_stmt cache[STMT_CACHE];
    size_t ncache;
    int broken;  /* the last error calls for a reopen */
    int relaxed; /* synchronous=NORMAL for the call in progress */
    int busy_ms; /* how long a call waits for another connection's lock */
    /* calls that waited busy_ms in vain; sq_enter() reads it before queueing */
    unsigned long lock_timeouts;
    int hurried; /* the call in progress does not wait for a lock */
    char *path;
    pec_log_fn *log;
    char *node; /* stamped on every record appended (pec_store_set_node) */
    void (*outbox_hook)(void *);
    void *outbox_arg;
};

/* sqlite.c: errors */
void sq_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sq_db_fail(struct pec_store *st, const char *what, char *err, size_t errlen);

/* sqlite.c: statements (sq_prep's result goes back through sq_release or sq_run) */
sqlite3_stmt *sq_prep(struct pec_store *st, const char *sql, char *err, size_t errlen);
void sq_release(struct pec_store *st, sqlite3_stmt *s);
int sq_exec(struct pec_store *st, const char *sql, const char *what, char *err, size_t errlen);
void sq_bt(sqlite3_stmt *s, int i, const char *v);
void sq_bi(sqlite3_stmt *s, int i, long long v);
int sq_run(struct pec_store *st, sqlite3_stmt *s, const char *what, char *err, size_t errlen);
const char *sq_col(sqlite3_stmt *s, int i);
char *sq_coldup(sqlite3_stmt *s, int i);

/* sqlite.c: the handle taken and given back, transactions */
int sq_enter(struct pec_store *st, char *err, size_t errlen);
int sq_enter_relaxed(struct pec_store *st, char *err, size_t errlen);
void sq_leave(struct pec_store *st);
int sq_begin(struct pec_store *st, char *err, size_t errlen);
int sq_commit(struct pec_store *st, char *err, size_t errlen);
int sq_rollback(struct pec_store *st);

/* sqlite.c: the meta table */
int sq_meta_get(struct pec_store *st, const char *key, char *out, size_t outlen, char *err,
                size_t errlen);
int sq_meta_set(struct pec_store *st, const char *key, const char *value, char *err, size_t errlen);
int sq_meta_get_seq(struct pec_store *st, const char *key, long long *v, char *err, size_t errlen);
int sq_meta_set_seq(struct pec_store *st, const char *key, long long v, char *err, size_t errlen);

/* sqlite_schema.c: what opening a file checks and brings forward */
int sq_wal_mode(struct pec_store *st, char *err, size_t errlen);
int sq_integrity(struct pec_store *st, char *err, size_t errlen);
int sq_migrate(struct pec_store *st, char *err, size_t errlen);

#endif
