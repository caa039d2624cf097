/*
 * notice - assembly of a receipt or notice: the kind table, daticert.xml,
 * headers, parts, signature.
 *
 * What differs between kinds is data, kept in one table (kinds[]), so that
 * adding a kind or checking one against the rules means reading one line.
 * The words are in notice_text.c, the breve rewriting in breve.c.
 */
#include "message/notice.h"
#include "message/breve.h"
#include "util/encode.h"
#include "message/notice_text.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* what a kind carries beyond its tipo, header and subject */
#define K_VERIFICA 0x01  /* X-VerificaSicurezza: errore */
#define K_MITTENTE 0x02  /* X-Mittente: original sender */
#define K_ORIGINAL 0x04  /* postacert.eml, whole */
#define K_BREVE 0x08     /* postacert.eml, attachments hashed */
#define K_CONSEGNA 0x10  /* about one recipient: <consegna> */
#define K_RICEZIONE 0x20 /* about the recipients taken in charge: <ricezione> */
#define K_ESTESO 0x40    /* carries errore-esteso */
#define K_VIRUS 0x80     /* errore-esteso made from the virus name when not given */

/* errore of the notice: fixed by the kind, or (ERR_FROM_FACTS) the caller's */
#define ERR_FROM_FACTS (-1)

struct kind {
    const char *name;
    enum pec_tipo tipo;
    const char *x_ricevuta;
    const char *prefix;
    unsigned flags;
    int errore;
    enum pec_ricevuta ricevuta;
    const char *timeout_code; /* the timeout notices: their errore-esteso code */
};

static const struct kind kinds[PEC_NOTICE_KIND_COUNT] = {
    [PEC_NOTICE_ACCETTAZIONE] = {"accettazione", PEC_TIPO_ACCETTAZIONE, "accettazione",
                                 "ACCETTAZIONE: ", 0, PEC_ERRORE_NESSUNO, PEC_RICEVUTA_NONE, NULL},
    [PEC_NOTICE_NON_ACCETTAZIONE] = {"non-accettazione", PEC_TIPO_NON_ACCETTAZIONE,
                                     "non-accettazione", "AVVISO DI NON ACCETTAZIONE: ", K_ESTESO,
                                     PEC_ERRORE_ALTRO, PEC_RICEVUTA_NONE, NULL},
    [PEC_NOTICE_NON_ACCETTAZIONE_VIRUS] = {"non-accettazione-virus", PEC_TIPO_NON_ACCETTAZIONE,
                                           "non-accettazione",
                                           "AVVISO DI NON ACCETTAZIONE PER VIRUS: ",
                                           K_VERIFICA | K_ESTESO | K_VIRUS, PEC_ERRORE_VIRUS,
                                           PEC_RICEVUTA_NONE, NULL},
    [PEC_NOTICE_PRESA_IN_CARICO] = {"presa-in-carico", PEC_TIPO_PRESA_IN_CARICO, "presa-in-carico",
                                    "PRESA IN CARICO: ", K_RICEZIONE, PEC_ERRORE_NESSUNO,
                                    PEC_RICEVUTA_NONE, NULL},
    [PEC_NOTICE_CONSEGNA_COMPLETA] = {"consegna-completa", PEC_TIPO_AVVENUTA_CONSEGNA,
                                      "avvenuta-consegna", "CONSEGNA: ", K_ORIGINAL | K_CONSEGNA,
                                      PEC_ERRORE_NESSUNO, PEC_RICEVUTA_COMPLETA, NULL},
    [PEC_NOTICE_CONSEGNA_BREVE] = {"consegna-breve", PEC_TIPO_AVVENUTA_CONSEGNA,
                                   "avvenuta-consegna", "CONSEGNA: ", K_BREVE | K_CONSEGNA,
                                   PEC_ERRORE_NESSUNO, PEC_RICEVUTA_BREVE, NULL},
    [PEC_NOTICE_CONSEGNA_SINTETICA] = {"consegna-sintetica", PEC_TIPO_AVVENUTA_CONSEGNA,
                                       "avvenuta-consegna", "CONSEGNA: ", K_CONSEGNA,
                                       PEC_ERRORE_NESSUNO, PEC_RICEVUTA_SINTETICA, NULL},
    [PEC_NOTICE_MANCATA_CONSEGNA] = {"mancata-consegna", PEC_TIPO_ERRORE_CONSEGNA,
                                     "errore-consegna",
                                     "AVVISO DI MANCATA CONSEGNA: ", K_CONSEGNA | K_ESTESO,
                                     ERR_FROM_FACTS, PEC_RICEVUTA_NONE, NULL},
    [PEC_NOTICE_MANCATA_CONSEGNA_VIRUS] = {"mancata-consegna-virus", PEC_TIPO_ERRORE_CONSEGNA,
                                           "errore-consegna",
                                           "AVVISO DI MANCATA CONSEGNA PER VIRUS: ",
                                           K_VERIFICA | K_CONSEGNA | K_ESTESO | K_VIRUS,
                                           PEC_ERRORE_VIRUS, PEC_RICEVUTA_NONE, NULL},
    /* the 12 h notice is a warning (nessuno), the 24 h one closes the transaction (altro) */
    [PEC_NOTICE_PREAVVISO_12H] = {"preavviso-12h", PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA,
                                  "preavviso-errore-consegna",
                                  "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
                                  K_CONSEGNA | K_ESTESO, PEC_ERRORE_NESSUNO, PEC_RICEVUTA_NONE,
                                  "4.4.7"},
    [PEC_NOTICE_PREAVVISO_24H] = {"preavviso-24h", PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA,
                                  "preavviso-errore-consegna",
                                  "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
                                  K_CONSEGNA | K_ESTESO, PEC_ERRORE_ALTRO, PEC_RICEVUTA_NONE,
                                  "5.4.1"},
    [PEC_NOTICE_RILEVAZIONE_VIRUS] = {"rilevazione-virus", PEC_TIPO_RILEVAZIONE_VIRUS,
                                      "rilevazione-virus", "PROBLEMA DI SICUREZZA: ",
                                      K_MITTENTE | K_CONSEGNA | K_ESTESO | K_VIRUS,
                                      PEC_ERRORE_VIRUS, PEC_RICEVUTA_NONE, NULL},
};

