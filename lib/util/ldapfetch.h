/*
 * ldapfetch - an LDAP subtree as LDIF text, through OpenLDAP's libldap:
 * pec_fetch()'s ldap:// and ldaps:// half (fetch.h).
 *
 * One connection per call: TLS (StartTLS for ldap://, refused when the
 * server cannot), an anonymous bind, one search, every entry written as an
 * RFC 2849 content record with the attribute names the server returned
 * ("providerCertificate;binary" included).  Values that are not safe
 * strings (binary, non-ASCII, a leading space or colon) are base64.
 */
#ifndef PEC_LDAPFETCH_H
#define PEC_LDAPFETCH_H

#include <stddef.h>

#include "util/fetch.h"

/* As pec_fetch() for an ldap:// or ldaps:// URL. */
int pec_ldap_fetch(const char *url, const struct pec_fetch_opts *o, unsigned char **out,
                   size_t *len, char *err, size_t errlen);

#endif
