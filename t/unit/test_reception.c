/*
 * test_reception - the reception point's decisions, without an MTA.
 *
 * Provider A receives: a busta provider B signed earns one presa in carico
 * to B's mailReceipt covering every RCPT in our domains, and passes
 * unchanged; a busta of our own owes nothing more here; a tampered busta and
 * ordinary mail become a busta di anomalia, or are refused, as
 * ordinary_mail says; a valid avvenuta consegna about one of our
 * transactions moves its recipient to delivered and is logged, and one
 * about a transaction we do not know only passes.  A busta certifies only
 * the recipients its daticert names; a notice is believed only from the
 * provider that serves the recipient it reports on.  A rilevazione virus
 * about our transaction earns our user the avviso di mancata consegna per
 * virus, once.  (The antivirus itself, with a real clamd, is tested end to
 * end: t/test_antivirus.py.)
 */
#include "provider/access.h"
#include "message/busta.h"
#include "msgcheck.h"
#include <sys/stat.h>

#include "message/notice.h"
#include "message/original.h"
#include "message/verify.h"
#include "provider/mailbox.h"
#include "provider/reception.h"
#include "store/store.h"

static struct testenv env;
static char dir[] = "/tmp/test_reception.XXXXXX";

static struct pec_config *config_with(const char *extra)
{
    char *path = xasprintf("%s/pecmilter.conf", dir);
    FILE *f = fopen(path, "w");
    char err[1024];
    struct pec_config *cfg;

    CHECK(f != NULL);
    fprintf(f,
            "provider_name = \"Gestore A S.p.A.\";\n"
            "domains = [ \"pec-a.test\", \"pec-a2.test\" ];\n"
            "service_address = \"posta-certificata@pec-a.test\";\n"
            "receipt_address = \"ricevute@pec-a.test\";\n"
            "sign_cert = \"x\"; sign_key = \"x\"; trust_anchors = \"x\"; index_source = "
            "\"file:x\"; index_signer = \"x\";\n"
            "antivirus = \"none\";\n"
            "%s%s%s"
            "%s\n",
            strstr(extra, "maildir_root") ? "" : "maildir_root = \"",
            strstr(extra, "maildir_root") ? "" : dir,
            strstr(extra, "maildir_root") ? "" : "/mail\";\n", extra);
    fclose(f);
    cfg = pec_config_load(path, err, sizeof(err));
    if (cfg == NULL)
        fprintf(stderr, "config: %s\n", err);
    free(path);
    return cfg;
}

static int parse(struct pec_original *o, const void *msg, size_t len, const char *from,
                 const char *const *rcpts, size_t n)
{
    char err[512];
    int rc = pec_original_from_mem(o, msg, len, NULL, 1 << 20, from, rcpts, n, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "parse: %s\n", err);
    return rc;
}

static const char original_b[] = "From: Luigi Bianchi <luigi@pec-b.test>\r\n"
                                 "To: mario@pec-a.test, giulia@pec-a2.test\r\n"
                                 "Cc: anna@pec-b.test\r\n"
                                 "Subject: dalla B\r\n"
                                 "Message-ID: <b1@client.test>\r\n"
                                 "\r\n"
                                 "Testo.\r\n";

static const char original_a[] = "From: Mario Rossi <mario@pec-a.test>\r\n"
                                 "To: luigi@pec-b.test\r\n"
                                 "Subject: dalla A\r\n"
                                 "Message-ID: <a1@client.test>\r\n"
                                 "\r\n"
                                 "Testo.\r\n";

static const char *const rcpts_at_a[] = {"<mario@pec-a.test>", "<giulia@pec-a2.test>"};

