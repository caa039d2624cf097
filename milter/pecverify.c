/*
 * pecverify - check PEC and REM messages from the command line.
 *
 * An operator with a message in hand (a Maildir file, an attachment a user forwarded, a
 * message held in the queue) wants to know what it is and whether it would pass our
 * Incoming Point: the same pec_inspect() the daemon runs, with the verdict first and the
 * certified data after it.  A message that announces itself as REM (a REM-MessageType
 * field) goes to pec_rem_inspect() instead, and --evidence reads standalone REM evidence
 * documents; every report has the same keys, REM's own facts under "rem".  The providers'
 * index and its CRLs come from the daemon's configuration (-c: the same source, the same
 * verification, the copy the daemon keeps) or from --index (a plain LDIF, said to be
 * unverified, or a .p7m verified against --index-signer) with --crl.  Output is for
 * people by default and JSON with --json, for scripts.  Exit status: 0 when every message
 * is valid, 1 when one is not, 2 on a usage or I/O error; see pecverify.1.
 *
 * Everything printed that comes from a message is escaped: a forged Subject must not be
 * able to move the terminal's cursor or break the JSON.
 */
#include "message/crl.h"
#include "message/daticert.h"
#include "message/index.h"
#include "message/libinit.h"
#include "message/rem.h"
#include "message/smime.h"
#include "message/verify.h"
#include "provider/conf.h"
#include "provider/directory.h"
#include "util/xalloc.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TRUST "/etc/ssl/certs/ca-certificates.crt"

static const char *progname = "pecverify";

enum status { ST_VALID = 0, ST_INVALID = 1, ST_ERROR = 2 };

struct options {
    const char *trust_path;
    const char *config;
    const char *index_path;
    const char *index_signer;
    const char *crl_path;
    struct pec_inspect_opts inspect;
    int json;
    int evidence; /* the FILEs are standalone REM evidence documents */
};

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: %s [-c CONFIG | [--trust FILE|DIR] [--index LDIF|P7M [--index-signer PEM]] "
            "[--crl FILE]] [--at now|signing-time|EPOCH] [--json] [--evidence] FILE...\n"
            "  FILE '-' reads standard input\n"
            "  -c          the daemon's configuration: its trust anchors, providers' index "
            "and CRLs\n"
            "  --trust     trust anchors, a PEM bundle or a directory (default %s)\n"
            "  --index     providers' index as LDIF; without it the signer is not checked\n"
            "  --index-signer  the index is a .p7m signed by this certificate or CA\n"
            "  --crl       CRLs (PEM, with their issuers' certificates) for the index's signers\n"
            "  --at        instant of the certificate check (default now)\n"
            "  --json      one JSON array instead of text\n"
            "  --evidence  the FILEs are REM evidence XML documents, not messages\n",
            progname, DEFAULT_TRUST);
}

/* ------------------------------------------------------------ input */

