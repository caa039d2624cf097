/*
 * fetch - bytes from a URL: HTTP(S) through libcurl here, LDAP(S) through
 * libldap in ldapfetch.c.  See fetch.h.
 *
 * libcurl's global set-up runs once under pthread_once, before the first
 * transfer.  Every handle is made for one transfer and cleaned up after it:
 * index and CRL fetches are a few a day, so nothing is worth keeping.
 * Redirects are not followed: the authority's URL is the one configured.
 */
#include "util/fetch.h"
#include "util/ldapfetch.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CURLcode init_code = CURLE_FAILED_INIT;

static void init_once(void)
{
    init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int has_scheme(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);

    return strncasecmp(url, scheme, n) == 0 && strncmp(url + n, "://", 3) == 0;
}

struct sink {
    unsigned char *buf;
    size_t len, cap, max;
    int too_big;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;

    if (s->len + n > s->max) {
        s->too_big = 1;
        return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->buf = xrealloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct pec_fetch_opts *o = arg;

    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return o->cancel != NULL && o->cancel(o->cancel_arg) != 0;
}

static int given(const char *s)
{
    return s != NULL && *s != '\0';
}

/* The options of one transfer; CURLE_OK or the first that failed. */
static CURLcode set_options(CURL *h, const char *url, const struct pec_fetch_opts *o,
                            struct sink *s, char *curl_err)
{
    CURLcode rc;

#define SET(opt, val)                                                                              \
    if ((rc = curl_easy_setopt(h, opt, val)) != CURLE_OK)                                          \
        return rc;
    SET(CURLOPT_ERRORBUFFER, curl_err);
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_CONNECTTIMEOUT, o->connect_timeout);
    SET(CURLOPT_TIMEOUT, o->timeout);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, s);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, (void *)o);
    SET(CURLOPT_USERAGENT, "pecmilter");
    if (given(o->ca_file)) {
        SET(CURLOPT_CAINFO, o->ca_file);
        SET(CURLOPT_CAPATH, NULL);
    }
    if (given(o->client_cert)) {
        SET(CURLOPT_SSLCERT, o->client_cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (given(o->client_key)) {
        SET(CURLOPT_SSLKEY, o->client_key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
#undef SET
    return CURLE_OK;
}

static int fetch_http(const char *url, const struct pec_fetch_opts *o, unsigned char **out,
                      size_t *len, char *err, size_t errlen)
{
    char curl_err[CURL_ERROR_SIZE] = "";
    struct sink s = {.max = o->max_bytes};
    long status = 0;
    CURLcode rc;
    CURL *h;

    pthread_once(&once, init_once);
    if (init_code != CURLE_OK) {
        snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(init_code));
        return -1;
    }
    if ((h = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "libcurl: cannot make a transfer handle");
        return -1;
    }
    rc = set_options(h, url, o, &s, curl_err);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        rc = curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK || status != 200) {
        if (s.too_big)
            snprintf(err, errlen, "%s: larger than %zu bytes", url, o->max_bytes);
        else if (rc == CURLE_ABORTED_BY_CALLBACK)
            snprintf(err, errlen, "%s: cancelled", url);
        else if (rc != CURLE_OK)
            snprintf(err, errlen, "%s: %s", url, curl_err[0] ? curl_err : curl_easy_strerror(rc));
        else
            snprintf(err, errlen, "%s: the server answered HTTP %ld", url, status);
        free(s.buf);
        return -1;
    }
    if (s.buf == NULL)
        s.buf = xmalloc(1);
    s.buf[s.len] = '\0';
    *out = s.buf;
    *len = s.len;
    return 0;
}

int pec_fetch(const char *url, const struct pec_fetch_opts *o, unsigned char **out, size_t *len,
              char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    if (has_scheme(url, "http") || has_scheme(url, "https"))
        return fetch_http(url, o, out, len, err, errlen);
    if (has_scheme(url, "ldap") || has_scheme(url, "ldaps"))
        return pec_ldap_fetch(url, o, out, len, err, errlen);
    snprintf(err, errlen, "%s: not an http, https, ldap or ldaps URL", url);
    return -1;
}
