/* Unit tests of TC3-HMAC-SHA256 signing against a vector computed with the
 * official Node.js SDK (tencentcloud-sdk-nodejs-common, sign3). */
#include "tc3.h"

#include "check.h"

#include <errno.h>

#define VECTOR_BODY                                                            \
	"{\"Type\":1,\"ReportItemKeyList\":[{\"TaskLogList\":[\"tl-0001\"]}]}"
#define VECTOR_SIGNATURE                                                       \
	"b135ba183ef277dcac080b22a8821a2b445d9f2b50c95760d71f782d115a7961"

static struct tc3_request vector_request(void)
{
	struct tc3_request req = {
	    .secret_id = "AKIDEXAMPLEEXAMPLEEXAMPLEEXAMPLE",
	    .secret_key = "ExampleSecretKeyExampleSecretKey",
	    .service = "csip",
	    .host = "csip.intl.tencentcloudapi.com",
	    .content_type = "application/json; charset=utf-8",
	    .body = VECTOR_BODY,
	    .body_len = sizeof(VECTOR_BODY) - 1,
	    .timestamp = 1764851200,
	};
	return req;
}

static void test_signature_vector(void)
{
	struct tc3_request req = vector_request();
	char signature[65];

	CHECK_INT_EQ(tc3_signature(&req, signature), 0);
	CHECK_STR_EQ(signature, VECTOR_SIGNATURE);
}

/* The canonical headers are lowercased, so the case of Host and
 * Content-Type does not change the signature. */
static void test_signature_header_case(void)
{
	struct tc3_request req = vector_request();
	char signature[65];

	req.host = "CSIP.Intl.TencentCloudAPI.com";
	req.content_type = "Application/JSON; Charset=UTF-8";
	CHECK_INT_EQ(tc3_signature(&req, signature), 0);
	CHECK_STR_EQ(signature, VECTOR_SIGNATURE);
}

static void test_signature_changes_with_input(void)
{
	struct tc3_request req = vector_request();
	char signature[65];

	req.body_len -= 1;
	CHECK_INT_EQ(tc3_signature(&req, signature), 0);
	CHECK(strcmp(signature, VECTOR_SIGNATURE) != 0);

	req = vector_request();
	req.timestamp += 1;
	CHECK_INT_EQ(tc3_signature(&req, signature), 0);
	CHECK(strcmp(signature, VECTOR_SIGNATURE) != 0);

	req = vector_request();
	req.secret_key = "ExampleSecretKeyExampleSecretKeX";
	CHECK_INT_EQ(tc3_signature(&req, signature), 0);
	CHECK(strcmp(signature, VECTOR_SIGNATURE) != 0);
}

static void test_signature_empty_body(void)
{
	struct tc3_request req = vector_request();
	char signature[65];

	req.body = NULL;
	req.body_len = 0;
	CHECK_INT_EQ(tc3_signature(&req, signature), 0);
	CHECK_INT_EQ(strlen(signature), 64);
}

static void test_authorization_vector(void)
{
	struct tc3_request req = vector_request();
	const char *expected =
	    "TC3-HMAC-SHA256 "
	    "Credential=AKIDEXAMPLEEXAMPLEEXAMPLEEXAMPLE/2025-12-04/csip/"
	    "tc3_request, SignedHeaders=content-type;host, "
	    "Signature=" VECTOR_SIGNATURE;
	char header[512];

	CHECK_INT_EQ(tc3_authorization(&req, header, sizeof(header)), 0);
	CHECK_STR_EQ(header, expected);

	CHECK_INT_EQ(tc3_authorization(&req, header, strlen(expected) + 1), 0);
	CHECK_STR_EQ(header, expected);
}

static void test_authorization_too_small(void)
{
	struct tc3_request req = vector_request();
	char header[512];

	memset(header, 'x', sizeof(header));
	CHECK_INT_EQ(tc3_authorization(&req, header, 100), -ENAMETOOLONG);
	CHECK_STR_EQ(header, "");
	CHECK_INT_EQ(tc3_authorization(&req, header, 0), -EINVAL);
	CHECK_INT_EQ(tc3_authorization(&req, NULL, 100), -EINVAL);
}

static void test_date_table(void)
{
	static const struct {
		int64_t timestamp;
		const char *date;
	} cases[] = {
	    {1764851200, "2025-12-04"},
	    /* 2025-12-03 18:00 UTC is already 2025-12-04 02:00 in UTC+8,
	     * but the scope uses the UTC date. */
	    {1764784800, "2025-12-03"},
	    /* 2025-12-03 19:00 UTC, 03:00 the next day in UTC+8. */
	    {1764788400, "2025-12-03"},
	    {1764806399, "2025-12-03"},
	    {1764806400, "2025-12-04"},
	    {0, "1970-01-01"},
	    {86399, "1970-01-01"},
	    {86400, "1970-01-02"},
	    {951782400, "2000-02-29"},
	    {1709164800, "2024-02-29"},
	    {1709251199, "2024-02-29"},
	    {1709251200, "2024-03-01"},
	    {253402300799, "9999-12-31"},
	    {253402300800, "0000-00-00"},
	    {-1, "0000-00-00"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char date[11];

		tc3_date(cases[i].timestamp, date);
		CHECK_STR_EQ(date, cases[i].date);
	}
}

static void test_signature_invalid_fields(void)
{
	struct tc3_request req;
	char signature[65];
	char long_key[300];

	CHECK_INT_EQ(tc3_signature(NULL, signature), -EINVAL);
	req = vector_request();
	CHECK_INT_EQ(tc3_signature(&req, NULL), -EINVAL);

	req = vector_request();
	req.secret_id = NULL;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);
	CHECK_STR_EQ(signature, "");

	req = vector_request();
	req.secret_key = NULL;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.service = NULL;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.host = NULL;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.content_type = NULL;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.body = NULL;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.secret_id = "";
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.secret_id = "AKID, Signature=forged";
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.host = "csip.intl.tencentcloudapi.com\r\nX-Injected: 1";
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	req.secret_key = long_key;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.timestamp = -1;
	CHECK_INT_EQ(tc3_signature(&req, signature), -EINVAL);

	req = vector_request();
	req.secret_key = NULL;
	CHECK_INT_EQ(tc3_authorization(&req, signature, sizeof(signature)),
		     -EINVAL);
}

int main(void)
{
	test_signature_vector();
	test_signature_header_case();
	test_signature_changes_with_input();
	test_signature_empty_body();
	test_authorization_vector();
	test_authorization_too_small();
	test_date_table();
	test_signature_invalid_fields();
	return check_finish();
}
