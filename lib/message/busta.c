/*
 * busta - build the busta di trasporto and the busta di anomalia.
 *
 * The texts are composed in UTF-8 from sanitised pieces (the subject, the
 * addresses and the reason may hold anything a client wrote), then turned
 * into ISO-8859-1 when nothing is lost.  The HTML escapes every character it
 * did not write itself, so a subject cannot open a tag.
 */
#include "message/busta.h"
#include "util/encode.h"
#include "util/xalloc.h"
#include "util/err.h"
#include "message/sevenbit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int name_in(const char *name, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcasecmp(name, *set) == 0)
            return 1;
    return 0;
}

int pec_busta_keeps(const char *name)
{
    static const char *const kept[] = {"Received", "To", "Cc", "Return-Path", "Reply-To", NULL};

    return name_in(name, kept);
}

int pec_anomalia_keeps(const char *name)
{
    return pec_busta_keeps(name) || strcasecmp(name, "Message-ID") == 0;
}

/* ---------------------------------------------------------------- postacert.eml */

static int write_identity(struct pec_spool *out, const char *identificativo, const char *client)
{
    if (pec_spool_printf(out, "Message-ID: <%s>\r\n", identificativo) < 0)
        return -1;
    return client == NULL ? 0 : pec_spool_printf(out, "X-Riferimento-Message-ID: %s\r\n", client);
}

int pec_postacert_write(const struct pec_original *o, const char *identificativo,
                        struct pec_spool *out)
{
    size_t cursor = 0, size = pec_spool_size(o->raw);
    int replaced = 0;

    for (size_t i = 0; i < o->n_fields; i++) {
        const struct pec_field *f = &o->fields[i];

        if (strcasecmp(f->name, "Message-ID") != 0)
            continue;
        if (pec_spool_copy(out, o->raw, cursor, f->off - cursor) < 0 ||
            (!replaced && write_identity(out, identificativo, o->message_id) < 0))
            return -1;
        replaced = 1;
        cursor = f->off + f->len;
    }
    if (!replaced) {
        unsigned char last = 0;

        if (pec_spool_copy(out, o->raw, cursor, o->header_len - cursor) < 0 ||
            (o->header_len > 0 && pec_spool_pread(o->raw, o->header_len - 1, &last, 1) != 1))
            return -1;
        /* a header-only message may end without a line break */
        if ((o->header_len > 0 && last != '\n' && pec_spool_puts(out, "\r\n") < 0) ||
            write_identity(out, identificativo, o->message_id) < 0)
            return -1;
        cursor = o->header_len;
    }
    return pec_spool_copy(out, o->raw, cursor, size - cursor);
}

/*
 * *POSTACERT made 7-bit (sevenbit.h), the busta's parts travelling on 7-bit transport
 * (pec-rules.md 3.1): 0, or -1 with err (the access point refused what cannot be).
 */
static int seven_bit(const struct pec_issuer *iss, struct pec_spool **postacert, char *err,
                     size_t errlen)
{
    struct pec_spool *out = pec_spool_new(iss->spool_dir, iss->spool_mem_limit);
    unsigned char *copy;
    const unsigned char *msg = pec_spool_whole(*postacert, &copy);
    char why[300];
    int rc = msg == NULL ? -1 : pec_7bit(msg, pec_spool_size(*postacert), out, why, sizeof(why));

    free(copy);
    if (rc != 0) {
        pec_seterr(err, errlen, "cannot make postacert.eml 7-bit: %s",
                   rc > 0 ? why : strerror(errno));
        pec_spool_free(out);
        return -1;
    }
    pec_spool_free(*postacert);
    *postacert = out;
    return 0;
}

/* ---------------------------------------------------------------- texts */

struct sbuf {
    char *p;
    size_t n;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    char *s;
    size_t len;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) {
        va_end(ap);
        fprintf(stderr, "pecmilter: fatal: out of memory\n");
        abort();
    }
    va_end(ap);
    len = strlen(s);
    b->p = xrealloc(b->p, b->n + len + 1);
    memcpy(b->p + b->n, s, len + 1);
    b->n += len;
    free(s);
}

