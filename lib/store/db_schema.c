/*
 * db_schema - the store's tables, one script per schema version, written
 * once for both backends (the dialect's words are db_int.h's tokens), and
 * the migration of an older store to this version inside one transaction.
 */
#include "store/db_int.h"

#include <stdio.h>

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* Version 1. Times are Unix seconds, UTC. */
static const char schema_v1[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL){norowid};"
    "CREATE TABLE transactions ("
    " identificativo TEXT PRIMARY KEY, client_msgid TEXT NOT NULL, mittente TEXT NOT NULL,"
    " oggetto TEXT NOT NULL, tipo_ricevuta TEXT NOT NULL, queue_id TEXT NOT NULL,"
    " submitted {int} NOT NULL{rowid});"
    "CREATE INDEX transactions_submitted ON transactions(submitted);"
    "CREATE TABLE recipients ("
    " identificativo TEXT NOT NULL REFERENCES transactions(identificativo) ON DELETE CASCADE,"
    " address TEXT NOT NULL COLLATE NOCASE, certificato {int} NOT NULL, cc {int} NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('sent','taken','delivered','failed','timedout')),"
    " sent_at {int} NOT NULL, taken_at {int} NOT NULL DEFAULT 0,"
    " done_at {int} NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (identificativo, address){rowid});"
    "CREATE INDEX recipients_open ON recipients(state, sent_at);"
    "CREATE TABLE outbox ("
    " id {id}, message_id TEXT NOT NULL UNIQUE,"
    " identificativo TEXT NOT NULL, tipo TEXT NOT NULL, rcpt TEXT NOT NULL,"
    " message {blob} NOT NULL, size {int} NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued','sending','sent','failed')),"
    " node {int} NOT NULL DEFAULT 0, created {int} NOT NULL,"
    " next_attempt {int} NOT NULL DEFAULT 0, last_try {int} NOT NULL DEFAULT 0,"
    " sent_at {int} NOT NULL DEFAULT 0, attempts {int} NOT NULL DEFAULT 0,"
    " doubts {int} NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',"
    " mta_queue_id TEXT NOT NULL DEFAULT '', kept {int} NOT NULL DEFAULT 1);"
    "CREATE INDEX outbox_due ON outbox(state, next_attempt);"
    "CREATE INDEX outbox_kept ON outbox(id) WHERE kept = 1 AND state = 'sent';"
    "CREATE TABLE registro ("
    " seq {int} PRIMARY KEY, at {int} NOT NULL, evento TEXT NOT NULL, tipo TEXT NOT NULL,"
    " label TEXT NOT NULL, identificativo TEXT NOT NULL, queue_id TEXT NOT NULL,"
    " mittente TEXT NOT NULL, destinatari TEXT NOT NULL, oggetto TEXT NOT NULL,"
    " message_id TEXT NOT NULL, gestore TEXT NOT NULL, tipo_ricevuta TEXT NOT NULL,"
    " consegna TEXT NOT NULL, ricezione TEXT NOT NULL, errore TEXT NOT NULL,"
    " virus TEXT NOT NULL, errore_esteso TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE INDEX registro_identificativo ON registro(identificativo);"
    "CREATE INDEX registro_at ON registro(at);"
    "CREATE TABLE seals ("
    " first_seq {int} PRIMARY KEY, last_seq {int} NOT NULL, day TEXT NOT NULL,"
    " file TEXT NOT NULL UNIQUE, last_hash TEXT NOT NULL, file_sha256 TEXT NOT NULL,"
    " sealed_at {int} NOT NULL);"
    "INSERT INTO meta VALUES ('registro_head_seq', '0'), ('registro_head_hash', '" ZERO_HASH "'),"
    " ('registro_purged_seq', '0'), ('registro_purged_hash', '" ZERO_HASH "');";

/*
 * Version 2: when the 12 h notice went out for a recipient (the scheduler's
 * "once only"), and what the delivery point already put into which mailbox
 * (so a busta re-sent after a crash is not delivered twice).
 */
static const char schema_v2[] =
    "ALTER TABLE recipients ADD COLUMN warned_at {int} NOT NULL DEFAULT 0;"
    "CREATE TABLE delivered ("
    " mailbox TEXT NOT NULL COLLATE NOCASE, message_id TEXT NOT NULL, at {int} NOT NULL,"
    " PRIMARY KEY (mailbox, message_id)){norowid};"
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
    " at {int} NOT NULL, PRIMARY KEY (mittente, client_msgid)){norowid};"
    "CREATE INDEX refused_at ON refused(at);";

/*
 * Version 6: what the 12 h and 24 h notices give as risposte (the original's
 * Reply-To, pec-rules.md 3.2), and in the log the user's Message-ID and the
 * node that wrote each record.  Records written before keep their form 1
 * hash (registro.h), so the chain and the seals still verify.
 */
static const char schema_v6[] =
    "ALTER TABLE transactions ADD COLUMN risposte TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE registro ADD COLUMN client_msgid TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE registro ADD COLUMN node TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE registro ADD COLUMN form {int} NOT NULL DEFAULT 1;";

/*
 * Version 7: the lease of a claimed outbox row.  With several nodes on one
 * database a node that dies leaves its rows "sending"; another node takes
 * them over once lease_until has passed, never before (db_outbox.c).
 */
static const char schema_v7[] =
    "ALTER TABLE outbox ADD COLUMN lease_until {int} NOT NULL DEFAULT 0;"
    "CREATE INDEX outbox_lease ON outbox(lease_until) WHERE state = 'sending';";

/*
 * Version 8: jobs one node at a time runs for the provider (the daily seal
 * and the retention purge), each held by a node until a time.
 */
static const char schema_v8[] =
    "CREATE TABLE jobs (name TEXT PRIMARY KEY, node {int} NOT NULL, until {int} NOT NULL)"
    "{norowid};";

static const char *const migrations[] = {schema_v1, schema_v2, schema_v3, schema_v4,
                                         schema_v5, schema_v6, schema_v7, schema_v8};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

int db_migrate(struct pec_store *st, char *err, size_t errlen)
{
    int version;
    char what[64];

    if (db_begin(st, err, errlen) < 0)
        return -1;
    if (st->drv->version_get(st, &version, err, errlen) < 0)
        goto fail;
    if (version > SCHEMA_VERSION) {
        pec_seterr(
            err, errlen,
            "store %s: schema version %d was written by a newer pecmilter (this one knows %d)",
            st->path, version, SCHEMA_VERSION);
        goto fail;
    }
    if (version == SCHEMA_VERSION)
        return db_commit(st, err, errlen);
    for (int v = version; v < SCHEMA_VERSION; v++) {
        snprintf(what, sizeof(what), "migrating the schema to version %d", v + 1);
        if (st->drv->script(st, migrations[v], what, err, errlen) < 0)
            goto fail;
    }
    if (st->drv->version_set(st, SCHEMA_VERSION, err, errlen) < 0 || db_commit(st, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    db_rollback(st);
    return -1;
}
