/*
 * fetch - bytes from a URL over HTTP(S) or LDAP(S), for the files a
 * provider keeps fresh: the providers' index and the CRLs of the
 * certificates it lists.
 *
 * Knows nothing of what it fetches: a URL and the TLS settings in, the
 * bytes (for LDAP, the subtree as LDIF text, RFC 2849) out, or one line
 * saying why not.  Checking what came is the caller's job.  TLS always
 * verifies the server against CA_FILE (the system's bundle when "") and
 * presents CLIENT_CERT / CLIENT_KEY when given, as the authority's server
 * demands (pec-rules.md §7.2).  An ldap:// URL is upgraded with StartTLS
 * and refused if the server cannot; ldaps:// is TLS from the start.  Only
 * http, https, ldap and ldaps are fetched: a URL taken from a certificate
 * cannot make us read a local file.
 *
 * Every call is bounded: CONNECT_TIMEOUT and TIMEOUT seconds, MAX_BYTES
 * bytes; CANCEL, when given, is asked now and then and stops the transfer
 * when it returns non-zero (a daemon shutting down).  Calls may run in
 * several threads at once.
 */
#ifndef PEC_FETCH_H
#define PEC_FETCH_H

#include <stddef.h>

struct pec_fetch_opts {
    const char *ca_file;     /* PEM bundle the server must chain to; "" or NULL: the system's */
    const char *client_cert; /* PEM certificate we present, or "" / NULL */
    const char *client_key;  /* its key (PEM, unencrypted), or "" / NULL */
    long connect_timeout;    /* seconds */
    long timeout;            /* seconds, the whole transfer */
    size_t max_bytes;
    int (*cancel)(void *arg);
    void *cancel_arg;
};

/*
 * Fetch URL into *OUT (xmalloc'ed, NUL-terminated, caller frees), *LEN bytes
 * without the NUL.  For http(s) a status other than 200 is an error.  For
 * ldap(s) the URL is RFC 4516 (ldap://host:port/base?attrs?scope?filter;
 * scope defaults to sub, the filter to (objectClass=*)) and *OUT is LDIF.
 * 0, or -1 with one line in err.
 */
int pec_fetch(const char *url, const struct pec_fetch_opts *o, unsigned char **out, size_t *len,
              char *err, size_t errlen);

#endif
