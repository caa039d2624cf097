/*
 * selfcheck - what `pecmilter -n` checks beyond loading the configuration.
 *
 * Two groups, in the order an operator fixes them: the signing certificate
 * against the providers' index (its profile and validity are checked by
 * every load, runtime_check_cert), then the files the daemon's user must
 * read and the directories it must write.  The first problem found is the
 * one reported.
 */
#include "selfcheck.h"

#include "util/clamd.h"
#include "util/xalloc.h"

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_GROUPS 256

/* The identity the daemon will write files as. */
struct who {
    char name[64];
    uid_t uid;
    gid_t groups[MAX_GROUPS];
    int ngroups;
};

/* Peers find our signature's certificate in the index, under our name, for our domains. */
static int check_listed(const struct pec_config *cfg, const struct pec_signer *signer,
                        const struct pec_index *idx, char *err, size_t errlen)
{
    const char *sha1 = pec_signer_cert_sha1(signer), *src = cfg->index_source;
    size_t len;
    const unsigned char *der = pec_signer_cert_der(signer, &len);
    const struct pec_provider *p = pec_index_by_cert(idx, der, len);

    if (p == NULL && pec_index_by_cert_hash(idx, sha1) != NULL) {
        snprintf(err, errlen,
                 "%s: %s lists its hash %s but not the certificate itself "
                 "(providerCertificate;binary)",
                 cfg->sign_cert, src, sha1);
        return -1;
    }
    if (p == NULL) {
        snprintf(err, errlen,
                 "%s: not in the providers' index %s (no providerCertificateHash %s): "
                 "peers will take our mail for ordinary mail",
                 cfg->sign_cert, src, sha1);
        return -1;
    }
    if (strcmp(p->name, cfg->provider_name) != 0) {
        snprintf(err, errlen,
                 "%s: listed in %s under providerName \"%s\", not provider_name \"%s\"",
                 cfg->sign_cert, src, p->name, cfg->provider_name);
        return -1;
    }
    for (size_t i = 0; i < cfg->domains.n; i++) {
        if (!pec_provider_manages(p, cfg->domains.v[i])) {
            snprintf(err, errlen, "%s: \"%s\" lists no managedDomains %s, one of our domains", src,
                     p->name, cfg->domains.v[i]);
            return -1;
        }
    }
    return 0;
}

static int check_index(const struct runtime *rt, char *err, size_t errlen)
{
    struct pec_index *idx = runtime_index(rt);
    int rc = check_listed(rt->cfg, rt->signer, idx, err, errlen);

    pec_index_free(idx);
    return rc;
}

static int who_init(struct who *w, const char *user, char *err, size_t errlen)
{
    struct passwd *pw = *user ? getpwnam(user) : getpwuid(geteuid());

    if (*user && pw == NULL) {
        snprintf(err, errlen, "user: no such user \"%s\"", user);
        return -1;
    }
    if (pw == NULL) {
        snprintf(w->name, sizeof(w->name), "uid %u", (unsigned)geteuid());
        w->uid = geteuid();
        w->ngroups = getgroups(MAX_GROUPS - 1, w->groups);
        w->groups[w->ngroups < 0 ? 0 : w->ngroups] = getegid();
        w->ngroups = w->ngroups < 0 ? 1 : w->ngroups + 1;
        return 0;
    }
    snprintf(w->name, sizeof(w->name), "%s", pw->pw_name);
    w->uid = pw->pw_uid;
    w->ngroups = MAX_GROUPS;
    if (getgrouplist(pw->pw_name, pw->pw_gid, w->groups, &w->ngroups) < 0) {
        w->groups[0] = pw->pw_gid;
        w->ngroups = 1;
    }
    return 0;
}

enum { MAY_SEARCH = 1, MAY_WRITE = 2, MAY_READ = 4 };

/* Does ST grant W every access in WANT (MAY_*), as the kernel would decide? */
static int may(const struct who *w, const struct stat *st, int want)
{
    int shift = 0;

    if (w->uid == 0)
        return 1;
    if (st->st_uid == w->uid)
        shift = 6;
    else
        for (int i = 0; i < w->ngroups; i++)
            if (w->groups[i] == st->st_gid)
                shift = 3;
    return ((int)(st->st_mode >> shift) & want) == want;
}

/* W must be able to enter every directory on the way to the existing PATH. */
static int check_reachable(const struct who *w, const char *path, const char *key, char *err,
                           size_t errlen)
{
    char *real = realpath(path, NULL);
    char *slash;
    int rc = 0;

    if (real == NULL)
        return 0; /* whoever opens it reports why */
    while (rc == 0 && (slash = strrchr(real, '/')) != NULL) {
        struct stat st;

        slash[slash == real] = '\0'; /* "/a/b" -> "/a" -> "/" */
        if (stat(real, &st) == 0 && !may(w, &st, MAY_SEARCH)) {
            snprintf(err, errlen, "%s: user %s cannot enter this directory (%s)", real, w->name,
                     key);
            rc = -1;
        }
        if (strcmp(real, "/") == 0)
            break;
    }
    free(real);
    return rc;
}

/* PATH (a file, or a directory of files) must be readable by W. */
static int check_readable(const struct who *w, const char *path, const char *key, char *err,
                          size_t errlen)
{
    struct stat st;

    if (*path == '\0' || stat(path, &st) != 0)
        return 0; /* optional and unset, or already reported by runtime_load() */
    if (!may(w, &st, S_ISDIR(st.st_mode) ? MAY_READ | MAY_SEARCH : MAY_READ)) {
        snprintf(err, errlen, "%s: user %s cannot read it (%s)", path, w->name, key);
        return -1;
    }
    return check_reachable(w, path, key, err, errlen);
}

