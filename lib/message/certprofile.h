/*
 * certprofile - is a certificate one a PEC provider may sign with now?
 *
 * RFC 6109 §5.5 (pec-rules.md §6.2): the provider's name in the subject (CN
 * or O), the service address as the one rfc822Name of subjectAltName,
 * keyUsage with digitalSignature marked critical, subject and authority key
 * identifiers, no basicConstraints CA, no critical extension a verifier
 * would not understand; and inside its validity period.  The daemon refuses
 * to start (and a reload keeps the running configuration) on the first
 * problem; what the rules allow but advise against (basicConstraints
 * CA:FALSE present, the end of the validity within the warning window) is a
 * warning.
 */
#ifndef PEC_CERTPROFILE_H
#define PEC_CERTPROFILE_H

#include <stddef.h>
#include <time.h>

struct pec_cert_facts {
    const char *provider_name;   /* must stand in the subject's CN or O */
    const char *service_address; /* the one rfc822Name */
    time_t now;
    long long warn_days; /* expiry this close is a warning */
};

/*
 * Check the DER certificate against the profile.  Returns 0 when it may
 * sign, with a warning (one line, "" when none) in warn; -1 with the first
 * problem in err.
 */
int pec_cert_profile_check(const unsigned char *der, size_t len, const struct pec_cert_facts *f,
                           char *err, size_t errlen, char *warn, size_t warnlen);

#endif
