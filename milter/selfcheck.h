/*
 * selfcheck - what `pecmilter -n` checks beyond loading the configuration.
 *
 * runtime_load() already refuses a configuration whose files are missing,
 * unreadable, unparsable, or whose key does not match the certificate.  A
 * runtime that loads can still be one the daemon cannot work with: a
 * signing certificate outside the profile of pec-rules.md §6.2, a
 * certificate that peers will not find in the providers' index under our
 * name, a file the daemon's user cannot read, or a socket or store
 * directory it cannot write.
 * These are checked here, once, before the operator starts the daemon;
 * the daemon itself does not repeat them on every start or reload.
 */
#ifndef PECMILTER_SELFCHECK_H
#define PECMILTER_SELFCHECK_H

#include <stddef.h>

#include "runtime.h"

/*
 * Check RT.  0 when all is well; else -1 with one line in err,
 * "FILE: what is wrong", naming the file (or directory) to fix.
 */
int selfcheck(const struct runtime *rt, char *err, size_t errlen);

/*
 * Does the antivirus CFG names answer?  One line in LINE either way: clamd's
 * version and the date of its signatures, why it does not answer, or that
 * nothing is scanned.  0 when it answers (or antivirus is "none"), -1 when
 * it does not: not a configuration error (clamd may start after us), but
 * mail is deferred until it answers.
 */
int selfcheck_antivirus(const struct pec_config *cfg, char *line, size_t len);

#endif
