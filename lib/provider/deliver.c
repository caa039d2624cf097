/*
 * deliver - one message through the delivery point: what it is, into the
 * mailboxes, then the receipts and the LMTP replies.
 */
#include "provider/deliver.h"
#include "provider/consegna.h"
#include "provider/mailbox.h"
#include "message/busta.h"
#include "message/mime.h"
#include "message/verify.h"
#include "util/xalloc.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#define HEAD_MAX (256 * 1024) /* enough of the header for the fields looked at here */
#define STRIPES 64

/*
 * Two copies of one PEC message may be handed over at the same moment (the
 * MTA held both while we were down): deliveries of one Message-ID take the
 * same lock from asking the store to committing, so the second sees the
 * first's record.
 */
static pthread_mutex_t stripe[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *stripe_of(const char *message_id)
{
    unsigned h = 5381;

    for (const char *p = message_id; *p != '\0'; p++)
        h = h * 33 + (unsigned char)*p;
    return &stripe[h % STRIPES];
}

struct job {
    const struct pec_dp_env *env;
    const struct pec_lmtp_msg *m;
    struct pec_lmtp_reply *res;
    char qid[64];
    const char *kind; /* for the log: busta, notice, anomalia, ordinary, "invalid busta" */
    struct pec_mbox_result *mb;
    char *message_id; /* a verified PEC message's dedupe key (delivery_key); NULL: none */
    int *dup;         /* per recipient: the store says it was delivered already */
};

static void say(const struct job *j, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const struct job *j, int prio, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    if (j->env->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    j->env->log(prio, j->qid, text);
}

void pec_dp_queue_id(const unsigned char *head, size_t len, char *out, size_t outlen)
{
    struct pec_span h = {head, len};
    char *received = pec_mime_header(h, "Received"), *p;
    size_t n = 0;

    out[0] = '\0';
    if (received == NULL)
        return;
    for (p = received; (p = strstr(p, " id ")) != NULL; p++) {
        p += 4;
        while (isalnum((unsigned char)p[n]) && n + 1 < outlen)
            n++;
        if (n > 0 && (p[n] == ';' || p[n] == ' ' || p[n] == '\0'))
            break;
        n = 0;
    }
    if (p != NULL && n > 0) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    free(received);
}

/* The start of the message (at most HEAD_MAX bytes), for its header fields; caller frees. */
static unsigned char *read_head(const struct pec_spool *sp, struct pec_span *head)
{
    size_t size = pec_spool_size(sp), n = size < HEAD_MAX ? size : HEAD_MAX;
    unsigned char *buf = xmalloc(n + 1);
    ssize_t got = pec_spool_pread(sp, 0, buf, n);
    struct pec_span body;

    pec_mime_split(buf, got > 0 ? (size_t)got : 0, head, &body);
    return buf;
}

/* What the top-level header claims; only "busta" is worth a signature check. */
static const char *claimed_kind(struct pec_span head)
{
    char *xt = pec_mime_header(head, "X-Trasporto"), *xr = pec_mime_header(head, "X-Ricevuta");
    const char *kind = "ordinary";

    if (xt != NULL && strcasecmp(xt, "posta-certificata") == 0)
        kind = "busta";
    else if (xt != NULL && strcasecmp(xt, "errore") == 0)
        kind = "anomalia";
    else if (xr != NULL)
        kind = "notice";
    free(xt);
    free(xr);
    return kind;
}

/* The delivery key as the log shows it: a notice by its own Message-ID (see delivery_key). */
static const char *shown(const char *key)
{
    return strncmp(key, "notice:", 7) == 0 ? key + 7 : key;
}

static void domain_check_and_store(struct job *j)
{
    const struct pec_config *cfg = j->env->cfg;
    const struct pec_lmtp_msg *m = j->m;
    const char **ours = xcalloc(m->nrcpt, sizeof(*ours));
    struct pec_mbox_result *got = xcalloc(m->nrcpt, sizeof(*got));
    size_t *where = xcalloc(m->nrcpt, sizeof(*where)), n = 0;
    struct pec_mbox_conf mc = {
        .backend = cfg->mailbox_backend,
        .maildir_root = cfg->maildir_root,
        .lmtp = cfg->mailbox_lmtp,
        .hostname = j->env->hostname ? j->env->hostname : "localhost",
        .message_id = j->message_id,
    };

    for (size_t i = 0; i < m->nrcpt; i++) {
        const char *at = strrchr(m->rcpt[i], '@');
        if (at == NULL || !pec_config_is_our_domain(cfg, at + 1)) {
            pec_mbox_result_set(&j->mb[i], PEC_MBOX_PERM, 550, "5.1.2",
                                "domain not served by this provider");
            continue;
        }
        if (j->message_id != NULL && j->env->store != NULL) {
            char err[512];
            int seen =
                pec_store_delivered(j->env->store, m->rcpt[i], j->message_id, err, sizeof(err));
            if (seen < 0) {
                say(j, LOG_ERR, "to=<%s>: cannot ask the store whether <%s> came before: %s",
                    m->rcpt[i], shown(j->message_id), err);
                pec_mbox_result_set(&j->mb[i], PEC_MBOX_TEMP, 451, "4.3.0",
                                    "cannot check for a second copy now");
                continue;
            }
            if (seen > 0) {
                j->dup[i] = 1;
                pec_mbox_result_set(&j->mb[i], PEC_MBOX_STORED, 250, "2.0.0", "already delivered");
                continue;
            }
        }
        where[n] = i;
        ours[n++] = m->rcpt[i];
    }
    if (n > 0)
        pec_mbox_deliver(&mc, m->sender, ours, n, m->data, m->eight_bit, got);
    for (size_t k = 0; k < n; k++)
        j->mb[where[k]] = got[k];
    free(where);
    free(got);
    free(ours);
}

/* For the log: the Maildir found its own file from a delivery that was never recorded. */
static const char *refound(const struct pec_mbox_result *mb)
{
    return strcmp(mb->text, "already in its mailbox") == 0
               ? ", found in the mailbox from an unrecorded delivery"
               : "";
}

/* The reply and log line for recipient I of a message that earns no receipt. */
static void plain_outcome(struct job *j, size_t i)
{
    const struct pec_mbox_result *mb = &j->mb[i];
    const char *rcpt = j->m->rcpt[i];

    if (j->dup[i]) {
        pec_lmtp_reply_set(&j->res[i], 250, "2.0.0", "<%s> delivered already", rcpt);
        say(j, LOG_NOTICE, "to=<%s>, status=duplicate (%s <%s> delivered already: not again)", rcpt,
            j->kind, shown(j->message_id));
        return;
    }
    if (mb->status == PEC_MBOX_STORED) {
        pec_lmtp_reply_set(&j->res[i], 250, "2.0.0", "<%s> delivered", rcpt);
        say(j, LOG_INFO, "to=<%s>, status=delivered (%s)%s", rcpt, j->kind, refound(mb));
        return;
    }
    pec_lmtp_reply_set(&j->res[i], mb->code, mb->esc, "<%s> %s", rcpt, mb->text);
    say(j, LOG_INFO, "to=<%s>, status=%s (%d %s %s; %s)", rcpt,
        mb->status == PEC_MBOX_TEMP ? "deferred" : "bounced", mb->code, mb->esc, mb->text, j->kind);
}

/* Does the busta's daticert name RCPT as a certified recipient? */
static int certifies(const struct pec_daticert *d, const char *rcpt)
{
    for (size_t k = 0; k < d->n_destinatari; k++)
        if (d->destinatari[k].tipo == PEC_DEST_CERTIFICATO &&
            strcasecmp(d->destinatari[k].address, rcpt) == 0)
            return 1;
    return 0;
}

/*
 * The same for a verified busta: a stored or refused recipient earns its
 * receipt, if the busta names it.  The reception point wraps a busta sent to
 * anyone else as an anomalia; one that reached us past it certifies nothing
 * for that recipient.
 */
static void busta_outcome(struct job *j, const struct pec_dp_busta *b, size_t i)
{
    const struct pec_mbox_result *mb = &j->mb[i];
    const char *rcpt = j->m->rcpt[i], *id = b->ins->daticert.identificativo;
    char what[512], err[1024];

    if (mb->status == PEC_MBOX_TEMP || j->dup[i]) {
        plain_outcome(j, i); /* a duplicate earned its receipt the first time */
        return;
    }
    if (!certifies(&b->ins->daticert, rcpt)) {
        say(j, LOG_WARNING, "to=<%s>: busta %s does not name this recipient: no receipt", rcpt, id);
        plain_outcome(j, i);
        return;
    }
    if (pec_dp_receipt(j->env, b, j->qid, rcpt, j->message_id, mb, what, sizeof(what), err,
                       sizeof(err)) != 0) {
        say(j, LOG_ERR,
            "to=<%s>, status=deferred: busta %s %s, but its receipt cannot be "
            "queued: %s",
            rcpt, id, mb->status == PEC_MBOX_STORED ? "stored" : "refused", err);
        pec_lmtp_reply_set(&j->res[i], 451, "4.3.0",
                           "<%s> cannot queue the PEC receipt now, try again later", rcpt);
        return;
    }
    if (mb->status == PEC_MBOX_STORED) {
        pec_lmtp_reply_set(&j->res[i], 250, "2.0.0", "<%s> delivered, %s queued", rcpt, what);
        say(j, LOG_INFO, "to=<%s>, status=delivered (busta %s)%s, %s queued", rcpt, id, refound(mb),
            what);
    } else {
        pec_lmtp_reply_set(&j->res[i], 250, "2.0.0", "<%s> not delivered (%d %s %s), %s queued",
                           rcpt, mb->code, mb->esc, mb->text, what);
        say(j, LOG_INFO, "to=<%s>, status=refused (%d %s %s; busta %s), %s queued", rcpt, mb->code,
            mb->esc, mb->text, id, what);
    }
}

static void defer_all(struct job *j, const char *why)
{
    for (size_t i = 0; i < j->m->nrcpt; i++)
        pec_lmtp_reply_set(&j->res[i], 451, "4.3.0", "<%s> %s, try again later", j->m->rcpt[i],
                           why);
}

/* A Message-ID without angle brackets or blanks; NULL when there is none. */
static char *bare_message_id(const char *v)
{
    const char *p = v, *e;

    if (p == NULL)
        return NULL;
    while (*p == ' ' || *p == '\t' || *p == '<')
        p++;
    e = p + strlen(p);
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '>'))
        e--;
    return e > p ? xstrndup(p, (size_t)(e - p)) : NULL;
}

