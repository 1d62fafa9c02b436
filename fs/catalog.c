/* The tree of accounts, tasks and reports.
 *
 * One mutex guards the whole tree, and network calls happen with it
 * released. A thread that needs a listing, a probe or a URL that another
 * thread is already fetching waits on the condition variable. Then it looks
 * its path up again from the root, because a refresh may have replaced the
 * structures it saw before. */
#include "catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "names.h"

/* Maximum wait for another thread's listing, probe or URL, in seconds. */
#define WAIT_LIMIT_SECONDS 180
/* Reports that one listing probes at once, each with one block of memory. */
#define PROBE_PARALLEL 16
/* Probe buffers, in blocks, that all listings share. A listing that finds
 * none free probes one report at a time with a block of its own, so that
 * it never waits for another listing's buffers. */
#define PROBE_BUFFER_BUDGET 16
/* Seconds before a listing that failed to refresh is tried again. */
#define RETRY_AFTER_FAILURE 30
/* The directory under state_dir that keeps the last good listings, and the
 * version of their JSON layout. */
#define LISTING_DIR	"listing"
#define LISTING_VERSION 1

struct report {
	char *id;
	char *log_name;
	char *task_id;
	char *task_name;
	char *time_text;
	char *uin;
	char *user_name;
	time_t mtime;
	uint64_t ino;
	bool have_meta;
	bool unavailable; /* the API gave no URL for it */
	int64_t size;
	char ext[16];
	char etag[128];
	char name[NAMES_MAX_BYTES + 1];
	char *url;	 /* a bearer secret: wiped when freed */
	double url_time; /* when DescribeTaskLogURL returned it */
};

struct task {
	char *id;
	char name[NAMES_MAX_BYTES + 1];
	uint64_t ino;
	time_t mtime;
	struct report **reports; /* borrowed; sorted by name once named */
	size_t report_count;
	bool named;
};

struct account {
	char *key;	 /* "self" or the member id: cache keys, inodes */
	char *member_id; /* NULL for the caller's own account */
	char *uin;
	char *nick_name;
	char name[NAMES_MAX_BYTES + 1];
	uint64_t ino;
	time_t mtime;
	bool listed;
	double listed_at;
	struct report **reports; /* owned; sorted by id */
	size_t report_count;
	struct task **tasks; /* owned; sorted by name */
	size_t task_count;
};

/* A key for work in flight: "list:", "probe:" or "url:" plus ids. */
struct inflight {
	char *key;
	struct inflight *next;
};

struct catalog {
	struct catalog_options options;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct account **accounts; /* sorted by name */
	size_t account_count;
	char *admin_nick_name;
	char *admin_uin;
	bool accounts_loaded;
	double accounts_at;
	struct inflight *inflight;
	atomic_bool cancelled; /* set by catalog_cancel() */
	/* While catalog_load() runs, failures are written here for the
	 * start-up message instead of being logged. */
	char *startup_error;
	size_t startup_error_size;
	/* Whether the last failed call found the API unreachable (no HTTP
	 * response, HTTP 5xx or a server-side error code). */
	bool unreachable;
	size_t probe_buffers_free; /* under lock */
};

void catalog_cancel(struct catalog *catalog)
{
	atomic_store(&catalog->cancelled, true);
	pthread_mutex_lock(&catalog->lock);
	pthread_cond_broadcast(&catalog->changed);
	pthread_mutex_unlock(&catalog->lock);
}

double catalog_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

unsigned catalog_url_ttl(const struct catalog *catalog)
{
	return catalog->options.url_ttl;
}

uint64_t catalog_inode(const char *kind, const char *account, const char *id)
{
	const char *parts[3] = {kind, account, id};
	uint64_t hash = 14695981039346656037ull;

	for (int i = 0; i < 3; i++) {
		for (const char *c = parts[i] ? parts[i] : ""; *c; c++) {
			hash ^= (unsigned char)*c;
			hash *= 1099511628211ull;
		}
		hash ^= 0xff; /* separator, never a byte of UTF-8 text */
		hash *= 1099511628211ull;
	}
	return hash > 1 ? hash : hash + 2;
}

/* The level of a line about a failed call: a call cut short by the end of
 * the mount is no fault. */
static enum log_level failure_level(const struct api_error *error)
{
	return error->cancelled ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR;
}

/* Logs a failure of the call that error describes, or keeps it for the
 * start-up message. */
static void report_failure(struct catalog *catalog,
			   const struct api_error *error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_failure(struct catalog *catalog,
			   const struct api_error *error, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (catalog->startup_error)
		snprintf(catalog->startup_error, catalog->startup_error_size,
			 "%s", line);
	else
		log_msg(failure_level(error), "%s", line);
}

/* ---- parsing ---- */

/* Copies a string or integer field into out, each U+0000 as '_'. Returns
 * true when present. */
static bool copy_field(const json_t *object, const char *key, char *out,
		       size_t size, bool *cut)
{
	json_t *value = json_object_get(object, key);
	const char *text;
	size_t length;

	out[0] = '\0';
	if (json_is_integer(value)) {
		snprintf(out, size, "%" JSON_INTEGER_FORMAT,
			 json_integer_value(value));
		return true;
	}
	if (!json_is_string(value))
		return false;
	text = json_string_value(value);
	length = json_string_length(value);
	if (length >= size) {
		length = size - 1;
		/* Cut at a UTF-8 character boundary. */
		while (length > 0 &&
		       ((unsigned char)text[length] & 0xc0) == 0x80)
			length--;
		if (cut)
			*cut = true;
	}
	memcpy(out, text, length);
	out[length] = '\0';
	/* A NUL inside the JSON string is kept as a control character, so
	 * the name is not cut short there. */
	for (size_t i = 0; i < length; i++)
		if (out[i] == '\0')
			out[i] = '_';
	return true;
}

/* Whether a string field contains U+0000. */
static bool field_has_nul(const json_t *object, const char *key)
{
	json_t *value = json_object_get(object, key);

	return json_is_string(value) &&
	       memchr(json_string_value(value), '\0',
		      json_string_length(value)) != NULL;
}

int catalog_parse_report(const json_t *item, struct catalog_report_info *info,
			 char *why, size_t why_size)
{
	bool id_cut = false;
	bool task_cut = false;
	int64_t status;

	memset(info, 0, sizeof(*info));
	if (!json_is_object(item)) {
		snprintf(why, why_size, "a report entry is not an object");
		return -EINVAL;
	}
	if (!copy_field(item, "TaskLogId", info->id, sizeof(info->id),
			&id_cut) ||
	    info->id[0] == '\0') {
		snprintf(why, why_size, "a report has no TaskLogId");
		return -EINVAL;
	}
	if (id_cut) {
		snprintf(why, why_size,
			 "a report's TaskLogId is longer than %d bytes",
			 CATALOG_MAX_ID_BYTES - 1);
		return -EINVAL;
	}
	if (field_has_nul(item, "TaskLogId") ||
	    field_has_nul(item, "TaskCenterTaskId")) {
		snprintf(why, why_size,
			 "a report's TaskLogId or TaskCenterTaskId contains "
			 "U+0000");
		return -EINVAL;
	}
	copy_field(item, "TaskCenterTaskId", info->task_id,
		   sizeof(info->task_id), &task_cut);
	if (task_cut) {
		snprintf(why, why_size,
			 "report %s: TaskCenterTaskId is longer than %d bytes",
			 info->id, CATALOG_MAX_ID_BYTES - 1);
		return -EINVAL;
	}
	copy_field(item, "TaskLogName", info->name, sizeof(info->name), NULL);
	copy_field(item, "TaskName", info->task_name, sizeof(info->task_name),
		   NULL);
	copy_field(item, "Time", info->time, sizeof(info->time), NULL);
	copy_field(item, "UIN", info->uin, sizeof(info->uin), NULL);
	copy_field(item, "UserName", info->user_name, sizeof(info->user_name),
		   NULL);
	if (api_json_integer(json_object_get(item, "Status"), &status) == 0)
		info->status = status;
	else
		info->status = -1;
	return 0;
}

int catalog_parse_member(const json_t *item, struct catalog_member_info *info)
{
	memset(info, 0, sizeof(*info));
	if (!json_is_object(item))
		return -EINVAL;
	copy_field(item, "Uin", info->uin, sizeof(info->uin), NULL);
	copy_field(item, "MemberId", info->member_id, sizeof(info->member_id),
		   NULL);
	copy_field(item, "NickName", info->nick_name, sizeof(info->nick_name),
		   NULL);
	copy_field(item, "Role", info->role, sizeof(info->role), NULL);
	if (info->uin[0] == '\0' && info->member_id[0] == '\0')
		return -EINVAL;
	return 0;
}

/* ---- tree structures ---- */

static void wipe_url(struct report *report)
{
	if (report->url) {
		explicit_bzero(report->url, strlen(report->url));
		free(report->url);
		report->url = NULL;
	}
}

static void free_report(struct report *report)
{
	if (!report)
		return;
	wipe_url(report);
	free(report->id);
	free(report->log_name);
	free(report->task_id);
	free(report->task_name);
	free(report->time_text);
	free(report->uin);
	free(report->user_name);
	free(report);
}

static void free_tasks(struct task **tasks, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(tasks[i]->reports);
		free(tasks[i]->id);
		free(tasks[i]);
	}
	free(tasks);
}

static void free_reports(struct report **reports, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free_report(reports[i]);
	free(reports);
}

