/*
 * index - the providers' index (Indice dei gestori di PEC, pec-rules.md §7).
 *
 * Reading happens in three layers: physical lines are unfolded into logical lines
 * (next_line), a logical line is split into attribute and value (split_attrval), and
 * values are checked and stored into the record being built (record_add).  After the
 * whole text is read, two sorted tables (domain -> record, hash -> record) are built
 * for lookups by binary search.  Nothing changes after that, which is what lets many
 * threads share an index without locks.  See index.h.
 */
#include "message/index.h"
#include "message/crl.h"
#include "message/mime.h"
#include "message/smime.h"
#include "util/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* Far above any real directory: a bigger file is a broken download, not an index. */
#define MAX_INDEX_BYTES (64 * 1024 * 1024)

struct idx_key {
    const char *key; /* points into a provider's strings */
    size_t prov;
};

struct pec_index {
    int refs;
    char *signer; /* "" when unsigned */
    time_t signed_at;
    struct pec_crls *crls;
    struct pec_provider *prov;
    size_t n;
    struct idx_key *by_domain;
    size_t ndomain;
    struct idx_key *by_hash;
    size_t nhash;
};

struct strbuf {
    char *s;
    size_t len, cap;
};

/* The reader's position in the text, and where its one error message goes. */
struct ldif {
    const char *name;
    const char *buf;
    size_t len, pos;
    unsigned lineno; /* physical lines consumed */
    char *err;
    size_t errlen;
};

/* One "attr: value" line, the value decoded. */
struct value {
    char attr[48]; /* attribute type without options, lowercase; "" when too long */
    unsigned char *data;
    size_t len;
    int base64;
    unsigned lineno;
};

struct record {
    int active;
    int is_provider;
    struct pec_provider p;
};

static int ldif_error(struct ldif *l, unsigned lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ldif_error(struct ldif *l, unsigned lineno, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (l->err != NULL && l->errlen > 0)
        snprintf(l->err, l->errlen, "%s:%u: %s", l->name, lineno, msg);
    return -1;
}

static void sb_add(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        sb->cap = (sb->len + n + 1) * 2;
        sb->s = xrealloc(sb->s, sb->cap);
    }
    memcpy(sb->s + sb->len, s, n);
    sb->len += n;
    sb->s[sb->len] = '\0';
}

/* ---------------------------------------------------------------- lines */

/* The next physical line without its CR LF / LF; -1 on a NUL byte. */
static int physical_line(struct ldif *l, const char **line, size_t *n)
{
    const char *start = l->buf + l->pos;
    const char *nl = memchr(start, '\n', l->len - l->pos);
    size_t len = nl ? (size_t)(nl - start) : l->len - l->pos;

    l->pos += len + (nl != NULL);
    l->lineno++;
    if (memchr(start, '\0', len) != NULL)
        return ldif_error(l, l->lineno, "NUL byte in the text");
    if (len > 0 && start[len - 1] == '\r')
        len--;
    *line = start;
    *n = len;
    return 0;
}

static int continues(const struct ldif *l)
{
    return l->pos < l->len && l->buf[l->pos] == ' ';
}

/*
 * The next logical line, unfolded, in SB; its first physical line in *LINENO.  Comments
 * (with their own continuations) are skipped; a blank line comes back empty.  Returns
 * 1, 0 at the end of the text, -1 on error.
 */
static int next_line(struct ldif *l, struct strbuf *sb, unsigned *lineno)
{
    const char *line;
    size_t n;

    sb->len = 0;
    sb_add(sb, "", 0);
    for (;;) {
        if (l->pos >= l->len)
            return 0;
        if (physical_line(l, &line, &n) < 0)
            return -1;
        if (n > 0 && line[0] == ' ')
            return ldif_error(l, l->lineno, "continuation line with nothing to continue");
        if (n == 0 || line[0] != '#')
            break;
        while (continues(l))
            if (physical_line(l, &line, &n) < 0)
                return -1;
    }
    *lineno = l->lineno;
    sb_add(sb, line, n);
    while (n > 0 && continues(l)) {
        if (physical_line(l, &line, &n) < 0)
            return -1;
        sb_add(sb, line + 1, n - 1);
    }
    return 1;
}

