/*
 * conf - pecmilter's configuration: one schema table, loaded with libconfig.
 *
 * The schema below is the single place a key is declared.  The sample file
 * etc/pecmilter.conf and pecmilter.conf(5) document the same rows; a test
 * checks that the sample names every key of this table.
 */
#include "provider/conf.h"
#include "provider/directory.h"
#include "store/store.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum conf_type { T_STRING, T_INT, T_STRLIST, T_ROLEMAP, T_LOGINMAP };

struct conf_key {
    const char *name;
    enum conf_type type;
    const char *def; /* default, as text; NULL = none */
    int required;
    const char *choices; /* "a|b|c" for enumerated strings, else NULL */
    long long min;       /* for T_INT */
    size_t offset;
};

#define OFF(f) offsetof(struct pec_config, f)

static const struct conf_key schema[] = {
    {"provider_name", T_STRING, NULL, 1, NULL, 0, OFF(provider_name)},
    {"domains", T_STRLIST, NULL, 1, NULL, 0, OFF(domains)},
    {"service_address", T_STRING, NULL, 1, NULL, 0, OFF(service_address)},
    {"receipt_address", T_STRING, "", 0, NULL, 0, OFF(receipt_address)},
    {"node_id", T_INT, "1", 0, NULL, 0, OFF(node_id)},

    {"sign_cert", T_STRING, NULL, 1, NULL, 0, OFF(sign_cert)},
    {"sign_chain", T_STRING, "", 0, NULL, 0, OFF(sign_chain)},
    {"sign_key", T_STRING, NULL, 1, NULL, 0, OFF(sign_key)},
    {"sign_digest", T_STRING, "sha256", 0, "sha256|sha1", 0, OFF(sign_digest)},
    {"cert_warn_days", T_INT, "30", 0, NULL, 1, OFF(cert_warn_days)},
    {"trust_anchors", T_STRING, NULL, 1, NULL, 0, OFF(trust_anchors)},

    {"index_source", T_STRING, NULL, 1, NULL, 0, OFF(index_source)},
    {"index_signer", T_STRING, "", 0, NULL, 0, OFF(index_signer)},
    {"index_cache", T_STRING, "/var/lib/pecmilter/index", 0, NULL, 0, OFF(index_cache)},
    {"index_tls_cert", T_STRING, "", 0, NULL, 0, OFF(index_tls_cert)},
    {"index_tls_key", T_STRING, "", 0, NULL, 0, OFF(index_tls_key)},
    {"index_tls_ca", T_STRING, "", 0, NULL, 0, OFF(index_tls_ca)},
    {"index_refresh", T_INT, "21600", 0, NULL, 1, OFF(index_refresh)},
    {"index_max_age", T_INT, "172800", 0, NULL, 1, OFF(index_max_age)},
    {"crl_file", T_STRING, "", 0, NULL, 0, OFF(crl_file)},
    {"provider_unit", T_STRING, "", 0, NULL, 0, OFF(provider_unit)},
    {"ldif_location_url", T_STRING, "", 0, NULL, 0, OFF(ldif_location_url)},
    {"record_certs", T_STRLIST, NULL, 0, NULL, 0, OFF(record_certs)},
    {"tls_policy_file", T_STRING, "", 0, NULL, 0, OFF(tls_policy_file)},
    {"tls_policy_format", T_STRING, "postfix", 0, "postfix|sendmail", 0, OFF(tls_policy_format)},

    {"store", T_STRING, "/var/lib/pecmilter/pecmilter.db", 0, NULL, 0, OFF(store)},
    {"shared_storage", T_STRING, "no", 0, "yes|no", 0, OFF(shared_storage)},
    {"milter_socket", T_STRING, "unix:/run/pecmilter/milter.sock", 0, NULL, 0, OFF(milter_socket)},
    {"lmtp_socket", T_STRING, "unix:/run/pecmilter/lmtp.sock", 0, NULL, 0, OFF(lmtp_socket)},
    {"mailbox_backend", T_STRING, "maildir", 0, "maildir|lmtp", 0, OFF(mailbox_backend)},
    {"maildir_root", T_STRING, "/var/lib/pecmilter/mail", 0, NULL, 0, OFF(maildir_root)},
    {"maildir_marker_days", T_INT, "10", 0, NULL, 1, OFF(maildir_marker_days)},
    {"mailbox_lmtp", T_STRING, "", 0, NULL, 0, OFF(mailbox_lmtp)},
    {"roles", T_ROLEMAP, NULL, 0, "access|reception|passthrough", 0, OFF(roles)},
    {"default_role", T_STRING, "auto", 0, "auto|access|reception|passthrough", 0,
     OFF(default_role)},
    {"reinject", T_STRING, "smtp:127.0.0.1:10025", 0, NULL, 0, OFF(reinject)},
    {"reinject_sessions", T_INT, "4", 0, NULL, 1, OFF(reinject_sessions)},
    {"sender_logins", T_LOGINMAP, NULL, 0, NULL, 0, OFF(sender_logins)},
    {"submission_cleartext", T_STRING, "no", 0, "no|loopback", 0, OFF(submission_cleartext)},
    {"outbox_retry_max_backoff", T_INT, "300", 0, NULL, 1, OFF(outbox_retry_max_backoff)},
    {"spool_dir", T_STRING, "", 0, NULL, 0, OFF(spool_dir)},
    {"seal_dir", T_STRING, "/var/lib/pecmilter/registro", 0, NULL, 0, OFF(seal_dir)},
    {"retention_months", T_INT, "30", 0, NULL, 1, OFF(retention_months)},

    {"warning_after", T_INT, "43200", 0, NULL, 1, OFF(warning_after)},
    {"deadline_after", T_INT, "84600", 0, NULL, 1, OFF(deadline_after)},
    {"deadline_not_before", T_INT, "79200", 0, NULL, 1, OFF(deadline_not_before)},
    {"size_limit", T_INT, "31457280", 0, NULL, 1, OFF(size_limit)},
    {"ordinary_mail", T_STRING, "anomaly", 0, "anomaly|reject", 0, OFF(ordinary_mail)},
    {"on_internal_error", T_STRING, "tempfail", 0, "tempfail|reject", 0, OFF(on_internal_error)},

    {"antivirus", T_STRING, "clamd", 0, "clamd|none", 0, OFF(antivirus)},
    {"clamd_socket", T_STRING, "unix:/run/clamav/clamd.ctl", 0, NULL, 0, OFF(clamd_socket)},
    {"clamd_timeout", T_INT, "60", 0, NULL, 1, OFF(clamd_timeout)},
    {"on_scan_error", T_STRING, "tempfail", 0, "tempfail|reject", 0, OFF(on_scan_error)},
    {"quarantine_dir", T_STRING, "/var/lib/pecmilter/quarantine", 0, NULL, 0, OFF(quarantine_dir)},
    {"virus_retention_months", T_INT, "30", 0, NULL, 1, OFF(virus_retention_months)},

    {"timezone", T_STRING, "Europe/Rome", 0, NULL, 0, OFF(timezone)},
    {"fixed_clock", T_STRING, "", 0, NULL, 0, OFF(fixed_clock)},
    {"test_mode", T_STRING, "no", 0, "yes|no", 0, OFF(test_mode)},
    {"syslog_facility", T_STRING, "mail", 0,
     "mail|daemon|local0|local1|local2|local3|local4|local5|local6|local7", 0,
     OFF(syslog_facility)},
    {"user", T_STRING, "", 0, NULL, 0, OFF(user)},
    {"umask", T_STRING, "007", 0, NULL, 0, OFF(umask)},
};

