/*
 * rem_sig - the OpenSSL side of REM's signatures (see rem_sig.h).
 *
 * The ESS attribute is checked with OSSL_ESS_check_signing_certs(), the same code
 * OpenSSL's own CAdES and time-stamp verification run, given the signer first and the
 * certificates the signature carries after it.  The time-stamp token is a CMS
 * SignedData over a TSTInfo: CMS_verify() checks its signature with the certificate
 * inside (who that is, and whether anyone vouches for it, the caller decides with
 * pec_trust_verify_cert()), then the TSTInfo it returns gives the imprint and the time.
 */
#include "message/rem_sig.h"
#include "util/encode.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/ess.h>
#include <openssl/ts.h>
#include <openssl/x509.h>

/* The innermost OpenSSL error's reason, the queue emptied. */
static const char *ossl_why(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    snprintf(buf, len, "%s", r != NULL ? r : "unknown OpenSSL error");
    ERR_clear_error();
    return buf;
}

static const struct {
    const char *uri;
    const char *name;
} digests[] = {
    {"http://www.w3.org/2001/04/xmldsig-more#sha224", "SHA224"},
    {"http://www.w3.org/2001/04/xmlenc#sha256", "SHA256"},
    {"http://www.w3.org/2001/04/xmldsig-more#sha384", "SHA384"},
    {"http://www.w3.org/2001/04/xmlenc#sha512", "SHA512"},
};

const EVP_MD *pec_rem_digest_md(const char *uri)
{
    for (size_t i = 0; uri != NULL && i < sizeof(digests) / sizeof(digests[0]); i++)
        if (strcmp(uri, digests[i].uri) == 0)
            return EVP_get_digestbyname(digests[i].name);
    return NULL;
}

char *pec_rem_digest_b64(const EVP_MD *md, const unsigned char *data, size_t len)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hlen;

    if (!EVP_Digest(data, len, h, &hlen, md, NULL)) {
        ERR_clear_error();
        return NULL;
    }
    return pec_b64_string(h, hlen);
}

/* ------------------------------------------------------------ ESS signing certificate */

/* The attribute NID of SI decoded with D2I, or NULL when absent or unreadable (*BAD set). */
static void *signed_attr(CMS_SignerInfo *si, int nid, void *(*d2i)(const unsigned char **, long),
                         int *bad)
{
    int i = CMS_signed_get_attr_by_NID(si, nid, -1);
    ASN1_STRING *s;
    const unsigned char *p;
    void *v = NULL;

    if (i < 0)
        return NULL;
    s = X509_ATTRIBUTE_get0_data(CMS_signed_get_attr(si, i), 0, V_ASN1_SEQUENCE, NULL);
    if (s != NULL) {
        p = ASN1_STRING_get0_data(s);
        v = d2i(&p, ASN1_STRING_length(s));
    }
    if (v == NULL)
        *bad = 1;
    ERR_clear_error();
    return v;
}

static void *d2i_ss(const unsigned char **p, long len)
{
    return d2i_ESS_SIGNING_CERT(NULL, p, len);
}

static void *d2i_ssv2(const unsigned char **p, long len)
{
    return d2i_ESS_SIGNING_CERT_V2(NULL, p, len);
}

/*
 * The ESS attribute of SI against SIGNER (with the other certificates of CERTS after
 * it): signingCertificateV2 required when REQUIRE_V2, else either version.
 */
static int ess_check(CMS_SignerInfo *si, X509 *signer, STACK_OF(X509) * certs, int require_v2,
                     char *err, size_t errlen)
{
    int bad = 0, ret = -1;
    ESS_SIGNING_CERT *ss = signed_attr(si, NID_id_smime_aa_signingCertificate, d2i_ss, &bad);
    ESS_SIGNING_CERT_V2 *ssv2 =
        signed_attr(si, NID_id_smime_aa_signingCertificateV2, d2i_ssv2, &bad);
    STACK_OF(X509) *chain = sk_X509_new_null();
    char why[200];

    if (chain == NULL || !sk_X509_push(chain, signer)) {
        pec_seterr(err, errlen, "cannot allocate a certificate list");
    } else if (bad) {
        pec_seterr(err, errlen, "unreadable signing-certificate attribute");
    } else if (ssv2 == NULL && (require_v2 || ss == NULL)) {
        pec_seterr(err, errlen, "no signingCertificateV2 attribute");
    } else {
        ret = 0;
        for (int i = 0; ret == 0 && certs != NULL && i < sk_X509_num(certs); i++)
            if (X509_cmp(sk_X509_value(certs, i), signer) != 0 &&
                !sk_X509_push(chain, sk_X509_value(certs, i))) {
                pec_seterr(err, errlen, "cannot allocate a certificate list");
                ret = -1;
            }
        if (ret == 0 && OSSL_ESS_check_signing_certs(ss, ssv2, chain, 1) <= 0) {
            pec_seterr(err, errlen, "%s does not name the signer's certificate (%s)",
                       ssv2 != NULL ? "signingCertificateV2" : "signingCertificate",
                       ossl_why(why, sizeof(why)));
            ret = -1;
        }
    }
    ERR_clear_error();
    sk_X509_free(chain);
    ESS_SIGNING_CERT_free(ss);
    ESS_SIGNING_CERT_V2_free(ssv2);
    return ret;
}

