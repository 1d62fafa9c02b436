/* csipfs: mounts Tencent Cloud CSIP scan reports as a read-only tree.
 * This file owns the command line, the start-up checks and the mount. */
#include <curl/curl.h>
#include <errno.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cache.h"
#include "catalog.h"
#include "config.h"
#include "fetch.h"
#include "log.h"
#include "ops.h"
#include "reader.h"

#define DEFAULT_CACHE_SIZE "4G"
#define DEFAULT_DIR_TTL	   300
#define DEFAULT_URL_TTL	   60
#define DEFAULT_TIMEOUT	   30
/* How often the shutdown watcher checks whether the FUSE loop is ending. */
#define WATCH_INTERVAL_MS 50
/* The kernel's read-ahead for the mount, in KiB, where it may be raised.
 * The kernel sends a file's read-ahead as several reads in parallel, while
 * its default of 128 KiB keeps about one small read in flight. */
#define MOUNT_READAHEAD_KB 8192
/* Attempts to make the kernel keep that value, one per watcher interval. */
#define READAHEAD_TRIES 10
/* FUSE worker threads at most. Each read in progress uses a reply buffer
 * of up to 1 MiB and often a fetched block of 1 MiB, so threads cost
 * memory. With the 8 MiB read-ahead, a single cat peaked at 120 MiB with 32
 * threads and at 40 MiB with 10 (libfuse's default), and read faster on the
 * benchmark's 2 cores (docs/benchmarks.md). */
#define MAX_LOOP_THREADS 10
/* Allocations from this size up get their own mapping. */
#define MALLOC_MMAP_BYTES (4 * 1024 * 1024)
/* Free memory each heap keeps instead of giving it back. */
#define MALLOC_KEEP_BYTES (16 * 1024 * 1024)

struct options {
	char *endpoint;
	char *region;
	char *profile;
	char *cafile;
	char *cache_dir;
	char *cache_size;
	char *dir_ttl;
	char *url_ttl;
	char *timeout;
	char *log_level;
	char *positional[2];
	int positional_count;
	int show_help;
	int show_version;
	int foreground;
	int debug;
	int single_thread;
	int bad_argument;
};

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FOREGROUND,
	KEY_DEBUG,
	KEY_SINGLE_THREAD,
	KEY_DISCARD,
};

#define OPTION(template, field)                                                \
	{                                                                      \
		template, offsetof(struct options, field), 0                   \
	}

static const struct fuse_opt option_spec[] = {
    OPTION("endpoint=%s", endpoint),
    OPTION("region=%s", region),
    OPTION("profile=%s", profile),
    OPTION("cafile=%s", cafile),
    OPTION("cache_dir=%s", cache_dir),
    OPTION("cache_size=%s", cache_size),
    OPTION("dir_ttl=%s", dir_ttl),
    OPTION("url_ttl=%s", url_ttl),
    OPTION("timeout=%s", timeout),
    OPTION("log_level=%s", log_level),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("-f", KEY_FOREGROUND),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("debug", KEY_DEBUG),
    FUSE_OPT_KEY("-s", KEY_SINGLE_THREAD),
    /* Options that only mount(8) and fstab use. */
    FUSE_OPT_KEY("defaults", KEY_DISCARD),
    FUSE_OPT_KEY("auto", KEY_DISCARD),
    FUSE_OPT_KEY("noauto", KEY_DISCARD),
    FUSE_OPT_KEY("user", KEY_DISCARD),
    FUSE_OPT_KEY("nouser", KEY_DISCARD),
    FUSE_OPT_KEY("users", KEY_DISCARD),
    FUSE_OPT_KEY("_netdev", KEY_DISCARD),
    FUSE_OPT_KEY("nofail", KEY_DISCARD),
    /* The mount is always read-only, and mount.fuse3 passes rw by
     * default, so both are dropped here and ro is added again. */
    FUSE_OPT_KEY("ro", KEY_DISCARD),
    FUSE_OPT_KEY("rw", KEY_DISCARD),
    FUSE_OPT_END,
};

