/*
 * sock - the stream sockets named in the configuration: where the delivery
 * point listens (lmtp_socket) and where a mailbox server answers
 * (mailbox_lmtp).
 *
 * A spec is "unix:/path" (also "local:/path" or a bare absolute path, the
 * forms milter_socket accepts), "inet:host:port" or "inet:port@host" (the
 * milter_socket form); "inet6:" is accepted for either inet form.  Host
 * names are resolved once, when the socket is opened.
 *
 * pec_sock_listen() refuses to take over a unix socket that another process
 * still answers on, and removes one that nobody answers (what a crash
 * leaves behind).  Every descriptor returned is close-on-exec.
 */
#ifndef PEC_SOCK_H
#define PEC_SOCK_H

#include <stddef.h>

/* The path of a unix spec (pointing into SPEC), or NULL for an inet one. */
const char *pec_sock_unix_path(const char *spec);

/* A listening socket for SPEC (backlog BACKLOG); -1 with one line in err. */
int pec_sock_listen(const char *spec, int backlog, char *err, size_t errlen);

/* A socket connected to SPEC within TIMEOUT seconds; -1 with one line in err. */
int pec_sock_connect(const char *spec, int timeout, char *err, size_t errlen);

#endif
