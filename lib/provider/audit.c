/*
 * audit - one pass over the log collects, per identificativo and recipient,
 * the distinct Message-IDs of what was recorded; the checks then run per
 * transaction.  See audit.h for the invariants.
 */
#include "provider/audit.h"
#include "store/registro.h"
#include "store/store.h"
#include "util/xalloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- a string map */

/* Open addressing, keys owned; the value is an index or a kind. */
struct strmap {
    char **keys;
    size_t *vals;
    size_t cap, n;
};

static uint64_t fnv(const char *s)
{
    uint64_t h = 14695981039346656037ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t *strmap_slot(struct strmap *m, const char *key, int *found)
{
    size_t i = (size_t)fnv(key) & (m->cap - 1);

    while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    *found = m->keys[i] != NULL;
    return &m->vals[i];
}

static size_t *strmap_get(const struct strmap *m, const char *key)
{
    int found;
    size_t *v;

    if (m->cap == 0)
        return NULL;
    v = strmap_slot((struct strmap *)m, key, &found);
    return found ? v : NULL;
}

/* The value of KEY, added with VAL when absent (*ADDED says which). */
static size_t *strmap_put(struct strmap *m, const char *key, size_t val, int *added)
{
    int found;
    size_t *v;

    if (2 * (m->n + 1) > m->cap) {
        struct strmap bigger = {.cap = m->cap ? 2 * m->cap : 256};

        bigger.keys = xcalloc(bigger.cap, sizeof(*bigger.keys));
        bigger.vals = xcalloc(bigger.cap, sizeof(*bigger.vals));
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] == NULL)
                continue;
            v = strmap_slot(&bigger, m->keys[i], &found);
            bigger.keys[v - bigger.vals] = m->keys[i];
            *v = m->vals[i];
        }
        bigger.n = m->n;
        free(m->keys);
        free(m->vals);
        *m = bigger;
    }
    v = strmap_slot(m, key, &found);
    *added = !found;
    if (!found) {
        m->keys[v - m->vals] = xstrdup(key);
        *v = val;
        m->n++;
    }
    return v;
}

static void strmap_free(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
}

/* ---------------------------------------------------------------- what was recorded */

/* Distinct Message-IDs, with the kind of record each came in. */
struct idset {
    char **id;
    enum pec_reg_kind *kind;
    size_t n;
};

struct rcpt {
    char *address; /* lower case */
    int named;     /* in the destinatari of our busta or accettazione */
    int certificato;
    struct idset presa;
    struct idset outcome; /* consegna, mancata consegna (virus), 24 h notice */
    struct idset virus;   /* rilevazione virus */
    struct idset mcv;     /* mancata consegna per virus */
    struct idset arrived; /* another provider's busta received for this recipient */
};

struct tx {
    char *id;
    time_t first_at; /* the busta, or the presa in carico of another provider's busta */
    int busta, refused, own, received, named;
    struct idset accettazione;
    struct rcpt *r;
    size_t nr;
    enum pec_reg_kind first; /* kind of its first record */
};

/* A notice or anomalia our delivery point put into a mailbox. */
struct deposit {
    char *identificativo, *message_id, *mailbox;
    enum pec_reg_kind kind;
    time_t at;
};

struct walk {
    struct tx *tx;
    size_t ntx, cap;
    struct strmap txs;       /* identificativo -> index in tx */
    struct strmap notices;   /* Message-ID of every notice -> its kind */
    struct strmap anomalies; /* Message-ID of every busta di anomalia */
    struct deposit *dep;     /* notices and anomalies put into mailboxes */
    size_t ndep, capdep;
    long long records;
};

static void idset_add(struct idset *s, const char *id, enum pec_reg_kind kind)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->id[i], id) == 0)
            return;
    s->id = xrealloc(s->id, (s->n + 1) * sizeof(*s->id));
    s->kind = xrealloc(s->kind, (s->n + 1) * sizeof(*s->kind));
    s->id[s->n] = xstrdup(id);
    s->kind[s->n++] = kind;
}

static void idset_free(struct idset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->id[i]);
    free(s->id);
    free(s->kind);
}

