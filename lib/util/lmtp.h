/*
 * lmtp - the server side of LMTP (RFC 2033), on one connected socket.
 *
 * Postfix hands final deliveries for the PEC domains to the delivery point
 * over LMTP because LMTP answers DATA once per recipient: each recipient's
 * mailbox succeeds or fails on its own, and so does its receipt.  This
 * module speaks the protocol and nothing else; what a delivery does is the
 * caller's DELIVER function (deliver.h in the daemon, a fake in the tests).
 *
 * What the session promises:
 *   - LHLO first; HELO and EHLO are refused, as RFC 2033 asks.  Offered:
 *     PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SIZE <max_size>.
 *   - MAIL FROM:<path> with SIZE= and BODY=7BIT|8BITMIME, RCPT TO:<path>,
 *     DATA, RSET, NOOP, QUIT, VRFY (252); anything else 500/502, an unknown
 *     parameter 555, a command out of order 503.
 *   - Pipelined commands are answered in order; replies are written when
 *     the client has nothing more to say, so a pipelined group costs one
 *     round trip.
 *   - DATA is read to the lone dot whatever happens, dot-unstuffed, with
 *     bare LF line ends made CRLF, into a spool (large messages go to a
 *     file), with no limit on the length of a text line.  A message larger
 *     than max_size is refused (552 5.3.4) once it is over, per recipient.
 *   - After DATA, exactly one reply per accepted recipient, in RCPT order,
 *     as DELIVER decided.
 *   - A command line longer than PEC_LMTP_LINE_MAX is refused (500 5.5.2),
 *     more than PEC_LMTP_MAX_ERRORS bad commands end the session (421), and
 *     so does TIMEOUT seconds of silence from the client (421 4.4.2).
 */
#ifndef PEC_LMTP_H
#define PEC_LMTP_H

#include <stddef.h>

#include "util/spool.h"

#define PEC_LMTP_LINE_MAX 2048 /* a command line, CRLF included */
#define PEC_LMTP_MAX_ERRORS 20 /* bad commands before the session is dropped */
#define PEC_LMTP_TIMEOUT 300   /* seconds: RFC 5321 4.5.3.2 waits at most 5 minutes */
#define PEC_LMTP_MAX_RCPT 1000 /* recipients per transaction; more get 452 4.5.3 */
#define PEC_LMTP_REPLY_MAX 512 /* a reply line, without CRLF */

/* One transaction, as DELIVER gets it. */
struct pec_lmtp_msg {
    const char *sender;      /* MAIL FROM address, "" for the null sender */
    const char *const *rcpt; /* RCPT TO addresses, without angle brackets */
    size_t nrcpt;
    const struct pec_spool *data; /* the message, CRLF, unstuffed */
    int eight_bit;                /* the client said BODY=8BITMIME */
    const char *session;          /* "lmtp<conn>.<n>": names the transaction in the log */
};

/* The reply for one recipient: "250 2.0.0 <a@b> delivered", without CRLF. */
struct pec_lmtp_reply {
    char text[PEC_LMTP_REPLY_MAX];
};

/* Fill RES[0..m->nrcpt) with one reply each; must not fail to. */
typedef void pec_lmtp_deliver_fn(void *arg, const struct pec_lmtp_msg *m,
                                 struct pec_lmtp_reply *res);

/* Where the session's own lines go (protocol errors, timeouts). */
typedef void pec_lmtp_log_fn(int prio, const char *qid, const char *text);

struct pec_lmtp_proto {
    const char *hostname;  /* in the greeting and LHLO reply */
    int timeout;           /* seconds; 0: PEC_LMTP_TIMEOUT */
    size_t max_size;       /* bytes of DATA; also the SIZE offered */
    const char *spool_dir; /* where large messages go; NULL: $TMPDIR */
    size_t spool_mem;      /* bytes kept in memory before the spool moves to a file */
    pec_lmtp_deliver_fn *deliver;
    void *arg;
    pec_lmtp_log_fn *log; /* NULL: nowhere */
    unsigned long conn;   /* connection number, for session names */
};

/*
 * Run one session on FD until QUIT, end of input, a timeout or too many
 * errors; FD stays open.  Returns 0 after QUIT, -1 otherwise.
 */
int pec_lmtp_session(int fd, const struct pec_lmtp_proto *p);

/* Format "CODE STATUS TEXT" into R; control characters in TEXT become spaces. */
void pec_lmtp_reply_set(struct pec_lmtp_reply *r, int code, const char *status, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

#endif
