/*
 * test_index - the providers' index: LDIF reading, lookups, signed distribution.
 *
 * The generated test index must give each provider by domain (case-insensitive), by
 * certificate hash (either case) and by certificate, where a certificate not listed
 * byte for byte is nobody's.  The signed copy must load only untouched and signed by a
 * listed provider.  Malformed LDIF must give an error naming the line, never a crash.
 */
#include "check.h"
#include "message/index.h"
#include "message/smime.h"
#include "util/xalloc.h"

#include <unistd.h>

#include <openssl/evp.h>

static const char *pki;
static char tmpdir[] = "/tmp/test_index.XXXXXX";

#include "testfiles.h"

/* A certificate of the test PKI, as DER. */
struct cert {
    unsigned char *der;
    size_t len;
    char sha1[41];
    char *b64;
};

static struct cert load_cert(const char *name)
{
    struct cert c = {0};
    char *path = xasprintf("%s/%s/cert.der", pki, name);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    c.der = read_all(path, &c.len);
    CHECK(c.der != NULL);
    if (c.der != NULL) {
        CHECK(EVP_Digest(c.der, c.len, md, &mdlen, EVP_sha1(), NULL) && mdlen == 20);
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(c.sha1 + 2 * i, 3, "%02x", md[i]);
        c.b64 = xmalloc(c.len * 4 / 3 + 4);
        EVP_EncodeBlock((unsigned char *)c.b64, c.der, (int)c.len);
    }
    free(path);
    return c;
}

static void free_cert(struct cert *c)
{
    free(c->der);
    free(c->b64);
}

static void upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

static void test_lookups(void)
{
    char err[512] = "";
    char *path = pki_path("index.ldif");
    struct pec_index *idx = pec_index_load(path, err, sizeof(err));
    struct cert a = load_cert("a"), b = load_cert("b"), bold = load_cert("b-old");
    struct cert rogue = load_cert("rogue"), self = load_cert("selfsigned");
    struct cert expired = load_cert("expired");
    const struct pec_provider *pa, *pb;
    char hash[41];

    if (idx == NULL)
        fprintf(stderr, "%s\n", err);
    CHECK(idx != NULL);
    if (idx == NULL)
        goto out;
    CHECK(pec_index_count(idx) == 2);
    pa = pec_index_by_domain(idx, "pec-a.test");
    pb = pec_index_by_domain(idx, "pec-b.test");
    CHECK(pa != NULL && pb != NULL && pa != pb);
    if (pa == NULL || pb == NULL)
        goto out;
    CHECK(pa == pec_index_provider(idx, 0) && pb == pec_index_provider(idx, 1));
    CHECK(pec_index_provider(idx, 2) == NULL);
    CHECK_STR(pa->name, "Gestore A S.p.A.");
    CHECK_STR(pa->dn, "providerName=Gestore A S.p.A.,o=postacert");
    CHECK_STR(pa->mail_receipt, "ricevute@pec-a.test");
    CHECK_STR(pb->mail_receipt, "ricevute@pec-b.test");
    CHECK(pa->unit == NULL && pa->description != NULL);
    CHECK(pa->ndomains == 2 && pb->ndomains == 1);
    CHECK(pa->nhashes == 1 && pa->ncerts == 1 && pb->nhashes == 2 && pb->ncerts == 2);

    CHECK(pec_index_by_domain(idx, "PEC-A.TEST") == pa);
    CHECK(pec_index_by_domain(idx, "Pec-A2.Test") == pa);
    CHECK(pec_index_by_domain(idx, "pec-a.test.") == pa);
    CHECK(pec_index_by_domain(idx, "pec-c.test") == NULL);
    CHECK(pec_index_by_domain(idx, "a.test") == NULL);
    CHECK(pec_index_by_domain(idx, "") == NULL);
    CHECK(pec_index_by_domain(idx, NULL) == NULL);
    CHECK(pec_provider_manages(pa, "PEC-A2.test"));
    CHECK(!pec_provider_manages(pa, "pec-b.test"));

    CHECK(pec_index_by_cert_hash(idx, a.sha1) == pa);
    snprintf(hash, sizeof(hash), "%s", a.sha1);
    upper(hash);
    CHECK(pec_index_by_cert_hash(idx, hash) == pa);
    CHECK(pec_index_by_cert_hash(idx, bold.sha1) == pb);
    CHECK(pec_index_by_cert_hash(idx, rogue.sha1) == NULL);
    CHECK(pec_index_by_cert_hash(idx, "") == NULL);

    CHECK(pec_index_by_cert(idx, a.der, a.len) == pa);
    CHECK(pec_index_by_cert(idx, b.der, b.len) == pb);
    CHECK(pec_index_by_cert(idx, bold.der, bold.len) == pb);
    CHECK(pec_index_by_cert(idx, rogue.der, rogue.len) == NULL);
    CHECK(pec_index_by_cert(idx, self.der, self.len) == NULL);
    CHECK(pec_index_by_cert(idx, expired.der, expired.len) == NULL);
    CHECK(pec_index_by_cert(idx, a.der, a.len - 1) == NULL);
    CHECK(pec_provider_has_cert(pb, bold.der, bold.len));
    CHECK(!pec_provider_has_cert(pa, b.der, b.len));

out:
    pec_index_free(idx);
    free(path);
    free_cert(&a);
    free_cert(&b);
    free_cert(&bold);
    free_cert(&rogue);
    free_cert(&self);
    free_cert(&expired);
}

