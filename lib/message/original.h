/*
 * original - a submitted message as the access point sees it.
 *
 * The raw bytes (CRLF, in a spool, untouched: postacert.eml is made from
 * them byte for byte), the SMTP envelope, where each top-level header field
 * lies in those bytes, and the facts the rules care about, taken from the
 * top-level header only: every From address (the formal check wants exactly
 * one), To, Cc, whether Bcc carries a value, Subject decoded to UTF-8 and as
 * written, the client's Message-ID, Reply-To, the receipt type asked for.
 *
 * Parsing never fails on a message's content: folded, duplicated, 8-bit or
 * nonsensical fields give what can be read from them, and a line that is not
 * a field is kept in the bytes and otherwise ignored.  The only refusals are
 * a header section larger than PEC_HEADER_MAX (a sane error, not a 1 GB
 * allocation) and an unreadable spool.
 *
 * What would keep the message from travelling intact is noted, not judged
 * (the access point refuses it, provider/access.h): the first line longer
 * than RFC 5322's 998 octets, which an MTA folds in transit, so a signature
 * over it breaks; the first NUL byte, which no mail may carry and which a
 * milter API that hands header values over as C strings silently cuts at.
 *
 * Address lists are parsed by GMime (groups flattened, display names
 * dropped, the addr-spec as written); subjects are decoded by GMime
 * (RFC 2047) after raw 8-bit bytes that are not UTF-8 have been read as
 * ISO-8859-1, so the result is always valid UTF-8.
 */
#ifndef PEC_ORIGINAL_H
#define PEC_ORIGINAL_H

#include <stddef.h>

#include "message/daticert.h"
#include "util/spool.h"

/* the largest header section we parse, in bytes; Postfix's own default is 100 KiB */
#define PEC_HEADER_MAX (1024 * 1024)

/*
 * The most top-level header fields of a message we wrap in a busta.  The milter deletes
 * the original's fields one request each, and Postfix's cleanup re-reads its queue file
 * for every request: the work grows with the square of the fields, and past 10,000
 * backward jumps in one reading (REVERSE_JUMP_LIMIT) it gives up with a temporary error
 * the client retries for days.  100,000 header lines took minutes to fail so; no real
 * message comes near a thousand fields.
 */
#define PEC_HEADER_FIELDS_MAX 1000

/* the longest line, CRLF excluded, that travels unaltered (RFC 5322 2.1.1) */
#define PEC_LINE_MAX 998

/* a line of the message; number 0: there is none such */
struct pec_line {
    size_t off;    /* its first byte */
    size_t len;    /* its octets, CRLF excluded */
    size_t number; /* from 1, counted in its part: the header section, or the body */
};

/* one top-level header field in the raw bytes */
struct pec_field {
    char *name; /* as written, without trailing whitespace */
    size_t off; /* its first byte */
    size_t len; /* through the CRLF ending its last (folded) line */
};

struct pec_original {
    const struct pec_spool *raw; /* the message, CRLF */
    struct pec_spool *own;       /* RAW, when this struct owns it */

    /* SMTP envelope: addresses without angle brackets; NULL / 0 when not known */
    char *mail_from;
    char **rcpts;
    size_t n_rcpts;

    /* the header section is [0, header_len); the body starts at body_offset */
    struct pec_field *fields;
    size_t n_fields;
    size_t header_len;
    size_t body_offset; /* header_len + 2 after a blank line; the size when there is none */

    char **from; /* every address of every From field */
    size_t n_from;
    char **to;
    size_t n_to;
    char **cc;
    size_t n_cc;
    char **reply_to;
    size_t n_reply_to;
    int has_reply_to;  /* a Reply-To field exists, even an empty one */
    int bcc_has_value; /* some Bcc field is not blank */

    char *subject;     /* decoded, unfolded, UTF-8; NULL when there is no Subject */
    char *subject_raw; /* as written: folding kept, outer whitespace trimmed; NULL likewise */
    char *message_id;  /* the client's, with its angle brackets; NULL when none */
    enum pec_ricevuta tipo_ricevuta; /* X-TipoRicevuta; absent or unknown: completa */
    int eight_bit;                   /* some byte is 8-bit or NUL: not 7bit */

    struct pec_line long_line; /* the first line longer than PEC_LINE_MAX */
    struct pec_line nul_line;  /* the first line holding a NUL byte */
    /*
     * The header section was larger than PEC_HEADER_MAX and only the fields
     * in its first PEC_HEADER_MAX bytes were kept (pec_feed): enough to name
     * the message in a refusal; RAW is not the message, never certify it.
     */
    int header_cut;
};

/*
 * Parse RAW, which the struct adopts (freed with it, even when parsing
 * fails), with the SMTP envelope (angle brackets around addresses are
 * dropped).  0, or -1 with err.
 */
int pec_original_parse(struct pec_original *o, struct pec_spool *raw, const char *mail_from,
                       const char *const *rcpts, size_t n_rcpts, char *err, size_t errlen);

/* Parse RAW, which stays the caller's and must outlive O; no envelope. */
int pec_original_view(struct pec_original *o, const struct pec_spool *raw, char *err,
                      size_t errlen);

/* Copy BUF into a new spool, bare LFs made CRLF, and parse it as pec_original_parse(). */
int pec_original_from_mem(struct pec_original *o, const void *buf, size_t len,
                          const char *spool_dir, size_t mem_limit, const char *mail_from,
                          const char *const *rcpts, size_t n_rcpts, char *err, size_t errlen);

void pec_original_free(struct pec_original *o);

/* The first field NAME (any case): unfolded, trimmed; NULL when absent.  Caller frees. */
char *pec_original_header(const struct pec_original *o, const char *name);

/* The field's value as written: after the colon, outer whitespace and final CRLF removed. */
char *pec_original_field_raw(const struct pec_original *o, const struct pec_field *f);

/* The sender as the rules mean it: MAIL FROM when known and not null, else the first From. */
const char *pec_original_mittente(const struct pec_original *o);

#endif
