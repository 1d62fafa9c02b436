/* Fuzzes the names functions that read one text: names_sanitize(),
 * names_extension_from_url() and names_parse_cst_time(). The first input
 * byte is the max_bytes given to names_sanitize(), the rest is the text.
 * Each result is checked against the contract in names.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "names.h"
#include "utf8.h"

static void check_sanitize(const char *text, size_t max_bytes)
{
	char out[NAMES_MAX_BYTES + 1];
	char again[NAMES_MAX_BYTES + 1];
	size_t limit = max_bytes == 0 ? 1 : max_bytes;
	size_t length;

	if (limit > NAMES_MAX_BYTES)
		limit = NAMES_MAX_BYTES;
	length = names_sanitize(text, max_bytes, out);
	FUZZ_CHECK(length == strlen(out));
	FUZZ_CHECK(length >= 1 && length <= limit);
	FUZZ_CHECK(strcmp(out, ".") != 0 && strcmp(out, "..") != 0);
	for (size_t i = 0; i < length; i++) {
		unsigned char byte = (unsigned char)out[i];

		FUZZ_CHECK(byte != '/' && byte >= 0x20 && byte != 0x7f);
	}
	FUZZ_CHECK(fuzz_is_utf8(out, length));

	/* A valid name that fits is kept as it is. */
	FUZZ_CHECK(names_sanitize(out, max_bytes, again) == length);
	FUZZ_CHECK(strcmp(again, out) == 0);
}

static void check_extension(const char *text)
{
	char ext[10];
	size_t length;

	memset(ext, 'x', sizeof(ext));
	if (!names_extension_from_url(text, ext, sizeof(ext)))
		return;
	length = strnlen(ext, sizeof(ext));
	FUZZ_CHECK(length >= 2 && length <= 9);
	FUZZ_CHECK(ext[0] == '.');
	for (size_t i = 1; i < length; i++)
		FUZZ_CHECK((ext[i] >= 'a' && ext[i] <= 'z') ||
			   (ext[i] >= '0' && ext[i] <= '9'));
}

/* An accepted time must print back as the same text, in UTC+8. */
static void check_time(const char *text)
{
	char printed[64];
	char expected[64];
	time_t seconds = (time_t)-12345;
	struct tm fields;
	time_t local;

	if (names_parse_cst_time(text, &seconds) != 0) {
		FUZZ_CHECK(seconds == (time_t)-12345);
		return;
	}
	local = seconds + 8 * 3600;
	FUZZ_CHECK(gmtime_r(&local, &fields) != NULL);
	snprintf(printed, sizeof(printed), "%04d-%02d-%02d %02d:%02d:%02d",
		 fields.tm_year + 1900, fields.tm_mon + 1, fields.tm_mday,
		 fields.tm_hour, fields.tm_min, fields.tm_sec);
	FUZZ_CHECK(strlen(text) == 19);
	memcpy(expected, text, 20);
	if (expected[10] == 'T')
		expected[10] = ' ';
	FUZZ_CHECK(strcmp(printed, expected) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max_bytes;
	char *text;

	if (size == 0)
		return 0;
	max_bytes = data[0];
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	check_sanitize(text, max_bytes);
	check_sanitize(text, NAMES_MAX_BYTES);
	check_extension(text);
	check_time(text);
	free(text);
	return 0;
}
