/*
 * db_outbox - the injector's queue: claim the due row, record how the
 * MTA answered, recover rows a dead worker held, tidy, and the counts and
 * listings pecctl shows.
 */
#include "store/db_int.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

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

static void read_row(struct db_stmt *s, struct pec_outbox_row *row)
{
    const char *state = db_col(s, 5);

    memset(row, 0, sizeof(*row));
    row->id = db_coli(s, 0);
    row->message_id = db_coldup(s, 1);
    row->identificativo = db_coldup(s, 2);
    row->tipo = db_coldup(s, 3);
    split_lines(db_col(s, 4), row);
    for (int k = PEC_OUT_QUEUED; k <= PEC_OUT_FAILED; k++)
        if (strcmp(state, pec_outbox_state_name((enum pec_outbox_state)k)) == 0)
            row->state = (enum pec_outbox_state)k;
    row->created = (time_t)db_coli(s, 6);
    row->next_attempt = (time_t)db_coli(s, 7);
    row->sent_at = (time_t)db_coli(s, 8);
    row->attempts = db_coli(s, 9);
    row->doubts = db_coli(s, 10);
    row->last_error = db_coldup(s, 11);
    row->mta_queue_id = db_coldup(s, 12);
    row->len = (size_t)db_coli(s, 13);
}

/* The earliest next attempt of a queued row, 0 when none is queued. */
static int next_due(struct pec_store *st, time_t *when, char *err, size_t errlen)
{
    struct db_stmt *s =
        db_prep(st, "SELECT min(next_attempt) FROM outbox WHERE state = 'queued'", err, errlen);

    if (s == NULL)
        return -1;
    if (db_step(st, s) != 1) {
        db_fail(st, "reading the outbox", err, errlen);
        db_release(st, s);
        return -1;
    }
    *when = (time_t)db_coli(s, 0);
    db_release(st, s);
    return 0;
}

/*
 * Load the oldest due row with its bytes: 1 found, 0 none, -1 error.  The id
 * is chosen first, from the index alone: ordering the due rows themselves
 * sorted every queued message's bytes on every claim.  A row whose lease
 * ran out (its node died while sending it) comes before the queued ones:
 * it is the oldest owed.
 */
static int load_due(struct pec_store *st, time_t now, struct pec_outbox_row *row, char *err,
                    size_t errlen)
{
    static const char *const due[] = {
        "SELECT " OUTBOX_COLS ", message FROM outbox WHERE id ="
        " (SELECT id FROM outbox WHERE state = 'sending' AND lease_until <= ?"
        " ORDER BY id LIMIT 1{skip locked})",
        "SELECT " OUTBOX_COLS ", message FROM outbox WHERE id ="
        " (SELECT id FROM outbox WHERE state = 'queued' AND next_attempt <= ?"
        " ORDER BY id LIMIT 1{skip locked})",
    };
    int rc = 0;

    for (size_t i = 0; i < sizeof(due) / sizeof(due[0]) && rc == 0; i++) {
        struct db_stmt *s = db_prep(st, due[i], err, errlen);
        if (s == NULL)
            return -1;
        db_bi(s, 1, now);
        rc = db_step(st, s);
        if (rc == 1) {
            size_t n;
            const void *blob = db_colb(s, 14, &n);
            read_row(s, row);
            row->data = xmalloc(n + 1);
            if (n)
                memcpy(row->data, blob, n);
            row->len = n;
        } else if (rc < 0) {
            db_fail(st, "reading the outbox", err, errlen);
        }
        db_release(st, s);
    }
    return rc;
}

/*
 * The row is this node's until NOW + PEC_OUTBOX_LEASE; one taken over from
 * a node whose lease ran out counts a doubt, as one recovered after a crash.
 */
