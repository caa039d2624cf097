/*
 * encode - base64, quoted-printable and RFC 2047 for the messages we build.
 *
 * The quoted-printable encoder keeps one space or tab pending until it sees
 * what follows: RFC 2045 forbids whitespace at the end of an encoded line
 * (transports strip it), and only the next bytes tell whether the line ends
 * there.  A CR waits the same way for its LF.  Lines are cut at 75
 * characters plus the '=' of a soft break, never inside an "=XX" triplet.
 */
#include "util/encode.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 of IN[0..N), N <= 57, into OUT; returns the characters written */
static size_t b64_block(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16;

        if (i + 1 < n)
            v |= (unsigned long)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    return o;
}

void pec_b64_init(struct pec_b64 *e, struct pec_spool *out)
{
    memset(e, 0, sizeof(*e));
    e->out = out;
}

static int b64_line(struct pec_b64 *e, const unsigned char *in, size_t n)
{
    char line[80];
    size_t len = b64_block(in, n, line);

    line[len++] = '\r';
    line[len++] = '\n';
    return pec_spool_write(e->out, line, len);
}

int pec_b64_update(struct pec_b64 *e, const unsigned char *p, size_t n)
{
    if (e->ncarry > 0) {
        size_t take = PEC_B64_LINE_IN - e->ncarry;

        if (take > n)
            take = n;
        memcpy(e->carry + e->ncarry, p, take);
        e->ncarry += take;
        p += take;
        n -= take;
        if (e->ncarry < PEC_B64_LINE_IN)
            return 0;
        if (b64_line(e, e->carry, PEC_B64_LINE_IN) < 0)
            return -1;
        e->ncarry = 0;
    }
    for (; n >= PEC_B64_LINE_IN; p += PEC_B64_LINE_IN, n -= PEC_B64_LINE_IN)
        if (b64_line(e, p, PEC_B64_LINE_IN) < 0)
            return -1;
    memcpy(e->carry, p, n);
    e->ncarry = n;
    return 0;
}

int pec_b64_final(struct pec_b64 *e)
{
    int ret = e->ncarry > 0 ? b64_line(e, e->carry, e->ncarry) : 0;

    e->ncarry = 0;
    return ret;
}

char *pec_b64_string(const unsigned char *in, size_t len)
{
    char *out = xmalloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;

    for (size_t i = 0; i < len; i += PEC_B64_LINE_IN)
        o += b64_block(in + i, len - i < PEC_B64_LINE_IN ? len - i : PEC_B64_LINE_IN, out + o);
    out[o] = '\0';
    return out;
}

/* ---------------------------------------------------------------- quoted-printable */

#define QP_MAX 75 /* characters before the '=' of a soft line break */

void pec_qp_init(struct pec_qp *e, struct pec_spool *out)
{
    memset(e, 0, sizeof(*e));
    e->out = out;
    e->pending_ws = -1;
}

static int qp_emit(struct pec_qp *e, const char *tok, size_t n)
{
    if (e->col + n > QP_MAX) {
        memcpy(e->line + e->col, "=\r\n", 3);
        if (pec_spool_write(e->out, e->line, e->col + 3) < 0)
            return -1;
        e->col = 0;
    }
    memcpy(e->line + e->col, tok, n);
    e->col += n;
    return 0;
}

static int qp_hex(struct pec_qp *e, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    char tok[3] = {'=', hex[c >> 4], hex[c & 15]};

    return qp_emit(e, tok, 3);
}

/* The pending whitespace, now that we know whether a line break follows it. */
static int qp_flush_ws(struct pec_qp *e, int at_eol)
{
    int c = e->pending_ws;
    char tok;

    if (c < 0)
        return 0;
    e->pending_ws = -1;
    if (at_eol)
        return qp_hex(e, (unsigned char)c);
    tok = (char)c;
    return qp_emit(e, &tok, 1);
}

static int qp_hard_break(struct pec_qp *e)
{
    if (qp_flush_ws(e, 1) < 0)
        return -1;
    memcpy(e->line + e->col, "\r\n", 2);
    if (pec_spool_write(e->out, e->line, e->col + 2) < 0)
        return -1;
    e->col = 0;
    return 0;
}

static int qp_byte(struct pec_qp *e, unsigned char c)
{
    char tok = (char)c;

    if (e->pending_cr) {
        e->pending_cr = 0;
        if (c == '\n')
            return qp_hard_break(e);
        if (qp_flush_ws(e, 0) < 0 || qp_hex(e, '\r') < 0)
            return -1;
    }
    if (c == '\r') {
        e->pending_cr = 1;
        return 0;
    }
    if (qp_flush_ws(e, 0) < 0)
        return -1;
    if (c == ' ' || c == '\t') {
        e->pending_ws = c;
        return 0;
    }
    if (c >= 33 && c <= 126 && c != '=')
        return qp_emit(e, &tok, 1);
    return qp_hex(e, c);
}

