/*
 * smime - the provider's S/MIME signature: sign what we emit, verify what peers send.
 *
 * Built on OpenSSL 3's CMS API.  Signing builds the SignedData by hand (CMS_PARTIAL)
 * so the signingTime attribute is ours, not the wall clock's, and no smimeCapabilities
 * list is added: that is what makes the output reproducible.  Verification is split in
 * two: CMS_verify() checks only the signature over the bytes, then the chain is checked
 * with our own X509_STORE_CTX so the failure can be told in terms a sysadmin
 * understands (which certificate, expired when, issued by whom).  Content that lives
 * in a file is signed through a source BIO over the caller's reader, so it is hashed
 * as it streams by and never copied whole into memory.  See smime.h.
 */
#include "message/smime.h"
#include "message/crl.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* pem.h first: cms.h declares PEM_read_bio_CMS only when it has been included */
#include <openssl/pem.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct pec_signer {
    X509 *cert;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
    const EVP_MD *md;
    const char *micalg;
    char *subject;
    char *address;
    unsigned char *der;
    size_t derlen;
    char sha1[41];
    time_t not_after;
};

struct pec_trust {
    X509_STORE *store;
    int pinned; /* pec_trust_load_pinned(): partial chains, no purpose */
};

/*
 * The reason of the first (innermost) OpenSSL error of the queue, which is then
 * emptied: "wrong tag" says more to a sysadmin than "error:0680007B:...".
 */
static const char *ossl_error_text(unsigned long e, char *buf, size_t len)
{
    const char *reason = ERR_reason_error_string(e);

    if (reason != NULL)
        snprintf(buf, len, "%s", reason);
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

static const char *ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();

    if (e == 0)
        snprintf(buf, len, "unknown OpenSSL error");
    else
        ossl_error_text(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* "2021-01-01 00:00:00 UTC" */
static const char *fmt_time(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "@%lld", (long long)t);
    return buf;
}

static int asn1_time_to_time_t(const ASN1_TIME *at, time_t *t)
{
    struct tm tm;

    if (at == NULL || !ASN1_TIME_to_tm(at, &tm))
        return -1;
    *t = timegm(&tm);
    return 0;
}

static const char *fmt_time_asn1(const ASN1_TIME *at, char *buf, size_t len)
{
    time_t t;

    if (asn1_time_to_time_t(at, &t) < 0) {
        ERR_clear_error();
        snprintf(buf, len, "(unreadable time)");
        return buf;
    }
    return fmt_time(t, buf, len);
}

/* A DN on one line, "C=IT, O=..., CN=...", UTF-8 left as is. */
static char *name_oneline(const X509_NAME *name)
{
    unsigned long flags = (XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN | XN_FLAG_DUMP_UNKNOWN_FIELDS |
                           ASN1_STRFLGS_RFC2253 | ASN1_STRFLGS_UTF8_CONVERT) &
                          ~(unsigned long)ASN1_STRFLGS_ESC_MSB;
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *s;
    long n;

    if (b == NULL || X509_NAME_print_ex(b, name, 0, flags) < 0) {
        BIO_free(b);
        ERR_clear_error();
        return xstrdup("(unprintable name)");
    }
    n = BIO_get_mem_data(b, &data);
    s = xstrndup(n > 0 ? data : "", n > 0 ? (size_t)n : 0);
    BIO_free(b);
    return s;
}

/* First rfc822Name of the subjectAltName, or "". */
static char *cert_address(X509 *cert)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    char *addr = NULL;

    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && addr == NULL; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const unsigned char *p;
        int n;

        if (gn->type != GEN_EMAIL)
            continue;
        p = ASN1_STRING_get0_data(gn->d.rfc822Name);
        n = ASN1_STRING_length(gn->d.rfc822Name);
        /* an embedded NUL would let "a@x\0.evil" pass for "a@x" */
        if (n > 0 && memchr(p, '\0', (size_t)n) == NULL)
            addr = xstrndup((const char *)p, (size_t)n);
    }
    GENERAL_NAMES_free(names);
    ERR_clear_error();
    return addr ? addr : xstrdup("");
}

