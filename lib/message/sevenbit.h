/*
 * sevenbit - an original made fit for 7-bit transport before it is signed.
 *
 * The parts of a busta must travel on 7-bit transport (pec-rules.md 3.1): an
 * MTA that meets a peer without 8BITMIME turns 8-bit content into
 * quoted-printable, and a signature over the 8-bit bytes then no longer
 * verifies.  So an original with 8-bit bytes is made 7-bit at the access
 * point, the way such an MTA would, but before we sign it: each leaf part
 * whose body holds 8-bit bytes under 7bit, 8bit or binary is encoded again,
 * quoted-printable for text, base64 for the rest, with its
 * Content-Transfer-Encoding field replaced; everything else keeps its bytes.
 * Decoding gives every part's content back unchanged.
 *
 * What cannot be made 7-bit so is refused, with the reason: 8-bit bytes in a
 * header section (headers travel as RFC 2047 encoded words), in a preamble or
 * epilogue, in a body already encoded base64 or quoted-printable (a broken
 * encoding), under an encoding we do not know, inside a multipart/signed (a
 * new encoding would break the sender's own signature), or nested deeper than
 * PEC_7BIT_MAX_DEPTH.
 */
#ifndef PEC_SEVENBIT_H
#define PEC_SEVENBIT_H

#include <stddef.h>

#include "util/spool.h"

#define PEC_7BIT_MAX_DEPTH 32

/*
 * MSG[0..LEN) made 7-bit into OUT (NULL: only check that it can be).  0 done (a
 * 7-bit MSG is copied unchanged), 1 it cannot be (WHY says where and why, in
 * English), -1 with errno when OUT fails.
 */
int pec_7bit(const unsigned char *msg, size_t len, struct pec_spool *out, char *why, size_t whylen);

#endif
