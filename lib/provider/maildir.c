/*
 * maildir - the built-in mailbox backend (see mailbox.h for its rules).
 *
 * File names follow the Maildir convention Dovecot and Courier read:
 * <seconds>.M<microseconds>P<pid>Q<counter>.<host>,S=<size>, unique across
 * threads (the counter) and processes (the pid), with the size Dovecot can
 * use without opening the file.  A PEC message delivered with its
 * Message-ID also carries X<hash> after the counter, and a marker in
 * pec-keys/ names its file, so a repeated delivery finds it without
 * reading the mailbox (mailbox.h).
 */
#include "provider/mailbox.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "util/xalloc.h"

#define LOCAL_MAX 255
#define KEYS_DIR "pec-keys" /* no leading '.': Maildir++ readers would take it for a folder */

static unsigned long counter;

char *pec_maildir_box_name(const char *rcpt)
{
    const char *at = strrchr(rcpt, '@');
    size_t n = at ? (size_t)(at - rcpt) : 0;
    char *name;

    if (n == 0 || n > LOCAL_MAX || rcpt[0] == '.')
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)rcpt[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '/' || ch == '"' || ch == '\\')
            return NULL;
    }
    name = xstrndup(rcpt, n);
    for (char *s = name; *s != '\0'; s++)
        *s = (char)tolower((unsigned char)*s);
    return name;
}

/* The outcome of a failed write or rename with errno E. */
static void io_failure(struct pec_mbox_result *res, const char *what, int e)
{
    if (e == EDQUOT || e == EFBIG)
        pec_mbox_result_set(res, PEC_MBOX_PERM, 552, "5.2.2", "mailbox full");
    else if (e == ENOSPC)
        pec_mbox_result_set(res, PEC_MBOX_TEMP, 452, "4.3.1", "insufficient system storage");
    else
        pec_mbox_result_set(res, PEC_MBOX_TEMP, 451, "4.3.0", "cannot %s: %s", what, strerror(e));
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int make_dir(const char *path)
{
    return mkdir(path, 0777) == 0 || errno == EEXIST ? 0 : -1;
}

/*
 * Make sure BOX is a Maildir: 0, or -1 with RES set.  A missing BOX is no such
 * mailbox; its tmp, new and cur are made when missing.
 */
static int open_box(const struct pec_mbox_conf *mc, const char *box, struct pec_mbox_result *res)
{
    static const char *const sub[] = {"tmp", "new", "cur"};
    struct stat st;

    if (stat(mc->maildir_root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        pec_mbox_result_set(res, PEC_MBOX_TEMP, 451, "4.3.0", "maildir_root %s is not available",
                            mc->maildir_root);
        return -1;
    }
    if (stat(box, &st) != 0) {
        if (errno != ENOENT) {
            io_failure(res, "open the mailbox", errno);
            return -1;
        }
        pec_mbox_result_set(res, PEC_MBOX_PERM, 550, "5.1.1", "no such mailbox");
        return -1;
    } else if (!S_ISDIR(st.st_mode)) {
        pec_mbox_result_set(res, PEC_MBOX_TEMP, 451, "4.3.0", "mailbox is not a directory");
        return -1;
    }
    for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        char *d = xasprintf("%s/%s", box, sub[i]);
        int rc = make_dir(d);
        free(d);
        if (rc != 0) {
            io_failure(res, "create the mailbox", errno);
            return -1;
        }
    }
    return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int put_chunk(const unsigned char *chunk, size_t n, void *arg)
{
    return write_all(*(int *)arg, chunk, n) == 0 ? 0 : -1;
}

/* HOST with the characters a Maildir name cannot hold ('/', ':') escaped, into CLEAN. */
static void clean_host(const char *host, char *clean, size_t size)
{
    size_t k = 0;

    for (const char *h = host; *h != '\0' && k + 5 < size; h++) {
        if (*h == '/' || *h == ':')
            k += (size_t)snprintf(clean + k, size - k, "\\%03o", (unsigned char)*h);
        else
            clean[k++] = *h;
    }
    clean[k] = '\0';
}

/* A name no other delivery, here or in another process, uses; KEY ("" or "X<hex>") inside. */
static char *unique_name(const char *host, const char *key, size_t size)
{
    struct timeval tv;
    char clean[256];

    gettimeofday(&tv, NULL);
    clean_host(host, clean, sizeof(clean));
    return xasprintf("%lld.M%06ldP%ldQ%lu%s.%s,S=%zu", (long long)tv.tv_sec, (long)tv.tv_usec,
                     (long)getpid(), __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST), key, clean,
                     size);
}

/*
 * "X<hash>" for RCPT (lower case) and MESSAGE_ID: the part of the name that
 * says which message it is (mailbox.h); NULL when the digest fails.
 */
static char *message_key(const char *rcpt, const char *message_id)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *in = xasprintf("%s%c%s", rcpt, '\0', message_id), hex[33];
    size_t rlen = strlen(rcpt), n = rlen + 1 + strlen(message_id);

    for (size_t i = 0; i < rlen; i++)
        in[i] = (char)tolower((unsigned char)in[i]);
    if (!EVP_Digest(in, n, md, &mdlen, EVP_sha256(), NULL) || mdlen < 16) {
        free(in);
        return NULL;
    }
    free(in);
    for (size_t i = 0; i < 16; i++) {
        hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    hex[32] = '\0';
    return xasprintf("X%s", hex);
}

/*
 * Is a file whose name holds KEY followed by '.' (in new/) or whose name is
 * NAME or begins with NAME and ':' (in cur/, with the flags the user's client
 * added) in DIR?  Either may be NULL.  1, 0, or -1 with errno.
 */
static int have_file(const char *dir, const char *key, const char *name)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = key ? strlen(key) : 0, len = name ? strlen(name) : 0;
    int found = 0;

    if (d == NULL)
        return -1;
    errno = 0;
    while (!found && (e = readdir(d)) != NULL) {
        const char *at = key ? strstr(e->d_name, key) : NULL;
        found =
            (at != NULL && at[n] == '.') || (name != NULL && strncmp(e->d_name, name, len) == 0 &&
                                             (e->d_name[len] == '\0' || e->d_name[len] == ':'));
    }
    if (!found && errno != 0) {
        int saved = errno;
        closedir(d);
        errno = saved;
        return -1;
    }
    closedir(d);
    return found;
}

