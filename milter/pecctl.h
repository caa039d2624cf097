/*
 * pecctl.h - what pecctl's commands share: the opened configuration and
 * store, time parsing and printing, exit statuses.  Each group of commands
 * lives in its own file (pecctl.c: log, outbox, tx, store; pecctl_audit.c;
 * pecctl_status.c; pecctl_index.c; pecctl_quarantine.c; pecctl_mailbox.c).
 */
#ifndef PECCTL_H
#define PECCTL_H

#include <stdio.h>
#include <time.h>

#include "provider/conf.h"
#include "store/store.h"

#define DEFAULT_CONFIG "/etc/pecmilter/pecmilter.conf"
#define EX_USAGE 64
#define EX_IOERR 74

struct ctl {
    const char *config_path;
    struct pec_config *cfg;
    struct pec_store *st;
};

void usage(FILE *out);

/* The options of the commands that take some, each spelled the same in all */
struct ctl_opts {
    int json;                            /* --json */
    time_t since, until;                 /* --since T, --until T; 0 when absent */
    const char *id, *sender, *recipient; /* --id, --sender, --recipient */
};

/*
 * Parse command CMD's options (argv[0] is CMD) into O, zeroed first,
 * accepting only those whose letters are in ALLOWED: j json, S since,
 * U until, i id, s sender, r recipient.  No operands.  0, or EX_USAGE
 * once stderr says why.
 */
int ctl_options(const char *cmd, int argc, char **argv, const char *allowed, struct ctl_opts *o);

/* S as a JSON string, quotes included, on stdout */
void json_string(const char *s);

/* "YYYY-MM-DD[ HH:MM[:SS]][Z]" (local unless Z) or "@EPOCH"; 0, or -1 */
int parse_time(const char *s, time_t *out);

/* T as "YYYY-MM-DD HH:MM:SS +hhmm" in local time, "-" for 0 */
const char *local_time(time_t t, char *buf, size_t len);

/* pecctl audit [--since T]: exit 0 clean, 1 violations found */
int pecctl_audit(struct ctl *c, int argc, char **argv);

/* pecctl status [--json] */
int pecctl_status(struct ctl *c, int argc, char **argv);

/* pecctl index record [--sign] | show, and pecctl tls-policy */
int pecctl_index(struct ctl *c, int argc, char **argv);
/* pecctl quarantine list [--json] | show ID | export ID */
int pecctl_quarantine(struct ctl *c, int argc, char **argv);

/* pecctl mailbox add|del|check ADDRESS... | list */
int pecctl_mailbox(struct ctl *c, int argc, char **argv);

#endif
