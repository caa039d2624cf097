/*
 * mime - raw MIME utilities over the bytes exactly as they were received.
 *
 * Scanners move line by line with memchr and compare at line starts only, which is what
 * keeps them linear on hostile input (see mime.h).  Only RFC 2047 decoding into UTF-8 is
 * left to GMime, whose charset tables we have no reason to duplicate; pec_lib_init() sets
 * GMime up once per process before that.  Encoded words in a parameter value are decoded
 * here, because there the bytes stay in their charset and no table is needed.
 */
#include "message/mime.h"
#include "message/daticert.h"
#include "message/libinit.h"
#include "util/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

static int is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

/* The LF ending the line that starts at P, or END when the line has none. */
static const unsigned char *line_end(const unsigned char *p, const unsigned char *end)
{
    const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));

    return nl != NULL ? nl : end;
}

static struct pec_span span(const unsigned char *p, size_t len)
{
    struct pec_span s = {p, len};

    return s;
}

int pec_mime_split(const unsigned char *msg, size_t len, struct pec_span *head,
                   struct pec_span *body)
{
    const unsigned char *p = msg, *end = msg + len;

    while (p < end) {
        size_t blank = *p == '\n' ? 1 : (*p == '\r' && p + 1 < end && p[1] == '\n') ? 2 : 0;

        if (blank) {
            *head = span(msg, (size_t)(p - msg));
            *body = span(p + blank, (size_t)(end - p - blank));
            return 1;
        }
        p = line_end(p, end);
        if (p < end)
            p++;
    }
    *head = span(msg, len);
    *body = span(end, 0);
    return 0;
}

void pec_mime_fields_init(struct pec_mime_fields *it, struct pec_span head)
{
    it->p = head.p;
    it->end = head.p + head.len;
}

/* A field name is printable ASCII without a colon (RFC 5322 2.2). */
static int valid_name(const unsigned char *p, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 33 || p[i] > 126)
            return 0;
    return 1;
}

int pec_mime_fields_next(struct pec_mime_fields *it, struct pec_mime_field *f)
{
    const unsigned char *start = it->p, *end = it->end, *q, *stop, *colon;
    size_t namelen;

    if (start >= end)
        return 0;
    q = line_end(start, end);
    while (q + 1 < end && is_wsp(q[1]))
        q = line_end(q + 1, end);
    it->p = q < end ? q + 1 : end;
    stop = q > start && q[-1] == '\r' ? q - 1 : q;

    colon = memchr(start, ':', (size_t)(line_end(start, end) - start));
    f->name = span(start, 0);
    f->value = span(start, (size_t)(stop - start));
    if (colon == NULL || colon > stop)
        return 1;
    namelen = (size_t)(colon - start);
    while (namelen > 0 && is_wsp(start[namelen - 1]))
        namelen--;
    if (!valid_name(start, namelen))
        return 1;
    f->name.len = namelen;
    f->value = span(colon + 1, (size_t)(stop - colon - 1));
    return 1;
}

int pec_mime_field_is(const struct pec_mime_field *f, const char *name)
{
    size_t n = strlen(name);

    return f->name.len == n && strncasecmp((const char *)f->name.p, name, n) == 0;
}

char *pec_mime_unfold(struct pec_span value)
{
    char *out = xmalloc(value.len + 1);
    size_t k = 0, first = 0;

    for (size_t i = 0; i < value.len; i++) {
        unsigned char c = value.p[i];

        /* a CR of no line break is white space, as original.c and GMime take it:
         * "message/rfc822\rX" is message/rfc822 for a reader, not message/rfc822x */
        if (c == '\n' || (c == '\r' && i + 1 < value.len && value.p[i + 1] == '\n'))
            continue;
        out[k++] = c == '\0' || c == '\r' ? ' ' : (char)c;
    }
    while (k > 0 && is_wsp(out[k - 1]))
        k--;
    while (first < k && is_wsp(out[first]))
        first++;
    memmove(out, out + first, k - first);
    out[k - first] = '\0';
    return out;
}