#define NKEYS (sizeof(schema) / sizeof(schema[0]))

/*
 * Values a key's type would take that the PEC rules forbid: refused with the
 * rule, so the administrator learns why, not only that.
 */
static const struct {
    const char *key, *value, *rule;
} forbidden[] = {
    {"ordinary_mail", "accept",
     "a PEC mailbox receives ordinary mail only wrapped in a busta di anomalia, or not at all "
     "(pec-rules.md 2.3)"},
    {"on_internal_error", "accept",
     "no message may pass uncertified at the access point or unverified at the reception point "
     "(pec-rules.md 2.2, 2.3)"},
    {"submission_cleartext", "yes",
     "a user submits over TLS (pec-rules.md 8.5); only a client on this machine (loopback) "
     "may be let through in the clear"},
    {"on_scan_error", "accept",
     "a message nobody could scan is never certified, passed on or delivered as clean "
     "(pec-rules.md 8.4)"},
};

static const char *forbidden_rule(const char *key, const char *value)
{
    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
        if (strcmp(forbidden[i].key, key) == 0 && strcmp(forbidden[i].value, value) == 0)
            return forbidden[i].rule;
    return NULL;
}

/* Settings that are gone, and what to do instead. */
static const struct {
    const char *key, *instead;
} removed[] = {
    {"maildir_autocreate",
     "a PEC mailbox exists because the provider made it, never at its first delivery (an "
     "avvenuta consegna to an address nobody owns): make mailboxes with `pecctl mailbox add'"},
};

