/*
 * registro - the legal log: records, their chain, daily seals, retention.
 *
 * The hash of a record is SHA-256 over a canonical text that no field value
 * can forge: a version line, then every field as "name:length:value\n" in a
 * fixed order, the record's number, instant and the previous hash included.
 *
 * A seal file is a CMS SignedData (DER, content attached) over plain text:
 * a header naming the gestore, the day and the range of records, then one
 * line per record, "seq hash ISO-time log-line".  Verification compares the
 * (seq, hash) pairs with the store, so it needs no parser for the log line
 * and an operator can read a seal with `openssl cms -verify`.
 */
#include "store/registro.h"
#include "message/daticert.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define SEAL_MAGIC "pecmilter registro giornaliero\n"

static const struct {
    const char *tipo;
    const char *label;
} kinds[] = {
    [PEC_REG_BUSTA_TRASPORTO] = {"posta-certificata", "BustaTrasporto"},
    [PEC_REG_BUSTA_ANOMALIA] = {"busta-anomalia", "BustaAnomalia"},
    [PEC_REG_ACCETTAZIONE] = {"accettazione", "Accettazione"},
    [PEC_REG_NON_ACCETTAZIONE] = {"non-accettazione", "NonAccettazione"},
    [PEC_REG_NON_ACCETTAZIONE_VIRUS] = {"non-accettazione", "NonAccettazioneVirus"},
    [PEC_REG_PRESA_IN_CARICO] = {"presa-in-carico", "PresaInCarico"},
    [PEC_REG_CONSEGNA] = {"avvenuta-consegna", "Consegna"},
    [PEC_REG_MANCATA_CONSEGNA] = {"errore-consegna", "MancataConsegna"},
    [PEC_REG_MANCATA_CONSEGNA_VIRUS] = {"errore-consegna", "MancataConsegnaVirus"},
    [PEC_REG_MANCATA_CONSEGNA_12H] = {"preavviso-errore-consegna", "MancataConsegna12h"},
    [PEC_REG_MANCATA_CONSEGNA_24H] = {"preavviso-errore-consegna", "MancataConsegna24h"},
    [PEC_REG_RILEVAZIONE_VIRUS] = {"rilevazione-virus", "RilevazioneVirus"},
    [PEC_REG_POSTA_ORDINARIA] = {"posta-ordinaria", "PostaOrdinaria"},
};

int pec_reg_kind_of(const struct pec_daticert *d, enum pec_reg_kind *kind)
{
    int virus = d->errore == PEC_ERRORE_VIRUS;

    switch (d->tipo) {
    case PEC_TIPO_ACCETTAZIONE:
        *kind = PEC_REG_ACCETTAZIONE;
        return 0;
    case PEC_TIPO_NON_ACCETTAZIONE:
        *kind = virus ? PEC_REG_NON_ACCETTAZIONE_VIRUS : PEC_REG_NON_ACCETTAZIONE;
        return 0;
    case PEC_TIPO_PRESA_IN_CARICO:
        *kind = PEC_REG_PRESA_IN_CARICO;
        return 0;
    case PEC_TIPO_AVVENUTA_CONSEGNA:
        *kind = PEC_REG_CONSEGNA;
        return 0;
    case PEC_TIPO_ERRORE_CONSEGNA:
        *kind = virus ? PEC_REG_MANCATA_CONSEGNA_VIRUS : PEC_REG_MANCATA_CONSEGNA;
        return 0;
    case PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA:
        *kind = d->errore_esteso != NULL && d->errore_esteso[0] == '5'
                    ? PEC_REG_MANCATA_CONSEGNA_24H
                    : PEC_REG_MANCATA_CONSEGNA_12H;
        return 0;
    case PEC_TIPO_RILEVAZIONE_VIRUS:
        *kind = PEC_REG_RILEVAZIONE_VIRUS;
        return 0;
    default:
        return -1;
    }
}

static const char *str(const char *s)
{
    return s ? s : "";
}

