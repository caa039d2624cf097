/*
 * original - the submitted message's bytes, envelope and header facts.
 *
 * Only the header section is read into memory, and only up to
 * PEC_HEADER_MAX: a 30 MB body stays in its spool.  Fields are located by
 * offset so the busta builder can copy everything around the one field it
 * replaces (Message-ID) without re-serialising anything.  The body is read
 * once, to tell 7bit from 8bit and to find the first line too long and the
 * first NUL byte.
 */
#include "message/original.h"
#include "message/libinit.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#define READ_CHUNK (64 * 1024)

static void push(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = xstrdup(s);
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* "<a@b>" or " a@b " -> "a@b" */
static char *bare_address(const char *s)
{
    size_t len;

    s += strspn(s, " \t");
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= 2 && s[0] == '<' && s[len - 1] == '>')
        return xstrndup(s + 1, len - 2);
    return xstrndup(s, len);
}

/* ---------------------------------------------------------------- the header section */

/*
 * Read the header section into *BUF: up to the blank line, or the whole message when it
 * has none.  Sets header_len and body_offset.
 */
static int read_header_section(struct pec_original *o, unsigned char **buf, char *err,
                               size_t errlen)
{
    size_t size = pec_spool_size(o->raw), have = 0;
    unsigned char *b = NULL;

    for (;;) {
        size_t want = size - have < READ_CHUNK ? size - have : READ_CHUNK;
        size_t from = have >= 3 ? have - 3 : 0;
        const unsigned char *end;
        ssize_t n;

        b = xrealloc(b, have + want + 1);
        n = pec_spool_pread(o->raw, have, b + have, want);
        if (n < 0) {
            pec_seterr(err, errlen, "cannot read the message: %s", strerror(errno));
            free(b);
            return -1;
        }
        have += (size_t)n;
        if (have >= 2 && b[0] == '\r' && b[1] == '\n') {
            o->header_len = 0;
            o->body_offset = 2;
            break;
        }
        if ((end = memmem(b + from, have - from, "\r\n\r\n", 4)) != NULL) {
            o->header_len = (size_t)(end - b) + 2;
            o->body_offset = o->header_len + 2;
            break;
        }
        if (have > PEC_HEADER_MAX) {
            pec_seterr(err, errlen, "the header section is larger than %d bytes", PEC_HEADER_MAX);
            free(b);
            return -1;
        }
        if (n == 0 || have == size) {
            o->header_len = o->body_offset = have;
            break;
        }
    }
    if (o->header_len > PEC_HEADER_MAX) {
        pec_seterr(err, errlen, "the header section is larger than %d bytes", PEC_HEADER_MAX);
        free(b);
        return -1;
    }
    b[o->header_len] = '\0';
    *buf = b;
    return 0;
}

/* A field name is printable ASCII without colon or space; "From foo" (mbox) is not one. */
static size_t field_name_len(const unsigned char *line, size_t n)
{
    size_t i = 0;

    while (i < n && line[i] > 32 && line[i] < 127 && line[i] != ':')
        i++;
    if (i == 0)
        return 0;
    /* obsolete syntax allows whitespace before the colon */
    for (size_t k = i; k < n && (line[k] == ' ' || line[k] == '\t'); k++)
        if (line[k + 1] == ':')
            return i;
    return i < n && line[i] == ':' ? i : 0;
}

static void split_fields(struct pec_original *o, const unsigned char *h, size_t hlen)
{
    size_t pos = 0, cap = 0;
    struct pec_field *cur = NULL;

    while (pos < hlen) {
        const unsigned char *eol = memmem(h + pos, hlen - pos, "\r\n", 2);
        size_t next = eol ? (size_t)(eol - h) + 2 : hlen;
        size_t nlen;

        if ((h[pos] == ' ' || h[pos] == '\t') && cur != NULL) {
            cur->len = next - cur->off; /* a continuation line */
        } else if ((nlen = field_name_len(h + pos, next - pos)) > 0) {
            if (o->n_fields == cap) {
                cap = cap ? 2 * cap : 32;
                o->fields = xrealloc(o->fields, cap * sizeof(*o->fields));
            }
            cur = &o->fields[o->n_fields++];
            cur->name = xstrndup((const char *)h + pos, nlen);
            cur->off = pos;
            cur->len = next - pos;
        } else {
            cur = NULL; /* not a field: kept in the bytes, ignored here */
        }
        pos = next;
    }
}

