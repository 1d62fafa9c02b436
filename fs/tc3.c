/* TC3-HMAC-SHA256: the signing algorithm of Tencent Cloud API 3.0, computed
 * with OpenSSL 3 libcrypto. */
#include "tc3.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define TC3_SHA256_BYTES 32

/* Maximum lengths of the text fields. Real values are far shorter (a
 * SecretKey has 32 characters). The bounds keep every buffer fixed. */
#define TC3_SECRET_MAX	     256
#define TC3_SERVICE_MAX	     64
#define TC3_HEADER_VALUE_MAX 1024

/* 9999-12-31 23:59:59 UTC, the last second with a four-digit year. */
#define TC3_TIMESTAMP_MAX INT64_C(253402300799)

void tc3_date(int64_t timestamp, char date[11])
{
	time_t seconds = (time_t)timestamp;
	struct tm tm;

	/* Negative timestamps are not valid X-TC-Timestamp values, and years
	 * after 9999 do not fit "YYYY-MM-DD". tc3_signature() rejects both
	 * before it gets here. */
	if (timestamp < 0 || timestamp > TC3_TIMESTAMP_MAX ||
	    !gmtime_r(&seconds, &tm)) {
		memcpy(date, "0000-00-00", 11);
		return;
	}
	if (strftime(date, 11, "%Y-%m-%d", &tm) != 10)
		memcpy(date, "0000-00-00", 11);
}

/* Checks that text is present, at most max_length bytes long and free of
 * control characters, which could split an HTTP header. */