/* The one SignerInfo of CMS and its certificate, or -1 with ERR. */
static int one_signer(CMS_ContentInfo *cms, CMS_SignerInfo **si, X509 **signer, char *err,
                      size_t errlen)
{
    STACK_OF(CMS_SignerInfo) *sinfos = CMS_get0_SignerInfos(cms);
    char why[200];

    *signer = NULL;
    if (sinfos == NULL || sk_CMS_SignerInfo_num(sinfos) != 1) {
        pec_seterr(err, errlen, "%d signers, expected one",
                   sinfos ? sk_CMS_SignerInfo_num(sinfos) : 0);
        return -1;
    }
    *si = sk_CMS_SignerInfo_value(sinfos, 0);
    if (CMS_set1_signers_certs(cms, NULL, 0) < 0) {
        pec_seterr(err, errlen, "%s", ossl_why(why, sizeof(why)));
        return -1;
    }
    CMS_SignerInfo_get0_algs(*si, NULL, signer, NULL, NULL);
    if (*signer == NULL) {
        pec_seterr(err, errlen, "the signer's certificate is not included");
        return -1;
    }
    return 0;
}

static CMS_ContentInfo *read_cms(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms;

    if (len == 0 || len > LONG_MAX)
        return NULL;
    cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    if (cms != NULL && OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        CMS_ContentInfo_free(cms);
        cms = NULL;
    }
    ERR_clear_error();
    return cms;
}

int pec_rem_cades_check(const unsigned char *sig, size_t siglen, char *err, size_t errlen)
{
    CMS_ContentInfo *cms = read_cms(sig, siglen);
    STACK_OF(X509) * certs;
    CMS_SignerInfo *si;
    X509 *signer;
    int ret = -1;

    if (cms == NULL) {
        pec_seterr(err, errlen, "not a CMS SignedData");
        return -1;
    }
    if (one_signer(cms, &si, &signer, err, errlen) == 0) {
        certs = CMS_get1_certs(cms);
        ret = ess_check(si, signer, certs, 1, err, errlen);
        sk_X509_pop_free(certs, X509_free);
    }
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return ret;
}

/* ------------------------------------------------------------ time-stamp token */

static unsigned char *cert_der(X509 *x, size_t *len)
{
    int n = i2d_X509(x, NULL);
    unsigned char *der, *p;

    if (n <= 0)
        return NULL;
    der = p = xmalloc((size_t)n);
    if (i2d_X509(x, &p) != n) {
        free(der);
        return NULL;
    }
    *len = (size_t)n;
    return der;
}

/* The signer's and the other certificates of CMS into OUT, as DER. */
static void keep_certs(CMS_ContentInfo *cms, X509 *signer, struct pec_rem_token *out)
{
    STACK_OF(X509) *certs = CMS_get1_certs(cms);

    out->tsa_der = cert_der(signer, &out->tsa_derlen);
    for (int i = 0; certs != NULL && i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        unsigned char *der;
        size_t len;

        if (X509_cmp(x, signer) == 0 || (der = cert_der(x, &len)) == NULL)
            continue;
        out->certs = xrealloc(out->certs, (out->ncerts + 1) * sizeof(*out->certs));
        out->certlens = xrealloc(out->certlens, (out->ncerts + 1) * sizeof(*out->certlens));
        out->certs[out->ncerts] = der;
        out->certlens[out->ncerts++] = len;
    }
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
}

/* The imprint of TST against DATA, and its time into OUT. */
static int check_tst(TS_TST_INFO *tst, const unsigned char *data, size_t datalen,
                     struct pec_rem_token *out, char *err, size_t errlen)
{
    TS_MSG_IMPRINT *mi = TS_TST_INFO_get_msg_imprint(tst);
    const ASN1_OBJECT *obj;
    const EVP_MD *md;
    ASN1_OCTET_STRING *h = TS_MSG_IMPRINT_get_msg(mi);
    unsigned char calc[EVP_MAX_MD_SIZE];
    unsigned int calclen;
    struct tm tm;

    if (ASN1_TIME_to_tm(TS_TST_INFO_get_time(tst), &tm)) {
        out->time = timegm(&tm);
        out->has_time = 1;
    }
    X509_ALGOR_get0(&obj, NULL, NULL, TS_MSG_IMPRINT_get_algo(mi));
    if ((md = EVP_get_digestbyobj(obj)) == NULL || EVP_MD_get_size(md) < 28) {
        pec_seterr(err, errlen, "the imprint's digest algorithm is not accepted");
        return -1;
    }
    if (!EVP_Digest(data, datalen, calc, &calclen, md, NULL)) {
        pec_seterr(err, errlen, "cannot compute the imprint");
        return -1;
    }
    if (h == NULL || (size_t)ASN1_STRING_length(h) != calclen ||
        memcmp(ASN1_STRING_get0_data(h), calc, calclen) != 0) {
        pec_seterr(err, errlen, "its imprint is not the %s of the signature value",
                   EVP_MD_get0_name(md));
        return -1;
    }
    if (!out->has_time) {
        pec_seterr(err, errlen, "unreadable genTime");
        return -1;
    }
    return 0;
}