/* ---------------------------------------------------------------- values */

/* bytes of field F after its colon, in memory */
static char *field_tail(const struct pec_original *o, const struct pec_field *f, size_t *len)
{
    char *buf = xmalloc(f->len + 1);
    ssize_t n = pec_spool_pread(o->raw, f->off, buf, f->len);
    char *colon;
    size_t skip;

    if (n < 0)
        n = 0;
    buf[n] = '\0';
    /* NUL would cut the C string short: a header has no use for it */
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    colon = memchr(buf, ':', (size_t)n);
    skip = colon ? (size_t)(colon - buf) + 1 : (size_t)n;
    memmove(buf, buf + skip, (size_t)n - skip + 1);
    *len = (size_t)n - skip;
    return buf;
}

/* S[0..LEN) without its outer whitespace, NUL-terminated in place */
static char *trim(char *s, size_t len)
{
    size_t lead = 0;

    while (lead < len && strchr(" \t\r\n", s[lead]) != NULL)
        lead++;
    while (len > lead && strchr(" \t\r\n", s[len - 1]) != NULL)
        len--;
    memmove(s, s + lead, len - lead);
    s[len - lead] = '\0';
    return s;
}

char *pec_original_field_raw(const struct pec_original *o, const struct pec_field *f)
{
    size_t len;
    char *v = field_tail(o, f, &len);

    return trim(v, len);
}

/* unfolded: the CRLF of each fold removed, its whitespace kept (RFC 5322 2.2.3) */
static char *field_unfolded(const struct pec_original *o, const struct pec_field *f)
{
    size_t len, out = 0;
    char *v = field_tail(o, f, &len);

    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\r' && i + 1 < len && v[i + 1] == '\n') {
            i++;
            continue;
        }
        v[out++] = v[i] == '\r' || v[i] == '\n' ? ' ' : v[i];
    }
    return trim(v, out);
}

char *pec_original_header(const struct pec_original *o, const char *name)
{
    for (size_t i = 0; i < o->n_fields; i++)
        if (strcasecmp(o->fields[i].name, name) == 0)
            return field_unfolded(o, &o->fields[i]);
    return NULL;
}

/* ---------------------------------------------------------------- facts */

static void collect_addresses(InternetAddressList *list, char ***v, size_t *n)
{
    int len = internet_address_list_length(list);

    for (int i = 0; i < len; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);

        if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            const char *a = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));

            if (a != NULL && *a != '\0')
                push(v, n, a);
        } else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            collect_addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), v, n);
        }
    }
}

static void parse_addresses(const char *value, char ***v, size_t *n)
{
    char *clean = pec_utf8_sanitize(value, strlen(value));
    InternetAddressList *list = internet_address_list_parse(NULL, clean);

    if (list != NULL) {
        collect_addresses(list, v, n);
        g_object_unref(list);
    }
    free(clean);
}

static char *decode_subject(const char *unfolded)
{
    char *clean = pec_utf8_sanitize(unfolded, strlen(unfolded));
    char *decoded = g_mime_utils_header_decode_text(NULL, clean);
    char *out;

    free(clean);
    if (decoded == NULL)
        return xstrdup("");
    out = pec_utf8_sanitize(decoded, strlen(decoded));
    g_free(decoded);
    return out;
}

/* visible ASCII only: the id is repeated in headers we sign, where 8-bit has no place */
static int id_chars_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 32 || (unsigned char)s[i] >= 127 || s[i] == '<' || s[i] == '>')
            return 0;
    return n > 0;
}

