/*
 * directory - the providers' index as this provider keeps it.  See
 * directory.h.
 *
 * Three modules meet here and each stays ignorant of the others' business:
 * util/fetch brings bytes (it knows nothing of PEC), message/index and
 * message/crl judge them (signature, syntax, schema, CRL issuers), and this
 * module decides which bytes to ask for, which to keep on disk and which
 * copy the daemon's threads see.  The copy in use is a reference-counted
 * pec_index carrying its CRLs; a refresh builds a complete new one and puts
 * it in place under the lock in one pointer swap, so a thread sees the old
 * copy or the new one, never a mixture, and keeps the one it took until it
 * drops it.
 */
#include "provider/directory.h"
#include "provider/tlspolicy.h"
#include "message/crl.h"
#include "util/fetch.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/* Far above any real directory or CRL: a bigger answer is a broken server. */
#define MAX_INDEX_BYTES (64 * 1024 * 1024)
#define MAX_CRL_BYTES (16 * 1024 * 1024)
#define CONNECT_TIMEOUT 20
#define INDEX_TIMEOUT 300
#define CRL_TIMEOUT 60

struct pec_directory {
    struct pec_config *cfg;
    const struct pec_trust *trust;   /* the trust anchors: CRL issuers chain to them */
    const struct pec_signer *signer; /* signs an LDAP copy for the cache; NULL in tools */
    struct pec_trust *pinned;        /* who may have signed the copy we read */
    enum pec_index_source kind;
    const char *where;
    char *cache; /* the cached copy's path, NULL for an ldif: source */
    unsigned char **issuers;
    size_t *issuer_len;
    size_t nissuers;

    pthread_mutex_t lock;
    struct pec_index *current;
    time_t fetched_at;
};

enum pec_index_source pec_index_source_kind(const char *spec, const char **where)
{
    static const struct {
        const char *prefix;
        size_t keep; /* of the prefix, kept in WHERE: a URL keeps its scheme */
        enum pec_index_source kind;
    } kinds[] = {
        {"file:", 0, PEC_SOURCE_FILE},     {"ldif:", 0, PEC_SOURCE_LDIF},
        {"https://", 8, PEC_SOURCE_HTTPS}, {"ldap://", 7, PEC_SOURCE_LDAP},
        {"ldaps://", 8, PEC_SOURCE_LDAP},
    };

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i].prefix);

        if (strncasecmp(spec, kinds[i].prefix, n) == 0 && spec[n] != '\0') {
            *where = spec + n - kinds[i].keep;
            return kinds[i].kind;
        }
    }
    *where = spec;
    return PEC_SOURCE_BAD;
}

char *pec_directory_copy_path(const struct pec_config *cfg)
{
    const char *where;
    enum pec_index_source kind = pec_index_source_kind(cfg->index_source, &where);

    if (kind == PEC_SOURCE_LDIF)
        return xstrdup(where);
    return xasprintf("%s/%s", cfg->index_cache,
                     kind == PEC_SOURCE_LDAP ? "index-ldap.p7m" : "index.p7m");
}

/* ---------------------------------------------------------------- files */

