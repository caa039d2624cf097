/*
 * fuzz_original - the access point's reading of a submitted message (original.h): the
 * header section cut into fields, the facts the rules ask for (From, To, Cc, Bcc,
 * Subject, Message-ID, X-TipoRicevuta), the long and NUL lines; then the formal checks
 * (access.h) and postacert.eml with the identity changed (busta.h), as a busta would
 * carry the message.
 *
 * The bytes are read twice: made CRLF (pec_original_from_mem, the milter's path) and as
 * they are (pec_original_view, the path of a postacert.eml a peer sent).  Promises held:
 * fields in order inside the header section, the facts clean UTF-8, the long line really
 * long, and postacert.eml the original byte for byte apart from its Message-ID, which is
 * the new identificativo.
 */
#include "harness.h"

#include "message/busta.h"
#include "message/original.h"
#include "provider/access.h"
#include "util/spool.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IDENT "opec.fuzz.1@pec-a.test"
#define MEM_LIMIT (64u * 1024 * 1024)

static unsigned char *spool_bytes(const struct pec_spool *sp, size_t *len)
{
    size_t n = pec_spool_size(sp);
    unsigned char *b = malloc(n + 1);

    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(pec_spool_pread(sp, 0, b, n) == (ssize_t)n);
    *len = n;
    return b;
}

static void check_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(v[i] != NULL && *v[i] != '\0' && fuzz_utf8_ok(v[i], strlen(v[i])));
}

static void check_original(const struct pec_original *o)
{
    size_t size = pec_spool_size(o->raw), prev_end = 0;

    FUZZ_CHECK(o->header_len <= size && o->header_len <= PEC_HEADER_MAX);
    FUZZ_CHECK(o->body_offset == o->header_len || o->body_offset == o->header_len + 2);
    FUZZ_CHECK(o->body_offset <= size);
    for (size_t i = 0; i < o->n_fields; i++) {
        const struct pec_field *f = &o->fields[i];
        char *raw, *unfolded;

        FUZZ_CHECK(f->name != NULL && *f->name != '\0');
        FUZZ_CHECK(f->off >= prev_end && f->len > strlen(f->name));
        FUZZ_CHECK(f->off + f->len <= o->header_len);
        prev_end = f->off + f->len;
        raw = pec_original_field_raw(o, f);
        FUZZ_CHECK(strlen(raw) < f->len);
        free(raw);
        unfolded = pec_original_header(o, f->name);
        FUZZ_CHECK(unfolded != NULL && strchr(unfolded, '\n') == NULL);
        free(unfolded);
    }
    check_list(o->from, o->n_from);
    check_list(o->to, o->n_to);
    check_list(o->cc, o->n_cc);
    check_list(o->reply_to, o->n_reply_to);
    FUZZ_CHECK(o->subject == NULL || fuzz_utf8_ok(o->subject, strlen(o->subject)));
    FUZZ_CHECK((o->subject == NULL) == (o->subject_raw == NULL));
    FUZZ_CHECK(o->message_id == NULL ||
               (o->message_id[0] == '<' && o->message_id[strlen(o->message_id) - 1] == '>'));
    if (o->long_line.number != 0)
        FUZZ_CHECK(o->long_line.len > PEC_LINE_MAX && o->long_line.off + o->long_line.len <= size);
    if (o->nul_line.number != 0)
        FUZZ_CHECK(o->nul_line.off < size && o->eight_bit);
    FUZZ_CHECK(pec_original_mittente(o) != NULL);
}

/* postacert.eml: the new Message-ID, the client's as X-Riferimento-Message-ID, same body */
static void check_postacert(const struct pec_original *o)
{
    struct pec_spool *sp = pec_spool_new(NULL, MEM_LIMIT);
    struct pec_original p;
    unsigned char *a, *b;
    size_t alen, blen, i;
    char err[256], *ref;

    FUZZ_CHECK(pec_postacert_write(o, IDENT, sp) == 0);
    if (pec_original_view(&p, sp, err, sizeof(err)) != 0) {
        /* only a header section grown past the limit by the two fields we add */
        FUZZ_CHECK(o->header_len + 200 + (o->message_id ? strlen(o->message_id) : 0) >
                   PEC_HEADER_MAX);
        pec_spool_free(sp);
        return;
    }
    check_original(&p);
    FUZZ_CHECK(p.message_id != NULL && strcmp(p.message_id, "<" IDENT ">") == 0);
    /* the client's id right after ours (a client may have forged one further up) */
    for (i = 0; i < p.n_fields && strcasecmp(p.fields[i].name, "Message-ID") != 0; i++)
        ;
    FUZZ_CHECK(i < p.n_fields);
    if (o->message_id != NULL) {
        FUZZ_CHECK(i + 1 < p.n_fields &&
                   strcasecmp(p.fields[i + 1].name, "X-Riferimento-Message-ID") == 0);
        ref = pec_original_field_raw(&p, &p.fields[i + 1]);
        FUZZ_CHECK(strcmp(ref, o->message_id) == 0);
        free(ref);
    }
    a = spool_bytes(o->raw, &alen);
    b = spool_bytes(sp, &blen);
    FUZZ_CHECK(alen - o->body_offset == blen - p.body_offset);
    FUZZ_CHECK(memcmp(a + o->body_offset, b + p.body_offset, alen - o->body_offset) == 0);
    free(a);
    free(b);
    pec_original_free(&p);
    pec_spool_free(sp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_lib_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const rcpts[] = {"<luigi.bianchi@pec-b.test>", "carlo@example.org"};
    struct pec_access_reply reply;
    struct pec_original o;
    struct pec_spool *raw;
    char err[256];

    if (pec_original_from_mem(&o, data, size, NULL, MEM_LIMIT, "<mario.rossi@pec-a.test>", rcpts, 2,
                              err, sizeof(err)) == 0) {
        check_original(&o);
        FUZZ_CHECK(o.n_rcpts == 2 && strcmp(o.mail_from, "mario.rossi@pec-a.test") == 0);
        if (pec_access_formal(&o, 100LL * 1024 * 1024, &reply) != 0)
            FUZZ_CHECK(reply.fault != PEC_ACCESS_OK && reply.rcode != NULL &&
                       reply.rcode[0] == '5');
        check_postacert(&o);
    }
    pec_original_free(&o);

    raw = pec_spool_new(NULL, MEM_LIMIT);
    FUZZ_CHECK(pec_spool_write(raw, data, size) == 0);
    if (pec_original_view(&o, raw, err, sizeof(err)) == 0)
        check_original(&o);
    pec_original_free(&o);
    pec_spool_free(raw);
    return 0;
}
