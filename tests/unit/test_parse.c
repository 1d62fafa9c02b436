/* Parsing of API responses: the envelope, TaskLogInfo and
 * OrganizationUserInfo items, with nulls, wrong types and odd numbers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "catalog.h"
#include "check.h"

static json_t *parse_json(const char *text)
{
	json_error_t error;
	json_t *value = json_loads(text, 0, &error);

	if (!value)
		fprintf(stderr, "bad test JSON: %s\n", error.text);
	return value;
}

static void test_envelope_success(void)
{
	const char *body = "{\"Response\":{\"TotalCount\":1,\"Data\":[],"
			   "\"RequestId\":\"r-1\",\"Extra\":{\"x\":null}}}";
	struct api_error error;
	json_t *response = NULL;
	bool retryable = true;
	int rc;

	rc = api_parse_response(body, strlen(body), 200, &response, &error,
				&retryable);
	CHECK_INT_EQ(rc, 0);
	CHECK(response != NULL);
	CHECK(!retryable);
	CHECK_STR_EQ(api_json_string(response, "RequestId"), "r-1");
	json_decref(response);
}

static void test_envelope_errors(void)
{
	static const struct {
		const char *body;
		long status;
		int rc;
		bool retryable;
		const char *code;
		const char *request_id;
	} cases[] = {
	    {"{\"Response\":{\"Error\":{\"Code\":\"AuthFailure."
	     "SignatureFailure\",\"Message\":\"bad\"},\"RequestId\":"
	     "\"r-2\"}}",
	     200, -EACCES, false, "AuthFailure.SignatureFailure", "r-2"},
	    {"{\"Response\":{\"Error\":{\"Code\":\"RequestLimitExceeded\","
	     "\"Message\":\"slow down\"},\"RequestId\":\"r-3\"}}",
	     200, -EIO, true, "RequestLimitExceeded", "r-3"},
	    {"{\"Response\":{\"Error\":{\"Code\":\"RequestLimitExceeded."
	     "UinLimitExceeded\",\"Message\":null},\"RequestId\":null}}",
	     200, -EIO, true, "RequestLimitExceeded.UinLimitExceeded", ""},
	    {"{\"Response\":{\"Error\":{\"Code\":\"InternalError\"}}}", 200,
	     -EIO, true, "InternalError", ""},
	    {"{\"Response\":{\"Error\":{\"Code\":\"ResourceNotFound\"}}}", 200,
	     -ENOENT, false, "ResourceNotFound", ""},
	    {"{\"Response\":{\"Error\":{\"Code\":\"InvalidParameterValue\","
	     "\"Message\":\"Limit\"}}}",
	     200, -EIO, false, "InvalidParameterValue", ""},
	    {"{\"Response\":{\"Error\":{\"Code\":\"AuthFailure."
	     "SignatureExpire\"}}}",
	     200, -EACCES, true, "AuthFailure.SignatureExpire", ""},
	    {"{\"Response\":{\"Error\":{\"Code\":42}}}", 200, -EIO, false,
	     "UnknownError", ""},
	    {"<html><body><h1>502 Bad Gateway</h1></body></html>", 502, -EIO,
	     true, "", ""},
	    {"<html>not found</html>", 404, -EIO, false, "", ""},
	    {"{\"Response\":{\"TotalCount\":", 200, -EIO, false, "", ""},
	    {"", 200, -EIO, false, "", ""},
	    {"[1,2,3]", 200, -EIO, false, "", ""},
	    {"{\"Response\":null}", 200, -EIO, false, "", ""},
	    {"{\"Response\":{\"RequestId\":\"r-4\"}}", 503, -EIO, true, "",
	     "r-4"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct api_error error;
		json_t *response = NULL;
		bool retryable = false;
		int rc;

		rc = api_parse_response(cases[i].body, strlen(cases[i].body),
					cases[i].status, &response, &error,
					&retryable);
		CHECK_INT_EQ(rc, cases[i].rc);
		CHECK(response == NULL);
		CHECK_INT_EQ(retryable, cases[i].retryable);
		CHECK_STR_EQ(error.code, cases[i].code);
		CHECK_STR_EQ(error.request_id, cases[i].request_id);
		CHECK(error.message[0] != '\0' || error.code[0] != '\0');
	}
}

static void test_error_codes(void)
{
	CHECK(api_code_is_retryable("RequestLimitExceeded"));
	CHECK(api_code_is_retryable("RequestLimitExceeded.GlobalRegionUin"));
	CHECK(api_code_is_retryable("InternalError"));
	CHECK(api_code_is_retryable("ResourceUnavailable"));
	CHECK(api_code_is_retryable("ResourceInsufficient"));
	CHECK(!api_code_is_retryable("RequestLimitExceededX"));
	CHECK(!api_code_is_retryable("AuthFailure.SignatureFailure"));
	CHECK(!api_code_is_retryable("FailedOperation"));
	CHECK(api_code_is_auth_failure("AuthFailure"));
	CHECK(api_code_is_auth_failure("AuthFailure.SecretIdNotFound"));
	CHECK(api_code_is_auth_failure("AuthFailure.TokenFailure"));
	CHECK(!api_code_is_auth_failure("AuthFailure.UnauthorizedOperation"));
	CHECK(!api_code_is_auth_failure("UnauthorizedOperation"));
}

static void test_json_integer(void)
{
	static const struct {
		const char *json;
		int rc;
		int64_t value;
	} cases[] = {
	    {"42", 0, 42},
	    {"-7", 0, -7},
	    {"\"42\"", 0, 42},
	    {"42.0", 0, 42},
	    {"1e3", 0, 1000},
	    {"42.5", -EINVAL, 0},
	    {"\"42x\"", -EINVAL, 0},
	    {"\"\"", -EINVAL, 0},
	    {"\"99999999999999999999999\"", -EINVAL, 0},
	    {"null", -EINVAL, 0},
	    {"true", -EINVAL, 0},
	    {"[1]", -EINVAL, 0},
	    {"1e300", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *value =
		    json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
		int64_t out = 0;

		CHECK(value != NULL);
		CHECK_INT_EQ(api_json_integer(value, &out), cases[i].rc);
		if (cases[i].rc == 0)
			CHECK_INT_EQ(out, cases[i].value);
		json_decref(value);
	}
}

static void test_report_full(void)
{
	json_t *item = parse_json(
	    "{\"TaskLogId\":\"tl-1\",\"TaskLogName\":\"Weekly / scan\","
	    "\"TaskName\":\"周报\",\"TaskCenterTaskId\":\"task-9\","
	    "\"Time\":\"2025-12-04 08:00:00\",\"StartTime\":null,"
	    "\"Status\":2,\"AssetsNumber\":\"17\",\"RiskNumber\":null,"
	    "\"AppId\":1250000000,\"UIN\":\"100001\",\"UserName\":"
	    "\"sec\",\"ReportType\":3,\"TemplateId\":1,\"NewField\":[1]}");
	struct catalog_report_info info;
	char why[256];

	CHECK_INT_EQ(catalog_parse_report(item, &info, why, sizeof(why)), 0);
	CHECK_STR_EQ(info.id, "tl-1");
	CHECK_STR_EQ(info.name, "Weekly / scan");
	CHECK_STR_EQ(info.task_name, "周报");
	CHECK_STR_EQ(info.task_id, "task-9");
	CHECK_STR_EQ(info.time, "2025-12-04 08:00:00");
	CHECK_STR_EQ(info.uin, "100001");
	CHECK_STR_EQ(info.user_name, "sec");
	CHECK_INT_EQ(info.status, 2);
	json_decref(item);
}

static void test_report_odd_types(void)
{
	json_t *item = parse_json(
	    "{\"TaskLogId\":12345,\"TaskLogName\":null,\"TaskName\":7,"
	    "\"TaskCenterTaskId\":null,\"Time\":null,\"Status\":\"2\","
	    "\"UIN\":100001,\"UserName\":{\"a\":1}}");
	struct catalog_report_info info;
	char why[256];

	CHECK_INT_EQ(catalog_parse_report(item, &info, why, sizeof(why)), 0);
	CHECK_STR_EQ(info.id, "12345");
	CHECK_STR_EQ(info.name, "");
	CHECK_STR_EQ(info.task_name, "7");
	CHECK_STR_EQ(info.task_id, "");
	CHECK_STR_EQ(info.time, "");
	CHECK_STR_EQ(info.uin, "100001");
	CHECK_STR_EQ(info.user_name, "");
	CHECK_INT_EQ(info.status, 2);
	json_decref(item);

	item = parse_json("{\"TaskLogId\":\"tl-2\",\"Status\":2.0}");
	CHECK_INT_EQ(catalog_parse_report(item, &info, why, sizeof(why)), 0);
	CHECK_INT_EQ(info.status, 2);
	json_decref(item);

	item = parse_json("{\"TaskLogId\":\"tl-3\",\"Status\":\"done\"}");
	CHECK_INT_EQ(catalog_parse_report(item, &info, why, sizeof(why)), 0);
	CHECK_INT_EQ(info.status, -1);
	json_decref(item);
}

static void test_report_rejected(void)
{
	static const char *const bad[] = {
	    "{\"TaskLogName\":\"no id\",\"Status\":2}",
	    "{\"TaskLogId\":null,\"Status\":2}",
	    "{\"TaskLogId\":\"\",\"Status\":2}",
	    "{\"TaskLogId\":[\"tl-1\"],\"Status\":2}",
	    "\"tl-1\"",
	    "null",
	};
	struct catalog_report_info info;
	char why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *item = json_loads(bad[i], JSON_DECODE_ANY, NULL);

		why[0] = '\0';
		CHECK_INT_EQ(
		    catalog_parse_report(item, &info, why, sizeof(why)),
		    -EINVAL);
		CHECK(why[0] != '\0');
		json_decref(item);
	}
}

static void test_report_long_fields(void)
{
	size_t long_length = CATALOG_MAX_TEXT_BYTES * 3;
	char *name = malloc(long_length + 1);
	char *id = malloc(CATALOG_MAX_ID_BYTES + 10);
	struct catalog_report_info info;
	json_t *item;
	char why[256];

	/* A name of 3-byte characters, far longer than the field. */
	for (size_t i = 0; i + 3 <= long_length; i += 3)
		memcpy(name + i, "\xe6\x8a\xa5", 3);
	name[long_length - long_length % 3] = '\0';
	item = json_pack("{s:s,s:s,s:i}", "TaskLogId", "tl-long", "TaskLogName",
			 name, "Status", 2);
	CHECK_INT_EQ(catalog_parse_report(item, &info, why, sizeof(why)), 0);
	CHECK(strlen(info.name) < CATALOG_MAX_TEXT_BYTES);
	CHECK(strlen(info.name) % 3 == 0);
	CHECK(strlen(info.name) > CATALOG_MAX_TEXT_BYTES - 4);
	json_decref(item);

	memset(id, 'x', CATALOG_MAX_ID_BYTES + 5);
	id[CATALOG_MAX_ID_BYTES + 5] = '\0';
	item = json_pack("{s:s,s:i}", "TaskLogId", id, "Status", 2);
	CHECK_INT_EQ(catalog_parse_report(item, &info, why, sizeof(why)),
		     -EINVAL);
	json_decref(item);
	free(name);
	free(id);
}