/* The whole of FP in *BUF (xmalloc'ed).  0, or -1 with errno. */
static int read_all(FILE *fp, unsigned char **buf, size_t *len)
{
    size_t cap = 65536, n = 0, got;
    unsigned char *b = xmalloc(cap);

    while ((got = fread(b + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap)
            b = xrealloc(b, cap *= 2);
    }
    if (ferror(fp)) {
        int e = errno;

        free(b);
        errno = e ? e : EIO;
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

static int read_input(const char *path, unsigned char **buf, size_t *len)
{
    FILE *fp;
    int ret;

    if (strcmp(path, "-") == 0)
        return read_all(stdin, buf, len);
    if ((fp = fopen(path, "rb")) == NULL)
        return -1;
    ret = read_all(fp, buf, len);
    if (fclose(fp) != 0 && ret == 0) {
        free(*buf);
        ret = -1;
    }
    return ret;
}

/* ------------------------------------------------------------ escaping */

/* Length of the valid UTF-8 sequence at P (at most LEFT bytes), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
    size_t n;
    unsigned cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2, cp = p[0] & 0x1f;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3, cp = p[0] & 0x0f;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4, cp = p[0] & 0x07;
    else
        return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* S as a JSON string: UTF-8 passes, controls are \uXXXX, other bytes read as Latin-1. */
static void json_str(FILE *fp, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left;

    if (s == NULL) {
        fputs("null", fp);
        return;
    }
    left = strlen(s);
    putc('"', fp);
    while (left > 0) {
        size_t n = utf8_seq(p, left);

        if (n == 0) {
            fprintf(fp, "\\u%04x", *p);
            n = 1;
        } else if (*p == '"' || *p == '\\') {
            fprintf(fp, "\\%c", *p);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(fp, "\\u%04x", *p);
        } else {
            fwrite(p, 1, n, fp);
        }
        p += n;
        left -= n;
    }
    putc('"', fp);
}

/* S for a terminal: UTF-8 passes, controls and other bytes are \xNN. */
static void text_str(FILE *fp, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);

    while (left > 0) {
        size_t n = utf8_seq(p, left);

        if (n == 0 || *p < 0x20 || *p == 0x7f || *p == '\\') {
            fprintf(fp, *p == '\\' ? "\\\\" : "\\x%02x", *p);
            n = 1;
        } else {
            fwrite(p, 1, n, fp);
        }
        p += n;
        left -= n;
    }
}

static const char *fmt_time(time_t t, char *buf, size_t len, int iso)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL ||
        strftime(buf, len, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "%lld", (long long)t);
    return buf;
}

/* ------------------------------------------------------------ REM facts */

static const char *tsa_chain_name(enum pec_rem_tsa_chain c)
{
    switch (c) {
    case PEC_REM_TSA_CHAIN_OK:
        return "ok";
    case PEC_REM_TSA_UNCHECKED:
        return "unchecked";
    case PEC_REM_TSA_CHAIN_FAILED:
        return "failed";
    case PEC_REM_TSA_NOT_CHECKED:
        break;
    }
    return NULL;
}

/* The event: the evidence's, or the end of REM-EventIdentifier without one. */
static const char *rem_event(const struct pec_rem_inspection *r)
{
    const char *slash;

    if (r->has_evidence && r->evidence.event != NULL)
        return r->evidence.event;
    if (r->event_header != NULL && (slash = strrchr(r->event_header, '/')) != NULL)
        return slash + 1;
    return r->event_header;
}

static const char *rem_reason_code(const struct pec_rem_inspection *r)
{
    return r->evidence.n_reasons > 0 ? r->evidence.reasons[0].code : NULL;
}

static const char *rem_equivalent(const struct pec_rem_inspection *r)
{
    int dispatch = r->message_type != NULL && strcmp(r->message_type, "dispatch") == 0;

    return pec_rem_pec_equivalent(dispatch, rem_event(r), rem_reason_code(r));
}

/* ------------------------------------------------------------ human output */

static void text_field(const char *name, const char *value)
{
    if (value == NULL)
        return;
    printf("    %s: ", name);
    text_str(stdout, value);
    putchar('\n');
}

static void text_daticert(const struct pec_daticert *d)
{
    text_field("tipo", pec_tipo_name(d->tipo));
    text_field("errore", pec_errore_name(d->errore));
    text_field("identificativo", d->identificativo);
    text_field("msgid", d->msgid);
    text_field("mittente", d->mittente);
    for (size_t i = 0; i < d->n_destinatari; i++) {
        printf("    destinatari: ");
        text_str(stdout, d->destinatari[i].address);
        printf(" (%s)\n", pec_dest_tipo_name(d->destinatari[i].tipo));
    }
    text_field("risposte", d->risposte);
    text_field("oggetto", d->oggetto);
    text_field("gestore-emittente", d->gestore_emittente);
    printf("    data: ");
    text_str(stdout, d->giorno);
    putchar(' ');
    text_str(stdout, d->ora);
    putchar(' ');
    text_str(stdout, d->zona);
    putchar('\n');
    text_field("ricevuta", pec_ricevuta_name(d->ricevuta));
    text_field("consegna", d->consegna);
    for (size_t i = 0; i < d->n_ricezione; i++)
        text_field("ricezione", d->ricezione[i]);
    text_field("errore-esteso", d->errore_esteso);
}

static void text_verdict(const char *file, int valid, const char *reason)
{
    text_str(stdout, file);
    if (valid) {
        printf(": valid\n");
    } else {
        printf(": invalid: ");
        text_str(stdout, reason);
        putchar('\n');
    }
}

static void text_report(const char *file, const struct pec_inspection *in)
{
    char t[64];

    text_verdict(file, in->valid, in->reason);
    text_field("kind", pec_kind_name(in->kind));
    text_field("X-Trasporto", in->x_trasporto);
    text_field("X-Ricevuta", in->x_ricevuta);
    text_field("Message-ID", in->message_id);
    text_field("Subject", in->subject);
    text_field("From", in->from);
    if (in->has_daticert)
        text_daticert(&in->daticert);
    text_field("signer", in->signer_subject);
    text_field("signer-issuer", in->signer_issuer);
    text_field("signer-sha1", in->signer_sha1[0] ? in->signer_sha1 : NULL);
    text_field("digest", in->digest[0] ? in->digest : NULL);
    if (in->has_signing_time)
        text_field("signing-time", fmt_time(in->signing_time, t, sizeof(t), 0));
    if (in->checked_at != 0)
        text_field("checked-at", fmt_time(in->checked_at, t, sizeof(t), 0));
    if (in->signer_subject != NULL && !in->index_checked)
        text_field("index", "signer not checked against an index");
    else if (in->index_checked)
        text_field("provider", in->provider ? in->provider->name : "not in the index");
    if (in->sig_status == PEC_VERIFY_REVOKED)
        text_field("revocation", "revoked");
    else if (in->crl_checked)
        text_field("revocation", in->crl_note[0]       ? in->crl_note
                                 : in->revoked_at != 0 ? "revoked after it signed"
                                                       : "not revoked");
    if (in->revoked_at != 0)
        text_field("revoked-at", fmt_time(in->revoked_at, t, sizeof(t), 0));
}

static void text_time(const char *name, int has, time_t t)
{
    char buf[64];

    if (has)
        text_field(name, fmt_time(t, buf, sizeof(buf), 0));
}

static void text_rem_seal(const struct pec_rem_seal *s)
{
    char *v;

    text_field("evidence-signer", s->signer_subject);
    text_field("evidence-signer-issuer", s->signer_issuer);
    text_field("evidence-signer-sha1", s->signer_sha1[0] ? s->signer_sha1 : NULL);
    text_time("evidence-signing-time", s->has_signing_time, s->signing_time);
    text_time("evidence-checked-at", s->checked_at != 0, s->checked_at);
    text_time("time-stamp", s->timestamp_ok, s->timestamp_time);
    text_field("tsa", s->tsa_subject);
    if (s->tsa_chain != PEC_REM_TSA_NOT_CHECKED) {
        v = s->tsa_note[0] ? xasprintf("%s: %s", tsa_chain_name(s->tsa_chain), s->tsa_note)
                           : xstrdup(tsa_chain_name(s->tsa_chain));
        text_field("tsa-chain", v);
        free(v);
    }
}

static void text_rem_report(const char *file, const struct pec_rem_inspection *r)
{
    const struct pec_rem_evidence *ev = &r->evidence;
    char *v;

    text_verdict(file, r->valid, r->reason);
    text_field("kind", r->kind);
    text_field("REM-MessageType", r->message_type);
    text_field("REM-MetadataVersion", r->metadata_version);
    text_field("event", rem_event(r));
    for (size_t i = 0; i < ev->n_reasons; i++) {
        v = xasprintf("%s (%s)", ev->reasons[i].code ? ev->reasons[i].code : "?",
                      ev->reasons[i].text ? ev->reasons[i].text : ev->reasons[i].uri);
        text_field("reason-code", v);
        free(v);
    }
    text_field("pec-equivalent", rem_equivalent(r));
    text_field("message-identifier", ev->message_id);
    text_field("evidence-identifier", ev->evidence_id);
    text_field("ua-message-identifier", r->ua_message_id ? r->ua_message_id : ev->app_layer_id);
    text_field("Message-ID", r->message_id);
    text_field("Subject", r->subject);
    text_field("From", r->from);
    text_field("sender", ev->sender.address);
    text_field("sender-identity", ev->sender.person_id);
    for (size_t i = 0; i < ev->n_recipients; i++)
        text_field("recipient", ev->recipients[i].address);
    for (size_t i = 0; i < ev->n_refers_to; i++)
        text_field("refers-to", ev->recipients[ev->refers_to[i] - 1].address);
    text_field("issuer", ev->issuer);
    text_field("external-provider", ev->external);
    text_field("forwarded-to", ev->forwarded_to);
    text_field("event-time", ev->event_time);
    text_field("submission-time", ev->submission_time);
    text_field("original-digest", ev->digest_value);
    text_field("signer", r->signer_subject);
    text_field("signer-issuer", r->signer_issuer);
    text_field("signer-sha1", r->signer_sha1[0] ? r->signer_sha1 : NULL);
    text_field("digest", r->digest[0] ? r->digest : NULL);
    text_time("signing-time", r->has_signing_time, r->signing_time);
    text_time("checked-at", r->checked_at != 0, r->checked_at);
    text_rem_seal(&r->seal);
}

/* ------------------------------------------------------------ JSON output */

static void json_key(const char *key, int *first)
{
    printf("%s\n    ", *first ? "" : ",");
    *first = 0;
    json_str(stdout, key);
    printf(": ");
}

static void json_field(const char *key, const char *value, int *first)
{
    json_key(key, first);
    json_str(stdout, value);
}

static void json_daticert(const struct pec_daticert *d, int *first)
{
    json_field("tipo", pec_tipo_name(d->tipo), first);
    json_field("errore", pec_errore_name(d->errore), first);
    json_field("identificativo", d->identificativo, first);
    json_field("msgid", d->msgid, first);
    json_field("mittente", d->mittente, first);
    json_key("destinatari", first);
    putchar('[');
    for (size_t i = 0; i < d->n_destinatari; i++) {
        printf("%s{\"address\": ", i ? ", " : "");
        json_str(stdout, d->destinatari[i].address);
        printf(", \"tipo\": ");
        json_str(stdout, pec_dest_tipo_name(d->destinatari[i].tipo));
        putchar('}');
    }
    putchar(']');
    json_field("risposte", d->risposte, first);
    json_field("oggetto", d->oggetto, first);
    json_field("gestore_emittente", d->gestore_emittente, first);
    json_key("data", first);
    printf("{\"giorno\": ");
    json_str(stdout, d->giorno);
    printf(", \"ora\": ");
    json_str(stdout, d->ora);
    printf(", \"zona\": ");
    json_str(stdout, d->zona);
    putchar('}');
    json_field("ricevuta", pec_ricevuta_name(d->ricevuta), first);
    json_field("consegna", d->consegna, first);
    json_key("ricezione", first);
    putchar('[');
    for (size_t i = 0; i < d->n_ricezione; i++) {
        printf("%s", i ? ", " : "");
        json_str(stdout, d->ricezione[i]);
    }
    putchar(']');
    json_field("errore_esteso", d->errore_esteso, first);
}

/*
 * What every report has, PEC or REM, under the same keys and in the same order: the
 * daticert keys (null without one), the envelope's headers and signer, the original's
 * place, and "rem" (null for PEC).
 */
struct report {
    const char *file;
    int valid;
    const char *reason;
    const char *kind;
    const struct pec_daticert *daticert; /* NULL: none */
    const char *x_trasporto;
    const char *x_ricevuta;
    const char *message_id;
    const char *subject;
    const char *from;
    const char *signer_subject;
    const char *signer_issuer;
    const char *signer_sha1;
    const char *digest;
    int has_signing_time;
    time_t signing_time;
    time_t checked_at;
    int index_checked;
    const char *provider;
    const char *revocation; /* "revoked", "good", "unknown"; NULL: not checked */
    int has_revoked_at;
    time_t revoked_at;
    int has_postacert;
    size_t postacert_off;
    size_t postacert_len;
    const char *postacert_encoding;
    const struct pec_rem_inspection *rem; /* NULL: not REM */
};

static void json_time(const char *key, int has, time_t t, int *first)
{
    char buf[64];

    json_field(key, has ? fmt_time(t, buf, sizeof(buf), 1) : NULL, first);
}

static void json_bool(const char *key, int v, int *first)
{
    json_key(key, first);
    printf(v ? "true" : "false");
}

/* "a", "b" as a JSON array of strings. */
static void json_strings(const char *key, char *const *v, size_t n, int *first)
{
    json_key(key, first);
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        printf("%s", i ? ", " : "");
        json_str(stdout, v[i]);
    }
    putchar(']');
}