/*
 * What says "this message is in that mailbox already" (the store's delivered
 * table and the Maildir's marker), or NULL for a message delivered every
 * time.  A busta is known by its Message-ID, which its signer chose and
 * which is its identificativo.  Nothing else may claim that key: a notice's
 * is kept apart from a busta's ("notice:" before it), and a busta di
 * anomalia keeps the Message-ID of whatever it wraps, which anyone can
 * choose, so it is known by the SHA-256 of its body (our own signed
 * wrapping, the same bytes in every retry of one queued message and
 * different in any other anomalia).
 */
static char *delivery_key(const struct pec_inspection *ins, const unsigned char *msg, size_t len)
{
    struct pec_span head, body;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1], *id, *key;

    switch (ins->kind) {
    case PEC_KIND_BUSTA:
        return bare_message_id(ins->message_id);
    case PEC_KIND_ANOMALIA:
        pec_mime_split(msg, len, &head, &body);
        if (EVP_Digest(body.p, body.len, md, &mdlen, EVP_sha256(), NULL) != 1)
            return NULL; /* delivered each time it comes: never lost */
        for (unsigned int i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        return xasprintf("anomalia:%s", hex);
    default:
        if ((id = bare_message_id(ins->message_id)) == NULL)
            return NULL;
        key = xasprintf("notice:%s", id);
        free(id);
        return key;
    }
}

