/*
 * quarantine - the virus store (pec-rules.md 8.4, DPR 68/2005 art. 12):
 * every infected message the provider refused or stopped, byte for byte
 * as it was received, kept for the retention the rules fix (30 months).
 *
 * A directory of its own (quarantine_dir), beside the store database and
 * not in it: a message may be 30 MB, nothing in it is ever queried, and an
 * operator or an auditor reads it with ordinary tools.  Each message is two
 * files named by the SHA-256 of its bytes, which is also its ID:
 *
 *   <sha256>.eml   the message, written once: the same bytes found again
 *                  are the same file;
 *   <sha256>.txt   what is known of it, one "key: value" a line: sha256,
 *                  size, first and last (epoch seconds, then the UTC time
 *                  in brackets), detections, point (access or reception),
 *                  identificativo, queue-id, mittente, finding.  The facts
 *                  are the first detection's; a later one moves "last" and
 *                  counts, so the retention runs from the last time the
 *                  message was seen.
 *
 * Both are written to a temporary name, synced and renamed, and the
 * directory synced, so a crash leaves a whole entry or none (and at worst a
 * ".new-" file nobody lists).  Updates of the facts take a lock (flock on
 * ".lock"), as the access and reception points of several threads, or of
 * several nodes sharing the directory, may find the same message at once.
 *
 * The purge removes the entries whose last detection is older than the
 * retention: the scheduler runs it with the legal log's (scheduler.h).
 */
#ifndef PEC_QUARANTINE_H
#define PEC_QUARANTINE_H

#include <stddef.h>
#include <time.h>

#include "store/registro.h"
#include "util/spool.h"

/* One detection, as the caller knows it; NULL strings are "". */
struct pec_qfacts {
    time_t when;
    const char *point; /* "access", "reception" */
    const char *identificativo;
    const char *queue_id;
    const char *mittente;
    const char *finding; /* what the antivirus found */
};

/* An entry as kept. */
struct pec_qentry {
    char sha256[PEC_HASH_HEX];
    long long size;
    time_t first_at, last_at;
    long long detections;
    char point[16];
    char identificativo[256];
    char queue_id[64];
    char mittente[320];
    char finding[256];
};

/*
 * Keep MSG in DIR (made when missing, mode 0750) with the facts F; SHA256
 * gets its ID.  0, or -1 with one line in err (nothing half-written is
 * listed).
 */
int pec_quarantine_put(const char *dir, const struct pec_spool *msg, const struct pec_qfacts *f,
                       char sha256[PEC_HASH_HEX], char *err, size_t errlen);

/*
 * FN on every entry, oldest first detection first; FN returning non-zero
 * stops the walk and is returned.  A missing DIR holds nothing.  -1 with err
 * when DIR or an entry cannot be read.
 */
int pec_quarantine_each(const char *dir, int (*fn)(const struct pec_qentry *e, void *arg),
                        void *arg, char *err, size_t errlen);

/*
 * The entry whose ID is or starts with ID (at least 8 hex digits): 1 and *E
 * filled, 0 when there is none, -1 with err (unreadable, or ID names more
 * than one).
 */
int pec_quarantine_find(const char *dir, const char *id, struct pec_qentry *e, char *err,
                        size_t errlen);

/*
 * The message of entry E, byte for byte, written to FD; its SHA-256 is
 * checked on the way, so a file changed since it was kept is reported.  0,
 * or -1 with err.
 */
int pec_quarantine_export(const char *dir, const struct pec_qentry *e, int fd, char *err,
                          size_t errlen);

/*
 * Remove the entries last seen before MONTHS calendar months before NOW.
 * *NREMOVED gets their count.  0, or -1 with err (what was removed stays
 * removed).
 */
int pec_quarantine_purge(const char *dir, int months, time_t now, long long *nremoved, char *err,
                         size_t errlen);

#endif
