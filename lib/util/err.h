/*
 * err - the one-line error a call leaves for its caller.
 *
 * libpec's functions that can fail take (char *err, size_t errlen) and fill
 * it with one line saying why; pec_seterr() is how they do it.  ERR may be
 * NULL (or ERRLEN 0) when the caller does not want the words.
 */
#ifndef PEC_ERR_H
#define PEC_ERR_H

#include <stddef.h>

void pec_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