static const struct {
    const char *label;
    enum pec_reg_kind kind;
} labels[] = {
    {"BustaTrasporto", PEC_REG_BUSTA_TRASPORTO},
    {"BustaAnomalia", PEC_REG_BUSTA_ANOMALIA},
    {"Accettazione", PEC_REG_ACCETTAZIONE},
    {"NonAccettazione", PEC_REG_NON_ACCETTAZIONE},
    {"NonAccettazioneVirus", PEC_REG_NON_ACCETTAZIONE_VIRUS},
    {"PresaInCarico", PEC_REG_PRESA_IN_CARICO},
    {"Consegna", PEC_REG_CONSEGNA},
    {"MancataConsegna", PEC_REG_MANCATA_CONSEGNA},
    {"MancataConsegnaVirus", PEC_REG_MANCATA_CONSEGNA_VIRUS},
    {"MancataConsegna12h", PEC_REG_MANCATA_CONSEGNA_12H},
    {"MancataConsegna24h", PEC_REG_MANCATA_CONSEGNA_24H},
    {"RilevazioneVirus", PEC_REG_RILEVAZIONE_VIRUS},
    {"PostaOrdinaria", PEC_REG_POSTA_ORDINARIA},
};

static const char *kind_words(enum pec_reg_kind k)
{
    switch (k) {
    case PEC_REG_BUSTA_TRASPORTO:
        return "busta di trasporto";
    case PEC_REG_BUSTA_ANOMALIA:
        return "busta di anomalia";
    case PEC_REG_ACCETTAZIONE:
        return "accettazione";
    case PEC_REG_NON_ACCETTAZIONE:
    case PEC_REG_NON_ACCETTAZIONE_VIRUS:
        return "non accettazione";
    case PEC_REG_PRESA_IN_CARICO:
        return "presa in carico";
    case PEC_REG_CONSEGNA:
        return "consegna";
    case PEC_REG_MANCATA_CONSEGNA:
        return "mancata consegna";
    case PEC_REG_MANCATA_CONSEGNA_VIRUS:
        return "mancata consegna per virus";
    case PEC_REG_MANCATA_CONSEGNA_12H:
        return "12 h notice";
    case PEC_REG_MANCATA_CONSEGNA_24H:
        return "24 h notice";
    case PEC_REG_RILEVAZIONE_VIRUS:
        return "rilevazione virus";
    case PEC_REG_POSTA_ORDINARIA:
        return "refused ordinary mail";
    }
    return "?";
}

static int kind_of(const char *label, enum pec_reg_kind *kind)
{
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        if (strcmp(labels[i].label, label) == 0) {
            *kind = labels[i].kind;
            return 0;
        }
    }
    return -1;
}

static struct tx *tx_get(struct walk *w, const char *id, time_t at, enum pec_reg_kind kind)
{
    int added;
    size_t *i = strmap_put(&w->txs, id, w->ntx, &added);
    struct tx *t;

    if (!added)
        return &w->tx[*i];
    if (w->ntx == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->tx = xrealloc(w->tx, w->cap * sizeof(*w->tx));
    }
    t = &w->tx[w->ntx++];
    memset(t, 0, sizeof(*t));
    t->id = xstrdup(id);
    t->first_at = at;
    t->first = kind;
    return t;
}

/* The recipient ADDRESS (any case, surrounding blanks ignored) of T, added when
 * new. */
static struct rcpt *rcpt_get(struct tx *t, const char *address, size_t len)
{
    struct rcpt *r;

    while (len > 0 && isspace((unsigned char)*address)) {
        address++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)address[len - 1]))
        len--;
    if (len == 0)
        return NULL;
    for (size_t i = 0; i < t->nr; i++)
        if (strncasecmp(t->r[i].address, address, len) == 0 && t->r[i].address[len] == '\0')
            return &t->r[i];
    t->r = xrealloc(t->r, (t->nr + 1) * sizeof(*t->r));
    r = &t->r[t->nr++];
    memset(r, 0, sizeof(*r));
    r->address = xstrndup(address, len);
    for (char *p = r->address; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return r;
}

