/* An open report: block lookup in the cache, fetches of missing blocks
 * shared between readers, URL refresh when a signed URL expires. */
#include "reader.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Fresh URLs tried after the first one expires, per block. */
#define MAX_URL_REFRESHES 3
/* Rounds of waiting for another reader's fetch before fetching alone. */
#define MAX_SHARED_ROUNDS 3

struct reader {
	struct catalog *catalog;
	struct cache *cache;
	struct fetch *fetch;
	struct catalog_file file;
	struct cache_entry *entry; /* NULL when the cache has no entry */
	double opened_at;
	pthread_mutex_t lock;
	char *url; /* a bearer secret: wiped when replaced or freed */
	double url_time;
	/* The last fetched block, for when the cache does not keep it. */
	char *block;
	uint64_t block_index;
	size_t block_length;
	bool block_valid;
	/* Links in the list of open readers. */
	struct reader *prev;
	struct reader *next;
};

/* A block fetch in progress, which other readers of the report wait for. */
struct flight {
	char *key;
	uint64_t index;
	bool done;
	int waiters;
	struct flight *next;
};

static pthread_mutex_t flights_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flights_changed = PTHREAD_COND_INITIALIZER;
static struct flight *flights;

/* Open readers, so that those whose release the kernel never sent (it sends
 * releases asynchronously, and an unmount may overtake them) are closed at
 * shutdown. */
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reader *readers;

int reader_open(struct catalog *catalog, struct cache *cache,
		struct fetch *fetch, const struct catalog_file *file,
		struct reader **out)
{
	struct reader *reader = calloc(1, sizeof(*reader));
	int rc;

	if (!reader)
		return -ENOMEM;
	reader->catalog = catalog;
	reader->cache = cache;
	reader->fetch = fetch;
	reader->file = *file;
	reader->opened_at = catalog_now();
	pthread_mutex_init(&reader->lock, NULL);
	rc = cache_entry_open(cache, file->key, &reader->entry);
	if (rc < 0) {
		log_debug("account %s: report %s: no cache entry (%s); "
			  "reading without the cache",
			  file->account, file->report_id, strerror(-rc));
		reader->entry = NULL;
	}
	pthread_mutex_lock(&readers_lock);
	reader->next = readers;
	if (readers)
		readers->prev = reader;
	readers = reader;
	pthread_mutex_unlock(&readers_lock);
	*out = reader;
	return 0;
}

static void forget_url(struct reader *reader)
{
	if (reader->url) {
		explicit_bzero(reader->url, strlen(reader->url));
		free(reader->url);
		reader->url = NULL;
	}
}

void reader_close(struct reader *reader)
{
	if (!reader)
		return;
	pthread_mutex_lock(&readers_lock);
	if (reader->prev)
		reader->prev->next = reader->next;
	else
		readers = reader->next;
	if (reader->next)
		reader->next->prev = reader->prev;
	pthread_mutex_unlock(&readers_lock);
	if (reader->entry)
		cache_entry_release(reader->entry);
	forget_url(reader);
	free(reader->block);
	pthread_mutex_destroy(&reader->lock);
	free(reader);
}

bool reader_is_cached(struct reader *reader)
{
	return reader->entry && cache_entry_is_complete(reader->entry);
}

/* Copies the reader's URL into *url, resolving one when it has none or
 * when its URL was resolved before not_before. */
static int current_url(struct reader *reader, double not_before, char **url)
{
	char *fresh = NULL;
	int rc = 0;

	pthread_mutex_lock(&reader->lock);
	if (reader->url && reader->url_time >= not_before) {
		*url = strdup(reader->url);
		pthread_mutex_unlock(&reader->lock);
		return *url ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&reader->lock);

	rc = catalog_resolve_url(reader->catalog, &reader->file, not_before,
				 &fresh);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&reader->lock);
	forget_url(reader);
	reader->url = fresh;
	reader->url_time = catalog_now();
	*url = strdup(fresh);
	pthread_mutex_unlock(&reader->lock);
	return *url ? 0 : -ENOMEM;
}

static void free_url(char *url)
{
	if (url) {
		explicit_bzero(url, strlen(url));
		free(url);
	}
}

/* Fetches block index into buf, refreshing the URL when it has expired,
 * and checks that the object is still the one the metadata describes.
 * Returns the block's length or a negated errno. */