/* one line of text from anything a client wrote: valid UTF-8, no line breaks */
static char *one_line(const char *s)
{
    char *clean = pec_utf8_sanitize(s ? s : "", strlen(s ? s : ""));

    for (char *p = clean; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == '\t')
            *p = ' ';
    return clean;
}

/* UTF-8 -> ASCII HTML text: markup characters and everything non-ASCII as references */
static void sb_html(struct sbuf *b, const char *utf8)
{
    const unsigned char *s = (const unsigned char *)utf8;

    while (*s != '\0') {
        unsigned long cp = *s;
        size_t n = 1;

        if (*s >= 0xf0 && s[1] && s[2] && s[3]) {
            cp = (unsigned long)(s[0] & 7) << 18 | (unsigned long)(s[1] & 63) << 12 |
                 (unsigned long)(s[2] & 63) << 6 | (s[3] & 63);
            n = 4;
        } else if (*s >= 0xe0 && s[1] && s[2]) {
            cp = (unsigned long)(s[0] & 15) << 12 | (unsigned long)(s[1] & 63) << 6 | (s[2] & 63);
            n = 3;
        } else if (*s >= 0xc0 && s[1]) {
            cp = (unsigned long)(s[0] & 31) << 6 | (s[1] & 63);
            n = 2;
        }
        if (cp == '&' || cp == '<' || cp == '>' || cp == '"' || cp == '\'' || cp >= 0x80)
            sb_printf(b, "&#%lu;", cp);
        else if (cp >= 0x20 && cp != 0x7f)
            sb_printf(b, "%c", (int)cp);
        s += n;
    }
}

/*
 * A text part from UTF-8 TEXT: ISO-8859-1 when every character fits, else UTF-8.
 * *CTYPE and *DATA are the caller's to free.
 */
static void text_part(const char *subtype, const char *text, struct pec_part *part, char **ctype,
                      char **data)
{
    int lossless;
    char *latin1 = pec_utf8_to_latin1(text, &lossless);

    if (lossless) {
        *data = latin1;
        *ctype = xasprintf("text/%s; charset=\"iso-8859-1\"", subtype);
    } else {
        free(latin1);
        *data = xstrdup(text);
        *ctype = xasprintf("text/%s; charset=\"utf-8\"", subtype);
    }
    memset(part, 0, sizeof(*part));
    part->content_type = *ctype;
    part->encoding = "quoted-printable";
    part->data = (const unsigned char *)*data;
    part->len = strlen(*data);
}

/* what the texts of a busta say, every string already one clean line */
struct busta_text {
    const struct pec_when *w;
    char *oggetto;
    char *mittente;
    char **rcpt;
    size_t n_rcpt;
    char *identificativo;
};

static char *busta_plain(const struct busta_text *t)
{
    struct sbuf b = {0};

    sb_printf(&b,
              "Messaggio di posta certificata\r\n"
              "\r\n"
              "Il giorno %s alle ore %s (%s) il messaggio\r\n"
              "\"%s\" \xc3\xa8 stato inviato da \"%s\"\r\n"
              "indirizzato a:\r\n",
              t->w->giorno, t->w->ora, t->w->zona, t->oggetto, t->mittente);
    for (size_t i = 0; i < t->n_rcpt; i++)
        sb_printf(&b, "%s\r\n", t->rcpt[i]);
    sb_printf(&b,
              "\r\n"
              "Il messaggio originale \xc3\xa8 incluso in allegato.\r\n"
              "L'allegato daticert.xml contiene informazioni di servizio sulla trasmissione.\r\n"
              "Identificativo messaggio: %s\r\n",
              t->identificativo);
    return b.p;
}

