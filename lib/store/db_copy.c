/*
 * db_copy - one store copied into another, whatever their backends: how a
 * provider moves from its SQLite file to a PostgreSQL database several
 * nodes will share (pecctl store copy).
 *
 * Every row of every table goes over as it is: the registro with its seq,
 * prev and hash, the seals beside it and the chain's anchors in meta, so
 * the copy verifies as the original does; the outbox with its ids, states
 * and bytes, so a row is sent from the copy with the bytes it had; the
 * transactions and their recipients in the order they were recorded.
 * The target must hold no store data yet; it is written in one
 * transaction, so a copy that fails leaves it as empty as it was.  The
 * source is read inside one transaction, a consistent picture of it.
 */
#include "store/db_int.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A table: its columns, ":i" an integer, ":b" bytes, else text; the order rows are read in. */
struct copy_table {
    const char *name;
    const char *columns;
    const char *order;
};

static const struct copy_table tables[] = {
    {"transactions",
     "identificativo client_msgid mittente oggetto tipo_ricevuta queue_id submitted:i risposte",
     "rowid"},
    {"recipients",
     "identificativo address certificato:i cc:i state sent_at:i taken_at:i done_at:i detail"
     " warned_at:i",
     "rowid"},
    {"outbox",
     "id:i message_id identificativo tipo rcpt message:b size:i state node:i created:i"
     " next_attempt:i last_try:i sent_at:i attempts:i doubts:i last_error mta_queue_id kept:i"
     " lease_until:i",
     "id"},
    {"registro",
     "seq:i at:i evento tipo label identificativo queue_id mittente destinatari oggetto"
     " message_id gestore tipo_ricevuta consegna ricezione errore virus errore_esteso prev hash"
     " client_msgid node form:i",
     "seq"},
    {"seals", "first_seq:i last_seq:i day file last_hash file_sha256 sealed_at:i", "first_seq"},
    {"delivered", "mailbox message_id at:i", "at, message_id"},
    {"refused", "mittente client_msgid identificativo oggetto errore at:i", "at, client_msgid"},
};

/* The chain's ends, kept in meta. */
static const char *const meta_keys[] = {"registro_head_seq", "registro_head_hash",
                                        "registro_purged_seq", "registro_purged_hash"};

struct columns {
    char *names[32];
    char type[32]; /* 't', 'i', 'b' */
    int n;
};

static void parse_columns(const char *spec, struct columns *c)
{
    char *copy = xstrdup(spec), *save = NULL;

    c->n = 0;
    for (char *w = strtok_r(copy, " ", &save); w != NULL && c->n < 32;
         w = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(w, ':');
        c->type[c->n] = colon ? colon[1] : 't';
        if (colon)
            *colon = '\0';
        c->names[c->n++] = xstrdup(w);
    }
    free(copy);
}

static void free_columns(struct columns *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->names[i]);
}

/* "a, b, c" and "?, ?, ?" for the columns C. */
static void column_lists(const struct columns *c, char **names, char **marks)
{
    size_t len = 1;

    for (int i = 0; i < c->n; i++)
        len += strlen(c->names[i]) + 2;
    *names = xcalloc(1, len);
    *marks = xcalloc(1, (size_t)c->n * 3 + 1);
    for (int i = 0; i < c->n; i++) {
        strcat(*names, i ? ", " : "");
        strcat(*names, c->names[i]);
        strcat(*marks, i ? ", ?" : "?");
    }
}

/* 1 when the target already holds a row of T, 0 when not, -1 on error. */
static int has_rows(struct pec_store *to, const char *table, char *err, size_t errlen)
{
    char *sql = xasprintf("SELECT 1 FROM %s LIMIT 1", table);
    struct db_stmt *s = db_prep(to, sql, err, errlen);
    int rc = -1;

    if (s != NULL) {
        rc = db_step(to, s);
        if (rc < 0)
            db_fail(to, "reading the target", err, errlen);
        db_release(to, s);
    }
    free(sql);
    return rc;
}