void pec_record_init(struct pec_record *r, enum pec_reg_kind kind, enum pec_reg_dir dir, time_t at,
                     const char *identificativo)
{
    memset(r, 0, sizeof(*r));
    r->at = at;
    r->evento = dir == PEC_REG_EMISSIONE   ? "emissione"
                : dir == PEC_REG_RICEZIONE ? "ricezione"
                                           : "deposito";
    r->tipo = kinds[kind].tipo;
    r->label = kinds[kind].label;
    r->identificativo = identificativo;
}

/* ---------------------------------------------------------------- growing text */

struct text {
    char *s;
    size_t len, cap;
};

static void text_reserve(struct text *t, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = xrealloc(t->s, t->cap);
    }
}

static void text_add(struct text *t, const char *s, size_t n)
{
    text_reserve(t, n);
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap, aq;
    int n;

    va_start(ap, fmt);
    va_copy(aq, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        text_reserve(t, (size_t)n);
        vsnprintf(t->s + t->len, (size_t)n + 1, fmt, aq);
        t->len += (size_t)n;
    }
    va_end(aq);
}

static char *text_take(struct text *t)
{
    if (t->s == NULL)
        return xstrdup("");
    return t->s;
}

char *pec_destinatari_format(const struct pec_dest *d, size_t n)
{
    struct text t = {0};

    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            text_puts(&t, ", ");
        text_puts(&t, str(d[i].address));
        text_puts(&t, d[i].certificato ? " (certificato)" : " (esterno)");
    }
    return text_take(&t);
}

/* ---------------------------------------------------------------- hash */

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void canon_field(struct text *t, const char *name, const char *value)
{
    text_printf(t, "%s:%zu:", name, strlen(str(value)));
    text_puts(t, str(value));
    text_puts(t, "\n");
}

/* SHA-256 of BUF as hex; OpenSSL failing here means no memory, which xalloc treats as fatal. */
static void sha256_hex(const void *buf, size_t len, char out[PEC_HASH_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        fprintf(stderr, "registro: SHA-256 failed\n");
        abort();
    }
    hex(md, mdlen, out);
}

void pec_record_hash(const struct pec_record *r, char out[PEC_HASH_HEX])
{
    struct text t = {0};
    char num[32];

    /* form 1 records (written before client_msgid and node) keep their hash */
    text_puts(&t, r->form >= 2 ? "pec-registro-2\n" : "pec-registro-1\n");
    snprintf(num, sizeof(num), "%lld", r->seq);
    canon_field(&t, "seq", num);
    snprintf(num, sizeof(num), "%lld", (long long)r->at);
    canon_field(&t, "at", num);
    canon_field(&t, "evento", r->evento);
    canon_field(&t, "tipo", r->tipo);
    canon_field(&t, "label", r->label);
    canon_field(&t, "identificativo", r->identificativo);
    canon_field(&t, "queueid", r->queue_id);
    canon_field(&t, "mittente", r->mittente);
    canon_field(&t, "destinatari", r->destinatari);
    canon_field(&t, "oggetto", r->oggetto);
    canon_field(&t, "message-id", r->message_id);
    canon_field(&t, "gestore", r->gestore);
    canon_field(&t, "tipo_ricevuta", r->tipo_ricevuta);
    canon_field(&t, "consegna", r->consegna);
    canon_field(&t, "ricezione", r->ricezione);
    canon_field(&t, "errore", r->errore);
    canon_field(&t, "virus", r->virus);
    canon_field(&t, "errore-esteso", r->errore_esteso);
    if (r->form >= 2) {
        canon_field(&t, "client-msgid", r->client_msgid);
        canon_field(&t, "node", r->node);
    }
    canon_field(&t, "prev", r->prev);
    sha256_hex(t.s, t.len, out);
    free(t.s);
}

/* ---------------------------------------------------------------- line and JSON */

/* VALUE with control characters as spaces: one record stays one log line. */
static void add_clean(struct text *t, const char *value)
{
    for (const char *p = str(value); *p; p++) {
        char c = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
        text_add(t, &c, 1);
    }
}

static void line_field(struct text *t, const char *name, const char *value, int always)
{
    if (!always && str(value)[0] == '\0')
        return;
    text_puts(t, ": ");
    text_puts(t, name);
    text_puts(t, "=");
    add_clean(t, value);
}