static char *busta_html(const struct busta_text *t)
{
    struct sbuf b = {0};

    sb_printf(&b, "<!DOCTYPE html>\r\n"
                  "<html lang=\"it\">\r\n"
                  "<head>\r\n"
                  "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\">\r\n"
                  "<title>Messaggio di posta certificata</title>\r\n"
                  "</head>\r\n"
                  "<body>\r\n"
                  "<h3>Messaggio di posta certificata</h3>\r\n");
    sb_printf(&b, "<p>Il giorno %s alle ore %s (%s) il messaggio<br>\r\n&quot;", t->w->giorno,
              t->w->ora, t->w->zona);
    sb_html(&b, t->oggetto);
    sb_printf(&b, "&quot; &egrave; stato inviato da &quot;");
    sb_html(&b, t->mittente);
    sb_printf(&b, "&quot;<br>\r\nindirizzato a:</p>\r\n<p>\r\n");
    for (size_t i = 0; i < t->n_rcpt; i++) {
        sb_html(&b, t->rcpt[i]);
        sb_printf(&b, "<br>\r\n");
    }
    sb_printf(&b, "</p>\r\n<p>Il messaggio originale &egrave; incluso in allegato.<br>\r\n"
                  "L'allegato daticert.xml contiene informazioni di servizio sulla "
                  "trasmissione.</p>\r\n<p>Identificativo messaggio: ");
    sb_html(&b, t->identificativo);
    sb_printf(&b, "</p>\r\n</body>\r\n</html>\r\n");
    return b.p;
}

/* ---------------------------------------------------------------- top-level headers */

/*
 * RAW can follow "NAME: PREFIX" as it is: ASCII, CR and LF only as the CRLF of a fold,
 * no line longer than RFC 5322's 998 characters.  A bare CR could end our header early
 * in some MTA's eyes, so such a subject is re-encoded instead.
 */
static int fits_as_written(const char *name, const char *prefix, const char *raw)
{
    size_t col = strlen(name) + 2 + strlen(prefix);

    if (!pec_is_ascii(raw, strlen(raw)))
        return 0;
    for (const char *p = raw; *p != '\0'; p++) {
        if (*p == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
            p++;
            col = 0;
        } else if (*p == '\r' || *p == '\n' || ++col > 998) {
            return 0;
        }
    }
    return 1;
}

/* "Subject: <prefix><original>": as written when it can be, else encoded-words */
static void add_subject(struct pec_headers *h, const char *prefix, const struct pec_original *o)
{
    char *v;

    if (o->subject_raw == NULL)
        v = xstrdup(prefix);
    else if (fits_as_written("Subject", prefix, o->subject_raw))
        v = xasprintf("%s%s", prefix, o->subject_raw);
    else
        v = pec_rfc2047_value("Subject", prefix, o->subject);
    pec_headers_add(h, "Subject", v);
    free(v);
}

/* From: "Per conto di: <who>" <service>, the display name quoted or encoded as it needs */
static void add_from(struct pec_headers *h, const char *who, const char *service)
{
    char *name = xasprintf("Per conto di: %s", who), *v;

    if (pec_is_ascii(name, strlen(name))) {
        struct sbuf q = {0};

        sb_printf(&q, "\"");
        for (const char *p = name; *p; p++)
            sb_printf(&q, "%s%c", *p == '"' || *p == '\\' ? "\\" : "", *p);
        v = xasprintf("%s\" <%s>", q.p, service);
        free(q.p);
    } else {
        char *enc = pec_rfc2047_value("From", "", name);

        v = xasprintf("%s <%s>", enc, service);
        free(enc);
    }
    pec_headers_add(h, "From", v);
    free(v);
    free(name);
}

static int issuer_ok(const struct pec_issuer *iss, char *err, size_t errlen)
{
    if (iss == NULL || iss->signer == NULL || iss->clock == NULL || iss->service_address == NULL ||
        iss->provider_name == NULL) {
        pec_seterr(err, errlen, "the issuer is incomplete");
        return -1;
    }
    return 0;
}

