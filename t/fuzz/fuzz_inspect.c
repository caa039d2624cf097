/*
 * fuzz_inspect - the whole inspection of an incoming message (pec_inspect), as the
 * reception and delivery points run it: framing, signature and chain, the providers'
 * index, structure, daticert.xml.
 *
 * Every input is inspected twice: as it is, and re-signed (fuzz_resign) by provider a of
 * the test PKI, so that mutations inside the signed part reach the index and structure
 * steps with a signature that holds, as a forger who owns a listed provider's key could.
 *
 * Promises held: a reason exactly when invalid; a valid message is a busta, a notice or
 * an anomalia, signed, by a provider of the index, with its daticert.xml (none on an
 * anomalia) and postacert.eml where its tipo asks for it; postacert.eml's range lies in
 * the input; the decoded Subject is clean UTF-8.
 */
#include "harness.h"

#include "message/verify.h"

#include <stdlib.h>
#include <string.h>

static void check(size_t len, const struct pec_inspection *in, int rc)
{
    FUZZ_CHECK((rc == 0) == (in->valid != 0));
    FUZZ_CHECK(in->valid == (in->reason[0] == '\0'));
    FUZZ_CHECK(!in->temporary);
    FUZZ_CHECK(in->kind >= PEC_KIND_ORDINARY && in->kind <= PEC_KIND_ANOMALIA);
    FUZZ_CHECK(in->subject == NULL || fuzz_utf8_ok(in->subject, strlen(in->subject)));
    if (in->has_postacert)
        FUZZ_CHECK(in->postacert_off <= len && in->postacert_len <= len - in->postacert_off &&
                   in->postacert_encoding != NULL);
    if (!in->valid)
        return;
    FUZZ_CHECK(in->kind == PEC_KIND_BUSTA || in->kind == PEC_KIND_NOTICE ||
               in->kind == PEC_KIND_ANOMALIA);
    FUZZ_CHECK(in->signature_ok && in->index_checked && in->provider != NULL);
    FUZZ_CHECK(in->from_address != NULL);
    FUZZ_CHECK(in->kind == PEC_KIND_ANOMALIA ? !in->has_daticert && in->has_postacert
                                             : in->has_daticert);
    if (in->kind == PEC_KIND_BUSTA)
        FUZZ_CHECK(in->has_postacert && in->daticert.tipo == PEC_TIPO_POSTA_CERTIFICATA);
}

static void inspect(const unsigned char *msg, size_t len)
{
    const struct fuzz_pki *pki = fuzz_pki();
    struct pec_inspect_opts opts = {
        .trust = pki->trust, .index = pki->index, .at_mode = PEC_AT_GIVEN, .at = FUZZ_WHEN};
    struct pec_inspection in;
    int rc = pec_inspect(msg, len, &opts, &in);

    check(len, &in, rc);
    pec_inspection_free(&in);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_pki();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len;
    unsigned char *resigned;

    inspect(data, size);
    if ((resigned = fuzz_resign(data, size, &len)) != NULL) {
        inspect(resigned, len);
        free(resigned);
    }
    return 0;
}
