/* An open report: block lookup in the cache, fetches of missing blocks
 * shared between readers, read-ahead on sequential access, URL refresh when
 * a signed URL expires.
 *
 * Read-ahead: a read continues a sequential run when it starts at offset 0
 * or near where the run has reached so far. "Near" allows for the kernel
 * sending one stream's reads from several threads, slightly out of order.
 * The window of blocks fetched ahead doubles with each read of a run, from
 * 2 up to READAHEAD_MAX_BLOCKS, and drops to nothing on a read elsewhere.
 * Blocks ahead are queued for a pool of worker threads, which fetch them
 * over kept-open connections and store them in the cache. A read that reaches
 * a block still in flight waits for that fetch instead of starting its
 * own. Without a cache to keep blocks in, nothing is fetched ahead. */
#include "reader.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Fresh URLs tried after the first one expires, per block. */
#define MAX_URL_REFRESHES 3
/* Rounds of waiting for another reader's fetch before fetching alone. */
#define MAX_SHARED_ROUNDS 3
/* Worker threads that fetch blocks ahead, shared by every open report. */
#define READAHEAD_WORKERS 8
/* The widest read-ahead window, in blocks. It is wide so that a block held
 * up by a lost packet does not stall a sequential reader over a slow link. */
#define READAHEAD_MAX_BLOCKS 64
/* Blocks queued for the workers, over every open report. */
#define READAHEAD_MAX_QUEUED 64
/* A read that starts at most this far before or after the end of the run
 * so far continues it. */
#define SEQUENTIAL_SLACK (4 * (uint64_t)CACHE_BLOCK_SIZE)

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
	/* One reference for the open file, one per queued or running
	 * read-ahead job; the last one frees the reader. */
	atomic_int refs;
	/* The access pattern, under lock. */
	uint64_t run_end;    /* the furthest byte the run has read to */
	unsigned run_reads;  /* reads in the run, 0 before the first read */
	uint64_t ahead_next; /* first block not yet queued ahead of the run */
	/* Under the pool's lock. */
	unsigned ahead_jobs; /* queued or running */
	bool closed;
	bool ahead_failed; /* the cache refused a block fetched ahead */
};

/* A block to fetch ahead. */
struct ahead_job {
	struct reader *reader;
	uint64_t index;
	struct ahead_job *next;
};

/* The read-ahead workers and their queue. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t threads[READAHEAD_WORKERS];
	int started; /* threads running */
	bool starting_failed;
	bool stopping;
	struct ahead_job *head;
	struct ahead_job *tail;
	size_t queued;
} pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

/* A block fetch in progress, which other readers of the report wait for. */
struct flight {
	char *key;
	uint64_t index;
	bool done;
	int waiters;
	pthread_cond_t ended; /* signalled with flights_lock held */
	struct flight *next;
};

static void fetch_ahead(struct reader *reader, uint64_t index, char *buf);

static pthread_mutex_t flights_lock = PTHREAD_MUTEX_INITIALIZER;
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
	atomic_init(&reader->refs, 1);
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

static void unref_reader(struct reader *reader)
{
	if (atomic_fetch_sub(&reader->refs, 1) != 1)
		return;
	if (reader->entry)
		cache_entry_release(reader->entry);
	forget_url(reader);
	free(reader->block);
	pthread_mutex_destroy(&reader->lock);
	free(reader);
}

/* Takes the queued read-ahead jobs of reader, or of every reader when
 * reader is NULL, off the queue. Called with pool.lock held; returns them
 * as a list for drop_jobs(). */
static struct ahead_job *unqueue_jobs(struct reader *reader)
{
	struct ahead_job *removed = NULL;
	struct ahead_job **link = &pool.head;

	pool.tail = NULL;
	while (*link) {
		struct ahead_job *job = *link;

		if (reader && job->reader != reader) {
			pool.tail = job;
			link = &job->next;
			continue;
		}
		*link = job->next;
		job->reader->ahead_jobs--;
		pool.queued--;
		job->next = removed;
		removed = job;
	}
	return removed;
}