/* The addresses of the recipients at the 1-based POSITIONS. */
static void json_positions(const char *key, const struct pec_rem_evidence *ev,
                           const size_t *positions, size_t n, int *first)
{
    json_key(key, first);
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        printf("%s", i ? ", " : "");
        json_str(stdout, ev->recipients[positions[i] - 1].address);
    }
    putchar(']');
}

static void json_rem_seal(const struct pec_rem_seal *s, int *first)
{
    int f = 1;

    json_key("evidence_signature", first);
    if (!s->checked) {
        printf("null");
    } else {
        putchar('{');
        json_bool("ok", s->ok, &f);
        json_field("signer_subject", s->signer_subject, &f);
        json_field("signer_issuer", s->signer_issuer, &f);
        json_field("signer_sha1", s->signer_sha1[0] ? s->signer_sha1 : NULL, &f);
        json_time("signing_time", s->has_signing_time, s->signing_time, &f);
        json_time("checked_at", s->checked_at != 0, s->checked_at, &f);
        printf("\n    }");
    }
    json_key("time_stamp", first);
    if (!s->has_timestamp) {
        printf("null");
        return;
    }
    f = 1;
    putchar('{');
    json_bool("ok", s->timestamp_ok, &f);
    json_time("time", s->timestamp_ok, s->timestamp_time, &f);
    json_field("tsa", s->tsa_subject, &f);
    json_field("tsa_chain", tsa_chain_name(s->tsa_chain), &f);
    json_field("tsa_note", s->tsa_note[0] ? s->tsa_note : NULL, &f);
    printf("\n    }");
}

