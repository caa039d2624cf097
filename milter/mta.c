/*
 * mta - every call from the callbacks to the MTA goes through here.
 */
#include "mta.h"

#include "log.h"

#include <string.h>

const char *mta_macro(SMFICTX *ctx, const char *name)
{
    return smfi_getsymval(ctx, (char *)name);
}

int mta_setreply(SMFICTX *ctx, const char *qid, const char *rcode, const char *xcode,
                 const char *text)
{
    /* libmilter passes the text to the MTA as a format: keep '%' literal */
    char safe[512];
    size_t j = 0;

    for (size_t i = 0; text[i] && j + 2 < sizeof(safe); i++) {
        if (text[i] == '%')
            safe[j++] = '%';
        safe[j++] = text[i] == '\r' || text[i] == '\n' ? ' ' : text[i];
    }
    safe[j] = '\0';
    if (smfi_setreply(ctx, (char *)rcode, (char *)xcode, safe) != MI_SUCCESS) {
        log_err(qid, "smfi_setreply(%s %s) failed", rcode, xcode);
        return -1;
    }
    return 0;
}

int mta_addheader(SMFICTX *ctx, const char *qid, const char *name, const char *value)
{
    if (smfi_addheader(ctx, (char *)name, (char *)value) != MI_SUCCESS) {
        log_err(qid, "smfi_addheader(%s) failed", name);
        return -1;
    }
    return 0;
}

int mta_chgheader(SMFICTX *ctx, const char *qid, const char *name, int index, const char *value)
{
    if (smfi_chgheader(ctx, (char *)name, index, (char *)value) != MI_SUCCESS) {
        log_err(qid, "smfi_chgheader(%s, %d) failed", name, index);
        return -1;
    }
    return 0;
}

int mta_insheader(SMFICTX *ctx, const char *qid, int index, const char *name, const char *value)
{
    if (smfi_insheader(ctx, index, (char *)name, (char *)value) != MI_SUCCESS) {
        log_err(qid, "smfi_insheader(%s) failed", name);
        return -1;
    }
    return 0;
}

int mta_replacebody(SMFICTX *ctx, const char *qid, const unsigned char *buf, size_t len)
{
    if (smfi_replacebody(ctx, (unsigned char *)buf, (int)len) != MI_SUCCESS) {
        log_err(qid, "smfi_replacebody(%zu bytes) failed", len);
        return -1;
    }
    return 0;
}
