/*
 * pecverify - check PEC messages from the command line.
 *
 * An operator with a message in hand (a Maildir file, an attachment a user forwarded, a
 * message held in the queue) wants to know what it is and whether it would pass our
 * Incoming Point: the same pec_inspect() the daemon runs, with the verdict first and the
 * certified data after it.  Output is for people by default and JSON with --json, for
 * scripts.  Exit status: 0 when every message is valid, 1 when one is not, 2 on a usage
 * or I/O error; see pecverify.1.
 *
 * Everything printed that comes from a message is escaped: a forged Subject must not be
 * able to move the terminal's cursor or break the JSON.
 */
#include "message/daticert.h"
#include "message/index.h"
#include "message/libinit.h"
#include "message/smime.h"
#include "message/verify.h"
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
    const char *index_path;
    struct pec_inspect_opts inspect;
    int json;
};

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: %s [--trust FILE|DIR] [--index LDIF] [--at now|signing-time|EPOCH] [--json] "
            "FILE...\n"
            "  FILE '-' reads standard input\n"
            "  --trust   trust anchors, a PEM bundle or a directory (default %s)\n"
            "  --index   providers' index as LDIF; without it the signer is not checked\n"
            "  --at      instant of the certificate check (default now)\n"
            "  --json    one JSON array instead of text\n",
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

static void text_report(const char *file, const struct pec_inspection *in)
{
    char t[64];

    text_str(stdout, file);
    if (in->valid)
        printf(": valid\n");
    else {
        printf(": invalid: ");
        text_str(stdout, in->reason);
        putchar('\n');
    }
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

static void json_report(const char *file, const struct pec_inspection *in, int *first_object)
{
    static const char *const daticert_keys[] = {
        "tipo",      "errore",       "identificativo",    "msgid", "mittente", "destinatari",
        "risposte",  "oggetto",      "gestore_emittente", "data",  "ricevuta", "consegna",
        "ricezione", "errore_esteso"};
    int first = 1;
    char t[64];

    printf("%s{", *first_object ? "" : ",\n");
    *first_object = 0;
    json_field("file", file, &first);
    json_key("valid", &first);
    printf(in->valid ? "true" : "false");
    json_field("reason", in->valid ? NULL : in->reason, &first);
    json_field("kind", pec_kind_name(in->kind), &first);
    if (in->has_daticert)
        json_daticert(&in->daticert, &first);
    else
        for (size_t i = 0; i < sizeof(daticert_keys) / sizeof(daticert_keys[0]); i++)
            json_field(daticert_keys[i], NULL, &first);
    json_field("x_trasporto", in->x_trasporto, &first);
    json_field("x_ricevuta", in->x_ricevuta, &first);
    json_field("message_id", in->message_id, &first);
    json_field("subject", in->subject, &first);
    json_field("from", in->from, &first);
    json_field("signer_subject", in->signer_subject, &first);
    json_field("signer_issuer", in->signer_issuer, &first);
    json_field("signer_sha1", in->signer_sha1[0] ? in->signer_sha1 : NULL, &first);
    json_field("digest", in->digest[0] ? in->digest : NULL, &first);
    json_field("signing_time",
               in->has_signing_time ? fmt_time(in->signing_time, t, sizeof(t), 1) : NULL, &first);
    json_field("checked_at", in->checked_at ? fmt_time(in->checked_at, t, sizeof(t), 1) : NULL,
               &first);
    json_key("index_checked", &first);
    printf(in->index_checked ? "true" : "false");
    json_field("provider", in->provider ? in->provider->name : NULL, &first);
    json_key("postacert", &first);
    if (in->has_postacert) {
        printf("{\"offset\": %zu, \"length\": %zu, \"encoding\": ", in->postacert_off,
               in->postacert_len);
        json_str(stdout, in->postacert_encoding);
        putchar('}');
    } else {
        printf("null");
    }
    printf("\n}");
}

/* ------------------------------------------------------------ main */

static enum status check_file(const char *file, const struct options *o, int *first_object)
{
    struct pec_inspection in;
    unsigned char *msg;
    size_t len;
    enum status st;

    if (read_input(file, &msg, &len) != 0) {
        fprintf(stderr, "%s: cannot read %s: %s\n", progname, file, strerror(errno));
        return ST_ERROR;
    }
    st = pec_inspect(msg, len, &o->inspect, &in) == 0 ? ST_VALID : ST_INVALID;
    if (o->json)
        json_report(file, &in, first_object);
    else
        text_report(file, &in);
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
                                             {"at", required_argument, NULL, 'a'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int c;

    o->trust_path = DEFAULT_TRUST;
    o->inspect.at_mode = PEC_AT_NOW;
    while ((c = getopt_long(argc, argv, "t:i:a:jhV", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            o->trust_path = optarg;
            break;
        case 'i':
            o->index_path = optarg;
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
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    struct pec_trust *trust;
    struct pec_index *index = NULL;
    char err[512];
    enum status worst = ST_VALID;
    int first_object = 1;

    if (parse_args(argc, argv, &o) != 0)
        return ST_ERROR;
    if (pec_lib_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", progname, err);
        return ST_ERROR;
    }
    if ((trust = pec_trust_load(o.trust_path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s: --trust: %s\n", progname, err);
        return ST_ERROR;
    }
    if (o.index_path != NULL && (index = pec_index_load(o.index_path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s: --index: %s\n", progname, err);
        pec_trust_free(trust);
        return ST_ERROR;
    }
    o.inspect.trust = trust;
    o.inspect.index = index;
    if (o.json)
        putchar('[');
    for (int i = optind; i < argc; i++) {
        enum status st = check_file(argv[i], &o, &first_object);

        if (st > worst)
            worst = st;
    }
    if (o.json)
        printf("]\n");
    pec_index_free(index);
    pec_trust_free(trust);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: cannot write the report: %s\n", progname, strerror(errno));
        return ST_ERROR;
    }
    return worst;
}