static int handle_option(void *data, const char *arg, int key,
			 struct fuse_args *outargs)
{
	struct options *options = data;

	(void)outargs;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (options->positional_count == 2) {
			fprintf(stderr,
				"csipfs: error: unexpected argument %s; "
				"usage: csipfs [options] [PROFILE] "
				"MOUNTPOINT\n",
				arg);
			options->bad_argument = 1;
			return -1;
		}
		options->positional[options->positional_count++] = strdup(arg);
		return 0;
	case KEY_HELP:
		options->show_help = 1;
		return 0;
	case KEY_VERSION:
		options->show_version = 1;
		return 0;
	case KEY_FOREGROUND:
		options->foreground = 1;
		return 0;
	case KEY_DEBUG:
		options->debug = 1;
		options->foreground = 1;
		return 0;
	case KEY_SINGLE_THREAD:
		options->single_thread = 1;
		return 0;
	case KEY_DISCARD:
		return 0;
	default:
		return 1;
	}
}

static void print_help(void)
{
	printf("usage: csipfs [-f] [-d] [-o OPT[,OPT...]] [PROFILE] "
	       "MOUNTPOINT\n"
	       "\n"
	       "Mounts the Tencent Cloud Cloud Security Center (CSIP) scan "
	       "reports of an\n"
	       "account, read-only: MOUNTPOINT/ACCOUNT/TASK/REPORT.pdf\n"
	       "\n"
	       "options:\n"
	       "  -f                  stay in the foreground, log to stderr\n"
	       "  -d                  FUSE debug output (implies -f)\n"
	       "  -s                  single-threaded\n"
	       "  -h, --help          print this help\n"
	       "  -V, --version       print the versions of csipfs and its "
	       "libraries\n"
	       "  -o endpoint=URL     API base URL (default %s)\n"
	       "  -o region=NAME      sent as X-TC-Region (default "
	       "$TENCENTCLOUD_REGION, else none)\n"
	       "  -o profile=NAME     credentials profile, same as PROFILE "
	       "(default \"default\")\n"
	       "  -o cafile=FILE      CA bundle (PEM) for TLS verification "
	       "(default: the system store)\n"
	       "  -o cache_dir=DIR    cache location (default "
	       "$XDG_CACHE_HOME/csipfs, else\n"
	       "                      ~/.cache/csipfs; /var/cache/csipfs "
	       "for root)\n"
	       "  -o cache_size=SIZE  maximum bytes of cached report data, "
	       "suffixes K, M, G, T\n"
	       "                      (default %s; 0 keeps no report data "
	       "on disk)\n"
	       "  -o dir_ttl=SECONDS  how long a listing is trusted before "
	       "it is refreshed\n"
	       "                      (default %d)\n"
	       "  -o url_ttl=SECONDS  how long after resolution a download "
	       "URL may serve a\n"
	       "                      later open (default %d; 0 resolves on "
	       "every open)\n"
	       "  -o timeout=SECONDS  a download that receives no data for "
	       "this long, or an API\n"
	       "                      call that takes longer, is aborted and "
	       "retried (default %d)\n"
	       "  -o log_level=LEVEL  error, warning, info or debug (default "
	       "info)\n"
	       "  -o allow_other      let other users read the mount (needs "
	       "user_allow_other\n"
	       "                      in /etc/fuse.conf for non-root users); "
	       "the kernel checks\n"
	       "                      modes, since default_permissions is "
	       "always on\n"
	       "  -o uid=N,gid=N      owner of every file (default: the "
	       "mounting user)\n"
	       "  -o umask=M          octal; libfuse then sets every mode to "
	       "0777 minus M\n"
	       "                      (default: no umask, so files 0444 and "
	       "directories 0555)\n"
	       "\n"
	       "Credentials: TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY "
	       "and\n"
	       "TENCENTCLOUD_SESSION_TOKEN (or TENCENTCLOUD_TOKEN); else\n"
	       "~/.tencentcloud/credentials or\n"
	       "/etc/tencentcloud/credentials, section [PROFILE]; else\n"
	       "~/.tccli/PROFILE.credential. They are never accepted on the "
	       "command line.\n",
	       API_DEFAULT_ENDPOINT, DEFAULT_CACHE_SIZE, DEFAULT_DIR_TTL,
	       DEFAULT_URL_TTL, DEFAULT_TIMEOUT);
}

