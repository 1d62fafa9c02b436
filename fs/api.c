/* One CSIP API call: signing, transport, the error envelope, retries and
 * pacing. */
#include "api.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "dns_share.h"
#include "log.h"
#include "names.h"
#include "tc3.h"

#define CONTENT_TYPE	   "application/json; charset=utf-8"
#define MAX_ACTIONS	   16
#define MAX_POOLED_HANDLES 8
#define BACKOFF_FIRST_MS   250
#define BACKOFF_MAX_MS	   8000
/* The lowest pacing rate, in calls per second, after RequestLimitExceeded. */
#define PACE_MIN_RATE 1.0
/* The server counts calls in one-second windows, so after a rejection the
 * action pauses this long before its next call, in seconds. */
#define PACE_LIMIT_PAUSE 1.0
/* Seconds after a call that got no HTTP response at all during which each
 * call makes one attempt only, so that reads fail fast while the API is
 * down. */
#define UNREACHABLE_HOLD 10.0

/* The pacing state of one action. */
struct pace_slot {
	char action[64];
	double next_send;   /* monotonic seconds */
	double rate;	    /* calls per second now */
	unsigned successes; /* accepted calls since the rate last changed */
	double limited_at;  /* last RequestLimitExceeded, monotonic seconds */
	/* Send times of the last calls, a ring of PACE_HISTORY entries. */
	double sent[32];
	unsigned sent_next;
};

#define PACE_HISTORY 32

struct api {
	char *url;  /* endpoint with a trailing "/" */
	char *host; /* Host header value, signed */
	char *region;
	char *cafile;
	const struct config_credentials *credentials;
	int max_attempts;
	double deadline_seconds;
	double request_timeout; /* seconds for one attempt */
	double max_rate;	/* calls per second and action, at most */
	/* Each pooled handle keeps its own connections, and they share only
	 * the DNS cache. */
	struct dns_share dns;
	pthread_mutex_t pool_lock;
	CURL *pool[MAX_POOLED_HANDLES];
	size_t pool_count;
	pthread_mutex_t pace_lock;
	struct pace_slot slots[MAX_ACTIONS];
	size_t slot_count;
	atomic_int_fast64_t clock_offset; /* server time minus local time */
	/* Until when (monotonic milliseconds) calls make one attempt. */
	atomic_uint_fast64_t unreachable_until_ms;
	atomic_uint_fast64_t calls;
	atomic_uint_fast64_t retries;
	atomic_bool cancelled; /* set by api_cancel() */
};

/* A response being received. */
struct response_buffer {
	char *data;
	size_t length;
	size_t capacity;
	bool too_large;
	time_t server_date; /* from the Date header, 0 if none */
};

static uint64_t random_below(uint64_t bound);

static double monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double seconds);

/* Sleeps in slices, so that api_cancel() ends the wait within about 50 ms.
 * Returns 0, or -ECANCELED. */
static int sleep_unless_cancelled(struct api *api, double seconds)
{
	double end = monotonic_seconds() + seconds;
	double left;

	while (!atomic_load(&api->cancelled)) {
		left = end - monotonic_seconds();
		if (left <= 0)
			return 0;
		sleep_seconds(left < 0.05 ? left : 0.05);
	}
	return -ECANCELED;
}

