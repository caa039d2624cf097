/*
 * access - the access point's checks and what each outcome produces.
 *
 * The words of every refusal are in one table (faults[]), so the reply a
 * user reads and the notice that follows cannot drift apart.
 */
#include "provider/access.h"
#include "message/busta.h"
#include "message/notice.h"
#include "store/quarantine.h"
#include "store/registro.h"
#include "util/xalloc.h"
#include "util/err.h"
#include "message/sevenbit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    const char *rcode;
    const char *xcode;
} faults[] = {
    [PEC_ACCESS_OK] = {"ok", "250", "2.0.0"},
    [PEC_ACCESS_NOT_TLS] = {"not-tls", "530", "5.7.0"},
    [PEC_ACCESS_NOT_AUTHENTICATED] = {"not-authenticated", "530", "5.7.0"},
    [PEC_ACCESS_NULL_SENDER] = {"null-sender", "553", "5.7.1"},
    [PEC_ACCESS_FOREIGN_SENDER] = {"foreign-sender", "553", "5.7.1"},
    [PEC_ACCESS_NOT_YOUR_SENDER] = {"not-your-sender", "553", "5.7.1"},
    [PEC_ACCESS_UNSCANNED] = {"unscanned", "451", "4.7.0"},
    [PEC_ACCESS_FROM_MISSING] = {"from-missing", "550", "5.6.0"},
    [PEC_ACCESS_FROM_MULTIPLE] = {"from-multiple", "550", "5.6.0"},
    [PEC_ACCESS_FROM_INVALID] = {"from-invalid", "550", "5.1.7"},
    [PEC_ACCESS_TO_MISSING] = {"to-missing", "550", "5.6.0"},
    [PEC_ACCESS_TO_INVALID] = {"to-invalid", "550", "5.1.3"},
    [PEC_ACCESS_FROM_MISMATCH] = {"from-mismatch", "550", "5.7.1"},
    [PEC_ACCESS_RCPT_NOT_IN_HEADER] = {"rcpt-not-in-header", "550", "5.7.1"},
    [PEC_ACCESS_BCC] = {"bcc", "550", "5.7.1"},
    [PEC_ACCESS_TOO_BIG] = {"too-big", "552", "5.3.4"},
    [PEC_ACCESS_HEADER_TOO_BIG] = {"header-too-big", "552", "5.6.0"},
    [PEC_ACCESS_FIELD_TOO_BIG] = {"field-too-big", "552", "5.6.0"},
    [PEC_ACCESS_TOO_MANY_FIELDS] = {"too-many-fields", "552", "5.6.0"},
    [PEC_ACCESS_NUL] = {"nul", "550", "5.6.0"},
    [PEC_ACCESS_LINE_TOO_LONG] = {"line-too-long", "550", "5.6.0"},
    [PEC_ACCESS_NOT_7BIT] = {"not-7bit", "554", "5.6.3"},
    [PEC_ACCESS_VIRUS] = {"virus", "554", "5.7.1"},
};

const char *pec_access_fault_name(enum pec_access_fault f)
{
    if ((size_t)f >= sizeof(faults) / sizeof(faults[0]))
        return NULL;
    return faults[f].name;
}

/* S for an SMTP reply: printable ASCII only, and not too long to read */
static char *ascii(const char *s)
{
    size_t n = s ? strlen(s) : 0, max = 120;
    char *out = xmalloc((n < max ? n : max) + 4);
    size_t j = 0;

    for (size_t i = 0; i < n && j < max; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n > max) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
    return out;
}

/* R says FAULT; ITALIAN (ASCII) is also what errore-esteso and the notice say */
static void set_reply(struct pec_access_reply *r, enum pec_access_fault f, const char *italian,
                      const char *english)
{
    int formal = f >= PEC_ACCESS_FROM_MISSING;

    r->fault = f;
    r->rcode = faults[f].rcode;
    r->xcode = faults[f].xcode;
    snprintf(r->errore, sizeof(r->errore), "%s", italian);
    if (formal)
        snprintf(r->text, sizeof(r->text), "Messaggio non accettato: %s (not accepted: %s)",
                 italian, english);
    else
        snprintf(r->text, sizeof(r->text), "%s (%s)", italian, english);
}

static char *bare(const char *s)
{
    size_t len;

    if (s == NULL)
        return xstrdup("");
    s += strspn(s, " \t");
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= 2 && s[0] == '<' && s[len - 1] == '>')
        return xstrndup(s + 1, len - 2);
    return xstrndup(s, len);
}

static const char *domain_of(const char *address)
{
    const char *at = strrchr(address, '@');

    return at ? at + 1 : NULL;
}

/*
 * local@domain in printable ASCII, blanks only in a quoted local part; the
 * domain a host name or an address literal
 */
