/*
 * ident - identifiers this provider assigns: the identificativo (PEC msgid)
 * of each busta di trasporto and the Message-ID of each generated notice.
 *
 * Both are dot-atom "@" domain, unique across threads, restarts and several
 * nodes sharing one store, because they combine the node id, the UTC time of
 * the clock, the process id, a per-process atomic counter and 32 random bits:
 *
 *     opec<node>.<yyyymmddhhmmss>.<pid>.<counter>.<rand8hex>@<domain>
 *     npec<node>.<yyyymmddhhmmss>.<pid>.<counter>.<rand8hex>@<domain>
 *
 * ("opec" for the identificativo, the shape real providers use; "npec" for
 * notices), so a notice's Message-ID never equals any identificativo.  They
 * are returned without angle brackets; headers add them.
 *
 * pec_ident_set_deterministic() is for tests: from then on the pid field is
 * 0, the counter restarts at 1 and the random part counts up from the seed,
 * so with a fixed clock a run produces the same identifiers every time.
 * All functions are thread-safe.
 */
#ifndef PEC_IDENT_H
#define PEC_IDENT_H

#include <stddef.h>

#include "util/clock.h"

#define PEC_DOMAIN_MAX 253

struct pec_ident {
    unsigned long node;              /* node id, distinct per node sharing a store */
    char domain[PEC_DOMAIN_MAX + 1]; /* provider mail domain */
    const struct pec_clock *clock;   /* borrowed; must outlive the generator */
};

/* Returns 0, or -1 with a reason when domain is not a host name. */
int pec_ident_init(struct pec_ident *id, unsigned long node, const char *domain,
                   const struct pec_clock *clock, char *err, size_t errlen);

/* a new identificativo; the caller frees it */
char *pec_ident_new(const struct pec_ident *id);

/* a new Message-ID (without brackets) for a generated notice; caller frees */
char *pec_ident_message_id(const struct pec_ident *id);

/* tests only: reproducible identifiers, see above */
void pec_ident_set_deterministic(unsigned long seed);

#endif
