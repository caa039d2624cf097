/*
 * antivirus - what the access and reception points ask of the antivirus and
 * how they answer when it cannot tell (pec-rules.md 2.2, 2.3, 8.4).
 *
 * pec_av_scan() scans a message as the configuration says: with antivirus
 * = "clamd", through clamd (util/clamd.h) within clamd_timeout seconds;
 * with "none", not at all.  Its verdict is one of four, and only CLEAN lets
 * a message be certified, passed on or delivered as clean: a scan that
 * failed for any reason (clamd down or slow, a size limit, an answer not
 * understood) is FAILED, answered per on_scan_error with a temporary
 * (tempfail, the default) or permanent (reject) SMTP refusal that carries no
 * PEC notice: neither the rules' formal errors nor a virus happened.
 *
 * What an infected message costs is each point's own (access.h,
 * reception.h); both keep it in the quarantine (store/quarantine.h) and
 * name it there, in the registro's virus field, by its SHA-256.
 */
#ifndef PEC_ANTIVIRUS_H
#define PEC_ANTIVIRUS_H

#include <stddef.h>

#include "provider/conf.h"
#include "util/spool.h"

enum pec_av_verdict {
    PEC_AV_OFF,      /* antivirus = "none": not scanned */
    PEC_AV_CLEAN,    /* scanned, nothing found */
    PEC_AV_INFECTED, /* WHAT names the finding */
    PEC_AV_FAILED,   /* not scanned: WHAT says why */
};

struct pec_av_result {
    enum pec_av_verdict verdict;
    char what[256];
    double ms; /* what the scan took, milliseconds */
};

/* "off", "clean", "infected", "unscanned" */
const char *pec_av_verdict_name(enum pec_av_verdict v);

/* Scan MSG per CFG into R. */
void pec_av_scan(const struct pec_config *cfg, const struct pec_spool *msg,
                 struct pec_av_result *r);

/*
 * The SMTP refusal of a message R says could not be scanned, per
 * on_scan_error: 451 4.7.0 or 554 5.7.0, and a text (Italian, then English)
 * that says so without clamd's internals, which go to the log.
 */
void pec_av_unscanned_reply(const struct pec_config *cfg, const char **rcode, const char **xcode,
                            char *text, size_t len);

/*
 * The registro's virus field: FINDING and where the quarantine keeps the
 * message, "Eicar-Test-Signature (quarantena <sha256>)".  Caller frees.
 */
char *pec_av_virus_field(const char *finding, const char *sha256);

#endif