static void free_account(struct account *account)
{
	if (!account)
		return;
	free_tasks(account->tasks, account->task_count);
	free_reports(account->reports, account->report_count);
	free(account->key);
	free(account->member_id);
	free(account->uin);
	free(account->nick_name);
	free(account);
}

static struct account *new_account(const char *key, const char *member_id,
				   const char *uin, const char *nick_name)
{
	struct account *account = calloc(1, sizeof(*account));

	if (!account)
		return NULL;
	account->key = strdup(key);
	account->member_id = member_id ? strdup(member_id) : NULL;
	account->uin = strdup(uin ? uin : "");
	account->nick_name = strdup(nick_name ? nick_name : "");
	if (!account->key || (member_id && !account->member_id) ||
	    !account->uin || !account->nick_name) {
		free_account(account);
		return NULL;
	}
	account->ino = catalog_inode("account", key, "");
	return account;
}

int catalog_create(const struct catalog_options *options, struct catalog **out)
{
	struct catalog *catalog = calloc(1, sizeof(*catalog));

	if (!catalog)
		return -ENOMEM;
	catalog->options = *options;
	pthread_mutex_init(&catalog->lock, NULL);
	pthread_cond_init(&catalog->changed, NULL);
	catalog->probe_buffers_free = PROBE_BUFFER_BUDGET;
	*out = catalog;
	return 0;
}

void catalog_destroy(struct catalog *catalog)
{
	if (!catalog)
		return;
	for (size_t i = 0; i < catalog->account_count; i++)
		free_account(catalog->accounts[i]);
	free(catalog->accounts);
	while (catalog->inflight) {
		struct inflight *next = catalog->inflight->next;

		free(catalog->inflight->key);
		free(catalog->inflight);
		catalog->inflight = next;
	}
	free(catalog->admin_nick_name);
	free(catalog->admin_uin);
	pthread_cond_destroy(&catalog->changed);
	pthread_mutex_destroy(&catalog->lock);
	free(catalog);
}

/* ---- work in flight (call with the lock held) ---- */

static bool inflight_has(struct catalog *catalog, const char *key)
{
	for (struct inflight *i = catalog->inflight; i; i = i->next)
		if (strcmp(i->key, key) == 0)
			return true;
	return false;
}

static int inflight_add(struct catalog *catalog, const char *key)
{
	struct inflight *item = calloc(1, sizeof(*item));

	if (!item || !(item->key = strdup(key))) {
		free(item);
		return -ENOMEM;
	}
	item->next = catalog->inflight;
	catalog->inflight = item;
	return 0;
}

static void inflight_remove(struct catalog *catalog, const char *key)
{
	for (struct inflight **link = &catalog->inflight; *link;
	     link = &(*link)->next) {
		if (strcmp((*link)->key, key) == 0) {
			struct inflight *item = *link;

			*link = item->next;
			free(item->key);
			free(item);
			return;
		}
	}
}

/* Waits for a change by another thread. Returns 0, or -EIO once the wait
 * has lasted past deadline. */