/* ---------------------------------------------------------------- values */

/*
 * The value of an "attr:: base64" line (blanks skipped); the output is
 * NUL-terminated, so a decoded text value reads as a string.  -1 on broken
 * base64.
 */
static int base64_value(const char *in, size_t n, unsigned char **out, size_t *outlen)
{
    size_t chars = 0;

    /* The index is security-critical: padding is required, as RFC 4648 says. */
    for (size_t i = 0; i < n; i++)
        chars += in[i] != ' ' && in[i] != '\t';
    if (chars % 4 != 0) {
        *out = NULL;
        return -1;
    }
    if (pec_base64_decode((const unsigned char *)in, n, out, outlen) < 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* "attr;options: value" or "attr;options:: base64" into V. */
static int split_attrval(struct ldif *l, const char *line, size_t n, unsigned lineno,
                         struct value *v)
{
    size_t i = 0, base, name;

    memset(v, 0, sizeof(*v));
    v->lineno = lineno;
    while (i < n && (isalnum((unsigned char)line[i]) || line[i] == '-' || line[i] == '.'))
        i++;
    base = i;
    while (i < n && (isalnum((unsigned char)line[i]) || strchr("-.;", line[i]) != NULL))
        i++;
    if (base == 0)
        return ldif_error(l, lineno, "expected an attribute name");
    if (i == n || line[i] != ':')
        return ldif_error(l, lineno, "missing ':' after the attribute name");
    name = i;
    if (base < sizeof(v->attr))
        for (size_t k = 0; k < base; k++)
            v->attr[k] = (char)tolower((unsigned char)line[k]);
    i++;
    if (i < n && line[i] == '<')
        return ldif_error(l, lineno, "%.*s: URL values are not supported", (int)name, line);
    v->base64 = i < n && line[i] == ':';
    i += v->base64;
    while (i < n && line[i] == ' ')
        i++;
    if (v->base64) {
        if (base64_value(line + i, n - i, &v->data, &v->len) < 0)
            return ldif_error(l, lineno, "%.*s: bad base64 value", (int)name, line);
        return 0;
    }
    while (n > i && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    v->data = (unsigned char *)xstrndup(line + i, n - i);
    v->len = n - i;
    return 0;
}

/* UTF-8 with no control characters. */
static int text_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t more = c < 0x80                 ? 0
                      : c >= 0xc2 && c <= 0xdf ? 1
                      : c >= 0xe0 && c <= 0xef ? 2
                      : c >= 0xf0 && c <= 0xf4 ? 3
                                               : 4;

        if (more == 4 || c < 0x20 || c == 0x7f || more >= n - i)
            return 0;
        for (size_t k = 1; k <= more; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += more + 1;
    }
    return 1;
}

/* dot-atom domain: letters, digits, '-' and single dots.  Lowercases S in place. */
static int domain_ok(char *s)
{
    size_t n = strlen(s);

    if (n > 0 && s[n - 1] == '.')
        s[--n] = '\0';
    if (n == 0 || n > 253 || s[0] == '.' || strstr(s, "..") != NULL)
        return 0;
    for (char *p = s; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return 0;
        *p = (char)tolower((unsigned char)*p);
    }
    return 1;
}

/* addr-spec without brackets or blanks, local@domain. */
static int mailbox_ok(const char *s)
{
    const char *at = strrchr(s, '@');

    if (at == NULL || at == s || at[1] == '\0')
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("<>()[],;\"", *p))
            return 0;
    return 1;
}

/* 40 hex digits, ':' separators tolerated; written back as lowercase into OUT. */
static int hash_ok(const char *s, char out[41])
{
    size_t k = 0;

    for (; *s; s++) {
        if (*s == ':')
            continue;
        if (!isxdigit((unsigned char)*s) || k == 40)
            return 0;
        out[k++] = (char)tolower((unsigned char)*s);
    }
    out[k] = '\0';
    return k == 40;
}

static int cert_ok(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x;

    if (len == 0 || len > LONG_MAX)
        return 0;
    x = d2i_X509(NULL, &p, (long)len);
    X509_free(x);
    ERR_clear_error();
    return x != NULL && p == der + len;
}

/* ---------------------------------------------------------------- records */

enum kind { K_OBJECTCLASS, K_TEXT, K_FIRST_TEXT, K_MAILBOX, K_DOMAIN, K_HASH, K_CERT };

#define OFF(f) offsetof(struct pec_provider, f)

static const struct attr_rule {
    const char *attr; /* lowercase */
    const char *display;
    enum kind kind;
    size_t offset; /* of the char * field, for the single-valued kinds */
} rules[] = {
    {"objectclass", "objectclass", K_OBJECTCLASS, 0},
    {"providername", "providerName", K_TEXT, OFF(name)},
    {"providerunit", "providerUnit", K_TEXT, OFF(unit)},
    {"mailreceipt", "mailReceipt", K_MAILBOX, OFF(mail_receipt)},
    {"ldiflocationurl", "LDIFLocationURL", K_TEXT, OFF(ldif_url)},
    {"description", "description", K_FIRST_TEXT, OFF(description)},
    {"manageddomains", "managedDomains", K_DOMAIN, 0},
    {"providercertificatehash", "providerCertificateHash", K_HASH, 0},
    {"providercertificate", "providerCertificate", K_CERT, 0},
};

static char **field(struct pec_provider *p, size_t offset)
{
    return (char **)(void *)((char *)p + offset);
}

static void push_str(char ***v, size_t *n, char *s)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = s;
}