static void hex_lower(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* DER and the SHA-1 hex of it.  Returns 0, or -1 when OpenSSL cannot encode CERT. */
static int cert_der_sha1(X509 *cert, unsigned char **der, size_t *derlen, char sha1[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char *p;
    int n = i2d_X509(cert, NULL);

    if (n <= 0)
        return -1;
    *der = p = xmalloc((size_t)n);
    if (i2d_X509(cert, &p) != n || !EVP_Digest(*der, (size_t)n, md, &mdlen, EVP_sha1(), NULL) ||
        mdlen != 20) {
        free(*der);
        *der = NULL;
        return -1;
    }
    *derlen = (size_t)n;
    hex_lower(md, mdlen, sha1);
    return 0;
}

/* ---------------------------------------------------------------- signer */

static int load_cert(const char *path, X509 **cert, char *err, size_t errlen)
{
    char why[256];
    FILE *fp = fopen(path, "r");

    if (fp == NULL) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    *cert = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    if (*cert == NULL) {
        pec_seterr(err, errlen, "%s: no PEM certificate: %s", path, ossl_reason(why, sizeof(why)));
        return -1;
    }
    return 0;
}

/* Every certificate of a PEM bundle, except LEAF itself when the bundle repeats it. */
static int load_chain(const char *path, X509 *leaf, STACK_OF(X509) * *chain, char *err,
                      size_t errlen)
{
    char why[256];
    FILE *fp;
    X509 *c;
    unsigned long e;

    *chain = sk_X509_new_null();
    if (*chain == NULL) {
        pec_seterr(err, errlen, "cannot allocate certificate list");
        return -1;
    }
    if (path == NULL || *path == '\0')
        return 0;
    if ((fp = fopen(path, "r")) == NULL) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    ERR_clear_error();
    while ((c = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
        if (X509_cmp(c, leaf) == 0) {
            X509_free(c);
        } else if (!sk_X509_push(*chain, c)) {
            X509_free(c);
            fclose(fp);
            pec_seterr(err, errlen, "%s: cannot store a certificate", path);
            return -1;
        }
    }
    fclose(fp);
    /* the loop ends on "no start line" at end of file; anything else is a broken bundle */
    e = ERR_peek_last_error();
    if (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        pec_seterr(err, errlen, "%s: bad PEM certificate: %s", path, ossl_reason(why, sizeof(why)));
        return -1;
    }
    ERR_clear_error();
    return 0;
}

/* A daemon must never stop at a passphrase prompt: refuse, and remember why. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    *(int *)u = 1;
    return -1;
}

static int load_key(const char *path, EVP_PKEY **key, char *err, size_t errlen)
{
    char why[256];
    int asked = 0;
    FILE *fp = fopen(path, "r");

    if (fp == NULL) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    *key = PEM_read_PrivateKey(fp, NULL, no_passphrase, &asked);
    fclose(fp);
    if (*key == NULL && asked) {
        ERR_clear_error();
        pec_seterr(err, errlen, "%s: the key is encrypted; give pecmilter an unencrypted key",
                   path);
        return -1;
    }
    if (*key == NULL) {
        pec_seterr(err, errlen, "%s: no PEM private key: %s", path, ossl_reason(why, sizeof(why)));
        return -1;
    }
    return 0;
}

static int set_digest(struct pec_signer *s, const char *digest, char *err, size_t errlen)
{
    if (digest == NULL || *digest == '\0' || strcasecmp(digest, "sha256") == 0) {
        s->md = EVP_sha256();
        s->micalg = "sha-256";
    } else if (strcasecmp(digest, "sha1") == 0) {
        s->md = EVP_sha1();
        s->micalg = "sha1";
    } else {
        pec_seterr(err, errlen, "signature digest \"%s\" is neither sha256 nor sha1", digest);
        return -1;
    }
    return 0;
}

static int describe_signer(struct pec_signer *s, const char *cert_path, char *err, size_t errlen)
{
    char why[256];

    s->subject = name_oneline(X509_get_subject_name(s->cert));
    s->address = cert_address(s->cert);
    if (cert_der_sha1(s->cert, &s->der, &s->derlen, s->sha1) < 0 ||
        asn1_time_to_time_t(X509_get0_notAfter(s->cert), &s->not_after) < 0) {
        pec_seterr(err, errlen, "%s: cannot read the certificate: %s", cert_path,
                   ossl_reason(why, sizeof(why)));
        return -1;
    }
    return 0;
}

struct pec_signer *pec_signer_load(const char *cert_path, const char *chain_path,
                                   const char *key_path, const char *digest, char *err,
                                   size_t errlen)
{
    struct pec_signer *s = xcalloc(1, sizeof(*s));

    if (set_digest(s, digest, err, errlen) < 0 || load_cert(cert_path, &s->cert, err, errlen) < 0 ||
        load_chain(chain_path, s->cert, &s->chain, err, errlen) < 0 ||
        load_key(key_path, &s->key, err, errlen) < 0)
        goto fail;
    if (X509_check_private_key(s->cert, s->key) != 1) {
        ERR_clear_error();
        pec_seterr(err, errlen, "%s: the key does not match the certificate %s", key_path,
                   cert_path);
        goto fail;
    }
    if (describe_signer(s, cert_path, err, errlen) < 0)
        goto fail;
    return s;

fail:
    pec_signer_free(s);
    return NULL;
}

void pec_signer_free(struct pec_signer *s)
{
    if (s == NULL)
        return;
    X509_free(s->cert);
    sk_X509_pop_free(s->chain, X509_free);
    EVP_PKEY_free(s->key);
    free(s->subject);
    free(s->address);
    free(s->der);
    free(s);
}

const char *pec_signer_subject(const struct pec_signer *s)
{
    return s->subject;
}

const char *pec_signer_address(const struct pec_signer *s)
{
    return s->address;
}

const char *pec_signer_cert_sha1(const struct pec_signer *s)
{
    return s->sha1;
}

const unsigned char *pec_signer_cert_der(const struct pec_signer *s, size_t *len)
{
    *len = s->derlen;
    return s->der;
}

time_t pec_signer_not_after(const struct pec_signer *s)
{
    return s->not_after;
}

const char *pec_smime_micalg(const struct pec_signer *s)
{
    return s->micalg;
}

/* ---------------------------------------------------------------- signing */

static int add_signing_time(CMS_SignerInfo *si, time_t when)
{
    ASN1_TIME *t = ASN1_TIME_set(NULL, when);
    int ok;

    if (t == NULL)
        return 0;
    /* ASN1_TIME_set picks UTCTime for 1950-2049 and GeneralizedTime otherwise (RFC 5652) */
    ok = CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, ASN1_STRING_type(t), t, -1);
    ASN1_TIME_free(t);
    return ok;
}

static int cms_to_der(CMS_ContentInfo *cms, unsigned char **der, size_t *derlen)
{
    unsigned char *p;
    int n = i2d_CMS_ContentInfo(cms, NULL);

    if (n <= 0)
        return 0;
    *der = p = xmalloc((size_t)n);
    if (i2d_CMS_ContentInfo(cms, &p) != n) {
        free(*der);
        *der = NULL;
        return 0;
    }
    *derlen = (size_t)n;
    return 1;
}

/*
 * Sign whatever IN yields up to its end, detached (CMS_DETACHED in MODE) or attached (0);
 * see pec_smime_sign().
 */
static int sign_bio(const struct pec_signer *s, BIO *in, unsigned int mode, time_t signing_time,
                    unsigned char **der, size_t *derlen, char *err, size_t errlen)
{
    const unsigned int flags = mode | CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP;
    char why[256];
    CMS_ContentInfo *cms = NULL;
    CMS_SignerInfo *si;
    int ok = 0;

    if ((cms = CMS_sign(NULL, NULL, NULL, NULL, flags)) != NULL &&
        (si = CMS_add1_signer(cms, s->cert, s->key, s->md, flags)) != NULL &&
        add_signing_time(si, signing_time)) {
        ok = 1;
        for (int i = 0; ok && i < sk_X509_num(s->chain); i++)
            ok = CMS_add1_cert(cms, sk_X509_value(s->chain, i));
        ok = ok && CMS_final(cms, in, NULL, flags) && cms_to_der(cms, der, derlen);
    }
    if (!ok)
        pec_seterr(err, errlen, "cannot sign: %s", ossl_reason(why, sizeof(why)));
    CMS_ContentInfo_free(cms);
    return ok ? 0 : -1;
}

/* Sign CONTENT[0..LEN) in memory, detached or attached as for sign_bio(). */
static int sign_mem(const struct pec_signer *s, const unsigned char *content, size_t len,
                    unsigned int mode, time_t signing_time, unsigned char **der, size_t *derlen,
                    char *err, size_t errlen)
{
    char why[256];
    BIO *in;
    int ret;

    *der = NULL;
    *derlen = 0;
    if (len > INT_MAX) {
        pec_seterr(err, errlen, "cannot sign %zu bytes: too large", len);
        return -1;
    }
    ERR_clear_error();
    if ((in = BIO_new_mem_buf(len ? content : (const unsigned char *)"", (int)len)) == NULL) {
        pec_seterr(err, errlen, "cannot sign: %s", ossl_reason(why, sizeof(why)));
        return -1;
    }
    ret = sign_bio(s, in, mode, signing_time, der, derlen, err, errlen);
    BIO_free(in);
    return ret;
}

int pec_smime_sign(const struct pec_signer *s, const unsigned char *content, size_t len,
                   time_t signing_time, unsigned char **der, size_t *derlen, char *err,
                   size_t errlen)
{
    return sign_mem(s, content, len, CMS_DETACHED, signing_time, der, derlen, err, errlen);
}

/*
 * A source BIO over the caller's read function.  OpenSSL 3.0's CMS_final() copies its
 * input with a loop that stops at the first read returning <= 0 and reports success
 * whatever the reason, so a read error would be signed as a short message: the error is
 * remembered here and checked after CMS_final().
 */
struct stream_src {
    pec_smime_reader *read;
    void *arg;
    int failed;
    int eof;
};

static int stream_read(BIO *b, char *buf, size_t len, size_t *readbytes)
{
    struct stream_src *src = BIO_get_data(b);
    int n;

    *readbytes = 0;
    if (src->failed || src->eof)
        return 0;
    if (len > INT_MAX)
        len = INT_MAX;
    n = src->read(src->arg, (unsigned char *)buf, len);
    if (n < 0) {
        src->failed = 1;
        return 0;
    }
    if (n == 0) {
        src->eof = 1;
        return 0;
    }
    *readbytes = (size_t)n;
    return 1;
}

static long stream_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    const struct stream_src *src = BIO_get_data(b);

    switch (cmd) {
    case BIO_CTRL_EOF:
        return src->eof || src->failed;
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

/*
 * One method for the process: BIO type indexes are a small finite range, so a method per
 * signature would run out of them in a long-lived daemon.
 */
static BIO_METHOD *stream_meth;
static pthread_once_t stream_meth_once = PTHREAD_ONCE_INIT;

static void stream_meth_init(void)
{
    int index = BIO_get_new_index();
    BIO_METHOD *m;

    if (index < 0 || (m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK, "pec stream")) == NULL)
        return;
    if (!BIO_meth_set_read_ex(m, stream_read) || !BIO_meth_set_ctrl(m, stream_ctrl)) {
        BIO_meth_free(m);
        return;
    }
    stream_meth = m;
}

int pec_smime_sign_stream(const struct pec_signer *s, pec_smime_reader *read, void *arg,
                          time_t signing_time, unsigned char **der, size_t *derlen, char *err,
                          size_t errlen)
{
    struct stream_src src = {.read = read, .arg = arg};
    char why[256];
    BIO *in;
    int ret;

    *der = NULL;
    *derlen = 0;
    ERR_clear_error();
    if (pthread_once(&stream_meth_once, stream_meth_init) != 0 || stream_meth == NULL ||
        (in = BIO_new(stream_meth)) == NULL) {
        pec_seterr(err, errlen, "cannot sign: no stream reader: %s", ossl_reason(why, sizeof(why)));
        return -1;
    }
    BIO_set_data(in, &src);
    BIO_set_init(in, 1);
    ret = sign_bio(s, in, CMS_DETACHED, signing_time, der, derlen, err, errlen);
    if (ret == 0 && src.failed) {
        free(*der);
        *der = NULL;
        *derlen = 0;
        pec_seterr(err, errlen, "cannot sign: reading the content failed");
        ret = -1;
    }
    BIO_free(in);
    return ret;
}

/* ---------------------------------------------------------------- trust anchors */

static int trust_add_file(X509_STORE *store, const char *path, char *err, size_t errlen)
{
    char why[256];

    ERR_clear_error();
    if (X509_STORE_load_file(store, path) != 1) {
        pec_seterr(err, errlen, "%s: no PEM certificate loaded: %s", path,
                   ossl_reason(why, sizeof(why)));
        return -1;
    }
    return 0;
}

static int has_cert_suffix(const char *name)
{
    size_t n = strlen(name);

    return n > 4 &&
           (strcasecmp(name + n - 4, ".pem") == 0 || strcasecmp(name + n - 4, ".crt") == 0);
}

static int trust_add_dir(X509_STORE *store, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int ret = 0;

    if (d == NULL) {
        pec_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    while (ret == 0 && (de = readdir(d)) != NULL) {
        char *path;
        struct stat st;

        if (de->d_name[0] == '.' || !has_cert_suffix(de->d_name))
            continue;
        path = xasprintf("%s/%s", dir, de->d_name);
        if (stat(path, &st) < 0) {
            pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
            ret = -1;
        } else if (S_ISREG(st.st_mode)) {
            ret = trust_add_file(store, path, err, errlen);
        }
        free(path);
    }
    closedir(d);
    return ret;
}

struct pec_trust *pec_trust_load(const char *path, char *err, size_t errlen)
{
    struct pec_trust *t = xcalloc(1, sizeof(*t));
    struct stat st;
    int ret;

    if (path == NULL || *path == '\0') {
        pec_seterr(err, errlen, "no trust anchors given");
        goto fail;
    }
    if (stat(path, &st) < 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if ((t->store = X509_STORE_new()) == NULL) {
        pec_seterr(err, errlen, "cannot allocate a certificate store");
        goto fail;
    }
    ret = S_ISDIR(st.st_mode) ? trust_add_dir(t->store, path, err, errlen)
                              : trust_add_file(t->store, path, err, errlen);
    if (ret < 0)
        goto fail;
    if (sk_X509_OBJECT_num(X509_STORE_get0_objects(t->store)) <= 0) {
        pec_seterr(err, errlen, "%s: no trust anchor found", path);
        goto fail;
    }
    return t;

fail:
    pec_trust_free(t);
    return NULL;
}

struct pec_trust *pec_trust_load_pinned(const char *path, char *err, size_t errlen)
{
    struct pec_trust *t = pec_trust_load(path, err, errlen);

    if (t != NULL)
        t->pinned = 1;
    return t;
}

struct x509_store_st *pec_trust_store(const struct pec_trust *t)
{
    return t->store;
}

void pec_trust_free(struct pec_trust *t)
{
    if (t == NULL)
        return;
    X509_STORE_free(t->store);
    free(t);
}

/* ---------------------------------------------------------------- verification */

static int fail(struct pec_verify_result *res, enum pec_verify_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct pec_verify_result *res, enum pec_verify_status status, const char *fmt, ...)
{
    va_list ap;

    res->ok = 0;
    res->status = status;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
    return -1;
}

static void result_init(struct pec_verify_result *res)
{
    memset(res, 0, sizeof(*res));
    res->status = PEC_VERIFY_INTERNAL;
    res->signer_subject = xstrdup("");
    res->signer_issuer = xstrdup("");
    res->signer_address = xstrdup("");
}

void pec_verify_result_free(struct pec_verify_result *res)
{
    if (res == NULL)
        return;
    free(res->signer_der);
    free(res->signer_subject);
    free(res->signer_issuer);
    free(res->signer_address);
    res->signer_der = NULL;
    res->signer_subject = res->signer_issuer = res->signer_address = NULL;
}

static int starts_with_pem(const unsigned char *p, size_t n)
{
    static const char armor[] = "-----BEGIN ";

    while (n > 0 && isspace(*p)) {
        p++;
        n--;
    }
    return n >= sizeof(armor) - 1 && memcmp(p, armor, sizeof(armor) - 1) == 0;
}

/* DER, or PEM labelled CMS or PKCS7; NULL with the reason in RES otherwise. */
/*
 * Parsing the certificates a signature carries is most of what verifying it costs:
 * OpenSSL 3.0 decodes every certificate's public key through its provider decoders,
 * setting up a decoder context each time (over a million instructions per
 * certificate, more than the RSA check itself).  The certificates are nearly always
 * the same few (the providers' and their CA's), so parse_cms() takes them out of the
 * DER before handing it to OpenSSL and puts back parsed ones from this cache, keyed
 * by their exact DER bytes: equal bytes parse to an equal certificate.  The cache is
 * bounded (the oldest entry makes room), so a stream of distinct certificates cannot
 * grow it; an X509 it drops lives on while a signature being checked holds it.
 */
#define CERT_CACHE_MAX 32

static struct cached_cert {
    unsigned char *der;
    size_t len;
    X509 *x;
} cert_cache[CERT_CACHE_MAX];
static size_t cert_cache_next; /* the slot the next miss fills */
static pthread_mutex_t cert_cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* The certificate DER[0..LEN), parsed; the caller owns one reference.  NULL if malformed. */
static X509 *cached_cert(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = NULL;
    size_t i;

    pthread_mutex_lock(&cert_cache_lock);
    for (i = 0; i < CERT_CACHE_MAX && x == NULL; i++) {
        struct cached_cert *c = &cert_cache[i];

        if (c->x != NULL && c->len == len && memcmp(c->der, der, len) == 0 && X509_up_ref(c->x))
            x = c->x;
    }
    pthread_mutex_unlock(&cert_cache_lock);
    if (x != NULL)
        return x;
    if (len > LONG_MAX || (x = d2i_X509(NULL, &p, (long)len)) == NULL || p != der + len) {
        X509_free(x);
        return NULL;
    }
    if (X509_up_ref(x)) {
        pthread_mutex_lock(&cert_cache_lock);
        struct cached_cert *c = &cert_cache[cert_cache_next];
        X509_free(c->x);
        free(c->der);
        c->der = xmalloc(len);
        memcpy(c->der, der, len);
        c->len = len;
        c->x = x;
        cert_cache_next = (cert_cache_next + 1) % CERT_CACHE_MAX;
        pthread_mutex_unlock(&cert_cache_lock);
    }
    return x;
}

/* One DER header at *P (before END): its tag, the content's start and length. */
static int der_next(const unsigned char **p, const unsigned char *end, unsigned *tag,
                    const unsigned char **body, size_t *len)
{
    const unsigned char *q = *p;
    size_t n, k;

    if (end - q < 2 || (q[0] & 0x1f) == 0x1f)
        return -1; /* no header, or a high tag number (never in the frame we walk) */
    *tag = q[0];
    n = q[1];
    q += 2;
    if (n & 0x80) {
        k = n & 0x7f;
        if (k == 0 || k > sizeof(size_t) || (size_t)(end - q) < k)
            return -1; /* indefinite length (BER) or too long */
        for (n = 0; k > 0; k--)
            n = (n << 8) | *q++;
    }
    if ((size_t)(end - q) < n)
        return -1;
    *body = q;
    *len = n;
    *p = q + n;
    return 0;
}

static size_t der_head_len(size_t len)
{
    size_t k = 0;

    if (len < 0x80)
        return 2;
    for (; len > 0; len >>= 8)
        k++;
    return 2 + k;
}

static size_t der_put_head(unsigned char *out, unsigned tag, size_t len)
{
    size_t n = der_head_len(len), i;

    out[0] = (unsigned char)tag;
    if (n == 2) {
        out[1] = (unsigned char)len;
        return 2;
    }
    out[1] = (unsigned char)(0x80 | (n - 2));
    for (i = 2; i < n; i++)
        out[i] = (unsigned char)(len >> (8 * (n - 1 - i)));
    return n;
}

/*
 * A DER ContentInfo with a SignedData: the same without its certificates field, in
 * *OUT (the caller frees it), and where the certificates were in SIG (*CERTS, *CERTSLEN:
 * the content of the field, a run of Certificate SEQUENCEs).  0 when there are
 * certificates to take out, -1 when there are none or SIG is not plain DER of that
 * shape (the caller then parses SIG as it is).
 */
static int strip_certs(const unsigned char *sig, size_t siglen, unsigned char **out, size_t *outlen,
                       const unsigned char **certs, size_t *certslen)
{
    static const unsigned char signed_data[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                0xf7, 0x0d, 0x01, 0x07, 0x02};
    const unsigned char *end = sig + siglen, *p = sig, *ci, *ex, *sd, *field, *c, *after;
    const unsigned char *q, *body;
    size_t cilen, exlen, sdlen, len, sdnew, exnew, cinew, n;
    unsigned tag;
    int i;

    if (der_next(&p, end, &tag, &ci, &cilen) < 0 || tag != 0x30 || p != end ||
        cilen < sizeof(signed_data) || memcmp(ci, signed_data, sizeof(signed_data)) != 0)
        return -1;
    p = ci + sizeof(signed_data);
    if (der_next(&p, ci + cilen, &tag, &ex, &exlen) < 0 || tag != 0xa0 || p != ci + cilen)
        return -1;
    p = ex;
    if (der_next(&p, ex + exlen, &tag, &sd, &sdlen) < 0 || tag != 0x30 || p != ex + exlen)
        return -1;
    /* version, digestAlgorithms, encapContentInfo, then [0] IMPLICIT certificates */
    p = sd;
    for (i = 0; i < 3; i++)
        if (der_next(&p, sd + sdlen, &tag, &body, &len) < 0)
            return -1;
    field = p;
    if (der_next(&p, sd + sdlen, &tag, &c, &len) < 0 || tag != 0xa0 || len == 0)
        return -1;
    after = p;
    for (q = c; q < c + len;)
        if (der_next(&q, c + len, &tag, &body, &n) < 0 || tag != 0x30)
            return -1; /* an attribute certificate or other choice: leave it to OpenSSL */
    *certs = c;
    *certslen = len;

    sdnew = sdlen - (size_t)(after - field);
    exnew = der_head_len(sdnew) + sdnew;
    cinew = sizeof(signed_data) + der_head_len(exnew) + exnew;
    *out = xmalloc(cinew + 16);
    n = der_put_head(*out, 0x30, cinew);
    memcpy(*out + n, signed_data, sizeof(signed_data));
    n += sizeof(signed_data);
    n += der_put_head(*out + n, 0xa0, exnew);
    n += der_put_head(*out + n, 0x30, sdnew);
    memcpy(*out + n, sd, (size_t)(field - sd));
    n += (size_t)(field - sd);
    memcpy(*out + n, after, (size_t)(sd + sdlen - after));
    n += (size_t)(sd + sdlen - after);
    *outlen = n;
    return 0;
}

/* d2i_CMS_ContentInfo, with the certificates from the cache (see above). */
static CMS_ContentInfo *d2i_cms_cached(const unsigned char *sig, size_t siglen)
{
    const unsigned char *certs, *p, *body;
    unsigned char *stripped;
    size_t strippedlen, certslen, len;
    CMS_ContentInfo *cms;
    unsigned tag;

    if (strip_certs(sig, siglen, &stripped, &strippedlen, &certs, &certslen) == 0) {
        p = stripped;
        cms = strippedlen <= LONG_MAX ? d2i_CMS_ContentInfo(NULL, &p, (long)strippedlen) : NULL;
        if (cms != NULL && p != stripped + strippedlen) {
            CMS_ContentInfo_free(cms);
            cms = NULL;
        }
        free(stripped);
        for (p = certs; cms != NULL && p < certs + certslen;) {
            const unsigned char *start = p;
            X509 *x;

            der_next(&p, certs + certslen, &tag, &body, &len);
            x = cached_cert(start, (size_t)(p - start));
            if (x == NULL || !CMS_add1_cert(cms, x)) {
                CMS_ContentInfo_free(cms); /* e.g. the same certificate twice */
                cms = NULL;
            }
            X509_free(x);
        }
        if (cms != NULL)
            return cms;
        ERR_clear_error();
    }
    p = sig;
    return d2i_CMS_ContentInfo(NULL, &p, (long)siglen);
}

static CMS_ContentInfo *parse_cms(const unsigned char *sig, size_t siglen,
                                  struct pec_verify_result *res)
{
    char why[256];
    CMS_ContentInfo *cms = NULL;

    ERR_clear_error();
    if (siglen > INT_MAX) {
        fail(res, PEC_VERIFY_MALFORMED, "malformed signature: %zu bytes is too large", siglen);
        return NULL;
    }
    if (starts_with_pem(sig, siglen)) {
        BIO *b = BIO_new_mem_buf(sig, (int)siglen);

        if (b == NULL) {
            fail(res, PEC_VERIFY_INTERNAL, "cannot allocate: %s", ossl_reason(why, sizeof(why)));
            return NULL;
        }
        cms = PEM_read_bio_CMS(b, NULL, NULL, NULL);
        BIO_free(b);
    } else {
        cms = d2i_cms_cached(sig, siglen);
    }
    if (cms == NULL)
        fail(res, PEC_VERIFY_MALFORMED, "malformed signature: not a CMS structure (%s)",
             ossl_reason(why, sizeof(why)));
    return cms;
}

/* The one SignerInfo of a SignedData; NULL with the reason in RES otherwise. */
static CMS_SignerInfo *only_signer(CMS_ContentInfo *cms, struct pec_verify_result *res)
{
    STACK_OF(CMS_SignerInfo) * sinfos;
    int n;

    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        char type[80];

        if (OBJ_obj2txt(type, sizeof(type), CMS_get0_type(cms), 0) <= 0)
            snprintf(type, sizeof(type), "(unknown)");
        fail(res, PEC_VERIFY_MALFORMED, "malformed signature: content type %s, not signed-data",
             type);
        return NULL;
    }
    sinfos = CMS_get0_SignerInfos(cms);
    n = sinfos ? sk_CMS_SignerInfo_num(sinfos) : 0;
    if (n <= 0) {
        fail(res, PEC_VERIFY_NO_SIGNATURE, "no signature: the signed-data has no signer");
        return NULL;
    }
    if (n > 1) {
        fail(res, PEC_VERIFY_MALFORMED, "malformed signature: %d signers, expected one", n);
        return NULL;
    }
    return sk_CMS_SignerInfo_value(sinfos, 0);
}

static const char *const accepted_digests[] = {"sha1", "sha224", "sha256", "sha384", "sha512"};

static int note_digest(const X509_ALGOR *alg, struct pec_verify_result *res)
{
    const ASN1_OBJECT *obj;
    const char *name;

    X509_ALGOR_get0(&obj, NULL, NULL, alg);
    name = OBJ_nid2sn(OBJ_obj2nid(obj));
    snprintf(res->digest, sizeof(res->digest), "%s", name ? name : "unknown");
    for (char *p = res->digest; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (size_t i = 0; i < sizeof(accepted_digests) / sizeof(accepted_digests[0]); i++)
        if (strcmp(res->digest, accepted_digests[i]) == 0)
            return 0;
    return fail(res, PEC_VERIFY_MALFORMED, "malformed signature: digest %s is not accepted",
                res->digest);
}

/*
 * S/MIME signs id-data.  OpenSSL 3.0 does not check that the eContentType agrees with
 * the signed contentType attribute (RFC 5652 §11.1), so an unprotected field could be
 * altered without the signature noticing: check both here.
 */
static int check_content_type(CMS_ContentInfo *cms, CMS_SignerInfo *si,
                              struct pec_verify_result *res)
{
    int i = CMS_signed_get_attr_by_NID(si, NID_pkcs9_contentType, -1);
    const ASN1_OBJECT *attr = NULL;

    if (i >= 0)
        attr = X509_ATTRIBUTE_get0_data(CMS_signed_get_attr(si, i), 0, V_ASN1_OBJECT, NULL);
    ERR_clear_error();
    if (OBJ_obj2nid(CMS_get0_eContentType(cms)) != NID_pkcs7_data ||
        (CMS_signed_get_attr_count(si) > 0 && OBJ_obj2nid(attr) != NID_pkcs7_data))
        return fail(res, PEC_VERIFY_MALFORMED, "malformed signature: signed content is not data");
    return 0;
}

static int note_signing_time(CMS_SignerInfo *si, struct pec_verify_result *res)
{
    int i = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
    X509_ATTRIBUTE *attr;
    const ASN1_TIME *t;

    if (i < 0)
        return 0;
    attr = CMS_signed_get_attr(si, i);
    t = X509_ATTRIBUTE_get0_data(attr, 0, V_ASN1_UTCTIME, NULL);
    if (t == NULL)
        t = X509_ATTRIBUTE_get0_data(attr, 0, V_ASN1_GENERALIZEDTIME, NULL);
    if (t == NULL || asn1_time_to_time_t(t, &res->signing_time) < 0) {
        ERR_clear_error();
        return fail(res, PEC_VERIFY_MALFORMED, "malformed signature: bad signingTime attribute");
    }
    res->has_signing_time = 1;
    return 0;
}

/* Find the signer's certificate in the signature and record who it is. */
static X509 *note_signer(CMS_ContentInfo *cms, CMS_SignerInfo *si, struct pec_verify_result *res)
{
    X509 *signer = NULL;
    X509_ALGOR *digalg = NULL;

    ERR_clear_error();
    if (CMS_set1_signers_certs(cms, NULL, 0) < 0) {
        char why[256];

        fail(res, PEC_VERIFY_MALFORMED, "malformed signature: %s", ossl_reason(why, sizeof(why)));
        return NULL;
    }
    CMS_SignerInfo_get0_algs(si, NULL, &signer, &digalg, NULL);
    if (signer == NULL) {
        fail(res, PEC_VERIFY_MALFORMED,
             "malformed signature: the signer's certificate is not included");
        return NULL;
    }
    free(res->signer_subject);
    free(res->signer_issuer);
    free(res->signer_address);
    res->signer_subject = name_oneline(X509_get_subject_name(signer));
    res->signer_issuer = name_oneline(X509_get_issuer_name(signer));
    res->signer_address = cert_address(signer);
    if (cert_der_sha1(signer, &res->signer_der, &res->signer_derlen, res->signer_sha1) < 0) {
        fail(res, PEC_VERIFY_MALFORMED, "malformed signature: unreadable signer certificate");
        ERR_clear_error();
        return NULL;
    }
    if (note_digest(digalg, res) < 0 || note_signing_time(si, res) < 0)
        return NULL;
    return signer;
}

/* CMS_verify() has failed: was it the signature, or the structure? */
static int signature_failure(struct pec_verify_result *res)
{
    char why[256] = "unknown reason";
    int mismatch = 0, nomem = 0, first = 1;
    unsigned long e;

    while ((e = ERR_get_error()) != 0) {
        int reason = ERR_GET_REASON(e);

        if (ERR_GET_LIB(e) == ERR_LIB_CMS &&
            (reason == CMS_R_VERIFICATION_FAILURE || reason == CMS_R_CONTENT_VERIFY_ERROR))
            mismatch = 1;
        if (reason == ERR_R_MALLOC_FAILURE)
            nomem = 1;
        if (first)
            ossl_error_text(e, why, sizeof(why));
        first = 0;
    }
    if (nomem)
        return fail(res, PEC_VERIFY_INTERNAL, "out of memory verifying the signature");
    if (mismatch)
        return fail(res, PEC_VERIFY_BAD_SIGNATURE, "signature does not match the content");
    return fail(res, PEC_VERIFY_MALFORMED, "malformed signature: %s", why);
}

/* The signer was revoked before it signed (pec_crls_arm's verdict). */
static int revoked(const struct pec_crl_state *st, struct pec_verify_result *res)
{
    char when[40], signed_at[40];

    res->revoked_at = st->revoked_at;
    return fail(res, PEC_VERIFY_REVOKED,
                "signer certificate revoked at %s%s%s%s, before it signed (%s)",
                st->revoked_at ? fmt_time(st->revoked_at, when, sizeof(when)) : "an unknown time",
                st->reason[0] ? " (" : "", st->reason, st->reason[0] ? ")" : "",
                fmt_time(st->signed_at, signed_at, sizeof(signed_at)));
}

static int chain_failure(X509_STORE_CTX *ctx, struct pec_verify_result *res)
{
    int e = X509_STORE_CTX_get_error(ctx);
    X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    char *who, *issuer, when[40], at[40];
    int ret;

    fmt_time(res->checked_at, at, sizeof(at));
    if (cur == NULL || e == X509_V_ERR_OUT_OF_MEM)
        return fail(res, PEC_VERIFY_INTERNAL, "certificate check failed: %s",
                    X509_verify_cert_error_string(e));
    if (depth == 0) {
        who = xstrdup("signer certificate");
    } else {
        char *subject = name_oneline(X509_get_subject_name(cur));

        who = xasprintf("issuer certificate \"%s\"", subject);
        free(subject);
    }
    issuer = name_oneline(X509_get_issuer_name(cur));
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        ret = fail(res, PEC_VERIFY_CERT_EXPIRED, "%s expired at %s (checked at %s)", who,
                   fmt_time_asn1(X509_get0_notAfter(cur), when, sizeof(when)), at);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        ret = fail(res, PEC_VERIFY_CERT_EXPIRED, "%s is not valid before %s (checked at %s)", who,
                   fmt_time_asn1(X509_get0_notBefore(cur), when, sizeof(when)), at);
        break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        ret = fail(res, PEC_VERIFY_UNTRUSTED, "untrusted issuer: %s", issuer);
        break;
    default:
        ret = fail(res, PEC_VERIFY_CERT_INVALID, "%s rejected: %s", who,
                   X509_verify_cert_error_string(e));
        break;
    }
    free(who);
    free(issuer);
    return ret;
}

/*
 * Validate SIGNER's chain for USE, with CERTS (may be NULL) as untrusted helpers, and
 * its revocation against CRLS when given.
 */
static int check_chain_certs(X509 *signer, STACK_OF(X509) * certs, enum pec_cert_use use,
                             const struct pec_trust *trust, const struct pec_crls *crls,
                             enum pec_verify_at at_mode, time_t at, struct pec_verify_result *res)
{
    struct pec_crl_state st;
    X509_STORE_CTX *ctx;
    int ret;

    if (at_mode == PEC_AT_SIGNING_TIME && !res->has_signing_time)
        return fail(res, PEC_VERIFY_CERT_INVALID,
                    "no signingTime in the signature to check the certificate at");
    res->checked_at = at_mode == PEC_AT_NOW            ? time(NULL)
                      : at_mode == PEC_AT_SIGNING_TIME ? res->signing_time
                      : at_mode == PEC_AT_GIVEN        ? at
                                                       : 0;
    st.signed_at = res->has_signing_time ? res->signing_time : res->checked_at;
    ctx = X509_STORE_CTX_new();
    if (ctx == NULL || !X509_STORE_CTX_init(ctx, trust->store, signer, certs) ||
        !X509_STORE_CTX_set_default(ctx, use == PEC_CERT_SIGNER && !trust->pinned ? "smime_sign"
                                                                                  : "default") ||
        (use == PEC_CERT_TSA && !X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_TIMESTAMP_SIGN)) ||
        (trust->pinned &&
         !X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN)) ||
        (at_mode == PEC_AT_NONE &&
         !X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME)) ||
        (crls != NULL && pec_crls_arm(ctx, crls, &st) < 0)) {
        char why[256];

        ret = fail(res, PEC_VERIFY_INTERNAL, "cannot check the certificate: %s",
                   ossl_reason(why, sizeof(why)));
    } else {
        /* per context, so threads sharing TRUST can each use their own instant */
        if (at_mode != PEC_AT_NONE)
            X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), res->checked_at);
        ret = X509_verify_cert(ctx) == 1   ? 0
              : crls != NULL && st.revoked ? revoked(&st, res)
                                           : chain_failure(ctx, res);
        ERR_clear_error();
        if (crls != NULL) {
            res->crl_checked = 1;
            res->revoked_at = st.revoked_at;
            snprintf(res->crl_note, sizeof(res->crl_note), "%s", st.note);
        }
    }
    X509_STORE_CTX_free(ctx);
    return ret;
}

