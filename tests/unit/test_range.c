/* Content-Range parsing: a table of valid and invalid header values. */
#include "check.h"
#include "fetch.h"

#include <errno.h>
#include <stdint.h>

struct range_case {
	const char *value;
	int status;
	int64_t first;
	int64_t last;
	int64_t total;
};

static const struct range_case cases[] = {
    /* Valid values. */
    {"bytes 0-0/1", 0, 0, 0, 1},
    {"bytes 0-99/100", 0, 0, 99, 100},
    {"bytes 100-199/1000", 0, 100, 199, 1000},
    {"bytes 1048576-2097151/5000000", 0, 1048576, 2097151, 5000000},
    {"bytes 5-9/*", 0, 5, 9, -1},
    {"bytes */0", 0, -1, -1, 0},
    {"bytes */12345", 0, -1, -1, 12345},
    {"BYTES 0-1/2", 0, 0, 1, 2},
    {"Bytes 0-1/2", 0, 0, 1, 2},
    {"  bytes 0-1/2  ", 0, 0, 1, 2},
    {"\tbytes 0-1/2\r\n", 0, 0, 1, 2},
    {"bytes 007-010/100", 0, 7, 10, 100},
    {"bytes 0-4611686018427387902/4611686018427387903", 0, 0,
     4611686018427387902LL, 4611686018427387903LL},

    /* Missing or wrong unit. */
    {"", -EINVAL, 0, 0, 0},
    {"   ", -EINVAL, 0, 0, 0},
    {"bytes", -EINVAL, 0, 0, 0},
    {"bytes ", -EINVAL, 0, 0, 0},
    {"0-1/2", -EINVAL, 0, 0, 0},
    {"items 0-1/2", -EINVAL, 0, 0, 0},
    {"bytes=0-1/2", -EINVAL, 0, 0, 0},
    {"bytes0-1/2", -EINVAL, 0, 0, 0},
    {"bytes  0-1/2", -EINVAL, 0, 0, 0},

    /* Malformed numbers and separators. */
    {"bytes -1-2/3", -EINVAL, 0, 0, 0},
    {"bytes 0--1/3", -EINVAL, 0, 0, 0},
    {"bytes 0-1/-3", -EINVAL, 0, 0, 0},
    {"bytes +0-1/3", -EINVAL, 0, 0, 0},
    {"bytes 0-+1/3", -EINVAL, 0, 0, 0},
    {"bytes 0x0-1/3", -EINVAL, 0, 0, 0},
    {"bytes 0-1", -EINVAL, 0, 0, 0},
    {"bytes 0-/3", -EINVAL, 0, 0, 0},
    {"bytes -1/3", -EINVAL, 0, 0, 0},
    {"bytes 0 - 1/3", -EINVAL, 0, 0, 0},
    {"bytes 0-1 /3", -EINVAL, 0, 0, 0},
    {"bytes 0-1/ 3", -EINVAL, 0, 0, 0},
    {"bytes 0,1/3", -EINVAL, 0, 0, 0},
    {"bytes 0-1/3/4", -EINVAL, 0, 0, 0},
    {"bytes 0-1/", -EINVAL, 0, 0, 0},
    {"bytes /3", -EINVAL, 0, 0, 0},
    {"bytes 1.5-2/3", -EINVAL, 0, 0, 0},

    /* Trailing junk. */
    {"bytes 0-1/2x", -EINVAL, 0, 0, 0},
    {"bytes 0-1/2 x", -EINVAL, 0, 0, 0},
    {"bytes 0-1/2,bytes 3-4/5", -EINVAL, 0, 0, 0},
    {"bytes 0-1/*x", -EINVAL, 0, 0, 0},
    {"bytes */2 ", 0, -1, -1, 2},
    {"bytes */2x", -EINVAL, 0, 0, 0},
    {"bytes **/2", -EINVAL, 0, 0, 0},

    /* Asterisks in both places, or in the wrong place. */
    {"bytes */*", -EINVAL, 0, 0, 0},
    {"bytes *-1/2", -EINVAL, 0, 0, 0},
    {"bytes 0-*/2", -EINVAL, 0, 0, 0},

    /* Inconsistent ranges. */
    {"bytes 5-4/10", -EINVAL, 0, 0, 0},
    {"bytes 0-10/10", -EINVAL, 0, 0, 0},
    {"bytes 10-10/10", -EINVAL, 0, 0, 0},
    {"bytes 0-0/0", -EINVAL, 0, 0, 0},

    /* Values at or above 2^62, and values that overflow 64 bits. */
    {"bytes 0-1/4611686018427387904", -EINVAL, 0, 0, 0},
    {"bytes 4611686018427387904-4611686018427387905/*", -EINVAL, 0, 0, 0},
    {"bytes 0-1/18446744073709551617", -EINVAL, 0, 0, 0},
    {"bytes 0-1/99999999999999999999999999", -EINVAL, 0, 0, 0},
    {"bytes */9223372036854775808", -EINVAL, 0, 0, 0},
};

static void check_case(const struct range_case *c)
{
	int64_t first = 111;
	int64_t last = 222;
	int64_t total = 333;
	int status = fetch_parse_content_range(c->value, &first, &last, &total);

	if (status != c->status)
		fprintf(stderr, "value: \"%s\"\n", c->value);
	CHECK_INT_EQ(status, c->status);
	if (c->status != 0) {
		/* A rejected value leaves the outputs untouched. */
		CHECK_INT_EQ(first, 111);
		CHECK_INT_EQ(last, 222);
		CHECK_INT_EQ(total, 333);
		return;
	}
	CHECK_INT_EQ(first, c->first);
	CHECK_INT_EQ(last, c->last);
	CHECK_INT_EQ(total, c->total);
}

int main(void)
{
	int64_t first;
	int64_t last;
	int64_t total;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i]);
	CHECK_INT_EQ(fetch_parse_content_range(NULL, &first, &last, &total),
		     -EINVAL);
	return check_finish();
}
