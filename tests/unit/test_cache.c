/* The block cache on a real directory under $CSIPFS_TEST_TMPDIR (or /tmp):
 * metadata, blocks, reopening, damage detection, eviction, file modes and
 * the lock between mounts. */
#include "cache.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK CACHE_BLOCK_SIZE

static char base_dir[512];
static int dir_counter;

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Returns a new, not yet existing cache directory path. */
static const char *new_cache_dir(char *path, size_t size)
{
	snprintf(path, size, "%s/cache%d", base_dir, ++dir_counter);
	return path;
}

static void entry_file(char *path, size_t size, const char *dir,
		       const char *key, const char *name)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char digest[32];
	char hex[65];
	int i;

	EVP_Digest(key, strlen(key), digest, NULL, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++) {
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 0xf];
	}
	hex[64] = '\0';
	snprintf(path, size, "%s/v1/%.2s/%s/%s", dir, hex, hex, name);
}

static bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int file_mode(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

static void fill_block(unsigned char *buf, size_t length, unsigned seed)
{
	size_t i;

	for (i = 0; i < length; i++)
		buf[i] = (unsigned char)(i * 31 + seed * 7 + i / 4096);
}

static struct cache_meta make_meta(int64_t size, const char *etag)
{
	struct cache_meta meta;

	memset(&meta, 0, sizeof(meta));
	meta.size = size;
	snprintf(meta.etag, sizeof(meta.etag), "%s", etag);
	snprintf(meta.content_type, sizeof(meta.content_type),
		 "application/pdf");
	snprintf(meta.ext, sizeof(meta.ext), ".pdf");
	snprintf(meta.report_time, sizeof(meta.report_time),
		 "2024-05-01 10:00:00");
	return meta;
}

static struct cache *open_cache(const char *dir, uint64_t max_bytes)
{
	struct cache *cache = NULL;
	char err[512];
	int status = cache_open(dir, max_bytes, &cache, err, sizeof(err));

	if (status != 0)
		fprintf(stderr, "cache_open: %s\n", err);
	CHECK_INT_EQ(status, 0);
	return cache;
}

/* Stores every block of a report of size bytes for key, with contents made
 * from seed, and releases the entry. */
static void store_report(struct cache *cache, const char *key, int64_t size,
			 unsigned seed)
{
	struct cache_meta meta = make_meta(size, "\"v1\"");
	struct cache_entry *entry;
	unsigned char *buf = malloc(BLOCK);
	uint64_t blocks = ((uint64_t)size + BLOCK - 1) / BLOCK;
	uint64_t i;

	CHECK_INT_EQ(cache_put_meta(cache, key, &meta), 0);
	CHECK_INT_EQ(cache_entry_open(cache, key, &entry), 0);
	for (i = 0; i < blocks; i++) {
		size_t length = i + 1 < blocks ? BLOCK : size - i * BLOCK;

		fill_block(buf, length, seed + (unsigned)i);
		CHECK_INT_EQ(cache_entry_store(entry, i, buf, length), 0);
	}
	cache_entry_release(entry);
	free(buf);
}

/* Whether every block of key reads back as store_report() wrote it. */
static bool report_reads_back(struct cache *cache, const char *key,
			      int64_t size, unsigned seed)
{
	struct cache_entry *entry;
	unsigned char *expected = malloc(BLOCK);
	unsigned char *actual = malloc(BLOCK);
	uint64_t blocks = ((uint64_t)size + BLOCK - 1) / BLOCK;
	bool ok = true;
	uint64_t i;

	if (cache_entry_open(cache, key, &entry) != 0) {
		free(expected);
		free(actual);
		return false;
	}
	for (i = 0; i < blocks && ok; i++) {
		size_t length = i + 1 < blocks ? BLOCK : size - i * BLOCK;

		fill_block(expected, length, seed + (unsigned)i);
		ok = cache_entry_read(entry, i * BLOCK, length, actual) ==
			 (long)length &&
		     memcmp(expected, actual, length) == 0;
	}
	cache_entry_release(entry);
	free(expected);
	free(actual);
	return ok;
}

static void test_crc32c(void)
{
	unsigned char zeros[32] = {0};
	unsigned char ones[32];
	unsigned char ascending[32];
	const char *digits = "123456789";
	int i;

	memset(ones, 0xff, sizeof(ones));
	for (i = 0; i < 32; i++)
		ascending[i] = (unsigned char)i;
	/* Check values from RFC 3720, appendix B.4, and the usual
	 * "123456789". */
	CHECK_INT_EQ(cache_crc32c(0, digits, 9), 0xE3069283u);
	CHECK_INT_EQ(cache_crc32c(0, zeros, 32), 0x8A9136AAu);
	CHECK_INT_EQ(cache_crc32c(0, ones, 32), 0x62A8AB43u);
	CHECK_INT_EQ(cache_crc32c(0, ascending, 32), 0x46DD794Eu);
	CHECK_INT_EQ(cache_crc32c(0, "", 0), 0);
	/* Every split point gives the same CRC as one call. */
	for (i = 0; i <= 9; i++)
		CHECK_INT_EQ(cache_crc32c(cache_crc32c(0, digits, (size_t)i),
					  digits + i, (size_t)(9 - i)),
			     0xE3069283u);
	CHECK_INT_EQ(cache_crc32c_portable(0, digits, 9), 0xE3069283u);
	CHECK_INT_EQ(cache_crc32c_portable(0, ascending, 32), 0x46DD794Eu);
}

/* The crc32 instruction path and the table path agree at every length and
 * alignment, the unaligned head and tail included. */
static void test_crc32c_paths_agree(void)
{
	/* Room for inputs long enough for the three-lane path, several
	 * stripes of it, and what is left after the last stripe. */
	static unsigned char data[5 * 3 * 4096 + 4096];
	static const size_t long_lengths[] = {
	    3 * 4096 - 1,	 3 * 4096,     3 * 4096 + 1,
	    3 * 4096 + 4095,	 2 * 3 * 4096, 5 * 3 * 4096 + 100,
	    5 * 3 * 4096 + 4080,
	};
	uint32_t seed = 12345;

	for (size_t i = 0; i < sizeof(data); i++) {
		seed = seed * 1103515245u + 12345u;
		data[i] = (unsigned char)(seed >> 16);
	}
	for (size_t start = 0; start < 16; start++)
		for (size_t length = 0; length <= 80; length++)
			CHECK_INT_EQ(
			    cache_crc32c(7, data + start, length),
			    cache_crc32c_portable(7, data + start, length));
	CHECK_INT_EQ(cache_crc32c(0, data + 3, 4096),
		     cache_crc32c_portable(0, data + 3, 4096));
	for (size_t i = 0; i < sizeof(long_lengths) / sizeof(long_lengths[0]);
	     i++) {
		for (size_t start = 0; start < 16; start += 5) {
			size_t length = long_lengths[i];

			CHECK_INT_EQ(cache_crc32c(0x5eed, data + start, length),
				     cache_crc32c_portable(0x5eed, data + start,
							   length));
		}
	}
	/* A long input checksummed in two pieces gives the whole's value. */
	CHECK_INT_EQ(cache_crc32c(cache_crc32c(0, data, 4 * 4096 + 5),
				  data + 4 * 4096 + 5, 9 * 4096),
		     cache_crc32c_portable(0, data, 13 * 4096 + 5));
}

static void test_meta_round_trip(void)
{
	char dir[600];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), BLOCK);
	const char *key = "account 100/../report\n\"7\"";
	struct cache_meta meta = make_meta(123456, "\"etag-1\"");
	struct cache_meta read_back;
	struct cache_meta invalid = make_meta(-1, "");
	struct cache_entry *entry = NULL;
	char path[1024];

	CHECK_INT_EQ(cache_get_meta(cache, key, &read_back), -ENOENT);
	CHECK_INT_EQ(cache_entry_open(cache, key, &entry), -ENOENT);
	CHECK(entry == NULL);
	CHECK_INT_EQ(cache_put_meta(cache, key, &meta), 0);
	memset(&read_back, 0x55, sizeof(read_back));
	CHECK_INT_EQ(cache_get_meta(cache, key, &read_back), 0);
	CHECK_INT_EQ(read_back.size, 123456);
	CHECK_STR_EQ(read_back.etag, "\"etag-1\"");
	CHECK_STR_EQ(read_back.content_type, "application/pdf");
	CHECK_STR_EQ(read_back.ext, ".pdf");
	CHECK_STR_EQ(read_back.report_time, "2024-05-01 10:00:00");
	CHECK_INT_EQ(cache_get_meta(cache, "another key", &read_back), -ENOENT);
	CHECK_INT_EQ(cache_put_meta(cache, key, &invalid), -EINVAL);

	/* The key never appears in a path, and no temporary file is left. */
	entry_file(path, sizeof(path), dir, key, "meta");
	CHECK(file_exists(path));
	entry_file(path, sizeof(path), dir, key, "meta.tmp");
	CHECK(!file_exists(path));
	cache_close(cache);

	cache = open_cache(dir, BLOCK);
	CHECK_INT_EQ(cache_get_meta(cache, key, &read_back), 0);
	CHECK_INT_EQ(read_back.size, 123456);
	cache_close(cache);
}

