/*
 * pecctl.h - what pecctl's commands share: the opened configuration and
 * store, time parsing and printing, exit statuses.  Each group of commands
 * lives in its own file (pecctl.c: log, outbox, tx, store; pecctl_audit.c;
 * pecctl_status.c).
 */
#ifndef PECCTL_H
#define PECCTL_H

#include <stdio.h>
#include <time.h>

#include "conf.h"
#include "store.h"

#define DEFAULT_CONFIG "/etc/pecmilter/pecmilter.conf"
#define EX_USAGE 64
#define EX_IOERR 74

struct ctl {
    const char *config_path;
    struct pec_config *cfg;
    struct pec_store *st;
};

void usage(FILE *out);

/* "YYYY-MM-DD[ HH:MM[:SS]][Z]" (local unless Z) or "@EPOCH"; 0, or -1 */
int parse_time(const char *s, time_t *out);

/* T as "YYYY-MM-DD HH:MM:SS +hhmm" in local time, "-" for 0 */
const char *local_time(time_t t, char *buf, size_t len);

/* pecctl audit [--since T]: exit 0 clean, 1 violations found */
int pecctl_audit(struct ctl *c, int argc, char **argv);

/* pecctl status [--json] */
int pecctl_status(struct ctl *c, int argc, char **argv);

#endif