int pec_rem_token_check(const unsigned char *tok, size_t toklen, const unsigned char *data,
                        size_t datalen, struct pec_rem_token *out, char *err, size_t errlen)
{
    CMS_ContentInfo *cms = read_cms(tok, toklen);
    CMS_SignerInfo *si;
    X509 *signer;
    BIO *content = NULL;
    TS_TST_INFO *tst = NULL;
    STACK_OF(X509) *certs = NULL;
    char why[200];
    int ret = -1;

    memset(out, 0, sizeof(*out));
    if (cms == NULL) {
        pec_seterr(err, errlen, "the token is not a CMS SignedData");
        return -1;
    }
    if (OBJ_obj2nid(CMS_get0_eContentType(cms)) != NID_id_smime_ct_TSTInfo) {
        pec_seterr(err, errlen, "the token does not hold a TSTInfo");
        goto done;
    }
    if (one_signer(cms, &si, &signer, err, errlen) != 0)
        goto done;
    keep_certs(cms, signer, out);
    if ((content = BIO_new(BIO_s_mem())) == NULL) {
        pec_seterr(err, errlen, "cannot allocate a buffer");
        goto done;
    }
    if (!CMS_verify(cms, NULL, NULL, NULL, content, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY)) {
        pec_seterr(err, errlen, "the token's signature does not match (%s)",
                   ossl_why(why, sizeof(why)));
        goto done;
    }
    if ((tst = d2i_TS_TST_INFO_bio(content, NULL)) == NULL) {
        pec_seterr(err, errlen, "unreadable TSTInfo");
        goto done;
    }
    certs = CMS_get1_certs(cms);
    if (ess_check(si, signer, certs, 0, err, errlen) == 0)
        ret = check_tst(tst, data, datalen, out, err, errlen);
done:
    sk_X509_pop_free(certs, X509_free);
    TS_TST_INFO_free(tst);
    BIO_free(content);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return ret;
}

void pec_rem_token_free(struct pec_rem_token *t)
{
    if (t == NULL)
        return;
    free(t->tsa_der);
    for (size_t i = 0; i < t->ncerts; i++)
        free(t->certs[i]);
    free(t->certs);
    free(t->certlens);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------ IssuerSerial */

/* A DER header for TAG and LEN into OUT (at most 6 bytes); its length. */
static size_t der_head(unsigned char *out, unsigned char tag, size_t len)
{
    size_t n = 0;

    out[n++] = tag;
    if (len < 0x80) {
        out[n++] = (unsigned char)len;
        return n;
    }
    {
        unsigned char b[sizeof(size_t)];
        size_t k = 0;

        for (size_t v = len; v > 0; v >>= 8)
            b[k++] = (unsigned char)(v & 0xff);
        out[n++] = (unsigned char)(0x80 | k);
        while (k > 0)
            out[n++] = b[--k];
    }
    return n;
}

unsigned char *pec_rem_issuer_serial(const unsigned char *cert, size_t certlen, size_t *outlen)
{
    const unsigned char *p = cert;
    X509 *x = certlen <= LONG_MAX ? d2i_X509(NULL, &p, (long)certlen) : NULL;
    unsigned char *name = NULL, *serial = NULL, *out = NULL, h1[8], h2[8], h3[8];
    int nlen, slen;
    size_t l1, l2, l3, gn_len, seq_len;

    if (x == NULL || (nlen = i2d_X509_NAME(X509_get_issuer_name(x), &name)) <= 0 ||
        (slen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &serial)) <= 0)
        goto done;
    l1 = der_head(h1, 0xa4, (size_t)nlen); /* [4] directoryName, explicit */
    gn_len = l1 + (size_t)nlen;
    l2 = der_head(h2, 0x30, gn_len); /* GeneralNames */
    seq_len = l2 + gn_len + (size_t)slen;
    l3 = der_head(h3, 0x30, seq_len); /* IssuerSerial */
    *outlen = l3 + seq_len;
    out = xmalloc(*outlen);
    memcpy(out, h3, l3);
    memcpy(out + l3, h2, l2);
    memcpy(out + l3 + l2, h1, l1);
    memcpy(out + l3 + l2 + l1, name, (size_t)nlen);
    memcpy(out + l3 + l2 + l1 + (size_t)nlen, serial, (size_t)slen);
done:
    OPENSSL_free(name);
    OPENSSL_free(serial);
    X509_free(x);
    ERR_clear_error();
    return out;
}
