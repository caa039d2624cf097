/*
 * fuzz_gmime - a second opinion on MIME: the part tree lib/message/mime.c yields against
 * the one GMime 3's parser builds from the same bytes.
 *
 * lib/message/mime.c reads MIME by hand so that signed bytes stay exact; GMime is what
 * much mail software reads with.  Where they disagree on a message, what pecmilter
 * verified is not what a reader sees.  For each input the harness builds both trees and
 * compares, node by node: the kind (leaf, multipart, attached message), the content
 * type, a multipart's boundary and number of parts, a leaf's file name, and where each
 * leaf's body starts and ends in the input.  The mime.c tree is walked the way GMime
 * walks (the harness's choice, not lib/'s: the inspector reads fewer levels): a part
 * without Content-Type is text/plain, or message/rfc822 inside multipart/digest;
 * message/rfc822, rfc2822, global and news are attached messages unless
 * base64, quoted-printable or uuencoded.
 *
 * A disagreement on a message GMime parses without a warning (but for warnings about
 * header text, which do not touch the structure) is a finding: the harness aborts.  The
 * differences that are deliberate, where exact bytes or the rules must win, are the
 * table below, each with its reason; the comparison tolerates exactly those.
 */
#include "harness.h"

#include "message/mime.h"
#include "util/xalloc.h"

#include <gmime/gmime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * The deliberate differences: where lib/message/mime.c and GMime disagree on purpose.
 * (An input outside these, on which GMime does not warn, is a finding.)
 */