/*
 * "<id>" from a Message-ID value: the first bracketed token, else a lone bare token;
 * NULL when neither is a usable id (the field is still replaced in postacert.eml).
 */
static char *message_id_of(const char *v)
{
    const char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;

    if (lt != NULL && gt != NULL)
        return id_chars_ok(lt + 1, (size_t)(gt - lt) - 1) ? xstrndup(lt, (size_t)(gt - lt) + 1)
                                                          : NULL;
    if (lt != NULL || !id_chars_ok(v, strlen(v)))
        return NULL;
    return xasprintf("<%s>", v);
}

static enum pec_ricevuta tipo_of(const char *v)
{
    if (strcasecmp(v, "breve") == 0)
        return PEC_RICEVUTA_BREVE;
    if (strcasecmp(v, "sintetica") == 0)
        return PEC_RICEVUTA_SINTETICA;
    return PEC_RICEVUTA_COMPLETA;
}

/* fields whose first occurrence alone counts: a later duplicate is the client's noise */
struct seen {
    int subject, message_id, tipo;
};

static int first(int *seen)
{
    int was = *seen;

    *seen = 1;
    return !was;
}

static void field_facts(struct pec_original *o, const struct pec_field *f, struct seen *seen)
{
    char *v;

    if (strcasecmp(f->name, "Subject") == 0 && first(&seen->subject)) {
        v = field_unfolded(o, f);
        o->subject = decode_subject(v);
        o->subject_raw = pec_original_field_raw(o, f);
    } else if (strcasecmp(f->name, "Message-ID") == 0 && first(&seen->message_id)) {
        v = field_unfolded(o, f);
        o->message_id = message_id_of(v);
    } else if (strcasecmp(f->name, "X-TipoRicevuta") == 0 && first(&seen->tipo)) {
        v = field_unfolded(o, f);
        o->tipo_ricevuta = tipo_of(v);
    } else if (strcasecmp(f->name, "From") == 0) {
        v = field_unfolded(o, f);
        parse_addresses(v, &o->from, &o->n_from);
    } else if (strcasecmp(f->name, "To") == 0) {
        v = field_unfolded(o, f);
        parse_addresses(v, &o->to, &o->n_to);
    } else if (strcasecmp(f->name, "Cc") == 0) {
        v = field_unfolded(o, f);
        parse_addresses(v, &o->cc, &o->n_cc);
    } else if (strcasecmp(f->name, "Reply-To") == 0) {
        v = field_unfolded(o, f);
        o->has_reply_to = 1;
        parse_addresses(v, &o->reply_to, &o->n_reply_to);
    } else if (strcasecmp(f->name, "Bcc") == 0) {
        v = field_unfolded(o, f);
        o->bcc_has_value |= *v != '\0';
    } else {
        return;
    }
    free(v);
}

static void all_facts(struct pec_original *o)
{
    struct seen seen = {0};

    o->tipo_ricevuta = PEC_RICEVUTA_COMPLETA;
    for (size_t i = 0; i < o->n_fields; i++)
        field_facts(o, &o->fields[i], &seen);
}

/* One pass over the bytes, chunk by chunk: a line may span two chunks. */
struct scan {
    struct pec_original *o;
    size_t at;          /* offset of the chunk at hand */
    size_t line_off;    /* where the current line starts */
    size_t number;      /* the current line's, in its part */
    unsigned char last; /* the byte before the chunk at hand */
};

/* the line from S->line_off ends at END (its LF, or the end of the message) */
static void end_line(struct scan *s, size_t end, int crlf)
{
    size_t len = end - s->line_off - (crlf ? 1 : 0);

    if (len > PEC_LINE_MAX && s->o->long_line.number == 0)
        s->o->long_line = (struct pec_line){s->line_off, len, s->number};
    s->line_off = end + 1;
    /* the body counts its lines from 1 again */
    s->number = s->line_off == s->o->body_offset ? 1 : s->number + 1;
}