static int claim_row(struct pec_store *st, time_t now, long long node, struct pec_outbox_row *row,
                     char *err, size_t errlen)
{
    struct db_stmt *s =
        db_prep(st,
                "UPDATE outbox SET node = ?1, attempts = attempts + 1, last_try = ?2,"
                " lease_until = ?3, doubts = doubts + CASE WHEN state = 'sending' THEN 1 ELSE 0"
                " END, state = 'sending' WHERE id = ?4"
                " AND (state = 'queued' OR state = 'sending' AND lease_until <= ?2)",
                err, errlen);

    if (s == NULL)
        return -1;
    db_bi(s, 1, node);
    db_bi(s, 2, now);
    db_bi(s, 3, now + PEC_OUTBOX_LEASE);
    db_bi(s, 4, row->id);
    if (db_run(st, s, "claiming an outbox row", err, errlen) < 0)
        return -1;
    if (row->state == PEC_OUT_SENDING)
        row->doubts++;
    row->state = PEC_OUT_SENDING;
    row->attempts++;
    return 0;
}

int pec_store_outbox_claim(struct pec_store *st, time_t now, long long node,
                           struct pec_outbox_row *row, time_t *next, char *err, size_t errlen)
{
    int found;

    memset(row, 0, sizeof(*row));
    *next = 0;
    if (db_enter_relaxed(st, err, errlen) < 0)
        return -1;
    if (db_begin_batch(st, err, errlen) < 0) /* claim_row's count is not read */
        goto fail;
    found = load_due(st, now, row, err, errlen);
    if (found < 0)
        goto fail;
    if (found == 0 ? next_due(st, next, err, errlen) < 0
                   : claim_row(st, now, node, row, err, errlen) < 0)
        goto fail;
    if (db_commit(st, err, errlen) < 0)
        goto fail;
    db_leave(st);
    return found;
fail:
    db_rollback(st);
    db_leave(st);
    pec_outbox_row_free(row);
    return -1;
}

/*
 * Finish an UPDATE of one "sending" row, prepared and bound by the caller:
 * 0, or -1 when it failed or the row was not "sending".
 */
static int finish_sending(struct pec_store *st, struct db_stmt *s, long long id, const char *what,
                          char *err, size_t errlen)
{
    int n = db_run(st, s, what, err, errlen);

    if (n == 0)
        pec_seterr(err, errlen, "store %s: %s: outbox row %lld is not being sent", st->path, what,
                   id);
    return n == 1 ? 0 : -1;
}

int pec_store_outbox_sent(struct pec_store *st, long long id, time_t now, const char *mta_qid,
                          const char *note, char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc = -1;

    if (db_enter_relaxed(st, err, errlen) < 0)
        return -1;
    s = db_prep(st,
                "UPDATE outbox SET state = 'sent', sent_at = ?, mta_queue_id = ?, last_error = ?"
                " WHERE id = ? AND state = 'sending'",
                err, errlen);
    if (s != NULL) {
        db_bi(s, 1, now);
        db_bt(s, 2, mta_qid);
        db_bt(s, 3, note);
        db_bi(s, 4, id);
        rc = finish_sending(st, s, id, "marking a row sent", err, errlen);
    }
    db_leave(st);
    return rc;
}

int pec_store_outbox_defer(struct pec_store *st, long long id, time_t now, time_t next,
                           const char *why, char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc = -1;

    if (db_enter_relaxed(st, err, errlen) < 0)
        return -1;
    s = db_prep(st,
                "UPDATE outbox SET state = 'queued', last_try = ?, next_attempt = ?, last_error = ?"
                " WHERE id = ? AND state = 'sending'",
                err, errlen);
    if (s != NULL) {
        db_bi(s, 1, now);
        db_bi(s, 2, next);
        db_bt(s, 3, why);
        db_bi(s, 4, id);
        rc = finish_sending(st, s, id, "deferring a row", err, errlen);
    }
    db_leave(st);
    return rc;
}

int pec_store_outbox_fail(struct pec_store *st, long long id, time_t now, const char *why,
                          char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc = -1;

    if (db_enter_relaxed(st, err, errlen) < 0)
        return -1;
    s = db_prep(st,
                "UPDATE outbox SET state = 'failed', last_try = ?, last_error = ?"
                " WHERE id = ? AND state = 'sending'",
                err, errlen);
    if (s != NULL) {
        db_bi(s, 1, now);
        db_bt(s, 2, why);
        db_bi(s, 3, id);
        rc = finish_sending(st, s, id, "failing a row", err, errlen);
    }
    db_leave(st);
    return rc;
}

