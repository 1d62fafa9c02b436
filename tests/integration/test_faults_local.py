"""Integration tests: local faults of the csipfs daemon and its disk cache.

A daemon killed with SIGKILL in the middle of a read, cache files damaged
while unmounted, a cache filesystem that fills up, and many readers opening
and closing reports at once. Every test checks the bytes against the
manifest or the objects directory, and the object store requests that the
damage causes.
"""

import json
import os
import pathlib
import random
import re
import signal
import subprocess
import threading
import time

import pytest

import conftest
from test_mount import (complete_reports, largest_report, read_range,
                        report_of_size, sha256_file, source_path)

BLOCK_SIZE = 1048576
INDEX_HEADER_SIZE = 16
INDEX_RECORD_SIZE = 8
INDEX_MAGIC = b"CSIPIDX1"
TMPFS_SIZE = 16 * BLOCK_SIZE
READERS = 32
READER_REPORTS = 10
CHURN_SECONDS = 60


# Helpers --------------------------------------------------------------------

def block_count(size):
    return (size + BLOCK_SIZE - 1) // BLOCK_SIZE


def block_range_header(report, index):
    """Return the Range header csipfs sends for block index of report."""
    end = min((index + 1) * BLOCK_SIZE, report["size"]) - 1
    return f"bytes={index * BLOCK_SIZE}-{end}"


def fetched_blocks(emulator, report):
    """Return the sorted block indexes of report that the store served.

    Fails on a request for the report's object that is not one whole block.
    """
    headers = {block_range_header(report, i): i
               for i in range(block_count(report["size"]))}
    blocks = []
    for request in emulator.store_requests():
        if request["uri"] != "/" + report["object"]:
            continue
        assert request["range"] in headers, (
            f"a request for /{report['object']} is not one block: {request}")
        blocks.append(headers[request["range"]])
    return sorted(blocks)


def find_entry_dir(cache_dir, report):
    """Return the cache entry directory that stores report, or None."""
    for meta in pathlib.Path(cache_dir, "v1").glob("*/*/meta"):
        try:
            key = json.loads(meta.read_text())["key"]
        except (OSError, ValueError, KeyError):
            continue
        if key.endswith("/" + report["task_log_id"]):
            return meta.parent
    return None


def entry_dir(cache_dir, report):
    """Return the cache entry directory that stores report."""
    found = find_entry_dir(cache_dir, report)
    assert found is not None, (
        f"no cache entry under {cache_dir} stores report "
        f"{report['task_log_id']}")
    return found


def present_blocks(entry):
    """Return the block indexes whose index record is marked present."""
    data = (entry / "index").read_bytes()
    assert data[:8] == INDEX_MAGIC, f"{entry}/index has a damaged header"
    blocks = []
    for offset in range(INDEX_HEADER_SIZE, len(data) - INDEX_RECORD_SIZE + 1,
                        INDEX_RECORD_SIZE):
        state = int.from_bytes(data[offset:offset + 4], "little")
        if state == 1:
            blocks.append((offset - INDEX_HEADER_SIZE) // INDEX_RECORD_SIZE)
    return blocks


def kill_daemon(mounted):
    """Kill csipfs with SIGKILL and detach its dead mount point."""
    process = mounted.process
    with conftest.active_mounts_lock:
        if mounted in conftest.active_mounts:
            conftest.active_mounts.remove(mounted)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=conftest.EXIT_TIMEOUT)
    mounted.process = None
    result = subprocess.run(["fusermount3", "-u", "-z",
                             str(mounted.mountpoint)],
                            capture_output=True, text=True,
                            timeout=conftest.EXIT_TIMEOUT)
    assert result.returncode == 0, (
        f"fusermount3 -u -z failed: {result.stderr.strip()}")
    mounted.check_log()


def read_whole(mounted, report):
    return sha256_file(mounted.mountpoint / report["path"])


# Crash safety ---------------------------------------------------------------

