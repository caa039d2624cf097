/*
 * directory - the providers' index as this provider keeps it (pec-rules.md
 * §7.2): where it comes from, the last good copy on disk, the CRLs of the
 * certificates it lists, and the copy every thread uses.
 *
 * index_source names one of
 *   file:PATH       the signed whole-directory LDIF (.p7m) as the authority
 *                   distributes it, copied here by whatever means;
 *   https://...     the same fetched over HTTPS, our client certificate
 *                   presented (index_tls_cert, index_tls_key), the server
 *                   checked against index_tls_ca;
 *   ldap(s)://...   the central LDAP directory read with the RFC 6109 schema,
 *                   over LDAPS or StartTLS (never in the clear), the server
 *                   checked the same way;
 *   ldif:PATH       an unsigned LDIF taken as it is: tests only (test_mode).
 * A signed index is verified against index_signer (pinned: the authority's
 * signing certificate, or its CA), never against the system's public CAs,
 * before anything in it is used.  An LDAP answer has no signature of its
 * own: it is trusted for the TLS server check, and kept on disk signed with
 * our own PEC key, so the copy read back at the next start is verified like
 * the others (against sign_cert).
 *
 * The last good copy lives in index_cache (a directory): index.p7m, or
 * index-ldap.p7m for an LDAP source, and one crl-<sha1 of the URL>.crl per
 * CRL distribution point.  A daemon starts from that copy and fetches only
 * when there is none; the refresh (the first right after start) (the scheduler's, every
 * index_refresh) fetches the source, verifies it, fetches the CRLs of every certificate the index
 * lists (a CRL that cannot be fetched stays in use from the cache), adds crl_file, writes the cache
 * and only then puts the new copy in place, whole.  A failure at any step keeps the copy in use and
 * says why.  The age of the copy is the cache file's: since the last good fetch.
 *
 * Thread safety: pec_directory_index() may be called from any thread while
 * one thread refreshes.
 */
#ifndef PEC_DIRECTORY_H
#define PEC_DIRECTORY_H

#include <stddef.h>
#include <time.h>

#include "message/index.h"
#include "message/smime.h"
#include "provider/conf.h"

enum pec_index_source {
    PEC_SOURCE_FILE,
    PEC_SOURCE_HTTPS,
    PEC_SOURCE_LDAP,
    PEC_SOURCE_LDIF, /* unsigned: tests only */
    PEC_SOURCE_BAD,
};

/* What kind of source SPEC (an index_source value) names; *WHERE: the path or URL. */
enum pec_index_source pec_index_source_kind(const char *spec, const char **where);

struct pec_directory;

/*
 * Set up for CFG: the index_signer trust, the certificates that may have issued a
 * CRL (sign_chain), the TLS settings.  TRUST (the trust anchors) must outlive the
 * directory; SIGNER (our PEC key) may be NULL in a tool, which then never writes the
 * cache (run as another user, it would leave files the daemon cannot replace).
 * Nothing is read yet.  NULL with "key: problem" in err.
 */
struct pec_directory *pec_directory_open(const struct pec_config *cfg,
                                         const struct pec_trust *trust,
                                         const struct pec_signer *signer, char *err, size_t errlen);
void pec_directory_close(struct pec_directory *d);

struct pec_dir_report;

/*
 * The copy to start from: the cache when it verifies, else (MAY_FETCH) the source;
 * with the CRLs in the cache and crl_file.  Nothing is written: a daemon loads before
 * it drops its privileges, and its files must be its user's (the first refresh keeps
 * what was fetched).  0,
 * with what is worth a warning in REP (a cache that did not verify, an unsigned test
 * source, a CRL that would not load); -1 with "index_source: ..." in err.
 */
int pec_directory_load(struct pec_directory *d, int may_fetch, struct pec_dir_report *rep,
                       char *err, size_t errlen);

/* The copy in use, with a reference the caller drops (pec_index_free). */
struct pec_index *pec_directory_index(struct pec_directory *d);

/* When the copy in use was fetched and verified (the cache file's time). */
time_t pec_directory_fetched_at(struct pec_directory *d);

#define PEC_DIR_MAX_WARNINGS 8

struct pec_dir_report {
    int index_ok;         /* a fresh index was fetched, verified and put in place */
    char index_err[1024]; /* why not */
    size_t providers;     /* in the copy now in use */
    int domains_changed;  /* the fresh copy's managedDomains differ from the old one's */
    int tls_policy;       /* tls_policy_file: 1 rewritten, 0 unchanged, -1 failed (a warning) */
    size_t crls;          /* CRLs now in use */
    char warning[PEC_DIR_MAX_WARNINGS][512]; /* CRLs that could not be refreshed */
    int nwarnings;
};

/*
 * Fetch, verify and put in place a fresh copy and its CRLs (see above); with
 * tls_policy_file set, then write the MTA's TLS policy table for the copy now
 * in use when it is not what the file holds (provider/tlspolicy.h): new
 * managedDomains, or no file yet.  CANCEL (may be NULL) stops a transfer when
 * it returns non-zero.  Fills REP; returns 0 when the index itself was
 * refreshed, -1 when the old one stays (REP->index_err).
 */
int pec_directory_refresh(struct pec_directory *d, int (*cancel)(void *), void *arg,
                          struct pec_dir_report *rep);

/* The file whose time is the copy's age for CFG: the cache, or an ldif: source. */
char *pec_directory_copy_path(const struct pec_config *cfg);

#endif
