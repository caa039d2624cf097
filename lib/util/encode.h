/*
 * encode - the transfer and header encodings of the messages we build.
 *
 * Every part we emit must travel on 7-bit transport (pec-rules.md 3.1), and
 * a peer verifies our signature over the bytes as we wrote them, so the
 * encoders are strict and deterministic: base64 in 76-column lines (RFC 2045
 * 6.8), quoted-printable that encodes every byte a gateway could touch
 * (RFC 2045 6.7: '=', controls, 8-bit, whitespace before a line break), and
 * RFC 2047 encoded-words for header text that is not ASCII.  All of them end
 * lines with CRLF.
 *
 * The transfer encoders stream: feed them any number of chunks (a part can
 * be a 30 MB spool), then finish.  They write into a spool and return 0, or
 * -1 with errno when the spool fails.
 */
#ifndef PEC_ENCODE_H
#define PEC_ENCODE_H

#include <stddef.h>

#include "util/spool.h"

#define PEC_B64_LINE_IN 57 /* input bytes per 76-character line */

struct pec_b64 {
    struct pec_spool *out;
    unsigned char carry[PEC_B64_LINE_IN];
    size_t ncarry;
};

void pec_b64_init(struct pec_b64 *e, struct pec_spool *out);
int pec_b64_update(struct pec_b64 *e, const unsigned char *p, size_t n);
/* the last, shorter line; every line, the last one too, ends with CRLF */
int pec_b64_final(struct pec_b64 *e);

/*
 * Quoted-printable for text whose line breaks are CRLF: a CRLF in the input
 * is a hard line break, a lone CR or LF is encoded (=0D, =0A).  Output lines
 * are at most 76 characters, soft breaks included.
 */
struct pec_qp {
    struct pec_spool *out;
    char line[80];
    size_t col;
    int pending_ws; /* a space or tab not yet known to end a line, or -1 */
    int pending_cr;
};

void pec_qp_init(struct pec_qp *e, struct pec_spool *out);
int pec_qp_update(struct pec_qp *e, const unsigned char *p, size_t n);
/* ends the last line as the input did: with a CRLF only if the input ended with one */
int pec_qp_final(struct pec_qp *e);

/* base64 of IN[0..LEN) on one line, NUL-terminated; the caller frees it */
char *pec_b64_string(const unsigned char *in, size_t len);

/*
 * A header value made of ASCII PREFIX followed by UTF8, for a field called
 * NAME (used only to fit the lines).  ASCII UTF8 that fits on one line of
 * 998 characters is appended as is; anything else becomes RFC 2047 "B"
 * encoded-words of UTF-8, never splitting a character, folded with CRLF SP
 * into lines of at most 78 characters.  Caller frees.
 */
char *pec_rfc2047_value(const char *name, const char *prefix, const char *utf8);

/* nonzero when S has only printable ASCII, tab, CR and LF */
int pec_is_ascii(const char *s, size_t len);

/*
 * UTF8 (valid UTF-8) as ISO-8859-1.  A character outside Latin-1 becomes '?'
 * and *LOSSLESS is set to 0, else to 1.  Caller frees.
 */
char *pec_utf8_to_latin1(const char *utf8, int *lossless);

#endif
