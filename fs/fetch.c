/* Ranged GETs of report objects. Every transfer runs on an easy handle taken
 * from a pool, and fetch_many() on a multi handle taken from a second pool.
 * An idle handle keeps its open connections, so the next range fetched with
 * it reuses one. All handles share the DNS cache (dns_share.h), and nothing
 * else: ThreadSanitizer caught one thread freeing the certificate stack of
 * a shared OpenSSL session while another copied it (libcurl 7.88, OpenSSL
 * 3.0). Responses are validated before a byte reaches
 * the caller's buffer, and nothing is ever written past the requested length.
 */
#include "fetch.h"
#include "dns_share.h"
#include "log.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef CSIPFS_VERSION
#define CSIPFS_VERSION "unknown"
#endif

#define FETCH_MAX_REDIRECTS    5
#define FETCH_BUFFER_SIZE      (256L * 1024)
#define FETCH_MAX_IDLE_HANDLES 32
#define FETCH_MAX_IDLE_MULTIS  8
#define FETCH_BACKOFF_FIRST_MS 100
#define FETCH_BACKOFF_MAX_MS   2000
#define FETCH_POLL_TIMEOUT_MS  1000
/* Slice of a backoff sleep between checks for fetch_cancel(). */
#define FETCH_SLEEP_SLICE_MS 50
/* Connections an idle multi handle keeps open: as many as any caller of
 * fetch_many() runs at once. */
#define FETCH_MULTI_MAX_CONNECTS 16
/* Byte positions and sizes at or above this are rejected as implausible, so
 * that sums of two of them never overflow an int64_t. */
#define FETCH_MAX_POSITION ((int64_t)1 << 62)

struct fetch {
	struct dns_share dns;
	struct curl_slist *headers; /* read-only once created */
	char *cafile;
	long connect_timeout_seconds;
	long stall_timeout_seconds;
	int max_attempts;
	atomic_bool cancelled; /* set by fetch_cancel() */

	/* Stacks of handles ready for use, each with its open connections. */
	pthread_mutex_t pool_lock;
	CURL *idle[FETCH_MAX_IDLE_HANDLES];
	size_t idle_count;
	CURLM *idle_multis[FETCH_MAX_IDLE_MULTIS];
	size_t idle_multi_count;
};

/* One response header value, kept only if it fits. */
struct header_value {
	char text[128];
	bool present;
	bool too_long;
};

/* The state of one HTTP transfer, shared by fetch_range() and fetch_many(). */
struct transfer {
	struct fetch *fetch;
	CURL *easy;
	const char *url;
	uint64_t offset;
	size_t length;
	unsigned char *buf;

	/* From the latest status line and the header block after it. A redirect
	 * hop sends a block of its own, so each status line resets them. */
	long status;
	struct header_value content_range;
	struct header_value content_length;
	struct header_value content_encoding;
	struct header_value etag;
	struct header_value content_type;
	bool identity_only; /* every Content-Encoding seen was "identity" */

	/* The body of the final response. */
	bool headers_checked;
	int64_t range_first;
	int64_t range_last;
	int64_t range_total;
	uint64_t body_bytes; /* received, whether kept or skipped */
	size_t copied;	     /* placed in buf */
	bool stopped;	     /* on_body ended the transfer on purpose */
	int body_status;     /* 0, or the error on_body found */
	char body_error[192];

	/* The object size from a 416 whose range started inside the object,
	 * -1 otherwise: the range may be requested again, cut to that size. */
	int64_t unsatisfied_total;

	bool retryable; /* output of finish_transfer() */
	int attempts;	/* made so far, for fetch_many() */
	char curl_error[CURL_ERROR_SIZE];
};

/* CURLOPT_XFERINFOFUNCTION: a nonzero return aborts the transfer with
 * CURLE_ABORTED_BY_CALLBACK. libcurl calls it at least once a second, also
 * while no data arrives. */
static int on_progress(void *userdata, curl_off_t download_total,
		       curl_off_t downloaded, curl_off_t upload_total,
		       curl_off_t uploaded)
{
	struct fetch *fetch = userdata;

	(void)download_total;
	(void)downloaded;
	(void)upload_total;
	(void)uploaded;
	return atomic_load(&fetch->cancelled) ? 1 : 0;
}

/* Sets the options that every transfer uses. Called on a new handle and
 * again after curl_easy_reset(), which clears them. Returns 0 or -ENOMEM. */
static int apply_common_options(struct fetch *fetch, CURL *easy)
{
	bool failed = false;

	failed |= curl_easy_setopt(easy, CURLOPT_SHARE, fetch->dns.share);
	failed |= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	failed |= curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	failed |=
	    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	failed |= curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
	failed |= curl_easy_setopt(easy, CURLOPT_MAXREDIRS,
				   (long)FETCH_MAX_REDIRECTS);
	failed |= curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT,
				   fetch->connect_timeout_seconds);
	/* NOTE: there is no overall deadline, so a server that keeps sending
	 * at least 1 byte/s holds a transfer for as long as it does. */
	failed |= curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	failed |= curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
				   fetch->stall_timeout_seconds);
	failed |= curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	failed |= curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (fetch->cafile)
		failed |= curl_easy_setopt(easy, CURLOPT_CAINFO, fetch->cafile);
	failed |= curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	/* With no CURLOPT_ACCEPT_ENCODING, libcurl never decodes a body, and
	 * this header requests an unencoded one. */
	failed |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, fetch->headers);
	failed |= curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	failed |= curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
	failed |= curl_easy_setopt(easy, CURLOPT_XFERINFODATA, fetch);
	failed |= curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	failed |= curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, FETCH_BUFFER_SIZE);
	failed |=
	    curl_easy_setopt(easy, CURLOPT_USERAGENT, "csipfs/" CSIPFS_VERSION);
	return failed ? -ENOMEM : 0;
}