char *pec_mime_header(struct pec_span head, const char *name)
{
    struct pec_mime_fields it;
    struct pec_mime_field f;

    pec_mime_fields_init(&it, head);
    while (pec_mime_fields_next(&it, &f))
        if (pec_mime_field_is(&f, name))
            return pec_mime_unfold(f.value);
    return NULL;
}

size_t pec_mime_header_count(struct pec_span head, const char *name)
{
    struct pec_mime_fields it;
    struct pec_mime_field f;
    size_t n = 0;

    pec_mime_fields_init(&it, head);
    while (pec_mime_fields_next(&it, &f))
        if (pec_mime_field_is(&f, name))
            n++;
    return n;
}

/* ------------------------------------------------------------ structured values */

/* Past the comment that opens at S, or NULL when it never closes. */
static const char *past_comment(const char *s)
{
    int depth = 0;

    for (; *s != '\0'; s++) {
        if (*s == '\\' && s[1] != '\0')
            s++;
        else if (*s == '(')
            depth++;
        else if (*s == ')' && --depth == 0)
            return s + 1;
    }
    return NULL;
}

/* Past white space and the comments that close; a comment that never closes stays. */
static const char *skip_closed_cfws(const char *s)
{
    const char *c;

    for (;;) {
        while (is_wsp(*s) || *s == '\r' || *s == '\n')
            s++;
        if (*s != '(' || (c = past_comment(s)) == NULL)
            return s;
        s = c;
    }
}

/*
 * White space, line ends and (nested) comments, as RFC 2045 allows between tokens; a
 * comment that never closes runs to the end.
 */
static const char *skip_cfws(const char *s)
{
    s = skip_closed_cfws(s);
    return *s == '(' ? s + strlen(s) : s;
}

/*
 * A byte of a token.  RFC 2045 tokens are ASCII, but an 8-bit byte is taken in as GMime
 * takes it, rather than ending the token: "message/rfc822\xd1\x83" is no message/rfc822
 * for a reader, so it is none here either (t/fuzz/crashes/gmime).
 */
