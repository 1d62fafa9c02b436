/* Unit tests of file naming: sanitising, collision suffixes, extensions and
 * report times. */
#include "names.h"

#include "check.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define SOLIDUS	    "\xef\xbc\x8f" /* U+FF0F FULLWIDTH SOLIDUS */
#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD REPLACEMENT CHARACTER */
#define CJK	    "\xe4\xb8\xad" /* U+4E2D, 3 bytes */

static char *repeat(const char *unit, size_t times)
{
	size_t length = strlen(unit);
	char *text = malloc(length * times + 1);

	for (size_t i = 0; i < times; i++)
		memcpy(text + i * length, unit, length);
	text[length * times] = '\0';
	return text;
}

static void check_sanitize(const char *text, size_t max_bytes,
			   const char *expected)
{
	char out[NAMES_MAX_BYTES + 1];
	size_t length = names_sanitize(text, max_bytes, out);

	CHECK_STR_EQ(out, expected);
	CHECK_INT_EQ(length, strlen(expected));
}

static void test_sanitize_table(void)
{
	static const struct {
		const char *text;
		size_t max_bytes;
		const char *expected;
	} cases[] = {
	    {"report.pdf", 255, "report.pdf"},
	    {"a/b", 255, "a" SOLIDUS "b"},
	    {"/", 255, SOLIDUS},
	    {"a\tb\nc\x7f"
	     "d\x1f",
	     255, "a_b_c_d_"},
	    {"\x01", 255, "_"},
	    {" ", 255, " "},
	    {"...", 255, "..."},
	    {".hidden", 255, ".hidden"},
	    {"a\xff"
	     "b",
	     255, "a" REPLACEMENT "b"},
	    {"\x80", 255, REPLACEMENT},
	    {"\xfe\xff", 255, REPLACEMENT REPLACEMENT},
	    /* Overlong encodings of '/' and of U+0000. */
	    {"\xc0\xaf", 255, REPLACEMENT REPLACEMENT},
	    {"\xc1\xbf", 255, REPLACEMENT REPLACEMENT},
	    {"\xe0\x80\xaf", 255, REPLACEMENT REPLACEMENT REPLACEMENT},
	    {"\xf0\x80\x80\xaf", 255,
	     REPLACEMENT REPLACEMENT REPLACEMENT REPLACEMENT},
	    /* Surrogates U+D800 and U+DFFF. */
	    {"\xed\xa0\x80", 255, REPLACEMENT REPLACEMENT REPLACEMENT},
	    {"\xed\xbf\xbf", 255, REPLACEMENT REPLACEMENT REPLACEMENT},
	    /* U+110000 and a lead byte above F4. */
	    {"\xf4\x90\x80\x80", 255,
	     REPLACEMENT REPLACEMENT REPLACEMENT REPLACEMENT},
	    {"\xf5\x80\x80\x80", 255,
	     REPLACEMENT REPLACEMENT REPLACEMENT REPLACEMENT},
	    /* A sequence cut short, then a valid character. */
	    {"ab\xe4\xb8", 255, "ab" REPLACEMENT REPLACEMENT},
	    {"\xe4\xb8"
	     "a",
	     255, REPLACEMENT REPLACEMENT "a"},
	    /* Valid characters at the edges of the ranges are kept. */
	    {"\xc2\x80", 255, "\xc2\x80"},
	    {"\xc2\x85", 255, "\xc2\x85"},
	    {"\xed\x9f\xbf", 255, "\xed\x9f\xbf"},
	    {"\xee\x80\x80", 255, "\xee\x80\x80"},
	    {"\xef\xbf\xbf", 255, "\xef\xbf\xbf"},
	    {"\xf0\x9f\x98\x80", 255, "\xf0\x9f\x98\x80"},
	    {"\xf4\x8f\xbf\xbf", 255, "\xf4\x8f\xbf\xbf"},
	    {CJK "/" CJK, 255, CJK SOLIDUS CJK},
	    {"", 255, "_"},
	    {NULL, 255, "_"},
	    {".", 255, "_."},
	    {"..", 255, "_.."},
	    /* Nothing fits, so the result is empty and becomes "_". */
	    {"\xff", 2, "_"},
	    {"abc", 2, "ab"},
	    {"abc", 0, "a"},
	    {".", 1, "_"},
	    {"..", 2, "_."},
	    {"a" CJK, 3, "a"},
	    {"a/", 3, "a"},
	    {"/", 2, "_"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_sanitize(cases[i].text, cases[i].max_bytes,
			       cases[i].expected);
}

static void test_sanitize_length_limits(void)
{
	char *a254 = repeat("a", 254);
	char *a253 = repeat("a", 253);
	char *a252 = repeat("a", 252);
	char *a255 = repeat("a", 255);
	char *a300 = repeat("a", 300);
	char text[400];

	/* A 3-byte character that would end past byte 255 is dropped whole. */
	snprintf(text, sizeof(text), "%s" CJK, a254);
	check_sanitize(text, 255, a254);
	snprintf(text, sizeof(text), "%s" CJK, a253);
	check_sanitize(text, 255, a253);
	snprintf(text, sizeof(text), "%s" CJK, a252);
	check_sanitize(text, 255, text);
	CHECK_INT_EQ(strlen(text), 255);

	/* A replacement that does not fit stops the copy. */
	snprintf(text, sizeof(text), "%s/b", a254);
	check_sanitize(text, 255, a254);
	snprintf(text, sizeof(text), "%s\xff", a254);
	check_sanitize(text, 255, a254);

	/* max_bytes is clamped to NAMES_MAX_BYTES. */
	check_sanitize(a300, 1000, a255);
	check_sanitize(a300, 255, a255);

	/* 100 CJK characters are 300 bytes: 85 of them fit in 255. */
	{
		char *cjk100 = repeat(CJK, 100);
		char *cjk85 = repeat(CJK, 85);
		char *cjk83 = repeat(CJK, 83);

		check_sanitize(cjk100, 255, cjk85);
		check_sanitize(cjk100, 251, cjk83);
		free(cjk83);
		free(cjk85);
		free(cjk100);
	}

	free(a300);
	free(a255);
	free(a252);
	free(a253);
	free(a254);
}

static void test_extension_from_url(void)
{
	static const struct {
		const char *url;
		const char *ext; /* NULL: no extension */
	} cases[] = {
	    {"https://h.example/a/b.pdf?md5=x&expires=1", ".pdf"},
	    {"https://h.example/a/B.PDF", ".pdf"},
	    {"https://h.example/a/report.tar.gz", ".gz"},
	    {"https://h.example/a/b.12345678", ".12345678"},
	    {"https://h.example/a/b.pdf#page.txt", ".pdf"},
	    {"https://user:pw@h.example:443/dl/r.Xlsx?sig=a.b", ".xlsx"},
	    {"HTTP://h.example/r.docx", ".docx"},
	    {"/local/report.HTML", ".html"},
	    {"report.docx", ".docx"},
	    {"https://h.example/a/.pdf", NULL},
	    {"https://h.example/a.pdf/b", NULL},
	    {"https://h.example/a.pdf/", NULL},
	    {"https://h.example", NULL},
	    {"https://h.example.com?x=y.pdf", NULL},
	    {"https://h.example/a/b.123456789", NULL},
	    {"https://h.example/a/b.pd-f", NULL},
	    {"https://h.example/a/b.", NULL},
	    {"https://h.example/a/b", NULL},
	    {"https://h.example/a/b?name=x.pdf", NULL},
	    {"https://h.example/a/b#x.pdf", NULL},
	    {"https://h.example/a/b.p%20f", NULL},
	    {"https://h.example/a/b.p\xc3\xa9", NULL},
	    {"", NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ext[16] = "unchanged";
		bool found =
		    names_extension_from_url(cases[i].url, ext, sizeof(ext));

		CHECK_INT_EQ(found, cases[i].ext != NULL);
		if (found != (cases[i].ext != NULL))
			fprintf(stderr, "  url: %s\n", cases[i].url);
		CHECK_STR_EQ(ext, cases[i].ext ? cases[i].ext : "");
	}

	{
		char ext[10];

		CHECK(!names_extension_from_url(NULL, ext, sizeof(ext)));
		CHECK(!names_extension_from_url("https://h/b.pdf", ext, 4));
		CHECK(names_extension_from_url("https://h/b.pdf", ext, 5));
		CHECK_STR_EQ(ext, ".pdf");
		CHECK(names_extension_from_url("https://h/b.12345678", ext,
					       sizeof(ext)));
		CHECK_STR_EQ(ext, ".12345678");
	}
}

static void test_extension_from_type(void)
{
	static const struct {
		const char *type;
		const char *ext;
	} cases[] = {
	    {"application/pdf", ".pdf"},
	    {"Application/PDF", ".pdf"},
	    {"application/pdf; charset=binary", ".pdf"},
	    {"  text/html;charset=utf-8", ".html"},
	    {"text/plain ; charset=utf-8", ".txt"},
	    {"text/csv", ".csv"},
	    {"application/json", ".json"},
	    {"application/zip", ".zip"},
	    {"application/x-zip-compressed", ".zip"},
	    {"application/gzip", ".gz"},
	    {"application/"
	     "vnd.openxmlformats-officedocument.wordprocessingml.document",
	     ".docx"},
	    {"application/"
	     "vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	     ".xlsx"},
	    {"application/msword", ".doc"},
	    {"application/vnd.ms-excel", ".xls"},
	    {"application/octet-stream", NULL},
	    {"application/pdfx", NULL},
	    {"application/pd", NULL},
	    {"text/html2", NULL},
	    {"image/png", NULL},
	    {"", NULL},
	    {";", NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ext[16] = "unchanged";
		bool found =
		    names_extension_from_type(cases[i].type, ext, sizeof(ext));

		CHECK_INT_EQ(found, cases[i].ext != NULL);
		if (found != (cases[i].ext != NULL))
			fprintf(stderr, "  type: %s\n", cases[i].type);
		CHECK_STR_EQ(ext, cases[i].ext ? cases[i].ext : "");
	}

	{
		char ext[5];

		CHECK(!names_extension_from_type(NULL, ext, sizeof(ext)));
		CHECK(
		    !names_extension_from_type("text/html", ext, sizeof(ext)));
		CHECK(names_extension_from_type("text/csv", ext, sizeof(ext)));
		CHECK_STR_EQ(ext, ".csv");
	}
}

static void test_parse_cst_time(void)
{
	static const struct {
		const char *text;
		int ret;
		int64_t seconds;
	} cases[] = {
	    {"2025-12-04 08:00:00", 0, 1764806400},
	    {"2025-12-04T08:00:00", 0, 1764806400},
	    {"2025-12-31 23:59:59", 0, 1767196799},
	    {"1970-01-01 08:00:00", 0, 0},
	    {"1970-01-01 00:00:00", 0, -28800},
	    {"2024-02-29 12:00:00", 0, 1709179200},
	    {"2000-02-29 00:00:00", 0, 951753600},
	    {"9999-12-31 23:59:59", 0, INT64_C(253402271999)},
	    {"0001-01-01 08:00:00", 0, INT64_C(-62135596800)},
	    {"2023-02-29 00:00:00", -EINVAL, 0},
	    {"1900-02-29 00:00:00", -EINVAL, 0},
	    {"2025-02-30 00:00:00", -EINVAL, 0},
	    {"2025-04-31 00:00:00", -EINVAL, 0},
	    {"2025-13-01 00:00:00", -EINVAL, 0},
	    {"2025-00-10 00:00:00", -EINVAL, 0},
	    {"2025-01-00 00:00:00", -EINVAL, 0},
	    {"2025-01-01 24:00:00", -EINVAL, 0},
	    {"2025-01-01 23:60:00", -EINVAL, 0},
	    {"2025-01-01 23:59:60", -EINVAL, 0},
	    {"2025-1-01 00:00:00", -EINVAL, 0},
	    {"2025-12-04 08:00:00Z", -EINVAL, 0},
	    {"2025-12-04 08:00:00 ", -EINVAL, 0},
	    {" 2025-12-04 08:00:00", -EINVAL, 0},
	    {"2025-12-04 08:00", -EINVAL, 0},
	    {"2025/12/04 08:00:00", -EINVAL, 0},
	    {"2025-12-04_08:00:00", -EINVAL, 0},
	    {"2025-12-04  8:00:00", -EINVAL, 0},
	    {"+025-12-04 08:00:00", -EINVAL, 0},
	    {"2025-12-04 08:0a:00", -EINVAL, 0},
	    {"2025-12-04", -EINVAL, 0},
	    {"", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t seconds = 42;
		int ret = names_parse_cst_time(cases[i].text, &seconds);

		CHECK_INT_EQ(ret, cases[i].ret);
		if (ret != cases[i].ret)
			fprintf(stderr, "  text: \"%s\"\n", cases[i].text);
		CHECK_INT_EQ(seconds,
			     cases[i].ret == 0 ? cases[i].seconds : 42);
	}
	CHECK_INT_EQ(names_parse_cst_time(NULL, &(time_t){0}), -EINVAL);
	CHECK_INT_EQ(names_parse_cst_time("2025-12-04 08:00:00", NULL),
		     -EINVAL);
}

static void test_assign_duplicates(void)
{
	struct names_entry entries[] = {
	    {.base = "Report", .ext = ".pdf", .id = "tl-2", .order_key = "2"},
	    {.base = "Report", .ext = ".pdf", .id = "tl-1", .order_key = "2"},
	    {.base = "Report", .ext = ".pdf", .id = "tl-0", .order_key = "3"},
	    {.base = "Report", .ext = ".html", .id = "tl-3", .order_key = "1"},
	    {.base = "a/b", .ext = "", .id = "tl-4", .order_key = NULL},
	    {.base = NULL, .ext = ".pdf", .id = "tl-5", .order_key = NULL},
	    {.base = "", .ext = NULL, .id = "tl-6", .order_key = NULL},
	};

	CHECK_INT_EQ(names_assign(entries, 7), 0);
	/* Equal order keys: the lower id keeps the plain name. */
	CHECK_STR_EQ(entries[1].name, "Report.pdf");
	CHECK_STR_EQ(entries[0].name, "Report (tl-2).pdf");
	CHECK_STR_EQ(entries[2].name, "Report (tl-0).pdf");
	CHECK_STR_EQ(entries[3].name, "Report.html");
	CHECK_STR_EQ(entries[4].name, "a" SOLIDUS "b");
	CHECK_STR_EQ(entries[5].name, "_.pdf");
	CHECK_STR_EQ(entries[6].name, "_");
}

static void test_assign_suffix_collision(void)
{
	/* "a (id1).pdf" is a plain name here, so it stays with its owner and
	 * the second "a" moves on to the next suffix, even though its order
	 * key is lower. */
	struct names_entry entries[] = {
	    {.base = "a (id1)", .ext = ".pdf", .id = "z", .order_key = "9"},
	    {.base = "a", .ext = ".pdf", .id = "id1", .order_key = "1"},
	    {.base = "a", .ext = ".pdf", .id = "id0", .order_key = "0"},
	    {.base = "a (id1-2)", .ext = ".pdf", .id = "y", .order_key = "8"},
	};

	CHECK_INT_EQ(names_assign(entries, 4), 0);
	CHECK_STR_EQ(entries[2].name, "a.pdf");
	CHECK_STR_EQ(entries[0].name, "a (id1).pdf");
	CHECK_STR_EQ(entries[3].name, "a (id1-2).pdf");
	CHECK_STR_EQ(entries[1].name, "a (id1-3).pdf");
}

static void test_assign_sanitizes_id(void)
{
	struct names_entry entries[] = {
	    {.base = "r", .ext = ".pdf", .id = "a", .order_key = ""},
	    {.base = "r", .ext = ".pdf", .id = "b/c\n", .order_key = ""},
	};

	CHECK_INT_EQ(names_assign(entries, 2), 0);
	CHECK_STR_EQ(entries[0].name, "r.pdf");
	CHECK_STR_EQ(entries[1].name, "r (b" SOLIDUS "c_).pdf");
}

static void test_assign_long_base(void)
{
	char *base = repeat("x", 300);
	char *x251 = repeat("x", 251);
	char *x245 = repeat("x", 245);
	char *cjk = repeat(CJK, 100);
	char *cjk83 = repeat(CJK, 83);
	char expected[NAMES_MAX_BYTES + 1];
	struct names_entry entries[] = {
	    {.base = base, .ext = ".pdf", .id = "id1", .order_key = "1"},
	    {.base = base, .ext = ".pdf", .id = "id2", .order_key = "2"},
	    {.base = cjk, .ext = ".pdf", .id = "id3", .order_key = "3"},
	};

	CHECK_INT_EQ(names_assign(entries, 3), 0);
	snprintf(expected, sizeof(expected), "%s.pdf", x251);
	CHECK_STR_EQ(entries[0].name, expected);
	CHECK_INT_EQ(strlen(entries[0].name), 255);
	snprintf(expected, sizeof(expected), "%s (id2).pdf", x245);
	CHECK_STR_EQ(entries[1].name, expected);
	CHECK_INT_EQ(strlen(entries[1].name), 255);
	snprintf(expected, sizeof(expected), "%s.pdf", cjk83);
	CHECK_STR_EQ(entries[2].name, expected);
	CHECK_INT_EQ(strlen(entries[2].name), 253);

	free(cjk83);
	free(cjk);
	free(x245);
	free(x251);
	free(base);
}

static void test_assign_long_id(void)
{
	char *id_a = repeat("i", 260);
	char *id_b = repeat("i", 261);
	char *i238 = repeat("i", 238);
	char expected[NAMES_MAX_BYTES + 1];
	struct names_entry entries[] = {
	    {.base = "r", .ext = ".pdf", .id = "short", .order_key = "0"},
	    {.base = "r", .ext = ".pdf", .id = id_a, .order_key = "1"},
	    {.base = "r", .ext = ".pdf", .id = id_b, .order_key = "2"},
	};

	/* No room is left for the base, so the id replaces it, cut to
	 * 255 - 4 - 13 = 238 bytes whatever k is. Both long ids cut to the
	 * same text, so the second one needs "-2". */
	CHECK_INT_EQ(names_assign(entries, 3), 0);
	CHECK_STR_EQ(entries[0].name, "r.pdf");
	snprintf(expected, sizeof(expected), "(%s).pdf", i238);
	CHECK_STR_EQ(entries[1].name, expected);
	snprintf(expected, sizeof(expected), "(%s-2).pdf", i238);
	CHECK_STR_EQ(entries[2].name, expected);
	CHECK_INT_EQ(strlen(entries[1].name), 244);
	CHECK_INT_EQ(strlen(entries[2].name), 246);

	free(i238);
	free(id_b);
	free(id_a);
}

static void test_assign_invalid(void)
{
	char *long_ext = repeat("e", 17);
	struct names_entry entry = {
	    .base = "r", .ext = ".pdf", .id = NULL, .order_key = NULL};

	CHECK_INT_EQ(names_assign(NULL, 0), 0);
	CHECK_INT_EQ(names_assign(&entry, 1), -EINVAL);
	entry.id = "a";
	entry.ext = long_ext;
	CHECK_INT_EQ(names_assign(&entry, 1), -EINVAL);
	entry.ext = "./x";
	CHECK_INT_EQ(names_assign(&entry, 1), -EINVAL);
	entry.ext = ".p\ndf";
	CHECK_INT_EQ(names_assign(&entry, 1), -EINVAL);
	entry.ext = ".pdf";
	CHECK_INT_EQ(names_assign(&entry, 1), 0);
	CHECK_STR_EQ(entry.name, "r.pdf");
	free(long_ext);
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Checks that every name is valid and that no two are equal. */
static void check_names_valid_unique(const struct names_entry *entries,
				     size_t count)
{
	const char **names = malloc(count * sizeof(*names));
	size_t duplicates = 0;
	size_t invalid = 0;

	for (size_t i = 0; i < count; i++) {
		const char *name = entries[i].name;
		size_t length = strlen(name);

		names[i] = name;
		if (length == 0 || length > NAMES_MAX_BYTES ||
		    strchr(name, '/') || strcmp(name, ".") == 0 ||
		    strcmp(name, "..") == 0)
			invalid++;
		for (size_t j = 0; j < length; j++) {
			if ((unsigned char)name[j] < 0x20 || name[j] == 0x7f)
				invalid++;
		}
	}
	qsort(names, count, sizeof(*names), compare_strings);
	for (size_t i = 1; i < count; i++) {
		if (strcmp(names[i - 1], names[i]) == 0)
			duplicates++;
	}
	CHECK_INT_EQ(invalid, 0);
	CHECK_INT_EQ(duplicates, 0);
	free(names);
}

/* A small deterministic generator, so that a failure can be replayed. */
static uint32_t next_random(uint32_t *state)
{
	*state = *state * 1664525u + 1013904223u;
	return *state >> 8;
}

static void shuffle(struct names_entry *entries, size_t count, uint32_t *state)
{
	for (size_t i = count - 1; i > 0; i--) {
		size_t j = next_random(state) % (i + 1);
		struct names_entry tmp = entries[i];

		entries[i] = entries[j];
		entries[j] = tmp;
	}
}

static int compare_by_id(const void *a, const void *b)
{
	return strcmp(((const struct names_entry *)a)->id,
		      ((const struct names_entry *)b)->id);
}

static void test_assign_order_independent(void)
{
	enum { COUNT = 300 };
	static const char *const bases[] = {
	    "Weekly report",
	    "Weekly report (tl-7)",
	    "a/b",
	    "a" SOLIDUS "b",
	    ".",
	    "_.",
	    "",
	    NULL,
	    "Daily",
	    "Weekly report (tl-7-2)",
	};
	static char ids[COUNT][16];
	static char keys[COUNT][8];
	static struct names_entry reference[COUNT];
	static struct names_entry shuffled[COUNT];
	uint32_t state = 12345;
	size_t mismatches = 0;

	for (size_t i = 0; i < COUNT; i++) {
		snprintf(ids[i], sizeof(ids[i]), "tl-%zu", i);
		snprintf(keys[i], sizeof(keys[i]), "%zu", i % 7);
		reference[i] = (struct names_entry){
		    .base = bases[i % 10],
		    .ext = i % 3 ? ".pdf" : "",
		    .id = ids[i],
		    .order_key = i % 11 ? keys[i] : NULL,
		};
	}
	memcpy(shuffled, reference, sizeof(reference));

	CHECK_INT_EQ(names_assign(reference, COUNT), 0);
	check_names_valid_unique(reference, COUNT);
	qsort(reference, COUNT, sizeof(reference[0]), compare_by_id);

	for (int round = 0; round < 5; round++) {
		shuffle(shuffled, COUNT, &state);
		CHECK_INT_EQ(names_assign(shuffled, COUNT), 0);
		qsort(shuffled, COUNT, sizeof(shuffled[0]), compare_by_id);
		for (size_t i = 0; i < COUNT; i++) {
			if (strcmp(shuffled[i].name, reference[i].name) != 0)
				mismatches++;
		}
	}
	CHECK_INT_EQ(mismatches, 0);
}

static void test_assign_ten_thousand(void)
{
	enum { COUNT = 10000 };
	static char ids[COUNT][16];
	static char bases[COUNT][32];
	static struct names_entry entries[COUNT];
	struct timespec start, end;
	double seconds;
	size_t plain = 0;

	/* Half share one name. The rest have names of their own, some of
	 * which equal a suffixed name of the first half. */
	for (size_t i = 0; i < COUNT; i++) {
		snprintf(ids[i], sizeof(ids[i]), "tl-%05zu", i);
		if (i % 2 == 0)
			snprintf(bases[i], sizeof(bases[i]), "Weekly report");
		else if (i % 4 == 1)
			snprintf(bases[i], sizeof(bases[i]),
				 "Weekly report (tl-%05zu)", i + 1);
		else
			snprintf(bases[i], sizeof(bases[i]), "Report %zu", i);
		entries[i] = (struct names_entry){
		    .base = bases[i],
		    .ext = ".pdf",
		    .id = ids[i],
		    .order_key = ids[i],
		};
	}

	clock_gettime(CLOCK_MONOTONIC, &start);
	CHECK_INT_EQ(names_assign(entries, COUNT), 0);
	clock_gettime(CLOCK_MONOTONIC, &end);
	seconds = (double)(end.tv_sec - start.tv_sec) +
		  (double)(end.tv_nsec - start.tv_nsec) / 1e9;
	printf("names_assign: %d entries in %.3f s\n", COUNT, seconds);

	check_names_valid_unique(entries, COUNT);
	CHECK_STR_EQ(entries[0].name, "Weekly report.pdf");
	CHECK_STR_EQ(entries[1].name, "Weekly report (tl-00002).pdf");
	CHECK_STR_EQ(entries[2].name, "Weekly report (tl-00002-2).pdf");
	CHECK_STR_EQ(entries[4].name, "Weekly report (tl-00004).pdf");
	CHECK_STR_EQ(entries[3].name, "Report 3.pdf");
	for (size_t i = 0; i < COUNT; i++) {
		if (strcmp(entries[i].name, "Weekly report.pdf") == 0)
			plain++;
	}
	CHECK_INT_EQ(plain, 1);
	/* A generous bound that catches quadratic behaviour (10^8 string
	 * comparisons), not a performance target. */
	CHECK(seconds < 5.0);
}

int main(void)
{
	test_sanitize_table();
	test_sanitize_length_limits();
	test_extension_from_url();
	test_extension_from_type();
	test_parse_cst_time();
	test_assign_duplicates();
	test_assign_suffix_collision();
	test_assign_sanitizes_id();
	test_assign_long_base();
	test_assign_long_id();
	test_assign_invalid();
	test_assign_order_independent();
	test_assign_ten_thousand();
	return check_finish();
}
