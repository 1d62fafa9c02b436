/* Credentials, found in the order the official SDKs and tccli use, and
 * parsing of option values. */
#ifndef CSIPFS_CONFIG_H
#define CSIPFS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct config_credentials {
	char *secret_id;
	char *secret_key;
	char *token; /* NULL unless temporary credentials */
	/* Where they came from, for log lines: "environment" or a file path. */
	char source[512];
};

/* Looks credentials up for profile (NULL means "default"), in order:
 * TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY (with
 * TENCENTCLOUD_SESSION_TOKEN or TENCENTCLOUD_TOKEN); the INI file
 * $HOME/.tencentcloud/credentials, else /etc/tencentcloud/credentials,
 * section [profile] with secret_id, secret_key and token; the JSON file
 * $HOME/.tccli/<profile>.credential with secretId, secretKey and token.
 * Only the first INI file that exists is read. Without the section, the
 * search goes on to the tccli file. Empty values count as absent.
 * A file that group or others can read draws a warning in the log.
 * Returns 0 and fills out, or -ENOENT with err listing every place searched,
 * -EACCES when a file exists but cannot be read, -EINVAL when a file is
 * malformed or a profile has only one of the two keys (err names the file
 * and the field). Other negated errnos mean that reading a file failed for
 * another reason or that memory ran out. Profile names other than 1 to 64 of
 * [A-Za-z0-9_.-] give -EINVAL. The environment variable
 * CSIPFS_SYSTEM_CREDENTIALS, if set, replaces the /etc path, so that tests
 * never read the real file. The caller frees out with
 * config_credentials_clear(). */
int config_load_credentials(const char *profile, struct config_credentials *out,
			    char *err, size_t err_size);

/* Wipes the secrets from memory and frees them. Safe on a zeroed struct. */
void config_credentials_clear(struct config_credentials *creds);

/* Parses a byte count: decimal digits, then an optional K, M, G or T
 * suffix (powers of 1024, either case), then an optional "B", or "iB" after
 * a suffix. Returns 0, or -EINVAL for any other text or a value that does
 * not fit 64 bits. */
int config_parse_size(const char *text, uint64_t *bytes);

/* Parses a non-negative whole number of seconds, at most 10 years.
 * Returns 0 or -EINVAL. */
int config_parse_seconds(const char *text, unsigned *seconds);

#endif
