/*
 * testfiles.h - files for the unit tests that work on the test PKI: a path
 * in it, a whole file, a scratch file.
 *
 * The includer defines, before including, `static const char *pki` (the
 * PKI directory, from check_env("PEC_TEST_PKI")) and `static char tmpdir[]`
 * (its scratch directory, made with mkdtemp).  Everything is static.
 */
#ifndef PEC_TEST_TESTFILES_H
#define PEC_TEST_TESTFILES_H

#include "check.h"
#include "util/xalloc.h"

#include <stdio.h>

/* not every test uses every helper */
#define TF_FN static __attribute__((unused))

/* PKI/REL, to free */
TF_FN char *pki_path(const char *rel)
{
    return xasprintf("%s/%s", pki, rel);
}

/* The whole of PATH, NUL-terminated (not counted in *LEN), to free; NULL if unreadable */
TF_FN unsigned char *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, got;

    if (fp == NULL)
        return NULL;
    do {
        buf = xrealloc(buf, n + 65536 + 1);
        got = fread(buf + n, 1, 65536, fp);
        n += got;
    } while (got > 0);
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* DATA written to TMPDIR/NAME (a failed write is a failed CHECK); the path, to free */
TF_FN char *write_tmp(const char *name, const void *data, size_t len)
{
    char *path = xasprintf("%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "wb");

    CHECK(fp != NULL);
    if (fp != NULL) {
        CHECK(fwrite(data, 1, len, fp) == len);
        CHECK(fclose(fp) == 0);
    }
    return path;
}

#endif
