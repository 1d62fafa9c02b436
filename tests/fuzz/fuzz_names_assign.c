/* Fuzzes names_assign(). Each input line is one entry, with the fields
 * base, ext, id and order key separated by tabs. A line with a repeated id
 * is skipped, because ids are unique within a directory. On success every
 * name must be unique and valid, end with its ext, and not depend on the
 * order of the entries. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "names.h"
#include "utf8.h"

#define MAX_ENTRIES 64

struct input {
	char *fields[MAX_ENTRIES][4];
	size_t count;
};

/* Splits text in place into at most MAX_ENTRIES lines of 4 fields. */
static void split(char *text, struct input *input)
{
	char *line = text;

	input->count = 0;
	while (line && input->count < MAX_ENTRIES) {
		char *next = strchr(line, '\n');
		char **fields = input->fields[input->count];
		bool repeated = false;

		if (next)
			*next++ = '\0';
		for (int k = 0; k < 4; k++) {
			char *tab = line ? strchr(line, '\t') : NULL;

			fields[k] = line ? line : "";
			if (tab)
				*tab = '\0';
			line = tab ? tab + 1 : NULL;
		}
		for (size_t i = 0; i < input->count; i++)
			if (strcmp(input->fields[i][2], fields[2]) == 0)
				repeated = true;
		if (!repeated)
			input->count++;
		line = next;
	}
}

static bool valid_ext(const char *ext)
{
	if (strlen(ext) > 16)
		return false;
	for (const char *p = ext; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Fills entries from input, in reverse order when reversed is set. */
static void fill(struct names_entry *entries, const struct input *input,
		 bool reversed)
{
	for (size_t i = 0; i < input->count; i++) {
		size_t from = reversed ? input->count - 1 - i : i;
		char *const *fields = input->fields[from];

		memset(&entries[i], 0, sizeof(entries[i]));
		entries[i].base = fields[0];
		entries[i].ext = fields[1];
		entries[i].id = fields[2];
		entries[i].order_key = fields[3];
	}
}

static void check_names(const struct names_entry *entries, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const char *name = entries[i].name;
		size_t length = strnlen(name, sizeof(entries[i].name));
		size_t ext_length = strlen(entries[i].ext);

		FUZZ_CHECK(length >= 1 && length <= NAMES_MAX_BYTES);
		FUZZ_CHECK(strchr(name, '/') == NULL);
		FUZZ_CHECK(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
		FUZZ_CHECK(fuzz_is_utf8(name, length) ||
			   !fuzz_is_utf8(entries[i].ext, ext_length));
		FUZZ_CHECK(length >= ext_length);
		FUZZ_CHECK(strcmp(name + length - ext_length, entries[i].ext) ==
			   0);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(name, entries[j].name) != 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct names_entry forward[MAX_ENTRIES];
	static struct names_entry backward[MAX_ENTRIES];
	struct input input;
	bool exts_valid = true;
	char *text;
	int rc;

	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	split(text, &input);
	for (size_t i = 0; i < input.count; i++)
		exts_valid = exts_valid && valid_ext(input.fields[i][1]);

	fill(forward, &input, false);
	rc = names_assign(forward, input.count);
	if (!exts_valid) {
		FUZZ_CHECK(rc == -EINVAL);
		free(text);
		return 0;
	}
	FUZZ_CHECK(rc == 0);
	check_names(forward, input.count);

	fill(backward, &input, true);
	FUZZ_CHECK(names_assign(backward, input.count) == 0);
	for (size_t i = 0; i < input.count; i++)
		FUZZ_CHECK(strcmp(forward[i].name,
				  backward[input.count - 1 - i].name) == 0);
	free(text);
	return 0;
}
