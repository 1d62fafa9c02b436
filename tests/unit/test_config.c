/* Unit tests of the credential chain and of option parsing. Each case runs
 * in a fresh directory with HOME and CSIPFS_SYSTEM_CREDENTIALS pointing
 * into it, so the real credentials of the machine are never read. */
#include "config.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET_ID  "AKIDtestidtestidtestidtestidtest"
#define SECRET_KEY "testkeytestkeytestkeytestkeytest"

static char root_dir[4096];
static char home_dir[4200];
static char user_ini[4300];
static char system_ini[4300];
static char tccli_dir[4300];

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *file = fopen(path, "w");

	CHECK(file != NULL);
	if (!file)
		return;
	fputs(text, file);
	fclose(file);
	chmod(path, mode);
}

static void tccli_path(const char *profile, char *path, size_t size)
{
	snprintf(path, size, "%s/%s.credential", tccli_dir, profile);
}

static void write_tccli(const char *profile, const char *text)
{
	char path[4400];

	tccli_path(profile, path, sizeof(path));
	write_file(path, text, 0600);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Creates an empty HOME (with .tencentcloud and .tccli) and an empty
 * directory for the system file, and clears the credential variables. */
static void fixture_setup(const char *base)
{
	char dir[4400];

	snprintf(root_dir, sizeof(root_dir), "%s/config-XXXXXX", base);
	if (!mkdtemp(root_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	chmod(root_dir, 0755);
	snprintf(home_dir, sizeof(home_dir), "%s/home", root_dir);
	mkdir(home_dir, 0755);
	snprintf(dir, sizeof(dir), "%s/.tencentcloud", home_dir);
	mkdir(dir, 0755);
	snprintf(tccli_dir, sizeof(tccli_dir), "%s/.tccli", home_dir);
	mkdir(tccli_dir, 0755);
	snprintf(dir, sizeof(dir), "%s/etc", root_dir);
	mkdir(dir, 0755);
	snprintf(user_ini, sizeof(user_ini), "%s/.tencentcloud/credentials",
		 home_dir);
	snprintf(system_ini, sizeof(system_ini), "%s/etc/credentials",
		 root_dir);

	setenv("HOME", home_dir, 1);
	setenv("CSIPFS_SYSTEM_CREDENTIALS", system_ini, 1);
	unsetenv("TENCENTCLOUD_SECRET_ID");
	unsetenv("TENCENTCLOUD_SECRET_KEY");
	unsetenv("TENCENTCLOUD_SESSION_TOKEN");
	unsetenv("TENCENTCLOUD_TOKEN");
}

static void fixture_teardown(void)
{
	nftw(root_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Loads credentials with stderr redirected to a file, and copies what was
 * written to stderr into log (the log module writes there). */
static int load_capturing_log(const char *profile,
			      struct config_credentials *creds, char *err,
			      size_t err_size, char *log, size_t log_size)
{
	char path[4400];
	int saved;
	int fd;
	int ret;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stderr.txt", root_dir);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	dup2(fd, STDERR_FILENO);

	ret = config_load_credentials(profile, creds, err, err_size);

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, log, log_size - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return ret;
}

static void test_environment_source(const char *base)
{
	struct config_credentials creds;
	char err[1024];

	fixture_setup(base);
	setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID, 1);
	setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY, 1);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, SECRET_ID);
	CHECK_STR_EQ(creds.secret_key, SECRET_KEY);
	CHECK(creds.token == NULL);
	CHECK_STR_EQ(creds.source, "environment");
	config_credentials_clear(&creds);
	CHECK(creds.secret_id == NULL);
	CHECK(creds.secret_key == NULL);

	setenv("TENCENTCLOUD_TOKEN", "legacy-token", 1);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.token, "legacy-token");
	config_credentials_clear(&creds);

	setenv("TENCENTCLOUD_SESSION_TOKEN", "session-token", 1);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.token, "session-token");
	config_credentials_clear(&creds);

	/* An empty variable counts as unset. */
	setenv("TENCENTCLOUD_SESSION_TOKEN", "", 1);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.token, "legacy-token");
	config_credentials_clear(&creds);
	fixture_teardown();
}