static void test_malformed_meta(void)
{
	char dir[600];
	char path[1024];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), BLOCK);
	struct cache_meta meta = make_meta(10, "");
	struct cache_entry *entry;
	FILE *file;

	CHECK_INT_EQ(cache_put_meta(cache, "k", &meta), 0);
	entry_file(path, sizeof(path), dir, "k", "meta");
	file = fopen(path, "w");
	fputs("{\"key\": \"k\", \"size\": ", file);
	fclose(file);
	CHECK_INT_EQ(cache_get_meta(cache, "k", &meta), -ENOENT);
	CHECK(!file_exists(path));

	/* Metadata recorded for another key is not taken for this one. */
	file = fopen(path, "w");
	fputs("{\"key\": \"other\", \"size\": 10, \"etag\": \"\", "
	      "\"content_type\": \"\", \"ext\": \"\", \"report_time\": \"\"}",
	      file);
	fclose(file);
	CHECK_INT_EQ(cache_entry_open(cache, "k", &entry), -ENOENT);
	CHECK(!file_exists(path));
	cache_close(cache);
}

static void test_blocks(void)
{
	char dir[600];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 10 * BLOCK);
	int64_t size = 2 * BLOCK + 1000;
	struct cache_meta meta = make_meta(size, "\"e\"");
	struct cache_entry *entry;
	unsigned char *block = malloc(BLOCK);
	unsigned char *out = malloc(BLOCK);

	CHECK_INT_EQ(cache_put_meta(cache, "report", &meta), 0);
	CHECK_INT_EQ(cache_entry_open(cache, "report", &entry), 0);
	CHECK(!cache_entry_has_block(entry, 0));
	CHECK(!cache_entry_is_complete(entry));
	CHECK_INT_EQ(cache_entry_read(entry, 0, 10, out), -ENOENT);

	fill_block(block, BLOCK, 1);
	CHECK_INT_EQ(cache_entry_store(entry, 0, block, BLOCK), 0);
	CHECK(cache_entry_has_block(entry, 0));
	CHECK(!cache_entry_has_block(entry, 1));
	CHECK_INT_EQ(cache_used_bytes(cache), BLOCK);
	CHECK_INT_EQ(cache_entry_read(entry, 100, 50, out), 50);
	CHECK(memcmp(out, block + 100, 50) == 0);

	/* Storing a stored block again changes nothing. */
	CHECK_INT_EQ(cache_entry_store(entry, 0, block, BLOCK), 0);
	CHECK_INT_EQ(cache_used_bytes(cache), BLOCK);

	/* Wrong lengths and indexes. */
	CHECK_INT_EQ(cache_entry_store(entry, 1, block, BLOCK - 1), -EINVAL);
	CHECK_INT_EQ(cache_entry_store(entry, 2, block, BLOCK), -EINVAL);
	CHECK_INT_EQ(cache_entry_store(entry, 3, block, 10), -EINVAL);
	CHECK_INT_EQ(cache_entry_read(entry, BLOCK - 10, 20, out), -EINVAL);
	CHECK_INT_EQ(cache_entry_read(entry, 2 * BLOCK + 990, 20, out),
		     -EINVAL);
	CHECK_INT_EQ(cache_entry_read(entry, 3 * BLOCK, 1, out), -EINVAL);

	fill_block(block, BLOCK, 2);
	CHECK_INT_EQ(cache_entry_store(entry, 1, block, BLOCK), 0);
	fill_block(block, 1000, 3);
	CHECK(!cache_entry_is_complete(entry));
	CHECK_INT_EQ(cache_entry_store(entry, 2, block, 1000), 0);
	CHECK(cache_entry_is_complete(entry));
	CHECK_INT_EQ(cache_used_bytes(cache), size);
	CHECK_INT_EQ(cache_max_bytes(cache), 10 * BLOCK);

	/* The last, partial block. */
	CHECK_INT_EQ(cache_entry_read(entry, 2 * BLOCK, 1000, out), 1000);
	CHECK(memcmp(out, block, 1000) == 0);
	CHECK_INT_EQ(cache_entry_read(entry, 2 * BLOCK + 999, 1, out), 1);
	CHECK_INT_EQ(out[0], block[999]);
	cache_entry_release(entry);

	/* Reading back after a remount checks every block's checksum. */
	cache_close(cache);
	cache = open_cache(dir, 10 * BLOCK);
	CHECK_INT_EQ(cache_used_bytes(cache), size);
	CHECK(report_reads_back(cache, "report", size, 1));
	CHECK_INT_EQ(cache_entry_open(cache, "report", &entry), 0);
	CHECK(cache_entry_is_complete(entry));
	CHECK_INT_EQ(cache_entry_read(entry, BLOCK + 5, 7, out), 7);
	fill_block(block, BLOCK, 2);
	CHECK(memcmp(out, block + 5, 7) == 0);

	/* Dropping keeps the metadata. */
	cache_entry_drop(entry);
	CHECK(!cache_entry_has_block(entry, 0));
	CHECK_INT_EQ(cache_entry_read(entry, 0, 1, out), -ENOENT);
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	cache_entry_release(entry);
	CHECK_INT_EQ(cache_get_meta(cache, "report", &meta), 0);
	cache_close(cache);

	cache = open_cache(dir, 10 * BLOCK);
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	cache_close(cache);
	free(block);
	free(out);
}