static long fetch_block(struct reader *reader, uint64_t index, char *buf)
{
	const struct catalog_file *file = &reader->file;
	uint64_t offset = index * (uint64_t)CACHE_BLOCK_SIZE;
	size_t length = (uint64_t)file->size - offset < CACHE_BLOCK_SIZE
			    ? (size_t)((uint64_t)file->size - offset)
			    : CACHE_BLOCK_SIZE;
	double not_before =
	    reader->opened_at - catalog_url_ttl(reader->catalog);
	struct fetch_result result;
	char err[512] = "";
	char *url = NULL;
	int rc = -EIO;

	for (int refresh = 0; refresh <= MAX_URL_REFRESHES; refresh++) {
		double started = catalog_now();

		rc = current_url(reader, not_before, &url);
		if (rc < 0)
			return -EIO;
		rc = fetch_range(reader->fetch, url, offset, length, buf,
				 &result, err, sizeof(err));
		free_url(url);
		url = NULL;
		if (rc != -FETCH_EXPIRED)
			break;
		log_info("account %s: report %s: the download URL expired "
			 "at block %" PRIu64 "; resolving a fresh one",
			 file->account, file->report_id, index);
		not_before = started;
	}
	if (rc == -FETCH_EXPIRED) {
		log_error("account %s: report %s: block %" PRIu64 ": %d fresh "
			  "URLs were rejected as expired",
			  file->account, file->report_id, index,
			  MAX_URL_REFRESHES);
		return -EIO;
	}
	if (rc == -ECANCELED) {
		log_info("account %s: report %s: reading block %" PRIu64
			 " stopped: %s",
			 file->account, file->report_id, index, err);
		return -EIO;
	}
	if (rc < 0) {
		log_error("account %s: report %s: reading block %" PRIu64
			  " failed: %s",
			  file->account, file->report_id, index, err);
		return -EIO;
	}
	if ((result.total_size >= 0 && result.total_size != file->size) ||
	    (file->etag[0] && result.etag[0] &&
	     strcmp(file->etag, result.etag) != 0)) {
		log_error("account %s: report %s: block %" PRIu64 ": the "
			  "object changed (size %" PRId64 " now %" PRId64
			  ", ETag %s now %s); dropping its cached data, so "
			  "that the next open reads the new version",
			  file->account, file->report_id, index, file->size,
			  result.total_size, file->etag,
			  result.etag[0] ? result.etag : "(none)");
		if (reader->entry)
			cache_entry_drop(reader->entry);
		pthread_mutex_lock(&reader->lock);
		reader->block_valid = false;
		pthread_mutex_unlock(&reader->lock);
		catalog_forget_report(reader->catalog, file);
		return -EIO;
	}
	if (result.length != length) {
		log_error("account %s: report %s: block %" PRIu64 ": got %zu "
			  "of %zu bytes",
			  file->account, file->report_id, index, result.length,
			  length);
		return -EIO;
	}
	return (long)length;
}

/* Joins or starts the fetch of block index. Returns true when the caller
 * must do the fetch, false after another reader's fetch has ended. */
static bool join_flight(const char *key, uint64_t index)
{
	struct flight *flight;

	pthread_mutex_lock(&flights_lock);
	for (flight = flights; flight; flight = flight->next)
		if (flight->index == index && strcmp(flight->key, key) == 0)
			break;
	if (flight) {
		flight->waiters++;
		while (!flight->done)
			pthread_cond_wait(&flights_changed, &flights_lock);
		if (--flight->waiters == 0) {
			free(flight->key);
			free(flight);
		}
		pthread_mutex_unlock(&flights_lock);
		return false;
	}
	flight = calloc(1, sizeof(*flight));
	if (flight && (flight->key = strdup(key))) {
		flight->index = index;
		flight->next = flights;
		flights = flight;
	} else {
		free(flight);
	}
	pthread_mutex_unlock(&flights_lock);
	return true;
}

static void end_flight(const char *key, uint64_t index)
{
	pthread_mutex_lock(&flights_lock);
	for (struct flight **link = &flights; *link; link = &(*link)->next) {
		struct flight *flight = *link;

		if (flight->index != index || strcmp(flight->key, key) != 0)
			continue;
		*link = flight->next;
		flight->done = true;
		if (flight->waiters == 0) {
			free(flight->key);
			free(flight);
		}
		break;
	}
	pthread_cond_broadcast(&flights_changed);
	pthread_mutex_unlock(&flights_lock);
}

