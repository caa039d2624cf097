/*
 * ldapfetch - an LDAP subtree as LDIF text.  See ldapfetch.h.
 *
 * The search is asynchronous so the caller's deadline and cancel hook are
 * honoured between results, one second at most apart; the connection and
 * TLS set-up are bounded by the network timeout.  TLS settings are the
 * handle's own (LDAP_OPT_X_TLS_NEWCTX), never the process-wide defaults,
 * so two fetches with different settings cannot see each other's.
 */
#include "util/ldapfetch.h"
#include "util/encode.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ldap.h>

struct out {
    char *buf;
    size_t len, cap, max;
};

static int out_add(struct out *o, const char *s, size_t n)
{
    if (o->len + n > o->max)
        return -1;
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->buf = xrealloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
    return 0;
}

/* RFC 2849 SAFE-STRING: may the value go out as "attr: value"? */
static int safe_string(const unsigned char *v, size_t n)
{
    if (n > 0 && (v[0] == ' ' || v[0] == ':' || v[0] == '<' || v[n - 1] == ' '))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] == 0 || v[i] == '\n' || v[i] == '\r' || v[i] > 126)
            return 0;
    return 1;
}

/* "NAME: value" or "NAME:: base64", one line. */
static int out_line(struct out *o, const char *name, const unsigned char *v, size_t n)
{
    int rc;

    if (out_add(o, name, strlen(name)) < 0)
        return -1;
    if (safe_string(v, n))
        return out_add(o, ": ", 2) < 0 || out_add(o, (const char *)v, n) < 0 ||
                       out_add(o, "\n", 1) < 0
                   ? -1
                   : 0;
    char *b64 = pec_b64_string(v, n);

    rc = out_add(o, ":: ", 3) < 0 || out_add(o, b64, strlen(b64)) < 0 || out_add(o, "\n", 1) < 0
             ? -1
             : 0;
    free(b64);
    return rc;
}

static int given(const char *s)
{
    return s != NULL && *s != '\0';
}

/* One entry as a content record; -1 when it would pass the size bound. */
static int write_entry(LDAP *ld, LDAPMessage *e, struct out *o)
{
    BerElement *ber = NULL;
    char *dn = ldap_get_dn(ld, e), *attr;
    int rc;

    if (dn == NULL)
        return 0;
    rc = out_line(o, "dn", (const unsigned char *)dn, strlen(dn));
    ldap_memfree(dn);
    for (attr = ldap_first_attribute(ld, e, &ber); rc == 0 && attr != NULL;
         attr = ldap_next_attribute(ld, e, ber)) {
        struct berval **vals = ldap_get_values_len(ld, e, attr);

        for (int i = 0; rc == 0 && vals != NULL && vals[i] != NULL; i++)
            rc = out_line(o, attr, (const unsigned char *)vals[i]->bv_val, vals[i]->bv_len);
        ldap_value_free_len(vals);
        ldap_memfree(attr);
    }
    if (ber != NULL)
        ber_free(ber, 0);
    return rc < 0 ? -1 : out_add(o, "\n", 1);
}

/* The handle for LUD's server, TLS set up as O says; NULL with err. */
static LDAP *connect_tls(const LDAPURLDesc *lud, const struct pec_fetch_opts *o, char *err,
                         size_t errlen)
{
    int version = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, zero = 0, rc;
    struct timeval net = {o->connect_timeout, 0};
    char *uri;
    LDAP *ld = NULL;

    uri = strchr(lud->lud_host ? lud->lud_host : "", ':') != NULL
              ? xasprintf("%s://[%s]:%d", lud->lud_scheme, lud->lud_host, lud->lud_port)
              : xasprintf("%s://%s:%d", lud->lud_scheme, lud->lud_host ? lud->lud_host : "",
                          lud->lud_port);
    rc = ldap_initialize(&ld, uri);
    free(uri);
    if (rc != LDAP_SUCCESS) {
        snprintf(err, errlen, "%s", ldap_err2string(rc));
        return NULL;
    }
    if ((rc = ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &net)) != LDAP_OPT_SUCCESS ||
        (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand)) != LDAP_OPT_SUCCESS ||
        (given(o->ca_file) &&
         (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, o->ca_file)) != LDAP_OPT_SUCCESS) ||
        (given(o->client_cert) &&
         (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CERTFILE, o->client_cert)) != LDAP_OPT_SUCCESS) ||
        (given(o->client_key) &&
         (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_KEYFILE, o->client_key)) != LDAP_OPT_SUCCESS) ||
        (rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero)) != LDAP_OPT_SUCCESS) {
        snprintf(err, errlen, "cannot set up TLS: %s", ldap_err2string(rc));
        ldap_unbind_ext_s(ld, NULL, NULL);
        return NULL;
    }
    if (strcmp(lud->lud_scheme, "ldap") == 0 &&
        (rc = ldap_start_tls_s(ld, NULL, NULL)) != LDAP_SUCCESS) {
        char *diag = NULL;

        ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
        snprintf(err, errlen, "StartTLS failed: %s%s%s", ldap_err2string(rc),
                 diag && *diag ? ": " : "", diag ? diag : "");
        ldap_memfree(diag);
        ldap_unbind_ext_s(ld, NULL, NULL);
        return NULL;
    }
    return ld;
}

