/* File names from API text: sanitising, collision suffixes, extensions, and
 * the conversion of report times. Pure functions, safe from any thread. */
#ifndef CSIPFS_NAMES_H
#define CSIPFS_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Longest name the kernel accepts for one path component, in bytes. */
#define NAMES_MAX_BYTES 255

/* Copies text into out (NAMES_MAX_BYTES + 1 bytes) as a valid file name:
 * '/' becomes U+FF0F FULLWIDTH SOLIDUS, control characters (U+0000..U+001F,
 * U+007F) become '_', each byte of invalid UTF-8 becomes U+FFFD, the result is
 * cut at a character boundary to at most max_bytes bytes (at most
 * NAMES_MAX_BYTES), and an empty result or "." or ".." becomes "_", "_." or
 * "_..". NULL text counts as empty. Invalid UTF-8 includes overlong forms,
 * surrogates and code points above U+10FFFF. A max_bytes of 0 counts as 1,
 * and a prefixed result longer than max_bytes is cut too (so "." with
 * max_bytes 1 gives "_"). Returns the length written. */
size_t names_sanitize(const char *text, size_t max_bytes, char *out);

/* Returns the length of the valid UTF-8 sequence at text, which has
 * available bytes, or 0 if the byte at text does not start one. Valid
 * sequences follow RFC 3629, section 4, which excludes overlong forms,
 * surrogates (U+D800..U+DFFF) and code points above U+10FFFF. */
size_t names_utf8_length(const unsigned char *text, size_t available);

/* One entry of a directory to be named by names_assign(). */
struct names_entry {
	const char
	    *base; /* display text from the API, unsanitised; may be NULL */
	const char *ext; /* "" or an extension with its dot, such as ".pdf",
			    at most 16 bytes. NULL counts as "". */
	const char *id;	 /* unique id within the directory, used in suffixes */
	const char *order_key; /* who keeps the plain name: lowest key wins */
	char name[NAMES_MAX_BYTES + 1]; /* output */
};

/* Gives every entry a name unique within the array. Each name is the
 * sanitised base plus ext. When several entries would get the same name, the
 * one with the lowest (order_key, id) keeps it and each other one gets
 * " (<id>)" before ext, then " (<id>-2)", " (<id>-3)" and so on if that is
 * taken too. Bases are cut so that every name fits NAMES_MAX_BYTES. An id
 * too long to leave room for the base replaces it: the name is then
 * "(<id>)" and ext, or "(<id>-<k>)" and ext, with the id cut to
 * 242 - strlen(ext) bytes (room for the longest "-<k>)"). The result depends
 * only on the set of entries, never on their order in the array, as long as the
 * ids are unique. Returns 0, -ENOMEM, or -EINVAL for a NULL id or for an ext
 * longer than 16 bytes or containing '/' or a control character. */
int names_assign(struct names_entry *entries, size_t count);

/* Finds the extension of a URL's last path segment (query and fragment
 * ignored): a dot followed by 1 to 8 ASCII letters or digits, written in
 * lowercase with its dot into ext (at least 10 bytes). Returns true if found.
 */
bool names_extension_from_url(const char *url, char *ext, size_t size);

/* Maps a Content-Type (parameters ignored, case-insensitive) to an
 * extension such as ".pdf". Returns true if the type is known. */
bool names_extension_from_type(const char *content_type, char *ext,
			       size_t size);

/* Parses "YYYY-MM-DD HH:MM:SS" (or with a 'T' between date and time) as
 * China Standard Time, UTC+8, into Unix seconds. Returns 0, or -EINVAL for
 * any other text or an impossible date. */
int names_parse_cst_time(const char *text, time_t *out);

#endif
