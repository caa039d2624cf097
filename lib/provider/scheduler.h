/*
 * scheduler - the sender side's deadlines (pec-rules.md 4.9, 8.2) and the
 * daily housekeeping of the legal log, decided for a given NOW so that
 * tests choose the instants and the daemon's thread (milter/scheduler.c)
 * only sleeps until the next one.
 *
 * For each certified recipient of a transaction we opened (esterno
 * recipients never send receipts, so they are never tracked):
 *
 * - the 12 h notice (avviso di mancata consegna per superamento tempi
 *   massimi, preavviso) falls due at sent_at + warning_after when the
 *   recipient is still "sent": neither presa in carico nor consegna came;
 * - the final notice falls due at sent_at + deadline_after when the
 *   recipient is still "sent" or "taken": no consegna and no mancata
 *   consegna came; the recipient then becomes "timedout" and is no longer
 *   tracked (a consegna arriving later is logged, the state stays).
 *
 * Of the rules' 22-24 h window the final notice takes the end: it falls due
 * at deadline_after (24 h), leaving the recipient's provider all the time
 * the rules give it; it is never emitted before deadline_not_before (22 h),
 * which the configuration keeps <= deadline_after.  A notice overdue (the
 * daemon was down at its time) is emitted at the next run, once; after a
 * long stop a recipient that heard nothing gets both, the 12 h one first.
 * What is owed is decided by what had come at the notice's instant, not at
 * the run: a presa in carico, consegna or mancata consegna the MTA held
 * while the daemon was down, processed after the 12 h but before the run,
 * does not spare the recipient the 12 h notice (rules 4.9: "no presa in
 * carico but consegna between 12 h and 24 h -> only the 12 h notice").
 * The reception point, recording such a first receipt, marks the notice
 * owed (pec_sched_heard) in the receipt's own commit and the next run
 * emits it: the run never sees that recipient in state sent again, and
 * finding late receipts among all delivered ones would cost the whole
 * history at each run, where the mark keeps the recipient in the walk's
 * index (store.h) until its notice is out.  A receipt before the 12 h
 * marks nothing.
 *
 * Each notice goes to the sender, with one <consegna> (the recipient it is
 * about), as the builder makes them; the notices of one transaction that
 * fall due together are queued in one store commit with their recipients'
 * new states and their log records, so a crash loses neither alone and a
 * run repeated at the same NOW finds nothing left to do.  The commit
 * expects (pec_batch_expect) each recipient as it was read: a receipt that
 * arrives while the notices are being built wins, and the transaction is
 * looked at again.
 *
 * The 12 h notice carries errore-esteso "4.4.7 - <gestore> - ...", the
 * final one "5.4.1 - <gestore> - ..." (the builder's; the log record gets
 * the same).  The store keeps no Reply-To of the original, so the notices'
 * <risposte> is the sender.
 */
#ifndef PEC_SCHEDULER_H
#define PEC_SCHEDULER_H

#include <stddef.h>
#include <time.h>

#include "message/pecmsg.h"
#include "message/smime.h"
#include "store/store.h"

struct pec_sched_conf {
    long long warning_after;       /* seconds after dispatch: the 12 h notice */
    long long deadline_after;      /* seconds after dispatch: the final notice */
    long long deadline_not_before; /* the final notice never earlier than this */
};

struct pec_sched_result {
    int warned;  /* 12 h notices queued */
    int expired; /* final notices queued */
    int raced;   /* transactions left for the next run: a receipt came meanwhile */
};

/* At most this many transactions per call; *NEXT_DUE is then NOW (more is due). */
#define PEC_SCHED_BATCH 200

/*
 * Queue every timeout notice due at NOW, signed by ISS.  *NEXT_DUE gets the
 * earliest instant after which another may fall due (NOW when there is more
 * to do at once, 0 when no certified recipient awaits anything).  Counts go
 * to *RES.  0, or -1 with err when the store or a builder failed: what was
 * committed stays, the rest is due again at the next call.
 */
int pec_sched_timeouts(struct pec_store *st, const struct pec_issuer *iss,
                       const struct pec_sched_conf *conf, time_t now, struct pec_sched_result *res,
                       time_t *next_due, char *err, size_t errlen);

/*
 * A receipt (presa in carico, consegna or mancata consegna) about ADDRESS of
 * TX, as TX was read before, is recorded in B at WHEN.  When it is the
 * recipient's first, comes at or after sent_at + WARNING_AFTER and no 12 h
 * notice was emitted, B also marks that notice owed (PEC_WARN_OWED): the
 * next pec_sched_timeouts emits it.  The store applies the mark only while
 * no notice is recorded, so a run that emitted one meanwhile wins.  Nothing
 * for an esterno, unknown or already finished recipient.
 */
void pec_sched_heard(struct pec_batch *b, const struct pec_tx_info *tx, const char *address,
                     time_t when, long long warning_after);

/* How long after local midnight the finished day is sealed: late commits of its last events. */
#define PEC_SCHED_SEAL_DELAY 120

/* The next daily seal after NOW: the coming local midnight plus PEC_SCHED_SEAL_DELAY. */
time_t pec_sched_seal_time(time_t now);

/* What the daily housekeeping keeps, and for how long (the configuration's). */
struct pec_sched_keep {
    const char *gestore;        /* who signs the seals */
    const char *seal_dir;       /* where they go */
    int months;                 /* retention_months: the log */
    const char *quarantine_dir; /* the virus store (store/quarantine.h) */
    int virus_months;           /* virus_retention_months */
    long long node;             /* node_id: who runs it, when several nodes share the store */
};

/* What it did. */
struct pec_sched_kept {
    int sealed;             /* days of the log sealed */
    long long purged;       /* log records removed */
    long long virus_purged; /* infected messages removed */
    int elsewhere;          /* another node is running it: nothing done here */
};

/* How long one node holds the housekeeping: longer than sealing and purging take. */
#define PEC_SCHED_KEEP_LEASE 3600

/*
 * The daily housekeeping at NOW: seal every finished day (pec_registro_seal)
 * and, when that worked, purge what is older than its retention: the log
 * (pec_registro_purge), then the quarantine (pec_quarantine_purge).  One
 * node at a time runs it (the store's job "housekeeping", held for
 * PEC_SCHED_KEEP_LEASE at most): while another holds it, nothing is done
 * and OUT->elsewhere says so.  OUT gets the counts.  0, or -1 with err (the
 * caller logs it and tries again later).
 */
int pec_sched_seal_purge(struct pec_store *st, const struct pec_signer *signer,
                         const struct pec_sched_keep *k, time_t now, struct pec_sched_kept *out,
                         char *err, size_t errlen);

#endif
