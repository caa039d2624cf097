/*
 * inspect_common - what the PEC inspection (verify.c) and the REM reader (rem.c) do alike:
 * the opening checks, the top-level header fields, a MIME part opened and decoded, the
 * smime.p7s part and the signed multipart/mixed, and the envelope signature over the signed
 * part with the signer facts an inspection keeps of it.  Private to lib/message/verify.c and
 * lib/message/rem.c; each keeps its own steps, reasons and verdict, so where the two word a
 * failure differently these functions say what failed and leave the wording to the caller.
 */
#ifndef PEC_INSPECT_COMMON_H
#define PEC_INSPECT_COMMON_H

#include <stddef.h>

#include "message/mime.h"
#include "message/smime.h"
#include "message/verify.h"

/* OPTS usable and the libraries ready?  0, or -1 with REASON filled and *TEMPORARY set. */
int pec_inspect_start(const struct pec_inspect_opts *opts, char *reason, size_t reasonlen,
                      int *temporary);

/* The top-level header fields both inspections read; a caller's own come after them. */
enum pec_top_shared {
    PEC_TOP_MESSAGE_ID,
    PEC_TOP_SUBJECT,
    PEC_TOP_FROM,
    PEC_TOP_CONTENT_TYPE,
    PEC_TOP_SHARED,
};

#define PEC_TOP_MAX 16

/* The first value of each field, unfolded (NULL when absent), and how many times it came. */
struct pec_top {
    const char *const *own; /* the caller's names, for the fields from PEC_TOP_SHARED on */
    size_t n;               /* PEC_TOP_SHARED + the caller's */
    char *value[PEC_TOP_MAX];
    size_t count[PEC_TOP_MAX];
};

/*
 * Read the header block HEAD in one pass into *T: the shared fields and the N_OWN named OWN
 * (which must outlive T).  A field of neither kind goes to OTHER(ARG, field) when OTHER is
 * not NULL.
 */
void pec_top_read(struct pec_top *t, struct pec_span head, const char *const *own, size_t n_own,
                  void (*other)(void *arg, const struct pec_mime_field *f), void *arg);

/* The name of field I of T, as it is written in the rules. */
const char *pec_top_name(const struct pec_top *t, size_t i);

/* Field I's value, now the caller's; T keeps its count. */
char *pec_top_take(struct pec_top *t, size_t i);

/* Subject:, RFC 2047 decoded to UTF-8 and now the caller's; NULL when absent. */
char *pec_top_take_subject(struct pec_top *t);

/* Free the values not taken. */
void pec_top_free(struct pec_top *t);

/* A MIME part's headers and body, with the MIME fields the inspections read from it. */
struct pec_part {
    struct pec_span head;
    struct pec_span body;
    struct pec_mime_ctype ct; /* text/plain when the part has no Content-Type */
    char *disposition;
    struct pec_mime_params dparams;
    char *encoding;       /* lowercase; "7bit" when absent */
    const char *filename; /* Content-Disposition's filename, else Content-Type's name */
};

void pec_part_open(struct pec_part *p, struct pec_span bytes);
void pec_part_close(struct pec_part *p);

/*
 * The body of P decoded per its Content-Transfer-Encoding into *OUT (xmalloc'ed, NUL
 * terminated, free it in every case).  0, or -1 with *WHY set when the encoding is unknown
 * or the data broken.
 */
int pec_part_decode(const struct pec_part *p, unsigned char **out, size_t *outlen,
                    const char **why);

/* Is TYPE application/pkcs7-signature or its x- form (any case)? */
int pec_is_pkcs7_signature(const char *type);

/*
 * The smime.p7s part BYTES decoded into *SIG (xmalloc'ed, the caller frees it in every
 * case).  0; or -1 with TYPE set to its "type/subtype" (just "/" when it has no
 * Content-Type) when it is not a PKCS#7 signature, WHY then ""; or -1 with the reason in
 * WHY when it does not decode or is empty.
 */
int pec_signature_part(struct pec_span bytes, unsigned char **sig, size_t *siglen, char *type,
                       size_t typelen, char *why, size_t whylen);

/* What pec_signed_mixed() found wrong where the callers word it themselves. */
enum pec_mixed_fault {
    PEC_MIXED_OK,
    PEC_MIXED_NOT_MIXED, /* INNER's type is another */
    PEC_MIXED_TOO_MANY,  /* more than PEC_INSPECT_MAX_PARTS parts */
    PEC_MIXED_BROKEN,    /* the reason is in WHY */
};

/*
 * Open the signed part CONTENT into *INNER as a multipart/mixed and split its body into *MP
 * (close INNER and free MP in every case; both zeroed by the caller first).
 */
enum pec_mixed_fault pec_signed_mixed(struct pec_span content, struct pec_part *inner,
                                      struct pec_mime_multipart *mp, char *why, size_t whylen);

/*
 * Verify the detached signature SIG[0..SIGLEN) over CONTENT, in its CRLF form, against
 * OPTS' trust anchors at the instant they name; *RES as pec_smime_verify() fills it.
 */
void pec_envelope_verify(struct pec_span content, const unsigned char *sig, size_t siglen,
                         const struct pec_inspect_opts *opts, struct pec_verify_result *res);

/* Keep in *F the facts of RES (the strings copied); free them with pec_signer_facts_free. */
void pec_signer_facts_keep(struct pec_signer_facts *f, const struct pec_verify_result *res);
void pec_signer_facts_free(struct pec_signer_facts *f);

#endif