/* The log record of a verified notice or anomalia put into MAILBOX (evento deposito). */
static void deposit_record(struct pec_batch *b, const struct job *j,
                           const struct pec_inspection *ins, const char *mailbox, time_t when)
{
    const struct pec_daticert *d = &ins->daticert;
    enum pec_reg_kind kind = PEC_REG_BUSTA_ANOMALIA;
    char *message_id = bare_message_id(ins->message_id);
    struct pec_record r;

    if (ins->kind == PEC_KIND_NOTICE && ins->has_daticert && pec_reg_kind_of(d, &kind) < 0)
        kind = PEC_REG_BUSTA_ANOMALIA;
    pec_record_init(&r, kind, PEC_REG_DEPOSITO, when,
                    ins->has_daticert && d->identificativo ? d->identificativo
                    : message_id                           ? message_id
                                                           : "");
    r.queue_id = j->qid;
    r.mittente = ins->has_daticert ? d->mittente : ins->from_address;
    r.oggetto = ins->has_daticert ? d->oggetto : NULL;
    r.message_id = message_id;
    r.gestore = ins->provider != NULL ? ins->provider->name : NULL;
    r.consegna = mailbox;
    pec_batch_record(b, &r);
    free(message_id);
}

/*
 * Remember, in one commit, which recipients a verified notice or anomalia
 * went into, and log each deposit.  When that commit fails (the database
 * went away after it said the message was new) the message is in the
 * mailbox without its record.  The built-in Maildir recognises its own
 * file when the same message comes again (mailbox.h), so the MTA is told
 * to try again (451) and the retry records the deposit without a second
 * copy, as after a crash between the two.  A mailbox store over LMTP
 * cannot tell, and would take a second copy: there the MTA gets 250 and
 * the loss of the record and of the guard is logged loudly.
 */
