/*
 * callbacks - the libmilter callbacks: thin glue between the MTA and libpec.
 *
 * One connection context (born in connect, holding the runtime it started
 * with) and one message context (born in MAIL FROM, freed by msg_end() from
 * eom, abort, close and every error path).  The role of a connection comes
 * from the {daemon_name} macro through the configuration, or from whether
 * the client authenticated; it is decided at MAIL FROM, when both are known.
 */
#include "callbacks.h"

#include "log.h"
#include "mta.h"
#include "runtime.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* What pecmilter may ask the MTA to do; a connection without them is refused. */
#define NEEDED_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY)

enum role { ROLE_PASSTHROUGH, ROLE_ACCESS, ROLE_RECEPTION };

struct msg {
    char *qid;
    enum role role;
};

struct conn {
    struct runtime *rt;
    char *daemon_name;
    char *client;
    struct msg *msg;
};

static struct conn *conn_of(SMFICTX *ctx)
{
    return smfi_getpriv(ctx);
}

static void msg_end(struct conn *c)
{
    if (c == NULL || c->msg == NULL)
        return;
    free(c->msg->qid);
    free(c->msg);
    c->msg = NULL;
}

/* The queue id is assigned late by Postfix (after the first valid RCPT). */
static const char *msg_qid(SMFICTX *ctx, struct msg *m)
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

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    if ((f0 & NEEDED_ACTIONS) != NEEDED_ACTIONS) {
        log_err(NULL,
                "MTA offers milter actions 0x%lx, pecmilter needs 0x%lx (add/change headers, "
                "replace body): refusing the connection",
                f0, (unsigned long)NEEDED_ACTIONS);
        return SMFIS_REJECT;
    }
    *pf0 = NEEDED_ACTIONS;
    /* Leading spaces of header values are kept, so an original can be rebuilt byte for byte. */
    *pf1 = f1 & (SMFIP_HDR_LEADSPC | SMFIP_NOUNKNOWN | SMFIP_NODATA);
    *pf2 = 0;
    *pf3 = 0;
    if (f0 & SMFIF_SETSYMLIST) {
        /* Sendmail sends few macros unless asked; Postfix honours the request too. */
        *pf0 |= SMFIF_SETSYMLIST;
        if (smfi_setsymlist(ctx, SMFIM_CONNECT, "{daemon_name} {client_addr} {client_name} j _") !=
                MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_ENVFROM, "i {auth_authen} {auth_type} {mail_addr}") !=
                MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i {rcpt_addr}") != MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_EOH, "i") != MI_SUCCESS ||
            smfi_setsymlist(ctx, SMFIM_EOM, "i") != MI_SUCCESS)
            log_warn(NULL, "smfi_setsymlist failed; relying on the MTA's default macros");
    }
    return SMFIS_CONTINUE;
}

static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *addr)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    const char *dn = mta_macro(ctx, "{daemon_name}");

    c->rt = runtime_get();
    c->daemon_name = dn ? xstrdup(dn) : NULL;
    c->client = xstrdup(hostname ? hostname : "unknown");
    if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
        log_err(NULL, "smfi_setpriv failed");
        runtime_put(c->rt);
        free(c->daemon_name);
        free(c->client);
        free(c);
        return SMFIS_TEMPFAIL;
    }
    return SMFIS_CONTINUE;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct conn *c = conn_of(ctx);
    const char *auth;
    const char *role;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    msg_end(c);
    c->msg = xcalloc(1, sizeof(*c->msg));
    auth = mta_macro(ctx, "{auth_authen}");
    role = pec_config_role(c->rt->cfg, c->daemon_name, auth != NULL && *auth != '\0');
    c->msg->role = role_from_name(role);

    switch (c->msg->role) {
    case ROLE_PASSTHROUGH:
        log_debug(msg_qid(ctx, c->msg), "passthrough: from=%s daemon=%s", argv[0],
                  c->daemon_name ? c->daemon_name : "-");
        msg_end(c);
        return SMFIS_ACCEPT;
    case ROLE_ACCESS:
    case ROLE_RECEPTION:
        break;
    }
    /* Never let mail pass uncertified: a role this build cannot serve is a temporary failure. */
    log_err(msg_qid(ctx, c->msg), "role %s is not available in this build; message deferred", role);
    mta_setreply(ctx, msg_qid(ctx, c->msg), "451", "4.3.0",
                 "PEC certification is not available on this service yet, try again later");
    msg_end(c);
    return SMFIS_TEMPFAIL;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
    msg_end(conn_of(ctx));
    return SMFIS_CONTINUE;
}

static sfsistat cb_eom(SMFICTX *ctx)
{
    msg_end(conn_of(ctx));
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
        .xxfi_eom = cb_eom,
        .xxfi_abort = cb_abort,
        .xxfi_close = cb_close,
        .xxfi_negotiate = cb_negotiate,
    };
    return &desc;
}
