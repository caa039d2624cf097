/*
 * rem_xades - the evidence's seal: an enveloped XAdES-B-T signature (EN 319 532-4 C.4.3).
 *
 * xmlsec checks the XML Signature itself (each reference's digest, the SignatureValue),
 * with its OpenSSL back end.  What xmlsec does not know is XAdES, so the rest is done
 * here, before and after it:
 *   - the signature is the only ds:Signature of the document and the last child of its
 *     root, and SignedInfo holds exactly the two references the baseline names: the
 *     document (URI "") with the signature taken out by XPath Filter 2.0 or the
 *     enveloped-signature transform, then at most a canonicalisation; and the
 *     SignedProperties of this signature's QualifyingProperties.  A reference that
 *     covered less (an XPath selecting nothing, a second Signature element to hide facts
 *     in) would let unsigned facts pass for signed ones;
 *   - xmlsec gets only the transforms and algorithms listed below (no XSLT, no remote
 *     URI) and the key of the certificate SigningCertificateV2 names, which must be in
 *     KeyInfo; IssuerSerialV2, when present, must name the same certificate;
 *   - that certificate's chain is checked against the trust anchors (smime.c), at the
 *     SigningTime with --at signing-time;
 *   - the SignatureTimeStamp's token must stamp the canonical ds:SignatureValue, be
 *     signed by the certificate it carries, and come after the SigningTime; the TSA's
 *     chain is checked too, and when the anchors do not reach it, that is a note, not a
 *     failure (test TSAs, as in both example kits, are known to no one).
 * xmlsec is initialised once and never shut down, like GMime; its error messages are
 * kept per thread rather than printed, and the first one explains a processing failure.
 */
#include "message/mime.h"
#include "message/rem_evidence.h"
#include "message/rem_sig.h"
#include "message/smime.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/c14n.h>
#include <libxml/valid.h>
#include <libxml/xmlerror.h>
#include <openssl/err.h>
#include <openssl/x509.h>

/* xmlsec.h first: the other xmlsec headers need its types */
#include <xmlsec/xmlsec.h>

#include <xmlsec/errors.h>
#include <xmlsec/keys.h>
#include <xmlsec/openssl/app.h>
#include <xmlsec/openssl/crypto.h>
#include <xmlsec/openssl/evp.h>
#include <xmlsec/transforms.h>
#include <xmlsec/xmldsig.h>

#define NS_FILTER2 "http://www.w3.org/2002/06/xmldsig-filter2"
#define ALG_ENVELOPED "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#define TYPE_SIGNED_PROPERTIES "http://uri.etsi.org/01903#SignedProperties"

static const struct {
    const char *uri;
    int mode; /* xmlC14NMode */
    int comments;
} c14n_methods[] = {
    {"http://www.w3.org/TR/2001/REC-xml-c14n-20010315", XML_C14N_1_0, 0},
    {"http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments", XML_C14N_1_0, 1},
    {"http://www.w3.org/2001/10/xml-exc-c14n#", XML_C14N_EXCLUSIVE_1_0, 0},
    {"http://www.w3.org/2001/10/xml-exc-c14n#WithComments", XML_C14N_EXCLUSIVE_1_0, 1},
    {"http://www.w3.org/2006/12/xml-c14n11", XML_C14N_1_1, 0},
    {"http://www.w3.org/2006/12/xml-c14n11#WithComments", XML_C14N_1_1, 1},
};

/* ------------------------------------------------------------ xmlsec set-up */

static pthread_once_t xmlsec_once = PTHREAD_ONCE_INIT;
static int xmlsec_ready;

/* the first xmlsec error of the current check, per thread */
static _Thread_local char xmlsec_first[200];

/* "transform is disabled (href=...)": xmlsec's text for REASON, then its details */
static void keep_xmlsec_error(const char *file, int line, const char *func,
                              const char *error_object, const char *error_subject, int reason,
                              const char *msg)
{
    const char *text = NULL;

    if (xmlsec_first[0] != '\0')
        return;
    for (xmlSecSize i = 0; text == NULL && xmlSecErrorsGetMsg(i) != NULL; i++)
        if (xmlSecErrorsGetCode(i) == reason)
            text = xmlSecErrorsGetMsg(i);
    snprintf(xmlsec_first, sizeof(xmlsec_first), "%s%s%.*s%s", text != NULL ? text : "error",
             msg != NULL && *msg != '\0' ? " (" : "", msg != NULL ? (int)strcspn(msg, "\r\n") : 0,
             msg != NULL ? msg : "", msg != NULL && *msg != '\0' ? ")" : "");
}

