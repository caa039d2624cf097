/*
 * check.h - the few assertions the C unit tests need.
 *
 * A failed CHECK prints where and what, and the test goes on so one run shows
 * every failure; check_exit() turns the count into the exit status ctest reads.
 * SKIP() exits 77, which ctest reports as skipped.
 */
#ifndef PEC_TEST_CHECK_H
#define PEC_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        check_count++;                                                                             \
        if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) {             \
            fprintf(stderr,                                                                        \
                    "%s:%d: CHECK_STR failed: %s == %s\n  got:      \"%s\"\n"                      \
                    "  expected: \"%s\"\n",                                                        \
                    __FILE__, __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",                    \
                    check_b_ ? check_b_ : "(null)");                                               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define SKIP(why)                                                                                  \
    do {                                                                                           \
        printf("SKIP: %s\n", why);                                                                 \
        exit(77);                                                                                  \
    } while (0)

static inline int check_exit(void)
{
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

/* $NAME or a skip: tests that need the PKI or the shared corpus use this */
static inline const char *check_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        printf("SKIP: %s is not set (run the test through ctest)\n", name);
        exit(77);
    }
    return v;
}

#endif