/*
 * Is the message KEY names in BOX already?  1, 0, or -1 with errno.  Its
 * marker (mailbox.h) names the file it was delivered as: in new/ that is one
 * stat; only a marker whose file has left new/ costs a read of cur/.
 */
static int already_stored(const char *box, const char *key)
{
    char *keys = xasprintf("%s/" KEYS_DIR, box), *marker = xasprintf("%s/%s", keys, key);
    char *dir = NULL, *path = NULL, target[1024];
    ssize_t n = readlink(marker, target, sizeof(target) - 1);
    struct stat st;
    int rc = 0;

    if (n > 0 && (size_t)n < sizeof(target) - 1 && memchr(target, '/', (size_t)n) == NULL) {
        target[n] = '\0';
        path = xasprintf("%s/new/%s", box, target);
        if (stat(path, &st) == 0)
            rc = 1;
        else if (errno != ENOENT)
            rc = -1;
        else
            rc = have_file(dir = xasprintf("%s/cur", box), NULL, target);
    } else if (n >= 0 || errno == EINVAL) {
        rc = 0; /* not a marker of ours (ours name a file in new/): replaced by the delivery */
    } else if (errno != ENOENT) {
        rc = -1;
    } else if (mkdir(keys, 0777) == 0) {
        /* a mailbox from before markers: only its file names can tell */
        rc = have_file(dir = xasprintf("%s/new", box), key, NULL);
        free(dir);
        if (rc == 0)
            rc = have_file(dir = xasprintf("%s/cur", box), key, NULL);
    } else if (errno != EEXIST) {
        rc = -1;
    }
    free(path);
    free(dir);
    free(marker);
    free(keys);
    return rc;
}

/*
 * Point BOX's marker KEY at the file NAME, replacing any: 0, or -1 with
 * errno.  Made as NAME.tmp first: named NAME, the link would point at itself.
 */
static int set_marker(const char *box, const char *key, const char *name)
{
    char *tmp = xasprintf("%s/" KEYS_DIR "/%s.tmp", box, name);
    char *marker = xasprintf("%s/" KEYS_DIR "/%s", box, key);
    int rc = 0, saved;

    if (symlink(name, tmp) != 0 || rename(tmp, marker) != 0) {
        saved = errno;
        unlink(tmp);
        errno = saved;
        rc = -1;
    }
    free(marker);
    free(tmp);
    return rc;
}