/* Validate the signer's chain, with the certificates the signature carries as helpers. */
static int check_chain(CMS_ContentInfo *cms, X509 *signer, const struct pec_trust *trust,
                       const struct pec_crls *crls, enum pec_verify_at at_mode, time_t at,
                       struct pec_verify_result *res)
{
    STACK_OF(X509) *certs = CMS_get1_certs(cms);
    int ret = check_chain_certs(signer, certs, PEC_CERT_SIGNER, trust, crls, at_mode, at, res);

    sk_X509_pop_free(certs, X509_free);
    return ret;
}

/*
 * Signature first, chain second, so a bad chain is reported only for a signature that
 * matched.  DCONT is the detached content or NULL; OUT receives the attached content.
 */
static int verify_cms(const unsigned char *sig, size_t siglen, BIO *dcont, BIO *out,
                      const struct pec_trust *trust, const struct pec_crls *crls,
                      enum pec_verify_at at_mode, time_t at, struct pec_verify_result *res)
{
    CMS_ContentInfo *cms;
    CMS_SignerInfo *si;
    X509 *signer;
    int ret = -1;

    if (sig == NULL || siglen == 0)
        return fail(res, PEC_VERIFY_NO_SIGNATURE, "no signature");
    if ((cms = parse_cms(sig, siglen, res)) == NULL)
        return -1;
    if ((si = only_signer(cms, res)) != NULL && (signer = note_signer(cms, si, res)) != NULL &&
        check_content_type(cms, si, res) == 0) {
        ERR_clear_error();
        if (!CMS_verify(cms, NULL, NULL, dcont, out, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY))
            ret = signature_failure(res);
        else
            ret = check_chain(cms, signer, trust, crls, at_mode, at, res);
    }
    CMS_ContentInfo_free(cms);
    if (ret == 0) {
        res->ok = 1;
        res->status = PEC_VERIFY_OK;
        res->reason[0] = '\0';
    }
    return ret;
}