static int is_token_char(int c)
{
    return c > 32 && c != 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static char *lower_dup(const char *s, size_t n)
{
    char *out = xstrndup(s, n);

    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return out;
}

/* A token at *S, lowercase; *S moves past it. */
static char *read_token(const char **s)
{
    const char *start = *s, *p = start;

    while (is_token_char((unsigned char)*p))
        p++;
    *s = p;
    return lower_dup(start, (size_t)(p - start));
}

char *pec_mime_encoding(struct pec_span head)
{
    char *v = pec_mime_header(head, "Content-Transfer-Encoding"), *mechanism;
    const char *s;

    if (v == NULL)
        return xstrdup("7bit");
    s = skip_cfws(v);
    mechanism = read_token(&s);
    free(v);
    return mechanism;
}

/* A quoted string at *S (which points at the quote), unquoted; *S moves past it. */
static char *read_quoted(const char **s)
{
    const char *p = *s + 1, *q = p;
    char *out;
    size_t k = 0;

    /* measure first: a value of a thousand parameters must not cost a thousand copies */
    while (*q != '\0' && *q != '"')
        q += q[0] == '\\' && q[1] != '\0' ? 2 : 1;
    out = xmalloc((size_t)(q - p) + 1);
    for (; p < q; p++) {
        if (*p == '\\' && p + 1 < q)
            p++;
        if (*p != '\r' && *p != '\n')
            out[k++] = *p;
    }
    out[k] = '\0';
    *s = *q == '"' ? q + 1 : q;
    return out;
}

/* An unquoted value: lenient, anything up to ';', white space or a comment. */
static char *read_bare(const char **s)
{
    const char *p = *s;

    while (*p != '\0' && *p != ';' && *p != '(' && *p != '"' && !is_wsp(*p) && *p != '\r' &&
           *p != '\n')
        p++;
    char *out = xstrndup(*s, (size_t)(p - *s));
    *s = p;
    return out;
}

/* Past garbage to the next ';' that is not inside a quoted string; always advances. */
static const char *skip_garbage(const char *s)
{
    int quoted = 0;

    for (s++; *s != '\0'; s++) {
        if (quoted && *s == '\\' && s[1] != '\0')
            s++;
        else if (*s == '"')
            quoted = !quoted;
        else if (*s == ';' && !quoted)
            break;
    }
    return s;
}

/*
 * Where the parameters begin after a type: past white space and the comments that
 * close, at the first ';', whatever junk lies before it ("" when there is none).  This
 * is how GMime reads a Content-Type after its subtype and a Content-Disposition from its
 * start; a value with junk there ("multipart/signed(; boundary=B", "attachment\";
 * filename=x.pdf") must give the parameters a GMime-based reader sees, or the inspector
 * and breve work on a boundary or a file name that reader does not (t/fuzz/crashes/gmime).
 */
static const char *params_after(const char *s)
{
    const char *semi;

    s = skip_closed_cfws(s);
    semi = strchr(s, ';');
    return semi != NULL ? semi : s + strlen(s);
}

/*
 * "type/subtype" at the start of the Content-Type S into *TYPE and *SUBTYPE, lowercase
 * ("" when missing); returns where the search for its parameters begins.
 */
static const char *read_type(const char *s, char **type, char **subtype)
{
    s = skip_cfws(s);
    *type = read_token(&s);
    s = skip_cfws(s);
    if (*s == '/') {
        s = skip_cfws(s + 1);
        *subtype = read_token(&s);
    } else {
        *subtype = xstrdup("");
    }
    return s;
}

static void params_add(struct pec_mime_params *pp, char *name, char *value)
{
    if (pp->n >= PEC_MIME_MAX_PARAMS) {
        free(name);
        free(value);
        return;
    }
    pp->v = xrealloc(pp->v, (pp->n + 1) * sizeof(*pp->v));
    pp->v[pp->n].name = name;
    pp->v[pp->n].value = value;
    pp->n++;
}

static void params_remove(struct pec_mime_params *pp, size_t i)
{
    free(pp->v[i].name);
    free(pp->v[i].value);
    memmove(pp->v + i, pp->v + i + 1, (pp->n - i - 1) * sizeof(*pp->v));
    pp->n--;
}

/* ------------------------------------------------------------ RFC 2231 */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Append S to the growing string *BUF of *LEN bytes, %XX-decoding when EXTENDED. */
static void append_section(char **buf, size_t *len, const char *s, int extended)
{
    size_t n = strlen(s);

    *buf = xrealloc(*buf, *len + n + 1);
    for (size_t i = 0; i < n; i++) {
        if (extended && s[i] == '%' && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            (*buf)[(*len)++] =
                (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        } else {
            (*buf)[(*len)++] = s[i];
        }
    }
    (*buf)[*len] = '\0';
}

static char *latin1_to_utf8(const char *s)
{
    char *out = xmalloc(2 * strlen(s) + 1), *o = out;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80) {
            *o++ = (char)*p;
        } else {
            *o++ = (char)(0xc0 | (*p >> 6));
            *o++ = (char)(0x80 | (*p & 0x3f));
        }
    }
    *o = '\0';
    return out;
}

/*
 * How NAME is an RFC 2231 piece of BASE: -1 not at all, else the section number (0 for
 * the single "base*" form); *EXTENDED says whether its value is %-encoded.
 */
static int section_of(const char *name, const char *base, size_t blen, int *extended)
{
    const char *p = name + blen;
    int n = 0;

    if (strncmp(name, base, blen) != 0 || *p != '*')
        return -1;
    p++;
    *extended = 1;
    if (*p == '\0')
        return 0;
    if (*p < '0' || *p > '9')
        return -1;
    /* every digit is read, the number capped: "name*99999999999=" is a piece all the
     * same (one past any join), as GMime reads it, not a parameter of that odd name */
    for (; *p >= '0' && *p <= '9'; p++)
        if (n < 10000)
            n = n * 10 + (*p - '0');
    *extended = *p == '*';
    return p[*extended] == '\0' ? n : -1;
}