/* ORIGINAL wrapped by ISS as the MTA delivers it; *TX: the access outcome, committed to ST */
static struct bytes busta_of(const struct pec_access_env *e, const char *original, const char *from,
                             const char *const *rcpts, size_t n, struct pec_store *st, char **ident)
{
    struct pec_original o;
    struct pec_access_outcome out;
    struct pec_spool *sp = pec_spool_new(NULL, (size_t)1 << 30);
    struct bytes b = {0};
    char err[1024];

    if (parse(&o, original, strlen(original), from, rcpts, n) != 0) {
        CHECK(0);
        pec_spool_free(sp);
        return b;
    }
    CHECK(pec_access_accept(e, &o, "Q", &out, err, sizeof(err)) == 0);
    CHECK(pec_built_full(&out.busta, o.raw, pec_busta_keeps, sp, err, sizeof(err)) == 0);
    if (st != NULL)
        CHECK(pec_store_commit(st, out.batch, err, sizeof(err)) == 0);
    if (ident != NULL)
        *ident = xstrdup(out.identificativo);
    b = spool_bytes(sp);
    pec_spool_free(sp);
    pec_access_outcome_free(&out);
    pec_original_free(&o);
    return b;
}

static int decide_to(const struct pec_rp_env *e, const struct bytes *msg, const char *from,
                     const char *const *rcpts, size_t n, struct pec_rp_outcome *out)
{
    struct pec_original o;
    char err[1024];
    int rc;

    if (parse(&o, msg->p, msg->n, from, rcpts, n) != 0)
        return -1;
    rc = pec_rp_decide(e, &o, "QR", out, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "decide: %s\n", err);
    pec_original_free(&o);
    return rc;
}

static int decide(const struct pec_rp_env *e, const struct bytes *msg, const char *from,
                  struct pec_rp_outcome *out)
{
    return decide_to(e, msg, from, rcpts_at_a, 2, out);
}

struct seen {
    const char *label, *evento, *gestore;
    int n;
};

static int count_record(const struct pec_record *r, void *arg)
{
    struct seen *s = arg;

    s->n += strcmp(r->label, s->label) == 0 && strcmp(r->evento, s->evento) == 0 &&
            strcmp(r->gestore, s->gestore) == 0;
    return 0;
}

/* How many records about ID have LABEL, EVENTO and GESTORE. */
static int records(struct pec_store *st, const char *id, const char *label, const char *evento,
                   const char *gestore)
{
    struct pec_log_filter f = {.identificativo = id};
    struct seen s = {label, evento, gestore, 0};
    char err[512];

    CHECK(pec_store_log_each(st, &f, count_record, &s, err, sizeof(err)) == 0);
    return s.n;
}

/* The Message-ID of a busta, its identificativo (static buffer). */
static const char *ident_of(const struct bytes *b)
{
    static char id[256];
    const char *p = (const char *)find(b->p, b->n, "\r\nMessage-ID: <");
    size_t n = 0;

    id[0] = '\0';
    if (p != NULL) {
        p += strlen("\r\nMessage-ID: <");
        while (p[n] != '>' && n + 1 < sizeof(id))
            n++;
        memcpy(id, p, n);
        id[n] = '\0';
    }
    return id;
}

static int keep_destinatari(const struct pec_record *r, void *arg)
{
    snprintf(arg, 256, "%s", r->destinatari);
    return 0;
}

/* The destinatari of the log's last record. */
static const char *last_destinatari(struct pec_store *st)
{
    static char buf[256];
    char err[512];

    buf[0] = '\0';
    CHECK(pec_store_log_each(st, NULL, keep_destinatari, buf, err, sizeof(err)) == 0);
    return buf;
}

/* Commit OUT's batch, which must hold something. */
static void commit(struct pec_store *st, struct pec_rp_outcome *out)
{
    char err[1024];

    CHECK(out->batch != NULL && pec_store_commit(st, out->batch, err, sizeof(err)) == 0);
}