enum deliberate {
    /*
     * GMime gives the delimiter line a CRLF before it when the delimiter line itself ends
     * in CRLF, a LF when it ends in LF, whatever precedes it: with mixed line ends its
     * body ends a byte early or late.  mime.c gives the delimiter the line break that is
     * actually there (RFC 2046 5.1.1), so a part's bytes are what was signed.
     */
    D_LINE_BREAK_BEFORE_DELIMITER,
    /*
     * GMime decodes RFC 2047 encoded words and converts charsets in file names; mime.c
     * hands back the bytes (pec_mime_*_param_bytes) or decodes only UTF-8 and ISO-8859-1
     * (pec_mime_params_parse): the names the rules fix (daticert.xml, postacert.eml,
     * smime.p7s) are ASCII, and RFC 2047 (5) forbids encoded words in parameters.  File
     * names are compared only when both sides are printable ASCII and the fields hold no
     * "=?": GMime decodes an encoded word even amid other text, and even one that starts
     * at the '=' of a parameter ("name=?o?Q??=" is no name for GMime), where mime.c
     * decodes only a value made of encoded words.
     */
    D_FILENAME_CHARSET,
    /*
     * A NUL byte in a header section: GMime reads a value as a C string, cut at the NUL;
     * mime.c keeps the bytes (pec_mime_unfold makes a NUL a space).  No mail may carry a
     * NUL (RFC 5322 2.2); the access point refuses it, and readers disagree on it anyway.
     * Such a part is not compared, nor anything inside it.
     */
    D_NUL_IN_HEADER,
    /*
     * A Content-Type without a readable type and subtype ("/x", "multipart/", "text"):
     * unreadable for mime.c (RFC 2045 5.1 requires both), which the inspector reports as
     * such; GMime keeps the pieces, and takes "multipart/" for a multipart.  Such a part
     * is not compared, nor anything inside it.
     */
    D_UNREADABLE_CONTENT_TYPE,
    /*
     * A quoted parameter value without its closing quote: mime.c takes the rest of the
     * field as the value, GMime keeps the opening quote in it.  Both are guesses at a
     * broken field; neither makes a name the rules look for out of one that is not.  In
     * a boundary the two then split the body differently, and nothing inside is
     * compared: a busta so broken is not one for the inspector (its parts are not where
     * the rules want them), and an opaque multipart is replaced whole in a breve.
     */
    D_UNTERMINATED_QUOTE,
    /*
     * An unquoted parameter value: mime.c ends it at white space, a comment or a quote, as
     * RFC 2045 5.1 reads "charset=us-ascii (Plain text)"; GMime in its default (loose)
     * mode takes everything up to the ';'.  The names the rules fix are quoted by every
     * provider, and "daticert.xml (x)" names daticert.xml by the RFC.
     */
    D_BARE_VALUE_END,
    /*
     * An RFC 2047 encoded word in a Content-Type: GMime decodes it, even inside the type
     * ("multipart/alterna=?utf-8?B?w6g=?=tive"); mime.c reads the field as RFC 2045
     * structures it, where encoded words have no place (RFC 2047 5).  The kind of part
     * and what lies inside are still compared, the type's name is not.  Where the word
     * can move the structure, that is where the text from the first "=?" to the last "?="
     * starts in the type or holds a ';' or a quote ('boundary="6g=?=st;boundary=d' is a
     * boundary "d" for GMime once '=?utf-8?B?w...="6g=?=' is decoded away), the kind of
     * part and a multipart's boundary are not compared, nor anything inside, nor the
     * multiparts around it (the boundary GMime reads may be one of theirs, as with
     * D_REUSED_BOUNDARY).
     */
    D_ENCODED_WORD_IN_TYPE,
    /*
     * RFC 2231 pieces of a name: mime.c joins sections 0, 1, 2... up to the first one
     * missing (RFC 2231 3 numbers them from 0, consecutively), GMime joins whatever
     * numbers it finds, in order.  Both see a name; its text may differ.
     */
    D_RFC2231_SECTIONS,
    /*
     * A CR that ends no line, inside a header section.  GMime reads it two ways: its
     * parser takes it for white space when it decides what a part is
     * ("message/rfc822\rX" is an attached message), its objects drop it when they hand
     * out parameters ("b\roundary=x" is a boundary).  mime.c takes it for white space
     * throughout, as original.c does; no one reading can agree with both.  Such a part is
     * not compared, nor anything inside it (RFC 5322 2.2 forbids the bare CR anyway).
     */
    D_BARE_CR_IN_HEADER,
    /*
     * A multipart inside one with the same boundary, which RFC 2046 5.1.1 rules out (no
     * delimiter may occur in the parts): mime.c splits each multipart by its own
     * delimiters from the outside in, as the inspector and breve do, GMime from the inside
     * out, letting the inner one take the delimiters first.  The outer multipart is not
     * compared, nor anything inside it.
     */
    D_REUSED_BOUNDARY,
    /*
     * Not ours: GMime 3.2 reads a header section with an invalid line in it differently
     * depending on where its read buffer ends.  When a line that is no header field
     * ends there, it can take the next line for the rest of it ("L f\"" and
     * "Content-Disposition: ...; filename=x" become one field name "L
     * f\"Content-Disposition" that it drops, and with it the part's
     * Content-Disposition: t/fuzz/crashes/gmime/glued-header-lines.eml); after a line
     * that starts with ':', it can take the next one for that line's continuation
     * (crashes/gmime/glued-after-colon-line.eml), even when the buffer ends lines later
     * (colon-line-then-junk.eml).  The same part a line further on is
     * read right.  Its documentation warns that after GMIME_CRIT_INVALID_HEADER_NAME it
     * "may skip the message or parts of it".  The harness records where each of GMime's
     * reads ends (its mem stream's read, wrapped) and where it warned of an invalid line;
     * a part whose header section holds both is not compared, nor anything inside it.
     */
    D_GMIME_BUFFER_END,
    D_COUNT,
};

static const char *const deliberate_names[D_COUNT] = {
    [D_LINE_BREAK_BEFORE_DELIMITER] = "line break before a delimiter",
    [D_FILENAME_CHARSET] = "file name charset",
    [D_NUL_IN_HEADER] = "NUL in a header section",
    [D_UNREADABLE_CONTENT_TYPE] = "unreadable Content-Type",
    [D_UNTERMINATED_QUOTE] = "unterminated quoted string",
    [D_BARE_VALUE_END] = "end of an unquoted value",
    [D_ENCODED_WORD_IN_TYPE] = "encoded word in a Content-Type",
    [D_RFC2231_SECTIONS] = "RFC 2231 sections",
    [D_BARE_CR_IN_HEADER] = "bare CR in a header",
    [D_REUSED_BOUNDARY] = "boundary reused inside",
    [D_GMIME_BUFFER_END] = "GMime's buffer ending in a bad header section",
};

/*
 * GMime warnings about header text that the part tree does not read: 8-bit bytes or a
 * bad encoded word outside the Content-* fields, an address list it could not parse, a
 * line that is no header field (both parsers pass over it; where GMime cannot, at the
 * top of the message, it builds no message and nothing is compared; where GMime reads
 * two lines as one, see warned())
 */