static int wait_for_change(struct catalog *catalog, double deadline,
			   const char *what)
{
	struct timespec until;
	double now = catalog_now();

	if (atomic_load(&catalog->cancelled)) {
		log_info("the mount is ending; no longer waiting for %s", what);
		return -EIO;
	}
	if (now >= deadline) {
		log_error("timed out after %d s waiting for %s",
			  WAIT_LIMIT_SECONDS, what);
		return -EIO;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_cond_timedwait(&catalog->changed, &catalog->lock, &until);
	return 0;
}

static char *key_of(const char *kind, const char *account, const char *id)
{
	char *key;

	if (asprintf(&key, "%s:%s/%s", kind, account, id ? id : "") < 0)
		return NULL;
	return key;
}

/* ---- lookups (lock held) ---- */

/* Entries may be NULL while load_accounts() moves accounts to a new list. */
static struct account *find_account_by_key(struct catalog *catalog,
					   const char *key)
{
	for (size_t i = 0; i < catalog->account_count; i++)
		if (catalog->accounts[i] &&
		    strcmp(catalog->accounts[i]->key, key) == 0)
			return catalog->accounts[i];
	return NULL;
}

static struct account *find_account_by_name(struct catalog *catalog,
					    const char *name)
{
	for (size_t i = 0; i < catalog->account_count; i++)
		if (strcmp(catalog->accounts[i]->name, name) == 0)
			return catalog->accounts[i];
	return NULL;
}

static int compare_report_id(const void *a, const void *b)
{
	const struct report *const *x = a;
	const struct report *const *y = b;

	return strcmp((*x)->id, (*y)->id);
}

static int compare_report_name(const void *a, const void *b)
{
	const struct report *const *x = a;
	const struct report *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int compare_task_name(const void *a, const void *b)
{
	const struct task *const *x = a;
	const struct task *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static struct report *find_report_by_id(struct account *account, const char *id)
{
	struct report probe = {.id = (char *)id};
	struct report *key = &probe;
	struct report **found;

	if (account->report_count == 0)
		return NULL;
	found = bsearch(&key, account->reports, account->report_count,
			sizeof(*account->reports), compare_report_id);
	return found ? *found : NULL;
}

static struct task *find_task_by_name(struct account *account, const char *name)
{
	struct task probe;
	struct task *key = &probe;
	struct task **found;

	if (strlen(name) > NAMES_MAX_BYTES)
		return NULL;
	strcpy(probe.name, name);
	found = bsearch(&key, account->tasks, account->task_count,
			sizeof(*account->tasks), compare_task_name);
	return found ? *found : NULL;
}

static struct task *find_task_by_id(struct account *account, const char *id)
{
	for (size_t i = 0; i < account->task_count; i++)
		if (strcmp(account->tasks[i]->id, id) == 0)
			return account->tasks[i];
	return NULL;
}

static struct report *find_report_by_name(struct task *task, const char *name)
{
	struct report probe;
	struct report *key = &probe;
	struct report **found;

	if (!task->named || strlen(name) > NAMES_MAX_BYTES)
		return NULL;
	strcpy(probe.name, name);
	found = bsearch(&key, task->reports, task->report_count,
			sizeof(*task->reports), compare_report_name);
	return found ? *found : NULL;
}

/* ---- naming (lock held) ---- */

static bool ends_with_ignoring_case(const char *text, const char *suffix)
{
	size_t n = strlen(text);
	size_t m = strlen(suffix);

	return m > 0 && n >= m && strcasecmp(text + n - m, suffix) == 0;
}

/* Names the files of task once every report has its metadata. */
static int name_task_files(struct task *task)
{
	struct names_entry *entries;
	struct report **shown;
	size_t count = 0;
	int rc;

	for (size_t i = 0; i < task->report_count; i++)
		if (!task->reports[i]->have_meta &&
		    !task->reports[i]->unavailable)
			return 0;
	entries = calloc(task->report_count + 1, sizeof(*entries));
	shown = calloc(task->report_count + 1, sizeof(*shown));
	if (!entries || !shown) {
		free(entries);
		free(shown);
		return -ENOMEM;
	}
	for (size_t i = 0; i < task->report_count; i++) {
		struct report *report = task->reports[i];
		const char *base =
		    report->log_name[0] ? report->log_name : report->id;

		if (report->unavailable)
			continue;
		entries[count].base = base;
		entries[count].ext = ends_with_ignoring_case(base, report->ext)
					 ? ""
					 : report->ext;
		entries[count].id = report->id;
		entries[count].order_key = report->time_text;
		shown[count++] = report;
	}
	rc = names_assign(entries, count);
	if (rc == 0) {
		for (size_t i = 0; i < count; i++)
			memcpy(shown[i]->name, entries[i].name,
			       sizeof(shown[i]->name));
		qsort(shown, count, sizeof(*shown), compare_report_name);
		free(task->reports);
		task->reports = shown;
		task->report_count = count;
		task->named = true;
		shown = NULL;
	}
	free(entries);
	free(shown);
	return rc;
}

/* Names the account directories: the caller's own one first. */
static int name_accounts(struct catalog *catalog)
{
	struct names_entry *entries;
	size_t count = catalog->account_count;
	int rc;

	entries = calloc(count + 1, sizeof(*entries));
	if (!entries)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		struct account *account = catalog->accounts[i];

		if (!account->member_id) {
			entries[i].base = account->nick_name;
			entries[i].id =
			    account->uin[0] ? account->uin : account->key;
			entries[i].order_key = "0";
		} else {
			entries[i].base = account->nick_name[0]
					      ? account->nick_name
					      : account->uin;
			entries[i].id =
			    account->uin[0] ? account->uin : account->member_id;
			entries[i].order_key = "1";
		}
		if (!entries[i].base || !entries[i].base[0])
			entries[i].base = entries[i].id;
		entries[i].ext = "";
	}
	rc = names_assign(entries, count);
	if (rc == 0)
		for (size_t i = 0; i < count; i++)
			memcpy(catalog->accounts[i]->name, entries[i].name,
			       sizeof(catalog->accounts[i]->name));
	free(entries);
	return rc;
}

/* ---- listing of one account ---- */

struct report_list {
	struct report **items;
	size_t count;
	size_t capacity;
	size_t skipped;
	const char *account;
};

static int collect_report(json_t *item, void *ctx)
{
	struct report_list *list = ctx;
	struct catalog_report_info *info;
	struct report *report;
	char why[512];
	int rc = 0;

	info = malloc(sizeof(*info));
	if (!info)
		return -ENOMEM;
	if (catalog_parse_report(item, info, why, sizeof(why)) < 0) {
		if (list->skipped++ < 10)
			log_warning("account %s: skipping a report: %s",
				    list->account, why);
		goto out;
	}
	if (info->status != 2)
		goto out;
	if (list->count == list->capacity) {
		size_t capacity = list->capacity ? list->capacity * 2 : 64;
		struct report **grown =
		    realloc(list->items, capacity * sizeof(*grown));

		if (!grown) {
			rc = -ENOMEM;
			goto out;
		}
		list->items = grown;
		list->capacity = capacity;
	}
	report = calloc(1, sizeof(*report));
	if (!report) {
		rc = -ENOMEM;
		goto out;
	}
	report->id = strdup(info->id);
	report->log_name = strdup(info->name);
	report->task_id = strdup(info->task_id);
	report->task_name = strdup(info->task_name);
	report->time_text = strdup(info->time);
	report->uin = strdup(info->uin);
	report->user_name = strdup(info->user_name);
	if (!report->id || !report->log_name || !report->task_id ||
	    !report->task_name || !report->time_text || !report->uin ||
	    !report->user_name) {
		free_report(report);
		rc = -ENOMEM;
		goto out;
	}
	if (names_parse_cst_time(info->time, &report->mtime) < 0) {
		log_debug("account %s: report %s has an invalid Time \"%s\"",
			  list->account, info->id, info->time);
		report->mtime = 0;
	}
	report->size = -1;
	list->items[list->count++] = report;
out:
	free(info);
	return rc;
}

static void fill_cache_key(char *out, size_t size, const char *account,
			   const char *report_id)
{
	snprintf(out, size, "%s/%s", account, report_id);
}

/* Takes a report's metadata from the disk cache when it was recorded for
 * the same Time. */
static void load_meta_from_cache(struct catalog *catalog, const char *account,
				 struct report *report)
{
	struct cache_meta meta;
	char key[CATALOG_MAX_ID_BYTES * 2 + 2];

	fill_cache_key(key, sizeof(key), account, report->id);
	if (cache_get_meta(catalog->options.cache, key, &meta) < 0)
		return;
	if (strcmp(meta.report_time, report->time_text) != 0 || meta.size < 0)
		return;
	report->have_meta = true;
	report->size = meta.size;
	snprintf(report->ext, sizeof(report->ext), "%s", meta.ext);
	snprintf(report->etag, sizeof(report->etag), "%s", meta.etag);
}

static int compare_task_id_then_time(const void *a, const void *b)
{
	const struct report *const *x = a;
	const struct report *const *y = b;
	int c = strcmp((*x)->task_id, (*y)->task_id);

	if (c)
		return c;
	c = strcmp((*x)->time_text, (*y)->time_text);
	return c ? c : strcmp((*x)->id, (*y)->id);
}

/* Groups reports (sorted by task id, then time) into named tasks. */
static int build_tasks(const char *account_key, struct report **sorted,
		       size_t count, struct task ***out, size_t *out_count)
{
	struct task **tasks = NULL;
	struct names_entry *entries = NULL;
	size_t task_count = 0;
	size_t start = 0;
	int rc = -ENOMEM;

	tasks = calloc(count + 1, sizeof(*tasks));
	entries = calloc(count + 1, sizeof(*entries));
	if (!tasks || !entries)
		goto fail;
	while (start < count) {
		size_t end = start;
		struct task *task;
		struct report *latest;

		while (end < count && strcmp(sorted[end]->task_id,
					     sorted[start]->task_id) == 0)
			end++;
		task = calloc(1, sizeof(*task));
		if (!task)
			goto fail;
		tasks[task_count] = task;
		task->id = strdup(sorted[start]->task_id);
		task->reports = calloc(end - start, sizeof(*task->reports));
		if (!task->id || !task->reports) {
			task_count++;
			goto fail;
		}
		task->report_count = end - start;
		for (size_t i = start; i < end; i++) {
			task->reports[i - start] = sorted[i];
			if (sorted[i]->mtime > task->mtime)
				task->mtime = sorted[i]->mtime;
		}
		task->ino = catalog_inode("task", account_key, task->id);
		/* The newest report carries the task's current name, and the
		 * oldest decides who keeps a name that several tasks share. */
		latest = sorted[end - 1];
		entries[task_count].base =
		    latest->task_name[0]
			? latest->task_name
			: (task->id[0] ? task->id : "untitled");
		entries[task_count].ext = "";
		entries[task_count].id = task->id[0] ? task->id : "untitled";
		entries[task_count].order_key = sorted[start]->time_text;
		task_count++;
		start = end;
	}
	rc = names_assign(entries, task_count);
	if (rc < 0)
		goto fail;
	for (size_t i = 0; i < task_count; i++) {
		memcpy(tasks[i]->name, entries[i].name, sizeof(tasks[i]->name));
		rc = name_task_files(tasks[i]);
		if (rc < 0)
			goto fail;
	}
	qsort(tasks, task_count, sizeof(*tasks), compare_task_name);
	free(entries);
	*out = tasks;
	*out_count = task_count;
	return 0;
fail:
	free(entries);
	if (tasks)
		free_tasks(tasks, task_count);
	return rc;
}

/* Sorts by id and drops the later copies of a report that a page boundary
 * made appear twice. */
static void drop_duplicate_ids(struct report_list *list)
{
	size_t kept = 0;

	if (list->count == 0)
		return;
	qsort(list->items, list->count, sizeof(*list->items),
	      compare_report_id);
	for (size_t i = 0; i < list->count; i++) {
		if (kept > 0 && strcmp(list->items[kept - 1]->id,
				       list->items[i]->id) == 0) {
			free_report(list->items[i]);
			continue;
		}
		list->items[kept++] = list->items[i];
	}
	list->count = kept;
}

static int install_listing(struct catalog *catalog, const char *key,
			   struct report_list *list, double listed_at);

/* ---- saved listings ----
 *
 * The last good listing of each account and the account list are kept
 * under state_dir/listing (0700, files 0600), so that a mount can start
 * when the API cannot be reached. File names come from the SHA-256 of the
 * account key, never from API text. */

static void note_unreachable(struct catalog *catalog,
			     const struct api_error *error)
{
	bool unreachable =
	    (error->code[0] == '\0' &&
	     (error->http_status == 0 || error->http_status >= 500)) ||
	    (error->code[0] != '\0' && api_code_is_retryable(error->code) &&
	     strncmp(error->code, "RequestLimitExceeded", 20) != 0);

	pthread_mutex_lock(&catalog->lock);
	catalog->unreachable = unreachable;
	pthread_mutex_unlock(&catalog->lock);
}

/* Writes the path of the file for name ("accounts", or an account key that
 * is hashed) into out. Returns 0, or -ENAMETOOLONG. */
static int listing_path(const struct catalog *catalog, const char *name,
			bool hashed, char *out, size_t size)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_length = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	int n;

	if (hashed) {
		if (!EVP_Digest(name, strlen(name), digest, &digest_length,
				EVP_sha256(), NULL))
			return -EIO;
		for (unsigned int i = 0; i < digest_length; i++)
			snprintf(hex + 2 * i, 3, "%02x", digest[i]);
		name = hex;
	}
	n = snprintf(out, size, "%s/%s/%s.json", catalog->options.state_dir,
		     LISTING_DIR, name);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Writes value to path atomically: a temporary file in the same directory,
 * fsync, then rename. Logs a warning on failure. */
static void save_json(const struct catalog *catalog, const char *path,
		      json_t *value)
{
	char dir[4096];
	char temporary[4200];
	char *text;
	size_t length;
	ssize_t written = 0;
	int fd;

	snprintf(dir, sizeof(dir), "%s/%s", catalog->options.state_dir,
		 LISTING_DIR);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_warning("saving the listing failed: mkdir %s: %s", dir,
			    strerror(errno));
		return;
	}
	text = json_dumps(value, JSON_COMPACT);
	if (!text)
		return;
	length = strlen(text);
	snprintf(temporary, sizeof(temporary), "%s.%ld.tmp", path,
		 (long)getpid());
	fd = open(temporary,
		  O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		while ((size_t)written < length) {
			ssize_t n =
			    write(fd, text + written, length - (size_t)written);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			written += n;
		}
	}
	if (fd < 0 || (size_t)written != length || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(temporary, path) < 0) {
		log_warning("saving the listing failed: %s: %s", path,
			    strerror(errno));
		if (fd >= 0)
			unlink(temporary);
	}
	free(text);
}

/* Reads a saved listing file. Returns NULL when missing or invalid. */
static json_t *load_json(const char *path)
{
	json_error_t error;
	json_t *value;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	value = json_loadfd(fd, JSON_REJECT_DUPLICATES, &error);
	close(fd);
	if (!value)
		log_warning("ignoring the saved listing %s: %s", path,
			    error.text);
	else if (!json_is_object(value) ||
		 json_integer_value(json_object_get(value, "Version")) !=
		     LISTING_VERSION) {
		log_warning("ignoring the saved listing %s: unknown layout",
			    path);
		json_decref(value);
		value = NULL;
	}
	return value;
}

/* Encodes a listing as TaskLogInfo objects, which catalog_parse_report()
 * reads back. Returns NULL without state_dir or memory. */
static json_t *listing_to_json(const char *key, const struct report_list *list)
{
	json_t *reports = json_array();
	json_t *root;

	if (!reports)
		return NULL;
	for (size_t i = 0; i < list->count; i++) {
		const struct report *r = list->items[i];

		json_array_append_new(
		    reports,
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}",
			      "TaskLogId", r->id, "TaskLogName", r->log_name,
			      "TaskName", r->task_name, "TaskCenterTaskId",
			      r->task_id, "Time", r->time_text, "UIN", r->uin,
			      "UserName", r->user_name, "Status", 2));
	}
	root = json_pack("{s:i, s:s, s:o}", "Version", LISTING_VERSION, "Key",
			 key, "Reports", reports);
	return root;
}

