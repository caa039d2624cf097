/*
 * verify - what an incoming message is, and whether it is a valid PEC object.
 *
 * The Incoming Point must tell, for every message that arrives, whether it is a busta di
 * trasporto, a notice (ricevuta/avviso), a busta di anomalia or ordinary mail, and whether
 * it is authentic: signed by a listed provider, for a domain that provider manages, and
 * shaped as the rules say (pec-rules.md 2.3, 4, 6.3).  pecverify answers the same
 * question for an operator.  pec_inspect() does the whole job on the bytes as received
 * and reduces it to a kind, a verdict and one short reason a sysadmin can act on.
 *
 * The steps, in the order their failures are reported:
 *   1. framing: top-level multipart/signed, protocol application/(x-)pkcs7-signature,
 *      two parts, closing boundary (a missing one means a truncated message), the
 *      signature part base64 that decodes;
 *   2. the signature over the first part, canonicalised to CRLF, and its chain, checked
 *      against the trust anchors at the chosen instant, and the signer's certificate
 *      against the CRLs the index carries: revoked before it signed is not valid;
 *   3. with an index: the signer certificate belongs to a provider record (hash and
 *      bytes), and the domain of From: is one of that record's managedDomains;
 *   4. structure: X-Trasporto or X-Ricevuta (names in any case), multipart/mixed inside,
 *      daticert.xml present, valid against the DTD and of the tipo the header announces,
 *      postacert.eml present or absent as the tipo requires; a busta di anomalia has the
 *      received message and no daticert.xml.
 * The kind comes from the structure alone: ORDINARY when there is no S/MIME signature,
 * MALFORMED when there is one but the framing or the structure is broken, else what the
 * headers announce.  A well-formed message may still be invalid (a tampered body, an
 * unknown signer): kind and validity are separate answers.
 *
 * Work is linear in the size of the message plus the cost of one signature check; no
 * input, however broken, makes pec_inspect() crash, leak or loop.  Any number of threads
 * may inspect at once with shared trust and index.
 */
#ifndef PEC_VERIFY_H
#define PEC_VERIFY_H

#include <stddef.h>
#include <time.h>

#include "message/daticert.h"
#include "message/index.h"
#include "message/smime.h"

enum pec_kind {
    PEC_KIND_ORDINARY,  /* no S/MIME signature: ordinary Internet mail */
    PEC_KIND_MALFORMED, /* S/MIME signed, but not a well-formed PEC object */
    PEC_KIND_BUSTA,     /* X-Trasporto: posta-certificata */
    PEC_KIND_NOTICE,    /* X-Ricevuta: a receipt or an avviso */
    PEC_KIND_ANOMALIA,  /* X-Trasporto: errore */
};

/* "ordinary", "malformed", "busta", "notice", "anomalia" */
const char *pec_kind_name(enum pec_kind kind);

/* At most this many parts are looked at in a multipart; a message with more is malformed. */
#define PEC_INSPECT_MAX_PARTS 1000

struct pec_inspect_opts {
    const struct pec_trust *trust; /* required */
    const struct pec_index *index; /* NULL: the index checks are skipped */
    enum pec_verify_at at_mode;    /* instant of the chain check (smime.h) */
    time_t at;                     /* for PEC_AT_GIVEN */
};

/*
 * What an inspection keeps of the envelope signature (a pec_verify_result, smime.h): the
 * fields are spelled once, here, for struct pec_signer_facts and for the inspections that
 * carry them as their own members (struct pec_inspection, struct pec_rem_inspection).
 */
#define PEC_SIGNER_FACTS                                                                           \
    int signature_ok;                  /* signature matched and chain validated */                 \
    enum pec_verify_status sig_status; /* valid when a signature was checked */                    \
    char *signer_subject;                                                                          \
    char *signer_issuer;                                                                           \
    char signer_sha1[41];                                                                          \
    char digest[16];                                                                               \
    int has_signing_time;                                                                          \
    time_t signing_time;                                                                           \
    time_t checked_at;                                                                             \
    int crl_checked;    /* the index carried CRLs and the signer was checked against them */       \
    time_t revoked_at;  /* the signer's revocation, when a CRL lists it; else 0 */                 \
    char crl_note[256]; /* what limited the revocation check, or "" */

struct pec_signer_facts {
    PEC_SIGNER_FACTS
};

struct pec_inspection {
    enum pec_kind kind;
    int valid;
    char reason[512]; /* one line; "" when valid */
    int temporary;    /* resource failure: nothing is known about the message, retry later */

    /* top-level headers, unfolded; NULL when absent */
    char *x_trasporto;
    char *x_ricevuta;
    char *x_tipo_ricevuta;
    char *x_riferimento_message_id;
    char *x_verifica_sicurezza;
    char *message_id;
    char *subject; /* RFC 2047 decoded to UTF-8 */
    char *from;
    char *from_address; /* the address of From: (the provider's, on a PEC object) */

    /* daticert.xml, when present and valid against the DTD */
    int has_daticert;
    struct pec_daticert daticert;

    /* the signature, as far as it could be read; signer_facts names the same members */
    union {
        struct {
            PEC_SIGNER_FACTS
        };
        struct pec_signer_facts signer_facts;
    };
    char *signer_address;

    /* the index check: whether it ran, and the signer's record when found */
    int index_checked;
    const struct pec_provider *provider; /* points into opts->index */

    /* the original message (busta, completa/breve receipts, anomalia): the body of the
     * message/rfc822 part, at this offset of the inspected bytes, in this encoding */
    int has_postacert;
    size_t postacert_off;
    size_t postacert_len;
    char *postacert_encoding; /* lowercase Content-Transfer-Encoding, "7bit" if none */
};

/*
 * Inspect MSG[0..LEN).  Fills *OUT in every case (free it with pec_inspection_free) and
 * returns 0 when OUT->valid, else -1.
 */
int pec_inspect(const unsigned char *msg, size_t len, const struct pec_inspect_opts *opts,
                struct pec_inspection *out);

void pec_inspection_free(struct pec_inspection *in);

#endif
