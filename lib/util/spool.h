/*
 * spool - a byte buffer that moves to a temporary file when it grows.
 *
 * Messages pass through pecmilter in pieces (milter body chunks, LMTP DATA);
 * a 30 MB original must not sit in memory once per concurrent submission.  A
 * spool keeps its bytes in memory up to a limit, then in an unlinked temporary
 * file in the configured directory, and reads back sequentially or at an
 * offset.  One writer; readers only after writing is done.
 */
#ifndef PEC_SPOOL_H
#define PEC_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

struct pec_spool;

/* DIR: where temporary files go (NULL: $TMPDIR, else /tmp); MEM_LIMIT: bytes kept in memory. */
struct pec_spool *pec_spool_new(const char *dir, size_t mem_limit);
void pec_spool_free(struct pec_spool *sp);

/* Append; 0, or -1 with errno set (disk full, unwritable directory). */
int pec_spool_write(struct pec_spool *sp, const void *buf, size_t len);
int pec_spool_puts(struct pec_spool *sp, const char *s);
int pec_spool_printf(struct pec_spool *sp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * Append, making every bare LF a CRLF (a CR ending the previous write counts), so text
 * that arrives with Unix line ends is stored as it travels over SMTP.
 */
int pec_spool_write_crlf(struct pec_spool *sp, const void *buf, size_t len);
/* Append LEN bytes of SRC from offset OFF (SRC and DST distinct). */
int pec_spool_copy(struct pec_spool *dst, const struct pec_spool *src, size_t off, size_t len);

size_t pec_spool_size(const struct pec_spool *sp);
/* 0, or the errno of the first write that failed: the spool then refuses every write */
int pec_spool_error(const struct pec_spool *sp);

/* Read up to LEN bytes at OFF; returns the count (0 at the end), -1 on I/O error. */
ssize_t pec_spool_pread(const struct pec_spool *sp, size_t off, void *buf, size_t len);

/*
 * Call FN on consecutive chunks of [OFF, OFF+LEN); stops and returns FN's non-zero result,
 * or -1 with errno set when reading the file fails.
 */
int pec_spool_each(const struct pec_spool *sp, size_t off, size_t len,
                   int (*fn)(const unsigned char *chunk, size_t n, void *arg), void *arg);

/* The bytes, when the spool is still in memory; NULL once it went to a file. */
const unsigned char *pec_spool_mem(const struct pec_spool *sp);

/*
 * All the bytes in memory, for a reader that needs them at once (the inspection): the
 * spool's own, or a copy in *COPY (xmalloc'ed, the caller frees it; NULL when none was
 * made).  NULL with errno when reading the file fails.
 */
const unsigned char *pec_spool_whole(const struct pec_spool *sp, unsigned char **copy);

#endif
