/* Ranged GETs of report objects over reused libcurl connections. The object
 * store is only ever sent GET, never HEAD, with "Accept-Encoding: identity",
 * and bodies are never decoded. Thread-safe: any number of threads may call
 * fetch_range() and fetch_many() on one struct fetch at once. */
#ifndef CSIPFS_FETCH_H
#define CSIPFS_FETCH_H

#include <stddef.h>
#include <stdint.h>

/* An error code beyond the errno values, returned negated like them:
 * HTTP 401, 403 or 410, so the signed URL is no longer valid. */
#define FETCH_EXPIRED 10001

struct fetch_options {
	const char *cafile;	      /* NULL: the system trust store */
	long connect_timeout_seconds; /* 0 means 10 */
	/* A transfer below 1 byte/s for this long aborts and is retried, and
	 * 0 means 30. libcurl averages the speed over up to 5 seconds, so a
	 * stall after fast data can take that much longer to be seen. */
	long stall_timeout_seconds;
	int max_attempts; /* per range, on fresh connections; 0 means 3 */
};

struct fetch;

/* Creates the pools of libcurl handles, which keep their connections open
 * between transfers, and the DNS cache they share.
 * Returns 0 or -ENOMEM. Must be called after curl_global_init(). */
int fetch_create(const struct fetch_options *options, struct fetch **out);
void fetch_destroy(struct fetch *fetch);

/* Aborts every transfer in progress and makes every later fetch fail at
 * once with -ECANCELED, backoff sleeps included. Transfers notice within
 * about a second, when libcurl next calls the progress callback. Safe to
 * call from any thread, more than once, but not from a signal handler. */
void fetch_cancel(struct fetch *fetch);

/* Facts about the object from one response. */
struct fetch_result {
	int64_t total_size; /* size of the whole object, -1 if unknown */
	size_t length;	    /* bytes written to the buffer */
	long http_status;   /* of the last response, 0 if none came */
	char etag[128];	    /* "" if none */
	char content_type[128];
};

/* One range to fetch, for fetch_many(). */
struct fetch_job {
	const char *url;
	uint64_t offset;
	size_t length; /* bytes wanted; buf holds at least this many */
	void *buf;
	struct fetch_result result; /* output */
	int status;		    /* output: 0 or a negated errno */
	char error[256];	    /* output: why it failed, URL redacted */
};

/* Fetches bytes [offset, offset + length) of url into buf.
 * A 206 must carry a Content-Range that starts at offset and does not end
 * past the requested range; a 200 is taken as the whole object, from which
 * the range is cut; a 416 with "bytes * /N" (no space) gives total_size N and
 * length 0 when offset >= N. When offset < N but the range reaches past N,
 * which a strict store rejects this way before the size is known, the range
 * is requested once more, cut to end at byte N - 1. result->length is
 * less than length only when the object ends first. Transport errors, 5xx
 * and short bodies are retried on a fresh connection, at most max_attempts
 * times in all. Redirects are followed, keeping the Range, up to 5 hops.
 * Returns 0, or -FETCH_EXPIRED, -ENOENT (404), -EINVAL (length 0, or a
 * range past 2^62), -ECANCELED (after fetch_cancel()), -EIO (anything else,
 * such as a body with a Content-Encoding, a bad Content-Range, or a
 * redirect loop), with a message in err whose URL has its query removed.
 * err may be NULL. */
int fetch_range(struct fetch *fetch, const char *url, uint64_t offset,
		size_t length, void *buf, struct fetch_result *result,
		char *err, size_t err_size);

/* Runs the jobs concurrently, at most max_parallel transfers at a time, and
 * fills each job's result, status and error as fetch_range() would.
 * Returns 0 once every job has finished, whatever their statuses. */
int fetch_many(struct fetch *fetch, struct fetch_job *jobs, size_t count,
	       int max_parallel);

/* Parses a Content-Range value: "bytes FIRST-LAST/TOTAL", where "*" may
 * replace TOTAL (total set to -1) or FIRST-LAST (first and last set to -1),
 * but not both. The unit is case-insensitive, whitespace around the value is
 * allowed, and every number must be below 2^62. Returns 0, or -EINVAL (also
 * when last < first or last >= total) with the outputs left unchanged. */
int fetch_parse_content_range(const char *value, int64_t *first, int64_t *last,
			      int64_t *total);

#endif