static void drop_jobs(struct ahead_job *jobs)
{
	while (jobs) {
		struct ahead_job *next = jobs->next;

		unref_reader(jobs->reader);
		free(jobs);
		jobs = next;
	}
}

void reader_close(struct reader *reader)
{
	struct ahead_job *jobs;

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
	pthread_mutex_lock(&pool.lock);
	reader->closed = true;
	jobs = unqueue_jobs(reader);
	pthread_mutex_unlock(&pool.lock);
	drop_jobs(jobs);
	/* A job that is running keeps the reader until its fetch ends. */
	unref_reader(reader);
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
 * and checks that the object is still the one the metadata describes. A
 * failed fetch ahead of the reads is logged only at debug level, since the
 * read that later needs the block fetches it again and logs that.
 * Returns the block's length or a negated errno. */
static long fetch_block(struct reader *reader, uint64_t index, char *buf,
			bool ahead)
{
	enum log_level failure = ahead ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
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
		log_msg(failure,
			"account %s: report %s: block %" PRIu64 ": %d fresh "
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
		log_msg(failure,
			"account %s: report %s: reading block %" PRIu64
			"%s failed: %s",
			file->account, file->report_id, index,
			ahead ? " ahead" : "", err);
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
		log_msg(failure,
			"account %s: report %s: block %" PRIu64 ": got %zu "
			"of %zu bytes",
			file->account, file->report_id, index, result.length,
			length);
		return -EIO;
	}
	return (long)length;
}

static void free_flight(struct flight *flight)
{
	pthread_cond_destroy(&flight->ended);
	free(flight->key);
	free(flight);
}

/* Joins or starts the fetch of block index. Returns true when the caller
 * must do the fetch, false after another reader's fetch has ended, or at
 * once when wait is false and another fetch is in flight. */
static bool join_flight(const char *key, uint64_t index, bool wait)
{
	struct flight *flight;

	pthread_mutex_lock(&flights_lock);
	for (flight = flights; flight; flight = flight->next)
		if (flight->index == index && strcmp(flight->key, key) == 0)
			break;
	if (flight && !wait) {
		pthread_mutex_unlock(&flights_lock);
		return false;
	}
	if (flight) {
		flight->waiters++;
		while (!flight->done)
			pthread_cond_wait(&flight->ended, &flights_lock);
		if (--flight->waiters == 0)
			free_flight(flight);
		pthread_mutex_unlock(&flights_lock);
		return false;
	}
	flight = calloc(1, sizeof(*flight));
	if (flight && (flight->key = strdup(key))) {
		pthread_cond_init(&flight->ended, NULL);
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
		if (flight->waiters == 0)
			free_flight(flight);
		else
			pthread_cond_broadcast(&flight->ended);
		break;
	}
	pthread_mutex_unlock(&flights_lock);
}

/* Joins or starts the fetch of block index as join_flight() does, and
 * returns true only when the caller must fetch it. Another fetch may have
 * ended, and cached the block, just before the flight was started. */
static bool claim_block(struct reader *reader, uint64_t index, bool wait)
{
	if (!join_flight(reader->file.key, index, wait))
		return false;
	if (reader->entry && cache_entry_has_block(reader->entry, index)) {
		end_flight(reader->file.key, index);
		return false;
	}
	return true;
}

/* Runs read-ahead jobs until the pool stops. Each worker keeps one block
 * buffer for its whole life, so that the allocator is not asked for a
 * block at every fetch. */
static void *run_ahead_jobs(void *unused)
{
	char *buf = malloc(CACHE_BLOCK_SIZE);

	(void)unused;
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		struct ahead_job *job;
		bool skip;

		while (!pool.head && !pool.stopping)
			pthread_cond_wait(&pool.wake, &pool.lock);
		if (pool.stopping)
			break;
		job = pool.head;
		pool.head = job->next;
		if (!pool.head)
			pool.tail = NULL;
		pool.queued--;
		/* Once the cache has rejected a block of the report, the
		 * blocks queued after it would only be thrown away. */
		skip = job->reader->closed || job->reader->ahead_failed;
		pthread_mutex_unlock(&pool.lock);

		if (!skip && buf)
			fetch_ahead(job->reader, job->index, buf);

		pthread_mutex_lock(&pool.lock);
		job->reader->ahead_jobs--;
		pthread_mutex_unlock(&pool.lock);
		unref_reader(job->reader);
		free(job);
		pthread_mutex_lock(&pool.lock);
	}
	pthread_mutex_unlock(&pool.lock);
	free(buf);
	return NULL;
}