static void test_empty_report(void)
{
	char dir[600];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), BLOCK);
	struct cache_meta meta = make_meta(0, "");
	struct cache_entry *entry;
	unsigned char buf[1];

	CHECK_INT_EQ(cache_put_meta(cache, "empty", &meta), 0);
	CHECK_INT_EQ(cache_entry_open(cache, "empty", &entry), 0);
	CHECK(cache_entry_is_complete(entry));
	CHECK(!cache_entry_has_block(entry, 0));
	CHECK_INT_EQ(cache_entry_store(entry, 0, buf, 0), -EINVAL);
	CHECK_INT_EQ(cache_entry_read(entry, 0, 1, buf), -EINVAL);
	cache_entry_release(entry);
	cache_close(cache);
}

/* Flips one byte of a file at offset. */
static void corrupt_byte(const char *path, off_t offset)
{
	int fd = open(path, O_RDWR);
	unsigned char byte = 0;

	CHECK(fd >= 0);
	CHECK_INT_EQ(pread(fd, &byte, 1, offset), 1);
	byte ^= 0x40;
	CHECK_INT_EQ(pwrite(fd, &byte, 1, offset), 1);
	close(fd);
}

static void test_corrupted_block(void)
{
	char dir[600];
	char path[1024];
	int64_t size = 3 * BLOCK;
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 10 * BLOCK);
	struct cache_entry *entry;
	unsigned char *out = malloc(BLOCK);

	store_report(cache, "r", size, 10);
	cache_close(cache);

	entry_file(path, sizeof(path), dir, "r", "data");
	corrupt_byte(path, BLOCK + 12345);
	cache = open_cache(dir, 10 * BLOCK);
	CHECK_INT_EQ(cache_used_bytes(cache), size);
	CHECK_INT_EQ(cache_entry_open(cache, "r", &entry), 0);
	CHECK(cache_entry_has_block(entry, 1));
	/* Even a read that misses the damaged byte checks the whole block. */
	CHECK_INT_EQ(cache_entry_read(entry, BLOCK, 10, out), -ENOENT);
	CHECK(!cache_entry_has_block(entry, 1));
	CHECK(!cache_entry_is_complete(entry));
	CHECK_INT_EQ(cache_entry_read(entry, BLOCK, 10, out), -ENOENT);
	CHECK_INT_EQ(cache_used_bytes(cache), 2 * BLOCK);
	CHECK_INT_EQ(cache_entry_read(entry, 0, 10, out), 10);
	CHECK_INT_EQ(cache_entry_read(entry, 2 * BLOCK, BLOCK, out), BLOCK);
	cache_entry_release(entry);
	cache_close(cache);

	/* The drop is on disk, so the next mount agrees. */
	cache = open_cache(dir, 10 * BLOCK);
	CHECK_INT_EQ(cache_used_bytes(cache), 2 * BLOCK);
	CHECK_INT_EQ(cache_entry_open(cache, "r", &entry), 0);
	CHECK(!cache_entry_has_block(entry, 1));
	CHECK(cache_entry_has_block(entry, 2));
	cache_entry_release(entry);
	cache_close(cache);
	free(out);
}