static int add_single(struct ldif *l, struct record *r, const struct attr_rule *rule,
                      const struct value *v)
{
    char **f = field(&r->p, rule->offset);

    if (rule->kind == K_FIRST_TEXT && (*f != NULL || v->len == 0))
        return 0;
    if (v->len == 0)
        return ldif_error(l, v->lineno, "%s: empty value", rule->display);
    if (*f != NULL)
        return ldif_error(l, v->lineno, "%s given twice in the record of line %u", rule->display,
                          r->p.line);
    if (rule->kind == K_MAILBOX && !mailbox_ok((const char *)v->data))
        return ldif_error(l, v->lineno, "%s: \"%s\" is not a mail address", rule->display,
                          (const char *)v->data);
    *f = xstrdup((const char *)v->data);
    return 0;
}

static int add_cert(struct ldif *l, struct record *r, const struct value *v)
{
    struct pec_cert_der *c;

    if (!v->base64 || !cert_ok(v->data, v->len))
        return ldif_error(l, v->lineno, "providerCertificate is not a base64 DER certificate");
    r->p.certs = xrealloc(r->p.certs, (r->p.ncerts + 1) * sizeof(*r->p.certs));
    c = &r->p.certs[r->p.ncerts++];
    c->der = xmalloc(v->len);
    memcpy(c->der, v->data, v->len);
    c->len = v->len;
    return 0;
}

/* Check V and store it in the record; unknown attributes are ignored. */
static int record_add(struct ldif *l, struct record *r, const struct value *v)
{
    const struct attr_rule *rule = NULL;
    char hash[41];

    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]) && rule == NULL; i++)
        if (strcmp(v->attr, rules[i].attr) == 0)
            rule = &rules[i];
    if (rule == NULL)
        return 0;
    if (rule->kind == K_CERT)
        return add_cert(l, r, v);
    if (!text_ok(v->data, v->len))
        return ldif_error(l, v->lineno, "%s: value is not UTF-8 text", rule->display);
    switch (rule->kind) {
    case K_OBJECTCLASS:
        r->is_provider |= strcasecmp((const char *)v->data, "provider") == 0;
        return 0;
    case K_DOMAIN:
        if (!domain_ok((char *)v->data))
            return ldif_error(l, v->lineno, "managedDomains: \"%s\" is not a domain",
                              (const char *)v->data);
        push_str(&r->p.domains, &r->p.ndomains, xstrdup((const char *)v->data));
        return 0;
    case K_HASH:
        if (!hash_ok((const char *)v->data, hash))
            return ldif_error(l, v->lineno, "providerCertificateHash: \"%s\" is not a SHA-1 in hex",
                              (const char *)v->data);
        push_str(&r->p.cert_hashes, &r->p.nhashes, xstrdup(hash));
        return 0;
    default:
        return add_single(l, r, rule, v);
    }
}