int fetch_create(const struct fetch_options *options, struct fetch **out)
{
	struct fetch *fetch;

	*out = NULL;
	fetch = calloc(1, sizeof(*fetch));
	if (!fetch)
		return -ENOMEM;
	fetch->connect_timeout_seconds = options->connect_timeout_seconds > 0
					     ? options->connect_timeout_seconds
					     : 10;
	fetch->stall_timeout_seconds = options->stall_timeout_seconds > 0
					   ? options->stall_timeout_seconds
					   : 30;
	fetch->max_attempts =
	    options->max_attempts > 0 ? options->max_attempts : 3;
	if (options->cafile) {
		fetch->cafile = strdup(options->cafile);
		if (!fetch->cafile)
			goto fail_cafile;
	}
	fetch->headers = curl_slist_append(NULL, "Accept-Encoding: identity");
	if (!fetch->headers)
		goto fail_headers;

	if (dns_share_init(&fetch->dns) < 0)
		goto fail_share;
	pthread_mutex_init(&fetch->pool_lock, NULL);

	*out = fetch;
	return 0;

fail_share:
	curl_slist_free_all(fetch->headers);
fail_headers:
	free(fetch->cafile);
fail_cafile:
	free(fetch);
	return -ENOMEM;
}

void fetch_cancel(struct fetch *fetch)
{
	if (fetch)
		atomic_store(&fetch->cancelled, true);
}

static bool is_cancelled(struct fetch *fetch)
{
	return atomic_load(&fetch->cancelled);
}

void fetch_destroy(struct fetch *fetch)
{
	size_t i;

	if (!fetch)
		return;
	/* Every easy handle that uses the share goes before the share. */
	for (i = 0; i < fetch->idle_multi_count; i++)
		curl_multi_cleanup(fetch->idle_multis[i]);
	for (i = 0; i < fetch->idle_count; i++)
		curl_easy_cleanup(fetch->idle[i]);
	dns_share_destroy(&fetch->dns);
	pthread_mutex_destroy(&fetch->pool_lock);
	curl_slist_free_all(fetch->headers);
	free(fetch->cafile);
	free(fetch);
}

/* Takes an idle handle from the pool, or makes a new one. */
static CURL *take_handle(struct fetch *fetch)
{
	CURL *easy = NULL;

	pthread_mutex_lock(&fetch->pool_lock);
	if (fetch->idle_count > 0)
		easy = fetch->idle[--fetch->idle_count];
	pthread_mutex_unlock(&fetch->pool_lock);
	if (easy)
		return easy;

	easy = curl_easy_init();
	if (!easy)
		return NULL;
	if (apply_common_options(fetch, easy) != 0) {
		curl_easy_cleanup(easy);
		return NULL;
	}
	return easy;
}

/* Puts a handle back in the pool with only the common options set.
 * curl_easy_reset() keeps the handle's open connections. */
static void return_handle(struct fetch *fetch, CURL *easy)
{
	curl_easy_reset(easy);
	if (apply_common_options(fetch, easy) != 0) {
		curl_easy_cleanup(easy);
		return;
	}
	pthread_mutex_lock(&fetch->pool_lock);
	if (fetch->idle_count < FETCH_MAX_IDLE_HANDLES) {
		fetch->idle[fetch->idle_count++] = easy;
		easy = NULL;
	}
	pthread_mutex_unlock(&fetch->pool_lock);
	if (easy)
		curl_easy_cleanup(easy);
}

/* Takes an idle multi handle from the pool, or makes a new one. */
static CURLM *take_multi(struct fetch *fetch)
{
	CURLM *multi = NULL;

	pthread_mutex_lock(&fetch->pool_lock);
	if (fetch->idle_multi_count > 0)
		multi = fetch->idle_multis[--fetch->idle_multi_count];
	pthread_mutex_unlock(&fetch->pool_lock);
	if (multi)
		return multi;
	multi = curl_multi_init();
	/* By default libcurl sizes a multi handle's connection cache at four
	 * times the easy handles on it (CURLMOPT_MAXCONNECTS(3)). As the last
	 * transfers of a batch end, the cache shrinks and closes connections
	 * that the next batch would reuse, which over a 20 ms link cost a
	 * batch a new TLS connection. A fixed size keeps them all. */
	if (multi)
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
				  (long)FETCH_MULTI_MAX_CONNECTS);
	return multi;
}

