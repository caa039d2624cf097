/*
 * pecrecord - append one record to a store's legal log, through the store
 * (so the hash chain stays sound), for tests that need a log the daemon
 * would not write: the auditor must then name what is wrong.
 *
 *   pecrecord -c CONF LABEL emissione|ricezione IDENTIFICATIVO [FIELD=VALUE...]
 *
 * LABEL is the TMail label (Consegna, PresaInCarico, BustaTrasporto...);
 * FIELD is at (epoch seconds; default now), message_id, destinatari,
 * consegna, ricezione, mittente or oggetto.
 */
#include "provider/conf.h"
#include "store/registro.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const labels[] = {
    [PEC_REG_BUSTA_TRASPORTO] = "BustaTrasporto",
    [PEC_REG_BUSTA_ANOMALIA] = "BustaAnomalia",
    [PEC_REG_ACCETTAZIONE] = "Accettazione",
    [PEC_REG_NON_ACCETTAZIONE] = "NonAccettazione",
    [PEC_REG_NON_ACCETTAZIONE_VIRUS] = "NonAccettazioneVirus",
    [PEC_REG_PRESA_IN_CARICO] = "PresaInCarico",
    [PEC_REG_CONSEGNA] = "Consegna",
    [PEC_REG_MANCATA_CONSEGNA] = "MancataConsegna",
    [PEC_REG_MANCATA_CONSEGNA_VIRUS] = "MancataConsegnaVirus",
    [PEC_REG_MANCATA_CONSEGNA_12H] = "MancataConsegna12h",
    [PEC_REG_MANCATA_CONSEGNA_24H] = "MancataConsegna24h",
    [PEC_REG_RILEVAZIONE_VIRUS] = "RilevazioneVirus",
};

static int usage(void)
{
    fprintf(stderr, "usage: pecrecord -c CONF LABEL emissione|ricezione IDENTIFICATIVO "
                    "[FIELD=VALUE...]\n");
    return 64;
}

int main(int argc, char **argv)
{
    struct pec_config *cfg;
    struct pec_store *st;
    struct pec_batch *b;
    struct pec_record r;
    char err[1024];
    int kind = -1, rc;

    if (argc < 6 || strcmp(argv[1], "-c") != 0)
        return usage();
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (strcmp(labels[i], argv[3]) == 0)
            kind = (int)i;
    if (kind < 0 || (strcmp(argv[4], "emissione") != 0 && strcmp(argv[4], "ricezione") != 0))
        return usage();
    pec_record_init(&r, (enum pec_reg_kind)kind,
                    argv[4][0] == 'e' ? PEC_REG_EMISSIONE : PEC_REG_RICEZIONE, time(NULL), argv[5]);
    for (int i = 6; i < argc; i++) {
        char *v = strchr(argv[i], '=');

        if (v == NULL)
            return usage();
        *v++ = '\0';
        if (strcmp(argv[i], "at") == 0)
            r.at = (time_t)strtoll(v, NULL, 10);
        else if (strcmp(argv[i], "message_id") == 0)
            r.message_id = v;
        else if (strcmp(argv[i], "destinatari") == 0)
            r.destinatari = v;
        else if (strcmp(argv[i], "consegna") == 0)
            r.consegna = v;
        else if (strcmp(argv[i], "ricezione") == 0)
            r.ricezione = v;
        else if (strcmp(argv[i], "mittente") == 0)
            r.mittente = v;
        else if (strcmp(argv[i], "oggetto") == 0)
            r.oggetto = v;
        else
            return usage();
    }
    cfg = pec_config_load(argv[2], err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "pecrecord: %s\n", err);
        return 78;
    }
    st = pec_store_open(cfg->store, PEC_STORE_NOCREATE, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "pecrecord: %s\n", err);
        pec_config_unref(cfg);
        return 74;
    }
    b = pec_batch_new();
    pec_batch_record(b, &r);
    rc = pec_store_commit(st, b, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "pecrecord: %s\n", err);
    pec_batch_free(b);
    pec_store_close(st);
    pec_config_unref(cfg);
    return rc < 0 ? 74 : 0;
}
