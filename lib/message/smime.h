/*
 * smime - the provider's S/MIME signature: sign what we emit, verify what peers send.
 *
 * Every envelope and notice is a multipart/signed whose smime.p7s is a detached CMS
 * SignedData over the first part (pec-rules.md §3.1, §6.1).  This module works on bytes
 * only: the caller hands over the canonical (CRLF) MIME entity and the already
 * base64-decoded signature; MIME parsing and building live elsewhere.
 *
 * pec_signer is loaded once at start-up from the provider certificate, its chain and its
 * key, and is then read-only: any number of threads may sign with it at once.
 * pec_smime_sign() is deterministic: with RSA PKCS#1 v1.5 keys and a fixed signing time
 * the same content gives the same DER, byte for byte, so a fixed test clock gives
 * reproducible messages.
 *
 * pec_trust holds the trust anchors (a PEM bundle or a directory of PEM files).  It too is
 * read-only after loading and shared between threads.
 *
 * pec_smime_verify() checks a detached signature over the given bytes, then the signer's
 * chain against the trust anchors at a chosen instant.  SHA-1 and SHA-256 are both
 * accepted.  It never stops at the first failure without filling in what it learned, so
 * the caller can log who signed a message whose chain failed.  Revocation is checked when
 * the caller hands over CRLs (pec_smime_verify_crl, message/crl.h); OCSP is not used.
 */
#ifndef PEC_SMIME_H
#define PEC_SMIME_H

#include <stddef.h>
#include <time.h>

struct pec_signer;
struct pec_trust;
struct pec_crls;
struct x509_store_st;

/*
 * Load the signing identity.  CERT_PATH and KEY_PATH are PEM files; CHAIN_PATH is a PEM
 * bundle of intermediate certificates to embed beside the signer's, or "" (or NULL) for
 * none.  DIGEST is "sha256" or "sha1".  The key must not be encrypted and must match the
 * certificate.  An expired certificate loads (the daemon decides what to do with
 * pec_signer_not_after()).  On error returns NULL with one line in err.
 */
struct pec_signer *pec_signer_load(const char *cert_path, const char *chain_path,
                                   const char *key_path, const char *digest, char *err,
                                   size_t errlen);
void pec_signer_free(struct pec_signer *signer);

/* Subject DN on one line, e.g. "C=IT, O=Gestore A S.p.A., CN=Posta Certificata". */
const char *pec_signer_subject(const struct pec_signer *signer);
/* First rfc822Name of the subjectAltName, or "" when there is none. */
const char *pec_signer_address(const struct pec_signer *signer);
/* SHA-1 of the certificate DER, 40 lowercase hex digits: the index's providerCertificateHash. */
const char *pec_signer_cert_sha1(const struct pec_signer *signer);
/* The certificate DER (owned by the signer). */
const unsigned char *pec_signer_cert_der(const struct pec_signer *signer, size_t *len);
time_t pec_signer_not_after(const struct pec_signer *signer);
/* The micalg parameter of multipart/signed for this signer: "sha-256" or "sha1". */
const char *pec_smime_micalg(const struct pec_signer *signer);

/*
 * Sign CONTENT[0..LEN) exactly as given (no canonicalisation): detached CMS SignedData,
 * DER, with the signer and chain certificates, signed attributes contentType,
 * signingTime = SIGNING_TIME and messageDigest (no smimeCapabilities).  On success
 * returns 0 and *DER (xmalloc'ed, caller frees) of *DERLEN bytes; on error -1 with err.
 */
int pec_smime_sign(const struct pec_signer *signer, const unsigned char *content, size_t len,
                   time_t signing_time, unsigned char **der, size_t *derlen, char *err,
                   size_t errlen);

/*
 * Reads up to LEN bytes of the content into BUF: returns how many (0 at the end of the
 * content), or -1 on an error, which makes the signing fail.
 */
typedef int pec_smime_reader(void *arg, unsigned char *buf, size_t len);

/*
 * As pec_smime_sign(), over content that READ yields piece by piece, so content kept in
 * a file (a 30 MB message in a spool) is signed without being copied whole into memory.
 * The same bytes give the same DER as pec_smime_sign().
 */
int pec_smime_sign_stream(const struct pec_signer *signer, pec_smime_reader *read, void *arg,
                          time_t signing_time, unsigned char **der, size_t *derlen, char *err,
                          size_t errlen);

/*
 * Load trust anchors from PATH: a PEM bundle (e.g. /etc/ssl/certs/ca-certificates.crt) or
 * a directory whose *.pem and *.crt files are each loaded (no c_rehash links needed).
 * Returns NULL with err set when nothing could be loaded or a file is unreadable/garbage.
 */
struct pec_trust *pec_trust_load(const char *path, char *err, size_t errlen);

/*
 * The certificates of PATH (as pec_trust_load) trusted as they are, for a signer that
 * is pinned rather than chained: a listed end certificate or intermediate ends a chain
 * of its own (what `openssl cms -verify -partial_chain` does), and no purpose is
 * asked of it.  The providers' index is verified against such a trust (index_signer).
 */
struct pec_trust *pec_trust_load_pinned(const char *path, char *err, size_t errlen);
void pec_trust_free(struct pec_trust *trust);

/* The OpenSSL store behind TRUST, for message/'s other OpenSSL users (crl). */
struct x509_store_st *pec_trust_store(const struct pec_trust *trust);

/* The instant at which a certificate chain is validated. */
enum pec_verify_at {
    PEC_AT_NOW,          /* the current time: what the Incoming Point uses */
    PEC_AT_SIGNING_TIME, /* the signer's own signingTime claim: for archived messages */
    PEC_AT_GIVEN,        /* the AT argument */
    PEC_AT_NONE,         /* no instant: whether the chain reaches an anchor, whatever the dates */
};

