/*
 * crl - revocation of provider certificates: the CRLs their CAs publish.
 *
 * A provider whose key is compromised has its certificate revoked; a busta
 * or notice signed with it after the revocation is not PEC (pec-rules.md
 * §6.3 step 4).  A pec_crls is a set of CRLs, each verified when it is
 * added: its signature by an issuer certificate that is a trust anchor or
 * chains to one, so a CRL can only ever make us refuse, never accept, and
 * a forged one is not taken at all.  A CRL past its nextUpdate is kept (a
 * revocation does not expire) with a warning: a fresh one is overdue.
 *
 * The set is immutable once built and shared by any number of threads;
 * signature verification (smime.c) consults it through pec_crls_arm().
 * Only the signer's certificate is checked, not its CA's.  A certificate
 * revoked after the instant the signature was made (its signingTime, or
 * the check's instant when it has none) is not revoked for that
 * signature: what it signed before stays valid evidence.
 */
#ifndef PEC_CRL_H
#define PEC_CRL_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

struct pec_trust;
struct pec_crls;

struct pec_crls *pec_crls_new(void);
void pec_crls_free(struct pec_crls *c);
size_t pec_crls_count(const struct pec_crls *c);

/*
 * Add the CRL(s) in BUF[0..LEN) (one DER CRL, or PEM with any number of X509 CRL
 * blocks), NAME being where they came from (for messages).  Each must be signed by
 * a certificate among the anchors of TRUST or the DER certificates EXTRA[i] (of
 * EXTRALEN[i] bytes), one that chains to TRUST at NOW.  0, with WARN set ("" when
 * none) when a CRL is past its nextUpdate; -1 with err when a CRL is unreadable or
 * unverified (none of BUF is then added).
 */
int pec_crls_add(struct pec_crls *c, const unsigned char *buf, size_t len, const char *name,
                 const struct pec_trust *trust, const unsigned char *const *extra,
                 const size_t *extralen, size_t nextra, time_t now, char *warn, size_t warnlen,
                 char *err, size_t errlen);

/*
 * The http and https URIs of the CRL distribution points of the certificate
 * DER[0..LEN): *N of them in *URLS (xmalloc'ed strings in an xmalloc'ed array; the
 * caller frees both), none for a certificate without any or that does not parse.
 */
void pec_cert_crl_urls(const unsigned char *der, size_t len, char ***urls, size_t *n);

/*
 * The certificates of the PEM file PATH (the CAs that may have issued a CRL) as DER:
 * *N of them in *DER with their lengths in *LEN (xmalloc'ed; free each and both
 * arrays).  0, or -1 with err when the file is unreadable or holds none.
 */
int pec_pem_certs(const char *path, unsigned char ***der, size_t **len, size_t *n, char *err,
                  size_t errlen);

/* What the CRL check found about one signer certificate. */
struct pec_crl_state {
    time_t signed_at;  /* in: the instant the signature claims */
    int revoked;       /* revoked at or before signed_at */
    time_t revoked_at; /* when revoked (revoked, or listed after signed_at) */
    char reason[32];   /* the CRL's reason code, "" when it gives none */
    char note[256];    /* what limited the check ("no CRL of ..."), or "" */
};

/*
 * Make the chain check of CTX (about to run X509_verify_cert) consult the CRLs of
 * C for the end certificate, filling ST, which must outlive the check.
 */
int pec_crls_arm(X509_STORE_CTX *ctx, const struct pec_crls *c, struct pec_crl_state *st);

#endif