static void test_environment_half_set(const char *base)
{
	struct config_credentials creds;
	char err[1024];

	fixture_setup(base);
	setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID, 1);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, "TENCENTCLOUD_SECRET_KEY is missing") != NULL);
	CHECK(strstr(err, SECRET_ID) == NULL);
	CHECK(creds.secret_id == NULL);

	unsetenv("TENCENTCLOUD_SECRET_ID");
	setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY, 1);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, "TENCENTCLOUD_SECRET_ID is missing") != NULL);
	CHECK(strstr(err, SECRET_KEY) == NULL);

	/* An empty key is missing too, even with a complete INI file. */
	setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID, 1);
	setenv("TENCENTCLOUD_SECRET_KEY", "", 1);
	write_file(user_ini, "[default]\nsecret_id=a\nsecret_key=b\n", 0600);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, "TENCENTCLOUD_SECRET_KEY is missing") != NULL);
	fixture_teardown();
}

static void test_ini_syntax(const char *base)
{
	struct config_credentials creds;
	char err[1024];

	fixture_setup(base);
	write_file(user_ini,
		   "; comment\r\n"
		   "# another comment\r\n"
		   "\r\n"
		   "[other]\r\n"
		   "secret_id = other-id\r\n"
		   "secret_key = other-key\r\n"
		   "  [ default ]  \r\n"
		   "  secret_id   =   \"" SECRET_ID "\"  \r\n"
		   "\tSECRET_KEY='" SECRET_KEY "'\r\n"
		   "region = ap-guangzhou\r\n"
		   "token = tok=en\r\n"
		   "[third]\r\n"
		   "secret_id = x",
		   0600);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, SECRET_ID);
	CHECK_STR_EQ(creds.secret_key, SECRET_KEY);
	CHECK_STR_EQ(creds.token, "tok=en");
	CHECK_STR_EQ(creds.source, user_ini);
	config_credentials_clear(&creds);

	CHECK_INT_EQ(config_load_credentials("other", &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "other-id");
	CHECK_STR_EQ(creds.secret_key, "other-key");
	CHECK(creds.token == NULL);
	config_credentials_clear(&creds);

	/* The last line has no newline, and its section lacks secret_key. */
	CHECK_INT_EQ(config_load_credentials("third", &creds, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, user_ini) != NULL);
	CHECK(strstr(err, "[third] has no secret_key") != NULL);
	fixture_teardown();
}

static void test_ini_system_file(const char *base)
{
	struct config_credentials creds;
	char err[1024];

	fixture_setup(base);
	write_file(system_ini,
		   "[default]\nsecret_id=sys-id\nsecret_key=sys-key\n", 0600);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "sys-id");
	CHECK_STR_EQ(creds.source, system_ini);
	config_credentials_clear(&creds);

	/* The user file exists, so the system file is not read at all: the
	 * missing section sends the search on to tccli. */
	write_file(user_ini, "[other]\nsecret_id=a\nsecret_key=b\n", 0600);
	write_tccli("default", "{\"secretId\": \"tccli-id\", "
			       "\"secretKey\": \"tccli-key\"}");
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "tccli-id");
	config_credentials_clear(&creds);
	fixture_teardown();
}