static void test_busta_from_b(const struct pec_rp_env *rp, const struct pec_access_env *as_b)
{
    static const char *const rcpts[] = {"mario@pec-a.test", "giulia@pec-a2.test",
                                        "anna@pec-b.test"};
    struct bytes busta = busta_of(as_b, original_b, "luigi@pec-b.test", rcpts, 3, NULL, NULL);
    struct pec_rp_outcome out;
    struct bytes presa;
    char err[1024];

    CHECK(decide(rp, &busta, "<luigi@pec-b.test>", &out) == 0);
    CHECK(out.action == PEC_RP_PASS);
    CHECK_STR(out.what, "busta");
    CHECK(out.batch != NULL && out.n_blobs == 1);
    if (out.n_blobs == 1) {
        presa = spool_bytes(out.blobs[0]);
        CHECK(find(presa.p, presa.n, "X-Ricevuta: presa-in-carico") != NULL);
        CHECK(find(presa.p, presa.n, "To: ricevute@pec-b.test") != NULL);
        CHECK(find(presa.p, presa.n, "Subject: PRESA IN CARICO: dalla B") != NULL);
        free(presa.p);
    }
    CHECK(strstr(out.summary, "mario@pec-a.test, giulia@pec-a2.test") != NULL);

    /* the same busta again (the sender's MTA never got our 250): no second presa in carico */
    CHECK(out.batch != NULL && pec_store_commit(rp->store, out.batch, err, sizeof(err)) == 0);
    pec_rp_outcome_free(&out);
    CHECK(decide(rp, &busta, "<luigi@pec-b.test>", &out) == 0);
    CHECK(out.action == PEC_RP_PASS);
    CHECK_STR(out.what, "busta");
    CHECK(out.n_blobs == 0);
    CHECK(strstr(out.summary, "taken in charge already") != NULL);
    /* each reception is logged, gestore the provider that signed it (issue 18) */
    commit(rp->store, &out);
    CHECK(records(rp->store, ident_of(&busta), "BustaTrasporto", "ricezione", "Gestore B S.p.A.") ==
          2);
    CHECK(records(rp->store, ident_of(&busta), "PresaInCarico", "emissione", "Gestore A S.p.A.") ==
          1);
    pec_rp_outcome_free(&out);
    free(busta.p);
}

static void test_own_and_tampered(const struct pec_rp_env *rp, const struct pec_access_env *as_a)
{
    static const char *const rcpts[] = {"mario@pec-a.test"};
    struct bytes busta = busta_of(as_a, original_b, "luigi@pec-b.test", rcpts, 1, NULL, NULL);
    struct pec_rp_outcome out;
    unsigned char *t;

    CHECK(decide_to(rp, &busta, "<x@pec-a.test>", rcpts, 1, &out) == 0);
    CHECK(out.action == PEC_RP_PASS && out.n_blobs == 0);
    CHECK(out.batch != NULL); /* only its reception record */
    CHECK(strstr(out.summary, "access point") != NULL);
    pec_rp_outcome_free(&out);

    t = (unsigned char *)find(busta.p, busta.n, "Testo.");
    CHECK(t != NULL);
    if (t != NULL)
        t[5] = '!';
    CHECK(decide(rp, &busta, "<x@pec-a.test>", &out) == 0);
    CHECK(out.action == PEC_RP_ANOMALIA);
    CHECK_STR(pec_headers_get(&out.anomalia.headers, "X-Trasporto"), "errore");
    CHECK(out.batch != NULL);
    pec_rp_outcome_free(&out);
    free(busta.p);
}

static void test_ordinary(const struct pec_rp_env *rp, const char *policy, enum pec_rp_action want)
{
    static const char plain[] = "From: x@example.org\r\nTo: mario@pec-a.test\r\n"
                                "Subject: ciao\r\n\r\nCiao.\r\n";
    struct pec_rp_env e = *rp;
    char *extra = xasprintf("ordinary_mail = \"%s\";", policy);
    struct pec_config *cfg = config_with(extra);
    struct bytes msg = {(unsigned char *)xstrdup(plain), strlen(plain)};
    struct pec_rp_outcome out;

    e.cfg = cfg;
    CHECK(decide(&e, &msg, "<x@example.org>", &out) == 0);
    CHECK(out.action == want);
    CHECK_STR(out.what, "ordinary");
    if (want == PEC_RP_REJECT) {
        CHECK_STR(out.rcode, "554");
        CHECK_STR(out.xcode, "5.7.1");
        CHECK(strstr(out.text, "non firmato") != NULL);
    }
    if (want == PEC_RP_ANOMALIA) {
        CHECK_STR(pec_headers_get(&out.anomalia.headers, "Subject"), "ANOMALIA MESSAGGIO: ciao");
        /* its record lists the recipients as the TMail line does: ours are PEC mailboxes */
        commit(e.store, &out);
        CHECK_STR(last_destinatari(e.store),
                  "mario@pec-a.test (certificato), giulia@pec-a2.test (certificato)");
    }
    CHECK(out.batch != NULL); /* the anomalia, or the refusal, is logged */
    if (want == PEC_RP_REJECT) {
        commit(e.store, &out);
        CHECK(records(e.store, "", "PostaOrdinaria", "ricezione", "Gestore A S.p.A.") == 1);
    }
    pec_rp_outcome_free(&out);
    pec_config_unref(cfg);
    free(msg.p);
    free(extra);
}