/* A listed hash is not enough: the record must carry the certificate itself. */
static void test_hash_without_cert(void)
{
    struct cert a = load_cert("a"), b = load_cert("b");
    char err[512] = "";
    char *ldif = xasprintf("dn: providerName=Liar,o=postacert\n"
                           "objectclass: provider\n"
                           "providerName: Liar\n"
                           "providerCertificateHash: %s\n"
                           "providerCertificate;binary:: %s\n"
                           "mailReceipt: r@liar.test\n"
                           "managedDomains: liar.test\n",
                           a.sha1, b.b64);
    struct pec_index *idx = pec_index_parse(ldif, strlen(ldif), "liar", err, sizeof(err));

    CHECK(idx != NULL);
    if (idx != NULL) {
        CHECK(pec_index_by_cert_hash(idx, a.sha1) != NULL);
        CHECK(pec_index_by_cert(idx, a.der, a.len) == NULL);
        CHECK(pec_index_by_cert(idx, b.der, b.len) == NULL);
    }
    pec_index_free(idx);
    free(ldif);
    free_cert(&a);
    free_cert(&b);
}

/* Everything RFC 2849 allows that a directory might use. */
static void test_ldif_features(void)
{
    struct cert a = load_cert("a");
    char err[512] = "";
    size_t n = strlen(a.b64);
    char *ldif = xasprintf("version: 1\r\n"
                           "# a comment that goes on\r\n"
                           "  over two lines\r\n"
                           "\r\n"
                           "\r\n"
                           "dn:: cHJvdmlkZXJOYW1lPUdlc3RvcmUgw4Asbz1wb3N0YWNlcnQ=\r\n"
                           "changetype: add\r\n"
                           "ObjectClass: top\r\n"
                           "OBJECTCLASS: Provider\r\n"
                           "providername:: R2VzdG9yZSDDgA==\r\n"
                           "ProviderUnit: Backup\r\n"
                           "providerCertificateHash: %.20s\r\n"
                           " %s\r\n"
                           "providerCertificate;binary:: %.*s\r\n"
                           " %s\r\n"
                           "#comment inside the record\r\n"
                           "MAILRECEIPT: Ricevute@Example.Test\r\n"
                           "managedDomains: Example.TEST\r\n"
                           "managedDomains:example2.test\r\n"
                           "someOtherAttribute: ignored\r\n"
                           "description: first   \r\n"
                           "description: second\r\n",
                           a.sha1, a.sha1 + 20, (int)(n / 2), a.b64, a.b64 + n / 2);
    struct pec_index *idx = pec_index_parse(ldif, strlen(ldif), "features", err, sizeof(err));
    const struct pec_provider *p;

    if (idx == NULL)
        fprintf(stderr, "%s\n", err);
    CHECK(idx != NULL);
    if (idx != NULL) {
        p = pec_index_by_domain(idx, "example.test");
        CHECK(p != NULL && pec_index_count(idx) == 1);
        if (p != NULL) {
            CHECK_STR(p->dn, "providerName=Gestore \xc3\x80,o=postacert");
            CHECK_STR(p->name, "Gestore \xc3\x80");
            CHECK_STR(p->unit, "Backup");
            CHECK_STR(p->mail_receipt, "Ricevute@Example.Test");
            CHECK_STR(p->domains[0], "example.test");
            CHECK_STR(p->domains[1], "example2.test");
            CHECK_STR(p->description, "first");
            CHECK(p->line == 6);
        }
        CHECK(pec_index_by_cert(idx, a.der, a.len) == p);
    }
    pec_index_free(idx);
    free(ldif);
    free_cert(&a);
}

