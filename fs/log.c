/* Logging to stderr or syslog, with a threshold, a rate limit and
 * sanitising of the message text. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

/* Maximum number of lines written in one second of CLOCK_MONOTONIC. */
#define LOG_RATE_MAX 50

/* Maximum length of a formatted message. Longer messages are cut. */
#define LOG_MESSAGE_MAX 2048

static atomic_int log_threshold = LOG_LEVEL_INFO;
static atomic_bool log_to_syslog;
static atomic_flag log_syslog_opened = ATOMIC_FLAG_INIT;

/* State of the rate limit, guarded by log_rate_lock. */
static pthread_mutex_t log_rate_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t log_rate_second = -1;
static unsigned log_rate_count;
static uint64_t log_rate_dropped;

static const char *const log_level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

static const int log_syslog_priorities[] = {
    [LOG_LEVEL_ERROR] = LOG_ERR,
    [LOG_LEVEL_WARNING] = LOG_WARNING,
    [LOG_LEVEL_INFO] = LOG_INFO,
    [LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

int log_parse_level(const char *name, enum log_level *level)
{
	if (!name || !level)
		return -EINVAL;

	for (int i = LOG_LEVEL_ERROR; i <= LOG_LEVEL_DEBUG; i++) {
		if (strcmp(name, log_level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_set_level(enum log_level level)
{
	if (level < LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	atomic_store(&log_threshold, (int)level);
}

void log_use_syslog(void)
{
	if (!atomic_flag_test_and_set(&log_syslog_opened))
		openlog("csipfs", LOG_PID, LOG_DAEMON);
	atomic_store(&log_to_syslog, true);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&log_threshold);
}

/* Writes one finished message to the current sink in a single call, so that
 * lines from different threads never interleave. */
static void log_write(enum log_level level, const char *message)
{
	char line[LOG_MESSAGE_MAX + 32];

	if (atomic_load(&log_to_syslog)) {
		syslog(log_syslog_priorities[level], "%s", message);
		return;
	}
	snprintf(line, sizeof(line), "csipfs: %s: %s\n", log_level_names[level],
		 message);
	fputs(line, stderr);
}

/* Counts one line against the rate limit. Returns false if the line must be
 * dropped. Otherwise stores in *dropped the number of lines dropped since
 * the last line that got through, and resets that count. */
static bool log_rate_admit(uint64_t *dropped)
{
	struct timespec now;
	bool admit;

	clock_gettime(CLOCK_MONOTONIC, &now);

	pthread_mutex_lock(&log_rate_lock);
	if ((int64_t)now.tv_sec != log_rate_second) {
		log_rate_second = now.tv_sec;
		log_rate_count = 0;
	}
	admit = log_rate_count < LOG_RATE_MAX;
	if (admit) {
		log_rate_count++;
		*dropped = log_rate_dropped;
		log_rate_dropped = 0;
	} else {
		log_rate_dropped++;
	}
	pthread_mutex_unlock(&log_rate_lock);
	return admit;
}

/* Replaces control characters with '?', so that text from the API cannot
 * start a new line or forge a log entry. */
static void log_strip_controls(char *text)
{
	for (unsigned char *p = (unsigned char *)text; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char message[LOG_MESSAGE_MAX];
	uint64_t dropped = 0;
	int saved_errno = errno;
	va_list args;

	if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_ERROR;
	if (!log_enabled(level) || !fmt)
		goto out;
	if (!log_rate_admit(&dropped))
		goto out;

	if (dropped > 0) {
		snprintf(message, sizeof(message),
			 "%llu log lines dropped (more than %d per second)",
			 (unsigned long long)dropped, LOG_RATE_MAX);
		log_write(LOG_LEVEL_WARNING, message);
	}

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	log_strip_controls(message);
	log_write(level, message);

out:
	errno = saved_errno;
}

/* Returns the length of a URL scheme followed by "://" at the start of url,
 * counting the "://", or 0 if url does not start with one. */
static size_t log_scheme_length(const char *url)
{
	size_t n = 0;

	if (!((url[0] >= 'a' && url[0] <= 'z') ||
	      (url[0] >= 'A' && url[0] <= 'Z')))
		return 0;
	while (url[n] &&
	       (strchr("+-.", url[n]) || (url[n] >= 'a' && url[n] <= 'z') ||
		(url[n] >= 'A' && url[n] <= 'Z') ||
		(url[n] >= '0' && url[n] <= '9')))
		n++;
	return strncmp(url + n, "://", 3) == 0 ? n + 3 : 0;
}

/* Appends length bytes of text to out, cutting them to what fits. */
static void log_append(char *out, size_t size, size_t *used, const char *text,
		       size_t length)
{
	size_t room = size - 1 - *used;

	if (length > room)
		length = room;
	memcpy(out + *used, text, length);
	*used += length;
	out[*used] = '\0';
}

char *log_redact_url(const char *url, char *out, size_t size)
{
	size_t used = 0;
	size_t scheme, authority, path;
	const char *host;

	if (!out || size == 0)
		return out;
	out[0] = '\0';
	if (!url)
		return out;

	scheme = log_scheme_length(url);
	log_append(out, size, &used, url, scheme);

	/* Without a scheme the text up to the first '/' is still searched for
	 * an '@', so that "user:password@host/..." never reaches a log. */
	host = url + scheme;
	authority = strcspn(host, "/?#");
	for (size_t i = authority; i > 0; i--) {
		if (host[i - 1] == '@') {
			host += i;
			authority -= i;
			break;
		}
	}
	log_append(out, size, &used, host, authority);

	path = strcspn(host + authority, "?#");
	log_append(out, size, &used, host + authority, path);
	if (host[authority + path] != '\0')
		log_append(out, size, &used, "?...", 4);
	return out;
}
