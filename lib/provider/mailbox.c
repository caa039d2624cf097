/*
 * mailbox - the backend named in the configuration, and results.
 */
#include "provider/mailbox.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void pec_mbox_result_set(struct pec_mbox_result *res, enum pec_mbox_status st, int code,
                         const char *esc, const char *fmt, ...)
{
    va_list ap;

    res->status = st;
    res->code = code;
    snprintf(res->esc, sizeof(res->esc), "%s", esc);
    va_start(ap, fmt);
    vsnprintf(res->text, sizeof(res->text), fmt, ap);
    va_end(ap);
    for (char *s = res->text; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

void pec_mbox_deliver(const struct pec_mbox_conf *mc, const char *sender, const char *const *rcpt,
                      size_t n, const struct pec_spool *msg, int eight_bit,
                      struct pec_mbox_result *res)
{
    if (strcmp(mc->backend, "lmtp") == 0) {
        pec_mbox_lmtp_deliver(mc, sender, rcpt, n, msg, eight_bit, res);
        return;
    }
    for (size_t i = 0; i < n; i++)
        pec_maildir_deliver(mc, sender, rcpt[i], msg, &res[i]);
}