/* More header fields than the MTA can delete: refused, since no anomaly can be made of it. */
/* Ordinary mail for a mailbox that does not exist: refused in the session, not wrapped. */
static void test_no_mailbox(const struct pec_rp_env *rp)
{
    static const char plain[] = "From: x@example.org\r\nTo: mario@pec-a.test\r\n"
                                "Subject: ciao\r\n\r\nCiao.\r\n";
    static const char *const rcpts[] = {"<mario@pec-a.test>", "<nessuno@pec-a.test>"};
    struct bytes msg = {(unsigned char *)xstrdup(plain), strlen(plain)};
    struct pec_rp_env e = *rp;
    struct pec_rp_outcome out;
    struct pec_config *cfg;
    char *extra;
    int before;

    CHECK(decide_to(rp, &msg, "<x@example.org>", rcpts, 2, &out) == 0);
    CHECK(out.action == PEC_RP_REJECT);
    CHECK_STR(out.rcode, "550");
    CHECK_STR(out.xcode, "5.1.1");
    CHECK(strstr(out.text, "<nessuno@pec-a.test>: casella inesistente") != NULL);
    CHECK(out.anomalia.message_id == NULL);
    before = records(rp->store, "", "PostaOrdinaria", "ricezione", "Gestore A S.p.A.");
    commit(rp->store, &out);
    CHECK(records(rp->store, "", "PostaOrdinaria", "ricezione", "Gestore A S.p.A.") == before + 1);
    pec_rp_outcome_free(&out);

    /* the mailboxes cannot tell now (maildir_root missing): deferred, never wrapped */
    extra = xasprintf("maildir_root = \"%s/unmounted\";", dir);
    cfg = config_with(extra);
    e.cfg = cfg;
    CHECK(decide_to(&e, &msg, "<x@example.org>", rcpts, 1, &out) == 0);
    CHECK(out.action == PEC_RP_REJECT);
    CHECK_STR(out.rcode, "451");
    pec_rp_outcome_free(&out);
    pec_config_unref(cfg);
    free(extra);
    free(msg.p);
}

static void test_too_many_fields(const struct pec_rp_env *rp)
{
    char *m = xstrdup("From: x@example.org\r\nTo: mario@pec-a.test\r\nSubject: campi\r\n");
    struct pec_rp_outcome out;
    struct bytes msg;

    for (int i = 0; i < PEC_HEADER_FIELDS_MAX; i++) {
        char *more = xasprintf("%sX-R: %d\r\n", m, i);

        free(m);
        m = more;
    }
    msg.p = (unsigned char *)xasprintf("%s\r\nCiao.\r\n", m);
    msg.n = strlen((char *)msg.p);
    CHECK(decide(rp, &msg, "<x@example.org>", &out) == 0);
    CHECK(out.action == PEC_RP_REJECT);
    CHECK_STR(out.rcode, "552");
    CHECK_STR(out.xcode, "5.6.0");
    CHECK(strstr(out.text, "1003 header fields") != NULL);
    CHECK(strstr(out.summary, "refused instead") != NULL);
    CHECK(out.batch != NULL); /* the refusal is logged */
    pec_rp_outcome_free(&out);
    free(msg.p);
    free(m);
}

