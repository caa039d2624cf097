/*
 * sqlite_commit - a batch (store_int.h) applied in one transaction, and the
 * reads of what batches wrote: transactions with their recipients, the
 * scheduler's walk over the recipients still awaiting an outcome, the
 * delivery point's "delivered already" and the access point's refusals.
 */
#include "store/store_int.h"
#include "store/sqlite_int.h"
#include "util/xalloc.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* ---------------------------------------------------------------- commit */

static int insert_tx(struct pec_store *st, const struct pec_tx *tx, char *err, size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st,
                              "INSERT INTO transactions (identificativo, client_msgid, mittente,"
                              " oggetto, tipo_ricevuta, queue_id, submitted, risposte)"
                              " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              err, errlen);

    if (s == NULL)
        return -1;
    sq_bt(s, 1, tx->identificativo);
    sq_bt(s, 2, tx->client_msgid);
    sq_bt(s, 3, tx->mittente);
    sq_bt(s, 4, tx->oggetto);
    sq_bt(s, 5, tx->tipo_ricevuta);
    sq_bt(s, 6, tx->queue_id);
    sq_bi(s, 7, tx->submitted);
    sq_bt(s, 8, tx->risposte);
    if (sq_run(st, s, "recording a transaction", err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < tx->nrcpt; i++) {
        s = sq_prep(st,
                    "INSERT OR IGNORE INTO recipients (identificativo, address, certificato, cc,"
                    " state, sent_at) VALUES (?, ?, ?, ?, 'sent', ?)",
                    err, errlen);
        if (s == NULL)
            return -1;
        sq_bt(s, 1, tx->identificativo);
        sq_bt(s, 2, tx->rcpt[i].address);
        sq_bi(s, 3, tx->rcpt[i].certificato != 0);
        sq_bi(s, 4, tx->rcpt[i].cc != 0);
        sq_bi(s, 5, tx->submitted);
        if (sq_run(st, s, "recording a recipient", err, errlen) < 0)
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
    if ((s = sq_prep(st, sql, err, errlen)) == NULL)
        return -1;
    sq_bt(s, 1, pec_rcpt_state_name(u->state));
    sq_bi(s, 2, u->when);
    sq_bt(s, 3, u->detail);
    sq_bt(s, 4, u->identificativo);
    if (u->address)
        sq_bt(s, 5, u->address);
    else
        sqlite3_bind_null(s, 5);
    return sq_run(st, s, "updating a recipient", err, errlen) < 0 ? -1 : 0;
}

/*
 * The notice: only for a recipient still awaiting its outcome or marked as
 * owed, and only the first time.  The mark (PEC_WARN_OWED): only where no
 * notice went out, whatever the state (it comes with the receipt's own).
 */
static int update_warned(struct pec_store *st, const struct batch_warned *w, char *err,
                         size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st,
                              "UPDATE recipients SET warned_at = ?1 WHERE identificativo = ?2"
                              " AND address = ?3 AND (warned_at = 0 AND (?1 < 0 OR state IN"
                              " ('sent', 'taken')) OR warned_at < 0 AND ?1 > 0)",
                              err, errlen);

    if (s == NULL)
        return -1;
    sq_bi(s, 1, w->when);
    sq_bt(s, 2, w->identificativo);
    sq_bt(s, 3, w->address);
    return sq_run(st, s, "updating a recipient", err, errlen) < 0 ? -1 : 0;
}

static int insert_refused(struct pec_store *st, const struct batch_refused *d, char *err,
                          size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st,
                              "INSERT OR REPLACE INTO refused"
                              " (mittente, client_msgid, identificativo, oggetto, errore, at)"
                              " VALUES (?, ?, ?, ?, ?, ?)",
                              err, errlen);

    if (s == NULL)
        return -1;
    sq_bt(s, 1, d->mittente);
    sq_bt(s, 2, d->client_msgid);
    sq_bt(s, 3, d->r.identificativo);
    sq_bt(s, 4, d->r.oggetto);
    sq_bt(s, 5, d->r.errore);
    sq_bi(s, 6, d->r.when);
    return sq_run(st, s, "recording a refusal", err, errlen) < 0 ? -1 : 0;
}

