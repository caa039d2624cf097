/*
 * feed - a message handed over piece by piece, as a milter receives it.
 *
 * The OpenDKIM shape: the milter glue passes each header, the end of the
 * header section, the body chunks, and at the end of the message gets back a
 * struct pec_original holding the message as the client sent it, byte for
 * byte, in a spool (memory up to a limit, then an unlinked file), so a 30 MB
 * submission costs one spool file, not 30 MB of heap per connection.
 *
 * Header values are taken as the milter library gives them with SMFIP_HDR_LEADSPC
 * (the glue must negotiate it): the whitespace after the colon is kept, so
 * "Subject:x" and "Subject: x" come back as sent.  Folded values arrive with
 * their line breaks as "\n" (Postfix) or "\r\n" (Sendmail); both become CRLF
 * followed by the whitespace that was there.  Body chunks are CRLF already;
 * a bare LF, should an MTA hand one over, becomes CRLF too, which is how it
 * travelled over SMTP.
 *
 * A header section larger than PEC_HEADER_MAX is not spooled whole: the
 * fields that fit are, the rest are left out and the original says so
 * (pec_original.header_cut), so the submission can still be refused by name
 * rather than failing as unreadable.
 *
 * Every call returns 0, or -1 with errno when the spool cannot be written
 * (disk full); after a failure the feed stays failed and pec_feed_finish
 * says why.
 */
#ifndef PEC_FEED_H
#define PEC_FEED_H

#include <stddef.h>

#include "message/original.h"

struct pec_feed;

/* SPOOL_DIR: where a large message goes (NULL: $TMPDIR or /tmp); MEM_LIMIT: bytes in memory */
struct pec_feed *pec_feed_new(const char *spool_dir, size_t mem_limit);
void pec_feed_free(struct pec_feed *f);

int pec_feed_header(struct pec_feed *f, const char *name, const char *value);
int pec_feed_eoh(struct pec_feed *f);
int pec_feed_body(struct pec_feed *f, const unsigned char *buf, size_t len);

/*
 * End of message: parse what was fed, with the SMTP envelope, into OUT (release with
 * pec_original_free; the feed is then spent, free it).  0, or -1 with err.
 */
int pec_feed_finish(struct pec_feed *f, const char *mail_from, const char *const *rcpts,
                    size_t n_rcpts, struct pec_original *out, char *err, size_t errlen);

#endif