/* An avvenuta consegna about IDENT for luigi@pec-b.test, signed by ISS. */
static struct bytes consegna(const struct pec_issuer *iss, const char *ident)
{
    struct pec_destinatario dest = {.address = "luigi@pec-b.test", .tipo = PEC_DEST_CERTIFICATO};
    struct pec_daticert f = {.mittente = "mario@pec-a.test",
                             .destinatari = &dest,
                             .n_destinatari = 1,
                             .risposte = "mario@pec-a.test",
                             .oggetto = "dalla A",
                             .identificativo = (char *)ident,
                             .consegna = "luigi@pec-b.test"};
    struct pec_built b;
    struct bytes out = {0};
    char err[1024];

    if (pec_build_notice(iss,
                         &(struct pec_notice){.kind = PEC_NOTICE_CONSEGNA_SINTETICA,
                                              .facts = &f,
                                              .to = "mario@pec-a.test"},
                         &b, err, sizeof(err)) != 0) {
        fprintf(stderr, "notice: %s\n", err);
        CHECK(0);
        return out;
    }
    out = built_bytes(&b);
    pec_built_free(&b);
    return out;
}

static void test_notice(const struct pec_rp_env *rp, const struct pec_access_env *as_a,
                        const struct pec_issuer *iss_b)
{
    static const char *const rcpts[] = {"luigi@pec-b.test"};
    char *ident = NULL, err[1024];
    struct bytes busta =
        busta_of(as_a, original_a, "mario@pec-a.test", rcpts, 1, rp->store, &ident);
    struct bytes n = consegna(iss_b, ident ? ident : "x");
    struct bytes unknown = consegna(iss_b, "opec.unknown@pec-a.test");
    struct pec_rp_outcome out;
    struct pec_tx_info tx;

    CHECK(decide(rp, &n, "<posta-certificata@pec-b.test>", &out) == 0);
    CHECK(out.action == PEC_RP_PASS);
    CHECK_STR(out.what, "notice");
    CHECK(out.batch != NULL);
    CHECK(pec_store_commit(rp->store, out.batch, err, sizeof(err)) == 0);
    pec_rp_outcome_free(&out);
    CHECK(pec_store_tx_get(rp->store, ident, &tx, err, sizeof(err)) == 1);
    CHECK(tx.nrcpt == 1 && tx.rcpt[0].state == PEC_RCPT_DELIVERED);
    pec_tx_info_free(&tx);

    CHECK(decide(rp, &unknown, "<posta-certificata@pec-b.test>", &out) == 0);
    CHECK(out.action == PEC_RP_PASS);
    CHECK(strstr(out.summary, "not one of our transactions") != NULL);
    commit(rp->store, &out); /* passed on, and logged so, from B */
    CHECK(records(rp->store, "opec.unknown@pec-a.test", "Consegna", "ricezione",
                  "Gestore B S.p.A.") == 1);
    pec_rp_outcome_free(&out);
    free(busta.p);
    free(n.p);
    free(unknown.p);
    free(ident);
}

/* A rilevazione virus about IDENT for luigi@pec-b.test, signed by ISS (B). */
static struct bytes rilevazione(const struct pec_issuer *iss, const char *ident)
{
    struct pec_destinatario dest = {.address = "luigi@pec-b.test", .tipo = PEC_DEST_CERTIFICATO};
    struct pec_daticert f = {.mittente = "mario@pec-a.test",
                             .destinatari = &dest,
                             .n_destinatari = 1,
                             .risposte = "mario@pec-a.test",
                             .oggetto = "dalla A",
                             .identificativo = (char *)ident,
                             .consegna = "luigi@pec-b.test"};
    struct pec_built b;
    struct bytes out = {0};
    char err[1024];

    if (pec_build_notice(iss,
                         &(struct pec_notice){.kind = PEC_NOTICE_RILEVAZIONE_VIRUS,
                                              .facts = &f,
                                              .to = "ricevute@pec-a.test",
                                              .virus = "Eicar-Test-Signature"},
                         &b, err, sizeof(err)) != 0) {
        fprintf(stderr, "notice: %s\n", err);
        CHECK(0);
        return out;
    }
    out = built_bytes(&b);
    pec_built_free(&b);
    return out;
}