static int insert_delivered(struct pec_store *st, const struct batch_delivered *d, char *err,
                            size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st,
                              "INSERT OR IGNORE INTO delivered (mailbox, message_id, at)"
                              " VALUES (?, ?, ?)",
                              err, errlen);

    if (s == NULL)
        return -1;
    sq_bt(s, 1, d->mailbox);
    sq_bt(s, 2, d->message_id);
    sq_bi(s, 3, d->when);
    return sq_run(st, s, "recording a delivery", err, errlen) < 0 ? -1 : 0;
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
    sqlite3_stmt *s = sq_prep(st,
                              "INSERT INTO outbox (message_id, identificativo, tipo, rcpt, message,"
                              " size, state, created) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                              err, errlen);
    char *rcpt;
    int rc;

    if (s == NULL)
        return -1;
    rcpt = join_lines(o->rcpt, o->nrcpt);
    sq_bt(s, 1, o->message_id);
    sq_bt(s, 2, o->identificativo);
    sq_bt(s, 3, o->tipo);
    sq_bt(s, 4, rcpt);
    sqlite3_bind_blob64(s, 5, o->len ? (const void *)o->data : "", o->len, SQLITE_STATIC);
    sq_bi(s, 6, (long long)o->len);
    sq_bi(s, 7, now);
    rc = sq_run(st, s, "queueing a message", err, errlen);
    free(rcpt);
    return rc < 0 ? -1 : 0;
}

static int insert_record(struct pec_store *st, const struct pec_record *r, char *err, size_t errlen)
{
    sqlite3_stmt *s =
        sq_prep(st,
                "INSERT INTO registro (seq, at, evento, tipo, label, identificativo,"
                " queue_id, mittente, destinatari, oggetto, message_id, gestore,"
                " tipo_ricevuta, consegna, ricezione, errore, virus, errore_esteso,"
                " prev, hash, client_msgid, node, form) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                err, errlen);
    const char *v[] = {r->evento,     r->tipo,     r->label,         r->identificativo,
                       r->queue_id,   r->mittente, r->destinatari,   r->oggetto,
                       r->message_id, r->gestore,  r->tipo_ricevuta, r->consegna,
                       r->ricezione,  r->errore,   r->virus,         r->errore_esteso,
                       r->prev,       r->hash,     r->client_msgid,  r->node};

    if (s == NULL)
        return -1;
    sq_bi(s, 1, r->seq);
    sq_bi(s, 2, r->at);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        sq_bt(s, (int)i + 3, v[i]);
    sq_bi(s, 23, r->form);
    return sq_run(st, s, "appending to the log", err, errlen) < 0 ? -1 : 0;
}

/* Number, link and hash the batch's records after the current head, and append them. */
static int append_records(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen)
{
    long long seq;
    char prev[PEC_HASH_HEX];

    if (b->nrec == 0)
        return 0;
    if (sq_meta_get_seq(st, "registro_head_seq", &seq, err, errlen) < 0 ||
        sq_meta_get(st, "registro_head_hash", prev, sizeof(prev), err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < b->nrec; i++) {
        struct pec_record *r = &b->rec[i].r;
        r->seq = ++seq;
        r->node = st->node;
        r->form = 2;
        memcpy(r->prev, prev, sizeof(prev));
        pec_record_hash(r, r->hash);
        if (insert_record(st, r, err, errlen) < 0)
            return -1;
        memcpy(prev, r->hash, sizeof(prev));
    }
    if (sq_meta_set_seq(st, "registro_head_seq", seq, err, errlen) < 0 ||
        sq_meta_set(st, "registro_head_hash", prev, err, errlen) < 0)
        return -1;
    return 0;
}

/* 1 when the recipient is not as E expects, 0 when it is, -1 on error. */
static int check_expect(struct pec_store *st, const struct batch_expect *e, char *err,
                        size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st,
                              "SELECT state, warned_at FROM recipients"
                              " WHERE identificativo = ? AND address = ?",
                              err, errlen);
    int rc, off = 1;

    if (s == NULL)
        return -1;
    sq_bt(s, 1, e->identificativo);
    sq_bt(s, 2, e->address);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
            if (strcmp(sq_col(s, 0), pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0 &&
                (e->states & (1u << k)))
                off = 0;
        if (e->unwarned && sqlite3_column_int64(s, 1) > 0)
            off = 1;
    } else if (rc != SQLITE_DONE) {
        off = sq_db_fail(st, "reading a recipient", err, errlen);
    }
    sq_release(st, s);
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
        log(LOG_INFO, NULL, line); /* the line names its queue id: no prefix before it */
        free(line);
    }
}