/* Bind column I of the source row S to parameter I + 1 of the insert INS. */
static void bind_column(struct db_stmt *ins, struct db_stmt *s, int i, char type)
{
    size_t n;
    const void *v;

    switch (type) {
    case 'i':
        db_bi(ins, i + 1, db_coli(s, i));
        break;
    case 'b':
        v = db_colb(s, i, &n);
        db_bb(ins, i + 1, v, n);
        break;
    default:
        db_bt(ins, i + 1, db_col(s, i));
        break;
    }
}

static long long copy_table(struct pec_store *from, struct pec_store *to,
                            const struct copy_table *t, char *err, size_t errlen)
{
    struct columns c;
    char *names, *marks, *select, *insert;
    struct db_stmt *s;
    long long rows = 0;
    int rc;

    parse_columns(t->columns, &c);
    column_lists(&c, &names, &marks);
    select = xasprintf("SELECT %s FROM %s ORDER BY %s", names, t->name, t->order);
    insert = xasprintf("INSERT INTO %s (%s) VALUES (%s)", t->name, names, marks);
    s = db_prep(from, select, err, errlen);
    if (s == NULL)
        rows = -1;
    while (s != NULL && (rc = db_step(from, s)) == 1) {
        struct db_stmt *ins = db_prep(to, insert, err, errlen);
        if (ins == NULL) {
            rows = -1;
            break;
        }
        for (int i = 0; i < c.n; i++)
            bind_column(ins, s, i, c.type[i]);
        if (db_run(to, ins, "copying", err, errlen) < 0) {
            rows = -1;
            break;
        }
        rows++;
    }
    if (s != NULL && rows >= 0 && rc < 0)
        rows = db_fail(from, "reading the source", err, errlen);
    if (s != NULL)
        db_release(from, s);
    free(select);
    free(insert);
    free(names);
    free(marks);
    free_columns(&c);
    return rows;
}

static int copy_meta(struct pec_store *from, struct pec_store *to, char *err, size_t errlen)
{
    char value[PEC_HASH_HEX + 32];

    for (size_t i = 0; i < sizeof(meta_keys) / sizeof(meta_keys[0]); i++)
        if (db_meta_get(from, meta_keys[i], 0, value, sizeof(value), err, errlen) < 0 ||
            db_meta_set(to, meta_keys[i], value, err, errlen) < 0)
            return -1;
    return 0;
}

static int copy_all(struct pec_store *from, struct pec_store *to, long long *rows, char *err,
                    size_t errlen)
{
    const size_t ntables = sizeof(tables) / sizeof(tables[0]);
    long long n;
    int rc;

    for (size_t i = 0; i < ntables; i++) {
        if ((rc = has_rows(to, tables[i].name, err, errlen)) != 0) {
            if (rc > 0)
                pec_seterr(err, errlen, "store %s: not empty: its table %s has rows", to->path,
                           tables[i].name);
            return -1;
        }
    }
    for (size_t i = 0; i < ntables; i++) {
        if ((n = copy_table(from, to, &tables[i], err, errlen)) < 0)
            return -1;
        *rows += n;
    }
    if (copy_meta(from, to, err, errlen) < 0)
        return -1;
    return to->drv->after_copy == NULL ? 0
                                       : db_exec(to, to->drv->after_copy, "copying", err, errlen);
}

int pec_store_copy(struct pec_store *from, struct pec_store *to, long long *rows, char *err,
                   size_t errlen)
{
    int rc = -1;

    *rows = 0;
    if (db_enter(from, err, errlen) < 0)
        return -1;
    if (db_enter(to, err, errlen) < 0) {
        db_leave(from);
        return -1;
    }
    if (db_begin(from, err, errlen) == 0 && db_begin(to, err, errlen) == 0 &&
        copy_all(from, to, rows, err, errlen) == 0 && db_commit(to, err, errlen) == 0)
        rc = 0;
    db_rollback(to);
    db_rollback(from);
    db_leave(to);
    db_leave(from);
    return rc;
}
