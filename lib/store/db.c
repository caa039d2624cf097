/*
 * db - the store handle whatever the backend: which driver a spec names, the
 * statements every query goes through, the handle taken and given back, the
 * meta table.  The drivers are sqlite.c (a file, the embedded default) and
 * pg.c (a PostgreSQL database several nodes share); db_int.h says what
 * they promise.
 */
#include "store/db_int.h"
#include "util/xalloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_TIMEOUT_MS 5000

int db_fail(struct pec_store *st, const char *what, char *err, size_t errlen)
{
    return st->drv->fail(st, what, err, errlen);
}

/* ---------------------------------------------------------------- the dialect */

static const char *token(const struct db_driver *drv, const char *name, size_t len)
{
    for (const struct db_token *t = drv->tokens; t->name != NULL; t++)
        if (strlen(t->name) == len && strncmp(t->name, name, len) == 0)
            return t->text;
    return NULL;
}

char *db_expand(const struct db_driver *drv, const char *sql, int *npar)
{
    size_t cap = strlen(sql) * 2 + 64, len = 0;
    char *out = xmalloc(cap);
    int next = 0, quoted = 0;

    *npar = 0;
    for (const char *p = sql; *p != '\0'; p++) {
        const char *end, *rep;
        char num[24];
        size_t n;

        if (*p == '\'')
            quoted = !quoted;
        if (!quoted && *p == '{' && (end = strchr(p, '}')) != NULL &&
            (rep = token(drv, p + 1, (size_t)(end - p - 1))) != NULL) {
            n = strlen(rep);
            p = end;
        } else if (!quoted && *p == '?') {
            int k = isdigit((unsigned char)p[1]) ? (int)strtol(p + 1, (char **)&end, 10) : ++next;
            if (isdigit((unsigned char)p[1]))
                p = end - 1;
            if (k > *npar)
                *npar = k;
            snprintf(num, sizeof(num), "%c%d", drv->numbered ? '$' : '?', k);
            rep = num;
            n = strlen(num);
        } else {
            rep = p;
            n = 1;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            out = xrealloc(out, cap);
        }
        memcpy(out + len, rep, n);
        len += n;
    }
    out[len] = '\0';
    return out;
}

/* ---------------------------------------------------------------- opening */

/* A PostgreSQL URL, or a libpq connection string: it starts "keyword=". */
static int names_postgresql(const char *spec)
{
    size_t n = strspn(spec, "abcdefghijklmnopqrstuvwxyz_");

    return strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0 ||
           (n > 0 && spec[n] == '=');
}

const char *pec_store_file(const char *spec)
{
    if (strncmp(spec, "sqlite:", 7) == 0)
        return spec + 7;
    return names_postgresql(spec) ? NULL : spec;
}

char *pec_store_display(const char *spec)
{
    const char *scheme = strstr(spec, "://"), *at, *colon, *pw;

    if (scheme != NULL && (at = strchr(scheme + 3, '@')) != NULL &&
        (colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3))) != NULL)
        return xasprintf("%.*s:***%s", (int)(colon - spec), spec, at);
    if (pec_store_file(spec) == NULL && (pw = strstr(spec, "password=")) != NULL)
        return xasprintf("%.*s***%s", (int)(pw - spec) + 9, spec, pw + 9 + strcspn(pw + 9, " "));
    return xstrdup(spec);
}

struct pec_store *pec_store_open(const char *spec, int flags, char *err, size_t errlen)
{
    const char *file = pec_store_file(spec);
    struct pec_store *st;

    if (file != NULL && *file == '\0') {
        pec_seterr(err, errlen, "store: no file name given");
        return NULL;
    }
    st = xcalloc(1, sizeof(*st));
    st->drv = file == NULL ? &db_pg : &db_sqlite;
    st->spec = xstrdup(file != NULL ? file : spec);
    st->path = pec_store_display(st->spec);
    st->node = xstrdup("");
    st->busy_ms = BUSY_TIMEOUT_MS;
    pthread_mutex_init(&st->lock, NULL);
    if (st->drv->open(st, flags, err, errlen) < 0) {
        pec_store_close(st);
        return NULL;
    }
    return st;
}

