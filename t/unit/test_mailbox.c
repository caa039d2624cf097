/*
 * test_mailbox - the two mailbox backends of the delivery point.
 *
 * Maildir: what the file holds (Return-Path, Delivered-To, the bytes as
 * given), its name, the directories made or not made, the rules for a
 * mailbox that exists, names that cannot be mailboxes, a root that is
 * missing (temporary) and a full mailbox (EFBIG from RLIMIT_FSIZE stands
 * in for a quota: permanent); a message delivered with its Message-ID is
 * stored once per mailbox, found again in new/ or cur/ through its marker
 * (or, in a mailbox from before markers, its file name); a marker whose file
 * never reached new/ (a crash between the two) is delivered again.  LMTP: a downstream server (this
 * project's own LMTP server with a scripted delivery) answers per recipient, and each answer comes
 * back as it was given; the body survives dot-stuffing; a server that is not there or does not
 * speak is temporary for everyone.
 */
#include "check.h"
#include "util/lmtp.h"
#include "provider/mailbox.h"
#include "util/sock.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test_mailbox.XXXXXX";

static struct pec_spool *spool_of(const char *s, size_t mem)
{
    struct pec_spool *sp = pec_spool_new(tmpdir, mem);
    CHECK(pec_spool_write(sp, s, strlen(s)) == 0);
    return sp;
}

