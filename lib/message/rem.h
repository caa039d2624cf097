/*
 * rem - what a Registered Electronic Mail message (ETSI EN 319 532-4, the REM baseline and
 * the Italian REM-Policy-IT profile) is, and whether it is authentic.
 *
 * A REM message is PEC's busta or receipt grown up: a multipart/signed (CAdES-B-B, so
 * the signed attributes name the signer's certificate) around a multipart/mixed whose
 * parts each carry a REM-Section-Type: an introduction for people, on a dispatch the
 * original message, and the ERDS evidence, an XML document with its own enveloped
 * XAdES-B-T signature and an RFC 3161 time-stamp over that signature.  REM-* header
 * fields repeat the evidence's facts outside the signature (the event, its reasons, the
 * evidence identifier, the digest of the original, the client's Message-ID) so mail
 * software can read them without the XML.
 *
 * pec_rem_inspect() checks everything a REM message carries and reduces it, as
 * pec_inspect() does for PEC, to a kind, one verdict and the first reason.  The steps, in
 * the order their failures are reported (innermost first, so a changed original is
 * reported as a changed original, not as the envelope signature it also breaks):
 *   1. framing: multipart/signed with two parts and its closing boundary, smime.p7s;
 *   2. structure: the REM header fields, each part's REM-Section-Type (introduction,
 *      original only on a dispatch, xml_evidence), the evidence as XML;
 *   3. evidence: its XAdES signature (the enveloped reference with the transforms the
 *      baseline names, the SignedProperties reference), the signing certificate against
 *      SigningCertificateV2, and that certificate's chain against the trust anchors;
 *   4. time-stamp: its imprint against the canonical SignatureValue, the token's
 *      signature, and the TSA's chain when the trust anchors reach it (else reported as
 *      unchecked, with the reason, and not held against the message);
 *   5. original: its digest against the evidence's;
 *   6. envelope: the CMS signature over the signed part, signingCertificateV2 against
 *      the signer, the signer's chain;
 *   7. consistency: the REM header fields against the evidence (event, reasons, evidence
 *      identifier, digest, client Message-ID) and, on a dispatch, against the original
 *      (its Message-ID and REM-UAMessageIdentifier).
 * pec_rem_inspect_evidence() runs steps 3 and 4 on a standalone evidence document.
 *
 * Work is linear in the size of the input plus two signature checks and a time-stamp;
 * no input, however broken, makes these functions crash, leak or loop.  Any number of
 * threads may inspect at once.
 */
#ifndef PEC_REM_H
#define PEC_REM_H

#include <stddef.h>
#include <time.h>

#include "message/smime.h"
#include "message/verify.h"

/* One EventReason of an evidence: its URI, short code ("RA01") and text. */
struct pec_rem_reason {
    char *uri;
    char *code;
    char *text;
};

/* A sender or recipient: the mailto identifier and the eIDAS PersonIdentifier, if any. */
struct pec_rem_party {
    char *address;
    char *person_id;
};

/* The facts of an ERDS evidence (EN 319 522-3), as strings from the XML; NULL if absent. */
struct pec_rem_evidence {
    char *version;     /* the version attribute, "EN319522v1.1.1" */
    char *evidence_id; /* EvidenceIdentifier */
    char *event_uri;   /* ERDSEventId, http://uri.etsi.org/19522/Event/<Event> */
    const char *event; /* its last path segment, into event_uri */
    struct pec_rem_reason *reasons;
    size_t n_reasons;
    char *event_time;
    char *issuer;   /* EvidenceIssuerDetails: LegalName */
    char *external; /* ExternalERDSDetails: LegalName of the other provider */
    struct pec_rem_party sender;
    char *assurance_level;
    char *authentication_time;
    struct pec_rem_party *recipients;
    size_t n_recipients;
    size_t *refers_to; /* EvidenceRefersToRecipient, RelayEvidenceRefersTo: 1-based */
    size_t n_refers_to;
    char *forwarded_to; /* ForwardedToExternalSystem */
    char *submission_time;
    char *message_id;    /* MessageIdentifier: the dispatch's Message-ID, no brackets */
    char *app_layer_id;  /* AppLayerIdentifier: the client's Message-ID */
    char *digest_method; /* ds:DigestMethod Algorithm of the original */
    char *digest_value;  /* ds:DigestValue of the original, base64 */
    char *subject;       /* ext:GeneralEvidenceInfo/ext:Subject */
    size_t n_untrusted;  /* ext:UntrustedPathToRecipient entries */
    size_t *untrusted;   /* their 1-based recipient positions */
};