/* Puts a multi handle, with no easy handle left on it, back in the pool. */
static void return_multi(struct fetch *fetch, CURLM *multi)
{
	pthread_mutex_lock(&fetch->pool_lock);
	if (fetch->idle_multi_count < FETCH_MAX_IDLE_MULTIS) {
		fetch->idle_multis[fetch->idle_multi_count++] = multi;
		multi = NULL;
	}
	pthread_mutex_unlock(&fetch->pool_lock);
	if (multi)
		curl_multi_cleanup(multi);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parses the decimal digits at *cursor, advancing it. Returns 0, or -EINVAL
 * when there is no digit or the value reaches FETCH_MAX_POSITION. */
static int parse_position(const char **cursor, const char *end, int64_t *value)
{
	const char *p = *cursor;
	int64_t result = 0;

	if (p == end || *p < '0' || *p > '9')
		return -EINVAL;
	while (p < end && *p >= '0' && *p <= '9') {
		int digit = *p - '0';

		if (result > (FETCH_MAX_POSITION - 1 - digit) / 10)
			return -EINVAL;
		result = result * 10 + digit;
		p++;
	}
	*cursor = p;
	*value = result;
	return 0;
}

int fetch_parse_content_range(const char *value, int64_t *first, int64_t *last,
			      int64_t *total)
{
	const char *p = value;
	const char *end;
	int64_t range_first = -1;
	int64_t range_last = -1;
	int64_t range_total = -1;

	if (!value)
		return -EINVAL;
	end = value + strlen(value);
	while (p < end && is_space(*p))
		p++;
	while (end > p && is_space(end[-1]))
		end--;

	/* RFC 9110, section 14.4: "bytes" SP (first "-" last / "*") "/"
	 * (total / "*"), where the unit is case-insensitive. */
	if (end - p < 6 || strncasecmp(p, "bytes ", 6) != 0)
		return -EINVAL;
	p += 6;
	if (p < end && *p == '*') {
		p++;
	} else {
		if (parse_position(&p, end, &range_first) != 0)
			return -EINVAL;
		if (p == end || *p != '-')
			return -EINVAL;
		p++;
		if (parse_position(&p, end, &range_last) != 0)
			return -EINVAL;
		if (range_last < range_first)
			return -EINVAL;
	}
	if (p == end || *p != '/')
		return -EINVAL;
	p++;
	if (p < end && *p == '*') {
		/* An asterisk for both the range and the total is invalid. */
		if (range_first < 0)
			return -EINVAL;
		p++;
	} else if (parse_position(&p, end, &range_total) != 0) {
		return -EINVAL;
	}
	if (p != end)
		return -EINVAL;
	if (range_total >= 0 && range_last >= range_total)
		return -EINVAL;

	*first = range_first;
	*last = range_last;
	*total = range_total;
	return 0;
}

/* Parses a whole Content-Length value. Returns it, or -1 if invalid. */
static int64_t parse_content_length(const struct header_value *header)
{
	const char *p = header->text;
	const char *end = p + strlen(p);
	int64_t value;

	if (!header->present || header->too_long)
		return -1;
	if (parse_position(&p, end, &value) != 0 || p != end)
		return -1;
	return value;
}

static void reset_headers(struct transfer *t)
{
	memset(&t->content_range, 0, sizeof(t->content_range));
	memset(&t->content_length, 0, sizeof(t->content_length));
	memset(&t->content_encoding, 0, sizeof(t->content_encoding));
	memset(&t->etag, 0, sizeof(t->etag));
	memset(&t->content_type, 0, sizeof(t->content_type));
	t->identity_only = true;
	t->status = 0;
}

/* Forgets what an earlier attempt received. */
static void reset_body(struct transfer *t)
{
	t->headers_checked = false;
	t->range_first = -1;
	t->range_last = -1;
	t->range_total = -1;
	t->body_bytes = 0;
	t->copied = 0;
	t->stopped = false;
	t->body_status = 0;
	t->body_error[0] = '\0';
}

/* Parses the code of a status line such as "HTTP/1.1 206 Partial Content"
 * or "HTTP/2 206". Returns it, or 0 if the line is malformed. */
static long parse_status_line(const char *line, size_t size)
{
	const char *space = memchr(line, ' ', size);
	const char *end = line + size;
	long code = 0;
	int digits;

	if (!space)
		return 0;
	for (digits = 0; digits < 3; digits++) {
		const char *p = space + 1 + digits;

		if (p >= end || *p < '0' || *p > '9')
			return 0;
		code = code * 10 + (*p - '0');
	}
	return code;
}

static void store_header(struct header_value *header, const char *value,
			 size_t size)
{
	header->present = true;
	if (size >= sizeof(header->text)) {
		header->too_long = true;
		header->text[0] = '\0';
		return;
	}
	memcpy(header->text, value, size);
	header->text[size] = '\0';
}

static bool header_name_is(const char *name, size_t size, const char *expected)
{
	return size == strlen(expected) &&
	       strncasecmp(name, expected, size) == 0;
}

/* CURLOPT_HEADERFUNCTION: called once per header line, status lines and the
 * blank line that ends each block included. */
static size_t on_header(char *data, size_t size, size_t count, void *userdata)
{
	struct transfer *t = userdata;
	size_t line_size = size * count;
	const char *colon;
	const char *value;
	const char *end = data + line_size;
	size_t name_size;

	if (line_size >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		reset_headers(t);
		t->status = parse_status_line(data, line_size);
		return line_size;
	}
	colon = memchr(data, ':', line_size);
	if (!colon)
		return line_size;
	name_size = (size_t)(colon - data);
	value = colon + 1;
	while (value < end && is_space(*value))
		value++;
	while (end > value && is_space(end[-1]))
		end--;

	if (header_name_is(data, name_size, "Content-Range")) {
		store_header(&t->content_range, value, (size_t)(end - value));
	} else if (header_name_is(data, name_size, "Content-Length")) {
		store_header(&t->content_length, value, (size_t)(end - value));
	} else if (header_name_is(data, name_size, "ETag")) {
		store_header(&t->etag, value, (size_t)(end - value));
	} else if (header_name_is(data, name_size, "Content-Type")) {
		store_header(&t->content_type, value, (size_t)(end - value));
	} else if (header_name_is(data, name_size, "Content-Encoding")) {
		bool identity = (size_t)(end - value) == 8 &&
				strncasecmp(value, "identity", 8) == 0;

		if (!identity && t->identity_only) {
			t->identity_only = false;
			store_header(&t->content_encoding, value,
				     (size_t)(end - value));
		}
	}
	return line_size;
}

static void set_body_error(struct transfer *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_body_error(struct transfer *t, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vsnprintf(t->body_error, sizeof(t->body_error), fmt, args);
	va_end(args);
	t->body_status = -EIO;
}

/* Validates the headers of a 200 or 206 before any of its body is kept.
 * Returns 0, or -EIO with body_error set. */
static int check_success_headers(struct transfer *t)
{
	uint64_t requested_last = t->offset + t->length - 1;

	t->headers_checked = true;
	if (!t->identity_only) {
		set_body_error(t, "object URL sent Content-Encoding %s",
			       t->content_encoding.too_long
				   ? "(a value too long to show)"
				   : t->content_encoding.text);
		return t->body_status;
	}
	if (t->status != 206)
		return 0;

	if (!t->content_range.present) {
		set_body_error(t, "HTTP 206 without a Content-Range header");
		return t->body_status;
	}
	if (t->content_range.too_long ||
	    fetch_parse_content_range(t->content_range.text, &t->range_first,
				      &t->range_last, &t->range_total) != 0 ||
	    t->range_first < 0) {
		set_body_error(t,
			       "HTTP 206 with an invalid Content-Range \"%s\"",
			       t->content_range.text);
		return t->body_status;
	}
	if ((uint64_t)t->range_first != t->offset) {
		set_body_error(t,
			       "Content-Range starts at byte %" PRId64
			       ", expected %" PRIu64,
			       t->range_first, t->offset);
		return t->body_status;
	}
	if ((uint64_t)t->range_last > requested_last) {
		set_body_error(t,
			       "Content-Range ends at byte %" PRId64
			       ", past the requested %" PRIu64,
			       t->range_last, requested_last);
		return t->body_status;
	}
	return 0;
}

/* Keeps body byte k of a 206 as buf[k]. Content-Range has been checked to lie
 * within the request, so a body no longer than the range fits buf. */
static size_t take_partial_body(struct transfer *t, const char *data,
				size_t size)
{
	uint64_t range_size = (uint64_t)(t->range_last - t->range_first) + 1;

	if (size > range_size - t->body_bytes) {
		set_body_error(t,
			       "body of HTTP 206 is longer than its "
			       "Content-Range of %" PRIu64 " bytes",
			       range_size);
		return 0;
	}
	memcpy(t->buf + t->body_bytes, data, size);
	t->body_bytes += size;
	t->copied = (size_t)t->body_bytes;
	return size;
}

/* Cuts the requested range out of a 200, which carries the whole object, and
 * stops the transfer once the range is in buf. */
static size_t take_full_body(struct transfer *t, const char *data, size_t size)
{
	uint64_t start = t->body_bytes;
	uint64_t end = start + size;
	uint64_t requested_end = t->offset + t->length;
	int64_t content_length;

	if (end > t->offset && start < requested_end) {
		uint64_t from = start > t->offset ? start : t->offset;
		uint64_t to = end < requested_end ? end : requested_end;

		memcpy(t->buf + (from - t->offset), data + (from - start),
		       (size_t)(to - from));
		t->copied = (size_t)(to - t->offset);
	}
	t->body_bytes = end;
	if (t->copied < t->length)
		return size;

	/* When this chunk ends the object too, the transfer completes normally
	 * and its connection stays open for reuse. */
	content_length = parse_content_length(&t->content_length);
	if (content_length >= 0 && (uint64_t)content_length == end)
		return size;
	t->stopped = true;
	return 0;
}

/* CURLOPT_WRITEFUNCTION for the body of the final response. Returning less
 * than size ends the transfer with CURLE_WRITE_ERROR. */
static size_t on_body(char *data, size_t size, size_t count, void *userdata)
{
	struct transfer *t = userdata;
	size_t body_size = size * count;

	if (t->body_status != 0)
		return 0;
	if (t->status != 200 && t->status != 206) {
		/* An error status is all that matters, so its body is not
		 * downloaded. */
		t->stopped = true;
		return 0;
	}
	if (!t->headers_checked && check_success_headers(t) != 0)
		return 0;
	if (body_size == 0)
		return 0;
	if (t->status == 206)
		return take_partial_body(t, data, body_size);
	return take_full_body(t, data, body_size);
}

/* Sets the options of one transfer on t->easy. Returns 0 or -ENOMEM. */
static int setup_transfer(struct transfer *t, bool fresh_connection)
{
	CURL *easy = t->easy;
	char range[48];
	bool failed = false;

	snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, t->offset,
		 t->offset + t->length - 1);
	reset_headers(t);
	reset_body(t);
	t->retryable = false;
	t->unsatisfied_total = -1;
	t->curl_error[0] = '\0';
	failed |= curl_easy_setopt(easy, CURLOPT_URL, t->url);
	failed |= curl_easy_setopt(easy, CURLOPT_RANGE, range);
	failed |= curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	failed |= curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
	failed |= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	failed |= curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
	failed |= curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->curl_error);
	failed |= curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
	failed |= curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT,
				   fresh_connection ? 1L : 0L);
	return failed ? -ENOMEM : 0;
}