int pec_smime_verify(const unsigned char *content, size_t len, const unsigned char *sig,
                     size_t siglen, const struct pec_trust *trust, enum pec_verify_at at_mode,
                     time_t at, struct pec_verify_result *res)
{
    return pec_smime_verify_crl(content, len, sig, siglen, trust, NULL, at_mode, at, res);
}

int pec_smime_verify_crl(const unsigned char *content, size_t len, const unsigned char *sig,
                         size_t siglen, const struct pec_trust *trust, const struct pec_crls *crls,
                         enum pec_verify_at at_mode, time_t at, struct pec_verify_result *res)
{
    BIO *mem, *dcont = NULL;
    int ret;

    result_init(res);
    if (len > INT_MAX)
        return fail(res, PEC_VERIFY_MALFORMED, "signed content of %zu bytes is too large", len);
    /*
     * Given a memory BIO, OpenSSL 3.0's CMS_verify() makes a private copy of it and
     * leaks that copy when the signature names a digest it cannot set up; a null
     * filter in front keeps it from recognising the memory BIO.
     */
    mem = BIO_new_mem_buf(len ? content : (const unsigned char *)"", (int)len);
    if (mem == NULL || (dcont = BIO_new(BIO_f_null())) == NULL) {
        BIO_free(mem);
        ERR_clear_error();
        return fail(res, PEC_VERIFY_INTERNAL, "cannot allocate a buffer");
    }
    BIO_push(dcont, mem);
    ret = verify_cms(sig, siglen, dcont, NULL, trust, crls, at_mode, at, res);
    BIO_free_all(dcont);
    return ret;
}

