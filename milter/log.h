/*
 * log - the daemon's one log stream.
 *
 * In the foreground (-f) lines go to stderr with a timestamp; otherwise to
 * syslog with the configured facility.  Every line about a message starts
 * with the MTA queue id when it is known, as Postfix's own lines do, so one
 * grep follows a message through the MTA and the milter.
 */
#ifndef PECMILTER_LOG_H
#define PECMILTER_LOG_H

#include <syslog.h>

/* facility: syslog facility name ("mail", "local0"...); returns -1 if unknown */
int log_open(const char *ident, int foreground, const char *facility);
void log_close(void);

/* A configuration in test mode (pec_config_is_test): every line says so first. */
void log_set_test_mode(int on);

void log_msg(int prio, const char *qid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_err(qid, ...) log_msg(LOG_ERR, qid, __VA_ARGS__)
#define log_warn(qid, ...) log_msg(LOG_WARNING, qid, __VA_ARGS__)
#define log_info(qid, ...) log_msg(LOG_INFO, qid, __VA_ARGS__)
#define log_debug(qid, ...) log_msg(LOG_DEBUG, qid, __VA_ARGS__)

#endif
