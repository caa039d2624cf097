/*
 * mta - every call from the callbacks to the MTA goes through here.
 *
 * Thin wrappers over libmilter's smfi_* functions, as OpenDKIM has them: one
 * place that logs a failed request with the queue id, and one seam where a
 * unit test could put a fake MTA.
 */
#ifndef PECMILTER_MTA_H
#define PECMILTER_MTA_H

#include <libmilter/mfapi.h>

const char *mta_macro(SMFICTX *ctx, const char *name);
int mta_setreply(SMFICTX *ctx, const char *qid, const char *rcode, const char *xcode,
                 const char *text);
int mta_addheader(SMFICTX *ctx, const char *qid, const char *name, const char *value);
int mta_chgheader(SMFICTX *ctx, const char *qid, const char *name, int index, const char *value);
int mta_insheader(SMFICTX *ctx, const char *qid, int index, const char *name, const char *value);
int mta_replacebody(SMFICTX *ctx, const char *qid, const unsigned char *buf, size_t len);

#endif
