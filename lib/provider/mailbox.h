/*
 * mailbox - where the delivery point stores a message: the built-in
 * Maildir backend or a mailbox server spoken to over LMTP (Dovecot).
 *
 * The answer is per recipient and in SMTP terms (a reply code, an enhanced
 * status code and a short text), because that is what both the LMTP reply
 * to Postfix and the errore-esteso of an avviso di mancata consegna are
 * made of.  Three outcomes: stored; refused for now (the MTA retries);
 * refused for good (no such mailbox, mailbox full, disabled).
 *
 * Maildir: the mailbox of local@domain is ROOT/<local, lower case>/, for
 * every domain the caller accepted.  A mailbox exists when its directory
 * does: the administrator made it (pec_maildir_add(), `pecctl mailbox add'),
 * nothing makes one at a delivery, which would certify an avvenuta consegna
 * to an address nobody owns.  A root that is missing (an unmounted volume)
 * defers.  The
 * message is written to tmp/ with Return-Path and Delivered-To in front
 * (RFC 5321 4.4), fsynced, renamed into new/, and new/ is fsynced: once
 * pec_maildir_deliver() says stored, a crash cannot take the message back.
 * A quota (EDQUOT) or file size limit is "mailbox full", for good; a full
 * disk is temporary.  The bytes are kept as they came, CRLF, so the
 * signature of a PEC message is over exactly what the mailbox holds.
 *
 * A message delivered with a message_id (a verified PEC message, see
 * deliver.h) carries in its file name, after the counter, "X" and 32 hex
 * digits of SHA-256(lower-case rcpt NUL Message-ID), the rest of the name
 * as usual (so names still sort by time).  Its marker, the symbolic link
 * pec-keys/X<hex> in the mailbox (not a dot name, which Maildir++ readers
 * take for a folder; never followed, only read), holds the name the file
 * got in new/.  It is put in place (made beside, renamed over any old one)
 * after the file is written and before the file's rename into new/, and
 * pec-keys/ is fsynced with new/.  When the marker names a file still in
 * new/, or in cur/ under that name with the flags the user's client added
 * (":2,S"), the message is stored already: the result is "stored" (text
 * "already in its mailbox") and nothing is written.  So a delivery the MTA
 * repeats because we crashed after the rename and before saying 250 finds
 * its own file instead of making a second copy, and a crash between the
 * marker and the rename leaves a marker without its file, which is
 * delivered again.  The check is one readlink and one stat while the file
 * is in new/; only a repeated delivery whose file was moved reads cur/.
 * A file the user deleted is delivered again; the store's record
 * (deliver.h) is what guards that case.  A mailbox without pec-keys/ (from
 * before the markers) has new/ and cur/ searched for the key in the file
 * names once, when pec-keys/ is made.  A marker only matters until the
 * store records the delivery (deliver.h) or, when a crash came first, while
 * the MTA may still repeat it (its queue lifetime, 5 days by Postfix's
 * default): pec_maildir_prune() removes older ones (the scheduler, daily,
 * `maildir_marker_days`).
 *
 * LMTP: one session per message with the server, every recipient in it;
 * each RCPT and the per-recipient DATA replies are passed on as the server
 * gave them.  A server that cannot be reached, times out or breaks the
 * session makes every recipient still undecided temporary.
 */
#ifndef PEC_MAILBOX_H
#define PEC_MAILBOX_H

#include <stddef.h>
#include <time.h>

#include "util/spool.h"

enum pec_mbox_status {
    PEC_MBOX_STORED,
    PEC_MBOX_TEMP,
    PEC_MBOX_PERM,
};

struct pec_mbox_result {
    enum pec_mbox_status status;
    int code;       /* 250, 4xx, 5xx */
    char esc[16];   /* enhanced status code: "2.0.0", "5.1.1" */
    char text[256]; /* one line, no code, e.g. "no such mailbox" */
};

struct pec_mbox_conf {
    const char *backend; /* "maildir" or "lmtp" */
    const char *maildir_root;
    const char *lmtp;       /* the server's socket spec */
    const char *hostname;   /* our name: LHLO, Maildir file names */
    int timeout;            /* seconds per LMTP exchange; 0: 300 */
    const char *message_id; /* Maildir: name the file after it (see above); NULL: unique name */
};

/*
 * Store MSG (CRLF) for SENDER ("" for the null sender) into each mailbox
 * RCPT[0..N); RES[i] says what became of RCPT[i].  Never fails as a whole.
 */
void pec_mbox_deliver(const struct pec_mbox_conf *mc, const char *sender, const char *const *rcpt,
                      size_t n, const struct pec_spool *msg, int eight_bit,
                      struct pec_mbox_result *res);

/* One recipient into its Maildir (see above). */
void pec_maildir_deliver(const struct pec_mbox_conf *mc, const char *sender, const char *rcpt,
                         const struct pec_spool *msg, struct pec_mbox_result *res);

/*
 * Remove the markers (pec-keys/ of every mailbox under ROOT) last changed
 * before BEFORE, never a message; *N counts them.  0, or -1 with err naming
 * the first directory that could not be read (the others are pruned all
 * the same).
 */
int pec_maildir_prune(const char *root, time_t before, long long *n, char *err, size_t errlen);

/* Every recipient through the LMTP server mc->lmtp. */
void pec_mbox_lmtp_deliver(const struct pec_mbox_conf *mc, const char *sender,
                           const char *const *rcpt, size_t n, const struct pec_spool *msg,
                           int eight_bit, struct pec_mbox_result *res);

/*
 * Does each mailbox RCPT[0..N) exist?  Nothing is stored: RES[i] is PEC_MBOX_STORED
 * (code 250) when RCPT[i] would be taken, else the refusal a delivery would get now
 * (5.1.1 no such mailbox, 5.2.1 disabled, a temporary 4xx...).  Maildir: its
 * directory; LMTP: the server's answer to RCPT TO in a session that sends no DATA.
 */
void pec_mbox_probe(const struct pec_mbox_conf *mc, const char *const *rcpt, size_t n,
                    struct pec_mbox_result *res);

/* The Maildir directory name of RCPT's local part, lower case; NULL when it cannot be one. */
char *pec_maildir_box_name(const char *rcpt);

/*
 * The built-in backend's mailboxes, as an administrator keeps them (`pecctl mailbox').
 * Add ADDRESS's mailbox under ROOT (tmp, new, cur; owned as ROOT is): 0 made, 1 it
 * existed, -1 with err.  Remove it: moved aside whole, messages and all, into
 * ROOT/.removed/<name>.<UTC time> (named in MOVED), never deleted: 0, 1 no such
 * mailbox, -1 with err.  List them, by name, with the messages in new/ and cur/ (-1
 * when unreadable): FN's non-zero result stops and is returned; -1 with err when ROOT
 * cannot be read.
 */
int pec_maildir_add(const char *root, const char *address, char *err, size_t errlen);
int pec_maildir_del(const char *root, const char *address, char *moved, size_t movedlen, char *err,
                    size_t errlen);
int pec_maildir_list(const char *root,
                     int (*fn)(const char *name, long long fresh, long long seen, void *arg),
                     void *arg, char *err, size_t errlen);

/* Set RES; TEXT is printf-like, control characters become spaces. */
void pec_mbox_result_set(struct pec_mbox_result *res, enum pec_mbox_status st, int code,
                         const char *esc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