static void json_rem(const struct pec_rem_inspection *r, int *first)
{
    const struct pec_rem_evidence *ev = &r->evidence;
    int f = 1;

    json_key("rem", first);
    putchar('{');
    json_field("message_type", r->message_type, &f);
    json_field("event", rem_event(r), &f);
    json_field("event_uri", ev->event_uri ? ev->event_uri : r->event_header, &f);
    json_field("reason_code", rem_reason_code(r), &f);
    json_key("reasons", &f);
    putchar('[');
    for (size_t i = 0; i < ev->n_reasons; i++) {
        printf("%s{\"uri\": ", i ? ", " : "");
        json_str(stdout, ev->reasons[i].uri);
        printf(", \"code\": ");
        json_str(stdout, ev->reasons[i].code);
        printf(", \"text\": ");
        json_str(stdout, ev->reasons[i].text);
        putchar('}');
    }
    putchar(']');
    json_strings("reason_headers", r->reason_headers, r->n_reason_headers, &f);
    json_field("pec_equivalent", rem_equivalent(r), &f);
    json_field("message_identifier", ev->message_id, &f);
    json_field("evidence_identifier", ev->evidence_id, &f);
    json_field("ua_message_identifier", r->ua_message_id ? r->ua_message_id : ev->app_layer_id, &f);
    json_key("sender", &f);
    printf("{\"address\": ");
    json_str(stdout, ev->sender.address);
    printf(", \"person_identifier\": ");
    json_str(stdout, ev->sender.person_id);
    printf(", \"assurance_level\": ");
    json_str(stdout, ev->assurance_level);
    printf(", \"authentication_time\": ");
    json_str(stdout, ev->authentication_time);
    putchar('}');
    json_field("md08", r->md08, &f);
    json_field("metadata_version", r->metadata_version, &f);
    json_key("recipients", &f);
    putchar('[');
    for (size_t i = 0; i < ev->n_recipients; i++) {
        printf("%s{\"address\": ", i ? ", " : "");
        json_str(stdout, ev->recipients[i].address);
        printf(", \"person_identifier\": ");
        json_str(stdout, ev->recipients[i].person_id);
        putchar('}');
    }
    putchar(']');
    json_positions("refers_to", ev, ev->refers_to, ev->n_refers_to, &f);
    json_positions("untrusted_path", ev, ev->untrusted, ev->n_untrusted, &f);
    json_field("issuer", ev->issuer, &f);
    json_field("external_provider", ev->external, &f);
    json_field("forwarded_to", ev->forwarded_to, &f);
    json_field("event_time", ev->event_time, &f);
    json_field("submission_time", ev->submission_time, &f);
    json_field("subject", ev->subject, &f);
    json_field("digest_algorithm", ev->digest_method, &f);
    json_field("digest_value", ev->digest_value, &f);
    json_field("original_digest", r->original_digest, &f);
    json_rem_seal(&r->seal, &f);
    printf("\n}");
}