static const char *const timeout_text[] = {
    "messaggio non consegnato entro 12 ore dall'invio",
    "messaggio non consegnato entro 24 ore dall'invio",
};

const char *pec_notice_kind_name(enum pec_notice_kind kind)
{
    return (unsigned)kind < PEC_NOTICE_KIND_COUNT ? kinds[kind].name : NULL;
}

const char *pec_notice_x_ricevuta(enum pec_notice_kind kind)
{
    return (unsigned)kind < PEC_NOTICE_KIND_COUNT ? kinds[kind].x_ricevuta : NULL;
}

enum pec_tipo pec_notice_tipo(enum pec_notice_kind kind)
{
    return (unsigned)kind < PEC_NOTICE_KIND_COUNT ? kinds[kind].tipo : PEC_TIPO_ACCETTAZIONE;
}

enum pec_errore pec_notice_errore(enum pec_notice_kind kind, enum pec_errore given)
{
    if ((unsigned)kind >= PEC_NOTICE_KIND_COUNT)
        return PEC_ERRORE_ALTRO;
    if (kinds[kind].errore != ERR_FROM_FACTS)
        return (enum pec_errore)kinds[kind].errore;
    return given == PEC_ERRORE_NO_DEST || given == PEC_ERRORE_NO_DOMINIO ? given : PEC_ERRORE_ALTRO;
}

