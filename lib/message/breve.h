/*
 * breve - the original message as a ricevuta di avvenuta consegna breve
 * carries it: attachments replaced by their SHA-1.
 *
 * The rules (pec-rules.md 4.7) keep the MIME structure of the original and
 * replace every part that has a name (Content-Type "name" parameter) or a
 * file name (Content-Disposition "filename" parameter), and every attached
 * message (message/rfc822), by a text/plain part named "<name>.hash" whose
 * body is the SHA-1 of the part, 40 lowercase hex digits.  What is hashed,
 * as the project decided (ARCHITECTURE.md): the part's body bytes as
 * transmitted, i.e. still transfer-encoded, from after the blank line that
 * ends the part's headers up to, not including, the line break before the
 * next boundary delimiter (RFC 2046 gives that line break to the delimiter).
 * The sender keeps the original and can recompute every hash from its bytes.
 *
 * Every other byte is copied unchanged: the message header, preambles,
 * epilogues, delimiters, parts without a name.  Of a multipart/signed only the
 * first part is walked; the signature part stays, and no longer verifies, as
 * the rules accept.  The message itself is never replaced, its header
 * section always stays, so an original that is not multipart (an opaque
 * application/pkcs7-mime above all) comes out whole: breve == completa.
 *
 * The walk reads the spool at offsets a line at a time and hashes ranges in
 * place, so a 30 MB original is never held in memory.  A part the walk does
 * not read into, because its header section exceeds PEC_BREVE_MAX_HEADER
 * bytes or it is a multipart nested PEC_BREVE_MAX_DEPTH deep or without a
 * boundary of 1 to 70 characters, is replaced whole, as an attachment is
 * ("allegato.hash", the SHA-1 of its body), so whatever its shape no byte of
 * an attachment is carried.  When the message itself is such an entity, its
 * header section is kept and its body alone becomes the SHA-1 of the body.
 */
#ifndef PEC_BREVE_H
#define PEC_BREVE_H

#include <stddef.h>

#include "util/spool.h"

#define PEC_BREVE_MAX_DEPTH 32
#define PEC_BREVE_MAX_HEADER (256 * 1024)

/*
 * Appends to OUT the breve form of the message ORIG (CRLF).  *REPLACED, when
 * not NULL, gets the number of parts replaced by a hash.  Returns 0, or -1
 * with a reason in err when the spools cannot be read or written.
 */
int pec_breve_build(const struct pec_spool *orig, struct pec_spool *out, size_t *replaced,
                    char *err, size_t errlen);

#endif