static void test_tccli_source(const char *base)
{
	struct config_credentials creds;
	char err[1024];
	char path[4400];

	fixture_setup(base);
	write_tccli("prod", "{\"secretId\": \"" SECRET_ID "\", "
			    "\"secretKey\": \"" SECRET_KEY "\", "
			    "\"token\": \"tccli-token\", \"type\": \"\"}");
	CHECK_INT_EQ(config_load_credentials("prod", &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, SECRET_ID);
	CHECK_STR_EQ(creds.secret_key, SECRET_KEY);
	CHECK_STR_EQ(creds.token, "tccli-token");
	tccli_path("prod", path, sizeof(path));
	CHECK_STR_EQ(creds.source, path);
	config_credentials_clear(&creds);

	write_tccli("empty-token", "{\"secretId\": \"a\", \"secretKey\": \"b\","
				   " \"token\": \"\"}");
	CHECK_INT_EQ(
	    config_load_credentials("empty-token", &creds, err, sizeof(err)),
	    0);
	CHECK(creds.token == NULL);
	config_credentials_clear(&creds);

	write_tccli("null-token", "{\"secretId\": \"a\", \"secretKey\": \"b\","
				  " \"token\": null}");
	CHECK_INT_EQ(
	    config_load_credentials("null-token", &creds, err, sizeof(err)), 0);
	CHECK(creds.token == NULL);
	config_credentials_clear(&creds);
	fixture_teardown();
}

static void test_source_precedence(const char *base)
{
	struct config_credentials creds;
	char err[1024];

	fixture_setup(base);
	write_tccli("default", "{\"secretId\": \"tccli-id\", "
			       "\"secretKey\": \"tccli-key\"}");
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "tccli-id");
	config_credentials_clear(&creds);

	write_file(user_ini,
		   "[default]\nsecret_id=ini-id\nsecret_key=ini-key\n", 0600);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "ini-id");
	CHECK_STR_EQ(creds.secret_key, "ini-key");
	config_credentials_clear(&creds);

	setenv("TENCENTCLOUD_SECRET_ID", "env-id", 1);
	setenv("TENCENTCLOUD_SECRET_KEY", "env-key", 1);
	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "env-id");
	CHECK_STR_EQ(creds.secret_key, "env-key");
	config_credentials_clear(&creds);

	/* The environment applies to every profile. */
	CHECK_INT_EQ(config_load_credentials("other", &creds, err, sizeof(err)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "env-id");
	config_credentials_clear(&creds);
	fixture_teardown();
}

static void test_profile_selection(const char *base)
{
	static const char *const invalid[] = {
	    "",
	    "../etc",
	    "a/b",
	    "a b",
	    "prod\n",
	    /* 65 characters, one more than the maximum. */
	    ("0123456789012345678901234567890123456789012345678901234567890"
	     "1234"),
	};
	struct config_credentials creds;
	char err[1024];

	fixture_setup(base);
	write_file(user_ini,
		   "[default]\nsecret_id=d-id\nsecret_key=d-key\n"
		   "[prod-1.x_Y]\nsecret_id=p-id\nsecret_key=p-key\n",
		   0600);
	CHECK_INT_EQ(
	    config_load_credentials("default", &creds, err, sizeof(err)), 0);
	CHECK_STR_EQ(creds.secret_id, "d-id");
	config_credentials_clear(&creds);

	CHECK_INT_EQ(
	    config_load_credentials("prod-1.x_Y", &creds, err, sizeof(err)), 0);
	CHECK_STR_EQ(creds.secret_id, "p-id");
	config_credentials_clear(&creds);

	/* Section names are case-sensitive. */
	CHECK_INT_EQ(
	    config_load_credentials("PROD-1.X_Y", &creds, err, sizeof(err)),
	    -ENOENT);

	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		CHECK_INT_EQ(config_load_credentials(invalid[i], &creds, err,
						     sizeof(err)),
			     -EINVAL);
		CHECK(strstr(err, "invalid profile name") != NULL);
	}
	/* 64 characters are allowed. */
	CHECK_INT_EQ(config_load_credentials("0123456789012345678901234567890"
					     "123456789012345678901234567890"
					     "123",
					     &creds, err, sizeof(err)),
		     -ENOENT);
	CHECK_INT_EQ(config_load_credentials("d", NULL, err, sizeof(err)),
		     -EINVAL);
	fixture_teardown();
}

