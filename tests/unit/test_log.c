/* Unit tests of the log module: levels, line format, control characters,
 * the rate limit and URL redaction. Lines are captured by pointing stderr
 * at a temporary file. The syslog sink is not tested. */
#include "log.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char capture_path[4096];
static int capture_fd = -1;
static int saved_stderr = -1;

static void capture_start(void)
{
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	capture_fd = open(capture_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	dup2(capture_fd, STDERR_FILENO);
}

/* Restores stderr and copies what was written into text. */
static void capture_stop(char *text, size_t size)
{
	ssize_t n;

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	n = pread(capture_fd, text, size - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	close(capture_fd);
	unlink(capture_path);
}

/* Sleeps until CLOCK_MONOTONIC enters a new second, so that a test starts
 * with a fresh rate-limit window. */
static void wait_for_next_second(void)
{
	struct timespec now;
	struct timespec delay;

	clock_gettime(CLOCK_MONOTONIC, &now);
	delay.tv_sec = 0;
	delay.tv_nsec = 1000000000L - now.tv_nsec + 1000000L;
	if (delay.tv_nsec >= 1000000000L) {
		delay.tv_sec = 1;
		delay.tv_nsec -= 1000000000L;
	}
	nanosleep(&delay, NULL);
}

static size_t count_lines(const char *text)
{
	size_t lines = 0;

	for (; *text; text++)
		lines += *text == '\n';
	return lines;
}

static void test_parse_level(void)
{
	enum log_level level = LOG_LEVEL_ERROR;

	CHECK_INT_EQ(log_parse_level("error", &level), 0);
	CHECK_INT_EQ(level, LOG_LEVEL_ERROR);
	CHECK_INT_EQ(log_parse_level("warning", &level), 0);
	CHECK_INT_EQ(level, LOG_LEVEL_WARNING);
	CHECK_INT_EQ(log_parse_level("info", &level), 0);
	CHECK_INT_EQ(level, LOG_LEVEL_INFO);
	CHECK_INT_EQ(log_parse_level("debug", &level), 0);
	CHECK_INT_EQ(level, LOG_LEVEL_DEBUG);

	CHECK_INT_EQ(log_parse_level("warn", &level), -EINVAL);
	CHECK_INT_EQ(log_parse_level("", &level), -EINVAL);
	CHECK_INT_EQ(log_parse_level("debug ", &level), -EINVAL);
	CHECK_INT_EQ(log_parse_level(NULL, &level), -EINVAL);
	CHECK_INT_EQ(log_parse_level("info", NULL), -EINVAL);
	CHECK_INT_EQ(level, LOG_LEVEL_DEBUG);
}

static void test_threshold(void)
{
	char text[4096];

	log_set_level(LOG_LEVEL_WARNING);
	CHECK(log_enabled(LOG_LEVEL_ERROR));
	CHECK(log_enabled(LOG_LEVEL_WARNING));
	CHECK(!log_enabled(LOG_LEVEL_INFO));
	CHECK(!log_enabled(LOG_LEVEL_DEBUG));

	wait_for_next_second();
	capture_start();
	log_debug("hidden debug");
	log_info("hidden info");
	log_warning("shown warning");
	log_error("shown error %d", 7);
	capture_stop(text, sizeof(text));
	CHECK_STR_EQ(text, "csipfs: warning: shown warning\n"
			   "csipfs: error: shown error 7\n");

	log_set_level(LOG_LEVEL_DEBUG);
	CHECK(log_enabled(LOG_LEVEL_DEBUG));
	capture_start();
	log_debug("shown debug");
	log_info("shown info");
	capture_stop(text, sizeof(text));
	CHECK_STR_EQ(text, "csipfs: debug: shown debug\n"
			   "csipfs: info: shown info\n");
	log_set_level(LOG_LEVEL_INFO);
}

static void test_control_characters(void)
{
	char text[4096];

	wait_for_next_second();
	capture_start();
	log_warning("name %s", "a\nb\rc\x1b[31m\x7f"
			       "d\t\xc3\xa9");
	capture_stop(text, sizeof(text));
	CHECK_STR_EQ(text, "csipfs: warning: name a?b?c?[31m?d?\xc3\xa9\n");
}

static void test_long_message(void)
{
	char *long_text = malloc(5001);
	char text[8192];

	memset(long_text, 'x', 5000);
	long_text[5000] = '\0';
	wait_for_next_second();
	capture_start();
	log_info("%s", long_text);
	capture_stop(text, sizeof(text));
	CHECK_INT_EQ(count_lines(text), 1);
	CHECK(strncmp(text, "csipfs: info: xxx", 17) == 0);
	CHECK(text[strlen(text) - 1] == '\n');
	CHECK(strlen(text) < 5000);
	free(long_text);
}

static void test_errno_preserved(void)
{
	char text[4096];

	wait_for_next_second();
	capture_start();
	errno = EPIPE;
	log_info("errno survives");
	CHECK_INT_EQ(errno, EPIPE);
	capture_stop(text, sizeof(text));
}

static void test_rate_limit(void)
{
	char text[16384];
	char expected[256];

	wait_for_next_second();
	capture_start();
	for (int i = 0; i < 60; i++)
		log_info("line %d", i);
	capture_stop(text, sizeof(text));
	CHECK_INT_EQ(count_lines(text), 50);
	CHECK(strstr(text, "csipfs: info: line 49\n") != NULL);
	CHECK(strstr(text, "line 50") == NULL);

	wait_for_next_second();
	capture_start();
	log_info("after the pause");
	log_info("second line");
	capture_stop(text, sizeof(text));
	snprintf(expected, sizeof(expected),
		 "csipfs: warning: 10 log lines dropped (more than 50 per "
		 "second)\n"
		 "csipfs: info: after the pause\n"
		 "csipfs: info: second line\n");
	CHECK_STR_EQ(text, expected);
}

static void *log_from_thread(void *arg)
{
	int thread = *(int *)arg;

	for (int i = 0; i < 10; i++)
		log_info("thread %d line %d with some text to widen the line",
			 thread, i);
	return NULL;
}

static void test_threads_whole_lines(void)
{
	static char text[65536];
	pthread_t threads[4];
	int numbers[4];
	size_t bad = 0;

	wait_for_next_second();
	capture_start();
	for (int i = 0; i < 4; i++) {
		numbers[i] = i;
		pthread_create(&threads[i], NULL, log_from_thread, &numbers[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	capture_stop(text, sizeof(text));

	CHECK_INT_EQ(count_lines(text), 40);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		int thread, number;
		char rest[64];

		if (sscanf(line, "csipfs: info: thread %d line %d %63[^\n]",
			   &thread, &number, rest) != 3 ||
		    strcmp(rest, "with some text to widen the line") != 0)
			bad++;
	}
	CHECK_INT_EQ(bad, 0);
}

static void test_redact_url(void)
{
	static const struct {
		const char *url;
		const char *expected;
	} cases[] = {
	    {"https://user:pw@host:1/a/b.pdf?md5=x&expires=1#f",
	     "https://host:1/a/b.pdf?..."},
	    {"https://host/a/b.pdf", "https://host/a/b.pdf"},
	    {"https://user:pw@host/a", "https://host/a"},
	    {"https://host/a#frag", "https://host/a?..."},
	    {"https://host?sign=1", "https://host?..."},
	    {"https://host", "https://host"},
	    {"https://a@b@host/x?q", "https://host/x?..."},
	    {"https://host/p@th?q", "https://host/p@th?..."},
	    {"user:pw@host/a?q", "host/a?..."},
	    {"/a/b?sign=secret", "/a/b?..."},
	    {"/next?u=http://user:pw@h/", "/next?..."},
	    {"HTTP+X.1://u@h/?", "HTTP+X.1://h/?..."},
	    {"", ""},
	};
	char out[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK(log_redact_url(cases[i].url, out, sizeof(out)) == out);
		CHECK_STR_EQ(out, cases[i].expected);
	}

	CHECK(log_redact_url(NULL, out, sizeof(out)) == out);
	CHECK_STR_EQ(out, "");

	/* Cut to the buffer, never past it, and never into the query. */
	memset(out, 'z', sizeof(out));
	log_redact_url("https://user:pw@host/abc?secret", out, 12);
	CHECK_STR_EQ(out, "https://hos");
	CHECK(out[12] == 'z');
	log_redact_url("https://host/abc?secret", out, 20);
	CHECK_STR_EQ(out, "https://host/abc?..");
	log_redact_url("https://host/abc?secret", out, 1);
	CHECK_STR_EQ(out, "");
	CHECK(log_redact_url("https://host/", NULL, 0) == NULL);
}

int main(void)
{
	const char *base = getenv("CSIPFS_TEST_TMPDIR");

	if (!base || !*base)
		base = "/tmp";
	snprintf(capture_path, sizeof(capture_path), "%s/test_log.%ld.txt",
		 base, (long)getpid());

	test_parse_level();
	test_threshold();
	test_control_characters();
	test_long_message();
	test_errno_preserved();
	test_rate_limit();
	test_threads_whole_lines();
	test_redact_url();
	return check_finish();
}
