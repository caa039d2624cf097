/*
 * db_int - what the store's SQL shares across its two backends: the handle,
 * the statement every query goes through, and the driver each backend
 * (sqlite.c, pg.c) fills in.  Not for callers; they see only store.h.
 *
 * The SQL is written once, in db_schema.c, db_commit.c, db_outbox.c and
 * db_log.c, in the words SQLite and PostgreSQL share.  Where the dialects
 * differ the text holds a token in braces that each driver expands
 * (db_expand): {int} (INTEGER, BIGINT), {id} (the outbox's own key),
 * {blob}, {rowid} (PostgreSQL has no rowid: the tables ordered by insertion
 * get a column of that name), {norowid}, {nocase} (the case-insensitive
 * collation PostgreSQL must create first), {indexed by NAME} (SQLite's hint,
 * dropped on PostgreSQL), {for update} and {skip locked} (row locks, which
 * SQLite needs not: one writer at a time holds the whole file).  Parameters
 * are written ? or ?N; the PostgreSQL driver numbers them $N.
 *
 * Every helper that fails says why in err ("store WHERE: what: the
 * database's words") and returns -1 (NULL for db_prep); the driver marks the
 * handle for a reconnect when the error may have left the connection
 * unusable, and for a retry when the database gave up a transaction to
 * break a deadlock or a serialisation conflict.
 */
#ifndef PEC_STORE_DB_INT_H
#define PEC_STORE_DB_INT_H

#include "store/store.h"
#include "util/err.h"

#include <pthread.h>
#include <stddef.h>

#define DB_MAX_PARAMS 24

enum db_param_type { DB_NULL, DB_TEXT, DB_INT, DB_BLOB };

struct db_param {
    enum db_param_type type;
    long long i;
    const void *p; /* text or bytes, the caller's until the statement is stepped */
    size_t n;
};

/* A statement with its parameters; the driver's own structure begins with one. */
struct db_stmt {
    const struct db_driver *drv;
    const char *sql;                        /* as written, tokens and all */
    const char *what;                       /* what errors say it was doing (db_run), or NULL */
    struct db_param par[DB_MAX_PARAMS + 1]; /* by number, from 1 */
};

struct db_driver;

/* A word of the dialect: {NAME} in the SQL becomes TEXT. */
struct db_token {
    const char *name;
    const char *text;
};

struct pec_store {
    pthread_mutex_t lock;
    const struct db_driver *drv;
    void *conn;  /* the driver's connection; NULL after a fault: reopened by the next call */
    int broken;  /* the last error calls for a reconnect */
    int retry;   /* the last error was a deadlock or serialisation failure: try again */
    int batch;   /* the transaction in progress is a batch (db_begin_batch) */
    int busy_ms; /* how long a call waits for another connection's lock */
    char *path;  /* what errors name: the file, or the database without its password */
    char *spec;  /* what the driver opens */
    pec_log_fn *log;
    char *node;        /* stamped on every record appended (pec_store_set_node) */
    long long node_id; /* pec_store_claim_node's, 0: none claimed */
    void (*outbox_hook)(void *);
    void *outbox_arg;
    void *drv_state; /* what a driver keeps across reconnects */
};

/*
 * A backend.  open connects (creating the database unless NOCREATE, where
 * the backend can), sets it up and migrates the schema (db_migrate); enter
 * takes the handle's lock and reconnects when needed, leave gives it back
 * and drops a broken connection.  step runs the statement the first time
 * and moves to the next row: 1 a row, 0 done, -1 error (then fail says
 * why).  A column is text ("" for NULL), an integer or bytes.
 */