static void sleep_seconds(double seconds)
{
	struct timespec ts;

	if (seconds <= 0)
		return;
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Takes an idle handle, with its open connections, or makes a new one. */
static CURL *take_handle(struct api *api)
{
	CURL *curl = NULL;

	pthread_mutex_lock(&api->pool_lock);
	if (api->pool_count > 0)
		curl = api->pool[--api->pool_count];
	pthread_mutex_unlock(&api->pool_lock);
	return curl ? curl : curl_easy_init();
}

static void return_handle(struct api *api, CURL *curl)
{
	curl_easy_reset(curl);
	pthread_mutex_lock(&api->pool_lock);
	if (api->pool_count < MAX_POOLED_HANDLES) {
		api->pool[api->pool_count++] = curl;
		curl = NULL;
	}
	pthread_mutex_unlock(&api->pool_lock);
	if (curl)
		curl_easy_cleanup(curl);
}

/* Splits "https://host[:port][/]" into the URL to post to and the Host
 * header value. */
static int parse_endpoint(const char *endpoint, char **url, char **host,
			  char *err, size_t err_size)
{
	const char *authority;
	const char *end;
	size_t length;

	if (strncmp(endpoint, "https://", 8) == 0) {
		authority = endpoint + 8;
	} else if (strncmp(endpoint, "http://", 7) == 0) {
		authority = endpoint + 7;
	} else {
		snprintf(err, err_size,
			 "invalid endpoint %s: expected https://HOST[:PORT] "
			 "(or http:// for tests)",
			 endpoint);
		return -EINVAL;
	}
	end = strchr(authority, '/');
	length = end ? (size_t)(end - authority) : strlen(authority);
	if (length == 0 || (end && strcmp(end, "/") != 0) ||
	    memchr(authority, '@', length) || memchr(authority, '?', length)) {
		snprintf(err, err_size,
			 "invalid endpoint %s: expected https://HOST[:PORT] "
			 "without a path, query or user",
			 endpoint);
		return -EINVAL;
	}
	*host = strndup(authority, length);
	if (!*host)
		return -ENOMEM;
	for (char *c = *host; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	if (asprintf(url, "%.*s/", (int)(authority - endpoint + length),
		     endpoint) < 0) {
		free(*host);
		*host = NULL;
		return -ENOMEM;
	}
	return 0;
}

int api_create(const struct api_options *options, struct api **out, char *err,
	       size_t err_size)
{
	struct api *api;
	double rate;
	int rc;

	*out = NULL;
	if (!options->credentials || !options->credentials->secret_id ||
	    !options->credentials->secret_key) {
		snprintf(err, err_size, "missing credentials");
		return -EINVAL;
	}
	api = calloc(1, sizeof(*api));
	if (!api)
		return -ENOMEM;
	rc = parse_endpoint(options->endpoint ? options->endpoint
					      : API_DEFAULT_ENDPOINT,
			    &api->url, &api->host, err, err_size);
	if (rc < 0)
		goto fail;
	rc = -ENOMEM;
	if (options->region && *options->region &&
	    !(api->region = strdup(options->region)))
		goto fail;
	if (options->cafile && !(api->cafile = strdup(options->cafile)))
		goto fail;
	api->credentials = options->credentials;
	api->max_attempts =
	    options->max_attempts > 0 ? options->max_attempts : 6;
	api->deadline_seconds =
	    options->deadline_seconds > 0 ? options->deadline_seconds : 60;
	rate = options->calls_per_second > 0 ? options->calls_per_second : 20;
	api->max_rate = rate > 20 ? 20 : rate;
	api->request_timeout =
	    options->request_timeout > 0 ? options->request_timeout : 30;
	if (dns_share_init(&api->dns) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&api->pool_lock, NULL);
	pthread_mutex_init(&api->pace_lock, NULL);
	*out = api;
	return 0;

fail:
	free(api->cafile);
	free(api->region);
	free(api->host);
	free(api->url);
	free(api);
	return rc;
}

void api_destroy(struct api *api)
{
	if (!api)
		return;
	/* Handles that use the share go before the share. */
	for (size_t i = 0; i < api->pool_count; i++)
		curl_easy_cleanup(api->pool[i]);
	dns_share_destroy(&api->dns);
	pthread_mutex_destroy(&api->pace_lock);
	pthread_mutex_destroy(&api->pool_lock);
	free(api->cafile);
	free(api->region);
	free(api->host);
	free(api->url);
	free(api);
}

/* Finds or adds the pacing slot of action. Call with pace_lock held.
 * Returns NULL when MAX_ACTIONS slots are taken: that action is unpaced. */
static struct pace_slot *find_slot(struct api *api, const char *action)
{
	struct pace_slot *slot;

	for (size_t i = 0; i < api->slot_count; i++)
		if (strcmp(api->slots[i].action, action) == 0)
			return &api->slots[i];
	if (api->slot_count == MAX_ACTIONS)
		return NULL;
	slot = &api->slots[api->slot_count++];
	memset(slot, 0, sizeof(*slot));
	snprintf(slot->action, sizeof(slot->action), "%s", action);
	slot->rate = api->max_rate;
	return slot;
}

/* The gap between two calls at rate: a tenth longer than 1 / rate, so that
 * jitter on the way cannot put one call too many into the server's
 * one-second window. */
static double pace_interval(double rate)
{
	return 1.1 / rate;
}

/* Waits until a call of action may be sent, spacing the calls of one action
 * by its current rate across all threads. A thread claims its send time only
 * when that time has come, so a rate lowered meanwhile applies to every
 * waiting thread. Returns 0, or -ETIMEDOUT when the wait would pass
 * deadline (monotonic seconds). */
static int pace(struct api *api, const char *action, double deadline)
{
	struct pace_slot *slot;
	double now;
	double wait;

	for (;;) {
		if (atomic_load(&api->cancelled))
			return -ECANCELED;
		pthread_mutex_lock(&api->pace_lock);
		slot = find_slot(api, action);
		now = monotonic_seconds();
		if (!slot || slot->next_send <= now) {
			if (slot) {
				slot->next_send =
				    now + pace_interval(slot->rate);
				slot->sent[slot->sent_next++ % PACE_HISTORY] =
				    now;
			}
			pthread_mutex_unlock(&api->pace_lock);
			return 0;
		}
		wait = slot->next_send - now;
		pthread_mutex_unlock(&api->pace_lock);
		if (now + wait > deadline)
			return -ETIMEDOUT;
		if (sleep_unless_cancelled(api, wait) < 0)
			return -ECANCELED;
	}
}

/* Adjusts the rate of action after a call. RequestLimitExceeded halves the
 * rate, with a floor of PACE_MIN_RATE, and caps it at 0.9 times the calls
 * the server accepted in the last second, because its limit is no higher.
 * It also pauses the action for PACE_LIMIT_PAUSE plus up to 0.25 s of
 * jitter. Each run of 2 * rate accepted calls raises the rate by a tenth,
 * up to max_rate. */
static void pace_feedback(struct api *api, const char *action, bool limited)
{
	struct pace_slot *slot;
	double now = monotonic_seconds();
	double rate;
	unsigned recent = 0;

	pthread_mutex_lock(&api->pace_lock);
	slot = find_slot(api, action);
	if (!slot) {
		pthread_mutex_unlock(&api->pace_lock);
		return;
	}
	if (!limited) {
		if (++slot->successes >= (unsigned)(2 * slot->rate) + 1 &&
		    slot->rate < api->max_rate) {
			slot->rate *= 1.1;
			if (slot->rate > api->max_rate)
				slot->rate = api->max_rate;
			slot->successes = 0;
		}
		pthread_mutex_unlock(&api->pace_lock);
		return;
	}
	slot->successes = 0;
	slot->next_send =
	    now + PACE_LIMIT_PAUSE + (double)random_below(250) / 1000.0;
	/* Calls sent before the first rejection was seen are rejected in the
	 * same window: they extend the pause but lower the rate only once. */
	if (slot->limited_at > 0 && now - slot->limited_at < PACE_LIMIT_PAUSE) {
		pthread_mutex_unlock(&api->pace_lock);
		return;
	}
	slot->limited_at = now;
	for (unsigned i = 0; i < PACE_HISTORY; i++)
		if (slot->sent[i] > 0 && now - slot->sent[i] < 1.0)
			recent++;
	rate = slot->rate / 2;
	/* The rejected call itself was one too many. */
	if (recent > 1 && 0.9 * (recent - 1) < rate)
		rate = 0.9 * (recent - 1);
	if (rate < PACE_MIN_RATE)
		rate = PACE_MIN_RATE;
	slot->rate = rate;
	pthread_mutex_unlock(&api->pace_lock);
	log_info("%s: request limit exceeded; pacing at %.1f calls/s", action,
		 rate);
}

static size_t write_cb(char *data, size_t size, size_t count, void *user)
{
	struct response_buffer *buffer = user;
	size_t length = size * count;
	size_t capacity;
	char *grown;

	if (buffer->length + length > API_MAX_RESPONSE_BYTES) {
		buffer->too_large = true;
		return 0;
	}
	if (buffer->length + length + 1 > buffer->capacity) {
		capacity = buffer->capacity ? buffer->capacity : 16384;
		while (capacity < buffer->length + length + 1)
			capacity *= 2;
		grown = realloc(buffer->data, capacity);
		if (!grown)
			return 0;
		buffer->data = grown;
		buffer->capacity = capacity;
	}
	memcpy(buffer->data + buffer->length, data, length);
	buffer->length += length;
	buffer->data[buffer->length] = '\0';
	return length;
}

static size_t header_cb(char *data, size_t size, size_t count, void *user)
{
	struct response_buffer *buffer = user;
	size_t length = size * count;
	char value[128];

	if (length > 5 && length < sizeof(value) + 5 &&
	    strncasecmp(data, "Date:", 5) == 0) {
		memcpy(value, data + 5, length - 5);
		value[length - 5] = '\0';
		buffer->server_date = curl_getdate(value, NULL);
		if (buffer->server_date < 0)
			buffer->server_date = 0;
	}
	return length;
}

/* libcurl progress callback: a nonzero return aborts the transfer. */
static int abort_if_cancelled(void *user, curl_off_t download_total,
			      curl_off_t downloaded, curl_off_t upload_total,
			      curl_off_t uploaded)
{
	struct api *api = user;

	(void)download_total;
	(void)downloaded;
	(void)upload_total;
	(void)uploaded;
	return atomic_load(&api->cancelled) ? 1 : 0;
}

void api_cancel(struct api *api)
{
	atomic_store(&api->cancelled, true);
}

static int add_header(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int add_header(struct curl_slist **list, const char *fmt, ...)
{
	char line[2048];
	struct curl_slist *grown;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -ENAMETOOLONG;
	grown = curl_slist_append(*list, line);
	/* NOTE: the line may hold the Authorization value or the session
	 * token, so it is wiped before the stack frame is reused. */
	explicit_bzero(line, sizeof(line));
	if (!grown)
		return -ENOMEM;
	*list = grown;
	return 0;
}

static void free_headers(struct curl_slist *list)
{
	for (struct curl_slist *h = list; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(list);
}

static void set_error(struct api_error *error, int errnum, long status,
		      const char *code, const char *message,
		      const char *request_id)
{
	error->errnum = errnum;
	error->http_status = status;
	snprintf(error->code, sizeof(error->code), "%s", code ? code : "");
	snprintf(error->message, sizeof(error->message), "%s",
		 message ? message : "");
	snprintf(error->request_id, sizeof(error->request_id), "%s",
		 request_id ? request_id : "");
}

static bool has_prefix(const char *text, const char *prefix)
{
	return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Whether code is prefix itself or one of its dotted sub-codes. */
static bool code_in_family(const char *code, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(code, prefix, n) == 0 &&
	       (code[n] == '\0' || code[n] == '.');
}

bool api_code_is_retryable(const char *code)
{
	return code_in_family(code, "RequestLimitExceeded") ||
	       code_in_family(code, "InternalError") ||
	       code_in_family(code, "ResourceUnavailable") ||
	       code_in_family(code, "ResourceInsufficient");
}

bool api_code_is_auth_failure(const char *code)
{
	return code_in_family(code, "AuthFailure") &&
	       strcmp(code, "AuthFailure.UnauthorizedOperation") != 0;
}

static int errnum_for_code(const char *code)
{
	if (has_prefix(code, "AuthFailure") ||
	    code_in_family(code, "UnauthorizedOperation") ||
	    code_in_family(code, "OperationDenied"))
		return EACCES;
	if (code_in_family(code, "ResourceNotFound"))
		return ENOENT;
	return EIO;
}

/* The outcome of one attempt. */
enum attempt_result {
	ATTEMPT_OK,
	ATTEMPT_RETRY,
	ATTEMPT_CLOCK_SKEW,
	ATTEMPT_FAIL,
};

int api_repair_body(const char *body, size_t length, char **out,
		    size_t *out_length)
{
	const unsigned char *in = (const unsigned char *)(body ? body : "");
	bool in_string = false;
	bool escaped = false;
	size_t used = 0;
	size_t capacity = length + length / 8 + 16;
	char *repaired;

	repaired = malloc(capacity);
	if (!repaired)
		return -ENOMEM;
	for (size_t i = 0; i < length;) {
		size_t size = names_utf8_length(in + i, length - i);

		/* One step writes at most 6 bytes (a \u00XX escape), and
		 * the terminating NUL needs one more. */
		if (used + 7 > capacity) {
			char *grown;

			capacity *= 2;
			grown = realloc(repaired, capacity);
			if (!grown) {
				free(repaired);
				return -ENOMEM;
			}
			repaired = grown;
		}

		if (size == 0) {
			memcpy(repaired + used, "\xef\xbf\xbd", 3);
			used += 3;
			i++;
			escaped = false;
			continue;
		}
		if (size == 1 && in_string && in[i] < 0x20 && !escaped) {
			used +=
			    (size_t)sprintf(repaired + used, "\\u%04x", in[i]);
			i++;
			continue;
		}
		if (size == 1) {
			if (escaped)
				escaped = false;
			else if (in_string && in[i] == '\\')
				escaped = true;
			else if (in[i] == '"')
				in_string = !in_string;
		} else {
			escaped = false;
		}
		memcpy(repaired + used, in + i, size);
		used += size;
		i += size;
	}
	repaired[used] = '\0';
	*out = repaired;
	*out_length = used;
	return 0;
}

/* Reads the envelope of a response body. */
static enum attempt_result parse_envelope(const char *body, size_t length,
					  long status, json_t **response,
					  struct api_error *error)
{
	json_error_t json_error;
	char *repaired;
	size_t repaired_length;
	json_t *root;
	json_t *inner;
	json_t *fault;
	const char *code;
	const char *request_id;
	char text[256];
	enum attempt_result result;

	if (api_repair_body(body, length, &repaired, &repaired_length) < 0) {
		set_error(error, ENOMEM, status, "",
			  "out of memory reading the API response", "");
		return ATTEMPT_FAIL;
	}
	root = json_loadb(repaired, repaired_length,
			  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &json_error);
	free(repaired);
	inner = root ? json_object_get(root, "Response") : NULL;
	if (!json_is_object(inner)) {
		if (status >= 500) {
			snprintf(text, sizeof(text),
				 "HTTP %ld without an API response", status);
			set_error(error, EIO, status, "", text, "");
			result = ATTEMPT_RETRY;
		} else {
			snprintf(text, sizeof(text),
				 "invalid API response (HTTP %ld, %zu bytes): "
				 "%s",
				 status, length,
				 root ? "no Response object" : json_error.text);
			set_error(error, EIO, status, "", text, "");
			result = ATTEMPT_FAIL;
		}
		json_decref(root);
		return result;
	}
	request_id = api_json_string(inner, "RequestId");
	fault = json_object_get(inner, "Error");
	if (json_is_object(fault)) {
		code = api_json_string(fault, "Code");
		set_error(error, errnum_for_code(code ? code : ""), status,
			  code ? code : "UnknownError",
			  api_json_string(fault, "Message"), request_id);
		json_decref(root);
		if (strcmp(error->code, "AuthFailure.SignatureExpire") == 0)
			return ATTEMPT_CLOCK_SKEW;
		if (api_code_is_retryable(error->code))
			return ATTEMPT_RETRY;
		return ATTEMPT_FAIL;
	}
	if (status != 200) {
		snprintf(text, sizeof(text), "HTTP %ld", status);
		set_error(error, EIO, status, "", text, request_id);
		json_decref(root);
		return status >= 500 ? ATTEMPT_RETRY : ATTEMPT_FAIL;
	}
	*response = json_incref(inner);
	json_decref(root);
	return ATTEMPT_OK;
}

int api_parse_response(const char *body, size_t length, long http_status,
		       json_t **response, struct api_error *error,
		       bool *retryable)
{
	enum attempt_result result;

	*response = NULL;
	memset(error, 0, sizeof(*error));
	result = parse_envelope(body, length, http_status, response, error);
	*retryable = result == ATTEMPT_RETRY || result == ATTEMPT_CLOCK_SKEW;
	return result == ATTEMPT_OK ? 0 : -error->errnum;
}

static bool curl_code_is_retryable(CURLcode code)
{
	switch (code) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* Sends one signed request and reads its envelope. */
static enum attempt_result attempt(struct api *api, const char *action,
				   const char *body, size_t body_length,
				   double timeout, json_t **response,
				   struct api_error *error, time_t *server_date)
{
	struct response_buffer buffer = {0};
	struct curl_slist *headers = NULL;
	char authorization[1024];
	char curl_error[CURL_ERROR_SIZE] = "";
	char text[512];
	int64_t timestamp;
	enum attempt_result result = ATTEMPT_FAIL;
	CURLcode code;
	long status = 0;
	CURL *curl;
	int rc;

	timestamp = (int64_t)time(NULL) + atomic_load(&api->clock_offset);
	struct tc3_request sign = {
	    .secret_id = api->credentials->secret_id,
	    .secret_key = api->credentials->secret_key,
	    .service = API_SERVICE,
	    .host = api->host,
	    .content_type = CONTENT_TYPE,
	    .body = body,
	    .body_len = body_length,
	    .timestamp = timestamp,
	};
	rc = tc3_authorization(&sign, authorization, sizeof(authorization));
	if (rc < 0) {
		set_error(error, EIO, 0, "", "signing the request failed", "");
		return ATTEMPT_FAIL;
	}
	rc = add_header(&headers, "Content-Type: %s", CONTENT_TYPE);
	rc = rc ?: add_header(&headers, "Host: %s", api->host);
	rc = rc ?: add_header(&headers, "X-TC-Action: %s", action);
	rc = rc ?: add_header(&headers, "X-TC-Version: %s", API_VERSION);
	rc = rc ?: add_header(&headers, "X-TC-Timestamp: %" PRId64, timestamp);
	if (!rc && api->region)
		rc = add_header(&headers, "X-TC-Region: %s", api->region);
	if (!rc && api->credentials->token)
		rc = add_header(&headers, "X-TC-Token: %s",
				api->credentials->token);
	rc = rc ?: add_header(&headers, "Authorization: %s", authorization);
	rc = rc ?: add_header(&headers, "Expect:");
	explicit_bzero(authorization, sizeof(authorization));
	if (rc) {
		set_error(error, EIO, 0, "", "building the request failed", "");
		goto out;
	}
	curl = take_handle(api);
	if (!curl) {
		set_error(error, ENOMEM, 0, "", "curl_easy_init failed", "");
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_URL, api->url);
	curl_easy_setopt(curl, CURLOPT_SHARE, api->dns.share);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_POST, 1L);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)body_length);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(timeout < 10 ? timeout * 1000 : 10000));
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, abort_if_cancelled);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, api);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buffer);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &buffer);
	if (api->cafile)
		curl_easy_setopt(curl, CURLOPT_CAINFO, api->cafile);
	code = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	return_handle(api, curl);
	*server_date = buffer.server_date;
	if (code != CURLE_OK) {
		if (buffer.too_large) {
			snprintf(text, sizeof(text),
				 "API response larger than %d bytes",
				 API_MAX_RESPONSE_BYTES);
			set_error(error, EIO, status, "", text, "");
			goto out;
		}
		if (code == CURLE_PEER_FAILED_VERIFICATION ||
		    code == CURLE_SSL_CACERT_BADFILE) {
			snprintf(text, sizeof(text),
				 "certificate verification failed for %s: %s",
				 api->host,
				 *curl_error ? curl_error
					     : curl_easy_strerror(code));
		} else {
			snprintf(text, sizeof(text), "%s: %s", api->host,
				 *curl_error ? curl_error
					     : curl_easy_strerror(code));
		}
		set_error(error, EIO, 0, "", text, "");
		result =
		    curl_code_is_retryable(code) ? ATTEMPT_RETRY : ATTEMPT_FAIL;
		goto out;
	}
	result =
	    parse_envelope(buffer.data, buffer.length, status, response, error);
