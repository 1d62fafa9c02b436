/* Fuzzes fetch_parse_content_range() and checks the contract of fetch.h on
 * every value it accepts: numbers below 2^62, first <= last < total, and
 * "*" only for the range or the total, never both. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "fuzz.h"

#define LIMIT ((int64_t)1 << 62)
#define UNSET ((int64_t)-7)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t first = UNSET;
	int64_t last = UNSET;
	int64_t total = UNSET;
	char *value;
	int rc;

	value = malloc(size + 1);
	if (!value)
		return 0;
	memcpy(value, data, size);
	value[size] = '\0';
	rc = fetch_parse_content_range(value, &first, &last, &total);
	free(value);

	if (rc != 0) {
		FUZZ_CHECK(rc == -EINVAL);
		FUZZ_CHECK(first == UNSET && last == UNSET && total == UNSET);
		return 0;
	}
	FUZZ_CHECK(total == -1 || (total >= 0 && total < LIMIT));
	if (first == -1) {
		FUZZ_CHECK(last == -1);
		FUZZ_CHECK(total != -1);
		return 0;
	}
	FUZZ_CHECK(first >= 0 && first <= last && last < LIMIT);
	FUZZ_CHECK(total == -1 || last < total);
	return 0;
}
