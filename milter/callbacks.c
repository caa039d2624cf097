/*
 * callbacks - the libmilter callbacks: thin glue between the MTA and libpec.
 *
 * One connection context (born at negotiation, holding the runtime it
 * started with) and one message context (born in MAIL FROM, freed by
 * msg_end() from eom, abort, close and every error path).  The role of a
 * message comes from the {daemon_name} macro through the configuration, or
 * from whether the client authenticated; it is decided at MAIL FROM, when
 * both are known.  From then on every event goes to the role's operations
 * (role.h); this file knows no PEC.
 */
#include "callbacks.h"

#include "log.h"
#include "mta.h"
#include "role.h"
#include "runtime.h"
#include "util/xalloc.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* What pecmilter may ask the MTA to do; a connection without them is refused. */
#define NEEDED_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY)
/* the stages pecmilter answers only at end of message, when the MTA allows */
#define QUIET (SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)

enum role { ROLE_PASSTHROUGH, ROLE_ACCESS, ROLE_RECEPTION };

/* The module serving each role; passthrough needs none. */
static const struct role_ops *const role_modules[] = {
    [ROLE_PASSTHROUGH] = NULL,
    [ROLE_ACCESS] = &access_role,
    [ROLE_RECEPTION] = &reception_role,
};

static struct conn *conn_of(SMFICTX *ctx)
{
    return smfi_getpriv(ctx);
}

static void msg_end(struct conn *c)
{
    struct msg *m = c ? c->msg : NULL;

    if (m == NULL)
        return;
    if (m->ops && m->ops->end && m->state)
        m->ops->end(m->state);
    free(m->qid);
    free(m);
    c->msg = NULL;
}

/*
 * The queue id: Sendmail has it at MAIL FROM, Postfix only after the first
 * valid RCPT; asked for again at every later stage (cb_negotiate).
 */
const char *msg_qid(SMFICTX *ctx, struct msg *m)
{
    if (m->qid == NULL) {
        const char *q = mta_macro(ctx, "i");
        if (q && *q)
            m->qid = xstrdup(q);
    }
    return m->qid ? m->qid : "NOQUEUE";
}

static enum role role_from_name(const char *name)
{
    if (strcmp(name, "access") == 0)
        return ROLE_ACCESS;
    if (strcmp(name, "reception") == 0)
        return ROLE_RECEPTION;
    return ROLE_PASSTHROUGH;
}

/* The connection context, created on first use (negotiation, or connect for an old MTA). */
static struct conn *conn_get(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);

    if (c != NULL)
        return c;
    c = xcalloc(1, sizeof(*c));
    if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
        log_err(NULL, "smfi_setpriv failed");
        free(c);
        return NULL;
    }
    return c;
}

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    struct conn *c;

    if ((f0 & NEEDED_ACTIONS) != NEEDED_ACTIONS) {
        log_err(NULL,
                "MTA offers milter actions 0x%lx, pecmilter needs 0x%lx (add/change headers, "
                "replace body): refusing the connection",
                f0, (unsigned long)NEEDED_ACTIONS);
        return SMFIS_REJECT;
    }
    if ((c = conn_get(ctx)) == NULL)
        return SMFIS_TEMPFAIL;
    *pf0 = NEEDED_ACTIONS;
    /*
     * Leading spaces of header values are kept, so an original can be
     * rebuilt byte for byte.  No HELO, DATA or unknown-command events (no
     * role reads them), and no reply to each header, to end of header or to
     * each body chunk: the roles only collect there and give their verdict
     * at end of message, so those replies would be round trips that carry
     * nothing (a 4 KB message has a dozen of them).
     */
    *pf1 = f1 & (SMFIP_HDR_LEADSPC | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOHELO | QUIET);
    c->leadspc = (f1 & SMFIP_HDR_LEADSPC) != 0;
    c->quiet = f1 & QUIET;
    *pf2 = 0;
    *pf3 = 0;
    if (f0 & SMFIF_SETSYMLIST) {
        /*
         * What the roles read, at the stage they read it: {daemon_name} at
         * connect (Sendmail's Name= of the listener, Postfix's
         * milter_macro_daemon_name), {auth_authen} and {tls_version} at MAIL FROM, the queue
         * id from MAIL FROM on.  This list replaces the MTA's configured one
         * for pecmilter (Sendmail's Milter.macros.*, Postfix's
         * milter_*_macros); contrib/sendmail/pecmilter.mc sets the same.
         */
        *pf0 |= SMFIF_SETSYMLIST;
        if (smfi_setsymlist(ctx, SMFIM_CONNECT, "{daemon_name} {client_addr} {client_name} j _") !=
                MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_ENVFROM,
                            "i {auth_authen} {auth_type} {mail_addr} {tls_version}") !=
                MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i {rcpt_addr}") != MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_EOH, "i") != MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_EOM, "i") != MI_SUCCESS)
            log_warn(NULL, "smfi_setsymlist failed; relying on the MTA's default macros");
    }
    return SMFIS_CONTINUE;
}

/* ADDR (the MTA's word on the client) is this machine: 127/8, ::1 or ::ffff:127/104. */
static int is_loopback(const _SOCK_ADDR *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;

    if (addr == NULL)
        return 0;
    if (addr->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127;
    if (addr->sa_family != AF_INET6)
        return 0;
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
           (memcmp(in6->sin6_addr.s6_addr, mapped, sizeof(mapped)) == 0 &&
            in6->sin6_addr.s6_addr[12] == 127);
}

static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *addr)
{
    struct conn *c = conn_get(ctx);
    const char *dn = mta_macro(ctx, "{daemon_name}");

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    runtime_put(c->rt);
    free(c->daemon_name);
    free(c->client);
    c->rt = runtime_get();
    c->daemon_name = dn ? xstrdup(dn) : NULL;
    c->client = xstrdup(hostname ? hostname : "unknown");
    c->loopback = is_loopback(addr);
    return SMFIS_CONTINUE;
}