/*
 * Every piece of BASE joined in section order and %-decoded, the bytes left in their
 * charset: *LEN of them, and *CHARSET the charset of an extended first piece as written
 * (NULL when there is none).
 */
static char *join_sections(const struct pec_mime_params *pp, const char *base, size_t *len,
                           char **charset)
{
    size_t blen = strlen(base);
    char *buf = xstrdup("");

    *len = 0;
    *charset = NULL;
    for (int sec = 0; sec < PEC_MIME_MAX_PARAMS; sec++) {
        size_t i;
        int ext = 0;

        for (i = 0; i < pp->n; i++)
            if (section_of(pp->v[i].name, base, blen, &ext) == sec)
                break;
        if (i == pp->n)
            break;
        const char *v = pp->v[i].value;
        if (sec == 0 && ext) {
            const char *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;

            if (q2 != NULL) {
                *charset = xstrndup(v, (size_t)(q1 - v));
                v = q2 + 1;
            }
        }
        append_section(&buf, len, v, ext);
    }
    return buf;
}

static int has_sections(const struct pec_mime_params *pp, const char *base)
{
    size_t blen = strlen(base);
    int ext;

    for (size_t i = 0; i < pp->n; i++)
        if (section_of(pp->v[i].name, base, blen, &ext) >= 0)
            return 1;
    return 0;
}

/* Join and decode every piece of BASE, and leave one plain parameter in UTF-8. */
static void join_rfc2231(struct pec_mime_params *pp, const char *base)
{
    size_t blen = strlen(base), len;
    char *charset, *buf = join_sections(pp, base, &len, &charset);

    for (size_t i = pp->n; i-- > 0;) {
        int ext;

        if (strcmp(pp->v[i].name, base) == 0 || section_of(pp->v[i].name, base, blen, &ext) >= 0)
            params_remove(pp, i);
    }
    if (charset != NULL &&
        (strcasecmp(charset, "iso-8859-1") == 0 || strcasecmp(charset, "latin1") == 0 ||
         strcasecmp(charset, "iso8859-1") == 0)) {
        char *u = latin1_to_utf8(buf);

        free(buf);
        buf = u;
    }
    free(charset);
    params_add(pp, xstrdup(base), buf);
}

/* Apply join_rfc2231 to every parameter name that has pieces. */
static void decode_rfc2231(struct pec_mime_params *pp)
{
    for (size_t i = 0; i < pp->n; i++) {
        const char *star = strchr(pp->v[i].name, '*');
        char *base;
        int ext;

        if (star == NULL || star == pp->v[i].name)
            continue;
        base = xstrndup(pp->v[i].name, (size_t)(star - pp->v[i].name));
        if (section_of(pp->v[i].name, base, strlen(base), &ext) >= 0) {
            join_rfc2231(pp, base);
            i = (size_t)-1; /* the array changed: start again; each pass removes a base */
        }
        free(base);
    }
}

/*
 * A parameter name at *S, lowercase; *S moves past it.  RFC 2231 names are read as GMime
 * reads them, white space and comments allowed around the stars and the section number
 * ("name* *=", "name*0 *=", "name* =") and a missing number taken for 0, and are given
 * back in their plain form ("name*0*"), so that a part named for a GMime-based reader
 * is named here too (t/fuzz/crashes/gmime).  Anything else is a token as written.
 */