static void json_report(const struct report *rp, int *first_object)
{
    static const char *const daticert_keys[] = {
        "tipo",      "errore",       "identificativo",    "msgid", "mittente", "destinatari",
        "risposte",  "oggetto",      "gestore_emittente", "data",  "ricevuta", "consegna",
        "ricezione", "errore_esteso"};
    int first = 1;

    printf("%s{", *first_object ? "" : ",\n");
    *first_object = 0;
    json_field("file", rp->file, &first);
    json_bool("valid", rp->valid, &first);
    json_field("reason", rp->valid ? NULL : rp->reason, &first);
    json_field("kind", rp->kind, &first);
    if (rp->daticert != NULL)
        json_daticert(rp->daticert, &first);
    else
        for (size_t i = 0; i < sizeof(daticert_keys) / sizeof(daticert_keys[0]); i++)
            json_field(daticert_keys[i], NULL, &first);
    json_field("x_trasporto", rp->x_trasporto, &first);
    json_field("x_ricevuta", rp->x_ricevuta, &first);
    json_field("message_id", rp->message_id, &first);
    json_field("subject", rp->subject, &first);
    json_field("from", rp->from, &first);
    json_field("signer_subject", rp->signer_subject, &first);
    json_field("signer_issuer", rp->signer_issuer, &first);
    json_field("signer_sha1", rp->signer_sha1 && rp->signer_sha1[0] ? rp->signer_sha1 : NULL,
               &first);
    json_field("digest", rp->digest && rp->digest[0] ? rp->digest : NULL, &first);
    json_time("signing_time", rp->has_signing_time, rp->signing_time, &first);
    json_time("checked_at", rp->checked_at != 0, rp->checked_at, &first);
    json_bool("index_checked", rp->index_checked, &first);
    json_field("provider", rp->provider, &first);
    json_field("revocation", rp->revocation, &first);
    json_time("revoked_at", rp->has_revoked_at, rp->revoked_at, &first);
    json_key("postacert", &first);
    if (rp->has_postacert) {
        printf("{\"offset\": %zu, \"length\": %zu, \"encoding\": ", rp->postacert_off,
               rp->postacert_len);
        json_str(stdout, rp->postacert_encoding);
        putchar('}');
    } else {
        printf("null");
    }
    if (rp->rem != NULL) {
        json_rem(rp->rem, &first);
    } else {
        json_key("rem", &first);
        printf("null");
    }
    printf("\n}");
}