/* "a@x (certificato), b@y (esterno)": who the busta names, and how. */
static void name_recipients(struct tx *t, const char *destinatari)
{
    static const char cert[] = " (certificato)", ext[] = " (esterno)";
    const char *p = destinatari;

    if (t->named || *destinatari == '\0')
        return;
    t->named = 1;
    while (*p) {
        size_t len = strcspn(p, ",");
        int certificato = 0;
        struct rcpt *r;

        if (len >= sizeof(cert) - 1 &&
            strncmp(p + len - (sizeof(cert) - 1), cert, sizeof(cert) - 1) == 0) {
            certificato = 1;
            r = rcpt_get(t, p, len - (sizeof(cert) - 1));
        } else if (len >= sizeof(ext) - 1 &&
                   strncmp(p + len - (sizeof(ext) - 1), ext, sizeof(ext) - 1) == 0) {
            r = rcpt_get(t, p, len - (sizeof(ext) - 1));
        } else {
            r = rcpt_get(t, p, len);
        }
        if (r != NULL) {
            r->named = 1;
            r->certificato = certificato;
        }
        p += len;
        if (*p == ',')
            p++;
    }
}

/* Add ID to the set WHICH of every recipient in LIST ("a@x, b@y"). */
static void note_each(struct tx *t, const char *list, size_t set_offset, const char *id,
                      enum pec_reg_kind kind)
{
    const char *p = list;

    while (*p) {
        size_t len = strcspn(p, ",");
        struct rcpt *r = rcpt_get(t, p, len);

        if (r != NULL)
            idset_add((struct idset *)((char *)r + set_offset), id, kind);
        p += len;
        if (*p == ',')
            p++;
    }
}

static void add_deposit(struct walk *w, const struct pec_record *rec, enum pec_reg_kind kind)
{
    struct deposit *d;

    if (w->ndep == w->capdep) {
        w->capdep = w->capdep ? 2 * w->capdep : 64;
        w->dep = xrealloc(w->dep, w->capdep * sizeof(*w->dep));
    }
    d = &w->dep[w->ndep++];
    d->identificativo = xstrdup(rec->identificativo);
    d->message_id = xstrdup(rec->message_id);
    d->mailbox = xstrdup(rec->consegna);
    d->kind = kind;
    d->at = rec->at;
}