static int valid_address(const char *a)
{
    const char *at = strrchr(a, '@');
    const char *d;
    int quoted;

    if (at == NULL || at == a || at[1] == '\0')
        return 0;
    quoted = a[0] == '"' && at - a >= 2 && at[-1] == '"';
    for (const char *p = a; p < at; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f ||
            (!quoted && (*p == ' ' || strchr("<>,;", *p))))
            return 0;
    d = at + 1;
    if (d[0] == '[')
        return d[strlen(d) - 1] == ']';
    if (d[0] == '.' || d[0] == '-' || d[strlen(d) - 1] == '.' || strstr(d, "..") != NULL)
        return 0;
    for (const char *p = d; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return 0;
    return 1;
}

static int listed(char *const *v, size_t n, const char *address)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v[i], address) == 0)
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- MAIL FROM */

int pec_access_channel(const struct pec_config *cfg, const char *tls_version, int loopback,
                       struct pec_access_reply *r)
{
    memset(r, 0, sizeof(*r));
    if ((tls_version != NULL && *tls_version != '\0') ||
        (loopback && strcmp(cfg->submission_cleartext, "loopback") == 0))
        return 0;
    set_reply(r, PEC_ACCESS_NOT_TLS,
              "per inviare posta certificata occorre una connessione cifrata (STARTTLS)",
              "certified mail is submitted over TLS only: issue STARTTLS first");
    return -1;
}

int pec_access_sender(const struct pec_config *cfg, const char *login, const char *mail_from,
                      struct pec_access_reply *r)
{
    char *sender = bare(mail_from);
    const char *domain = domain_of(sender);
    char *who = ascii(sender), *user = ascii(login);
    char it[400], en[300];
    int ret = -1;

    memset(r, 0, sizeof(*r));
    if (login == NULL || *login == '\0') {
        set_reply(r, PEC_ACCESS_NOT_AUTHENTICATED,
                  "per inviare posta certificata occorre autenticarsi",
                  "authentication required to send certified mail");
    } else if (*sender == '\0') {
        set_reply(r, PEC_ACCESS_NULL_SENDER, "il mittente non puo' essere vuoto",
                  "the null sender cannot send certified mail");
    } else if (domain == NULL || !valid_address(sender) || !pec_config_is_our_domain(cfg, domain)) {
        snprintf(it, sizeof(it),
                 "il mittente %s non e' una casella di posta certificata di questo gestore", who);
        snprintf(en, sizeof(en), "sender %s is not a certified mailbox of this provider", who);
        set_reply(r, PEC_ACCESS_FOREIGN_SENDER, it, en);
    } else if (!pec_config_may_send_as(cfg, login, sender)) {
        snprintf(it, sizeof(it), "l'utente autenticato %s non puo' inviare come %s", user, who);
        snprintf(en, sizeof(en), "authenticated user %s may not send as %s", user, who);
        set_reply(r, PEC_ACCESS_NOT_YOUR_SENDER, it, en);
    } else {
        r->fault = PEC_ACCESS_OK;
        ret = 0;
    }
    free(sender);
    free(who);
    free(user);
    return ret;
}

/* ---------------------------------------------------------------- formal checks */

static int check_from(const struct pec_original *o, struct pec_access_reply *r)
{
    char it[400], en[300], *who;

    if (o->n_from == 0) {
        set_reply(r, PEC_ACCESS_FROM_MISSING, "manca il campo From con l'indirizzo del mittente",
                  "the From header with the sender's address is missing");
        return -1;
    }
    if (o->n_from > 1) {
        set_reply(r, PEC_ACCESS_FROM_MULTIPLE, "il campo From deve contenere un solo indirizzo",
                  "the From header must hold exactly one address");
        return -1;
    }
    if (valid_address(o->from[0]))
        return 0;
    who = ascii(o->from[0]);
    snprintf(it, sizeof(it), "l'indirizzo %s nel campo From non e' valido", who);
    snprintf(en, sizeof(en), "the From address %s is not valid", who);
    set_reply(r, PEC_ACCESS_FROM_INVALID, it, en);
    free(who);
    return -1;
}

static int check_to(const struct pec_original *o, struct pec_access_reply *r)
{
    char it[400], en[300], *who;

    if (o->n_to == 0) {
        set_reply(r, PEC_ACCESS_TO_MISSING, "manca il campo To con almeno un destinatario",
                  "the To header with at least one recipient is missing");
        return -1;
    }
    for (size_t i = 0; i < o->n_to + o->n_cc; i++) {
        const char *a = i < o->n_to ? o->to[i] : o->cc[i - o->n_to];
        const char *field = i < o->n_to ? "To" : "Cc";

        if (valid_address(a))
            continue;
        who = ascii(a);
        snprintf(it, sizeof(it), "l'indirizzo %s nel campo %s non e' valido", who, field);
        snprintf(en, sizeof(en), "the %s address %s is not valid", field, who);
        set_reply(r, PEC_ACCESS_TO_INVALID, it, en);
        free(who);
        return -1;
    }
    return 0;
}