/* Saves value as "accounts.json", or as the listing of account key when
 * hashed is true. */
static void save_listing(struct catalog *catalog, const char *name, bool hashed,
			 json_t *value)
{
	char path[4096];

	if (!catalog->options.state_dir ||
	    listing_path(catalog, name, hashed, path, sizeof(path)) < 0)
		return;
	save_json(catalog, path, value);
}

/* Lists account (identified by key) through DescribeTaskLogList, swaps the
 * result in and saves it under state_dir. Call without the lock. */
static int list_account(struct catalog *catalog, const char *key,
			const char *member_id)
{
	struct report_list list = {.account = key};
	struct api_error error;
	json_t *saved;
	json_t *request;
	char message[768];
	int rc;

	request = json_object();
	if (!request)
		return -ENOMEM;
	if (member_id) {
		json_t *ids = json_array();

		json_array_append_new(ids, json_string(member_id));
		json_object_set_new(request, "MemberId", ids);
	}
	rc = api_page(api_call_adapter, catalog->options.api,
		      "DescribeTaskLogList", request, 100, 0, collect_report,
		      &list, &error);
	json_decref(request);
	if (rc < 0) {
		note_unreachable(catalog, &error);
		report_failure(
		    catalog, &error,
		    "listing the reports of account %s failed: %s", key,
		    api_format_error(&error, message, sizeof(message)));
		free_reports(list.items, list.count);
		return rc;
	}
	if (list.skipped > 10)
		log_warning("account %s: skipped %zu reports in all", key,
			    list.skipped);
	drop_duplicate_ids(&list);
	saved = listing_to_json(key, &list);
	rc = install_listing(catalog, key, &list, catalog_now());
	if (rc == 0 && saved)
		save_listing(catalog, key, true, saved);
	json_decref(saved);
	return rc;
}

/* Swaps a listing of account key in, keeping what the old listing learned,
 * and marks it listed at listed_at. Takes the list's reports, also on
 * failure. Call without the lock. */
static int install_listing(struct catalog *catalog, const char *key,
			   struct report_list *list_in, double listed_at)
{
	struct report_list list = *list_in;
	struct report **by_task = NULL;
	struct task **tasks = NULL;
	size_t task_count = 0;
	struct account *account;
	int rc;

	for (size_t i = 0; i < list.count; i++)
		load_meta_from_cache(catalog, key, list.items[i]);

	pthread_mutex_lock(&catalog->lock);
	account = find_account_by_key(catalog, key);
	if (!account) {
		pthread_mutex_unlock(&catalog->lock);
		rc = -ENOENT;
		goto fail;
	}
	/* Keep what the old listing learned: URLs live only in memory. */
	for (size_t i = 0; i < list.count; i++) {
		struct report *fresh = list.items[i];
		struct report *old = find_report_by_id(account, fresh->id);

		fresh->ino = catalog_inode("report", key, fresh->id);
		if (!old || strcmp(old->time_text, fresh->time_text) != 0)
			continue;
		if (!fresh->have_meta && old->have_meta) {
			fresh->have_meta = true;
			fresh->size = old->size;
			memcpy(fresh->ext, old->ext, sizeof(fresh->ext));
			memcpy(fresh->etag, old->etag, sizeof(fresh->etag));
		}
		fresh->unavailable = old->unavailable;
		fresh->url = old->url;
		fresh->url_time = old->url_time;
		old->url = NULL;
	}
	by_task = malloc((list.count + 1) * sizeof(*by_task));
	if (!by_task) {
		pthread_mutex_unlock(&catalog->lock);
		rc = -ENOMEM;
		goto fail;
	}
	if (list.count > 0)
		memcpy(by_task, list.items, list.count * sizeof(*by_task));
	qsort(by_task, list.count, sizeof(*by_task), compare_task_id_then_time);
	rc = build_tasks(key, by_task, list.count, &tasks, &task_count);
	free(by_task);
	if (rc < 0) {
		pthread_mutex_unlock(&catalog->lock);
		goto fail;
	}
	free_tasks(account->tasks, account->task_count);
	free_reports(account->reports, account->report_count);
	account->tasks = tasks;
	account->task_count = task_count;
	account->reports = list.items;
	account->report_count = list.count;
	account->mtime = 0;
	for (size_t i = 0; i < task_count; i++)
		if (tasks[i]->mtime > account->mtime)
			account->mtime = tasks[i]->mtime;
	account->listed = true;
	account->listed_at = listed_at;
	if (!account->member_id && !catalog->admin_nick_name) {
		/* A caller outside any group is named after its reports. */
		const char *name = "";

		if (list.count > 0)
			name = list.items[0]->user_name[0]
				   ? list.items[0]->user_name
				   : list.items[0]->uin;
		free(account->nick_name);
		account->nick_name = strdup(name);
		free(account->uin);
		account->uin = strdup(list.count ? list.items[0]->uin : "");
		if (!account->nick_name || !account->uin)
			rc = -ENOMEM;
		else
			rc = name_accounts(catalog);
	}
	pthread_mutex_unlock(&catalog->lock);
	log_debug("account %s: %zu complete reports in %zu tasks", key,
		  list.count, task_count);
	return rc;
fail:
	free_reports(list.items, list.count);
	return rc;
}

/* ---- the account list ---- */

struct member_list {
	struct catalog_member_info *items;
	size_t count;
	size_t capacity;
};