char *pec_record_line(const struct pec_record *r)
{
    struct text t = {0};

    add_clean(&t, r->identificativo);
    line_field(&t, "queueid", r->queue_id, 1);
    text_puts(&t, ": tipo=");
    add_clean(&t, r->tipo);
    text_puts(&t, " (");
    add_clean(&t, r->label);
    text_puts(&t, ")");
    line_field(&t, "mittente", r->mittente, 1);
    line_field(&t, "destinatari", r->destinatari, 1);
    line_field(&t, "oggetto", r->oggetto, 1);
    line_field(&t, "message-id", r->message_id, 0);
    line_field(&t, "gestore", r->gestore, 0);
    line_field(&t, "tipo_ricevuta", r->tipo_ricevuta, 0);
    line_field(&t, "consegna", r->consegna, 0);
    line_field(&t, "ricezione", r->ricezione, 0);
    line_field(&t, "errore", r->errore, 0);
    line_field(&t, "virus", r->virus, 0);
    line_field(&t, "errore-esteso", r->errore_esteso, 0);
    /* ours, after every field of the TMail format, where its parsers stop reading */
    line_field(&t, "evento", r->evento, 1);
    line_field(&t, "client-msgid", r->client_msgid, 0);
    line_field(&t, "node", r->node, 0);
    return text_take(&t);
}

/* Length of the valid UTF-8 sequence at P, 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* A JSON string; bytes that are not UTF-8 are taken as Latin-1. */
static void json_string(struct text *t, const char *s)
{
    const unsigned char *p = (const unsigned char *)str(s);

    text_puts(t, "\"");
    while (*p) {
        size_t n = utf8_len(p);
        if (*p == '"' || *p == '\\') {
            text_puts(t, *p == '"' ? "\\\"" : "\\\\");
        } else if (*p < 0x20 || *p == 0x7f || n == 0) {
            text_printf(t, "\\u%04x", *p);
        } else {
            text_add(t, (const char *)p, n);
            p += n;
            continue;
        }
        p++;
    }
    text_puts(t, "\"");
}

static void json_field(struct text *t, const char *name, const char *value)
{
    text_puts(t, ",");
    json_string(t, name);
    text_puts(t, ":");
    json_string(t, value);
}

static void iso_utc(time_t at, char out[32])
{
    struct tm tm;

    if (gmtime_r(&at, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "@%lld", (long long)at);
}

char *pec_record_json(const struct pec_record *r)
{
    struct text t = {0};
    char when[32];

    iso_utc(r->at, when);
    text_printf(&t, "{\"seq\":%lld,\"at\":%lld", r->seq, (long long)r->at);
    json_field(&t, "time", when);
    json_field(&t, "identificativo", r->identificativo);
    json_field(&t, "queueid", r->queue_id);
    json_field(&t, "evento", r->evento);
    json_field(&t, "tipo", r->tipo);
    json_field(&t, "label", r->label);
    json_field(&t, "mittente", r->mittente);
    json_field(&t, "destinatari", r->destinatari);
    json_field(&t, "oggetto", r->oggetto);
    json_field(&t, "message-id", r->message_id);
    json_field(&t, "gestore", r->gestore);
    json_field(&t, "tipo_ricevuta", r->tipo_ricevuta);
    json_field(&t, "consegna", r->consegna);
    json_field(&t, "ricezione", r->ricezione);
    json_field(&t, "errore", r->errore);
    json_field(&t, "virus", r->virus);
    json_field(&t, "errore-esteso", r->errore_esteso);
    json_field(&t, "client-msgid", r->client_msgid);
    json_field(&t, "node", r->node);
    json_field(&t, "prev", r->prev);
    json_field(&t, "hash", r->hash);
    text_puts(&t, "}");
    return text_take(&t);
}

/* ---------------------------------------------------------------- days */

/* Local midnight starting the day of T, and that day as "YYYY-MM-DD". */
static time_t day_start(time_t t, char day[11])
{
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL)
        return t; /* beyond what the C library can show: not a day boundary anyone needs */
    if (day && strftime(day, 11, "%Y-%m-%d", &tm) == 0)
        day[0] = '\0';
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return mktime(&tm);
}

