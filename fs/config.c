/* The credential chain of the Tencent Cloud SDKs and tccli, and parsing of
 * option values. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "log.h"

/* Maximum size of a credentials file. Real files have a few hundred bytes. */
#define CONFIG_FILE_MAX (64 * 1024)

#define CONFIG_PROFILE_MAX 64

/* 10 years of 365 days. */
#define CONFIG_SECONDS_MAX 315360000u

#define CONFIG_ENV_ID	   "TENCENTCLOUD_SECRET_ID"
#define CONFIG_ENV_KEY	   "TENCENTCLOUD_SECRET_KEY"
#define CONFIG_ENV_SESSION "TENCENTCLOUD_SESSION_TOKEN"
#define CONFIG_ENV_TOKEN   "TENCENTCLOUD_TOKEN"

#define CONFIG_SYSTEM_FILE "/etc/tencentcloud/credentials"

/* Overrides CONFIG_SYSTEM_FILE. It exists so that the tests never read the
 * real /etc/tencentcloud/credentials of the machine they run on. */
#define CONFIG_ENV_SYSTEM_FILE "CSIPFS_SYSTEM_CREDENTIALS"

/* Contents of a credentials file, NUL-terminated, with the file's mode. */
struct config_file {
	char *data;
	size_t length;
	mode_t mode;
};

/* Pointers into a parsed file or the environment, not yet copied. */
struct config_found {
	const char *secret_id;
	const char *secret_key;
	const char *token;
};

