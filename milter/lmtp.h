/*
 * lmtp - the daemon's delivery point: the LMTP listener of libpec
 * (lmtpd.h) fed with the current runtime and the process's store.
 *
 * Each LMTP session holds a reference to the runtime that was current when
 * it began, as a milter connection does, so SIGUSR1 never changes a
 * delivery halfway.  Call order in main():
 *
 *   lmtp_open(cfg)     after umask(), before dropping privileges: the
 *                      socket (lmtp_socket) is made with the umask, as root
 *                      if need be;
 *   lmtp_start(store)  after daemon(), the signal mask, runtime_set() and
 *                      opening the store: the threads inherit the mask;
 *   lmtp_stop()        when smfi_main() returns, before the injector stops
 *                      and the store closes: deliveries in flight finish
 *                      and queue their receipts first.
 */
#ifndef PECMILTER_LMTP_H
#define PECMILTER_LMTP_H

#include "provider/conf.h"
#include "store/store.h"

/* 0, or -1 after saying why on stderr (the daemon may not be logging yet). */
int lmtp_open(const struct pec_config *cfg);

/* 0, or -1 after logging why. */
int lmtp_start(struct pec_store *store);

/* Stop accepting, let the sessions end, remove the socket; safe to call when not open. */
void lmtp_stop(void);

#endif
