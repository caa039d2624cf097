/*
 * rem_sig - the OpenSSL side of REM's signatures: the digests XML Signature names by URI,
 * the ESS signing-certificate attribute of a CMS signature (CAdES-B-B on the envelope,
 * RFC 5816 on a time-stamp token), and the RFC 3161 time-stamp token of the evidence.
 * Private to lib/message/rem*.c.
 */
#ifndef PEC_REM_SIG_H
#define PEC_REM_SIG_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

/* The digest an XML Signature algorithm URI names (SHA-224 to SHA-512), or NULL. */
const EVP_MD *pec_rem_digest_md(const char *uri);

/* base64 of the digest MD of DATA[0..LEN), xmalloc'ed; NULL when OpenSSL fails. */
char *pec_rem_digest_b64(const EVP_MD *md, const unsigned char *data, size_t len);

/*
 * Does the signingCertificateV2 attribute of SIG[0..SIGLEN), a DER CMS SignedData with
 * one signer, name the certificate that signed it (CAdES-B-B)?  0, or -1 with the reason
 * in ERR.  The signature itself is pec_smime_verify()'s business.
 */
int pec_rem_cades_check(const unsigned char *sig, size_t siglen, char *err, size_t errlen);

/* What a time-stamp token says, as far as it could be read. */
struct pec_rem_token {
    int has_time;
    time_t time;            /* genTime */
    unsigned char *tsa_der; /* the certificate that signed the token */
    size_t tsa_derlen;
    unsigned char **certs; /* the token's other certificates, DER */
    size_t *certlens;
    size_t ncerts;
};

/*
 * Check the RFC 3161 token TOK[0..TOKLEN) (DER) over DATA[0..DATALEN): the token's
 * signature with the certificate it carries, its ESS signing-certificate attribute, and
 * the message imprint against DATA.  Fills *OUT (free it with pec_rem_token_free); 0, or
 * -1 with the reason in ERR.  The TSA's chain is left to the caller.
 */
int pec_rem_token_check(const unsigned char *tok, size_t toklen, const unsigned char *data,
                        size_t datalen, struct pec_rem_token *out, char *err, size_t errlen);
void pec_rem_token_free(struct pec_rem_token *t);

/*
 * The DER IssuerSerial of CERT (DER) as XAdES' IssuerSerialV2 carries it:
 * SEQUENCE { SEQUENCE { [4] Name }, INTEGER }.  xmalloc'ed, or NULL when CERT is unreadable.
 */
unsigned char *pec_rem_issuer_serial(const unsigned char *cert, size_t certlen, size_t *outlen);

#endif