static void test_member(void)
{
	json_t *item = parse_json(
	    "{\"Uin\":\"100002\",\"NickName\":\"alpha\",\"NodeName\":null,"
	    "\"MemberId\":\"mem-1\",\"AppId\":125,\"Role\":\"Member\","
	    "\"Enable\":1,\"CloudType\":0,\"IsExpired\":false}");
	struct catalog_member_info info;

	CHECK_INT_EQ(catalog_parse_member(item, &info), 0);
	CHECK_STR_EQ(info.uin, "100002");
	CHECK_STR_EQ(info.nick_name, "alpha");
	CHECK_STR_EQ(info.member_id, "mem-1");
	CHECK_STR_EQ(info.role, "Member");
	json_decref(item);

	item = parse_json("{\"Uin\":100003,\"NickName\":null,\"Role\":null}");
	CHECK_INT_EQ(catalog_parse_member(item, &info), 0);
	CHECK_STR_EQ(info.uin, "100003");
	CHECK_STR_EQ(info.nick_name, "");
	CHECK_STR_EQ(info.member_id, "");
	json_decref(item);

	item = parse_json("{\"NickName\":\"nobody\"}");
	CHECK_INT_EQ(catalog_parse_member(item, &info), -EINVAL);
	json_decref(item);
	item = parse_json("[]");
	CHECK_INT_EQ(catalog_parse_member(item, &info), -EINVAL);
	json_decref(item);
}

