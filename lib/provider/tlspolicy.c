/*
 * tlspolicy - the MTA's TLS policy table from the providers' index.
 */
#include "provider/tlspolicy.h"
#include "util/err.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One line a domain: PREFIX domain SUFFIX. */
static const struct {
    const char *name, *prefix, *suffix;
} formats[] = {
    {"postfix", "", " encrypt\n"},
    {"sendmail", "TLS_Rcpt:", " ENCR:128\n"},
};

static int format_index(const char *format)
{
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
        if (strcmp(formats[i].name, format) == 0)
            return (int)i;
    return -1;
}

int pec_tls_policy_format_ok(const char *format)
{
    return format_index(format) >= 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *pec_tls_policy(const struct pec_config *cfg, const struct pec_index *idx, const char *format)
{
    int f = format_index(format);
    const char **domains = NULL;
    size_t n = 0, len = 0, pos = 0;
    char *out;

    for (size_t i = 0; f >= 0 && i < pec_index_count(idx); i++) {
        const struct pec_provider *p = pec_index_provider(idx, i);

        for (size_t k = 0; k < p->ndomains; k++) {
            if (pec_config_is_our_domain(cfg, p->domains[k]))
                continue;
            domains = xrealloc(domains, (n + 1) * sizeof(*domains));
            domains[n++] = p->domains[k];
            len += strlen(p->domains[k]) + strlen(formats[f].prefix) + strlen(formats[f].suffix);
        }
    }
    out = xmalloc(len + 1);
    if (n > 0)
        qsort(domains, n, sizeof(*domains), by_name);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(domains[i], domains[i - 1]) != 0)
            pos += (size_t)sprintf(out + pos, "%s%s%s", formats[f].prefix, domains[i],
                                   formats[f].suffix);
    out[pos] = '\0';
    free(domains);
    return out;
}

/* Is PATH's content TEXT already? */
static int same_content(const char *path, const char *text)
{
    size_t len = strlen(text), got;
    char *buf = xmalloc(len + 1);
    FILE *f = fopen(path, "r");
    int same = 0;

    if (f != NULL) {
        got = fread(buf, 1, len + 1, f);
        same = got == len && memcmp(buf, text, len) == 0;
        fclose(f);
    }
    free(buf);
    return same;
}

int pec_tls_policy_install(const char *path, const char *text, char *err, size_t errlen)
{
    char *tmp;
    FILE *f;
    int ok;

    if (same_content(path, text))
        return 0;
    tmp = xasprintf("%s.new", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        pec_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    /* no secret in it, and the MTA reads it as whichever user it runs as */
    ok = fchmod(fileno(f), 0644) == 0;
    ok = fputs(text, f) >= 0 && ok;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        pec_seterr(err, errlen, "%s: %s", ok ? path : tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 1;
}
