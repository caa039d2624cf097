/*
 * inject - hand generated receipts and notices to the MTA, and the injector
 * workers that drain the store's outbox.
 *
 * A pec_mta is the way into the MTA named by the `reinject` setting:
 * "smtp:HOST:PORT" (a loopback listener without milter, so what we generate
 * is not certified again) or "sendmail:/path" (`sendmail -i -f SENDER --
 * RCPT...`).  Over SMTP one session carries message after message and stays
 * open until pec_mta_close(); a message counts as taken only on the reply
 * to the final dot being 250, and pec_mta_send() returns as soon as that
 * reply is read, so the caller can record it before anything else happens.
 *
 * The injector is a few worker threads (`sessions`), each with its own
 * session with the MTA, because the MTA answers 250 only once its queue
 * file is on disk: one session at a time leaves the outbox draining at one
 * message per fsync of the MTA's, whatever the CPUs could do.  A worker
 * claims the oldest due outbox row (the store gives each row to one
 * worker), sends it, and marks it sent (with the MTA's queue id), deferred
 * (a temporary failure: exponential backoff per row) or failed (the MTA
 * refused it for good).  When the MTA cannot be reached a worker stops
 * trying for a while, from 1 s doubling up to max_backoff, and notes the
 * reason on every waiting row so `pecctl outbox` shows it; the log says
 * once that the MTA is down and once that it answers again.  A commit that
 * adds outbox rows wakes the workers; rows queued again by another process
 * (`pecctl outbox retry`) are seen within max_backoff seconds.  Rows go out
 * in parallel, so two rows queued together may reach the MTA in either
 * order, as they may leave its queue in either order anyway.
 *
 * Crash safety: a row is "sending" in the store while it is in the MTA's
 * hands.  After a crash or kill -9 the injector puts such rows back (before
 * any worker claims one) and sends them again, same bytes, same
 * Message-ID: nothing owed is lost.  The
 * MTA may already hold the first copy when the process died after the MTA
 * committed the message but before the store recorded the 250; SMTP offers
 * no way to ask, so that copy arrives twice, identical.  The store's side
 * of that window is one commit without fsync (about 0.1 ms); the MTA's side
 * (its commit, then its 250 on its way to us) is most of it.  The log names
 * every row sent again for this reason ("again after an unclean stop").
 *
 * The process must ignore SIGPIPE (the sendmail pipe may break).
 */
#ifndef PEC_INJECT_H
#define PEC_INJECT_H

#include <stddef.h>

#include "store/store.h"

enum pec_inject_status {
    PEC_INJECT_OK,
    PEC_INJECT_TEMP, /* try again later */
    PEC_INJECT_PERM, /* the MTA refused the message for good */
};

struct pec_inject_result {
    enum pec_inject_status status;
    int unreachable;   /* TEMP because the MTA could not be reached or the session broke */
    int code;          /* SMTP code of the deciding reply; sendmail's exit status; 0 */
    char queue_id[64]; /* the MTA's queue id from "250 ... queued as ID", or "" */
    char text[512];    /* what happened, one line */
    char refused[512]; /* recipients refused for good while others were accepted, or "" */
};

struct pec_mta;

/*
 * SPEC as in the reinject setting; MAIL_FROM is the envelope sender of
 * everything (the service address); its domain is the EHLO name.  NULL
 * with err when SPEC is not understood.  Nothing is connected yet.
 */
struct pec_mta *pec_mta_new(const char *spec, const char *mail_from, char *err, size_t errlen);
void pec_mta_free(struct pec_mta *m);

/* Send DATA[0..LEN) (CRLF) to RCPT[0..N); fills RES.  Returns RES->status. */
enum pec_inject_status pec_mta_send(struct pec_mta *m, const char *const *rcpt, size_t n,
                                    const unsigned char *data, size_t len,
                                    struct pec_inject_result *res);

/* End the SMTP session, if one is open (QUIT). */
void pec_mta_close(struct pec_mta *m);

struct pec_injector_conf {
    const char *reinject;  /* the target, as pec_mta_new's SPEC */
    const char *mail_from; /* the service address */
    long long node;        /* node_id: whose "sending" rows are ours after a crash */
    int max_backoff;       /* seconds, at least 1 */
    int sessions;          /* workers, each with its own MTA session; 0: 1 */
    pec_log_fn *log;       /* where the injector's lines go; NULL: nowhere */
};

struct pec_injector;

/*
 * Start the injector's workers on ST (which must outlive it) and make ST's
 * commits wake them.  NULL with err when the target is not understood or a
 * thread cannot start.
 */
struct pec_injector *pec_injector_start(const struct pec_injector_conf *conf, struct pec_store *st,
                                        char *err, size_t errlen);

/* Look at the outbox now (a commit added rows). Safe from any thread. */
void pec_injector_wake(struct pec_injector *inj);

/*
 * Stop after the message in flight, if any, has its answer; join and free.
 * The outbox keeps whatever is left for the next start.
 */
void pec_injector_stop(struct pec_injector *inj);

#endif
