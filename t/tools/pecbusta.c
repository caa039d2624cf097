/*
 * pecbusta - wrap one original message in a busta di trasporto signed with
 * a test provider's certificate, as the access point would: the input for
 * tests of the reception and delivery points.
 *
 * usage: pecbusta [-p PKI_DIR] [-s PROVIDER] [-n NAME] [-f SENDER] [-t INSTANT] [ORIGINAL]
 *
 * ORIGINAL (default: standard input) is the submitted message; bare LF line
 * ends are made CRLF.  Its To and Cc recipients are the busta's
 * destinatari, all of kind certificato; its X-TipoRicevuta asks for the
 * receipt type.  PROVIDER is the certificate directory under the PKI
 * (default "a"), NAME the provider name (default "Gestore A S.p.A."),
 * SENDER the MAIL FROM (default: the From address), INSTANT a fixed clock
 * ("2024-06-01T10:00:00Z": the busta's times and signingTime; default now).  The busta goes to
 * standard output as the MTA delivers it: the original's inherited header
 * fields, then the busta's own.  The identificativo is a fresh one.
 */
#include "message/busta.h"
#include "message/ident.h"
#include "message/original.h"
#include "message/pecmsg.h"
#include "util/spool.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, const char *why)
{
    fprintf(stderr, "pecbusta: %s: %s\n", what, why);
    exit(1);
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0, got;
    char *buf = xmalloc(cap);

    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            buf = xrealloc(buf, cap *= 2);
    }
    if (ferror(f))
        die("input", strerror(errno));
    *len = n;
    return buf;
}

static int put_out(const unsigned char *chunk, size_t n, void *arg)
{
    return fwrite(chunk, 1, n, stdout) == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *pki = getenv("PEC_PKI_DIR"), *prov = "a", *name = "Gestore A S.p.A.";
    const char *sender = NULL, *at = NULL;
    char err[512], cert[4096], chain[4096], key[4096], *raw, *id;
    struct pec_destinatario *dest;
    struct pec_signer *signer;
    struct pec_original o;
    struct pec_clock clock;
    struct pec_ident ident;
    struct pec_issuer iss;
    struct pec_built b;
    struct pec_spool *full;
    size_t len, nd = 0;
    FILE *in = stdin;
    int opt;

    while ((opt = getopt(argc, argv, "p:s:n:f:t:")) != -1) {
        switch (opt) {
        case 'p':
            pki = optarg;
            break;
        case 's':
            prov = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'f':
            sender = optarg;
            break;
        case 't':
            at = optarg;
            break;
        default:
            fprintf(stderr, "usage: pecbusta [-p PKI] [-s PROVIDER] [-n NAME] [-f SENDER] "
                            "[-t INSTANT] [ORIGINAL]\n");
            return 2;
        }
    }
    if (pki == NULL || optind + 1 < argc)
        die("usage", "pecbusta [-p PKI] [-s PROVIDER] [-n NAME] [-f SENDER] [ORIGINAL]");
    if (optind < argc && (in = fopen(argv[optind], "rb")) == NULL)
        die(argv[optind], strerror(errno));
    raw = read_all(in, &len);

    snprintf(cert, sizeof(cert), "%s/%s/cert.pem", pki, prov);
    snprintf(chain, sizeof(chain), "%s/%s/chain.pem", pki, prov);
    snprintf(key, sizeof(key), "%s/%s/key.pem", pki, prov);
    if ((signer = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err))) == NULL)
        die(cert, err);
    if (pec_clock_init(&clock, "Europe/Rome", at, err, sizeof(err)) != 0)
        die("clock", err);
    if (pec_ident_init(&ident, 1, strchr(pec_signer_address(signer), '@') + 1, &clock, err,
                       sizeof(err)) != 0)
        die("ident", err);
    iss = (struct pec_issuer){.provider_name = name,
                              .service_address = pec_signer_address(signer),
                              .signer = signer,
                              .clock = &clock,
                              .ident = &ident,
                              .spool_mem_limit = 1 << 20};

    if (pec_original_from_mem(&o, raw, len, NULL, 1 << 20, sender, NULL, 0, err, sizeof(err)) != 0)
        die("original", err);
    dest = xcalloc(o.n_to + o.n_cc + 1, sizeof(*dest));
    for (size_t i = 0; i < o.n_to; i++)
        dest[nd++] = (struct pec_destinatario){o.to[i], PEC_DEST_CERTIFICATO};
    for (size_t i = 0; i < o.n_cc; i++)
        dest[nd++] = (struct pec_destinatario){o.cc[i], PEC_DEST_CERTIFICATO};
    id = pec_ident_new(&ident);
    if (pec_build_busta(&iss, &o, dest, nd, id, pec_clock_now(&clock), &b, err, sizeof(err)) != 0)
        die("busta", err);
    full = pec_spool_new(NULL, 1 << 20);
    if (pec_built_full(&b, o.raw, pec_busta_keeps, full, err, sizeof(err)) != 0)
        die("busta", err);
    if (pec_spool_each(full, 0, pec_spool_size(full), put_out, NULL) != 0 || fflush(stdout) != 0)
        die("output", strerror(errno));

    pec_spool_free(full);
    pec_built_free(&b);
    free(id);
    free(dest);
    pec_original_free(&o);
    pec_signer_free(signer);
    free(raw);
    if (in != stdin)
        fclose(in);
    return 0;
}
