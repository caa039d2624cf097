/*
 * test_registro - the legal log: the TMail-style line, JSON, the hash chain,
 * daily seals (checked by openssl too) and the retention purge.
 *
 * Every kind of tampering with the store must make verification fail and
 * name the first bad record: a field changed, a record deleted, two records
 * swapped, the last one removed, one appended by hand, and a rewrite of the
 * chain with recomputed hashes (which only the seals can catch), or a seal
 * file changed.  What a purge leaves must still verify.
 *
 * With PEC_TEST_STORE set (ctest's unit.test_registro.postgresql) the
 * stores are schemas of that PostgreSQL database, and a store is put back
 * from its pristine copy with pec_store_copy instead of cp.
 */
#include "check.h"
#include "pgtest.h"
#include "util/clock.h"
#include "store/registro.h"
#include "message/smime.h"
#include "store/store.h"
#include "util/xalloc.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/test_registro.XXXXXX";
static char *db, *pristine, *seals;
/* PEC_TEST_STORE: the PostgreSQL database to run on; NULL: SQLite files in dir */
static const char *pg_base;
static const char *pki;
static struct pec_trust *trust;

#define SERVICE "posta-certificata@pec-a.test"

static time_t local(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_isdst = -1};
    return mktime(&tm);
}

static void test_line_and_json(void)
{
    struct pec_dest d[] = {{"user2@pec.internal.domain", 1}, {"x@example.org", 0}};
    struct pec_record r;
    char *dest = pec_destinatari_format(d, 2), *line, *json;

    CHECK_STR(dest, "user2@pec.internal.domain (certificato), x@example.org (esterno)");
    pec_record_init(&r, PEC_REG_CONSEGNA, PEC_REG_EMISSIONE, 1169215759,
                    "20070119150915.938835@pec.internal.domain");
    r.queue_id = "l0JE9EDP004620";
    r.mittente = "user1@pec.internal.domain";
    r.destinatari = dest;
    r.oggetto = "MESSAGGIO CON PIU DESTINATARI";
    r.message_id = "20070119150919.318531@pec.internal.domain";
    r.gestore = "TMail PEC test";
    r.tipo_ricevuta = "completa";
    r.consegna = "user2@pec.internal.domain";
    line = pec_record_line(&r);
    /* the TMail line, field for field (pec-rules.md 8.1), then ours */
    CHECK_STR(line, "20070119150915.938835@pec.internal.domain: queueid=l0JE9EDP004620: "
                    "tipo=avvenuta-consegna (Consegna): "
                    "mittente=user1@pec.internal.domain: destinatari=user2@pec.internal.domain "
                    "(certificato), x@example.org (esterno): oggetto=MESSAGGIO CON PIU "
                    "DESTINATARI: message-id=20070119150919.318531@pec.internal.domain: "
                    "gestore=TMail PEC test: tipo_ricevuta=completa: "
                    "consegna=user2@pec.internal.domain: evento=emissione");
    free(line);
    r.client_msgid = "<c1@client>";
    r.node = "2";
    line = pec_record_line(&r);
    CHECK(strstr(line, ": consegna=user2@pec.internal.domain: evento=emissione: "
                       "client-msgid=<c1@client>: node=2") != NULL);
    free(line);

    /* one record is one line, whatever the subject holds */
    pec_record_init(&r, PEC_REG_MANCATA_CONSEGNA_24H, PEC_REG_EMISSIONE, 0, "id");
    r.oggetto = "a\r\nb\tc\"\\\xe8\xc3\xa8";
    r.errore_esteso = "5.4.1 - Gestore A - tempo scaduto";
    line = pec_record_line(&r);
    CHECK_STR(line, "id: queueid=: tipo=preavviso-errore-consegna (MancataConsegna24h): "
                    "mittente=: destinatari=: oggetto=a  b c\"\\\xe8\xc3\xa8: "
                    "errore-esteso=5.4.1 - Gestore A - tempo scaduto: evento=emissione");
    json = pec_record_json(&r);
    CHECK(strstr(json, "\"oggetto\":\"a\\u000d\\u000ab\\u0009c\\\"\\\\\\u00e8\xc3\xa8\"") != NULL);
    CHECK(strstr(json, "\"label\":\"MancataConsegna24h\"") != NULL);
    CHECK(strstr(json, "\"time\":\"1970-01-01T00:00:00Z\"") != NULL);
    free(line);
    free(json);
    free(dest);
}