/* a value for a header or the XML: controls (CR, LF above all) become spaces */
static char *one_line(const char *s)
{
    char *out = xstrdup(s ? s : "");

    for (char *c = out; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    return out;
}

char *pec_errore_esteso(const char *code, const char *gestore, const char *text)
{
    char *c = one_line(code), *g = one_line(gestore), *t = one_line(text);
    char *out = xasprintf("%s - %s - %s", c, g, t);

    free(c);
    free(g);
    free(t);
    return out;
}

/* ---- daticert.xml ---- */

/*
 * The caller's facts with what the kind decides set; strings the copy owns
 * go to *OWNED (freed by the caller).
 */
static void notice_facts(const struct pec_issuer *iss, const struct pec_notice *n,
                         const struct pec_when *w, struct pec_daticert *d, char **owned)
{
    const struct kind *k = &kinds[n->kind];

    *d = *n->facts;
    *owned = NULL;
    d->tipo = k->tipo;
    d->errore = pec_notice_errore(n->kind, d->errore);
    d->gestore_emittente = (char *)iss->provider_name;
    d->giorno = (char *)w->giorno;
    d->ora = (char *)w->ora;
    d->zona = (char *)w->zona;
    d->ricevuta = k->ricevuta;
    if (!(k->flags & K_CONSEGNA))
        d->consegna = NULL;
    if (!(k->flags & K_RICEZIONE)) {
        d->ricezione = NULL;
        d->n_ricezione = 0;
    }
    if (!(k->flags & K_ESTESO)) {
        d->errore_esteso = NULL;
    } else if (k->timeout_code != NULL) {
        *owned = pec_errore_esteso(k->timeout_code, iss->provider_name,
                                   timeout_text[n->kind == PEC_NOTICE_PREAVVISO_24H]);
    } else if ((k->flags & K_VIRUS) && (d->errore_esteso == NULL || *d->errore_esteso == '\0')) {
        /* the antivirus's name for it may be anything: daticert.xml wants UTF-8 */
        const char *v = n->virus && *n->virus ? n->virus : "non identificato";
        char *clean = pec_utf8_sanitize(v, strlen(v)), *what;
        what = xasprintf("virus rilevato: %s", clean);
        *owned = pec_errore_esteso("5.7.1", iss->provider_name, what);
        free(clean);
        free(what);
    }
    if (*owned != NULL)
        d->errore_esteso = *owned;
}

/* ---- headers ---- */

static int printable_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            if (*s != '\t')
                return 0;
    return 1;
}

/*
 * V folded at white space so that lines stay within 78 characters where the
 * words allow; USED is what the field name takes on the first line.
 */
static char *fold(const char *v, size_t used)
{
    size_t cap = strlen(v) * 3 / 2 + 16, n = 0, col = used;
    char *out = xmalloc(cap);
    int word_on_line = 0;

    while (*v != '\0') {
        size_t ws = strspn(v, " \t"), wl = strcspn(v + ws, " \t");
        if (ws > 0 && word_on_line && col + ws + wl > 78) {
            out[n++] = '\r';
            out[n++] = '\n';
            col = 0;
            word_on_line = 0;
        }
        if (n + ws + wl + 3 > cap)
            out = xrealloc(out, cap = (n + ws + wl + 3) * 2);
        memcpy(out + n, v, ws + wl);
        n += ws + wl;
        col += ws + wl;
        if (wl > 0)
            word_on_line = 1;
        v += ws + wl;
    }
    out[n] = '\0';
    return out;
}

/* The original subject, unfolded, without the white space it starts with. */
static char *subject_text(const struct pec_notice *n)
{
    const char *src = n->subject_raw ? n->subject_raw : n->facts->oggetto;
    char *s = xmalloc(strlen(src ? src : "") + 1);
    size_t k = 0;

    for (const char *p = src ? src : ""; *p != '\0'; p++)
        if ((*p != '\r' && *p != '\n') && (k > 0 || (*p != ' ' && *p != '\t')))
            s[k++] = *p;
    s[k] = '\0';
    return s;
}

/*
 * Prefix and subject: a subject in plain ASCII (encoded words included, as
 * most clients write it) is kept as it was and folded at its spaces;
 * anything else is taken as UTF-8 and written as encoded words.
 */
