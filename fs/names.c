/* File names from API text, and report times. */
#include "names.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Maximum length of an entry's ext in names_assign(). Extensions from
 * names_extension_from_url() and names_extension_from_type() have at most
 * 9 bytes. */
#define NAMES_EXT_MAX 16

static const char names_fullwidth_solidus[] = "\xef\xbc\x8f"; /* U+FF0F */
static const char names_replacement[] = "\xef\xbf\xbd";	      /* U+FFFD */

size_t names_utf8_length(const unsigned char *text, size_t available)
{
	unsigned char lead = text[0];
	unsigned char low = 0x80, high = 0xbf;
	size_t length;

	if (available == 0)
		return 0;
	if (lead < 0x80)
		return 1;
	if (lead >= 0xc2 && lead <= 0xdf)
		length = 2;
	else if (lead >= 0xe0 && lead <= 0xef)
		length = 3;
	else if (lead >= 0xf0 && lead <= 0xf4)
		length = 4;
	else
		return 0;
	if (length > available)
		return 0;

	/* The second byte's range excludes overlong forms, surrogates and
	 * values above U+10FFFF. */
	if (lead == 0xe0)
		low = 0xa0;
	else if (lead == 0xed)
		high = 0x9f;
	else if (lead == 0xf0)
		low = 0x90;
	else if (lead == 0xf4)
		high = 0x8f;
	if (text[1] < low || text[1] > high)
		return 0;
	for (size_t i = 2; i < length; i++) {
		if (text[i] < 0x80 || text[i] > 0xbf)
			return 0;
	}
	return length;
}

size_t names_sanitize(const char *text, size_t max_bytes, char *out)
{
	const unsigned char *p = (const unsigned char *)(text ? text : "");
	size_t length = 0;

	/* A name needs at least one byte, so max_bytes 0 counts as 1. */
	if (max_bytes > NAMES_MAX_BYTES)
		max_bytes = NAMES_MAX_BYTES;
	if (max_bytes < 1)
		max_bytes = 1;

	while (*p) {
		size_t in = names_utf8_length(p, strnlen((const char *)p, 4));
		const char *piece = (const char *)p;
		size_t piece_length = in;

		if (in == 0) {
			piece = names_replacement;
			piece_length = 3;
			in = 1;
		} else if (*p == '/') {
			piece = names_fullwidth_solidus;
			piece_length = 3;
		} else if (*p < 0x20 || *p == 0x7f) {
			piece = "_";
			piece_length = 1;
		}
		if (length + piece_length > max_bytes)
			break;
		memcpy(out + length, piece, piece_length);
		length += piece_length;
		p += in;
	}
	out[length] = '\0';

	/* The prefix keeps "." and ".." out of a directory listing. A result
	 * longer than max_bytes is cut, which only happens for max_bytes of 1
	 * or 2, and the cut text ("_" or "_.") is still safe. */
	if (length == 0 || strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
		memmove(out + 1, out, length + 1);
		out[0] = '_';
		length++;
		if (length > max_bytes) {
			length = max_bytes;
			out[length] = '\0';
		}
	}
	return length;
}

/* A set of names, by open addressing with linear probing. It stores
 * pointers and owns none of the strings. */
struct names_set {
	const char **slots;
	size_t mask;
};

static uint64_t names_hash(const char *text)
{
	uint64_t hash = 0xcbf29ce484222325u; /* FNV-1a, 64 bits */

	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		hash ^= *p;
		hash *= 0x100000001b3u;
	}
	return hash;
}

static int names_set_init(struct names_set *set, size_t count)
{
	size_t capacity = 16;

	/* A load factor of at most one half keeps the probe sequences short. */
	while (capacity < 2 * count + 1)
		capacity *= 2;
	set->slots = calloc(capacity, sizeof(*set->slots));
	set->mask = capacity - 1;
	return set->slots ? 0 : -ENOMEM;
}

/* Returns the slot that contains name, or the empty slot where it would
 * go. */
static const char **names_set_slot(const struct names_set *set,
				   const char *name)
{
	size_t i = (size_t)names_hash(name) & set->mask;

	while (set->slots[i] && strcmp(set->slots[i], name) != 0)
		i = (i + 1) & set->mask;
	return &set->slots[i];
}

static bool names_set_contains(const struct names_set *set, const char *name)
{
	return *names_set_slot(set, name) != NULL;
}

/* Adds name, which must stay valid while the set is used. */
static void names_set_add(struct names_set *set, const char *name)
{
	*names_set_slot(set, name) = name;
}