static const char *removed_key(const char *key)
{
    for (size_t i = 0; i < sizeof(removed) / sizeof(removed[0]); i++)
        if (strcmp(removed[i].key, key) == 0)
            return removed[i].instead;
    return NULL;
}

static const struct conf_key *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(schema[i].name, name) == 0)
            return &schema[i];
    return NULL;
}

static int in_choices(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    const char *p = choices;

    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && strncmp(p, value, len) == 0)
            return 1;
        if (bar == NULL)
            break;
        p = bar + 1;
    }
    return 0;
}

static const char *type_name(enum conf_type t)
{
    switch (t) {
    case T_STRING:
        return "a string";
    case T_INT:
        return "an integer";
    case T_STRLIST:
        return "a list of strings";
    case T_ROLEMAP:
        return "a group of daemon_name = \"role\" settings";
    case T_LOGINMAP:
        return "a list of { login = \"...\"; senders = [ ... ]; } groups";
    }
    return "?";
}

static void set_default(struct pec_config *cfg, const struct conf_key *k)
{
    char *base = (char *)cfg;

    switch (k->type) {
    case T_STRING:
        *(char **)(base + k->offset) = xstrdup(k->def ? k->def : "");
        break;
    case T_INT:
        *(long long *)(base + k->offset) = k->def ? strtoll(k->def, NULL, 10) : 0;
        break;
    case T_STRLIST:
    case T_ROLEMAP:
    case T_LOGINMAP:
        break;
    }
}

/* A string list setting S into L; 0, or -1 when an element is not a string. */
static int get_strlist(config_setting_t *s, struct pec_strlist *l)
{
    int n = config_setting_length(s);

    l->v = xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return -1;
        l->v[l->n++] = xstrdup(config_setting_get_string(e));
    }
    return 0;
}

/* One { login = "..."; senders = [ ... ]; } group of sender_logins into L. */
static int set_login(struct pec_login *l, const struct conf_key *k, config_setting_t *g,
                     const char *file, char *err, size_t errlen)
{
    int line = config_setting_source_line(g);

    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        pec_seterr(err, errlen, "%s:%d: %s: must be %s", file, line, k->name, type_name(k->type));
        return -1;
    }
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        int t = config_setting_type(m);

        if (strcmp(name, "login") == 0 && t == CONFIG_TYPE_STRING &&
            *config_setting_get_string(m) != '\0' && l->login == NULL) {
            l->login = xstrdup(config_setting_get_string(m));
        } else if (strcmp(name, "senders") == 0 &&
                   (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) && l->senders.v == NULL) {
            if (get_strlist(m, &l->senders) < 0) {
                pec_seterr(err, errlen, "%s:%d: %s.senders: must be a list of addresses", file,
                           config_setting_source_line(m), k->name);
                return -1;
            }
        } else {
            pec_seterr(err, errlen,
                       "%s:%d: %s: \"%s\" is not understood here (a group holds login = \"...\" "
                       "and senders = [ ... ])",
                       file, config_setting_source_line(m), k->name, name);
            return -1;
        }
    }
    if (l->login == NULL || l->senders.v == NULL) {
        pec_seterr(err, errlen, "%s:%d: %s: every group needs login and senders", file, line,
                   k->name);
        return -1;
    }
    return 0;
}

