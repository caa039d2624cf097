/*
 * conf - pecmilter's configuration: one schema table, loaded with libconfig.
 *
 * Every key the daemon and its tools understand is a row of the schema in
 * conf.c (name, type, default, whether required, what it means).  Loading
 * rejects unknown keys, wrong types, values outside a key's choices and
 * missing required keys, with a message naming file, line and key.  A loaded
 * configuration is immutable and reference-counted, so a milter connection
 * keeps the one it started with across a reload.
 */
#ifndef PEC_CONF_H
#define PEC_CONF_H

#include <stddef.h>
#include <stdio.h>

/* exit status for configuration errors, as sysexits.h EX_CONFIG */
#define PEC_EX_CONFIG 78

struct pec_strlist {
    char **v;
    size_t n;
};

/* an authenticated login and the further sender addresses it may use */
struct pec_login {
    char *login;
    struct pec_strlist senders;
};

struct pec_loginmap {
    struct pec_login *v;
    size_t n;
};

/* {daemon_name} macro value -> role name */
struct pec_rolemap {
    char **daemon;
    char **role;
    size_t n;
};

struct pec_config {
    char *path;
    int refs;

    char *provider_name;
    struct pec_strlist domains;
    char *service_address;
    char *receipt_address;
    long long node_id;

    char *sign_cert;
    char *sign_chain;
    char *sign_key;
    char *sign_digest;
    long long cert_warn_days; /* the signing certificate's expiry this close is warned of */
    char *trust_anchors;

    char *index_source; /* file:, https://, ldap(s):// or (tests) ldif: (provider/directory.h) */
    char *index_signer;
    char *index_cache;
    char *index_tls_cert;
    char *index_tls_key;
    char *index_tls_ca;
    long long index_refresh;
    long long index_max_age;
    char *crl_file;
    char *provider_unit;             /* our record's providerUnit (pecctl index record) */
    char *ldif_location_url;         /* our record's LDIFLocationURL */
    struct pec_strlist record_certs; /* further certificates our record lists (renewal) */
    char *tls_policy_file;           /* the MTA's TLS policy table, kept from the index */
    char *tls_policy_format;         /* "postfix" or "sendmail" (provider/tlspolicy.h) */

    char *store;
    char *shared_storage; /* "yes": the directories are the same on every node (PostgreSQL store) */
    char *milter_socket;
    char *lmtp_socket;
    char *mailbox_backend;
    char *maildir_root;
    long long maildir_marker_days;
    char *mailbox_lmtp;
    struct pec_rolemap roles;
    char *default_role;
    char *reinject;
    long long reinject_sessions;
    struct pec_loginmap sender_logins;
    char *submission_cleartext; /* "no", or "loopback": clients on this machine need no TLS */

    long long warning_after;
    long long deadline_after;
    long long deadline_not_before;
    long long size_limit;
    char *ordinary_mail;
    char *on_internal_error;

    char *antivirus;         /* "clamd", or "none": nothing is scanned */
    char *clamd_socket;      /* where clamd listens (util/sock.h forms) */
    long long clamd_timeout; /* seconds one scan may take */
    char *on_scan_error;     /* "tempfail" or "reject": a message nobody could scan */
    char *quarantine_dir;    /* the virus store (store/quarantine.h) */
    long long virus_retention_months;

    char *timezone;
    char *fixed_clock;
    char *test_mode; /* "yes": the test-only settings are allowed (pec_config_is_test) */
    char *syslog_facility;
    char *user;
    char *umask;

    char *spool_dir;
    char *seal_dir;
    long long retention_months;
    long long outbox_retry_max_backoff;
};

/*
 * Load and validate FILE.  On error returns NULL and writes one line
 * ("FILE:LINE: key: problem") to err.
 */
struct pec_config *pec_config_load(const char *file, char *err, size_t errlen);

struct pec_config *pec_config_ref(struct pec_config *cfg);
void pec_config_unref(struct pec_config *cfg);

/* Write the effective configuration, defaults included, in libconfig syntax. */
void pec_config_print(const struct pec_config *cfg, FILE *out);

/* Role for a connection: by {daemon_name}, else the default_role rule. */
const char *pec_config_role(const struct pec_config *cfg, const char *daemon_name,
                            int authenticated);

/*
 * May the client authenticated as LOGIN use ADDRESS as its sender?  Yes when
 * ADDRESS is LOGIN itself or one of the addresses sender_logins lists for
 * LOGIN (all compared case-insensitively).
 */
int pec_config_may_send_as(const struct pec_config *cfg, const char *login, const char *address);

#define PEC_HOUR 3600LL
#define PEC_DAY (24 * PEC_HOUR)

/*
 * Is this a test configuration (test_mode = "yes")?  Only then are the
 * settings the rules fix open to change (fixed_clock, deadlines shorter than
 * the rules', retention under 30 months); the daemon says so in every log
 * line and in pecctl status.
 */
int pec_config_is_test(const struct pec_config *cfg);

/* Is DOMAIN (case-insensitive) one of our PEC domains? */
int pec_config_is_our_domain(const struct pec_config *cfg, const char *domain);

/*
 * The signing key must exist, be a regular file we can read, and not be
 * readable or writable by group or others.  Returns 0, or -1 with err set.
 */
int pec_check_private_file(const char *path, char *err, size_t errlen);

/* A file that must exist and be readable.  Returns 0, or -1 with err set. */
int pec_check_readable_file(const char *path, char *err, size_t errlen);

#endif
