/* An open report: serves reads from the block cache and fetches missing
 * blocks with ranged GETs, one fetch per block however many readers want
 * it. Thread-safe: the kernel may send several reads of one open file at
 * once. */
#ifndef CSIPFS_READER_H
#define CSIPFS_READER_H

#include <stddef.h>
#include <sys/types.h>

#include "cache.h"
#include "catalog.h"
#include "fetch.h"

struct reader;

/* Opens the report described by file. The URL is resolved only when a
 * block has to be fetched, and must then be at most url_ttl seconds older
 * than this open. Returns 0 or a negated errno. */
int reader_open(struct catalog *catalog, struct cache *cache,
		struct fetch *fetch, const struct catalog_file *file,
		struct reader **out);

/* Copies up to size bytes at offset into buf. Returns the count, which is
 * less than size only at the end of the report, or a negated errno (logged
 * with the report id). */
ssize_t reader_read(struct reader *reader, char *buf, size_t size,
		    off_t offset);

/* Whether every block of the report is in the disk cache. */
bool reader_is_cached(struct reader *reader);

void reader_close(struct reader *reader);

/* Closes every reader still open and frees the table of fetches in flight.
 * Call once after the FUSE loop has ended and before cache_close(). */
void reader_shutdown(void);

#endif
