/*
 * db_log - the registro read back in order or by filter, its bounds,
 * the daily seals, and the retention purge of the log and the tables that
 * grow with every message; the jobs that one node at a time runs.
 */
#include "store/db_int.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- the log */

static void read_record(struct db_stmt *s, struct pec_record *r)
{
    const char **v[] = {&r->evento,     &r->tipo,     &r->label,         &r->identificativo,
                        &r->queue_id,   &r->mittente, &r->destinatari,   &r->oggetto,
                        &r->message_id, &r->gestore,  &r->tipo_ricevuta, &r->consegna,
                        &r->ricezione,  &r->errore,   &r->virus,         &r->errore_esteso};

    r->seq = db_coli(s, 0);
    r->at = (time_t)db_coli(s, 1);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        *v[i] = db_col(s, (int)i + 2);
    snprintf(r->prev, sizeof(r->prev), "%s", db_col(s, 18));
    snprintf(r->hash, sizeof(r->hash), "%s", db_col(s, 19));
    r->client_msgid = db_col(s, 20);
    r->node = db_col(s, 21);
    r->form = db_coli(s, 22);
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
    struct db_stmt *s;
    int rc, stop = 0;

    if (f == NULL)
        f = &none;
    if (db_enter(st, err, errlen) < 0)
        return -1;
#define LOG_QUERY(BY_ID)                                                                           \
    "SELECT seq, at, evento, tipo, label, identificativo, queue_id, mittente,"                     \
    " destinatari, oggetto, message_id, gestore, tipo_ricevuta, consegna, ricezione,"              \
    " errore, virus, errore_esteso, prev, hash, client_msgid, node, form FROM registro"            \
    " WHERE " BY_ID " AND (?2 IS NULL OR mittente = ?2 COLLATE NOCASE)"                            \
    " AND (?3 = 0 OR at >= ?3) AND (?4 = 0 OR at < ?4)"                                            \
    " AND seq >= ?5 AND (?6 = 0 OR seq <= ?6) ORDER BY seq"
    /*
     * By identificativo (the reception point asks for each busta it
     * receives) the condition must be plain, or SQLite walks the whole log
     * instead of using registro_identificativo.
     */
    s = db_prep(st, f->identificativo ? LOG_QUERY("identificativo = ?1") : LOG_QUERY("?1 IS NULL"),
                err, errlen);
#undef LOG_QUERY
    if (s == NULL) {
        db_leave(st);
        return -1;
    }
    if (f->identificativo)
        db_bt(s, 1, f->identificativo);
    if (f->mittente)
        db_bt(s, 2, f->mittente);
    db_bi(s, 3, f->since);
    db_bi(s, 4, f->until);
    db_bi(s, 5, f->from_seq);
    db_bi(s, 6, f->to_seq);
    while (!stop && (rc = db_step(st, s)) == 1) {
        struct pec_record r;
        read_record(s, &r);
        if (f->destinatario == NULL || dest_contains(r.destinatari, f->destinatario))
            stop = fn(&r, arg);
    }
    if (!stop && rc != 0)
        stop = db_fail(st, "reading the log", err, errlen);
    db_release(st, s);
    db_leave(st);
    return stop;
}

int pec_store_log_bounds(struct pec_store *st, long long *purged_seq,
                         char purged_hash[PEC_HASH_HEX], long long *head_seq,
                         char head_hash[PEC_HASH_HEX], char *err, size_t errlen)
{
    int rc;

    if (db_enter(st, err, errlen) < 0)
        return -1;
    rc = (db_meta_get_seq(st, "registro_purged_seq", 0, purged_seq, err, errlen) < 0 ||
          db_meta_get(st, "registro_purged_hash", 0, purged_hash, PEC_HASH_HEX, err, errlen) < 0 ||
          db_meta_get_seq(st, "registro_head_seq", 0, head_seq, err, errlen) < 0 ||
          db_meta_get(st, "registro_head_hash", 0, head_hash, PEC_HASH_HEX, err, errlen) < 0)
             ? -1
             : 0;
    db_leave(st);
    return rc;
}

