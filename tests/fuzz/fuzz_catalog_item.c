/* Fuzzes the readers of API items: every JSON value in the input, at any
 * depth, goes through catalog_parse_report(), catalog_parse_member() and
 * api_json_integer(), which must keep every text field NUL-terminated. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "catalog.h"
#include "fuzz.h"

/* Deeper values are not visited, which bounds the time per input. */
#define MAX_DEPTH 8

#define CHECK_TERMINATED(field)                                                \
	FUZZ_CHECK(memchr((field), '\0', sizeof(field)) != NULL)

static void parse_item(const json_t *item)
{
	struct catalog_report_info report;
	struct catalog_member_info member;
	char why[256] = "";
	int64_t number;

	if (catalog_parse_report(item, &report, why, sizeof(why)) == 0) {
		FUZZ_CHECK(report.id[0] != '\0');
		CHECK_TERMINATED(report.id);
		CHECK_TERMINATED(report.task_id);
		CHECK_TERMINATED(report.name);
		CHECK_TERMINATED(report.task_name);
		CHECK_TERMINATED(report.time);
		CHECK_TERMINATED(report.uin);
		CHECK_TERMINATED(report.user_name);
	} else {
		FUZZ_CHECK(why[0] != '\0');
		CHECK_TERMINATED(why);
	}
	if (catalog_parse_member(item, &member) == 0) {
		FUZZ_CHECK(member.uin[0] != '\0' ||
			   member.member_id[0] != '\0');
		CHECK_TERMINATED(member.uin);
		CHECK_TERMINATED(member.member_id);
		CHECK_TERMINATED(member.nick_name);
		CHECK_TERMINATED(member.role);
	}
	if (api_json_integer(item, &number) == 0)
		FUZZ_CHECK(json_is_number(item) || json_is_string(item));
}

static void visit(const json_t *value, int depth)
{
	const char *key;
	json_t *member;
	size_t index;

	parse_item(value);
	if (depth >= MAX_DEPTH)
		return;
	if (json_is_object(value)) {
		json_object_foreach((json_t *)value, key, member)
		{
			visit(member, depth + 1);
		}
	} else if (json_is_array(value)) {
		json_array_foreach(value, index, member)
		{
			visit(member, depth + 1);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t error;
	json_t *root;

	root = json_loadb((const char *)data, size,
			  JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
	if (!root)
		return 0;
	visit(root, 0);
	json_decref(root);
	return 0;
}
