/*
 * harness - what the libFuzzer harnesses of t/fuzz share.
 *
 * A harness feeds one untrusted-bytes entry point of libpec and checks, besides the
 * sanitizers, the promises its header makes (ranges inside the input, clean UTF-8 out,
 * round trips).  A broken promise is a crash like any other: fuzz_fail() says which and
 * aborts, so libFuzzer keeps the input.
 *
 * The harnesses that verify signatures (inspect, rem, feed) use the test PKI that
 * t/pki/mkpki.sh writes, found through $PEC_PKI_DIR as in the rest of the test suite, and
 * check chains at a fixed instant inside its validity, so a run does not depend on the
 * day.
 */
#ifndef PEC_FUZZ_HARNESS_H
#define PEC_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "message/index.h"
#include "message/smime.h"

/* 2024-02-01 10:00:00 UTC: inside the validity of the test PKI's provider certificates */
#define FUZZ_WHEN ((time_t)1706781600)

/* Say what promise broke, and abort (libFuzzer then keeps the input). */
_Noreturn void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail("%s:%d: %s", __FILE__, __LINE__, #cond);                                     \
    } while (0)

/* Is S[0..LEN) well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF)? */
int fuzz_utf8_ok(const char *s, size_t len);

/* Does the span [P, P+N) lie inside [BASE, BASE+LEN)? */
int fuzz_inside(const void *base, size_t len, const void *p, size_t n);

/* The test PKI: trust anchors, the providers' index, and provider a's signing identity. */
struct fuzz_pki {
    struct pec_trust *trust;
    struct pec_index *index;
    struct pec_signer *signer;
};

/* Loaded from $PEC_PKI_DIR on the first call; exits saying why when it cannot be. */
const struct fuzz_pki *fuzz_pki(void);

/*
 * MSG[0..LEN) with the signature part of its top-level multipart/signed replaced by a
 * good signature of provider a over the first part (made CRLF, as S/MIME signs it), so
 * a mutated message still gets past the signature check to the steps after it.  NULL
 * when MSG has no such framing to re-sign; else *OUTLEN bytes the caller frees.
 */
unsigned char *fuzz_resign(const unsigned char *msg, size_t len, size_t *outlen);

/* libpec's libraries set up once (pec_lib_init), or exit saying why. */
void fuzz_lib_init(void);

#endif