int pec_qp_update(struct pec_qp *e, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (qp_byte(e, p[i]) < 0)
            return -1;
    return 0;
}

int pec_qp_final(struct pec_qp *e)
{
    if (e->pending_cr) {
        e->pending_cr = 0;
        if (qp_flush_ws(e, 0) < 0 || qp_hex(e, '\r') < 0)
            return -1;
    }
    if (qp_flush_ws(e, 1) < 0)
        return -1;
    if (e->col > 0 && pec_spool_write(e->out, e->line, e->col) < 0)
        return -1;
    e->col = 0;
    return 0;
}

/* ---------------------------------------------------------------- header text */

int pec_is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 127 || (c < 32 && c != '\t' && c != '\r' && c != '\n'))
            return 0;
    }
    return 1;
}

/* Length of the UTF-8 sequence S starts (1 for a stray byte, so we always advance). */
static size_t utf8_len(const unsigned char *s)
{
    size_t n = *s < 0x80 ? 1 : *s >= 0xf0 ? 4 : *s >= 0xe0 ? 3 : *s >= 0xc0 ? 2 : 1;

    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 1;
    return n;
}

#define WORD_OVERHEAD 12 /* "=?UTF-8?B?" and "?=" */
#define WORD_MAX_IN 45   /* 60 base64 characters: 72 with the overhead */

static void append(char **buf, size_t *len, const char *s, size_t n)
{
    *buf = xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* The longest run of whole characters of S, at most MAX bytes (at least one character). */
static size_t whole_chars(const unsigned char *s, size_t max)
{
    size_t n = 0;

    while (s[n] != '\0') {
        size_t c = utf8_len(s + n);

        if (n + c > max && n > 0)
            break;
        n += c;
    }
    return n;
}

char *pec_rfc2047_value(const char *name, const char *prefix, const char *utf8)
{
    const unsigned char *s = (const unsigned char *)utf8;
    size_t used = strlen(name) + 2 + strlen(prefix); /* "Name: " and the prefix */
    size_t len = 0, room;
    char *out = NULL;

    append(&out, &len, prefix, strlen(prefix));
    /* plain text when it can stay on one line of at most 998 characters */
    if (pec_is_ascii(utf8, strlen(utf8)) && strpbrk(utf8, "\r\n") == NULL &&
        used + strlen(utf8) <= 998) {
        append(&out, &len, utf8, strlen(utf8));
        return out;
    }
    /* the first word shares the line with the prefix when at least a few characters fit */
    room = used + WORD_OVERHEAD < 78 ? (78 - used - WORD_OVERHEAD) / 4 * 3 : 0;
    if (room < 6) {
        if (len > 0 && out[len - 1] == ' ')
            out[--len] = '\0';
        append(&out, &len, "\r\n ", 3);
        room = WORD_MAX_IN;
    } else if (len > 0 && out[len - 1] != ' ') {
        append(&out, &len, " ", 1);
    }
    while (*s != '\0') {
        size_t n = whole_chars(s, room);
        char *b64 = pec_b64_string(s, n);

        append(&out, &len, "=?UTF-8?B?", 10);
        append(&out, &len, b64, strlen(b64));
        append(&out, &len, "?=", 2);
        free(b64);
        s += n;
        room = WORD_MAX_IN;
        if (*s != '\0')
            append(&out, &len, "\r\n ", 3);
    }
    return out;
}

char *pec_utf8_to_latin1(const char *utf8, int *lossless)
{
    const unsigned char *s = (const unsigned char *)utf8;
    char *out = xmalloc(strlen(utf8) + 1);
    size_t o = 0;

    *lossless = 1;
    while (*s != '\0') {
        size_t n = utf8_len(s);
        unsigned long cp = n == 1   ? *s
                           : n == 2 ? (unsigned long)(s[0] & 0x1f) << 6 | (s[1] & 0x3f)
                                    : 0x100;

        if ((n == 1 && *s >= 0x80) || (n == 2 && cp < 0x80))
            cp = 0x100; /* a stray byte or an overlong form: not valid UTF-8 */
        if (cp > 0xff) {
            out[o++] = '?';
            *lossless = 0;
        } else {
            out[o++] = (char)cp;
        }
        s += n;
    }
    out[o] = '\0';
    return out;
}
