/*
 * test_envelope - the signed multipart/signed around our parts.
 *
 * The signature must cover exactly the inner entity as it stands between the
 * boundary lines, which three independent readers check: our verifier, the
 * openssl cms verifier on the detached pieces, and openssl smime (and
 * Python's email package) on the whole serialised message, which also
 * checks the MIME framing.  The same inputs at the same instant give the
 * same bytes; a spooled part on file gives the same result as in memory; a
 * part that happens to contain the boundary we would pick makes us pick
 * another.
 */
#include "msgcheck.h"

static struct testenv env;

static const char text_latin1[] =
    "Messaggio di posta certificata\r\n"
    "\r\n"
    "Il messaggio \"caff\xe8\" \xe8 stato inviato da \"a@pec-a.test\"\r\n"
    "Una riga molto lunga che supera i settantasei caratteri e "
    "quindi va spezzata con un a capo morbido.\r\n";
static const char html[] = "<html><body><p>Messaggio di posta certificata</p></body></html>\r\n";
static const char xml[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<postacert/>\n";
static const char eml[] = "From: a@pec-a.test\r\n"
                          "To: b@pec-b.test\r\n"
                          "Subject: prova\r\n"
                          "Message-ID: <opec7.1@pec-a.test>\r\n"
                          "\r\n"
                          "corpo\r\n"
                          "--not-a-boundary\r\n";

/* text (+html) / daticert / postacert: the layout of a busta */
static void make_parts(struct pec_part alt[2], struct pec_part parts[3],
                       const struct pec_spool *eml_spool)
{
    memset(alt, 0, 2 * sizeof(*alt));
    memset(parts, 0, 3 * sizeof(*parts));
    alt[0] = (struct pec_part){.content_type = "text/plain; charset=\"iso-8859-1\"",
                               .encoding = "quoted-printable",
                               .data = (const unsigned char *)text_latin1,
                               .len = sizeof(text_latin1) - 1};
    alt[1] = (struct pec_part){.content_type = "text/html; charset=\"iso-8859-1\"",
                               .encoding = "quoted-printable",
                               .data = (const unsigned char *)html,
                               .len = sizeof(html) - 1};
    parts[0] = (struct pec_part){
        .content_type = "multipart/alternative", .children = alt, .n_children = 2};
    parts[1] = (struct pec_part){.content_type = "application/xml; name=\"daticert.xml\"",
                                 .disposition = "inline; filename=\"daticert.xml\"",
                                 .encoding = "base64",
                                 .data = (const unsigned char *)xml,
                                 .len = sizeof(xml) - 1};
    parts[2] = (struct pec_part){.content_type = "message/rfc822; name=\"postacert.eml\"",
                                 .disposition = "inline; filename=\"postacert.eml\"",
                                 .encoding = "7bit",
                                 .data = (const unsigned char *)eml,
                                 .len = sizeof(eml) - 1,
                                 .spool = eml_spool};
}

static int build(const struct pec_part *parts, size_t n, struct pec_built *out)
{
    char err[512] = "";
    int ret;

    memset(out, 0, sizeof(*out));
    pec_headers_add(&out->headers, "From", "posta-certificata@pec-a.test");
    ret = pec_envelope_sign(&env.iss, parts, n, env.clock.fixed_at, out, err, sizeof(err));
    if (ret != 0)
        fprintf(stderr, "pec_envelope_sign: %s\n", err);
    return ret;
}

static char *save(const struct pec_built *b, const char *stem)
{
    char *path = xasprintf("%s/%s.eml", env.outdir, stem);
    FILE *fp = fopen(path, "wb");

    CHECK(fp != NULL);
    if (fp != NULL) {
        CHECK(pec_built_write(b, fp) == 0);
        CHECK(fclose(fp) == 0);
    }
    return path;
}

/* everything a signed envelope must be, checked on one built message */
static void check_envelope(const struct pec_built *b, const char *stem, const void *postacert,
                           size_t postacert_len)
{
    struct bytes body = spool_bytes(b->body);
    struct signed_parts sp;
    struct range parts[MAX_PARTS];
    char *ctype, *boundary, *path = save(b, stem);

    CHECK_STR(pec_headers_get(&b->headers, "MIME-Version"), "1.0");
    CHECK(STARTS(pec_headers_get(&b->headers, "Content-Type"),
                 "multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\tmicalg=sha-256; "
                 "boundary=\"=_pecS0."));
    CHECK(STARTS(body.p, "This is an S/MIME signed message\r\n\r\n--=_pecS0."));
    CHECK(take_apart(b, body.p, body.n, &sp) == 0);
    CHECK(verify_ours(&env, &sp) == 0);
    CHECK(verify_openssl(&env, &sp, path, stem) == 0);

    /* the inner entity: its Content-Type first, then the three parts */
    ctype = part_header(sp.inner.p, sp.inner.n, "Content-Type");
    CHECK(STARTS(sp.inner.p, "Content-Type: multipart/mixed; boundary=\"=_pecM0."));
    boundary = boundary_of(ctype);
    CHECK(boundary != NULL);
    if (boundary != NULL) {
        size_t bs = body_start(sp.inner.p, sp.inner.n);

        CHECK(split(sp.inner.p + bs, sp.inner.n - bs, boundary, parts) == 3);
        /* postacert.eml comes out byte for byte */
        {
            const unsigned char *p = sp.inner.p + bs + parts[2].off;
            size_t pb = body_start(p, parts[2].len);

            CHECK(parts[2].len - pb == postacert_len &&
                  memcmp(p + pb, postacert, postacert_len) == 0);
        }
    }
    /* the signed entity ends with its closing delimiter line */
    CHECK(sp.inner.n > 4 && memcmp(sp.inner.p + sp.inner.n - 4, "--\r\n", 4) == 0);
    free(ctype);
    free(boundary);
    signed_parts_free(&sp);
    free(body.p);
    free(path);
}

static void test_three_parts(void)
{
    struct pec_part alt[2], parts[3];
    struct pec_built b1, b2;
    struct bytes m1, m2;
    char *cmd, *path;

    make_parts(alt, parts, NULL);
    CHECK(build(parts, 3, &b1) == 0);
    check_envelope(&b1, "envelope-3parts", eml, sizeof(eml) - 1);

    /* reproducible: same parts, same instant, same bytes */
    CHECK(build(parts, 3, &b2) == 0);
    m1 = built_bytes(&b1);
    m2 = built_bytes(&b2);
    CHECK(m1.n == m2.n && memcmp(m1.p, m2.p, m1.n) == 0);

    /* Python's email package sees the layout we meant, and decodes the text back */
    path = xasprintf("%s/envelope-3parts.eml", env.outdir);
    cmd = xasprintf(
        "python3 -c '\n"
        "import email, sys\n"
        "m = email.message_from_binary_file(open(sys.argv[1], \"rb\"))\n"
        "shape = [p.get_content_type() for p in m.walk()]\n"
        "want = [\"multipart/signed\", \"multipart/mixed\", \"multipart/alternative\", "
        "\"text/plain\", \"text/html\", \"application/xml\", \"message/rfc822\", \"text/plain\", "
        "\"application/pkcs7-signature\"]\n"
        "assert shape == want, shape\n"
        "t = [p for p in m.walk()][3].get_payload(decode=True)\n"
        "assert t == open(sys.argv[2], \"rb\").read().replace(b\"\\r\\n\", b\"\\n\"), t\n"
        "' '%s' '%s/envelope-text.txt'",
        path, env.outdir);
    {
        char *tp = xasprintf("%s/envelope-text.txt", env.outdir);

        CHECK(write_file(tp, text_latin1, sizeof(text_latin1) - 1) == 0);
        CHECK(run(cmd) == 0);
        unlink(tp);
        free(tp);
    }
    free(cmd);
    free(path);
    free(m1.p);
    free(m2.p);
    pec_built_free(&b1);
    pec_built_free(&b2);
}

/* a part given as a spool on file, and an issuer whose spools go to file at once */
static void test_on_file(void)
{
    struct pec_spool *sp = pec_spool_new(NULL, 16);
    struct pec_part alt[2], parts[3];
    struct pec_issuer saved = env.iss;
    struct pec_built b;

    CHECK(pec_spool_write(sp, eml, sizeof(eml) - 1) == 0);
    CHECK(pec_spool_mem(sp) == NULL);
    make_parts(alt, parts, sp);
    env.iss.spool_mem_limit = 0;
    CHECK(build(parts, 3, &b) == 0);
    CHECK(b.body != NULL && pec_spool_mem(b.body) == NULL);
    check_envelope(&b, "envelope-onfile", eml, sizeof(eml) - 1);
    env.iss = saved;
    pec_built_free(&b);
    pec_spool_free(sp);
}

/* a 7bit part that contains the boundary we would choose makes us choose another */
static void test_boundary_collision(void)
{
    struct pec_spool *sp = pec_spool_new(NULL, 1 << 20);
    struct pec_part alt[2], parts[3];
    struct pec_built b1, b2;
    char *first, *second;
    char filler[200];

    memset(filler, 'x', sizeof(filler));
    CHECK(pec_spool_write(sp, filler, sizeof(filler)) == 0);
    make_parts(alt, parts, sp);
    CHECK(build(parts, 3, &b1) == 0);
    first = boundary_of(pec_headers_get(&b1.headers, "Content-Type"));
    CHECK(first != NULL && strlen(first) < 100);
    pec_spool_free(sp);

    /* same size, so the same shape, now holding the outer boundary in its middle */
    sp = pec_spool_new(NULL, 1 << 20);
    memcpy(filler + 50, "--", 2);
    memcpy(filler + 52, first, strlen(first));
    CHECK(pec_spool_write(sp, filler, sizeof(filler)) == 0);
    parts[2].spool = sp;
    CHECK(build(parts, 3, &b2) == 0);
    second = boundary_of(pec_headers_get(&b2.headers, "Content-Type"));
    CHECK(second != NULL && first != NULL && strcmp(first, second) != 0);
    check_envelope(&b2, "envelope-collision", filler, sizeof(filler));
    free(first);
    free(second);
    pec_built_free(&b1);
    pec_built_free(&b2);
    pec_spool_free(sp);
}

static void test_refusals(void)
{
    struct pec_part bad = {.content_type = "text/plain",
                           .encoding = "uuencode",
                           .data = (const unsigned char *)"x",
                           .len = 1};
    struct pec_part folded = {.content_type = "text/plain;\r\n charset=x", .encoding = "7bit"};
    struct pec_built b = {0};
    char err[256] = "";

    CHECK(pec_envelope_sign(&env.iss, &bad, 1, 0, &b, err, sizeof(err)) == -1);
    CHECK(strstr(err, "uuencode") != NULL);
    CHECK(pec_envelope_sign(&env.iss, &folded, 1, 0, &b, err, sizeof(err)) == -1);
    CHECK(pec_envelope_sign(&env.iss, &bad, 0, 0, &b, err, sizeof(err)) == -1);
    CHECK(b.body == NULL && b.headers.n == 0);
}

int main(void)
{
    testenv_init(&env);
    test_three_parts();
    test_on_file();
    test_boundary_collision();
    test_refusals();
    testenv_free(&env);
    return check_exit();
}
