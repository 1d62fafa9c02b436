"""Integration tests: faults of the object store and of shutdown.

Each test points the emulator's download URLs at a FaultyStore and scripts
one misbehaviour. It checks the exact outcome: bytes identical to the object
(sha256), or EIO with one log line naming the cause and the report. It also
checks the requests the store recorded and the API calls csipfs made.
"""

import hashlib
import os
import pathlib
import signal
import subprocess
import threading
import time

import pytest

from emulator.faulty_store import FaultyStore
from test_mount import (complete_reports, errno_of, read_range,
                        report_of_size)

MIB = 1 << 20
BLOCK_SIZE = MIB
# Fresh URLs the reader tries after the first one expires, per block read
# (MAX_URL_REFRESHES in fs/reader.c).
MAX_URL_REFRESHES = 3
# Attempts per range on fresh connections (the default of fetch_options).
FETCH_ATTEMPTS = 3
MAX_REDIRECTS = 5
SHUTDOWN_LIMIT = 5
CHANGED_ERROR = r"the object changed"


# Helpers ----------------------------------------------------------------

def reports_of_task(manifest, report):
    return [r for r in complete_reports(manifest)
            if r["task_center_task_id"] == report["task_center_task_id"]
            and r["uin"] == report["uin"]]


def url_path(report):
    return "/" + report["object"]


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, chunk_size=MIB, pause=0.0):
    """Hash a file read in chunks of chunk_size, sleeping pause seconds
    between reads, and check that no read before the end comes back short."""
    digest = hashlib.sha256()
    size = os.stat(path).st_size
    offset = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(chunk_size)
            if not chunk:
                break
            expected = min(chunk_size, size - offset)
            assert len(chunk) == expected, (
                f"read at {offset} returned {len(chunk)} of {expected} bytes")
            digest.update(chunk)
            offset += len(chunk)
            if pause:
                time.sleep(pause)
    assert offset == size, f"read {offset} of {size} bytes"
    return digest.hexdigest()


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def log_lines(mount, pattern):
    return [line for line in mount.log_text().splitlines() if pattern in line]


def url_calls(emulator):
    return emulator.counts().get("DescribeTaskLogURL", 0)


@pytest.fixture
def store(emulator):
    """A FaultyStore that the emulator's download URLs point at."""
    faulty = FaultyStore.for_emulator(emulator).start()
    emulator.set_store_url(faulty.url)
    yield faulty
    emulator.set_store_url(None)
    emulator.set_url_lifetime(emulator.url_lifetime)
    faulty.stop()


@pytest.fixture
def big_report(manifest):
    """A report of 5 blocks."""
    return report_of_size(manifest, 5 * MIB)


def expected_sha(emulator, report):
    path = pathlib.Path(emulator.state["objects_dir"]) / report["object"]
    return sha256_bytes(path.read_bytes())


# URL expiry -------------------------------------------------------------

