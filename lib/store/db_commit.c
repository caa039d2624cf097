/*
 * db_commit - a batch (store_int.h) applied in one transaction, and the
 * reads of what batches wrote: transactions with their recipients, the
 * scheduler's walk over the recipients still awaiting an outcome, the
 * delivery point's "delivered already" and the access point's refusals.
 */
#include "store/store_int.h"
#include "store/db_int.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* ---------------------------------------------------------------- commit */

static int insert_tx(struct pec_store *st, const struct pec_tx *tx, char *err, size_t errlen)
{
    struct db_stmt *s = db_prep(st,
                                "INSERT INTO transactions (identificativo, client_msgid, mittente,"
                                " oggetto, tipo_ricevuta, queue_id, submitted, risposte)"
                                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                err, errlen);

    if (s == NULL)
        return -1;
    db_bt(s, 1, tx->identificativo);
    db_bt(s, 2, tx->client_msgid);
    db_bt(s, 3, tx->mittente);
    db_bt(s, 4, tx->oggetto);
    db_bt(s, 5, tx->tipo_ricevuta);
    db_bt(s, 6, tx->queue_id);
    db_bi(s, 7, tx->submitted);
    db_bt(s, 8, tx->risposte);
    if (db_run(st, s, "recording a transaction", err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < tx->nrcpt; i++) {
        s = db_prep(st,
                    "INSERT INTO recipients (identificativo, address, certificato, cc, state,"
                    " sent_at) VALUES (?, ?, ?, ?, 'sent', ?) ON CONFLICT DO NOTHING",
                    err, errlen);
        if (s == NULL)
            return -1;
        db_bt(s, 1, tx->identificativo);
        db_bt(s, 2, tx->rcpt[i].address);
        db_bi(s, 3, tx->rcpt[i].certificato != 0);
        db_bi(s, 4, tx->rcpt[i].cc != 0);
        db_bi(s, 5, tx->submitted);
        if (db_run(st, s, "recording a recipient", err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int update_state(struct pec_store *st, const struct batch_state *u, char *err, size_t errlen)
{
    const char *sql;
    struct db_stmt *s;

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
    if ((s = db_prep(st, sql, err, errlen)) == NULL)
        return -1;
    db_bt(s, 1, pec_rcpt_state_name(u->state));
    db_bi(s, 2, u->when);
    db_bt(s, 3, u->detail);
    db_bt(s, 4, u->identificativo);
    if (u->address)
        db_bt(s, 5, u->address);
    return db_run(st, s, "updating a recipient", err, errlen) < 0 ? -1 : 0;
}

/*
 * The notice: only for a recipient still awaiting its outcome or marked as
 * owed, and only the first time.  The mark (PEC_WARN_OWED): only where no
 * notice went out, whatever the state (it comes with the receipt's own).
 */
static int update_warned(struct pec_store *st, const struct batch_warned *w, char *err,
                         size_t errlen)
{
    struct db_stmt *s = db_prep(st,
                                "UPDATE recipients SET warned_at = ?1 WHERE identificativo = ?2"
                                " AND address = ?3 AND (warned_at = 0 AND (?1 < 0 OR state IN"
                                " ('sent', 'taken')) OR warned_at < 0 AND ?1 > 0)",
                                err, errlen);

    if (s == NULL)
        return -1;
    db_bi(s, 1, w->when);
    db_bt(s, 2, w->identificativo);
    db_bt(s, 3, w->address);
    return db_run(st, s, "updating a recipient", err, errlen) < 0 ? -1 : 0;
}

static int insert_refused(struct pec_store *st, const struct batch_refused *d, char *err,
                          size_t errlen)
{
    struct db_stmt *s = db_prep(st,
                                "INSERT INTO refused"
                                " (mittente, client_msgid, identificativo, oggetto, errore, at)"
                                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (mittente, client_msgid)"
                                " DO UPDATE SET identificativo = excluded.identificativo,"
                                " oggetto = excluded.oggetto, errore = excluded.errore,"
                                " at = excluded.at",
                                err, errlen);

    if (s == NULL)
        return -1;
    db_bt(s, 1, d->mittente);
    db_bt(s, 2, d->client_msgid);
    db_bt(s, 3, d->r.identificativo);
    db_bt(s, 4, d->r.oggetto);
    db_bt(s, 5, d->r.errore);
    db_bi(s, 6, d->r.when);
    return db_run(st, s, "recording a refusal", err, errlen) < 0 ? -1 : 0;
}

static int insert_delivered(struct pec_store *st, const struct batch_delivered *d, char *err,
                            size_t errlen)
{
    struct db_stmt *s = db_prep(st,
                                "INSERT INTO delivered (mailbox, message_id, at)"
                                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                err, errlen);

    if (s == NULL)
        return -1;
    db_bt(s, 1, d->mailbox);
    db_bt(s, 2, d->message_id);
    db_bi(s, 3, d->when);
    return db_run(st, s, "recording a delivery", err, errlen) < 0 ? -1 : 0;
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
    struct db_stmt *s =
        db_prep(st,
                "INSERT INTO outbox (message_id, identificativo, tipo, rcpt, message,"
                " size, state, created) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                err, errlen);
    char *rcpt;
    int rc;

    if (s == NULL)
        return -1;
    rcpt = join_lines(o->rcpt, o->nrcpt);
    db_bt(s, 1, o->message_id);
    db_bt(s, 2, o->identificativo);
    db_bt(s, 3, o->tipo);
    db_bt(s, 4, rcpt);
    db_bb(s, 5, o->data, o->len);
    db_bi(s, 6, (long long)o->len);
    db_bi(s, 7, now);
    rc = db_run(st, s, "queueing a message", err, errlen);
    free(rcpt);
    return rc < 0 ? -1 : 0;
}

static int insert_record(struct pec_store *st, const struct pec_record *r, char *err, size_t errlen)
{
    struct db_stmt *s =
        db_prep(st,
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
    db_bi(s, 1, r->seq);
    db_bi(s, 2, r->at);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        db_bt(s, (int)i + 3, v[i]);
    db_bi(s, 23, r->form);
    return db_run(st, s, "appending to the log", err, errlen) < 0 ? -1 : 0;
}

/*
 * The log's head, its last seq and hash, in one statement: both rows stay
 * locked until the transaction ends, so the chain stays one line whichever
 * node appends (only appenders write them, all through this statement, so
 * they take the two locks in the same order).
 */
static int read_head(struct pec_store *st, long long *seq, char prev[PEC_HASH_HEX], char *err,
                     size_t errlen)
{
    struct db_stmt *s = db_prep(st,
                                "SELECT key, value FROM meta"
                                " WHERE key IN ('registro_head_seq', 'registro_head_hash')"
                                " ORDER BY key{for update}",
                                err, errlen);
    int rc, found = 0;
    char *end;

    if (s == NULL)
        return -1;
    while ((rc = db_step(st, s)) == 1) {
        const char *key = db_col(s, 0), *value = db_col(s, 1);
        if (strcmp(key, "registro_head_seq") == 0) {
            *seq = strtoll(value, &end, 10);
            if (*value != '\0' && *end == '\0' && *seq >= 0)
                found |= 1;
        } else if (strlen(value) == PEC_HASH_HEX - 1) {
            memcpy(prev, value, PEC_HASH_HEX);
            found |= 2;
        }
    }
    if (rc < 0)
        db_fail(st, "reading meta", err, errlen);
    else if (found != 3)
        pec_seterr(err, errlen,
                   "store %s: meta registro_head_seq or registro_head_hash is missing"
                   " or malformed",
                   st->path);
    db_release(st, s);
    return rc < 0 || found != 3 ? -1 : 0;
}

/* Number, link and hash the batch's records after the current head, and append them. */
static int append_records(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen)
{
    long long seq = 0;
    char prev[PEC_HASH_HEX], num[24];
    struct db_stmt *s;

    if (b->nrec == 0)
        return 0;
    if (read_head(st, &seq, prev, err, errlen) < 0)
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
    s = db_prep(st,
                "UPDATE meta SET value = CASE key WHEN 'registro_head_seq' THEN ? ELSE ? END"
                " WHERE key IN ('registro_head_seq', 'registro_head_hash')",
                err, errlen);
    if (s == NULL)
        return -1;
    snprintf(num, sizeof(num), "%lld", seq);
    db_bt(s, 1, num);
    db_bt(s, 2, prev);
    return db_run(st, s, "writing meta", err, errlen) < 0 ? -1 : 0;
}

/* 1 when the recipient is not as E expects, 0 when it is, -1 on error. */
static int check_expect(struct pec_store *st, const struct batch_expect *e, char *err,
                        size_t errlen)
{
    struct db_stmt *s = db_prep(st,
                                "SELECT state, warned_at FROM recipients"
                                " WHERE identificativo = ? AND address = ?{for update}",
                                err, errlen);
    int rc, off = 1;

    if (s == NULL)
        return -1;
    db_bt(s, 1, e->identificativo);
    db_bt(s, 2, e->address);
    rc = db_step(st, s);
    if (rc == 1) {
        for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
            if (strcmp(db_col(s, 0), pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0 &&
                (e->states & (1u << k)))
                off = 0;
        if (e->unwarned && db_coli(s, 1) > 0)
            off = 1;
    } else if (rc != 0) {
        off = db_fail(st, "reading a recipient", err, errlen);
    }
    db_release(st, s);
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

/*
 * How often a batch is applied again when the database gave it up to break
 * a deadlock or a serialisation conflict with another node's (PostgreSQL):
 * nothing of it was applied, and the other transaction has moved on.
 */
#define COMMIT_RETRIES 5

int pec_store_commit(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen)
{
    pec_log_fn *log;
    void (*hook)(void *);
    void *hook_arg;
    int rc = 0, again;

    for (int attempt = 0;; attempt++) {
        if (db_enter(st, err, errlen) < 0)
            return -1;
        st->retry = 0;
        if (db_begin_batch(st, err, errlen) == 0 && (rc = apply(st, b, err, errlen)) >= 0 &&
            (rc == 1 || db_commit(st, err, errlen) == 0))
            break;
        db_rollback(st);
        again = st->retry && attempt < COMMIT_RETRIES;
        db_leave(st);
        if (!again)
            return -1;
    }
    if (rc == 1) { /* an expectation failed: nothing written, nothing to announce */
        db_rollback(st);
        db_leave(st);
        return 1;
    }
    log = st->log;
    hook = b->nout ? st->outbox_hook : NULL;
    hook_arg = st->outbox_arg;
    db_leave(st);
    announce(log, b);
    if (hook)
        hook(hook_arg);
    return 0;
}

/* ---------------------------------------------------------------- transactions */

static void read_rcpt(struct db_stmt *s, struct pec_rcpt_info *r)
{
    const char *state = db_col(s, 3);

    r->address = db_coldup(s, 0);
    r->certificato = db_coli(s, 1);
    r->cc = db_coli(s, 2);
    r->state = PEC_RCPT_SENT;
    for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
        if (strcmp(state, pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0)
            r->state = (enum pec_rcpt_state)k;
    r->sent_at = (time_t)db_coli(s, 4);
    r->taken_at = (time_t)db_coli(s, 5);
    r->done_at = (time_t)db_coli(s, 6);
    r->detail = db_coldup(s, 7);
    r->warned_at = (time_t)db_coli(s, 8);
}

static int read_rcpts(struct pec_store *st, struct pec_tx_info *out, char *err, size_t errlen)
{
    struct db_stmt *s =
        db_prep(st,
                "SELECT address, certificato, cc, state, sent_at, taken_at, done_at,"
                " detail, warned_at FROM recipients WHERE identificativo = ?"
                " ORDER BY rowid",
                err, errlen);
    int rc;

    if (s == NULL)
        return -1;
    db_bt(s, 1, out->identificativo);
    while ((rc = db_step(st, s)) == 1) {
        out->rcpt = xrealloc(out->rcpt, (out->nrcpt + 1) * sizeof(*out->rcpt));
        read_rcpt(s, &out->rcpt[out->nrcpt++]);
    }
    if (rc != 0) {
        db_fail(st, "reading recipients", err, errlen);
        db_release(st, s);
        return -1;
    }
    db_release(st, s);
    return 0;
}

/* The transaction S (bound and ready) finds, with its recipients: 1, 0 when none, -1. */
static int read_tx(struct pec_store *st, struct db_stmt *s, struct pec_tx_info *out, char *err,
                   size_t errlen)
{
    int rc = db_step(st, s), found = 0;

    if (rc == 1) {
        found = 1;
        out->identificativo = db_coldup(s, 0);
        out->client_msgid = db_coldup(s, 1);
        out->mittente = db_coldup(s, 2);
        out->oggetto = db_coldup(s, 3);
        out->tipo_ricevuta = db_coldup(s, 4);
        out->queue_id = db_coldup(s, 5);
        out->submitted = (time_t)db_coli(s, 6);
        out->risposte = db_coldup(s, 7);
    } else if (rc != 0) {
        found = db_fail(st, "reading a transaction", err, errlen);
    }
    db_release(st, s);
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
    struct db_stmt *s;
    int found;

    memset(out, 0, sizeof(*out));
    if (db_enter(st, err, errlen) < 0)
        return -1;
    s = db_prep(st, TX_COLUMNS " WHERE identificativo = ?", err, errlen);
    if (s == NULL) {
        db_leave(st);
        return -1;
    }
    db_bt(s, 1, identificativo);
    found = read_tx(st, s, out, err, errlen);
    db_leave(st);
    return found;
}

int pec_store_tx_find_client(struct pec_store *st, const char *mittente, const char *client_msgid,
                             time_t since, struct pec_tx_info *out, char *err, size_t errlen)
{
    struct db_stmt *s;
    int found;

    memset(out, 0, sizeof(*out));
    if (client_msgid == NULL || *client_msgid == '\0')
        return 0;
    if (db_enter(st, err, errlen) < 0)
        return -1;
    s = db_prep(st,
                TX_COLUMNS
                " WHERE client_msgid = ? AND submitted >= ? AND mittente = ? COLLATE NOCASE"
                " ORDER BY submitted DESC, rowid DESC LIMIT 1",
                err, errlen);
    if (s == NULL) {
        db_leave(st);
        return -1;
    }
    db_bt(s, 1, client_msgid);
    db_bi(s, 2, since);
    db_bt(s, 3, mittente);
    found = read_tx(st, s, out, err, errlen);
    db_leave(st);
    return found;
}

/* ---------------------------------------------------------------- deadlines */

int pec_store_pending_each(struct pec_store *st, time_t sent_before,
                           int (*fn)(const struct pec_pending_rcpt *r, void *arg), void *arg,
                           char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc, stop = 0;

    if (db_enter(st, err, errlen) < 0)
        return -1;
    s = db_prep(st,
                "SELECT t.identificativo, t.client_msgid, t.mittente, t.oggetto, t.tipo_ricevuta,"
                " r.address, r.cc, r.state, r.sent_at, r.warned_at"
                " FROM recipients r JOIN transactions t ON t.identificativo = r.identificativo"
                /* exactly the condition of the index recipients_due */
                " WHERE r.certificato = 1 AND (r.state IN ('sent', 'taken') OR r.warned_at < 0)"
                " AND (?1 = 0 OR r.sent_at < ?1)"
                " ORDER BY r.sent_at, r.identificativo, r.rowid",
                err, errlen);
    if (s == NULL) {
        db_leave(st);
        return -1;
    }
    db_bi(s, 1, sent_before);
    while (!stop && (rc = db_step(st, s)) == 1) {
        struct pec_pending_rcpt r;
        r.identificativo = db_col(s, 0);
        r.client_msgid = db_col(s, 1);
        r.mittente = db_col(s, 2);
        r.oggetto = db_col(s, 3);
        r.tipo_ricevuta = db_col(s, 4);
        r.address = db_col(s, 5);
        r.cc = db_coli(s, 6);
        r.state = PEC_RCPT_SENT;
        for (int k = PEC_RCPT_SENT; k <= PEC_RCPT_TIMEDOUT; k++)
            if (strcmp(db_col(s, 7), pec_rcpt_state_name((enum pec_rcpt_state)k)) == 0)
                r.state = (enum pec_rcpt_state)k;
        r.sent_at = (time_t)db_coli(s, 8);
        r.warned_at = (time_t)db_coli(s, 9);
        stop = fn(&r, arg);
    }
    if (!stop && rc != 0)
        stop = db_fail(st, "reading pending recipients", err, errlen);
    db_release(st, s);
    db_leave(st);
    return stop;
}

/* ---------------------------------------------------------------- delivery point dedupe */

int pec_store_delivered(struct pec_store *st, const char *mailbox, const char *message_id,
                        char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc, found;

    if (db_enter(st, err, errlen) < 0)
        return -1;
    s = db_prep(st, "SELECT 1 FROM delivered WHERE mailbox = ? AND message_id = ?", err, errlen);
    if (s == NULL) {
        db_leave(st);
        return -1;
    }
    db_bt(s, 1, mailbox);
    db_bt(s, 2, message_id);
    rc = db_step(st, s);
    if (rc == 1)
        found = 1;
    else if (rc == 0)
        found = 0;
    else
        found = db_fail(st, "reading deliveries", err, errlen);
    db_release(st, s);
    db_leave(st);
    return found;
}

/* ---------------------------------------------------------------- access point refusals */

int pec_store_refused(struct pec_store *st, const char *mittente, const char *client_msgid,
                      time_t since, struct pec_refusal *out, char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc, found;

    memset(out, 0, sizeof(*out));
    if (db_enter(st, err, errlen) < 0)
        return -1;
    s = db_prep(st,
                "SELECT identificativo, oggetto, errore, at FROM refused"
                " WHERE mittente = ? AND client_msgid = ? AND at >= ?",
                err, errlen);
    if (s == NULL) {
        db_leave(st);
        return -1;
    }
    db_bt(s, 1, mittente);
    db_bt(s, 2, client_msgid);
    db_bi(s, 3, since);
    rc = db_step(st, s);
    if (rc == 1) {
        out->identificativo = db_coldup(s, 0);
        out->oggetto = db_coldup(s, 1);
        out->errore = db_coldup(s, 2);
        out->when = (time_t)db_coli(s, 3);
        found = 1;
    } else if (rc == 0) {
        found = 0;
    } else {
        found = db_fail(st, "reading refusals", err, errlen);
    }
    db_release(st, s);
    db_leave(st);
    return found;
}