/* MCV verifies as our errore-consegna per virus about luigi, in the words of B's notice */
static void check_mcv(const struct pec_rp_env *rp, const struct bytes *mcv)
{
    struct pec_inspect_opts opts = {.trust = rp->trust, .index = rp->index, .at_mode = PEC_AT_NOW};
    struct pec_inspection ins;

    pec_inspect(mcv->p, mcv->n, &opts, &ins);
    CHECK(ins.valid && ins.kind == PEC_KIND_NOTICE && ins.has_daticert);
    if (ins.valid && ins.has_daticert) {
        CHECK(ins.daticert.tipo == PEC_TIPO_ERRORE_CONSEGNA);
        CHECK(ins.daticert.errore == PEC_ERRORE_VIRUS);
        CHECK_STR(ins.daticert.consegna, "luigi@pec-b.test");
        CHECK_STR(ins.daticert.gestore_emittente, "Gestore A S.p.A.");
        CHECK_STR(ins.daticert.errore_esteso,
                  "5.7.1 - Gestore B S.p.A. - virus rilevato: Eicar-Test-Signature");
    }
    pec_inspection_free(&ins);
}

static int pending_for(const struct pec_pending_rcpt *r, void *arg)
{
    return strcmp(r->identificativo, arg) == 0;
}

/*
 * B's antivirus found a virus in our busta: its rilevazione virus makes
 * luigi failed and queues, to Mario, the avviso di mancata consegna per
 * virus, built from the notice, with its record; no 12 h / 24 h notice is
 * owed any more.  The same rilevazione again owes nothing.  One that a
 * consegna overtook between decision and commit is not applied: decided
 * again, it owes nothing.
 */
static void test_rilevazione(const struct pec_rp_env *rp, const struct pec_access_env *as_a,
                             const struct pec_issuer *iss_b)
{
    static const char *const rcpts[] = {"luigi@pec-b.test"};
    char *ident = NULL, *ident2 = NULL, err[1024];
    struct bytes busta =
        busta_of(as_a, original_a, "mario@pec-a.test", rcpts, 1, rp->store, &ident);
    struct bytes busta2 =
        busta_of(as_a, original_a, "mario@pec-a.test", rcpts, 1, rp->store, &ident2);
    struct bytes rv = rilevazione(iss_b, ident ? ident : "x");
    struct bytes rv2 = rilevazione(iss_b, ident2 ? ident2 : "x");
    struct bytes con2 = consegna(iss_b, ident2 ? ident2 : "x");
    struct pec_rp_outcome out, late;
    struct pec_tx_info tx;
    struct bytes mcv;

    CHECK(decide(rp, &rv, "<posta-certificata@pec-b.test>", &out) == 0);
    CHECK(out.action == PEC_RP_PASS);
    CHECK_STR(out.what, "notice");
    CHECK(strstr(out.summary, "mancata consegna per virus") != NULL);
    CHECK(out.batch != NULL && out.n_blobs == 1);
    if (out.n_blobs == 1) {
        mcv = spool_bytes(out.blobs[0]);
        CHECK(find(mcv.p, mcv.n, "X-Ricevuta: errore-consegna") != NULL);
        CHECK(find(mcv.p, mcv.n, "X-VerificaSicurezza: errore") != NULL);
        CHECK(find(mcv.p, mcv.n, "To: mario@pec-a.test") != NULL);
        CHECK(find(mcv.p, mcv.n, "Subject: AVVISO DI MANCATA CONSEGNA PER VIRUS: dalla A") != NULL);
        check_mcv(rp, &mcv);
        free(mcv.p);
    }
    CHECK(out.batch != NULL && pec_store_commit(rp->store, out.batch, err, sizeof(err)) == 0);
    pec_rp_outcome_free(&out);
    CHECK(pec_store_tx_get(rp->store, ident, &tx, err, sizeof(err)) == 1);
    CHECK(tx.nrcpt == 1 && tx.rcpt[0].state == PEC_RCPT_FAILED);
    pec_tx_info_free(&tx);
    CHECK(pec_store_pending_each(rp->store, 0, pending_for, ident, err, sizeof(err)) == 0);

    /* the same rilevazione again: recorded, nothing more owed */
    CHECK(decide(rp, &rv, "<posta-certificata@pec-b.test>", &out) == 0);
    CHECK(out.n_blobs == 0 && strstr(out.summary, "per virus") == NULL);
    pec_rp_outcome_free(&out);

    /* decided while luigi was sent; a consegna commits first */
    CHECK(decide(rp, &rv2, "<posta-certificata@pec-b.test>", &late) == 0);
    CHECK(late.n_blobs == 1);
    CHECK(decide(rp, &con2, "<posta-certificata@pec-b.test>", &out) == 0);
    CHECK(out.batch != NULL && pec_store_commit(rp->store, out.batch, err, sizeof(err)) == 0);
    pec_rp_outcome_free(&out);
    CHECK(late.batch != NULL && pec_store_commit(rp->store, late.batch, err, sizeof(err)) == 1);
    pec_rp_outcome_free(&late);
    CHECK(decide(rp, &rv2, "<posta-certificata@pec-b.test>", &late) == 0);
    CHECK(late.n_blobs == 0);
    pec_rp_outcome_free(&late);
    CHECK(pec_store_tx_get(rp->store, ident2, &tx, err, sizeof(err)) == 1);
    CHECK(tx.nrcpt == 1 && tx.rcpt[0].state == PEC_RCPT_DELIVERED);
    pec_tx_info_free(&tx);
    free(busta.p);
    free(busta2.p);
    free(rv.p);
    free(rv2.p);
    free(con2.p);
    free(ident);
    free(ident2);
}

