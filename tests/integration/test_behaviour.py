"""Integration tests of how csipfs uses the API, the store and its cache.

These check the promises that the plain tree and copy tests cannot see:
stable inode numbers, batched and shared URL resolution, the cache bound,
the help text, and the emulator's own protocol checks.
"""

import ctypes
import errno
import hashlib
import os
import pathlib
import struct
import subprocess
import sys
import threading
import time

import pytest

from test_mount import (BLOCK_SIZE, complete_reports, expected_files,
                        multi_block_report, run, sha256_file, walk_tree)

TESTS_DIR = pathlib.Path(__file__).resolve().parents[1]
URL_BATCH = 50


def inodes(root):
    """Return {relative path: st_ino} for every file and directory."""
    found = {}
    dirs, files = walk_tree(root)
    for path in sorted(dirs | files):
        found[path] = os.stat(root / path).st_ino
    return found


def test_inodes_stable_across_mounts(mount, manifest, tmp_path):
    with mount(cache_dir=tmp_path / "cache-a") as first:
        before = inodes(first.mountpoint)
        root_ino = os.stat(first.mountpoint).st_ino
    # A second mount with an empty cache must derive the same numbers.
    with mount(cache_dir=tmp_path / "cache-b") as second:
        after = inodes(second.mountpoint)
    assert set(expected_files(manifest)) <= set(before), (
        "the walk did not reach every report")
    assert before == after, "inode numbers changed between two mounts"
    assert root_ino == 1, f"the root has inode {root_ino}, expected 1"
    assert len(set(before.values())) == len(before), (
        "two entries share an inode number")


def task_dirs_with_reports(manifest):
    """Return {task directory: report count} of the administrator's view."""
    counts = {}
    for report in complete_reports(manifest):
        task_dir = str(pathlib.PurePosixPath(report["path"]).parent)
        counts[task_dir] = counts.get(task_dir, 0) + 1
    return counts