static int collect_member(json_t *item, void *ctx)
{
	struct member_list *list = ctx;
	struct catalog_member_info info;

	if (catalog_parse_member(item, &info) < 0) {
		log_warning("skipping an account without Uin or MemberId");
		return 0;
	}
	if (list->count == list->capacity) {
		size_t capacity = list->capacity ? list->capacity * 2 : 16;
		struct catalog_member_info *grown =
		    realloc(list->items, capacity * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		list->items = grown;
		list->capacity = capacity;
	}
	list->items[list->count++] = info;
	return 0;
}

/* Encodes the account list for the saved listing. Lock held. */
static json_t *accounts_to_json(struct catalog *catalog)
{
	json_t *accounts = json_array();

	if (!accounts)
		return NULL;
	for (size_t i = 0; i < catalog->account_count; i++) {
		const struct account *a = catalog->accounts[i];

		json_array_append_new(
		    accounts, json_pack("{s:s, s:s?, s:s, s:s}", "Key", a->key,
					"MemberId", a->member_id, "Uin", a->uin,
					"NickName", a->nick_name));
	}
	return json_pack("{s:i, s:s?, s:s?, s:o}", "Version", LISTING_VERSION,
			 "AdminNickName", catalog->admin_nick_name, "AdminUin",
			 catalog->admin_uin, "Accounts", accounts);
}

static int compare_account_key(const void *a, const void *b)
{
	const struct account *const *x = a;
	const struct account *const *y = b;

	return strcmp((*x)->key, (*y)->key);
}

/* Lists the group's accounts through DescribeOrganizationUserInfo and swaps
 * the account list in, keeping the listings of accounts that remain.
 * Call without the lock. */
static int load_accounts(struct catalog *catalog)
{
	struct member_list members = {0};
	struct account **accounts = NULL;
	struct api_error error;
	json_t *saved;
	size_t *origin;
	const char *admin_nick = NULL;
	const char *admin_uin = NULL;
	size_t count = 0;
	char message[768];
	int rc;

	rc = api_page(api_call_adapter, catalog->options.api,
		      "DescribeOrganizationUserInfo", NULL, 100, 0,
		      collect_member, &members, &error);
	if (rc < 0) {
		note_unreachable(catalog, &error);
		if (error.code[0] == '\0' ||
		    api_code_is_auth_failure(error.code) ||
		    api_code_is_retryable(error.code)) {
			report_failure(
			    catalog, &error,
			    "listing the group's accounts failed: %s",
			    api_format_error(&error, message, sizeof(message)));
			free(members.items);
			return rc;
		}
		/* Callers outside a group get an error here, not a list. */
		log_info("not a group administrator (%s); showing the "
			 "caller's own account only",
			 api_format_error(&error, message, sizeof(message)));
		members.count = 0;
	}
	accounts = calloc(members.count + 1, sizeof(*accounts));
	/* origin[i] is 1 + the index in the old list of accounts[i], or 0 for
	 * a new account, so that a failure can put the old list back. */
	origin = calloc(members.count + 1, sizeof(*origin));
	if (!accounts || !origin) {
		free(accounts);
		free(origin);
		free(members.items);
		return -ENOMEM;
	}
	for (size_t i = 0; i < members.count; i++) {
		struct catalog_member_info *m = &members.items[i];

		if (strcmp(m->role, "Admin") == 0) {
			if (!admin_uin || strcmp(m->uin, admin_uin) < 0) {
				admin_uin = m->uin;
				admin_nick = m->nick_name;
			}
		}
	}

	pthread_mutex_lock(&catalog->lock);
	if (admin_uin) {
		free(catalog->admin_nick_name);
		free(catalog->admin_uin);
		catalog->admin_nick_name = strdup(admin_nick);
		catalog->admin_uin = strdup(admin_uin);
	}
	/* The caller's own account, then every member, each kept from the
	 * previous list when it is still there. */
	for (size_t i = 0; i <= members.count; i++) {
		struct catalog_member_info *m =
		    i < members.count ? &members.items[i] : NULL;
		const char *key = m ? m->member_id : "self";
		struct account *account;
		bool duplicate = false;

		if (m && (strcmp(m->role, "Admin") == 0 || !m->member_id[0]))
			continue;
		for (size_t j = 0; j < count; j++)
			if (strcmp(accounts[j]->key, key) == 0)
				duplicate = true;
		if (duplicate)
			continue;
		account = find_account_by_key(catalog, key);
		if (account) {
			for (size_t j = 0; j < catalog->account_count; j++) {
				if (catalog->accounts[j] == account) {
					catalog->accounts[j] = NULL;
					origin[count] = j + 1;
				}
			}
		} else {
			account =
			    new_account(key, m ? m->member_id : NULL,
					m ? m->uin : "", m ? m->nick_name : "");
			if (!account) {
				rc = -ENOMEM;
				break;
			}
		}
		if (!m && catalog->admin_nick_name) {
			free(account->nick_name);
			free(account->uin);
			account->nick_name = strdup(catalog->admin_nick_name);
			account->uin = strdup(catalog->admin_uin);
		} else if (m) {
			free(account->nick_name);
			free(account->uin);
			account->nick_name = strdup(m->nick_name);
			account->uin = strdup(m->uin);
		}
		accounts[count++] = account;
		if (!account->nick_name || !account->uin) {
			rc = -ENOMEM;
			break;
		}
	}
	if (rc == -ENOMEM) {
		/* Put the survivors back; the new list is dropped. */
		for (size_t j = 0; j < count; j++) {
			if (origin[j])
				catalog->accounts[origin[j] - 1] = accounts[j];
			else
				free_account(accounts[j]);
		}
		free(accounts);
		free(origin);
		pthread_mutex_unlock(&catalog->lock);
		free(members.items);
		return rc;
	}
	free(origin);
	for (size_t j = 0; j < catalog->account_count; j++)
		free_account(catalog->accounts[j]);
	free(catalog->accounts);
	qsort(accounts, count, sizeof(*accounts), compare_account_key);
	catalog->accounts = accounts;
	catalog->account_count = count;
	rc = name_accounts(catalog);
	catalog->accounts_loaded = true;
	catalog->accounts_at = catalog_now();
	saved = rc == 0 ? accounts_to_json(catalog) : NULL;
	pthread_mutex_unlock(&catalog->lock);
	free(members.items);
	if (saved)
		save_listing(catalog, "accounts", false, saved);
	json_decref(saved);
	log_debug("%zu accounts", count);
	return rc;
}

/* ---- freshness (call with the lock held; may release it) ---- */

static bool is_stale(const struct catalog *catalog, double at)
{
	return catalog_now() - at >= (double)catalog->options.dir_ttl;
}

/* Makes sure the account list is loaded and fresh. Returns with the lock
 * held, 0 or a negated errno. A failed refresh keeps the old list. */
static int ensure_accounts(struct catalog *catalog)
{
	double deadline = catalog_now() + WAIT_LIMIT_SECONDS;
	int rc;

	while (!catalog->accounts_loaded ||
	       is_stale(catalog, catalog->accounts_at)) {
		if (inflight_has(catalog, "accounts")) {
			rc = wait_for_change(catalog, deadline,
					     "the account list");
			if (rc < 0)
				return rc;
			continue;
		}
		rc = inflight_add(catalog, "accounts");
		if (rc < 0)
			return rc;
		pthread_mutex_unlock(&catalog->lock);
		rc = load_accounts(catalog);
		pthread_mutex_lock(&catalog->lock);
		inflight_remove(catalog, "accounts");
		pthread_cond_broadcast(&catalog->changed);
		if (rc < 0) {
			if (!catalog->accounts_loaded)
				return rc;
			log_warning("keeping the previous account list; "
				    "retrying in %d s",
				    RETRY_AFTER_FAILURE);
			catalog->accounts_at = catalog_now() -
					       catalog->options.dir_ttl +
					       RETRY_AFTER_FAILURE;
		}
	}
	return 0;
}

/* Makes sure the account named name is listed and fresh, and returns it
 * with the lock held, or NULL with *rc set. */
static struct account *ensure_account(struct catalog *catalog, const char *name,
				      int *rc)
{
	double deadline = catalog_now() + WAIT_LIMIT_SECONDS;
	struct account *account;
	char *list_key;
	char *key;
	char *member_id;
	char *wanted_key = NULL;

	for (;;) {
		*rc = ensure_accounts(catalog);
		if (*rc < 0)
			break;
		/* After the first round the account is found by key, since a
		 * caller outside a group is renamed by its first listing. */
		account = wanted_key ? find_account_by_key(catalog, wanted_key)
				     : find_account_by_name(catalog, name);
		if (!account) {
			*rc = -ENOENT;
			break;
		}
		if (!wanted_key && !(wanted_key = strdup(account->key))) {
			*rc = -ENOMEM;
			break;
		}
		if (account->listed && !is_stale(catalog, account->listed_at)) {
			free(wanted_key);
			return account;
		}
		list_key = key_of("list", account->key, "");
		if (!list_key) {
			*rc = -ENOMEM;
			break;
		}
		if (inflight_has(catalog, list_key)) {
			free(list_key);
			*rc = wait_for_change(catalog, deadline,
					      "a report listing");
			if (*rc < 0)
				break;
			continue;
		}
		key = strdup(account->key);
		member_id =
		    account->member_id ? strdup(account->member_id) : NULL;
		if (!key || (account->member_id && !member_id) ||
		    inflight_add(catalog, list_key) < 0) {
			free(key);
			free(member_id);
			free(list_key);
			*rc = -ENOMEM;
			break;
		}
		pthread_mutex_unlock(&catalog->lock);
		*rc = list_account(catalog, key, member_id);
		pthread_mutex_lock(&catalog->lock);
		inflight_remove(catalog, list_key);
		pthread_cond_broadcast(&catalog->changed);
		free(list_key);
		if (*rc < 0) {
			account = find_account_by_key(catalog, key);
			if (!account || !account->listed) {
				free(key);
				free(member_id);
				break;
			}
			log_warning("account %s: keeping the previous "
				    "listing; retrying in %d s",
				    key, RETRY_AFTER_FAILURE);
			account->listed_at = catalog_now() -
					     catalog->options.dir_ttl +
					     RETRY_AFTER_FAILURE;
		}
		free(key);
		free(member_id);
	}
	free(wanted_key);
	return NULL;
}

/* ---- URL resolution ---- */

/* Resolves the URLs of ids (at most CATALOG_URL_BATCH) of one account in
 * one call, and stores them in the tree. Call without the lock. */
static int resolve_batch(struct catalog *catalog, const char *key,
			 const char *member_id, char **ids, size_t count)
{
	struct api_error error;
	json_t *request;
	json_t *response = NULL;
	json_t *list;
	json_t *item;
	size_t index;
	char message[768];
	size_t returned = 0;
	double now;
	int rc;

	request = json_pack("{s:i}", "Type", 1);
	list = json_array();
	if (!request || !list) {
		json_decref(request);
		json_decref(list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < count; i++)
		json_array_append_new(list, json_string(ids[i]));
	json_object_set_new(request, "ReportItemKeyList",
			    json_pack("[{s:o}]", "TaskLogList", list));
	if (member_id)
		json_object_set_new(request, "MemberId",
				    json_pack("[s]", member_id));
	rc = api_call(catalog->options.api, "DescribeTaskLogURL", request,
		      &response, &error);
	json_decref(request);
	if (rc < 0) {
		log_msg(failure_level(&error),
			"account %s: resolving %zu report URLs (first %s) "
			"failed: %s",
			key, count, ids[0],
			api_format_error(&error, message, sizeof(message)));
		return rc;
	}
	now = catalog_now();
	pthread_mutex_lock(&catalog->lock);
	struct account *account = find_account_by_key(catalog, key);

	json_array_foreach(json_object_get(response, "Data"), index, item)
	{
		char id[CATALOG_MAX_ID_BYTES];
		const char *url = api_json_string(item, "URL");
		struct report *report;

		if (!account || !url || !*url ||
		    !copy_field(item, "LogId", id, sizeof(id), NULL))
			continue;
		if (strncmp(url, "https://", 8) != 0 &&
		    strncmp(url, "http://", 7) != 0) {
			log_warning("account %s: report %s: ignoring a URL "
				    "that is not http or https",
				    key, id);
			continue;
		}
		report = find_report_by_id(account, id);
		if (!report)
			continue;
		wipe_url(report);
		report->url = strdup(url);
		report->url_time = now;
		returned++;
	}
	pthread_mutex_unlock(&catalog->lock);
	json_decref(response);
	log_debug("account %s: resolved %zu of %zu report URLs", key, returned,
		  count);
	return 0;
}

/* Picks the reports of one task to resolve with report: those without a
 * URL young enough for url_ttl, not already in flight. Lock held. */
static size_t pick_batch(struct catalog *catalog, struct account *account,
			 struct report *report, char **ids, size_t max)
{
	struct task *task;
	double oldest = catalog_now() - catalog->options.url_ttl;
	size_t count = 0;
	char *key;

	ids[count++] = strdup(report->id);
	if (catalog->options.url_ttl == 0)
		return ids[0] ? 1 : 0;
	task = find_task_by_id(account, report->task_id);
	for (size_t i = 0; task && i < task->report_count && count < max; i++) {
		struct report *other = task->reports[i];

		if (other == report || other->unavailable ||
		    (other->url && other->url_time >= oldest))
			continue;
		key = key_of("url", account->key, other->id);
		if (key && !inflight_has(catalog, key))
			ids[count++] = strdup(other->id);
		free(key);
	}
	for (size_t i = 0; i < count; i++)
		if (!ids[i])
			return 0;
	return count;
}

static void free_ids(char **ids, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(ids[i]);
}

int catalog_resolve_url(struct catalog *catalog,
			const struct catalog_file *file, double not_before,
			char **url)
{
	double deadline = catalog_now() + WAIT_LIMIT_SECONDS;
	char *ids[CATALOG_URL_BATCH];
	char *member_id = NULL;
	struct account *account;
	struct report *report;
	bool resolved_here = false;
	size_t count;
	char *key;
	int rc = 0;

	*url = NULL;
	key = key_of("url", file->account, file->report_id);
	if (!key)
		return -ENOMEM;
	pthread_mutex_lock(&catalog->lock);
	for (;;) {
		account = find_account_by_key(catalog, file->account);
		report = account ? find_report_by_id(account, file->report_id)
				 : NULL;
		if (!report) {
			log_error("account %s: report %s is no longer listed",
				  file->account, file->report_id);
			rc = -ENOENT;
			break;
		}
		if (report->url && report->url_time >= not_before) {
			*url = strdup(report->url);
			rc = *url ? 0 : -ENOMEM;
			break;
		}
		if (resolved_here) {
			log_error("account %s: DescribeTaskLogURL returned "
				  "no URL for report %s",
				  file->account, file->report_id);
			rc = -ENOENT;
			break;
		}
		if (inflight_has(catalog, key)) {
			rc = wait_for_change(catalog, deadline, "a report URL");
			if (rc < 0)
				break;
			continue;
		}
		count = pick_batch(catalog, account, report, ids,
				   CATALOG_URL_BATCH);
		if (count == 0) {
			rc = -ENOMEM;
			break;
		}
		for (size_t i = 0; i < count; i++) {
			char *k = key_of("url", account->key, ids[i]);

			if (k)
				inflight_add(catalog, k);
			free(k);
		}
		member_id =
		    account->member_id ? strdup(account->member_id) : NULL;
		pthread_mutex_unlock(&catalog->lock);
		rc = resolve_batch(catalog, file->account, member_id, ids,
				   count);
		pthread_mutex_lock(&catalog->lock);
		for (size_t i = 0; i < count; i++) {
			char *k = key_of("url", file->account, ids[i]);

			if (k)
				inflight_remove(catalog, k);
			free(k);
		}
		pthread_cond_broadcast(&catalog->changed);
		free_ids(ids, count);
		free(member_id);
		member_id = NULL;
		if (rc < 0)
			break;
		resolved_here = true;
	}
	pthread_mutex_unlock(&catalog->lock);
	free(key);
	return rc;
}

/* ---- probing ---- */

/* The result of one probe, kept until it is stored in the tree. */
struct probe_outcome {
	char id[CATALOG_MAX_ID_BYTES];
	bool ok;
	bool unavailable;
	struct cache_meta meta;
};

/* Records a probe's result in the disk cache, with the first block. */
static int store_probe(struct catalog *catalog, const char *account,
		       const struct fetch_job *job, const char *time_text,
		       struct probe_outcome *outcome)
{
	struct cache_entry *entry;
	struct cache_meta *meta = &outcome->meta;
	char key[CATALOG_MAX_ID_BYTES * 2 + 2];
	char where[512];
	size_t expected;
	int rc;

	if (job->result.total_size < 0) {
		log_error("account %s: report %s: the object store sent no "
			  "size (HTTP %ld, %s)",
			  account, outcome->id, job->result.http_status,
			  log_redact_url(job->url, where, sizeof(where)));
		return -EIO;
	}
	expected = job->result.total_size < CACHE_BLOCK_SIZE
		       ? (size_t)job->result.total_size
		       : CACHE_BLOCK_SIZE;
	if (job->result.length != expected) {
		log_error("account %s: report %s: the object store sent %zu "
			  "of %zu bytes",
			  account, outcome->id, job->result.length, expected);
		return -EIO;
	}
	memset(meta, 0, sizeof(*meta));
	meta->size = job->result.total_size;
	snprintf(meta->etag, sizeof(meta->etag), "%s", job->result.etag);
	snprintf(meta->content_type, sizeof(meta->content_type), "%s",
		 job->result.content_type);
	if (!names_extension_from_url(job->url, meta->ext, sizeof(meta->ext)) &&
	    !names_extension_from_type(job->result.content_type, meta->ext,
				       sizeof(meta->ext)))
		meta->ext[0] = '\0';
	snprintf(meta->report_time, sizeof(meta->report_time), "%s", time_text);
	fill_cache_key(key, sizeof(key), account, outcome->id);
	rc = cache_put_meta(catalog->options.cache, key, meta);
	if (rc < 0) {
		log_warning("account %s: report %s: storing its metadata "
			    "failed: %s",
			    account, outcome->id, strerror(-rc));
		return 0;
	}
	if (expected == 0 ||
	    cache_entry_open(catalog->options.cache, key, &entry) < 0)
		return 0;
	rc = cache_entry_store(entry, 0, job->buf, expected);
	if (rc < 0 && rc != -ENOSPC)
		log_warning("account %s: report %s: caching its first block "
			    "failed: %s",
			    account, outcome->id, strerror(-rc));
	cache_entry_release(entry);
	return 0;
}

/* Takes up to requested probe buffers from the shared budget and returns
 * how many it took, 0 when none are free. */
static size_t take_probe_buffers(struct catalog *catalog, size_t requested)
{
	size_t taken;

	pthread_mutex_lock(&catalog->lock);
	taken = requested < catalog->probe_buffers_free
		    ? requested
		    : catalog->probe_buffers_free;
	catalog->probe_buffers_free -= taken;
	pthread_mutex_unlock(&catalog->lock);
	return taken;
}

static void return_probe_buffers(struct catalog *catalog, size_t count)
{
	pthread_mutex_lock(&catalog->lock);
	catalog->probe_buffers_free += count;
	pthread_mutex_unlock(&catalog->lock);
}

/* Fetches the first block of each report in outcomes (URLs in urls), as
 * many at a time as it gets probe buffers, at most PROBE_PARALLEL. Returns
 * the number that failed. */
static size_t probe_reports(struct catalog *catalog, const char *account,
			    struct probe_outcome *outcomes, char **urls,
			    char **times, size_t count)
{
	struct fetch_job jobs[PROBE_PARALLEL];
	size_t requested = count < PROBE_PARALLEL ? count : PROBE_PARALLEL;
	size_t budget = take_probe_buffers(catalog, requested);
	size_t parallel = budget > 0 ? budget : 1;
	size_t failed = 0;
	char *buffers;

	buffers = malloc(parallel * CACHE_BLOCK_SIZE);
	if (!buffers) {
		return_probe_buffers(catalog, budget);
		return count;
	}
	for (size_t start = 0; start < count; start += parallel) {
		size_t n = count - start < parallel ? count - start : parallel;
		size_t queued = 0;
		size_t slot_of[PROBE_PARALLEL];

		for (size_t i = 0; i < n; i++) {
			if (!urls[start + i])
				continue;
			memset(&jobs[queued], 0, sizeof(jobs[queued]));
			jobs[queued].url = urls[start + i];
			jobs[queued].offset = 0;
			jobs[queued].length = CACHE_BLOCK_SIZE;
			jobs[queued].buf =
			    buffers + queued * (size_t)CACHE_BLOCK_SIZE;
			slot_of[queued++] = start + i;
		}
		fetch_many(catalog->options.fetch, jobs, queued, (int)parallel);
		for (size_t q = 0; q < queued; q++) {
			struct probe_outcome *outcome = &outcomes[slot_of[q]];

			if (jobs[q].status < 0) {
				log_error("account %s: report %s: reading "
					  "its first block failed: %s",
					  account, outcome->id, jobs[q].error);
				failed++;
				continue;
			}
			if (store_probe(catalog, account, &jobs[q],
					times[slot_of[q]], outcome) < 0) {
				failed++;
				continue;
			}
			outcome->ok = true;
		}
	}
	free(buffers);
	return_probe_buffers(catalog, budget);
	return failed;
}

/* Copies the ids, times and fresh URLs of the reports of task that lack
 * metadata. Lock held. */
static size_t collect_unprobed(struct task *task,
			       struct probe_outcome **outcomes, char ***times)
{
	size_t count = 0;

	*outcomes = calloc(task->report_count + 1, sizeof(**outcomes));
	*times = calloc(task->report_count + 1, sizeof(**times));
	if (!*outcomes || !*times)
		return 0;
	for (size_t i = 0; i < task->report_count; i++) {
		struct report *report = task->reports[i];

		if (report->have_meta || report->unavailable)
			continue;
		snprintf((*outcomes)[count].id, sizeof((*outcomes)[count].id),
			 "%s", report->id);
		(*times)[count] = strdup(report->time_text);
		count++;
	}
	return count;
}

/* Probes every report of the task that lacks metadata. Called with the lock
 * held, releases it while working, and returns with it held; the caller
 * then looks the task up again, since the tree may have changed. Returns
 * 0, -EAGAIN when another thread is probing the task (wait, then look up
 * again), or another negated errno. */
static int probe_task(struct catalog *catalog, struct account *account,
		      struct task *task)
{
	struct probe_outcome *outcomes = NULL;
	char **times = NULL;
	char **urls = NULL;
	char *account_key = NULL;
	char *task_id = NULL;
	char *member_id = NULL;
	char *probe_key = NULL;
	size_t count = 0;
	size_t failed = 0;
	int rc = -ENOMEM;

	probe_key = key_of("probe", account->key, task->id);
	account_key = strdup(account->key);
	task_id = strdup(task->id);
	if (!probe_key || !account_key || !task_id)
		goto out;
	if (inflight_has(catalog, probe_key)) {
		rc = -EAGAIN;
		goto out;
	}
	count = collect_unprobed(task, &outcomes, &times);
	if (!outcomes || !times)
		goto out;
	if (count == 0) {
		rc = name_task_files(task);
		goto out;
	}
	urls = calloc(count, sizeof(*urls));
	if (account->member_id)
		member_id = strdup(account->member_id);
	if (!urls || (account->member_id && !member_id))
		goto out;
	for (size_t i = 0; i < count; i++)
		if (!times[i])
			goto out;
	if (inflight_add(catalog, probe_key) < 0)
		goto out;
	pthread_mutex_unlock(&catalog->lock);

	rc = 0;
	for (size_t start = 0; start < count && rc == 0;
	     start += CATALOG_URL_BATCH) {
		size_t n = count - start < CATALOG_URL_BATCH
			       ? count - start
			       : CATALOG_URL_BATCH;
		char *ids[CATALOG_URL_BATCH];

		for (size_t i = 0; i < n; i++)
			ids[i] = outcomes[start + i].id;
		rc = resolve_batch(catalog, account_key, member_id, ids, n);
	}
	if (rc == 0) {
		pthread_mutex_lock(&catalog->lock);
		struct account *current =
		    find_account_by_key(catalog, account_key);

		for (size_t i = 0; i < count; i++) {
			struct report *report =
			    current ? find_report_by_id(current, outcomes[i].id)
				    : NULL;

			if (report && report->url)
				urls[i] = strdup(report->url);
			else
				outcomes[i].unavailable = true;
		}
		pthread_mutex_unlock(&catalog->lock);
		failed = probe_reports(catalog, account_key, outcomes, urls,
				       times, count);
	}

	pthread_mutex_lock(&catalog->lock);
	inflight_remove(catalog, probe_key);
	pthread_cond_broadcast(&catalog->changed);
	account = find_account_by_key(catalog, account_key);
	for (size_t i = 0; account && i < count; i++) {
		struct report *report =
		    find_report_by_id(account, outcomes[i].id);

		if (!report)
			continue;
		if (outcomes[i].unavailable) {
			log_warning("account %s: DescribeTaskLogURL returned "
				    "no URL for report %s; leaving it out",
				    account_key, outcomes[i].id);
			report->unavailable = true;
		} else if (outcomes[i].ok) {
			report->have_meta = true;
			report->size = outcomes[i].meta.size;
			memcpy(report->ext, outcomes[i].meta.ext,
			       sizeof(report->ext));
			memcpy(report->etag, outcomes[i].meta.etag,
			       sizeof(report->etag));
		}
	}
	if (rc == 0 && failed > 0) {
		log_error("account %s: task %s: %zu of %zu reports could not "
			  "be read, so the directory cannot be listed",
			  account_key, task_id, failed, count);
		rc = -EIO;
	}
out:
	if (urls) {
		for (size_t i = 0; i < count; i++) {
			if (urls[i])
				explicit_bzero(urls[i], strlen(urls[i]));
			free(urls[i]);
		}
		free(urls);
	}
	if (times)
		free_ids(times, count);
	free(times);
	free(outcomes);
	free(member_id);
	free(task_id);
	free(account_key);
	free(probe_key);
	return rc;
}

/* ---- paths ---- */

/* The node a path names, valid while the lock is held. */
struct located {
	enum catalog_kind kind;
	struct account *account;
	struct task *task;
	struct report *report;
};

/* Splits "/a/b/c" into at most three components. Returns the count, or
 * -ENOENT for a deeper path or a component longer than a name can be. */
static int split_path(const char *path, char parts[3][NAMES_MAX_BYTES + 1])
{
	int count = 0;

	if (path[0] != '/')
		return -ENOENT;
	while (*path) {
		const char *start;
		size_t length;

		while (*path == '/')
			path++;
		if (!*path)
			break;
		start = path;
		while (*path && *path != '/')
			path++;
		length = (size_t)(path - start);
		if (count == 3 || length > NAMES_MAX_BYTES)
			return -ENOENT;
		memcpy(parts[count], start, length);
		parts[count][length] = '\0';
		count++;
	}
	return count;
}

/* Looks path up, listing and probing as needed, with the lock held (it is
 * released while the network is used). When named is true, a task's files
 * are probed and named even when only the task itself was asked for. */
static int locate(struct catalog *catalog, const char *path, bool named,
		  struct located *out)
{
	char parts[3][NAMES_MAX_BYTES + 1];
	double deadline = catalog_now() + WAIT_LIMIT_SECONDS;
	struct account *account;
	struct task *task;
	int count;
	int rc;

	memset(out, 0, sizeof(*out));
	count = split_path(path, parts);
	if (count < 0)
		return count;
	for (int round = 0; round < 20; round++) {
		rc = ensure_accounts(catalog);
		if (rc < 0)
			return rc;
		if (count == 0) {
			out->kind = CATALOG_ROOT;
			return 0;
		}
		account = ensure_account(catalog, parts[0], &rc);
		if (!account)
			return rc;
		out->account = account;
		if (count == 1) {
			out->kind = CATALOG_ACCOUNT;
			return 0;
		}
		task = find_task_by_name(account, parts[1]);
		if (!task)
			return -ENOENT;
		out->task = task;
		if (count == 2 && !named) {
			out->kind = CATALOG_TASK;
			return 0;
		}
		if (!task->named) {
			rc = probe_task(catalog, account, task);
			if (rc == -EAGAIN)
				rc = wait_for_change(catalog, deadline,
						     "a directory probe");
			if (rc < 0)
				return rc;
			continue;
		}
		if (count == 2) {
			out->kind = CATALOG_TASK;
			return 0;
		}
		out->report = find_report_by_name(task, parts[2]);
		if (!out->report)
			return -ENOENT;
		out->kind = CATALOG_REPORT;
		return 0;
	}
	log_error("%s: the listing kept changing while it was read", path);
	return -EIO;
}

static void fill_attr(const struct catalog *catalog, const struct located *node,
		      struct catalog_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->kind = node->kind;
	switch (node->kind) {
	case CATALOG_ROOT:
		attr->ino = 1;
		/* The caller's own account is always listed, so its newest
		 * report gives a time that is the same on every mount. */
		for (size_t i = 0; i < catalog->account_count; i++)
			if (!catalog->accounts[i]->member_id)
				attr->mtime = catalog->accounts[i]->mtime;
		break;
	case CATALOG_ACCOUNT:
		attr->ino = node->account->ino;
		attr->mtime = node->account->mtime;
		break;
	case CATALOG_TASK:
		attr->ino = node->task->ino;
		attr->mtime = node->task->mtime;
		break;
	case CATALOG_REPORT:
		attr->ino = node->report->ino;
		attr->mtime = node->report->mtime;
		attr->size = node->report->size;
		break;
	}
}

int catalog_getattr(struct catalog *catalog, const char *path,
		    struct catalog_attr *attr)
{
	struct located node;
	int rc;

	pthread_mutex_lock(&catalog->lock);
	rc = locate(catalog, path, false, &node);
	if (rc == 0)
		fill_attr(catalog, &node, attr);
	pthread_mutex_unlock(&catalog->lock);
	return rc;
}

/* Lists every account that is not listed or whose listing is stale. An
 * account whose listing fails is logged and keeps mtime 0. Lock held. */
static void list_every_account(struct catalog *catalog)
{
	size_t count = catalog->account_count;
	char **names = calloc(count + 1, sizeof(*names));
	int rc;

	if (!names)
		return;
	for (size_t i = 0; i < count; i++)
		names[i] = strdup(catalog->accounts[i]->name);
	for (size_t i = 0; i < count; i++)
		if (names[i])
			ensure_account(catalog, names[i], &rc);
	free_ids(names, count);
	free(names);
}

int catalog_readdir(struct catalog *catalog, const char *path,
		    catalog_fill_fn fill, void *ctx)
{
	struct located node;
	struct located child = {0};
	struct catalog_attr attr;
	int rc;

	pthread_mutex_lock(&catalog->lock);
	/* Listing a task probes its reports, since their names carry the
	 * extension of their content. */
	rc = locate(catalog, path, true, &node);
	if (rc < 0)
		goto out;
	switch (node.kind) {
	case CATALOG_ROOT:
		/* Every account is listed first: the attributes given with a
		 * directory entry are cached by the kernel, and an account's
		 * mtime comes from its listing. */
		list_every_account(catalog);
		for (size_t i = 0; i < catalog->account_count; i++) {
			struct account *account = catalog->accounts[i];

			child.kind = CATALOG_ACCOUNT;
			child.account = account;
			fill_attr(catalog, &child, &attr);
			if (fill(ctx, account->name, &attr))
				break;
		}
		break;
	case CATALOG_ACCOUNT:
		for (size_t i = 0; i < node.account->task_count; i++) {
			child.kind = CATALOG_TASK;
			child.task = node.account->tasks[i];
			fill_attr(catalog, &child, &attr);
			if (fill(ctx, child.task->name, &attr))
				break;
		}
		break;
	case CATALOG_TASK:
		for (size_t i = 0; i < node.task->report_count; i++) {
			child.kind = CATALOG_REPORT;
			child.report = node.task->reports[i];
			fill_attr(catalog, &child, &attr);
			if (fill(ctx, child.report->name, &attr))
				break;
		}
		break;
	case CATALOG_REPORT:
		rc = -ENOTDIR;
		break;
	}
out:
	pthread_mutex_unlock(&catalog->lock);
	return rc;
}

int catalog_open(struct catalog *catalog, const char *path,
		 struct catalog_file *file)
{
	struct located node;
	int rc;

	pthread_mutex_lock(&catalog->lock);
	rc = locate(catalog, path, false, &node);
	if (rc == 0 && node.kind != CATALOG_REPORT)
		rc = -EISDIR;
	if (rc == 0) {
		memset(file, 0, sizeof(*file));
		fill_cache_key(file->key, sizeof(file->key), node.account->key,
			       node.report->id);
		snprintf(file->account, sizeof(file->account), "%s",
			 node.account->key);
		snprintf(file->report_id, sizeof(file->report_id), "%s",
			 node.report->id);
		file->size = node.report->size;
		snprintf(file->etag, sizeof(file->etag), "%s",
			 node.report->etag);
	}
	pthread_mutex_unlock(&catalog->lock);
	return rc;
}

/* Loads the saved listing of account key, if there is one. */
static void load_saved_account(struct catalog *catalog, const char *key,
			       double listed_at)
{
	struct report_list list = {.account = key};
	char path[4096];
	const char *saved_key;
	json_t *root;
	json_t *item;
	size_t index;

	if (listing_path(catalog, key, true, path, sizeof(path)) < 0)
		return;
	root = load_json(path);
	if (!root)
		return;
	saved_key = api_json_string(root, "Key");
	if (!saved_key || strcmp(saved_key, key) != 0) {
		log_warning("ignoring the saved listing %s: it is not the "
			    "listing of account %s",
			    path, key);
		json_decref(root);
		return;
	}
	json_array_foreach(json_object_get(root, "Reports"), index, item)
	{
		if (collect_report(item, &list) < 0)
			break;
	}
	json_decref(root);
	drop_duplicate_ids(&list);
	if (install_listing(catalog, key, &list, listed_at) == 0)
		log_debug("account %s: %zu reports from the saved listing", key,
			  list.count);
}

/* Replaces the tree with the listings saved by an earlier mount, which are
 * refreshed RETRY_AFTER_FAILURE seconds from now. Returns 0, or -ENOENT
 * when no account list was saved. Call without the lock. */
static int load_saved_listings(struct catalog *catalog)
{
	double retry_at = catalog_now() - (double)catalog->options.dir_ttl +
			  RETRY_AFTER_FAILURE;
	struct account **accounts;
	char path[4096];
	char **keys;
	json_t *root;
	json_t *list;
	json_t *item;
	size_t count = 0;
	size_t index;
	int rc = 0;

	if (!catalog->options.state_dir ||
	    listing_path(catalog, "accounts", false, path, sizeof(path)) < 0)
		return -ENOENT;
	root = load_json(path);
	list = json_object_get(root, "Accounts");
	if (!json_is_array(list) || json_array_size(list) == 0) {
		json_decref(root);
		return -ENOENT;
	}
	accounts = calloc(json_array_size(list) + 1, sizeof(*accounts));
	keys = calloc(json_array_size(list) + 1, sizeof(*keys));
	if (!accounts || !keys) {
		free(accounts);
		free(keys);
		json_decref(root);
		return -ENOMEM;
	}
	json_array_foreach(list, index, item)
	{
		const char *key = api_json_string(item, "Key");
		struct account *account;

		if (!key || !*key || strlen(key) >= CATALOG_MAX_ID_BYTES)
			continue;
		account = new_account(key, api_json_string(item, "MemberId"),
				      api_json_string(item, "Uin"),
				      api_json_string(item, "NickName"));
		keys[count] = strdup(key);
		if (!account || !keys[count]) {
			free_account(account);
			rc = -ENOMEM;
			break;
		}
		accounts[count++] = account;
	}

	pthread_mutex_lock(&catalog->lock);
	for (size_t i = 0; i < catalog->account_count; i++)
		free_account(catalog->accounts[i]);
	free(catalog->accounts);
	free(catalog->admin_nick_name);
	free(catalog->admin_uin);
	catalog->admin_nick_name = NULL;
	catalog->admin_uin = NULL;
	if (api_json_string(root, "AdminUin")) {
		catalog->admin_nick_name =
		    strdup(api_json_string(root, "AdminNickName")
			       ? api_json_string(root, "AdminNickName")
			       : "");
		catalog->admin_uin = strdup(api_json_string(root, "AdminUin"));
	}
	qsort(accounts, count, sizeof(*accounts), compare_account_key);
	catalog->accounts = accounts;
	catalog->account_count = count;
	if (rc == 0)
		rc = name_accounts(catalog);
	catalog->accounts_loaded = true;
	catalog->accounts_at = retry_at;
	pthread_mutex_unlock(&catalog->lock);
	json_decref(root);

	for (size_t i = 0; rc == 0 && i < count; i++)
		load_saved_account(catalog, keys[i], retry_at);
	free_ids(keys, count);
	free(keys);
	return rc;
}

/* Installs the saved listing of each account not listed yet whose file
 * was written less than dir_ttl ago, as listed when it was written. So a
 * remount soon after an unmount lists nothing again. Call without the
 * lock. */
static void adopt_fresh_listings(struct catalog *catalog)
{
	time_t now = time(NULL);
	char **keys = NULL;
	size_t count = 0;

	if (!catalog->options.state_dir || catalog->options.dir_ttl == 0)
		return;
	pthread_mutex_lock(&catalog->lock);
	keys = calloc(catalog->account_count + 1, sizeof(*keys));
	for (size_t i = 0; keys && i < catalog->account_count; i++) {
		if (catalog->accounts[i]->listed)
			continue;
		keys[count] = strdup(catalog->accounts[i]->key);
		if (keys[count])
			count++;
	}
	pthread_mutex_unlock(&catalog->lock);

	for (size_t i = 0; i < count; i++) {
		char path[4096];
		struct stat st;
		double age;

		if (listing_path(catalog, keys[i], true, path, sizeof(path)) <
			0 ||
		    stat(path, &st) < 0)
			continue;
		age = difftime(now, st.st_mtime);
		/* A file dated in the future has no usable age. */
		if (age < 0 || age >= (double)catalog->options.dir_ttl)
			continue;
		load_saved_account(catalog, keys[i], catalog_now() - age);
	}
	free_ids(keys, count);
	free(keys);
}

int catalog_load(struct catalog *catalog, char *err, size_t err_size)
{
	struct located node;
	int rc;

	pthread_mutex_lock(&catalog->lock);
	catalog->startup_error = err;
	catalog->startup_error_size = err_size;
	rc = ensure_accounts(catalog);
	if (rc == 0) {
		/* The account list is always fetched, which checks the
		 * credential; the reports may come from a fresh saved
		 * listing. */
		pthread_mutex_unlock(&catalog->lock);
		adopt_fresh_listings(catalog);
		pthread_mutex_lock(&catalog->lock);
	}
	for (size_t i = 0; rc == 0 && i < catalog->account_count; i++) {
		struct account *account = catalog->accounts[i];
		char path[NAMES_MAX_BYTES + 2];

		if (account->member_id)
			continue;
		snprintf(path, sizeof(path), "/%s", account->name);
		rc = locate(catalog, path, false, &node);
		break;
	}
	catalog->startup_error = NULL;
	pthread_mutex_unlock(&catalog->lock);
	if (rc < 0 && err[0] == '\0')
		snprintf(err, err_size, "listing the reports failed: %s",
			 strerror(-rc));
	if (rc < 0 && catalog->unreachable && catalog->options.state_dir) {
		if (load_saved_listings(catalog) == 0) {
			log_warning("the API cannot be reached (%s); mounting "
				    "the listing saved by an earlier mount",
				    err);
			err[0] = '\0';
			return 0;
		}
		size_t used = strlen(err);

		snprintf(err + used, err_size - used,
			 "; no listing saved by an earlier mount in %s/%s",
			 catalog->options.state_dir, LISTING_DIR);
	}
	return rc;
}

/* The report_time that marks cached metadata as out of date; no listing
 * has it. */
#define CATALOG_STALE_TIME "(out of date)"

void catalog_forget_report(struct catalog *catalog,
			   const struct catalog_file *file)
{
	struct cache_meta meta;
	struct account *account;
	struct report *report = NULL;
	int rc;

	pthread_mutex_lock(&catalog->lock);
	account = find_account_by_key(catalog, file->account);
	if (account)
		report = find_report_by_id(account, file->report_id);
	if (report) {
		report->have_meta = false;
		/* locate() probes the reports of a task that is not named. */
		for (size_t i = 0; i < account->task_count; i++) {
			struct task *task = account->tasks[i];

			for (size_t j = 0; j < task->report_count; j++)
				if (task->reports[j] == report)
					task->named = false;
		}
	}
	pthread_mutex_unlock(&catalog->lock);

	/* load_meta_from_cache() takes metadata only when its report_time
	 * matches the listing, and no listing has this Time. */
	if (cache_get_meta(catalog->options.cache, file->key, &meta) < 0)
		return;
	snprintf(meta.report_time, sizeof(meta.report_time), "%s",
		 CATALOG_STALE_TIME);
	rc = cache_put_meta(catalog->options.cache, file->key, &meta);
	if (rc < 0)
		log_warning("account %s: report %s: marking its cached "
			    "metadata as out of date failed: %s",
			    file->account, file->report_id, strerror(-rc));
}