static void pec_report(const char *file, const struct pec_inspection *in, struct report *rp)
{
    *rp = (struct report){.file = file,
                          .valid = in->valid,
                          .reason = in->reason,
                          .kind = pec_kind_name(in->kind),
                          .daticert = in->has_daticert ? &in->daticert : NULL,
                          .x_trasporto = in->x_trasporto,
                          .x_ricevuta = in->x_ricevuta,
                          .message_id = in->message_id,
                          .subject = in->subject,
                          .from = in->from,
                          .signer_subject = in->signer_subject,
                          .signer_issuer = in->signer_issuer,
                          .signer_sha1 = in->signer_sha1,
                          .digest = in->digest,
                          .has_signing_time = in->has_signing_time,
                          .signing_time = in->signing_time,
                          .checked_at = in->checked_at,
                          .index_checked = in->index_checked,
                          .provider = in->provider ? in->provider->name : NULL,
                          .revocation = in->sig_status == PEC_VERIFY_REVOKED ? "revoked"
                                        : !in->crl_checked                   ? NULL
                                        : in->crl_note[0]                    ? "unknown"
                                                                             : "good",
                          .has_revoked_at = in->revoked_at != 0,
                          .revoked_at = in->revoked_at,
                          .has_postacert = in->has_postacert,
                          .postacert_off = in->postacert_off,
                          .postacert_len = in->postacert_len,
                          .postacert_encoding = in->postacert_encoding};
}

static void rem_report(const char *file, const struct pec_rem_inspection *r, struct report *rp)
{
    *rp = (struct report){.file = file,
                          .valid = r->valid,
                          .reason = r->reason,
                          .kind = r->kind,
                          .message_id = r->message_id,
                          .subject = r->subject,
                          .from = r->from,
                          .signer_subject = r->signer_subject,
                          .signer_issuer = r->signer_issuer,
                          .signer_sha1 = r->signer_sha1,
                          .digest = r->digest,
                          .has_signing_time = r->has_signing_time,
                          .signing_time = r->signing_time,
                          .checked_at = r->checked_at,
                          .has_postacert = r->has_original,
                          .postacert_off = r->original_off,
                          .postacert_len = r->original_len,
                          .postacert_encoding = r->original_encoding,
                          .rem = r};
}

/* ------------------------------------------------------------ main */