/* Local midnight ending DAY ("YYYY-MM-DD"), or -1 when DAY is not a date. */
static time_t day_end(const char *day)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (sscanf(day, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_mday += 1;
    tm.tm_isdst = -1;
    return mktime(&tm);
}

static void iso_local(time_t at, char out[32])
{
    struct tm tm;

    if (localtime_r(&at, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%S%z", &tm) == 0)
        snprintf(out, 32, "@%lld", (long long)at);
}

/* ---------------------------------------------------------------- files */

static int read_file(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *b = NULL;
    size_t n = 0, got;

    if (fp == NULL) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    do {
        b = xrealloc(b, n + 65536 + 1);
        got = fread(b + n, 1, 65536, fp);
        n += got;
    } while (got > 0);
    if (ferror(fp)) {
        pec_seterr(err, errlen, "%s: read error", path);
        fclose(fp);
        free(b);
        return -1;
    }
    fclose(fp);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Write DATA to DIR/NAME durably: temporary file, fsync, rename, fsync of DIR. */
static int write_durably(const char *dir, const char *name, const unsigned char *data, size_t len,
                         char *err, size_t errlen)
{
    char *path = xasprintf("%s/%s", dir, name);
    char *tmp = xasprintf("%s/.%s.tmp", dir, name);
    int fd, rc = -1;

    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        pec_seterr(err, errlen, "seal directory %s: %s", dir, strerror(errno));
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        pec_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            pec_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0 || fsync_dir(dir) != 0) {
        pec_seterr(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(path);
    free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- seal */

struct seal_collect {
    time_t day_limit; /* records from this local midnight on belong to a later seal */
    struct text body;
    long long first, last;
    char prev[PEC_HASH_HEX];
    char last_hash[PEC_HASH_HEX];
    long long n;
};

static int collect_day(const struct pec_record *r, void *arg)
{
    struct seal_collect *c = arg;
    char when[32];
    char *line;

    if (r->at >= c->day_limit)
        return 1;
    if (c->n++ == 0) {
        c->first = r->seq;
        memcpy(c->prev, r->prev, sizeof(c->prev));
    }
    c->last = r->seq;
    memcpy(c->last_hash, r->hash, sizeof(c->last_hash));
    iso_local(r->at, when);
    line = pec_record_line(r);
    text_printf(&c->body, "%lld %s %s %s\n", r->seq, r->hash, when, line);
    free(line);
    return 0;
}

static int first_record(const struct pec_record *r, void *arg)
{
    *(time_t *)arg = r->at;
    return 1;
}

static int last_seal(const struct pec_seal *s, void *arg)
{
    *(long long *)arg = s->last_seq;
    return 0;
}

/* Sign C's records of DAY and record the seal; 0, or -1 with err. */
static int write_seal(struct pec_store *st, const struct pec_signer *signer, const char *gestore,
                      const char *seal_dir, const char *day, time_t now,
                      const struct seal_collect *c, char *err, size_t errlen)
{
    struct text t = {0};
    struct pec_seal seal;
    unsigned char *der = NULL;
    size_t derlen = 0;
    char name[64], compact[9];
    int rc = -1;

    text_puts(&t, SEAL_MAGIC);
    text_printf(&t, "gestore: %s\ngiorno: %s\nprimo: %lld\nultimo: %lld\nprecedente: %s\n", gestore,
                day, c->first, c->last, c->prev);
    text_printf(&t, "hash-ultimo: %s\n\n", c->last_hash);
    text_add(&t, c->body.s, c->body.len);
    snprintf(compact, sizeof(compact), "%.4s%.2s%.2s", day, day + 5, day + 8);
    snprintf(name, sizeof(name), "registro-%s-%lld.p7m", compact, c->first);
    if (pec_smime_sign_attached(signer, (const unsigned char *)t.s, t.len, now, &der, &derlen, err,
                                errlen) < 0 ||
        write_durably(seal_dir, name, der, derlen, err, errlen) < 0)
        goto out;
    memset(&seal, 0, sizeof(seal));
    snprintf(seal.day, sizeof(seal.day), "%s", day);
    seal.file = name;
    seal.first_seq = c->first;
    seal.last_seq = c->last;
    memcpy(seal.last_hash, c->last_hash, sizeof(seal.last_hash));
    sha256_hex(der, derlen, seal.file_sha256);
    seal.sealed_at = now;
    rc = pec_store_seal_add(st, &seal, err, errlen);
out:
    free(t.s);
    free(der);
    return rc;
}

/* Seal the next finished day: 1 sealed, 0 nothing to seal, -1 error. */
static int seal_next(struct pec_store *st, const struct pec_signer *signer, const char *gestore,
                     const char *seal_dir, time_t now, char *err, size_t errlen)
{
    struct pec_log_filter f;
    struct seal_collect c;
    long long purged, head, sealed = 0;
    char ph[PEC_HASH_HEX], hh[PEC_HASH_HEX], day[11];
    time_t first_at = 0;
    int rc;

    if (pec_store_log_bounds(st, &purged, ph, &head, hh, err, errlen) < 0 ||
        pec_store_seals_each(st, last_seal, &sealed, err, errlen) < 0)
        return -1;
    if (sealed < purged)
        sealed = purged;
    if (sealed >= head)
        return 0;
    memset(&f, 0, sizeof(f));
    f.from_seq = sealed + 1;
    if (pec_store_log_each(st, &f, first_record, &first_at, err, errlen) < 0)
        return -1;
    if (day_start(first_at, day) >= day_start(now, NULL))
        return 0; /* the oldest unsealed day is today: not finished */
    memset(&c, 0, sizeof(c));
    c.day_limit = day_end(day);
    rc = pec_store_log_each(st, &f, collect_day, &c, err, errlen);
    if (rc >= 0)
        rc = write_seal(st, signer, gestore, seal_dir, day, now, &c, err, errlen) < 0 ? -1 : 1;
    free(c.body.s);
    return rc;
}

int pec_registro_seal(struct pec_store *st, const struct pec_signer *signer, const char *gestore,
                      const char *seal_dir, time_t now, int *nsealed, char *err, size_t errlen)
{
    int rc;

    *nsealed = 0;
    while ((rc = seal_next(st, signer, gestore, seal_dir, now, err, errlen)) == 1)
        (*nsealed)++;
    return rc;
}

/* ---------------------------------------------------------------- purge */

struct purge_plan {
    time_t cutoff;
    long long next_first; /* the seal that may go next starts here */
    long long through;
    char **files;
    size_t nfiles;
};

static int plan_purge(const struct pec_seal *s, void *arg)
{
    struct purge_plan *p = arg;
    time_t end = day_end(s->day);

    if (s->first_seq != p->next_first || end < 0 || end > p->cutoff)
        return 1;
    p->through = s->last_seq;
    p->next_first = s->last_seq + 1;
    p->files = xrealloc(p->files, (p->nfiles + 1) * sizeof(char *));
    p->files[p->nfiles++] = xstrdup(s->file);
    return 0;
}

int pec_registro_purge(struct pec_store *st, const char *seal_dir, int months, time_t now,
                       long long *nremoved, char *err, size_t errlen)
{
    struct purge_plan p;
    long long purged, head;
    char ph[PEC_HASH_HEX], hh[PEC_HASH_HEX];
    int rc = -1;

    *nremoved = 0;
    memset(&p, 0, sizeof(p));
    p.cutoff = pec_months_before(now, months);
    if (pec_store_log_bounds(st, &purged, ph, &head, hh, err, errlen) < 0)
        return -1;
    p.next_first = purged + 1;
    if (pec_store_seals_each(st, plan_purge, &p, err, errlen) < 0 ||
        pec_store_log_purge(st, p.through, p.cutoff, err, errlen) < 0)
        goto out;
    *nremoved = p.through > 0 ? p.through - purged : 0;
    rc = 0;
    /* the store no longer knows these files; one left behind is untidy, not wrong */
    for (size_t i = 0; i < p.nfiles; i++) {
        char *path = xasprintf("%s/%s", seal_dir, p.files[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            pec_seterr(err, errlen, "purged %lld records, but cannot remove the seal %s: %s",
                       *nremoved, path, strerror(errno));
            rc = -1;
        }
        free(path);
    }
out:
    for (size_t i = 0; i < p.nfiles; i++)
        free(p.files[i]);
    free(p.files);
    return rc;
}

/* ---------------------------------------------------------------- verify */

static int bad(struct pec_registro_report *rep, long long seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct pec_registro_report *rep, long long seq, const char *fmt, ...)
{
    va_list ap;

    rep->bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(rep->problem, sizeof(rep->problem), fmt, ap);
    va_end(ap);
    return 1;
}

struct chain_walk {
    struct pec_registro_report *rep;
    long long expect_seq;
    char expect_prev[PEC_HASH_HEX];
};

static int check_link(const struct pec_record *r, void *arg)
{
    struct chain_walk *w = arg;
    char h[PEC_HASH_HEX];

    if (r->seq != w->expect_seq)
        return bad(w->rep, w->expect_seq,
                   "record #%lld is missing (deleted?): the next record in the store is #%lld",
                   w->expect_seq, r->seq);
    if (strcmp(r->prev, w->expect_prev) != 0)
        return bad(w->rep, r->seq,
                   "record #%lld (%s) does not follow record #%lld: its previous-hash does not "
                   "match (moved, inserted or the one before changed)",
                   r->seq, r->identificativo, r->seq - 1);
    pec_record_hash(r, h);
    if (strcmp(h, r->hash) != 0)
        return bad(w->rep, r->seq,
                   "record #%lld (%s) was changed: its contents do not match its hash", r->seq,
                   r->identificativo);
    if (w->rep->first_seq == 0)
        w->rep->first_seq = r->seq;
    w->rep->last_seq = r->seq;
    w->rep->records++;
    w->expect_seq = r->seq + 1;
    memcpy(w->expect_prev, r->hash, sizeof(w->expect_prev));
    return 0;
}

static int verify_chain(struct pec_store *st, struct pec_registro_report *rep, long long *purged)
{
    struct chain_walk w = {.rep = rep};
    struct pec_log_filter f;
    long long head;
    char ph[PEC_HASH_HEX], hh[PEC_HASH_HEX];
    int rc;

    if (pec_store_log_bounds(st, purged, ph, &head, hh, rep->problem, sizeof(rep->problem)) < 0)
        return -1;
    w.expect_seq = *purged + 1;
    memcpy(w.expect_prev, ph, sizeof(ph));
    memset(&f, 0, sizeof(f));
    f.from_seq = *purged + 1;
    rc = pec_store_log_each(st, &f, check_link, &w, rep->problem, sizeof(rep->problem));
    if (rc != 0)
        return rc;
    if (w.expect_seq - 1 > head)
        return bad(rep, head + 1, "record #%lld is beyond the last one appended (#%lld): inserted",
                   head + 1, head);
    if (w.expect_seq == head)
        return bad(rep, head, "record #%lld, the last one appended, is missing (deleted)", head);
    if (w.expect_seq < head)
        return bad(rep, w.expect_seq, "records #%lld to #%lld are missing (deleted)", w.expect_seq,
                   head);
    if (head > *purged && strcmp(w.expect_prev, hh) != 0)
        return bad(rep, head, "record #%lld is not the one appended last (its hash differs)", head);
    return 0;
}

struct seal_check {
    struct pec_store *st;
    const char *seal_dir;
    const struct pec_trust *trust;
    const char *service_address;
    struct pec_registro_report *rep;
    long long purged;
};

struct seal_line {
    long long seq;
    char hash[PEC_HASH_HEX];
};

/* The (seq, hash) pairs after the header's blank line; -1 when malformed. */
static int parse_seal(const char *text, struct seal_line **out, size_t *n)
{
    const char *p = strstr(text, "\n\n");

    *out = NULL;
    *n = 0;
    if (strncmp(text, SEAL_MAGIC, strlen(SEAL_MAGIC)) != 0 || p == NULL)
        return -1;
    for (p += 2; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        struct seal_line l;
        char *end;
        l.seq = strtoll(p, &end, 10);
        if (end == p || *end != ' ' || strspn(end + 1, "0123456789abcdef") != 64 ||
            end[65] != ' ') {
            free(*out);
            return -1;
        }
        memcpy(l.hash, end + 1, 64);
        l.hash[64] = '\0';
        *out = xrealloc(*out, (*n + 1) * sizeof(**out));
        (*out)[(*n)++] = l;
    }
    return 0;
}

struct hash_cursor {
    const struct seal_line *lines;
    size_t n, i;
    struct pec_registro_report *rep;
    const char *file;
};

static int compare_sealed(const struct pec_record *r, void *arg)
{
    struct hash_cursor *c = arg;

    while (c->i < c->n && c->lines[c->i].seq < r->seq)
        c->i++;
    if (c->i == c->n || c->lines[c->i].seq != r->seq)
        return bad(c->rep, r->seq, "record #%lld is not in seal %s, which covers it", r->seq,
                   c->file);
    if (strcmp(c->lines[c->i].hash, r->hash) != 0)
        return bad(c->rep, r->seq, "record #%lld (%s) differs from what seal %s holds", r->seq,
                   r->identificativo, c->file);
    return 0;
}

/* Signature and signer of a seal; the signed text in *CONTENT. 0, or 1 with REP set. */
static int check_signature(struct seal_check *k, const struct pec_seal *s, const char *path,
                           unsigned char **content)
{
    unsigned char *der = NULL;
    size_t derlen = 0, clen = 0;
    struct pec_verify_result res;
    char sum[PEC_HASH_HEX], why[512];
    int rc = 0;

    *content = NULL;
    if (read_file(path, &der, &derlen, why, sizeof(why)) < 0)
        return bad(k->rep, 0, "seal of %s: %s", s->day, why);
    sha256_hex(der, derlen, sum);
    if (strcmp(sum, s->file_sha256) != 0) {
        free(der);
        return bad(k->rep, 0, "seal %s was replaced or changed since it was written", path);
    }
    if (pec_smime_verify_attached(der, derlen, k->trust, PEC_AT_SIGNING_TIME, 0, content, &clen,
                                  &res) < 0)
        rc = bad(k->rep, 0, "seal %s: signature does not verify: %s", path, res.reason);
    else if (k->service_address &&
             strcasecmp(res.signer_address ? res.signer_address : "", k->service_address) != 0)
        rc = bad(k->rep, 0, "seal %s was signed by %s, not by this provider (%s)", path,
                 res.signer_subject ? res.signer_subject : "?", k->service_address);
    pec_verify_result_free(&res);
    free(der);
    if (rc) {
        free(*content);
        *content = NULL;
    }
    return rc;
}

static int check_seal(const struct pec_seal *s, void *arg)
{
    struct seal_check *k = arg;
    struct pec_log_filter f;
    struct hash_cursor c = {.rep = k->rep};
    struct seal_line *lines = NULL;
    unsigned char *content = NULL;
    char *path = xasprintf("%s/%s", k->seal_dir, s->file);
    size_t n = 0;
    int rc = check_signature(k, s, path, &content);

    if (rc == 0 && parse_seal((const char *)content, &lines, &n) < 0)
        rc = bad(k->rep, 0, "seal %s: the signed text is not a registro seal", path);
    if (rc == 0 && (n == 0 || lines[0].seq != s->first_seq || lines[n - 1].seq != s->last_seq ||
                    (long long)n != s->last_seq - s->first_seq + 1))
        rc = bad(k->rep, 0, "seal %s does not cover records #%lld to #%lld as recorded", path,
                 s->first_seq, s->last_seq);
    if (rc == 0) {
        memset(&f, 0, sizeof(f));
        f.from_seq = s->first_seq > k->purged ? s->first_seq : k->purged + 1;
        f.to_seq = s->last_seq;
        c.lines = lines;
        c.n = n;
        c.file = path;
        rc = pec_store_log_each(k->st, &f, compare_sealed, &c, k->rep->problem,
                                sizeof(k->rep->problem));
    }
    if (rc == 0)
        k->rep->seals++;
    free(lines);
    free(content);
    free(path);
    return rc;
}

int pec_registro_verify(struct pec_store *st, const char *seal_dir, const struct pec_trust *trust,
                        const char *service_address, struct pec_registro_report *rep)
{
    struct seal_check k = {st, seal_dir, trust, service_address, rep, 0};
    int rc;

    memset(rep, 0, sizeof(*rep));
    rc = verify_chain(st, rep, &k.purged);
    if (rc == 0)
        rc = pec_store_seals_each(st, check_seal, &k, rep->problem, sizeof(rep->problem));
    return rc;
}
