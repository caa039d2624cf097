/*
 * pecctl quarantine list [--json] | show ID | export ID - what the virus
 * store (quarantine_dir, lib/store/quarantine.h) keeps: one line per
 * infected message, the facts of one, or its bytes exactly as they were
 * received, on standard output, checked against their SHA-256 on the way.
 * ID is the SHA-256, or its first 8 or more hex digits.  Exit 0 done, 1 no
 * such message, 64 usage, 74 the directory or a file could not be read.
 */
#include "store/quarantine.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pecctl.h"

struct listing {
    int json, n;
};

static int print_entry(const struct pec_qentry *e, void *arg)
{
    struct listing *l = arg;
    char when[40];

    if (l->json) {
        printf("%s\n  {\"id\":\"%s\",\"first\":%lld,\"last\":%lld,\"detections\":%lld,"
               "\"size\":%lld,\"point\":",
               l->n ? "," : "", e->sha256, (long long)e->first_at, (long long)e->last_at,
               e->detections, e->size);
        json_string(e->point);
        printf(",\"identificativo\":");
        json_string(e->identificativo);
        printf(",\"queue_id\":");
        json_string(e->queue_id);
        printf(",\"mittente\":");
        json_string(e->mittente);
        printf(",\"finding\":");
        json_string(e->finding);
        putchar('}');
    } else {
        printf("%s  %s  %lld bytes  %s  %s  %s\n", e->sha256,
               local_time(e->first_at, when, sizeof(when)), e->size, e->point,
               *e->identificativo ? e->identificativo
               : *e->queue_id     ? e->queue_id
                                  : "-",
               e->finding);
    }
    l->n++;
    return 0;
}

static int list(struct ctl *c, int argc, char **argv)
{
    struct ctl_opts co;
    struct listing l = {0};
    char err[1024];

    if (ctl_options("quarantine list", argc, argv, "j", &co) != 0)
        return EX_USAGE;
    l.json = co.json;
    if (l.json) {
        printf("{\"dir\":");
        json_string(c->cfg->quarantine_dir);
        printf(",\"messages\":[");
    }
    if (pec_quarantine_each(c->cfg->quarantine_dir, print_entry, &l, err, sizeof(err)) < 0) {
        if (l.json)
            printf("]}\n");
        fprintf(stderr, "pecctl: quarantine: %s\n", err);
        return EX_IOERR;
    }
    if (l.json)
        printf("]}\n");
    else
        printf("quarantine: %d message(s) in %s\n", l.n, c->cfg->quarantine_dir);
    return 0;
}

/* The entry ID names into E: 0, or an exit status once stderr said why. */
static int find(struct ctl *c, const char *id, struct pec_qentry *e)
{
    char err[1024];
    size_t n = strlen(id);
    int rc;

    if (n < 8 || n > 64 || strspn(id, "0123456789abcdef") != n) {
        fprintf(stderr,
                "pecctl: quarantine: \"%s\" is no ID (8 to 64 lowercase hex digits "
                "of the SHA-256 that quarantine list shows)\n",
                id);
        return EX_USAGE;
    }
    rc = pec_quarantine_find(c->cfg->quarantine_dir, id, e, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "pecctl: quarantine: %s\n", err);
        return EX_IOERR;
    }
    if (rc == 0) {
        fprintf(stderr, "pecctl: quarantine: no message %s in %s\n", id, c->cfg->quarantine_dir);
        return 1;
    }
    return 0;
}

static int show(struct ctl *c, const char *id)
{
    struct pec_qentry e;
    char first[40], last[40];
    int rc = find(c, id, &e);

    if (rc != 0)
        return rc;
    printf("id: %s\nfile: %s/%s.eml\nsize: %lld\nfirst detected: %s\nlast detected: %s\n"
           "detections: %lld\npoint: %s\nidentificativo: %s\nqueue id: %s\nmittente: %s\n"
           "finding: %s\n",
           e.sha256, c->cfg->quarantine_dir, e.sha256, e.size,
           local_time(e.first_at, first, sizeof(first)), local_time(e.last_at, last, sizeof(last)),
           e.detections, e.point, e.identificativo, e.queue_id, e.mittente, e.finding);
    return 0;
}

static int export(struct ctl *c, const char *id)
{
    struct pec_qentry e;
    char err[1024];
    int rc = find(c, id, &e);

    if (rc != 0)
        return rc;
    fflush(stdout);
    if (pec_quarantine_export(c->cfg->quarantine_dir, &e, STDOUT_FILENO, err, sizeof(err)) < 0) {
        fprintf(stderr, "pecctl: quarantine export: %s\n", err);
        return EX_IOERR;
    }
    return 0;
}

int pecctl_quarantine(struct ctl *c, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";

    if (strcmp(sub, "list") == 0)
        return list(c, argc - 1, argv + 1);
    if (strcmp(sub, "show") == 0 && argc == 3)
        return show(c, argv[2]);
    if (strcmp(sub, "export") == 0 && argc == 3)
        return export(c, argv[2]);
    usage(stderr);
    return EX_USAGE;
}
