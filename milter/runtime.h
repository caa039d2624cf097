/*
 * runtime - what the daemon loaded from its configuration, and reloading it.
 *
 * A runtime bundles the parsed configuration with everything loaded from the
 * files it names.  It is built completely before it is used, so a reload
 * (SIGUSR1) that fails leaves the running one in place, and it is
 * reference-counted, so a milter connection keeps the runtime it started with
 * until it ends.
 *
 * The providers' index is the runtime's directory (provider/directory.h):
 * the copy in use changes under a running runtime when the scheduler
 * refreshes it, so a user takes it with runtime_index() for one message
 * and drops it after.
 *
 * The store is the process's, not a runtime's: it is opened once, after
 * the privilege drop so that its files belong to `user`, and every runtime
 * borrows it.  A reload that names another store keeps the open one and
 * says that a restart is needed.
 */
#ifndef PECMILTER_RUNTIME_H
#define PECMILTER_RUNTIME_H

#include <stddef.h>

#include "util/clock.h"
#include "provider/conf.h"
#include "message/ident.h"
#include "message/index.h"
#include "message/pecmsg.h"
#include "message/smime.h"
#include "provider/directory.h"
#include "store/store.h"

struct runtime {
    int refs;
    struct pec_config *cfg;
    struct pec_signer *signer;
    struct pec_trust *trust;
    struct pec_directory *dir;
    struct pec_dir_report index_load; /* what loading the index found worth a warning */
    struct pec_clock clock;
    struct pec_ident ident;
    struct pec_issuer issuer;
    struct pec_store *store; /* borrowed: the process's store, NULL until it is open */
    char cert_warning[512];  /* the signing certificate's warning (expiry near), "" when none */
};

/*
 * Load CONFIG and every file it names: the signing certificate, chain and key
 * (which must match), the trust anchors and the providers' index.  NULL with
 * one line in err on failure.
 */
struct runtime *runtime_load(const char *config, char *err, size_t errlen);

/*
 * The signing certificate against RFC 6109 5.5 and its validity now
 * (message/certprofile.h): -1 with the problem in err; otherwise 0, and
 * rt->cert_warning says what is worth a warning.  Run by every load, so a
 * start is refused and a reload keeps the running configuration.
 */
int runtime_check_cert(struct runtime *rt, char *err, size_t errlen);

/* Checks that need no loading: files exist, are readable, key is private. */
int runtime_check_files(const struct pec_config *cfg, char *err, size_t errlen);

/* RT's providers' index in use, with a reference the caller drops (pec_index_free). */
struct pec_index *runtime_index(const struct runtime *rt);

/* Log what RT's index load found worth a warning. */
void runtime_log_index_load(const struct runtime *rt);

/* The current runtime, with a reference the caller must drop. */
struct runtime *runtime_get(void);
void runtime_put(struct runtime *rt);

/* Install RT as current (takes over the caller's reference). */
void runtime_set(struct runtime *rt);

/*
 * Open the store RT's configuration names and lend it to RT and to every
 * runtime loaded from now on.  0, or -1 with one line in err.
 */
int runtime_store_open(struct runtime *rt, char *err, size_t errlen);

/* Close the store; call once nothing uses it any more (the injector is stopped). */
void runtime_store_close(void);

/* Start the thread that reloads from CONFIG on SIGUSR1; call with SIGUSR1 blocked. */
int runtime_start_reloader(const char *config);

#endif