out:
	free_headers(headers);
	free(buffer.data);
	return result;
}

static uint64_t random_below(uint64_t bound)
{
	uint64_t value = 0;

	if (bound == 0)
		return 0;
	if (getrandom(&value, sizeof(value), 0) != sizeof(value))
		value = (uint64_t)monotonic_seconds() * 2654435761u;
	return value % bound;
}

int api_call(struct api *api, const char *action, json_t *request,
	     json_t **response, struct api_error *error)
{
	char *body;
	int rc;
	double start = monotonic_seconds();
	double remaining;
	double delay;
	uint64_t backoff_ms = BACKOFF_FIRST_MS;
	bool clock_corrected = false;
	enum attempt_result result = ATTEMPT_FAIL;
	time_t server_date;
	char line[768];
	int attempts = 0;
	int max_attempts = api->max_attempts;
	bool answered = false;

	*response = NULL;
	memset(error, 0, sizeof(*error));
	body = request ? json_dumps(request, JSON_COMPACT) : strdup("{}");
	if (!body) {
		set_error(error, ENOMEM, 0, "", "encoding the request failed",
			  "");
		return -ENOMEM;
	}
	if ((uint64_t)(start * 1000) < atomic_load(&api->unreachable_until_ms))
		max_attempts = 1;
	while (attempts < max_attempts) {
		rc = pace(api, action, start + api->deadline_seconds);
		if (rc == -ECANCELED) {
			set_error(error, EIO, 0, "", "the mount is ending", "");
			error->cancelled = true;
			break;
		}
		if (rc < 0) {
			if (attempts == 0)
				set_error(error, EIO, 0, "",
					  "the call was not sent before its "
					  "deadline",
					  "");
			break;
		}
		remaining =
		    api->deadline_seconds - (monotonic_seconds() - start);
		if (remaining < 0.001)
			break;
		attempts++;
		atomic_fetch_add(&api->calls, 1);
		server_date = 0;
		result = attempt(api, action, body, strlen(body),
				 remaining < api->request_timeout
				     ? remaining
				     : api->request_timeout,
				 response, error, &server_date);
		if (result != ATTEMPT_RETRY || error->http_status != 0)
			answered = true;
		if (result == ATTEMPT_OK)
			pace_feedback(api, action, false);
		else if (result == ATTEMPT_RETRY &&
			 code_in_family(error->code, "RequestLimitExceeded"))
			pace_feedback(api, action, true);
		if (result == ATTEMPT_OK)
			break;
		if (result == ATTEMPT_CLOCK_SKEW && !clock_corrected &&
		    server_date > 0) {
			clock_corrected = true;
			atomic_store(&api->clock_offset,
				     (int64_t)server_date -
					 (int64_t)time(NULL));
			log_warning("%s: the API rejected the request "
				    "timestamp; using the server clock, "
				    "offset %" PRIdFAST64 " s",
				    action, atomic_load(&api->clock_offset));
			continue;
		}
		if (result != ATTEMPT_RETRY)
			break;
		remaining =
		    api->deadline_seconds - (monotonic_seconds() - start);
		if (attempts >= max_attempts || remaining <= 0)
			break;
		delay = (double)random_below(backoff_ms + 1) / 1000.0;
		if (delay > remaining)
			delay = remaining;
		log_debug("%s: attempt %d failed (%s), retrying in %.3f s",
			  action, attempts,
			  api_format_error(error, line, sizeof(line)), delay);
		atomic_fetch_add(&api->retries, 1);
		if (sleep_unless_cancelled(api, delay) < 0) {
			set_error(error, EIO, 0, "", "the mount is ending", "");
			error->cancelled = true;
			result = ATTEMPT_FAIL;
			break;
		}
		backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
							     : backoff_ms * 2;
	}
	free(body);
	if (answered)
		atomic_store(&api->unreachable_until_ms, 0);
	else if (attempts > 0)
		atomic_store(
		    &api->unreachable_until_ms,
		    (uint64_t)((monotonic_seconds() + UNREACHABLE_HOLD) *
			       1000));
	error->attempts = attempts;
	if (result == ATTEMPT_OK) {
		log_debug("%s: ok after %d attempt%s, %.3f s", action, attempts,
			  attempts == 1 ? "" : "s",
			  monotonic_seconds() - start);
		return 0;
	}
	if (error->errnum == 0)
		error->errnum = EIO;
	return -error->errnum;
}

