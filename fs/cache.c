/* The on-disk block cache. Layout under the cache directory:
 *
 *   lock                      held with flock() while a mount uses the cache
 *   v1/HH/HASH/meta           JSON: the cache_meta fields and the key
 *   v1/HH/HASH/data           sparse: block i at offset i * CACHE_BLOCK_SIZE
 *   v1/HH/HASH/index          16-byte header ("CSIPIDX1", then the report
 *                             size as a little-endian uint64), then one
 *                             record per block: a little-endian uint32
 *                             state (1 = present) and the CRC-32C of the
 *                             block's bytes
 *
 * HASH is the lowercase hex SHA-256 of the key and HH its first two digits.
 * A block's data is written before its index record, so a crash between the
 * two leaves the block absent. Nothing is fsync()ed: the page cache survives
 * a killed process, and a block torn by a power loss fails its checksum on
 * the first read after the next open.
 *
 * Locking: cache->lock guards the table of entries, the LRU list, the byte
 * counts and each entry's refcount and detached flag. entry->lock guards the
 * rest of an open entry. A thread may take cache->lock while holding an
 * entry->lock, never the other way round. */
#include "cache.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define INDEX_MAGIC	    "CSIPIDX1"
#define INDEX_HEADER_SIZE   16
#define INDEX_RECORD_SIZE   8
#define BLOCK_STATE_PRESENT 1
#define LOCK_WAIT_MS	    10000
#define LOCK_RETRY_MS	    100
#define META_MAX_SIZE	    65536
#define HASH_HEX_SIZE	    64
/* Report data is not written while less than this share (1/20, 5%) of the
 * cache filesystem would stay free. */
#define SPACE_RESERVE_DIVISOR 20
/* Seconds a statvfs() result of the cache filesystem is reused. Blocks
 * stored meanwhile are subtracted from its free space. */
#define SPACE_CHECK_SECONDS 1.0
/* A write failure of each cause is logged at once, then at most once in
 * this many seconds, with the count of those not logged. */
#define FAILURE_LOG_SECONDS 60.0
#define FAILURE_SLOTS	    8
/* The cause of a refused write when the filesystem is short of space. It
 * cannot collide with an errno, which is positive. */
#define CAUSE_LOW_SPACE (-1)
/* Report sizes at or above this are rejected, so that block offsets and
 * byte sums never overflow. */
#define MAX_REPORT_SIZE ((int64_t)1 << 62)

/* In-memory flags of a block of an open entry. */
#define BLOCK_PRESENT  1
#define BLOCK_VERIFIED 2

struct cache_entry {
	struct cache *cache;
	char hash[HASH_HEX_SIZE + 1];
	char dir[HASH_HEX_SIZE + 4]; /* "HH/HASH", relative to v1 */

	/* Guarded by cache->lock. */
	struct cache_entry *bucket_next;
	struct cache_entry *lru_prev;
	struct cache_entry *lru_next;
	int refcount;
	uint64_t bytes; /* report data stored on disk */
	bool detached;	/* replaced by cache_put_meta(), not in the table */
	struct timespec scan_mtime; /* only while cache_open() sorts the LRU */

	/* Guarded by lock. Set up by the first open, freed by the last
	 * release. */
	pthread_mutex_t lock;
	int data_fd;  /* -1 while the entry has no data file */
	int index_fd; /* -1 while the entry has no index file */
	int64_t size;
	uint64_t block_count;
	unsigned char *block_flags;
	uint32_t *block_crcs;
	uint64_t present_count;
	uint64_t generation; /* incremented whenever blocks are dropped */
	bool stale;	     /* metadata changed, so it serves nothing */
};

/* The log rate limit of one cause of write failures. */
struct failure_slot {
	int cause; /* an errno, CAUSE_LOW_SPACE, or 0 for an unused slot */
	double logged_at;
	unsigned long suppressed;
};

struct cache {
	char *path;
	int dir_fd;
	int v1_fd;
	int lock_fd;
	uint64_t max_bytes;

	pthread_mutex_t lock;
	uint64_t used_bytes;
	struct cache_entry **buckets;
	size_t bucket_count; /* a power of two */
	size_t entry_count;
	struct cache_entry *lru_head; /* least recently used */
	struct cache_entry *lru_tail;
	/* Also guarded by lock: the free and total bytes of the cache
	 * filesystem from the statvfs() at space_checked_at (CLOCK_MONOTONIC
	 * seconds), less the bytes stored since. */
	bool space_known;
	double space_checked_at;
	uint64_t space_free;
	uint64_t space_total;

	pthread_mutex_t failure_lock;
	struct failure_slot failures[FAILURE_SLOTS];
};

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): with the SSE4.2
 * crc32 instruction where the processor has it, otherwise eight bytes at a
 * time with eight lookup tables ("slicing-by-8"). Both give the same value;
 * the instruction is several times faster, which matters because every
 * block is checksummed when stored and again when first read. */

static uint32_t crc_tables[8][256];
static pthread_once_t crc_tables_once = PTHREAD_ONCE_INIT;

static void init_crc_tables(void)
{
	uint32_t i;
	int k;

	for (i = 0; i < 256; i++) {
		uint32_t crc = i;

		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
		crc_tables[0][i] = crc;
	}
	for (i = 0; i < 256; i++) {
		for (k = 1; k < 8; k++)
			crc_tables[k][i] =
			    (crc_tables[k - 1][i] >> 8) ^
			    crc_tables[0][crc_tables[k - 1][i] & 0xff];
	}
}

