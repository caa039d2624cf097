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
 * A loaded index is immutable: any number of threads may look things up at once.
 * Lookups are case-insensitive where the schema says so (domains, hashes).
 */
#ifndef PEC_INDEX_H
#define PEC_INDEX_H

#include <stddef.h>

struct pec_trust;

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

/*
 * Read P7M_PATH, a CMS signed-data holding the LDIF (DER or PEM), verify its signature
 * and its signer's chain against TRUST now, require the signer's certificate to be one
 * the index itself lists, and parse the content.
 */
struct pec_index *pec_index_load_signed(const char *p7m_path, const struct pec_trust *trust,
                                        char *err, size_t errlen);

void pec_index_free(struct pec_index *idx);

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