static char *read_param_name(const char **s)
{
    const char *p = *s, *q, *digits;
    size_t blen, dlen;
    int ext = 0;
    char *name;

    while (is_token_char((unsigned char)*p) && *p != '*')
        p++;
    blen = (size_t)(p - *s);
    q = skip_cfws(p);
    if (blen == 0 || *q != '*')
        return read_token(s);
    q = skip_cfws(q + 1);
    digits = q;
    while (*q >= '0' && *q <= '9')
        q++;
    dlen = (size_t)(q - digits);
    if (dlen == 0 && *q == '=') {
        name = xasprintf("%.*s*", (int)blen, *s); /* name*=: one extended value */
    } else {
        q = skip_cfws(q);
        if (*q == '*') {
            ext = 1;
            q = skip_cfws(q + 1);
        }
        if (*q != '=')
            return read_token(s);
        name = dlen > 0 ? xasprintf("%.*s*%.*s%s", (int)blen, *s, (int)dlen, digits, ext ? "*" : "")
                        : xasprintf("%.*s*0%s", (int)blen, *s, ext ? "*" : "");
    }
    for (char *c = name; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    *s = q;
    return name;
}

/* The parameters as written, RFC 2231 pieces left apart. */
static void params_scan(const char *s, struct pec_mime_params *out)
{
    out->v = NULL;
    out->n = 0;
    while (*(s = skip_cfws(s)) != '\0') {
        char *name, *value;

        if (*s != ';') {
            s = skip_garbage(s);
            continue;
        }
        s = skip_cfws(s + 1);
        name = read_param_name(&s);
        s = skip_cfws(s);
        if (*name == '\0' || *s != '=') {
            free(name);
            continue;
        }
        /* a comment that never closes is where the value starts, as GMime reads it */
        s = skip_closed_cfws(s + 1);
        /*
         * Where the next parameter starts is where GMime starts it, so that both read
         * the same boundary and file name: after a value without quotes, at the next
         * ';' whatever lies before it (GMime takes it all into the value); after a
         * quoted one, only at a ';' that follows at once (GMime stops at anything else).
         */
        if (*s == '"') {
            value = read_quoted(&s);
            params_add(out, name, value);
            if (*(s = skip_cfws(s)) != ';')
                return;
        } else {
            value = read_bare(&s);
            params_add(out, name, value);
            s += strcspn(s, ";");
        }
    }
}

void pec_mime_params_parse(const char *s, struct pec_mime_params *out)
{
    params_scan(s, out);
    decode_rfc2231(out);
}

const char *pec_mime_param(const struct pec_mime_params *params, const char *name)
{
    for (size_t i = 0; i < params->n; i++)
        if (strcasecmp(params->v[i].name, name) == 0)
            return params->v[i].value;
    return NULL;
}

void pec_mime_params_free(struct pec_mime_params *params)
{
    for (size_t i = 0; i < params->n; i++) {
        free(params->v[i].name);
        free(params->v[i].value);
    }
    free(params->v);
    params->v = NULL;
    params->n = 0;
}

/* RFC 2047 Q encoding: '_' is a space, =XX a byte.  Writes at most N bytes to OUT. */
static size_t decode_q(const char *s, size_t n, char *out)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i] == '_' ? ' ' : s[i];

        if (c == '=' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        out[k++] = c;
    }
    return k;
}

/*
 * TEXT made only of RFC 2047 encoded words, decoded and left in its charset: the bytes,
 * and in *CHARSET the first word's charset as written.  NULL when TEXT is anything else or
 * decodes to nothing.  Unlike pec_mime_decode_text, nothing is converted, so the bytes
 * can be written back under the same charset.
 */
static char *decode_words(const char *text, size_t *len, char **charset)
{
    char *out = xmalloc(strlen(text) + 1), *cs = NULL;
    const char *s;
    size_t k = 0;

    for (s = skip_cfws(text); *s != '\0'; s = skip_cfws(s)) {
        const char *enc, *data, *close;

        if (s[0] != '=' || s[1] != '?' || (enc = strchr(s + 2, '?')) == NULL || enc[1] == '\0' ||
            enc[2] != '?' || (close = strstr(enc + 3, "?=")) == NULL)
            break;
        data = enc + 3;
        if (enc[1] == 'B' || enc[1] == 'b') {
            unsigned char *b;
            size_t blen;

            pec_base64_decode((const unsigned char *)data, (size_t)(close - data), &b, &blen);
            memcpy(out + k, b, blen);
            k += blen;
            free(b);
        } else if (enc[1] == 'Q' || enc[1] == 'q') {
            k += decode_q(data, (size_t)(close - data), out + k);
        } else {
            break;
        }
        if (cs == NULL)
            cs = xstrndup(s + 2, strcspn(s + 2, "*?"));
        s = close + 2;
    }
    if (*s != '\0' || k == 0) {
        free(out);
        free(cs);
        return NULL;
    }
    out[k] = '\0';
    *len = k;
    *charset = cs;
    return out;
}

