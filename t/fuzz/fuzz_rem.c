/*
 * fuzz_rem - the REM reader (rem.h): a whole REM message (pec_rem_inspect: framing, the
 * REM-Section-Type parts, the ERDS evidence and its XAdES seal and time-stamp, the
 * original's digest, the CMS envelope, the REM-* fields against the evidence), and the
 * same bytes as a standalone evidence document (pec_rem_inspect_evidence).
 *
 * Promises held: a reason exactly when invalid, the kind one of the three names, the
 * original's range inside the input, the decoded Subject clean UTF-8, and nothing valid
 * that the test PKI did not sign (it signs no REM here, so nothing is valid at all).
 */
#include "harness.h"

#include "message/rem.h"

#include <string.h>

static void check(size_t len, const struct pec_rem_inspection *in, int rc, const char *kind)
{
    FUZZ_CHECK((rc == 0) == (in->valid != 0));
    FUZZ_CHECK(in->valid == (in->reason[0] == '\0'));
    FUZZ_CHECK(!in->temporary);
    FUZZ_CHECK(in->kind != NULL &&
               (strcmp(in->kind, kind) == 0 || strcmp(in->kind, "malformed") == 0));
    FUZZ_CHECK(in->subject == NULL || fuzz_utf8_ok(in->subject, strlen(in->subject)));
    if (in->has_original)
        FUZZ_CHECK(in->original_off <= len && in->original_len <= len - in->original_off);
    FUZZ_CHECK(!in->valid);
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
    const struct fuzz_pki *pki = fuzz_pki();
    struct pec_inspect_opts opts = {.trust = pki->trust, .at_mode = PEC_AT_GIVEN, .at = FUZZ_WHEN};
    struct pec_rem_inspection in;
    int rc;

    rc = pec_rem_inspect(data, size, &opts, &in);
    check(size, &in, rc, "rem");
    FUZZ_CHECK(!pec_rem_announced(data, size) || in.message_type != NULL);
    pec_rem_inspection_free(&in);
    rc = pec_rem_inspect_evidence(data, size, &opts, &in);
    check(size, &in, rc, "evidence");
    pec_rem_inspection_free(&in);
    return 0;
}
