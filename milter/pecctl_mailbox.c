/*
 * pecctl mailbox add|del|check ADDRESS... | list - the PEC mailboxes: a
 * mailbox exists because an administrator made it, never at its first
 * delivery (lib/provider/mailbox.h).
 *
 * add and del work on the built-in Maildir backend (maildir_root): del moves
 * the mailbox aside whole, messages and all, into maildir_root/.removed/,
 * and says where.  With mailbox_backend = "lmtp" the mailbox server keeps
 * the users (Dovecot's userdb): check asks it, as the reception point does,
 * and add, del and list say to manage them there.  Exit 0 done, 1 some
 * ADDRESS is not a mailbox here (check, del) or not one of our domains,
 * 64 usage, 74 the Maildir could not be read or written, 78 not for this
 * backend.
 */
#include "provider/mailbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pecctl.h"
#include "util/xalloc.h"

static int ours(const struct ctl *c, const char *address)
{
    const char *at = strrchr(address, '@');

    if (at != NULL && pec_config_is_our_domain(c->cfg, at + 1))
        return 1;
    fprintf(stderr, "pecctl: %s: not an address of our domains\n", address);
    return 0;
}

static int print_box(const char *name, long long fresh, long long seen, void *arg)
{
    (void)arg;
    printf("%-40s  new %lld  cur %lld\n", name, fresh, seen);
    return 0;
}

static int check(struct ctl *c, int n, char **address)
{
    struct pec_mbox_conf mc = {.backend = c->cfg->mailbox_backend,
                               .maildir_root = c->cfg->maildir_root,
                               .lmtp = c->cfg->mailbox_lmtp,
                               .hostname = "pecctl",
                               .timeout = 30};
    struct pec_mbox_result *res = xcalloc((size_t)n, sizeof(*res));
    int rc = 0;

    pec_mbox_probe(&mc, (const char *const *)address, (size_t)n, res);
    for (int i = 0; i < n; i++) {
        if (res[i].status == PEC_MBOX_STORED) {
            printf("%s: exists\n", address[i]);
            continue;
        }
        printf("%s: %s (%d %s %s)\n", address[i],
               res[i].status == PEC_MBOX_PERM ? "no mailbox" : "cannot tell now", res[i].code,
               res[i].esc, res[i].text);
        if (rc == 0)
            rc = res[i].status == PEC_MBOX_PERM ? 1 : EX_IOERR;
    }
    free(res);
    return rc;
}

int pecctl_mailbox(struct ctl *c, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    const char *root = c->cfg->maildir_root;
    char err[1024], moved[4096];
    int rc = 0, maildir = strcmp(c->cfg->mailbox_backend, "maildir") == 0;

    if (strcmp(sub, "check") == 0 && argc > 2) {
        for (int i = 2; i < argc; i++)
            if (!ours(c, argv[i]))
                return 1;
        return check(c, argc - 2, argv + 2);
    }
    if (!((strcmp(sub, "list") == 0 && argc == 2) ||
          ((strcmp(sub, "add") == 0 || strcmp(sub, "del") == 0) && argc > 2))) {
        usage(stderr);
        return EX_USAGE;
    }
    if (!maildir) {
        fprintf(stderr,
                "pecctl: mailbox_backend is \"%s\": the mailbox server (%s) keeps the users; "
                "make and remove them there (pecctl mailbox check asks it)\n",
                c->cfg->mailbox_backend, c->cfg->mailbox_lmtp);
        return PEC_EX_CONFIG;
    }
    if (strcmp(sub, "list") == 0) {
        if (pec_maildir_list(root, print_box, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "pecctl: %s\n", err);
            return EX_IOERR;
        }
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        int r;

        if (!ours(c, argv[i])) {
            rc = rc ? rc : 1;
            continue;
        }
        if (strcmp(sub, "add") == 0)
            r = pec_maildir_add(root, argv[i], err, sizeof(err));
        else
            r = pec_maildir_del(root, argv[i], moved, sizeof(moved), err, sizeof(err));
        if (r < 0) {
            fprintf(stderr, "pecctl: %s\n", err);
            rc = EX_IOERR;
        } else if (strcmp(sub, "add") == 0) {
            printf("%s: %s\n", argv[i], r == 0 ? "added" : "exists already");
        } else if (r == 0) {
            printf("%s: removed, its messages kept in %s\n", argv[i], moved);
        } else {
            printf("%s: no such mailbox\n", argv[i]);
            rc = rc ? rc : 1;
        }
    }
    return rc;
}