static void test_hash(void)
{
    struct pec_record r;
    char h1[PEC_HASH_HEX], h2[PEC_HASH_HEX];

    pec_record_init(&r, PEC_REG_ACCETTAZIONE, PEC_REG_EMISSIONE, 1000, "id");
    r.seq = 1;
    r.oggetto = "ab";
    r.mittente = "";
    strcpy(r.prev, "00");
    pec_record_hash(&r, h1);
    CHECK(strlen(h1) == 64);
    pec_record_hash(&r, h2);
    CHECK_STR(h1, h2);
    /* moving a byte from one field to the next changes the hash */
    r.oggetto = "a";
    r.message_id = "b";
    pec_record_hash(&r, h2);
    CHECK(strcmp(h1, h2) != 0);
    r.oggetto = "ab";
    r.message_id = NULL;
    r.seq = 2;
    pec_record_hash(&r, h2);
    CHECK(strcmp(h1, h2) != 0);
}

/* Ten records over four local days: Jan 29 (1), Jan 30 (4), Jan 31 (3), Feb 1 (2). */
static void fill(struct pec_store *st)
{
    static const int when[][3] = {{29, 23, 59}, {30, 0, 0}, {30, 9, 0}, {30, 12, 30},
                                  {30, 23, 0},  {31, 1, 0}, {31, 2, 0}, {31, 3, 0}};
    char err[1024], id[64];

    for (size_t i = 0; i < 10; i++) {
        struct pec_batch *b = pec_batch_new();
        struct pec_record r;
        time_t at = i < 8 ? local(2024, 1, when[i][0], when[i][1], when[i][2])
                          : local(2024, 2, 1, 8 + (int)i, 0);
        snprintf(id, sizeof(id), "opec%zu@pec-a.test", i + 1);
        pec_record_init(&r, i % 3 ? PEC_REG_CONSEGNA : PEC_REG_BUSTA_TRASPORTO,
                        i % 2 ? PEC_REG_RICEZIONE : PEC_REG_EMISSIONE, at, id);
        r.mittente = "mario@pec-a.test";
        r.destinatari = "b@pec-b.test (certificato)";
        r.oggetto = "Prova";
        r.gestore = "Gestore A S.p.A.";
        pec_batch_record(b, &r);
        CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
        pec_batch_free(b);
    }
}