/* Parameter NAME of the parameters that begin at S, as pec_mime_ctype_param_bytes says. */
static char *param_bytes(const char *s, const char *name, size_t *len, char **charset)
{
    struct pec_mime_params pp;
    const char *plain;
    char *out = NULL;

    *charset = NULL;
    params_scan(s, &pp);
    if (has_sections(&pp, name)) {
        out = join_sections(&pp, name, len, charset);
    } else if ((plain = pec_mime_param(&pp, name)) != NULL &&
               (strstr(plain, "=?") == NULL || (out = decode_words(plain, len, charset)) == NULL)) {
        *len = strlen(plain);
        out = xstrdup(plain);
    }
    pec_mime_params_free(&pp);
    return out;
}

char *pec_mime_ctype_param_bytes(const char *value, const char *name, size_t *len, char **charset)
{
    char *type, *subtype;
    const char *s = read_type(value, &type, &subtype);

    free(type);
    free(subtype);
    return param_bytes(params_after(s), name, len, charset);
}

/*
 * A Content-Disposition has no subtype: "attachment/ (; filename=x.pdf" is junk before
 * the first ';' for GMime, as for pec_mime_disposition_parse, even where a comment closes
 * after it (t/fuzz/crashes/gmime/disposition-slash-comment.eml,
 * disposition-slash-closed-comment.eml).
 */
char *pec_mime_disposition_param_bytes(const char *value, const char *name, size_t *len,
                                       char **charset)
{
    return param_bytes(params_after(value), name, len, charset);
}

int pec_mime_ctype_parse(const char *value, struct pec_mime_ctype *ct)
{
    const char *s = read_type(value != NULL ? value : "", &ct->type, &ct->subtype);

    pec_mime_params_parse(params_after(s), &ct->params);
    if (*ct->type == '\0' || *ct->subtype == '\0') {
        ct->type[0] = '\0';
        ct->subtype[0] = '\0';
        return -1;
    }
    return 0;
}

int pec_mime_ctype_is(const struct pec_mime_ctype *ct, const char *type, const char *subtype)
{
    return strcasecmp(ct->type, type) == 0 &&
           (subtype == NULL || strcasecmp(ct->subtype, subtype) == 0);
}

void pec_mime_ctype_free(struct pec_mime_ctype *ct)
{
    free(ct->type);
    free(ct->subtype);
    pec_mime_params_free(&ct->params);
    ct->type = ct->subtype = NULL;
}

char *pec_mime_disposition_parse(const char *value, struct pec_mime_params *params)
{
    const char *s = skip_cfws(value != NULL ? value : "");
    char *kind = read_token(&s);

    pec_mime_params_parse(params_after(value != NULL ? value : ""), params);
    return kind;
}

/* ------------------------------------------------------------ multipart */

/*
 * Is the line [LINE, LEND) a delimiter of BOUNDARY?  *CLOSE says whether it is the
 * close delimiter.  What may follow the boundary is transport padding: spaces and tabs
 * (RFC 2046 5.1.1), and CRs too, wherever they stand, because GMime, and so the
 * software that reads mail with it, takes "--B\r\r" or "--B\r \r" for a delimiter;
 * a line that is one for a reader must be one here, or the parts we verify are not the
 * parts that reader shows (and breve would carry an attachment it cannot see).
 */
static int is_delimiter(const unsigned char *line, const unsigned char *lend, const char *boundary,
                        size_t blen, int *close)
{
    const unsigned char *q = line + 2 + blen;

    if ((size_t)(lend - line) < 2 + blen || line[0] != '-' || line[1] != '-' ||
        memcmp(line + 2, boundary, blen) != 0)
        return 0;
    *close = lend - q >= 2 && q[0] == '-' && q[1] == '-';
    if (*close)
        q += 2;
    while (q < lend && (is_wsp(*q) || *q == '\r'))
        q++;
    return q == lend;
}

