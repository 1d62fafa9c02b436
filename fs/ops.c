/* The FUSE operations: path lookups go to the catalog, reads to a reader
 * per open file. */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "log.h"
#include "names.h"
#include "reader.h"

static struct ops_context *context(void)
{
	return fuse_get_context()->private_data;
}

static void *ops_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct ops_context *ctx = context();

	/* The kernel sends at most max_background reads at once, and its
	 * read-ahead of a file needs several of them in flight. */
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	cfg->use_ino = 1;
	cfg->entry_timeout = ctx->attr_timeout;
	cfg->attr_timeout = ctx->attr_timeout;
	cfg->negative_timeout = 1;
	atomic_store(&ctx->initialized, true);
	return ctx;
}

static void fill_stat(const struct ops_context *ctx,
		      const struct catalog_attr *attr, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = attr->ino;
	st->st_uid = ctx->uid;
	st->st_gid = ctx->gid;
	st->st_mtime = attr->mtime;
	st->st_ctime = attr->mtime;
	st->st_atime = attr->mtime;
	if (attr->kind == CATALOG_REPORT) {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = attr->size;
		st->st_blocks = (attr->size + 511) / 512;
	} else {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	}
	st->st_blksize = 65536;
}

static int ops_getattr(const char *path, struct stat *st,
		       struct fuse_file_info *fi)
{
	struct ops_context *ctx = context();
	struct catalog_attr attr;
	int rc;

	(void)fi;
	rc = catalog_getattr(ctx->catalog, path, &attr);
	if (rc < 0)
		return rc;
	fill_stat(ctx, &attr, st);
	return 0;
}

/* The entries of an open directory, copied at its first read (and at each
 * rewind) and then handed to libfuse by offset. Given offsets, libfuse
 * sends the kernel each entry's node and attributes with its name, and
 * ls -l then needs no LOOKUP per entry. Without offsets it sends names
 * only. The entries are copied out because libfuse calls getattr, which
 * takes the catalog's lock, from inside the filler. */
struct dir_entry {
	char *name;
	struct catalog_attr attr;
};

struct dir_listing {
	struct dir_entry *entries;
	size_t count;
	size_t capacity;
	bool loaded;
	bool failed; /* out of memory while copying the entries */
};

static void clear_listing(struct dir_listing *listing)
{
	for (size_t i = 0; i < listing->count; i++)
		free(listing->entries[i].name);
	free(listing->entries);
	memset(listing, 0, sizeof(*listing));
}

static int copy_entry(void *opaque, const char *name,
		      const struct catalog_attr *attr)
{
	struct dir_listing *listing = opaque;
	struct dir_entry *entry;

	if (listing->count == listing->capacity) {
		size_t capacity =
		    listing->capacity ? listing->capacity * 2 : 64;
		struct dir_entry *grown = realloc(
		    listing->entries, capacity * sizeof(*listing->entries));

		if (!grown) {
			listing->failed = true;
			return 1;
		}
		listing->entries = grown;
		listing->capacity = capacity;
	}
	entry = &listing->entries[listing->count];
	entry->name = strdup(name);
	if (!entry->name) {
		listing->failed = true;
		return 1;
	}
	entry->attr = *attr;
	listing->count++;
	return 0;
}

static int ops_opendir(const char *path, struct fuse_file_info *fi)
{
	struct dir_listing *listing = calloc(1, sizeof(*listing));

	(void)path;
	if (!listing)
		return -ENOMEM;
	fi->fh = (uint64_t)(uintptr_t)listing;
	return 0;
}

static int ops_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct dir_listing *listing = (void *)(uintptr_t)fi->fh;

	(void)path;
	if (listing) {
		clear_listing(listing);
		free(listing);
	}
	return 0;
}

/* Offsets: 0 and 1 are "." and "..", and entry i of the listing is i + 2.
 * Each entry is passed with the offset of the one after it. */
static int ops_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		       off_t offset, struct fuse_file_info *fi,
		       enum fuse_readdir_flags flags)
{
	struct ops_context *ctx = context();
	struct dir_listing *listing = (void *)(uintptr_t)fi->fh;
	bool plus = (flags & FUSE_READDIR_PLUS) != 0;
	int rc;

	if (offset < 0)
		return -EINVAL;
	if (offset == 0 || !listing->loaded) {
		clear_listing(listing);
		rc = catalog_readdir(ctx->catalog, path, copy_entry, listing);
		if (rc == 0 && listing->failed)
			rc = -ENOMEM;
		if (rc < 0) {
			clear_listing(listing);
			return rc;
		}
		listing->loaded = true;
	}
	for (uint64_t i = (uint64_t)offset; i < listing->count + 2; i++) {
		const struct dir_entry *entry;
		struct stat st;

		if (i < 2) {
			if (filler(buf, i == 0 ? "." : "..", NULL, (off_t)i + 1,
				   0))
				break;
			continue;
		}
		entry = &listing->entries[i - 2];
		if (plus) {
			fill_stat(ctx, &entry->attr, &st);
		} else {
			memset(&st, 0, sizeof(st));
			st.st_ino = entry->attr.ino;
			st.st_mode = entry->attr.kind == CATALOG_REPORT
					 ? S_IFREG
					 : S_IFDIR;
		}
		if (filler(buf, entry->name, &st, (off_t)i + 1,
			   plus ? FUSE_FILL_DIR_PLUS : 0))
			break;
	}
	return 0;
}