int pec_store_commit(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen)
{
    pec_log_fn *log;
    void (*hook)(void *);
    void *hook_arg;

    int rc = 0;

    if (sq_enter(st, err, errlen) < 0)
        return -1;
    if (sq_begin(st, err, errlen) < 0 || (rc = apply(st, b, err, errlen)) < 0 ||
        (rc == 0 && sq_commit(st, err, errlen) < 0)) {
        sq_rollback(st);
        sq_leave(st);
        return -1;
    }
    if (rc == 1) { /* an expectation failed: nothing written, nothing to announce */
        sq_rollback(st);
        sq_leave(st);
        return 1;
    }
    log = st->log;
    hook = b->nout ? st->outbox_hook : NULL;
    hook_arg = st->outbox_arg;
    sq_leave(st);
    announce(log, b);
    if (hook)
        hook(hook_arg);
    return 0;
}

/* ---------------------------------------------------------------- transactions */

static void read_rcpt(sqlite3_stmt *s, struct pec_rcpt_info *r)
{
    const char *state = sq_col(s, 3);

    r->address = sq_coldup(s, 0);
    r->certificato = sqlite3_column_int(s, 1);
    r->cc = sqlite3_column_int(s, 2);
    r->state = PEC_RCPT_SENT;
    for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
        if (strcmp(state, pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0)
            r->state = (enum pec_rcpt_state)k;
    r->sent_at = (time_t)sqlite3_column_int64(s, 4);
    r->taken_at = (time_t)sqlite3_column_int64(s, 5);
    r->done_at = (time_t)sqlite3_column_int64(s, 6);
    r->detail = sq_coldup(s, 7);
    r->warned_at = (time_t)sqlite3_column_int64(s, 8);
}

static int read_rcpts(struct pec_store *st, struct pec_tx_info *out, char *err, size_t errlen)
{
    sqlite3_stmt *s = sq_prep(st,
                              "SELECT address, certificato, cc, state, sent_at, taken_at, done_at,"
                              " detail, warned_at FROM recipients WHERE identificativo = ?"
                              " ORDER BY rowid",
                              err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    sq_bt(s, 1, out->identificativo);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        out->rcpt = xrealloc(out->rcpt, (out->nrcpt + 1) * sizeof(*out->rcpt));
        read_rcpt(s, &out->rcpt[out->nrcpt++]);
    }
    if (rc != SQLITE_DONE) {
        sq_db_fail(st, "reading recipients", err, errlen);
        sq_release(st, s);
        return -1;
    }
    sq_release(st, s);
    return 0;
}

/* The transaction S (bound and ready) finds, with its recipients: 1, 0 when none, -1. */
static int read_tx(struct pec_store *st, sqlite3_stmt *s, struct pec_tx_info *out, char *err,
                   size_t errlen)
{
    int rc = sqlite3_step(s), found = 0;

    if (rc == SQLITE_ROW) {
        found = 1;
        out->identificativo = sq_coldup(s, 0);
        out->client_msgid = sq_coldup(s, 1);
        out->mittente = sq_coldup(s, 2);
        out->oggetto = sq_coldup(s, 3);
        out->tipo_ricevuta = sq_coldup(s, 4);
        out->queue_id = sq_coldup(s, 5);
        out->submitted = (time_t)sqlite3_column_int64(s, 6);
        out->risposte = sq_coldup(s, 7);
    } else if (rc != SQLITE_DONE) {
        found = sq_db_fail(st, "reading a transaction", err, errlen);
    }
    sq_release(st, s);
    if (found == 1 && read_rcpts(st, out, err, errlen) < 0)
        found = -1;
    if (found != 1)
        pec_tx_info_free(out);
    return found;
}

#define TX_COLUMNS                                                                                 \
    "SELECT identificativo, client_msgid, mittente, oggetto, tipo_ricevuta, queue_id,"             \
    " submitted, risposte FROM transactions"

int pec_store_tx_get(struct pec_store *st, const char *identificativo, struct pec_tx_info *out,
                     char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int found;

    memset(out, 0, sizeof(*out));
    if (sq_enter(st, err, errlen) < 0)
        return -1;
    s = sq_prep(st, TX_COLUMNS " WHERE identificativo = ?", err, errlen);
    if (s == NULL) {
        sq_leave(st);
        return -1;
    }
    sq_bt(s, 1, identificativo);
    found = read_tx(st, s, out, err, errlen);
    sq_leave(st);
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
    if (sq_enter(st, err, errlen) < 0)
        return -1;
    s = sq_prep(st,
                TX_COLUMNS
                " WHERE client_msgid = ? AND submitted >= ? AND mittente = ? COLLATE NOCASE"
                " ORDER BY submitted DESC, rowid DESC LIMIT 1",
                err, errlen);
    if (s == NULL) {
        sq_leave(st);
        return -1;
    }
    sq_bt(s, 1, client_msgid);
    sq_bi(s, 2, since);
    sq_bt(s, 3, mittente);
    found = read_tx(st, s, out, err, errlen);
    sq_leave(st);
    return found;
}

/* ---------------------------------------------------------------- deadlines */

int pec_store_pending_each(struct pec_store *st, time_t sent_before,
                           int (*fn)(const struct pec_pending_rcpt *r, void *arg), void *arg,
                           char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, stop = 0;

    if (sq_enter(st, err, errlen) < 0)
        return -1;
    s = sq_prep(st,
                "SELECT t.identificativo, t.client_msgid, t.mittente, t.oggetto, t.tipo_ricevuta,"
                " r.address, r.cc, r.state, r.sent_at, r.warned_at"
                " FROM recipients r JOIN transactions t ON t.identificativo = r.identificativo"
                /* exactly the condition of the index recipients_due */
                " WHERE r.certificato = 1 AND (r.state IN ('sent', 'taken') OR r.warned_at < 0)"
                " AND (?1 = 0 OR r.sent_at < ?1)"
                " ORDER BY r.sent_at, r.identificativo, r.rowid",
                err, errlen);
    if (s == NULL) {
        sq_leave(st);
        return -1;
    }
    sq_bi(s, 1, sent_before);
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct pec_pending_rcpt r;
        r.identificativo = sq_col(s, 0);
        r.client_msgid = sq_col(s, 1);
        r.mittente = sq_col(s, 2);
        r.oggetto = sq_col(s, 3);
        r.tipo_ricevuta = sq_col(s, 4);
        r.address = sq_col(s, 5);
        r.cc = sqlite3_column_int(s, 6);
        r.state = PEC_RCPT_SENT;
        for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
            if (strcmp(sq_col(s, 7), pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0)
                r.state = (enum pec_rcpt_state)k;
        r.sent_at = (time_t)sqlite3_column_int64(s, 8);
        r.warned_at = (time_t)sqlite3_column_int64(s, 9);
        stop = fn(&r, arg);
    }
    if (!stop && rc != SQLITE_DONE)
        stop = sq_db_fail(st, "reading pending recipients", err, errlen);
    sq_release(st, s);
    sq_leave(st);
    return stop;
}

/* ---------------------------------------------------------------- delivery point dedupe */

int pec_store_delivered(struct pec_store *st, const char *mailbox, const char *message_id,
                        char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, found;

    if (sq_enter(st, err, errlen) < 0)
        return -1;
    s = sq_prep(st, "SELECT 1 FROM delivered WHERE mailbox = ? AND message_id = ?", err, errlen);
    if (s == NULL) {
        sq_leave(st);
        return -1;
    }
    sq_bt(s, 1, mailbox);
    sq_bt(s, 2, message_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        found = 1;
    else if (rc == SQLITE_DONE)
        found = 0;
    else
        found = sq_db_fail(st, "reading deliveries", err, errlen);
    sq_release(st, s);
    sq_leave(st);
    return found;
}

/* ---------------------------------------------------------------- access point refusals */

int pec_store_refused(struct pec_store *st, const char *mittente, const char *client_msgid,
                      time_t since, struct pec_refusal *out, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, found;

    memset(out, 0, sizeof(*out));
    if (sq_enter(st, err, errlen) < 0)
        return -1;
    s = sq_prep(st,
                "SELECT identificativo, oggetto, errore, at FROM refused"
                " WHERE mittente = ? AND client_msgid = ? AND at >= ?",
                err, errlen);
    if (s == NULL) {
        sq_leave(st);
        return -1;
    }
    sq_bt(s, 1, mittente);
    sq_bt(s, 2, client_msgid);
    sq_bi(s, 3, since);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->identificativo = sq_coldup(s, 0);
        out->oggetto = sq_coldup(s, 1);
        out->errore = sq_coldup(s, 2);
        out->when = (time_t)sqlite3_column_int64(s, 3);
        found = 1;
    } else if (rc == SQLITE_DONE) {
        found = 0;
    } else {
        found = sq_db_fail(st, "reading refusals", err, errlen);
    }
    sq_release(st, s);
    sq_leave(st);
    return found;
}
