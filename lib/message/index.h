/*
 * index - the providers' index (Indice dei gestori di PEC, pec-rules.md §7).
 *
 * Every provider keeps a local copy of the directory and uses it for all lookups: the
 * Access Point asks whether a recipient's domain is PEC (managedDomains), the Incoming
 * Point asks who signed a message (providerCertificateHash, then byte equality with a
 * providerCertificate;binary of the same record) and where to send presa in carico
 * (mailReceipt).  The directory is distributed as LDIF, signed as CMS signed-data.
 *
 * The LDIF reader follows RFC 2849 for content records: folded lines, comments,
 * "attr: value", "attr:: base64", attribute options (";binary"), case-insensitive
 * attribute names, an optional "version: 1".  Records that are not objectclass provider
 * (the o=postacert root) are skipped.  Being security-critical, the file is taken whole
 * or not at all: any syntax error, or a provider record lacking an attribute the schema
 * makes mandatory, rejects the file with a message naming the line, and the caller keeps
 * the copy it had.
 *
 * A signed index is taken only when its signature verifies against a trust the caller
 * chooses, before a byte of it is parsed into use: the authority's signer for the whole
 * directory, the provider's own certificate (listed in the text) for one provider's
 * record at its LDIFLocationURL (pec-rules.md §7.2).
 *
 * A loaded index is immutable and reference-counted: any number of threads may look
 * things up at once, and a daemon may put a fresh one in place while connections
 * finish with the one they took.  It may carry the CRLs of the certificates it lists
 * (crl.h), attached before it is shared.  Lookups are case-insensitive where the
 * schema says so (domains, hashes).
 */
#ifndef PEC_INDEX_H
#define PEC_INDEX_H

#include <stddef.h>
#include <time.h>

struct pec_trust;
struct pec_crls;

struct pec_cert_der {
    unsigned char *der;
    size_t len;
};

/* One provider record.  Read-only; lives as long as its index. */
struct pec_provider {
    char *dn;
    char *name;         /* providerName */
    char *unit;         /* providerUnit of a secondary environment, or NULL */
    char *mail_receipt; /* mailReceipt */
    char *ldif_url;     /* LDIFLocationURL, or NULL */
    char *description;  /* first description, or NULL */
    char **domains;     /* managedDomains, lowercase */
    size_t ndomains;
    char **cert_hashes; /* providerCertificateHash, 40 lowercase hex digits */
    size_t nhashes;
    struct pec_cert_der *certs; /* providerCertificate;binary, DER */
    size_t ncerts;
    unsigned line; /* line of the record's dn: in the LDIF */
};

struct pec_index;

/*
 * Parse LDIF text BUF[0..LEN).  NAME is used in messages ("NAME:LINE: problem").
 * Returns NULL with err set on any error, and when the text holds no provider record.
 */
struct pec_index *pec_index_parse(const char *buf, size_t len, const char *name, char *err,
                                  size_t errlen);

/* Read and parse an LDIF file. */
struct pec_index *pec_index_load(const char *path, char *err, size_t errlen);

/* Who must have signed a signed index. */
enum pec_index_signed_by {
    PEC_INDEX_BY_AUTHORITY, /* whoever TRUST vouches for: the directory as distributed */
    PEC_INDEX_BY_LISTED,    /* also a certificate the text itself lists: a provider's record */
};

/*
 * P7M[0..LEN), a CMS signed-data holding the LDIF (DER or PEM): verify its signature
 * and its signer's chain against TRUST now, for PEC_INDEX_BY_LISTED require the
 * signer's certificate to be one the index itself lists, then parse the content.  NAME
 * is used in messages.  NULL with err on any failure.
 */
struct pec_index *pec_index_parse_signed(const unsigned char *p7m, size_t len, const char *name,
                                         const struct pec_trust *trust, enum pec_index_signed_by by,
                                         char *err, size_t errlen);

/* pec_index_parse_signed() of the file P7M_PATH. */
struct pec_index *pec_index_load_signed(const char *p7m_path, const struct pec_trust *trust,
                                        enum pec_index_signed_by by, char *err, size_t errlen);

/* Who signed the index (subject, one line) and when it says, or "" and 0 if unsigned. */
const char *pec_index_signer(const struct pec_index *idx);
time_t pec_index_signed_at(const struct pec_index *idx);

/* One more reference to IDX; pec_index_free() drops one, the last frees it. */
struct pec_index *pec_index_ref(struct pec_index *idx);
void pec_index_free(struct pec_index *idx);

/* Attach CRLS (taking it over) to IDX, which nobody else holds yet. */
void pec_index_set_crls(struct pec_index *idx, struct pec_crls *crls);
/* The CRLs attached to IDX, or NULL. */
const struct pec_crls *pec_index_crls(const struct pec_index *idx);

size_t pec_index_count(const struct pec_index *idx);
const struct pec_provider *pec_index_provider(const struct pec_index *idx, size_t i);

/* The record that manages DOMAIN (case-insensitive; a final dot is ignored), or NULL. */
const struct pec_provider *pec_index_by_domain(const struct pec_index *idx, const char *domain);

/* The record listing SHA1HEX (case-insensitive) as providerCertificateHash, or NULL. */
const struct pec_provider *pec_index_by_cert_hash(const struct pec_index *idx, const char *sha1hex);

/*
 * The record whose providerCertificateHash is SHA-1(DER) and which lists DER itself
 * byte for byte among its providerCertificate values, or NULL: a hash alone is not
 * enough to identify a signer (pec-rules.md §6.3 step 3).
 */
const struct pec_provider *pec_index_by_cert(const struct pec_index *idx, const unsigned char *der,
                                             size_t derlen);

/* Does P list DOMAIN (case-insensitive) among its managedDomains? */
int pec_provider_manages(const struct pec_provider *p, const char *domain);

/* Does P list DER byte for byte among its providerCertificate values? */
int pec_provider_has_cert(const struct pec_provider *p, const unsigned char *der, size_t derlen);

#endif