/* Starts the workers on first use. Called with pool.lock held. Returns
 * whether any worker runs. */
static bool start_pool(void)
{
	if (pool.started > 0 || pool.starting_failed || pool.stopping)
		return pool.started > 0 && !pool.stopping;
	while (pool.started < READAHEAD_WORKERS) {
		if (pthread_create(&pool.threads[pool.started], NULL,
				   run_ahead_jobs, NULL) != 0)
			break;
		pool.started++;
	}
	if (pool.started == 0) {
		pool.starting_failed = true;
		log_warning("starting the read-ahead threads failed; reads "
			    "fetch one block at a time");
	}
	return pool.started > 0;
}

/* Stops the workers: jobs still queued are dropped, and running ones end
 * as soon as their fetch does (fetch_cancel() ends it at once). */
static void stop_pool(void)
{
	struct ahead_job *jobs;
	int started;

	pthread_mutex_lock(&pool.lock);
	pool.stopping = true;
	jobs = unqueue_jobs(NULL);
	started = pool.started;
	pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.lock);
	drop_jobs(jobs);
	for (int i = 0; i < started; i++)
		pthread_join(pool.threads[i], NULL);
	pthread_mutex_lock(&pool.lock);
	pool.started = 0;
	pthread_mutex_unlock(&pool.lock);
}