static int verify(struct pec_registro_report *rep)
{
    char err[1024];
    struct pec_store *st = pec_store_open(db, PEC_STORE_NOCREATE, err, sizeof(err));
    int rc;

    if (st == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    rc = pec_registro_verify(st, seals, trust, SERVICE, rep);
    pec_store_close(st);
    return rc;
}

static void copy(const char *from, const char *to)
{
    char *cmd = xasprintf("cp %s %s", from, to);
    CHECK(system(cmd) == 0);
    free(cmd);
}

/* The store NAME: a file in dir, or the spec of schema NAME of the PostgreSQL database. */
static char *store_spec(const char *name)
{
    if (pg_base == NULL)
        return xasprintf("%s/%s.db", dir, name);
    return xasprintf("%s options='-csearch_path=%s'", pg_base, name);
}

/* An empty store NAME (a fresh schema on PostgreSQL, no file on SQLite). */
static void fresh_store(const char *name)
{
    char *spec = store_spec(name);

    if (pg_base != NULL) {
        free(spec);
        spec = pg_fresh_schema(pg_base, name);
        CHECK(spec != NULL);
    } else {
        unlink(spec);
    }
    free(spec);
}

/* The store TO made what the store FROM is: a file copied, or a schema copied into afresh. */
static void copy_store(const char *from, const char *to)
{
    char err[1024], *f = store_spec(from), *t = store_spec(to);
    struct pec_store *a, *b;
    long long rows;

    if (pg_base == NULL) {
        copy(f, t);
    } else {
        fresh_store(to);
        a = pec_store_open(f, PEC_STORE_NOCREATE, err, sizeof(err));
        b = a ? pec_store_open(t, 0, err, sizeof(err)) : NULL;
        CHECK(b != NULL && pec_store_copy(a, b, &rows, err, sizeof(err)) == 0);
        pec_store_close(b);
        pec_store_close(a);
    }
    free(f);
    free(t);
}

/* SQL on the store NAME, beside its handle. */
static void store_sql(const char *name, const char *sql)
{
    char *spec = store_spec(name);
    sqlite3 *h;

    if (pg_base != NULL) {
        CHECK(pg_sql(spec, sql) == 0);
    } else {
        CHECK(sqlite3_open(spec, &h) == SQLITE_OK);
        CHECK(sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(h);
    }
    free(spec);
}

/* Run SQL on a fresh copy of the sealed store, then verify it. */
static int tampered(const char *sql, struct pec_registro_report *rep)
{
    int rc;

    copy_store("pristine", "registro");
    store_sql("registro", sql);
    rc = verify(rep);
    printf("  %-60.60s -> %s\n", sql, rep->problem);
    return rc;
}

/* The attacker who knows the algorithm: change record 2, then re-chain every record. */
static int rechain(const struct pec_record *r, void *arg)
{
    static char prev[PEC_HASH_HEX];
    struct pec_record c = *r;
    char *sql;

    (void)arg;
    if (c.seq == 2)
        c.oggetto = "Prova falsificata";
    if (c.seq > 1)
        memcpy(c.prev, prev, sizeof(prev));
    pec_record_hash(&c, c.hash);
    memcpy(prev, c.hash, sizeof(prev));
    sql = xasprintf("UPDATE registro SET oggetto = '%s', prev = '%s', hash = '%s' WHERE seq = "
                    "%lld; UPDATE meta SET value = '%s' WHERE key = 'registro_head_hash'",
                    c.oggetto, c.prev, c.hash, c.seq, c.hash);
    store_sql("registro", sql);
    free(sql);
    return 0;
}

static void test_chain_and_seals(void)
{
    struct pec_registro_report rep;
    struct pec_signer *signer;
    struct pec_store *st;
    char err[1024], *cert = xasprintf("%s/a/cert.pem", pki), *key = xasprintf("%s/a/key.pem", pki),
                    *chain = xasprintf("%s/a/chain.pem", pki);
    int n;

    signer = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err));
    CHECK(signer != NULL);
    st = pec_store_open(db, 0, err, sizeof(err));
    CHECK(st != NULL && signer != NULL);
    if (st == NULL || signer == NULL)
        goto out;
    fill(st);
    CHECK(pec_registro_verify(st, seals, trust, SERVICE, &rep) == 0);
    CHECK(rep.records == 10 && rep.seals == 0);

    /* Feb 1 is today: Jan 29, 30, 31 get a seal each, Feb 1 waits */
    CHECK(pec_registro_seal(st, signer, "Gestore A S.p.A.", seals, local(2024, 2, 1, 12, 0), &n,
                            err, sizeof(err)) == 0);
    CHECK(n == 3);
    CHECK(pec_registro_seal(st, signer, "Gestore A S.p.A.", seals, local(2024, 2, 1, 13, 0), &n,
                            err, sizeof(err)) == 0 &&
          n == 0);
    CHECK(pec_registro_verify(st, seals, trust, SERVICE, &rep) == 0);
    CHECK(rep.records == 10 && rep.seals == 3 && rep.first_seq == 1 && rep.last_seq == 10);
    CHECK_STR(rep.problem, "");
    /* someone else's certificate is not ours */
    CHECK(pec_registro_verify(st, seals, trust, "posta-certificata@pec-b.test", &rep) == 1);
    CHECK(strstr(rep.problem, "not by this provider") != NULL);
    pec_store_close(st);
    copy_store("registro", "pristine");

    /* the seals are CMS files openssl verifies, holding the day's records */
    char *cmd = xasprintf("openssl cms -verify -inform DER -in %s/registro-20240130-2.p7m "
                          "-CAfile %s/trust.pem -out %s/seal.txt 2>/dev/null && grep -q "
                          "'^5 [0-9a-f]\\{64\\} 2024-01-30T23:00:00+0100 opec5@pec-a.test: ' "
                          "%s/seal.txt && grep -c 'opec' %s/seal.txt | grep -qx 4",
                          seals, pki, dir, dir, dir);
    CHECK(system(cmd) == 0);
    free(cmd);

    printf("tampering:\n");
    CHECK(tampered("UPDATE registro SET oggetto = 'Altro' WHERE seq = 3", &rep) == 1);
    CHECK(rep.bad_seq == 3 && strstr(rep.problem, "#3 (opec3@pec-a.test) was changed"));
    CHECK(tampered("UPDATE registro SET at = at + 1 WHERE seq = 9", &rep) == 1 && rep.bad_seq == 9);
    CHECK(tampered("DELETE FROM registro WHERE seq = 5", &rep) == 1);
    CHECK(rep.bad_seq == 5 && strstr(rep.problem, "#5 is missing"));
    CHECK(tampered("UPDATE registro SET seq = -4 WHERE seq = 4; UPDATE registro SET seq = 4 WHERE "
                   "seq = 6; UPDATE registro SET seq = 6 WHERE seq = -4",
                   &rep) == 1);
    CHECK(rep.bad_seq == 4);
    CHECK(tampered("DELETE FROM registro WHERE seq = 10", &rep) == 1);
    CHECK(rep.bad_seq == 10 && strstr(rep.problem, "#10, the last one appended, is missing"));
    CHECK(tampered("INSERT INTO registro SELECT 11, at, evento, tipo, label, identificativo, "
                   "queue_id, mittente, destinatari, oggetto, message_id, gestore, tipo_ricevuta, "
                   "consegna, ricezione, errore, virus, errore_esteso, hash, hash, client_msgid, "
                   "node, form FROM registro "
                   "WHERE seq = 10",
                   &rep) == 1);
    CHECK(rep.bad_seq == 11);
    CHECK(tampered("UPDATE seals SET file_sha256 = '00' WHERE first_seq = 6", &rep) == 1);
    CHECK(strstr(rep.problem, "registro-20240131-6.p7m was replaced or changed") != NULL);

    /* the chain recomputed by hand: only the seal of Jan 30 knows */
    {
        struct pec_store *s2;
        copy_store("pristine", "registro");
        s2 = pec_store_open(db, 0, err, sizeof(err));
        CHECK(s2 != NULL);
        CHECK(pec_store_log_each(s2, NULL, rechain, NULL, err, sizeof(err)) == 0);
        pec_store_close(s2);
        CHECK(verify(&rep) == 1);
        printf("  re-chained after changing record 2 -> %s\n", rep.problem);
        CHECK(rep.bad_seq == 2 && strstr(rep.problem, "differs from what seal"));
    }

    /* a seal file changed by one byte */
    copy_store("pristine", "registro");
    {
        char *f = xasprintf("%s/registro-20240129-1.p7m", seals), *bak = xasprintf("%s.bak", f);
        FILE *fp;
        copy(f, bak);
        fp = fopen(f, "r+b");
        CHECK(fp != NULL && fseek(fp, 200, SEEK_SET) == 0 && fputc('X', fp) != EOF);
        CHECK(fp != NULL && fclose(fp) == 0);
        CHECK(verify(&rep) == 1 && strstr(rep.problem, "registro-20240129-1.p7m"));
        copy(bak, f);
        unlink(bak);
        free(f);
        free(bak);
    }
    CHECK(verify(&rep) == 0);
out:
    pec_signer_free(signer);
    free(cert);
    free(key);
    free(chain);
}