/* A damaged byte inside the range asked for, which is read straight into
 * the caller's buffer, is caught as one outside it is. */
static void test_corrupted_requested_range(void)
{
	char dir[600];
	char path[1024];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 10 * BLOCK);
	struct cache_entry *entry;
	unsigned char *expected = malloc(BLOCK);
	unsigned char *out = malloc(BLOCK);

	store_report(cache, "r", 2 * BLOCK + 10, 20);
	cache_close(cache);
	entry_file(path, sizeof(path), dir, "r", "data");
	corrupt_byte(path, BLOCK + 300);
	corrupt_byte(path, 2 * BLOCK + 9);
	cache = open_cache(dir, 10 * BLOCK);
	CHECK_INT_EQ(cache_entry_open(cache, "r", &entry), 0);
	CHECK_INT_EQ(cache_entry_read(entry, BLOCK + 200, 200, out), -ENOENT);
	CHECK(!cache_entry_has_block(entry, 1));
	CHECK_INT_EQ(cache_entry_read(entry, 2 * BLOCK, 10, out), -ENOENT);
	CHECK(!cache_entry_has_block(entry, 2));
	/* The whole of an intact block comes back exact. */
	fill_block(expected, BLOCK, 20);
	memset(out, 0, BLOCK);
	CHECK_INT_EQ(cache_entry_read(entry, 0, BLOCK, out), BLOCK);
	CHECK(memcmp(out, expected, BLOCK) == 0);
	cache_entry_release(entry);
	cache_close(cache);
	free(expected);
	free(out);
}

static void test_truncated_data(void)
{
	char dir[600];
	char path[1024];
	int64_t size = 3 * BLOCK;
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 10 * BLOCK);
	struct cache_entry *entry;
	unsigned char *out = malloc(BLOCK);

	store_report(cache, "r", size, 20);
	CHECK_INT_EQ(cache_entry_open(cache, "r", &entry), 0);

	/* Truncated while open and before the first read of a block. */
	entry_file(path, sizeof(path), dir, "r", "data");
	CHECK_INT_EQ(truncate(path, 2 * BLOCK + 100), 0);
	CHECK_INT_EQ(cache_entry_read(entry, 2 * BLOCK, 10, out), -ENOENT);
	CHECK(!cache_entry_has_block(entry, 2));
	cache_entry_release(entry);
	cache_close(cache);

	/* Truncated between mounts: the blocks past the end are dropped on
	 * open. */
	CHECK_INT_EQ(truncate(path, BLOCK / 2), 0);
	cache = open_cache(dir, 10 * BLOCK);
	CHECK_INT_EQ(cache_entry_open(cache, "r", &entry), 0);
	CHECK(!cache_entry_has_block(entry, 0));
	CHECK(!cache_entry_has_block(entry, 1));
	CHECK_INT_EQ(cache_entry_read(entry, 0, 10, out), -ENOENT);
	CHECK_INT_EQ(cache_entry_read(entry, BLOCK, 10, out), -ENOENT);
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	cache_entry_release(entry);
	cache_close(cache);
	free(out);
}

