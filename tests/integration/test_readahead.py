"""Integration tests of read-ahead.

A read from the start of a report fetches the next blocks before they are
requested. A whole sequential read fetches every block exactly once. Reads
at scattered offsets fetch only the blocks they touch. With no cache to
keep blocks in, nothing is fetched ahead.
"""

import os
import time

from test_mount import BLOCK_SIZE, complete_reports, sha256_file

# Blocks fetched ahead of a first read at offset 0.
FIRST_WINDOW = 2
# Seconds to wait for fetches ahead to reach the store's log.
SETTLE_SECONDS = 10
# The kernel's read-ahead of a mount with a cache, in KiB
# (MOUNT_READAHEAD_KB in fs/main.c).
MOUNT_READAHEAD_KB = 8192


def largest_report(manifest):
    return max(complete_reports(manifest), key=lambda r: r["size"])


def block_count(report):
    return -(-report["size"] // BLOCK_SIZE)


def block_range(report, index):
    last = min((index + 1) * BLOCK_SIZE, report["size"]) - 1
    return f"bytes={index * BLOCK_SIZE}-{last}"


def ranges_of(emulator, report):
    """Return the Range headers of the store's GETs of report, in order."""
    uri = "/" + report["object"]
    return [r["range"] for r in emulator.store_requests()
            if r["uri"] == uri and r["method"] == "GET"]


def wait_for_ranges(emulator, report, count):
    """Return the report's ranges once there are count of them, or after
    SETTLE_SECONDS with fewer."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        ranges = ranges_of(emulator, report)
        if len(ranges) >= count or time.monotonic() > deadline:
            return ranges
        time.sleep(0.2)


def object_bytes(emulator, report, offset, length):
    path = os.path.join(emulator.state["objects_dir"], report["object"])
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def open_random(path):
    """Open path with the kernel's read-ahead off, so that csipfs receives
    exactly the reads made."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd


def read_at(path, offsets, length):
    fd = open_random(path)
    try:
        return [os.pread(fd, length, offset) for offset in offsets]
    finally:
        os.close(fd)


def test_first_read_fetches_next_blocks(mount, emulator, manifest):
    report = largest_report(manifest)
    with mount() as mounted:
        path = mounted.mountpoint / report["path"]
        os.stat(path)
        emulator.reset_store_log()
        # Closing the file drops the blocks still queued, so it stays
        # open until they have arrived.
        fd = open_random(path)
        try:
            data = os.pread(fd, 128 * 1024, 0)
            wait_for_ranges(emulator, report, FIRST_WINDOW)
            # Nothing more arrives once the window is fetched.
            time.sleep(1)
            ranges = ranges_of(emulator, report)
        finally:
            os.close(fd)
    assert data == object_bytes(emulator, report, 0, 128 * 1024)
    # Block 0 was cached when the listing read it for the file's size.
    expected = [block_range(report, i) for i in range(1, 1 + FIRST_WINDOW)]
    assert sorted(ranges) == sorted(expected), (
        f"a first read at offset 0 fetched {ranges}, expected {expected}")


def test_sequential_read_fetches_each_block_once(mount, emulator,
                                                 manifest):
    report = largest_report(manifest)
    with mount() as mounted:
        path = mounted.mountpoint / report["path"]
        os.stat(path)
        emulator.reset_store_log()
        digest = sha256_file(path)
        ranges = ranges_of(emulator, report)
    assert digest == report["sha256"]
    expected = {block_range(report, i) for i in range(1, block_count(report))}
    duplicates = sorted({r for r in ranges if ranges.count(r) > 1})
    assert not duplicates, f"blocks fetched more than once: {duplicates[:5]}"
    assert set(ranges) == expected, (
        f"{len(ranges)} ranges fetched, expected the {len(expected)} blocks "
        f"after the first")


def test_scattered_reads_fetch_only_their_blocks(mount, emulator, manifest):
    report = largest_report(manifest)
    blocks = block_count(report)
    # Spread over the report, never two neighbours, never block 0.
    chosen = [1 + (i * 37) % (blocks - 2) for i in range(20)]
    chosen = sorted(set(chosen))
    chosen = [b for i, b in enumerate(chosen) if i == 0 or
              b - chosen[i - 1] > 4]
    offsets = [b * BLOCK_SIZE + 12345 for b in chosen]
    with mount() as mounted:
        path = mounted.mountpoint / report["path"]
        os.stat(path)
        emulator.reset_store_log()
        data = read_at(path, offsets, 4096)
        time.sleep(1)
        ranges = ranges_of(emulator, report)
    for offset, got in zip(offsets, data):
        assert got == object_bytes(emulator, report, offset, 4096), (
            f"the 4 KiB at {offset} differ")
    expected = sorted(block_range(report, b) for b in chosen)
    assert sorted(ranges) == expected, (
        f"{len(chosen)} scattered reads fetched {len(ranges)} ranges: "
        f"{sorted(set(ranges) - set(expected))[:5]} were not asked for")


def test_no_read_ahead_without_cache(mount, emulator, manifest):
    report = largest_report(manifest)
    with mount(options=["cache_size=0"]) as mounted:
        path = mounted.mountpoint / report["path"]
        os.stat(path)
        emulator.reset_store_log()
        [data] = read_at(path, [0], 128 * 1024)
        time.sleep(1)
        ranges = ranges_of(emulator, report)
    assert data == object_bytes(emulator, report, 0, 128 * 1024)
    assert ranges == [block_range(report, 0)], (
        f"with cache_size=0 a read of block 0 fetched {ranges}")


def kernel_readahead_kb(mountpoint):
    """Return the read_ahead_kb of the mount's backing device in sysfs."""
    device = os.stat(mountpoint).st_dev
    knob = (f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}"
            "/read_ahead_kb")
    with open(knob) as f:
        return int(f.read())


def wait_for_readahead(mountpoint, value):
    """Return the kernel's read-ahead of the mount once it is value, or
    after SETTLE_SECONDS with another one."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        kb = kernel_readahead_kb(mountpoint)
        if kb == value or time.monotonic() > deadline:
            return kb
        time.sleep(0.1)


def test_kernel_readahead_is_raised(mount):
    with mount() as mounted:
        kb = wait_for_readahead(mounted.mountpoint, MOUNT_READAHEAD_KB)
        # It holds: nothing lowers it again later.
        time.sleep(1)
        later = kernel_readahead_kb(mounted.mountpoint)
        log = mounted.log_text()
    assert kb == MOUNT_READAHEAD_KB, f"read_ahead_kb is {kb}"
    assert later == MOUNT_READAHEAD_KB, f"read_ahead_kb fell to {later}"
    assert f"raised the kernel's read-ahead to {MOUNT_READAHEAD_KB} KiB" \
        in log


def test_kernel_readahead_kept_without_cache(mount):
    with mount(options=["cache_size=0"]) as mounted:
        time.sleep(1)
        kb = kernel_readahead_kb(mounted.mountpoint)
        log = mounted.log_text()
    assert kb < MOUNT_READAHEAD_KB, f"read_ahead_kb is {kb}"
    assert "raised the kernel's read-ahead" not in log
    assert "kept the kernel's read-ahead: cache_size=0" in log
