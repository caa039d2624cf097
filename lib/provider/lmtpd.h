/*
 * lmtpd - the delivery point's listener: accepts LMTP connections from the
 * MTA and serves each in a thread of its own (lmtp.h speaks the protocol,
 * deliver.h does the deliveries).
 *
 * A connection takes what it delivers with (configuration, signer, trust
 * anchors, index, store) from the acquire hook when it starts and hands it
 * back to release when it ends, so a reload of the daemon never changes a
 * session halfway.  At most PEC_LMTPD_MAX_CONN sessions run at once; one
 * more is told 421 and closed, and the MTA tries again.
 *
 * The largest message taken (SIZE) is twice size_limit: a busta carries
 * the original whole plus its texts and signature, and the MTA in front
 * enforces its own message_size_limit; this bound only keeps runaway
 * input off the disk.
 *
 * pec_lmtpd_listen() only opens the socket (do it before dropping
 * privileges and with the umask the socket should get);
 * pec_lmtpd_start() starts the accepting thread (after daemon(), with the
 * signal mask the threads should inherit).  pec_lmtpd_stop() stops
 * accepting, ends idle sessions at once, lets a delivery in progress finish
 * and answer, then closes and removes the socket.
 */
#ifndef PEC_LMTPD_H
#define PEC_LMTPD_H

#include <stddef.h>

#include "provider/deliver.h"

#define PEC_LMTPD_MAX_CONN 64

struct pec_lmtpd_hooks {
    /* Fill ENV for a new session; a token for release, or NULL to refuse the session (421). */
    void *(*acquire)(void *arg, struct pec_dp_env *env);
    void (*release)(void *arg, void *token);
    void *arg;
    pec_log_fn *log; /* the listener's own lines; NULL: nowhere */
    int timeout;     /* seconds of client silence before a session ends; 0: PEC_LMTP_TIMEOUT */
};

struct pec_lmtpd;

/* Listen on SPEC (sock.h); NULL with one line in err. */
struct pec_lmtpd *pec_lmtpd_listen(const char *spec, char *err, size_t errlen);

/* Start accepting; the hooks are copied.  0, or -1 with err. */
int pec_lmtpd_start(struct pec_lmtpd *d, const struct pec_lmtpd_hooks *hooks, char *err,
                    size_t errlen);

/* Stop (see above) and free; D may be NULL or never started. */
void pec_lmtpd_stop(struct pec_lmtpd *d);

#endif