static void test_damaged_index(void)
{
	char dir[600];
	char index_path[1024];
	char data_path[1024];
	char meta_path[1024];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 10 * BLOCK);
	struct cache_meta meta;

	store_report(cache, "bad magic", BLOCK, 1);
	store_report(cache, "no data", BLOCK, 2);
	store_report(cache, "intact", BLOCK, 3);
	cache_close(cache);

	entry_file(index_path, sizeof(index_path), dir, "bad magic", "index");
	entry_file(data_path, sizeof(data_path), dir, "bad magic", "data");
	entry_file(meta_path, sizeof(meta_path), dir, "bad magic", "meta");
	corrupt_byte(index_path, 3);
	cache = open_cache(dir, 10 * BLOCK);
	CHECK(!file_exists(index_path));
	CHECK(!file_exists(data_path));
	CHECK(file_exists(meta_path));
	CHECK_INT_EQ(cache_get_meta(cache, "bad magic", &meta), 0);
	cache_close(cache);

	entry_file(index_path, sizeof(index_path), dir, "no data", "index");
	entry_file(data_path, sizeof(data_path), dir, "no data", "data");
	CHECK_INT_EQ(unlink(data_path), 0);
	cache = open_cache(dir, 10 * BLOCK);
	CHECK(!file_exists(index_path));
	CHECK_INT_EQ(cache_used_bytes(cache), BLOCK);
	CHECK(report_reads_back(cache, "intact", BLOCK, 3));
	cache_close(cache);
}

static void test_lru_eviction(void)
{
	char dir[600];
	char path[1024];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 3 * BLOCK);
	struct cache_entry *entry;
	struct cache_meta meta;

	store_report(cache, "a", BLOCK, 1);
	store_report(cache, "b", BLOCK, 2);
	store_report(cache, "c", BLOCK, 3);
	CHECK_INT_EQ(cache_used_bytes(cache), 3 * BLOCK);

	/* Using a makes b the least recently used. */
	CHECK_INT_EQ(cache_entry_open(cache, "a", &entry), 0);
	cache_entry_release(entry);
	store_report(cache, "d", BLOCK, 4);
	CHECK_INT_EQ(cache_used_bytes(cache), 3 * BLOCK);
	entry_file(path, sizeof(path), dir, "b", "data");
	CHECK(!file_exists(path));
	entry_file(path, sizeof(path), dir, "b", "index");
	CHECK(!file_exists(path));
	CHECK_INT_EQ(cache_get_meta(cache, "b", &meta), 0);
	CHECK(report_reads_back(cache, "a", BLOCK, 1));
	CHECK(report_reads_back(cache, "c", BLOCK, 3));
	CHECK(report_reads_back(cache, "d", BLOCK, 4));

	/* Two blocks need two evictions. The reads above used a, c and d in
	 * that order, so a goes first, then c. */
	store_report(cache, "e", 2 * BLOCK, 5);
	CHECK(cache_used_bytes(cache) <= 3 * BLOCK);
	CHECK(report_reads_back(cache, "d", BLOCK, 4));
	CHECK(report_reads_back(cache, "e", 2 * BLOCK, 5));
	CHECK(!report_reads_back(cache, "a", BLOCK, 1));
	CHECK(!report_reads_back(cache, "c", BLOCK, 3));
	cache_close(cache);

	/* A lower bound at the next mount evicts at once. */
	cache = open_cache(dir, BLOCK);
	CHECK(cache_used_bytes(cache) <= BLOCK);
	cache_close(cache);
}

static void set_index_mtime(const char *dir, const char *key, time_t when)
{
	char path[1024];
	struct timespec times[2] = {{when, 0}, {when, 0}};

	entry_file(path, sizeof(path), dir, key, "index");
	CHECK_INT_EQ(utimensat(AT_FDCWD, path, times, 0), 0);
}

static void test_lru_order_after_remount(void)
{
	char dir[600];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 3 * BLOCK);
	time_t now = time(NULL);

	store_report(cache, "old", BLOCK, 1);
	store_report(cache, "older", BLOCK, 2);
	store_report(cache, "new", BLOCK, 3);
	cache_close(cache);
	set_index_mtime(dir, "older", now - 300);
	set_index_mtime(dir, "old", now - 200);
	set_index_mtime(dir, "new", now - 100);

	cache = open_cache(dir, 3 * BLOCK);
	store_report(cache, "newest", BLOCK, 4);
	CHECK(!report_reads_back(cache, "older", BLOCK, 2));
	CHECK(report_reads_back(cache, "old", BLOCK, 1));
	CHECK(report_reads_back(cache, "new", BLOCK, 3));
	cache_close(cache);
}