static void check_repair(const char *body, size_t length, const char *expected)
{
	char *out = NULL;
	size_t out_length = 0;

	CHECK_INT_EQ(api_repair_body(body, length, &out, &out_length), 0);
	CHECK_INT_EQ(out_length, strlen(expected));
	CHECK_STR_EQ(out, expected);
	free(out);
}

static void test_repair_body(void)
{
	/* Valid text, escapes and control bytes outside strings pass. */
	check_repair("{\"a\":\"\\u00e4 \\\" \xe4\xb8\xad\"}\n", 22,
		     "{\"a\":\"\\u00e4 \\\" \xe4\xb8\xad\"}\n");
	/* One U+FFFD per invalid byte: a cut sequence, a stray continuation
	 * byte, an overlong '/', a surrogate and a byte above F4. */
	check_repair("\"\xe4\xb8\"", 4, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
	check_repair("\"\x80\"", 3, "\"\xef\xbf\xbd\"");
	check_repair("\"\xc0\xaf\"", 4, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
	check_repair("\"\xed\xa0\x80\"", 5,
		     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	check_repair("\"\xf5\"", 3, "\"\xef\xbf\xbd\"");
	/* A sequence cut by the end of the body. */
	check_repair("\"\xf0\x9f", 3, "\"\xef\xbf\xbd\xef\xbf\xbd");
	/* Raw control bytes and NUL inside a string become escapes. */
	check_repair("\"a\x01\tb\0c\"", 8, "\"a\\u0001\\u0009b\\u0000c\"");
}

static void test_raw_names_parse(void)
{
	static const char body[] =
	    "{\"Response\":{\"Data\":[{\"TaskLogId\":\"tl-1\","
	    "\"TaskLogName\":\"bad\xff\x01nul\0end\",\"Status\":2}],"
	    "\"RequestId\":\"r-9\"}}";
	struct catalog_report_info info;
	struct api_error error;
	json_t *response = NULL;
	bool retryable = true;
	char why[256];

	CHECK_INT_EQ(api_parse_response(body, sizeof(body) - 1, 200, &response,
					&error, &retryable),
		     0);
	CHECK(response != NULL);
	CHECK_INT_EQ(catalog_parse_report(
			 json_array_get(json_object_get(response, "Data"), 0),
			 &info, why, sizeof(why)),
		     0);
	/* U+FFFD for the invalid byte; U+0000 kept as '_' so the name goes
	 * on past it. */
	CHECK_STR_EQ(info.name, "bad\xef\xbf\xbd\x01nul_end");
	json_decref(response);
}

static void test_report_id_with_nul(void)
{
	json_t *item = json_loads("{\"TaskLogId\":\"tl\\u0000x\","
				  "\"Status\":2}",
				  JSON_ALLOW_NUL, NULL);
	struct catalog_report_info info;
	char why[256] = "";

	CHECK(item != NULL);
	CHECK_INT_EQ(catalog_parse_report(item, &info, why, sizeof(why)),
		     -EINVAL);
	CHECK(strstr(why, "U+0000") != NULL);
	json_decref(item);
}

int main(void)
{
	test_envelope_success();
	test_envelope_errors();
	test_error_codes();
	test_json_integer();
	test_report_full();
	test_report_odd_types();
	test_report_rejected();
	test_report_long_fields();
	test_member();
	test_repair_body();
	test_raw_names_parse();
	test_report_id_with_nul();
	return check_finish();
}
