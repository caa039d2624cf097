/*
 * ident - identificativo and notice Message-ID generation.
 *
 * The counter alone is unique within a process; pid and time separate
 * processes on one node (a restarted daemon may get an old pid, but not in
 * the same second with the same counter and the same random bits); the node
 * id separates nodes sharing a store.  The random bits cover what remains:
 * pid reuse in the same second after a crash, clocks set back.
 */
#include "message/ident.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong counter;
static atomic_int deterministic;
static atomic_ulong det_seed;

/* letters, digits and inner hyphens, dot-separated: valid in a dot-atom too */
static int host_name_ok(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len == 0 || len > PEC_DOMAIN_MAX)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            return 0;
        }
    }
    return 1;
}

int pec_ident_init(struct pec_ident *id, unsigned long node, const char *domain,
                   const struct pec_clock *clock, char *err, size_t errlen)
{
    memset(id, 0, sizeof(*id));
    if (domain == NULL || !host_name_ok(domain)) {
        pec_seterr(err, errlen, "identifier domain \"%s\" is not a host name",
                   domain ? domain : "(null)");
        return -1;
    }
    id->node = node;
    snprintf(id->domain, sizeof(id->domain), "%s", domain);
    id->clock = clock;
    return 0;
}

void pec_ident_set_deterministic(unsigned long seed)
{
    atomic_store(&det_seed, seed);
    atomic_store(&counter, 0);
    atomic_store(&deterministic, 1);
}

/*
 * RAND_bytes failing means OpenSSL cannot seed itself; an identifier without
 * its random part could collide, and there is nothing better to do than stop,
 * as for an allocation failure.
 */
static unsigned long random_part(unsigned long n)
{
    unsigned char b[4];

    if (atomic_load(&deterministic))
        return (atomic_load(&det_seed) + n) & 0xffffffffUL;
    if (RAND_bytes(b, sizeof(b)) != 1) {
        fprintf(stderr, "pecmilter: fatal: RAND_bytes failed: no random bits for identifiers\n");
        abort();
    }
    return (unsigned long)b[0] << 24 | (unsigned long)b[1] << 16 | (unsigned long)b[2] << 8 | b[3];
}

static char *make_id(const struct pec_ident *id, const char *prefix)
{
    unsigned long n = atomic_fetch_add(&counter, 1) + 1;
    long pid = atomic_load(&deterministic) ? 0 : (long)getpid();
    char stamp[15];

    /* a clock outside years 1..9999 is a broken system; keep the id unique */
    if (pec_time_utc_stamp(pec_clock_now(id->clock), stamp) != 0)
        snprintf(stamp, sizeof(stamp), "00000000000000");
    return xasprintf("%s%lu.%s.%05ld.%lu.%08lx@%s", prefix, id->node, stamp, pid, n, random_part(n),
                     id->domain);
}

char *pec_ident_new(const struct pec_ident *id)
{
    return make_id(id, "opec");
}

char *pec_ident_message_id(const struct pec_ident *id)
{
    return make_id(id, "npec");
}
