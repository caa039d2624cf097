/*
 * fuzz_daticert - a peer's daticert.xml (pec_daticert_parse): libxml2 with our guards
 * (no declarations, no entities, no network), the DTD, then the struct.
 *
 * Promises held: a parsed document's enumerations are in range and its strings clean
 * UTF-8; and what we parsed, when our writer accepts it, comes back identical when the
 * writer's output is parsed again, so a receipt that copies a peer's facts states them
 * as the peer did.
 */
#include "harness.h"

#include "message/daticert.h"

#include <stdlib.h>
#include <string.h>

static void check_text(const char *s)
{
    FUZZ_CHECK(s == NULL || fuzz_utf8_ok(s, strlen(s)));
}

static int same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void check_parsed(const struct pec_daticert *d)
{
    FUZZ_CHECK(pec_tipo_name(d->tipo) != NULL && pec_errore_name(d->errore) != NULL);
    FUZZ_CHECK(d->ricevuta == PEC_RICEVUTA_NONE || pec_ricevuta_name(d->ricevuta) != NULL);
    FUZZ_CHECK(d->identificativo != NULL && *d->identificativo != '\0');
    check_text(d->mittente);
    check_text(d->risposte);
    check_text(d->oggetto);
    check_text(d->gestore_emittente);
    check_text(d->giorno);
    check_text(d->ora);
    check_text(d->zona);
    check_text(d->identificativo);
    check_text(d->msgid);
    check_text(d->consegna);
    check_text(d->errore_esteso);
    for (size_t i = 0; i < d->n_destinatari; i++) {
        FUZZ_CHECK(d->destinatari[i].address != NULL);
        check_text(d->destinatari[i].address);
    }
    for (size_t i = 0; i < d->n_ricezione; i++) {
        FUZZ_CHECK(d->ricezione[i] != NULL);
        check_text(d->ricezione[i]);
    }
}

static void check_same(const struct pec_daticert *a, const struct pec_daticert *b)
{
    FUZZ_CHECK(a->tipo == b->tipo && a->errore == b->errore && a->ricevuta == b->ricevuta);
    FUZZ_CHECK(same_text(a->mittente, b->mittente));
    FUZZ_CHECK(same_text(a->risposte, b->risposte));
    FUZZ_CHECK(same_text(a->oggetto, b->oggetto));
    FUZZ_CHECK(same_text(a->gestore_emittente, b->gestore_emittente));
    FUZZ_CHECK(same_text(a->giorno, b->giorno));
    FUZZ_CHECK(same_text(a->ora, b->ora));
    FUZZ_CHECK(same_text(a->zona, b->zona));
    FUZZ_CHECK(same_text(a->identificativo, b->identificativo));
    FUZZ_CHECK(same_text(a->msgid, b->msgid));
    FUZZ_CHECK(same_text(a->consegna, b->consegna));
    FUZZ_CHECK(same_text(a->errore_esteso, b->errore_esteso));
    FUZZ_CHECK(a->n_destinatari == b->n_destinatari && a->n_ricezione == b->n_ricezione);
    for (size_t i = 0; i < a->n_destinatari; i++)
        FUZZ_CHECK(a->destinatari[i].tipo == b->destinatari[i].tipo &&
                   same_text(a->destinatari[i].address, b->destinatari[i].address));
    for (size_t i = 0; i < a->n_ricezione; i++)
        FUZZ_CHECK(same_text(a->ricezione[i], b->ricezione[i]));
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
    struct pec_daticert d, again;
    char err[512], *xml;
    size_t len;

    if (pec_daticert_parse((const char *)data, size, &d, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0] != '\0');
        return 0;
    }
    check_parsed(&d);
    if (pec_daticert_write(&d, &xml, &len, err, sizeof(err)) == 0) {
        if (pec_daticert_parse(xml, len, &again, err, sizeof(err)) != 0)
            fuzz_fail("our own daticert.xml does not parse: %s\n%.*s", err, (int)len, xml);
        check_same(&d, &again);
        pec_daticert_free(&again);
        free(xml);
    }
    pec_daticert_free(&d);
    return 0;
}
