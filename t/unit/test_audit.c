/*
 * test_audit - the log auditor over real stores written with
 * pec_batch_record, the records shaped as the access point, the reception
 * point, the delivery point and the scheduler write them.
 *
 * A clean log with every legitimate shape (a receipt recorded twice with one
 * Message-ID, our own recipient's receipts emitted and received back, an
 * esterno recipient, a refusal, a timeout, a virus found by the recipients'
 * provider (with and without its presa in carico), another provider's busta,
 * another provider's busta our antivirus stopped,
 * an anomaly, an anomaly imitating a busta, a transaction still inside its
 * deadline) must give no
 * violation and one pending transaction.  Then each invariant is broken
 * once, by its own transaction, and exactly that transaction must be named,
 * once, for that reason.
 */
#include "provider/audit.h"
#include "check.h"
#include "store/registro.h"
#include "store/store.h"

#include <unistd.h>

#define T0 1700000000
#define HOUR 3600
#define NOW (T0 + 48 * HOUR)
#define PEC "pec-a.test"

static char dir[] = "/tmp/test_audit.XXXXXX";

enum { EM = PEC_REG_EMISSIONE, RIC = PEC_REG_RICEZIONE, DEP = PEC_REG_DEPOSITO };

/* One record; the fields the audit reads, the rest filled as the roles do. */
static void rec(struct pec_batch *b, enum pec_reg_kind k, int way, time_t at, const char *id,
                const char *msgid, const char *dest, const char *consegna, const char *ricezione)
{
    struct pec_record r;

    pec_record_init(&r, k, (enum pec_reg_dir)way, at, id);
    r.mittente = "mario@" PEC;
    r.oggetto = "prova";
    r.gestore = "Gestore A";
    r.message_id = msgid;
    r.destinatari = dest;
    r.consegna = consegna;
    r.ricezione = ricezione;
    pec_batch_record(b, &r);
}

/* Busta and accettazione of our transaction ID at AT to DEST. */
static void accepted(struct pec_batch *b, time_t at, const char *id, const char *dest)
{
    char acc[128];

    snprintf(acc, sizeof(acc), "acc.%s", id);
    rec(b, PEC_REG_BUSTA_TRASPORTO, EM, at, id, id, dest, NULL, NULL);
    rec(b, PEC_REG_ACCETTAZIONE, EM, at, id, acc, dest, NULL, NULL);
}