static int collect(const struct pec_record *rec, void *arg)
{
    struct walk *w = arg;
    enum pec_reg_kind kind;
    int received = strcmp(rec->evento, "ricezione") == 0, added;
    char own_id[32];
    const char *id = rec->message_id;
    struct tx *t;

    w->records++;
    if (kind_of(rec->label, &kind) < 0)
        return 0;
    if (*id == '\0') { /* never written so; still one receipt per record */
        snprintf(own_id, sizeof(own_id), "#%lld", rec->seq);
        id = own_id;
    }
    if (strcmp(rec->evento, "deposito") == 0) {
        add_deposit(w, rec, kind);
        return 0;
    }
    if (kind == PEC_REG_POSTA_ORDINARIA)
        return 0; /* refused at the door: no transaction */
    if (kind == PEC_REG_BUSTA_ANOMALIA) {
        if (*rec->message_id != '\0')
            strmap_put(&w->anomalies, rec->message_id, kind, &added);
        return 0; /* about a message that is no transaction */
    }
    if (kind != PEC_REG_BUSTA_TRASPORTO && *rec->message_id != '\0')
        strmap_put(&w->notices, rec->message_id, kind, &added);
    if (received && (kind == PEC_REG_ACCETTAZIONE || kind == PEC_REG_NON_ACCETTAZIONE ||
                     kind == PEC_REG_NON_ACCETTAZIONE_VIRUS ||
                     kind == PEC_REG_MANCATA_CONSEGNA_12H || kind == PEC_REG_MANCATA_CONSEGNA_24H))
        return 0; /* another provider's notice to its own user, passed on: none of ours */
    t = tx_get(w, rec->identificativo, rec->at, kind);
    if (received && kind != PEC_REG_BUSTA_TRASPORTO)
        t->received = 1; /* a receipt: about a busta of ours, or of nobody */
    switch (kind) {
    case PEC_REG_BUSTA_TRASPORTO:
        if (received && !t->own) {
            /* another provider's busta: each recipient of ours it reached needs its receipts */
            name_recipients(t, rec->destinatari);
            note_each(t, rec->ricezione, offsetof(struct rcpt, arrived), id, kind);
        }
        if (received)
            break;
        t->busta++;
        t->own = 1;
        name_recipients(t, rec->destinatari);
        break;
    case PEC_REG_ACCETTAZIONE:
        t->own = 1;
        idset_add(&t->accettazione, id, kind);
        name_recipients(t, rec->destinatari);
        break;
    case PEC_REG_NON_ACCETTAZIONE:
    case PEC_REG_NON_ACCETTAZIONE_VIRUS:
        t->own = 1;
        t->refused++;
        break;
    case PEC_REG_PRESA_IN_CARICO:
        /* another provider's busta: who it names is known from our presa in carico */
        name_recipients(t, rec->destinatari);
        note_each(t, rec->ricezione, offsetof(struct rcpt, presa), id, kind);
        break;
    case PEC_REG_MANCATA_CONSEGNA_VIRUS:
        note_each(t, rec->consegna, offsetof(struct rcpt, mcv), id, kind);
        note_each(t, rec->consegna, offsetof(struct rcpt, outcome), id, kind);
        break;
    case PEC_REG_MANCATA_CONSEGNA_24H:
        t->own = 1;
        note_each(t, rec->consegna, offsetof(struct rcpt, outcome), id, kind);
        break;
    case PEC_REG_CONSEGNA:
    case PEC_REG_MANCATA_CONSEGNA:
        name_recipients(t, rec->destinatari);
        note_each(t, rec->consegna, offsetof(struct rcpt, outcome), id, kind);
        break;
    case PEC_REG_MANCATA_CONSEGNA_12H:
        t->own = 1;
        break;
    case PEC_REG_RILEVAZIONE_VIRUS:
        /* ricezione: the element before daticert 2.1 */
        note_each(t, *rec->consegna ? rec->consegna : rec->ricezione, offsetof(struct rcpt, virus),
                  id, kind);
        if (received)
            break;
        /* ours, about another provider's busta: the outcome we owed that recipient */
        name_recipients(t, rec->destinatari);
        note_each(t, *rec->consegna ? rec->consegna : rec->ricezione,
                  offsetof(struct rcpt, outcome), id, kind);
        break;
    case PEC_REG_BUSTA_ANOMALIA:
    case PEC_REG_POSTA_ORDINARIA:
        break;
    }
    return 0;
}

/* ---------------------------------------------------------------- the checks */

struct judge {
    const struct pec_audit_opts *o;
    pec_audit_fn *fn;
    void *arg;
    struct pec_audit_report *rep;
    const struct tx *t;
};