void pec_store_close(struct pec_store *st)
{
    if (st == NULL)
        return;
    st->drv->close(st);
    st->drv->free_state(st);
    pthread_mutex_destroy(&st->lock);
    free(st->spec);
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

int pec_store_claim_node(struct pec_store *st, long long node, char *err, size_t errlen)
{
    int rc;

    if (db_enter(st, err, errlen) < 0)
        return -1;
    st->node_id = node;
    rc = st->drv->claim_node(st, err, errlen);
    if (rc < 0)
        st->node_id = 0;
    db_leave(st);
    return rc;
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
    st->drv->set_busy(st, ms);
    pthread_mutex_unlock(&st->lock);
}

int pec_store_check(struct pec_store *st, char *err, size_t errlen)
{
    int rc;

    if (db_enter(st, err, errlen) < 0)
        return -1;
    rc = st->drv->check(st, err, errlen);
    db_leave(st);
    return rc;
}

/* ---------------------------------------------------------------- statements */

struct db_stmt *db_prep(struct pec_store *st, const char *sql, char *err, size_t errlen)
{
    return st->drv->prep(st, sql, err, errlen);
}

void db_release(struct pec_store *st, struct db_stmt *s)
{
    memset(s->par, 0, sizeof(s->par)); /* the values bound are the caller's */
    st->drv->release(st, s);
}

/* SQL, one statement or a script of several (without parameters). */
int db_exec(struct pec_store *st, const char *sql, const char *what, char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc;

    if (strchr(sql, ';') != NULL)
        return st->drv->script(st, sql, what, err, errlen);
    if ((s = db_prep(st, sql, err, errlen)) == NULL)
        return -1;
    s->what = what;
    while ((rc = db_step(st, s)) == 1)
        ;
    if (rc < 0)
        db_fail(st, what, err, errlen);
    db_release(st, s);
    return rc < 0 ? -1 : 0;
}

static struct db_param *param(struct db_stmt *s, int i)
{
    if (i < 1 || i > DB_MAX_PARAMS)
        abort(); /* the SQL is ours: a wrong number is a bug */
    return &s->par[i];
}

void db_bt(struct db_stmt *s, int i, const char *v)
{
    struct db_param *p = param(s, i);

    p->type = DB_TEXT;
    p->p = v ? v : "";
    p->n = strlen(p->p);
}

void db_bi(struct db_stmt *s, int i, long long v)
{
    struct db_param *p = param(s, i);

    p->type = DB_INT;
    p->i = v;
}

void db_bb(struct db_stmt *s, int i, const void *v, size_t n)
{
    struct db_param *p = param(s, i);

    p->type = DB_BLOB;
    p->p = n ? v : "";
    p->n = n;
}

int db_step(struct pec_store *st, struct db_stmt *s)
{
    return st->drv->step(st, s);
}

/* Step S to completion and give it back; returns the rows changed, or -1. */
int db_run(struct pec_store *st, struct db_stmt *s, const char *what, char *err, size_t errlen)
{
    int rc, n;

    s->what = what;
    rc = db_step(st, s);
    if (rc < 0) {
        db_fail(st, what, err, errlen);
        db_release(st, s);
        return -1;
    }
    n = st->drv->changes(st, s);
    db_release(st, s);
    return n;
}

const char *db_col(struct db_stmt *s, int i)
{
    return s->drv->col(s, i);
}

char *db_coldup(struct db_stmt *s, int i)
{
    return xstrdup(db_col(s, i));
}

long long db_coli(struct db_stmt *s, int i)
{
    return s->drv->col_int(s, i);
}

const void *db_colb(struct db_stmt *s, int i, size_t *n)
{
    return s->drv->col_blob(s, i, n);
}

/* ---------------------------------------------------------------- the handle, transactions */

int db_enter(struct pec_store *st, char *err, size_t errlen)
{
    return st->drv->enter(st, 0, err, errlen);
}

/* db_enter() for the injector's bookkeeping, which may skip the fsync (sqlite.c says why). */
int db_enter_relaxed(struct pec_store *st, char *err, size_t errlen)
{
    return st->drv->enter(st, 1, err, errlen);
}

void db_leave(struct pec_store *st)
{
    st->drv->leave(st);
}

struct db_stmt *db_enter_prep(struct pec_store *st, const char *sql, char *err, size_t errlen)
{
    struct db_stmt *s;

    if (db_enter(st, err, errlen) < 0)
        return NULL;
    if ((s = db_prep(st, sql, err, errlen)) == NULL)
        db_leave(st);
    return s;
}

int db_run_leave(struct pec_store *st, struct db_stmt *s, const char *what, char *err,
                 size_t errlen)
{
    int n = db_run(st, s, what, err, errlen);

    db_leave(st);
    return n;
}

int db_begin(struct pec_store *st, char *err, size_t errlen)
{
    return db_exec(st, st->drv->begin_sql, "starting a transaction", err, errlen);
}

int db_begin_batch(struct pec_store *st, char *err, size_t errlen)
{
    int rc;

    st->batch = 1;
    if ((rc = db_begin(st, err, errlen)) < 0)
        st->batch = 0;
    return rc;
}

int db_commit(struct pec_store *st, char *err, size_t errlen)
{
    int rc = db_exec(st, "COMMIT", "commit", err, errlen);

    st->batch = 0;
    if (rc < 0) {
        db_rollback(st);
        return -1;
    }
    return 0;
}

int db_rollback(struct pec_store *st)
{
    st->batch = 0;
    if (st->conn != NULL && st->drv->in_tx(st)) {
        int retry = st->retry; /* the error that made us roll back decides */
        db_exec(st, "ROLLBACK", "rollback", NULL, 0);
        st->retry = retry;
    }
    return -1;
}

/* ---------------------------------------------------------------- meta */

int db_meta_get(struct pec_store *st, const char *key, int lock, char *out, size_t outlen,
                char *err, size_t errlen)
{
    struct db_stmt *s = db_prep(st,
                                lock ? "SELECT value FROM meta WHERE key = ?{for update}"
                                     : "SELECT value FROM meta WHERE key = ?",
                                err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    db_bt(s, 1, key);
    rc = db_step(st, s);
    if (rc != 1) {
        if (rc == 0)
            pec_seterr(err, errlen, "store %s: meta key %s is missing", st->path, key);
        else
            db_fail(st, "reading meta", err, errlen);
        db_release(st, s);
        return -1;
    }
    snprintf(out, outlen, "%s", db_col(s, 0));
    db_release(st, s);
    return 0;
}

int db_meta_set(struct pec_store *st, const char *key, const char *value, char *err, size_t errlen)
{
    struct db_stmt *s = db_prep(st, "UPDATE meta SET value = ? WHERE key = ?", err, errlen);

    if (s == NULL)
        return -1;
    db_bt(s, 1, value);
    db_bt(s, 2, key);
    return db_run(st, s, "writing meta", err, errlen) < 0 ? -1 : 0;
}

int db_meta_get_seq(struct pec_store *st, const char *key, int lock, long long *v, char *err,
                    size_t errlen)
{
    char buf[32], *end;

    if (db_meta_get(st, key, lock, buf, sizeof(buf), err, errlen) < 0)
        return -1;
    *v = strtoll(buf, &end, 10);
    if (*buf == '\0' || *end != '\0' || *v < 0) {
        pec_seterr(err, errlen, "store %s: meta %s is not a number: \"%s\"", st->path, key, buf);
        return -1;
    }
    return 0;
}

int db_meta_set_seq(struct pec_store *st, const char *key, long long v, char *err, size_t errlen)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lld", v);
    return db_meta_set(st, key, buf, err, errlen);
}