static void xmlsec_init_once(void)
{
    /* before, for the errors of the set-up itself; after, because xmlSecInit() resets it */
    xmlSecErrorsSetCallback(keep_xmlsec_error);
    xmlsec_ready = xmlSecInit() == 0 && xmlSecCheckVersion() == 1 &&
                   xmlSecOpenSSLAppInit(NULL) == 0 && xmlSecOpenSSLInit() == 0;
    xmlSecErrorsSetCallback(keep_xmlsec_error);
}

/*
 * libxml2 reports canonicalisation and XPath trouble (a namespace URI it cannot use, in
 * a hostile document) on stderr; the check reports the failure as its reason instead, so
 * while it runs libxml2's generic channel, which is per thread, says nothing.
 */
static void say_nothing(void *ctx, const char *msg, ...)
{
}

struct xml_errors {
    xmlGenericErrorFunc func;
    void *ctx;
};

static void xml_errors_off(struct xml_errors *saved)
{
    saved->func = xmlGenericError;
    saved->ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, say_nothing);
}

static void xml_errors_on(const struct xml_errors *saved)
{
    xmlSetGenericErrorFunc(saved->ctx, saved->func);
}

/* ------------------------------------------------------------ small helpers */

struct check {
    xmlDocPtr doc;
    const struct pec_inspect_opts *opts;
    struct pec_rem_seal *seal;
    char *err;
    size_t errlen;
    int *temporary;

    xmlNodePtr sig;
    xmlNodePtr signed_props;
    unsigned char **certs; /* KeyInfo's certificates, DER */
    size_t *certlens;
    size_t ncerts;
    size_t leaf; /* the one SigningCertificateV2 names */
};