@pytest.mark.time_limit(180)
def test_kill_during_large_read(mount, emulator, manifest, tmp_path):
    report = largest_report(manifest)
    assert report["size"] > 64 * BLOCK_SIZE, "the largest report is small"
    source = source_path(emulator, report)
    cache = tmp_path / "cache"
    outcome = {}

    first = mount(cache_dir=cache)
    first.start()

    def read_until_killed():
        try:
            outcome["sha256"] = read_whole(first, report)
        except OSError as error:
            outcome["error"] = error

    reader = threading.Thread(target=read_until_killed, daemon=True)
    reader.start()
    entry = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "sha256" not in outcome:
        if entry is None:
            entry = find_entry_dir(cache, report)
        if entry is not None and (entry / "index").exists() and \
                len(present_blocks(entry)) >= 16:
            break
        time.sleep(0.02)
    assert "sha256" not in outcome, (
        "the whole report was read before the daemon could be killed")
    assert entry is not None and len(present_blocks(entry)) >= 16, (
        "fewer than 16 blocks were cached within 60 s")
    kill_daemon(first)
    reader.join(timeout=30)
    assert not reader.is_alive(), "the read did not end after the kill"
    assert "error" in outcome, "the read succeeded although csipfs died"

    # Every block that the index marks present holds the source's bytes,
    # so no block torn by the kill is recorded as stored.
    cached_blocks = present_blocks(entry)
    data_path = entry / "data"
    total = block_count(report["size"])
    assert len(cached_blocks) < total, "every block was cached before the kill"
    for index in cached_blocks:
        length = min(BLOCK_SIZE, report["size"] - index * BLOCK_SIZE)
        cached = read_range(data_path, index * BLOCK_SIZE, length)
        expected = read_range(source, index * BLOCK_SIZE, length)
        assert cached == expected, f"cached block {index} differs"

    emulator.reset_store_log()
    with mount(cache_dir=cache) as second:
        digest = read_whole(second, report)
    assert digest == report["sha256"], "the read after the kill differs"
    fetched = fetched_blocks(emulator, report)
    missing = sorted(set(range(total)) - set(cached_blocks))
    assert fetched == missing, (
        f"after the remount the store served blocks {fetched[:20]}..., "
        f"expected exactly the {len(missing)} blocks not cached")


def damage_corrupt_data(entry, report):
    """Flip bytes in block 2 of the data file."""
    with open(entry / "data", "r+b") as f:
        offset = 2 * BLOCK_SIZE + 4096
        old = os.pread(f.fileno(), 16, offset)
        os.pwrite(f.fileno(), bytes(b ^ 0xFF for b in old), offset)
    return [2], [rf"cache: dropped block 2 of entry {entry.name}: "
                 r"checksum mismatch"]