static int check_envelope(const struct pec_original *o, struct pec_access_reply *r)
{
    char it[400], en[300], *a, *b;

    if (o->mail_from == NULL || strcasecmp(o->mail_from, o->from[0]) != 0) {
        a = ascii(o->mail_from);
        b = ascii(o->from[0]);
        snprintf(it, sizeof(it),
                 "il mittente SMTP (MAIL FROM) %s non coincide con il campo From %s", a, b);
        snprintf(en, sizeof(en), "MAIL FROM %s differs from the From address %s", a, b);
        set_reply(r, PEC_ACCESS_FROM_MISMATCH, it, en);
        free(a);
        free(b);
        return -1;
    }
    for (size_t i = 0; i < o->n_rcpts; i++) {
        if (listed(o->to, o->n_to, o->rcpts[i]) || listed(o->cc, o->n_cc, o->rcpts[i]))
            continue;
        a = ascii(o->rcpts[i]);
        snprintf(it, sizeof(it), "il destinatario %s non compare nei campi To o Cc", a);
        snprintf(en, sizeof(en), "recipient %s is not in the To or Cc header", a);
        set_reply(r, PEC_ACCESS_RCPT_NOT_IN_HEADER, it, en);
        free(a);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- what cannot travel intact */

/* the field L lies in, or NULL (a header line that is not a field, or the body) */
static const struct pec_field *field_at(const struct pec_original *o, const struct pec_line *l)
{
    for (size_t i = 0; i < o->n_fields; i++)
        if (l->off >= o->fields[i].off && l->off < o->fields[i].off + o->fields[i].len)
            return &o->fields[i];
    return NULL;
}

/*
 * Line L for a person, in IT and EN: a line of the field it is in, else its
 * number in the header section or the body.
 */
static void where(const struct pec_original *o, const struct pec_line *l, char *it, size_t itlen,
                  char *en, size_t enlen)
{
    const struct pec_field *f = field_at(o, l);
    int body = l->off >= o->header_len;
    char *name;

    if (f != NULL) {
        name = ascii(f->name);
        snprintf(it, itlen, "una riga del campo %s", name);
        snprintf(en, enlen, "a line of the %s header field", name);
        free(name);
        return;
    }
    snprintf(it, itlen, "la riga %zu %s", l->number,
             body ? "del corpo del messaggio" : "dell'intestazione");
    snprintf(en, enlen, "line %zu of the %s", l->number, body ? "message body" : "header section");
}

/*
 * A header that cannot be read whole or rewritten: too large, a field the MTA may have
 * cut, more fields than the MTA can delete, a NUL.
 */
static int check_header_whole(const struct pec_original *o, struct pec_access_reply *r)
{
    char it[400], en[300], wit[200], wen[200], *name;

    if (o->header_cut) {
        snprintf(it, sizeof(it), "l'intestazione del messaggio supera i %d byte ammessi",
                 PEC_HEADER_MAX);
        snprintf(en, sizeof(en), "the header section is larger than the %d octets allowed",
                 PEC_HEADER_MAX);
        set_reply(r, PEC_ACCESS_HEADER_TOO_BIG, it, en);
        return -1;
    }
    for (size_t i = 0; i < o->n_fields; i++) {
        if (o->fields[i].len <= PEC_ACCESS_FIELD_MAX)
            continue;
        name = ascii(o->fields[i].name);
        snprintf(it, sizeof(it), "il campo %s supera i %d byte ammessi", name,
                 PEC_ACCESS_FIELD_MAX);
        snprintf(en, sizeof(en), "the %s header field is longer than the %d octets allowed", name,
                 PEC_ACCESS_FIELD_MAX);
        free(name);
        set_reply(r, PEC_ACCESS_FIELD_TOO_BIG, it, en);
        return -1;
    }
    if (o->n_fields > PEC_HEADER_FIELDS_MAX) {
        snprintf(it, sizeof(it), "l'intestazione del messaggio ha %zu campi, oltre i %d ammessi",
                 o->n_fields, PEC_HEADER_FIELDS_MAX);
        snprintf(en, sizeof(en), "the header section has %zu fields, over the %d allowed",
                 o->n_fields, PEC_HEADER_FIELDS_MAX);
        set_reply(r, PEC_ACCESS_TOO_MANY_FIELDS, it, en);
        return -1;
    }
    if (o->nul_line.number == 0)
        return 0;
    where(o, &o->nul_line, wit, sizeof(wit), wen, sizeof(wen));
    snprintf(it, sizeof(it), "%s contiene un byte NUL, non ammesso", wit);
    snprintf(en, sizeof(en), "%s contains a NUL byte, which is not allowed", wen);
    set_reply(r, PEC_ACCESS_NUL, it, en);
    return -1;
}

/* A line an MTA would fold in transit, breaking the signature over it. */
static int check_lines(const struct pec_original *o, struct pec_access_reply *r)
{
    char it[400], en[300], wit[200], wen[200];

    if (o->long_line.number == 0)
        return 0;
    where(o, &o->long_line, wit, sizeof(wit), wen, sizeof(wen));
    snprintf(it, sizeof(it), "%s e' lunga %zu byte, oltre i %d ammessi", wit, o->long_line.len,
             PEC_LINE_MAX);
    snprintf(en, sizeof(en), "%s is %zu octets long, over the %d allowed", wen, o->long_line.len,
             PEC_LINE_MAX);
    set_reply(r, PEC_ACCESS_LINE_TOO_LONG, it, en);
    return -1;
}

/*
 * 8-bit content the busta could not carry on 7-bit transport (sevenbit.h): the busta
 * re-encodes what it can, and what it cannot is refused now, saying where.
 */
static int check_7bit(const struct pec_original *o, struct pec_access_reply *r)
{
    char it[600], en[400], why[300];
    unsigned char *copy;
    const unsigned char *msg;
    int rc;

    if (!o->eight_bit)
        return 0;
    if ((msg = pec_spool_whole(o->raw, &copy)) == NULL)
        return 0; /* unreadable now: building the busta fails and says so */
    rc = pec_7bit(msg, pec_spool_size(o->raw), NULL, why, sizeof(why));
    free(copy);
    if (rc != 1)
        return 0;
    snprintf(it, sizeof(it),
             "il messaggio contiene caratteri a 8 bit che non possono viaggiare a 7 bit come "
             "richiesto (%s)",
             why);
    snprintf(en, sizeof(en), "8-bit content that cannot be made 7-bit for transport: %s", why);
    set_reply(r, PEC_ACCESS_NOT_7BIT, it, en);
    return -1;
}

int pec_access_formal(const struct pec_original *o, long long size_limit,
                      struct pec_access_reply *r)
{
    unsigned long long size = pec_spool_size(o->raw), total = size * o->n_rcpts;
    char it[400], en[300];

    memset(r, 0, sizeof(*r));
    if (check_header_whole(o, r) < 0 || check_from(o, r) < 0 || check_to(o, r) < 0)
        return -1;
    /*
     * Before the envelope: a Bcc recipient is also a RCPT TO missing from To
     * and Cc, and "Bcc is not allowed" is the reason a person understands.
     */
    if (o->bcc_has_value) {
        set_reply(r, PEC_ACCESS_BCC, "il campo Bcc (copia nascosta) non deve contenere indirizzi",
                  "the Bcc header must be empty");
        return -1;
    }
    if (check_envelope(o, r) < 0)
        return -1;
    if (size_limit > 0 && total > (unsigned long long)size_limit) {
        snprintf(it, sizeof(it),
                 "la dimensione del messaggio (%llu byte) per il numero di destinatari (%zu) "
                 "supera il limite di %lld byte",
                 size, o->n_rcpts, size_limit);
        snprintf(en, sizeof(en), "message size times recipients exceeds %lld bytes", size_limit);
        set_reply(r, PEC_ACCESS_TOO_BIG, it, en);
        return -1;
    }
    if (check_lines(o, r) < 0 || check_7bit(o, r) < 0)
        return -1;
    r->fault = PEC_ACCESS_OK;
    return 0;
}

/* ---------------------------------------------------------------- the antivirus */

int pec_access_scan(const struct pec_config *cfg, const struct pec_original *o,
                    struct pec_av_result *av, struct pec_access_reply *r)
{
    char it[400], en[300], *what;

    memset(r, 0, sizeof(*r));
    pec_av_scan(cfg, o->raw, av);
    if (av->verdict == PEC_AV_FAILED) {
        r->fault = PEC_ACCESS_UNSCANNED;
        pec_av_unscanned_reply(cfg, &r->rcode, &r->xcode, r->text, sizeof(r->text));
        snprintf(r->errore, sizeof(r->errore), "%s", av->what);
        return -1;
    }
    if (av->verdict != PEC_AV_INFECTED) {
        r->fault = PEC_ACCESS_OK;
        return 0;
    }
    what = ascii(av->what);
    snprintf(it, sizeof(it), "virus rilevato: %s", what);
    snprintf(en, sizeof(en), "virus found: %s", what);
    set_reply(r, PEC_ACCESS_VIRUS, it, en);
    snprintf(r->virus, sizeof(r->virus), "%s", av->what);
    free(what);
    return -1;
}

/* ---------------------------------------------------------------- recipients */

void pec_access_classify(const struct pec_original *o, const struct pec_index *index,
                         const struct pec_config *cfg, struct pec_access_rcpts *out)
{
    memset(out, 0, sizeof(*out));
    out->v = xcalloc(o->n_rcpts ? o->n_rcpts : 1, sizeof(*out->v));
    /* pass 0: To (and, in a refused message, whatever is in neither); pass 1: Cc only */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < o->n_rcpts; i++) {
            const char *a = o->rcpts[i];
            const char *domain = domain_of(a);
            int cc = !listed(o->to, o->n_to, a) && listed(o->cc, o->n_cc, a);
            struct pec_access_rcpt *r;
            int dup = 0;

            if (cc != pass)
                continue;
            for (size_t j = 0; j < out->n && !dup; j++)
                dup = strcasecmp(out->v[j].address, a) == 0;
            if (dup)
                continue;
            r = &out->v[out->n++];
            r->address = xstrdup(a);
            r->cc = cc;
            r->ours = domain != NULL && pec_config_is_our_domain(cfg, domain);
            r->certificato = r->ours || (domain != NULL && pec_index_by_domain(index, domain));
        }
    }
}