@pytest.mark.time_limit(90)
def test_url_expiry_mid_read_resumes(mount, emulator, manifest, store,
                                     big_report):
    emulator.set_url_lifetime(2)
    with mount(options=["cache_size=0"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        emulator.reset_counts()
        store.reset_log()
        digest = sha256_file(path, chunk_size=64 * 1024, pause=0.05)
        requests = store.requests(url_path(big_report))
        calls = url_calls(emulator)
    assert digest == big_report["sha256"]
    expired = [i for i, r in enumerate(requests) if r["status"] == 403]
    assert expired, "no URL expired during the read"
    for i in expired:
        assert i + 1 < len(requests), "the read ended on an expired URL"
        assert requests[i + 1]["range"] == requests[i]["range"], (
            f"after the 403 for {requests[i]['range']} the next request "
            f"asked for {requests[i + 1]['range']}")
        assert requests[i + 1]["status"] == 206
    assert calls >= len(expired)
    blocks = big_report["size"] // BLOCK_SIZE
    assert calls <= blocks * (MAX_URL_REFRESHES + 1)


@pytest.mark.time_limit(60)
def test_url_refresh_is_bounded(mount, emulator, manifest, store,
                                big_report):
    with mount(options=["cache_size=0"],
               allowed_errors=[r"fresh URLs were rejected"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.add("status", path=url_path(big_report), status=403)
        emulator.reset_counts()
        store.reset_log()
        result = errno_of(lambda: read_range(path, 2 * BLOCK_SIZE, 4096))
        calls = url_calls(emulator)
        gets = store.count(url_path(big_report))
        lines = log_lines(m, "fresh URLs were rejected")
        assert m.process.poll() is None, "csipfs exited"
    assert result == "EIO"
    assert lines, "no log line names the rejected URLs"
    assert big_report["task_log_id"] in lines[0]
    assert "block 2" in lines[0]
    # The kernel may retry a failed read once, page by page.
    reads = len(lines)
    assert 1 <= reads <= 2
    assert calls <= reads * MAX_URL_REFRESHES
    assert gets == reads * (MAX_URL_REFRESHES + 1)


# Connections that fail mid-body -----------------------------------------

@pytest.mark.time_limit(90)
@pytest.mark.parametrize("kind, params", [
    ("short_body", {"bytes": 100000}),
    ("reset", {"bytes": 100000}),
    ("stall", {"bytes": 100000, "seconds": 30}),
])
def test_dropped_body_is_fetched_again(mount, emulator, manifest, store,
                                       big_report, kind, params):
    with mount(options=["cache_size=0", "timeout=2"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.reset_log()
        store.add(kind, path=url_path(big_report), count=2, **params)
        digest = sha256_file(path)
        requests = store.requests(url_path(big_report))
        assert m.process.poll() is None, "csipfs exited"
    assert digest == big_report["sha256"]
    # Two requests failed, and each was requested again.
    ranges = [r["range"] for r in requests]
    assert len(requests) == big_report["size"] // BLOCK_SIZE + 2, ranges
    assert ranges[0] == ranges[1] == ranges[2], ranges
    assert len(set(ranges)) == big_report["size"] // BLOCK_SIZE, ranges


@pytest.mark.time_limit(60)
def test_dropped_body_keeps_failing(mount, emulator, manifest, store,
                                    big_report, tmp_path):
    with mount(options=["cache_size=0"],
               allowed_errors=[r"reading block \d+ failed"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.reset_log()
        store.add("reset", path=url_path(big_report), bytes=1000)
        result = subprocess.run(["cp", str(path), str(tmp_path / "copy")],
                                capture_output=True, text=True, timeout=60)
        lines = log_lines(m, "failed")
        gets = store.count(url_path(big_report))
        assert m.process.poll() is None, "csipfs exited"
    assert result.returncode != 0
    assert "Input/output error" in result.stderr
    failures = [line for line in lines if "reading block" in line]
    assert failures, "no log line names the failed block"
    assert big_report["task_log_id"] in failures[0]
    assert "account self:" in failures[0]
    assert gets <= 2 * FETCH_ATTEMPTS


# Range handling ---------------------------------------------------------

@pytest.mark.time_limit(60)
def test_ignored_range_gives_right_bytes(mount, emulator, manifest, store,
                                         big_report):
    with mount(options=["cache_size=0"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.reset_log()
        store.add("ignore_range", path=url_path(big_report))
        digest = sha256_file(path, chunk_size=200000)
        tail = read_range(path, big_report["size"] - 10, 100)
        statuses = {r["status"] for r in store.requests(url_path(big_report))}
    assert digest == big_report["sha256"]
    assert statuses == {200}
    source = (pathlib.Path(emulator.state["objects_dir"]) /
              big_report["object"]).read_bytes()
    assert tail == source[-10:]


@pytest.mark.time_limit(60)
def test_wrong_content_range_fails(mount, emulator, manifest, store,
                                   big_report):
    with mount(allowed_errors=[r"Content-Range starts at byte"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.add("wrong_content_range", path=url_path(big_report))
        result = errno_of(lambda: read_range(path, BLOCK_SIZE, 4096))
        lines = log_lines(m, "Content-Range starts at byte")
        # The disk cache keeps nothing from the bad response: with the
        # fault gone, the same range reads right.
        store.clear()
        data = read_range(path, BLOCK_SIZE, 4096)
    assert result == "EIO"
    assert lines and big_report["task_log_id"] in lines[0]
    assert "block 1" in lines[0]
    source = (pathlib.Path(emulator.state["objects_dir"]) /
              big_report["object"]).read_bytes()
    assert data == source[BLOCK_SIZE:BLOCK_SIZE + 4096]


@pytest.mark.time_limit(90)
def test_strict_416_store(mount, emulator, manifest, store, tmp_path):
    daily = report_of_size(manifest, 0)
    reports = reports_of_task(manifest, daily)
    sizes = {r["size"] for r in reports}
    assert {0, 1, MIB, MIB + 1} <= sizes, sizes
    store.add("strict_416")
    with mount(cache_dir=tmp_path / "cache") as m:
        task_dir = m.mountpoint / pathlib.PurePosixPath(daily["path"]).parent
        names = sorted(os.listdir(task_dir))
        stats = {r["path"]: os.stat(m.mountpoint / r["path"]).st_size
                 for r in reports}
        digests = {r["path"]: sha256_bytes(read_all(m.mountpoint / r["path"]))
                   for r in reports}
        one = report_of_size(manifest, 1)
        requests = store.requests()
        store.reset_log()
        at_end = read_range(m.mountpoint / one["path"], 1, 10)
        past_end = read_range(m.mountpoint / one["path"], 5000, 10)
        empty = read_all(m.mountpoint / daily["path"])
        after_eof = store.requests()
    assert len(names) == len(reports)
    for report in reports:
        assert stats[report["path"]] == report["size"], report["path"]
        assert digests[report["path"]] == report["sha256"], report["path"]
    assert at_end == b""
    assert past_end == b""
    assert empty == b""
    assert after_eof == []
    # Every report below 1 MiB got a 416 for the probe's range, then a 206
    # for the range cut to its size. The empty one needed no second request.
    statuses = [r["status"] for r in requests]
    small = [r for r in reports if 0 < r["size"] < BLOCK_SIZE]
    assert statuses.count(416) == len(small) + 1, requests
    assert set(statuses) == {206, 416}, requests
    for report in small:
        ranges = [(r["range"], r["status"])
                  for r in requests if r["path"] == url_path(report)]
        assert ranges[:2] == [(f"bytes=0-{BLOCK_SIZE - 1}", 416),
                              (f"bytes=0-{report['size'] - 1}", 206)], ranges


# Redirects --------------------------------------------------------------

@pytest.mark.time_limit(60)
@pytest.mark.parametrize("status", [301, 302, 307])
def test_redirect_keeps_range(mount, emulator, manifest, store, big_report,
                              status):
    with mount(options=["cache_size=0"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.reset_log()
        store.add("redirect", path=url_path(big_report), status=status)
        data = read_range(path, BLOCK_SIZE + 10, 5000)
        requests = store.requests(url_path(big_report))
    source = (pathlib.Path(emulator.state["objects_dir"]) /
              big_report["object"]).read_bytes()
    assert data == source[BLOCK_SIZE + 10:BLOCK_SIZE + 5010]
    redirected = [r for r in requests if r["status"] == status]
    served = [r for r in requests if r["status"] == 206]
    assert redirected and served
    other_port = int(store.other_url.rsplit(":", 1)[1])
    for request in served:
        assert request["port"] == other_port
    assert [r["range"] for r in served] == [r["range"] for r in redirected]


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("kind, message", [
    ("redirect_loop", "redirect loop"),
    ("redirect_no_location", "redirect without a Location header"),
])
def test_bad_redirect_fails(mount, emulator, manifest, store, big_report,
                            kind, message):
    with mount(options=["cache_size=0"], allowed_errors=[message]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.reset_log()
        store.add(kind, path=url_path(big_report))
        result = errno_of(lambda: read_range(path, BLOCK_SIZE, 4096))
        lines = log_lines(m, message)
        gets = store.count(url_path(big_report))
    assert result == "EIO"
    assert lines and big_report["task_log_id"] in lines[0]
    hops = MAX_REDIRECTS + 1 if kind == "redirect_loop" else 1
    assert 1 <= gets <= 2 * hops, gets
    assert gets % hops == 0, gets


# Methods and encodings --------------------------------------------------

def test_no_head_requests(mount, emulator, manifest, store, big_report,
                          tmp_path):
    with mount(cache_dir=tmp_path / "cache") as m:
        task_dir = (m.mountpoint /
                    pathlib.PurePosixPath(big_report["path"]).parent)
        sizes = {name: os.stat(task_dir / name).st_size
                 for name in os.listdir(task_dir)}
        digest = sha256_file(m.mountpoint / big_report["path"])
    requests = store.requests()
    assert digest == big_report["sha256"]
    expected = {pathlib.PurePosixPath(r["path"]).name: r["size"]
                for r in reports_of_task(manifest, big_report)}
    assert sizes == expected
    assert requests
    assert [r for r in requests if r["method"] != "GET"] == []
    assert {r["accept_encoding"] for r in requests} == {"identity"}


def test_no_head_requests_to_nginx(mount, emulator, manifest, big_report):
    emulator.reset_store_log()
    with mount() as m:
        digest = sha256_file(m.mountpoint / big_report["path"])
    requests = emulator.store_requests()
    assert digest == big_report["sha256"]
    assert requests
    assert {r["method"] for r in requests} == {"GET"}


@pytest.mark.time_limit(60)
def test_gzip_body_fails(mount, emulator, manifest, store, big_report):
    with mount(options=["cache_size=0"],
               allowed_errors=[r"Content-Encoding gzip"]) as m:
        path = m.mountpoint / big_report["path"]
        os.stat(path)
        store.add("gzip", path=url_path(big_report))
        result = errno_of(lambda: read_range(path, BLOCK_SIZE, 4096))
        lines = log_lines(m, "Content-Encoding gzip")
    assert result == "EIO"
    assert lines and big_report["task_log_id"] in lines[0]


# An object that changes -------------------------------------------------

@pytest.mark.time_limit(60)
def test_changed_object_is_never_mixed(mount, emulator, manifest, store,
                                       big_report, tmp_path):
    object_path = url_path(big_report)
    new_content = store.changed_content(object_path)
    with mount(cache_dir=tmp_path / "cache", options=["dir_ttl=1"],
               allowed_errors=[CHANGED_ERROR]) as m:
        path = m.mountpoint / big_report["path"]
        old_block = read_range(path, 0, BLOCK_SIZE)
        store.add("change", path=object_path)
        result = errno_of(lambda: read_all(path))
        lines = log_lines(m, CHANGED_ERROR)
        # After the attribute timeout of 1 s the size is looked up again.
        time.sleep(1.5)
        size = os.stat(path).st_size
        digest = sha256_bytes(read_all(path))
    source = (pathlib.Path(emulator.state["objects_dir"]) /
              big_report["object"]).read_bytes()
    assert old_block == source[:BLOCK_SIZE]
    assert result == "EIO"
    assert lines
    assert big_report["task_log_id"] in lines[0]
    assert size == len(new_content)
    assert digest == sha256_bytes(new_content)


# Shutdown ---------------------------------------------------------------

def start_readers(path, count):
    """Start count threads that each read from another block of path,
    none of them block 0, which the probe cached. Returns the threads and a
    dict of the errno name each read ended with."""
    outcomes = {}

    def read(index):
        outcomes[index] = errno_of(
            lambda: read_range(path, (2 * index + 1) * BLOCK_SIZE, 4096))

    threads = [threading.Thread(target=read, args=(i,), daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, outcomes


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_in_flight_reads(mount, emulator, manifest, store,
                                      tmp_path, signum):
    large = max(complete_reports(manifest), key=lambda r: r["size"])
    cache_dir = tmp_path / "cache"
    with mount(cache_dir=cache_dir) as m:
        path = m.mountpoint / large["path"]
        os.stat(path)
        store.reset_log()
        store.add("stall", path=url_path(large), bytes=1000)
        threads, outcomes = start_readers(path, 8)
        deadline = time.monotonic() + 20
        while store.count(url_path(large)) < 8:
            assert time.monotonic() < deadline, "the reads did not start"
            time.sleep(0.05)
        started = time.monotonic()
        m.process.send_signal(signum)
        status = m.process.wait(timeout=SHUTDOWN_LIMIT + 5)
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=10)
    assert elapsed < SHUTDOWN_LIMIT, f"csipfs took {elapsed:.1f} s to exit"
    assert status == 0
    assert len(outcomes) == 8
    assert set(outcomes.values()) <= {"EIO", "ENOTCONN"}, outcomes
    assert not os.path.ismount(m.mountpoint)

    # The cache is consistent: a new mount reads the same bytes.
    store.clear()
    with mount(cache_dir=cache_dir) as again:
        data = read_range(again.mountpoint / large["path"], 0, 2 * BLOCK_SIZE)
    source = (pathlib.Path(emulator.state["objects_dir"]) /
              large["object"]).read_bytes()
    assert data == source[:2 * BLOCK_SIZE]


def test_ignored_sigint_logged(mount):
    """A shell without job control starts background commands with SIGINT
    ignored, and libfuse then leaves SIGINT alone. csipfs logs that at
    start-up, keeps running on SIGINT and still stops on an unmount."""
    ignored = mount()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ignored.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    ignored.process.send_signal(signal.SIGINT)
    time.sleep(1)
    assert ignored.process.poll() is None, "SIGINT stopped csipfs"
    ignored.stop()
    log = ignored.log_text()
    assert "SIGINT was ignored when csipfs started" in log
    assert "SIGTERM was ignored" not in log

    with mount() as default:
        pass
    assert "was ignored when csipfs started" not in default.log_text()


@pytest.mark.time_limit(90)
def test_lazy_unmount_during_reads(mount, emulator, manifest, store,
                                   tmp_path):
    """fusermount3 -u fails with EBUSY while files are open, so the unmount
    during reads is the lazy one: the reads in flight complete with the
    right bytes, and csipfs exits once the kernel lets the mount go."""
    large = max(complete_reports(manifest), key=lambda r: r["size"])
    source = (pathlib.Path(emulator.state["objects_dir"]) /
              large["object"]).read_bytes()
    cache_dir = tmp_path / "cache"
    results = {}

    def read(index):
        offset = (2 * index + 1) * BLOCK_SIZE
        results[index] = read_range(path, offset, 4096) == \
            source[offset:offset + 4096]

    with mount(cache_dir=cache_dir) as m:
        path = m.mountpoint / large["path"]
        os.stat(path)
        store.reset_log()
        store.add("slow", path=url_path(large), delay=0.1)
        threads = [threading.Thread(target=read, args=(i,), daemon=True)
                   for i in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while store.count(url_path(large)) < 8:
            assert time.monotonic() < deadline, "the reads did not start"
            time.sleep(0.05)
        unmount = subprocess.run(["fusermount3", "-u", "-z",
                                  str(m.mountpoint)],
                                 capture_output=True, text=True, timeout=10)
        for thread in threads:
            thread.join(timeout=30)
        finished = time.monotonic()
        status = m.process.wait(timeout=SHUTDOWN_LIMIT + 5)
        elapsed = time.monotonic() - finished
    assert unmount.returncode == 0, unmount.stderr
    assert results == {i: True for i in range(8)}
    assert elapsed < SHUTDOWN_LIMIT, f"csipfs took {elapsed:.1f} s to exit"
    assert status == 0

    store.clear()
    with mount(cache_dir=cache_dir) as again:
        data = read_range(again.mountpoint / large["path"], 0,
                          16 * BLOCK_SIZE)
    assert data == source[:16 * BLOCK_SIZE]


def test_unmount_aborted_read_exits_zero(mount, csipfs_bin, emulator,
                                         manifest):
    """At unmount, the kernel returns ECONNABORTED to a thread that has just
    taken a request off the queue. csipfs still exits with status 0. The
    preload library turns the first ENODEV into ECONNABORTED, because the
    race is too narrow to hit on purpose."""
    library = (pathlib.Path(csipfs_bin).parents[1] / "tests" / "preload" /
               "libconnabort.so")
    assert library.is_file(), f"{library} is missing: build it first"
    report = min(complete_reports(manifest), key=lambda r: r["size"])
    env = {"LD_PRELOAD": str(library)}
    # The library loads before the ASan runtime, which ASan rejects while
    # verify_asan_link_order is on.
    if os.environ.get("ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] = (os.environ["ASAN_OPTIONS"] +
                               ":verify_asan_link_order=0")
    with mount(env=env) as m:
        data = read_range(m.mountpoint / report["path"], 0, 4096)
    source = (pathlib.Path(emulator.state["objects_dir"]) /
              report["object"]).read_bytes()
    assert data == source[:4096]
    log = m.log_text()
    assert "shut the FUSE connection of" in log
    assert f"unmounted {m.mountpoint}" in log


# Name resolution --------------------------------------------------------

BLACKHOLE_DNS = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
while True:
    s.recvfrom(4096)
"""


@pytest.mark.time_limit(60)
def test_unresolvable_endpoint_fails(mount, tmp_path):
    """The endpoint's name gets no answer: the mount fails with status 1.
    csipfs runs in a network namespace of its own whose DNS server on
    127.0.0.1 never answers, so no query leaves the machine."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    blackhole = tmp_path / "blackhole.py"
    blackhole.write_text(BLACKHOLE_DNS)
    failing = mount(options=["endpoint=https://csip.invalid"],
                    log_level=None, allowed_errors=[".*"])
    # $1 is the resolv.conf, $2 the DNS server script, the rest csipfs.
    script = ('ip link set lo up && mount --bind "$1" /etc/resolv.conf && '
              '{ /usr/bin/python3 "$2" & } && dns=$! && sleep 0.3 && '
              'shift 2 && "$@"; status=$?; kill "$dns"; exit "$status"')
    failing.command = ["unshare", "--net", "--mount", "--", "sh", "-c",
                       script, "sh", str(resolv), str(blackhole),
                       *failing.command]
    status, log = failing.run_to_exit()
    assert status == 1, log
    lines = [line for line in log.splitlines() if "csipfs: error:" in line]
    assert len(lines) == 1, log
    assert "csip.invalid" in lines[0], lines[0]