static void clean_log(struct pec_batch *b)
{
    /* to another provider: presa in carico and consegna received, the consegna twice */
    accepted(b, T0, "c1@" PEC, "anna@pec-b.test (certificato)");
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 5, "c1@" PEC, "pic1@pec-b.test", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 9, "c1@" PEC, "con1@pec-b.test", "", "anna@pec-b.test",
        NULL);
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 700, "c1@" PEC, "con1@pec-b.test", "", "Anna@PEC-B.test",
        NULL);

    /*
     * within our domain, an esterno too: receipts emitted, then received back;
     * the presa in carico covers both of our recipients
     */
    accepted(b, T0 + 10, "c2@" PEC,
             "luca@" PEC " (certificato), eva@" PEC " (certificato), x@example.org (esterno)");
    rec(b, PEC_REG_PRESA_IN_CARICO, EM, T0 + 10, "c2@" PEC, "pic2@" PEC, "", NULL,
        "luca@" PEC ", eva@" PEC);
    rec(b, PEC_REG_CONSEGNA, EM, T0 + 11, "c2@" PEC, "con2l@" PEC, "", "luca@" PEC, NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA, EM, T0 + 11, "c2@" PEC, "mc2e@" PEC, "", "eva@" PEC, NULL);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 12, "c2@" PEC, "pic2@" PEC, "", NULL,
        "luca@" PEC ", eva@" PEC);
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 12, "c2@" PEC, "con2l@" PEC, "", "luca@" PEC, NULL);

    /* nothing came back: 12 h and 24 h notices, no presa in carico needed */
    accepted(b, T0 + 20, "c3@" PEC, "zeno@pec-c.test (certificato)");
    rec(b, PEC_REG_MANCATA_CONSEGNA_12H, EM, T0 + 20 + 12 * HOUR, "c3@" PEC, "w12@" PEC, "",
        "zeno@pec-c.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA_24H, EM, T0 + 20 + 24 * HOUR, "c3@" PEC, "w24@" PEC, "",
        "zeno@pec-c.test", NULL);

    /* nothing for 24 h, then a consegna all the same: late, allowed, a note */
    accepted(b, T0 + 25, "c6@" PEC, "zeno@pec-c.test (certificato)");
    rec(b, PEC_REG_MANCATA_CONSEGNA_12H, EM, T0 + 25 + 12 * HOUR, "c6@" PEC, "w12.c6@" PEC, "",
        "zeno@pec-c.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA_24H, EM, T0 + 25 + 24 * HOUR, "c6@" PEC, "w24.c6@" PEC, "",
        "zeno@pec-c.test", NULL);
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 25 + 30 * HOUR, "c6@" PEC, "con.c6@pec-c.test", "",
        "zeno@pec-c.test", NULL);

    /* refused: no busta, no accettazione, nothing expected */
    rec(b, PEC_REG_NON_ACCETTAZIONE, EM, T0 + 30, "c4@" PEC, "na4@" PEC,
        "anna@pec-b.test (certificato)", NULL, NULL);

    /* a virus found by the recipient's provider: its mancata consegna per virus */
    accepted(b, T0 + 40, "c5@" PEC, "anna@pec-b.test (certificato)");
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 41, "c5@" PEC, "pic5@pec-b.test", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, RIC, T0 + 42, "c5@" PEC, "rv5@pec-b.test", "",
        "anna@pec-b.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA_VIRUS, EM, T0 + 42, "c5@" PEC, "mcv5@" PEC, "",
        "anna@pec-b.test", NULL);

    /*
     * a virus found by the recipients' provider in the busta: no presa in
     * carico, a rilevazione virus per recipient, our mancata consegna per
     * virus for each
     */
    accepted(b, T0 + 44, "c7@" PEC,
             "anna@pec-b.test (certificato), luigi@pec-b.test (certificato)");
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, RIC, T0 + 45, "c7@" PEC, "rv7a@pec-b.test", "",
        "anna@pec-b.test", NULL);
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, RIC, T0 + 45, "c7@" PEC, "rv7l@pec-b.test", "",
        "luigi@pec-b.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA_VIRUS, EM, T0 + 45, "c7@" PEC, "mcv7a@" PEC, "",
        "anna@pec-b.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA_VIRUS, EM, T0 + 46, "c7@" PEC, "mcv7l@" PEC, "",
        "luigi@pec-b.test", NULL);

    /* another provider's busta, received, our antivirus stopped: a rilevazione virus each */
    rec(b, PEC_REG_BUSTA_TRASPORTO, RIC, T0 + 55, "r3@pec-b.test", "r3@pec-b.test",
        "luca@" PEC " (certificato), eva@" PEC " (certificato)", NULL, "luca@" PEC ", eva@" PEC);
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, EM, T0 + 55, "r3@pec-b.test", "rv.r3l@" PEC,
        "luca@" PEC " (certificato), eva@" PEC " (certificato)", "luca@" PEC, NULL);
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, EM, T0 + 55, "r3@pec-b.test", "rv.r3e@" PEC,
        "luca@" PEC " (certificato), eva@" PEC " (certificato)", "eva@" PEC, NULL);

    /* our accettazione, put into the sender's mailbox */
    rec(b, PEC_REG_ACCETTAZIONE, DEP, T0 + 1, "c1@" PEC, "acc.c1@" PEC, "", "mario@" PEC, NULL);

    /* another provider's busta, received: our presa in carico, then one outcome per recipient */
    rec(b, PEC_REG_BUSTA_TRASPORTO, RIC, T0 + 50, "r1@pec-b.test", "r1@pec-b.test",
        "luca@" PEC " (certificato), anna@pec-b.test (certificato)", NULL, "luca@" PEC);
    rec(b, PEC_REG_PRESA_IN_CARICO, EM, T0 + 50, "r1@pec-b.test", "pic.r1@" PEC,
        "luca@" PEC " (certificato), anna@pec-b.test (certificato)", NULL, "luca@" PEC);
    rec(b, PEC_REG_CONSEGNA, EM, T0 + 51, "r1@pec-b.test", "con.r1@" PEC, "", "luca@" PEC, NULL);

    /* an anomaly is no transaction */
    rec(b, PEC_REG_BUSTA_ANOMALIA, EM, T0 + 60, "an1@" PEC, "an1@" PEC, "luca@" PEC, NULL, NULL);

    /*
     * an anomaly carrying the Message-ID of another provider's busta (an
     * imitation sent before it), then that busta, taken and delivered: a note
     */
    rec(b, PEC_REG_BUSTA_ANOMALIA, EM, T0 + 61, "r2@pec-b.test", "r2@pec-b.test", "luca@" PEC, NULL,
        NULL);
    rec(b, PEC_REG_PRESA_IN_CARICO, EM, T0 + 62, "r2@pec-b.test", "pic.r2@" PEC,
        "luca@" PEC " (certificato)", NULL, "luca@" PEC);
    rec(b, PEC_REG_CONSEGNA, EM, T0 + 63, "r2@pec-b.test", "con.r2@" PEC,
        "luca@" PEC " (certificato)", "luca@" PEC, NULL);

    /* still inside its deadline: pending */
    accepted(b, NOW - HOUR, "p1@" PEC, "anna@pec-b.test (certificato)");
    rec(b, PEC_REG_CONSEGNA, RIC, NOW - 60, "p1@" PEC, "con.p1@pec-b.test", "", "anna@pec-b.test",
        NULL);
}