static void test_open_entries_kept(void)
{
	char dir[600];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 2 * BLOCK);
	struct cache_meta meta = make_meta(2 * BLOCK, "");
	struct cache_entry *first;
	struct cache_entry *second;
	unsigned char *buf = malloc(BLOCK);

	store_report(cache, "held", BLOCK, 1);
	CHECK_INT_EQ(cache_entry_open(cache, "held", &first), 0);
	CHECK_INT_EQ(cache_put_meta(cache, "growing", &meta), 0);
	CHECK_INT_EQ(cache_entry_open(cache, "growing", &second), 0);
	fill_block(buf, BLOCK, 9);
	CHECK_INT_EQ(cache_entry_store(second, 0, buf, BLOCK), 0);

	/* The only other entry is open, and an entry never evicts itself. */
	CHECK_INT_EQ(cache_entry_store(second, 1, buf, BLOCK), -ENOSPC);
	CHECK(!cache_entry_has_block(second, 1));
	CHECK(cache_entry_has_block(first, 0));
	CHECK(cache_entry_has_block(second, 0));
	CHECK_INT_EQ(cache_used_bytes(cache), 2 * BLOCK);

	/* Once released, the held entry can go. */
	cache_entry_release(first);
	CHECK_INT_EQ(cache_entry_store(second, 1, buf, BLOCK), 0);
	CHECK(cache_entry_is_complete(second));
	CHECK(!report_reads_back(cache, "held", BLOCK, 1));
	cache_entry_release(second);
	cache_close(cache);
	free(buf);
}

static void test_zero_bound(void)
{
	char dir[600];
	char path[1024];
	struct cache *cache = open_cache(new_cache_dir(dir, sizeof(dir)), 0);
	struct cache_meta meta = make_meta(BLOCK, "");
	struct cache_meta read_back;
	struct cache_entry *entry;
	unsigned char *buf = calloc(1, BLOCK);

	CHECK_INT_EQ(cache_put_meta(cache, "k", &meta), 0);
	CHECK_INT_EQ(cache_entry_open(cache, "k", &entry), 0);
	CHECK_INT_EQ(cache_entry_store(entry, 0, buf, BLOCK), -ENOSPC);
	CHECK(!cache_entry_has_block(entry, 0));
	cache_entry_release(entry);
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	entry_file(path, sizeof(path), dir, "k", "data");
	CHECK(!file_exists(path));
	entry_file(path, sizeof(path), dir, "k", "index");
	CHECK(!file_exists(path));
	CHECK_INT_EQ(cache_get_meta(cache, "k", &read_back), 0);
	cache_close(cache);

	/* A bound of 0 at the next mount removes the report data there is. */
	cache = open_cache(dir, BLOCK);
	store_report(cache, "k", BLOCK, 1);
	cache_close(cache);
	cache = open_cache(dir, 0);
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	entry_file(path, sizeof(path), dir, "k", "data");
	CHECK(!file_exists(path));
	cache_close(cache);
	free(buf);
}

/* Counts the lines of the file at path that contain text. */
static int count_lines_with(const char *path, const char *text)
{
	char line[4096];
	int count = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		count += strstr(line, text) != NULL;
	fclose(f);
	return count;
}

/* A block write that fails (here with EFBIG, from RLIMIT_FSIZE) returns
 * -ENOSPC so that the caller serves the block from memory, leaves the
 * block absent and uncounted, and is logged once with the data file's
 * path however often it repeats. */
static void test_write_failure(void)
{
	char dir[600];
	char data_path[1024];
	char log_path[1024];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 8 * BLOCK);
	struct cache_meta meta = make_meta(3 * BLOCK, "\"v1\"");
	struct cache_entry *entry;
	unsigned char *buf = malloc(BLOCK);
	struct rlimit saved;
	struct rlimit limit = {BLOCK / 2, BLOCK / 2};
	int saved_stderr;
	int log_fd;

	CHECK_INT_EQ(cache_put_meta(cache, "k", &meta), 0);
	CHECK_INT_EQ(cache_entry_open(cache, "k", &entry), 0);
	fill_block(buf, BLOCK, 3);
	entry_file(data_path, sizeof(data_path), dir, "k", "data");
	snprintf(log_path, sizeof(log_path), "%s/write-failure.log", dir);

	/* The log goes to stderr, so stderr goes to a file meanwhile. */
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(saved_stderr >= 0);
	CHECK(log_fd >= 0);
	dup2(log_fd, STDERR_FILENO);
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &saved);
	limit.rlim_max = saved.rlim_max;
	CHECK_INT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);

	CHECK_INT_EQ(cache_entry_store(entry, 0, buf, BLOCK), -ENOSPC);
	CHECK_INT_EQ(cache_entry_store(entry, 1, buf, BLOCK), -ENOSPC);

	setrlimit(RLIMIT_FSIZE, &saved);
	signal(SIGXFSZ, SIG_DFL);
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	close(log_fd);

	CHECK(!cache_entry_has_block(entry, 0));
	CHECK(!cache_entry_has_block(entry, 1));
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	CHECK_INT_EQ(count_lines_with(log_path, "cannot store block"), 1);
	CHECK_INT_EQ(count_lines_with(log_path, data_path), 1);
	CHECK_INT_EQ(count_lines_with(log_path, strerror(EFBIG)), 1);

	/* Once writes work again, the block is stored and read back. */
	CHECK_INT_EQ(cache_entry_store(entry, 0, buf, BLOCK), 0);
	CHECK(cache_entry_has_block(entry, 0));
	CHECK_INT_EQ(cache_used_bytes(cache), BLOCK);
	cache_entry_release(entry);
	cache_close(cache);
	free(buf);
}