static void fail(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct check *c, const char *fmt, ...)
{
    va_list ap;

    if (c->err[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
}

static int is_ds(xmlNodePtr n, const char *name)
{
    return pec_rem_xml_is(n, PEC_REM_NS_DSIG, name);
}

/* The value of attribute NAME of EL (xmalloc'ed), or NULL. */
static char *attr(xmlNodePtr el, const char *name)
{
    xmlChar *v = el != NULL ? xmlGetNoNsProp(el, BAD_CAST name) : NULL;
    char *s = v != NULL ? xstrdup((const char *)v) : NULL;

    xmlFree(v);
    return s;
}

static int attr_is(xmlNodePtr el, const char *name, const char *value)
{
    char *v = attr(el, name);
    int eq = v != NULL && strcmp(v, value) == 0;

    free(v);
    return eq;
}

static int is_c14n(const char *uri)
{
    for (size_t i = 0; uri != NULL && i < sizeof(c14n_methods) / sizeof(c14n_methods[0]); i++)
        if (strcmp(uri, c14n_methods[i].uri) == 0)
            return (int)i;
    return -1;
}

/* The base64 text of EL decoded into *OUT.  0, or -1. */
static int b64_text(xmlNodePtr el, unsigned char **out, size_t *outlen)
{
    char *s = pec_rem_xml_text(el);
    int ret;

    *out = NULL;
    if (s == NULL || *s == '\0') {
        free(s);
        return -1;
    }
    ret = pec_base64_decode((const unsigned char *)s, strlen(s), out, outlen);
    free(s);
    if (ret != 0 || *outlen == 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* xs:dateTime ("2022-08-03T14:22:11Z", "...11.5+02:00") as a time_t.  0, or -1. */
static int parse_datetime(const char *s, time_t *t)
{
    struct tm tm = {0};
    int n = 0, oh = 0, om = 0;
    char sign;

    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    s += n;
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++)
            ;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *t = timegm(&tm);
    if (strcmp(s, "Z") == 0)
        return 0;
    if (sscanf(s, "%c%2d:%2d%n", &sign, &oh, &om, &n) == 3 && s[n] == '\0' &&
        (sign == '+' || sign == '-')) {
        *t -= (sign == '+' ? 1 : -1) * (time_t)(oh * 3600 + om * 60);
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------ the Signature element */

static size_t count_signatures(xmlNodePtr n)
{
    size_t count = 0;

    for (; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        count += is_ds(n, "Signature");
        count += count_signatures(n->children);
    }
    return count;
}

static int find_signature(struct check *c)
{
    xmlNodePtr root = xmlDocGetRootElement(c->doc), last = NULL;
    size_t n = count_signatures(root);

    for (xmlNodePtr k = root->children; k != NULL; k = k->next)
        if (k->type == XML_ELEMENT_NODE)
            last = k;
    if (n == 0)
        fail(c, "not signed (no ds:Signature)");
    else if (n > 1)
        fail(c, "%zu ds:Signature elements, expected one", n);
    else if (!is_ds(last, "Signature"))
        fail(c, "ds:Signature is not the last element of the evidence");
    else
        c->sig = last;
    return c->sig != NULL ? 0 : -1;
}

/* The element children of NODE, in NS, called NAME: how many, and the first in *FIRST. */
static size_t ds_children(xmlNodePtr node, const char *name, xmlNodePtr *first)
{
    size_t n = 0;

    *first = NULL;
    for (xmlNodePtr k = node != NULL ? node->children : NULL; k != NULL; k = k->next)
        if (is_ds(k, name) && n++ == 0)
            *first = k;
    return n;
}

/* Is T, a ds:Transform, the one that takes the signature out of the document? */
static int removes_signature(xmlNodePtr t)
{
    xmlNodePtr xp = NULL;
    size_t n = 0;
    char *text;
    xmlNsPtr ds;
    int ok;

    if (attr_is(t, "Algorithm", ALG_ENVELOPED))
        return 1;
    if (!attr_is(t, "Algorithm", NS_FILTER2))
        return 0;
    for (xmlNodePtr k = t->children; k != NULL; k = k->next)
        if (k->type == XML_ELEMENT_NODE && n++ == 0)
            xp = k;
    if (n != 1 || !pec_rem_xml_is(xp, NS_FILTER2, "XPath") || !attr_is(xp, "Filter", "subtract"))
        return 0;
    text = pec_rem_xml_text(xp);
    ds = xmlSearchNs(xp->doc, xp, BAD_CAST "ds");
    ok = strcmp(text, "/descendant::ds:Signature") == 0 && ds != NULL &&
         xmlStrEqual(ds->href, BAD_CAST PEC_REM_NS_DSIG);
    free(text);
    return ok;
}

/*
 * The transforms of REF: for the document, the signature's removal first; then at most
 * one canonicalisation.  0, or -1.
 */
static int check_transforms(xmlNodePtr ref, int whole_document)
{
    xmlNodePtr transforms = NULL, t[3] = {NULL, NULL, NULL};
    size_t n = 0;
    char *alg;
    int ok;

    if (ds_children(ref, "Transforms", &transforms) > 1)
        return -1;
    for (xmlNodePtr k = transforms != NULL ? transforms->children : NULL; k != NULL; k = k->next) {
        if (k->type != XML_ELEMENT_NODE)
            continue;
        if (!is_ds(k, "Transform") || n == 3)
            return -1;
        t[n++] = k;
    }
    if (whole_document && (n == 0 || !removes_signature(t[0])))
        return -1;
    if (whole_document) {
        t[0] = t[1];
        t[1] = t[2];
        n--;
    }
    if (n > 1)
        return -1;
    if (n == 0)
        return 0;
    alg = attr(t[0], "Algorithm");
    ok = is_c14n(alg) >= 0;
    free(alg);
    return ok ? 0 : -1;
}

/* SignedInfo's references: the document and the SignedProperties.  *PROPS_ID gets the latter's Id.
 */
static int check_references(struct check *c, char **props_id)
{
    xmlNodePtr si = NULL, doc_ref = NULL, props_ref = NULL;

    *props_id = NULL;
    if (ds_children(c->sig, "SignedInfo", &si) != 1) {
        fail(c, "not one SignedInfo in the signature");
        return -1;
    }
    for (xmlNodePtr r = si->children; r != NULL; r = r->next) {
        char *uri, *type;

        if (!is_ds(r, "Reference"))
            continue;
        uri = attr(r, "URI");
        type = attr(r, "Type");
        if (uri != NULL && uri[0] == '\0' && doc_ref == NULL)
            doc_ref = r;
        else if (uri != NULL && uri[0] == '#' && type != NULL &&
                 strcmp(type, TYPE_SIGNED_PROPERTIES) == 0 && props_ref == NULL) {
            props_ref = r;
            *props_id = xstrdup(uri + 1);
        } else
            fail(c, "unexpected reference (URI \"%.100s\") in SignedInfo", uri ? uri : "(none)");
        free(uri);
        free(type);
    }
    if (doc_ref == NULL)
        fail(c, "no reference to the evidence document (URI \"\")");
    else if (props_ref == NULL)
        fail(c, "no reference to the SignedProperties");
    else if (check_transforms(doc_ref, 1) != 0)
        fail(c, "the reference to the document does not take out only the signature "
                "(XPath Filter 2.0 subtract /descendant::ds:Signature, or enveloped-signature, "
                "then a canonicalisation)");
    else if (check_transforms(props_ref, 0) != 0)
        fail(c, "the reference to the SignedProperties has other transforms than a "
                "canonicalisation");
    return c->err[0] == '\0' ? 0 : -1;
}

/* This signature's QualifyingProperties and its SignedProperties called ID, made an XML ID. */
static int find_properties(struct check *c, const char *id)
{
    char *sig_id = attr(c->sig, "Id");
    xmlNodePtr qp = NULL, sp;
    xmlAttrPtr id_attr;

    for (xmlNodePtr o = c->sig->children; o != NULL && qp == NULL; o = o->next) {
        if (!is_ds(o, "Object"))
            continue;
        for (xmlNodePtr k = o->children; k != NULL && qp == NULL; k = k->next) {
            char *target = attr(k, "Target");

            if (pec_rem_xml_is(k, PEC_REM_NS_XADES, "QualifyingProperties") && target != NULL &&
                sig_id != NULL && target[0] == '#' && strcmp(target + 1, sig_id) == 0)
                qp = k;
            free(target);
        }
    }
    free(sig_id);
    sp = pec_rem_xml_child(qp, "SignedProperties");
    if (qp == NULL) {
        fail(c, "no xades:QualifyingProperties for this signature");
        return -1;
    }
    if (!pec_rem_xml_is(sp, PEC_REM_NS_XADES, "SignedProperties") || !attr_is(sp, "Id", id)) {
        fail(c, "the SignedProperties reference #%.100s is not this signature's SignedProperties",
             id);
        return -1;
    }
    id_attr = xmlHasProp(sp, BAD_CAST "Id");
    if (xmlGetID(c->doc, BAD_CAST id) != NULL ||
        xmlAddID(NULL, c->doc, BAD_CAST id, id_attr) == NULL) {
        fail(c, "the Id %.100s is not unique", id);
        return -1;
    }
    c->signed_props = sp;
    return 0;
}

/* KeyInfo's X509Certificate elements, decoded. */
static int read_certs(struct check *c)
{
    xmlNodePtr ki = NULL, data;

    ds_children(c->sig, "KeyInfo", &ki);
    ds_children(ki, "X509Data", &data);
    for (xmlNodePtr k = data != NULL ? data->children : NULL; k != NULL; k = k->next) {
        unsigned char *der;
        size_t len;

        if (!is_ds(k, "X509Certificate"))
            continue;
        if (b64_text(k, &der, &len) != 0) {
            fail(c, "unreadable X509Certificate in KeyInfo");
            return -1;
        }
        c->certs = xrealloc(c->certs, (c->ncerts + 1) * sizeof(*c->certs));
        c->certlens = xrealloc(c->certlens, (c->ncerts + 1) * sizeof(*c->certlens));
        c->certs[c->ncerts] = der;
        c->certlens[c->ncerts++] = len;
    }
    if (c->ncerts == 0)
        fail(c, "no X509Certificate in KeyInfo");
    return c->ncerts > 0 ? 0 : -1;
}

/* ------------------------------------------------------------ SigningCertificateV2 */

/* Which of the KeyInfo certificates CERT (a xades:Cert) names; -1 with a reason if none. */
static int named_cert(struct check *c, xmlNodePtr cert)
{
    xmlNodePtr digest = pec_rem_xml_child(cert, "CertDigest");
    char *alg = attr(pec_rem_xml_child(digest, "DigestMethod"), "Algorithm");
    const EVP_MD *md = pec_rem_digest_md(alg);
    unsigned char *want = NULL, h[EVP_MAX_MD_SIZE];
    size_t wantlen = 0;
    unsigned int hlen;
    int found = -1;

    if (md == NULL)
        fail(c, "SigningCertificateV2: digest %.100s is not accepted", alg ? alg : "(none)");
    else if (b64_text(pec_rem_xml_child(digest, "DigestValue"), &want, &wantlen) != 0)
        fail(c, "SigningCertificateV2: unreadable CertDigest");
    for (size_t i = 0; c->err[0] == '\0' && found < 0 && i < c->ncerts; i++)
        if (EVP_Digest(c->certs[i], c->certlens[i], h, &hlen, md, NULL) && hlen == wantlen &&
            memcmp(h, want, hlen) == 0)
            found = (int)i;
    ERR_clear_error();
    if (c->err[0] == '\0' && found < 0)
        fail(c, "no certificate in KeyInfo has the CertDigest of SigningCertificateV2");
    free(want);
    free(alg);
    return found;
}

static int check_signing_cert(struct check *c)
{
    xmlNodePtr ssp = pec_rem_xml_child(c->signed_props, "SignedSignatureProperties");
    xmlNodePtr scv2 = pec_rem_xml_child(ssp, "SigningCertificateV2");
    xmlNodePtr cert = pec_rem_xml_child(scv2, "Cert");
    xmlNodePtr is = pec_rem_xml_child(cert, "IssuerSerialV2");
    unsigned char *want, *have;
    size_t wantlen, havelen;
    int i, same;

    if (cert == NULL) {
        fail(c, "no SigningCertificateV2 in the SignedProperties");
        return -1;
    }
    if ((i = named_cert(c, cert)) < 0)
        return -1;
    c->leaf = (size_t)i;
    if (is == NULL)
        return 0;
    if (b64_text(is, &want, &wantlen) != 0) {
        fail(c, "SigningCertificateV2: unreadable IssuerSerialV2");
        return -1;
    }
    have = pec_rem_issuer_serial(c->certs[c->leaf], c->certlens[c->leaf], &havelen);
    same = have != NULL && havelen == wantlen && memcmp(have, want, havelen) == 0;
    free(want);
    free(have);
    if (!same)
        fail(c, "SigningCertificateV2: IssuerSerialV2 does not name the signing certificate");
    return same ? 0 : -1;
}

/* ------------------------------------------------------------ the XML Signature */

/* A verification key from the certificate DER, for xmlsec; NULL on failure. */
static xmlSecKeyPtr key_of(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    EVP_PKEY *pk = x != NULL ? X509_get_pubkey(x) : NULL;
    xmlSecKeyDataPtr data = pk != NULL ? xmlSecOpenSSLEvpKeyAdopt(pk) : NULL;
    xmlSecKeyPtr key = NULL;

    if (pk != NULL && data == NULL)
        EVP_PKEY_free(pk);
    if (data != NULL && ((key = xmlSecKeyCreate()) == NULL || xmlSecKeySetValue(key, data) < 0)) {
        xmlSecKeyDataDestroy(data);
        if (key != NULL)
            xmlSecKeyDestroy(key);
        key = NULL;
    }
    X509_free(x);
    ERR_clear_error();
    return key;
}

/* Only what the baseline uses, and only from inside the document. */
static int restrict_ctx(xmlSecDSigCtxPtr ctx)
{
    xmlSecTransformId refs[] = {
        xmlSecTransformInclC14NId,      xmlSecTransformInclC14NWithCommentsId,
        xmlSecTransformInclC14N11Id,    xmlSecTransformInclC14N11WithCommentsId,
        xmlSecTransformExclC14NId,      xmlSecTransformExclC14NWithCommentsId,
        xmlSecTransformEnvelopedId,     xmlSecTransformXPath2Id,
        xmlSecOpenSSLTransformSha224Id, xmlSecOpenSSLTransformSha256Id,
        xmlSecOpenSSLTransformSha384Id, xmlSecOpenSSLTransformSha512Id,
    };
    xmlSecTransformId sigs[] = {
        xmlSecTransformInclC14NId,           xmlSecTransformInclC14NWithCommentsId,
        xmlSecTransformInclC14N11Id,         xmlSecTransformInclC14N11WithCommentsId,
        xmlSecTransformExclC14NId,           xmlSecTransformExclC14NWithCommentsId,
        xmlSecOpenSSLTransformRsaSha224Id,   xmlSecOpenSSLTransformRsaSha256Id,
        xmlSecOpenSSLTransformRsaSha384Id,   xmlSecOpenSSLTransformRsaSha512Id,
        xmlSecOpenSSLTransformEcdsaSha224Id, xmlSecOpenSSLTransformEcdsaSha256Id,
        xmlSecOpenSSLTransformEcdsaSha384Id, xmlSecOpenSSLTransformEcdsaSha512Id,
    };

    ctx->flags |= XMLSEC_DSIG_FLAGS_IGNORE_MANIFESTS;
    ctx->enabledReferenceUris = xmlSecTransformUriTypeEmpty | xmlSecTransformUriTypeSameDocument;
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++)
        if (xmlSecDSigCtxEnableReferenceTransform(ctx, refs[i]) < 0)
            return -1;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (xmlSecDSigCtxEnableSignatureTransform(ctx, sigs[i]) < 0)
            return -1;
    return 0;
}

/* Which reference failed, after xmlsec said the signature is invalid. */
static void explain_invalid(struct check *c, xmlSecDSigCtxPtr ctx)
{
    xmlSecSize n = xmlSecPtrListGetSize(&ctx->signedInfoReferences);

    for (xmlSecSize i = 0; i < n; i++) {
        xmlSecDSigReferenceCtxPtr r = xmlSecPtrListGetItem(&ctx->signedInfoReferences, i);

        if (r == NULL || r->status == xmlSecDSigStatusSucceeded)
            continue;
        if (r->uri != NULL && r->uri[0] == '\0')
            fail(c, "the evidence does not match its signature (the digest of the document "
                    "differs)");
        else
            fail(c, "the SignedProperties do not match the signature (their digest differs)");
        return;
    }
    fail(c, "the SignatureValue does not match SignedInfo and the signing certificate");
}

static int verify_xmldsig(struct check *c)
{
    xmlSecDSigCtxPtr ctx = xmlSecDSigCtxCreate(NULL);
    int ret = -1;

    xmlsec_first[0] = '\0';
    if (ctx == NULL || restrict_ctx(ctx) < 0) {
        *c->temporary = 1;
        fail(c, "cannot set up xmlsec");
    } else if ((ctx->signKey = key_of(c->certs[c->leaf], c->certlens[c->leaf])) == NULL) {
        fail(c, "the signing certificate's key is unusable");
    } else if (xmlSecDSigCtxVerify(ctx, c->sig) < 0) {
        fail(c, "the signature cannot be checked: %s",
             xmlsec_first[0] ? xmlsec_first : "xmlsec failed");
    } else if (ctx->status != xmlSecDSigStatusSucceeded) {
        explain_invalid(c, ctx);
    } else if (xmlSecPtrListGetSize(&ctx->signedInfoReferences) != 2) {
        fail(c, "xmlsec checked other references than the two expected");
    } else {
        ret = 0;
    }
    if (ctx != NULL)
        xmlSecDSigCtxDestroy(ctx);
    ERR_clear_error();
    return ret;
}

/* ------------------------------------------------------------ signer and chain */

static void check_chain(struct check *c)
{
    struct pec_rem_seal *seal = c->seal;
    const struct pec_inspect_opts *o = c->opts;
    const unsigned char **extra = xcalloc(c->ncerts, sizeof(*extra));
    size_t *extralen = xcalloc(c->ncerts, sizeof(*extralen)), n = 0;
    struct pec_verify_result res;

    for (size_t i = 0; i < c->ncerts; i++)
        if (i != c->leaf) {
            extra[n] = c->certs[i];
            extralen[n++] = c->certlens[i];
        }
    pec_trust_verify_cert(o->trust, PEC_CERT_SIGNER, c->certs[c->leaf], c->certlens[c->leaf], extra,
                          extralen, n, o->at_mode, o->at,
                          seal->has_signing_time ? &seal->signing_time : NULL, &res);
    seal->signer_subject = xstrdup(res.signer_subject);
    seal->signer_issuer = xstrdup(res.signer_issuer);
    memcpy(seal->signer_sha1, res.signer_sha1, sizeof(seal->signer_sha1));
    seal->checked_at = res.checked_at;
    if (res.status == PEC_VERIFY_INTERNAL)
        *c->temporary = 1;
    if (!res.ok)
        fail(c, "%s", res.reason);
    pec_verify_result_free(&res);
    free(extra);
    free(extralen);
}

static void read_signing_time(struct check *c)
{
    xmlNodePtr ssp = pec_rem_xml_child(c->signed_props, "SignedSignatureProperties");
    char *s = pec_rem_xml_text(pec_rem_xml_child(ssp, "SigningTime"));

    c->seal->has_signing_time = parse_datetime(s, &c->seal->signing_time) == 0;
    free(s);
}

/* ------------------------------------------------------------ the time-stamp */

static int in_subtree(void *top, xmlNodePtr node, xmlNodePtr parent)
{
    xmlNodePtr n =
        node->type == XML_NAMESPACE_DECL || node->type == XML_ATTRIBUTE_NODE ? parent : node;

    for (; n != NULL; n = n->parent)
        if (n == top)
            return 1;
    return 0;
}

/* The canonical form of the subtree TOP, by method METHOD (an index of c14n_methods). */
static unsigned char *c14n_subtree(xmlDocPtr doc, xmlNodePtr top, int method, size_t *len)
{
    xmlOutputBufferPtr buf = xmlAllocOutputBuffer(NULL);
    unsigned char *out = NULL;

    if (buf == NULL)
        return NULL;
    if (xmlC14NExecute(doc, in_subtree, top, c14n_methods[method].mode, NULL,
                       c14n_methods[method].comments, buf) >= 0) {
        *len = xmlOutputBufferGetSize(buf);
        out = xmalloc(*len + 1);
        memcpy(out, xmlOutputBufferGetContent(buf), *len);
    }
    if (xmlOutputBufferClose(buf) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* TOK's TSA against the anchors at the instant of OPTS, or at no instant at all. */
static void tsa_chain(const struct pec_inspect_opts *o, const struct pec_rem_token *tok,
                      enum pec_cert_use use, enum pec_verify_at at_mode,
                      struct pec_verify_result *res)
{
    pec_trust_verify_cert(o->trust, use, tok->tsa_der, tok->tsa_derlen,
                          (const unsigned char *const *)tok->certs, tok->certlens, tok->ncerts,
                          at_mode, o->at, &tok->time, res);
}

/*
 * The TSA's chain: first whether an anchor reaches it at all (a certificate of the same
 * name but another key, as the ETSI kit ships, does not), which decides between checked
 * and unchecked; then, when one does, whether it is valid for time-stamping at the instant.
 */
static void check_tsa(struct check *c, const struct pec_rem_token *tok, char *ts_err,
                      size_t ts_errlen)
{
    struct pec_rem_seal *seal = c->seal;
    struct pec_verify_result res;

    tsa_chain(c->opts, tok, PEC_CERT_ANY, PEC_AT_NONE, &res);
    seal->tsa_subject = xstrdup(res.signer_subject);
    if (!res.ok && res.status != PEC_VERIFY_INTERNAL) {
        seal->tsa_chain = PEC_REM_TSA_UNCHECKED;
        snprintf(seal->tsa_note, sizeof(seal->tsa_note),
                 "no trust anchor reaches the TSA's certificate (%s)", res.reason);
        pec_verify_result_free(&res);
        return;
    }
    if (res.ok) {
        pec_verify_result_free(&res);
        tsa_chain(c->opts, tok, PEC_CERT_TSA, c->opts->at_mode, &res);
    }
    if (res.ok) {
        seal->tsa_chain = PEC_REM_TSA_CHAIN_OK;
    } else {
        seal->tsa_chain = PEC_REM_TSA_CHAIN_FAILED;
        snprintf(seal->tsa_note, sizeof(seal->tsa_note), "TSA %s", res.reason);
        snprintf(ts_err, ts_errlen, "%s", seal->tsa_note);
        if (res.status == PEC_VERIFY_INTERNAL)
            *c->temporary = 1;
    }
    pec_verify_result_free(&res);
}

static void check_timestamp(struct check *c, char *ts_err, size_t ts_errlen)
{
    struct pec_rem_seal *seal = c->seal;
    xmlNodePtr qp = c->signed_props->parent;
    xmlNodePtr usp = pec_rem_xml_child(pec_rem_xml_child(qp, "UnsignedProperties"),
                                       "UnsignedSignatureProperties");
    xmlNodePtr sts = pec_rem_xml_child(usp, "SignatureTimeStamp"), value = NULL;
    char *alg = attr(pec_rem_xml_child(sts, "CanonicalizationMethod"), "Algorithm");
    int method = alg != NULL ? is_c14n(alg) : 0; /* XAdES: inclusive C14N when unnamed */
    unsigned char *tok = NULL, *data = NULL;
    size_t toklen, datalen = 0;
    struct pec_rem_token t;
    char why[300];

    free(alg);
    ds_children(c->sig, "SignatureValue", &value);
    if (sts == NULL) {
        snprintf(ts_err, ts_errlen, "no SignatureTimeStamp (XAdES-B-T is required)");
        return;
    }
    seal->has_timestamp = 1;
    if (method < 0) {
        snprintf(ts_err, ts_errlen, "unknown canonicalisation of the SignatureTimeStamp");
        return;
    }
    if (b64_text(pec_rem_xml_child(sts, "EncapsulatedTimeStamp"), &tok, &toklen) != 0) {
        snprintf(ts_err, ts_errlen, "unreadable EncapsulatedTimeStamp");
        return;
    }
    if (value == NULL || (data = c14n_subtree(c->doc, value, method, &datalen)) == NULL) {
        snprintf(ts_err, ts_errlen, "cannot canonicalise the SignatureValue");
    } else if (pec_rem_token_check(tok, toklen, data, datalen, &t, why, sizeof(why)) != 0) {
        snprintf(ts_err, ts_errlen, "%s", why);
    } else {
        seal->timestamp_ok = 1;
        seal->timestamp_time = t.time;
        if (seal->has_signing_time && t.time < seal->signing_time)
            snprintf(ts_err, ts_errlen, "the time-stamp is earlier than the SigningTime");
        check_tsa(c, &t, ts_err, ts_errlen);
    }
    if (data != NULL)
        pec_rem_token_free(&t);
    free(data);
    free(tok);
}

/* ------------------------------------------------------------ entry point */

void pec_rem_seal_check(xmlDocPtr doc, const struct pec_inspect_opts *opts,
                        struct pec_rem_seal *seal, char *sig_err, size_t sig_errlen, char *ts_err,
                        size_t ts_errlen, int *temporary)
{
    struct check c = {.doc = doc,
                      .opts = opts,
                      .seal = seal,
                      .err = sig_err,
                      .errlen = sig_errlen,
                      .temporary = temporary};
    char *props_id = NULL;
    struct xml_errors saved;

    memset(seal, 0, sizeof(*seal));
    sig_err[0] = ts_err[0] = '\0';
    if (pthread_once(&xmlsec_once, xmlsec_init_once) != 0 || !xmlsec_ready) {
        *temporary = 1;
        fail(&c, "xmlsec could not be initialised");
        return;
    }
    xml_errors_off(&saved);
    if (find_signature(&c) == 0 && check_references(&c, &props_id) == 0 &&
        find_properties(&c, props_id) == 0 && read_certs(&c) == 0) {
        seal->checked = 1;
        read_signing_time(&c);
        if (check_signing_cert(&c) == 0 && verify_xmldsig(&c) == 0)
            check_chain(&c);
        seal->ok = sig_err[0] == '\0';
        check_timestamp(&c, ts_err, ts_errlen);
    }
    xml_errors_on(&saved);
    free(props_id);
    for (size_t i = 0; i < c.ncerts; i++)
        free(c.certs[i]);
    free(c.certs);
    free(c.certlens);
}

void pec_rem_seal_free(struct pec_rem_seal *seal)
{
    if (seal == NULL)
        return;
    free(seal->signer_subject);
    free(seal->signer_issuer);
    free(seal->tsa_subject);
    memset(seal, 0, sizeof(*seal));
}