static void broken_log(struct pec_batch *b)
{
    const char *anna = "anna@pec-b.test (certificato)";

    /* v1: no accettazione */
    rec(b, PEC_REG_BUSTA_TRASPORTO, EM, T0, "v1@" PEC, "v1@" PEC, anna, NULL, NULL);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v1@" PEC, "pic.v1@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v1@" PEC, "con.v1@b", "", "anna@pec-b.test", NULL);

    /* v2: no busta */
    rec(b, PEC_REG_ACCETTAZIONE, EM, T0, "v2@" PEC, "acc.v2@" PEC, anna, NULL, NULL);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v2@" PEC, "pic.v2@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v2@" PEC, "con.v2@b", "", "anna@pec-b.test", NULL);

    /* v3: two accettazioni */
    accepted(b, T0, "v3@" PEC, anna);
    rec(b, PEC_REG_ACCETTAZIONE, EM, T0, "v3@" PEC, "acc2.v3@" PEC, anna, NULL, NULL);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v3@" PEC, "pic.v3@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v3@" PEC, "con.v3@b", "", "anna@pec-b.test", NULL);

    /* v4: presa in carico, then nothing for 48 h, and no 24 h notice */
    accepted(b, T0, "v4@" PEC, anna);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v4@" PEC, "pic.v4@b", "", NULL,
        "anna@pec-b.test");

    /* v5: consegna and mancata consegna */
    accepted(b, T0, "v5@" PEC, anna);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v5@" PEC, "pic.v5@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v5@" PEC, "con.v5@b", "", "anna@pec-b.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA, RIC, T0 + 3, "v5@" PEC, "mc.v5@b", "", "anna@pec-b.test",
        NULL);

    /* v6: in two prese in carico */
    accepted(b, T0, "v6@" PEC, anna);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v6@" PEC, "pic.v6@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v6@" PEC, "pic2.v6@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v6@" PEC, "con.v6@b", "", "anna@pec-b.test", NULL);

    /* v7: consegna without presa in carico */
    accepted(b, T0, "v7@" PEC, anna);
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v7@" PEC, "con.v7@b", "", "anna@pec-b.test", NULL);

    /* v8: rilevazione virus never turned into a mancata consegna per virus */
    accepted(b, T0, "v8@" PEC, anna);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v8@" PEC, "pic.v8@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, RIC, T0 + 2, "v8@" PEC, "rv.v8@b", "", "anna@pec-b.test",
        NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA_24H, EM, T0 + 24 * HOUR, "v8@" PEC, "w24.v8@" PEC, "",
        "anna@pec-b.test", NULL);

    /* v9: a consegna about the accettazione of c1 (a receipt about a notice) */
    rec(b, PEC_REG_CONSEGNA, EM, T0 + 3, "acc.c1@" PEC, "con.v9@" PEC, "", "mario@" PEC, NULL);

    /* v10: another provider's busta delivered without our presa in carico */
    rec(b, PEC_REG_CONSEGNA, EM, T0 + 3, "v10@pec-b.test", "con.v10@" PEC, "", "luca@" PEC, NULL);

    /* v11: a receipt for an esterno recipient */
    accepted(b, T0, "v11@" PEC, "x@example.org (esterno)");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v11@" PEC, "con.v11@b", "", "x@example.org", NULL);

    /* v12: refused, yet a busta went */
    rec(b, PEC_REG_NON_ACCETTAZIONE, EM, T0, "v12@" PEC, "na.v12@" PEC, anna, NULL, NULL);
    rec(b, PEC_REG_BUSTA_TRASPORTO, EM, T0, "v12@" PEC, "v12@" PEC, anna, NULL, NULL);

    /* v13: receipts received about no busta of ours */
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v13@" PEC, "pic.v13@b", "", NULL,
        "anna@pec-b.test");

    /* v14: a consegna, then our 24 h notice all the same */
    accepted(b, T0, "v14@" PEC, anna);
    rec(b, PEC_REG_PRESA_IN_CARICO, RIC, T0 + 1, "v14@" PEC, "pic.v14@b", "", NULL,
        "anna@pec-b.test");
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 2, "v14@" PEC, "con.v14@b", "", "anna@pec-b.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA_24H, EM, T0 + 24 * HOUR, "v14@" PEC, "w24.v14@" PEC, "",
        "anna@pec-b.test", NULL);

    /* v15: the 24 h notice, then two different consegne */
    accepted(b, T0, "v15@" PEC, anna);
    rec(b, PEC_REG_MANCATA_CONSEGNA_24H, EM, T0 + 24 * HOUR, "v15@" PEC, "w24.v15@" PEC, "",
        "anna@pec-b.test", NULL);
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 25 * HOUR, "v15@" PEC, "con.v15@b", "", "anna@pec-b.test",
        NULL);
    rec(b, PEC_REG_CONSEGNA, RIC, T0 + 26 * HOUR, "v15@" PEC, "con2.v15@b", "", "anna@pec-b.test",
        NULL);

    /* v17: another provider's busta re-addressed: receipts for whom it does not name */
    rec(b, PEC_REG_PRESA_IN_CARICO, EM, T0 + 1, "v17@pec-b.test", "pic.v17@" PEC,
        "luca@" PEC " (certificato)", NULL, "terzo@" PEC);
    rec(b, PEC_REG_CONSEGNA, EM, T0 + 2, "v17@pec-b.test", "con.v17@" PEC,
        "luca@" PEC " (certificato)", "terzo@" PEC, NULL);

    /* v18: another provider's busta received, never taken in charge nor answered */
    rec(b, PEC_REG_BUSTA_TRASPORTO, RIC, T0 + 1, "v18@pec-b.test", "v18@pec-b.test",
        "luca@" PEC " (certificato)", NULL, "luca@" PEC);

    /* v19: a consegna put into a mailbox that nobody emitted or received */
    rec(b, PEC_REG_CONSEGNA, DEP, T0 + 5, "v19@pec-b.test", "ghost@pec-b.test", "", "mario@" PEC,
        NULL);

    /* v20: another provider's busta we found a virus in, delivered all the same */
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, EM, T0 + 1, "v20@pec-b.test", "rv.v20@" PEC,
        "luca@" PEC " (certificato)", "luca@" PEC, NULL);
    rec(b, PEC_REG_CONSEGNA, EM, T0 + 2, "v20@pec-b.test", "con.v20@" PEC,
        "luca@" PEC " (certificato)", "luca@" PEC, NULL);

    /* v21: a rilevazione virus received, and nothing told our user */
    accepted(b, T0, "v21@" PEC, anna);
    rec(b, PEC_REG_RILEVAZIONE_VIRUS, RIC, T0 + 2, "v21@" PEC, "rv.v21@b", "", "anna@pec-b.test",
        NULL);

    /* v16: the 24 h notice, then a mancata consegna: late, allowed, a note */
    accepted(b, T0, "v16@" PEC, anna);
    rec(b, PEC_REG_MANCATA_CONSEGNA_24H, EM, T0 + 24 * HOUR, "v16@" PEC, "w24.v16@" PEC, "",
        "anna@pec-b.test", NULL);
    rec(b, PEC_REG_MANCATA_CONSEGNA, RIC, T0 + 25 * HOUR, "v16@" PEC, "mc.v16@b", "",
        "anna@pec-b.test", NULL);
}

