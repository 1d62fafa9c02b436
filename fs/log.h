/* Logging: one entry point with syslog levels and a fixed "csipfs:" prefix.
 * Messages go to stderr until log_use_syslog() is called after the daemon
 * detaches. Callers must never pass secrets, tokens or signed URL query
 * strings; log_redact_url() strips the query from a URL before logging it. */
#ifndef CSIPFS_LOG_H
#define CSIPFS_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Parses "error", "warning", "info" or "debug". Returns 0 or -EINVAL. */
int log_parse_level(const char *name, enum log_level *level);

/* Sets the threshold. Thread-safe; may be called at any time. */
void log_set_level(enum log_level level);

/* Sends later messages to syslog (facility LOG_DAEMON) instead of stderr. */
void log_use_syslog(void);

bool log_enabled(enum log_level level);

/* Writes one line. More than 50 lines in one second are dropped and counted,
 * and the count is logged when the rate falls again. Thread-safe. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...)	 log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)	 log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)	 log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Copies url into out with any query string and fragment replaced by
 * "?...", and any userinfo removed, so that a signed URL can be named in a
 * log line. Always NUL-terminates out (size > 0). Returns out. */
char *log_redact_url(const char *url, char *out, size_t size);

#endif