/* One UPDATE whose two parameters are integers; returns the rows changed, or -1. */
static int update_many(struct pec_store *st, const char *sql, long long a, long long b,
                       const char *what, char *err, size_t errlen)
{
    struct db_stmt *s = db_enter_prep(st, sql, err, errlen);

    if (s == NULL)
        return -1;
    db_bi(s, 1, a);
    db_bi(s, 2, b);
    return db_run_leave(st, s, what, err, errlen);
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
    struct db_stmt *s = db_enter_prep(st,
                                      "UPDATE outbox SET last_error = ?1, last_try = ?2"
                                      " WHERE state = 'queued' AND next_attempt <= ?2",
                                      err, errlen);

    if (s == NULL)
        return -1;
    db_bt(s, 1, why);
    db_bi(s, 2, now);
    return db_run_leave(st, s, "noting an outbox error", err, errlen) < 0 ? -1 : 0;
}

int pec_store_outbox_tidy(struct pec_store *st, char *err, size_t errlen)
{
    struct db_stmt *s;
    int n = -1;

    if (db_enter_relaxed(st, err, errlen) < 0)
        return -1;
    /*
     * Through the partial index of the rows still holding their bytes: the
     * planner would otherwise walk outbox_due over every row ever sent, and
     * this runs each time the outbox empties, holding the store.
     */
    s = db_prep(st,
                "UPDATE outbox{indexed by outbox_kept} SET message = ?, kept = 0"
                " WHERE kept = 1 AND state = 'sent'",
                err, errlen);
    if (s != NULL) {
        db_bb(s, 1, "", 0);
        n = db_run(st, s, "dropping sent messages", err, errlen);
    }
    db_leave(st);
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
    struct db_stmt *s;
    int rc;

    memset(out, 0, sizeof(*out));
    if (db_enter(st, err, errlen) < 0)
        return -1;
    s = db_prep(st, "SELECT state, count(*) FROM outbox GROUP BY state", err, errlen);
    if (s == NULL)
        goto fail;
    while ((rc = db_step(st, s)) == 1)
        for (int k = PEC_OUT_QUEUED; k <= PEC_OUT_FAILED; k++)
            if (strcmp(db_col(s, 0), pec_outbox_state_name((enum pec_outbox_state)k)) == 0)
                out->count[k] = db_coli(s, 1);
    db_release(st, s);
    if (rc != 0) {
        db_fail(st, "counting the outbox", err, errlen);
        goto fail;
    }
    /* by the states a row waits in, so the rows ever sent are not read one by one */
    s = db_prep(st,
                "SELECT id, created FROM outbox WHERE state IN ('queued', 'sending', 'failed')"
                " ORDER BY id LIMIT 1",
                err, errlen);
    if (s == NULL)
        goto fail;
    rc = db_step(st, s);
    if (rc == 1) {
        out->oldest_id = db_coli(s, 0);
        out->oldest_created = (time_t)db_coli(s, 1);
    }
    db_release(st, s);
    if (rc != 1 && rc != 0) {
        db_fail(st, "reading the outbox", err, errlen);
        goto fail;
    }
    db_leave(st);
    return 0;
fail:
    db_leave(st);
    return -1;
}

int pec_store_outbox_each(struct pec_store *st, unsigned states,
                          int (*fn)(const struct pec_outbox_row *row, void *arg), void *arg,
                          char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc, stop = 0;

    if (db_enter(st, err, errlen) < 0)
        return -1;
    s = db_prep(st, "SELECT " OUTBOX_COLS " FROM outbox ORDER BY id", err, errlen);
    if (s == NULL) {
        db_leave(st);
        return -1;
    }
    while (!stop && (rc = db_step(st, s)) == 1) {
        struct pec_outbox_row row;
        read_row(s, &row);
        if (states & (1u << row.state))
            stop = fn(&row, arg);
        pec_outbox_row_free(&row);
    }
    if (!stop && rc != 0)
        stop = db_fail(st, "reading the outbox", err, errlen);
    db_release(st, s);
    db_leave(st);
    return stop < 0 ? -1 : 0;
}