/* A REM message (or, with --evidence, a standalone evidence document). */
static enum status check_rem(const char *file, const unsigned char *msg, size_t len,
                             const struct options *o, int *first_object)
{
    struct pec_rem_inspection r;
    struct report rp;
    enum status st;

    if (o->evidence)
        st = pec_rem_inspect_evidence(msg, len, &o->inspect, &r) == 0 ? ST_VALID : ST_INVALID;
    else
        st = pec_rem_inspect(msg, len, &o->inspect, &r) == 0 ? ST_VALID : ST_INVALID;
    if (o->json) {
        rem_report(file, &r, &rp);
        json_report(&rp, first_object);
    } else {
        text_rem_report(file, &r);
    }
    pec_rem_inspection_free(&r);
    return st;
}

static enum status check_file(const char *file, const struct options *o, int *first_object)
{
    struct pec_inspection in;
    struct report rp;
    unsigned char *msg;
    size_t len;
    enum status st;

    if (read_input(file, &msg, &len) != 0) {
        fprintf(stderr, "%s: cannot read %s: %s\n", progname, file, strerror(errno));
        return ST_ERROR;
    }
    if (o->evidence || pec_rem_announced(msg, len)) {
        st = check_rem(file, msg, len, o, first_object);
        free(msg);
        return st;
    }
    st = pec_inspect(msg, len, &o->inspect, &in) == 0 ? ST_VALID : ST_INVALID;
    if (o->json) {
        pec_report(file, &in, &rp);
        json_report(&rp, first_object);
    } else {
        text_report(file, &in);
    }
    pec_inspection_free(&in);
    free(msg);
    return st;
}

/* --at now|signing-time|EPOCH.  0, or -1 when ARG is none of them. */
static int parse_at(const char *arg, struct pec_inspect_opts *o)
{
    char *end;
    long long v;

    if (strcmp(arg, "now") == 0) {
        o->at_mode = PEC_AT_NOW;
        return 0;
    }
    if (strcmp(arg, "signing-time") == 0) {
        o->at_mode = PEC_AT_SIGNING_TIME;
        return 0;
    }
    errno = 0;
    v = strtoll(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v < 0)
        return -1;
    o->at_mode = PEC_AT_GIVEN;
    o->at = (time_t)v;
    return 0;
}