def damage_truncate_data(entry, report):
    """Cut the data file in the middle of block 2."""
    os.truncate(entry / "data", 2 * BLOCK_SIZE + BLOCK_SIZE // 2)
    dropped = list(range(2, block_count(report["size"])))
    return dropped, [rf"cache: dropped {len(dropped)} blocks of entry "
                     rf"{entry.name} beyond the end of its data file"]


def damage_index_header(entry, report):
    """Overwrite the magic number of the index file."""
    with open(entry / "index", "r+b") as f:
        os.pwrite(f.fileno(), b"XXXXXXXX", 0)
    return (list(range(block_count(report["size"]))),
            [rf"cache: removed the damaged index of entry {entry.name}"])


def damage_index_checksum(entry, report):
    """Change the recorded CRC-32C of block 1."""
    offset = INDEX_HEADER_SIZE + INDEX_RECORD_SIZE + 4
    with open(entry / "index", "r+b") as f:
        old = os.pread(f.fileno(), 4, offset)
        os.pwrite(f.fileno(), bytes(b ^ 0x5A for b in old), offset)
    return [1], [rf"cache: dropped block 1 of entry {entry.name}: "
                 r"checksum mismatch"]


@pytest.mark.parametrize("damage", [
    damage_corrupt_data,
    damage_truncate_data,
    damage_index_header,
    damage_index_checksum,
], ids=["corrupt-data", "truncated-data", "damaged-index-header",
        "damaged-index-checksum"])
def test_damaged_cache_refetched(mount, emulator, manifest, tmp_path,
                                 damage):
    report = report_of_size(manifest, 5 * BLOCK_SIZE)
    cache = tmp_path / "cache"
    with mount(cache_dir=cache) as first:
        assert read_whole(first, report) == report["sha256"]
    entry = entry_dir(cache, report)
    assert present_blocks(entry) == list(range(5)), (
        "the first read did not cache all 5 blocks")

    refetched, log_patterns = damage(entry, report)

    emulator.reset_store_log()
    with mount(cache_dir=cache) as second:
        digest = read_whole(second, report)
        fetched = fetched_blocks(emulator, report)
        log = second.log_text()
    assert digest == report["sha256"], "the read after the damage differs"
    assert fetched == refetched, (
        f"the store served blocks {fetched}, expected {refetched}")
    for pattern in log_patterns:
        assert re.search(pattern, log), f"no log line matches {pattern!r}"
    assert present_blocks(entry) == list(range(5)), (
        "the damaged blocks were not stored again")


# A full cache filesystem ----------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    """Mount a tmpfs of TMPFS_SIZE bytes and return its path."""
    path = tmp_path / "tmpfs"
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700",
         "tmpfs", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, (
        f"mounting a tmpfs on {path} failed: {result.stderr.strip()}")
    yield path
    subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
    assert not os.path.ismount(path), f"{path} is still mounted"


def allocated_bytes(directory):
    total = 0
    for top, _, names in os.walk(directory):
        for name in names:
            total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


@pytest.mark.time_limit(180)
def test_full_cache_filesystem(mount, emulator, manifest, small_tmpfs):
    cache = small_tmpfs / "cache"
    cache_size = 4 * TMPFS_SIZE
    large = largest_report(manifest)
    medium = report_of_size(manifest, 5 * BLOCK_SIZE)
    assert large["size"] > 4 * TMPFS_SIZE, "no report is larger than 64 MiB"
    lowest_free = []
    stop = threading.Event()

    def watch_free_space():
        while not stop.is_set():
            st = os.statvfs(small_tmpfs)
            lowest_free.append(st.f_bavail * st.f_frsize)
            stop.wait(0.01)

    watcher = threading.Thread(target=watch_free_space, daemon=True)
    watcher.start()
    try:
        with mount(cache_dir=cache, options=[f"cache_size={cache_size}"]) \
                as mounted:
            first = read_whole(mounted, large)
            second = read_whole(mounted, large)
            third = read_whole(mounted, medium)
            log = mounted.log_text()
    finally:
        stop.set()
        watcher.join(timeout=10)
    st = os.statvfs(small_tmpfs)
    total = st.f_blocks * st.f_frsize
    final_free = st.f_bavail * st.f_frsize

    assert first == large["sha256"], "the first read differs"
    assert second == large["sha256"], "the second read differs"
    assert third == medium["sha256"], "the read of the 5 MiB report differs"
    assert lowest_free, "the free space was never sampled"
    assert min(lowest_free) >= total // 20, (
        f"the tmpfs had {min(lowest_free)} of {total} bytes free, less "
        "than 5%")
    assert final_free >= total // 20, (
        f"the tmpfs has {final_free} of {total} bytes free after the reads")
    # The cache used the space it had before it stopped storing.
    assert min(lowest_free) < total // 10, (
        f"the tmpfs never had less than {min(lowest_free)} of {total} bytes "
        "free, so the cache stopped early")
    stored = allocated_bytes(cache / "v1")
    assert stored <= cache_size, f"the cache takes {stored} bytes"
    # Storing the 5 MiB report evicted the closed large report.
    large_entry = entry_dir(cache, large)
    assert not (large_entry / "data").exists(), (
        "the large report's data was not evicted")
    assert present_blocks(entry_dir(cache, medium)) == list(range(5)), (
        "the 5 MiB report was not cached after the eviction")
    evicted = (rf"cache: evicted entry {large_entry.name} \(\d+ bytes\) "
               r"because the filesystem of .* is short of space")
    assert re.search(evicted, log), f"no log line matches {evicted!r}"
    pattern = (rf"cache: not storing report data in {re.escape(str(cache))}"
               r": No space left on device")
    matches = re.findall(pattern, log)
    assert len(matches) == 1, (
        f"{len(matches)} log lines match {pattern!r}, expected 1 because "
        "repeats are rate limited")


