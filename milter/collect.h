/*
 * collect - what the certifying roles gather of a message before deciding.
 *
 * The access and reception roles both need the envelope, the names of the
 * top-level headers in the order the MTA sent them (to delete the ones a
 * rewritten message does not keep), and the message itself in a feed that
 * spools to disk past a limit.  These callbacks gather exactly that, so a
 * role only writes its MAIL FROM and end-of-message steps.  A spool failure
 * is remembered, not answered at once: the role reports it at eom.
 */
#ifndef PECMILTER_COLLECT_H
#define PECMILTER_COLLECT_H

#include <stddef.h>

#include "message/feed.h"
#include "role.h"

struct collected {
    char *mail_from; /* as given, angle brackets included */
    char **rcpts;
    size_t n_rcpts;
    char **names; /* the top-level header names, in order, as the MTA sent them */
    size_t n_names;
    struct pec_feed *feed;
    int spool_errno; /* the feed failed: the message cannot be processed */
    /*
     * The role refuses a header section over PEC_HEADER_MAX itself (the
     * access point, with its reason); for the others collect_finish fails
     * on one, as on any message it cannot read.
     */
    int header_cut_ok;
};

/* MAIL FROM: a new collection in m->state. */
void collect_start(const struct conn *c, struct msg *m, const char *mail_from);

sfsistat collect_envrcpt(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv);
sfsistat collect_header(SMFICTX *ctx, struct conn *c, struct msg *m, const char *name,
                        const char *value);
sfsistat collect_eoh(SMFICTX *ctx, struct conn *c, struct msg *m);
sfsistat collect_body(SMFICTX *ctx, struct conn *c, struct msg *m, const unsigned char *buf,
                      size_t len);
/*
 * End of message: the collected message as a pec_original in *O (free it with
 * pec_original_free), or -1 with WHAT saying why it cannot be processed (the
 * spool failed, no store is open, the message does not parse, its header
 * section is over PEC_HEADER_MAX and the role did not say it refuses that).
 */
int collect_finish(const struct conn *c, struct collected *st, struct pec_original *o, char *what,
                   size_t whatlen);

/* role_ops.end */
void collect_end(void *state);

#endif
