/* One CSIP API call: the JSON request, TC3 signing, the HTTPS POST, the
 * error envelope, retries with backoff, and client-side pacing per action.
 * Thread-safe: one struct api serves every thread of the mount. */
#ifndef CSIPFS_API_H
#define CSIPFS_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define API_VERSION	     "2022-11-21"
#define API_SERVICE	     "csip"
#define API_DEFAULT_ENDPOINT "https://csip.intl.tencentcloudapi.com"

/* Maximum response body accepted, in bytes. */
#define API_MAX_RESPONSE_BYTES (16 * 1024 * 1024)

struct api_options {
	const char *endpoint; /* https://host[:port], or http:// for tests */
	const char *region;   /* X-TC-Region, or NULL */
	const char *cafile;   /* NULL: the system trust store */
	const struct config_credentials *credentials; /* must outlive the api */
	int max_attempts;			      /* 0 means 6 */
	double deadline_seconds; /* for all attempts of one call; 0 means 60 */
	/* Maximum calls per second and action, 0 means 20 (also the cap).
	 * After RequestLimitExceeded the client lowers an action's rate and
	 * raises it again slowly after a run of successes. */
	double calls_per_second;
	double request_timeout; /* seconds for one attempt; 0 means 30 */
};

/* The cause of a failed call. Fields are "" when unknown. */
struct api_error {
	int errnum;	  /* positive errno that ops returns for this failure */
	long http_status; /* 0 when no HTTP response arrived */
	char code[96];	  /* API error Code, or "" for transport failures */
	char message[512]; /* API Message, or transport error text */
	char request_id[80];
	int attempts;
	bool cancelled; /* the call was cut short because the mount ends */
};

struct api;

/* Validates options and prepares a client. Makes no network call.
 * Returns 0, or -EINVAL with err naming the bad value. */
int api_create(const struct api_options *options, struct api **out, char *err,
	       size_t err_size);
void api_destroy(struct api *api);

/* Sends action with the request object (borrowed; NULL sends {}).
 * On success returns 0 and sets *response to a new reference to the
 * "Response" object. On failure returns a negated errno and fills error.
 * Retryable failures (RequestLimitExceeded*, InternalError*,
 * ResourceUnavailable*, ResourceInsufficient*, HTTP 5xx, timeouts and
 * connection errors) are retried with exponential backoff and full jitter,
 * within max_attempts and deadline_seconds. AuthFailure.SignatureExpire
 * makes the client take its clock offset from the server's Date header and
 * retry once. Other errors are returned at once. Within 10 seconds after a
 * call that got no HTTP response in any attempt, each call makes a single
 * attempt, so that callers fail fast while the API is down. */
int api_call(struct api *api, const char *action, json_t *request,
	     json_t **response, struct api_error *error);

/* Copies length bytes of a response body into a new NUL-terminated buffer
 * (*out, length in *out_length) that jansson accepts: each byte that is not
 * part of a valid UTF-8 sequence (RFC 3629: no overlong forms, surrogates or
 * code points above U+10FFFF) becomes U+FFFD, the same rule as
 * names_sanitize(), and a raw control byte inside a JSON string becomes a
 * \u00XX escape. The output has at most 6 * length + 1 bytes. Returns 0,
 * or -ENOMEM. */
int api_repair_body(const char *body, size_t length, char **out,
		    size_t *out_length);

/* Reads a response body: the "Response" object on success (a new
 * reference in *response), or the error envelope, an HTML error page or
 * invalid JSON as error. The body is repaired by api_repair_body() first,
 * and strings may contain U+0000. Sets *retryable when a later attempt may
 * succeed. Returns 0 or a negated errno. */
int api_parse_response(const char *body, size_t length, long http_status,
		       json_t **response, struct api_error *error,
		       bool *retryable);

/* Makes every call in progress or waiting to be sent fail at once with EIO,
 * and every later call too. Used when the mount ends. Thread-safe. */
void api_cancel(struct api *api);

/* Formats error as one line: "Code: Message (RequestId R, HTTP S)".
 * Returns out. */
char *api_format_error(const struct api_error *error, char *out, size_t size);

/* Whether an error code is one that a retry may cure. */
bool api_code_is_retryable(const char *code);

/* Whether an error means the credentials are invalid for every call
 * (AuthFailure.* other than AuthFailure.UnauthorizedOperation). */
bool api_code_is_auth_failure(const char *code);

/* Counts the calls made per action and the retries, for debug lines. */
void api_get_counts(struct api *api, uint64_t *calls, uint64_t *retries);

/* Pages a list call. For each page, sets Filter.Limit to page_size (at most
 * 100) and Filter.Offset in a copy of request, calls action, and hands each
 * element of the response's "Data" array to on_item. Stops when the
 * elements seen reach TotalCount (an integer, an integral real or a numeric
 * string), when a page comes back empty, when a page comes back short and
 * no TotalCount promises more (a server may cap Limit below page_size), or
 * after max_pages pages (0 means 10000), whichever comes first. Returns 0, the
 * first negated errno from api_call() (error filled), or on_item's negative
 * return. */
typedef int (*api_item_fn)(json_t *item, void *ctx);
typedef int (*api_call_fn)(void *caller, const char *action, json_t *request,
			   json_t **response, struct api_error *error);
int api_page(api_call_fn call, void *caller, const char *action,
	     json_t *request, unsigned page_size, unsigned max_pages,
	     api_item_fn on_item, void *ctx, struct api_error *error);

/* api_call with a struct api as caller, for api_page(). */
int api_call_adapter(void *api, const char *action, json_t *request,
		     json_t **response, struct api_error *error);

/* Reads a JSON value that should be an integer but may arrive as a
 * numeric string or an integral real. Returns 0 and sets out, or -EINVAL. */
int api_json_integer(const json_t *value, int64_t *out);

/* Returns the string value of key in object, or NULL when absent, null or
 * not a string. */
const char *api_json_string(const json_t *object, const char *key);

#endif