static void test_not_found_message(const char *base)
{
	struct config_credentials creds;
	char expected[16384];
	char err[16384];
	char tccli[4400];

	fixture_setup(base);
	tccli_path("prod", tccli, sizeof(tccli));
	snprintf(expected, sizeof(expected),
		 "no credentials found for profile prod: searched the "
		 "environment (TENCENTCLOUD_SECRET_ID, "
		 "TENCENTCLOUD_SECRET_KEY), %s, %s, %s",
		 user_ini, system_ini, tccli);
	CHECK_INT_EQ(config_load_credentials("prod", &creds, err, sizeof(err)),
		     -ENOENT);
	CHECK_STR_EQ(err, expected);
	CHECK(creds.secret_id == NULL);

	/* A user file without the section: the system file is not read. */
	write_file(user_ini, "[default]\nsecret_id=a\nsecret_key=b\n", 0600);
	snprintf(expected, sizeof(expected),
		 "no credentials found for profile prod: searched the "
		 "environment (TENCENTCLOUD_SECRET_ID, "
		 "TENCENTCLOUD_SECRET_KEY), %s (no section [prod]), %s",
		 user_ini, tccli);
	CHECK_INT_EQ(config_load_credentials("prod", &creds, err, sizeof(err)),
		     -ENOENT);
	CHECK_STR_EQ(err, expected);

	/* A NULL or empty err buffer is allowed. */
	CHECK_INT_EQ(config_load_credentials("prod", &creds, NULL, 0), -ENOENT);
	fixture_teardown();
}

static void test_permission_warning(const char *base)
{
	struct config_credentials creds;
	char err[1024];
	char log[4096];
	char expected[16384];

	fixture_setup(base);
	write_file(user_ini, "[default]\nsecret_id=a\nsecret_key=b\n", 0644);
	CHECK_INT_EQ(load_capturing_log(NULL, &creds, err, sizeof(err), log,
					sizeof(log)),
		     0);
	CHECK_STR_EQ(creds.secret_id, "a");
	config_credentials_clear(&creds);
	snprintf(expected, sizeof(expected),
		 "csipfs: warning: credentials file %s is readable by group "
		 "or others; run chmod 600 %s\n",
		 user_ini, user_ini);
	CHECK_STR_EQ(log, expected);

	chmod(user_ini, 0600);
	CHECK_INT_EQ(load_capturing_log(NULL, &creds, err, sizeof(err), log,
					sizeof(log)),
		     0);
	CHECK_STR_EQ(log, "");
	config_credentials_clear(&creds);

	unlink(user_ini);
	write_tccli("default", "{\"secretId\": \"a\", \"secretKey\": \"b\"}");
	tccli_path("default", expected, sizeof(expected));
	chmod(expected, 0640);
	CHECK_INT_EQ(load_capturing_log(NULL, &creds, err, sizeof(err), log,
					sizeof(log)),
		     0);
	CHECK(strstr(log, "readable by group or others") != NULL);
	CHECK(strstr(log, expected) != NULL);
	config_credentials_clear(&creds);
	fixture_teardown();
}

/* Expects -EINVAL with err naming the file and containing needle, and never
 * quoting the secret. */
static void check_malformed(const char *path, const char *needle)
{
	struct config_credentials creds;
	char err[16384];

	CHECK_INT_EQ(config_load_credentials(NULL, &creds, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, path) != NULL);
	CHECK(strstr(err, needle) != NULL);
	CHECK(strstr(err, SECRET_KEY) == NULL);
	CHECK(creds.secret_id == NULL);
	if (!strstr(err, needle))
		fprintf(stderr, "  message: %s\n", err);
}

