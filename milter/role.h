/*
 * role - what a role module (access point, reception point) plugs into the
 * milter callbacks.
 *
 * callbacks.c owns the connection and message contexts and decides the role
 * of each message at MAIL FROM; from then on it hands every event of that
 * message to the role's operations and frees the message context, role state
 * included, in one place (msg_end) from eom, abort, close and every error
 * path.  A role keeps whatever it needs in its own state and never frees the
 * message context itself.
 *
 * The modules are declared at the end of this file, one line each, so
 * the table in callbacks.c is the only other place a new role touches.
 *
 * Every operation returns the milter status for the event; a role that
 * stops a message (reject, tempfail, accept) has set the SMTP reply and
 * logged why, once, with the queue id.
 */
#ifndef PECMILTER_ROLE_H
#define PECMILTER_ROLE_H

#include <stddef.h>

#include <libmilter/mfapi.h>

#include "runtime.h"

struct role_ops;

/* One message: born at MAIL FROM, freed by msg_end(). */
struct msg {
    char *qid;
    const struct role_ops *ops;
    void *state; /* the role's; released by ops->end */
};

/* One connection: born at negotiation or connect, freed at close. */
struct conn {
    struct runtime *rt; /* the runtime the connection started with */
    char *daemon_name;
    char *client;
    int loopback;        /* the client connected from this machine (127/8, ::1) */
    int leadspc;         /* SMFIP_HDR_LEADSPC negotiated: header values keep their leading space */
    unsigned long quiet; /* SMFIP_NR_* negotiated: the MTA expects no reply at those stages */
    sfsistat held;       /* a verdict reached at a quiet stage, given at end of message */
    struct msg *msg;
};

struct role_ops {
    const char *name;
    /* MAIL FROM: the role sets up m->state; argv as libmilter gives it */
    sfsistat (*envfrom)(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv);
    sfsistat (*envrcpt)(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv);
    /* VALUE as sent, with its leading space whatever was negotiated */
    sfsistat (*header)(SMFICTX *ctx, struct conn *c, struct msg *m, const char *name,
                       const char *value);
    sfsistat (*eoh)(SMFICTX *ctx, struct conn *c, struct msg *m);
    sfsistat (*body)(SMFICTX *ctx, struct conn *c, struct msg *m, const unsigned char *buf,
                     size_t len);
    sfsistat (*eom)(SMFICTX *ctx, struct conn *c, struct msg *m);
    void (*end)(void *state);
};

/* The MTA's queue id of M, once the MTA has assigned one; "NOQUEUE" before. */
const char *msg_qid(SMFICTX *ctx, struct msg *m);

/*
 * The role modules.  Each is one file named for its role; libpec holds the
 * PEC decisions, the module only feeds it and applies what it returns.
 */
extern const struct role_ops access_role;    /* access.c: user submission, certify */
extern const struct role_ops reception_role; /* reception.c: from outside, verify */

#endif