/* Store one setting's value; returns 0, or -1 with err set. */
static int set_value(struct pec_config *cfg, const struct conf_key *k, config_setting_t *s,
                     const char *file, char *err, size_t errlen)
{
    char *base = (char *)cfg;
    int line = config_setting_source_line(s);
    int t = config_setting_type(s);

    switch (k->type) {
    case T_STRING: {
        if (t != CONFIG_TYPE_STRING)
            goto wrong_type;
        const char *v = config_setting_get_string(s);
        const char *rule = forbidden_rule(k->name, v);
        if (rule != NULL) {
            pec_seterr(err, errlen, "%s:%d: %s: \"%s\" is not allowed: %s", file, line, k->name, v,
                       rule);
            return -1;
        }
        if (k->choices && !in_choices(k->choices, v)) {
            pec_seterr(err, errlen, "%s:%d: %s: \"%s\" is not one of %s", file, line, k->name, v,
                       k->choices);
            return -1;
        }
        char **slot = (char **)(base + k->offset);
        free(*slot);
        *slot = xstrdup(v);
        return 0;
    }
    case T_INT: {
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            goto wrong_type;
        long long v = config_setting_get_int64(s);
        if (v < k->min) {
            pec_seterr(err, errlen, "%s:%d: %s: %lld is below the minimum %lld", file, line,
                       k->name, v, k->min);
            return -1;
        }
        *(long long *)(base + k->offset) = v;
        return 0;
    }
    case T_STRLIST: {
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
            goto wrong_type;
        if (get_strlist(s, (struct pec_strlist *)(base + k->offset)) < 0)
            goto wrong_type;
        return 0;
    }
    case T_LOGINMAP: {
        /* ( ) is a list; an empty [ ] is accepted as "none" too */
        if (t != CONFIG_TYPE_LIST && !(t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0))
            goto wrong_type;
        struct pec_loginmap *m = (struct pec_loginmap *)(base + k->offset);
        int n = config_setting_length(s);
        m->v = xcalloc((size_t)n + 1, sizeof(*m->v));
        for (int i = 0; i < n; i++) {
            if (set_login(&m->v[m->n++], k, config_setting_get_elem(s, (unsigned)i), file, err,
                          errlen) < 0)
                return -1;
        }
        return 0;
    }
    case T_ROLEMAP: {
        if (t != CONFIG_TYPE_GROUP)
            goto wrong_type;
        struct pec_rolemap *m = (struct pec_rolemap *)(base + k->offset);
        int n = config_setting_length(s);
        m->daemon = xcalloc((size_t)n + 1, sizeof(char *));
        m->role = xcalloc((size_t)n + 1, sizeof(char *));
        for (int i = 0; i < n; i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            const char *v;
            if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                pec_seterr(err, errlen, "%s:%d: %s.%s: must be a string naming a role (%s)", file,
                           config_setting_source_line(e), k->name, config_setting_name(e),
                           k->choices);
                return -1;
            }
            v = config_setting_get_string(e);
            if (!in_choices(k->choices, v)) {
                pec_seterr(err, errlen, "%s:%d: %s.%s: \"%s\" is not one of %s", file,
                           config_setting_source_line(e), k->name, config_setting_name(e), v,
                           k->choices);
                return -1;
            }
            m->daemon[m->n] = xstrdup(config_setting_name(e));
            m->role[m->n] = xstrdup(v);
            m->n++;
        }
        return 0;
    }
    }
wrong_type:
    pec_seterr(err, errlen, "%s:%d: %s: must be %s", file, line, k->name, type_name(k->type));
    return -1;
}

static void free_strlist(struct pec_strlist *l)
{
    for (size_t j = 0; j < l->n; j++)
        free(l->v[j]);
    free(l->v);
}

static void free_values(struct pec_config *cfg)
{
    char *base = (char *)cfg;

    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &schema[i];
        switch (k->type) {
        case T_STRING:
            free(*(char **)(base + k->offset));
            break;
        case T_INT:
            break;
        case T_STRLIST:
            free_strlist((struct pec_strlist *)(base + k->offset));
            break;
        case T_LOGINMAP: {
            struct pec_loginmap *m = (struct pec_loginmap *)(base + k->offset);
            for (size_t j = 0; j < m->n; j++) {
                free(m->v[j].login);
                free_strlist(&m->v[j].senders);
            }
            free(m->v);
            break;
        }
        case T_ROLEMAP: {
            struct pec_rolemap *m = (struct pec_rolemap *)(base + k->offset);
            for (size_t j = 0; j < m->n; j++) {
                free(m->daemon[j]);
                free(m->role[j]);
            }
            free(m->daemon);
            free(m->role);
            break;
        }
        }
    }
}