static void test_malformed_ini(const char *base)
{
	char big[70 * 1024];

	fixture_setup(base);
	write_file(user_ini, "[default]\nsecret_id " SECRET_KEY "\n", 0600);
	check_malformed(user_ini, "line 2: invalid line");

	write_file(user_ini, "[default\nsecret_id=" SECRET_KEY "\n", 0600);
	check_malformed(user_ini, "line 1: invalid section header");

	write_file(user_ini, "=" SECRET_KEY "\n", 0600);
	check_malformed(user_ini, "line 1: invalid line");

	write_file(user_ini, "[default]\nsecret_key=" SECRET_KEY "\n", 0600);
	check_malformed(user_ini, "[default] has no secret_id");

	write_file(user_ini, "[default]\nsecret_id=a\nsecret_key=\n", 0600);
	check_malformed(user_ini, "[default] has no secret_key");

	memset(big, ';', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_file(user_ini, big, 0600);
	check_malformed(user_ini, "larger than 64 KiB");

	unlink(user_ini);
	mkdir(user_ini, 0700);
	check_malformed(user_ini, "not a regular file");
	rmdir(user_ini);

	{
		int fd = open(user_ini, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		static const char text[] = "[default]\nsecret_id=a\0b\n";

		CHECK(write(fd, text, sizeof(text) - 1) ==
		      (ssize_t)sizeof(text) - 1);
		close(fd);
		check_malformed(user_ini, "NUL byte");
	}
	fixture_teardown();
}

static void test_malformed_tccli(const char *base)
{
	char path[4400];

	fixture_setup(base);
	tccli_path("default", path, sizeof(path));

	write_tccli("default",
		    "{\"secretId\": \"a\", \"secretKey\": \"" SECRET_KEY);
	check_malformed(path, "invalid JSON at line 1");

	write_tccli("default", "[\"" SECRET_KEY "\"]");
	check_malformed(path, "expected a JSON object");

	write_tccli("default", "{\"secretId\": \"a\"}");
	check_malformed(path, "secretKey is missing");

	write_tccli("default", "{\"secretKey\": \"" SECRET_KEY "\"}");
	check_malformed(path, "secretId is missing");

	write_tccli("default",
		    "{\"secretId\": 7, \"secretKey\": \"" SECRET_KEY "\"}");
	check_malformed(path, "secretId is not a string");

	write_tccli("default",
		    "{\"secretId\": \"a\", \"secretKey\": \"" SECRET_KEY
		    "\", \"token\": 1}");
	check_malformed(path, "token is not a string");

	write_tccli("default", "{\"secretId\": \"a\", \"secretId\": \"b\", "
			       "\"secretKey\": \"" SECRET_KEY "\"}");
	check_malformed(path, "invalid JSON");
	fixture_teardown();
}

/* Runs config_load_credentials() in a child process as an unprivileged
 * user when the test runs as root, because root reads any file. */
static void test_unreadable_file(void)
{
	char err[1024] = "";
	int channel[2];
	int status = 0;
	int ret = 0;
	pid_t pid;

	/* /tmp is used because the unprivileged user must be able to reach
	 * the file through every parent directory. */
	fixture_setup("/tmp");
	write_file(user_ini, "[default]\nsecret_id=a\nsecret_key=b\n", 0000);
	CHECK(pipe(channel) == 0);

	pid = fork();
	if (pid == 0) {
		struct config_credentials creds;
		int child_ret;

		close(channel[0]);
		if (geteuid() == 0 &&
		    (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(2);
		child_ret =
		    config_load_credentials(NULL, &creds, err, sizeof(err));
		if (write(channel[1], &child_ret, sizeof(child_ret)) < 0 ||
		    write(channel[1], err, sizeof(err)) < 0)
			_exit(3);
		_exit(0);
	}
	close(channel[1]);
	CHECK(read(channel[0], &ret, sizeof(ret)) == sizeof(ret));
	CHECK(read(channel[0], err, sizeof(err)) == sizeof(err));
	close(channel[0]);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	CHECK_INT_EQ(ret, -EACCES);
	CHECK(strstr(err, "cannot read credentials file") != NULL);
	CHECK(strstr(err, user_ini) != NULL);
	fixture_teardown();
}

static void test_parse_size_table(void)
{
	static const struct {
		const char *text;
		int ret;
		uint64_t bytes;
	} cases[] = {
	    {"0", 0, 0},
	    {"512", 0, 512},
	    {"512B", 0, 512},
	    {"64K", 0, 65536},
	    {"64k", 0, 65536},
	    {"10M", 0, 10485760},
	    {"10m", 0, 10485760},
	    {"4G", 0, 4294967296},
	    {"4g", 0, 4294967296},
	    {"4GB", 0, 4294967296},
	    {"4gb", 0, 4294967296},
	    {"4GiB", 0, 4294967296},
	    {"4gib", 0, 4294967296},
	    {"1T", 0, 1099511627776},
	    {"1TiB", 0, 1099511627776},
	    {"007", 0, 7},
	    {"18446744073709551615", 0, UINT64_MAX},
	    {"16777215T", 0, UINT64_C(16777215) << 40},
	    {"18446744073709551616", -EINVAL, 0},
	    {"16777216T", -EINVAL, 0},
	    {"17179869184G", -EINVAL, 0},
	    {"", -EINVAL, 0},
	    {"-1", -EINVAL, 0},
	    {"+1", -EINVAL, 0},
	    {" 4", -EINVAL, 0},
	    {"4 ", -EINVAL, 0},
	    {"4X", -EINVAL, 0},
	    {"4iB", -EINVAL, 0},
	    {"4KK", -EINVAL, 0},
	    {"4KBB", -EINVAL, 0},
	    {"1.5G", -EINVAL, 0},
	    {"G", -EINVAL, 0},
	    {"0x10", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t bytes = 12345;
		int ret = config_parse_size(cases[i].text, &bytes);

		CHECK_INT_EQ(ret, cases[i].ret);
		if (ret != cases[i].ret)
			fprintf(stderr, "  text: \"%s\"\n", cases[i].text);
		if (cases[i].ret == 0)
			CHECK(bytes == cases[i].bytes);
		else
			CHECK(bytes == 12345);
	}
	CHECK_INT_EQ(config_parse_size(NULL, &(uint64_t){0}), -EINVAL);
	CHECK_INT_EQ(config_parse_size("1", NULL), -EINVAL);
}

static void test_parse_seconds_table(void)
{
	static const struct {
		const char *text;
		int ret;
		unsigned seconds;
	} cases[] = {
	    {"0", 0, 0},
	    {"60", 0, 60},
	    {"3600", 0, 3600},
	    {"0086400", 0, 86400},
	    {"315360000", 0, 315360000},
	    {"315360001", -EINVAL, 0},
	    {"4294967296", -EINVAL, 0},
	    {"99999999999999999999", -EINVAL, 0},
	    {"", -EINVAL, 0},
	    {"-1", -EINVAL, 0},
	    {"+1", -EINVAL, 0},
	    {" 1", -EINVAL, 0},
	    {"1 ", -EINVAL, 0},
	    {"1s", -EINVAL, 0},
	    {"1.5", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned seconds = 777;
		int ret = config_parse_seconds(cases[i].text, &seconds);

		CHECK_INT_EQ(ret, cases[i].ret);
		if (ret != cases[i].ret)
			fprintf(stderr, "  text: \"%s\"\n", cases[i].text);
		CHECK_INT_EQ(seconds,
			     cases[i].ret == 0 ? cases[i].seconds : 777);
	}
	CHECK_INT_EQ(config_parse_seconds(NULL, &(unsigned){0}), -EINVAL);
	CHECK_INT_EQ(config_parse_seconds("1", NULL), -EINVAL);
}

static void test_clear_zeroed(void)
{
	struct config_credentials creds = {0};

	config_credentials_clear(&creds);
	CHECK(creds.secret_id == NULL);
	config_credentials_clear(NULL);
}

int main(void)
{
	const char *base = getenv("CSIPFS_TEST_TMPDIR");

	if (!base || !*base)
		base = "/tmp";

	test_environment_source(base);
	test_environment_half_set(base);
	test_ini_syntax(base);
	test_ini_system_file(base);
	test_tccli_source(base);
	test_source_precedence(base);
	test_profile_selection(base);
	test_not_found_message(base);
	test_permission_warning(base);
	test_malformed_ini(base);
	test_malformed_tccli(base);
	test_unreadable_file();
	test_parse_size_table();
	test_parse_seconds_table();
	test_clear_zeroed();
	return check_finish();
}