static void report(struct judge *j, enum pec_audit_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void report(struct judge *j, enum pec_audit_level level, const char *fmt, va_list ap)
{
    char text[2048];

    vsnprintf(text, sizeof(text), fmt, ap);
    if (level == PEC_AUDIT_VIOLATION)
        j->rep->violations++;
    else
        j->rep->notes++;
    if (j->fn != NULL)
        j->fn(j->t->id, level, text, j->arg);
}

static void violation(struct judge *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violation(struct judge *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report(j, PEC_AUDIT_VIOLATION, fmt, ap);
    va_end(ap);
}

static void note(struct judge *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct judge *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report(j, PEC_AUDIT_NOTE, fmt, ap);
    va_end(ap);
}

/*
 * Are the outcomes S (in log order) our 24 h notice, then one consegna or
 * mancata consegna?  The rules let the far provider's outcome come after the
 * final notice: the message may still be delivered, or fail, later.
 */
static int late_outcome(const struct idset *s)
{
    return s->n == 2 && s->kind[0] == PEC_REG_MANCATA_CONSEGNA_24H &&
           (s->kind[1] == PEC_REG_CONSEGNA || s->kind[1] == PEC_REG_MANCATA_CONSEGNA ||
            s->kind[1] == PEC_REG_MANCATA_CONSEGNA_VIRUS);
}

/* "consegna <id1>, mancata consegna <id2>" */
static const char *listing(const struct idset *s, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < s->n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s <%s>", i ? ", " : "",
                                kind_words(s->kind[i]), s->id[i]);
    return buf;
}

/*
 * Presa in carico and outcome of one recipient we expect them for; 1 when
 * pending.  No presa in carico is owed for a recipient the 24 h notice gave
 * up on, nor for one whose busta carried a virus: the reception point that
 * found it answers with the rilevazione virus instead (pec-rules.md 2.3).
 */
static int check_rcpt(struct judge *j, const struct rcpt *r, int within)
{
    char buf[1024];
    int pending = 0, excused = r->virus.n > 0;

    for (size_t i = 0; i < r->outcome.n; i++)
        excused |= r->outcome.kind[i] == PEC_REG_MANCATA_CONSEGNA_24H ||
                   r->outcome.kind[i] == PEC_REG_MANCATA_CONSEGNA_VIRUS ||
                   r->outcome.kind[i] == PEC_REG_RILEVAZIONE_VIRUS;
    if (r->outcome.n == 0) {
        if (within)
            pending = 1;
        else
            violation(j, "%s: no final outcome (consegna, mancata consegna or 24 h notice)",
                      r->address);
    } else if (late_outcome(&r->outcome)) {
        note(j, "%s: late %s <%s> after the 24 h notice <%s>", r->address,
             kind_words(r->outcome.kind[1]), r->outcome.id[1], r->outcome.id[0]);
    } else if (r->outcome.n > 1) {
        violation(j, "%s: %zu final outcomes: %s", r->address, r->outcome.n,
                  listing(&r->outcome, buf, sizeof(buf)));
    }
    if (r->presa.n == 0 && !excused) {
        if (within)
            pending = 1;
        else
            violation(j, "%s: in no presa in carico", r->address);
    } else if (r->presa.n > 1) {
        violation(j, "%s: in %zu prese in carico: %s", r->address, r->presa.n,
                  listing(&r->presa, buf, sizeof(buf)));
    }
    return pending;
}

/* Our own recipient: each rilevazione virus received is answered, once, to our user. */
static void check_virus(struct judge *j, const struct rcpt *r)
{
    if (r->virus.n > 0 && r->mcv.n != 1)
        violation(j, "%s: rilevazione virus with %zu mancate consegne per virus", r->address,
                  r->mcv.n);
}

/* Our own transaction: its busta, accettazione, and each certified recipient. */
static int check_own(struct judge *j, const struct tx *t, int within)
{
    char buf[1024];
    int pending = 0;

    if (t->refused) {
        if (t->busta || t->accettazione.n)
            violation(j, "not accepted (non accettazione), yet it has %s",
                      t->busta ? "a busta di trasporto" : "an accettazione");
        return 0;
    }
    if (t->busta != 1)
        violation(j, t->busta ? "%d buste di trasporto" : "no busta di trasporto", t->busta);
    if (t->accettazione.n == 0)
        violation(j, "no accettazione");
    else if (t->accettazione.n > 1)
        violation(j, "%zu accettazioni: %s", t->accettazione.n,
                  listing(&t->accettazione, buf, sizeof(buf)));
    if (!t->named)
        return 0; /* without busta nor accettazione, nobody says who should answer
                   */
    for (size_t i = 0; i < t->nr; i++) {
        const struct rcpt *r = &t->r[i];

        if (r->certificato)
            pending |= check_rcpt(j, r, within);
        else if (r->presa.n || r->outcome.n || r->virus.n)
            violation(j, "%s: receipts for a recipient the busta %s", r->address,
                      r->named ? "names esterno" : "does not name");
        check_virus(j, r);
    }
    return pending;
}

/*
 * Another provider's busta: each recipient we took in charge or answered
 * for, who must be one the busta names as certificato (the destinatari our
 * presa in carico or consegna recorded).  The recipients it names at other
 * providers are none of ours to answer for.
 */
static int check_theirs(struct judge *j, const struct tx *t, int within)
{
    int pending = 0;

    for (size_t i = 0; i < t->nr; i++) {
        const struct rcpt *r = &t->r[i];

        if (!r->presa.n && !r->outcome.n && !r->virus.n && !r->arrived.n)
            continue;
        if (t->named && !r->certificato)
            violation(j, "%s: receipts for a recipient the busta %s", r->address,
                      r->named ? "names esterno" : "does not name");
        else
            pending |= check_rcpt(j, r, within);
    }
    return pending;
}

static void judge_tx(struct judge *j, const struct walk *w, const struct tx *t)
{
    const size_t *notice = strmap_get(&w->notices, t->id);
    const size_t *anomalia = strmap_get(&w->anomalies, t->id);
    int within = j->o->now < t->first_at + j->o->deadline_after;
    int pending;

    j->t = t;
    j->rep->transactions++;
    if (notice != NULL) {
        violation(j, "%s recorded about the %s <%s>: receipts are only about a busta di trasporto",
                  kind_words(t->first), kind_words((enum pec_reg_kind) * notice), t->id);
        return;
    }
    /*
     * A busta di anomalia keeps the Message-ID of what it wrapped, which
     * anyone can choose: one that imitated this busta was not counted as it
     * (delivered wrapped, no receipt); worth knowing, no violation.
     */
    if (anomalia != NULL)
        note(j,
             "a busta di anomalia <%s> carried this busta's Message-ID: an imitation, "
             "wrapped and not counted as the busta",
             t->id);
    if (t->own) {
        pending = check_own(j, t, within);
    } else if (t->received) {
        pending = 0;
        violation(j, "receipts received for no busta of ours");
    } else {
        pending = check_theirs(j, t, within);
    }
    if (pending)
        j->rep->pending++;
}

/*
 * Every notice or anomalia our delivery point put into a mailbox came from
 * somewhere the log shows: we emitted it, or our reception point received
 * it.  One that did neither reached a PEC mailbox past both.
 */
static void judge_deposits(struct judge *j, const struct walk *w)
{
    struct tx anon;

    for (size_t i = 0; i < w->ndep; i++) {
        const struct deposit *d = &w->dep[i];
        const struct strmap *m = d->kind == PEC_REG_BUSTA_ANOMALIA ? &w->anomalies : &w->notices;

        /* without a Message-ID (an anomalia of mail that had none) nothing ties the two */
        if (d->at < j->o->since || *d->message_id == '\0' || strmap_get(m, d->message_id) != NULL)
            continue;
        memset(&anon, 0, sizeof(anon));
        anon.id = d->identificativo;
        j->t = &anon;
        violation(j, "%s <%s> put into %s, but never emitted or received here", kind_words(d->kind),
                  d->message_id, d->mailbox);
    }
}

long long pec_audit_run(struct pec_store *st, const struct pec_audit_opts *o, pec_audit_fn *fn,
                        void *arg, struct pec_audit_report *rep, char *err, size_t errlen)
{
    struct walk w;
    struct judge j = {.o = o, .fn = fn, .arg = arg, .rep = rep};
    int rc;

    memset(&w, 0, sizeof(w));
    memset(rep, 0, sizeof(*rep));
    rc = pec_store_log_each(st, NULL, collect, &w, err, errlen);
    rep->records = w.records;
    if (rc == 0) {
        for (size_t i = 0; i < w.ntx; i++)
            if (w.tx[i].first_at >= o->since)
                judge_tx(&j, &w, &w.tx[i]);
        judge_deposits(&j, &w);
    }
    for (size_t i = 0; i < w.ntx; i++) {
        for (size_t k = 0; k < w.tx[i].nr; k++) {
            struct rcpt *r = &w.tx[i].r[k];
            free(r->address);
            idset_free(&r->presa);
            idset_free(&r->outcome);
            idset_free(&r->virus);
            idset_free(&r->mcv);
            idset_free(&r->arrived);
        }
        free(w.tx[i].r);
        idset_free(&w.tx[i].accettazione);
        free(w.tx[i].id);
    }
    free(w.tx);
    strmap_free(&w.txs);
    strmap_free(&w.notices);
    strmap_free(&w.anomalies);
    for (size_t i = 0; i < w.ndep; i++) {
        free(w.dep[i].identificativo);
        free(w.dep[i].message_id);
        free(w.dep[i].mailbox);
    }
    free(w.dep);
    return rc < 0 ? -1 : rep->violations;
}