void pec_access_rcpts_free(struct pec_access_rcpts *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].address);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- outcomes */

/* The facts every notice about O states, and the arrays they point into. */
struct facts {
    struct pec_daticert d;
    struct pec_destinatario *dest;
    int *is_cc;
    struct pec_dest *logdest;
    char *destinatari; /* for the log records */
};

static const char *risposte_of(const struct pec_original *o)
{
    if (o->n_reply_to > 0)
        return o->reply_to[0];
    return o->n_from > 0 ? o->from[0] : pec_original_mittente(o);
}

static void facts_init(struct facts *f, const struct pec_original *o,
                       const struct pec_access_rcpts *rc, const char *identificativo)
{
    size_t n = rc->n ? rc->n : 1;

    memset(f, 0, sizeof(*f));
    f->dest = xcalloc(n, sizeof(*f->dest));
    f->is_cc = xcalloc(n, sizeof(*f->is_cc));
    f->logdest = xcalloc(n, sizeof(*f->logdest));
    for (size_t i = 0; i < rc->n; i++) {
        f->dest[i].address = rc->v[i].address;
        f->dest[i].tipo = rc->v[i].certificato ? PEC_DEST_CERTIFICATO : PEC_DEST_ESTERNO;
        f->is_cc[i] = rc->v[i].cc;
        f->logdest[i].address = rc->v[i].address;
        f->logdest[i].certificato = rc->v[i].certificato;
    }
    f->destinatari = pec_destinatari_format(f->logdest, rc->n);
    f->d.mittente = (char *)pec_original_mittente(o);
    f->d.destinatari = f->dest;
    f->d.n_destinatari = rc->n;
    f->d.risposte = (char *)risposte_of(o);
    f->d.oggetto = o->subject;
    f->d.identificativo = (char *)identificativo;
    f->d.msgid = o->message_id;
}