struct bad_case {
    const char *what;
    const char *ldif;   /* "%C" stands for a valid certificate's base64, "%H" its hash */
    const char *expect; /* substring of the error, or NULL when it must load */
    size_t len;         /* of LDIF, taken as is, when it holds a NUL byte */
};

#define GOOD_BODY                                                                                  \
    "objectclass: provider\nproviderName: P\nproviderCertificateHash: %H\n"                        \
    "providerCertificate;binary:: %C\nmailReceipt: r@p.test\nmanagedDomains: p.test\n"

#define NUL_CASE "dn: x\nprovider\0Name: P\n"

static const struct bad_case bad_cases[] = {
    {"empty file", "", "no provider record", 0},
    {"only blank lines and comments", "\n\n# nothing\n\n", "no provider record", 0},
    {"only the root", "dn: o=postacert\nobjectclass: top\no: postacert\n", "no provider record", 0},
    {"good record", "dn: providerName=P,o=postacert\n" GOOD_BODY, NULL, 0},
    {"bad base64", "dn: x\nobjectclass: provider\nproviderCertificate;binary:: @@@@\n",
     "t:3: providerCertificate;binary: bad base64", 0},
    {"base64 without padding", "dn:: eA\n", "t:1: dn: bad base64", 0},
    {"base64 with data after padding", "dn:: eA==eA==\n", "bad base64", 0},
    {"missing colon", "dn: x\nproviderName Gestore\n", "t:2: missing ':'", 0},
    {"no attribute name", "dn: x\n: value\n", "t:2: expected an attribute name", 0},
    {"record without providerName",
     "dn: x\nobjectclass: provider\nproviderCertificateHash: %H\n"
     "providerCertificate;binary:: %C\nmailReceipt: r@p.test\nmanagedDomains: p.test\n",
     "t:1: provider record \"x\" has no providerName", 0},
    {"record without certificate",
     "dn: x\nobjectclass: provider\nproviderName: P\nproviderCertificateHash: %H\n"
     "mailReceipt: r@p.test\nmanagedDomains: p.test\n",
     "has no providerCertificate", 0},
    {"continuation at file start", " dn: x\n", "t:1: continuation line with nothing", 0},
    {"continuation after a blank line", "dn: x\nobjectclass: top\n\n more\n", "t:4: continuation",
     0},
    {"NUL byte", NUL_CASE, "t:2: NUL byte", sizeof(NUL_CASE) - 1},
    {"version 2", "version: 2\ndn: x\n", "t:1: LDIF version", 0},
    {"dn inside a record", "dn: x\nobjectclass: provider\ndn: y\n", "t:3: dn: inside", 0},
    {"record not starting with dn", "objectclass: provider\n", "t:1: a record must start", 0},
    {"URL value", "dn: x\nproviderName:< file:///etc/passwd\n", "URL values are not supported", 0},
    {"certificate as plain text", "dn: x\nproviderCertificate: MIIB\n", "not a base64 DER", 0},
    {"certificate not DER", "dn: x\nproviderCertificate;binary:: aGVsbG8=\n", "not a base64 DER",
     0},
    {"hash not hex", "dn: x\nproviderCertificateHash: zz\n", "not a SHA-1 in hex", 0},
    {"hash too long", "dn: x\nproviderCertificateHash: %H00\n", "not a SHA-1 in hex", 0},
    {"mailReceipt not an address", "dn: x\nmailReceipt: not an address\n", "not a mail address", 0},
    {"mailReceipt with brackets", "dn: x\nmailReceipt: <r@p.test>\n", "not a mail address", 0},
    {"domain with a space", "dn: x\nmanagedDomains: p .test\n", "is not a domain", 0},
    {"not UTF-8", "dn: x\nproviderName: \xff\xfe\n", "not UTF-8", 0},
    {"control character via base64", "dn: x\nproviderName:: AQI=\n", "not UTF-8", 0},
    {"providerName twice", "dn: x\nproviderName: P\nproviderName: Q\n", "given twice", 0},
    {"empty providerName", "dn: x\nproviderName:\n", "empty value", 0},
    {"changetype delete", "dn: x\nchangetype: delete\n", "changetype delete", 0},
    {"binary garbage", "\x01\x02\x03\xff\xfe\x80:::\n\x7f\x7f", "t:1:", 0},
    {"huge line", NULL, NULL, 0},
};

