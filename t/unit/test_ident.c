/*
 * test_ident - identificativo and notice Message-ID: shape, uniqueness over
 * threads and processes, reproducibility in deterministic mode.
 */
#include "check.h"
#include "message/ident.h"

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#define PER_THREAD 25000
#define THREADS 4
#define PER_CHILD 20000

static struct pec_clock fixed_clock;
static struct pec_ident gen;

/* dot-atom "@" host name, nothing else */
static int dot_atom_addr(const char *s)
{
    const char *at = strchr(s, '@');

    if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL)
        return 0;
    for (const char *p = s; *p; p++) {
        if (p == at)
            continue;
        if (*p == '.' && (p == s || p[-1] == '.' || p[-1] == '@' || p[1] == '@' || p[1] == '\0'))
            return 0;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-'))
            return 0;
    }
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sorts v and counts equal neighbours */
static size_t duplicates(char **v, size_t n)
{
    size_t dup = 0;

    qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i - 1], v[i]) == 0)
            dup++;
    return dup;
}

static void test_init(void)
{
    static const char *const bad[] = {
        "", "a..b.it", "-a.b.it", "a-.b.it", "a_b.it", "a b.it", ".pec.it", "pec.it.", "pec@it",
    };
    struct pec_ident id;
    char label[70];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        CHECK(pec_ident_init(&id, 1, bad[i], &fixed_clock, err, sizeof(err)) == -1);
        CHECK(strstr(err, "host name") != NULL);
    }
    CHECK(pec_ident_init(&id, 1, "a.b", &fixed_clock, NULL, 0) == 0);
    memset(label, 'a', 64);
    strcpy(label + 64, ".it");
    CHECK(pec_ident_init(&id, 1, label, &fixed_clock, NULL, 0) == -1);
    CHECK(pec_ident_init(&id, 1, NULL, &fixed_clock, NULL, 0) == -1);
}

static void test_shape(void)
{
    char *a = pec_ident_new(&gen);
    char *m = pec_ident_message_id(&gen);
    char prefix[64];

    snprintf(prefix, sizeof(prefix), "opec275.20141114172632.%05ld.", (long)getpid());
    CHECK(strncmp(a, prefix, strlen(prefix)) == 0);
    CHECK(strncmp(m, "npec275.20141114172632.", 23) == 0);
    CHECK(strcmp(a + strlen(a) - strlen("@pec.example.it"), "@pec.example.it") == 0);
    CHECK(dot_atom_addr(a));
    CHECK(dot_atom_addr(m));
    CHECK(strcmp(a, m) != 0);
    printf("identificativo %s\nmessage-id     %s\n", a, m);
    free(a);
    free(m);
}

static void *make_many(void *arg)
{
    char **out = arg;

    for (int i = 0; i < PER_THREAD; i++)
        out[i] = i % 2 ? pec_ident_message_id(&gen) : pec_ident_new(&gen);
    return NULL;
}

/* 100k identifiers from 4 threads, with the clock stuck on one second */
static void test_threads(void)
{
    char **all = calloc(PER_THREAD * THREADS, sizeof(char *));
    pthread_t t[THREADS];
    size_t bad_shape = 0;

    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, make_many, all + i * PER_THREAD) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    for (size_t i = 0; i < PER_THREAD * THREADS; i++)
        if (all[i] == NULL || !dot_atom_addr(all[i]))
            bad_shape++;
    CHECK(bad_shape == 0);
    CHECK(duplicates(all, PER_THREAD * THREADS) == 0);
    for (size_t i = 0; i < PER_THREAD * THREADS; i++)
        free(all[i]);
    free(all);
}

/* a child writes PER_CHILD identifiers, one a line, to fd */
static void child_ids(int fd)
{
    FILE *fp = fdopen(fd, "w");

    if (fp == NULL)
        _exit(2);
    for (int i = 0; i < PER_CHILD; i++) {
        char *id = pec_ident_new(&gen);
        fprintf(fp, "%s\n", id);
        free(id);
    }
    _exit(fclose(fp) == 0 ? 0 : 3);
}

static size_t read_ids(int fd, char **v, size_t n)
{
    FILE *fp = fdopen(fd, "r");
    char line[256];

    if (fp == NULL)
        return n;
    while (fgets(line, sizeof(line), fp) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        v[n++] = strdup(line);
    }
    fclose(fp);
    return n;
}

/*
 * Two forked children inherit the same counter and the same (fixed) time:
 * only the pid and the random part keep them apart.
 */
static void test_fork(void)
{
    char **all = calloc(2 * PER_CHILD + 1, sizeof(char *));
    size_t n = 0;
    pid_t pid[2];
    int fds[2][2];

    for (int i = 0; i < 2; i++) {
        CHECK(pipe(fds[i]) == 0);
        pid[i] = fork();
        CHECK(pid[i] >= 0);
        if (pid[i] == 0) {
            close(fds[i][0]);
            child_ids(fds[i][1]);
        }
        close(fds[i][1]);
    }
    for (int i = 0; i < 2; i++) {
        int status;
        n = read_ids(fds[i][0], all, n);
        CHECK(waitpid(pid[i], &status, 0) == pid[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK(n == 2 * PER_CHILD);
    all[n++] = pec_ident_new(&gen); /* and the parent's next one */
    CHECK(duplicates(all, n) == 0);
    for (size_t i = 0; i < n; i++)
        free(all[i]);
    free(all);
}

static void test_deterministic(void)
{
    char *first[4], *again[4];

    pec_ident_set_deterministic(42);
    for (int i = 0; i < 4; i++)
        first[i] = i % 2 ? pec_ident_message_id(&gen) : pec_ident_new(&gen);
    CHECK_STR(first[0], "opec275.20141114172632.00000.1.0000002b@pec.example.it");
    CHECK_STR(first[1], "npec275.20141114172632.00000.2.0000002c@pec.example.it");
    pec_ident_set_deterministic(42);
    for (int i = 0; i < 4; i++) {
        again[i] = i % 2 ? pec_ident_message_id(&gen) : pec_ident_new(&gen);
        CHECK_STR(again[i], first[i]);
    }
    for (int i = 0; i < 4; i++) {
        free(first[i]);
        free(again[i]);
    }
}

int main(void)
{
    char err[256] = "";

    if (pec_clock_init(&fixed_clock, NULL, "2014-11-14T17:26:32Z", err, sizeof(err)) != 0 ||
        pec_ident_init(&gen, 275, "pec.example.it", &fixed_clock, err, sizeof(err)) != 0) {
        fprintf(stderr, "set-up: %s\n", err);
        return 1;
    }
    test_init();
    test_shape();
    test_threads();
    test_fork();
    test_deterministic(); /* last: it switches the process to deterministic mode */
    return check_exit();
}
