/*
 * clamd - a client of ClamAV's scanning daemon, over the socket clamd.conf
 * names (LocalSocket, or TCPSocket and TCPAddr), in clamd's own protocol.
 *
 * pec_clamd_scan() sends INSTREAM: the bytes of a spool in chunks, each a
 * 4-byte length in network order and the data, then a zero length; clamd
 * answers "stream: OK", "stream: <signature> FOUND" or "<reason> ERROR".
 * The bytes are read from where the spool already keeps them (its memory, or
 * its file a chunk at a time): no copy of the whole message is made.  One
 * deadline bounds the whole scan, connection included.
 *
 * A message is clean only when clamd said OK.  Anything else that is not a
 * finding is a scan that failed: clamd not answering, a timeout, a broken
 * connection, a reply we do not understand, and clamd's own limits: its
 * StreamMaxLength ("INSTREAM size limit exceeded") and, with AlertExceedsMax,
 * the "Heuristics.Limits.Exceeded..." pseudo-findings, which say a part was
 * left unscanned, not that it is infected.
 *
 * pec_clamd_version() asks VERSION: "ClamAV 1.4.6/27480/Sun Dec  6 09:23:45
 * 2026" - the engine, the version of the signature database and its date.
 * A clamd loaded with no official database says the engine only.
 *
 * Nothing here knows what a message is for; the provider decides what a
 * finding or a failure means (provider/antivirus.h).
 */
#ifndef PEC_CLAMD_H
#define PEC_CLAMD_H

#include <stddef.h>

#include "util/spool.h"

enum pec_clamd_verdict {
    PEC_CLAMD_CLEAN, /* clamd said OK */
    PEC_CLAMD_FOUND, /* WHAT names the signature */
    PEC_CLAMD_ERROR, /* not scanned: WHAT says why */
};

struct pec_clamd_result {
    enum pec_clamd_verdict verdict;
    char what[256];
};

/*
 * Scan the whole of SP through clamd at SPEC (a unix path, "unix:/path",
 * "inet:host:port" or "inet:port@host": the forms of util/sock.h), within
 * TIMEOUT seconds.  Fills R; never fails otherwise.
 */
void pec_clamd_scan(const char *spec, int timeout, const struct pec_spool *sp,
                    struct pec_clamd_result *r);

struct pec_clamd_version {
    char engine[64];    /* "ClamAV 1.4.6" */
    char database[32];  /* "27480", "" when clamd names none */
    char signed_at[64]; /* the database's date as clamd writes it, "" likewise */
};

/* VERSION: 0 with V filled, or -1 with one line in err. */
int pec_clamd_version(const char *spec, int timeout, struct pec_clamd_version *v, char *err,
                      size_t errlen);

#endif
