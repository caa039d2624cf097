/*
 * fuzz_sevenbit - an original made 7-bit for the busta (message/sevenbit.h): whatever the
 * access point is given.
 *
 * Promises held: the check-only walk and the writing walk agree; a message made 7-bit
 * has no byte over 0x7f and is a fixed point (made 7-bit again, it comes back
 * unchanged); a 7-bit message is copied byte for byte; a refusal says why.
 */
#include "harness.h"

#include "message/sevenbit.h"
#include "util/spool.h"

#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_lib_init();
    return 0;
}

static int seven(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 0x80)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pec_spool *out = pec_spool_new(NULL, 64 << 20), *again;
    char why[300] = "";
    int rc = pec_7bit(data, size, out, why, sizeof(why));
    const unsigned char *o = pec_spool_mem(out);
    size_t olen = pec_spool_size(out);

    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(pec_7bit(data, size, NULL, NULL, 0) == rc);
    if (rc == 1) {
        FUZZ_CHECK(why[0] != '\0');
    } else {
        FUZZ_CHECK(o != NULL || olen == 0);
        FUZZ_CHECK(seven(o, olen));
        if (seven(data, size))
            FUZZ_CHECK(olen == size && (size == 0 || memcmp(o, data, size) == 0));
        again = pec_spool_new(NULL, 64 << 20);
        FUZZ_CHECK(pec_7bit(o ? o : (const unsigned char *)"", olen, again, why, sizeof(why)) == 0);
        FUZZ_CHECK(pec_spool_size(again) == olen &&
                   (olen == 0 || memcmp(pec_spool_mem(again), o, olen) == 0));
        pec_spool_free(again);
    }
    pec_spool_free(out);
    return 0;
}