/*
 * DIR must be a directory W can write.  When MAY_CREATE, a DIR that does not
 * exist yet is fine if W can create it in its parent.
 */
static int check_dir(const struct who *w, const char *dir, const char *key, int may_create,
                     char *err, size_t errlen)
{
    struct stat st;

    if (stat(dir, &st) != 0 && errno == ENOENT && may_create) {
        char *copy = xstrdup(dir);
        int rc = check_dir(w, dirname(copy), key, 0, err, errlen);

        free(copy);
        return rc;
    }
    if (stat(dir, &st) != 0) {
        snprintf(err, errlen, "%s: %s (the directory of %s)", dir, strerror(errno), key);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory (the directory of %s)", dir, key);
        return -1;
    }
    if (!may(w, &st, MAY_WRITE | MAY_SEARCH)) {
        snprintf(err, errlen, "%s: user %s cannot create files here (%s)", dir, w->name, key);
        return -1;
    }
    return check_reachable(w, dir, key, err, errlen);
}

/* The directory holding the file PATH. */
static int check_parent(const struct who *w, const char *path, const char *key, char *err,
                        size_t errlen)
{
    char *copy = xstrdup(path);
    int rc = check_dir(w, dirname(copy), key, 0, err, errlen);

    free(copy);
    return rc;
}

/* A milter or LMTP socket: only a unix socket has a directory to check. */
static int check_socket(const struct who *w, const char *spec, const char *key, char *err,
                        size_t errlen)
{
    if (strncmp(spec, "unix:", 5) == 0)
        return check_parent(w, spec + 5, key, err, errlen);
    if (strncmp(spec, "local:", 6) == 0)
        return check_parent(w, spec + 6, key, err, errlen);
    if (spec[0] == '/')
        return check_parent(w, spec, key, err, errlen);
    return 0;
}

/* The files the daemon reads and the directories it writes, as `user`. */
static int check_access(const struct pec_config *cfg, char *err, size_t errlen)
{
    const char *store = pec_store_file(cfg->store), *source; /* NULL: PostgreSQL */
    struct who w;

    if (who_init(&w, cfg->user, err, errlen) < 0)
        return -1;
    if (check_readable(&w, cfg->sign_cert, "sign_cert", err, errlen) < 0 ||
        check_readable(&w, cfg->sign_chain, "sign_chain", err, errlen) < 0 ||
        check_readable(&w, cfg->sign_key, "sign_key", err, errlen) < 0 ||
        check_readable(&w, cfg->trust_anchors, "trust_anchors", err, errlen) < 0 ||
        check_readable(&w, cfg->index_signer, "index_signer", err, errlen) < 0 ||
        check_readable(&w, cfg->index_tls_cert, "index_tls_cert", err, errlen) < 0 ||
        check_readable(&w, cfg->index_tls_key, "index_tls_key", err, errlen) < 0 ||
        check_readable(&w, cfg->index_tls_ca, "index_tls_ca", err, errlen) < 0 ||
        check_readable(&w, cfg->crl_file, "crl_file", err, errlen) < 0)
        return -1;
    if (check_socket(&w, cfg->milter_socket, "milter_socket", err, errlen) < 0 ||
        check_socket(&w, cfg->lmtp_socket, "lmtp_socket", err, errlen) < 0 ||
        (store != NULL && check_parent(&w, store, "store", err, errlen) < 0) ||
        check_dir(&w, cfg->seal_dir, "seal_dir", 1, err, errlen) < 0)
        return -1;
    if (pec_index_source_kind(cfg->index_source, &source) != PEC_SOURCE_LDIF &&
        check_dir(&w, cfg->index_cache, "index_cache", 1, err, errlen) < 0)
        return -1;
    if (cfg->spool_dir[0] != '\0' && check_dir(&w, cfg->spool_dir, "spool_dir", 0, err, errlen) < 0)
        return -1;
    /* the table is replaced whole: a file beside it, then rename */
    if (cfg->tls_policy_file[0] != '\0' &&
        check_parent(&w, cfg->tls_policy_file, "tls_policy_file", err, errlen) < 0)
        return -1;
    if (strcmp(cfg->antivirus, "none") != 0 &&
        check_dir(&w, cfg->quarantine_dir, "quarantine_dir", 1, err, errlen) < 0)
        return -1;
    return 0;
}

int selfcheck_antivirus(const struct pec_config *cfg, char *line, size_t len)
{
    struct pec_clamd_version v;
    char err[512];

    if (strcmp(cfg->antivirus, "none") == 0) {
        snprintf(line, len,
                 "antivirus = \"none\": nothing is scanned (the PEC rules want an "
                 "antivirus at the access and reception points)");
        return 0;
    }
    /* a question, not a scan: a few seconds tell */
    if (pec_clamd_version(cfg->clamd_socket, cfg->clamd_timeout < 5 ? (int)cfg->clamd_timeout : 5,
                          &v, err, sizeof(err)) < 0) {
        snprintf(line, len, "clamd does not answer (%s): mail is deferred until it does", err);
        return -1;
    }
    snprintf(line, len, "clamd at %s answers: %s, signatures %s%s%s", cfg->clamd_socket, v.engine,
             *v.database ? v.database : "of no official database", *v.signed_at ? " of " : "",
             v.signed_at);
    return 0;
}

int selfcheck(const struct runtime *rt, char *err, size_t errlen)
{
    /* the certificate's profile and validity: runtime_load() refused it already if wrong */
    if (rt->cert_warning[0] != '\0')
        printf("# warning: %s: %s\n", rt->cfg->sign_cert, rt->cert_warning);
    if (check_index(rt, err, errlen) < 0)
        return -1;
    return check_access(rt->cfg, err, errlen);
}