struct seen {
    char text[64][512];
    int n;
};

/* As pecctl audit prints them: a note says so. */
static void collect(const char *id, enum pec_audit_level level, const char *problem, void *arg)
{
    struct seen *s = arg;

    if (s->n < 64)
        snprintf(s->text[s->n++], sizeof(s->text[0]), "%s: %s%s", id,
                 level == PEC_AUDIT_NOTE ? "note: " : "", problem);
}

/* How many reported lines start with ID ": " and hold WHAT. */
static int named(const struct seen *s, const char *id, const char *what)
{
    size_t n = strlen(id);
    int count = 0;

    for (int i = 0; i < s->n; i++)
        if (strncmp(s->text[i], id, n) == 0 && strncmp(s->text[i] + n, ": ", 2) == 0 &&
            strstr(s->text[i], what) != NULL)
            count++;
    return count;
}

static struct pec_store *store_with(const char *name, void (*fill[])(struct pec_batch *), int n)
{
    char path[256], err[1024];
    struct pec_store *st;
    struct pec_batch *b = pec_batch_new();

    snprintf(path, sizeof(path), "%s/%s.db", dir, name);
    st = pec_store_open(path, 0, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        fill[i](b);
    if (pec_store_commit(st, b, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    pec_batch_free(b);
    return st;
}

static const struct pec_audit_opts opts = {.now = NOW, .deadline_after = 24 * HOUR};

static void test_clean(void)
{
    void (*fill[])(struct pec_batch *) = {clean_log};
    struct pec_store *st = store_with("clean", fill, 1);
    struct pec_audit_report rep;
    struct pec_audit_opts later = opts;
    struct seen s = {.n = 0};
    char err[1024];

    CHECK(pec_audit_run(st, &opts, collect, &s, &rep, err, sizeof(err)) == 0);
    for (int i = 0; i < s.n; i++)
        fprintf(stderr, "seen: %s\n", s.text[i]);
    /* only the notes about c6's late consegna and r2's imitation */
    CHECK(s.n == 2);
    CHECK(named(&s, "c6@" PEC,
                "note: zeno@pec-c.test: late consegna <con.c6@pec-c.test> after the 24 h "
                "notice <w24.c6@" PEC ">") == 1);
    CHECK(named(&s, "r2@pec-b.test",
                "note: a busta di anomalia <r2@pec-b.test> carried this busta's Message-ID") == 1);
    CHECK(rep.violations == 0);
    CHECK(rep.notes == 2);
    CHECK(rep.transactions == 11);
    CHECK(rep.pending == 1);
    CHECK(rep.records == 47);

    /* once p1's deadline has passed, its missing presa in carico is a violation */
    later.now = NOW + 24 * HOUR;
    s.n = 0;
    CHECK(pec_audit_run(st, &later, collect, &s, &rep, err, sizeof(err)) == 1);
    CHECK(rep.pending == 0);
    CHECK(s.n == 3 && named(&s, "p1@" PEC, "anna@pec-b.test: in no presa in carico") == 1);

    /* --since: only what began at or after it */
    later = opts;
    later.since = T0 + 40;
    s.n = 0;
    CHECK(pec_audit_run(st, &later, collect, &s, &rep, err, sizeof(err)) == 0);
    CHECK(rep.transactions == 6); /* c5 c7 r3 r1 r2 p1 */
    pec_store_close(st);
}

static void test_broken(void)
{
    void (*fill[])(struct pec_batch *) = {clean_log, broken_log};
    struct pec_store *st = store_with("broken", fill, 2);
    struct pec_audit_report rep;
    struct seen s = {.n = 0};
    char err[1024];

    CHECK(pec_audit_run(st, &opts, collect, &s, &rep, err, sizeof(err)) == 22);
    for (int i = 0; i < s.n; i++)
        printf("  %s\n", s.text[i]);
    CHECK(s.n == 25); /* and the notes: the clean log's two and v16's */
    CHECK(rep.notes == 3);
    CHECK(rep.pending == 1);
    CHECK(named(&s, "v1@" PEC, "no accettazione") == 1);
    CHECK(named(&s, "v2@" PEC, "no busta di trasporto") == 1);
    CHECK(named(&s, "v3@" PEC, "2 accettazioni") == 1);
    CHECK(named(&s, "v4@" PEC, "anna@pec-b.test: no final outcome") == 1);
    CHECK(named(&s, "v5@" PEC,
                "anna@pec-b.test: 2 final outcomes: consegna <con.v5@b>, "
                "mancata consegna <mc.v5@b>") == 1);
    CHECK(named(&s, "v6@" PEC, "anna@pec-b.test: in 2 prese in carico") == 1);
    CHECK(named(&s, "v7@" PEC, "anna@pec-b.test: in no presa in carico") == 1);
    CHECK(named(&s, "v8@" PEC, "rilevazione virus with 0 mancate consegne per virus") == 1);
    CHECK(named(&s, "acc.c1@" PEC, "consegna recorded about the accettazione <acc.c1@" PEC ">") ==
          1);
    CHECK(named(&s, "v10@pec-b.test", "luca@" PEC ": in no presa in carico") == 1);
    CHECK(named(&s, "v11@" PEC,
                "x@example.org: receipts for a recipient the busta names esterno") == 1);
    CHECK(named(&s, "v12@" PEC, "not accepted") == 1);
    CHECK(named(&s, "v13@" PEC, "receipts received for no busta of ours") == 1);
    CHECK(named(&s, "v14@" PEC,
                "anna@pec-b.test: 2 final outcomes: consegna <con.v14@b>, 24 h notice "
                "<w24.v14@" PEC ">") == 1);
    CHECK(named(&s, "v15@" PEC,
                "anna@pec-b.test: 3 final outcomes: 24 h notice <w24.v15@" PEC
                ">, consegna <con.v15@b>, consegna <con2.v15@b>") == 1);
    CHECK(named(&s, "v16@" PEC,
                "note: anna@pec-b.test: late mancata consegna <mc.v16@b> after the 24 h notice "
                "<w24.v16@" PEC ">") == 1);
    CHECK(named(&s, "v17@pec-b.test",
                "terzo@" PEC ": receipts for a recipient the busta does not name") == 1);
    CHECK(named(&s, "v17@pec-b.test", "luca@") == 0); /* named, but never ours to answer */
    CHECK(named(&s, "v18@pec-b.test", "luca@" PEC ": no final outcome") == 1);
    CHECK(named(&s, "v18@pec-b.test", "luca@" PEC ": in no presa in carico") == 1);
    CHECK(named(&s, "v19@pec-b.test",
                "consegna <ghost@pec-b.test> put into mario@" PEC
                ", but never emitted or received here") == 1);
    CHECK(named(&s, "v20@pec-b.test",
                "luca@" PEC ": 2 final outcomes: rilevazione virus <rv.v20@" PEC
                ">, consegna <con.v20@" PEC ">") == 1);
    CHECK(named(&s, "v21@" PEC, "anna@pec-b.test: no final outcome") == 1);
    CHECK(named(&s, "v21@" PEC, "rilevazione virus with 0 mancate consegne per virus") == 1);
    CHECK(named(&s, "v21@" PEC, "presa in carico") == 0); /* the rilevazione stands for it */
    CHECK(named(&s, "v1", "note:") == 0);
    /* nothing of the clean log is named but its note */
    for (int i = 0; i < s.n; i++)
        CHECK(s.text[i][0] == 'v' || strncmp(s.text[i], "acc.c1@", 7) == 0 ||
              strncmp(s.text[i], "c6@" PEC ": note: ", 19) == 0 ||
              strncmp(s.text[i], "r2@pec-b.test: note: ", 21) == 0);
    pec_store_close(st);
}

int main(void)
{
    char path[256];

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_clean();
    test_broken();
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof(path), "%s/%s.db%s", dir, i < 3 ? "clean" : "broken",
                 (const char *[]){"", "-wal", "-shm"}[i % 3]);
        unlink(path);
    }
    rmdir(dir);
    return check_exit();
}