/* Write HEAD and MSG to the new file TMP and make it durable: 0, or -1 with errno. */
static int write_file(const char *tmp, const char *head, const struct pec_spool *msg)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    int saved;

    if (fd < 0)
        return -1;
    if (write_all(fd, (const unsigned char *)head, strlen(head)) == 0 &&
        pec_spool_each(msg, 0, pec_spool_size(msg), put_chunk, &fd) == 0 && fsync(fd) == 0 &&
        close(fd) == 0)
        return 0;
    saved = errno ? errno : EIO;
    close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
}

void pec_maildir_deliver(const struct pec_mbox_conf *mc, const char *sender, const char *rcpt,
                         const struct pec_spool *msg, struct pec_mbox_result *res)
{
    char *name = pec_maildir_box_name(rcpt), *box, *head, *file, *tmp, *dst, *newdir, *keysdir,
         *key = NULL;
    size_t size;
    int seen = 0;

    if (name == NULL) {
        pec_mbox_result_set(res, PEC_MBOX_PERM, 550, "5.1.3", "no mailbox can have this name");
        return;
    }
    box = xasprintf("%s/%s", mc->maildir_root, name);
    free(name);
    if (open_box(mc, box, res) != 0) {
        free(box);
        return;
    }
    if (mc->message_id != NULL && (key = message_key(rcpt, mc->message_id)) == NULL) {
        pec_mbox_result_set(res, PEC_MBOX_TEMP, 451, "4.3.0", "cannot name the message file");
        free(box);
        return;
    }
    head = xasprintf("Return-Path: <%s>\r\nDelivered-To: %s\r\n", sender, rcpt);
    size = strlen(head) + pec_spool_size(msg);
    file = unique_name(mc->hostname, key ? key : "", size);
    tmp = xasprintf("%s/tmp/%s", box, file);
    dst = xasprintf("%s/new/%s", box, file);
    newdir = xasprintf("%s/new", box);
    keysdir = xasprintf("%s/" KEYS_DIR, box);
    if (key != NULL)
        seen = already_stored(box, key);
    if (seen < 0) {
        io_failure(res, "read the mailbox", errno);
    } else if (seen > 0) {
        /* the delivery that wrote it may have died before this */
        if (sync_dir(newdir) != 0)
            io_failure(res, "sync new/", errno);
        else
            pec_mbox_result_set(res, PEC_MBOX_STORED, 250, "2.0.0", "already in its mailbox");
    } else if (write_file(tmp, head, msg) != 0) {
        io_failure(res, "write the message", errno);
    } else if (key != NULL && set_marker(box, key, file) != 0) {
        io_failure(res, "mark the message", errno);
        unlink(tmp);
    } else if (rename(tmp, dst) != 0) {
        io_failure(res, "move the message into new/", errno);
        unlink(tmp);
    } else if (sync_dir(newdir) != 0 || (key != NULL && sync_dir(keysdir) != 0)) {
        io_failure(res, "sync new/", errno);
    } else {
        pec_mbox_result_set(res, PEC_MBOX_STORED, 250, "2.0.0", "delivered to its mailbox");
    }
    free(keysdir);
    free(newdir);
    free(dst);
    free(tmp);
    free(file);
    free(head);
    free(box);
    free(key);
}

/* Remove BOX's markers last changed before BEFORE; adds to *N.  0, or -1 with errno. */
static int prune_box(int rootfd, const char *box, time_t before, long long *n)
{
    int fd = openat(rootfd, box, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), keysfd;
    struct dirent *e;
    struct stat st;
    DIR *d;

    if (fd < 0)
        return errno == ENOTDIR || errno == ELOOP ? 0 : -1; /* a file beside the mailboxes */
    keysfd = openat(fd, KEYS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    if (keysfd < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
    if ((d = fdopendir(keysfd)) == NULL) {
        close(keysfd);
        return -1;
    }
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && fstatat(keysfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode) && st.st_mtime < before && unlinkat(keysfd, e->d_name, 0) == 0)
            (*n)++;
    closedir(d);
    return 0;
}

int pec_maildir_prune(const char *root, time_t before, long long *n, char *err, size_t errlen)
{
    DIR *d = opendir(root);
    struct dirent *e;
    int rc = 0;

    *n = 0;
    if (d == NULL) {
        snprintf(err, errlen, "maildir_root %s: %s", root, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && prune_box(dirfd(d), e->d_name, before, n) < 0 && rc == 0) {
            snprintf(err, errlen, "%s/%s/" KEYS_DIR ": %s", root, e->d_name, strerror(errno));
            rc = -1; /* one mailbox's trouble does not stop the others' pruning */
        }
    closedir(d);
    return rc;
}