/* %C and %H expanded. */
static char *expand(const char *tmpl, const struct cert *c)
{
    char *out = xmalloc(strlen(tmpl) + strlen(c->b64) * 2 + 100), *o = out;

    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && (p[1] == 'C' || p[1] == 'H')) {
            const char *s = p[1] == 'C' ? c->b64 : c->sha1;

            o = stpcpy(o, s);
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static char *huge_ldif(const struct cert *c)
{
    size_t big = 4 * 1024 * 1024;
    char *body = expand("dn: providerName=P,o=postacert\n" GOOD_BODY "description: ", c);
    size_t n = strlen(body);
    char *out = xmalloc(n + big + 2);

    memcpy(out, body, n);
    memset(out + n, 'x', big);
    out[n + big] = '\n';
    out[n + big + 1] = '\0';
    free(body);
    return out;
}

static void test_malformed(void)
{
    struct cert c = load_cert("a");
    size_t ncases = sizeof(bad_cases) / sizeof(bad_cases[0]);

    CHECK(ncases >= 10);
    for (size_t i = 0; i < ncases; i++) {
        const struct bad_case *bc = &bad_cases[i];
        char *text = bc->len    ? memcpy(xmalloc(bc->len), bc->ldif, bc->len)
                     : bc->ldif ? expand(bc->ldif, &c)
                                : huge_ldif(&c);
        size_t len = bc->len ? bc->len : strlen(text);
        char err[512] = "";
        struct pec_index *idx = pec_index_parse(text, len, "t", err, sizeof(err));
        int good =
            bc->expect == NULL ? idx != NULL : idx == NULL && strstr(err, bc->expect) != NULL;

        if (!good)
            fprintf(stderr, "case \"%s\": expected %s, got %s \"%s\"\n", bc->what,
                    bc->expect ? bc->expect : "success", idx ? "success" : "error", err);
        CHECK(good);
        pec_index_free(idx);
        free(text);
    }
    free_cert(&c);
}

/* Truncations and byte changes of the real test index: an answer, never a crash. */
static void test_mangled(void)
{
    char *path = pki_path("index.ldif");
    size_t len, loaded = 0;
    char *text = (char *)read_all(path, &len);
    char err[512];

    CHECK(text != NULL);
    if (text == NULL)
        return;
    for (size_t cut = 0; cut < len; cut += 7) {
        struct pec_index *idx = pec_index_parse(text, cut, "cut", err, sizeof(err));

        loaded += idx != NULL;
        pec_index_free(idx);
    }
    CHECK(loaded > 0);
    for (size_t i = 0; i < len; i += 3) {
        static const char subst[] = {'\0', '\n', ' ', ':', '=', '\xff'};
        char saved = text[i];

        for (size_t k = 0; k < sizeof(subst); k++) {
            struct pec_index *idx;

            text[i] = subst[k];
            err[0] = '\0';
            idx = pec_index_parse(text, len, "flip", err, sizeof(err));
            CHECK(idx != NULL || err[0] != '\0');
            pec_index_free(idx);
        }
        text[i] = saved;
    }
    free(text);
    free(path);
}

static void test_signed(void)
{
    char err[512] = "";
    char *trust_path = pki_path("trust.pem"), *p7m = pki_path("index.ldif.p7m");
    char *ldif = pki_path("index.ldif"), *pecca = pki_path("pecca.pem");
    char *authority = pki_path("authority/cert.pem");
    struct pec_trust *trust = pec_trust_load(trust_path, err, sizeof(err));
    struct pec_trust *pinned = pec_trust_load_pinned(authority, err, sizeof(err));
    struct pec_index *idx;
    unsigned char *der, *hit;
    size_t len;
    char *bad, *cmd;

    CHECK(trust != NULL && pinned != NULL);
    if (trust == NULL || pinned == NULL)
        return;
    /* the whole directory, signed by the authority: pinned to its certificate */
    idx = pec_index_load_signed(p7m, pinned, PEC_INDEX_BY_AUTHORITY, err, sizeof(err));
    if (idx == NULL)
        fprintf(stderr, "%s\n", err);
    CHECK(idx != NULL && pec_index_count(idx) == 2);
    CHECK(idx != NULL && pec_index_by_domain(idx, "pec-b.test") != NULL);
    CHECK(idx != NULL && strstr(pec_index_signer(idx), "Test Index Authority") != NULL);
    CHECK(idx != NULL && pec_index_signed_at(idx) > 0);
    CHECK(idx != NULL && pec_index_ref(idx) == idx);
    pec_index_free(idx);
    CHECK(idx != NULL && pec_index_count(idx) == 2); /* one reference is left */
    pec_index_free(idx);
    /* the authority is not a provider: as a provider's record it is refused */
    err[0] = '\0';
    CHECK(pec_index_load_signed(p7m, trust, PEC_INDEX_BY_LISTED, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "which the index does not list") != NULL);

    /* one changed byte in the signed LDIF */
    der = read_all(p7m, &len);
    CHECK(der != NULL);
    hit = der ? memmem(der, len, "Gestore B", 9) : NULL;
    CHECK(hit != NULL);
    if (hit != NULL) {
        hit[8] = 'X';
        bad = write_tmp("tampered.p7m", der, len);
        err[0] = '\0';
        CHECK(pec_index_load_signed(bad, pinned, PEC_INDEX_BY_AUTHORITY, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "signature does not match the content") != NULL);
        free(bad);
    }
    free(der);

    /* a good chain, a good signature, but a signer the index does not list */
    cmd = xasprintf("openssl cms -sign -binary -nodetach -outform DER -in '%s' "
                    "-signer '%s/rogue/cert.pem' -inkey '%s/rogue/key.pem' -certfile '%s' "
                    "-out '%s/rogue.p7m' && "
                    "openssl cms -sign -binary -nodetach -outform PEM -in '%s' "
                    "-signer '%s/b/cert.pem' -inkey '%s/b/key.pem' -certfile '%s' "
                    "-out '%s/b.pem.p7m'",
                    ldif, pki, pki, pecca, tmpdir, ldif, pki, pki, pecca, tmpdir);
    CHECK(system(cmd) == 0);
    free(cmd);
    bad = xasprintf("%s/rogue.p7m", tmpdir);
    err[0] = '\0';
    CHECK(pec_index_load_signed(bad, trust, PEC_INDEX_BY_LISTED, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "which the index does not list") != NULL);
    /* a provider under the same root is not the configured signer */
    err[0] = '\0';
    CHECK(pec_index_load_signed(bad, pinned, PEC_INDEX_BY_AUTHORITY, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "untrusted issuer") != NULL);
    free(bad);
    bad = xasprintf("%s/b.pem.p7m", tmpdir);
    idx = pec_index_load_signed(bad, trust, PEC_INDEX_BY_LISTED, err, sizeof(err));
    if (idx == NULL)
        fprintf(stderr, "%s\n", err);
    CHECK(idx != NULL);
    pec_index_free(idx);
    CHECK(pec_index_load_signed(bad, pinned, PEC_INDEX_BY_AUTHORITY, err, sizeof(err)) == NULL);
    free(bad);

    /* the plain LDIF is no signed-data */
    err[0] = '\0';
    CHECK(pec_index_load_signed(ldif, pinned, PEC_INDEX_BY_AUTHORITY, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "malformed signature") != NULL);
    err[0] = '\0';
    CHECK(pec_index_load_signed("/nonexistent.p7m", trust, PEC_INDEX_BY_LISTED, err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "/nonexistent.p7m") != NULL);

    pec_trust_free(pinned);
    pec_trust_free(trust);
    free(authority);
    free(trust_path);
    free(p7m);
    free(ldif);
    free(pecca);
}

int main(void)
{
    char *cmd;

    pki = check_env("PEC_PKI_DIR");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_lookups();
    test_hash_without_cert();
    test_ldif_features();
    test_malformed();
    test_mangled();
    test_signed();
    cmd = xasprintf("rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    free(cmd);
    return check_exit();
}