static void provider_free(struct pec_provider *p)
{
    free(p->dn);
    free(p->name);
    free(p->unit);
    free(p->mail_receipt);
    free(p->ldif_url);
    free(p->description);
    for (size_t i = 0; i < p->ndomains; i++)
        free(p->domains[i]);
    free(p->domains);
    for (size_t i = 0; i < p->nhashes; i++)
        free(p->cert_hashes[i]);
    free(p->cert_hashes);
    for (size_t i = 0; i < p->ncerts; i++)
        free(p->certs[i].der);
    free(p->certs);
    memset(p, 0, sizeof(*p));
}

static const char *missing_attr(const struct pec_provider *p)
{
    if (p->name == NULL)
        return "providerName";
    if (p->mail_receipt == NULL)
        return "mailReceipt";
    if (p->ndomains == 0)
        return "managedDomains";
    if (p->nhashes == 0)
        return "providerCertificateHash";
    if (p->ncerts == 0)
        return "providerCertificate";
    return NULL;
}

/* End of a record: keep a complete provider, drop anything else. */
static int record_end(struct ldif *l, struct record *r, struct pec_index *idx)
{
    const char *missing = missing_attr(&r->p);

    r->active = 0;
    if (!r->is_provider) {
        provider_free(&r->p);
        return 0;
    }
    if (missing != NULL)
        return ldif_error(l, r->p.line, "provider record \"%s\" has no %s", r->p.dn, missing);
    idx->prov = xrealloc(idx->prov, (idx->n + 1) * sizeof(*idx->prov));
    idx->prov[idx->n++] = r->p;
    memset(&r->p, 0, sizeof(r->p));
    return 0;
}

static int record_start(struct ldif *l, struct record *r, const struct value *v)
{
    if (strcmp(v->attr, "dn") != 0)
        return ldif_error(l, v->lineno, "a record must start with dn:");
    if (!text_ok(v->data, v->len))
        return ldif_error(l, v->lineno, "dn: value is not UTF-8 text");
    memset(r, 0, sizeof(*r));
    r->active = 1;
    r->p.dn = xstrdup((const char *)v->data);
    r->p.line = v->lineno;
    return 0;
}

/* One logical line, in or out of a record. */
static int take_line(struct ldif *l, struct record *r, const struct value *v, int first)
{
    if (first && strcmp(v->attr, "version") == 0) {
        if (strcmp((const char *)v->data, "1") != 0)
            return ldif_error(l, v->lineno, "LDIF version \"%s\" is not 1", (const char *)v->data);
        return 0;
    }
    if (!r->active)
        return record_start(l, r, v);
    if (strcmp(v->attr, "dn") == 0)
        return ldif_error(l, v->lineno, "dn: inside the record of line %u (blank line missing?)",
                          r->p.line);
    if (strcmp(v->attr, "changetype") == 0) {
        if (strcasecmp((const char *)v->data, "add") != 0)
            return ldif_error(l, v->lineno, "changetype %s is not supported",
                              (const char *)v->data);
        return 0;
    }
    return record_add(l, r, v);
}

static int read_records(struct ldif *l, struct pec_index *idx)
{
    struct strbuf sb = {0};
    struct record r = {0};
    struct value v;
    unsigned lineno = 0;
    int got, first = 1, ret = 0;

    while (ret == 0 && (got = next_line(l, &sb, &lineno)) > 0) {
        if (sb.len == 0) {
            if (r.active)
                ret = record_end(l, &r, idx);
            continue;
        }
        if ((ret = split_attrval(l, sb.s, sb.len, lineno, &v)) == 0)
            ret = take_line(l, &r, &v, first);
        free(v.data);
        first = 0;
    }
    if (ret == 0 && got < 0)
        ret = -1;
    if (ret == 0 && r.active)
        ret = record_end(l, &r, idx);
    provider_free(&r.p);
    free(sb.s);
    return ret;
}

/* ---------------------------------------------------------------- lookups */

static int key_cmp(const void *a, const void *b)
{
    const struct idx_key *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : (x->prov > y->prov) - (x->prov < y->prov);
}

