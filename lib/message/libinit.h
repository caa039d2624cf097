/*
 * libinit - the one-time set-up of the libraries libpec stands on.
 *
 * GMime (address and header parsing), libxml2 with the compiled daticert
 * DTD, and OpenSSL each want to be initialised once, before threads share
 * them.  pec_lib_init() does all three exactly once per process, whoever
 * calls it first and from whatever thread; later calls return the first
 * outcome.  The daemon calls it at start-up; the modules that need it call
 * it too, so a test or a tool cannot forget.
 */
#ifndef PEC_LIBINIT_H
#define PEC_LIBINIT_H

#include <stddef.h>

/* 0, or -1 with the reason in err (the same reason on every later call) */
int pec_lib_init(char *err, size_t errlen);

#endif