static void test_purge(void)
{
    struct pec_registro_report rep;
    struct pec_store *st;
    char err[1024], *f;
    long long n;

    copy_store("pristine", "registro");
    st = pec_store_open(db, 0, err, sizeof(err));
    CHECK(st != NULL);
    if (st == NULL)
        return;
    /* two months before Mar 31 is Jan 31, 00:00: Jan 29 and Jan 30 go */
    CHECK(pec_registro_purge(st, seals, 2, local(2024, 3, 31, 12, 0), &n, err, sizeof(err)) == 0);
    CHECK(n == 5);
    CHECK(pec_registro_verify(st, seals, trust, SERVICE, &rep) == 0);
    printf("after purge: %lld records #%lld-#%lld, %d seals: %s\n", rep.records, rep.first_seq,
           rep.last_seq, rep.seals, rep.problem);
    CHECK(rep.records == 5 && rep.first_seq == 6 && rep.seals == 1);
    f = xasprintf("%s/registro-20240130-2.p7m", seals);
    CHECK(access(f, F_OK) != 0);
    free(f);
    f = xasprintf("%s/registro-20240131-6.p7m", seals);
    CHECK(access(f, F_OK) == 0);
    free(f);
    /* unsealed records stay, however old */
    CHECK(pec_registro_purge(st, seals, 1, local(2030, 1, 1, 0, 0), &n, err, sizeof(err)) == 0);
    CHECK(n == 3);
    CHECK(pec_registro_verify(st, seals, trust, SERVICE, &rep) == 0 && rep.records == 2);
    /* and the chain goes on from the anchor */
    {
        struct pec_batch *b = pec_batch_new();
        struct pec_record r;
        pec_record_init(&r, PEC_REG_ACCETTAZIONE, PEC_REG_EMISSIONE, local(2030, 1, 1, 0, 0),
                        "late");
        pec_batch_record(b, &r);
        CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
        pec_batch_free(b);
    }
    CHECK(pec_registro_verify(st, seals, trust, SERVICE, &rep) == 0 && rep.last_seq == 11);
    pec_store_close(st);
}