def test_listing_batches_url_calls(mount, emulator, manifest):
    tasks = task_dirs_with_reports(manifest)
    expected_calls = sum(-(-count // URL_BATCH) for count in tasks.values())
    emulator.reset_counts()
    with mount() as mounted:
        result = run(["ls", "-lR", str(mounted.mountpoint)])
        assert result.returncode == 0, f"ls -lR failed: {result.stderr!r}"
        listed = emulator.counts().get("DescribeTaskLogURL", 0)
        # Reading every report within url_ttl reuses the URLs the listing
        # resolved, so a whole copy adds no call.
        for path, report in expected_files(manifest).items():
            assert sha256_file(mounted.mountpoint / path) == report[
                "sha256"], f"{path}: sha256 differs"
        after_reads = emulator.counts().get("DescribeTaskLogURL", 0)
    assert listed == expected_calls, (
        f"listing {len(tasks)} task directories made {listed} "
        f"DescribeTaskLogURL calls, expected {expected_calls}")
    assert after_reads == listed, (
        f"reading within url_ttl made {after_reads - listed} more "
        "DescribeTaskLogURL calls")


def test_concurrent_reads_share_one_call(mount, emulator, manifest):
    report = multi_block_report(manifest)
    readers = 8
    barrier = threading.Barrier(readers)
    digests = [None] * readers
    errors = []

    # url_ttl=0: an open may not use a URL resolved before it, so the
    # reads after the listing need one more call, which all of them share.
    with mount(options=["url_ttl=0"]) as mounted:
        path = mounted.mountpoint / report["path"]
        os.stat(path)
        emulator.reset_counts()

        def read(number):
            try:
                with open(path, "rb") as f:
                    barrier.wait(timeout=30)
                    data = f.read()
                digests[number] = hashlib.sha256(data).hexdigest()
            except Exception as error:  # reported below, per reader
                errors.append(f"reader {number}: {error!r}")

        threads = [threading.Thread(target=read, args=(n,))
                   for n in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        calls = emulator.counts().get("DescribeTaskLogURL", 0)
    assert errors == [], errors
    assert digests == [report["sha256"]] * readers, "a reader got other bytes"
    assert calls == 1, (
        f"{readers} concurrent readers made {calls} DescribeTaskLogURL "
        "calls, expected one shared call")


def allocated_bytes(cache):
    """Return the bytes the cache's data files take on disk."""
    total = 0
    for top, _, names in os.walk(cache):
        for name in names:
            if name == "data":
                total += os.stat(os.path.join(top, name)).st_blocks * 512
    return total


def data_files(cache):
    return [os.path.join(top, name) for top, _, names in os.walk(cache)
            for name in names if name == "data"]


def test_cache_stays_within_size(mount, manifest, tmp_path):
    cache = tmp_path / "cache"
    limit = 4 * BLOCK_SIZE
    reports = sorted(complete_reports(manifest), key=lambda r: r["size"])
    large = [r for r in reports if BLOCK_SIZE < r["size"] < 64 * BLOCK_SIZE]
    assert sum(r["size"] for r in large) > 2 * limit, (
        "the fixture's multi-block reports do not exceed the cache size")
    with mount(cache_dir=cache, options=["cache_size=4M"]) as mounted:
        for report in large:
            digest = sha256_file(mounted.mountpoint / report["path"])
            assert digest == report["sha256"], (
                f"{report['path']}: sha256 differs")
            used = allocated_bytes(cache)
            assert used <= limit, (
                f"the cache holds {used} bytes of data, more than {limit}")
    assert data_files(cache), "no report data was cached at all"


def test_cache_size_zero_keeps_no_data(mount, manifest, tmp_path):
    cache = tmp_path / "cache"
    report = multi_block_report(manifest)
    with mount(cache_dir=cache, options=["cache_size=0"]) as mounted:
        digest = sha256_file(mounted.mountpoint / report["path"])
        walk_tree(mounted.mountpoint)
    assert digest == report["sha256"], "reading without a cache failed"
    assert data_files(cache) == [], (
        f"cache_size=0 left data files: {data_files(cache)[:3]}")


def test_help_lists_every_option(csipfs_bin):
    result = run([csipfs_bin, "--help"], text=True)
    assert result.returncode == 0, f"--help exited {result.returncode}"
    for option, default in (("endpoint=URL", "csip.intl.tencentcloudapi.com"),
                            ("region=NAME", "TENCENTCLOUD_REGION"),
                            ("profile=NAME", '"default"'),
                            ("cafile=FILE", "system store"),
                            ("cache_dir=DIR", ".cache/csipfs"),
                            ("cache_size=SIZE", "4G"),
                            ("dir_ttl=SECONDS", "300"),
                            ("url_ttl=SECONDS", "60"),
                            ("log_level=LEVEL", "info"),
                            ("allow_other", "default_permissions")):
        assert option in result.stdout, f"--help does not list {option}"
        assert default in result.stdout, (
            f"--help does not give {default} for {option}")


def test_emulator_protocol_selfcheck(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "emulator.selfcheck", "--dir",
         str(tmp_path / "emulator")],
        cwd=TESTS_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"the emulator's self-check failed:\n{result.stdout}\n"
        f"{result.stderr[-3000:]}")
    passed = [line for line in result.stdout.splitlines()
              if line.startswith("ok: ")]
    assert len(passed) >= 13, f"only {len(passed)} checks ran:\n{result.stdout}"


def test_meson_install_copies_binary_and_man_page(csipfs_bin, tmp_path):
    build_dir = pathlib.Path(csipfs_bin).resolve().parents[1]
    destination = tmp_path / "root"
    result = run(["meson", "install", "--no-rebuild", "-C", str(build_dir),
                  "--destdir",
                  str(destination)], text=True)
    assert result.returncode == 0, f"meson install failed:\n{result.stdout}"
    installed = {str(p.relative_to(destination))
                 for p in destination.rglob("*") if p.is_file()}
    binaries = [p for p in installed if p.endswith("bin/csipfs")]
    pages = [p for p in installed if p.endswith("man1/csipfs.1")]
    assert len(binaries) == 1, f"installed files: {sorted(installed)}"
    assert len(pages) == 1, f"installed files: {sorted(installed)}"
    assert os.access(destination / binaries[0], os.X_OK), (
        "the installed csipfs is not executable")


def test_remount_reuses_fresh_listing(mount, emulator, manifest, tmp_path):
    cache = tmp_path / "cache"
    with mount(cache_dir=cache) as first:
        walk_tree(first.mountpoint)
    emulator.reset_counts()
    with mount(cache_dir=cache) as second:
        _, files = walk_tree(second.mountpoint)
        for path in files:
            os.stat(second.mountpoint / path)
        counts = emulator.counts()
    assert files == set(expected_files(manifest))
    # The account list is fetched at every mount: it checks the
    # credential.
    assert counts.get("DescribeOrganizationUserInfo", 0) == 1, counts
    assert counts.get("DescribeTaskLogList", 0) == 0, counts
    assert counts.get("DescribeTaskLogURL", 0) == 0, counts


def test_remount_lists_again_after_dir_ttl(mount, emulator, manifest,
                                           tmp_path):
    cache = tmp_path / "cache"
    with mount(cache_dir=cache, options=["dir_ttl=1"]) as first:
        walk_tree(first.mountpoint)
    # The saved listings are now older than dir_ttl.
    time.sleep(1.5)
    emulator.reset_counts()
    with mount(cache_dir=cache, options=["dir_ttl=1"]) as second:
        _, files = walk_tree(second.mountpoint)
        counts = emulator.counts()
    assert files == set(expected_files(manifest))
    assert counts.get("DescribeTaskLogList", 0) > 0, counts


def test_xattrs_not_supported(admin_mount, manifest):
    path = admin_mount.mountpoint / next(iter(expected_files(manifest)))
    # Twice, because the second reply comes from the kernel, which has
    # learnt that the file system has no extended attributes.
    for attempt in range(2):
        with pytest.raises(OSError) as raised:
            os.getxattr(path, "security.selinux")
        assert raised.value.errno == errno.EOPNOTSUPP, attempt
        with pytest.raises(OSError) as raised:
            os.listxattr(path)
        assert raised.value.errno == errno.EOPNOTSUPP, attempt


# Directory listings ------------------------------------------------------

SYS_GETDENTS64 = 217  # x86_64


def getdents_names(path, buffer_size):
    """List directory path with getdents64 and a buffer of buffer_size
    bytes, which has room for one or two entries, so that the kernel
    resumes the listing at each entry's offset. Returns the names in
    order."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(buffer_size)
    names = []
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            n = libc.syscall(SYS_GETDENTS64, fd, buf, buffer_size)
            if n < 0:
                raise OSError(ctypes.get_errno(), "getdents64", str(path))
            if n == 0:
                return names
            pos = 0
            while pos < n:
                reclen = struct.unpack_from("<H", buf.raw, pos + 16)[0]
                raw = buf.raw[pos + 19:pos + reclen]
                names.append(os.fsdecode(raw.split(b"\0", 1)[0]))
                pos += reclen
    finally:
        os.close(fd)


def test_listing_resumes_at_each_offset(admin_mount, manifest):
    tasks = task_dirs_with_reports(manifest)
    task_dir = max(tasks, key=tasks.get)
    path = admin_mount.mountpoint / task_dir
    expected = sorted(os.listdir(path))
    # The longest name sets the size of the smallest buffer with room for
    # any entry.
    longest = max(len(os.fsencode(name)) for name in expected)
    names = getdents_names(path, 24 + longest + 8)
    assert names[:2] == [".", ".."], names[:2]
    assert sorted(names[2:]) == expected, (
        f"a listing resumed at each entry gave {names[2:]}, expected "
        f"{expected}")
    assert len(expected) == tasks[task_dir]


def test_ls_l_needs_no_lookup_per_entry(mount, manifest):
    tasks = task_dirs_with_reports(manifest)
    task_dir = max(tasks, key=tasks.get)
    mounted = mount()
    mounted.command.insert(1, "-d")
    with mounted:
        result = run(["ls", "-l", str(mounted.mountpoint / task_dir)],
                     text=True)
        log = mounted.log_text()
    listed = [line for line in result.stdout.splitlines()
              if line.startswith("-r")]
    assert len(listed) == tasks[task_dir]
    # libfuse's -d output names each looked-up path.
    prefix = f"LOOKUP /{task_dir}/"
    lookups = [line for line in log.splitlines() if line.startswith(prefix)]
    assert not lookups, (
        f"ls -l looked up {len(lookups)} of its {len(listed)} entries one "
        f"by one: {lookups[:3]}")
