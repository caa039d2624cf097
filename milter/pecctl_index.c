/*
 * pecctl index - the providers' index from this provider's side: the record
 * we publish at our LDIFLocationURL, and the copy the daemon uses.
 *
 *   pecctl index record [--sign]   our record as RFC 6109 LDIF on stdout; with
 *                                  --sign the .p7m (CMS signed-data, DER) that
 *                                  the authority fetches, signed with our PEC key
 *   pecctl index show              the copy in use: where from, how old, who
 *                                  signed it, its providers and CRLs
 *   pecctl tls-policy [--format F] [-o FILE]
 *                                  the MTA's TLS policy table for the other
 *                                  providers' domains in that copy
 *                                  (provider/tlspolicy.h), on stdout or FILE
 *
 * The record is built from the configuration (provider_name, provider_unit,
 * receipt_address as mailReceipt, domains, sign_cert and record_certs,
 * ldif_location_url) and read back by the same loader the daemon uses; the
 * signed one must load back as a provider's own record (signer listed in it,
 * chain to trust_anchors) before a byte is printed.
 */
#include "message/crl.h"
#include "message/index.h"
#include "message/index_record.h"
#include "message/libinit.h"
#include "message/smime.h"
#include "provider/directory.h"
#include "provider/tlspolicy.h"
#include "util/xalloc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pecctl.h"

#define EX_SOFTWARE 70