/* Prepares t for a transfer of [offset, offset + length) of url into buf.
 * Returns 0, or -EINVAL for an empty or implausible range. */
static int init_transfer(struct transfer *t, struct fetch *fetch,
			 const char *url, uint64_t offset, size_t length,
			 void *buf)
{
	memset(t, 0, sizeof(*t));
	t->fetch = fetch;
	t->url = url;
	t->offset = offset;
	t->length = length;
	t->buf = buf;
	t->unsatisfied_total = -1;
	if (!url || !buf || length == 0 ||
	    offset >= (uint64_t)FETCH_MAX_POSITION ||
	    length >= (uint64_t)FETCH_MAX_POSITION - offset)
		return -EINVAL;
	return 0;
}

/* Transport errors worth another attempt on a fresh connection. */
static bool is_transient_curl_error(CURLcode code)
{
	switch (code) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static bool is_verification_error(CURL *easy, CURLcode code)
{
	long verify_result = 0;

	switch (code) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return true;
	case CURLE_SSL_CONNECT_ERROR:
		/* Some handshake failures come from the peer's certificate. */
		curl_easy_getinfo(easy, CURLINFO_SSL_VERIFYRESULT,
				  &verify_result);
		return verify_result != 0;
	default:
		return false;
	}
}

/* Returns curl's error text for code, or "" when that text could contain
 * the query string of url (curl's messages are not meant to, but the query
 * of a signed URL is a secret). */
