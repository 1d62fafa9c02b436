/* The on-disk block cache: per-report metadata and report data in fixed
 * blocks, bounded in bytes and evicted least recently used. Entries are
 * keyed by a caller's string (account and report id); paths on disk are
 * derived only from the SHA-256 of that key. A block is served only once its
 * data and its checksum are both on disk, so a crash at any moment never
 * leaves a partial block that is later served. Thread-safe. */
#ifndef CSIPFS_CACHE_H
#define CSIPFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CACHE_BLOCK_SIZE (1024 * 1024)

/* Metadata of a report, from its object store. */
struct cache_meta {
	int64_t size;		/* exact size in bytes */
	char etag[128];		/* "" if the store sent none */
	char content_type[128]; /* "" if the store sent none */
	char ext[16];		/* file name extension with its dot, or "" */
	char report_time[32];	/* the listing's Time when this was recorded */
};

struct cache;
struct cache_entry;

/* Opens or creates the cache under dir (directories 0700, files 0600), takes
 * an exclusive lock on it (waiting at most 10 seconds for an earlier mount
 * to let go), drops damaged entries, and counts the bytes stored. max_bytes
 * bounds the report data kept; 0 keeps no report data on disk at all.
 * Returns 0, or a negated errno with err naming the path. */
int cache_open(const char *dir, uint64_t max_bytes, struct cache **out,
	       char *err, size_t err_size);
void cache_close(struct cache *cache);

/* Reads the metadata stored for key. Returns 0, or -ENOENT. */
int cache_get_meta(struct cache *cache, const char *key,
		   struct cache_meta *meta);

/* Stores the metadata for key, atomically (written to a temporary file and
 * renamed), even when the cache filesystem is short of space, since it is
 * one small file. A write failure is logged at most once a minute per
 * cause. If size or etag differ from what was stored, or nothing valid
 * was stored, the cached blocks of key are dropped, and an open entry of key
 * becomes stale, so it serves and stores no block. Returns 0,
 * -EINVAL (a size below 0 or from 2^62 up, or a string that is not valid
 * UTF-8) or another negated errno. */
int cache_put_meta(struct cache *cache, const char *key,
		   const struct cache_meta *meta);

/* Opens the data of key, whose metadata must be stored. The entry is
 * reference-counted: every open is paired with cache_entry_release(), and
 * every entry is released before cache_close(). Returns 0, -ENOENT when no
 * metadata is stored, or another negated errno. */
int cache_entry_open(struct cache *cache, const char *key,
		     struct cache_entry **out);
void cache_entry_release(struct cache_entry *entry);

/* Whether block index is stored (its checksum is checked on the first read). */
bool cache_entry_has_block(struct cache_entry *entry, uint64_t index);

/* Whether every block of the report is stored. */
bool cache_entry_is_complete(struct cache_entry *entry);

/* Copies length bytes at offset, which must lie within one block, into buf.
 * The block's checksum is verified the first time it is read after open; a
 * damaged block is dropped with a log line. Returns the bytes copied, or
 * -ENOENT when the block is not stored (or was just dropped), -EINVAL when
 * the range crosses a block boundary or the end of the report, or another
 * negated errno. */
long cache_entry_read(struct cache_entry *entry, uint64_t offset, size_t length,
		      void *buf);

/* Stores block index (length bytes: CACHE_BLOCK_SIZE, or less for the last
 * block). Evicts the least recently used entries that are not open to stay
 * within max_bytes, and to keep 5% of the cache filesystem free (checked
 * with statvfs() at most once a second, counting the blocks stored since).
 * Storing a block that is already stored changes nothing. Returns 0, or
 * -ENOSPC when the block was not stored: it does not fit within max_bytes,
 * the filesystem is short of space, or writing failed (EIO, ENOSPC and any
 * other errno, logged here at most once a minute per cause with the path).
 * The caller then serves the block from memory. Also returns -ESTALE when
 * the entry is stale (see cache_put_meta()), or -EINVAL for a wrong index
 * or length. */
int cache_entry_store(struct cache_entry *entry, uint64_t index,
		      const void *buf, size_t length);

/* Drops every stored block of the entry, keeping its metadata. */
void cache_entry_drop(struct cache_entry *entry);

/* Bytes of report data stored now, and the bound. */
uint64_t cache_used_bytes(struct cache *cache);
uint64_t cache_max_bytes(struct cache *cache);

/* Computes the CRC-32C (Castagnoli) of size bytes, continuing from the CRC
 * of earlier bytes (0 to start). This is the block checksum of the index. */
uint32_t cache_crc32c(uint32_t crc, const void *data, size_t size);

/* The same without the processor's crc32 instruction, which cache_crc32c()
 * uses where it exists; for tests that compare the two. */
uint32_t cache_crc32c_portable(uint32_t crc, const void *data, size_t size);

#endif