void reader_shutdown(void)
{
	size_t open = 0;

	while (readers) {
		reader_close(readers);
		open++;
	}
	if (open > 0)
		log_debug(
		    "closed %zu files whose release did not arrive before "
		    "the unmount",
		    open);
	pthread_mutex_lock(&flights_lock);
	while (flights) {
		struct flight *next = flights->next;

		free(flights->key);
		free(flights);
		flights = next;
	}
	pthread_mutex_unlock(&flights_lock);
}

/* Copies from the reader's memory block when it holds block index. */
static bool copy_from_memory(struct reader *reader, uint64_t index,
			     size_t in_block, char *dst, size_t length)
{
	bool hit;

	pthread_mutex_lock(&reader->lock);
	hit = reader->block_valid && reader->block_index == index &&
	      in_block + length <= reader->block_length;
	if (hit)
		memcpy(dst, reader->block + in_block, length);
	pthread_mutex_unlock(&reader->lock);
	return hit;
}

static bool copy_from_cache(struct reader *reader, uint64_t index,
			    size_t in_block, char *dst, size_t length)
{
	long rc;

	if (!reader->entry || !cache_entry_has_block(reader->entry, index))
		return false;
	rc = cache_entry_read(reader->entry,
			      index * (uint64_t)CACHE_BLOCK_SIZE + in_block,
			      length, dst);
	return rc == (long)length;
}

/* Fetches block index, stores it in the cache, or else keeps it in the
 * reader's memory block. */
static int load_block(struct reader *reader, uint64_t index)
{
	char *buf;
	long length;
	int rc;

	buf = malloc(CACHE_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	length = fetch_block(reader, index, buf);
	if (length < 0) {
		free(buf);
		return (int)length;
	}
	rc = reader->entry
		 ? cache_entry_store(reader->entry, index, buf, (size_t)length)
		 : -ENOSPC;
	/* -ENOSPC: the cache is full. -ESTALE: the metadata changed since
	 * the open. Either way the block is served from memory. */
	if (rc < 0 && rc != -ENOSPC && rc != -ESTALE)
		log_warning("account %s: report %s: caching block %" PRIu64
			    " failed: %s",
			    reader->file.account, reader->file.report_id, index,
			    strerror(-rc));
	pthread_mutex_lock(&reader->lock);
	free(reader->block);
	reader->block = buf;
	reader->block_index = index;
	reader->block_length = (size_t)length;
	reader->block_valid = true;
	pthread_mutex_unlock(&reader->lock);
	return 0;
}

static int read_in_block(struct reader *reader, uint64_t index, size_t in_block,
			 char *dst, size_t length)
{
	int rc;

	for (int round = 0; round < MAX_SHARED_ROUNDS; round++) {
		if (copy_from_memory(reader, index, in_block, dst, length) ||
		    copy_from_cache(reader, index, in_block, dst, length))
			return 0;
		if (!join_flight(reader->file.key, index))
			continue;
		rc = load_block(reader, index);
		end_flight(reader->file.key, index);
		if (rc < 0)
			return rc;
	}
	if (copy_from_memory(reader, index, in_block, dst, length) ||
	    copy_from_cache(reader, index, in_block, dst, length))
		return 0;
	/* Other readers' blocks keep replacing this one; fetch alone. */
	rc = load_block(reader, index);
	if (rc < 0)
		return rc;
	if (copy_from_memory(reader, index, in_block, dst, length))
		return 0;
	return copy_from_cache(reader, index, in_block, dst, length) ? 0 : -EIO;
}

ssize_t reader_read(struct reader *reader, char *buf, size_t size, off_t offset)
{
	uint64_t total = (uint64_t)reader->file.size;
	uint64_t start = (uint64_t)offset;
	uint64_t end;
	size_t done = 0;
	int rc;

	if (offset < 0)
		return -EINVAL;
	if (start >= total || size == 0)
		return 0;
	end = total - start < size ? total : start + size;
	while (start + done < end) {
		uint64_t position = start + done;
		uint64_t index = position / CACHE_BLOCK_SIZE;
		size_t in_block = (size_t)(position % CACHE_BLOCK_SIZE);
		size_t length = CACHE_BLOCK_SIZE - in_block;

		if (length > end - position)
			length = (size_t)(end - position);
		rc = read_in_block(reader, index, in_block, buf + done, length);
		if (rc < 0)
			return rc;
		done += length;
	}
	return (ssize_t)done;
}
