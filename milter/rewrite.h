/*
 * rewrite - what the role modules share when a message changes in the MTA,
 * and their answer to an internal failure.
 *
 * rewrite_message() turns the message into an envelope libpec built (a
 * busta di trasporto, a busta di anomalia): first every header request (the
 * original's top-level fields KEEPS does not accept are deleted, last
 * instance first; the envelope's are added), then the body replacement in
 * one run of chunks, because Postfix refuses body replacements interleaved
 * with other requests.
 */
#ifndef PECMILTER_REWRITE_H
#define PECMILTER_REWRITE_H

#include <stddef.h>

#include <libmilter/mfapi.h>

#include "message/pecmsg.h"
#include "role.h"

/*
 * NAMES[0..N): the top-level header names as the MTA sent them, in order.
 * 0, or -1 when the MTA refused a request (logged).
 */
int rewrite_message(SMFICTX *ctx, const char *qid, int leadspc, char *const *names, size_t n,
                    int (*keeps)(const char *name), const struct pec_built *b);

/*
 * An internal failure (spool, signing, store) of role ROLE: one log line,
 * and the SMTP answer on_internal_error asks for (451 or 554): nothing
 * passes uncertified or unverified.
 */
sfsistat rewrite_internal_error(SMFICTX *ctx, const struct conn *c, const char *role,
                                const char *qid, const char *what);

#endif
