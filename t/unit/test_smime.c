/*
 * test_smime - signing and verification of detached S/MIME signatures.
 *
 * Our signatures must verify with our verifier and with the openssl CLI as an
 * independent one, be reproducible for a fixed signing time, and fail with a reason a
 * sysadmin understands when content, certificate or trust is wrong.  The real Aruba
 * messages of the shared corpus must verify at their signing time against Debian's CA
 * bundle, and stop verifying when one byte changes.  Garbage must never crash.
 */
#include "check.h"
#include "message/smime.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/cms.h>

#define SYSTEM_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

static const char *pki;
static char tmpdir[] = "/tmp/test_smime.XXXXXX";

static const char content[] = "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
                              "\r\n"
                              "--b1\r\n"
                              "Content-Type: text/plain; charset=\"iso-8859-1\"\r\n"
                              "\r\n"
                              "Ricevuta di accettazione\r\n"
                              "--b1--\r\n";

#include "testfiles.h"

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};

    return timegm(&tm);
}

static struct pec_signer *load_signer(const char *name, const char *digest)
{
    char err[512] = "";
    char *cert = xasprintf("%s/%s/cert.pem", pki, name);
    char *chain = xasprintf("%s/%s/chain.pem", pki, name);
    char *key = xasprintf("%s/%s/key.pem", pki, name);
    struct pec_signer *s = pec_signer_load(cert, chain, key, digest, err, sizeof(err));

    if (s == NULL)
        fprintf(stderr, "cannot load signer %s: %s\n", name, err);
    CHECK(s != NULL);
    free(cert);
    free(chain);
    free(key);
    return s;
}

static int sign(const struct pec_signer *s, const char *data, size_t len, time_t when,
                unsigned char **der, size_t *derlen)
{
    char err[512] = "";
    int ret =
        pec_smime_sign(s, (const unsigned char *)data, len, when, der, derlen, err, sizeof(err));

    if (ret != 0)
        fprintf(stderr, "sign: %s\n", err);
    return ret;
}