/* Our certificates, signing one first: *N DER blobs.  0, or -1 after saying why. */
static int our_certs(const struct pec_config *cfg, unsigned char ***der, size_t **len, size_t *n)
{
    char err[768];

    if (pec_pem_certs(cfg->sign_cert, der, len, n, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: sign_cert: %s\n", err);
        return -1;
    }
    for (size_t i = 1; i < *n; i++)
        free((*der)[i]); /* a chain after the certificate is not ours to list */
    *n = 1;
    for (size_t i = 0; i < cfg->record_certs.n; i++) {
        unsigned char **d;
        size_t *l, m;

        if (pec_pem_certs(cfg->record_certs.v[i], &d, &l, &m, err, sizeof(err)) < 0) {
            fprintf(stderr, "pecctl: record_certs: %s\n", err);
            return -1;
        }
        *der = xrealloc(*der, (*n + 1) * sizeof(**der));
        *len = xrealloc(*len, (*n + 1) * sizeof(**len));
        (*der)[*n] = d[0];
        (*len)[(*n)++] = l[0];
        for (size_t k = 1; k < m; k++)
            free(d[k]);
        free(d);
        free(l);
    }
    return 0;
}

/* The record signed with our key, checked as the authority would check it. */
static int sign_record(const struct pec_config *cfg, const char *ldif, size_t len,
                       unsigned char **der, size_t *derlen)
{
    struct pec_signer *signer;
    struct pec_trust *trust;
    struct pec_index *back = NULL;
    char err[1024];

    signer = pec_signer_load(cfg->sign_cert, cfg->sign_chain, cfg->sign_key, cfg->sign_digest, err,
                             sizeof(err));
    if (signer == NULL) {
        fprintf(stderr, "pecctl: %s\n", err);
        return PEC_EX_CONFIG;
    }
    trust = pec_trust_load(cfg->trust_anchors, err, sizeof(err));
    if (trust == NULL) {
        fprintf(stderr, "pecctl: trust_anchors: %s\n", err);
        pec_signer_free(signer);
        return PEC_EX_CONFIG;
    }
    if (pec_smime_sign_attached(signer, (const unsigned char *)ldif, len, time(NULL), der, derlen,
                                err, sizeof(err)) < 0)
        fprintf(stderr, "pecctl: index record: %s\n", err);
    else if ((back = pec_index_parse_signed(*der, *derlen, "the signed record", trust,
                                            PEC_INDEX_BY_LISTED, err, sizeof(err))) == NULL)
        fprintf(stderr, "pecctl: index record: the signed record would be refused: %s\n", err);
    pec_index_free(back);
    pec_trust_free(trust);
    pec_signer_free(signer);
    return back != NULL ? 0 : EX_SOFTWARE;
}

static int index_record(const struct pec_config *cfg, int sign)
{
    struct pec_record_facts f = {
        .name = cfg->provider_name,
        .unit = cfg->provider_unit,
        .mail_receipt = cfg->receipt_address,
        .ldif_url = cfg->ldif_location_url,
        .domains = cfg->domains.v,
        .ndomains = cfg->domains.n,
    };
    unsigned char **certs = NULL, *der = NULL;
    size_t *lens = NULL, ncerts = 0, len = 0, derlen = 0;
    char err[1024], *ldif = NULL;
    int rc = PEC_EX_CONFIG;

    if (our_certs(cfg, &certs, &lens, &ncerts) < 0)
        goto done;
    f.certs = (const unsigned char *const *)certs;
    f.certlens = lens;
    f.ncerts = ncerts;
    if ((ldif = pec_index_record(&f, &len, err, sizeof(err))) == NULL) {
        fprintf(stderr, "pecctl: index record: %s\n", err);
        goto done;
    }
    rc = sign ? sign_record(cfg, ldif, len, &der, &derlen) : 0;
    if (rc == 0 && fwrite(der ? der : (unsigned char *)ldif, 1, der ? derlen : len, stdout) !=
                       (der ? derlen : len))
        rc = EX_IOERR;
done:
    for (size_t i = 0; i < ncerts; i++)
        free(certs[i]);
    free(certs);
    free(lens);
    free(ldif);
    free(der);
    return rc;
}

/*
 * The copy the daemon uses, read and verified as the daemon reads it (with
 * MAY_FETCH, from index_source when there is none yet): *D and *TRUST for the
 * caller to close.  0, or an exit status after saying why.
 */
static int load_copy(const struct pec_config *cfg, int may_fetch, struct pec_directory **d,
                     struct pec_trust **trust, struct pec_dir_report *rep)
{
    char err[1024];

    *d = NULL;
    if ((*trust = pec_trust_load(cfg->trust_anchors, err, sizeof(err))) == NULL) {
        fprintf(stderr, "pecctl: trust_anchors: %s\n", err);
        return PEC_EX_CONFIG;
    }
    *d = pec_directory_open(cfg, *trust, NULL, err, sizeof(err));
    if (*d == NULL || pec_directory_load(*d, may_fetch, rep, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: %s\n", err);
        return *d == NULL ? PEC_EX_CONFIG : 1;
    }
    return 0;
}

static int index_show(const struct pec_config *cfg)
{
    struct pec_dir_report rep;
    struct pec_directory *d;
    struct pec_trust *trust;
    struct pec_index *idx;
    char t[40];
    time_t at, now = time(NULL);
    int rc = load_copy(cfg, 0, &d, &trust, &rep);

    if (rc != 0)
        goto done;
    idx = pec_directory_index(d);
    at = pec_directory_fetched_at(d);
    for (int i = 0; i < rep.nwarnings; i++)
        printf("warning:   %s\n", rep.warning[i]);
    printf("source:    %s\n", cfg->index_source);
    printf("fetched:   %s (%lld s ago)%s\n", local_time(at, t, sizeof(t)), (long long)(now - at),
           now - at > cfg->index_max_age ? ", OVER index_max_age" : "");
    if (pec_index_signer(idx)[0] != '\0')
        printf("signed by: %s, at %s\n", pec_index_signer(idx),
               local_time(pec_index_signed_at(idx), t, sizeof(t)));
    printf("providers: %zu\n", pec_index_count(idx));
    for (size_t i = 0; i < pec_index_count(idx); i++) {
        const struct pec_provider *p = pec_index_provider(idx, i);

        printf("  %s%s%s: %zu domain(s), %zu certificate(s), mailReceipt %s\n", p->name,
               p->unit ? " / " : "", p->unit ? p->unit : "", p->ndomains, p->ncerts,
               p->mail_receipt);
    }
    printf("CRLs:      %zu\n", rep.crls);
    pec_index_free(idx);
done:
    pec_directory_close(d);
    pec_trust_free(trust);
    return rc;
}

/* pecctl tls-policy [--format postfix|sendmail] [-o FILE] */
static int tls_policy(const struct pec_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, NULL, 'f'}, {"output", required_argument, NULL, 'o'}, {0}};
    const char *format = cfg->tls_policy_format, *file = NULL;
    struct pec_dir_report rep;
    struct pec_directory *d;
    struct pec_trust *trust;
    struct pec_index *idx;
    char err[600], *text;
    int opt, rc;

    optind = 0; /* GNU getopt: start over, at argv[1] */
    while ((opt = getopt_long(argc, argv, "f:o:", opts, NULL)) != -1) {
        if (opt == 'f' && pec_tls_policy_format_ok(optarg))
            format = optarg;
        else if (opt == 'o')
            file = optarg;
        else
            return EX_USAGE;
    }
    if (optind != argc)
        return EX_USAGE;
    if ((rc = load_copy(cfg, 1, &d, &trust, &rep)) == 0) {
        idx = pec_directory_index(d);
        text = pec_tls_policy(cfg, idx, format);
        if (file == NULL && fputs(text, stdout) < 0)
            rc = EX_IOERR;
        else if (file != NULL && pec_tls_policy_install(file, text, err, sizeof(err)) < 0) {
            fprintf(stderr, "pecctl: tls-policy: %s\n", err);
            rc = EX_IOERR;
        }
        free(text);
        pec_index_free(idx);
    }
    pec_directory_close(d);
    pec_trust_free(trust);
    return rc;
}

int pecctl_index(struct ctl *c, int argc, char **argv)
{
    char err[512];

    if (pec_lib_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "pecctl: %s\n", err);
        return EX_SOFTWARE;
    }
    if (strcmp(argv[0], "tls-policy") == 0) {
        int rc = tls_policy(c->cfg, argc, argv);

        if (rc == EX_USAGE)
            usage(stderr);
        return rc;
    }
    if (argc == 2 && strcmp(argv[1], "show") == 0)
        return index_show(c->cfg);
    if (argc == 2 && strcmp(argv[1], "record") == 0)
        return index_record(c->cfg, 0);
    if (argc == 3 && strcmp(argv[1], "record") == 0 && strcmp(argv[2], "--sign") == 0)
        return index_record(c->cfg, 1);
    usage(stderr);
    return EX_USAGE;
}