void reader_shutdown(void)
{
	size_t open = 0;

	stop_pool();

	while (readers) {
		reader_close(readers);
		open++;
	}
	if (open > 0)
		log_debug("closed %zu open %s whose release did not arrive "
			  "before the unmount",
			  open, open == 1 ? "file" : "files");
	pthread_mutex_lock(&flights_lock);
	while (flights) {
		struct flight *next = flights->next;

		free_flight(flights);
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
	length = fetch_block(reader, index, buf, false);
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
	if (rc == 0) {
		/* The cache has it, and keeps it while the entry is open. */
		free(buf);
		return 0;
	}
	pthread_mutex_lock(&reader->lock);
	free(reader->block);
	reader->block = buf;
	reader->block_index = index;
	reader->block_length = (size_t)length;
	reader->block_valid = true;
	pthread_mutex_unlock(&reader->lock);
	return 0;
}

/* Fetches block index ahead of the reads into the cache through buf, a
 * block's worth of memory, unless the block is there already or another
 * fetch of it is in flight. */
static void fetch_ahead(struct reader *reader, uint64_t index, char *buf)
{
	const struct catalog_file *file = &reader->file;
	long length;
	int rc;

	if (cache_entry_has_block(reader->entry, index) ||
	    !claim_block(reader, index, false))
		return;
	length = fetch_block(reader, index, buf, true);
	rc = length < 0
		 ? (int)length
		 : cache_entry_store(reader->entry, index, buf, (size_t)length);
	end_flight(file->key, index);
	if (length >= 0 && rc < 0) {
		bool first;

		/* The cache is full or the report changed: blocks fetched
		 * ahead would only be thrown away. Logged once per open, since
		 * the other workers may fail the same way meanwhile. */
		pthread_mutex_lock(&pool.lock);
		first = !reader->ahead_failed;
		reader->ahead_failed = true;
		pthread_mutex_unlock(&pool.lock);
		if (first)
			log_debug("account %s: report %s: read-ahead stopped: "
				  "caching block %" PRIu64 " failed: %s",
				  file->account, file->report_id, index,
				  strerror(-rc));
	}
}

/* Records a read of bytes [start, end) in the access pattern. Returns how
 * many blocks after the read to have fetched ahead, 0 for none, and sets
 * *queued_until to the first block not queued yet. */
static unsigned note_read(struct reader *reader, uint64_t start, uint64_t end,
			  uint64_t *queued_until)
{
	unsigned window = 0;
	bool run;

	pthread_mutex_lock(&reader->lock);
	run = start == 0 || (reader->run_reads > 0 &&
			     start + SEQUENTIAL_SLACK >= reader->run_end &&
			     start <= reader->run_end + SEQUENTIAL_SLACK);
	if (run) {
		reader->run_reads++;
		if (start == 0 && reader->run_reads < 2)
			reader->run_reads = 2;
		if (end > reader->run_end)
			reader->run_end = end;
	} else {
		reader->run_reads = 1;
		reader->run_end = end;
		reader->ahead_next = 0;
	}
	if (reader->run_reads >= 2) {
		unsigned shift = reader->run_reads - 1;

		window = shift >= 16 ? READAHEAD_MAX_BLOCKS : 1u << shift;
		if (window > READAHEAD_MAX_BLOCKS)
			window = READAHEAD_MAX_BLOCKS;
	}
	*queued_until = reader->ahead_next;
	pthread_mutex_unlock(&reader->lock);
	return window;
}

/* Records the read of bytes [start, end) and queues the blocks after the
 * one holding byte end - 1, as many as the window allows, that are neither
 * cached nor queued yet. */
static void read_ahead(struct reader *reader, uint64_t start, uint64_t end)
{
	uint64_t blocks = ((uint64_t)reader->file.size + CACHE_BLOCK_SIZE - 1) /
			  CACHE_BLOCK_SIZE;
	uint64_t first = (end - 1) / CACHE_BLOCK_SIZE + 1;
	uint64_t missing[READAHEAD_MAX_BLOCKS];
	uint64_t queued_until;
	uint64_t last;
	uint64_t index;
	unsigned window;
	size_t count = 0;
	size_t i;

	if (!reader->entry || cache_max_bytes(reader->cache) == 0)
		return;
	window = note_read(reader, start, end, &queued_until);
	if (window == 0 || first >= blocks)
		return;
	last = first + window < blocks ? first + window : blocks;
	if (queued_until > first)
		first = queued_until;
	/* The cache is checked before the pool's lock is taken, because
	 * storing a block holds the entry's lock. */
	for (index = first; index < last; index++)
		if (!cache_entry_has_block(reader->entry, index))
			missing[count++] = index;

	pthread_mutex_lock(&pool.lock);
	for (i = 0; i < count; i++) {
		struct ahead_job *job;

		if (reader->ahead_failed ||
		    reader->ahead_jobs >= READAHEAD_MAX_BLOCKS ||
		    pool.queued >= READAHEAD_MAX_QUEUED || !start_pool())
			break;
		job = malloc(sizeof(*job));
		if (!job)
			break;
		job->reader = reader;
		job->index = missing[i];
		job->next = NULL;
		atomic_fetch_add(&reader->refs, 1);
		reader->ahead_jobs++;
		if (pool.tail)
			pool.tail->next = job;
		else
			pool.head = job;
		pool.tail = job;
		pool.queued++;
		pthread_cond_signal(&pool.wake);
	}
	pthread_mutex_unlock(&pool.lock);
	/* The next run starts at the first block left out, or at last when
	 * every missing block was queued. */
	if (i < count)
		last = missing[i];
	pthread_mutex_lock(&reader->lock);
	if (last > reader->ahead_next && reader->run_reads >= 2)
		reader->ahead_next = last;
	pthread_mutex_unlock(&reader->lock);
}

static int read_in_block(struct reader *reader, uint64_t index, size_t in_block,
			 char *dst, size_t length)
{
	int rc;

	for (int round = 0; round < MAX_SHARED_ROUNDS; round++) {
		if (copy_from_memory(reader, index, in_block, dst, length) ||
		    copy_from_cache(reader, index, in_block, dst, length))
			return 0;
		if (!claim_block(reader, index, true))
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
	read_ahead(reader, start, end);
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