/*
 * A genuine busta sent again with RCPT TO an address of ours it does not
 * name (alone, or beside one it names) certifies nothing for it: a busta di
 * anomalia, no presa in carico.  An address the busta names only as
 * esterno is no certified recipient either.
 */
static void test_readdressed(const struct pec_rp_env *rp, const struct pec_access_env *as_b)
{
    static const char *const rcpts[] = {"mario@pec-a.test", "giulia@pec-a2.test"};
    static const char *const intruder[] = {"<intruso@pec-a.test>"};
    static const char *const mixed[] = {"<mario@pec-a.test>", "<intruso@pec-a.test>"};
    struct bytes busta = busta_of(as_b, original_b, "luigi@pec-b.test", rcpts, 2, NULL, NULL);
    const struct {
        const char *const *rcpt;
        size_t n;
    } cases[] = {{intruder, 1}, {mixed, 2}};
    struct pec_rp_outcome out;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(decide_to(rp, &busta, "<luigi@pec-b.test>", cases[i].rcpt, cases[i].n, &out) == 0);
        CHECK(out.action == PEC_RP_ANOMALIA);
        CHECK_STR(out.what, "malformed");
        CHECK(out.n_blobs == 0); /* no presa in carico */
        CHECK(strstr(out.summary, "intruso@pec-a.test") != NULL);
        CHECK_STR(pec_headers_get(&out.anomalia.headers, "X-Trasporto"), "errore");
        pec_rp_outcome_free(&out);
    }
    free(busta.p);
}

/*
 * A consegna for a recipient at B is believed from B alone: signed by A
 * (listed, but not B's provider) it moves nothing and is wrapped as an
 * anomalia; the same consegna signed by B is recorded.
 */
