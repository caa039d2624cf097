/*
 * injector - the daemon's outbox thread: generated receipts and notices go
 * from the store to the MTA (see lib/provider/inject.h for what it promises).
 *
 * injector_start() also sends the store's log lines (one per registro
 * record) to the daemon's log, so the legal log reaches syslog too.  Call it
 * once the store is open and the signal mask is set (the thread inherits
 * it), after dropping privileges; injector_stop() before closing the store.
 */
#ifndef PECMILTER_INJECTOR_H
#define PECMILTER_INJECTOR_H

#include "provider/conf.h"
#include "store/store.h"

/* 0, or -1 after logging why (bad `reinject`, no thread). */
int injector_start(const struct pec_config *cfg, struct pec_store *store);

/* Let the message in flight get its answer, then stop the thread. */
void injector_stop(void);

#endif