static const char *curl_error_text(const struct transfer *t, CURLcode code)
{
	const char *text =
	    t->curl_error[0] ? t->curl_error : curl_easy_strerror(code);
	const char *query = strchr(t->url, '?');

	if (query && query[1] && strstr(text, query + 1))
		return "";
	return text;
}

static void copy_header(char *out, size_t out_size,
			const struct header_value *header)
{
	if (header->present && !header->too_long)
		snprintf(out, out_size, "%s", header->text);
	else
		out[0] = '\0';
}

/* Maps a completed 206 to a result. */
static int finish_partial(struct transfer *t, struct fetch_result *result,
			  char *reason, size_t reason_size)
{
	uint64_t range_size;
	uint64_t requested_last = t->offset + t->length - 1;

	if (!t->headers_checked && check_success_headers(t) != 0) {
		snprintf(reason, reason_size, "%s", t->body_error);
		return t->body_status;
	}
	range_size = (uint64_t)(t->range_last - t->range_first) + 1;
	if (t->body_bytes < range_size) {
		snprintf(reason, reason_size,
			 "body ended after %" PRIu64 " of %" PRIu64 " bytes",
			 t->body_bytes, range_size);
		t->retryable = true;
		return -EIO;
	}
	result->total_size = t->range_total;
	result->length = (size_t)range_size;

	/* A shorter range is fine only where the object ends. */
	if ((uint64_t)t->range_last < requested_last &&
	    (t->range_total < 0 || t->range_last != t->range_total - 1)) {
		snprintf(reason, reason_size,
			 "Content-Range \"%s\" is shorter than the requested "
			 "%zu bytes but does not reach the end of the object",
			 t->content_range.text, t->length);
		return -EIO;
	}
	return 0;
}

/* Maps a completed 200, which carries the whole object. */
static int finish_full(struct transfer *t, struct fetch_result *result,
		       char *reason, size_t reason_size)
{
	int64_t content_length;

	if (!t->headers_checked && check_success_headers(t) != 0) {
		snprintf(reason, reason_size, "%s", t->body_error);
		return t->body_status;
	}
	content_length = parse_content_length(&t->content_length);
	if (t->stopped) {
		result->total_size = content_length;
		result->length = t->copied;
		return 0;
	}
	if (content_length >= 0 && (uint64_t)content_length != t->body_bytes) {
		snprintf(reason, reason_size,
			 "body ended after %" PRIu64 " of %" PRId64 " bytes",
			 t->body_bytes, content_length);
		t->retryable = true;
		return -EIO;
	}
	result->total_size = (int64_t)t->body_bytes;
	result->length = t->copied;
	return 0;
}