/* A role's verdict that ends the message frees it at once. */
static sfsistat settle(struct conn *c, sfsistat st)
{
    if (st != SMFIS_CONTINUE)
        msg_end(c);
    return st;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct conn *c = conn_of(ctx);
    const char *auth;
    const char *role;
    struct msg *m;

    if (c == NULL || c->rt == NULL)
        return SMFIS_TEMPFAIL;
    msg_end(c);
    c->held = SMFIS_CONTINUE;
    m = c->msg = xcalloc(1, sizeof(*c->msg));
    auth = mta_macro(ctx, "{auth_authen}");
    role = pec_config_role(c->rt->cfg, c->daemon_name, auth != NULL && *auth != '\0');
    m->ops = role_modules[role_from_name(role)];
    if (m->ops == NULL) {
        log_debug(msg_qid(ctx, m), "passthrough: from=%s daemon=%s", argv[0],
                  c->daemon_name ? c->daemon_name : "-");
        msg_end(c);
        return SMFIS_ACCEPT;
    }
    return settle(c, m->ops->envfrom(ctx, c, m, argv));
}

/* The role of the message under way, or NULL (then the event is ignored). */
static struct msg *msg_of(SMFICTX *ctx, struct conn **cp)
{
    struct conn *c = conn_of(ctx);

    *cp = c;
    return c && c->msg && c->msg->ops ? c->msg : NULL;
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
    struct conn *c;
    struct msg *m = msg_of(ctx, &c);

    if (m == NULL || m->ops->envrcpt == NULL)
        return SMFIS_CONTINUE;
    /* a refused recipient ends only itself, not the message */
    return m->ops->envrcpt(ctx, c, m, argv);
}

/*
 * The answer at a stage where the MTA may expect none (QUIET): there a
 * verdict that ends the message is held and given at end of message.
 */
static sfsistat answer(struct conn *c, unsigned long nr, sfsistat st)
{
    if (c == NULL || (c->quiet & nr) == 0)
        return st;
    if (st != SMFIS_CONTINUE && c->held == SMFIS_CONTINUE)
        c->held = st;
    return SMFIS_NOREPLY;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
    struct conn *c;
    struct msg *m = msg_of(ctx, &c);
    sfsistat st;

    if (m == NULL || m->ops->header == NULL)
        return answer(c, SMFIP_NR_HDR, SMFIS_CONTINUE);
    if (c->leadspc || value[0] == ' ' || value[0] == '\t' || value[0] == '\0')
        return answer(c, SMFIP_NR_HDR, settle(c, m->ops->header(ctx, c, m, name, value)));
    /*
     * Without SMFIP_HDR_LEADSPC the MTA ate the space after the colon; put
     * the usual one back (a header sent as "Name:value" gains a space).
     */
    {
        char *spaced = xasprintf(" %s", value);
        st = m->ops->header(ctx, c, m, name, spaced);
        free(spaced);
    }
    return answer(c, SMFIP_NR_HDR, settle(c, st));
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
    struct conn *c;
    struct msg *m = msg_of(ctx, &c);

    if (m == NULL || m->ops->eoh == NULL)
        return answer(c, SMFIP_NR_EOH, SMFIS_CONTINUE);
    return answer(c, SMFIP_NR_EOH, settle(c, m->ops->eoh(ctx, c, m)));
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
    struct conn *c;
    struct msg *m = msg_of(ctx, &c);

    if (m == NULL || m->ops->body == NULL)
        return answer(c, SMFIP_NR_BODY, SMFIS_CONTINUE);
    return answer(c, SMFIP_NR_BODY, settle(c, m->ops->body(ctx, c, m, buf, len)));
}

static sfsistat cb_eom(SMFICTX *ctx)
{
    struct conn *c;
    struct msg *m = msg_of(ctx, &c);
    sfsistat st = SMFIS_CONTINUE;

    if (c != NULL && c->held != SMFIS_CONTINUE)
        st = c->held; /* the message ended at a quiet stage */
    else if (m != NULL && m->ops->eom != NULL)
        st = m->ops->eom(ctx, c, m);
    msg_end(c);
    if (c != NULL)
        c->held = SMFIS_CONTINUE;
    return st;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);

    msg_end(c);
    if (c != NULL)
        c->held = SMFIS_CONTINUE;
    return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);

    if (c == NULL)
        return SMFIS_CONTINUE;
    msg_end(c);
    runtime_put(c->rt);
    free(c->daemon_name);
    free(c->client);
    free(c);
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

struct smfiDesc *callbacks_descriptor(void)
{
    static struct smfiDesc desc = {
        .xxfi_name = "pecmilter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = NEEDED_ACTIONS | SMFIF_SETSYMLIST,
        .xxfi_connect = cb_connect,
        .xxfi_envfrom = cb_envfrom,
        .xxfi_envrcpt = cb_envrcpt,
        .xxfi_header = cb_header,
        .xxfi_eoh = cb_eoh,
        .xxfi_body = cb_body,
        .xxfi_eom = cb_eom,
        .xxfi_abort = cb_abort,
        .xxfi_close = cb_close,
        .xxfi_negotiate = cb_negotiate,
    };
    return &desc;
}