/* 0, or -1 after saying why (and the usage) on stderr. */
static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {{"trust", required_argument, NULL, 't'},
                                             {"index", required_argument, NULL, 'i'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"index-signer", required_argument, NULL, 's'},
                                             {"crl", required_argument, NULL, 'r'},
                                             {"at", required_argument, NULL, 'a'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"evidence", no_argument, NULL, 'e'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int c;

    o->trust_path = DEFAULT_TRUST;
    o->inspect.at_mode = PEC_AT_NOW;
    while ((c = getopt_long(argc, argv, "c:t:i:a:jehV", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            o->trust_path = optarg;
            break;
        case 'c':
            o->config = optarg;
            break;
        case 'i':
            o->index_path = optarg;
            break;
        case 's':
            o->index_signer = optarg;
            break;
        case 'r':
            o->crl_path = optarg;
            break;
        case 'a':
            if (parse_at(optarg, &o->inspect) != 0) {
                fprintf(stderr, "%s: --at %s: expected now, signing-time or seconds since 1970\n",
                        progname, optarg);
                return -1;
            }
            break;
        case 'j':
            o->json = 1;
            break;
        case 'e':
            o->evidence = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("pecverify %s\n", PECMILTER_VERSION);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind == argc) {
        fprintf(stderr, "%s: no FILE given\n", progname);
        usage(stderr);
        return -1;
    }
    if ((o->config != NULL && (o->index_path != NULL || o->crl_path != NULL)) ||
        (o->index_signer != NULL && o->index_path == NULL) ||
        (o->crl_path != NULL && o->index_path == NULL && o->config == NULL)) {
        fprintf(stderr,
                "%s: -c takes the index and CRLs from the configuration; --index-signer "
                "and --crl go with --index\n",
                progname);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* What the checks rest on: trust anchors, and the index with its CRLs. */
struct loaded {
    struct pec_config *cfg;
    struct pec_trust *trust;
    struct pec_directory *dir;
    struct pec_index *index;
};

static void loaded_free(struct loaded *l)
{
    pec_index_free(l->index);
    pec_directory_close(l->dir);
    pec_trust_free(l->trust);
    pec_config_unref(l->cfg);
}

/* The daemon's configuration: its anchors, and its index read as the daemon reads it. */
static int load_config(const struct options *o, struct loaded *l)
{
    struct pec_dir_report rep;
    char err[1024];

    if ((l->cfg = pec_config_load(o->config, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s: %s\n", progname, err);
        return -1;
    }
    if ((l->trust = pec_trust_load(l->cfg->trust_anchors, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s: trust_anchors: %s\n", progname, err);
        return -1;
    }
    l->dir = pec_directory_open(l->cfg, l->trust, NULL, err, sizeof(err));
    if (l->dir == NULL || pec_directory_load(l->dir, 1, &rep, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", progname, err);
        return -1;
    }
    for (int i = 0; i < rep.nwarnings; i++)
        fprintf(stderr, "%s: warning: %s\n", progname, rep.warning[i]);
    l->index = pec_directory_index(l->dir);
    return 0;
}

/* --crl FILE: its CRLs, their issuers among its certificates or the anchors. */
static struct pec_crls *load_crls(const char *path, const struct pec_trust *trust)
{
    struct pec_crls *crls = pec_crls_new();
    unsigned char **der = NULL, *bytes;
    size_t *len = NULL, n = 0, blen;
    char err[768], warn[512];
    FILE *fp = fopen(path, "rb");
    int rc = -1;

    if (fp == NULL || read_all(fp, &bytes, &blen) != 0) {
        fprintf(stderr, "%s: --crl: %s: %s\n", progname, path, strerror(errno));
    } else {
        pec_pem_certs(path, &der, &len, &n, err, sizeof(err));
        rc = pec_crls_add(crls, bytes, blen, path, trust, (const unsigned char *const *)der, len, n,
                          time(NULL), warn, sizeof(warn), err, sizeof(err));
        if (rc < 0)
            fprintf(stderr, "%s: --crl: %s\n", progname, err);
        else if (warn[0] != '\0')
            fprintf(stderr, "%s: warning: %s\n", progname, warn);
        free(bytes);
    }
    if (fp != NULL)
        fclose(fp);
    for (size_t i = 0; i < n; i++)
        free(der[i]);
    free(der);
    free(len);
    if (rc < 0) {
        pec_crls_free(crls);
        return NULL;
    }
    return crls;
}

/* --index [--index-signer] [--crl]. */
static int load_index(const struct options *o, struct loaded *l)
{
    struct pec_trust *pinned = NULL;
    char err[1024];

    if (o->index_signer != NULL) {
        if ((pinned = pec_trust_load_pinned(o->index_signer, err, sizeof(err))) == NULL) {
            fprintf(stderr, "%s: --index-signer: %s\n", progname, err);
            return -1;
        }
        l->index =
            pec_index_load_signed(o->index_path, pinned, PEC_INDEX_BY_AUTHORITY, err, sizeof(err));
        pec_trust_free(pinned);
    } else if ((l->index = pec_index_load(o->index_path, err, sizeof(err))) != NULL) {
        fprintf(stderr, "%s: note: --index %s is taken as it is, unverified\n", progname,
                o->index_path);
    }
    if (l->index == NULL) {
        fprintf(stderr, "%s: --index: %s\n", progname, err);
        return -1;
    }
    if (o->crl_path != NULL) {
        struct pec_crls *crls = load_crls(o->crl_path, l->trust);

        if (crls == NULL)
            return -1;
        pec_index_set_crls(l->index, crls);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    struct loaded l = {0};
    char err[512];
    enum status worst = ST_VALID;
    int first_object = 1;

    if (parse_args(argc, argv, &o) != 0)
        return ST_ERROR;
    if (pec_lib_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", progname, err);
        return ST_ERROR;
    }
    if (o.config != NULL) {
        if (load_config(&o, &l) < 0) {
            loaded_free(&l);
            return ST_ERROR;
        }
    } else if ((l.trust = pec_trust_load(o.trust_path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s: --trust: %s\n", progname, err);
        return ST_ERROR;
    } else if (o.index_path != NULL && load_index(&o, &l) < 0) {
        loaded_free(&l);
        return ST_ERROR;
    }
    o.inspect.trust = l.trust;
    o.inspect.index = l.index;
    if (o.json)
        putchar('[');
    for (int i = optind; i < argc; i++) {
        enum status st = check_file(argv[i], &o, &first_object);

        if (st > worst)
            worst = st;
    }
    if (o.json)
        printf("]\n");
    loaded_free(&l);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: cannot write the report: %s\n", progname, strerror(errno));
        return ST_ERROR;
    }
    return worst;
}