static void check_modes(const char *dir)
{
	char path[1024];

	CHECK_INT_EQ(file_mode(dir), 0700);
	snprintf(path, sizeof(path), "%s/v1", dir);
	CHECK_INT_EQ(file_mode(path), 0700);
	snprintf(path, sizeof(path), "%s/lock", dir);
	CHECK_INT_EQ(file_mode(path), 0600);
	entry_file(path, sizeof(path), dir, "k", "meta");
	CHECK_INT_EQ(file_mode(path), 0600);
	entry_file(path, sizeof(path), dir, "k", "data");
	CHECK_INT_EQ(file_mode(path), 0600);
	entry_file(path, sizeof(path), dir, "k", "index");
	CHECK_INT_EQ(file_mode(path), 0600);
	entry_file(path, sizeof(path), dir, "k", "");
	CHECK_INT_EQ(file_mode(path), 0700);
	*strrchr(path, '/') = '\0';
	*strrchr(path, '/') = '\0';
	CHECK_INT_EQ(file_mode(path), 0700);
}

static void test_modes(void)
{
	static const mode_t umasks[] = {0, 0277};
	struct cache *cache;
	char dir[600];
	size_t i;

	for (i = 0; i < sizeof(umasks) / sizeof(umasks[0]); i++) {
		mode_t old = umask(umasks[i]);

		cache = open_cache(new_cache_dir(dir, sizeof(dir)), BLOCK);
		store_report(cache, "k", 100, 1);
		check_modes(dir);
		cache_close(cache);
		umask(old);
	}

	/* An existing directory with a wider mode is narrowed. */
	new_cache_dir(dir, sizeof(dir));
	CHECK_INT_EQ(mkdir(dir, 0755), 0);
	CHECK_INT_EQ(chmod(dir, 0755), 0);
	cache = open_cache(dir, BLOCK);
	CHECK_INT_EQ(file_mode(dir), 0700);
	cache_close(cache);
}

static void test_changed_etag(void)
{
	char dir[600];
	char path[1024];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 10 * BLOCK);
	struct cache_meta meta = make_meta(2 * BLOCK, "\"v1\"");
	struct cache_entry *stale;
	struct cache_entry *fresh;
	unsigned char *buf = malloc(BLOCK);

	store_report(cache, "k", 2 * BLOCK, 1);

	/* Other fields change without dropping anything. */
	snprintf(meta.report_time, sizeof(meta.report_time), "2024-06-01");
	CHECK_INT_EQ(cache_put_meta(cache, "k", &meta), 0);
	CHECK_INT_EQ(cache_used_bytes(cache), 2 * BLOCK);
	CHECK(report_reads_back(cache, "k", 2 * BLOCK, 1));

	/* A new ETag drops the blocks, also under an open entry. */
	CHECK_INT_EQ(cache_entry_open(cache, "k", &stale), 0);
	CHECK(cache_entry_is_complete(stale));
	snprintf(meta.etag, sizeof(meta.etag), "\"v2\"");
	CHECK_INT_EQ(cache_put_meta(cache, "k", &meta), 0);
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	entry_file(path, sizeof(path), dir, "k", "data");
	CHECK(!file_exists(path));
	CHECK(!cache_entry_has_block(stale, 0));
	CHECK(!cache_entry_is_complete(stale));
	CHECK_INT_EQ(cache_entry_read(stale, 0, 10, buf), -ENOENT);
	fill_block(buf, BLOCK, 1);
	CHECK_INT_EQ(cache_entry_store(stale, 0, buf, BLOCK), -ESTALE);

	/* A new open reads the new metadata and stores again. */
	CHECK_INT_EQ(cache_entry_open(cache, "k", &fresh), 0);
	CHECK(fresh != stale);
	CHECK(!cache_entry_has_block(fresh, 0));
	CHECK_INT_EQ(cache_entry_store(fresh, 0, buf, BLOCK), 0);
	CHECK_INT_EQ(cache_used_bytes(cache), BLOCK);
	cache_entry_release(stale);
	cache_entry_release(fresh);

	/* A new size drops them too. */
	meta.size = BLOCK;
	CHECK_INT_EQ(cache_put_meta(cache, "k", &meta), 0);
	CHECK_INT_EQ(cache_used_bytes(cache), 0);
	CHECK(!file_exists(path));
	cache_close(cache);
	free(buf);
}

struct reader_work {
	struct cache_entry *entry;
	int failures;
};