/*
 * What the rules fix and only a test may change (test_mode = "yes"): the
 * clock, the 12 h and 24 h deadlines, the 30 months the log is kept, the
 * daily refresh of the providers' index and its signature.  Tests compress
 * time, purge young logs and read a hand-made index; a provider never does.
 */
static int check_production(const struct pec_config *cfg, const char *file, char *err,
                            size_t errlen)
{
    const char *why = NULL, *key = NULL;

    if (cfg->fixed_clock[0] != '\0') {
        key = "fixed_clock";
        why = "the provider's clock is the system's, kept within a second of UTC "
              "(pec-rules.md 3.5)";
    } else if (cfg->retention_months < 30) {
        key = "retention_months";
        why = "the log is kept 30 months (pec-rules.md 8.1): at least 30";
    } else if (cfg->virus_retention_months < 30) {
        key = "virus_retention_months";
        why = "infected messages are kept 30 months (pec-rules.md 8.4, DPR 68/2005 art. 12): "
              "at least 30";
    } else if (cfg->deadline_after > PEC_DAY) {
        key = "deadline_after";
        why = "the 24 h notice goes out by the 24 h deadline (pec-rules.md 4.9, 8.2): "
              "at most 86400";
    } else if (cfg->deadline_not_before < PEC_DAY - 2 * PEC_HOUR) {
        key = "deadline_not_before";
        why = "the 24 h notice goes out not before 22 h (pec-rules.md 4.9): at least 79200";
    } else if (cfg->warning_after > PEC_DAY / 2 || cfg->warning_after < PEC_DAY / 2 - PEC_HOUR) {
        key = "warning_after";
        why = "the 12 h notice is due when 12 h pass with no receipt (pec-rules.md 4.9): "
              "from 39600 to 43200";
    } else if (strncasecmp(cfg->index_source, "ldif:", 5) == 0) {
        key = "index_source";
        why = "the providers' index is taken signed by the authority, or from its directory "
              "over TLS, never as an unsigned file (pec-rules.md 7.2)";
    } else if (cfg->index_refresh > PEC_DAY || cfg->index_refresh < 60) {
        key = "index_refresh";
        why = "the local copy of the index is refreshed at least daily (pec-rules.md 7.2), "
              "and not so often that the authority's server is hammered: from 60 to 86400";
    }
    if (key == NULL)
        return 0;
    pec_seterr(err, errlen, "%s: %s: not allowed outside test_mode: %s", file, key, why);
    return -1;
}

/* index_source names a kind we read, with what that kind needs. */
static int index_consistency(const struct pec_config *cfg, const char *file, char *err,
                             size_t errlen)
{
    const char *where;
    enum pec_index_source kind = pec_index_source_kind(cfg->index_source, &where);

    if (kind == PEC_SOURCE_BAD) {
        pec_seterr(err, errlen,
                   "%s: index_source: \"%s\" is not file:PATH, https://..., ldap://..., "
                   "ldaps://... or ldif:PATH",
                   file, cfg->index_source);
        return -1;
    }
    if ((kind == PEC_SOURCE_FILE || kind == PEC_SOURCE_HTTPS) && cfg->index_signer[0] == '\0') {
        pec_seterr(err, errlen,
                   "%s: index_signer: required with a signed index_source: the certificate (or "
                   "CA) of whom signs the index, never the system's public CAs",
                   file);
        return -1;
    }
    if ((cfg->index_tls_cert[0] == '\0') != (cfg->index_tls_key[0] == '\0')) {
        pec_seterr(err, errlen, "%s: %s: index_tls_cert and index_tls_key go together", file,
                   cfg->index_tls_cert[0] == '\0' ? "index_tls_cert" : "index_tls_key");
        return -1;
    }
    return 0;
}

/*
 * A PostgreSQL store is several nodes' (or may become so): what they keep
 * in directories must be one directory for all of them, or a seal written
 * by one node is missing where another verifies the log, and a message one
 * node delivered is not in the mailbox another reads from.  Nothing here
 * can see whether a directory is shared: the administrator says so.
 */