static int ops_open(const char *path, struct fuse_file_info *fi)
{
	struct ops_context *ctx = context();
	struct catalog_file file;
	struct reader *reader;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	rc = catalog_open(ctx->catalog, path, &file);
	if (rc < 0)
		return rc;
	rc = reader_open(ctx->catalog, ctx->cache, ctx->fetch, &file, &reader);
	if (rc < 0) {
		log_error("account %s: report %s: open failed: %s",
			  file.account, file.report_id, strerror(-rc));
		return rc;
	}
	fi->fh = (uint64_t)(uintptr_t)reader;
	/* Reports never change under one id and ETag, so the page cache
	 * may keep their pages across opens. */
	fi->keep_cache = 1;
	return 0;
}

static int ops_read(const char *path, char *buf, size_t size, off_t offset,
		    struct fuse_file_info *fi)
{
	struct reader *reader = (struct reader *)(uintptr_t)fi->fh;
	ssize_t rc;

	(void)path;
	rc = reader_read(reader, buf, size, offset);
	return (int)rc;
}

static int ops_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	reader_close((struct reader *)(uintptr_t)fi->fh);
	fi->fh = 0;
	return 0;
}

static int ops_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_namemax = NAMES_MAX_BYTES;
	st->f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
	return 0;
}

static int ops_access(const char *path, int mask)
{
	struct catalog_attr attr;

	if (mask & W_OK)
		return -EROFS;
	return catalog_getattr(context()->catalog, path, &attr);
}

/* Write-type operations: the mount is read-only. */

static int rofs_path(const char *path)
{
	(void)path;
	return -EROFS;
}

static int rofs_mode(const char *path, mode_t mode)
{
	(void)mode;
	return rofs_path(path);
}

static int rofs_two_paths(const char *from, const char *to)
{
	(void)to;
	return rofs_path(from);
}

static int rofs_rename(const char *from, const char *to, unsigned int flags)
{
	(void)flags;
	return rofs_two_paths(from, to);
}

static int rofs_mknod(const char *path, mode_t mode, dev_t dev)
{
	(void)dev;
	return rofs_mode(path, mode);
}

static int rofs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	return rofs_mode(path, mode);
}

static int rofs_chown(const char *path, uid_t uid, gid_t gid,
		      struct fuse_file_info *fi)
{
	(void)uid;
	(void)gid;
	(void)fi;
	return rofs_path(path);
}

static int rofs_truncate(const char *path, off_t size,
			 struct fuse_file_info *fi)
{
	(void)size;
	(void)fi;
	return rofs_path(path);
}

static int rofs_write(const char *path, const char *buf, size_t size,
		      off_t offset, struct fuse_file_info *fi)
{
	(void)buf;
	(void)size;
	(void)offset;
	(void)fi;
	return rofs_path(path);
}

static int rofs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	return rofs_mode(path, mode);
}

static int rofs_utimens(const char *path, const struct timespec tv[2],
			struct fuse_file_info *fi)
{
	(void)tv;
	(void)fi;
	return rofs_path(path);
}

static int rofs_setxattr(const char *path, const char *name, const char *value,
			 size_t size, int flags)
{
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	return rofs_path(path);
}

static int rofs_removexattr(const char *path, const char *name)
{
	(void)name;
	return rofs_path(path);
}

static int rofs_fallocate(const char *path, int mode, off_t offset,
			  off_t length, struct fuse_file_info *fi)
{
	(void)mode;
	(void)offset;
	(void)length;
	(void)fi;
	return rofs_path(path);
}

static const struct fuse_operations operations = {
    .init = ops_init,
    .getattr = ops_getattr,
    .opendir = ops_opendir,
    .readdir = ops_readdir,
    .releasedir = ops_releasedir,
    .open = ops_open,
    .read = ops_read,
    .release = ops_release,
    .statfs = ops_statfs,
    .access = ops_access,
    /* No getxattr or listxattr: libfuse replies ENOSYS, after which the
     * kernel fails them with EOPNOTSUPP itself. ls -l requests the ACLs and
     * security labels of every file, each a round trip otherwise. */
    .mknod = rofs_mknod,
    .mkdir = rofs_mode,
    .unlink = rofs_path,
    .rmdir = rofs_path,
    .symlink = rofs_two_paths,
    .rename = rofs_rename,
    .link = rofs_two_paths,
    .chmod = rofs_chmod,
    .chown = rofs_chown,
    .truncate = rofs_truncate,
    .write = rofs_write,
    .create = rofs_create,
    .utimens = rofs_utimens,
    .setxattr = rofs_setxattr,
    .removexattr = rofs_removexattr,
    .fallocate = rofs_fallocate,
};

const struct fuse_operations *ops_operations(void)
{
	return &operations;
}