uint32_t cache_crc32c_portable(uint32_t crc, const void *data, size_t size)
{
	const unsigned char *p = data;

	pthread_once(&crc_tables_once, init_crc_tables);
	crc = ~crc;
	while (size >= 8) {
		uint32_t low =
		    crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
			   (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
		uint32_t high = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
				(uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;

		crc = crc_tables[7][low & 0xff] ^
		      crc_tables[6][(low >> 8) & 0xff] ^
		      crc_tables[5][(low >> 16) & 0xff] ^
		      crc_tables[4][low >> 24] ^ crc_tables[3][high & 0xff] ^
		      crc_tables[2][(high >> 8) & 0xff] ^
		      crc_tables[1][(high >> 16) & 0xff] ^
		      crc_tables[0][high >> 24];
		p += 8;
		size -= 8;
	}
	while (size > 0) {
		crc = (crc >> 8) ^ crc_tables[0][(crc ^ *p) & 0xff];
		p++;
		size--;
	}
	return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CRC32_INSTRUCTION 1

/* The crc32 instruction gives its result three cycles after it starts but
 * can start every cycle, so one chain of it runs at a third of the rate the
 * processor allows. Long inputs are therefore taken in stripes of three
 * lanes of CRC_LANE bytes, checksummed side by side. The first lane goes on
 * from the running state and the other two start from 0. Since the
 * checksum is linear, the state after lane A and then lane B is
 * shift(state after A) ^ (state after B alone), where shift() is the change
 * over CRC_LANE zero bytes, applied here through four tables. */
#define CRC_LANE 4096

static uint32_t crc_shift_tables[4][256];

__attribute__((target("sse4.2"))) static uint32_t crc_over_zeros(uint32_t state)
{
	uint64_t wide = state;

	for (size_t i = 0; i < CRC_LANE; i += 8)
		wide = __builtin_ia32_crc32di(wide, 0);
	return (uint32_t)wide;
}

/* Fills crc_shift_tables from the shifts of the 32 single-bit states. */
__attribute__((target("sse4.2"))) static void init_crc_shift_tables(void)
{
	uint32_t bit_shifts[32];

	for (int bit = 0; bit < 32; bit++)
		bit_shifts[bit] = crc_over_zeros(1u << bit);
	for (int byte = 0; byte < 4; byte++) {
		for (uint32_t value = 0; value < 256; value++) {
			uint32_t shifted = 0;

			for (int bit = 0; bit < 8; bit++)
				if (value & (1u << bit))
					shifted ^= bit_shifts[8 * byte + bit];
			crc_shift_tables[byte][value] = shifted;
		}
	}
}

static uint32_t crc_shift(uint32_t state)
{
	return crc_shift_tables[0][state & 0xff] ^
	       crc_shift_tables[1][(state >> 8) & 0xff] ^
	       crc_shift_tables[2][(state >> 16) & 0xff] ^
	       crc_shift_tables[3][state >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_instruction(uint32_t crc, const unsigned char *p, size_t size)
{
	uint64_t state = ~crc;

	while (size > 0 && ((uintptr_t)p & 7) != 0) {
		state = __builtin_ia32_crc32qi((uint32_t)state, *p++);
		size--;
	}
	while (size >= 3 * CRC_LANE) {
		uint64_t second = 0;
		uint64_t third = 0;

		for (size_t i = 0; i < CRC_LANE; i += 8) {
			uint64_t words[3];

			memcpy(&words[0], p + i, 8);
			memcpy(&words[1], p + CRC_LANE + i, 8);
			memcpy(&words[2], p + 2 * CRC_LANE + i, 8);
			state = __builtin_ia32_crc32di(state, words[0]);
			second = __builtin_ia32_crc32di(second, words[1]);
			third = __builtin_ia32_crc32di(third, words[2]);
		}
		state =
		    crc_shift(crc_shift((uint32_t)state) ^ (uint32_t)second) ^
		    (uint32_t)third;
		p += 3 * CRC_LANE;
		size -= 3 * CRC_LANE;
	}
	while (size >= 8) {
		uint64_t word;

		memcpy(&word, p, sizeof(word));
		state = __builtin_ia32_crc32di(state, word);
		p += 8;
		size -= 8;
	}
	while (size > 0) {
		state = __builtin_ia32_crc32qi((uint32_t)state, *p++);
		size--;
	}
	return ~(uint32_t)state;
}

static pthread_once_t crc_instruction_once = PTHREAD_ONCE_INIT;
static bool crc_instruction_usable;

static void check_crc_instruction(void)
{
	__builtin_cpu_init();
	crc_instruction_usable = __builtin_cpu_supports("sse4.2");
	if (crc_instruction_usable)
		init_crc_shift_tables();
}
#endif

uint32_t cache_crc32c(uint32_t crc, const void *data, size_t size)
{
#ifdef HAVE_CRC32_INSTRUCTION
	pthread_once(&crc_instruction_once, check_crc_instruction);
	if (crc_instruction_usable)
		return crc32c_instruction(crc, data, size);
#endif
	return cache_crc32c_portable(crc, data, size);
}

static void put_le32(unsigned char *p, uint32_t value)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (unsigned char)(value >> (8 * i));
}

static void put_le64(unsigned char *p, uint64_t value)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (unsigned char)(value >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t value = 0;
	int i;

	for (i = 7; i >= 0; i--)
		value = value << 8 | p[i];
	return value;
}

/* Reads exactly size bytes at offset unless the file ends first. Returns the
 * bytes read, or a negated errno. */
static ssize_t pread_full(int fd, void *buf, size_t size, off_t offset)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = pread(fd, (char *)buf + done, size - done,
				  offset + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Writes all size bytes at offset. Returns 0 or a negated errno. */
static int pwrite_full(int fd, const void *buf, size_t size, off_t offset)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = pwrite(fd, (const char *)buf + done, size - done,
				   offset + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

static uint64_t count_blocks(int64_t size)
{
	return ((uint64_t)size + CACHE_BLOCK_SIZE - 1) / CACHE_BLOCK_SIZE;
}

/* Returns the length of block index of a report of size bytes. */
static size_t block_length(int64_t size, uint64_t index)
{
	uint64_t start = index * CACHE_BLOCK_SIZE;
	uint64_t rest = (uint64_t)size - start;

	return rest < CACHE_BLOCK_SIZE ? (size_t)rest : CACHE_BLOCK_SIZE;
}

static int hash_key(const char *key, char hex[HASH_HEX_SIZE + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char digest[32];
	unsigned int digest_size = 0;
	int i;

	if (!EVP_Digest(key, strlen(key), digest, &digest_size, EVP_sha256(),
			NULL) ||
	    digest_size != sizeof(digest))
		return -EIO;
	for (i = 0; i < 32; i++) {
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 0xf];
	}
	hex[HASH_HEX_SIZE] = '\0';
	return 0;
}

/* Writes "HH/HASH/name" into path. */
static void entry_path(char *path, size_t size, const char *hash,
		       const char *name)
{
	snprintf(path, size, "%.2s/%s/%s", hash, hash, name);
}

static void unlink_entry_file(struct cache *cache, const char *hash,
			      const char *name)
{
	char path[HASH_HEX_SIZE + 32];

	entry_path(path, sizeof(path), hash, name);
	if (unlinkat(cache->v1_fd, path, 0) != 0 && errno != ENOENT)
		log_warning("cache: cannot remove %s/v1/%s: %s", cache->path,
			    path, strerror(errno));
}

/* Removes the report data of an entry from disk, keeping its metadata. */
static void unlink_entry_data(struct cache *cache, const char *hash)
{
	unlink_entry_file(cache, hash, "index");
	unlink_entry_file(cache, hash, "data");
}

/* Creates directory path relative to dir_fd with mode 0700, or sets that
 * mode if it exists. Returns 0 or a negated errno. */
static int make_private_dir(int dir_fd, const char *path)
{
	if (mkdirat(dir_fd, path, 0700) != 0 && errno != EEXIST)
		return -errno;
	if (fchmodat(dir_fd, path, 0700, 0) != 0)
		return -errno;
	return 0;
}

/* Opens path relative to dir_fd, creating it with mode 0600 whatever the
 * umask. Returns the descriptor or a negated errno. */
static int open_private_file(int dir_fd, const char *path, int flags)
{
	int fd = openat(dir_fd, path, flags | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			0600);

	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) != 0) {
		int status = -errno;

		close(fd);
		return status;
	}
	return fd;
}

static double monotonic_seconds(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Decides whether a write failure with cause (an errno or CAUSE_LOW_SPACE)
 * is logged now: the first of each cause is, then at most one every
 * FAILURE_LOG_SECONDS. Stores in *suppressed how many were not logged since
 * the last one that was. Causes beyond FAILURE_SLOTS share the last slot. */
static bool admit_failure_log(struct cache *cache, int cause,
			      unsigned long *suppressed)
{
	double now = monotonic_seconds();
	struct failure_slot *slot = &cache->failures[FAILURE_SLOTS - 1];
	bool admit;
	int i;

	pthread_mutex_lock(&cache->failure_lock);
	for (i = 0; i < FAILURE_SLOTS; i++) {
		if (cache->failures[i].cause == cause ||
		    cache->failures[i].cause == 0) {
			slot = &cache->failures[i];
			break;
		}
	}
	admit = slot->cause != cause ||
		now - slot->logged_at >= FAILURE_LOG_SECONDS;
	if (admit) {
		*suppressed = slot->cause == cause ? slot->suppressed : 0;
		slot->cause = cause;
		slot->logged_at = now;
		slot->suppressed = 0;
	} else {
		slot->suppressed++;
	}
	pthread_mutex_unlock(&cache->failure_lock);
	return admit;
}

static void log_write_failure(struct cache *cache, int cause, const char *fmt,
			      ...) __attribute__((format(printf, 3, 4)));

/* Logs a warning about a write the cache could not do, rate limited per
 * cause by admit_failure_log(). */
static void log_write_failure(struct cache *cache, int cause, const char *fmt,
			      ...)
{
	unsigned long suppressed = 0;
	char message[1024];
	va_list args;

	if (!admit_failure_log(cache, cause, &suppressed))
		return;
	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	if (suppressed > 0)
		log_warning("%s (%lu more failures of this cause in the last "
			    "%.0f s were not logged)",
			    message, suppressed, FAILURE_LOG_SECONDS);
	else
		log_warning("%s (repeats of this cause are logged at most "
			    "once in %.0f s)",
			    message, FAILURE_LOG_SECONDS);
}

/* The table of entries, keyed by hash. */

static size_t bucket_of(const struct cache *cache, const char *hash)
{
	size_t value = 0;
	int i;

	for (i = 0; i < 16; i++) {
		char c = hash[i];

		value =
		    value << 4 | (size_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	return value & (cache->bucket_count - 1);
}

static struct cache_entry *find_entry(struct cache *cache, const char *hash)
{
	struct cache_entry *entry = cache->buckets[bucket_of(cache, hash)];

	while (entry && strcmp(entry->hash, hash) != 0)
		entry = entry->bucket_next;
	return entry;
}

static void grow_table(struct cache *cache)
{
	size_t new_count = cache->bucket_count * 2;
	struct cache_entry **old = cache->buckets;
	size_t old_count = cache->bucket_count;
	size_t i;

	cache->buckets = calloc(new_count, sizeof(*cache->buckets));
	if (!cache->buckets) {
		/* Longer chains, but still correct. */
		cache->buckets = old;
		return;
	}
	cache->bucket_count = new_count;
	for (i = 0; i < old_count; i++) {
		struct cache_entry *entry = old[i];

		while (entry) {
			struct cache_entry *next = entry->bucket_next;
			size_t bucket = bucket_of(cache, entry->hash);

			entry->bucket_next = cache->buckets[bucket];
			cache->buckets[bucket] = entry;
			entry = next;
		}
	}
	free(old);
}

static void lru_append(struct cache *cache, struct cache_entry *entry)
{
	entry->lru_next = NULL;
	entry->lru_prev = cache->lru_tail;
	if (cache->lru_tail)
		cache->lru_tail->lru_next = entry;
	else
		cache->lru_head = entry;
	cache->lru_tail = entry;
}

static void lru_remove(struct cache *cache, struct cache_entry *entry)
{
	if (entry->lru_prev)
		entry->lru_prev->lru_next = entry->lru_next;
	else
		cache->lru_head = entry->lru_next;
	if (entry->lru_next)
		entry->lru_next->lru_prev = entry->lru_prev;
	else
		cache->lru_tail = entry->lru_prev;
	entry->lru_prev = NULL;
	entry->lru_next = NULL;
}

static void lru_touch(struct cache *cache, struct cache_entry *entry)
{
	lru_remove(cache, entry);
	lru_append(cache, entry);
}

/* Creates an entry, closed and empty, and adds it to the table and to the
 * most recent end of the LRU list. Returns NULL without memory. */
static struct cache_entry *add_entry(struct cache *cache, const char *hash)
{
	struct cache_entry *entry = calloc(1, sizeof(*entry));
	size_t bucket;

	if (!entry)
		return NULL;
	entry->cache = cache;
	snprintf(entry->hash, sizeof(entry->hash), "%s", hash);
	snprintf(entry->dir, sizeof(entry->dir), "%.2s/%s", hash, hash);
	entry->data_fd = -1;
	entry->index_fd = -1;
	pthread_mutex_init(&entry->lock, NULL);

	if (cache->entry_count >= cache->bucket_count)
		grow_table(cache);
	bucket = bucket_of(cache, hash);
	entry->bucket_next = cache->buckets[bucket];
	cache->buckets[bucket] = entry;
	cache->entry_count++;
	lru_append(cache, entry);
	return entry;
}

/* Takes an entry out of the table and the LRU list. */
static void remove_entry(struct cache *cache, struct cache_entry *entry)
{
	struct cache_entry **link =
	    &cache->buckets[bucket_of(cache, entry->hash)];

	while (*link && *link != entry)
		link = &(*link)->bucket_next;
	if (*link)
		*link = entry->bucket_next;
	entry->bucket_next = NULL;
	cache->entry_count--;
	lru_remove(cache, entry);
}

/* Frees what an open entry holds: descriptors and block state. */
static void close_entry_state(struct cache_entry *entry)
{
	if (entry->data_fd >= 0)
		close(entry->data_fd);
	if (entry->index_fd >= 0)
		close(entry->index_fd);
	entry->data_fd = -1;
	entry->index_fd = -1;
	free(entry->block_flags);
	free(entry->block_crcs);
	entry->block_flags = NULL;
	entry->block_crcs = NULL;
	entry->present_count = 0;
}

static void free_entry(struct cache_entry *entry)
{
	close_entry_state(entry);
	pthread_mutex_destroy(&entry->lock);
	free(entry);
}

static void discard_entry_files(struct cache_entry *entry)
{
	if (entry->data_fd >= 0)
		close(entry->data_fd);
	if (entry->index_fd >= 0)
		close(entry->index_fd);
	entry->data_fd = -1;
	entry->index_fd = -1;
	unlink_entry_data(entry->cache, entry->hash);
}

/* Removes a closed entry's data from disk and from memory. */
static void evict_entry(struct cache *cache, struct cache_entry *entry)
{
	unlink_entry_data(cache, entry->hash);
	cache->used_bytes -= entry->bytes;
	remove_entry(cache, entry);
	free_entry(entry);
}

/* Metadata. */

static bool copy_json_string(json_t *object, const char *name, char *out,
			     size_t out_size)
{
	json_t *value = json_object_get(object, name);
	const char *text;

	if (!json_is_string(value))
		return false;
	text = json_string_value(value);
	if (strlen(text) != json_string_length(value) ||
	    json_string_length(value) >= out_size)
		return false;
	memcpy(out, text, json_string_length(value) + 1);
	return true;
}

/* Parses a meta file's text. Returns NULL or a reason it is malformed. */
static const char *parse_meta(const char *text, size_t size, const char *key,
			      struct cache_meta *meta)
{
	json_error_t error;
	json_t *root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &error);
	json_t *size_value;
	const char *stored_key;
	const char *reason = NULL;

	if (!root)
		return "not valid JSON";
	memset(meta, 0, sizeof(*meta));
	stored_key = json_string_value(json_object_get(root, "key"));
	size_value = json_object_get(root, "size");
	if (!json_is_object(root))
		reason = "not a JSON object";
	else if (!stored_key || strcmp(stored_key, key) != 0)
		reason = "its key does not match";
	else if (!json_is_integer(size_value) ||
		 json_integer_value(size_value) < 0 ||
		 json_integer_value(size_value) >= MAX_REPORT_SIZE)
		reason = "invalid size";
	else if (!copy_json_string(root, "etag", meta->etag,
				   sizeof(meta->etag)) ||
		 !copy_json_string(root, "content_type", meta->content_type,
				   sizeof(meta->content_type)) ||
		 !copy_json_string(root, "ext", meta->ext, sizeof(meta->ext)) ||
		 !copy_json_string(root, "report_time", meta->report_time,
				   sizeof(meta->report_time)))
		reason = "a missing or invalid string field";
	else
		meta->size = (int64_t)json_integer_value(size_value);
	json_decref(root);
	return reason;
}

/* Reads the meta file of hash. A malformed file is logged and removed.
 * Called with cache->lock held. Returns 0 or -ENOENT. */
static int read_meta(struct cache *cache, const char *hash, const char *key,
		     struct cache_meta *meta)
{
	char path[HASH_HEX_SIZE + 32];
	char *text = NULL;
	const char *reason = NULL;
	struct stat st;
	ssize_t n;
	int fd;

	entry_path(path, sizeof(path), hash, "meta");
	fd = openat(cache->v1_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > META_MAX_SIZE) {
		reason = "not a regular file of at most 64 KiB";
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOENT;
	}
	n = pread_full(fd, text, (size_t)st.st_size, 0);
	if (n != st.st_size)
		reason = "short read";
	else
		reason = parse_meta(text, (size_t)n, key, meta);

out:
	close(fd);
	free(text);
	if (!reason)
		return 0;
	log_warning("cache: removed the malformed metadata of entry %s (%s)",
		    hash, reason);
	if (unlinkat(cache->v1_fd, path, 0) != 0 && errno != ENOENT)
		log_warning("cache: cannot remove %s/v1/%s: %s", cache->path,
			    path, strerror(errno));
	return -ENOENT;
}

static int write_meta(struct cache *cache, const char *hash, const char *key,
		      const struct cache_meta *meta)
{
	char path[HASH_HEX_SIZE + 32];
	char temporary[HASH_HEX_SIZE + 32];
	char *text = NULL;
	json_t *root;
	int status;
	int fd;

	root = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s}", "key", key, "size",
			 (json_int_t)meta->size, "etag", meta->etag,
			 "content_type", meta->content_type, "ext", meta->ext,
			 "report_time", meta->report_time);
	if (root)
		text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		return -EINVAL;

	snprintf(path, sizeof(path), "%.2s", hash);
	status = make_private_dir(cache->v1_fd, path);
	if (status == 0) {
		snprintf(path, sizeof(path), "%.2s/%s", hash, hash);
		status = make_private_dir(cache->v1_fd, path);
	}
	if (status != 0)
		goto out;

	entry_path(temporary, sizeof(temporary), hash, "meta.tmp");
	entry_path(path, sizeof(path), hash, "meta");
	fd = open_private_file(cache->v1_fd, temporary, O_WRONLY | O_TRUNC);
	if (fd < 0) {
		status = fd;
		goto out;
	}
	status = pwrite_full(fd, text, strlen(text), 0);
	if (close(fd) != 0 && status == 0)
		status = -errno;
	if (status == 0 &&
	    renameat(cache->v1_fd, temporary, cache->v1_fd, path) != 0)
		status = -errno;
	if (status != 0)
		unlinkat(cache->v1_fd, temporary, 0);

out:
	free(text);
	return status;
}

static bool is_valid_meta(const struct cache_meta *meta)
{
	return meta->size >= 0 && meta->size < MAX_REPORT_SIZE &&
	       memchr(meta->etag, '\0', sizeof(meta->etag)) &&
	       memchr(meta->content_type, '\0', sizeof(meta->content_type)) &&
	       memchr(meta->ext, '\0', sizeof(meta->ext)) &&
	       memchr(meta->report_time, '\0', sizeof(meta->report_time));
}

int cache_get_meta(struct cache *cache, const char *key,
		   struct cache_meta *meta)
{
	char hash[HASH_HEX_SIZE + 1];
	int status;

	if (hash_key(key, hash) != 0)
		return -ENOENT;
	pthread_mutex_lock(&cache->lock);
	status = read_meta(cache, hash, key, meta);
	pthread_mutex_unlock(&cache->lock);
	return status;
}

/* Marks an open entry as replaced: it leaves the table, so that later opens
 * get a fresh entry, and serves nothing more. Its descriptors stay open on
 * the unlinked files until the last release. Called with entry->lock and
 * cache->lock held. */
static void detach_entry(struct cache *cache, struct cache_entry *entry)
{
	remove_entry(cache, entry);
	entry->detached = true;
	entry->stale = true;
	memset(entry->block_flags, 0, entry->block_count + 1);
	entry->present_count = 0;
	entry->generation++;
}

int cache_put_meta(struct cache *cache, const char *key,
		   const struct cache_meta *meta)
{
	char hash[HASH_HEX_SIZE + 1];
	struct cache_meta stored;
	struct cache_entry *entry;
	struct cache_entry *pinned = NULL;
	int status;

	if (!is_valid_meta(meta))
		return -EINVAL;
	if (hash_key(key, hash) != 0)
		return -EIO;

	/* Dropping the blocks of an open entry needs its lock, which comes
	 * before cache->lock. So an open entry is pinned with a reference
	 * and locked first, and the lookup repeats in case the table changed
	 * meanwhile. */
	for (;;) {
		pthread_mutex_lock(&cache->lock);
		entry = find_entry(cache, hash);
		if (!entry || entry->refcount == 0 || entry == pinned)
			break;
		entry->refcount++;
		pthread_mutex_unlock(&cache->lock);
		if (pinned) {
			pthread_mutex_unlock(&pinned->lock);
			cache_entry_release(pinned);
		}
		pinned = entry;
		pthread_mutex_lock(&pinned->lock);
	}

	if (read_meta(cache, hash, key, &stored) != 0 ||
	    stored.size != meta->size || strcmp(stored.etag, meta->etag) != 0) {
		unlink_entry_data(cache, hash);
		if (entry) {
			cache->used_bytes -= entry->bytes;
			entry->bytes = 0;
			if (entry == pinned) {
				detach_entry(cache, entry);
			} else {
				remove_entry(cache, entry);
				free_entry(entry);
			}
		}
	}
	status = write_meta(cache, hash, key, meta);
	pthread_mutex_unlock(&cache->lock);

	if (pinned) {
		pthread_mutex_unlock(&pinned->lock);
		cache_entry_release(pinned);
	}
	if (status != 0)
		log_write_failure(cache, -status,
				  "cache: cannot write %s/v1/%.2s/%s/meta: %s",
				  cache->path, hash, hash, strerror(-status));
	return status;
}

/* Opening and releasing entries. */

/* Zeroes the index record of block index on disk. */
static void clear_index_record(struct cache_entry *entry, uint64_t index)
{
	unsigned char record[INDEX_RECORD_SIZE] = {0};
	off_t offset = INDEX_HEADER_SIZE + (off_t)(index * INDEX_RECORD_SIZE);

	if (entry->index_fd >= 0 &&
	    pwrite_full(entry->index_fd, record, sizeof(record), offset) != 0)
		log_warning("cache: cannot update the index of entry %s: %s",
			    entry->hash, strerror(errno));
}

/* Reads the index header and returns the report size it records, or -1 if
 * the header is damaged. */
static int64_t read_index_size(int fd)
{
	unsigned char header[INDEX_HEADER_SIZE];
	uint64_t size;

	if (pread_full(fd, header, sizeof(header), 0) != sizeof(header) ||
	    memcmp(header, INDEX_MAGIC, 8) != 0)
		return -1;
	size = get_le64(header + 8);
	if (size >= (uint64_t)MAX_REPORT_SIZE)
		return -1;
	return (int64_t)size;
}

/* Calls visit(block, crc, context) for every record marked present among the
 * first block_count records of an index file. Returns 0 or a negated errno. */
static int read_index_records(int fd, uint64_t block_count,
			      void (*visit)(uint64_t, uint32_t, void *),
			      void *context)
{
	unsigned char buf[INDEX_RECORD_SIZE * 4096];
	uint64_t block = 0;

	while (block < block_count) {
		uint64_t chunk = block_count - block;
		ssize_t n;
		ssize_t i;

		if (chunk > sizeof(buf) / INDEX_RECORD_SIZE)
			chunk = sizeof(buf) / INDEX_RECORD_SIZE;
		n = pread_full(fd, buf, (size_t)chunk * INDEX_RECORD_SIZE,
			       INDEX_HEADER_SIZE +
				   (off_t)(block * INDEX_RECORD_SIZE));
		if (n < 0)
			return (int)n;
		for (i = 0; i + INDEX_RECORD_SIZE <= n;
		     i += INDEX_RECORD_SIZE) {
			if (get_le32(buf + i) == BLOCK_STATE_PRESENT)
				visit(block, get_le32(buf + i + 4), context);
			block++;
		}
		/* Records missing from a short index are absent blocks. */
		if ((size_t)n < (size_t)chunk * INDEX_RECORD_SIZE)
			break;
	}
	return 0;
}

struct load_context {
	struct cache_entry *entry;
	off_t data_size;
	uint64_t bytes;
	uint64_t beyond_data;
};

static void load_record(uint64_t block, uint32_t crc, void *arg)
{
	struct load_context *context = arg;
	struct cache_entry *entry = context->entry;
	size_t length = block_length(entry->size, block);

	if ((uint64_t)context->data_size < block * CACHE_BLOCK_SIZE + length) {
		/* The data file was truncated under this block. */
		clear_index_record(entry, block);
		context->beyond_data++;
		return;
	}
	entry->block_flags[block] = BLOCK_PRESENT;
	entry->block_crcs[block] = crc;
	entry->present_count++;
	context->bytes += length;
}

/* Opens the files of an entry on its first open and loads which blocks are
 * present. A damaged index, or one for another size, is removed with the
 * data file. Called with cache->lock held and refcount 0. */
static int load_entry(struct cache_entry *entry, int64_t size)
{
	struct cache *cache = entry->cache;
	struct load_context context = {.entry = entry};
	char path[HASH_HEX_SIZE + 32];
	struct stat st;
	int status;

	entry->size = size;
	entry->block_count = count_blocks(size);
	entry->stale = false;
	entry->block_flags = calloc(entry->block_count + 1, 1);
	entry->block_crcs = calloc(entry->block_count + 1, sizeof(uint32_t));
	if (!entry->block_flags || !entry->block_crcs) {
		close_entry_state(entry);
		return -ENOMEM;
	}

	entry_path(path, sizeof(path), entry->hash, "index");
	entry->index_fd =
	    openat(cache->v1_fd, path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	entry_path(path, sizeof(path), entry->hash, "data");
	entry->data_fd =
	    openat(cache->v1_fd, path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (entry->index_fd < 0 || entry->data_fd < 0 ||
	    read_index_size(entry->index_fd) != size ||
	    fstat(entry->data_fd, &st) != 0)
		goto no_data;

	context.data_size = st.st_size;
	status = read_index_records(entry->index_fd, entry->block_count,
				    load_record, &context);
	if (status != 0)
		goto no_data;
	if (context.beyond_data > 0)
		log_warning("cache: dropped %" PRIu64 " blocks of entry %s "
			    "beyond the end of its data file",
			    context.beyond_data, entry->hash);
	cache->used_bytes = cache->used_bytes - entry->bytes + context.bytes;
	entry->bytes = context.bytes;
	return 0;

no_data:
	/* Whatever is on disk cannot be trusted, so it goes. Blocks stored
	 * later recreate both files. */
	if (entry->index_fd >= 0 || entry->data_fd >= 0)
		log_debug("cache: removed unusable data of entry %s",
			  entry->hash);
	discard_entry_files(entry);
	memset(entry->block_flags, 0, entry->block_count + 1);
	entry->present_count = 0;
	cache->used_bytes -= entry->bytes;
	entry->bytes = 0;
	return 0;
}

int cache_entry_open(struct cache *cache, const char *key,
		     struct cache_entry **out)
{
	char hash[HASH_HEX_SIZE + 1];
	struct cache_meta meta;
	struct cache_entry *entry;
	bool created = false;
	int status;

	*out = NULL;
	if (hash_key(key, hash) != 0)
		return -EIO;
	pthread_mutex_lock(&cache->lock);
	status = read_meta(cache, hash, key, &meta);
	if (status != 0)
		goto out;
	entry = find_entry(cache, hash);
	if (!entry) {
		entry = add_entry(cache, hash);
		if (!entry) {
			status = -ENOMEM;
			goto out;
		}
		created = true;
	}
	if (entry->refcount == 0) {
		status = load_entry(entry, meta.size);
		if (status != 0) {
			if (created) {
				remove_entry(cache, entry);
				free_entry(entry);
			}
			goto out;
		}
	}
	entry->refcount++;
	lru_touch(cache, entry);
	*out = entry;

out:
	pthread_mutex_unlock(&cache->lock);
	return status;
}

void cache_entry_release(struct cache_entry *entry)
{
	struct cache *cache;
	bool had_files;

	if (!entry)
		return;
	cache = entry->cache;
	pthread_mutex_lock(&cache->lock);
	if (--entry->refcount > 0) {
		pthread_mutex_unlock(&cache->lock);
		return;
	}
	if (entry->detached) {
		free_entry(entry);
		pthread_mutex_unlock(&cache->lock);
		return;
	}

	/* The index's modification time records the last use, so that the
	 * next mount orders its LRU list the same way. */
	if (entry->index_fd >= 0)
		futimens(entry->index_fd, NULL);
	had_files = entry->index_fd >= 0 || entry->data_fd >= 0;
	close_entry_state(entry);
	if (entry->bytes == 0) {
		if (had_files)
			unlink_entry_data(cache, entry->hash);
		remove_entry(cache, entry);
		free_entry(entry);
	} else {
		lru_touch(cache, entry);
	}
	pthread_mutex_unlock(&cache->lock);
}

/* Blocks. */

bool cache_entry_has_block(struct cache_entry *entry, uint64_t index)
{
	bool present;

	pthread_mutex_lock(&entry->lock);
	present = !entry->stale && index < entry->block_count &&
		  (entry->block_flags[index] & BLOCK_PRESENT);
	pthread_mutex_unlock(&entry->lock);
	return present;
}

bool cache_entry_is_complete(struct cache_entry *entry)
{
	bool complete;

	pthread_mutex_lock(&entry->lock);
	complete = !entry->stale && entry->present_count == entry->block_count;
	pthread_mutex_unlock(&entry->lock);
	return complete;
}

/* Forgets block index, on disk and in the byte count. Called with
 * entry->lock held. */
static void drop_block_locked(struct cache_entry *entry, uint64_t index)
{
	struct cache *cache = entry->cache;
	size_t length = block_length(entry->size, index);

	if (!(entry->block_flags[index] & BLOCK_PRESENT))
		return;
	clear_index_record(entry, index);
	entry->block_flags[index] = 0;
	entry->present_count--;
	entry->generation++;
	pthread_mutex_lock(&cache->lock);
	cache->used_bytes -= length;
	entry->bytes -= length;
	pthread_mutex_unlock(&cache->lock);
}

static void drop_all_blocks_locked(struct cache_entry *entry)
{
	struct cache *cache = entry->cache;

	memset(entry->block_flags, 0, entry->block_count + 1);
	entry->present_count = 0;
	entry->generation++;
	if (entry->data_fd >= 0 && ftruncate(entry->data_fd, 0) != 0)
		log_warning("cache: cannot truncate the data of entry %s: %s",
			    entry->hash, strerror(errno));
	/* Shrinking the index to its header and growing it back zeroes every
	 * record. */
	if (entry->index_fd >= 0 &&
	    (ftruncate(entry->index_fd, INDEX_HEADER_SIZE) != 0 ||
	     ftruncate(entry->index_fd,
		       INDEX_HEADER_SIZE + (off_t)(entry->block_count *
						   INDEX_RECORD_SIZE)) != 0))
		log_warning("cache: cannot clear the index of entry %s: %s",
			    entry->hash, strerror(errno));
	pthread_mutex_lock(&cache->lock);
	cache->used_bytes -= entry->bytes;
	entry->bytes = 0;
	pthread_mutex_unlock(&cache->lock);
}

void cache_entry_drop(struct cache_entry *entry)
{
	pthread_mutex_lock(&entry->lock);
	drop_all_blocks_locked(entry);
	pthread_mutex_unlock(&entry->lock);
}

/* Bytes read at a time when a block is verified. */
#define VERIFY_CHUNK (64 * 1024)

/* Reads the whole of block index and checks it against its checksum. On
 * success, marks it verified and copies length bytes at offset_in_block to
 * buf. Called with entry->lock held, which it releases while it reads and
 * checksums, so that readers of other blocks of the entry go on in
 * parallel. The requested bytes are read straight into buf. The rest of
 * the block goes through a small buffer, for its checksum only. Returns 0
 * or -ENOENT (dropped, or changed meanwhile). */
static int verify_block_locked(struct cache_entry *entry, uint64_t index,
			       size_t offset_in_block, size_t length, void *buf)
{
	size_t block_size = block_length(entry->size, index);
	uint64_t generation = entry->generation;
	uint32_t expected = entry->block_crcs[index];
	unsigned char chunk[VERIFY_CHUNK];
	const char *problem = NULL;
	uint32_t crc = 0;
	size_t done = 0;

	pthread_mutex_unlock(&entry->lock);
	while (done < block_size) {
		unsigned char *target = chunk;
		size_t want = done < offset_in_block ? offset_in_block - done
						     : block_size - done;
		ssize_t n;

		if (done >= offset_in_block &&
		    done < offset_in_block + length) {
			/* The caller uses these bytes only when the checksum
			 * of the whole block matches. */
			target =
			    (unsigned char *)buf + (done - offset_in_block);
			want = offset_in_block + length - done;
		} else if (want > sizeof(chunk)) {
			want = sizeof(chunk);
		}
		n = pread_full(entry->data_fd, target, want,
			       (off_t)(index * CACHE_BLOCK_SIZE + done));
		if (n < 0) {
			problem = strerror((int)-n);
			break;
		}
		if ((size_t)n < want) {
			problem = "the data file ends inside it";
			break;
		}
		crc = cache_crc32c(crc, target, want);
		done += want;
	}
	if (!problem && crc != expected)
		problem = "checksum mismatch";
	pthread_mutex_lock(&entry->lock);

	/* A drop in the meantime may have changed the bytes read. */
	if (entry->generation != generation || entry->stale ||
	    !(entry->block_flags[index] & BLOCK_PRESENT))
		return -ENOENT;
	if (problem) {
		log_warning("cache: dropped block %" PRIu64 " of entry %s: %s",
			    index, entry->hash, problem);
		drop_block_locked(entry, index);
		return -ENOENT;
	}
	entry->block_flags[index] |= BLOCK_VERIFIED;
	return 0;
}

long cache_entry_read(struct cache_entry *entry, uint64_t offset, size_t length,
		      void *buf)
{
	uint64_t index = offset / CACHE_BLOCK_SIZE;
	size_t offset_in_block = (size_t)(offset % CACHE_BLOCK_SIZE);
	uint64_t generation;
	ssize_t n;
	int status;

	if (index >= entry->block_count ||
	    length > block_length(entry->size, index) ||
	    offset_in_block > block_length(entry->size, index) - length)
		return -EINVAL;

	pthread_mutex_lock(&entry->lock);
	if (entry->stale || !(entry->block_flags[index] & BLOCK_PRESENT)) {
		pthread_mutex_unlock(&entry->lock);
		return -ENOENT;
	}
	if (!(entry->block_flags[index] & BLOCK_VERIFIED)) {
		status = verify_block_locked(entry, index, offset_in_block,
					     length, buf);
		pthread_mutex_unlock(&entry->lock);
		return status == 0 ? (long)length : status;
	}
	generation = entry->generation;
	pthread_mutex_unlock(&entry->lock);

	/* Verified blocks are read without the lock, so that readers run in
	 * parallel. A drop in the meantime changes the generation. */
	n = pread_full(entry->data_fd, buf, length,
		       (off_t)(index * CACHE_BLOCK_SIZE + offset_in_block));

	pthread_mutex_lock(&entry->lock);
	if (entry->generation != generation &&
	    (entry->block_flags[index] & BLOCK_VERIFIED)) {
		/* Another block was dropped meanwhile, or this one was and has
		 * been stored again. Either way its bytes on disk are valid
		 * while the lock is held. */
		n = pread_full(
		    entry->data_fd, buf, length,
		    (off_t)(index * CACHE_BLOCK_SIZE + offset_in_block));
	}
	if (!(entry->block_flags[index] & BLOCK_VERIFIED)) {
		status = -ENOENT;
	} else if (n < 0 || (size_t)n < length) {
		log_warning("cache: dropped block %" PRIu64 " of entry %s: %s",
			    index, entry->hash,
			    n < 0 ? strerror((int)-n)
				  : "the data file ends inside it");
		drop_block_locked(entry, index);
		status = -ENOENT;
	} else {
		status = 0;
	}
	pthread_mutex_unlock(&entry->lock);
	return status == 0 ? (long)length : status;
}

/* Makes room for length more bytes of entry by evicting least recently
 * used entries that are closed, then counts them as used. Evicts nothing
 * when that would not make enough room. Called with cache->lock held.
 * Returns 0 or -ENOSPC. */
static int reserve_space(struct cache *cache, struct cache_entry *entry,
			 size_t length)
{
	struct cache_entry *candidate;
	uint64_t evictable = 0;

	if (length > cache->max_bytes)
		return -ENOSPC;
	if (cache->used_bytes + length > cache->max_bytes) {
		for (candidate = cache->lru_head; candidate;
		     candidate = candidate->lru_next) {
			if (candidate->refcount == 0 && candidate != entry)
				evictable += candidate->bytes;
		}
		if (cache->used_bytes - evictable + length > cache->max_bytes)
			return -ENOSPC;
	}
	candidate = cache->lru_head;
	while (cache->used_bytes + length > cache->max_bytes && candidate) {
		struct cache_entry *next = candidate->lru_next;

		if (candidate->refcount == 0 && candidate != entry) {
			log_debug("cache: evicted entry %s (%" PRIu64 " bytes)",
				  candidate->hash, candidate->bytes);
			evict_entry(cache, candidate);
		}
		candidate = next;
	}
	cache->used_bytes += length;
	entry->bytes += length;
	return 0;
}

static void unreserve_space(struct cache *cache, struct cache_entry *entry,
			    size_t length)
{
	pthread_mutex_lock(&cache->lock);
	cache->used_bytes -= length;
	entry->bytes -= length;
	pthread_mutex_unlock(&cache->lock);
}

/* Refreshes the free space of the cache filesystem when the last statvfs()
 * is older than SPACE_CHECK_SECONDS, or when force is set. Called with
 * cache->lock held. A failed statvfs() leaves the space unknown, and then
 * only the write itself can fail. */
static void refresh_space(struct cache *cache, bool force)
{
	double now = monotonic_seconds();
	struct statvfs st;

	if (!force && cache->space_known &&
	    now - cache->space_checked_at < SPACE_CHECK_SECONDS)
		return;
	cache->space_known = fstatvfs(cache->v1_fd, &st) == 0;
	cache->space_checked_at = now;
	if (cache->space_known) {
		cache->space_free = (uint64_t)st.f_bavail * st.f_frsize;
		cache->space_total = (uint64_t)st.f_blocks * st.f_frsize;
	}
}

static bool space_allows(const struct cache *cache, size_t length)
{
	uint64_t reserve = cache->space_total / SPACE_RESERVE_DIVISOR;

	return !cache->space_known || cache->space_free >= reserve + length;
}

/* Claims length bytes of the cache filesystem for a block of entry, so that
 * at least 5% of the filesystem stays free. When it is short, evicts closed
 * entries, least recently used first, until the block fits. Called with
 * cache->lock held. Returns 0, or -ENOSPC with the free and total bytes in
 * *free_bytes and *total_bytes. */
static int claim_disk_space(struct cache *cache, struct cache_entry *entry,
			    size_t length, uint64_t *free_bytes,
			    uint64_t *total_bytes)
{
	struct cache_entry *candidate = cache->lru_head;

	refresh_space(cache, false);
	while (!space_allows(cache, length) && candidate) {
		struct cache_entry *next = candidate->lru_next;

		if (candidate->refcount == 0 && candidate != entry) {
			log_debug("cache: evicted entry %s (%" PRIu64
				  " bytes) because the filesystem of %s is "
				  "short of space",
				  candidate->hash, candidate->bytes,
				  cache->path);
			evict_entry(cache, candidate);
			refresh_space(cache, true);
		}
		candidate = next;
	}
	if (!space_allows(cache, length)) {
		*free_bytes = cache->space_free;
		*total_bytes = cache->space_total;
		return -ENOSPC;
	}
	if (cache->space_known)
		cache->space_free -= length;
	return 0;
}

/* Claims room for length bytes of entry both within max_bytes and on the
 * cache filesystem. Returns 0 or -ENOSPC, which it logs. */
static int claim_space(struct cache *cache, struct cache_entry *entry,
		       size_t length)
{
	uint64_t free_bytes = 0;
	uint64_t total_bytes = 0;
	int status;

	pthread_mutex_lock(&cache->lock);
	status =
	    claim_disk_space(cache, entry, length, &free_bytes, &total_bytes);
	if (status == 0) {
		status = reserve_space(cache, entry, length);
		if (status != 0 && cache->space_known)
			cache->space_free += length;
	} else {
		pthread_mutex_unlock(&cache->lock);
		log_write_failure(cache, CAUSE_LOW_SPACE,
				  "cache: not storing report data in %s: %s "
				  "(%" PRIu64 " of %" PRIu64 " bytes free, "
				  "below the 5%% kept free); reads continue "
				  "without the cache",
				  cache->path, strerror(ENOSPC), free_bytes,
				  total_bytes);
		return status;
	}
	pthread_mutex_unlock(&cache->lock);
	return status;
}

/* Creates the data and index files of an entry on its first store, and on
 * failure writes the path that failed, relative to v1, into failed. Called
 * with entry->lock held. Returns 0 or a negated errno. */
static int create_entry_files(struct cache_entry *entry, char *failed,
			      size_t failed_size)
{
	struct cache *cache = entry->cache;
	unsigned char header[INDEX_HEADER_SIZE];
	char path[HASH_HEX_SIZE + 32];
	int status;

	snprintf(path, sizeof(path), "%.2s", entry->hash);
	status = make_private_dir(cache->v1_fd, path);
	if (status == 0) {
		snprintf(path, sizeof(path), "%s", entry->dir);
		status = make_private_dir(cache->v1_fd, path);
	}
	if (status != 0) {
		snprintf(failed, failed_size, "%s", path);
		return status;
	}

	entry_path(path, sizeof(path), entry->hash, "data");
	entry->data_fd =
	    open_private_file(cache->v1_fd, path, O_RDWR | O_TRUNC);
	if (entry->data_fd < 0) {
		status = entry->data_fd;
		goto fail;
	}
	entry_path(path, sizeof(path), entry->hash, "index");
	entry->index_fd =
	    open_private_file(cache->v1_fd, path, O_RDWR | O_TRUNC);
	if (entry->index_fd < 0) {
		status = entry->index_fd;
		goto fail;
	}
	memcpy(header, INDEX_MAGIC, 8);
	put_le64(header + 8, (uint64_t)entry->size);
	status = pwrite_full(entry->index_fd, header, sizeof(header), 0);
	if (status == 0 &&
	    ftruncate(entry->index_fd,
		      INDEX_HEADER_SIZE +
			  (off_t)(entry->block_count * INDEX_RECORD_SIZE)) != 0)
		status = -errno;
	if (status == 0)
		return 0;

fail:
	snprintf(failed, failed_size, "%s", path);
	discard_entry_files(entry);
	return status;
}

/* Writes block index and then its index record. On failure, writes the
 * path that failed, relative to v1, into failed, and frees what a partial
 * write of the block took on disk. Called with entry->lock held. */
static int write_block(struct cache_entry *entry, uint64_t index,
		       const void *buf, size_t length, uint32_t crc,
		       char *failed, size_t failed_size)
{
	unsigned char record[INDEX_RECORD_SIZE];
	off_t offset = (off_t)(index * CACHE_BLOCK_SIZE);
	int status;

	/* Data first: until its index record is written, the block is
	 * absent. */
	status = pwrite_full(entry->data_fd, buf, length, offset);
	if (status != 0) {
		entry_path(failed, failed_size, entry->hash, "data");
		/* Best effort: the block stays absent whether or not the
		 * hole is punched. */
		(void)fallocate(entry->data_fd,
				FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				offset, (off_t)length);
		return status;
	}
	put_le32(record, BLOCK_STATE_PRESENT);
	put_le32(record + 4, crc);
	status =
	    pwrite_full(entry->index_fd, record, sizeof(record),
			INDEX_HEADER_SIZE + (off_t)(index * INDEX_RECORD_SIZE));
	if (status != 0) {
		entry_path(failed, failed_size, entry->hash, "index");
		/* A partial record could read as present. */
		clear_index_record(entry, index);
	}
	return status;
}

int cache_entry_store(struct cache_entry *entry, uint64_t index,
		      const void *buf, size_t length)
{
	struct cache *cache = entry->cache;
	char failed[HASH_HEX_SIZE + 32] = "";
	uint32_t crc;
	int status;

	if (index >= entry->block_count ||
	    length != block_length(entry->size, index))
		return -EINVAL;
	/* max_bytes never changes after cache_open(). */
	if (cache->max_bytes == 0)
		return -ENOSPC;

	/* The checksum needs no lock, and readers of the entry wait less. */
	crc = cache_crc32c(0, buf, length);
	pthread_mutex_lock(&entry->lock);
	if (entry->stale) {
		status = -ESTALE;
		goto out;
	}
	if (entry->block_flags[index] & BLOCK_PRESENT) {
		status = 0;
		goto out;
	}
	status = claim_space(cache, entry, length);
	if (status != 0)
		goto out;

	if (entry->data_fd < 0)
		status = create_entry_files(entry, failed, sizeof(failed));
	if (status == 0)
		status = write_block(entry, index, buf, length, crc, failed,
				     sizeof(failed));
	if (status != 0) {
		log_write_failure(cache, -status,
				  "cache: cannot store block %" PRIu64
				  " of entry %s in %s/v1/%s: %s; the block "
				  "is served from memory",
				  index, entry->hash, cache->path, failed,
				  strerror(-status));
		unreserve_space(cache, entry, length);
		/* The caller serves the block from memory either way. */
		status = -ENOSPC;
		goto out;
	}
	entry->block_flags[index] = BLOCK_PRESENT | BLOCK_VERIFIED;
	entry->block_crcs[index] = crc;
	entry->present_count++;

out:
	pthread_mutex_unlock(&entry->lock);
	return status;
}

uint64_t cache_used_bytes(struct cache *cache)
{
	uint64_t used;

	pthread_mutex_lock(&cache->lock);
	used = cache->used_bytes;
	pthread_mutex_unlock(&cache->lock);
	return used;
}

uint64_t cache_max_bytes(struct cache *cache)
{
	return cache->max_bytes;
}

/* Opening and closing the cache. */

static bool is_lower_hex(const char *text, size_t size)
{
	size_t i;

	if (strlen(text) != size)
		return false;
	for (i = 0; i < size; i++) {
		if (!((text[i] >= '0' && text[i] <= '9') ||
		      (text[i] >= 'a' && text[i] <= 'f')))
			return false;
	}
	return true;
}

struct scan_context {
	int64_t size;
	uint64_t bytes;
};

static void count_record(uint64_t block, uint32_t crc, void *arg)
{
	struct scan_context *context = arg;

	(void)crc;
	context->bytes += block_length(context->size, block);
}

/* Counts the bytes of report data stored for hash, removing a damaged index,
 * an index without data, data without an index, and files that store no
 * block. Returns the bytes, and the index's modification time in mtime. */
static uint64_t scan_entry(struct cache *cache, const char *hash,
			   struct timespec *mtime)
{
	struct scan_context context = {0};
	char path[HASH_HEX_SIZE + 32];
	struct stat st;
	int fd;

	entry_path(path, sizeof(path), hash, "meta.tmp");
	unlinkat(cache->v1_fd, path, 0);

	entry_path(path, sizeof(path), hash, "index");
	fd = openat(cache->v1_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		unlink_entry_file(cache, hash, "data");
		return 0;
	}
	context.size = read_index_size(fd);
	if (context.size < 0) {
		log_warning("cache: removed the damaged index of entry %s",
			    hash);
		goto remove;
	}
	entry_path(path, sizeof(path), hash, "data");
	if (fstatat(cache->v1_fd, path, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISREG(st.st_mode)) {
		log_warning("cache: removed the index of entry %s, whose data "
			    "file is missing",
			    hash);
		goto remove;
	}
	if (read_index_records(fd, count_blocks(context.size), count_record,
			       &context) != 0 ||
	    fstat(fd, &st) != 0 || context.bytes == 0)
		goto remove;
	*mtime = st.st_mtim;
	close(fd);
	return context.bytes;

remove:
	close(fd);
	unlink_entry_data(cache, hash);
	return 0;
}

/* Scans one v1/HH directory. Returns 0 or a negated errno. */
static int scan_prefix_dir(struct cache *cache, const char *prefix)
{
	struct dirent *dirent;
	DIR *dir;
	int fd;

	fd = openat(cache->v1_fd, prefix,
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOTDIR ? 0 : -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((dirent = readdir(dir))) {
		struct cache_entry *entry;
		struct timespec mtime = {0, 0};
		uint64_t bytes;

		if (!is_lower_hex(dirent->d_name, HASH_HEX_SIZE) ||
		    strncmp(dirent->d_name, prefix, 2) != 0)
			continue;
		bytes = scan_entry(cache, dirent->d_name, &mtime);
		if (bytes == 0)
			continue;
		entry = add_entry(cache, dirent->d_name);
		if (!entry) {
			closedir(dir);
			return -ENOMEM;
		}
		entry->bytes = bytes;
		entry->scan_mtime = mtime;
		cache->used_bytes += bytes;
	}
	closedir(dir);
	return 0;
}

static int compare_scan_mtime(const void *a, const void *b)
{
	const struct cache_entry *x = *(struct cache_entry *const *)a;
	const struct cache_entry *y = *(struct cache_entry *const *)b;

	if (x->scan_mtime.tv_sec != y->scan_mtime.tv_sec)
		return x->scan_mtime.tv_sec < y->scan_mtime.tv_sec ? -1 : 1;
	if (x->scan_mtime.tv_nsec != y->scan_mtime.tv_nsec)
		return x->scan_mtime.tv_nsec < y->scan_mtime.tv_nsec ? -1 : 1;
	return strcmp(x->hash, y->hash);
}

/* Orders the LRU list by the modification times of the index files, which
 * cache_entry_release() sets at every last release. */
static void sort_lru_by_mtime(struct cache *cache)
{
	struct cache_entry **entries;
	struct cache_entry *entry;
	size_t count = 0;
	size_t i;

	if (cache->entry_count < 2)
		return;
	entries = malloc(cache->entry_count * sizeof(*entries));
	if (!entries)
		return; /* the scan order is still a valid order */
	for (entry = cache->lru_head; entry; entry = entry->lru_next)
		entries[count++] = entry;
	qsort(entries, count, sizeof(*entries), compare_scan_mtime);
	cache->lru_head = NULL;
	cache->lru_tail = NULL;
	for (i = 0; i < count; i++)
		lru_append(cache, entries[i]);
	free(entries);
}

/* Loads every entry that stores report data. Returns 0 or a negated errno. */
static int scan_cache(struct cache *cache)
{
	struct dirent *dirent;
	DIR *dir;
	int fd = dup(cache->v1_fd);
	int status = 0;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while (status == 0 && (dirent = readdir(dir))) {
		if (is_lower_hex(dirent->d_name, 2))
			status = scan_prefix_dir(cache, dirent->d_name);
	}
	closedir(dir);
	sort_lru_by_mtime(cache);
	return status;
}

/* Evicts least recently used entries until the stored bytes fit max_bytes,
 * which may have been lowered since the last mount. */
static void evict_over_limit(struct cache *cache)
{
	while (cache->used_bytes > cache->max_bytes && cache->lru_head)
		evict_entry(cache, cache->lru_head);
}

static int take_lock(struct cache *cache)
{
	struct timespec delay = {0, LOCK_RETRY_MS * 1000000L};
	int waited_ms = 0;

	for (;;) {
		if (flock(cache->lock_fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK)
			return -errno;
		if (waited_ms >= LOCK_WAIT_MS)
			return -EBUSY;
		if (waited_ms == 0)
			log_info("cache: waiting for %s/lock, which another "
				 "process holds",
				 cache->path);
		nanosleep(&delay, NULL);
		waited_ms += LOCK_RETRY_MS;
	}
}

static void set_error(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *err, size_t err_size, const char *fmt, ...)
{
	va_list args;

	if (!err || err_size == 0)
		return;
	va_start(args, fmt);
	vsnprintf(err, err_size, fmt, args);
	va_end(args);
}

int cache_open(const char *dir, uint64_t max_bytes, struct cache **out,
	       char *err, size_t err_size)
{
	struct cache *cache;
	int status;

	*out = NULL;
	set_error(err, err_size, "%s", "");
	cache = calloc(1, sizeof(*cache));
	if (!cache)
		goto no_memory;
	cache->dir_fd = -1;
	cache->v1_fd = -1;
	cache->lock_fd = -1;
	cache->max_bytes = max_bytes;
	cache->bucket_count = 64;
	pthread_mutex_init(&cache->lock, NULL);
	pthread_mutex_init(&cache->failure_lock, NULL);
	cache->path = strdup(dir);
	cache->buckets = calloc(cache->bucket_count, sizeof(*cache->buckets));
	if (!cache->path || !cache->buckets) {
		cache_close(cache);
		goto no_memory;
	}

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		status = -errno;
		set_error(err, err_size, "cannot create cache directory %s: %s",
			  dir, strerror(errno));
		goto fail;
	}
	cache->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cache->dir_fd < 0 || fchmod(cache->dir_fd, 0700) != 0) {
		status = -errno;
		set_error(err, err_size,
			  "cannot open cache directory %s with mode 0700: %s",
			  dir, strerror(errno));
		goto fail;
	}
	cache->lock_fd = open_private_file(cache->dir_fd, "lock", O_RDWR);
	if (cache->lock_fd < 0) {
		status = cache->lock_fd;
		set_error(err, err_size, "cannot open %s/lock: %s", dir,
			  strerror(-status));
		goto fail;
	}
	status = take_lock(cache);
	if (status != 0) {
		set_error(err, err_size,
			  status == -EBUSY
			      ? "cache directory %s is still locked by "
				"another process after 10 seconds "
				"(unmount the other csipfs mount or "
				"choose another cache directory)"
			      : "cannot lock the cache directory %s",
			  dir);
		goto fail;
	}
	status = make_private_dir(cache->dir_fd, "v1");
	if (status == 0) {
		cache->v1_fd =
		    openat(cache->dir_fd, "v1",
			   O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (cache->v1_fd < 0)
			status = -errno;
	}
	if (status == 0)
		status = scan_cache(cache);
	if (status != 0) {
		set_error(err, err_size,
			  "cannot read cache directory %s/v1: %s", dir,
			  strerror(-status));
		goto fail;
	}
	evict_over_limit(cache);
	log_debug("cache: opened %s: %" PRIu64 " of at most %" PRIu64
		  " bytes used, entry count %zu",
		  dir, cache->used_bytes, max_bytes, cache->entry_count);
	*out = cache;
	return 0;

no_memory:
	set_error(err, err_size, "cannot open cache directory %s: %s", dir,
		  strerror(ENOMEM));
	return -ENOMEM;

fail:
	cache_close(cache);
	return status;
}

void cache_close(struct cache *cache)
{
	size_t i;

	if (!cache)
		return;
	for (i = 0; cache->buckets && i < cache->bucket_count; i++) {
		struct cache_entry *entry = cache->buckets[i];

		while (entry) {
			struct cache_entry *next = entry->bucket_next;

			if (entry->refcount > 0)
				log_warning("cache: entry %s is still open "
					    "at close",
					    entry->hash);
			free_entry(entry);
			entry = next;
		}
	}
	free(cache->buckets);
	if (cache->v1_fd >= 0)
		close(cache->v1_fd);
	/* Closing the descriptor releases the flock(). */
	if (cache->lock_fd >= 0)
		close(cache->lock_fd);
	if (cache->dir_fd >= 0)
		close(cache->dir_fd);
	free(cache->path);
	pthread_mutex_destroy(&cache->lock);
	pthread_mutex_destroy(&cache->failure_lock);
	free(cache);
}
