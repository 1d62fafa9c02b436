/* The FUSE operations of a read-only CSIP mount. Every callback returns 0,
 * a count, or a negated errno; write-type operations return -EROFS. */
#ifndef CSIPFS_OPS_H
#define CSIPFS_OPS_H

#include <fuse.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "cache.h"
#include "catalog.h"
#include "fetch.h"

/* State shared by the callbacks, passed as fuse_new()'s user data. */
struct ops_context {
	struct catalog *catalog;
	struct cache *cache;
	struct fetch *fetch;
	uid_t uid;
	gid_t gid;
	double attr_timeout;	 /* seconds the kernel may cache attributes */
	atomic_bool initialized; /* set when init has run */
};

const struct fuse_operations *ops_operations(void);

#endif
