/* TC3-HMAC-SHA256 request signing for Tencent Cloud APIs, with the
 * canonical headers fixed to "content-type;host" and an empty query, as the
 * official SDKs sign a JSON POST. */
#ifndef CSIPFS_TC3_H
#define CSIPFS_TC3_H

#include <stddef.h>
#include <stdint.h>

#define TC3_ALGORITHM "TC3-HMAC-SHA256"

struct tc3_request {
	const char *secret_id;
	const char *secret_key;
	const char *service; /* "csip" */
	const char *host;    /* the Host header value, with ":port" if sent */
	const char *content_type; /* the exact Content-Type header value */
	const void *body;
	size_t body_len;
	int64_t timestamp; /* Unix seconds, the X-TC-Timestamp value */
};

/* Writes the UTC date of timestamp as "YYYY-MM-DD" into date (11 bytes).
 * Timestamps before 1970 or after 9999-12-31 give "0000-00-00". */
void tc3_date(int64_t timestamp, char date[11]);

/* Computes the lowercase hex signature (64 characters and a NUL).
 * Returns 0, -EIO if libcrypto fails, or -EINVAL for invalid input. Input
 * is invalid when a field is missing, when a text field is longer than its
 * bound (256 bytes for the secrets, 64 for the service, 1024 for the
 * headers) or contains control characters, when the SecretId or service
 * contains ' ', ',' or '/', or when the timestamp is outside years
 * 1970..9999. body may be NULL when body_len is 0. */
int tc3_signature(const struct tc3_request *req, char signature[65]);

/* Writes the whole Authorization header value. Returns 0, -EINVAL, -EIO, or
 * -ENAMETOOLONG when size is too small. */
int tc3_authorization(const struct tc3_request *req, char *out, size_t size);

#endif
