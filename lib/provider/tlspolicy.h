/*
 * tlspolicy - the MTA's TLS policy table for provider-to-provider SMTP
 * (pec-rules.md 2.3, 8.5): every domain another provider manages, by the
 * providers' index, gets mail over TLS or not at all, so a STARTTLS stripped
 * on the way defers the busta instead of sending it in the clear.
 *
 *   postfix    smtp_tls_policy_maps lines, "domain encrypt" (mandatory TLS;
 *              the peers' server certificates come from CAs the rules do not
 *              name, so their names are not verified: `secure' would need
 *              each peer's CA in smtp_tls_CAfile)
 *   sendmail   access database lines, "TLS_Rcpt:domain ENCR:128" (at least a
 *              128-bit cipher towards that recipient domain), for makemap
 *
 * Our own domains are left out: mail for them never leaves this MTA.  The
 * lines are sorted and unique, so the same index makes the same bytes.
 */
#ifndef PEC_TLSPOLICY_H
#define PEC_TLSPOLICY_H

#include <stddef.h>

#include "message/index.h"
#include "provider/conf.h"

/* "postfix" or "sendmail" is a format; anything else is not. */
int pec_tls_policy_format_ok(const char *format);

/* The table for INDEX in FORMAT, NUL-terminated text, one line a domain. */
char *pec_tls_policy(const struct pec_config *cfg, const struct pec_index *idx, const char *format);

/*
 * Put TEXT at PATH unless it is there already, replacing the file whole
 * (a temporary file beside it, then rename): 1 written, 0 unchanged, -1
 * with err set.
 */
int pec_tls_policy_install(const char *path, const char *text, char *err, size_t errlen);

#endif