static struct idx_key *make_keys(struct pec_index *idx, int domains, size_t *n)
{
    struct idx_key *keys = NULL;

    *n = 0;
    for (size_t i = 0; i < idx->n; i++) {
        const struct pec_provider *p = &idx->prov[i];
        size_t m = domains ? p->ndomains : p->nhashes;

        keys = xrealloc(keys, (*n + m + 1) * sizeof(*keys));
        for (size_t k = 0; k < m; k++) {
            keys[*n].key = domains ? p->domains[k] : p->cert_hashes[k];
            keys[(*n)++].prov = i;
        }
    }
    qsort(keys, *n, sizeof(*keys), key_cmp);
    return keys;
}

/* Position of the first key equal to KEY (so the earliest record wins), or N. */
static size_t find_key(const struct idx_key *keys, size_t n, const char *key)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (strcmp(keys[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && strcmp(keys[lo].key, key) == 0 ? lo : n;
}

/* Lowercase S into BUF, dropping one final dot when DOT; 0 if it does not fit. */
static int lower_key(const char *s, char *buf, size_t len, int dot)
{
    size_t n = s ? strlen(s) : 0;

    if (dot && n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n >= len)
        return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)tolower((unsigned char)s[i]);
    buf[n] = '\0';
    return 1;
}

const struct pec_provider *pec_index_by_domain(const struct pec_index *idx, const char *domain)
{
    char key[256];
    size_t i;

    if (!lower_key(domain, key, sizeof(key), 1))
        return NULL;
    i = find_key(idx->by_domain, idx->ndomain, key);
    return i < idx->ndomain ? &idx->prov[idx->by_domain[i].prov] : NULL;
}

const struct pec_provider *pec_index_by_cert_hash(const struct pec_index *idx, const char *sha1hex)
{
    char key[64];
    size_t i;

    if (!lower_key(sha1hex, key, sizeof(key), 0))
        return NULL;
    i = find_key(idx->by_hash, idx->nhash, key);
    return i < idx->nhash ? &idx->prov[idx->by_hash[i].prov] : NULL;
}

const struct pec_provider *pec_index_by_cert(const struct pec_index *idx, const unsigned char *der,
                                             size_t derlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[41];

    if (der == NULL || derlen == 0 || !EVP_Digest(der, derlen, md, &mdlen, EVP_sha1(), NULL) ||
        mdlen != 20) {
        ERR_clear_error();
        return NULL;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    /* several records (a provider's environments) may list the same certificate */
    for (size_t i = find_key(idx->by_hash, idx->nhash, hex);
         i < idx->nhash && strcmp(idx->by_hash[i].key, hex) == 0; i++) {
        const struct pec_provider *p = &idx->prov[idx->by_hash[i].prov];

        if (pec_provider_has_cert(p, der, derlen))
            return p;
    }
    return NULL;
}

int pec_provider_manages(const struct pec_provider *p, const char *domain)
{
    char key[256];

    if (!lower_key(domain, key, sizeof(key), 1))
        return 0;
    for (size_t i = 0; i < p->ndomains; i++)
        if (strcmp(p->domains[i], key) == 0)
            return 1;
    return 0;
}

int pec_provider_has_cert(const struct pec_provider *p, const unsigned char *der, size_t derlen)
{
    for (size_t i = 0; i < p->ncerts; i++)
        if (p->certs[i].len == derlen && memcmp(p->certs[i].der, der, derlen) == 0)
            return 1;
    return 0;
}

size_t pec_index_count(const struct pec_index *idx)
{
    return idx->n;
}

const struct pec_provider *pec_index_provider(const struct pec_index *idx, size_t i)
{
    return i < idx->n ? &idx->prov[i] : NULL;
}

/* ---------------------------------------------------------------- loading */

struct pec_index *pec_index_ref(struct pec_index *idx)
{
    __atomic_add_fetch(&idx->refs, 1, __ATOMIC_SEQ_CST);
    return idx;
}

void pec_index_free(struct pec_index *idx)
{
    if (idx == NULL || __atomic_sub_fetch(&idx->refs, 1, __ATOMIC_SEQ_CST) > 0)
        return;
    free(idx->signer);
    pec_crls_free(idx->crls);
    for (size_t i = 0; i < idx->n; i++)
        provider_free(&idx->prov[i]);
    free(idx->prov);
    free(idx->by_domain);
    free(idx->by_hash);
    free(idx);
}

struct pec_index *pec_index_parse(const char *buf, size_t len, const char *name, char *err,
                                  size_t errlen)
{
    struct ldif l = {name ? name : "index", buf, len, 0, 0, err, errlen};
    struct pec_index *idx = xcalloc(1, sizeof(*idx));

    idx->refs = 1;
    idx->signer = xstrdup("");
    if (read_records(&l, idx) < 0) {
        pec_index_free(idx);
        return NULL;
    }
    if (idx->n == 0) {
        snprintf(err, errlen, "%s: no provider record", l.name);
        pec_index_free(idx);
        return NULL;
    }
    idx->by_domain = make_keys(idx, 1, &idx->ndomain);
    idx->by_hash = make_keys(idx, 0, &idx->nhash);
    return idx;
}

/* The whole file, NUL-terminated, at most MAX_INDEX_BYTES. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0, got;

    if (fp == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    do {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            buf = xrealloc(buf, cap);
        }
        got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
    } while (got > 0 && n <= MAX_INDEX_BYTES);
    if (ferror(fp) || n > MAX_INDEX_BYTES) {
        snprintf(err, errlen, "%s: %s", path,
                 ferror(fp) ? strerror(errno) : "larger than any providers' index");
        fclose(fp);
        free(buf);
        return NULL;
    }
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}

struct pec_index *pec_index_load(const char *path, char *err, size_t errlen)
{
    struct pec_index *idx;
    size_t len;
    char *buf = read_file(path, &len, err, errlen);

    if (buf == NULL)
        return NULL;
    idx = pec_index_parse(buf, len, path, err, errlen);
    free(buf);
    return idx;
}

void pec_index_set_crls(struct pec_index *idx, struct pec_crls *crls)
{
    pec_crls_free(idx->crls);
    idx->crls = crls;
}

const struct pec_crls *pec_index_crls(const struct pec_index *idx)
{
    return idx->crls;
}

const char *pec_index_signer(const struct pec_index *idx)
{
    return idx->signer;
}

time_t pec_index_signed_at(const struct pec_index *idx)
{
    return idx->signed_at;
}

struct pec_index *pec_index_parse_signed(const unsigned char *p7m, size_t len, const char *name,
                                         const struct pec_trust *trust, enum pec_index_signed_by by,
                                         char *err, size_t errlen)
{
    struct pec_verify_result res;
    struct pec_index *idx = NULL;
    unsigned char *content = NULL;
    size_t clen;

    if (pec_smime_verify_attached(p7m, len, trust, PEC_AT_NOW, 0, &content, &clen, &res) < 0) {
        snprintf(err, errlen, "%s: %s", name, res.reason);
    } else if ((idx = pec_index_parse((char *)content, clen, name, err, errlen)) != NULL &&
               by == PEC_INDEX_BY_LISTED &&
               pec_index_by_cert(idx, res.signer_der, res.signer_derlen) == NULL) {
        /* a valid signature proves only who signed; the record must vouch for that signer */
        snprintf(err, errlen, "%s: signed by \"%s\" (SHA-1 %s), which the index does not list",
                 name, res.signer_subject, res.signer_sha1);
        pec_index_free(idx);
        idx = NULL;
    }
    if (idx != NULL) {
        free(idx->signer);
        idx->signer = xstrdup(res.signer_subject);
        idx->signed_at = res.has_signing_time ? res.signing_time : 0;
    }
    pec_verify_result_free(&res);
    free(content);
    return idx;
}

struct pec_index *pec_index_load_signed(const char *p7m_path, const struct pec_trust *trust,
                                        enum pec_index_signed_by by, char *err, size_t errlen)
{
    struct pec_index *idx;
    size_t len;
    char *buf = read_file(p7m_path, &len, err, errlen);

    if (buf == NULL)
        return NULL;
    idx = pec_index_parse_signed((unsigned char *)buf, len, p7m_path, trust, by, err, errlen);
    free(buf);
    return idx;
}
