/*
 * store_int - what the store's front (store.c) and its backend share: the
 * contents of a batch.  Not for callers; they see only store.h.
 */
#ifndef PEC_STORE_INT_H
#define PEC_STORE_INT_H

#include "store/store.h"

struct batch_state {
    char *identificativo;
    char *address; /* NULL: every recipient */
    enum pec_rcpt_state state;
    time_t when;
    char *detail;
};

struct batch_out {
    char *message_id;
    char *identificativo;
    char *tipo;
    char **rcpt;
    size_t nrcpt;
    const unsigned char *data; /* borrowed */
    size_t len;
};

struct batch_warned {
    char *identificativo;
    char *address;
    time_t when;
};

struct batch_expect {
    char *identificativo;
    char *address;
    unsigned states;
    int unwarned;
};

struct batch_delivered {
    char *mailbox;
    char *message_id;
    time_t when;
};

struct batch_refused {
    struct pec_refusal r; /* strings owned */
    char *mittente;
    char *client_msgid;
};

/* A record whose strings the batch owns (the const fields point at copies). */
struct batch_record {
    struct pec_record r;
    char *owned[17];
};

struct pec_batch {
    struct pec_tx *tx; /* strings and recipients copied */
    size_t ntx;
    struct batch_state *state;
    size_t nstate;
    struct batch_out *out;
    size_t nout;
    struct batch_record *rec;
    size_t nrec;
    struct batch_warned *warned;
    size_t nwarned;
    struct batch_delivered *delivered;
    size_t ndelivered;
    struct batch_refused *refused;
    size_t nrefused;
    struct batch_expect *expect;
    size_t nexpect;
};

#endif