int pec_smime_verify_attached(const unsigned char *p7m, size_t len, const struct pec_trust *trust,
                              enum pec_verify_at at_mode, time_t at, unsigned char **content,
                              size_t *contentlen, struct pec_verify_result *res)
{
    BIO *out;
    char *data;
    long n;
    int ret;

    *content = NULL;
    *contentlen = 0;
    result_init(res);
    if ((out = BIO_new(BIO_s_mem())) == NULL) {
        ERR_clear_error();
        return fail(res, PEC_VERIFY_INTERNAL, "cannot allocate a buffer");
    }
    ret = verify_cms(p7m, len, NULL, out, trust, NULL, at_mode, at, res);
    if (ret == 0) {
        n = BIO_get_mem_data(out, &data);
        *contentlen = n > 0 ? (size_t)n : 0;
        *content = xmalloc(*contentlen + 1);
        if (*contentlen)
            memcpy(*content, data, *contentlen);
        (*content)[*contentlen] = '\0';
    }
    BIO_free(out);
    return ret;
}

int pec_trust_verify_cert(const struct pec_trust *trust, enum pec_cert_use use,
                          const unsigned char *cert, size_t certlen,
                          const unsigned char *const *extra, const size_t *extralen, size_t nextra,
                          enum pec_verify_at at_mode, time_t at, const time_t *claimed,
                          struct pec_verify_result *res)
{
    STACK_OF(X509) *helpers = NULL;
    X509 *leaf;
    int ret = -1;