static int structural_warning(GMimeParserWarning w, const char *item)
{
    if (w == GMIME_WARN_INVALID_RFC2047_HEADER_VALUE || w == GMIME_WARN_INVALID_ADDRESS_LIST ||
        w == GMIME_CRIT_INVALID_HEADER_NAME)
        return 0;
    return w != GMIME_WARN_UNENCODED_8BIT_HEADER || item == NULL ||
           strncasecmp(item, "Content-", 8) == 0;
}

enum kind { LEAF, MULTIPART, MESSAGE };

struct node {
    enum kind kind;
    char type[64], subtype[64];
    char *boundary;
    char *filename;       /* printable ASCII, else NULL */
    int named;            /* a file name or name parameter is there, in whatever form */
    int pieces;           /* in RFC 2231 pieces ("name*1=") */
    int words;            /* the fields that name it hold "=?" */
    long long start, end; /* a leaf's body in the input */
    struct node *child;
    size_t nchild;
    int opaque;       /* mime.c: a deliberate difference makes this part incomparable */
    int encoded_word; /* mime.c: the Content-Type holds an encoded word */
    int word_moves;   /* ... one that can move the structure (D_ENCODED_WORD_IN_TYPE) */
};

#define MAX_DEPTH 64

static void node_free(struct node *n)
{
    for (size_t i = 0; i < n->nchild; i++)
        node_free(&n->child[i]);
    free(n->child);
    free(n->boundary);
    free(n->filename);
}