/* Maps a 416, which is success when the range starts at or past the end. */
static int finish_unsatisfiable(struct transfer *t, struct fetch_result *result,
				char *reason, size_t reason_size)
{
	int64_t first;
	int64_t last;
	int64_t total;

	if (!t->content_range.present || t->content_range.too_long ||
	    fetch_parse_content_range(t->content_range.text, &first, &last,
				      &total) != 0 ||
	    first >= 0 || total < 0) {
		snprintf(
		    reason, reason_size,
		    "HTTP 416 without a valid Content-Range \"bytes */N\"");
		return -EIO;
	}
	result->total_size = total;
	if (t->offset < (uint64_t)total) {
		t->unsatisfied_total = total;
		snprintf(reason, reason_size,
			 "HTTP 416 for offset %" PRIu64
			 " within an object of %" PRId64 " bytes",
			 t->offset, total);
		return -EIO;
	}
	result->length = 0;
	return 0;
}

static int finish_status(struct transfer *t, struct fetch_result *result,
			 char *reason, size_t reason_size)
{
	long status = t->status;

	if (status == 206)
		return finish_partial(t, result, reason, reason_size);
	if (status == 200)
		return finish_full(t, result, reason, reason_size);
	if (status == 416)
		return finish_unsatisfiable(t, result, reason, reason_size);

	if (status == 401 || status == 403 || status == 410) {
		snprintf(
		    reason, reason_size,
		    "HTTP %ld (the signed URL has expired or was rejected)",
		    status);
		return -FETCH_EXPIRED;
	}
	if (status == 404) {
		snprintf(reason, reason_size, "HTTP 404 (object not found)");
		return -ENOENT;
	}
	if (status >= 300 && status < 400) {
		snprintf(reason, reason_size,
			 "HTTP %ld redirect without a Location header", status);
		return -EIO;
	}
	if (status >= 500 && status < 600) {
		snprintf(reason, reason_size, "HTTP %ld", status);
		t->retryable = true;
		return -EIO;
	}
	if (status == 0)
		snprintf(reason, reason_size, "no HTTP status line");
	else
		snprintf(reason, reason_size, "unexpected HTTP %ld", status);
	return -EIO;
}

/* Maps a transfer that ended with a curl error. */
static int finish_curl_error(struct transfer *t, CURLcode code, char *reason,
			     size_t reason_size)
{
	const char *text = curl_error_text(t, code);

	if (code == CURLE_ABORTED_BY_CALLBACK && is_cancelled(t->fetch)) {
		snprintf(reason, reason_size,
			 "cancelled because csipfs is shutting down");
		return -ECANCELED;
	}
	if (is_verification_error(t->easy, code)) {
		snprintf(reason, reason_size,
			 "certificate verification failed: %s", text);
		return -EIO;
	}
	if (code == CURLE_TOO_MANY_REDIRECTS) {
		snprintf(reason, reason_size,
			 "redirect loop: more than %d redirects (%s)",
			 FETCH_MAX_REDIRECTS, text);
		return -EIO;
	}
	t->retryable = is_transient_curl_error(code);
	snprintf(reason, reason_size, "%s", text);
	return -EIO;
}

/* Turns the outcome of a finished transfer into a status and a result, and
 * sets t->retryable when a fresh attempt may succeed. A timeout is returned
 * as -EIO like every other transport error. */
static int finish_transfer(struct transfer *t, CURLcode code,
			   struct fetch_result *result, char *err,
			   size_t err_size)
{
	char reason[CURL_ERROR_SIZE + 128] = "";
	char url[512];
	int status;

	t->retryable = false;
	memset(result, 0, sizeof(*result));
	result->total_size = -1;
	result->http_status = t->status;
	copy_header(result->etag, sizeof(result->etag), &t->etag);
	copy_header(result->content_type, sizeof(result->content_type),
		    &t->content_type);

	if (t->body_status != 0) {
		snprintf(reason, sizeof(reason), "%s", t->body_error);
		status = t->body_status;
	} else if (code != CURLE_OK &&
		   !(code == CURLE_WRITE_ERROR && t->stopped)) {
		status = finish_curl_error(t, code, reason, sizeof(reason));
	} else {
		status = finish_status(t, result, reason, sizeof(reason));
	}

	if (status != 0) {
		result->length = 0;
		if (err && err_size > 0)
			snprintf(err, err_size, "GET %s failed: %s",
				 log_redact_url(t->url, url, sizeof(url)),
				 reason);
	} else if (err && err_size > 0) {
		err[0] = '\0';
	}
	return status;
}

/* Sleeps before attempt, in slices, ending early after fetch_cancel(). */
static void sleep_before_attempt(struct fetch *fetch, int attempt)
{
	long delay_ms = FETCH_BACKOFF_FIRST_MS;
	int i;

	for (i = 2; i < attempt && delay_ms < FETCH_BACKOFF_MAX_MS; i++)
		delay_ms *= 2;
	if (delay_ms > FETCH_BACKOFF_MAX_MS)
		delay_ms = FETCH_BACKOFF_MAX_MS;
	while (delay_ms > 0 && !is_cancelled(fetch)) {
		long slice_ms = delay_ms < FETCH_SLEEP_SLICE_MS
				    ? delay_ms
				    : FETCH_SLEEP_SLICE_MS;
		struct timespec delay = {
		    .tv_sec = 0,
		    .tv_nsec = slice_ms * 1000000L,
		};

		while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
			;
		delay_ms -= slice_ms;
	}
}

