/*
 * pecmsg - the vocabulary shared by the builders and the parser: header
 * lists, the provider identity that signs (issuer), MIME parts, and a built
 * message (top-level headers plus a body spool).
 *
 * Every generated message is CRLF throughout.  A built message is kept as
 * headers and body apart because the milter applies them apart (header
 * changes, then one run of body replacement), while the injector and the
 * Maildir writer serialise them whole (pec_built_write).
 */
#ifndef PEC_PECMSG_H
#define PEC_PECMSG_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "util/clock.h"
#include "message/ident.h"
#include "message/smime.h"
#include "util/spool.h"

struct pec_header {
    char *name;
    char *value; /* without the space after the colon; folded lines keep CRLF+WSP */
};

struct pec_headers {
    struct pec_header *v;
    size_t n;
};

void pec_headers_add(struct pec_headers *h, const char *name, const char *value);
/* first value of NAME (case-insensitive), or NULL */
const char *pec_headers_get(const struct pec_headers *h, const char *name);
void pec_headers_free(struct pec_headers *h);

/* Who we are when we build: one per runtime, read-only, shared by threads. */
struct pec_issuer {
    const char *provider_name;   /* gestore-emittente */
    const char *service_address; /* From of everything we generate */
    const struct pec_signer *signer;
    const struct pec_clock *clock;
    const struct pec_ident *ident;
    const char *spool_dir;  /* NULL: $TMPDIR or /tmp */
    size_t spool_mem_limit; /* bytes a spool keeps in memory */
};

/*
 * One MIME part of the signed multipart/mixed.  The body comes from DATA/LEN
 * or from SPOOL (whole); ENCODING names the transfer encoding to apply:
 * "base64" and "quoted-printable" encode the given bytes; "7bit", "8bit"
 * copy them as they are (CRLF expected).  A part with CHILDREN is a
 * multipart (CONTENT_TYPE "multipart/alternative", say) and has no body.
 */
struct pec_part {
    const char *content_type; /* whole value, parameters included */
    const char *disposition;  /* whole value, or NULL */
    const char *encoding;
    const unsigned char *data;
    size_t len;
    const struct pec_spool *spool;
    const struct pec_part *children;
    size_t n_children;
};

struct pec_built {
    struct pec_headers headers; /* top level, in order */
    struct pec_spool *body;     /* CRLF */
    char *message_id;           /* without angle brackets */
};

/*
 * Build multipart/mixed from PARTS, sign it as a detached CMS at WHEN, and
 * wrap both in multipart/signed.  Appends MIME-Version and Content-Type to
 * OUT->headers and creates OUT->body.  Boundaries are derived from the
 * content, so a fixed clock and deterministic identifiers give identical
 * bytes.  0, or -1 with err.
 */
int pec_envelope_sign(const struct pec_issuer *iss, const struct pec_part *parts, size_t nparts,
                      time_t when, struct pec_built *out, char *err, size_t errlen);

/* Headers, blank line, body: the whole message, CRLF. 0, or -1 (errno). */
int pec_built_write(const struct pec_built *b, FILE *out);
int pec_built_to_spool(const struct pec_built *b, struct pec_spool *out);
void pec_built_free(struct pec_built *b);

#endif