static int nodes_consistency(const struct pec_config *cfg, const char *file, char *err,
                             size_t errlen)
{
    if (pec_store_file(cfg->store) != NULL || strcmp(cfg->shared_storage, "yes") == 0)
        return 0;
    pec_seterr(err, errlen,
               "%s: shared_storage: a PostgreSQL store wants seal_dir, quarantine_dir%s on storage"
               " every node sharing it mounts (or one node): say so with shared_storage = \"yes\"",
               file,
               strcmp(cfg->mailbox_backend, "maildir") == 0
                   ? " and maildir_root (or mailbox_backend \"lmtp\")"
                   : "");
    return -1;
}

/* Cross-key rules that a single row cannot express. */
static int check_consistency(struct pec_config *cfg, const char *file, char *err, size_t errlen)
{
    if (cfg->domains.n == 0) {
        pec_seterr(err, errlen, "%s: domains: at least one PEC domain is required", file);
        return -1;
    }
    if (strchr(cfg->service_address, '@') == NULL) {
        pec_seterr(err, errlen, "%s: service_address: \"%s\" is not a mail address", file,
                   cfg->service_address);
        return -1;
    }
    if (cfg->receipt_address[0] == '\0') {
        free(cfg->receipt_address);
        cfg->receipt_address = xstrdup(cfg->service_address);
    }
    if (strcmp(cfg->mailbox_backend, "lmtp") == 0 && cfg->mailbox_lmtp[0] == '\0') {
        pec_seterr(err, errlen, "%s: mailbox_lmtp: required when mailbox_backend is \"lmtp\"",
                   file);
        return -1;
    }
    if (index_consistency(cfg, file, err, errlen) < 0 ||
        nodes_consistency(cfg, file, err, errlen) < 0)
        return -1;
    if (cfg->deadline_not_before > cfg->deadline_after ||
        cfg->warning_after >= cfg->deadline_after) {
        pec_seterr(err, errlen,
                   "%s: warning_after < deadline_not_before <= deadline_after must hold", file);
        return -1;
    }
    return pec_config_is_test(cfg) ? 0 : check_production(cfg, file, err, errlen);
}

struct pec_config *pec_config_load(const char *file, char *err, size_t errlen)
{
    config_t lc;
    struct pec_config *cfg;
    config_setting_t *root;
    unsigned char seen[NKEYS] = {0};

    if (access(file, R_OK) != 0) {
        pec_seterr(err, errlen, "%s: cannot read configuration: %s", file, strerror(errno));
        return NULL;
    }
    config_init(&lc);
    if (!config_read_file(&lc, file)) {
        pec_seterr(err, errlen, "%s:%d: syntax error: %s",
                   config_error_file(&lc) ? config_error_file(&lc) : file, config_error_line(&lc),
                   config_error_text(&lc));
        config_destroy(&lc);
        return NULL;
    }

    cfg = xcalloc(1, sizeof(*cfg));
    cfg->refs = 1;
    cfg->path = xstrdup(file);
    for (size_t i = 0; i < NKEYS; i++)
        set_default(cfg, &schema[i]);

    root = config_root_setting(&lc);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct conf_key *k = find_key(name);
        if (k == NULL && removed_key(name) != NULL) {
            pec_seterr(err, errlen, "%s:%d: %s: removed: %s", file, config_setting_source_line(s),
                       name, removed_key(name));
            goto fail;
        }
        if (k == NULL) {
            pec_seterr(err, errlen, "%s:%d: %s: unknown setting", file,
                       config_setting_source_line(s), name);
            goto fail;
        }
        if (set_value(cfg, k, s, file, err, errlen) < 0)
            goto fail;
        seen[k - schema] = 1;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (schema[i].required && !seen[i]) {
            pec_seterr(err, errlen, "%s: %s: required setting is missing", file, schema[i].name);
            goto fail;
        }
    }
    if (check_consistency(cfg, file, err, errlen) < 0)
        goto fail;
    config_destroy(&lc);
    return cfg;

fail:
    config_destroy(&lc);
    pec_config_unref(cfg);
    return NULL;
}