/*
 * Why a verification failed, coarse enough for a policy table.  From
 * PEC_VERIFY_CERT_EXPIRED on, the signature itself matched the content.
 */
enum pec_verify_status {
    PEC_VERIFY_OK = 0,
    PEC_VERIFY_NO_SIGNATURE,  /* empty input or no SignerInfo */
    PEC_VERIFY_MALFORMED,     /* not a CMS SignedData we can use */
    PEC_VERIFY_BAD_SIGNATURE, /* signature does not match the content */
    PEC_VERIFY_CERT_EXPIRED,  /* a chain certificate is outside its validity at that time */
    PEC_VERIFY_UNTRUSTED,     /* the chain does not reach a trust anchor */
    PEC_VERIFY_CERT_INVALID,  /* any other certificate problem */
    PEC_VERIFY_REVOKED,       /* the signer's certificate was revoked before it signed */
    PEC_VERIFY_INTERNAL,      /* resource failure: try again later, say nothing of the mail */
};

struct pec_verify_result {
    int ok;
    enum pec_verify_status status;
    char reason[512]; /* one line for a sysadmin; "" when ok */

    /* The signer, when the signature named one that it carries; else NULL / "". */
    unsigned char *signer_der;
    size_t signer_derlen;
    char *signer_subject; /* one line, as pec_signer_subject() */
    char *signer_issuer;
    char *signer_address; /* first rfc822Name of subjectAltName, or "" */
    char signer_sha1[41]; /* lowercase hex of SHA-1(signer_der), or "" */

    char digest[16]; /* "sha1", "sha256", ... or "" */
    int has_signing_time;
    time_t signing_time;
    time_t checked_at; /* instant the chain was validated at, when it was */

    /* revocation, when CRLs were given (pec_smime_verify_crl) */
    int crl_checked;
    time_t revoked_at;  /* the signer's revocation (PEC_VERIFY_REVOKED, or one after it signed) */
    char crl_note[256]; /* what limited the check ("no CRL of ..."), or "" */
};

/*
 * Verify SIG[0..SIGLEN) (DER, or PEM "-----BEGIN CMS/PKCS7-----", detected) as a detached
 * signature over CONTENT[0..LEN), taken as binary, and the signer's chain against TRUST at
 * the instant AT_MODE names (AT is read only for PEC_AT_GIVEN).  Fills *RES in every case
 * (free it with pec_verify_result_free); returns 0 when RES->ok, else -1.
 */
int pec_smime_verify(const unsigned char *content, size_t len, const unsigned char *sig,
                     size_t siglen, const struct pec_trust *trust, enum pec_verify_at at_mode,
                     time_t at, struct pec_verify_result *res);

/*
 * pec_smime_verify(), the signer's certificate also checked against CRLS (NULL: not
 * checked): revoked at or before the signature's signingTime (the check's instant when
 * it has none) is PEC_VERIFY_REVOKED.
 */
int pec_smime_verify_crl(const unsigned char *content, size_t len, const unsigned char *sig,
                         size_t siglen, const struct pec_trust *trust, const struct pec_crls *crls,
                         enum pec_verify_at at_mode, time_t at, struct pec_verify_result *res);

/*
 * Verify P7M[0..LEN), a CMS SignedData with the content inside (DER or PEM), like
 * pec_smime_verify().  When RES->ok, *CONTENT (xmalloc'ed, NUL-terminated for
 * convenience, caller frees) holds the *CONTENTLEN signed bytes; otherwise *CONTENT is
 * NULL.
 */
int pec_smime_verify_attached(const unsigned char *p7m, size_t len, const struct pec_trust *trust,
                              enum pec_verify_at at_mode, time_t at, unsigned char **content,
                              size_t *contentlen, struct pec_verify_result *res);

void pec_verify_result_free(struct pec_verify_result *res);

/* What a certificate checked with pec_trust_verify_cert() is used for. */
enum pec_cert_use {
    PEC_CERT_SIGNER, /* signs messages or documents: the S/MIME signing profile */
    PEC_CERT_TSA,    /* a time-stamping authority: extended key usage timeStamping */
    PEC_CERT_ANY,    /* no purpose checked: only the chain */
};

/*
 * Validate the certificate CERT[0..CERTLEN) (DER) as pec_smime_verify() validates a
 * signer's, for signatures made outside CMS (an XML signature, a time-stamp token): its
 * chain against TRUST, with the DER certificates EXTRA[i] of EXTRALEN[i] bytes as
 * untrusted intermediates, at the instant AT_MODE names; for PEC_AT_SIGNING_TIME,
 * CLAIMED is the signing time the signed object states (NULL when it states none).
 * Fills *RES (signer fields, checked_at, status, reason) in every case; 0 when RES->ok.
 */
int pec_trust_verify_cert(const struct pec_trust *trust, enum pec_cert_use use,
                          const unsigned char *cert, size_t certlen,
                          const unsigned char *const *extra, const size_t *extralen, size_t nextra,
                          enum pec_verify_at at_mode, time_t at, const time_t *claimed,
                          struct pec_verify_result *res);

/*
 * Like pec_smime_sign(), but the SignedData carries CONTENT inside (attached,
 * "opaque" .p7m): what the daily seals of the log are, readable with
 * `openssl cms -verify -inform DER`.  0 and *DER (caller frees), or -1 with err.
 */
int pec_smime_sign_attached(const struct pec_signer *signer, const unsigned char *content,
                            size_t len, time_t signing_time, unsigned char **der, size_t *derlen,
                            char *err, size_t errlen);

#endif
