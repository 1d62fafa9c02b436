/* A strict UTF-8 check for the names harnesses, written apart from
 * fs/names.c so that a bug there is not repeated here. */
#ifndef CSIPFS_FUZZ_UTF8_H
#define CSIPFS_FUZZ_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns whether text[0, length) is UTF-8 without overlong forms,
 * surrogates or code points above U+10FFFF. */
static inline bool fuzz_is_utf8(const char *text, size_t length)
{
	const unsigned char *bytes = (const unsigned char *)text;
	size_t i = 0;

	while (i < length) {
		unsigned char lead = bytes[i];
		uint32_t code;
		uint32_t min;
		size_t extra;

		if (lead < 0x80) {
			i++;
			continue;
		}
		if ((lead & 0xe0) == 0xc0) {
			extra = 1;
			code = lead & 0x1f;
			min = 0x80;
		} else if ((lead & 0xf0) == 0xe0) {
			extra = 2;
			code = lead & 0x0f;
			min = 0x800;
		} else if ((lead & 0xf8) == 0xf0) {
			extra = 3;
			code = lead & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (length - i <= extra)
			return false;
		for (size_t k = 1; k <= extra; k++) {
			if ((bytes[i + k] & 0xc0) != 0x80)
				return false;
			code = (code << 6) | (bytes[i + k] & 0x3f);
		}
		if (code < min || code > 0x10ffff ||
		    (code >= 0xd800 && code <= 0xdfff))
			return false;
		i += extra + 1;
	}
	return true;
}

#endif