    result_init(res);
    if (claimed != NULL) {
        res->has_signing_time = 1;
        res->signing_time = *claimed;
    }
    if ((leaf = cached_cert(cert, certlen)) == NULL) {
        ERR_clear_error();
        return fail(res, PEC_VERIFY_MALFORMED, "unreadable certificate");
    }
    free(res->signer_subject);
    free(res->signer_issuer);
    free(res->signer_address);
    res->signer_subject = name_oneline(X509_get_subject_name(leaf));
    res->signer_issuer = name_oneline(X509_get_issuer_name(leaf));
    res->signer_address = cert_address(leaf);
    if (cert_der_sha1(leaf, &res->signer_der, &res->signer_derlen, res->signer_sha1) < 0)
        fail(res, PEC_VERIFY_MALFORMED, "unreadable certificate");
    else if ((helpers = sk_X509_new_null()) == NULL)
        fail(res, PEC_VERIFY_INTERNAL, "cannot allocate a certificate list");
    else
        ret = 0;
    for (size_t i = 0; ret == 0 && i < nextra; i++) {
        X509 *x = cached_cert(extra[i], extralen[i]);

        if (x == NULL)
            ret = fail(res, PEC_VERIFY_MALFORMED, "unreadable certificate beside the signer's");
        else if (!sk_X509_push(helpers, x)) {
            X509_free(x);
            ret = fail(res, PEC_VERIFY_INTERNAL, "cannot allocate a certificate list");
        }
    }
    if (ret == 0)
        ret = check_chain_certs(leaf, helpers, use, trust, NULL, at_mode, at, res);
    ERR_clear_error();
    sk_X509_pop_free(helpers, X509_free);
    X509_free(leaf);
    if (ret == 0) {
        res->ok = 1;
        res->status = PEC_VERIFY_OK;
        res->reason[0] = '\0';
    }
    return ret;
}

/* ---------------------------------------------------------------- attached signing */

int pec_smime_sign_attached(const struct pec_signer *s, const unsigned char *content, size_t len,
                            time_t signing_time, unsigned char **der, size_t *derlen, char *err,
                            size_t errlen)
{
    return sign_mem(s, content, len, 0, signing_time, der, derlen, err, errlen);
}