static void config_error(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_error(char *err, size_t err_size, const char *fmt, ...)
{
	va_list args;

	if (!err || err_size == 0)
		return;
	va_start(args, fmt);
	vsnprintf(err, err_size, fmt, args);
	va_end(args);
}

static void config_free_secret(char *secret)
{
	if (!secret)
		return;
	OPENSSL_cleanse(secret, strlen(secret));
	free(secret);
}

void config_credentials_clear(struct config_credentials *creds)
{
	if (!creds)
		return;
	config_free_secret(creds->secret_id);
	config_free_secret(creds->secret_key);
	config_free_secret(creds->token);
	creds->secret_id = NULL;
	creds->secret_key = NULL;
	creds->token = NULL;
	creds->source[0] = '\0';
}

/* Copies the strings of found into out. An empty token counts as none. */
static int config_store(const struct config_found *found, const char *source,
			struct config_credentials *out)
{
	out->secret_id = strdup(found->secret_id);
	out->secret_key = strdup(found->secret_key);
	if (found->token && *found->token)
		out->token = strdup(found->token);
	if (!out->secret_id || !out->secret_key ||
	    (found->token && *found->token && !out->token)) {
		config_credentials_clear(out);
		return -ENOMEM;
	}
	snprintf(out->source, sizeof(out->source), "%s", source);
	return 0;
}

static bool config_profile_valid(const char *profile)
{
	size_t length = strlen(profile);

	if (length == 0 || length > CONFIG_PROFILE_MAX)
		return false;
	return strspn(profile, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			       "abcdefghijklmnopqrstuvwxyz"
			       "0123456789_.-") == length;
}

static const char *config_getenv(const char *name)
{
	const char *value = getenv(name);

	return value && *value ? value : NULL;
}

/* Reads the credentials from the environment. Empty variables count as
 * unset. Returns 0, -ENOENT if neither key is set, -EINVAL if only one is,
 * or -ENOMEM. */
static int config_from_environment(struct config_credentials *out, char *err,
				   size_t err_size)
{
	struct config_found found = {
	    .secret_id = config_getenv(CONFIG_ENV_ID),
	    .secret_key = config_getenv(CONFIG_ENV_KEY),
	    .token = config_getenv(CONFIG_ENV_SESSION),
	};

	if (!found.secret_id && !found.secret_key)
		return -ENOENT;
	if (!found.secret_id || !found.secret_key) {
		config_error(err, err_size,
			     "%s is set but %s is missing: set both or neither",
			     found.secret_id ? CONFIG_ENV_ID : CONFIG_ENV_KEY,
			     found.secret_id ? CONFIG_ENV_KEY : CONFIG_ENV_ID);
		return -EINVAL;
	}
	if (!found.token)
		found.token = config_getenv(CONFIG_ENV_TOKEN);
	return config_store(&found, "environment", out);
}

static void config_file_free(struct config_file *file)
{
	if (file->data) {
		OPENSSL_cleanse(file->data, file->length);
		free(file->data);
	}
	file->data = NULL;
	file->length = 0;
}

/* Reads a whole regular file of at most CONFIG_FILE_MAX bytes. Returns 0,
 * -ENOENT without a message if it does not exist, or another negated errno
 * with err naming the path. */
static int config_read_file(const char *path, struct config_file *file,
			    char *err, size_t err_size)
{
	struct stat st;
	ssize_t n;
	int fd;
	int ret;

	file->data = NULL;
	file->length = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT || ret == -ENOTDIR)
			return -ENOENT;
		if (ret == -EACCES)
			config_error(err, err_size,
				     "cannot read credentials file %s: "
				     "permission denied",
				     path);
		else
			config_error(err, err_size,
				     "cannot open credentials file %s: %s",
				     path, strerror(-ret));
		return ret;
	}

	if (fstat(fd, &st) < 0) {
		ret = -errno;
		config_error(err, err_size,
			     "cannot stat credentials file %s: %s", path,
			     strerror(-ret));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		config_error(err, err_size,
			     "credentials file %s is not a regular file", path);
		goto out_close;
	}
	file->mode = st.st_mode;

	/* One byte more than the maximum shows whether the file is larger,
	 * even if it grew after fstat(). */
	file->data = malloc(CONFIG_FILE_MAX + 2);
	if (!file->data) {
		ret = -ENOMEM;
		goto out_close;
	}
	while (file->length <= CONFIG_FILE_MAX) {
		n = read(fd, file->data + file->length,
			 CONFIG_FILE_MAX + 1 - file->length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			config_error(err, err_size,
				     "cannot read credentials file %s: %s",
				     path, strerror(-ret));
			goto out_free;
		}
		if (n == 0)
			break;
		file->length += (size_t)n;
	}
	file->data[file->length] = '\0';

	if (file->length > CONFIG_FILE_MAX) {
		ret = -EINVAL;
		config_error(err, err_size,
			     "credentials file %s is larger than %d KiB", path,
			     CONFIG_FILE_MAX / 1024);
		goto out_free;
	}
	if (memchr(file->data, '\0', file->length)) {
		ret = -EINVAL;
		config_error(err, err_size,
			     "credentials file %s contains a NUL byte", path);
		goto out_free;
	}
	close(fd);
	return 0;

out_free:
	config_file_free(file);
out_close:
	close(fd);
	return ret;
}

static char *config_trim(char *text)
{
	size_t length;

	while (*text == ' ' || *text == '\t')
		text++;
	length = strlen(text);
	while (length > 0 &&
	       (text[length - 1] == ' ' || text[length - 1] == '\t'))
		text[--length] = '\0';
	return text;
}

/* Removes one pair of matching single or double quotes around value. */
static char *config_unquote(char *value)
{
	size_t length = strlen(value);

	if (length >= 2 && (value[0] == '"' || value[0] == '\'') &&
	    value[length - 1] == value[0]) {
		value[length - 1] = '\0';
		return value + 1;
	}
	return value;
}

/* Parses an INI file in place and picks secret_id, secret_key and token
 * from section [profile]. Keys are case-insensitive, section names are not,
 * and when a key repeats the last value wins. Returns 0, -ENOENT if the
 * section is missing, or -EINVAL for a malformed line or a section with
 * only one of the two keys. Messages never quote the file's text, because it
 * contains secrets. */