static void print_version(void)
{
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);

	printf("csipfs %s\n", CSIPFS_VERSION);
	printf("libfuse %s\n", fuse_pkgversion());
	printf("libcurl %s\n", curl->version);
	printf("jansson %s\n", jansson_version_str());
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
}

static void free_options(struct options *options)
{
	free(options->endpoint);
	free(options->region);
	free(options->profile);
	free(options->cafile);
	free(options->cache_dir);
	free(options->cache_size);
	free(options->dir_ttl);
	free(options->url_ttl);
	free(options->timeout);
	free(options->log_level);
	free(options->positional[0]);
	free(options->positional[1]);
}

/* Creates dir and its missing parents with mode 0700. */
static int make_directories(const char *dir)
{
	char path[PATH_MAX];
	size_t length = strlen(dir);

	if (length == 0 || length >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, length + 1);
	for (char *slash = path + 1; *slash; slash++) {
		if (*slash != '/')
			continue;
		*slash = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -errno;
		*slash = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Chooses the default cache directory. Returns a malloc'd path. */
static char *default_cache_dir(void)
{
	const char *base = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	struct passwd *pw;
	char *dir = NULL;

	if (geteuid() == 0 && !base)
		return strdup("/var/cache/csipfs");
	if (base && base[0] == '/') {
		if (asprintf(&dir, "%s/csipfs", base) < 0)
			return NULL;
		return dir;
	}
	if (!home || home[0] != '/') {
		pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home)
		return NULL;
	if (asprintf(&dir, "%s/.cache/csipfs", home) < 0)
		return NULL;
	return dir;
}

/* Chooses where the saved listings of this SecretId live:
 * cache_dir/owners/<SHA-256 of it>, so that a mount with other credentials
 * never shows them, even while the API is down and cannot check the
 * credentials. The endpoint is left out on purpose: the same SecretId names
 * the same account through any endpoint. The cache directory's mode 0700
 * is what keeps other users out. Creates the directory. Returns a malloc'd
 * path, or NULL after printing why. */
static char *listing_dir(const char *cache_dir, const char *secret_id)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_length = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	char *owner = NULL;
	char *dir = NULL;
	int rc;

	if (asprintf(&owner, "csipfs listing owner\n%s", secret_id) < 0)
		goto no_memory;
	rc = EVP_Digest(owner, strlen(owner), digest, &digest_length,
			EVP_sha256(), NULL);
	free(owner);
	if (!rc) {
		fprintf(stderr, "csipfs: error: SHA-256 failed in libcrypto\n");
		return NULL;
	}
	for (unsigned int i = 0; i < digest_length; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	if (asprintf(&dir, "%s/owners/%s", cache_dir, hex) < 0)
		goto no_memory;
	rc = make_directories(dir);
	if (rc < 0) {
		fprintf(stderr,
			"csipfs: error: cache_dir=%s: creating %s: %s\n",
			cache_dir, dir, strerror(-rc));
		free(dir);
		return NULL;
	}
	return dir;

no_memory:
	fprintf(stderr, "csipfs: error: out of memory\n");
	return NULL;
}

/* Checks that file can be read and holds at least one PEM certificate, so
 * that a wrong cafile= is named at start-up and not as a failed
 * verification later. Returns 0, or -1 after printing one line. */
static int check_cafile(const char *file)
{
	FILE *stream = fopen(file, "r");
	X509 *certificate;

	if (!stream) {
		fprintf(stderr, "csipfs: error: cafile=%s: %s\n", file,
			strerror(errno));
		return -1;
	}
	certificate = PEM_read_X509(stream, NULL, NULL, NULL);
	fclose(stream);
	ERR_clear_error();
	if (!certificate) {
		fprintf(stderr,
			"csipfs: error: cafile=%s: no PEM certificate found; "
			"expected a CA bundle such as "
			"/etc/ssl/certs/ca-certificates.crt\n",
			file);
		return -1;
	}
	X509_free(certificate);
	return 0;
}

/* Checks the option values; fills the parsed numbers. Returns 0, or -1
 * after printing one line naming the bad value. */
static int check_options(struct options *options, enum log_level *level,
			 uint64_t *cache_size, unsigned *dir_ttl,
			 unsigned *url_ttl, unsigned *timeout)
{
	*level = LOG_LEVEL_INFO;
	*dir_ttl = DEFAULT_DIR_TTL;
	*url_ttl = DEFAULT_URL_TTL;
	*timeout = DEFAULT_TIMEOUT;
	if (options->log_level &&
	    log_parse_level(options->log_level, level) < 0) {
		fprintf(stderr,
			"csipfs: error: invalid log_level=%s: expected "
			"error, warning, info or debug\n",
			options->log_level);
		return -1;
	}
	if (config_parse_size(options->cache_size ? options->cache_size
						  : DEFAULT_CACHE_SIZE,
			      cache_size) < 0) {
		fprintf(stderr,
			"csipfs: error: invalid cache_size=%s: expected a "
			"byte count such as 512M or 4G\n",
			options->cache_size);
		return -1;
	}
	if (options->dir_ttl &&
	    config_parse_seconds(options->dir_ttl, dir_ttl) < 0) {
		fprintf(stderr,
			"csipfs: error: invalid dir_ttl=%s: expected whole "
			"seconds\n",
			options->dir_ttl);
		return -1;
	}
	if (options->url_ttl &&
	    config_parse_seconds(options->url_ttl, url_ttl) < 0) {
		fprintf(stderr,
			"csipfs: error: invalid url_ttl=%s: expected whole "
			"seconds\n",
			options->url_ttl);
		return -1;
	}
	if (options->timeout &&
	    (config_parse_seconds(options->timeout, timeout) < 0 ||
	     *timeout == 0)) {
		fprintf(stderr,
			"csipfs: error: invalid timeout=%s: expected whole "
			"seconds, at least 1\n",
			options->timeout);
		return -1;
	}
	if (options->cafile && check_cafile(options->cafile) < 0)
		return -1;
	return 0;
}

/* Picks the profile and the mount point from the arguments. */
static int check_arguments(struct options *options, const char **profile,
			   char *mountpoint, size_t size)
{
	const char *target;
	struct stat st;

	if (options->positional_count == 0) {
		fprintf(stderr, "csipfs: error: missing mount point; usage: "
				"csipfs [options] [PROFILE] MOUNTPOINT\n");
		return -1;
	}
	target = options->positional[options->positional_count - 1];
	*profile = options->profile ? options->profile : "default";
	if (options->positional_count == 2) {
		if (options->profile &&
		    strcmp(options->profile, options->positional[0]) != 0) {
			fprintf(stderr,
				"csipfs: error: profile %s and profile=%s "
				"disagree; give one\n",
				options->positional[0], options->profile);
			return -1;
		}
		*profile = options->positional[0];
	}
	if (stat(target, &st) < 0) {
		fprintf(stderr, "csipfs: error: mount point %s: %s\n", target,
			strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"csipfs: error: mount point %s is not a directory\n",
			target);
		return -1;
	}
	if (!realpath(target, mountpoint) || strlen(mountpoint) >= size) {
		fprintf(stderr, "csipfs: error: mount point %s: %s\n", target,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Undoes the octal escapes (\040 and the like) of a /proc/self/mountinfo
 * field in place. */
static void unescape_mountinfo(char *field)
{
	char *out = field;

	for (char *in = field; *in; out++) {
		if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' &&
		    in[2] >= '0' && in[2] <= '7' && in[3] >= '0' &&
		    in[3] <= '7') {
			*out = (char)((in[1] - '0') << 6 | (in[2] - '0') << 3 |
				      (in[3] - '0'));
			in += 4;
		} else {
			*out = *in++;
		}
	}
	*out = '\0';
}

/* Everything the mount owns, released in reverse order by teardown(). */
struct mount_state {
	struct config_credentials credentials;
	struct fetch *fetch;
	struct api *api;
	struct cache *cache;
	struct catalog *catalog;
	struct fuse *fuse;
	bool mounted;
	bool signals;
	bool curl;
	pthread_t watcher;
	bool watching;
	atomic_bool stop_watching;
	/* The kernel's read-ahead, which the watcher raises after INIT. */
	struct ops_context *ctx;
	char readahead_knob[128];
	bool readahead_pending;
	bool readahead_ready;
	int readahead_tries;
};

/* Finds the sysfs file that contains the kernel's read-ahead of the mount at
 * mountpoint, the read_ahead_kb of its backing device, and writes its path
 * to knob. Returns whether it was found; a miss is logged at debug level,
 * as it only leaves the kernel's default. */
static bool find_readahead_knob(const char *mountpoint, char *knob, size_t size)
{
	FILE *mounts = fopen("/proc/self/mountinfo", "re");
	char line[PATH_MAX * 2 + 512];
	char device[32] = "";

	if (!mounts) {
		log_debug("kept the kernel's read-ahead: /proc/self/mountinfo: "
			  "%s",
			  strerror(errno));
		return false;
	}
	/* The last match is the mount just made, should others lie below. */
	while (fgets(line, sizeof(line), mounts)) {
		char *save = NULL;
		char *fields[5];
		int count = 0;

		for (char *token = strtok_r(line, " ", &save);
		     token && count < 5; token = strtok_r(NULL, " ", &save))
			fields[count++] = token;
		if (count < 5)
			continue;
		unescape_mountinfo(fields[4]);
		if (strcmp(fields[4], mountpoint) == 0 &&
		    strlen(fields[2]) < sizeof(device))
			strcpy(device, fields[2]);
	}
	fclose(mounts);
	if (!device[0]) {
		log_debug("kept the kernel's read-ahead: %s is not in "
			  "/proc/self/mountinfo",
			  mountpoint);
		return false;
	}
	snprintf(knob, size, "/sys/class/bdi/%s/read_ahead_kb", device);
	return true;
}

/* Writes MOUNT_READAHEAD_KB to the sysfs file knob, which only root may
 * do, and reads it back. Returns 0 when the value holds, -EAGAIN when the
 * kernel shows another one, or a negated errno. */
static int write_readahead(const char *knob)
{
	FILE *stream = fopen(knob, "we");
	long value = -1;
	int rc = 0;

	if (!stream)
		return -errno;
	if (fprintf(stream, "%d\n", MOUNT_READAHEAD_KB) < 0)
		rc = -errno;
	if (fclose(stream) != 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		return rc;
	stream = fopen(knob, "re");
	if (!stream)
		return -errno;
	if (fscanf(stream, "%ld", &value) != 1)
		rc = -EIO;
	fclose(stream);
	if (rc == 0 && value != MOUNT_READAHEAD_KB)
		rc = -EAGAIN;
	return rc;
}

/* Raises the kernel's read-ahead of the mount, once the kernel has taken
 * the INIT reply: before that the kernel lowers it again to the value that
 * INIT carried. Called by the watcher at each interval until it returns
 * true. */
static bool raise_readahead(struct mount_state *state)
{
	int rc;

	if (!atomic_load(&state->ctx->initialized))
		return false;
	/* libfuse sends the INIT reply just after ops_init() returns, so one
	 * interval later the kernel has usually taken it. The read-back
	 * catches the cases where it has not. */
	if (!state->readahead_ready) {
		state->readahead_ready = true;
		return false;
	}
	rc = write_readahead(state->readahead_knob);
	if (rc == -EAGAIN && ++state->readahead_tries < READAHEAD_TRIES)
		return false;
	if (rc < 0)
		log_debug("kept the kernel's read-ahead: writing %s: %s",
			  state->readahead_knob,
			  rc == -EAGAIN ? "the kernel kept its own value"
					: strerror(-rc));
	else
		log_debug("raised the kernel's read-ahead to %d KiB (%s)",
			  MOUNT_READAHEAD_KB, state->readahead_knob);
	return true;
}

/* Logs the stop signals that csipfs was started with ignored. libfuse
 * installs its handler only for a signal at its default action, so such a
 * signal does not stop csipfs. A shell without job control starts its
 * background commands with SIGINT ignored. SIGHUP is left out, because
 * nohup ignores it on purpose. */
static void warn_ignored_signals(void)
{
	static const struct {
		int number;
		const char *name;
	} signals[] = {{SIGINT, "SIGINT"}, {SIGTERM, "SIGTERM"}};

	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		struct sigaction action;

		if (sigaction(signals[i].number, NULL, &action) != 0 ||
		    action.sa_handler != SIG_IGN)
			continue;
		log_warning("%s was ignored when csipfs started, so it will "
			    "not stop csipfs; unmount with fusermount3 -u or "
			    "send another signal",
			    signals[i].name);
	}
}

/* Raises the kernel's read-ahead once INIT is done, and waits for the FUSE
 * session to end, by a signal or an unmount, and then cancels the
 * downloads, API calls and waits in flight. The loop waits for every
 * worker thread to finish its request, so without this a slow
 * download or a paced API call would hold up the exit for as long as its
 * timeouts and retries allow. */
static void *watch_for_exit(void *data)
{
	struct mount_state *state = data;
	struct fuse_session *session = fuse_get_session(state->fuse);
	struct timespec interval = {
	    .tv_sec = 0,
	    .tv_nsec = WATCH_INTERVAL_MS * 1000000L,
	};

	while (!atomic_load(&state->stop_watching)) {
		/* The end of the session is checked first, so that the
		 * read-ahead is not written to a device that the unmount may
		 * already have freed for another mount. */
		if (!fuse_session_exited(session) && state->readahead_pending &&
		    raise_readahead(state))
			state->readahead_pending = false;
		if (fuse_session_exited(session)) {
			log_info("the mount is ending; cancelling the "
				 "downloads and API calls in flight");
			fetch_cancel(state->fetch);
			api_cancel(state->api);
			catalog_cancel(state->catalog);
			break;
		}
		nanosleep(&interval, NULL);
	}
	return NULL;
}

static void teardown(struct mount_state *state)
{
	if (state->watching) {
		atomic_store(&state->stop_watching, true);
		pthread_join(state->watcher, NULL);
	}
	/* Nothing fetches or calls the API once the loop has ended. The
	 * watcher cancels these too, unless stop_watching ends it before it
	 * notices the end of the session. A read-ahead worker in a paced API
	 * call would then hold up reader_shutdown() below. */
	fetch_cancel(state->fetch);
	if (state->api)
		api_cancel(state->api);
	if (state->catalog)
		catalog_cancel(state->catalog);
	if (state->signals) {
		fuse_remove_signal_handlers(fuse_get_session(state->fuse));
		/* libfuse restores SIGPIPE to SIG_DFL, but the connections
		 * closed below may still meet a peer that is gone. */
		signal(SIGPIPE, SIG_IGN);
	}
	if (state->mounted)
		fuse_unmount(state->fuse);
	if (state->fuse)
		fuse_destroy(state->fuse);
	/* Read-ahead workers use the catalog and the cache until stopped. */
	reader_shutdown();
	catalog_destroy(state->catalog);
	cache_close(state->cache);
	api_destroy(state->api);
	fetch_destroy(state->fetch);
	config_credentials_clear(&state->credentials);
	if (state->curl)
		curl_global_cleanup();
}

static int build_fuse_args(struct fuse_args *args, const char *profile,
			   const struct options *options)
{
	char line[512];

	snprintf(line, sizeof(line),
		 "-oro,default_permissions,fsname=csipfs:%s,subtype=csipfs",
		 profile);
	if (fuse_opt_insert_arg(args, 1, line) < 0)
		return -1;
	/* Last, so that a suid or dev from fstab cannot override them. */
	if (fuse_opt_add_arg(args, "-onosuid,nodev") < 0)
		return -1;
	if (options->debug && fuse_opt_add_arg(args, "-odebug") < 0)
		return -1;
	return 0;
}

static int run(struct fuse_args *args, struct options *options)
{
	struct mount_state state = {0};
	struct ops_context ctx = {0};
	struct fuse_loop_config *loop = NULL;
	enum log_level level;
	uint64_t cache_size;
	unsigned dir_ttl;
	unsigned url_ttl;
	unsigned timeout;
	const char *profile;
	char mountpoint[PATH_MAX];
	char *cache_dir = NULL;
	char *state_dir = NULL;
	const char *region;
	char err[1024] = "";
	int status = 1;
	int rc;

	if (check_options(options, &level, &cache_size, &dir_ttl, &url_ttl,
			  &timeout) < 0 ||
	    check_arguments(options, &profile, mountpoint, sizeof(mountpoint)) <
		0)
		return 1;
	log_set_level(level);
	if (build_fuse_args(args, profile, options) < 0)
		return 1;

	rc = config_load_credentials(profile, &state.credentials, err,
				     sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "csipfs: error: %s\n", err);
		return 1;
	}
	/* fuse_new() checks the remaining options before the cache is locked
	 * or the network used, so that a typo fails at once. The callbacks
	 * find ctx filled in by the time the mount starts. */
	state.fuse = fuse_new(args, ops_operations(),
			      sizeof(struct fuse_operations), &ctx);
	if (!state.fuse)
		goto out;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "csipfs: error: curl_global_init failed\n");
		goto out;
	}
	state.curl = true;

	cache_dir = options->cache_dir ? strdup(options->cache_dir)
				       : default_cache_dir();
	if (!cache_dir) {
		fprintf(stderr, "csipfs: error: no cache directory: set "
				"cache_dir= or HOME\n");
		goto out;
	}
	rc = make_directories(cache_dir);
	if (rc < 0) {
		fprintf(stderr, "csipfs: error: cache_dir=%s: %s\n", cache_dir,
			strerror(-rc));
		goto out;
	}
	rc = cache_open(cache_dir, cache_size, &state.cache, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "csipfs: error: %s\n", err);
		goto out;
	}

	struct fetch_options fetch_options = {
	    .cafile = options->cafile,
	    .stall_timeout_seconds = timeout,
	};

	if (fetch_create(&fetch_options, &state.fetch) < 0) {
		fprintf(stderr, "csipfs: error: setting up libcurl failed\n");
		goto out;
	}
	region =
	    options->region ? options->region : getenv("TENCENTCLOUD_REGION");
	struct api_options api_options = {
	    .endpoint = options->endpoint,
	    .region = region,
	    .cafile = options->cafile,
	    .credentials = &state.credentials,
	    .request_timeout = timeout,
	};

	if (api_create(&api_options, &state.api, err, sizeof(err)) < 0) {
		fprintf(stderr, "csipfs: error: %s\n", err);
		goto out;
	}
	state_dir = listing_dir(cache_dir, state.credentials.secret_id);
	if (!state_dir)
		goto out;
	struct catalog_options catalog_options = {
	    .api = state.api,
	    .fetch = state.fetch,
	    .cache = state.cache,
	    .dir_ttl = dir_ttl,
	    .url_ttl = url_ttl,
	    .state_dir = state_dir,
	};

	if (catalog_create(&catalog_options, &state.catalog) < 0) {
		fprintf(stderr, "csipfs: error: out of memory\n");
		goto out;
	}

	ctx.catalog = state.catalog;
	ctx.cache = state.cache;
	ctx.fetch = state.fetch;
	ctx.uid = getuid();
	ctx.gid = getgid();
	ctx.attr_timeout = dir_ttl < 60 ? dir_ttl : 60;

	rc = catalog_load(state.catalog, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "csipfs: error: cannot mount %s: %s\n",
			mountpoint, err);
		goto out;
	}
	if (fuse_mount(state.fuse, mountpoint) != 0)
		goto out;
	state.mounted = true;
	/* Without a cache csipfs keeps one block per open file, and the
	 * parallel reads of a wide kernel read-ahead would fetch the same
	 * blocks again and again. */
	state.ctx = &ctx;
	if (cache_size == 0)
		log_debug("kept the kernel's read-ahead: cache_size=0 keeps "
			  "one block per open file");
	else
		state.readahead_pending =
		    find_readahead_knob(mountpoint, state.readahead_knob,
					sizeof(state.readahead_knob));
	log_info("mounted profile %s on %s (cache %s, %" PRIu64 " bytes)",
		 profile, mountpoint, cache_dir, cache_size);
	if (fuse_daemonize(options->foreground) != 0)
		goto out;
	if (!options->foreground)
		log_use_syslog();
	warn_ignored_signals();
	if (fuse_set_signal_handlers(fuse_get_session(state.fuse)) != 0)
		goto out;
	state.signals = true;
	if (pthread_create(&state.watcher, NULL, watch_for_exit, &state) != 0) {
		log_error("starting the shutdown watcher failed");
		goto out;
	}
	state.watching = true;

	if (options->single_thread) {
		rc = fuse_loop(state.fuse);
	} else {
		loop = fuse_loop_cfg_create();
		if (!loop)
			goto out;
		fuse_loop_cfg_set_clone_fd(loop, 0);
		fuse_loop_cfg_set_idle_threads(loop, MAX_LOOP_THREADS);
		fuse_loop_cfg_set_max_threads(loop, MAX_LOOP_THREADS);
		rc = fuse_loop_mt(state.fuse, loop);
		fuse_loop_cfg_destroy(loop);
	}
	/* libfuse returns the number of the signal that ended the loop, and
	 * SIGTERM, SIGINT and SIGHUP are the normal ways to stop a daemon. */
	if (rc == SIGTERM || rc == SIGINT || rc == SIGHUP) {
		log_info("stopping on signal %d (%s)", rc, strsignal(rc));
		rc = 0;
	}
	/* At unmount the kernel shuts the connection down, and the threads
	 * blocked in read() on /dev/fuse get ENODEV, which ends the loop
	 * normally. A thread that has just taken a request off the queue
	 * gets ECONNABORTED instead (fuse_dev_do_read() in Linux), and
	 * libfuse returns that as an error, but the mount is gone all the
	 * same. */
	if (rc == -ECONNABORTED) {
		log_info("the kernel shut the FUSE connection of %s down while "
			 "a request was being read",
			 mountpoint);
		rc = 0;
	}
	status = rc == 0 ? 0 : 1;
	log_info("unmounted %s", mountpoint);