/* The only file in DIR, read whole; NULL when there is not exactly one. */
static char *only_file(const char *dir, char *name, size_t namecap, size_t *len)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char *found = NULL, path[1024];
    int n = 0;

    if (d == NULL)
        return NULL;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        n++;
        snprintf(name, namecap, "%s", de->d_name);
    }
    closedir(d);
    if (n != 1)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    found = xmalloc(*len + 1);
    CHECK(fread(found, 1, *len, f) == *len);
    found[*len] = '\0';
    fclose(f);
    return found;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The mailboxes u, v and w under ROOT, as `pecctl mailbox add' makes them. */
static void add_boxes(const char *root)
{
    static const char *const users[] = {"u@y", "v@y", "w@y"};
    char err[256];

    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
        CHECK(pec_maildir_add(root, users[i], err, sizeof(err)) == 0);
}

static void test_maildir(void)
{
    char root[256], path[512], name[256], err[256];
    struct pec_mbox_conf mc = {.backend = "maildir", .maildir_root = root, .hostname = "h/x:y"};
    struct pec_mbox_result res;
    struct pec_spool *msg = spool_of("Subject: hi\r\n\r\nbody\r\n", 1 << 20);
    size_t len;
    char *got;

    snprintf(root, sizeof(root), "%s/mail", tmpdir);
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK(res.status == PEC_MBOX_TEMP && res.code == 451);
    CHECK_STR(res.esc, "4.3.0");
    CHECK(!is_dir(root)); /* the root is never made */

    CHECK(mkdir(root, 0755) == 0);
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK(res.status == PEC_MBOX_PERM && res.code == 550);
    CHECK_STR(res.esc, "5.1.1");
    snprintf(path, sizeof(path), "%s/u", root);
    CHECK(!is_dir(path));

    /* the administrator makes it (pecctl mailbox add); then it takes mail */
    CHECK(pec_maildir_add(root, "Mario.Rossi@Y", err, sizeof(err)) == 0);
    CHECK(pec_maildir_add(root, "mario.rossi@y", err, sizeof(err)) == 1);
    pec_maildir_deliver(&mc, "s@x", "Mario.Rossi@Y", msg, &res);
    CHECK(res.status == PEC_MBOX_STORED && res.code == 250);
    snprintf(path, sizeof(path), "%s/mario.rossi/cur", root);
    CHECK(is_dir(path));
    snprintf(path, sizeof(path), "%s/mario.rossi/tmp", root);
    CHECK(count_files(path) == 0);
    snprintf(path, sizeof(path), "%s/mario.rossi/new", root);
    got = only_file(path, name, sizeof(name), &len);
    CHECK_STR(got,
              "Return-Path: <s@x>\r\nDelivered-To: Mario.Rossi@Y\r\nSubject: hi\r\n\r\nbody\r\n");
    snprintf(path, sizeof(path), ",S=%zu", len);
    CHECK(strstr(name, path) != NULL && strstr(name, path)[strlen(path)] == '\0');
    CHECK(strstr(name, ".h\\057x\\072y,S=") != NULL); /* '/' and ':' never in a file name */
    free(got);

    /* a mailbox made by the operator, without its subdirectories, exists */
    snprintf(path, sizeof(path), "%s/anna", root);
    CHECK(mkdir(path, 0755) == 0);
    pec_maildir_deliver(&mc, "", "anna@y", msg, &res);
    CHECK(res.status == PEC_MBOX_STORED);
    snprintf(path, sizeof(path), "%s/anna/new", root);
    got = only_file(path, name, sizeof(name), &len);
    CHECK(got != NULL && strncmp(got, "Return-Path: <>\r\n", 17) == 0);
    free(got);

    /* a file where the mailbox should be is the operator's problem: temporary */
    snprintf(path, sizeof(path), "%s/plainfile", root);
    fclose(fopen(path, "w"));
    pec_maildir_deliver(&mc, "s@x", "plainfile@y", msg, &res);
    CHECK(res.status == PEC_MBOX_TEMP);

    static const char *const bad[] = {".hidden@y", "../etc@y",      "a/b@y", "a b@y",
                                      "@y",        "caf\xc3\xa8@y", "noat"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pec_maildir_deliver(&mc, "s@x", bad[i], msg, &res);
        CHECK(res.status == PEC_MBOX_PERM && strcmp(res.esc, "5.1.3") == 0);
    }
    CHECK(count_files(root) == 3);
    pec_spool_free(msg);
}

static void test_maildir_big_and_full(void)
{
    char root[256], path[512], name[256];
    struct pec_mbox_conf mc = {.backend = "maildir", .maildir_root = root, .hostname = "h"};
    struct pec_mbox_result res;
    struct pec_spool *msg = pec_spool_new(tmpdir, 4096);
    size_t n = 3 * 1024 * 1024, len;
    struct rlimit old, lim;
    char *big = xmalloc(n), *got;

    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i % 251);
    CHECK(pec_spool_write(msg, big, n) == 0);
    CHECK(pec_spool_mem(msg) == NULL);
    snprintf(root, sizeof(root), "%s/big", tmpdir);
    CHECK(mkdir(root, 0755) == 0);
    add_boxes(root);
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK(res.status == PEC_MBOX_STORED);
    snprintf(path, sizeof(path), "%s/u/new", root);
    got = only_file(path, name, sizeof(name), &len);
    CHECK(got != NULL && len == n + 39 && memcmp(got + 39, big, n) == 0);
    free(got);

    /* the process may not write a file this big: a full mailbox, for good */
    signal(SIGXFSZ, SIG_IGN);
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 1024 * 1024;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK(res.status == PEC_MBOX_PERM && res.code == 552);
    CHECK_STR(res.esc, "5.2.2");
    snprintf(path, sizeof(path), "%s/u/tmp", root);
    CHECK(count_files(path) == 0);
    snprintf(path, sizeof(path), "%s/u/new", root);
    CHECK(count_files(path) == 1);
    pec_spool_free(msg);
    free(big);
}

/* With a Message-ID: one file per mailbox, wherever the user's client moved it. */
static void test_maildir_message_id(void)
{
    char root[256], path[512], name[256], from[768], to[768];
    struct pec_mbox_conf mc = {.backend = "maildir",
                               .maildir_root = root,
                               .hostname = "h",
                               .message_id = "id.1@pec-a.test"};
    struct pec_mbox_result res;
    struct pec_spool *msg = spool_of("Subject: pec\r\n\r\nbody\r\n", 1 << 20);
    size_t len;
    char *got;

    snprintf(root, sizeof(root), "%s/dedupe", tmpdir);
    CHECK(mkdir(root, 0755) == 0);
    add_boxes(root);
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK(res.status == PEC_MBOX_STORED);
    CHECK_STR(res.text, "delivered to its mailbox");
    pec_maildir_deliver(&mc, "s@x", "U@Y", msg, &res); /* the mailbox, in other case */
    CHECK(res.status == PEC_MBOX_STORED);
    CHECK_STR(res.text, "already in its mailbox");
    snprintf(path, sizeof(path), "%s/u/new", root);
    got = only_file(path, name, sizeof(name), &len);
    CHECK(got != NULL && strstr(name, "X") != NULL && strstr(name, ".h,S=") != NULL);
    free(got);

    /* read and flagged by the user's client: still the same message */
    snprintf(from, sizeof(from), "%s/u/new/%s", root, name);
    snprintf(to, sizeof(to), "%s/u/cur/%s:2,S", root, name);
    CHECK(rename(from, to) == 0);
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK(res.status == PEC_MBOX_STORED);
    CHECK_STR(res.text, "already in its mailbox");
    snprintf(path, sizeof(path), "%s/u/new", root);
    CHECK(count_files(path) == 0);

    /* another Message-ID, another mailbox, or none: a file each */
    mc.message_id = "id.2@pec-a.test";
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    pec_maildir_deliver(&mc, "s@x", "v@y", msg, &res);
    mc.message_id = NULL;
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK(res.status == PEC_MBOX_STORED);
    CHECK(count_files(path) == 3);
    snprintf(path, sizeof(path), "%s/v/new", root);
    CHECK(count_files(path) == 1);

    /* the marker names the file: one per keyed message, a symbolic link */
    snprintf(path, sizeof(path), "%s/u/pec-keys", root);
    CHECK(count_files(path) == 2);

    /* a crash after the marker, before the rename: the file is not there, so
       the retry delivers, and a third retry finds that copy */
    mc.message_id = "id.2@pec-a.test";
    snprintf(from, sizeof(from), "%s/v/new", root);
    got = only_file(from, name, sizeof(name), &len);
    CHECK(got != NULL);
    free(got);
    snprintf(path, sizeof(path), "%s/v/new/%s", root, name);
    CHECK(unlink(path) == 0);
    pec_maildir_deliver(&mc, "s@x", "v@y", msg, &res);
    CHECK(res.status == PEC_MBOX_STORED);
    CHECK_STR(res.text, "delivered to its mailbox");
    pec_maildir_deliver(&mc, "s@x", "v@y", msg, &res);
    CHECK_STR(res.text, "already in its mailbox");
    CHECK(count_files(from) == 1);

    /* a mailbox from before the markers: its file names are searched once */
    snprintf(path, sizeof(path), "%s/v/pec-keys", root);
    CHECK(system(strcat(strcpy(to, "rm -r "), path)) == 0);
    got = only_file(from, name, sizeof(name), &len);
    CHECK(got != NULL);
    free(got);
    snprintf(path, sizeof(path), "%s/v/new/%s", root, name);
    snprintf(to, sizeof(to), "%s/v/cur/%s:2,RS", root, name);
    CHECK(rename(path, to) == 0);
    pec_maildir_deliver(&mc, "s@x", "v@y", msg, &res);
    CHECK_STR(res.text, "already in its mailbox");
    CHECK(count_files(from) == 0);

    /* a marker naming anything outside new/ is not ours: the message is delivered */
    mc.message_id = "id.3@pec-a.test";
    pec_maildir_deliver(&mc, "s@x", "w@y", msg, &res);
    CHECK_STR(res.text, "delivered to its mailbox");
    snprintf(from, sizeof(from), "%s/w/new", root);
    got = only_file(from, name, sizeof(name), &len);
    CHECK(got != NULL);
    free(got);
    snprintf(path, sizeof(path), "%s/w/new/%s", root, name);
    CHECK(unlink(path) == 0);
    snprintf(path, sizeof(path), "%s/outside", root);
    CHECK(close(open(path, O_CREAT | O_WRONLY, 0644)) == 0);
    snprintf(path, sizeof(path), "%s/w/pec-keys", root);
    got = only_file(path, name, sizeof(name), &len);
    free(got);
    snprintf(path, sizeof(path), "%s/w/pec-keys/%s", root, name);
    CHECK(unlink(path) == 0 && symlink("../../outside", path) == 0);
    pec_maildir_deliver(&mc, "s@x", "w@y", msg, &res);
    CHECK_STR(res.text, "delivered to its mailbox");
    CHECK(count_files(from) == 1);
    pec_spool_free(msg);
}

/* ---- a downstream LMTP server ---- */

static char *down_data;
static size_t down_len;
static int down_eight_bit;

static void down_deliver(void *arg, const struct pec_lmtp_msg *m, struct pec_lmtp_reply *res)
{
    free(down_data);
    down_len = pec_spool_size(m->data);
    down_data = xmalloc(down_len + 1);
    CHECK(pec_spool_pread(m->data, 0, down_data, down_len) == (ssize_t)down_len);
    down_eight_bit = m->eight_bit;
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (strncmp(m->rcpt[i], "full", 4) == 0)
            pec_lmtp_reply_set(&res[i], 552, "5.2.2", "<%s> Quota exceeded", m->rcpt[i]);
        else if (strncmp(m->rcpt[i], "later", 5) == 0)
            pec_lmtp_reply_set(&res[i], 451, "4.2.0", "<%s> try later", m->rcpt[i]);
        else
            pec_lmtp_reply_set(&res[i], 250, "2.0.0", "<%s> Saved", m->rcpt[i]);
    }
}

static void *down_server(void *arg)
{
    int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
    struct pec_lmtp_proto p = {
        .hostname = "down.test", .timeout = 10, .max_size = 1 << 20, .deliver = down_deliver};

    CHECK(fd >= 0);
    if (fd >= 0) {
        pec_lmtp_session(fd, &p);
        close(fd);
    }
    return NULL;
}

static void test_lmtp_backend(void)
{
    static const char body[] = "Subject: x\r\n\r\n.dot\r\n..two\r\n.\r\ncaf\xc3\xa8\r\nend";
    char spec[300], err[256];
    const char *rcpt[] = {"ok@y", "full@y", "later@y", "nodomain", "ok2@y"};
    struct pec_mbox_result res[5];
    struct pec_mbox_conf mc = {.backend = "lmtp", .lmtp = spec, .hostname = "me", .timeout = 5};
    struct pec_spool *msg = spool_of(body, 1 << 20);
    pthread_t tid;
    int lfd;

    snprintf(spec, sizeof(spec), "unix:%s/down.sock", tmpdir);
    pec_mbox_deliver(&mc, "s@x", rcpt, 2, msg, 0, res);
    CHECK(res[0].status == PEC_MBOX_TEMP && res[1].status == PEC_MBOX_TEMP);
    CHECK_STR(res[0].esc, "4.4.1");

    lfd = pec_sock_listen(spec, 5, err, sizeof(err));
    CHECK(lfd >= 0);
    CHECK(pthread_create(&tid, NULL, down_server, &lfd) == 0);
    pec_mbox_deliver(&mc, "s@x", rcpt, 5, msg, 1, res);
    pthread_join(tid, NULL);
    CHECK(res[0].status == PEC_MBOX_STORED && res[0].code == 250);
    CHECK(res[1].status == PEC_MBOX_PERM && res[1].code == 552);
    CHECK_STR(res[1].esc, "5.2.2");
    CHECK_STR(res[1].text, "mailbox server: <full@y> Quota exceeded");
    CHECK(res[2].status == PEC_MBOX_TEMP && res[2].code == 451);
    CHECK_STR(res[2].esc, "4.2.0");
    CHECK(res[3].status == PEC_MBOX_PERM && res[3].code == 553); /* refused at RCPT */
    CHECK_STR(res[3].esc, "5.1.3");
    CHECK(res[4].status == PEC_MBOX_STORED);
    CHECK(down_len == strlen(body) + 2 && memcmp(down_data, body, strlen(body)) == 0);
    CHECK(down_eight_bit == 1);

    /* asked whether mailboxes exist: RCPT only, nothing delivered */
    free(down_data);
    down_data = NULL;
    down_len = 0;
    CHECK(pthread_create(&tid, NULL, down_server, &lfd) == 0);
    pec_mbox_probe(&mc, (const char *[]){"ok@y", "nodomain"}, 2, res);
    pthread_join(tid, NULL);
    CHECK(res[0].status == PEC_MBOX_STORED && res[0].code == 250);
    CHECK(res[1].status == PEC_MBOX_PERM && res[1].code == 553);
    CHECK(down_data == NULL && down_len == 0);

    /* a server that accepts the connection but never speaks */
    mc.timeout = 1;
    pec_mbox_deliver(&mc, "s@x", rcpt, 1, msg, 0, res);
    CHECK(res[0].status == PEC_MBOX_TEMP);
    CHECK_STR(res[0].esc, "4.4.2");
    close(lfd);
    pec_spool_free(msg);
    free(down_data);
}

/* Set the time of every marker in DIR (pec-keys/ of a mailbox) DAYS days back. */
static void age_markers(const char *dir, int days)
{
    struct timespec t[2] = {{.tv_sec = time(NULL) - (time_t)days * 86400}, {0}};
    DIR *d = opendir(dir);
    struct dirent *de;
    int fd = dirfd(d);

    t[1] = t[0];
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            CHECK(utimensat(fd, de->d_name, t, AT_SYMLINK_NOFOLLOW) == 0);
    closedir(d);
}

/* Old markers go, recent ones and every message stay. */
static void test_maildir_prune(void)
{
    char root[256], path[512], err[256];
    struct pec_mbox_conf mc = {.backend = "maildir", .maildir_root = root, .hostname = "h"};
    struct pec_mbox_result res;
    struct pec_spool *msg = spool_of("Subject: pec\r\n\r\nbody\r\n", 1 << 20);
    long long n = -1;
    FILE *f;

    snprintf(root, sizeof(root), "%s/prune", tmpdir);
    CHECK(mkdir(root, 0755) == 0);
    add_boxes(root);
    snprintf(path, sizeof(path), "%s/not-a-mailbox", root);
    CHECK((f = fopen(path, "w")) != NULL && fclose(f) == 0);
    mc.message_id = "old.1@pec-a.test";
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    pec_maildir_deliver(&mc, "s@x", "v@y", msg, &res);
    snprintf(path, sizeof(path), "%s/u/pec-keys", root);
    age_markers(path, 11);
    snprintf(path, sizeof(path), "%s/v/pec-keys", root);
    age_markers(path, 11);
    mc.message_id = "new.1@pec-a.test";
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    mc.message_id = NULL; /* no marker, no pec-keys/ */
    pec_maildir_deliver(&mc, "s@x", "w@y", msg, &res);

    CHECK(pec_maildir_prune(root, time(NULL) - 10 * 86400, &n, err, sizeof(err)) == 0);
    CHECK(n == 2);
    snprintf(path, sizeof(path), "%s/u/pec-keys", root);
    CHECK(count_files(path) == 1);
    snprintf(path, sizeof(path), "%s/v/pec-keys", root);
    CHECK(count_files(path) == 0);
    snprintf(path, sizeof(path), "%s/u/new", root);
    CHECK(count_files(path) == 2);
    snprintf(path, sizeof(path), "%s/v/new", root);
    CHECK(count_files(path) == 1);
    snprintf(path, sizeof(path), "%s/w/new", root);
    CHECK(count_files(path) == 1);

    /* the recent marker still does its work */
    mc.message_id = "new.1@pec-a.test";
    pec_maildir_deliver(&mc, "s@x", "u@y", msg, &res);
    CHECK_STR(res.text, "already in its mailbox");
    CHECK(pec_maildir_prune(root, time(NULL) - 10 * 86400, &n, err, sizeof(err)) == 0);
    CHECK(n == 0);

    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    CHECK(pec_maildir_prune(path, time(NULL), &n, err, sizeof(err)) == -1);
    CHECK(strstr(err, "missing") != NULL);
    pec_spool_free(msg);
}

static int listed(const char *name, long long fresh, long long seen, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);

    snprintf(out + n, 256 - n, "%s:%lld:%lld ", name, fresh, seen);
    return 0;
}

/* What an administrator does (pecctl mailbox), and what the reception point asks. */
static void test_maildir_admin(void)
{
    char root[256], path[512], moved[512], err[256], out[256] = "";
    struct pec_mbox_conf mc = {.backend = "maildir", .maildir_root = root, .hostname = "h"};
    struct pec_mbox_result res[4];
    struct pec_spool *msg = spool_of("Subject: x\r\n\r\nbody\r\n", 1 << 20);

    snprintf(root, sizeof(root), "%s/admin", tmpdir);
    CHECK(pec_maildir_add(root, "anna@y", err, sizeof(err)) == -1); /* no root, none made */
    CHECK(strstr(err, "maildir_root") != NULL && !is_dir(root));
    pec_mbox_probe(&mc, (const char *[]){"anna@y"}, 1, res);
    CHECK(res[0].status == PEC_MBOX_TEMP && res[0].code == 451);

    CHECK(mkdir(root, 0755) == 0);
    CHECK(pec_maildir_add(root, "../etc@y", err, sizeof(err)) == -1);
    CHECK(pec_maildir_add(root, "Anna@y", err, sizeof(err)) == 0);
    CHECK(pec_maildir_add(root, "bruno@y", err, sizeof(err)) == 0);
    snprintf(path, sizeof(path), "%s/anna/tmp", root);
    CHECK(is_dir(path));
    pec_maildir_deliver(&mc, "s@x", "anna@y", msg, &res[0]);
    CHECK(res[0].status == PEC_MBOX_STORED);
    CHECK(pec_maildir_list(root, listed, out, err, sizeof(err)) == 0);
    CHECK_STR(out, "anna:1:0 bruno:0:0 ");

    pec_mbox_probe(&mc, (const char *[]){"ANNA@y", "carla@y", "a/b@y", "bruno@z"}, 4, res);
    CHECK(res[0].status == PEC_MBOX_STORED && res[0].code == 250);
    CHECK(res[1].status == PEC_MBOX_PERM && res[1].code == 550);
    CHECK_STR(res[1].esc, "5.1.1");
    CHECK(res[2].status == PEC_MBOX_PERM && strcmp(res[2].esc, "5.1.3") == 0);
    CHECK(res[3].status == PEC_MBOX_STORED);

    /* removed: moved aside with its message, gone for deliveries and the list */
    CHECK(pec_maildir_del(root, "anna@y", moved, sizeof(moved), err, sizeof(err)) == 0);
    CHECK(strncmp(moved, root, strlen(root)) == 0 && strstr(moved, "/.removed/anna.") != NULL);
    snprintf(path, sizeof(path), "%s/new", moved);
    CHECK(count_files(path) == 1);
    CHECK(pec_maildir_del(root, "anna@y", moved, sizeof(moved), err, sizeof(err)) == 1);
    pec_maildir_deliver(&mc, "s@x", "anna@y", msg, &res[0]);
    CHECK(res[0].status == PEC_MBOX_PERM && strcmp(res[0].esc, "5.1.1") == 0);
    out[0] = '\0';
    CHECK(pec_maildir_list(root, listed, out, err, sizeof(err)) == 0);
    CHECK_STR(out, "bruno:0:0 ");
    pec_spool_free(msg);
}

static void rm_tree(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_maildir();
    test_maildir_big_and_full();
    test_maildir_message_id();
    test_maildir_prune();
    test_maildir_admin();
    test_lmtp_backend();
    rm_tree(tmpdir);
    return check_exit();
}