static int config_parse_ini(char *data, const char *profile, const char *path,
			    struct config_found *found, char *err,
			    size_t err_size)
{
	bool in_profile = false;
	bool section_found = false;
	unsigned line_number = 0;
	char *next = data;

	memset(found, 0, sizeof(*found));
	while (next) {
		char *line = next;
		char *end = strchr(line, '\n');
		size_t length;
		char *equals;
		char *key;
		char *value;

		line_number++;
		next = NULL;
		if (end) {
			*end = '\0';
			next = end + 1;
		}
		length = strlen(line);
		if (length > 0 && line[length - 1] == '\r')
			line[length - 1] = '\0';

		line = config_trim(line);
		if (*line == '\0' || *line == ';' || *line == '#')
			continue;

		if (*line == '[') {
			length = strlen(line);
			if (line[length - 1] != ']') {
				config_error(err, err_size,
					     "%s line %u: invalid section "
					     "header, expected [name]",
					     path, line_number);
				return -EINVAL;
			}
			line[length - 1] = '\0';
			in_profile =
			    strcmp(config_trim(line + 1), profile) == 0;
			section_found = section_found || in_profile;
			continue;
		}

		equals = strchr(line, '=');
		if (!equals || equals == line) {
			config_error(err, err_size,
				     "%s line %u: invalid line, expected "
				     "[name] or key = value",
				     path, line_number);
			return -EINVAL;
		}
		if (!in_profile)
			continue;

		*equals = '\0';
		key = config_trim(line);
		value = config_unquote(config_trim(equals + 1));
		if (*value == '\0')
			value = NULL;
		if (strcasecmp(key, "secret_id") == 0)
			found->secret_id = value;
		else if (strcasecmp(key, "secret_key") == 0)
			found->secret_key = value;
		else if (strcasecmp(key, "token") == 0)
			found->token = value;
	}

	if (!section_found)
		return -ENOENT;
	if (!found->secret_id || !found->secret_key) {
		config_error(err, err_size,
			     "%s: section [%s] has no %s, expected both "
			     "secret_id and secret_key",
			     path, profile,
			     found->secret_id ? "secret_key" : "secret_id");
		return -EINVAL;
	}
	return 0;
}

/* Gets the string member name of a tccli object. Returns 0, -ENOENT if it
 * is absent, null or empty, or -EINVAL if it is not a string. */
static int config_json_string(json_t *root, const char *name,
			      const char **value)
{
	json_t *member = json_object_get(root, name);

	*value = NULL;
	if (!member || json_is_null(member))
		return -ENOENT;
	if (!json_is_string(member))
		return -EINVAL;
	if (json_string_length(member) == 0)
		return -ENOENT;
	*value = json_string_value(member);
	return 0;
}

/* Parses a tccli credential file and copies its secrets into out. Returns 0
 * or -EINVAL with err naming the file and the field. Messages never quote
 * the file's text, because it contains secrets. */
static int config_parse_tccli(const struct config_file *file, const char *path,
			      struct config_credentials *out, char *err,
			      size_t err_size)
{
	static const char *const required[] = {"secretId", "secretKey"};
	struct config_found found = {0};
	const char **targets[] = {&found.secret_id, &found.secret_key};
	json_error_t error;
	json_t *root;
	int ret;

	root = json_loadb(file->data, file->length, JSON_REJECT_DUPLICATES,
			  &error);
	if (!root) {
		config_error(err, err_size,
			     "%s: invalid JSON at line %d, column %d", path,
			     error.line, error.column);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		config_error(err, err_size, "%s: expected a JSON object", path);
		ret = -EINVAL;
		goto out;
	}

	for (size_t i = 0; i < 2; i++) {
		ret = config_json_string(root, required[i], targets[i]);
		if (ret == -ENOENT) {
			config_error(err, err_size, "%s: %s is missing", path,
				     required[i]);
			ret = -EINVAL;
			goto out;
		}
		if (ret) {
			config_error(err, err_size, "%s: %s is not a string",
				     path, required[i]);
			goto out;
		}
	}
	ret = config_json_string(root, "token", &found.token);
	if (ret == -EINVAL) {
		config_error(err, err_size, "%s: token is not a string", path);
		goto out;
	}
	ret = config_store(&found, path, out);
out:
	/* NOTE: jansson frees the decoded strings without wiping them, so
	 * copies of the secrets stay in freed heap memory. */
	json_decref(root);
	return ret;
}

