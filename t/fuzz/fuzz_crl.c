/*
 * fuzz_crl - what revocation reads from outside (message/crl.h): a CRL as a fetch brought
 * it (DER, or PEM with any number of blocks), and the CRL distribution points of a
 * certificate an index lists.  The first bit of the first byte picks which.
 *
 * Promises held: a CRL set grows only when pec_crls_add() says 0, and then by at least
 * one CRL; a refusal says why and adds nothing.  A CRL is taken only when it verifies
 * against the test PKI (its anchors, and the PEC CA as the issuer it may name), so a
 * mutated CRL is refused.  Every distribution point returned is an http or https URI
 * of printable ASCII, nothing else (no file:, no LDAP, no white space or control).
 */
#include "harness.h"

#include "message/crl.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static unsigned char **issuers;
static size_t *issuerlen, nissuers;

static void check_urls(const uint8_t *data, size_t size)
{
    char **urls;
    size_t n;

    pec_cert_crl_urls(data, size, &urls, &n);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(strncasecmp(urls[i], "http://", 7) == 0 ||
                   strncasecmp(urls[i], "https://", 8) == 0);
        for (const char *s = urls[i]; *s; s++)
            FUZZ_CHECK((unsigned char)*s > 0x20 && (unsigned char)*s < 0x7f);
        free(urls[i]);
    }
    FUZZ_CHECK(n == 0 || urls != NULL);
    free(urls);
}

static void check_add(const uint8_t *data, size_t size)
{
    struct pec_crls *c = pec_crls_new();
    char warn[256], err[512];
    int ret;

    warn[0] = err[0] = '\0';
    ret = pec_crls_add(c, data, size, "fuzz.crl", fuzz_pki()->trust,
                       (const unsigned char *const *)issuers, issuerlen, nissuers, FUZZ_WHEN, warn,
                       sizeof(warn), err, sizeof(err));
    if (ret == 0) {
        FUZZ_CHECK(pec_crls_count(c) >= 1);
    } else {
        FUZZ_CHECK(ret == -1 && err[0] != '\0');
        FUZZ_CHECK(pec_crls_count(c) == 0);
    }
    pec_crls_free(c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("PEC_PKI_DIR");
    char path[4096], err[512];

    (void)argc;
    (void)argv;
    fuzz_lib_init();
    (void)fuzz_pki();
    snprintf(path, sizeof(path), "%s/pecca.pem", dir != NULL ? dir : ".");
    if (pec_pem_certs(path, &issuers, &issuerlen, &nissuers, err, sizeof(err)) < 0)
        fuzz_fail("%s", err);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        check_urls(data + 1, size - 1);
    else
        check_add(data + 1, size - 1);
    return 0;
}