char *api_format_error(const struct api_error *error, char *out, size_t size)
{
	int n;

	n = snprintf(out, size, "%s%s%s", error->code, *error->code ? ": " : "",
		     *error->message ? error->message : "unknown error");
	if (n >= 0 && (size_t)n < size && *error->request_id)
		n += snprintf(out + n, size - (size_t)n, " (RequestId %s)",
			      error->request_id);
	if (n >= 0 && (size_t)n < size && error->attempts > 1)
		snprintf(out + n, size - (size_t)n, " after %d attempts",
			 error->attempts);
	return out;
}

void api_get_counts(struct api *api, uint64_t *calls, uint64_t *retries)
{
	*calls = atomic_load(&api->calls);
	*retries = atomic_load(&api->retries);
}

int api_call_adapter(void *api, const char *action, json_t *request,
		     json_t **response, struct api_error *error)
{
	return api_call(api, action, request, response, error);
}

int api_json_integer(const json_t *value, int64_t *out)
{
	const char *text;
	char *end;
	double real;
	long long parsed;

	if (json_is_integer(value)) {
		*out = json_integer_value(value);
		return 0;
	}
	if (json_is_real(value)) {
		real = json_real_value(value);
		if (!isfinite(real) || real != floor(real) ||
		    fabs(real) > 9007199254740992.0)
			return -EINVAL;
		*out = (int64_t)real;
		return 0;
	}
	if (json_is_string(value)) {
		text = json_string_value(value);
		if (*text == '\0' || strlen(text) > 20)
			return -EINVAL;
		errno = 0;
		parsed = strtoll(text, &end, 10);
		if (errno || *end != '\0')
			return -EINVAL;
		*out = parsed;
		return 0;
	}
	return -EINVAL;
}