static char *ascii_or_null(const char *s, size_t len)
{
    char *out;

    if (s == NULL || len == 0)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return NULL;
    out = malloc(len + 1);
    FUZZ_CHECK(out != NULL);
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

static void set_type(struct node *n, const char *type, const char *subtype)
{
    snprintf(n->type, sizeof(n->type), "%s", type);
    snprintf(n->subtype, sizeof(n->subtype), "%s", subtype);
    for (char *c = n->type; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    for (char *c = n->subtype; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
}

/* ---------------------------------------------------------------- the mime.c tree */

static int is_message(const char *type, const char *subtype)
{
    return strcasecmp(type, "message") == 0 &&
           (strcasecmp(subtype, "rfc822") == 0 || strcasecmp(subtype, "rfc2822") == 0 ||
            strcasecmp(subtype, "global") == 0 || strcasecmp(subtype, "news") == 0);
}

/* Is the transfer encoding one GMime will not parse a message through?  Its first word. */
static int encoded(const char *cte)
{
    static const char *const words[] = {"base64", "quoted-printable", "uuencode", "x-uuencode",
                                        "x-uue"};

    for (size_t i = 0; cte != NULL && i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);

        if (strncasecmp(cte, words[i], n) == 0 && strchr(" \t\r\n", cte[n]) != NULL)
            return 1;
    }
    return 0;
}

/* A file name as GMime looks for one: the disposition's filename, else the type's name. */
static char *mime_filename(const char *disp, const char *ctype, int *named, int *pieces)
{
    const char *src[2] = {disp, ctype}, *attr[2] = {"filename", "name"};
    pec_mime_param_getter *get[2] = {pec_mime_disposition_param_bytes, pec_mime_ctype_param_bytes};

    for (int i = 0; i < 2; i++) {
        size_t len;
        char *cs, *b, *out;

        if (src[i] == NULL || (b = get[i](src[i], attr[i], &len, &cs)) == NULL)
            continue;
        *named = 1;
        *pieces = strchr(src[i], '*') != NULL;
        out = ascii_or_null(b, len);
        free(b);
        free(cs);
        return out;
    }
    return NULL;
}

/*
 * Can decoding the encoded words of the Content-Type FIELD change the structure GMime
 * reads: does the text from the first "=?" to the last "?=" start before the first ';'
 * (in the type) or hold a ';' or a quote?
 */
static int word_moves_structure(const char *field)
{
    const char *start = strstr(field, "=?"), *end = NULL, *semi = strchr(field, ';');

    for (const char *p = start; p != NULL && (p = strstr(p + 1, "?=")) != NULL;)
        end = p;
    if (start == NULL || end == NULL)
        return 0;
    if (semi == NULL || start < semi)
        return 1;
    for (const char *p = start; p < end; p++)
        if (*p == ';' || *p == '"')
            return 1;
    return 0;
}

/* Where GMime's reads ended and where it warned of invalid lines (D_GMIME_BUFFER_END). */
#define MAX_MARKS 256

struct parse {
    GMimeStream *stream; /* the input as GMime reads it */
    size_t size;
    int warnings;
    size_t ninvalid, nread;
    gint64 invalid[MAX_MARKS]; /* the fields GMime found an invalid line in */
    gint64 read_end[MAX_MARKS];
};

static struct parse *current; /* GMime's reading of the input at hand */
static ssize_t (*mem_read)(GMimeStream *stream, char *buf, size_t len);

static void mark(gint64 *v, size_t *n, gint64 offset)
{
    if (*n < MAX_MARKS)
        v[(*n)++] = offset;
}

static ssize_t recording_read(GMimeStream *stream, char *buf, size_t len)
{
    ssize_t n = mem_read(stream, buf, len);

    if (current != NULL && stream == current->stream && n > 0)
        mark(current->read_end, &current->nread, stream->position);
    return n;
}

/*
 * Did one of GMime's reads end in the header section [FROM, TO) of the input, where it
 * warned of an invalid line?  (It names the offset of the field it was reading.)
 */
static int buffer_end_in_bad_section(gint64 from, gint64 to)
{
    const struct parse *p = current;
    int invalid = p->ninvalid == MAX_MARKS, ended = p->nread == MAX_MARKS;

    for (size_t i = 0; !invalid && i < p->ninvalid; i++)
        invalid = p->invalid[i] >= from && p->invalid[i] < to;
    for (size_t j = 0; !ended && j < p->nread; j++)
        ended = p->read_end[j] > from && p->read_end[j] <= to && p->read_end[j] < (gint64)p->size;
    return invalid && ended;
}

/* The multiparts around the part at hand in mime_tree, outermost first. */
static struct node *enclosing[MAX_DEPTH + 1];
static int n_enclosing;

static void mime_tree(const unsigned char *base, struct pec_span e, int digest, int depth,
                      struct node *n)
{
    struct pec_span head, body;
    struct pec_mime_ctype ct;
    char *ctype, *disp, *cte;
    const char *boundary;
    int blank;

    memset(n, 0, sizeof(*n));
    blank = pec_mime_split(e.p, e.len, &head, &body);

    if (memchr(head.p, '\0', head.len) != NULL)
        n->opaque = D_NUL_IN_HEADER + 1;
    else if (current != NULL && buffer_end_in_bad_section(head.p - base, body.p - base))
        n->opaque = D_GMIME_BUFFER_END + 1;
    for (size_t i = 0; !n->opaque && i < head.len; i++)
        if (head.p[i] == '\r' && (i + 1 == head.len || head.p[i + 1] != '\n'))
            n->opaque = D_BARE_CR_IN_HEADER + 1;
    ctype = pec_mime_header(head, "Content-Type");
    if (ctype != NULL && pec_mime_ctype_parse(ctype, &ct) != 0) {
        n->opaque = D_UNREADABLE_CONTENT_TYPE + 1;
        pec_mime_ctype_free(&ct);
        free(ctype);
        return;
    }
    /*
     * A multipart reusing an enclosing boundary makes the enclosing ones incomparable
     * (D_REUSED_BOUNDARY), even when this part is itself not compared: GMime's reading
     * of it still takes the enclosing delimiters.
     */
    boundary = ctype != NULL && strcasecmp(ct.type, "multipart") == 0
                   ? pec_mime_param(&ct.params, "boundary")
                   : NULL;
    for (int i = 0; boundary != NULL && i < n_enclosing; i++)
        if (strcmp(enclosing[i]->boundary, boundary) == 0)
            enclosing[i]->opaque = D_REUSED_BOUNDARY + 1;
    /* GMime may read any kind and boundary, an enclosing one too, where a word moves them */
    n->word_moves = ctype != NULL && word_moves_structure(ctype);
    for (int i = 0; n->word_moves && i < n_enclosing; i++)
        enclosing[i]->opaque = D_ENCODED_WORD_IN_TYPE + 1;
    if (n->opaque) {
        if (ctype != NULL)
            pec_mime_ctype_free(&ct);
        free(ctype);
        return;
    }
    disp = pec_mime_header(head, "Content-Disposition");
    cte = pec_mime_header(head, "Content-Transfer-Encoding");
    n->encoded_word = ctype != NULL && strstr(ctype, "=?") != NULL;
    if (ctype == NULL) {
        set_type(n, digest ? "message" : "text", digest ? "rfc822" : "plain");
        memset(&ct, 0, sizeof(ct));
    } else {
        set_type(n, ct.type, ct.subtype);
    }
    if (strcmp(n->type, "multipart") == 0) {
        struct pec_mime_multipart mp;

        n->kind = MULTIPART;
        n->boundary = boundary != NULL ? xstrdup(boundary) : NULL;
        if (boundary != NULL && depth < MAX_DEPTH &&
            pec_mime_multipart_split(body, boundary, 0, &mp) == 0) {
            n->child = calloc(mp.nparts ? mp.nparts : 1, sizeof(*n->child));
            FUZZ_CHECK(n->child != NULL);
            n->nchild = mp.nparts;
            enclosing[n_enclosing++] = n;
            for (size_t i = 0; i < mp.nparts; i++)
                mime_tree(base, mp.parts[i], strcmp(n->subtype, "digest") == 0, depth + 1,
                          &n->child[i]);
            n_enclosing--;
            pec_mime_multipart_free(&mp);
        }
    } else if (is_message(n->type, n->subtype) && !encoded(cte) && depth < MAX_DEPTH) {
        n->kind = MESSAGE;
        n->child = calloc(1, sizeof(*n->child));
        FUZZ_CHECK(n->child != NULL);
        /* a delimiter right after the header, no blank line between: no message */
        n->nchild = blank;
        if (n->nchild)
            mime_tree(base, body, 0, depth + 1, n->child);
    } else {
        n->kind = LEAF;
        n->filename = mime_filename(disp, ctype, &n->named, &n->pieces);
        n->words = (disp != NULL && strstr(disp, "=?") != NULL) ||
                   (ctype != NULL && strstr(ctype, "=?") != NULL);
        n->start = body.p - base;
        n->end = n->start + (long long)body.len;
    }
    if (ct.type != NULL)
        pec_mime_ctype_free(&ct);
    free(ctype);
    free(disp);
    free(cte);
}

/* ---------------------------------------------------------------- the GMime tree */

static void gmime_tree(GMimeObject *o, int depth, struct node *n)
{
    GMimeContentType *ct = g_mime_object_get_content_type(o);

    memset(n, 0, sizeof(*n));
    set_type(n, g_mime_content_type_get_media_type(ct), g_mime_content_type_get_media_subtype(ct));
    if (GMIME_IS_MULTIPART(o)) {
        GMimeMultipart *mp = GMIME_MULTIPART(o);
        const char *b = g_mime_multipart_get_boundary(mp);
        int count = g_mime_multipart_get_count(mp);

        n->kind = MULTIPART;
        n->boundary = b != NULL ? xstrdup(b) : NULL;
        n->child = calloc(count > 0 ? (size_t)count : 1, sizeof(*n->child));
        FUZZ_CHECK(n->child != NULL);
        n->nchild = (size_t)count;
        for (int i = 0; i < count; i++)
            gmime_tree(g_mime_multipart_get_part(mp, i), depth + 1, &n->child[i]);
    } else if (GMIME_IS_MESSAGE_PART(o)) {
        GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
        GMimeObject *top = m != NULL ? g_mime_message_get_mime_part(m) : NULL;

        n->kind = MESSAGE;
        if (top != NULL) {
            n->child = calloc(1, sizeof(*n->child));
            FUZZ_CHECK(n->child != NULL);
            n->nchild = 1;
            gmime_tree(top, depth + 1, n->child);
        }
    } else if (GMIME_IS_PART(o)) {
        GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(o));
        GMimeStream *s = w != NULL ? g_mime_data_wrapper_get_stream(w) : NULL;
        const char *fn = g_mime_part_get_filename(GMIME_PART(o));

        n->kind = LEAF;
        n->filename = ascii_or_null(fn, fn != NULL ? strlen(fn) : 0);
        n->named = fn != NULL;
        n->start = s != NULL ? s->bound_start : -1;
        n->end = s != NULL ? s->bound_end : -1;
    }
}

/* ---------------------------------------------------------------- the comparison */

static const char *kind_name(enum kind k)
{
    return k == LEAF ? "leaf" : k == MULTIPART ? "multipart" : "message";
}

/* FUZZ_GMIME_TREES=1 prints both trees (and GMime's warnings), for whoever triages a finding. */
static void dump(const struct node *n, int depth)
{
    fprintf(stderr, "%*s%s %s/%s", 2 * depth, "", kind_name(n->kind), n->type, n->subtype);
    if (n->boundary != NULL)
        fprintf(stderr, " boundary=\"%s\"", n->boundary);
    if (n->kind == LEAF)
        fprintf(stderr, " body %lld-%lld", n->start, n->end);
    if (n->named)
        fprintf(stderr, " named \"%s\"", n->filename != NULL ? n->filename : "(not ASCII)");
    if (n->opaque)
        fprintf(stderr, " (opaque: %s)", deliberate_names[n->opaque - 1]);
    fputc('\n', stderr);
    for (size_t i = 0; i < n->nchild; i++)
        dump(&n->child[i], depth + 1);
}

static unsigned long tolerated[D_COUNT];
static unsigned long compared, skipped,
    warnings_seen[GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT + 1];

static void report(void)
{
    fprintf(stderr, "fuzz_gmime: %lu trees compared, %lu skipped on GMime's warnings", compared,
            skipped);
    for (int i = 0; i < D_COUNT; i++)
        fprintf(stderr, "; %s tolerated %lu times", deliberate_names[i], tolerated[i]);
    fprintf(stderr, "\nfuzz_gmime: GMime warnings by code:");
    for (size_t i = 1; i < sizeof(warnings_seen) / sizeof(warnings_seen[0]); i++)
        fprintf(stderr, " %zu:%lu", i, warnings_seen[i]);
    fputc('\n', stderr);
}

/*
 * Where GMime ends a body that mime.c ends at END (before the line break that belongs to
 * the next delimiter): two bytes before the delimiter line when that line ends in CRLF,
 * or in a CR that is the input's last byte; one when it ends in LF or not at all;
 * whatever the break before it really is.
 */
static long long gmime_end(const unsigned char *data, size_t size, long long start, long long end)
{
    const unsigned char *nl, *eol;
    long long delim, guess;

    if (end >= (long long)size || (data[end] != '\r' && data[end] != '\n'))
        return end;
    delim = end + (data[end] == '\r' ? 2 : 1);
    nl = memchr(data + delim, '\n', size - (size_t)delim);
    eol = nl != NULL ? nl : data + size;
    guess = delim - (eol > data + delim && eol[-1] == '\r' ? 2 : 1);
    return guess < start ? start : guess;
}

static int same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A leaf's file name: both sides see one or neither does; its text, but as tolerated. */
static void compare_names(const struct node *a, const struct node *b, const char *path)
{
    const char *x = a->filename, *y = b->filename;
    size_t n = x != NULL ? strlen(x) : 0;

    if (a->words && (a->named != b->named || !same_text(x, y))) {
        tolerated[D_FILENAME_CHARSET]++;
        return;
    }
    if (a->named != b->named)
        fuzz_fail("at %s %s finds a file name (\"%s\"), %s none", path,
                  a->named ? "mime.c" : "GMime", a->named ? (x ? x : "?") : (y ? y : "?"),
                  a->named ? "GMime" : "mime.c");
    if (same_text(x, y))
        return;
    if (a->pieces)
        tolerated[D_RFC2231_SECTIONS]++;
    else if (x != NULL && y != NULL && y[0] == '"' && strcmp(x, y + 1) == 0)
        tolerated[D_UNTERMINATED_QUOTE]++;
    else if (x != NULL && y != NULL && strncmp(x, y, n) == 0 && y[n] != '\0' &&
             strchr(" \t(\"", y[n]) != NULL)
        tolerated[D_BARE_VALUE_END]++;
    else if (x == NULL || y == NULL)
        tolerated[D_FILENAME_CHARSET]++; /* one side is not printable ASCII */
    else
        fuzz_fail("at %s the file name is \"%s\" for mime.c, \"%s\" for GMime", path, x, y);
}

static void compare(const unsigned char *data, size_t size, const struct node *a,
                    const struct node *b, const char *path)
{
    char sub[512];

    if (a->opaque) {
        tolerated[a->opaque - 1]++;
        return;
    }
    if (a->word_moves &&
        (a->kind != b->kind || (a->kind == MULTIPART && !same_text(a->boundary, b->boundary)))) {
        tolerated[D_ENCODED_WORD_IN_TYPE]++;
        return;
    }
    if (a->kind == b->kind && a->encoded_word &&
        (strcmp(a->type, b->type) != 0 || strcmp(a->subtype, b->subtype) != 0))
        tolerated[D_ENCODED_WORD_IN_TYPE]++;
    else if (a->kind != b->kind || strcmp(a->type, b->type) != 0 ||
             strcmp(a->subtype, b->subtype) != 0)
        fuzz_fail("at %s mime.c has a %s %s/%s, GMime a %s %s/%s", path, kind_name(a->kind),
                  a->type, a->subtype, kind_name(b->kind), b->type, b->subtype);
    if (a->kind == MULTIPART && a->boundary != NULL && b->boundary != NULL &&
        b->boundary[0] == '"' && strcmp(a->boundary, b->boundary + 1) == 0) {
        /* the same unterminated quote, in a boundary: the two split nothing alike */
        tolerated[D_UNTERMINATED_QUOTE]++;
        return;
    }
    if (a->kind == MULTIPART && !same_text(a->boundary, b->boundary))
        fuzz_fail("at %s the boundary is \"%s\" for mime.c, \"%s\" for GMime", path,
                  a->boundary ? a->boundary : "(none)", b->boundary ? b->boundary : "(none)");
    if (a->nchild != b->nchild)
        fuzz_fail("at %s mime.c finds %zu parts, GMime %zu", path, a->nchild, b->nchild);
    for (size_t i = 0; i < a->nchild; i++) {
        snprintf(sub, sizeof(sub), "%s.%zu", path, i + 1);
        compare(data, size, &a->child[i], &b->child[i], sub);
    }
    if (a->kind != LEAF)
        return;
    compare_names(a, b, path);
    /* an empty body has no position to agree on: "headers, blank line" and "headers"
     * before a delimiter hold the same nothing */
    if (a->start == a->end && b->start == b->end)
        return;
    if (a->start != b->start)
        fuzz_fail("at %s the body starts at %lld for mime.c, %lld for GMime", path, a->start,
                  b->start);
    if (a->end != b->end) {
        if (b->end != gmime_end(data, size, a->start, a->end))
            fuzz_fail("at %s the body ends at %lld for mime.c, %lld for GMime", path, a->end,
                      b->end);
        tolerated[D_LINE_BREAK_BEFORE_DELIMITER]++;
    }
}

static void warned(gint64 offset, GMimeParserWarning errcode, const gchar *item, gpointer arg)
{
    struct parse *p = arg;

    if (getenv("FUZZ_GMIME_TREES") != NULL)
        fprintf(stderr, "GMime warns at %lld: %d \"%s\"\n", (long long)offset, (int)errcode,
                item != NULL ? item : "");
    if ((size_t)errcode < sizeof(warnings_seen) / sizeof(warnings_seen[0]))
        warnings_seen[errcode]++;
    if (errcode == GMIME_CRIT_INVALID_HEADER_NAME && offset >= 0)
        mark(p->invalid, &p->ninvalid, offset);
    if (structural_warning(errcode, item))
        p->warnings++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    GMimeStreamClass *k;

    fuzz_lib_init();
    k = g_type_class_ref(GMIME_TYPE_STREAM_MEM);
    mem_read = k->read;
    k->read = recording_read;
    if (atexit(report) != 0) {
        fprintf(stderr, "fuzz_gmime: atexit failed\n");
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    GMimeStream *stream = g_mime_stream_mem_new_with_buffer((const char *)data, size);
    GMimeParser *parser = g_mime_parser_new_with_stream(stream);
    GMimeParserOptions *opts = g_mime_parser_options_new();
    GMimeMessage *msg;
    GMimeObject *top;
    struct node a, b;
    struct pec_span all = {data, size};
    struct parse p = {.stream = stream, .size = size};

    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    g_mime_parser_options_set_warning_callback(opts, warned, &p);
    current = &p;
    msg = g_mime_parser_construct_message(parser, opts);
    top = msg != NULL ? g_mime_message_get_mime_part(msg) : NULL;
    mime_tree(data, all, 0, 0, &a);
    current = NULL;
    if (top != NULL && p.warnings == 0) {
        gmime_tree(top, 0, &b);
        if (getenv("FUZZ_GMIME_TREES") != NULL) {
            fprintf(stderr, "mime.c:\n");
            dump(&a, 1);
            fprintf(stderr, "GMime:\n");
            dump(&b, 1);
        }
        compare(data, size, &a, &b, "1");
        node_free(&b);
        compared++;
    } else {
        skipped++;
    }
    node_free(&a);
    if (msg != NULL)
        g_object_unref(msg);
    g_mime_parser_options_free(opts);
    g_object_unref(parser);
    g_object_unref(stream);
    return 0;
}