struct pec_config *pec_config_ref(struct pec_config *cfg)
{
    __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST);
    return cfg;
}

void pec_config_unref(struct pec_config *cfg)
{
    if (cfg == NULL || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_SEQ_CST) > 0)
        return;
    free_values(cfg);
    free(cfg->path);
    free(cfg);
}

static void print_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void print_strlist(FILE *out, const struct pec_strlist *l)
{
    fputs("[ ", out);
    for (size_t j = 0; j < l->n; j++) {
        print_string(out, l->v[j]);
        fputs(j + 1 < l->n ? ", " : " ", out);
    }
    fputc(']', out);
}

void pec_config_print(const struct pec_config *cfg, FILE *out)
{
    const char *base = (const char *)cfg;

    fprintf(out, "# effective configuration of %s\n", cfg->path);
    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &schema[i];
        fprintf(out, "%s = ", k->name);
        switch (k->type) {
        case T_STRING:
            print_string(out, *(char *const *)(base + k->offset));
            break;
        case T_INT:
            fprintf(out, "%lld", *(const long long *)(base + k->offset));
            break;
        case T_STRLIST:
            print_strlist(out, (const struct pec_strlist *)(base + k->offset));
            break;
        case T_LOGINMAP: {
            const struct pec_loginmap *m = (const struct pec_loginmap *)(base + k->offset);
            fputs("( ", out);
            for (size_t j = 0; j < m->n; j++) {
                fputs("{ login = ", out);
                print_string(out, m->v[j].login);
                fputs("; senders = ", out);
                print_strlist(out, &m->v[j].senders);
                fputs(j + 1 < m->n ? "; }, " : "; } ", out);
            }
            fputc(')', out);
            break;
        }
        case T_ROLEMAP: {
            const struct pec_rolemap *m = (const struct pec_rolemap *)(base + k->offset);
            fputs("{ ", out);
            for (size_t j = 0; j < m->n; j++) {
                fprintf(out, "%s = ", m->daemon[j]);
                print_string(out, m->role[j]);
                fputs("; ", out);
            }
            fputc('}', out);
            break;
        }
        }
        fputs(";\n", out);
    }
}

const char *pec_config_role(const struct pec_config *cfg, const char *daemon_name,
                            int authenticated)
{
    if (daemon_name) {
        for (size_t i = 0; i < cfg->roles.n; i++)
            if (strcmp(cfg->roles.daemon[i], daemon_name) == 0)
                return cfg->roles.role[i];
    }
    if (strcmp(cfg->default_role, "auto") != 0)
        return cfg->default_role;
    return authenticated ? "access" : "reception";
}

int pec_config_may_send_as(const struct pec_config *cfg, const char *login, const char *address)
{
    if (login == NULL || *login == '\0' || address == NULL)
        return 0;
    if (strcasecmp(login, address) == 0)
        return 1;
    for (size_t i = 0; i < cfg->sender_logins.n; i++) {
        const struct pec_login *l = &cfg->sender_logins.v[i];
        if (strcasecmp(l->login, login) != 0)
            continue;
        for (size_t j = 0; j < l->senders.n; j++)
            if (strcasecmp(l->senders.v[j], address) == 0)
                return 1;
    }
    return 0;
}

int pec_config_is_test(const struct pec_config *cfg)
{
    return strcmp(cfg->test_mode, "yes") == 0;
}

int pec_config_is_our_domain(const struct pec_config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->domains.n; i++)
        if (strcasecmp(cfg->domains.v[i], domain) == 0)
            return 1;
    return 0;
}

int pec_check_readable_file(const char *path, char *err, size_t errlen)
{
    struct stat st;
    FILE *f;

    if (path == NULL || *path == '\0') {
        pec_seterr(err, errlen, "no file name given");
        return -1;
    }
    if (stat(path, &st) != 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        pec_seterr(err, errlen, "%s: not a regular file", path);
        return -1;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        pec_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

int pec_check_private_file(const char *path, char *err, size_t errlen)
{
    struct stat st;

    if (pec_check_readable_file(path, err, errlen) < 0)
        return -1;
    if (stat(path, &st) != 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        pec_seterr(err, errlen,
                   "%s: private key is accessible by group or others (mode %04o); chmod 600 it",
                   path, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}
