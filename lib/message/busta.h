/*
 * busta - the two envelopes (buste) around a message: the busta di trasporto
 * the access point wraps every accepted original in (pec-rules.md 4.1), and
 * the busta di anomalia the reception point wraps a message in when it
 * cannot certify it (4.2).
 *
 * The original stays the user's, byte for byte: it travels as postacert.eml,
 * message/rfc822 with transfer encoding 7bit or 8bit as its bytes are, never
 * re-encoded.  In a busta di trasporto the one change is the identity:
 * the first Message-ID field's value becomes <identificativo> (any further
 * Message-ID field goes: the message gets one identity), and when the client
 * gave an id, X-Riferimento-Message-ID: <client id> follows it; with no
 * Message-ID the pair is added at the end of the header section.  Headers a
 * client may forge (X-Trasporto, X-Ricevuta, X-VerificaSicurezza, X-Mittente,
 * X-Riferimento-Message-ID) stay inside postacert.eml, inert.
 *
 * Top-level headers.  The rules have an envelope inherit Received, To, Cc,
 * Return-Path, Reply-To (the anomaly also Message-ID) from the original
 * unchanged: the milter leaves those fields where the MTA has them and
 * deletes every other original field (pec_busta_keeps() and
 * pec_anomalia_keeps() say which); OUT->headers are then ours, in this order:
 *
 *   busta:    X-Trasporto: posta-certificata, Date, Subject: POSTA CERTIFICATA: ...,
 *             From: "Per conto di: <mittente>" <service address>, Reply-To (only when
 *             the original had none), Message-ID: <identificativo>,
 *             X-Riferimento-Message-ID (only with a client id), X-TipoRicevuta,
 *             MIME-Version, Content-Type
 *   anomalia: X-Trasporto: errore, Date, Subject: ANOMALIA MESSAGGIO: ..., From,
 *             Reply-To (only when absent), MIME-Version, Content-Type
 *
 * Subject: the original's as written when it is ASCII (encoded-words kept),
 * else its decoded text as RFC 2047 UTF-8 encoded-words.
 *
 * Body of the busta: multipart/mixed of multipart/alternative (text/plain,
 * text/html), daticert.xml, postacert.eml, in the order Aruba uses, so our
 * busta looks like a sibling of the messages peers already parse.  The texts
 * follow the Namirial wording of 4.1; the text is ISO-8859-1 when every
 * character fits, else UTF-8; the HTML is pure ASCII (character references),
 * without script, style or any external resource.
 *
 * Body of the anomaly: only a text/plain and the received message as
 * postacert.eml: the rules allow no other part (no daticert, no HTML).
 *
 * Both are signed by pec_envelope_sign(); with a fixed clock and
 * deterministic identifiers the bytes repeat.
 */
#ifndef PEC_BUSTA_H
#define PEC_BUSTA_H

#include <stddef.h>
#include <time.h>

#include "message/daticert.h"
#include "message/original.h"
#include "message/pecmsg.h"
#include "util/spool.h"

/* nonzero when the busta di trasporto inherits the original's field NAME (any case) */
int pec_busta_keeps(const char *name);
/* the same for the busta di anomalia, which keeps Message-ID too */
int pec_anomalia_keeps(const char *name);

/*
 * Wrap O in a busta di trasporto.  CLASSIFIED: the To then Cc recipients with
 * their certificato/esterno kind, as daticert.xml and the text list them (at
 * least one).  IDENTIFICATIVO: the new id, without brackets.  WHEN: the
 * acceptance instant.  OUT (zeroed here) gets our headers, the signed body and
 * message_id = identificativo; release it with pec_built_free.  0, or -1 with err.
 */
int pec_build_busta(const struct pec_issuer *iss, const struct pec_original *o,
                    const struct pec_destinatario *classified, size_t n, const char *identificativo,
                    time_t when, struct pec_built *out, char *err, size_t errlen);

/*
 * Wrap RECEIVED, the whole message as it arrived, in a busta di anomalia;
 * REASON is the short error shown in the text ("la firma non è valida").
 * OUT->message_id is the received Message-ID without brackets, or NULL.
 */
int pec_build_anomalia(const struct pec_issuer *iss, const struct pec_spool *received,
                       const char *reason, time_t when, struct pec_built *out, char *err,
                       size_t errlen);

/* The postacert.eml of a busta di trasporto: O's bytes with the identity changed as above. */
int pec_postacert_write(const struct pec_original *o, const char *identificativo,
                        struct pec_spool *out);

/*
 * The envelope as one standalone message, as the MTA will deliver it: the
 * header fields of RAW (the original) that KEEPS accepts, as written and in
 * their order, then B's headers, a blank line, B's body.  For tests, the
 * Maildir writer and injection.  0, or -1 with err.
 */
int pec_built_full(const struct pec_built *b, const struct pec_spool *raw,
                   int (*keeps)(const char *name), struct pec_spool *out, char *err, size_t errlen);

#endif