static void test_signer_load(void)
{
    struct pec_signer *s = load_signer("a", "sha256");
    char err[512];
    char *cert = pki_path("a/cert.pem"), *key = pki_path("a/key.pem");
    char *bkey = pki_path("b/key.pem"), *der_path = pki_path("a/cert.der");
    unsigned char *der, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t derlen, len;
    char hex[41];

    if (s == NULL)
        return;
    CHECK_STR(pec_signer_subject(s),
              "C=IT, O=Gestore A S.p.A., CN=Posta Certificata Gestore A S.p.A.");
    CHECK_STR(pec_signer_address(s), "posta-certificata@pec-a.test");
    CHECK_STR(pec_smime_micalg(s), "sha-256");
    CHECK(pec_signer_not_after(s) == utc(2045, 1, 1, 0, 0, 0));
    der = read_all(der_path, &derlen);
    CHECK(der != NULL);
    if (der != NULL) {
        const unsigned char *mine = pec_signer_cert_der(s, &len);

        CHECK(len == derlen && memcmp(mine, der, len) == 0);
        CHECK(EVP_Digest(der, derlen, md, &mdlen, EVP_sha1(), NULL) && mdlen == 20);
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        CHECK_STR(pec_signer_cert_sha1(s), hex);
        free(der);
    }
    pec_signer_free(s);

    s = load_signer("a", "sha1");
    if (s != NULL)
        CHECK_STR(pec_smime_micalg(s), "sha1");
    pec_signer_free(s);

    /* no chain is fine */
    s = pec_signer_load(cert, "", key, "sha256", err, sizeof(err));
    CHECK(s != NULL);
    pec_signer_free(s);

    err[0] = '\0';
    CHECK(pec_signer_load(cert, "", bkey, "sha256", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    err[0] = '\0';
    CHECK(pec_signer_load(cert, "", key, "md5", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "md5") != NULL);
    err[0] = '\0';
    CHECK(pec_signer_load("/nonexistent/cert.pem", "", key, "sha256", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent/cert.pem") != NULL);
    err[0] = '\0';
    CHECK(pec_signer_load(key, "", key, "sha256", err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');
    err[0] = '\0';
    CHECK(pec_signer_load(cert, "", cert, "sha256", err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');
    free(cert);
    free(key);
    free(bkey);
    free(der_path);
}

/* The openssl CLI, an independent verifier, must accept what we sign. */
static void check_openssl_verifies(const unsigned char *der, size_t derlen, const char *tag)
{
    char *sig_name = xasprintf("%s.der", tag), *data_name = xasprintf("%s.data", tag);
    char *sig = write_tmp(sig_name, der, derlen);
    char *data = write_tmp(data_name, content, strlen(content));
    char *trust = pki_path("trust.pem"), *ca = pki_path("pecca.pem");
    char *cmd = xasprintf("openssl cms -verify -binary -inform DER -in '%s' -content '%s' "
                          "-CAfile '%s' -certfile '%s' -purpose any -out /dev/null 2>'%s/%s.log'",
                          sig, data, trust, ca, tmpdir, tag);
    int rc = system(cmd);

    if (rc != 0)
        fprintf(stderr, "%s failed (%d); see %s/%s.log\n", cmd, rc, tmpdir, tag);
    CHECK(rc == 0);
    free(sig_name);
    free(data_name);
    free(sig);
    free(data);
    free(trust);
    free(ca);
    free(cmd);
}

static int verify(const unsigned char *data, size_t len, const unsigned char *sig, size_t siglen,
                  const struct pec_trust *trust, enum pec_verify_at mode, time_t at,
                  struct pec_verify_result *res)
{
    int ret = pec_smime_verify(data, len, sig, siglen, trust, mode, at, res);

    CHECK((ret == 0) == res->ok);
    CHECK(res->ok == (res->status == PEC_VERIFY_OK));
    CHECK(res->ok || res->reason[0] != '\0');
    return ret;
}

static void test_sign_verify(const struct pec_trust *trust, const char *digest)
{
    struct pec_signer *s = load_signer("a", digest);
    const time_t t = utc(2024, 3, 1, 12, 0, 0);
    unsigned char *der = NULL, *der2 = NULL;
    size_t derlen = 0, derlen2 = 0;
    struct pec_verify_result res;
    char *tag = xasprintf("a-%s", digest);

    if (s == NULL)
        return;
    CHECK(sign(s, content, strlen(content), t, &der, &derlen) == 0);
    CHECK(verify((const unsigned char *)content, strlen(content), der, derlen, trust, PEC_AT_NOW, 0,
                 &res) == 0);
    CHECK_STR(res.digest, digest);
    CHECK(res.has_signing_time && res.signing_time == t);
    CHECK_STR(res.signer_sha1, pec_signer_cert_sha1(s));
    CHECK_STR(res.signer_subject, pec_signer_subject(s));
    CHECK_STR(res.signer_address, "posta-certificata@pec-a.test");
    CHECK_STR(res.signer_issuer, "C=IT, O=pecmilter tests, CN=Test PEC CA1");
    CHECK(res.signer_der != NULL && res.signer_derlen > 0);
    CHECK(res.checked_at >= time(NULL) - 60);
    pec_verify_result_free(&res);
    check_openssl_verifies(der, derlen, tag);

    /* the same time gives the same bytes; another time does not */
    CHECK(sign(s, content, strlen(content), t, &der2, &derlen2) == 0);
    CHECK(derlen == derlen2 && memcmp(der, der2, derlen) == 0);
    free(der2);
    CHECK(sign(s, content, strlen(content), t + 1, &der2, &derlen2) == 0);
    CHECK(derlen != derlen2 || memcmp(der, der2, derlen) != 0);
    free(der2);

    free(der);
    free(tag);
    pec_signer_free(s);
}

static void test_tampering(const struct pec_trust *trust)
{
    struct pec_signer *s = load_signer("a", "sha256");
    unsigned char *der = NULL, *copy;
    size_t derlen = 0, n = strlen(content);
    struct pec_verify_result res;

    if (s == NULL)
        return;
    CHECK(sign(s, content, n, utc(2024, 3, 1, 12, 0, 0), &der, &derlen) == 0);

    copy = xmalloc(n);
    memcpy(copy, content, n);
    copy[n / 2] ^= 0x20;
    CHECK(verify(copy, n, der, derlen, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_BAD_SIGNATURE);
    CHECK_STR(res.reason, "signature does not match the content");
    CHECK_STR(res.signer_address, "posta-certificata@pec-a.test");
    pec_verify_result_free(&res);

    /* one byte less: a CRLF lost on the way */
    CHECK(verify(copy, n - 1, der, derlen, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_BAD_SIGNATURE);
    pec_verify_result_free(&res);
    free(copy);

    /* the last byte of the DER is in the RSA signature value */
    der[derlen - 1] ^= 0x01;
    CHECK(verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_BAD_SIGNATURE);
    CHECK(strstr(res.reason, "does not match") != NULL);
    pec_verify_result_free(&res);

    free(der);
    pec_signer_free(s);
}

static void test_expired(const struct pec_trust *trust)
{
    struct pec_signer *s = load_signer("expired", "sha256");
    const time_t t = utc(2020, 6, 1, 0, 0, 0);
    unsigned char *der = NULL;
    size_t derlen = 0, n = strlen(content);
    struct pec_verify_result res;

    if (s == NULL)
        return;
    CHECK(sign(s, content, n, t, &der, &derlen) == 0);

    CHECK(verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_CERT_EXPIRED);
    CHECK(strstr(res.reason, "signer certificate expired at 2021-01-01 00:00:00 UTC") != NULL);
    printf("expired at now: %s\n", res.reason);
    pec_verify_result_free(&res);

    CHECK(verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_SIGNING_TIME, 0,
                 &res) == 0);
    CHECK(res.checked_at == t);
    pec_verify_result_free(&res);

    CHECK(verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_GIVEN, t, &res) ==
          0);
    pec_verify_result_free(&res);

    CHECK(verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_GIVEN,
                 utc(2019, 12, 1, 0, 0, 0), &res) < 0);
    CHECK(res.status == PEC_VERIFY_CERT_EXPIRED);
    CHECK(strstr(res.reason, "not valid before 2020-01-01 00:00:00 UTC") != NULL);
    pec_verify_result_free(&res);

    free(der);
    pec_signer_free(s);
}

static void test_untrusted(const struct pec_trust *trust)
{
    struct pec_signer *s = load_signer("selfsigned", "sha256");
    unsigned char *der = NULL;
    size_t derlen = 0, n = strlen(content);
    struct pec_verify_result res;

    if (s == NULL)
        return;
    CHECK(sign(s, content, n, utc(2024, 3, 1, 12, 0, 0), &der, &derlen) == 0);
    CHECK(verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_UNTRUSTED);
    CHECK_STR(res.reason,
              "untrusted issuer: C=IT, O=Gestore A S.p.A., CN=Posta Certificata Gestore A S.p.A.");
    /* who signed is still known, for the log */
    CHECK_STR(res.signer_address, "posta-certificata@pec-a.test");
    CHECK(strlen(res.signer_sha1) == 40);
    pec_verify_result_free(&res);
    free(der);
    pec_signer_free(s);

    /* rogue has a good chain: only the index can tell it is no provider */
    s = load_signer("rogue", "sha256");
    if (s == NULL)
        return;
    CHECK(sign(s, content, n, utc(2024, 3, 1, 12, 0, 0), &der, &derlen) == 0);
    CHECK(verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_NOW, 0, &res) == 0);
    pec_verify_result_free(&res);
    free(der);
    pec_signer_free(s);
}

static void test_pem_and_attached(const struct pec_trust *trust)
{
    struct pec_signer *s = load_signer("b", "sha256");
    unsigned char *der = NULL, *p7m, *out = NULL, *ldif;
    size_t derlen = 0, n = strlen(content), p7mlen, outlen, ldiflen;
    struct pec_verify_result res;
    char *p7m_path = pki_path("index.ldif.p7m"), *ldif_path = pki_path("index.ldif");
    const unsigned char *p;
    CMS_ContentInfo *cms;
    BIO *b;
    char *pem;
    long pemlen;

    if (s == NULL)
        return;
    CHECK(sign(s, content, n, utc(2024, 3, 1, 12, 0, 0), &der, &derlen) == 0);
    p = der;
    cms = d2i_CMS_ContentInfo(NULL, &p, (long)derlen);
    b = BIO_new(BIO_s_mem());
    CHECK(cms != NULL && b != NULL && PEM_write_bio_CMS(b, cms));
    pemlen = BIO_get_mem_data(b, &pem);
    CHECK(verify((const unsigned char *)content, n, (unsigned char *)pem, (size_t)pemlen, trust,
                 PEC_AT_NOW, 0, &res) == 0);
    pec_verify_result_free(&res);
    BIO_free(b);
    CMS_ContentInfo_free(cms);

    /* a detached signature has nothing to open */
    CHECK(pec_smime_verify_attached(der, derlen, trust, PEC_AT_NOW, 0, &out, &outlen, &res) < 0);
    CHECK(res.status == PEC_VERIFY_MALFORMED && out == NULL);
    pec_verify_result_free(&res);
    free(der);
    pec_signer_free(s);

    p7m = read_all(p7m_path, &p7mlen);
    ldif = read_all(ldif_path, &ldiflen);
    CHECK(p7m != NULL && ldif != NULL);
    if (p7m != NULL && ldif != NULL) {
        CHECK(pec_smime_verify_attached(p7m, p7mlen, trust, PEC_AT_NOW, 0, &out, &outlen, &res) ==
              0);
        CHECK(res.ok && out != NULL && outlen == ldiflen && memcmp(out, ldif, ldiflen) == 0);
        CHECK(strstr(res.signer_subject, "CN=Test Index Authority") != NULL);
        pec_verify_result_free(&res);
        free(out);
    }
    free(p7m);
    free(ldif);
    free(p7m_path);
    free(ldif_path);
}

/* Nothing a peer sends may crash us or pass for a signature. */
static void test_garbage(const struct pec_trust *trust)
{
    struct pec_signer *s = load_signer("a", "sha1");
    static const unsigned char junk[] = "\x30\x82\xff\xff garbage \x00\x01\x02";
    static const char pem_junk[] = "-----BEGIN CMS-----\nnot base64 at all\n-----END CMS-----\n";
    unsigned char *der = NULL;
    size_t derlen = 0, n = strlen(content), bad = 0;
    struct pec_verify_result res;

    CHECK(verify((const unsigned char *)content, n, NULL, 0, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_NO_SIGNATURE);
    CHECK_STR(res.reason, "no signature");
    pec_verify_result_free(&res);

    CHECK(verify((const unsigned char *)content, n, junk, sizeof(junk) - 1, trust, PEC_AT_NOW, 0,
                 &res) < 0);
    CHECK(res.status == PEC_VERIFY_MALFORMED);
    CHECK(strncmp(res.reason, "malformed signature: ", 21) == 0);
    pec_verify_result_free(&res);

    CHECK(verify((const unsigned char *)content, n, (const unsigned char *)pem_junk,
                 strlen(pem_junk), trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_MALFORMED);
    pec_verify_result_free(&res);

    if (s == NULL)
        return;
    CHECK(sign(s, content, n, utc(2024, 3, 1, 12, 0, 0), &der, &derlen) == 0);
    /* every truncation */
    for (size_t len = 1; len < derlen; len++) {
        verify((const unsigned char *)content, n, der, len, trust, PEC_AT_NOW, 0, &res);
        bad += res.status != PEC_VERIFY_MALFORMED;
        pec_verify_result_free(&res);
    }
    CHECK(bad == 0);
    /*
     * Every single-byte change: no crash, a consistent answer, and a failure except in
     * the two version numbers (SignedData's, SignerInfo's), which nothing protects and
     * OpenSSL does not read.
     */
    bad = 0;
    for (size_t i = 0; i < derlen; i++) {
        der[i] ^= 0x5a;
        verify((const unsigned char *)content, n, der, derlen, trust, PEC_AT_SIGNING_TIME, 0, &res);
        bad += res.ok;
        pec_verify_result_free(&res);
        der[i] ^= 0x5a;
    }
    CHECK(bad <= 2);
    /* the content is empty */
    CHECK(verify((const unsigned char *)"", 0, der, derlen, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_BAD_SIGNATURE);
    pec_verify_result_free(&res);
    free(der);
    pec_signer_free(s);
}

static void test_trust_load(void)
{
    char err[512];
    char *root = pki_path("root.pem"), *key = pki_path("a/key.pem");
    unsigned char *pem;
    size_t len;
    struct pec_trust *t;
    char *dir = xasprintf("%s/anchors", tmpdir), *empty = xasprintf("%s/empty", tmpdir);
    char *p1, *p2, *p3;

    CHECK(pec_trust_load("/nonexistent/trust.pem", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent/trust.pem") != NULL);
    err[0] = '\0';
    CHECK(pec_trust_load(key, err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');

    CHECK(mkdir(dir, 0700) == 0 && mkdir(empty, 0700) == 0);
    err[0] = '\0';
    CHECK(pec_trust_load(empty, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no trust anchor") != NULL);

    pem = read_all(root, &len);
    CHECK(pem != NULL);
    p1 = write_tmp("anchors/root.pem", pem, len);
    p2 = write_tmp("anchors/notes.txt", "not a certificate", 17);
    t = pec_trust_load(dir, err, sizeof(err));
    CHECK(t != NULL);
    pec_trust_free(t);
    /* a .crt that is no certificate is an error, not a silent gap */
    p3 = write_tmp("anchors/broken.crt", "garbage", 7);
    err[0] = '\0';
    CHECK(pec_trust_load(dir, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "broken.crt") != NULL);

    unlink(p1);
    unlink(p2);
    unlink(p3);
    rmdir(dir);
    rmdir(empty);
    free(p1);
    free(p2);
    free(p3);
    free(pem);
    free(dir);
    free(empty);
    free(root);
    free(key);
}

/* ------------------------------------------------------------ the real corpus */

/* Bytes with LF line ends get CRLF, as they travelled: the signature covers CRLF. */
static unsigned char *canonical_crlf(unsigned char *buf, size_t *len)
{
    unsigned char *out;
    size_t k = 0;

    if (memmem(buf, *len, "\r\n", 2) != NULL)
        return buf;
    out = xmalloc(*len * 2 + 1);
    for (size_t i = 0; i < *len; i++) {
        if (buf[i] == '\n')
            out[k++] = '\r';
        out[k++] = buf[i];
    }
    free(buf);
    *len = k;
    return out;
}

static unsigned char *base64_decode(const unsigned char *in, size_t n, size_t *outlen)
{
    unsigned char *clean = xmalloc(n + 1), *out = xmalloc(n + 1);
    size_t k = 0, pad = 0;
    int got;

    for (size_t i = 0; i < n; i++)
        if (in[i] != '\r' && in[i] != '\n' && in[i] != ' ' && in[i] != '\t')
            clean[k++] = in[i];
    for (size_t i = k; i > 0 && clean[i - 1] == '='; i--)
        pad++;
    got = EVP_DecodeBlock(out, clean, (int)k);
    free(clean);
    if (got < 0 || (size_t)got < pad) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)got - pad;
    return out;
}

/*
 * Split a top-level multipart/signed message into its first part (the bytes between
 * the first delimiter line and the CRLF before the next) and the decoded signature.
 */
static int split_signed(const unsigned char *msg, size_t len, const unsigned char **part,
                        size_t *partlen, unsigned char **sig, size_t *siglen)
{
    const unsigned char *end = msg + len, *hdr_end, *b, *p, *q, *r;
    char delim[200];
    size_t dlen, blen;

    hdr_end = memmem(msg, len, "\r\n\r\n", 4);
    if (hdr_end == NULL || (b = memmem(msg, (size_t)(hdr_end - msg), "boundary=", 9)) == NULL)
        return -1;
    b += 9;
    if (*b == '"')
        b++;
    for (blen = 0; b + blen < hdr_end && !strchr("\";\r\n", b[blen]); blen++)
        ;
    dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%.*s", (int)blen, (const char *)b);
    if (dlen >= sizeof(delim))
        return -1;
    /* the preamble starts after the header's blank line, whose CRLF starts the delimiter */
    p = memmem(hdr_end + 2, (size_t)(end - hdr_end - 2), delim, dlen);
    if (p == NULL || (p = memmem(p + dlen, (size_t)(end - p - dlen), "\r\n", 2)) == NULL)
        return -1;
    p += 2;
    q = memmem(p, (size_t)(end - p), delim, dlen);
    if (q == NULL)
        return -1;
    *part = p;
    *partlen = (size_t)(q - p);
    /* second part: skip its headers, decode the body up to the closing delimiter */
    r = memmem(q + dlen, (size_t)(end - q - dlen), "\r\n\r\n", 4);
    if (r == NULL)
        return -1;
    r += 4;
    q = memmem(r, (size_t)(end - r), delim, dlen);
    if (q == NULL)
        return -1;
    *sig = base64_decode(r, (size_t)(q - r), siglen);
    return *sig ? 0 : -1;
}

static void check_corpus_message(const char *path, const struct pec_trust *trust)
{
    size_t len, partlen, siglen;
    unsigned char *msg = read_all(path, &len), *sig = NULL, *copy;
    const unsigned char *part;
    struct pec_verify_result res;

    CHECK(msg != NULL);
    if (msg == NULL)
        return;
    msg = canonical_crlf(msg, &len);
    CHECK(split_signed(msg, len, &part, &partlen, &sig, &siglen) == 0);
    if (sig == NULL) {
        fprintf(stderr, "%s: cannot split the multipart/signed\n", path);
        free(msg);
        return;
    }
    if (verify(part, partlen, sig, siglen, trust, PEC_AT_SIGNING_TIME, 0, &res) < 0)
        fprintf(stderr, "%s: %s\n", path, res.reason);
    CHECK(res.ok);
    CHECK_STR(res.digest, "sha1");
    CHECK(res.has_signing_time);
    CHECK(strcasestr(res.signer_subject, "ARUBA PEC") != NULL);
    CHECK_STR(res.signer_address, "posta-certificata@pec.aruba.it");
    printf("%s: %s, signed %s", strrchr(path, '/') + 1, res.signer_subject,
           asctime(gmtime(&res.signing_time)));
    pec_verify_result_free(&res);

    /* long expired now */
    CHECK(verify(part, partlen, sig, siglen, trust, PEC_AT_NOW, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_CERT_EXPIRED);
    pec_verify_result_free(&res);

    copy = xmalloc(partlen);
    memcpy(copy, part, partlen);
    copy[partlen - 10] ^= 0x01;
    CHECK(verify(copy, partlen, sig, siglen, trust, PEC_AT_SIGNING_TIME, 0, &res) < 0);
    CHECK(res.status == PEC_VERIFY_BAD_SIGNATURE);
    pec_verify_result_free(&res);
    free(copy);
    free(sig);
    free(msg);
}

static void test_corpus(void)
{
    const char *shared = getenv("PEC_SHARED_DIR");
    char err[512];
    char *dir;
    struct pec_trust *trust;
    struct dirent **names;
    int n, seen = 0;

    if (shared == NULL || *shared == '\0') {
        printf("skipping the corpus checks: PEC_SHARED_DIR is not set\n");
        return;
    }
    dir = xasprintf("%s/corpus", shared);
    if (access(dir, R_OK) != 0) {
        printf("skipping the corpus checks: %s is absent\n", dir);
        free(dir);
        return;
    }
    if ((trust = pec_trust_load(SYSTEM_BUNDLE, err, sizeof(err))) == NULL) {
        printf("skipping the corpus checks: %s (install ca-certificates)\n", err);
        free(dir);
        return;
    }
    n = scandir(dir, &names, NULL, alphasort);
    CHECK(n >= 0);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]->d_name);

        if (l > 4 && strcmp(names[i]->d_name + l - 4, ".eml") == 0) {
            char *path = xasprintf("%s/%s", dir, names[i]->d_name);

            check_corpus_message(path, trust);
            seen++;
            free(path);
        }
        free(names[i]);
    }
    if (n >= 0)
        free(names);
    CHECK(seen >= 5);
    pec_trust_free(trust);
    free(dir);
}

int main(void)
{
    char err[512];
    struct pec_trust *trust;
    char *trust_path;

    pki = check_env("PEC_PKI_DIR");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    trust_path = pki_path("trust.pem");
    trust = pec_trust_load(trust_path, err, sizeof(err));
    if (trust == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    test_signer_load();
    test_sign_verify(trust, "sha256");
    test_sign_verify(trust, "sha1");
    test_tampering(trust);
    test_expired(trust);
    test_untrusted(trust);
    test_pem_and_attached(trust);
    test_garbage(trust);
    test_trust_load();
    test_corpus();
    pec_trust_free(trust);
    free(trust_path);
    {
        char *cmd = xasprintf("rm -rf '%s'", tmpdir);

        CHECK(system(cmd) == 0);
        free(cmd);
    }
    return check_exit();
}
