/*
 * pecctl audit [--since T] [--json] - check the legal log against the PEC
 * invariants (lib/provider/audit.h): one line "IDENTIFICATIVO: what is wrong" per
 * violation, "IDENTIFICATIVO: note: what" per note (allowed, e.g. a late
 * consegna), then the counts.  Exit 0 clean (notes or not), 1 violations,
 * 64 usage, 74 the store could not be read.  A transaction still inside
 * deadline_after is counted as pending, never as a violation.
 */
#include "provider/audit.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pecctl.h"

static void print_line(const char *identificativo, enum pec_audit_level level, const char *problem,
                       void *arg)
{
    (void)arg;
    printf("%s: %s%s\n", identificativo, level == PEC_AUDIT_NOTE ? "note: " : "", problem);
}

static void print_json(const char *identificativo, enum pec_audit_level level, const char *problem,
                       void *arg)
{
    int *first = arg;

    printf("%s\n  {\"identificativo\":", *first ? "" : ",");
    json_string(identificativo);
    printf(",\"level\":\"%s\",\"problem\":", level == PEC_AUDIT_NOTE ? "note" : "violation");
    json_string(problem);
    putchar('}');
    *first = 0;
}

int pecctl_audit(struct ctl *c, int argc, char **argv)
{
    struct pec_audit_opts o = {.now = time(NULL), .deadline_after = c->cfg->deadline_after};
    struct pec_audit_report rep;
    struct ctl_opts co;
    char err[1024];
    int json, first = 1;
    long long rc;

    if (ctl_options("audit", argc, argv, "Sj", &co) != 0)
        return EX_USAGE;
    o.since = co.since;
    json = co.json;
    if (json)
        printf("{\"problems\":[");
    rc = pec_audit_run(c->st, &o, json ? print_json : print_line, &first, &rep, err, sizeof(err));
    if (rc < 0) {
        if (json)
            printf("]}\n");
        fprintf(stderr, "pecctl: audit: %s\n", err);
        return EX_IOERR;
    }
    if (json)
        printf("%s],\n \"records\":%lld,\"transactions\":%lld,\"pending\":%lld,"
               "\"violations\":%lld,\"notes\":%lld}\n",
               first ? "" : "\n", rep.records, rep.transactions, rep.pending, rep.violations,
               rep.notes);
    else
        printf("audit: %lld records, %lld transactions checked, %lld pending, %lld violations, "
               "%lld notes\n",
               rep.records, rep.transactions, rep.pending, rep.violations, rep.notes);
    return rep.violations > 0 ? 1 : 0;
}