static int when_of(const struct pec_issuer *iss, time_t when, struct pec_when *w, char *err,
                   size_t errlen)
{
    if (pec_time_format(iss->clock, when, w) < 0) {
        pec_seterr(err, errlen, "cannot show the instant %lld", (long long)when);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- busta di trasporto */

static const char *risposte_of(const struct pec_original *o)
{
    if (o->n_reply_to > 0)
        return o->reply_to[0];
    return o->n_from > 0 ? o->from[0] : pec_original_mittente(o);
}

static char *daticert_of(const struct pec_issuer *iss, const struct pec_original *o,
                         const struct pec_destinatario *classified, size_t n,
                         const char *identificativo, const struct pec_when *w, size_t *len,
                         char *err, size_t errlen)
{
    char *mittente = one_line(pec_original_mittente(o));
    char *risposte = one_line(risposte_of(o));
    char *msgid = o->message_id ? one_line(o->message_id) : NULL;
    struct pec_daticert d = {
        .tipo = PEC_TIPO_POSTA_CERTIFICATA,
        .errore = PEC_ERRORE_NESSUNO,
        .mittente = mittente,
        .destinatari = (struct pec_destinatario *)classified,
        .n_destinatari = n,
        .risposte = risposte,
        .oggetto = o->subject,
        .gestore_emittente = (char *)iss->provider_name,
        .giorno = (char *)w->giorno,
        .ora = (char *)w->ora,
        .zona = (char *)w->zona,
        .identificativo = (char *)identificativo,
        .msgid = msgid,
        .ricevuta = o->tipo_ricevuta,
    };
    char *xml = NULL;

    if (pec_daticert_write(&d, &xml, len, err, errlen) < 0)
        xml = NULL;
    free(mittente);
    free(risposte);
    free(msgid);
    return xml;
}

static void add_busta_headers(struct pec_headers *h, const struct pec_issuer *iss,
                              const struct pec_original *o, const char *identificativo,
                              const struct pec_when *w)
{
    char *mittente = one_line(pec_original_mittente(o));
    char *id = xasprintf("<%s>", identificativo);

    pec_headers_add(h, "X-Trasporto", "posta-certificata");
    pec_headers_add(h, "Date", w->date);
    add_subject(h, "POSTA CERTIFICATA: ", o);
    add_from(h, mittente, iss->service_address);
    if (!o->has_reply_to && (o->n_from > 0 || *mittente != '\0'))
        pec_headers_add(h, "Reply-To", o->n_from > 0 ? o->from[0] : mittente);
    pec_headers_add(h, "Message-ID", id);
    if (o->message_id != NULL)
        pec_headers_add(h, "X-Riferimento-Message-ID", o->message_id);
    pec_headers_add(h, "X-TipoRicevuta", pec_ricevuta_name(o->tipo_ricevuta));
    free(id);
    free(mittente);
}

static int identificativo_ok(const char *id, char *err, size_t errlen)
{
    if (id == NULL || *id == '\0' || strpbrk(id, "<> \t\r\n") != NULL || strchr(id, '@') == NULL) {
        pec_seterr(err, errlen, "\"%s\" is not an identificativo", id ? id : "(null)");
        return -1;
    }
    return 0;
}

static struct busta_text busta_text_of(const struct pec_original *o,
                                       const struct pec_destinatario *classified, size_t n,
                                       const char *identificativo, const struct pec_when *w)
{
    struct busta_text t = {.w = w, .n_rcpt = n};

    t.oggetto = one_line(o->subject);
    t.mittente = one_line(pec_original_mittente(o));
    t.identificativo = one_line(identificativo);
    t.rcpt = xcalloc(n ? n : 1, sizeof(*t.rcpt));
    for (size_t i = 0; i < n; i++)
        t.rcpt[i] = one_line(classified[i].address);
    return t;
}

static void busta_text_free(struct busta_text *t)
{
    free(t->oggetto);
    free(t->mittente);
    free(t->identificativo);
    for (size_t i = 0; i < t->n_rcpt; i++)
        free(t->rcpt[i]);
    free(t->rcpt);
}

int pec_build_busta(const struct pec_issuer *iss, const struct pec_original *o,
                    const struct pec_destinatario *classified, size_t n, const char *identificativo,
                    time_t when, struct pec_built *out, char *err, size_t errlen)
{
    struct pec_when w;
    struct pec_spool *postacert = NULL;
    struct busta_text t;
    struct pec_part alt[2], parts[3];
    char *plain = NULL, *html = NULL, *ct_plain = NULL, *ct_html = NULL, *d_plain = NULL,
         *d_html = NULL, *xml = NULL;
    size_t xml_len = 0;
    int ret = -1;

    memset(out, 0, sizeof(*out));
    if (issuer_ok(iss, err, errlen) < 0 || identificativo_ok(identificativo, err, errlen) < 0 ||
        when_of(iss, when, &w, err, errlen) < 0)
        return -1;
    if (n == 0) {
        pec_seterr(err, errlen, "a busta needs at least one To or Cc recipient");
        return -1;
    }
    if (o->header_cut) {
        pec_seterr(err, errlen,
                   "the original's header section was cut at %d bytes: not the message",
                   PEC_HEADER_MAX);
        return -1;
    }
    if ((xml = daticert_of(iss, o, classified, n, identificativo, &w, &xml_len, err, errlen)) ==
        NULL)
        return -1;
    postacert = pec_spool_new(iss->spool_dir, iss->spool_mem_limit);
    if (pec_postacert_write(o, identificativo, postacert) < 0) {
        pec_seterr(err, errlen, "cannot write postacert.eml: %s", strerror(errno));
        goto done;
    }
    if (o->eight_bit && seven_bit(iss, &postacert, err, errlen) != 0)
        goto done;
    t = busta_text_of(o, classified, n, identificativo, &w);
    plain = busta_plain(&t);
    html = busta_html(&t);
    busta_text_free(&t);
    text_part("plain", plain, &alt[0], &ct_plain, &d_plain);
    text_part("html", html, &alt[1], &ct_html, &d_html);
    parts[0] = (struct pec_part){
        .content_type = "multipart/alternative", .children = alt, .n_children = 2};
    parts[1] = (struct pec_part){.content_type = "application/xml; name=\"daticert.xml\"",
                                 .disposition = "inline; filename=\"daticert.xml\"",
                                 .encoding = "base64",
                                 .data = (const unsigned char *)xml,
                                 .len = xml_len};
    parts[2] = (struct pec_part){.content_type = "message/rfc822; name=\"postacert.eml\"",
                                 .disposition = "inline; filename=\"postacert.eml\"",
                                 .encoding = "7bit",
                                 .spool = postacert};
    add_busta_headers(&out->headers, iss, o, identificativo, &w);
    if (pec_envelope_sign(iss, parts, 3, when, out, err, errlen) < 0) {
        pec_built_free(out);
        goto done;
    }
    out->message_id = xstrdup(identificativo);
    ret = 0;

done:
    pec_spool_free(postacert);
    free(plain);
    free(html);
    free(ct_plain);
    free(ct_html);
    free(d_plain);
    free(d_html);
    free(xml);
    return ret;
}

/* ---------------------------------------------------------------- busta di anomalia */

static char *anomalia_plain(const struct pec_original *o, const struct pec_when *w,
                            const char *reason)
{
    char *oggetto = one_line(o->subject), *mittente = one_line(o->n_from ? o->from[0] : "");
    char *why = one_line(reason);
    struct sbuf b = {0};

    sb_printf(&b,
              "Anomalia nel messaggio\r\n"
              "\r\n"
              "Il giorno %s alle ore %s (%s) \xc3\xa8 stato ricevuto\r\n"
              "il messaggio \"%s\" proveniente da \"%s\"\r\n"
              "ed indirizzato a:\r\n",
              w->giorno, w->ora, w->zona, oggetto, mittente);
    for (size_t i = 0; i < o->n_to + o->n_cc; i++) {
        char *r = one_line(i < o->n_to ? o->to[i] : o->cc[i - o->n_to]);

        sb_printf(&b, "%s\r\n", r);
        free(r);
    }
    sb_printf(&b,
              "\r\n"
              "Tali dati non sono stati certificati per il seguente errore:\r\n"
              "%s\r\n"
              "\r\n"
              "Il messaggio originale \xc3\xa8 incluso in allegato.\r\n",
              why);
    free(oggetto);
    free(mittente);
    free(why);
    return b.p;
}

static void add_anomalia_headers(struct pec_headers *h, const struct pec_issuer *iss,
                                 const struct pec_original *o, const struct pec_when *w)
{
    char *mittente = one_line(o->n_from ? o->from[0] : "");

    pec_headers_add(h, "X-Trasporto", "errore");
    pec_headers_add(h, "Date", w->date);
    add_subject(h, "ANOMALIA MESSAGGIO: ", o);
    add_from(h, mittente, iss->service_address);
    if (!o->has_reply_to && o->n_from > 0)
        pec_headers_add(h, "Reply-To", o->from[0]);
    free(mittente);
}

static char *bare_id(const char *id)
{
    size_t len = id ? strlen(id) : 0;

    return len >= 2 ? xstrndup(id + 1, len - 2) : NULL;
}

int pec_build_anomalia(const struct pec_issuer *iss, const struct pec_spool *received,
                       const char *reason, time_t when, struct pec_built *out, char *err,
                       size_t errlen)
{
    struct pec_original o;
    struct pec_when w;
    struct pec_part parts[2];
    char *plain = NULL, *ctype = NULL, *data = NULL;
    int ret = -1;

    memset(out, 0, sizeof(*out));
    if (issuer_ok(iss, err, errlen) < 0 || when_of(iss, when, &w, err, errlen) < 0)
        return -1;
    if (reason == NULL || *reason == '\0') {
        pec_seterr(err, errlen, "a busta di anomalia needs the reason");
        return -1;
    }
    if (pec_original_view(&o, received, err, errlen) < 0)
        goto done;
    plain = anomalia_plain(&o, &w, reason);
    text_part("plain", plain, &parts[0], &ctype, &data);
    parts[1] = (struct pec_part){.content_type = "message/rfc822; name=\"postacert.eml\"",
                                 .disposition = "inline; filename=\"postacert.eml\"",
                                 .encoding = o.eight_bit ? "8bit" : "7bit",
                                 .spool = received};
    add_anomalia_headers(&out->headers, iss, &o, &w);
    if (pec_envelope_sign(iss, parts, 2, when, out, err, errlen) < 0) {
        pec_built_free(out);
        goto done;
    }
    out->message_id = bare_id(o.message_id);
    ret = 0;

done:
    pec_original_free(&o);
    free(plain);
    free(ctype);
    free(data);
    return ret;
}

/* ---------------------------------------------------------------- standalone */

int pec_built_full(const struct pec_built *b, const struct pec_spool *raw,
                   int (*keeps)(const char *name), struct pec_spool *out, char *err, size_t errlen)
{
    struct pec_original o;
    int ret = 0;

    if (pec_original_view(&o, raw, err, errlen) < 0) {
        pec_original_free(&o);
        return -1;
    }
    for (size_t i = 0; i < o.n_fields && ret == 0; i++) {
        const struct pec_field *f = &o.fields[i];
        unsigned char last = 0;

        if (!keeps(f->name))
            continue;
        ret = pec_spool_copy(out, raw, f->off, f->len);
        /* the last field of a header-only message may lack its line break */
        if (ret == 0 && (pec_spool_pread(raw, f->off + f->len - 1, &last, 1) != 1 ||
                         (last != '\n' && pec_spool_puts(out, "\r\n") < 0)))
            ret = -1;
    }
    if (ret == 0)
        ret = pec_built_to_spool(b, out);
    if (ret < 0)
        pec_seterr(err, errlen, "cannot write the message: %s", strerror(errno));
    pec_original_free(&o);
    return ret;
}
