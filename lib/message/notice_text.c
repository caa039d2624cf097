/*
 * notice_text - Italian texts of the notices.
 *
 * A text is a title and a list of lines in UTF-8.  Every value taken from the
 * message (subject, addresses, error, virus name) goes through
 * pec_utf8_sanitize first, so a line never holds a control character or a
 * broken sequence, whatever the original carried.  The plain rendering is
 * then recoded to ISO-8859-1 when it can be; the HTML rendering escapes
 * every character that is not plain printable ASCII.
 */
#include "message/notice_text.h"
#include "util/encode.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct doc {
    char **line;
    size_t n;
};

static void say(struct doc *doc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct doc *doc, const char *fmt, ...)
{
    va_list ap;
    int len;
    char *s;

    va_start(ap, fmt);
    len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        len = 0;
    s = xmalloc((size_t)len + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    doc->line = xrealloc(doc->line, (doc->n + 1) * sizeof(*doc->line));
    doc->line[doc->n++] = s;
}

/* A value from the message, fit for a line: valid UTF-8, no controls. */
static char *clean(const char *s)
{
    return pec_utf8_sanitize(s ? s : "", s ? strlen(s) : 0);
}

/* ---- the pieces the texts share ---- */

struct facts {
    char *oggetto, *mittente, *consegna, *errore, *virus;
};

static void facts_load(struct facts *f, const struct pec_notice *n, const struct pec_daticert *d)
{
    f->oggetto = clean(d->oggetto);
    f->mittente = clean(d->mittente);
    f->consegna = clean(d->consegna);
    f->errore = clean(d->errore_esteso);
    f->virus = clean(n->virus && *n->virus ? n->virus : "non identificato");
}

static void facts_free(struct facts *f)
{
    free(f->oggetto);
    free(f->mittente);
    free(f->consegna);
    free(f->errore);
    free(f->virus);
}

/* "Il giorno ... il messaggio con Oggetto" / "... nel messaggio ..." and the sender */
static void opening(struct doc *doc, const struct pec_daticert *d, const struct facts *f,
                    const char *il_nel)
{
    say(doc, "Il giorno %s alle ore %s (%s) %s messaggio con Oggetto", d->giorno, d->ora, d->zona,
        il_nel);
    say(doc, "\"%s\" inviato da \"%s\"", f->oggetto, f->mittente);
}

static const char *kind_of_box(enum pec_dest_tipo t)
{
    return t == PEC_DEST_ESTERNO ? "posta ordinaria" : "posta certificata";
}

static void one_recipient(struct doc *doc, const struct pec_destinatario *r)
{
    char *a = clean(r->address);
    say(doc, "%s (\"%s\")", a, kind_of_box(r->tipo));
    free(a);
}

/* all recipients, those in copy apart, each with its kind of mailbox */
static void all_recipients(struct doc *doc, const struct pec_notice *n,
                           const struct pec_daticert *d)
{
    int any_to = 0, any_cc = 0;

    for (size_t i = 0; i < d->n_destinatari; i++) {
        if (n->is_cc != NULL && n->is_cc[i])
            any_cc = 1;
        else
            any_to = 1;
    }
    if (any_to)
        say(doc, "ed indirizzato a:");
    for (size_t i = 0; any_to && i < d->n_destinatari; i++)
        if (n->is_cc == NULL || !n->is_cc[i])
            one_recipient(doc, &d->destinatari[i]);
    if (any_cc)
        say(doc, any_to ? "e in copia a:" : "ed indirizzato in copia a:");
    for (size_t i = 0; any_cc && i < d->n_destinatari; i++)
        if (n->is_cc[i])
            one_recipient(doc, &d->destinatari[i]);
}

/* the recipient a per-recipient notice is about */
static void the_recipient(struct doc *doc, const struct facts *f)
{
    say(doc, "e destinato all'utente");
    say(doc, "\"%s\"", f->consegna);
}

static void closing(struct doc *doc, const struct pec_daticert *d)
{
    char *id = clean(d->identificativo);

    say(doc, "%s", "");
    say(doc, "L'allegato daticert.xml contiene informazioni di servizio sulla trasmissione.");
    say(doc, "Identificativo del messaggio: %s", id);
    free(id);
}

/* ---- one function per kind ---- */

static const char *accettazione(struct doc *doc, const struct pec_notice *n,
                                const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "il");
    all_recipients(doc, n, d);
    say(doc, "è stato accettato dal sistema ed inoltrato.");
    return "Ricevuta di accettazione";
}

static const char *non_accettazione(struct doc *doc, const struct pec_notice *n,
                                    const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "nel");
    all_recipients(doc, n, d);
    say(doc, "è stato rilevato un problema che ne impedisce l'accettazione a causa di:");
    say(doc, "%s", f->errore);
    say(doc, "Il messaggio non è stato accettato.");
    return "Avviso di non accettazione";
}