static bool tc3_text_valid(const char *text, size_t max_length)
{
	size_t length;

	if (!text || !*text)
		return false;
	length = strnlen(text, max_length + 1);
	if (length > max_length)
		return false;
	for (size_t i = 0; i < length; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static bool tc3_request_valid(const struct tc3_request *req)
{
	if (!req)
		return false;
	if (!tc3_text_valid(req->secret_id, TC3_SECRET_MAX) ||
	    strpbrk(req->secret_id, " ,/"))
		return false;
	if (!tc3_text_valid(req->secret_key, TC3_SECRET_MAX))
		return false;
	if (!tc3_text_valid(req->service, TC3_SERVICE_MAX) ||
	    strpbrk(req->service, " ,/"))
		return false;
	if (!tc3_text_valid(req->host, TC3_HEADER_VALUE_MAX) ||
	    !tc3_text_valid(req->content_type, TC3_HEADER_VALUE_MAX))
		return false;
	if (!req->body && req->body_len > 0)
		return false;
	return req->timestamp >= 0 && req->timestamp <= TC3_TIMESTAMP_MAX;
}

static void tc3_hex(const unsigned char *bytes, size_t length, char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < length; i++) {
		hex[2 * i] = digits[bytes[i] >> 4];
		hex[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	hex[2 * length] = '\0';
}

/* Feeds text to the digest in lowercase. */
static int tc3_digest_lowercase(EVP_MD_CTX *ctx, const char *text)
{
	char chunk[64];
	size_t n = 0;

	for (; *text; text++) {
		char c = *text;

		chunk[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		if (n == sizeof(chunk)) {
			if (!EVP_DigestUpdate(ctx, chunk, n))
				return -EIO;
			n = 0;
		}
	}
	if (n > 0 && !EVP_DigestUpdate(ctx, chunk, n))
		return -EIO;
	return 0;
}

static int tc3_digest_text(EVP_MD_CTX *ctx, const char *text)
{
	return EVP_DigestUpdate(ctx, text, strlen(text)) ? 0 : -EIO;
}

/* Writes the hex SHA-256 of the canonical request into hex (65 bytes):
 * "POST\n/\n\ncontent-type:<type>\nhost:<host>\n\ncontent-type;host\n"
 * followed by the hex SHA-256 of the body, with type and host lowercased. */
static int tc3_canonical_request_hash(const struct tc3_request *req,
				      char hex[65])
{
	unsigned char body_hash[TC3_SHA256_BYTES];
	unsigned char hash[TC3_SHA256_BYTES];
	char body_hex[2 * TC3_SHA256_BYTES + 1];
	unsigned int length = 0;
	EVP_MD_CTX *ctx = NULL;
	int ret = -EIO;

	if (!EVP_Digest(req->body_len > 0 ? req->body : "", req->body_len,
			body_hash, &length, EVP_sha256(), NULL))
		return -EIO;
	tc3_hex(body_hash, sizeof(body_hash), body_hex);

	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -EIO;
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	if (tc3_digest_text(ctx, "POST\n/\n\ncontent-type:") ||
	    tc3_digest_lowercase(ctx, req->content_type) ||
	    tc3_digest_text(ctx, "\nhost:") ||
	    tc3_digest_lowercase(ctx, req->host) ||
	    tc3_digest_text(ctx, "\n\ncontent-type;host\n") ||
	    tc3_digest_text(ctx, body_hex))
		goto out;
	if (!EVP_DigestFinal_ex(ctx, hash, &length))
		goto out;
	tc3_hex(hash, sizeof(hash), hex);
	ret = 0;
out:
	EVP_MD_CTX_free(ctx);
	return ret;
}

static bool tc3_hmac(const void *key, size_t key_length, const char *data,
		     size_t data_length, unsigned char out[TC3_SHA256_BYTES])
{
	unsigned int length = TC3_SHA256_BYTES;

	return HMAC(EVP_sha256(), key, (int)key_length,
		    (const unsigned char *)data, data_length, out,
		    &length) != NULL;
}

int tc3_signature(const struct tc3_request *req, char signature[65])
{
	char key[3 + TC3_SECRET_MAX + 1];
	unsigned char date_key[TC3_SHA256_BYTES];
	unsigned char service_key[TC3_SHA256_BYTES];
	unsigned char signing_key[TC3_SHA256_BYTES];
	unsigned char result[TC3_SHA256_BYTES];
	char canonical_hex[2 * TC3_SHA256_BYTES + 1];
	char string_to_sign[256];
	char date[11];
	size_t key_length;
	int length;
	int ret;

	if (!signature)
		return -EINVAL;
	signature[0] = '\0';
	if (!tc3_request_valid(req))
		return -EINVAL;

	tc3_date(req->timestamp, date);
	ret = tc3_canonical_request_hash(req, canonical_hex);
	if (ret)
		return ret;
	length = snprintf(string_to_sign, sizeof(string_to_sign),
			  TC3_ALGORITHM "\n%" PRId64 "\n%s/%s/tc3_request\n%s",
			  req->timestamp, date, req->service, canonical_hex);
	if (length < 0 || (size_t)length >= sizeof(string_to_sign))
		return -EINVAL;

	key_length =
	    (size_t)snprintf(key, sizeof(key), "TC3%s", req->secret_key);
	ret = -EIO;
	if (!tc3_hmac(key, key_length, date, strlen(date), date_key) ||
	    !tc3_hmac(date_key, sizeof(date_key), req->service,
		      strlen(req->service), service_key) ||
	    !tc3_hmac(service_key, sizeof(service_key), "tc3_request",
		      strlen("tc3_request"), signing_key) ||
	    !tc3_hmac(signing_key, sizeof(signing_key), string_to_sign,
		      (size_t)length, result))
		goto out;
	tc3_hex(result, sizeof(result), signature);
	ret = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(date_key, sizeof(date_key));
	OPENSSL_cleanse(service_key, sizeof(service_key));
	OPENSSL_cleanse(signing_key, sizeof(signing_key));
	OPENSSL_cleanse(result, sizeof(result));
	return ret;
}

int tc3_authorization(const struct tc3_request *req, char *out, size_t size)
{
	char signature[65];
	char date[11];
	int length;
	int ret;

	if (!out || size == 0)
		return -EINVAL;
	out[0] = '\0';

	ret = tc3_signature(req, signature);
	if (ret)
		return ret;
	tc3_date(req->timestamp, date);

	length = snprintf(out, size,
			  TC3_ALGORITHM " Credential=%s/%s/%s/tc3_request, "
					"SignedHeaders=content-type;host, "
					"Signature=%s",
			  req->secret_id, date, req->service, signature);
	if (length < 0 || (size_t)length >= size) {
		out[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}