static char *subject_value(const struct pec_notice *n)
{
    const char *prefix = kinds[n->kind].prefix;
    char *text = subject_text(n), *v;

    if (printable_ascii(text)) {
        char *joined = xasprintf("%s%s", prefix, text);
        v = fold(joined, strlen("Subject: "));
        free(joined);
    } else {
        char *utf8 = pec_utf8_sanitize(text, strlen(text));
        v = pec_rfc2047_value("Subject", prefix, utf8);
        free(utf8);
    }
    free(text);
    return v;
}

/* an address or id that goes into a header as it is: no space, no controls, no 8 bits */
static int plain_token(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static int header_safe(const char *what, const char *s, char *err, size_t errlen)
{
    if (plain_token(s))
        return 0;
    pec_seterr(err, errlen, "notice: %s is empty or not a plain address", what);
    return -1;
}

static void add_headers(const struct pec_issuer *iss, const struct pec_notice *n,
                        const struct pec_when *w, struct pec_built *out)
{
    const struct kind *k = &kinds[n->kind];
    const struct pec_daticert *f = n->facts;
    char *subject = subject_value(n), *ref, *mid;

    if (plain_token(f->msgid))
        ref = f->msgid[0] == '<' ? xstrdup(f->msgid) : xasprintf("<%s>", f->msgid);
    else
        ref = xasprintf("<%s>", f->identificativo);
    out->message_id = pec_ident_message_id(iss->ident);
    mid = xasprintf("<%s>", out->message_id);

    pec_headers_add(&out->headers, "X-Ricevuta", k->x_ricevuta);
    if (k->flags & K_VERIFICA)
        pec_headers_add(&out->headers, "X-VerificaSicurezza", "errore");
    if (k->flags & K_MITTENTE)
        pec_headers_add(&out->headers, "X-Mittente", f->mittente);
    pec_headers_add(&out->headers, "Date", w->date);
    pec_headers_add(&out->headers, "Subject", subject);
    pec_headers_add(&out->headers, "From", iss->service_address);
    pec_headers_add(&out->headers, "To", n->to);
    pec_headers_add(&out->headers, "X-Riferimento-Message-ID", ref);
    pec_headers_add(&out->headers, "Message-ID", mid);
    free(subject);
    free(ref);
    free(mid);
}

/* ---- parts ---- */

static int has_8bit(const unsigned char *chunk, size_t n, void *arg)
{
    for (size_t i = 0; i < n; i++)
        if (chunk[i] & 0x80)
            return 1;
    return 0;
}

/* 7bit when it is, else 8bit: message/rfc822 may not be encoded (RFC 2046 5.2.1) */
static const char *rfc822_encoding(const struct pec_spool *sp)
{
    size_t size = pec_spool_size(sp);
    return size > 0 && pec_spool_each(sp, 0, size, has_8bit, NULL) != 0 ? "8bit" : "7bit";
}

struct parts {
    char plain_type[64], html_type[64];
    struct pec_part alt[2];
    struct pec_part v[3];
    size_t n;
};

static void set_parts(struct parts *p, const struct pec_notice_text *t,
                      const struct pec_spool *orig, const char *xml, size_t xml_len)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->plain_type, sizeof(p->plain_type), "text/plain; charset=\"%s\"", t->charset);
    snprintf(p->html_type, sizeof(p->html_type), "text/html; charset=\"%s\"", t->charset);
    p->alt[0] = (struct pec_part){.content_type = p->plain_type,
                                  .disposition = "inline",
                                  .encoding = "quoted-printable",
                                  .data = (const unsigned char *)t->plain,
                                  .len = t->plain_len};
    p->alt[1] = (struct pec_part){.content_type = p->html_type,
                                  .disposition = "inline",
                                  .encoding = "quoted-printable",
                                  .data = (const unsigned char *)t->html,
                                  .len = t->html_len};
    p->v[p->n++] = (struct pec_part){
        .content_type = "multipart/alternative", .children = p->alt, .n_children = 2};
    if (orig != NULL)
        p->v[p->n++] = (struct pec_part){.content_type = "message/rfc822; name=\"postacert.eml\"",
                                         .disposition = "inline; filename=\"postacert.eml\"",
                                         .encoding = rfc822_encoding(orig),
                                         .spool = orig};
    p->v[p->n++] = (struct pec_part){.content_type = "application/xml; name=\"daticert.xml\"",
                                     .disposition = "inline; filename=\"daticert.xml\"",
                                     .encoding = "base64",
                                     .data = (const unsigned char *)xml,
                                     .len = xml_len};
}

