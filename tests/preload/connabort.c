/* A preload library for the integration tests that reproduces a kernel race
 * at unmount. When the kernel shuts a FUSE connection down, a thread blocked
 * in read() on /dev/fuse gets ENODEV, but a thread that has just taken a
 * request off the queue gets ECONNABORTED (fuse_dev_do_read() in
 * fs/fuse/dev.c). The race is too narrow to hit on purpose, so this
 * library turns the first ENODEV from /dev/fuse into ECONNABORTED. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define FUSE_MAJOR 10
#define FUSE_MINOR 229

typedef ssize_t read_function(int fd, void *buf, size_t count);

static read_function *next_read;
static atomic_bool replaced;

/* Looks up libc's read() once, before any thread of the daemon starts. */
__attribute__((constructor)) static void find_next_read(void)
{
	next_read = (read_function *)dlsym(RTLD_NEXT, "read");
}

static bool is_fuse_device(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
	       st.st_rdev == makedev(FUSE_MAJOR, FUSE_MINOR);
}

ssize_t read(int fd, void *buf, size_t count)
{
	ssize_t result;
	int saved;

	if (!next_read) {
		errno = ENOSYS;
		return -1;
	}
	result = next_read(fd, buf, count);
	if (result >= 0 || errno != ENODEV)
		return result;
	saved = errno;
	if (is_fuse_device(fd) && !atomic_exchange(&replaced, true))
		saved = ECONNABORTED;
	errno = saved;
	return result;
}