static void config_warn_if_readable(const struct config_file *file,
				    const char *path)
{
	if (file->mode & (S_IRGRP | S_IROTH))
		log_warning("credentials file %s is readable by group or "
			    "others; run chmod 600 %s",
			    path, path);
}

/* Finds the home directory: $HOME, else the password database entry of
 * the real user. Returns 0, -ENOENT, or -ENAMETOOLONG. */
static int config_home(char *home, size_t size)
{
	const char *env = getenv("HOME");
	struct passwd entry;
	struct passwd *result = NULL;
	char buffer[16384];

	if (!env || !*env) {
		if (getpwuid_r(getuid(), &entry, buffer, sizeof(buffer),
			       &result) != 0 ||
		    !result || !result->pw_dir || !*result->pw_dir)
			return -ENOENT;
		env = result->pw_dir;
	}
	if ((size_t)snprintf(home, size, "%s", env) >= size)
		return -ENAMETOOLONG;
	return 0;
}

static int config_path_too_long(const char *home, char *err, size_t err_size)
{
	config_error(err, err_size,
		     "home directory %s is too long for a credentials path",
		     home);
	return -ENAMETOOLONG;
}

/* The list of places searched, for the -ENOENT message. */
struct config_search {
	char text[2048];
	size_t length;
};

static void config_search_add(struct config_search *search, const char *fmt,
			      ...) __attribute__((format(printf, 2, 3)));

static void config_search_add(struct config_search *search, const char *fmt,
			      ...)
{
	size_t room = sizeof(search->text) - search->length;
	va_list args;
	int n;

	if (room <= 1)
		return;
	va_start(args, fmt);
	n = vsnprintf(search->text + search->length, room, fmt, args);
	va_end(args);
	if (n > 0)
		search->length += (size_t)n < room ? (size_t)n : room - 1;
}

/* Looks the profile up in the INI files: the user's file if it exists, else
 * the system file. Returns 0, -ENOENT to go on with the next source, or
 * another negated errno. */
static int config_from_ini(const char *home, const char *profile,
			   struct config_search *search,
			   struct config_credentials *out, char *err,
			   size_t err_size)
{
	const char *system_path = config_getenv(CONFIG_ENV_SYSTEM_FILE);
	struct config_file file = {0};
	struct config_found found;
	char user_path[PATH_MAX];
	const char *path = NULL;
	int ret = -ENOENT;

	if (home) {
		if ((size_t)snprintf(user_path, sizeof(user_path),
				     "%s/.tencentcloud/credentials",
				     home) >= sizeof(user_path))
			return config_path_too_long(home, err, err_size);
		path = user_path;
		config_search_add(search, ", %s", path);
		ret = config_read_file(path, &file, err, err_size);
	}
	if (ret == -ENOENT) {
		path = system_path ? system_path : CONFIG_SYSTEM_FILE;
		config_search_add(search, ", %s", path);
		ret = config_read_file(path, &file, err, err_size);
	}
	if (ret)
		return ret;

	ret = config_parse_ini(file.data, profile, path, &found, err, err_size);
	if (ret == -ENOENT)
		config_search_add(search, " (no section [%s])", profile);
	if (ret == 0) {
		ret = config_store(&found, path, out);
		if (ret == 0)
			config_warn_if_readable(&file, path);
	}
	config_file_free(&file);
	return ret;
}

/* Looks the profile up in the tccli file $HOME/.tccli/<profile>.credential.
 * Returns 0, -ENOENT if it does not exist, or another negated errno. */