/* Bind anonymously and run the search, gathering LDIF into O.  0, or -1 with err. */
static int search(LDAP *ld, const LDAPURLDesc *lud, int scope, const struct pec_fetch_opts *fo,
                  struct out *o, char *err, size_t errlen)
{
    struct berval anon = {0, NULL};
    time_t deadline = time(NULL) + fo->timeout;
    LDAPMessage *res = NULL;
    int msgid, rc, done = 0;

    rc = ldap_sasl_bind_s(ld, NULL, LDAP_SASL_SIMPLE, &anon, NULL, NULL, NULL);
    if (rc == LDAP_SUCCESS)
        rc = ldap_search_ext(ld, lud->lud_dn ? lud->lud_dn : "", scope,
                             lud->lud_filter ? lud->lud_filter : "(objectClass=*)", lud->lud_attrs,
                             0, NULL, NULL, NULL, 0, &msgid);
    if (rc != LDAP_SUCCESS) {
        snprintf(err, errlen, "%s", ldap_err2string(rc));
        return -1;
    }
    while (!done) {
        struct timeval tv = {1, 0};

        if (time(NULL) > deadline || (fo->cancel != NULL && fo->cancel(fo->cancel_arg))) {
            ldap_abandon_ext(ld, msgid, NULL, NULL);
            snprintf(err, errlen, "%s", time(NULL) > deadline ? "timed out" : "cancelled");
            return -1;
        }
        rc = ldap_result(ld, msgid, LDAP_MSG_ONE, &tv, &res);
        if (rc == 0)
            continue;
        if (rc < 0) {
            ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &rc);
            snprintf(err, errlen, "%s", ldap_err2string(rc));
            return -1;
        }
        if (rc == LDAP_RES_SEARCH_ENTRY && write_entry(ld, res, o) < 0) {
            ldap_msgfree(res);
            ldap_abandon_ext(ld, msgid, NULL, NULL);
            snprintf(err, errlen, "larger than %zu bytes", o->max);
            return -1;
        }
        if (rc == LDAP_RES_SEARCH_RESULT) {
            int code = LDAP_OTHER;

            done = 1;
            if (ldap_parse_result(ld, res, &code, NULL, NULL, NULL, NULL, 0) != LDAP_SUCCESS ||
                code != LDAP_SUCCESS) {
                ldap_msgfree(res);
                snprintf(err, errlen, "search failed: %s", ldap_err2string(code));
                return -1;
            }
        }
        ldap_msgfree(res);
    }
    return 0;
}

int pec_ldap_fetch(const char *url, const struct pec_fetch_opts *o, unsigned char **out,
                   size_t *len, char *err, size_t errlen)
{
    LDAPURLDesc *lud = NULL;
    struct out ldif = {.max = o->max_bytes};
    char why[512];
    LDAP *ld;
    int rc;

    *out = NULL;
    *len = 0;
    if ((rc = ldap_url_parse(url, &lud)) != LDAP_URL_SUCCESS) {
        snprintf(err, errlen, "%s: not an LDAP URL (error %d)", url, rc);
        return -1;
    }
    ld = connect_tls(lud, o, why, sizeof(why));
    /* libldap reads a URL without a scope as base; the whole subtree is what we want */
    rc = ld != NULL
             ? search(ld, lud, strchr(url, '?') != NULL ? lud->lud_scope : LDAP_SCOPE_SUBTREE, o,
                      &ldif, why, sizeof(why))
             : -1;
    if (ld != NULL)
        ldap_unbind_ext_s(ld, NULL, NULL);
    ldap_free_urldesc(lud);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", url, why);
        free(ldif.buf);
        return -1;
    }
    if (ldif.buf == NULL) {
        snprintf(err, errlen, "%s: no entry found", url);
        return -1;
    }
    *out = (unsigned char *)ldif.buf;
    *len = ldif.len;
    return 0;
}
