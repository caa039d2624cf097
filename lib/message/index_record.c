/*
 * index_record - this provider's own record of the providers' index.  See
 * index_record.h.
 *
 * Written line by line into a growing buffer; every line is folded at 76
 * columns as RFC 2849 allows (a continuation starts with one space), which
 * is how the test index and RFC 6109's example lay certificates out.  The
 * check at the end is the loader itself: whatever it would refuse, or read
 * differently from the facts given, is an error here.
 */
#include "message/index_record.h"
#include "message/index.h"
#include "util/encode.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#define FOLD 76

struct text {
    char *s;
    size_t len, cap;
};

static void add(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = xrealloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

/* One logical line, folded. */
static void line(struct text *t, const char *s)
{
    size_t n = strlen(s), first = n < FOLD ? n : FOLD;

    add(t, s, first);
    for (size_t i = first; i < n; i += FOLD - 1) {
        add(t, "\n ", 2);
        add(t, s + i, n - i < FOLD - 1 ? n - i : FOLD - 1);
    }
    add(t, "\n", 1);
}

/* RFC 2849 SAFE-STRING */
static int safe(const char *v)
{
    size_t n = strlen(v);

    if (n > 0 && (v[0] == ' ' || v[0] == ':' || v[0] == '<' || v[n - 1] == ' '))
        return 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return 0;
    return 1;
}

/* "attr: value", or "attr:: base64" for a value that is not a safe string */
static void attr(struct text *t, const char *name, const unsigned char *v, size_t n, int binary)
{
    char *l, *b64 = NULL;

    if (!binary && safe((const char *)v))
        l = xasprintf("%s: %s", name, (const char *)v);
    else
        l = xasprintf("%s:: %s", name, b64 = pec_b64_string(v, n));
    line(t, l);
    free(l);
    free(b64);
}

static void attr_text(struct text *t, const char *name, const char *v)
{
    attr(t, name, (const unsigned char *)v, strlen(v), 0);
}

/* An RDN value escaped as RFC 4514 says. */
static char *rdn_value(const char *v)
{
    size_t n = strlen(v);
    char *out = xmalloc(3 * n + 1), *o = out;

    for (size_t i = 0; i < n; i++) {
        char c = v[i];

        if (strchr(",+\"\\<>;=", c) != NULL || (i == 0 && (c == '#' || c == ' ')) ||
            (i == n - 1 && c == ' '))
            *o++ = '\\';
        *o++ = c;
    }
    *o = '\0';
    return out;
}

static int given(const char *s)
{
    return s != NULL && *s != '\0';
}

static void sha1_hex(const unsigned char *der, size_t len, char hex[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    hex[0] = '\0';
    if (!EVP_Digest(der, len, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        ERR_clear_error();
        return;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* The facts that a record cannot do without. */
static const char *missing(const struct pec_record_facts *f)
{
    if (!given(f->name))
        return "providerName";
    if (!given(f->mail_receipt))
        return "mailReceipt";
    if (f->ndomains == 0)
        return "managedDomains";
    if (f->ncerts == 0)
        return "providerCertificate";
    return NULL;
}

static void write_record(struct text *t, const struct pec_record_facts *f)
{
    char *name = rdn_value(f->name), *dn, hex[41];

    if (given(f->unit)) {
        char *unit = rdn_value(f->unit);

        dn = xasprintf("providerUnit=%s,providerName=%s,o=postacert", unit, name);
        free(unit);
    } else {
        dn = xasprintf("providerName=%s,o=postacert", name);
    }
    attr_text(t, "dn", dn);
    line(t, "objectclass: top");
    line(t, "objectclass: provider");
    attr_text(t, "providerName", f->name);
    if (given(f->unit))
        attr_text(t, "providerUnit", f->unit);
    for (size_t i = 0; i < f->ncerts; i++) {
        sha1_hex(f->certs[i], f->certlens[i], hex);
        attr_text(t, "providerCertificateHash", hex);
    }
    for (size_t i = 0; i < f->ncerts; i++)
        attr(t, "providerCertificate;binary", f->certs[i], f->certlens[i], 1);
    attr_text(t, "mailReceipt", f->mail_receipt);
    for (size_t i = 0; i < f->ndomains; i++)
        attr_text(t, "managedDomains", f->domains[i]);
    if (given(f->ldif_url))
        attr_text(t, "LDIFLocationURL", f->ldif_url);
    if (given(f->description))
        attr_text(t, "description", f->description);
    free(dn);
    free(name);
}

/* Does the text load back as one record with exactly F's facts?  0, or -1 with err. */
static int reads_back(const struct text *t, const struct pec_record_facts *f, char *err,
                      size_t errlen)
{
    struct pec_index *idx = pec_index_parse(t->s, t->len, "record", err, errlen);
    const struct pec_provider *p;
    int rc = -1;

    if (idx == NULL)
        return -1;
    p = pec_index_provider(idx, 0);
    if (pec_index_count(idx) != 1 || strcmp(p->name, f->name) != 0 ||
        strcasecmp(p->mail_receipt, f->mail_receipt) != 0 || p->ndomains != f->ndomains ||
        p->ncerts != f->ncerts) {
        snprintf(err, errlen, "the record does not read back as written");
        goto done;
    }
    for (size_t i = 0; i < f->ndomains; i++)
        if (!pec_provider_manages(p, f->domains[i])) {
            snprintf(err, errlen, "managedDomains: \"%s\" does not read back", f->domains[i]);
            goto done;
        }
    for (size_t i = 0; i < f->ncerts; i++)
        if (pec_index_by_cert(idx, f->certs[i], f->certlens[i]) != p) {
            snprintf(err, errlen, "certificate %zu does not read back with its hash", i + 1);
            goto done;
        }
    rc = 0;
done:
    pec_index_free(idx);
    return rc;
}

char *pec_index_record(const struct pec_record_facts *f, size_t *len, char *err, size_t errlen)
{
    struct text t = {0};
    const char *lack = missing(f);

    if (lack != NULL) {
        snprintf(err, errlen, "no %s for the record", lack);
        return NULL;
    }
    if (given(f->unit) && given(f->ldif_url)) {
        snprintf(err, errlen,
                 "a providerUnit record carries no LDIFLocationURL: the main "
                 "record does (pec-rules.md 7.1)");
        return NULL;
    }
    write_record(&t, f);
    if (reads_back(&t, f, err, errlen) < 0) {
        free(t.s);
        return NULL;
    }
    *len = t.len;
    return t.s;
}