static void *read_in_thread(void *arg)
{
	struct reader_work *work = arg;
	unsigned char *expected = malloc(BLOCK);
	unsigned char out[4096];
	int i;

	for (i = 0; i < 2000; i++) {
		uint64_t block = (uint64_t)(i % 4);
		size_t offset = (size_t)(i * 4099) % (BLOCK - sizeof(out));
		long n = cache_entry_read(work->entry, block * BLOCK + offset,
					  sizeof(out), out);

		if (n == -ENOENT)
			continue; /* not stored yet */
		fill_block(expected, BLOCK, 40 + (unsigned)block);
		if (n != (long)sizeof(out) ||
		    memcmp(out, expected + offset, sizeof(out)) != 0)
			work->failures++;
	}
	free(expected);
	return NULL;
}

static void test_threads(void)
{
	enum { READERS = 4 };
	char dir[600];
	struct cache *cache =
	    open_cache(new_cache_dir(dir, sizeof(dir)), 10 * BLOCK);
	struct cache_meta meta = make_meta(4 * BLOCK, "");
	struct cache_entry *entry;
	struct reader_work work[READERS];
	pthread_t threads[READERS];
	unsigned char *buf = malloc(BLOCK);
	uint64_t block;
	int i;

	CHECK_INT_EQ(cache_put_meta(cache, "k", &meta), 0);
	CHECK_INT_EQ(cache_entry_open(cache, "k", &entry), 0);
	for (i = 0; i < READERS; i++) {
		work[i] = (struct reader_work){entry, 0};
		pthread_create(&threads[i], NULL, read_in_thread, &work[i]);
	}
	for (block = 0; block < 4; block++) {
		fill_block(buf, BLOCK, 40 + (unsigned)block);
		CHECK_INT_EQ(cache_entry_store(entry, block, buf, BLOCK), 0);
	}
	for (i = 0; i < READERS; i++) {
		pthread_join(threads[i], NULL);
		CHECK_INT_EQ(work[i].failures, 0);
	}
	CHECK(cache_entry_is_complete(entry));
	cache_entry_release(entry);
	cache_close(cache);
	free(buf);
}

/* Holds the cache lock in a child process for hold_seconds. Returns the
 * child's pid once the child holds the lock. */
static pid_t hold_lock_in_child(const char *dir, double hold_seconds)
{
	int ready[2];
	char byte;
	pid_t pid;

	if (pipe(ready) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct cache *cache = NULL;
		char err[256];
		struct timespec hold = {
		    (time_t)hold_seconds,
		    (long)((hold_seconds - (double)(time_t)hold_seconds) *
			   1e9)};

		close(ready[0]);
		if (cache_open(dir, BLOCK, &cache, err, sizeof(err)) != 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		nanosleep(&hold, NULL);
		cache_close(cache);
		_exit(0);
	}
	close(ready[1]);
	if (pid < 0 || read(ready[0], &byte, 1) != 1) {
		close(ready[0]);
		return -1;
	}
	close(ready[0]);
	return pid;
}

static void test_lock(void)
{
	char dir[600];
	char err[512];
	struct cache *cache = NULL;
	double start;
	double elapsed;
	int child_status = -1;
	int status;
	pid_t pid;

	new_cache_dir(dir, sizeof(dir));

	/* Released after half a second: the second open waits, then works. */
	pid = hold_lock_in_child(dir, 0.5);
	CHECK(pid > 0);
	start = now_seconds();
	status = cache_open(dir, BLOCK, &cache, err, sizeof(err));
	elapsed = now_seconds() - start;
	CHECK_INT_EQ(status, 0);
	CHECK(elapsed >= 0.3);
	CHECK(elapsed < 5.0);
	waitpid(pid, &child_status, 0);
	CHECK(WIFEXITED(child_status));
	CHECK_INT_EQ(WEXITSTATUS(child_status), 0);
	cache_close(cache);

	/* Held for longer than the 10 second wait: the open fails. */
	pid = hold_lock_in_child(dir, 12);
	CHECK(pid > 0);
	start = now_seconds();
	cache = NULL;
	status = cache_open(dir, BLOCK, &cache, err, sizeof(err));
	elapsed = now_seconds() - start;
	fprintf(stderr, "cache_open while locked: %s (%.1f s)\n", err, elapsed);
	CHECK_INT_EQ(status, -EBUSY);
	CHECK(cache == NULL);
	CHECK(strstr(err, dir) != NULL);
	CHECK(elapsed >= 9.5);
	CHECK(elapsed < 11.5);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

int main(void)
{
	const char *tmp = getenv("CSIPFS_TEST_TMPDIR");
	char command[700];

	snprintf(base_dir, sizeof(base_dir), "%s/test_cache.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(base_dir)) {
		perror(base_dir);
		return 1;
	}

	test_crc32c();
	test_crc32c_paths_agree();
	test_meta_round_trip();
	test_malformed_meta();
	test_blocks();
	test_empty_report();
	test_corrupted_block();
	test_corrupted_requested_range();
	test_truncated_data();
	test_damaged_index();
	test_lru_eviction();
	test_lru_order_after_remount();
	test_open_entries_kept();
	test_zero_bound();
	test_write_failure();
	test_modes();
	test_changed_etag();
	test_threads();
	test_lock();

	snprintf(command, sizeof(command), "rm -rf '%s'", base_dir);
	if (system(command) != 0)
		fprintf(stderr, "could not remove %s\n", base_dir);
	return check_finish();
}
