/*
 * mime - raw MIME utilities over the bytes exactly as they were received.
 *
 * A detached S/MIME signature covers the first part of a multipart/signed byte for byte,
 * so whatever checks a signature must find that part in the bytes as they arrived, not
 * in a re-serialisation by a MIME library.  This module does only that kind of work:
 * it splits and scans, and hands back ranges (struct pec_span) of the caller's buffer;
 * it never copies a body unless asked to decode or canonicalise it.
 *
 * Everything accepts CRLF and bare LF line ends, mixed, because stored messages (the
 * shared corpus, Maildir files) often lost their CRs.  Nothing assumes a terminating
 * NUL; NUL bytes and 8-bit junk are data like any other.  Work is linear in the input:
 * the scanners look at each byte a bounded number of times, so a hostile message (a
 * header line of a megabyte, a million parts, a boundary repeated everywhere) costs
 * time proportional to its size and nothing more.
 *
 * Strings handed back (unfolded header values, parameters, decoded text) are
 * NUL-terminated, xmalloc'ed, and belong to the caller.
 */
#ifndef PEC_MIME_H
#define PEC_MIME_H

#include <stddef.h>

/* A range of the caller's buffer. */
struct pec_span {
    const unsigned char *p;
    size_t len;
};

/*
 * Split an entity into its header block and its body.  HEAD gets the header lines with
 * their line ends, BODY what follows the empty line.  Returns 1 when an empty line ends
 * the headers, 0 when there is none (then everything is header and BODY is empty).
 */
int pec_mime_split(const unsigned char *msg, size_t len, struct pec_span *head,
                   struct pec_span *body);

/*
 * One header field.  NAME has no trailing white space; its length is 0 for a line that
 * is not a field (no colon, white space or control bytes in the name, a continuation
 * with nothing to continue).  VALUE runs from after the colon to the end of the last
 * continuation line, folds included, final line end excluded.
 */
struct pec_mime_field {
    struct pec_span name;
    struct pec_span value;
};

struct pec_mime_fields {
    const unsigned char *p;
    const unsigned char *end;
};

/* Walk the fields of HEAD in order: init once, then next until it returns 0. */
void pec_mime_fields_init(struct pec_mime_fields *it, struct pec_span head);
int pec_mime_fields_next(struct pec_mime_fields *it, struct pec_mime_field *f);

/* Does the field's name equal NAME, ignoring ASCII case? */
int pec_mime_field_is(const struct pec_mime_field *f, const char *name);

/*
 * The value unfolded (line ends removed, the white space after them kept), trimmed,
 * with each NUL byte turned into a space so the result is a usable C string, and each CR
 * that ends no line too (white space, as readers take it).
 */
char *pec_mime_unfold(struct pec_span value);

/* The first field named NAME (any case), unfolded; NULL when there is none. */
char *pec_mime_header(struct pec_span head, const char *name);

/* How many fields are named NAME (any case). */
size_t pec_mime_header_count(struct pec_span head, const char *name);

/*
 * The Content-Transfer-Encoding of the entity whose header is HEAD: its mechanism alone,
 * lowercase ("base64"), the comments and anything else after it dropped, as RFC 2045
 * allows them and GMime reads them; "7bit" when there is none.  Caller frees.
 */
char *pec_mime_encoding(struct pec_span head);

/* A parameter of a structured header value; NAME is lowercase. */
struct pec_mime_param {
    char *name;
    char *value;
};

struct pec_mime_params {
    struct pec_mime_param *v;
    size_t n;
};

/* At most this many parameters are kept per header value; the rest are ignored. */
#define PEC_MIME_MAX_PARAMS 64

/*
 * Parse the parameters of a Content-Type or Content-Disposition value: S points at the
 * first ';' (or anywhere before it, white space and comments are skipped).  Quoted
 * strings lose their quotes and backslashes; RFC 2231 continuations (name*0, name*1*)
 * and extended values (name*=utf-8''caf%C3%A9) are joined and decoded, ISO-8859-1 ones
 * converted to UTF-8, and then replace a plain parameter of the same name.  Garbage
 * between parameters is skipped.
 */
void pec_mime_params_parse(const char *s, struct pec_mime_params *out);

/* The first parameter named NAME (any case), or NULL. */
const char *pec_mime_param(const struct pec_mime_params *params, const char *name);
void pec_mime_params_free(struct pec_mime_params *params);

/*
 * Parameter NAME (lowercase) of the Content-Type VALUE, decoded but left in the charset
 * the sender declared, for a caller that writes the value back under that charset: RFC
 * 2231 pieces joined and %-decoded as pec_mime_params_parse joins them, else the plain
 * value, its RFC 2047 encoded words decoded when it is made only of them (as some
 * clients write file names).  The parameters begin where pec_mime_ctype_parse finds
 * them.  Returns the *LEN bytes, which may include NULs, or NULL when there is no such
 * parameter; *CHARSET gets the charset as written (RFC 2231 or of the first encoded
 * word), or NULL when none was declared.
 */