int pec_store_seal_add(struct pec_store *st, const struct pec_seal *sl, char *err, size_t errlen)
{
    struct db_stmt *s =
        db_enter_prep(st,
                      "INSERT INTO seals (first_seq, last_seq, day, file, last_hash,"
                      " file_sha256, sealed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      err, errlen);

    if (s == NULL)
        return -1;
    db_bi(s, 1, sl->first_seq);
    db_bi(s, 2, sl->last_seq);
    db_bt(s, 3, sl->day);
    db_bt(s, 4, sl->file);
    db_bt(s, 5, sl->last_hash);
    db_bt(s, 6, sl->file_sha256);
    db_bi(s, 7, sl->sealed_at);
    return db_run_leave(st, s, "recording a seal", err, errlen) < 0 ? -1 : 0;
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
    struct db_stmt *s = db_prep(st,
                                "SELECT day, file, first_seq, last_seq, last_hash, file_sha256,"
                                " sealed_at FROM seals ORDER BY first_seq",
                                err, errlen);
    int rc;

    *out = NULL;
    *n = 0;
    if (s == NULL)
        return -1;
    while ((rc = db_step(st, s)) == 1) {
        struct pec_seal *sl;
        *out = xrealloc(*out, (*n + 1) * sizeof(**out));
        sl = &(*out)[(*n)++];
        memset(sl, 0, sizeof(*sl));
        snprintf(sl->day, sizeof(sl->day), "%s", db_col(s, 0));
        sl->file = db_coldup(s, 1);
        sl->first_seq = db_coli(s, 2);
        sl->last_seq = db_coli(s, 3);
        snprintf(sl->last_hash, sizeof(sl->last_hash), "%s", db_col(s, 4));
        snprintf(sl->file_sha256, sizeof(sl->file_sha256), "%s", db_col(s, 5));
        sl->sealed_at = (time_t)db_coli(s, 6);
    }
    db_release(st, s);
    if (rc != 0) {
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

    if (db_enter(st, err, errlen) < 0)
        return -1;
    rc = read_seals(st, &v, &n, err, errlen);
    db_leave(st);
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
    struct db_stmt *s;
    char hash[PEC_HASH_HEX];
    int rc;

    s = db_prep(st, "SELECT last_hash FROM seals WHERE last_seq = ?", err, errlen);
    if (s == NULL)
        return -1;
    db_bi(s, 1, through);
    rc = db_step(st, s);
    if (rc == 1)
        snprintf(hash, sizeof(hash), "%s", db_col(s, 0));
    else if (rc == 0)
        pec_seterr(err, errlen, "store %s: purge: record %lld does not end a seal", st->path,
                   through);
    else
        db_fail(st, "purge", err, errlen);
    db_release(st, s);
    if (rc != 1)
        return -1;
    if ((s = db_prep(st, "DELETE FROM registro WHERE seq <= ?", err, errlen)) == NULL)
        return -1;
    db_bi(s, 1, through);
    if (db_run(st, s, "purging the log", err, errlen) < 0)
        return -1;
    if ((s = db_prep(st, "DELETE FROM seals WHERE last_seq <= ?", err, errlen)) == NULL)
        return -1;
    db_bi(s, 1, through);
    if (db_run(st, s, "purging the seals", err, errlen) < 0)
        return -1;
    return db_meta_set_seq(st, "registro_purged_seq", through, err, errlen) < 0 ||
                   db_meta_set(st, "registro_purged_hash", hash, err, errlen) < 0
               ? -1
               : 0;
}

static int purge_before(struct pec_store *st, const char *sql, time_t before, char *err,
                        size_t errlen)
{
    struct db_stmt *s = db_prep(st, sql, err, errlen);

    if (s == NULL)
        return -1;
    db_bi(s, 1, before);
    return db_run(st, s, "purge", err, errlen) < 0 ? -1 : 0;
}

int pec_store_log_purge(struct pec_store *st, long long through_seq, time_t before, char *err,
                        size_t errlen)
{
    if (db_enter(st, err, errlen) < 0)
        return -1;
    if (db_begin(st, err, errlen) < 0 ||
        (through_seq > 0 && purge_log(st, through_seq, err, errlen) < 0) ||
        purge_before(st, "DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?", before, err,
                     errlen) < 0 ||
        purge_before(st, "DELETE FROM transactions WHERE submitted < ?", before, err, errlen) < 0 ||
        purge_before(st, "DELETE FROM delivered WHERE at < ?", before, err, errlen) < 0 ||
        purge_before(st, "DELETE FROM refused WHERE at < ?", before, err, errlen) < 0 ||
        db_commit(st, err, errlen) < 0) {
        db_rollback(st);
        db_leave(st);
        return -1;
    }
    db_leave(st);
    return 0;
}

/* ---------------------------------------------------------------- jobs */

int pec_store_job_take(struct pec_store *st, const char *name, long long node, time_t now,
                       time_t until, char *err, size_t errlen)
{
    /* on PostgreSQL a second node's insert waits for the first's, then sees its row */
    struct db_stmt *s =
        db_enter_prep(st,
                      "INSERT INTO jobs (name, node, until) VALUES (?1, ?2, ?4) ON CONFLICT (name)"
                      " DO UPDATE SET node = excluded.node, until = excluded.until"
                      " WHERE jobs.until <= ?3 OR jobs.node = excluded.node",
                      err, errlen);
    int n;

    if (s == NULL)
        return -1;
    db_bt(s, 1, name);
    db_bi(s, 2, node);
    db_bi(s, 3, now);
    db_bi(s, 4, until);
    n = db_run_leave(st, s, "taking a job", err, errlen);
    return n < 0 ? -1 : n > 0;
}

int pec_store_job_done(struct pec_store *st, const char *name, long long node, char *err,
                       size_t errlen)
{
    struct db_stmt *s =
        db_enter_prep(st, "UPDATE jobs SET until = 0 WHERE name = ? AND node = ?", err, errlen);

    if (s == NULL)
        return -1;
    db_bt(s, 1, name);
    db_bi(s, 2, node);
    return db_run_leave(st, s, "ending a job", err, errlen) < 0 ? -1 : 0;
}