/* Runs one attempt of t with curl_easy_perform(). */
static int perform_attempt(struct transfer *t, bool fresh_connection,
			   struct fetch_result *result, char *err,
			   size_t err_size)
{
	CURLcode code;
	int status;

	if (is_cancelled(t->fetch)) {
		snprintf(err, err_size,
			 "GET cancelled because csipfs is shutting down");
		return -ECANCELED;
	}
	t->easy = take_handle(t->fetch);
	if (!t->easy) {
		snprintf(err, err_size, "GET failed: out of memory");
		return -ENOMEM;
	}
	status = setup_transfer(t, fresh_connection);
	if (status == 0) {
		code = curl_easy_perform(t->easy);
		status = finish_transfer(t, code, result, err, err_size);
	} else {
		snprintf(err, err_size, "GET failed: out of memory");
	}
	return_handle(t->fetch, t->easy);
	t->easy = NULL;
	return status;
}

/* Whether t ended with a 416 for a range that starts inside the object but
 * reaches past its end, so that a shorter range can succeed. */
static bool can_cut_range(const struct transfer *t)
{
	return t->unsatisfied_total > 0 &&
	       t->offset < (uint64_t)t->unsatisfied_total &&
	       t->offset + t->length > (uint64_t)t->unsatisfied_total;
}

static int fetch_range_from(struct fetch *fetch, const char *url,
			    uint64_t offset, size_t length, void *buf,
			    struct fetch_result *result, char *err,
			    size_t err_size, int first_attempt);

/* Requests the range of t again, cut to end at the last byte of the object
 * that a 416 named. The cut range is shorter, so this recursion ends. */
static int fetch_cut_range(const struct transfer *t,
			   struct fetch_result *result, char *err,
			   size_t err_size)
{
	size_t length = (size_t)((uint64_t)t->unsatisfied_total - t->offset);

	log_debug("fetch: HTTP 416 for bytes %" PRIu64 "-%" PRIu64
		  " of an object of %" PRId64
		  " bytes; requesting bytes %" PRIu64 "-%" PRIu64,
		  t->offset, t->offset + t->length - 1, t->unsatisfied_total,
		  t->offset, t->offset + length - 1);
	return fetch_range_from(t->fetch, t->url, t->offset, length, t->buf,
				result, err, err_size, 1);
}

/* fetch_range(), starting the count of attempts at first_attempt, so that
 * fetch_many() can continue the attempts of a job that failed. */
static int fetch_range_from(struct fetch *fetch, const char *url,
			    uint64_t offset, size_t length, void *buf,
			    struct fetch_result *result, char *err,
			    size_t err_size, int first_attempt)
{
	struct transfer t;
	char message[512];
	int attempt;
	int status;

	memset(result, 0, sizeof(*result));
	result->total_size = -1;
	if (init_transfer(&t, fetch, url, offset, length, buf) != 0) {
		snprintf(message, sizeof(message),
			 "invalid range of %zu bytes at offset %" PRIu64,
			 length, offset);
		status = -EINVAL;
		goto out;
	}
	for (attempt = first_attempt;; attempt++) {
		if (attempt > 1)
			sleep_before_attempt(fetch, attempt);
		status = perform_attempt(&t, attempt > 1, result, message,
					 sizeof(message));
		if (status == 0 || !t.retryable ||
		    attempt >= fetch->max_attempts || is_cancelled(fetch))
			break;
		log_warning("%s, retrying (attempt %d of %d)", message,
			    attempt + 1, fetch->max_attempts);
	}
	if (status != 0 && can_cut_range(&t))
		status = fetch_cut_range(&t, result, message, sizeof(message));
out:
	if (err && err_size > 0)
		snprintf(err, err_size, "%s", status == 0 ? "" : message);
	return status;
}

int fetch_range(struct fetch *fetch, const char *url, uint64_t offset,
		size_t length, void *buf, struct fetch_result *result,
		char *err, size_t err_size)
{
	return fetch_range_from(fetch, url, offset, length, buf, result, err,
				err_size, 1);
}

/* Starts job's transfer on the multi handle. Returns 0, or a negated errno
 * with the job's status and error set. */
static int start_job(struct fetch *fetch, CURLM *multi, struct transfer *t,
		     struct fetch_job *job)
{
	memset(&job->result, 0, sizeof(job->result));
	job->result.total_size = -1;
	job->error[0] = '\0';
	if (init_transfer(t, fetch, job->url, job->offset, job->length,
			  job->buf) != 0) {
		snprintf(job->error, sizeof(job->error),
			 "invalid range of %zu bytes at offset %" PRIu64,
			 job->length, job->offset);
		job->status = -EINVAL;
		return job->status;
	}
	t->easy = take_handle(fetch);
	if (!t->easy)
		goto fail;
	if (setup_transfer(t, false) != 0 ||
	    curl_multi_add_handle(multi, t->easy) != CURLM_OK) {
		return_handle(fetch, t->easy);
		t->easy = NULL;
		goto fail;
	}
	t->attempts = 1;
	return 0;

fail:
	/* The retry pass runs it again with fetch_range_from(). */
	snprintf(job->error, sizeof(job->error), "GET failed: out of memory");
	job->status = -ENOMEM;
	t->retryable = true;
	return job->status;
}