char *pec_mime_ctype_param_bytes(const char *value, const char *name, size_t *len, char **charset);

/* The same of a Content-Disposition VALUE, read as pec_mime_disposition_parse reads it. */
char *pec_mime_disposition_param_bytes(const char *value, const char *name, size_t *len,
                                       char **charset);

/* Either of the two, for a caller that reads both headers alike. */
typedef char *pec_mime_param_getter(const char *value, const char *name, size_t *len,
                                    char **charset);

/* A Content-Type value: type and subtype lowercase, parameters as above. */
struct pec_mime_ctype {
    char *type;
    char *subtype;
    struct pec_mime_params params;
};

/*
 * Parse a Content-Type value.  Returns 0, or -1 when it has no readable type/subtype (then
 * type and subtype are "" and the parameters are still parsed).  CT must be freed in both
 * cases.  The parameters begin at the first ';' after the subtype and any whole comments,
 * whatever junk lies between, as GMime reads them.
 */
int pec_mime_ctype_parse(const char *value, struct pec_mime_ctype *ct);

/* Is CT TYPE/SUBTYPE (ASCII case ignored)?  SUBTYPE NULL matches any subtype. */
int pec_mime_ctype_is(const struct pec_mime_ctype *ct, const char *type, const char *subtype);
void pec_mime_ctype_free(struct pec_mime_ctype *ct);

/*
 * Parse a Content-Disposition value: returns its lowercase disposition type ("inline",
 * "attachment", or "" when unreadable), fills PARAMS, which begin at the first ';' as for
 * GMime.
 */
char *pec_mime_disposition_parse(const char *value, struct pec_mime_params *params);

/* The parts of a multipart body, as ranges of it. */
struct pec_mime_multipart {
    struct pec_span preamble;
    struct pec_span *parts; /* headers and body of each part, delimiters excluded */
    size_t nparts;
    struct pec_span epilogue;
    int closed;   /* the close delimiter --B-- was found */
    int too_many; /* parts beyond max_parts were left unsplit (nparts == max_parts) */
};

/*
 * Split BODY by BOUNDARY (RFC 2046 5.1.1).  A delimiter is a line "--BOUNDARY", or
 * "--BOUNDARY--" for the last, possibly followed by spaces, tabs and CRs (as GMime reads
 * them, see mime.c); the line end before
 * it belongs to it, not to the part.  A line that merely starts with the delimiter and
 * goes on ("--BOUNDARYxyz") is content.  Without a close delimiter the last part runs to
 * the end of BODY and CLOSED stays 0: the message was truncated.  Returns 0, or -1 when
 * no delimiter was found at all or BOUNDARY is empty (then PREAMBLE is all of BODY).
 * MP must be freed in both cases.
 */
int pec_mime_multipart_split(struct pec_span body, const char *boundary, size_t max_parts,
                             struct pec_mime_multipart *mp);
void pec_mime_multipart_free(struct pec_mime_multipart *mp);

/*
 * Decode a header text that may hold RFC 2047 encoded words (Subject) into UTF-8; bytes
 * that are not UTF-8 are read as ISO-8859-1 and control characters dropped, so the result
 * is always clean UTF-8.
 */
char *pec_mime_decode_text(const char *text);

/*
 * The address of the first mailbox in an address header value: what is inside <...>
 * when there is an angle address ("Per conto di: x@y" <posta-certificata@z> gives
 * posta-certificata@z), else the bare addr-spec; comments and quoted display names are
 * skipped.  NULL when there is nothing that looks like an address.
 */
char *pec_mime_address(const char *value);

/*
 * Transfer decoding.  Both always set *OUT (xmalloc'ed, NUL-terminated beyond *OUTLEN)
 * to the bytes they could decode, and return 0 when the input was well-formed, -1 when it
 * was broken: base64 with a byte outside the alphabet, data after the padding or a
 * dangling sixth of a byte; quoted-printable with '=' not followed by two hex digits or a
 * line end.  White space and line ends inside base64 are ignored, and so is missing
 * padding.  Quoted-printable keeps line ends as they are and drops the white space that
 * transport may have added at the end of lines.
 */
int pec_base64_decode(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen);
int pec_qp_decode(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen);

/* Has IN no LF without a CR before it? */
int pec_mime_is_crlf(const unsigned char *in, size_t len);

/*
 * The canonical form S/MIME signs: a copy of IN (xmalloc'ed) where every LF without a CR
 * before it becomes CRLF.
 */
unsigned char *pec_mime_crlf(const unsigned char *in, size_t len, size_t *outlen);

#endif