static int names_compare_text(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static int names_compare_entries(const void *a, const void *b)
{
	const struct names_entry *x = *(const struct names_entry *const *)a;
	const struct names_entry *y = *(const struct names_entry *const *)b;
	int order = names_compare_text(x->order_key, y->order_key);

	return order ? order : names_compare_text(x->id, y->id);
}

/* Returns the entry's ext, with NULL read as "". */
static const char *names_ext(const struct names_entry *entry)
{
	return entry->ext ? entry->ext : "";
}

/* Maximum length of the tail after the id: "-4294967295)". */
#define NAMES_TAIL_MAX 12

/* Writes the k-th collision name of entry into name: the base cut to fit,
 * " (<id>)" for k 1 or " (<id>-<k>)" after, then ext. When the id leaves
 * no room for the base, the base is dropped and the id is cut instead,
 * giving "(<id cut>)" or "(<id cut>-<k>)" and ext. The id is then cut to
 * the same length for every k, so that only the tail differs. */
static void names_collision_name(const struct names_entry *entry,
				 const char *sanitized_id, unsigned k,
				 char name[NAMES_MAX_BYTES + 1])
{
	const char *ext = names_ext(entry);
	size_t ext_length = strlen(ext);
	size_t id_length = strlen(sanitized_id);
	char tail[16];
	size_t tail_length;
	size_t suffix_length;
	size_t length;

	if (k == 1)
		tail_length = (size_t)snprintf(tail, sizeof(tail), ")");
	else
		tail_length = (size_t)snprintf(tail, sizeof(tail), "-%u)", k);
	suffix_length = 2 + id_length + tail_length;

	if (suffix_length + ext_length + 1 <= NAMES_MAX_BYTES) {
		length = names_sanitize(
		    entry->base, NAMES_MAX_BYTES - ext_length - suffix_length,
		    name);
		memcpy(name + length, " (", 2);
		memcpy(name + length + 2, sanitized_id, id_length);
		length += 2 + id_length;
	} else {
		name[0] = '(';
		length = 1 + names_sanitize(entry->id,
					    NAMES_MAX_BYTES - ext_length - 1 -
						NAMES_TAIL_MAX,
					    name + 1);
	}
	memcpy(name + length, tail, tail_length);
	memcpy(name + length + tail_length, ext, ext_length + 1);
}

/* Finds a free collision name for entry and adds it to taken. Returns 0, or
 * -EINVAL if none is free within bound tries. */
static int names_assign_loser(struct names_entry *entry,
			      struct names_set *taken, unsigned bound)
{
	char sanitized_id[NAMES_MAX_BYTES + 1];
	char name[NAMES_MAX_BYTES + 1];

	names_sanitize(entry->id, NAMES_MAX_BYTES, sanitized_id);
	for (unsigned k = 1; k <= bound; k++) {
		names_collision_name(entry, sanitized_id, k, name);
		if (!names_set_contains(taken, name)) {
			memcpy(entry->name, name, strlen(name) + 1);
			names_set_add(taken, entry->name);
			return 0;
		}
	}
	return -EINVAL;
}

static bool names_ext_valid(const char *ext)
{
	size_t length = strnlen(ext, NAMES_EXT_MAX + 1);

	if (length > NAMES_EXT_MAX || strchr(ext, '/'))
		return false;
	for (size_t i = 0; i < length; i++) {
		if ((unsigned char)ext[i] < 0x20 || ext[i] == 0x7f)
			return false;
	}
	return true;
}

int names_assign(struct names_entry *entries, size_t count)
{
	struct names_entry **sorted = NULL;
	struct names_entry **losers = NULL;
	struct names_set taken = {0};
	size_t loser_count = 0;
	unsigned bound;
	int ret;

	if (count == 0)
		return 0;
	if (!entries || count > UINT32_MAX - 2)
		return -EINVAL;
	for (size_t i = 0; i < count; i++) {
		if (!entries[i].id || !names_ext_valid(names_ext(&entries[i])))
			return -EINVAL;
	}

	ret = -ENOMEM;
	sorted = malloc(count * sizeof(*sorted));
	losers = malloc(count * sizeof(*losers));
	if (!sorted || !losers || names_set_init(&taken, count))
		goto out;

	for (size_t i = 0; i < count; i++) {
		const char *ext = names_ext(&entries[i]);
		size_t ext_length = strlen(ext);
		size_t length = names_sanitize(entries[i].base,
					       NAMES_MAX_BYTES - ext_length,
					       entries[i].name);

		memcpy(entries[i].name + length, ext, ext_length + 1);
		sorted[i] = &entries[i];
	}
	qsort(sorted, count, sizeof(*sorted), names_compare_entries);

	/* The lowest (order_key, id) keeps a plain name, so the outcome does
	 * not depend on the order of the array. */
	for (size_t i = 0; i < count; i++) {
		if (names_set_contains(&taken, sorted[i]->name))
			losers[loser_count++] = sorted[i];
		else
			names_set_add(&taken, sorted[i]->name);
	}

	/* The other entries hold at most count - 1 names and the names
	 * tried for different k differ, so one of the first count tries is
	 * free. The bound guards against a case that argument missed. */
	bound = (unsigned)count + 2;
	ret = 0;
	for (size_t i = 0; i < loser_count && ret == 0; i++)
		ret = names_assign_loser(losers[i], &taken, bound);
out:
	free(taken.slots);
	free(losers);
	free(sorted);
	return ret;
}

static bool names_is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* Returns the length of a URL scheme and "://" at the start of url, or 0. */
static size_t names_scheme_length(const char *url)
{
	size_t n = 0;

	if (!((url[0] >= 'a' && url[0] <= 'z') ||
	      (url[0] >= 'A' && url[0] <= 'Z')))
		return 0;
	while (names_is_alnum(url[n]) || url[n] == '+' || url[n] == '-' ||
	       url[n] == '.')
		n++;
	return strncmp(url + n, "://", 3) == 0 ? n + 3 : 0;
}

bool names_extension_from_url(const char *url, char *ext, size_t size)
{
	const char *path;
	const char *segment;
	const char *dot = NULL;
	size_t path_length;
	size_t ext_length;

	if (!url || !ext || size == 0)
		return false;
	ext[0] = '\0';

	path = url;
	if (names_scheme_length(url) > 0) {
		path = url + names_scheme_length(url);
		path += strcspn(path, "/?#");
	}
	path_length = strcspn(path, "?#");

	segment = path;
	for (size_t i = 0; i < path_length; i++) {
		if (path[i] == '/')
			segment = path + i + 1;
		else if (path[i] == '.')
			dot = path + i;
	}
	if (!dot || dot <= segment)
		return false;

	ext_length = (size_t)(path + path_length - dot - 1);
	if (ext_length < 1 || ext_length > 8 || ext_length + 2 > size)
		return false;
	for (size_t i = 0; i < ext_length; i++) {
		if (!names_is_alnum(dot[1 + i]))
			return false;
	}

	ext[0] = '.';
	for (size_t i = 0; i < ext_length; i++) {
		char c = dot[1 + i];

		ext[1 + i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	ext[1 + ext_length] = '\0';
	return true;
}

bool names_extension_from_type(const char *content_type, char *ext, size_t size)
{
	static const struct {
		const char *type;
		const char *ext;
	} types[] = {
	    {"application/pdf", ".pdf"},
	    {"text/html", ".html"},
	    {"text/plain", ".txt"},
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
	};
	const char *start;
	size_t length;

	if (!content_type || !ext || size == 0)
		return false;
	ext[0] = '\0';

	/* The media type ends at the first ';' (parameters) or space. */
	start = content_type + strspn(content_type, " \t");
	length = strcspn(start, "; \t");

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strlen(types[i].type) != length ||
		    strncasecmp(start, types[i].type, length) != 0)
			continue;
		if (strlen(types[i].ext) + 1 > size)
			return false;
		memcpy(ext, types[i].ext, strlen(types[i].ext) + 1);
		return true;
	}
	return false;
}

/* Parses exactly count decimal digits. Returns -1 if any is not a digit. */
static int names_parse_digits(const char *text, size_t count)
{
	int value = 0;

	for (size_t i = 0; i < count; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (text[i] - '0');
	}
	return value;
}

static int names_days_in_month(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30,
				   31, 31, 30, 31, 30, 31};
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/* Returns the number of days from 1970-01-01 to a date of the proleptic
 * Gregorian calendar. Counting in 400-year eras of 146097 days keeps the
 * arithmetic exact for years before 1970 too. */
static int64_t names_days_from_civil(int64_t year, unsigned month, unsigned day)
{
	int64_t era;
	unsigned year_of_era, day_of_year, day_of_era;

	year -= month <= 2;
	era = (year >= 0 ? year : year - 399) / 400;
	year_of_era = (unsigned)(year - era * 400);
	day_of_year =
	    (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
	day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 +
		     day_of_year;
	return era * 146097 + (int64_t)day_of_era - 719468;
}

int names_parse_cst_time(const char *text, time_t *out)
{
	int year, month, day, hour, minute, second;
	int64_t seconds;

	if (!text || !out || strnlen(text, 20) != 19)
		return -EINVAL;
	if (text[4] != '-' || text[7] != '-' ||
	    (text[10] != ' ' && text[10] != 'T') || text[13] != ':' ||
	    text[16] != ':')
		return -EINVAL;

	year = names_parse_digits(text, 4);
	month = names_parse_digits(text + 5, 2);
	day = names_parse_digits(text + 8, 2);
	hour = names_parse_digits(text + 11, 2);
	minute = names_parse_digits(text + 14, 2);
	second = names_parse_digits(text + 17, 2);
	if (year < 0 || month < 1 || month > 12 || day < 1 ||
	    day > names_days_in_month(year, month) || hour < 0 || hour > 23 ||
	    minute < 0 || minute > 59 || second < 0 || second > 59)
		return -EINVAL;

	/* China Standard Time is UTC+8 all year, without daylight saving. */
	seconds = names_days_from_civil(year, (unsigned)month, (unsigned)day) *
		      86400 +
		  hour * 3600 + minute * 60 + second - 8 * 3600;
	*out = (time_t)seconds;
	return 0;
}
