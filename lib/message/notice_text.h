/*
 * notice_text - the words of each notice, for people: text/plain and the
 * equivalent text/html, both produced from one list of lines so they cannot
 * say different things (pec-rules.md 3.1).
 *
 * The Italian is modelled on the receipts real providers send (Aruba's,
 * quoted in pec-rules.md 4.3 and 4.7) and on the RFC 6109 models of the
 * others.  Peers never parse it: daticert.xml is the machine-readable part.
 * Every text ends with "Identificativo del messaggio: <identificativo>".
 *
 * Internal to the notice builder (notice.c).
 */
#ifndef PEC_NOTICE_TEXT_H
#define PEC_NOTICE_TEXT_H

#include <stddef.h>

#include "message/daticert.h"
#include "message/notice.h"

struct pec_notice_text {
    char *title; /* UTF-8 */
    char *plain; /* in CHARSET, CRLF */
    size_t plain_len;
    char *html; /* ASCII with character references, CRLF */
    size_t html_len;
    const char *charset; /* "iso-8859-1" when every character fits, else "utf-8" */
};

/*
 * The text of notice N whose daticert is D (complete: tipo, data, consegna,
 * errore-esteso as the notice will carry them).  Release with
 * pec_notice_text_free().
 */
void pec_notice_text_build(const struct pec_notice *n, const struct pec_daticert *d,
                           struct pec_notice_text *out);
void pec_notice_text_free(struct pec_notice_text *t);

#endif