static void facts_free(struct facts *f)
{
    free(f->dest);
    free(f->is_cc);
    free(f->logdest);
    free(f->destinatari);
}

/* The fields every record of this outcome shares. */
static void record_init(struct pec_record *rec, enum pec_reg_kind kind,
                        const struct pec_access_env *e, const struct pec_original *o,
                        const struct facts *f, const struct pec_access_outcome *out,
                        const char *queue_id, const char *message_id)
{
    pec_record_init(rec, kind, PEC_REG_EMISSIONE, out->when, out->identificativo);
    rec->queue_id = queue_id;
    rec->mittente = f->d.mittente;
    rec->destinatari = f->destinatari;
    rec->oggetto = o->subject;
    rec->message_id = message_id;
    rec->gestore = e->iss->provider_name;
    rec->client_msgid = o->message_id;
}

/* Build notice N, keep its bytes in OUT, queue them to TO in the batch. */
static int queue_notice(const struct pec_access_env *e, const struct pec_notice *n,
                        struct pec_access_outcome *out, char **message_id, char *err, size_t errlen)
{
    struct pec_built b;
    struct pec_access_blob *blob = &out->blobs[out->n_blobs];
    const char *rcpt[1] = {n->to};
    FILE *mem;
    char *data = NULL;
    size_t len = 0;
    int ok;

    if (out->n_blobs >= sizeof(out->blobs) / sizeof(out->blobs[0])) {
        pec_seterr(err, errlen, "too many notices for one outcome");
        return -1;
    }
    if (pec_build_notice(e->iss, n, &b, err, errlen) < 0)
        return -1;
    mem = open_memstream(&data, &len);
    if (mem == NULL) {
        pec_seterr(err, errlen, "cannot hold the %s in memory: %s", pec_notice_kind_name(n->kind),
                   strerror(errno));
        pec_built_free(&b);
        return -1;
    }
    ok = pec_built_write(&b, mem) == 0;
    ok = fclose(mem) == 0 && ok;
    if (!ok) {
        pec_seterr(err, errlen, "cannot write the %s: %s", pec_notice_kind_name(n->kind),
                   strerror(errno));
        free(data);
        pec_built_free(&b);
        return -1;
    }
    blob->p = (unsigned char *)data;
    blob->n = len;
    out->n_blobs++;
    pec_batch_outbox(out->batch, &(struct pec_outmsg){
                                     .message_id = b.message_id,
                                     .identificativo = out->identificativo,
                                     .tipo = pec_notice_x_ricevuta(n->kind),
                                     .rcpt = rcpt,
                                     .nrcpt = 1,
                                     .data = blob->p,
                                     .len = blob->n,
                                 });
    *message_id = b.message_id;
    b.message_id = NULL;
    pec_built_free(&b);
    return 0;
}

static void outcome_start(const struct pec_access_env *e, const struct pec_original *o,
                          struct pec_access_outcome *out)
{
    memset(out, 0, sizeof(*out));
    out->when = pec_clock_now(e->iss->clock);
    out->identificativo = pec_ident_new(e->iss->ident);
    pec_access_classify(o, e->index, e->cfg, &out->rcpts);
    out->batch = pec_batch_new();
}

