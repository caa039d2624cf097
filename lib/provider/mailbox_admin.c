/*
 * mailbox_admin - which mailboxes exist, and making and removing them in the
 * built-in Maildir backend (see mailbox.h).
 *
 * A PEC mailbox exists because the provider made it: the delivery point
 * never creates one, and the reception point asks here before it takes
 * ordinary mail for a recipient.  For the LMTP backend the mailbox server
 * (Dovecot's userdb) decides, asked with RCPT TO in a session that sends no
 * message.
 */
#include "provider/mailbox.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/xalloc.h"
#include "util/err.h"

#define REMOVED_DIR ".removed" /* a dot name: never taken for a mailbox */

static int sync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* ROOT/NAME of ADDRESS into *BOX (xmalloc'ed), ROOT being a directory: 0, or -1 with err. */
static int box_path(const char *root, const char *address, char **box, struct stat *rootst,
                    char *err, size_t errlen)
{
    char *name = pec_maildir_box_name(address);

    if (name == NULL) {
        pec_seterr(err, errlen, "%s: no mailbox can have this name", address);
        return -1;
    }
    if (stat(root, rootst) != 0 || !S_ISDIR(rootst->st_mode)) {
        pec_seterr(err, errlen, "maildir_root %s: %s", root,
                   errno ? strerror(errno) : "not a directory");
        free(name);
        return -1;
    }
    *box = xasprintf("%s/%s", root, name);
    free(name);
    return 0;
}

int pec_maildir_add(const char *root, const char *address, char *err, size_t errlen)
{
    static const char *const sub[] = {"", "/tmp", "/new", "/cur"};
    struct stat rootst, st;
    char *box;
    int rc = 0;

    if (box_path(root, address, &box, &rootst, err, errlen) != 0)
        return -1;
    if (stat(box, &st) == 0) {
        free(box);
        return 1;
    }
    /* owned as maildir_root is: the user the delivery point runs as */
    for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]) && rc == 0; i++) {
        char *d = xasprintf("%s%s", box, sub[i]);

        if ((mkdir(d, 0700) != 0 && errno != EEXIST) ||
            (geteuid() == 0 && chown(d, rootst.st_uid, rootst.st_gid) != 0)) {
            pec_seterr(err, errlen, "%s: %s", d, strerror(errno));
            rc = -1;
        }
        free(d);
    }
    if (rc == 0 && (sync_path(box) != 0 || sync_path(root) != 0)) {
        pec_seterr(err, errlen, "%s: sync: %s", box, strerror(errno));
        rc = -1;
    }
    free(box);
    return rc;
}

int pec_maildir_del(const char *root, const char *address, char *moved, size_t movedlen, char *err,
                    size_t errlen)
{
    struct stat rootst, st;
    char *box, *aside = NULL, *dest = NULL, stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    int rc = -1;

    if (box_path(root, address, &box, &rootst, err, errlen) != 0)
        return -1;
    if (lstat(box, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(box);
        return 1;
    }
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    aside = xasprintf("%s/" REMOVED_DIR, root);
    dest = xasprintf("%s/%s.%s", aside, strrchr(box, '/') + 1, stamp);
    if (mkdir(aside, 0700) != 0 && errno != EEXIST)
        pec_seterr(err, errlen, "%s: %s", aside, strerror(errno));
    else if (lstat(dest, &st) == 0)
        pec_seterr(err, errlen, "%s exists already: try again in a second", dest);
    else if (rename(box, dest) != 0)
        pec_seterr(err, errlen, "cannot move %s to %s: %s", box, dest, strerror(errno));
    else if (sync_path(root) != 0 || sync_path(aside) != 0)
        pec_seterr(err, errlen, "%s: sync: %s", root, strerror(errno));
    else
        rc = 0;
    if (rc == 0)
        snprintf(moved, movedlen, "%s", dest);
    free(dest);
    free(aside);
    free(box);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files in DIR/SUB, or -1 when it cannot be read. */
static long long count(int dirfd, const char *sub)
{
    int fd = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct dirent *e;
    long long n = 0;
    DIR *d;

    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int pec_maildir_list(const char *root,
                     int (*fn)(const char *name, long long fresh, long long seen, void *arg),
                     void *arg, char *err, size_t errlen)
{
    DIR *d = opendir(root);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;
    int rc = 0;

    if (d == NULL) {
        pec_seterr(err, errlen, "maildir_root %s: %s", root, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        int fd;

        if (e->d_name[0] == '.')
            continue;
        fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue; /* a file beside the mailboxes */
        close(fd);
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrdup(e->d_name);
    }
    qsort(names, n, sizeof(*names), by_name);
    for (size_t i = 0; i < n; i++) {
        int fd = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (rc == 0 && fd >= 0)
            rc = fn(names[i], count(fd, "new"), count(fd, "cur"), arg);
        if (fd >= 0)
            close(fd);
        free(names[i]);
    }
    free(names);
    closedir(d);
    return rc;
}

void pec_mbox_probe(const struct pec_mbox_conf *mc, const char *const *rcpt, size_t n,
                    struct pec_mbox_result *res)
{
    if (strcmp(mc->backend, "lmtp") == 0) {
        pec_mbox_lmtp_deliver(mc, "", rcpt, n, NULL, 0, res);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char *name = pec_maildir_box_name(rcpt[i]), *box;
        struct stat st;

        if (name == NULL) {
            pec_mbox_result_set(&res[i], PEC_MBOX_PERM, 550, "5.1.3",
                                "no mailbox can have this name");
            continue;
        }
        box = xasprintf("%s/%s", mc->maildir_root, name);
        if (stat(mc->maildir_root, &st) != 0 || !S_ISDIR(st.st_mode))
            pec_mbox_result_set(&res[i], PEC_MBOX_TEMP, 451, "4.3.0",
                                "maildir_root %s is not available", mc->maildir_root);
        else if (stat(box, &st) == 0)
            pec_mbox_result_set(
                &res[i], S_ISDIR(st.st_mode) ? PEC_MBOX_STORED : PEC_MBOX_TEMP,
                S_ISDIR(st.st_mode) ? 250 : 451, S_ISDIR(st.st_mode) ? "2.1.5" : "4.3.0",
                S_ISDIR(st.st_mode) ? "mailbox exists" : "mailbox is not a directory");
        else if (errno == ENOENT)
            pec_mbox_result_set(&res[i], PEC_MBOX_PERM, 550, "5.1.1", "no such mailbox");
        else
            pec_mbox_result_set(&res[i], PEC_MBOX_TEMP, 451, "4.3.0", "cannot look: %s",
                                strerror(errno));
        free(box);
        free(name);
    }
}