static void finish_job(struct fetch *fetch, CURLM *multi, struct transfer *t,
		       struct fetch_job *job, CURLcode code)
{
	curl_multi_remove_handle(multi, t->easy);
	job->status = finish_transfer(t, code, &job->result, job->error,
				      sizeof(job->error));
	return_handle(fetch, t->easy);
	t->easy = NULL;
}

/* Collects the transfers that have finished. Returns how many. */
static size_t collect_finished(struct fetch *fetch, CURLM *multi,
			       struct transfer *transfers,
			       struct fetch_job *jobs)
{
	CURLMsg *msg;
	int queued;
	size_t finished = 0;

	while ((msg = curl_multi_info_read(multi, &queued))) {
		struct transfer *t = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
		finish_job(fetch, multi, t, &jobs[t - transfers],
			   msg->data.result);
		finished++;
	}
	return finished;
}

/* Ends the transfers still on the multi handle after curl_multi_perform()
 * or curl_multi_poll() failed, marking them for the retry pass. */
static void abandon_running(struct fetch *fetch, CURLM *multi,
			    struct transfer *transfers, struct fetch_job *jobs,
			    size_t started, CURLMcode code)
{
	size_t i;

	for (i = 0; i < started; i++) {
		struct transfer *t = &transfers[i];

		if (!t->easy)
			continue;
		curl_multi_remove_handle(multi, t->easy);
		return_handle(fetch, t->easy);
		t->easy = NULL;
		t->retryable = true;
		jobs[i].status = -EIO;
		snprintf(jobs[i].error, sizeof(jobs[i].error), "GET failed: %s",
			 curl_multi_strerror(code));
	}
}

/* Runs the jobs on one multi handle. Jobs that could not start, and those
 * that failed in a way worth retrying, have t->retryable set. */
static void run_jobs(struct fetch *fetch, CURLM *multi,
		     struct transfer *transfers, struct fetch_job *jobs,
		     size_t count, size_t max_parallel)
{
	size_t next = 0;
	size_t running = 0;
	size_t done = 0;
	size_t finished;
	CURLMcode code;
	int still_running;

	while (done < count) {
		while (running < max_parallel && next < count) {
			if (start_job(fetch, multi, &transfers[next],
				      &jobs[next]) == 0)
				running++;
			else
				done++;
			next++;
		}
		if (running == 0)
			break; /* every job has finished or failed to start */

		code = curl_multi_perform(multi, &still_running);
		if (code != CURLM_OK)
			goto fail;
		finished = collect_finished(fetch, multi, transfers, jobs);
		running -= finished;
		done += finished;
		if (finished > 0 && next < count)
			continue;
		if (done < count && running > 0) {
			code = curl_multi_poll(multi, NULL, 0,
					       FETCH_POLL_TIMEOUT_MS, NULL);
			if (code != CURLM_OK)
				goto fail;
		}
	}
	return;

fail:
	log_warning("fetch: curl multi interface failed: %s",
		    curl_multi_strerror(code));
	abandon_running(fetch, multi, transfers, jobs, next, code);
	for (; next < count; next++)
		transfers[next].retryable = true;
}

int fetch_many(struct fetch *fetch, struct fetch_job *jobs, size_t count,
	       int max_parallel)
{
	struct transfer *transfers;
	CURLM *multi = NULL;
	size_t i;

	if (count == 0)
		return 0;
	transfers = calloc(count, sizeof(*transfers));
	if (transfers)
		multi = take_multi(fetch);
	if (multi) {
		run_jobs(fetch, multi, transfers, jobs, count,
			 max_parallel > 0 ? (size_t)max_parallel : 1);
		return_multi(fetch, multi);
	}

	/* Retries run one at a time, continuing each job's count of attempts.
	 * Without memory for the multi handle, every job runs here. */
	for (i = 0; i < count; i++) {
		struct fetch_job *job = &jobs[i];
		int attempts = transfers && multi ? transfers[i].attempts : 0;

		if (transfers && multi && job->status != 0 &&
		    can_cut_range(&transfers[i])) {
			job->status =
			    fetch_cut_range(&transfers[i], &job->result,
					    job->error, sizeof(job->error));
			continue;
		}
		if (transfers && multi && !transfers[i].retryable)
			continue;
		if (attempts >= fetch->max_attempts)
			continue;
		if (attempts > 0)
			log_warning("%s, retrying (attempt %d of %d)",
				    job->error, attempts + 1,
				    fetch->max_attempts);
		job->status = fetch_range_from(
		    fetch, job->url, job->offset, job->length, job->buf,
		    &job->result, job->error, sizeof(job->error), attempts + 1);
	}
	free(transfers);
	return 0;
}