static void test_notice_wrong_signer(const struct pec_rp_env *rp, const struct pec_access_env *as_a,
                                     const struct pec_issuer *iss_b)
{
    static const char *const rcpts[] = {"luigi@pec-b.test"};
    char *ident = NULL, err[1024];
    struct bytes busta =
        busta_of(as_a, original_a, "mario@pec-a.test", rcpts, 1, rp->store, &ident);
    struct bytes forged = consegna(as_a->iss, ident ? ident : "x");
    struct bytes genuine = consegna(iss_b, ident ? ident : "x");
    struct pec_rp_outcome out;
    struct pec_tx_info tx;

    CHECK(decide(rp, &forged, "<posta-certificata@pec-a.test>", &out) == 0);
    CHECK(out.action == PEC_RP_ANOMALIA);
    CHECK_STR(out.what, "malformed");
    CHECK(strstr(out.summary, "luigi@pec-b.test") != NULL);
    CHECK(out.batch != NULL && pec_store_commit(rp->store, out.batch, err, sizeof(err)) == 0);
    pec_rp_outcome_free(&out);
    CHECK(pec_store_tx_get(rp->store, ident, &tx, err, sizeof(err)) == 1);
    CHECK(tx.nrcpt == 1 && tx.rcpt[0].state == PEC_RCPT_SENT);
    pec_tx_info_free(&tx);

    CHECK(decide(rp, &genuine, "<posta-certificata@pec-b.test>", &out) == 0);
    CHECK(out.action == PEC_RP_PASS);
    CHECK_STR(out.what, "notice");
    CHECK(out.batch != NULL && pec_store_commit(rp->store, out.batch, err, sizeof(err)) == 0);
    pec_rp_outcome_free(&out);
    CHECK(pec_store_tx_get(rp->store, ident, &tx, err, sizeof(err)) == 1);
    CHECK(tx.nrcpt == 1 && tx.rcpt[0].state == PEC_RCPT_DELIVERED);
    pec_tx_info_free(&tx);
    free(busta.p);
    free(forged.p);
    free(genuine.p);
    free(ident);
}

static void rm_rf(const char *path)
{
    char *cmd = xasprintf("rm -rf '%s'", path);

    CHECK(system(cmd) == 0);
    free(cmd);
}

int main(void)
{
    struct pec_config *cfg;
    struct pec_index *idx;
    struct pec_signer *signer_b;
    struct pec_issuer iss_b;
    struct pec_store *st;
    static const char *const users[] = {"mario@pec-a.test", "giulia@pec-a2.test",
                                        "intruso@pec-a.test", "x@pec-a.test"};
    char err[512], *index_path, *cert, *chain, *key, *db, *mail;

    testenv_init(&env);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    index_path = path_join(env.pki, "index.ldif");
    cert = path_join(env.pki, "b/cert.pem");
    chain = path_join(env.pki, "b/chain.pem");
    key = path_join(env.pki, "b/key.pem");
    db = path_join(dir, "store.db");
    idx = pec_index_load(index_path, err, sizeof(err));
    signer_b = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err));
    st = pec_store_open(db, 0, err, sizeof(err));
    cfg = config_with("");
    /* the mailboxes of our recipients here, as `pecctl mailbox add' makes them */
    mail = path_join(dir, "mail");
    CHECK(mkdir(mail, 0700) == 0);
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
        CHECK(pec_maildir_add(mail, users[i], err, sizeof(err)) == 0);
    CHECK(idx != NULL && cfg != NULL && signer_b != NULL && st != NULL);
    if (idx != NULL && cfg != NULL && signer_b != NULL && st != NULL) {
        struct pec_access_env as_a = {.iss = &env.iss, .cfg = cfg, .index = idx};
        struct pec_access_env as_b = as_a;
        struct pec_rp_env rp = {
            .iss = &env.iss, .cfg = cfg, .trust = env.trust, .index = idx, .store = st};

        iss_b = env.iss;
        iss_b.provider_name = "Gestore B S.p.A.";
        iss_b.service_address = "posta-certificata@pec-b.test";
        iss_b.signer = signer_b;
        as_b.iss = &iss_b;
        test_busta_from_b(&rp, &as_b);
        test_own_and_tampered(&rp, &as_a);
        test_ordinary(&rp, "anomaly", PEC_RP_ANOMALIA);
        test_too_many_fields(&rp);
        test_ordinary(&rp, "reject", PEC_RP_REJECT);
        test_no_mailbox(&rp);
        test_notice(&rp, &as_a, &iss_b);
        test_readdressed(&rp, &as_b);
        test_notice_wrong_signer(&rp, &as_a, &iss_b);
        test_rilevazione(&rp, &as_a, &iss_b);
    }
    pec_store_close(st);
    pec_signer_free(signer_b);
    pec_config_unref(cfg);
    pec_index_free(idx);
    free(index_path);
    free(cert);
    free(chain);
    free(key);
    free(db);
    free(mail);
    testenv_free(&env);
    rm_rf(dir);
    return check_exit();
}