/* The transaction: every recipient sent at WHEN. */
static void batch_tx(const struct pec_original *o, const char *queue_id,
                     struct pec_access_outcome *out)
{
    struct pec_tx_rcpt *r = xcalloc(out->rcpts.n ? out->rcpts.n : 1, sizeof(*r));

    for (size_t i = 0; i < out->rcpts.n; i++) {
        r[i].address = out->rcpts.v[i].address;
        r[i].certificato = out->rcpts.v[i].certificato;
        r[i].cc = out->rcpts.v[i].cc;
    }
    pec_batch_tx(out->batch, &(struct pec_tx){
                                 .identificativo = out->identificativo,
                                 .client_msgid = o->message_id,
                                 .mittente = pec_original_mittente(o),
                                 .risposte = risposte_of(o),
                                 .oggetto = o->subject,
                                 .tipo_ricevuta = pec_ricevuta_name(o->tipo_ricevuta),
                                 .queue_id = queue_id,
                                 .submitted = out->when,
                                 .rcpt = r,
                                 .nrcpt = out->rcpts.n,
                             });
    free(r);
}

/*
 * Our own recipients: the presa in carico a receiving provider would send,
 * to our receipt_address, and their state moved to taken.
 */
static int presa_in_carico(const struct pec_access_env *e, const struct pec_original *o,
                           struct facts *f, const char *queue_id, struct pec_access_outcome *out,
                           char *err, size_t errlen)
{
    char **own = xcalloc(out->rcpts.n ? out->rcpts.n : 1, sizeof(*own));
    size_t n = 0;
    struct pec_daticert d = f->d;
    struct pec_record rec;
    char *message_id = NULL, *ricezione = NULL;
    int ret = -1;

    for (size_t i = 0; i < out->rcpts.n; i++) {
        if (!out->rcpts.v[i].ours)
            continue;
        own[n++] = out->rcpts.v[i].address;
    }
    if (n == 0) {
        ret = 0;
        goto done;
    }
    d.ricezione = own;
    d.n_ricezione = n;
    if (queue_notice(e,
                     &(struct pec_notice){.kind = PEC_NOTICE_PRESA_IN_CARICO,
                                          .facts = &d,
                                          .to = e->cfg->receipt_address,
                                          .subject_raw = o->subject_raw,
                                          .is_cc = f->is_cc,
                                          .when = out->when},
                     out, &message_id, err, errlen) < 0)
        goto done;
    ricezione = xjoin(own, n);
    record_init(&rec, PEC_REG_PRESA_IN_CARICO, e, o, f, out, queue_id, message_id);
    rec.ricezione = ricezione;
    pec_batch_record(out->batch, &rec);
    for (size_t i = 0; i < n; i++)
        pec_batch_rcpt_state(out->batch, out->identificativo, own[i], PEC_RCPT_TAKEN, out->when,
                             NULL);
    ret = 0;

done:
    free(message_id);
    free(ricezione);
    free(own);
    return ret;
}

/*
 * OUT->rcpts are TX's recipients (the same set, each To or Cc alike): then
 * 1, with OUT->rcpts put in TX's order, spelling and classes, so the busta
 * lists them as the first accettazione did.
 */
static int same_rcpts(const struct pec_tx_info *tx, struct pec_access_rcpts *rc)
{
    size_t n = rc->n ? rc->n : 1, *at;
    struct pec_access_rcpt *v;

    if (tx->nrcpt != rc->n)
        return 0;
    /* both lists are free of duplicates (any case), so a match for each is a permutation */
    at = xcalloc(n, sizeof(*at));
    for (size_t i = 0; i < tx->nrcpt; i++) {
        size_t j = 0;

        while (j < rc->n && strcasecmp(rc->v[j].address, tx->rcpt[i].address) != 0)
            j++;
        if (j == rc->n || !rc->v[j].cc != !tx->rcpt[i].cc) {
            free(at);
            return 0;
        }
        at[i] = j;
    }
    v = xcalloc(n, sizeof(*v));
    for (size_t i = 0; i < rc->n; i++) {
        v[i] = rc->v[at[i]];
        v[i].certificato = tx->rcpt[i].certificato;
        free(v[i].address); /* as the first submission spelt it */
        v[i].address = xstrdup(tx->rcpt[i].address);
    }
    free(rc->v);
    rc->v = v;
    free(at);
    return 1;
}

/* Can O be the retry of an earlier submission?  Only with a store and a client Message-ID. */
static int may_be_retry(const struct pec_access_env *e, const struct pec_original *o)
{
    return e->store != NULL && o->message_id != NULL && *o->message_id != '\0';
}

/* OUT is the retry of the outcome IDENTIFICATIVO (taken over) made at WHEN. */
static void take_earlier(struct pec_access_outcome *out, char **identificativo, time_t when)
{
    free(out->identificativo);
    out->identificativo = *identificativo;
    *identificativo = NULL;
    out->when = when;
    out->resubmission = 1;
}