/* How far the time-stamping authority's certificate could be checked. */
enum pec_rem_tsa_chain {
    PEC_REM_TSA_NOT_CHECKED, /* no token, or its signature failed */
    PEC_REM_TSA_CHAIN_OK,
    PEC_REM_TSA_UNCHECKED, /* the trust anchors do not reach it: see tsa_note */
    PEC_REM_TSA_CHAIN_FAILED,
};

/* The evidence's XAdES signature and its time-stamp. */
struct pec_rem_seal {
    int checked; /* the signature could be looked at */
    int ok;      /* signature, signing certificate and chain all good */
    char *signer_subject;
    char *signer_issuer;
    char signer_sha1[41];
    int has_signing_time;
    time_t signing_time; /* xades:SigningTime */
    time_t checked_at;

    int has_timestamp;
    int timestamp_ok; /* imprint and token signature good (the chain is apart) */
    time_t timestamp_time;
    char *tsa_subject;
    enum pec_rem_tsa_chain tsa_chain;
    char tsa_note[300]; /* why the chain is unchecked or failed; "" otherwise */
};

/* What a REM event corresponds to in PEC: "busta", "accettazione"...; NULL for nothing. */
const char *pec_rem_pec_equivalent(int dispatch, const char *event, const char *reason_code);

struct pec_rem_inspection {
    const char *kind; /* "rem", "malformed", "evidence" (a standalone evidence document) */
    int valid;
    char reason[512]; /* one line; "" when valid */
    int temporary;    /* resource failure: retry later */

    /* top-level header fields, unfolded; NULL when absent */
    char *message_type;    /* REM-MessageType, its last path segment: "dispatch", "receipt" */
    char *event_header;    /* REM-EventIdentifier */
    char **reason_headers; /* REM-ReasonIdentifier, each */
    size_t n_reason_headers;
    char *evidence_id_header; /* REM-Evidence-ID */
    char *digest_alg_header;  /* REM-DigestAlgorithm */
    char *digest_header;      /* REM-DigestValue */
    char *ua_message_id;      /* REM-UAMessageIdentifier */
    char *md08;               /* REM-MD08: the sender as the provider names it */
    char *metadata_version;   /* REM-MetadataVersion */
    char *message_id;
    char *subject; /* RFC 2047 decoded to UTF-8 */
    char *from;

    int has_evidence;
    struct pec_rem_evidence evidence;
    struct pec_rem_seal seal;

    /* the envelope signature, as far as it could be read (as struct pec_inspection) */
    union {
        struct {
            PEC_SIGNER_FACTS
        };
        struct pec_signer_facts signer_facts;
    };

    /* the original, on a dispatch: the body of the rem_message/original part at this offset
     * of the inspected bytes, and its digest as computed here (base64) */
    int has_original;
    size_t original_off;
    size_t original_len;
    char *original_encoding;
    char *original_digest;
};

/* Does MSG announce itself as REM (a REM-MessageType field in its header)? */
int pec_rem_announced(const unsigned char *msg, size_t len);

/*
 * Inspect the REM message MSG[0..LEN) with OPTS (the index is not used: REM providers
 * are known by their certificates' chains).  Fills *OUT in every case (free it with
 * pec_rem_inspection_free) and returns 0 when OUT->valid, else -1.
 */
int pec_rem_inspect(const unsigned char *msg, size_t len, const struct pec_inspect_opts *opts,
                    struct pec_rem_inspection *out);

/* The same for a standalone evidence document XML[0..LEN): kind "evidence". */
int pec_rem_inspect_evidence(const unsigned char *xml, size_t len,
                             const struct pec_inspect_opts *opts, struct pec_rem_inspection *out);

void pec_rem_inspection_free(struct pec_rem_inspection *in);

#endif