static int scan_chunk(const unsigned char *chunk, size_t n, void *arg)
{
    struct scan *s = arg;
    struct pec_original *o = s->o;
    size_t i = 0;

    for (size_t k = 0; k < n && !o->eight_bit; k++)
        o->eight_bit = chunk[k] >= 0x80 || chunk[k] == '\0';
    while (i < n) {
        const unsigned char *lf = memchr(chunk + i, '\n', n - i);
        size_t end = lf != NULL ? (size_t)(lf - chunk) : n;

        if (o->nul_line.number == 0 && memchr(chunk + i, '\0', end - i) != NULL)
            o->nul_line = (struct pec_line){s->line_off, 0, s->number};
        if (lf == NULL)
            break;
        end_line(s, s->at + end, (end > 0 ? chunk[end - 1] : s->last) == '\r');
        i = end + 1;
    }
    if (n > 0)
        s->last = chunk[n - 1];
    s->at += n;
    return 0;
}

static int scan(struct pec_original *o)
{
    struct scan s = {.o = o, .number = 1};
    size_t size = pec_spool_size(o->raw);

    if (pec_spool_each(o->raw, 0, size, scan_chunk, &s) < 0)
        return -1;
    if (s.line_off < size)
        end_line(&s, size, 0); /* the last line, without its CRLF */
    return 0;
}

/* ---------------------------------------------------------------- entry points */

static int parse(struct pec_original *o, char *err, size_t errlen)
{
    unsigned char *h = NULL;

    if (pec_lib_init(err, errlen) < 0 || read_header_section(o, &h, err, errlen) < 0)
        return -1;
    split_fields(o, h, o->header_len);
    free(h);
    all_facts(o);
    if (scan(o) < 0) {
        pec_seterr(err, errlen, "cannot read the message: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int pec_original_view(struct pec_original *o, const struct pec_spool *raw, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->raw = raw;
    return parse(o, err, errlen);
}

int pec_original_parse(struct pec_original *o, struct pec_spool *raw, const char *mail_from,
                       const char *const *rcpts, size_t n_rcpts, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->raw = o->own = raw;
    if (mail_from != NULL)
        o->mail_from = bare_address(mail_from);
    for (size_t i = 0; i < n_rcpts; i++) {
        char *a = bare_address(rcpts[i]);

        push(&o->rcpts, &o->n_rcpts, a);
        free(a);
    }
    return parse(o, err, errlen);
}

int pec_original_from_mem(struct pec_original *o, const void *buf, size_t len,
                          const char *spool_dir, size_t mem_limit, const char *mail_from,
                          const char *const *rcpts, size_t n_rcpts, char *err, size_t errlen)
{
    struct pec_spool *sp = pec_spool_new(spool_dir, mem_limit);

    if (pec_spool_write_crlf(sp, buf, len) < 0) {
        pec_seterr(err, errlen, "cannot spool the message: %s", strerror(errno));
        memset(o, 0, sizeof(*o));
        pec_spool_free(sp);
        return -1;
    }
    return pec_original_parse(o, sp, mail_from, rcpts, n_rcpts, err, errlen);
}

void pec_original_free(struct pec_original *o)
{
    if (o == NULL)
        return;
    pec_spool_free(o->own);
    free(o->mail_from);
    free_list(o->rcpts, o->n_rcpts);
    for (size_t i = 0; i < o->n_fields; i++)
        free(o->fields[i].name);
    free(o->fields);
    free_list(o->from, o->n_from);
    free_list(o->to, o->n_to);
    free_list(o->cc, o->n_cc);
    free_list(o->reply_to, o->n_reply_to);
    free(o->subject);
    free(o->subject_raw);
    free(o->message_id);
    memset(o, 0, sizeof(*o));
}

const char *pec_original_mittente(const struct pec_original *o)
{
    if (o->mail_from != NULL && *o->mail_from != '\0')
        return o->mail_from;
    return o->n_from > 0 ? o->from[0] : "";
}