static const char *non_accettazione_virus(struct doc *doc, const struct pec_notice *n,
                                          const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "nel");
    all_recipients(doc, n, d);
    say(doc, "è stato rilevato un problema di sicurezza che ne impedisce l'accettazione:");
    say(doc, "il messaggio contiene il virus \"%s\".", f->virus);
    say(doc, "Il messaggio non è stato accettato e non è stato inoltrato ai destinatari.");
    return "Avviso di non accettazione per virus";
}

static const char *presa_in_carico(struct doc *doc, const struct pec_notice *n,
                                   const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "il");
    say(doc, "ed indirizzato a:");
    for (size_t i = 0; i < d->n_ricezione; i++) {
        char *a = clean(d->ricezione[i]);
        say(doc, "%s", a);
        free(a);
    }
    say(doc, "è stato preso in carico dal sistema di destinazione.");
    return "Ricevuta di presa in carico";
}

static const char *consegna(struct doc *doc, const struct pec_notice *n,
                            const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "il");
    say(doc, "ed indirizzato a \"%s\"", f->consegna);
    say(doc, "è stato correttamente consegnato al destinatario.");
    switch (n->kind) {
    case PEC_NOTICE_CONSEGNA_COMPLETA:
        say(doc, "Il messaggio originale è incluso in allegato nel file \"postacert.eml\".");
        break;
    case PEC_NOTICE_CONSEGNA_BREVE:
        say(doc, "Il messaggio originale è incluso in allegato nel file \"postacert.eml\",");
        say(doc, "con ciascun allegato sostituito dalla sua impronta SHA-1 (file \".hash\").");
        break;
    default:
        say(doc, "Questa ricevuta sintetica non include il messaggio originale.");
        break;
    }
    return "Ricevuta di avvenuta consegna";
}

static const char *mancata_consegna(struct doc *doc, const struct pec_notice *n,
                                    const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "nel");
    the_recipient(doc, f);
    say(doc, "è stato rilevato il seguente errore:");
    say(doc, "%s", f->errore);
    say(doc, "Il messaggio è stato rifiutato dal sistema.");
    return "Avviso di mancata consegna";
}

static const char *mancata_consegna_virus(struct doc *doc, const struct pec_notice *n,
                                          const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "nel");
    the_recipient(doc, f);
    say(doc, "è stato rilevato un problema di sicurezza:");
    say(doc, "il messaggio contiene il virus \"%s\".", f->virus);
    say(doc, "Il messaggio non è stato consegnato.");
    return "Avviso di mancata consegna per virus";
}

static const char *preavviso_12h(struct doc *doc, const struct pec_notice *n,
                                 const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "il");
    the_recipient(doc, f);
    say(doc, "non risulta consegnato entro le prime 12 ore dal suo invio.");
    say(doc, "Il messaggio potrebbe ancora essere consegnato, ma si consideri possibile");
    say(doc, "un esito negativo. Se entro le prossime 12 ore non giungerà conferma");
    say(doc, "della consegna, verrà inviato un ulteriore avviso.");
    say(doc, "%s", f->errore);
    return "Avviso di mancata consegna per superamento dei tempi massimi (12 ore)";
}

static const char *preavviso_24h(struct doc *doc, const struct pec_notice *n,
                                 const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "il");
    the_recipient(doc, f);
    say(doc, "non risulta consegnato entro 24 ore dal suo invio.");
    say(doc, "La trasmissione si considera conclusa con esito negativo.");
    say(doc, "%s", f->errore);
    return "Avviso di mancata consegna per superamento dei tempi massimi (24 ore)";
}

static const char *rilevazione_virus(struct doc *doc, const struct pec_notice *n,
                                     const struct pec_daticert *d, const struct facts *f)
{
    opening(doc, d, f, "nel");
    the_recipient(doc, f);
    say(doc, "è stato rilevato un problema di sicurezza:");
    say(doc, "il messaggio contiene il virus \"%s\".", f->virus);
    say(doc, "Il messaggio non è stato consegnato al destinatario.");
    return "Avviso di rilevazione virus";
}

typedef const char *(*text_fn)(struct doc *, const struct pec_notice *, const struct pec_daticert *,
                               const struct facts *);