static void remember_delivered(struct job *j, const struct pec_inspection *ins)
{
    struct pec_batch *batch;
    time_t now = pec_clock_now(j->env->issuer->clock);
    int refinds = strcmp(j->env->cfg->mailbox_backend, "maildir") == 0;
    size_t n = 0;
    char err[512];

    if (j->message_id == NULL || j->env->store == NULL)
        return;
    batch = pec_batch_new();
    for (size_t i = 0; i < j->m->nrcpt; i++) {
        if (j->mb[i].status == PEC_MBOX_STORED && !j->dup[i]) {
            pec_batch_delivered(batch, j->m->rcpt[i], j->message_id, now);
            deposit_record(batch, j, ins, j->m->rcpt[i], now);
            n++;
        }
    }
    if (n > 0 && pec_store_commit(j->env->store, batch, err, sizeof(err)) != 0) {
        if (refinds) {
            say(j, LOG_ERR, "stored, but the deposit of <%s> cannot be recorded now: %s",
                shown(j->message_id), err);
            for (size_t i = 0; i < j->m->nrcpt; i++)
                if (j->mb[i].status == PEC_MBOX_STORED && !j->dup[i])
                    pec_mbox_result_set(&j->mb[i], PEC_MBOX_TEMP, 451, "4.3.0",
                                        "stored, but the deposit cannot be recorded now");
        } else {
            say(j, LOG_ERR,
                "stored, but the record of the deposit and the guard against a second copy of "
                "<%s> are lost: %s",
                shown(j->message_id), err);
        }
    }
    pec_batch_free(batch);
}

/*
 * A message that is no verified PEC message reached the delivery point: a
 * DSN of our own MTA, mail from local pickup, anything that came past the
 * reception point (which wraps ordinary mail, or refuses it).  The rules let
 * ordinary mail into a PEC mailbox only inside a busta di anomalia: so it is
 * wrapped here, signed by us and logged, or refused as ordinary_mail says.
 * Never stored bare.
 */
static void unexamined(struct job *j, const char *why)
{
    const struct pec_dp_env *env = j->env;
    struct pec_lmtp_msg wrapped = *j->m;
    const struct pec_lmtp_msg *m = j->m;
    struct pec_built b = {0};
    struct pec_spool *sp = NULL;
    struct pec_batch *batch;
    struct pec_record r;
    time_t now = pec_clock_now(env->issuer->clock);
    char reason[600], err[1024], *destinatari;

    snprintf(reason, sizeof(reason),
             "messaggio giunto al punto di consegna senza passare dal punto di ricezione (%s)",
             why);
    if (strcmp(env->cfg->ordinary_mail, "reject") == 0) {
        for (size_t i = 0; i < m->nrcpt; i++)
            pec_lmtp_reply_set(&j->res[i], 550, "5.7.1",
                               "<%s> not a PEC message (%s): a certified mailbox takes ordinary "
                               "mail only through the reception point",
                               m->rcpt[i], why);
        say(j, LOG_NOTICE, "%s: refused (ordinary_mail = reject)", why);
        return;
    }
    sp = pec_spool_new(env->cfg->spool_dir[0] ? env->cfg->spool_dir : NULL, 1024 * 1024);
    if (pec_build_anomalia(env->issuer, m->data, reason, now, &b, err, sizeof(err)) != 0 ||
        pec_built_full(&b, m->data, pec_anomalia_keeps, sp, err, sizeof(err)) != 0) {
        say(j, LOG_ERR, "%s: cannot wrap it in a busta di anomalia: %s", why, err);
        defer_all(j, "cannot wrap the message in a busta di anomalia");
        goto out;
    }
    wrapped.data = sp;
    j->m = &wrapped;
    j->kind = "anomalia";
    domain_check_and_store(j);
    batch = pec_batch_new();
    destinatari = xjoin((char *const *)m->rcpt, m->nrcpt);
    pec_record_init(&r, PEC_REG_BUSTA_ANOMALIA, PEC_REG_EMISSIONE, now,
                    b.message_id ? b.message_id : "");
    r.queue_id = j->qid;
    r.mittente = m->sender;
    r.destinatari = destinatari;
    r.message_id = b.message_id;
    r.gestore = env->issuer->provider_name;
    r.errore_esteso = reason;
    pec_batch_record(batch, &r);
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (j->mb[i].status == PEC_MBOX_STORED) {
            pec_record_init(&r, PEC_REG_BUSTA_ANOMALIA, PEC_REG_DEPOSITO, now,
                            b.message_id ? b.message_id : "");
            r.queue_id = j->qid;
            r.mittente = m->sender;
            r.message_id = b.message_id;
            r.gestore = env->issuer->provider_name;
            r.consegna = m->rcpt[i];
            pec_batch_record(batch, &r);
        }
        plain_outcome(j, i);
    }
    if (env->store != NULL && pec_store_commit(env->store, batch, err, sizeof(err)) != 0)
        say(j, LOG_ERR, "wrapped and stored, but its log record is lost: %s", err);
    say(j, LOG_NOTICE, "%s: wrapped in a busta di anomalia", why);
    pec_batch_free(batch);
    free(destinatari);
    j->m = m;