/*
 * Is O the retry of a transaction accepted lately (access.h)?  1: OUT now
 * carries that transaction's identificativo, instant and recipients; 0: a
 * new message; -1 with err.
 */
static int resubmission(const struct pec_access_env *e, const struct pec_original *o,
                        struct pec_access_outcome *out, char *err, size_t errlen)
{
    struct pec_tx_info tx;
    char serr[512];
    int found;

    if (!may_be_retry(e, o))
        return 0;
    found = pec_store_tx_find_client(e->store, pec_original_mittente(o), o->message_id,
                                     out->when - (time_t)e->cfg->deadline_after, &tx, serr,
                                     sizeof(serr));
    if (found < 0) {
        pec_seterr(err, errlen, "cannot look for an earlier submission of %s: %s", o->message_id,
                   serr);
        return -1;
    }
    if (found == 0)
        return 0;
    found = strcmp(tx.oggetto, o->subject ? o->subject : "") == 0 &&
            strcmp(tx.tipo_ricevuta, pec_ricevuta_name(o->tipo_ricevuta)) == 0 &&
            same_rcpts(&tx, &out->rcpts);
    if (found)
        take_earlier(out, &tx.identificativo, tx.submitted);
    pec_tx_info_free(&tx);
    return found;
}

int pec_access_accept(const struct pec_access_env *e, const struct pec_original *o,
                      const char *queue_id, struct pec_access_outcome *out, char *err,
                      size_t errlen)
{
    struct facts f;
    struct pec_record rec;
    char *message_id = NULL;
    const char *tipo_ricevuta = pec_ricevuta_name(o->tipo_ricevuta);
    int ret = -1;

    outcome_start(e, o, out);
    if (resubmission(e, o, out, err, errlen) < 0) {
        pec_access_outcome_free(out);
        return -1;
    }
    facts_init(&f, o, &out->rcpts, out->identificativo);
    if (pec_build_busta(e->iss, o, f.dest, out->rcpts.n, out->identificativo, out->when,
                        &out->busta, err, errlen) < 0)
        goto done;
    if (out->resubmission) {
        ret = 0; /* what the first submission owed is in the store already */
        goto done;
    }
    batch_tx(o, queue_id, out);
    record_init(&rec, PEC_REG_BUSTA_TRASPORTO, e, o, &f, out, queue_id, out->identificativo);
    rec.tipo_ricevuta = tipo_ricevuta;
    pec_batch_record(out->batch, &rec);

    if (queue_notice(e,
                     &(struct pec_notice){.kind = PEC_NOTICE_ACCETTAZIONE,
                                          .facts = &f.d,
                                          .to = pec_original_mittente(o),
                                          .subject_raw = o->subject_raw,
                                          .is_cc = f.is_cc,
                                          .when = out->when},
                     out, &message_id, err, errlen) < 0)
        goto done;
    record_init(&rec, PEC_REG_ACCETTAZIONE, e, o, &f, out, queue_id, message_id);
    rec.tipo_ricevuta = tipo_ricevuta;
    pec_batch_record(out->batch, &rec);
    if (presa_in_carico(e, o, &f, queue_id, out, err, errlen) < 0)
        goto done;
    ret = 0;

done:
    free(message_id);
    facts_free(&f);
    if (ret < 0)
        pec_access_outcome_free(out);
    return ret;
}

/*
 * Is O, refused for ESTESO, the retry of a refusal made lately (access.h)?
 * 1: OUT now carries that refusal's identificativo and instant; 0: no; -1
 * with err.
 */
static int refused_before(const struct pec_access_env *e, const struct pec_original *o,
                          const char *esteso, struct pec_access_outcome *out, char *err,
                          size_t errlen)
{
    struct pec_refusal prev;
    char serr[512];
    int found;

    if (!may_be_retry(e, o))
        return 0;
    found =
        pec_store_refused(e->store, pec_original_mittente(o), o->message_id,
                          out->when - (time_t)e->cfg->deadline_after, &prev, serr, sizeof(serr));
    if (found < 0) {
        pec_seterr(err, errlen, "cannot look for an earlier refusal of %s: %s", o->message_id,
                   serr);
        return -1;
    }
    if (found == 0)
        return 0;
    found =
        strcmp(prev.oggetto, o->subject ? o->subject : "") == 0 && strcmp(prev.errore, esteso) == 0;
    if (found)
        take_earlier(out, &prev.identificativo, prev.when);
    pec_refusal_free(&prev);
    return found;
}

/*
 * The first Subject field, the one o->subject comes from, could not travel
 * itself: over the limit, or holding a NUL or a line too long.
 */
static int subject_cannot_travel(const struct pec_original *o)
{
    for (size_t i = 0; i < o->n_fields; i++) {
        const struct pec_field *f = &o->fields[i];

        if (strcasecmp(f->name, "Subject") != 0)
            continue;
        return f->len > PEC_ACCESS_FIELD_MAX ||
               (o->long_line.number != 0 && field_at(o, &o->long_line) == f) ||
               (o->nul_line.number != 0 && field_at(o, &o->nul_line) == f);
    }
    return 0;
}

