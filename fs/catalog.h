/* The tree of accounts, tasks and reports: listing through the API with
 * paging, naming, refresh after dir_ttl, URL resolution in batches, and the
 * first-block probe that gives each report its exact size and extension.
 * Thread-safe. No pointer into the tree escapes a call: callers get copies. */
#ifndef CSIPFS_CATALOG_H
#define CSIPFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "api.h"
#include "cache.h"
#include "fetch.h"

/* Report ids resolved by one DescribeTaskLogURL call, at most. */
#define CATALOG_URL_BATCH 50

/* Longest id accepted from the API, in bytes: an entry with a longer id is
 * skipped with a warning. */
#define CATALOG_MAX_ID_BYTES 256

/* Longest name or other text kept from the API, in bytes; longer text is
 * cut (names are cut further to fit a file name). */
#define CATALOG_MAX_TEXT_BYTES 4096

struct catalog_options {
	struct api *api;
	struct fetch *fetch;
	struct cache *cache;
	unsigned dir_ttl; /* seconds a listing is trusted */
	unsigned url_ttl; /* seconds a resolved URL may serve a later open */
	/* Directory (the cache directory) where the last good listings are
	 * kept for a mount while the API is unreachable; NULL keeps none. */
	const char *state_dir;
};

enum catalog_kind {
	CATALOG_ROOT,
	CATALOG_ACCOUNT,
	CATALOG_TASK,
	CATALOG_REPORT,
};

struct catalog_attr {
	enum catalog_kind kind;
	uint64_t ino;
	int64_t size; /* reports only; 0 for directories */
	time_t mtime;
};

/* An open report, copied out of the tree. */
struct catalog_file {
	char key[CATALOG_MAX_ID_BYTES * 2 + 2]; /* cache key */
	char account[CATALOG_MAX_ID_BYTES];	/* account key, for logs */
	char report_id[CATALOG_MAX_ID_BYTES];
	int64_t size;
	char etag[128];
};

struct catalog;

int catalog_create(const struct catalog_options *options, struct catalog **out);
void catalog_destroy(struct catalog *catalog);

/* Lists the accounts and the caller's own reports, so that bad credentials
 * or an unreachable endpoint are found before mounting. When the API cannot
 * be reached (no HTTP response, HTTP 5xx or a server-side error code, but
 * not an AuthFailure) and state_dir holds the listings of an earlier mount,
 * loads those with a warning and returns 0; they are refreshed once the API
 * answers. Returns 0, or a negated errno with err describing the failure
 * (the API error code and RequestId when there is one). */
int catalog_load(struct catalog *catalog, char *err, size_t err_size);

/* Looks path ("/", "/account", "/account/task", "/account/task/file") up.
 * May call the API to list or probe. Returns 0, -ENOENT, or another negated
 * errno (the cause logged). */
int catalog_getattr(struct catalog *catalog, const char *path,
		    struct catalog_attr *attr);

/* Calls fill for every entry of the directory at path, "." and ".."
 * excluded. fill returns nonzero to stop early. Returns 0, -ENOTDIR,
 * -ENOENT or another negated errno. */
typedef int (*catalog_fill_fn)(void *ctx, const char *name,
			       const struct catalog_attr *attr);
int catalog_readdir(struct catalog *catalog, const char *path,
		    catalog_fill_fn fill, void *ctx);

/* Copies what reading the report at path needs. Returns 0, -ENOENT,
 * -EISDIR, or another negated errno. */
int catalog_open(struct catalog *catalog, const char *path,
		 struct catalog_file *file);

/* Returns in *url (malloc'd; the caller frees it after wiping it with
 * explicit_bzero, since it is a bearer secret) a download URL for the
 * report that DescribeTaskLogURL returned no earlier than not_before
 * (monotonic seconds, as catalog_now()). Concurrent requests for one report
 * share one call, and one call resolves up to CATALOG_URL_BATCH reports of
 * the same task. Returns 0, -ENOENT when the API returned no URL for the
 * report, or another negated errno (logged with the report id). */
int catalog_resolve_url(struct catalog *catalog,
			const struct catalog_file *file, double not_before,
			char **url);

/* Makes threads that wait for another thread's listing, probe or URL give
 * up with EIO, now and later. Used when the mount ends. Thread-safe. */
void catalog_cancel(struct catalog *catalog);

/* The monotonic clock used for URL ages, in seconds. */
double catalog_now(void);

/* The url_ttl the catalog was created with. */
unsigned catalog_url_ttl(const struct catalog *catalog);

/* One report as DescribeTaskLogList describes it, after validation. */
struct catalog_report_info {
	char id[CATALOG_MAX_ID_BYTES];
	char task_id[CATALOG_MAX_ID_BYTES];
	char name[CATALOG_MAX_TEXT_BYTES];	/* TaskLogName, "" if null */
	char task_name[CATALOG_MAX_TEXT_BYTES]; /* TaskName, "" if null */
	char time[32];				/* Time, "" if null */
	char uin[CATALOG_MAX_ID_BYTES];
	char user_name[CATALOG_MAX_TEXT_BYTES];
	int64_t status; /* -1 if null or invalid */
};

/* One account as DescribeOrganizationUserInfo describes it. */
struct catalog_member_info {
	char uin[CATALOG_MAX_ID_BYTES];
	char member_id[CATALOG_MAX_ID_BYTES];
	char nick_name[CATALOG_MAX_TEXT_BYTES];
	char role[32];
};

/* Reads a TaskLogInfo object, tolerating null or absent fields, numbers sent
 * as strings and unknown fields; text longer than its field is cut.
 * Returns 0, or -EINVAL (with why naming the field) when it has no usable
 * TaskLogId or is not an object. */
int catalog_parse_report(const json_t *item, struct catalog_report_info *info,
			 char *why, size_t why_size);

/* Reads an OrganizationUserInfo object. Returns 0, or -EINVAL when it is not
 * an object or has neither Uin nor MemberId. */
int catalog_parse_member(const json_t *item, struct catalog_member_info *info);

/* Computes a stable inode number for text (never 0 or 1). */
uint64_t catalog_inode(const char *kind, const char *account, const char *id);

/* Forgets the size and ETag of the report, after the object changed: the
 * next lookup of its task probes it again, and its cached metadata no longer
 * matches any listing. Open readers keep their copy of the old metadata. */
void catalog_forget_report(struct catalog *catalog,
			   const struct catalog_file *file);

#endif