static void add_part(struct pec_mime_multipart *mp, const unsigned char *from,
                     const unsigned char *to)
{
    if ((mp->nparts & (mp->nparts - 1)) == 0)
        mp->parts = xrealloc(mp->parts, (mp->nparts ? 2 * mp->nparts : 1) * sizeof(*mp->parts));
    mp->parts[mp->nparts++] = span(from, to > from ? (size_t)(to - from) : 0);
}

int pec_mime_multipart_split(struct pec_span body, const char *boundary, size_t max_parts,
                             struct pec_mime_multipart *mp)
{
    const unsigned char *end = body.p + body.len, *line = body.p, *part = NULL;
    size_t blen = strlen(boundary);
    int found = 0;

    memset(mp, 0, sizeof(*mp));
    mp->preamble = body;
    mp->epilogue = span(end, 0);
    if (blen == 0)
        return -1;
    while (line < end) {
        const unsigned char *lend = line_end(line, end), *next = lend < end ? lend + 1 : end;
        const unsigned char *eol = line;
        int close;

        if (is_delimiter(line, lend, boundary, blen, &close)) {
            if (line > body.p)
                eol = line - 1 > body.p && line[-2] == '\r' ? line - 2 : line - 1;
            if (!found)
                mp->preamble = span(body.p, (size_t)(eol - body.p));
            else
                add_part(mp, part, eol);
            found = 1;
            part = next;
            if (close) {
                mp->closed = 1;
                mp->epilogue = span(next, (size_t)(end - next));
                return 0;
            }
            if (max_parts != 0 && mp->nparts == max_parts) {
                mp->too_many = 1;
                return 0;
            }
        }
        line = next;
    }
    if (!found)
        return -1;
    add_part(mp, part, end);
    return 0;
}

void pec_mime_multipart_free(struct pec_mime_multipart *mp)
{
    free(mp->parts);
    mp->parts = NULL;
    mp->nparts = 0;
}

/* ------------------------------------------------------------ header text */

char *pec_mime_decode_text(const char *text)
{
    char *decoded, *out;

    /* without GMime the text is still made safe, only left undecoded */
    if (pec_lib_init(NULL, 0) != 0)
        return pec_utf8_sanitize(text, strlen(text));
    decoded = g_mime_utils_header_decode_text(NULL, text);
    if (decoded == NULL)
        return pec_utf8_sanitize(text, strlen(text));
    out = pec_utf8_sanitize(decoded, strlen(decoded));
    g_free(decoded);
    return out;
}

/* Past a quoted string or a comment starting at S; nested comments counted. */
static const char *skip_quoted_or_comment(const char *s)
{
    char open = *s, shut = *s == '"' ? '"' : ')';
    int depth = 1;

    for (s++; *s != '\0'; s++) {
        if (*s == '\\' && s[1] != '\0')
            s++;
        else if (*s == shut && --depth == 0)
            return s + 1;
        else if (open == '(' && *s == '(')
            depth++;
    }
    return s;
}

/* [FROM, TO) without comments and white space; NULL when nothing is left. */
static char *strip_cfws(const char *from, const char *to)
{
    char *out = xmalloc((size_t)(to - from) + 1);
    size_t k = 0;

    while (from < to) {
        if (*from == '(') {
            from = skip_quoted_or_comment(from);
        } else {
            if (!is_wsp(*from))
                out[k++] = *from;
            from++;
        }
    }
    out[k] = '\0';
    if (k == 0) {
        free(out);
        return NULL;
    }
    return out;
}