out:
	teardown(&state);
	free(state_dir);
	free(cache_dir);
	return status;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options options = {0};
	int status;

	/* A peer that closes a TLS connection must not kill the process:
	 * writes to it fail with EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	/* Block buffers are 1 MiB, and the daemon has dozens of threads.
	 * glibc gives each thread that allocates such buffers a heap of its
	 * own, up to eight per core, and each heap keeps what was freed in
	 * it. Two heaps share the freed buffers between the threads. */
	mallopt(M_ARENA_MAX, 2);
	/* libfuse allocates a buffer of up to 1 MiB for each read and frees
	 * it after the reply. By default glibc returns such memory to the
	 * kernel at once, so the next buffer is paged in and zeroed again.
	 * Each heap now keeps up to MALLOC_KEEP_BYTES free. Setting the
	 * trim threshold stops glibc from adjusting the mmap() threshold, so
	 * that one is set here too. */
	mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES);
	mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES);
	if (fuse_opt_parse(&args, &options, option_spec, handle_option) < 0) {
		if (!options.bad_argument)
			fprintf(stderr, "csipfs: error: invalid options\n");
		free_options(&options);
		fuse_opt_free_args(&args);
		return 1;
	}
	if (options.show_help) {
		print_help();
		status = 0;
	} else if (options.show_version) {
		print_version();
		status = 0;
	} else {
		status = run(&args, &options);
	}
	free_options(&options);
	fuse_opt_free_args(&args);
	return status;
}