out:
    pec_built_free(&b);
    pec_spool_free(sp);
}

/*
 * A message claiming to be PEC (busta, notice, anomalia): check it, then
 * deliver.  A valid one is delivered once per mailbox (delivery_key() says
 * which copies are one); a valid busta earns its receipts; everything else
 * goes in unchanged.
 */
static void deliver_pec(struct job *j)
{
    const struct pec_dp_env *env = j->env;
    struct pec_inspect_opts opts = {
        .trust = env->trust, .index = env->index, .at_mode = PEC_AT_NOW};
    struct pec_inspection ins;
    struct pec_dp_busta b;
    unsigned char *copy;
    const unsigned char *msg = pec_spool_whole(j->m->data, &copy);
    int busta = strcmp(j->kind, "busta") == 0;
    char err[512];

    if (msg == NULL) {
        say(j, LOG_ERR, "cannot read the message back from its spool");
        defer_all(j, "cannot read the message");
        return;
    }
    pec_inspect(msg, pec_spool_size(j->m->data), &opts, &ins);
    if (ins.valid && (!busta || ins.kind == PEC_KIND_BUSTA))
        j->message_id = delivery_key(&ins, msg, pec_spool_size(j->m->data));
    if (j->message_id != NULL)
        pthread_mutex_lock(stripe_of(j->message_id));
    if (ins.temporary) {
        say(j, LOG_ERR, "cannot inspect the %s now: %s", j->kind, ins.reason);
        defer_all(j, "cannot inspect the message");
    } else if (busta && (ins.kind != PEC_KIND_BUSTA || !ins.valid)) {
        j->kind = "invalid busta";
        say(j, LOG_WARNING, "claims to be a busta di trasporto but is not a valid one (%s)",
            ins.valid ? pec_kind_name(ins.kind) : ins.reason);
        unexamined(j, ins.valid ? "busta non conforme" : "firma non valida");
    } else if (!ins.valid) {
        say(j, LOG_WARNING, "%s that does not verify (%s)", j->kind, ins.reason);
        unexamined(j, "firma non valida");
    } else if (!busta) {
        domain_check_and_store(j);
        remember_delivered(j, &ins);
        for (size_t i = 0; i < j->m->nrcpt; i++)
            plain_outcome(j, i);
    } else if (pec_dp_busta_init(&b, &ins, msg, env->cfg->spool_dir, err, sizeof(err)) != 0) {
        say(j, LOG_ERR, "busta %s: %s", ins.daticert.identificativo, err);
        defer_all(j, "cannot prepare the receipts");
    } else {
        domain_check_and_store(j);
        for (size_t i = 0; i < j->m->nrcpt; i++)
            busta_outcome(j, &b, i);
        pec_dp_busta_free(&b);
    }
    if (j->message_id != NULL)
        pthread_mutex_unlock(stripe_of(j->message_id));
    pec_inspection_free(&ins);
    free(copy);
}

void pec_dp_deliver(const struct pec_dp_env *env, const struct pec_lmtp_msg *m,
                    struct pec_lmtp_reply *res)
{
    struct job j = {.env = env, .m = m, .res = res};
    struct pec_span head;
    unsigned char *buf = read_head(m->data, &head);

    pec_dp_queue_id(head.p, head.len, j.qid, sizeof(j.qid));
    if (j.qid[0] == '\0')
        snprintf(j.qid, sizeof(j.qid), "%s", m->session);
    j.kind = claimed_kind(head);
    free(buf);
    j.mb = xcalloc(m->nrcpt ? m->nrcpt : 1, sizeof(*j.mb));
    j.dup = xcalloc(m->nrcpt ? m->nrcpt : 1, sizeof(*j.dup));
    say(&j, LOG_INFO, "from=<%s>, size=%zu, nrcpt=%zu, %s", m->sender, pec_spool_size(m->data),
        m->nrcpt, j.kind);
    if (strcmp(j.kind, "ordinary") != 0)
        deliver_pec(&j);
    else
        unexamined(&j, "messaggio non firmato da un gestore");
    free(j.message_id);
    free(j.dup);
    free(j.mb);
}
