/* A minimal assertion kit for the C unit tests: each CHECK records a pass or
 * a failure with its file and line, and check_finish() prints the totals
 * and returns the exit status for meson. */
#ifndef CSIPFS_CHECK_H
#define CSIPFS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_passed;
static int check_failed;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (cond) {                                                    \
			check_passed++;                                        \
		} else {                                                       \
			check_failed++;                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_INT_EQ(actual, expected)                                         \
	do {                                                                   \
		long long check_a_ = (long long)(actual);                      \
		long long check_e_ = (long long)(expected);                    \
		if (check_a_ == check_e_) {                                    \
			check_passed++;                                        \
		} else {                                                       \
			check_failed++;                                        \
			fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n",  \
				__FILE__, __LINE__, #actual, check_a_,         \
				check_e_);                                     \
		}                                                              \
	} while (0)

#define CHECK_STR_EQ(actual, expected)                                         \
	do {                                                                   \
		const char *check_a_ = (actual);                               \
		const char *check_e_ = (expected);                             \
		if (check_a_ && check_e_ && strcmp(check_a_, check_e_) == 0)   \
			check_passed++;                                        \
		else {                                                         \
			check_failed++;                                        \
			fprintf(stderr,                                        \
				"%s:%d: %s is \"%s\", expected \"%s\"\n",      \
				__FILE__, __LINE__, #actual,                   \
				check_a_ ? check_a_ : "(null)",                \
				check_e_ ? check_e_ : "(null)");               \
		}                                                              \
	} while (0)

static inline int check_finish(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed == 0 && check_passed > 0 ? 0 : 1;
}

#endif
