/*
 * fuzz_ldif - the providers' index as LDIF (pec_index_parse): line unfolding, comments,
 * base64 values, attribute options, the schema's checks on each value.
 *
 * Promises held: a parsed index has at least one provider, each with the attributes the
 * schema makes mandatory, and every lookup finds what the records list: each managed
 * domain leads to a record that manages it, each certificate hash to a record, and each
 * listed certificate, byte for byte, to a record that lists it.
 */
#include "harness.h"

#include "message/index.h"

#include <string.h>

static void check_provider(const struct pec_index *idx, const struct pec_provider *p)
{
    FUZZ_CHECK(p->dn != NULL && p->name != NULL && p->mail_receipt != NULL);
    FUZZ_CHECK(p->ndomains > 0 && p->nhashes > 0);
    for (size_t i = 0; i < p->ndomains; i++) {
        const struct pec_provider *q = pec_index_by_domain(idx, p->domains[i]);

        FUZZ_CHECK(q != NULL && pec_provider_manages(q, p->domains[i]));
    }
    for (size_t i = 0; i < p->nhashes; i++) {
        FUZZ_CHECK(strlen(p->cert_hashes[i]) == 40);
        FUZZ_CHECK(pec_index_by_cert_hash(idx, p->cert_hashes[i]) != NULL);
    }
    for (size_t i = 0; i < p->ncerts; i++) {
        const struct pec_provider *q = pec_index_by_cert(idx, p->certs[i].der, p->certs[i].len);

        FUZZ_CHECK(q == NULL || pec_provider_has_cert(q, p->certs[i].der, p->certs[i].len));
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_lib_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pec_index *idx;
    char err[512];

    err[0] = '\0';
    idx = pec_index_parse((const char *)data, size, "fuzz.ldif", err, sizeof(err));
    if (idx == NULL) {
        FUZZ_CHECK(strncmp(err, "fuzz.ldif", 9) == 0);
        return 0;
    }
    FUZZ_CHECK(pec_index_count(idx) > 0);
    for (size_t i = 0; i < pec_index_count(idx); i++)
        check_provider(idx, pec_index_provider(idx, i));
    pec_index_free(idx);
    return 0;
}