/* ---- the builder ---- */

static int check_request(const struct pec_issuer *iss, const struct pec_notice *n, char *err,
                         size_t errlen)
{
    if ((unsigned)n->kind >= PEC_NOTICE_KIND_COUNT) {
        pec_seterr(err, errlen, "notice: unknown kind %d", (int)n->kind);
        return -1;
    }
    if (n->facts == NULL || n->facts->identificativo == NULL) {
        pec_seterr(err, errlen, "notice %s: no facts or no identificativo", kinds[n->kind].name);
        return -1;
    }
    if ((kinds[n->kind].flags & (K_ORIGINAL | K_BREVE)) && n->postacert == NULL) {
        pec_seterr(err, errlen, "notice %s: postacert.eml missing", kinds[n->kind].name);
        return -1;
    }
    if (header_safe("To", n->to, err, errlen) != 0 ||
        header_safe("identificativo", n->facts->identificativo, err, errlen) != 0 ||
        header_safe("the service address", iss->service_address, err, errlen) != 0)
        return -1;
    if ((kinds[n->kind].flags & K_MITTENTE) &&
        header_safe("mittente", n->facts->mittente, err, errlen) != 0)
        return -1;
    return 0;
}

/* the breve form of postacert.eml in a new spool, or NULL with err */
static struct pec_spool *breve_original(const struct pec_issuer *iss, const struct pec_spool *orig,
                                        char *err, size_t errlen)
{
    struct pec_spool *sp = pec_spool_new(iss->spool_dir, iss->spool_mem_limit);

    if (sp == NULL) {
        pec_seterr(err, errlen, "notice consegna-breve: no spool: %s", strerror(errno));
        return NULL;
    }
    if (pec_breve_build(orig, sp, NULL, err, errlen) != 0) {
        pec_spool_free(sp);
        return NULL;
    }
    return sp;
}

int pec_build_notice(const struct pec_issuer *iss, const struct pec_notice *n,
                     struct pec_built *out, char *err, size_t errlen)
{
    struct pec_when w;
    struct pec_daticert d;
    struct pec_notice_text text;
    struct pec_spool *breve = NULL;
    const struct pec_spool *orig = NULL;
    struct parts parts;
    char *owned = NULL, *xml = NULL;
    size_t xml_len = 0;
    time_t when;
    int rc = -1, started = 0;

    memset(out, 0, sizeof(*out));
    if (check_request(iss, n, err, errlen) != 0)
        return -1;
    when = n->when ? n->when : pec_clock_now(iss->clock);
    if (pec_time_format(iss->clock, when, &w) != 0) {
        pec_seterr(err, errlen, "notice %s: the instant %lld cannot be shown", kinds[n->kind].name,
                   (long long)when);
        return -1;
    }
    notice_facts(iss, n, &w, &d, &owned);
    if (pec_daticert_write(&d, &xml, &xml_len, err, errlen) != 0)
        goto done;
    if (kinds[n->kind].flags & K_BREVE) {
        if ((breve = breve_original(iss, n->postacert, err, errlen)) == NULL)
            goto done;
        orig = breve;
    } else if (kinds[n->kind].flags & K_ORIGINAL) {
        orig = n->postacert;
    }
    pec_notice_text_build(n, &d, &text);
    set_parts(&parts, &text, orig, xml, xml_len);
    add_headers(iss, n, &w, out);
    started = 1;
    rc = pec_envelope_sign(iss, parts.v, parts.n, when, out, err, errlen);
    pec_notice_text_free(&text);
done:
    if (rc != 0 && started) {
        pec_built_free(out);
        memset(out, 0, sizeof(*out));
    }
    if (breve != NULL)
        pec_spool_free(breve);
    free(xml);
    free(owned);
    return rc;
}