/* the most of a subject that could not travel an avviso quotes, in bytes */
#define QUOTE_MAX 200

/*
 * The subject an avviso quotes: whole, unless it could not travel itself and
 * is long; then its first QUOTE_MAX bytes (whole characters) and " [...]",
 * for a person to recognise the message by.  NULL: quote it as it is.
 */
static char *shortened_subject(const struct pec_original *o)
{
    size_t n = QUOTE_MAX;

    if (o->subject == NULL || strlen(o->subject) <= QUOTE_MAX || !subject_cannot_travel(o))
        return NULL;
    while (n > 0 && ((unsigned char)o->subject[n] & 0xc0) == 0x80)
        n--; /* not inside a UTF-8 character */
    while (n > 0 && (o->subject[n - 1] == ' ' || o->subject[n - 1] == '\t'))
        n--;
    return xasprintf("%.*s [...]", (int)n, o->subject);
}

/* The infected O into the quarantine, named in OUT->quarantined. */
static int quarantine(const struct pec_access_env *e, const struct pec_original *o,
                      const struct pec_access_reply *r, const char *queue_id,
                      struct pec_access_outcome *out, char *err, size_t errlen)
{
    struct pec_qfacts q = {.when = out->when,
                           .point = "access",
                           .identificativo = out->identificativo,
                           .queue_id = queue_id,
                           .mittente = pec_original_mittente(o),
                           .finding = r->virus};

    return pec_quarantine_put(e->cfg->quarantine_dir, o->raw, &q, out->quarantined, err, errlen);
}

int pec_access_refuse(const struct pec_access_env *e, const struct pec_original *o,
                      const struct pec_access_reply *r, const char *queue_id,
                      struct pec_access_outcome *out, char *err, size_t errlen)
{
    struct facts f;
    struct pec_record rec;
    char *message_id = NULL, *quoted, *virus = NULL;
    char *esteso = pec_errore_esteso(r->xcode, e->iss->provider_name, r->errore);
    int ret = -1, again, infected = r->fault == PEC_ACCESS_VIRUS;

    outcome_start(e, o, out);
    if (infected && quarantine(e, o, r, queue_id, out, err, errlen) < 0) {
        free(esteso);
        pec_access_outcome_free(out);
        return -1;
    }
    if ((again = refused_before(e, o, esteso, out, err, errlen)) != 0) {
        free(esteso);
        if (again < 0)
            pec_access_outcome_free(out);
        return again < 0 ? -1 : 0; /* a retry: its avviso is in the store already */
    }
    facts_init(&f, o, &out->rcpts, out->identificativo);
    f.d.errore = infected ? PEC_ERRORE_VIRUS : PEC_ERRORE_ALTRO;
    f.d.errore_esteso = esteso;
    if ((quoted = shortened_subject(o)) != NULL)
        f.d.oggetto = quoted;
    if (out->rcpts.n == 0) {
        pec_seterr(err, errlen, "no recipient to name in the avviso di non accettazione");
        goto done;
    }
    if (queue_notice(e,
                     &(struct pec_notice){.kind = infected ? PEC_NOTICE_NON_ACCETTAZIONE_VIRUS
                                                           : PEC_NOTICE_NON_ACCETTAZIONE,
                                          .facts = &f.d,
                                          .to = pec_original_mittente(o),
                                          .subject_raw = quoted ? NULL : o->subject_raw,
                                          .is_cc = f.is_cc,
                                          .virus = infected ? r->virus : NULL,
                                          .when = out->when},
                     out, &message_id, err, errlen) < 0)
        goto done;
    record_init(&rec, infected ? PEC_REG_NON_ACCETTAZIONE_VIRUS : PEC_REG_NON_ACCETTAZIONE, e, o,
                &f, out, queue_id, message_id);
    rec.errore = pec_errore_name(f.d.errore);
    rec.errore_esteso = esteso;
    if (infected)
        rec.virus = virus = pec_av_virus_field(r->virus, out->quarantined);
    pec_batch_record(out->batch, &rec);
    if (may_be_retry(e, o))
        pec_batch_refused(out->batch, pec_original_mittente(o), o->message_id,
                          &(struct pec_refusal){.identificativo = out->identificativo,
                                                .oggetto = o->subject ? o->subject : "",
                                                .errore = esteso,
                                                .when = out->when});
    ret = 0;

done:
    free(message_id);
    free(esteso);
    free(quoted);
    free(virus);
    facts_free(&f);
    if (ret < 0)
        pec_access_outcome_free(out);
    return ret;
}

void pec_access_outcome_free(struct pec_access_outcome *out)
{
    pec_batch_free(out->batch);
    for (size_t i = 0; i < out->n_blobs; i++)
        free(out->blobs[i].p);
    pec_built_free(&out->busta);
    pec_access_rcpts_free(&out->rcpts);
    free(out->identificativo);
    memset(out, 0, sizeof(*out));
}