# Many readers ---------------------------------------------------------------

def churn_reports(manifest):
    """Return READER_REPORTS reports: the largest, then multi-block and
    boundary sizes, then small ones."""
    reports = complete_reports(manifest)
    chosen = [largest_report(manifest)]
    for size in (5 * BLOCK_SIZE, 3 * BLOCK_SIZE + 12345, BLOCK_SIZE + 1,
                 BLOCK_SIZE, BLOCK_SIZE - 1, 1, 0):
        chosen.append(report_of_size(manifest, size))
    for report in sorted(reports, key=lambda r: r["task_log_id"]):
        if len(chosen) == READER_REPORTS:
            break
        if report not in chosen:
            chosen.append(report)
    assert len(chosen) == READER_REPORTS
    return chosen


@pytest.mark.time_limit(CHURN_SECONDS + 120)
def test_concurrent_open_close_churn(mount, emulator, manifest, tmp_path):
    reports = churn_reports(manifest)
    sources = {r["task_log_id"]: source_path(emulator, r) for r in reports}
    # A cache smaller than the reports read at once, so that stores,
    # evictions and reads from memory run concurrently.
    options = [f"cache_size={6 * BLOCK_SIZE}"]
    stop_at = time.monotonic() + CHURN_SECONDS
    failures = []
    operations = [0] * READERS

    def churn(number):
        rng = random.Random(number)
        while time.monotonic() < stop_at and not failures:
            report = rng.choice(reports)
            path = mounted.mountpoint / report["path"]
            size = report["size"]
            whole = size <= 8 * BLOCK_SIZE and rng.random() < 0.3
            if whole:
                offset, length = 0, size
            else:
                offset = rng.randrange(size + 1)
                length = rng.randrange(min(size - offset, 3 * BLOCK_SIZE) + 1)
            try:
                with open(path, "rb") as f:
                    got = os.pread(f.fileno(), length, offset)
            except OSError as error:
                failures.append(f"reader {number}: {report['path']} at "
                                f"{offset}: {error!r}")
                return
            expected = read_range(sources[report["task_log_id"]], offset,
                                  length)
            if got != expected:
                failures.append(f"reader {number}: {report['path']}: "
                                f"{length} bytes at {offset} differ")
                return
            operations[number] += 1

    # At the debug level, 32 readers exceed the daemon's log rate limit,
    # whose "log lines dropped" warning would hide the warnings checked here.
    with mount(cache_dir=tmp_path / "cache", options=options,
               log_level="info") as mounted:
        threads = [threading.Thread(target=churn, args=(n,), daemon=True)
                   for n in range(READERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=CHURN_SECONDS + 60)
        hung = [n for n, t in enumerate(threads) if t.is_alive()]
        log = mounted.log_text()
    assert not hung, f"readers {hung} did not finish: a deadlock?"
    assert not failures, "\n".join(failures)
    assert all(count > 0 for count in operations), (
        f"some readers finished no read: {operations}")
    warnings = [line for line in log.splitlines()
                if "csipfs: warning:" in line]
    assert not warnings, "warnings in the log:\n" + "\n".join(warnings[:20])
