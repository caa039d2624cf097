/*
 * antivirus - the scan as configured, and the answer to one that failed
 * (see antivirus.h).
 */
#include "provider/antivirus.h"
#include "util/clamd.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *pec_av_verdict_name(enum pec_av_verdict v)
{
    switch (v) {
    case PEC_AV_OFF:
        return "off";
    case PEC_AV_CLEAN:
        return "clean";
    case PEC_AV_INFECTED:
        return "infected";
    case PEC_AV_FAILED:
        return "unscanned";
    }
    return "?";
}

void pec_av_scan(const struct pec_config *cfg, const struct pec_spool *msg, struct pec_av_result *r)
{
    struct pec_clamd_result c;
    struct timespec t0, t1;

    memset(r, 0, sizeof(*r));
    if (strcmp(cfg->antivirus, "clamd") != 0) {
        r->verdict = PEC_AV_OFF;
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pec_clamd_scan(cfg->clamd_socket, (int)cfg->clamd_timeout, msg, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    r->verdict = c.verdict == PEC_CLAMD_CLEAN   ? PEC_AV_CLEAN
                 : c.verdict == PEC_CLAMD_FOUND ? PEC_AV_INFECTED
                                                : PEC_AV_FAILED;
    snprintf(r->what, sizeof(r->what), "%s", c.verdict == PEC_CLAMD_CLEAN ? "" : c.what);
}

void pec_av_unscanned_reply(const struct pec_config *cfg, const char **rcode, const char **xcode,
                            char *text, size_t len)
{
    if (strcmp(cfg->on_scan_error, "reject") == 0) {
        *rcode = "554";
        *xcode = "5.7.0";
        snprintf(text, len,
                 "Messaggio non accettato: non e' stato possibile verificarlo con l'antivirus "
                 "(not accepted: the message could not be scanned for viruses)");
        return;
    }
    *rcode = "451";
    *xcode = "4.7.0";
    snprintf(text, len,
             "Non e' stato possibile verificare il messaggio con l'antivirus, riprovare piu' "
             "tardi (the message could not be scanned for viruses, try again later)");
}

char *pec_av_virus_field(const char *finding, const char *sha256)
{
    return xasprintf("%s (quarantena %s)", finding, sha256);
}