const char *api_json_string(const json_t *object, const char *key)
{
	json_t *value = json_object_get(object, key);

	return json_is_string(value) ? json_string_value(value) : NULL;
}

/* Sets Filter.Limit and Filter.Offset in request, creating Filter. */
static int set_page(json_t *request, unsigned limit, uint64_t offset)
{
	json_t *filter = json_object_get(request, "Filter");

	if (!json_is_object(filter)) {
		filter = json_object();
		if (!filter || json_object_set_new(request, "Filter", filter))
			return -ENOMEM;
	}
	if (json_object_set_new(filter, "Limit", json_integer(limit)) ||
	    json_object_set_new(filter, "Offset",
				json_integer((json_int_t)offset)))
		return -ENOMEM;
	return 0;
}

int api_page(api_call_fn call, void *caller, const char *action,
	     json_t *request, unsigned page_size, unsigned max_pages,
	     api_item_fn on_item, void *ctx, struct api_error *error)
{
	json_t *page_request;
	json_t *response = NULL;
	json_t *data;
	json_t *item;
	int64_t total;
	uint64_t offset = 0;
	size_t count;
	size_t index;
	bool have_total;
	int rc = 0;

	if (page_size == 0 || page_size > 100)
		page_size = 100;
	if (max_pages == 0)
		max_pages = 10000;
	page_request = request ? json_deep_copy(request) : json_object();
	if (!page_request)
		return -ENOMEM;
	for (unsigned page = 0; page < max_pages; page++) {
		rc = set_page(page_request, page_size, offset);
		if (rc < 0)
			break;
		rc = call(caller, action, page_request, &response, error);
		if (rc < 0)
			break;
		have_total =
		    api_json_integer(json_object_get(response, "TotalCount"),
				     &total) == 0;
		data = json_object_get(response, "Data");
		count = json_is_array(data) ? json_array_size(data) : 0;
		json_array_foreach(data, index, item)
		{
			rc = on_item(item, ctx);
			if (rc < 0)
				break;
		}
		json_decref(response);
		response = NULL;
		if (rc < 0)
			break;
		offset += count;
		if (count == 0 ||
		    (have_total && offset >= (uint64_t)(total < 0 ? 0 : total)))
			break;
		/* A short page ends the list unless TotalCount promises more,
		 * since a server may cap Limit below page_size. */
		if (count < page_size && !have_total)
			break;
	}
	json_decref(page_request);
	return rc;
}