static int config_from_tccli(const char *home, const char *profile,
			     struct config_search *search,
			     struct config_credentials *out, char *err,
			     size_t err_size)
{
	struct config_file file = {0};
	char path[PATH_MAX];
	int ret;

	if ((size_t)snprintf(path, sizeof(path), "%s/.tccli/%s.credential",
			     home, profile) >= sizeof(path))
		return config_path_too_long(home, err, err_size);
	config_search_add(search, ", %s", path);
	ret = config_read_file(path, &file, err, err_size);
	if (ret)
		return ret;

	ret = config_parse_tccli(&file, path, out, err, err_size);
	if (ret == 0)
		config_warn_if_readable(&file, path);
	config_file_free(&file);
	return ret;
}

/* Searches the sources in order for a valid profile name. Returns as
 * config_load_credentials() does, but err may stay empty for -ENOMEM. */
static int config_search_sources(const char *profile,
				 struct config_credentials *out, char *err,
				 size_t err_size)
{
	struct config_search search = {0};
	char home[PATH_MAX];
	bool have_home;
	int ret;

	ret = config_from_environment(out, err, err_size);
	if (ret != -ENOENT)
		return ret;
	config_search_add(&search, "the environment (%s, %s)", CONFIG_ENV_ID,
			  CONFIG_ENV_KEY);

	ret = config_home(home, sizeof(home));
	if (ret == -ENAMETOOLONG) {
		config_error(err, err_size,
			     "home directory is longer than %d bytes",
			     PATH_MAX - 1);
		return ret;
	}
	have_home = ret == 0;
	ret = config_from_ini(have_home ? home : NULL, profile, &search, out,
			      err, err_size);
	if (ret != -ENOENT)
		return ret;

	if (have_home) {
		ret = config_from_tccli(home, profile, &search, out, err,
					err_size);
		if (ret != -ENOENT)
			return ret;
	} else {
		config_search_add(&search,
				  " (HOME is unset and the user has no home "
				  "directory, so no user files)");
	}

	config_error(err, err_size,
		     "no credentials found for profile %s: searched %s",
		     profile, search.text);
	return -ENOENT;
}

int config_load_credentials(const char *profile, struct config_credentials *out,
			    char *err, size_t err_size)
{
	int ret;

	if (err && err_size > 0)
		err[0] = '\0';
	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!profile)
		profile = "default";

	if (!config_profile_valid(profile)) {
		/* The quote is bounded because an invalid name may be long. */
		config_error(err, err_size,
			     "invalid profile name \"%.80s\": expected 1 to %d "
			     "letters, digits, '_', '.' or '-'",
			     profile, CONFIG_PROFILE_MAX);
		return -EINVAL;
	}

	ret = config_search_sources(profile, out, err, err_size);
	if (ret == -ENOMEM && err && err_size > 0 && err[0] == '\0')
		config_error(err, err_size,
			     "out of memory while loading credentials for "
			     "profile %s",
			     profile);
	return ret;
}

int config_parse_size(const char *text, uint64_t *bytes)
{
	uint64_t value = 0;
	unsigned shift = 0;
	const char *p = text;

	if (!text || !bytes || !(*p >= '0' && *p <= '9'))
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (value > (UINT64_MAX - digit) / 10)
			return -EINVAL;
		value = value * 10 + digit;
	}

	switch (*p) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	}
	if (shift)
		p++;
	if (*p != '\0' && strcasecmp(p, "b") != 0 &&
	    !(shift && strcasecmp(p, "ib") == 0))
		return -EINVAL;
	if (value > (UINT64_MAX >> shift))
		return -EINVAL;

	*bytes = value << shift;
	return 0;
}

int config_parse_seconds(const char *text, unsigned *seconds)
{
	unsigned value = 0;
	const char *p = text;

	if (!text || !seconds || *p == '\0')
		return -EINVAL;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		value = value * 10 + (unsigned)(*p - '0');
		if (value > CONFIG_SECONDS_MAX)
			return -EINVAL;
	}
	*seconds = value;
	return 0;
}
