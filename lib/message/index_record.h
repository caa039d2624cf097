/*
 * index_record - this provider's own record of the providers' index, as it
 * publishes it at its LDIFLocationURL (pec-rules.md §7.1, §7.2).
 *
 * The authority fetches each provider's record daily, checks that the
 * provider's PEC key signed it, and puts it in the directory every other
 * provider reads: a record it cannot take is a provider nobody can reach.
 * So the record is written as RFC 6109 §4.5 shows it (dn, objectclass top
 * and provider, providerName, providerUnit for a secondary environment,
 * every certificate with its providerCertificateHash, mailReceipt,
 * managedDomains, LDIFLocationURL on a main record), lines folded at 76
 * columns, values outside plain ASCII in base64, and read back with this
 * project's own loader before it is handed out.
 */
#ifndef PEC_INDEX_RECORD_H
#define PEC_INDEX_RECORD_H

#include <stddef.h>

struct pec_record_facts {
    const char *name;         /* providerName */
    const char *unit;         /* providerUnit, or NULL / "" for the main record */
    const char *mail_receipt; /* mailReceipt */
    const char *ldif_url;     /* LDIFLocationURL, or NULL / "" */
    const char *description;  /* or NULL / "" */
    char *const *domains;     /* managedDomains */
    size_t ndomains;
    const unsigned char *const *certs; /* DER certificates, the signing one first */
    const size_t *certlens;
    size_t ncerts;
};

/*
 * The record as LDIF text (xmalloc'ed, NUL-terminated; *LEN bytes), or NULL with
 * one line in err when a fact is missing or the text would not load back as one
 * provider record holding exactly these facts.
 */
char *pec_index_record(const struct pec_record_facts *f, size_t *len, char *err, size_t errlen);

#endif