static int read_file(const char *path, size_t max, unsigned char **buf, size_t *len, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 65536;
    ssize_t got;

    *buf = NULL;
    *len = 0;
    if (fd < 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    *buf = xmalloc(cap + 1);
    while ((got = read(fd, *buf + *len, cap - *len)) > 0) {
        *len += (size_t)got;
        if (*len > max)
            break;
        if (*len == cap)
            *buf = xrealloc(*buf, (cap *= 2) + 1);
    }
    close(fd);
    if (got < 0 || *len > max) {
        pec_seterr(err, errlen, "%s: %s", path, got < 0 ? strerror(errno) : "far too large");
        free(*buf);
        *buf = NULL;
        return -1;
    }
    (*buf)[*len] = '\0';
    return 0;
}

/* DATA to PATH in DIR, durably and whole: temporary file, fsync, rename. */
static int write_file(const char *dir, const char *path, const unsigned char *data, size_t len,
                      char *err, size_t errlen)
{
    char *tmp = xasprintf("%s.new", path);
    int fd, rc = -1;
    size_t done = 0;

    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        pec_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        free(tmp);
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    while (fd >= 0 && done < len) {
        ssize_t n = write(fd, data + done, len - done);

        if (n <= 0)
            break;
        done += (size_t)n;
    }
    if (fd >= 0 && done == len && fsync(fd) == 0 && close(fd) == 0) {
        fd = -1;
        rc = rename(tmp, path);
    }
    if (rc != 0) {
        pec_seterr(err, errlen, "%s: %s", fd >= 0 || done < len ? tmp : path, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

static time_t mtime(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? st.st_mtime : 0;
}

/* ---------------------------------------------------------------- set-up */

static void fetch_opts(const struct pec_directory *d, struct pec_fetch_opts *o, int for_crl,
                       int (*cancel)(void *), void *arg)
{
    memset(o, 0, sizeof(*o));
    o->ca_file = d->cfg->index_tls_ca;
    o->client_cert = for_crl ? "" : d->cfg->index_tls_cert;
    o->client_key = for_crl ? "" : d->cfg->index_tls_key;
    o->connect_timeout = CONNECT_TIMEOUT;
    o->timeout = for_crl ? CRL_TIMEOUT : INDEX_TIMEOUT;
    o->max_bytes = for_crl ? MAX_CRL_BYTES : MAX_INDEX_BYTES;
    o->cancel = cancel;
    o->cancel_arg = arg;
}

struct pec_directory *pec_directory_open(const struct pec_config *cfg,
                                         const struct pec_trust *trust,
                                         const struct pec_signer *signer, char *err, size_t errlen)
{
    struct pec_directory *d = xcalloc(1, sizeof(*d));
    const char *pin_key, *pin;
    char why[768];

    d->cfg = pec_config_ref((struct pec_config *)cfg);
    d->trust = trust;
    d->signer = signer;
    d->kind = pec_index_source_kind(cfg->index_source, &d->where);
    pthread_mutex_init(&d->lock, NULL);
    if (d->kind == PEC_SOURCE_BAD) {
        pec_seterr(err, errlen,
                   "index_source: \"%s\" is not file:, https://, ldap://, ldaps:// or "
                   "ldif:",
                   cfg->index_source);
        goto fail;
    }
    if (d->kind != PEC_SOURCE_LDIF)
        d->cache = pec_directory_copy_path(cfg);
    /* an LDAP copy is signed by us for the cache; a distributed one by the authority */
    pin_key = d->kind == PEC_SOURCE_LDAP ? "sign_cert" : "index_signer";
    pin = d->kind == PEC_SOURCE_LDAP ? cfg->sign_cert : cfg->index_signer;
    if (d->kind != PEC_SOURCE_LDIF &&
        (d->pinned = pec_trust_load_pinned(pin, why, sizeof(why))) == NULL) {
        pec_seterr(err, errlen, "%s: %s", pin_key, why);
        goto fail;
    }
    if (cfg->sign_chain[0] != '\0' && pec_pem_certs(cfg->sign_chain, &d->issuers, &d->issuer_len,
                                                    &d->nissuers, why, sizeof(why)) < 0) {
        pec_seterr(err, errlen, "sign_chain: %s", why);
        goto fail;
    }
    return d;

fail:
    pec_directory_close(d);
    return NULL;
}

void pec_directory_close(struct pec_directory *d)
{
    if (d == NULL)
        return;
    pec_index_free(d->current);
    pec_trust_free(d->pinned);
    for (size_t i = 0; i < d->nissuers; i++)
        free(d->issuers[i]);
    free(d->issuers);
    free(d->issuer_len);
    free(d->cache);
    pthread_mutex_destroy(&d->lock);
    pec_config_unref(d->cfg);
    free(d);
}

/* ---------------------------------------------------------------- the index */

/* The verified index in BYTES as the cache or the source holds it. */
static struct pec_index *judge(const struct pec_directory *d, const unsigned char *bytes,
                               size_t len, const char *name, int from_cache, char *err,
                               size_t errlen)
{
    if (d->kind == PEC_SOURCE_LDIF || (d->kind == PEC_SOURCE_LDAP && !from_cache))
        return pec_index_parse((const char *)bytes, len, name, err, errlen);
    return pec_index_parse_signed(bytes, len, name, d->pinned, PEC_INDEX_BY_AUTHORITY, err, errlen);
}

static int fetch_source(const struct pec_directory *d, int (*cancel)(void *), void *arg,
                        unsigned char **bytes, size_t *len, char *err, size_t errlen)
{
    struct pec_fetch_opts o;

    if (d->kind == PEC_SOURCE_FILE || d->kind == PEC_SOURCE_LDIF)
        return read_file(d->where, MAX_INDEX_BYTES, bytes, len, err, errlen);
    fetch_opts(d, &o, 0, cancel, arg);
    return pec_fetch(d->where, &o, bytes, len, err, errlen);
}

/*
 * BYTES, fetched and judged good, into the cache: as they came when signed, signed
 * by us when they came from LDAP.  Not at all in a tool (no SIGNER): run as another
 * user, it would leave a copy the daemon cannot read or replace.
 */
static int keep(struct pec_directory *d, const unsigned char *bytes, size_t len, char *err,
                size_t errlen)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    int rc;

    if (d->cache == NULL || d->signer == NULL)
        return 0;
    if (d->kind == PEC_SOURCE_LDAP &&
        pec_smime_sign_attached(d->signer, bytes, len, time(NULL), &der, &derlen, err, errlen) < 0)
        return -1;
    rc = write_file(d->cfg->index_cache, d->cache, der ? der : bytes, der ? derlen : len, err,
                    errlen);
    free(der);
    return rc;
}

/* A fresh index from the source, verified (and, when KEEP, kept); NULL with err. */
static struct pec_index *fetch_index(struct pec_directory *d, int keep_it, int (*cancel)(void *),
                                     void *arg, char *warn, size_t warnlen, char *err,
                                     size_t errlen)
{
    unsigned char *bytes;
    size_t len;
    struct pec_index *idx;
    char why[1024];

    if (fetch_source(d, cancel, arg, &bytes, &len, err, errlen) < 0)
        return NULL;
    idx = judge(d, bytes, len, d->where, 0, err, errlen);
    if (idx != NULL && keep_it && keep(d, bytes, len, why, sizeof(why)) < 0)
        pec_seterr(warn, warnlen, "index_cache: the fresh copy is in use but not kept: %s", why);
    free(bytes);
    return idx;
}

/* The cached copy, verified; NULL with err. */
static struct pec_index *cached_index(const struct pec_directory *d, char *err, size_t errlen)
{
    unsigned char *bytes;
    size_t len;
    struct pec_index *idx;

    if (d->cache == NULL)
        return NULL;
    if (read_file(d->cache, MAX_INDEX_BYTES, &bytes, &len, err, errlen) < 0)
        return NULL;
    idx = judge(d, bytes, len, d->cache, 1, err, errlen);
    free(bytes);
    return idx;
}

/* ---------------------------------------------------------------- CRLs */

static char *crl_cache_path(const struct pec_directory *d, const char *url)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[41] = "";

    if (EVP_Digest(url, strlen(url), md, &mdlen, EVP_sha1(), NULL) && mdlen == 20)
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return xasprintf("%s/crl-%s.crl", d->cfg->index_cache, hex);
}

static void warn(struct pec_dir_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn(struct pec_dir_report *rep, const char *fmt, ...)
{
    va_list ap;

    if (rep == NULL || rep->nwarnings >= PEC_DIR_MAX_WARNINGS)
        return;
    va_start(ap, fmt);
    vsnprintf(rep->warning[rep->nwarnings++], sizeof(rep->warning[0]), fmt, ap);
    va_end(ap);
}

/* BYTES (named NAME) into SET; 0 when they were good CRLs. */
static int add_crl(const struct pec_directory *d, struct pec_crls *set, const unsigned char *bytes,
                   size_t len, const char *name, struct pec_dir_report *rep)
{
    char note[512], err[768];

    if (pec_crls_add(set, bytes, len, name, d->trust, (const unsigned char *const *)d->issuers,
                     d->issuer_len, d->nissuers, time(NULL), note, sizeof(note), err,
                     sizeof(err)) < 0) {
        warn(rep, "revocation: %s", err);
        return -1;
    }
    if (note[0] != '\0')
        warn(rep, "revocation: %s", note);
    return 0;
}

static void add_crl_file(const struct pec_directory *d, struct pec_crls *set, const char *path,
                         const char *key, struct pec_dir_report *rep)
{
    unsigned char *bytes;
    size_t len;
    char err[768];

    if (read_file(path, MAX_CRL_BYTES, &bytes, &len, err, sizeof(err)) < 0) {
        warn(rep, "%s: %s", key, err);
        return;
    }
    add_crl(d, set, bytes, len, path, rep);
    free(bytes);
}

/* One distribution point's CRL, fetched, and kept when good; 0 when it is in SET. */
static int fresh_crl(const struct pec_directory *d, struct pec_crls *set, const char *url,
                     const char *path, int (*cancel)(void *), void *arg, struct pec_dir_report *rep)
{
    struct pec_fetch_opts o;
    unsigned char *bytes;
    size_t len;
    char err[768];
    int rc;

    fetch_opts(d, &o, 1, cancel, arg);
    if (pec_fetch(url, &o, &bytes, &len, err, sizeof(err)) < 0) {
        warn(rep, "revocation: cannot fetch the CRL %s (the one kept stays in use, if any)", err);
        return -1;
    }
    rc = add_crl(d, set, bytes, len, url, rep);
    if (rc == 0 && d->signer != NULL &&
        write_file(d->cfg->index_cache, path, bytes, len, err, sizeof(err)) < 0)
        warn(rep, "index_cache: a fresh CRL is in use but not kept: %s", err);
    free(bytes);
    return rc;
}

/* One distribution point: fetched (FETCH) and kept, else the copy kept before. */
static void one_crl(const struct pec_directory *d, struct pec_crls *set, const char *url, int fetch,
                    int (*cancel)(void *), void *arg, struct pec_dir_report *rep)
{
    char *path = crl_cache_path(d, url);

    if ((!fetch || fresh_crl(d, set, url, path, cancel, arg, rep) < 0) && access(path, F_OK) == 0)
        add_crl_file(d, set, path, "index_cache", rep);
    free(path);
}

/* The CRLs for the certificates IDX lists, crl_file's too. */
static struct pec_crls *gather_crls(const struct pec_directory *d, const struct pec_index *idx,
                                    int fetch, int (*cancel)(void *), void *arg,
                                    struct pec_dir_report *rep)
{
    struct pec_crls *set = pec_crls_new();
    char **seen = NULL;
    size_t nseen = 0;

    for (size_t i = 0; i < pec_index_count(idx); i++) {
        const struct pec_provider *p = pec_index_provider(idx, i);

        for (size_t k = 0; k < p->ncerts; k++) {
            char **urls;
            size_t n, j;

            pec_cert_crl_urls(p->certs[k].der, p->certs[k].len, &urls, &n);
            for (size_t u = 0; u < n; u++) {
                for (j = 0; j < nseen && strcmp(seen[j], urls[u]) != 0; j++)
                    ;
                if (j < nseen) {
                    free(urls[u]);
                    continue;
                }
                one_crl(d, set, urls[u], fetch, cancel, arg, rep);
                seen = xrealloc(seen, (nseen + 1) * sizeof(*seen));
                seen[nseen++] = urls[u];
            }
            free(urls);
        }
    }
    for (size_t j = 0; j < nseen; j++)
        free(seen[j]);
    free(seen);
    if (d->cfg->crl_file[0] != '\0')
        add_crl_file(d, set, d->cfg->crl_file, "crl_file", rep);
    return set;
}

/* ---------------------------------------------------------------- in use */

/* IDX (with its CRLs) becomes the copy in use. */
static void install(struct pec_directory *d, struct pec_index *idx, time_t fetched_at)
{
    struct pec_index *old;

    pthread_mutex_lock(&d->lock);
    old = d->current;
    d->current = idx;
    d->fetched_at = fetched_at;
    pthread_mutex_unlock(&d->lock);
    pec_index_free(old);
}

struct pec_index *pec_directory_index(struct pec_directory *d)
{
    struct pec_index *idx;

    pthread_mutex_lock(&d->lock);
    idx = d->current ? pec_index_ref(d->current) : NULL;
    pthread_mutex_unlock(&d->lock);
    return idx;
}

time_t pec_directory_fetched_at(struct pec_directory *d)
{
    time_t t;

    pthread_mutex_lock(&d->lock);
    t = d->fetched_at;
    pthread_mutex_unlock(&d->lock);
    return t;
}

int pec_directory_load(struct pec_directory *d, int may_fetch, struct pec_dir_report *rep,
                       char *err, size_t errlen)
{
    struct pec_index *idx = NULL;
    char why[1024] = "", fwhy[1024], w[1024] = "";
    time_t at = 0;

    memset(rep, 0, sizeof(*rep));
    if (d->kind == PEC_SOURCE_LDIF)
        warn(rep,
             "index_source: %s is an unsigned LDIF, taken as it is: a test setting, never "
             "a provider's",
             d->where);
    else if ((idx = cached_index(d, why, sizeof(why))) != NULL)
        at = mtime(d->cache);
    else if (access(d->cache, F_OK) == 0)
        warn(rep, "index_cache: the kept copy is not used: %s", why);
    if (idx == NULL && (may_fetch || d->kind == PEC_SOURCE_LDIF)) {
        idx = fetch_index(d, 0, NULL, NULL, w, sizeof(w), fwhy, sizeof(fwhy));
        at = time(NULL);
        if (idx == NULL)
            pec_seterr(err, errlen, "index_source: %s", fwhy);
        else if (w[0] != '\0')
            warn(rep, "%s", w);
    } else if (idx == NULL) {
        pec_seterr(err, errlen, "index_source: no verified copy in %s%s%s", d->cache,
                   why[0] ? ": " : "", why);
    }
    if (idx == NULL)
        return -1;
    rep->index_ok = 1;
    pec_index_set_crls(idx, gather_crls(d, idx, 0, NULL, NULL, rep));
    rep->providers = pec_index_count(idx);
    rep->crls = pec_crls_count(pec_index_crls(idx));
    install(d, idx, at);
    return 0;
}

/* Do A and B manage the same domains? */
static int same_domains(const struct pec_index *a, const struct pec_index *b)
{
    size_t na = 0, nb = 0;

    if (a == NULL || b == NULL)
        return a == b;
    for (size_t i = 0; i < pec_index_count(a); i++) {
        const struct pec_provider *p = pec_index_provider(a, i);

        na += p->ndomains;
        for (size_t k = 0; k < p->ndomains; k++)
            if (pec_index_by_domain(b, p->domains[k]) == NULL)
                return 0;
    }
    for (size_t i = 0; i < pec_index_count(b); i++)
        nb += pec_index_provider(b, i)->ndomains;
    return na == nb;
}

/* tls_policy_file for the copy in use, rewritten only when it changes. */
static void update_tls_policy(struct pec_directory *d, struct pec_dir_report *rep)
{
    struct pec_index *idx;
    char err[600], *text;

    if (d->cfg->tls_policy_file[0] == '\0')
        return;
    idx = pec_directory_index(d);
    text = pec_tls_policy(d->cfg, idx, d->cfg->tls_policy_format);
    rep->tls_policy = pec_tls_policy_install(d->cfg->tls_policy_file, text, err, sizeof(err));
    if (rep->tls_policy < 0)
        warn(rep, "tls_policy_file: cannot write the MTA's TLS policy: %s", err);
    free(text);
    pec_index_free(idx);
}

int pec_directory_refresh(struct pec_directory *d, int (*cancel)(void *), void *arg,
                          struct pec_dir_report *rep)
{
    struct pec_index *fresh, *base, *old;
    char w[1024] = "", why[1024];
    time_t at;

    memset(rep, 0, sizeof(*rep));
    fresh = fetch_index(d, 1, cancel, arg, w, sizeof(w), rep->index_err, sizeof(rep->index_err));
    if (w[0] != '\0')
        warn(rep, "%s", w);
    at = fresh != NULL ? time(NULL) : pec_directory_fetched_at(d);
    /* without a fresh index, the CRLs still come fresh, on the copy kept */
    base = fresh != NULL ? fresh : cached_index(d, why, sizeof(why));
    if (base == NULL)
        return -1;
    rep->index_ok = fresh != NULL;
    pec_index_set_crls(base, gather_crls(d, base, 1, cancel, arg, rep));
    rep->providers = pec_index_count(base);
    rep->crls = pec_crls_count(pec_index_crls(base));
    old = pec_directory_index(d);
    rep->domains_changed = fresh != NULL && !same_domains(old, fresh);
    pec_index_free(old);
    install(d, base, at);
    update_tls_policy(d, rep);
    return rep->index_ok ? 0 : -1;
}