char *pec_mime_address(const char *value)
{
    const char *s = value, *stop;

    while (*s != '\0' && *s != '<' && *s != ',') {
        if (*s == '"' || *s == '(')
            s = skip_quoted_or_comment(s);
        else
            s++;
    }
    if (*s != '<')
        return strip_cfws(value, s);
    s++;
    stop = strchr(s, '>');
    if (stop == NULL)
        stop = s + strlen(s);
    if (*s == '@') { /* obsolete source route "<@relay:user@domain>" */
        const char *colon = memchr(s, ':', (size_t)(stop - s));

        if (colon != NULL)
            s = colon + 1;
    }
    return strip_cfws(s, stop);
}

/* ------------------------------------------------------------ transfer encodings */

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

int pec_base64_decode(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen)
{
    unsigned char *buf = xmalloc(len / 4 * 3 + 4);
    uint32_t acc = 0;
    size_t k = 0, pad = 0;
    int quantum = 0, broken = 0;

    for (size_t i = 0; i < len && !broken; i++) {
        int v = b64val(in[i]);

        if (is_space(in[i]))
            continue;
        if (in[i] == '=') {
            pad++;
            continue;
        }
        if (v < 0 || pad > 0) {
            broken = 1;
            break;
        }
        acc = acc << 6 | (uint32_t)v;
        if (++quantum == 4) {
            buf[k++] = (unsigned char)(acc >> 16);
            buf[k++] = (unsigned char)(acc >> 8);
            buf[k++] = (unsigned char)acc;
            quantum = 0;
            acc = 0;
        }
    }
    if (quantum == 1)
        broken = 1;
    else if (quantum == 2)
        buf[k++] = (unsigned char)(acc >> 4);
    else if (quantum == 3) {
        buf[k++] = (unsigned char)(acc >> 10);
        buf[k++] = (unsigned char)(acc >> 2);
    }
    if (pad > 0 && (quantum < 2 || pad > (size_t)(4 - quantum)))
        broken = 1;
    buf[k] = '\0';
    *out = buf;
    *outlen = k;
    return broken ? -1 : 0;
}

/* Length of the line end at IN[I] (CRLF 2, LF 1), 0 when there is none; END counts as one. */
static size_t eol_at(const unsigned char *in, size_t len, size_t i, int *at_end)
{
    *at_end = i == len;
    if (i < len && in[i] == '\n')
        return 1;
    if (i + 1 < len && in[i] == '\r' && in[i + 1] == '\n')
        return 2;
    return 0;
}

int pec_qp_decode(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen)
{
    unsigned char *buf = xmalloc(len + 1);
    size_t k = 0, i = 0;
    int broken = 0, at_end;

    while (i < len) {
        size_t j = i;

        if (in[i] == '=' && i + 2 < len && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            buf[k++] = (unsigned char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 3;
        } else if (in[i] == '=') {
            for (j = i + 1; j < len && is_wsp(in[j]); j++)
                ;
            size_t eol = eol_at(in, len, j, &at_end);
            if (eol > 0 || at_end) {
                i = j + eol; /* soft line break */
            } else {
                broken = 1;
                buf[k++] = '=';
                i++;
            }
        } else if (is_wsp(in[i])) {
            while (j < len && is_wsp(in[j]))
                j++;
            if (eol_at(in, len, j, &at_end) == 0 && !at_end) {
                memcpy(buf + k, in + i, j - i);
                k += j - i;
            }
            i = j;
        } else {
            buf[k++] = in[i++];
        }
    }
    buf[k] = '\0';
    *out = buf;
    *outlen = k;
    return broken ? -1 : 0;
}

int pec_mime_is_crlf(const unsigned char *in, size_t len)
{
    const unsigned char *p = in, *end = in + len;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (p == in || p[-1] != '\r')
            return 0;
        p++;
    }
    return 1;
}

unsigned char *pec_mime_crlf(const unsigned char *in, size_t len, size_t *outlen)
{
    size_t bare = 0, k = 0;
    unsigned char *out;

    for (size_t i = 0; i < len; i++)
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            bare++;
    out = xmalloc(len + bare + 1);
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            out[k++] = '\r';
        out[k++] = in[i];
    }
    out[k] = '\0';
    *outlen = k;
    return out;
}