struct db_driver {
    const char *name;
    const struct db_token *tokens; /* up to one whose name is NULL */
    int numbered;                  /* parameters become $N */
    int (*open)(struct pec_store *st, int flags, char *err, size_t errlen);
    void (*close)(struct pec_store *st);
    void (*free_state)(struct pec_store *st);
    int (*enter)(struct pec_store *st, int relaxed, char *err, size_t errlen);
    void (*leave)(struct pec_store *st);
    int (*fail)(struct pec_store *st, const char *what, char *err, size_t errlen);
    struct db_stmt *(*prep)(struct pec_store *st, const char *sql, char *err, size_t errlen);
    void (*release)(struct pec_store *st, struct db_stmt *s);
    int (*step)(struct pec_store *st, struct db_stmt *s);
    int (*changes)(struct pec_store *st, struct db_stmt *s);
    const char *(*col)(struct db_stmt *s, int i);
    long long (*col_int)(struct db_stmt *s, int i);
    const void *(*col_blob)(struct db_stmt *s, int i, size_t *n);
    /* a script of statements without parameters (tokens expanded by the driver) */
    int (*script)(struct pec_store *st, const char *sql, const char *what, char *err,
                  size_t errlen);
    const char *begin_sql; /* a write transaction */
    int (*in_tx)(struct pec_store *st);
    /* the schema version, read and written inside the migration's transaction */
    int (*version_get)(struct pec_store *st, int *v, char *err, size_t errlen);
    int (*version_set)(struct pec_store *st, int v, char *err, size_t errlen);
    int (*check)(struct pec_store *st, char *err, size_t errlen);
    void (*set_busy)(struct pec_store *st, int ms);
    /* run after pec_store_copy wrote the rows, or NULL: the outbox's next id past the copied */
    const char *after_copy;
    /* hold st->node_id for this connection's life (pec_store_claim_node) */
    int (*claim_node)(struct pec_store *st, char *err, size_t errlen);
};

extern const struct db_driver db_sqlite, db_pg;

/* db.c: errors (the one-line err of util/err.h) */
int db_fail(struct pec_store *st, const char *what, char *err, size_t errlen);

/* db.c: SQL with the driver's tokens expanded (malloc'd); *NPAR: the highest ?N */
char *db_expand(const struct db_driver *drv, const char *sql, int *npar);

/* db.c: statements (db_prep's result goes back through db_release or db_run) */
struct db_stmt *db_prep(struct pec_store *st, const char *sql, char *err, size_t errlen);
void db_release(struct pec_store *st, struct db_stmt *s);
int db_exec(struct pec_store *st, const char *sql, const char *what, char *err, size_t errlen);
void db_bt(struct db_stmt *s, int i, const char *v);
void db_bi(struct db_stmt *s, int i, long long v);
void db_bb(struct db_stmt *s, int i, const void *v, size_t n);
int db_step(struct pec_store *st, struct db_stmt *s);
int db_run(struct pec_store *st, struct db_stmt *s, const char *what, char *err, size_t errlen);
const char *db_col(struct db_stmt *s, int i);
char *db_coldup(struct db_stmt *s, int i);
long long db_coli(struct db_stmt *s, int i);
const void *db_colb(struct db_stmt *s, int i, size_t *n);

/* db.c: the handle taken and given back, transactions */
int db_enter(struct pec_store *st, char *err, size_t errlen);
int db_enter_relaxed(struct pec_store *st, char *err, size_t errlen);
void db_leave(struct pec_store *st);
/* One statement as a call of its own: the handle taken and SQL prepared (NULL: neither)... */
struct db_stmt *db_enter_prep(struct pec_store *st, const char *sql, char *err, size_t errlen);
/* ...then run and the handle given back: the rows changed, or -1. */
int db_run_leave(struct pec_store *st, struct db_stmt *s, const char *what, char *err,
                 size_t errlen);
int db_begin(struct pec_store *st, char *err, size_t errlen);
/*
 * db_begin() for a transaction whose writes nobody reads the count of: the
 * driver may send them without waiting for each one's answer (PostgreSQL's
 * pipeline), so a write's error may be reported by the next statement that
 * reads rows, or by the COMMIT, and db_run() returns 0 rows changed for it.
 */
int db_begin_batch(struct pec_store *st, char *err, size_t errlen);
int db_commit(struct pec_store *st, char *err, size_t errlen);
int db_rollback(struct pec_store *st);

/* db.c: the meta table; LOCK: the row stays locked until the transaction ends */
int db_meta_get(struct pec_store *st, const char *key, int lock, char *out, size_t outlen,
                char *err, size_t errlen);
int db_meta_set(struct pec_store *st, const char *key, const char *value, char *err, size_t errlen);
int db_meta_get_seq(struct pec_store *st, const char *key, int lock, long long *v, char *err,
                    size_t errlen);
int db_meta_set_seq(struct pec_store *st, const char *key, long long v, char *err, size_t errlen);

/* db_schema.c: bring the schema forward inside one transaction */
int db_migrate(struct pec_store *st, char *err, size_t errlen);

#endif
