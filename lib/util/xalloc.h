/*
 * xalloc - allocation that either succeeds or stops the process.
 *
 * As in Postfix: running out of memory is not an error a mail filter can
 * usefully recover from message by message, so these wrappers log one line to
 * stderr and abort instead of returning NULL.  Callers never check.
 */
#ifndef PEC_XALLOC_H
#define PEC_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The N strings of V with ", " between them ("a@x, b@y"), as log lines list addresses. */
char *xjoin(char *const *v, size_t n);

#endif