/* Rewrite every record as the pecmilter before form 2 wrote it: no client_msgid, no node. */
static int as_form1(const struct pec_record *r, void *arg)
{
    static char prev[PEC_HASH_HEX];
    struct pec_record c = *r;
    char *sql;

    (void)arg;
    c.client_msgid = "";
    c.node = "";
    c.form = 1;
    if (c.seq > 1)
        memcpy(c.prev, prev, sizeof(prev));
    pec_record_hash(&c, c.hash);
    memcpy(prev, c.hash, sizeof(prev));
    sql = xasprintf("UPDATE registro SET client_msgid = '', node = '', form = 1, prev = '%s',"
                    " hash = '%s' WHERE seq = %lld; UPDATE meta SET value = '%s' WHERE key ="
                    " 'registro_head_hash'",
                    c.prev, c.hash, c.seq, c.hash);
    store_sql("old", sql);
    free(sql);
    return 0;
}

/*
 * A store upgraded from before client_msgid and node: its records keep the
 * hash they were written with (form 1) and are sealed with it; records
 * appended now are form 2 and chain on.  All of it verifies; changing a
 * form-1 record, or claiming it is form 2, is found.
 */
static void test_old_records(void)
{
    struct pec_registro_report rep;
    struct pec_signer *signer;
    struct pec_store *st;
    struct pec_batch *b;
    struct pec_record r;
    char err[1024], *cert = xasprintf("%s/a/cert.pem", pki), *key = xasprintf("%s/a/key.pem", pki),
                    *chain = xasprintf("%s/a/chain.pem", pki), *old = store_spec("old"),
                    *oldseals = xasprintf("%s/oldseals", dir);
    int n;

    signer = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err));
    fresh_store("old");
    st = pec_store_open(old, 0, err, sizeof(err));
    CHECK(st != NULL && signer != NULL);
    if (st == NULL || signer == NULL)
        goto out;
    fill(st);
    pec_store_set_node(st, "1");
    CHECK(pec_store_log_each(st, NULL, as_form1, NULL, err, sizeof(err)) == 0);
    CHECK(pec_registro_seal(st, signer, "Gestore A S.p.A.", oldseals, local(2024, 2, 1, 12, 0), &n,
                            err, sizeof(err)) == 0 &&
          n == 3);
    b = pec_batch_new();
    pec_record_init(&r, PEC_REG_ACCETTAZIONE, PEC_REG_EMISSIONE, local(2024, 2, 2, 9, 0),
                    "opec11@pec-a.test");
    r.client_msgid = "<c11@client>";
    pec_batch_record(b, &r);
    CHECK(pec_store_commit(st, b, err, sizeof(err)) == 0);
    pec_batch_free(b);
    CHECK(pec_registro_verify(st, oldseals, trust, SERVICE, &rep) == 0);
    CHECK(rep.records == 11 && rep.seals == 3);
    CHECK_STR(rep.problem, "");
    pec_store_close(st);

    store_sql("old", "SELECT 1 FROM registro WHERE seq = 11 AND form = 2 AND node = '1'"
                     " AND client_msgid = '<c11@client>'");
    store_sql("old", "UPDATE registro SET form = 2 WHERE seq = 4");
    st = pec_store_open(old, PEC_STORE_NOCREATE, err, sizeof(err));
    CHECK(st != NULL && pec_registro_verify(st, oldseals, trust, SERVICE, &rep) == 1);
    CHECK(strstr(rep.problem, "record #4") != NULL);
    pec_store_close(st);
out:
    pec_signer_free(signer);
    free(cert);
    free(key);
    free(chain);
    free(old);
    free(oldseals);
}

int main(void)
{
    struct pec_clock clock;
    char err[512], *ta;

    pki = check_env("PEC_PKI_DIR");
    if (pec_clock_init(&clock, "Europe/Rome", "", err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    pg_base = getenv("PEC_TEST_STORE");
    if (pg_base != NULL && *pg_base == '\0')
        pg_base = NULL;
    db = store_spec("registro");
    pristine = store_spec("pristine");
    fresh_store("registro");
    seals = xasprintf("%s/seals", dir);
    ta = xasprintf("%s/trust.pem", pki);
    trust = pec_trust_load(ta, err, sizeof(err));
    CHECK(trust != NULL);
    test_line_and_json();
    test_hash();
    if (trust) {
        test_chain_and_seals();
        test_purge();
        test_old_records();
    }
    pec_trust_free(trust);
    if (check_failures == 0) {
        char *cmd = xasprintf("rm -rf %s", dir);
        CHECK(system(cmd) == 0);
        free(cmd);
    }
    free(db);
    free(pristine);
    free(seals);
    free(ta);
    return check_exit();
}