static const text_fn texts[PEC_NOTICE_KIND_COUNT] = {
    [PEC_NOTICE_ACCETTAZIONE] = accettazione,
    [PEC_NOTICE_NON_ACCETTAZIONE] = non_accettazione,
    [PEC_NOTICE_NON_ACCETTAZIONE_VIRUS] = non_accettazione_virus,
    [PEC_NOTICE_PRESA_IN_CARICO] = presa_in_carico,
    [PEC_NOTICE_CONSEGNA_COMPLETA] = consegna,
    [PEC_NOTICE_CONSEGNA_BREVE] = consegna,
    [PEC_NOTICE_CONSEGNA_SINTETICA] = consegna,
    [PEC_NOTICE_MANCATA_CONSEGNA] = mancata_consegna,
    [PEC_NOTICE_MANCATA_CONSEGNA_VIRUS] = mancata_consegna_virus,
    [PEC_NOTICE_PREAVVISO_12H] = preavviso_12h,
    [PEC_NOTICE_PREAVVISO_24H] = preavviso_24h,
    [PEC_NOTICE_RILEVAZIONE_VIRUS] = rilevazione_virus,
};

/* ---- rendering ---- */

struct buf {
    char *p;
    size_t n, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* the code point at *S (valid UTF-8: every line went through clean() or is ours) */
static unsigned long next_cp(const char **s)
{
    const unsigned char *p = (const unsigned char *)*s;
    unsigned long cp;
    int more;

    if (p[0] < 0x80) {
        cp = p[0];
        more = 0;
    } else if (p[0] < 0xe0) {
        cp = p[0] & 0x1f;
        more = 1;
    } else if (p[0] < 0xf0) {
        cp = p[0] & 0x0f;
        more = 2;
    } else {
        cp = p[0] & 0x07;
        more = 3;
    }
    for (int i = 1; i <= more && p[i] != '\0'; i++)
        cp = cp << 6 | (p[i] & 0x3f);
    for (p++; more > 0 && *p != '\0'; more--)
        p++;
    *s = (const char *)p;
    return cp;
}

static void add_html(struct buf *b, const char *s)
{
    static const char *const named[128] = {
        ['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;", ['\''] = "&#39;",
    };
    char ref[16];

    while (*s != '\0') {
        unsigned long cp = next_cp(&s);
        if (cp < 128 && named[cp] != NULL) {
            buf_puts(b, named[cp]);
        } else if (cp >= 0x20 && cp < 0x7f) {
            char c = (char)cp;
            buf_add(b, &c, 1);
        } else {
            snprintf(ref, sizeof(ref), "&#%lu;", cp);
            buf_puts(b, ref);
        }
    }
}

/* title and lines, in UTF-8 */
static void render_plain(const struct doc *doc, const char *title, struct buf *b)
{
    buf_puts(b, "-- ");
    buf_puts(b, title);
    buf_puts(b, " --\r\n\r\n");
    for (size_t i = 0; i < doc->n; i++) {
        buf_puts(b, doc->line[i]);
        buf_puts(b, "\r\n");
    }
}

static void render_html(const struct doc *doc, const char *title, struct buf *b)
{
    buf_puts(b, "<html>\r\n<head><title>");
    add_html(b, title);
    buf_puts(b, "</title></head>\r\n<body>\r\n<h3>");
    add_html(b, title);
    buf_puts(b, "</h3>\r\n<hr>\r\n<p>\r\n");
    for (size_t i = 0; i < doc->n; i++) {
        if (doc->line[i][0] == '\0') {
            buf_puts(b, "</p>\r\n<p>\r\n");
            continue;
        }
        add_html(b, doc->line[i]);
        buf_puts(b, "<br>\r\n");
    }
    buf_puts(b, "</p>\r\n</body>\r\n</html>\r\n");
}

void pec_notice_text_build(const struct pec_notice *n, const struct pec_daticert *d,
                           struct pec_notice_text *out)
{
    struct doc doc = {0};
    struct facts f;
    struct buf plain = {0}, html = {0};
    const char *title;
    char *latin1;
    int lossless;

    memset(out, 0, sizeof(*out));
    facts_load(&f, n, d);
    title = texts[n->kind](&doc, n, d, &f);
    closing(&doc, d);
    render_plain(&doc, title, &plain);
    render_html(&doc, title, &html);
    latin1 = pec_utf8_to_latin1(plain.p, &lossless);
    out->title = xstrdup(title);
    if (lossless) {
        free(plain.p);
        out->plain = latin1;
        out->charset = "iso-8859-1";
    } else {
        free(latin1);
        out->plain = plain.p;
        out->charset = "utf-8";
    }
    out->plain_len = strlen(out->plain);
    out->html = html.p;
    out->html_len = html.n;
    for (size_t i = 0; i < doc.n; i++)
        free(doc.line[i]);
    free(doc.line);
    facts_free(&f);
}

void pec_notice_text_free(struct pec_notice_text *t)
{
    free(t->title);
    free(t->plain);
    free(t->html);
    memset(t, 0, sizeof(*t));
}
