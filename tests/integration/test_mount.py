"""Integration tests: csipfs mounted on the CSIP emulator's fixture.

Every test mounts the real filesystem through FUSE and checks exact
outcomes: names, sizes, mtimes, bytes, errno values and counts of API calls
and object store requests.
"""

import errno
import hashlib
import os
import pathlib
import random
import re
import stat
import subprocess
import threading
import time

import pytest

from emulator import naming

BLOCK_SIZE = 1048576
COMMAND_TIMEOUT = 300
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


# Fixture helpers ----------------------------------------------------------

def complete_reports(manifest):
    return [r for r in manifest["reports"] if r["status"] == 2]


def incomplete_reports(manifest):
    return [r for r in manifest["reports"] if r["status"] != 2]


def expected_files(manifest):
    """Return {relative path: report} for the group administrator's view."""
    return {r["path"]: r for r in complete_reports(manifest)}


def expected_dirs(manifest):
    """Return the relative paths of every directory the admin view shows."""
    dirs = {a["dir"] for a in manifest["accounts"]}
    for path in expected_files(manifest):
        parent = pathlib.PurePosixPath(path).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    return dirs


def walk_tree(root):
    """Return (directories, files) under root as sets of relative paths."""
    dirs = set()
    files = set()
    for top, subdirs, names in os.walk(root):
        rel_top = os.path.relpath(top, root)
        for name in subdirs:
            dirs.add(os.path.normpath(os.path.join(rel_top, name)))
        for name in names:
            files.add(os.path.normpath(os.path.join(rel_top, name)))
    return dirs, files


def set_difference(expected, actual, limit=10):
    """Describe how two sets of paths differ, naming at most limit of each."""
    missing = sorted(expected - actual)
    unexpected = sorted(actual - expected)
    return (f"{len(missing)} missing {missing[:limit]}, "
            f"{len(unexpected)} unexpected {unexpected[:limit]}")


def sha256_file(path, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(chunk_size)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def source_path(emulator, report):
    return pathlib.Path(emulator.state["objects_dir"]) / report["object"]


def read_range(path, offset, length):
    with open(path, "rb") as f:
        return os.pread(f.fileno(), length, offset)


def largest_report(manifest):
    return max(complete_reports(manifest), key=lambda r: r["size"])


def report_of_size(manifest, size):
    matches = [r for r in complete_reports(manifest) if r["size"] == size]
    assert matches, f"the fixture has no complete report of {size} bytes"
    return matches[0]


def multi_block_report(manifest):
    """Return the smallest complete report that spans at least 3 blocks."""
    candidates = [r for r in complete_reports(manifest)
                  if 2 * BLOCK_SIZE < r["size"] < 16 * BLOCK_SIZE]
    assert candidates, "the fixture has no report of 3 to 16 blocks"
    return min(candidates, key=lambda r: r["size"])


def run(command, **kwargs):
    """Run a command with a bounded time, capturing its output."""
    kwargs.setdefault("timeout", COMMAND_TIMEOUT)
    kwargs.setdefault("capture_output", True)
    return subprocess.run(command, **kwargs)


def errno_of(operation):
    """Return the errno name an operation fails with, or "succeeded"."""
    try:
        operation()
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))
    return "succeeded"


def expect_startup_failure(mount, **kwargs):
    """Run csipfs expecting it to exit 1 before mounting.

    Returns the lines it wrote to stderr.
    """
    kwargs.setdefault("log_level", None)
    kwargs.setdefault("allowed_errors", [".*"])
    failing = mount(**kwargs)
    status, log = failing.run_to_exit()
    assert status == 1, f"csipfs exited with status {status}, log:\n{log}"
    return log.splitlines()


# The tree ------------------------------------------------------------------

def test_tree_matches_manifest(admin_mount, manifest):
    root = admin_mount.mountpoint
    files = expected_files(manifest)
    dirs, found_files = walk_tree(root)

    assert found_files == set(files), set_difference(set(files), found_files)
    assert dirs == expected_dirs(manifest), set_difference(
        expected_dirs(manifest), dirs)

    for path, report in files.items():
        st = os.stat(root / path)
        assert stat.S_ISREG(st.st_mode), f"{path} is not a regular file"
        assert stat.S_IMODE(st.st_mode) == 0o444, (
            f"{path} has mode {stat.S_IMODE(st.st_mode):o}")
        assert st.st_size == report["size"], (
            f"{path}: st_size {st.st_size}, expected {report['size']}")
        assert st.st_mtime_ns == report["mtime"] * 10**9, (
            f"{path}: st_mtime {st.st_mtime}, expected {report['mtime']} "
            f"({report['time']} UTC+8)")
    for path in dirs:
        st = os.stat(root / path)
        assert stat.S_IMODE(st.st_mode) == 0o555, (
            f"{path}/ has mode {stat.S_IMODE(st.st_mode):o}")
    root_mode = stat.S_IMODE(os.stat(root).st_mode)
    assert root_mode == 0o555, f"the mount root has mode {root_mode:o}"


def test_incomplete_reports_absent(admin_mount, manifest):
    incomplete = incomplete_reports(manifest)
    assert len(incomplete) >= 5, (
        "the fixture has fewer than 5 incomplete reports")
    _, found_files = walk_tree(admin_mount.mountpoint)
    complete_paths = set(expected_files(manifest))
    assert complete_paths <= found_files, set_difference(complete_paths,
                                                         found_files)
    for report in incomplete:
        assert report["path"] is None, (
            f"incomplete report {report['task_log_id']} has a path")
        for path in found_files:
            assert report["task_log_id"] not in path, (
                f"{path} carries the id of incomplete report "
                f"{report['task_log_id']}")
        # No file may have the name this report would get if it were
        # complete, unless a complete report has that name too.
        ext = naming.report_extension(report["task_log_name"],
                                      report["object"])
        name = naming.sanitize(report["task_log_name"] or
                               report["task_log_id"],
                               naming.MAX_BYTES - len(ext.encode())) + ext
        for path in found_files:
            if pathlib.PurePosixPath(path).name == name:
                assert path in complete_paths, (
                    f"{path} is not a complete report")


# Whole-tree copies -------------------------------------------------------

@pytest.mark.time_limit(300)
def test_cp_r_copies_exact_bytes(admin_mount, manifest, tmp_path):
    copy = tmp_path / "copy"
    result = run(["cp", "-r", str(admin_mount.mountpoint), str(copy)])
    assert result.returncode == 0, f"cp -r failed: {result.stderr!r}"

    files = expected_files(manifest)
    _, copied = walk_tree(copy)
    assert copied == set(files), set_difference(set(files), copied)
    for path, report in files.items():
        digest = sha256_file(copy / path)
        assert digest == report["sha256"], f"{path}: sha256 differs"


def grep_files(root, word):
    """Return the relative paths grep -rlw finds a word in."""
    result = run(["grep", "-rlwZ", "--", word, str(root)])
    assert result.returncode in (0, 1), (
        f"grep {word} failed with status {result.returncode}: "
        f"{result.stderr!r}")
    found = result.stdout.split(b"\0")
    return {os.path.relpath(p.decode(), root) for p in found if p}


def reports_with_word(manifest, word):
    return {r["path"] for r in complete_reports(manifest)
            if word in r["words"]}


@pytest.mark.time_limit(300)
def test_grep_r_finds_words(admin_mount, manifest):
    root = admin_mount.mountpoint
    reports = [r for r in complete_reports(manifest) if r["words"]]
    counts = {}
    for report in reports:
        for word in report["words"]:
            counts[word] = counts.get(word, 0) + 1

    large = largest_report(manifest)
    # The largest report's own words lie at its start and at its end, 256
    # MiB further.
    words = [w for w in large["words"] if counts[w] == 1]
    assert len(words) >= 2, "the largest report has fewer than 2 own words"
    # Words unique to the first, the last and a non-ASCII-named report.
    for report in (reports[0], reports[-1],
                   next(r for r in reports if not r["path"].isascii())):
        own = [w for w in report["words"] if counts[w] == 1]
        assert own, f"report {report['task_log_id']} has no word of its own"
        words.append(own[0])
    common = sorted(w for w, n in counts.items() if n > 1)
    assert common, "the fixture has no word shared by several reports"
    words.append(max(common, key=lambda w: counts[w]))
    words.append(min(common, key=lambda w: counts[w]))

    for word in words:
        expected = reports_with_word(manifest, word)
        assert grep_files(root, word) == expected, (
            f"grep -rlw {word} found the wrong files")
    assert grep_files(root, "csipfsnosuchword") == set(), (
        "grep found a word that no report contains")


@pytest.mark.time_limit(300)
def test_rsync_twice_transfers_nothing(mount, emulator, manifest, tmp_path):
    cache = tmp_path / "cache"
    backup = tmp_path / "backup"
    emulator.reset_counts()
    with mount(cache_dir=cache) as first:
        result = run(["rsync", "-a", f"{first.mountpoint}/", f"{backup}/"])
    assert result.returncode == 0, f"rsync -a failed: {result.stderr!r}"
    # A first copy needs download URLs: this shows that calls are counted.
    counts = emulator.counts()
    assert counts.get("DescribeTaskLogURL", 0) > 0, (
        f"the first rsync made no DescribeTaskLogURL call: {counts}")

    files = expected_files(manifest)
    _, copied = walk_tree(backup)
    assert copied == set(files), set_difference(set(files), copied)
    for path, report in files.items():
        assert sha256_file(backup / path) == report["sha256"], (
            f"{path}: sha256 differs")
        mtime = os.stat(backup / path).st_mtime_ns
        assert mtime == report["mtime"] * 10**9, f"{path}: mtime differs"

    # Counting starts before the remount, so that calls made while csipfs
    # starts count too.
    emulator.reset_counts()
    with mount(cache_dir=cache) as second:
        result = run(["rsync", "-a", "--itemize-changes",
                      f"{second.mountpoint}/", f"{backup}/"], text=True)
        counts = emulator.counts()
    assert result.returncode == 0, f"rsync -a failed: {result.stderr!r}"
    assert result.stdout == "", (
        f"the second rsync transferred something:\n{result.stdout}")
    assert counts.get("DescribeTaskLogURL", 0) == 0, (
        f"the second rsync made DescribeTaskLogURL calls: {counts}")


# Reads -------------------------------------------------------------------

def offset_cases(size, rng):
    """Return (skip, count) pairs in 4096-byte blocks for dd."""
    blocks = -(-size // 4096)
    per_mib = BLOCK_SIZE // 4096
    cases = [(0, 1), (0, per_mib + 1), (max(blocks - 1, 0), 1),
             (max(blocks - 3, 0), 10), (blocks + 5, 2)]
    for boundary in range(per_mib, blocks, per_mib)[:3]:
        cases.append((boundary - 1, 2))
        cases.append((boundary, 1))
    for _ in range(6):
        cases.append((rng.randrange(0, blocks + 1), rng.randrange(1, 600)))
    return cases


def tail_cases(size, rng):
    cases = [1, 4095, 4096, 4097, BLOCK_SIZE - 1, BLOCK_SIZE + 1]
    cases += [rng.randrange(1, min(size, 8 * BLOCK_SIZE) + 2)
              for _ in range(3)]
    return cases


@pytest.mark.time_limit(300)
def test_random_offsets_match_source(admin_mount, emulator, manifest):
    root = admin_mount.mountpoint
    rng = random.Random(20261204)
    reports = [largest_report(manifest), multi_block_report(manifest)]
    reports += [report_of_size(manifest, s) for s in
                (0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1)]

    for report in reports:
        path = root / report["path"]
        source = source_path(emulator, report)
        size = report["size"]
        assert source.stat().st_size == size, (
            f"{source} is not {size} bytes: the fixture is damaged")

        for skip, count in offset_cases(size, rng):
            result = run(["dd", f"if={path}", "bs=4096", f"skip={skip}",
                          f"count={count}", "status=none"])
            assert result.returncode == 0, (
                f"dd skip={skip} count={count} of {path} failed: "
                f"{result.stderr!r}")
            expected = read_range(source, skip * 4096, count * 4096)
            assert result.stdout == expected, (
                f"dd skip={skip} count={count} of {report['path']} "
                f"({size} bytes) returned other bytes")

        for length in tail_cases(size, rng):
            result = run(["tail", "-c", str(length), str(path)])
            assert result.returncode == 0, (
                f"tail -c {length} of {path} failed: {result.stderr!r}")
            start = max(size - length, 0)
            expected = read_range(source, start, size - start)
            assert result.stdout == expected, (
                f"tail -c {length} of {report['path']} ({size} bytes) "
                f"returned other bytes")

        for _ in range(8):
            offset = rng.randrange(0, size + 2)
            length = rng.randrange(1, 3 * BLOCK_SIZE)
            got = read_range(path, offset, length)
            expected = read_range(source, offset, length)
            assert got == expected, (
                f"pread of {length} bytes at {offset} of {report['path']} "
                f"returned other bytes")


@pytest.mark.time_limit(300)
def test_concurrent_readers_of_large_report(admin_mount, manifest):
    report = largest_report(manifest)
    assert report["size"] > 256 * BLOCK_SIZE, (
        "the largest report is not larger than 256 MiB")
    path = admin_mount.mountpoint / report["path"]
    readers = 8
    # Different read sizes, some not multiples of the page or block size.
    chunk_sizes = [4096, 65536, 131072, BLOCK_SIZE, BLOCK_SIZE + 1, 12345,
                   3 * BLOCK_SIZE, 200000]
    barrier = threading.Barrier(readers)
    digests = [None] * readers
    errors = [None] * readers

    def read_all(index):
        try:
            digest = hashlib.sha256()
            with open(path, "rb", buffering=0) as f:
                barrier.wait(timeout=60)
                while True:
                    chunk = f.read(chunk_sizes[index])
                    if not chunk:
                        break
                    digest.update(chunk)
            digests[index] = digest.hexdigest()
        except Exception as error:
            errors[index] = error

    threads = [threading.Thread(target=read_all, args=(i,), daemon=True)
               for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=280)
    for index in range(readers):
        assert errors[index] is None, (
            f"reader {index} (chunks of {chunk_sizes[index]} bytes) failed: "
            f"{errors[index]!r}")
        assert digests[index] == report["sha256"], (
            f"reader {index} (chunks of {chunk_sizes[index]} bytes) read "
            f"other bytes")


@pytest.mark.time_limit(180)
def test_cached_report_needs_no_network(mount, emulator, manifest, tmp_path):
    cache = tmp_path / "cache"
    report = multi_block_report(manifest)
    emulator.reset_counts()
    emulator.reset_store_log()
    with mount(cache_dir=cache) as first:
        walk_tree(first.mountpoint)
        for path in expected_files(manifest):
            os.stat(first.mountpoint / path)
        digest = sha256_file(first.mountpoint / report["path"])
    assert digest == report["sha256"], "the first read returned other bytes"
    # The first read goes to the network: this shows that calls and store
    # requests are recorded.
    counts = emulator.counts()
    assert counts.get("DescribeTaskLogURL", 0) > 0, (
        f"the first read made no DescribeTaskLogURL call: {counts}")
    uris = {r["uri"] for r in emulator.store_requests()}
    assert "/" + report["object"] in uris, (
        f"the store log has no request for /{report['object']}")

    emulator.reset_counts()
    emulator.reset_store_log()
    with mount(cache_dir=cache) as second:
        path = second.mountpoint / report["path"]
        assert os.stat(path).st_size == report["size"], "st_size differs"
        digest = sha256_file(path)
        counts = emulator.counts()
        requests = emulator.store_requests()
    assert digest == report["sha256"], "the cached read returned other bytes"
    assert counts.get("DescribeTaskLogURL", 0) == 0, (
        f"reading a cached report made API calls: {counts}")
    assert requests == [], (
        f"reading a cached report made store requests: {requests}")


def test_cache_files_private(mount, manifest, tmp_path):
    cache = tmp_path / "cache"
    report = multi_block_report(manifest)
    with mount(cache_dir=cache) as mounted:
        sha256_file(mounted.mountpoint / report["path"])

    entries = 0
    for top, subdirs, names in os.walk(cache):
        mode = stat.S_IMODE(os.stat(top).st_mode)
        assert mode == 0o700, f"cache directory {top} has mode {mode:o}"
        for name in names:
            entries += 1
            path = os.path.join(top, name)
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            assert mode == 0o600, f"cache file {path} has mode {mode:o}"
    assert entries > 0, f"csipfs wrote no file to {cache}"


# Errors ------------------------------------------------------------------

def test_writes_fail_with_erofs(admin_mount, manifest):
    root = admin_mount.mountpoint
    path = next(iter(expected_files(manifest)))
    file = root / path
    task_dir = file.parent
    account_dir = task_dir.parent

    def open_file(flags, target=file):
        def operation():
            os.close(os.open(target, flags, 0o644))
        return operation

    operations = {
        "open O_WRONLY": open_file(os.O_WRONLY),
        "open O_RDWR": open_file(os.O_RDWR),
        "open O_WRONLY|O_TRUNC": open_file(os.O_WRONLY | os.O_TRUNC),
        "open O_WRONLY|O_APPEND": open_file(os.O_WRONLY | os.O_APPEND),
        "create file": open_file(os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 task_dir / "new.pdf"),
        "mkdir in task": lambda: os.mkdir(task_dir / "new"),
        "mkdir in root": lambda: os.mkdir(root / "new"),
        "mkfifo": lambda: os.mkfifo(task_dir / "fifo"),
        "symlink": lambda: os.symlink("target", task_dir / "link"),
        "link": lambda: os.link(file, task_dir / "hardlink"),
        "unlink": lambda: os.unlink(file),
        "rmdir": lambda: os.rmdir(task_dir),
        "rename file": lambda: os.rename(file, task_dir / "renamed.pdf"),
        "rename dir": lambda: os.rename(task_dir, account_dir / "renamed"),
        "truncate": lambda: os.truncate(file, 0),
        "setxattr": lambda: os.setxattr(file, "user.csipfs", b"1"),
        "removexattr": lambda: os.removexattr(file, "user.csipfs"),
        "chmod": lambda: os.chmod(file, 0o644),
        "chown": lambda: os.chown(file, 1, 1),
        "utime": lambda: os.utime(file, (0, 0)),
    }
    outcomes = {name: errno_of(op) for name, op in operations.items()}
    assert outcomes == {name: "EROFS" for name in operations}, (
        "write operations did not all fail with EROFS")
    assert os.stat(file).st_size == expected_files(manifest)[path]["size"], (
        "a write operation changed the file")


def test_missing_paths_give_enoent(admin_mount, manifest):
    root = admin_mount.mountpoint
    path = pathlib.PurePosixPath(next(iter(expected_files(manifest))))
    account, task = path.parts[0], path.parts[1]
    missing = {
        "stat account": lambda: os.stat(root / "no such account"),
        "stat task": lambda: os.stat(root / account / "no such task"),
        "stat file": lambda: os.stat(root / account / task / "no.pdf"),
        "listdir task": lambda: os.listdir(root / account / "no such task"),
        "open file": lambda: open(root / account / task / "no.pdf", "rb"),
        "stat below file": lambda: os.stat(root / path / "x"),
    }
    outcomes = {name: errno_of(op) for name, op in missing.items()}
    expected = {name: "ENOENT" for name in missing}
    # A path below a regular file fails with ENOTDIR, as on any filesystem.
    expected["stat below file"] = "ENOTDIR"
    assert outcomes == expected, "missing paths gave the wrong errors"


@pytest.mark.parametrize("credential_env, code", [
    ({"TENCENTCLOUD_SECRET_KEY": "WrongSecretKeyWrongSecretKey1234"},
     "AuthFailure.SignatureFailure"),
    ({"TENCENTCLOUD_SECRET_ID": "AKIDunknownunknownunknownunknown00"},
     "AuthFailure.SecretIdNotFound"),
], ids=["wrong key", "unknown id"])
def test_bad_credentials_fail(mount, credential_env, code):
    lines = expect_startup_failure(mount, env=credential_env)
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert code in lines[0], f"{lines[0]!r} does not name {code}"
    secret = credential_env.get("TENCENTCLOUD_SECRET_KEY")
    if secret:
        assert secret not in lines[0], "the message shows the secret key"


def test_missing_credentials_fail(mount):
    failing = mount(credential=None, log_level=None, allowed_errors=[".*"])
    status, log = failing.run_to_exit()
    lines = log.splitlines()
    assert status == 1, f"csipfs exited with status {status}, log:\n{log}"
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    places = [
        "TENCENTCLOUD_SECRET_ID",
        str(failing.home / ".tencentcloud" / "credentials"),
        failing.env["CSIPFS_SYSTEM_CREDENTIALS"],
        str(failing.home / ".tccli" / "default.credential"),
    ]
    for place in places:
        assert place in lines[0], f"{lines[0]!r} does not name {place}"


@pytest.mark.parametrize("option, name", [
    ("cache_size=lots", "cache_size"),
    ("dir_ttl=soon", "dir_ttl"),
    ("url_ttl=-5", "url_ttl"),
    ("log_level=loud", "log_level"),
    ("no_such_option=1", "no_such_option"),
])
def test_bad_option_fails(mount, option, name):
    lines = expect_startup_failure(mount, options=[option])
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert name in lines[0], f"{lines[0]!r} does not name {name}"


def test_missing_mount_point_fails(mount, tmp_path):
    missing = tmp_path / "no-such-dir"
    lines = expect_startup_failure(mount, mountpoint=missing)
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert str(missing) in lines[0], f"{lines[0]!r} does not name {missing}"
    assert not missing.exists(), "csipfs created the mount point"


# Credentials and accounts --------------------------------------------------

def test_member_sees_own_account(mount, manifest):
    uin = manifest["member_credential_uin"]
    account = next(a for a in manifest["accounts"] if a["uin"] == uin)
    expected = set()
    for report in complete_reports(manifest):
        if report["uin"] == uin:
            in_account = pathlib.PurePosixPath(report["path"]).relative_to(
                account["dir"])
            expected.add(str(account["self_dir"] / in_account))
    assert expected, f"the fixture has no complete report of {uin}"

    with mount(credential="member") as mounted:
        top = os.listdir(mounted.mountpoint)
        _, files = walk_tree(mounted.mountpoint)
    assert top == [account["self_dir"]], (
        f"the member sees {top}, expected [{account['self_dir']!r}]")
    assert files == expected, set_difference(expected, files)


def test_temporary_credential_works(mount, manifest):
    with mount(credential="temporary") as mounted:
        _, files = walk_tree(mounted.mountpoint)
    expected = set(expected_files(manifest))
    assert files == expected, set_difference(expected, files)


def test_temporary_credential_needs_token(mount):
    lines = expect_startup_failure(
        mount, credential="temporary",
        env={"TENCENTCLOUD_SESSION_TOKEN": None})
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert "AuthFailure.TokenFailure" in lines[0], (
        f"{lines[0]!r} does not name AuthFailure.TokenFailure")


# Command line ------------------------------------------------------------

def pkg_config_version(package):
    result = run(["pkg-config", "--modversion", package], text=True)
    assert result.returncode == 0, f"pkg-config {package}: {result.stderr!r}"
    return result.stdout.strip()


def project_version():
    text = (REPO_ROOT / "meson.build").read_text()
    match = re.search(r"version\s*:\s*'([^']+)'", text)
    assert match, "meson.build has no project version"
    return match.group(1)


def test_version_lists_libraries(csipfs_bin):
    result = run([csipfs_bin, "--version"], text=True, timeout=10)
    assert result.returncode == 0, (
        f"csipfs --version exited with status {result.returncode}")
    lines = (result.stdout + result.stderr).splitlines()
    expected = {
        "csipfs": project_version(),
        "fuse": pkg_config_version("fuse3"),
        "curl": pkg_config_version("libcurl"),
        "jansson": pkg_config_version("jansson"),
        "openssl": pkg_config_version("libcrypto"),
    }
    for name, version in expected.items():
        matching = [line for line in lines
                    if name in line.lower() and version in line]
        assert matching, (
            f"no line of --version names {name} {version}: {lines}")


def daemon_pids(mountpoint):
    """Return the pids of processes whose command line names mountpoint."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                arguments = f.read().split(b"\0")
        except OSError:
            continue
        if str(mountpoint).encode() in arguments:
            pids.append(int(entry))
    return pids


def pid_alive(pid):
    """Return whether a process runs; a zombie does not count."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


# Runs inside a private mount namespace. mount(8) runs its helper without
# PATH (util-linux 2.38 as in Debian 12), so /bin/sh finds "csipfs" only in
# its default search path: a bind mount, visible only in the namespace, puts
# the binary in /usr/local/sbin.
MOUNT_COMMAND_SCRIPT = r"""
set -eu
mount --bind "$BIN_DIR" /usr/local/sbin
mount -t fuse.csipfs default "$MNT" -o "$OPTIONS"
mountpoint -q "$MNT" && echo mounted >"$OUT/mounted"
ls -1 "$MNT" >"$OUT/top"
sha256sum <"$MNT/$REPORT" >"$OUT/sha256"
umount "$MNT"
"""


def test_mount_command(csipfs_bin, emulator, manifest, tmp_path):
    from conftest import base_env

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "csipfs").symlink_to(csipfs_bin)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    report = multi_block_report(manifest)
    state = emulator.state
    env = base_env(home, tmp_path)
    env["TENCENTCLOUD_SECRET_ID"] = state["credentials"]["admin"]["secret_id"]
    env["TENCENTCLOUD_SECRET_KEY"] = \
        state["credentials"]["admin"]["secret_key"]
    env.update({
        "BIN_DIR": str(bin_dir),
        "MNT": str(mountpoint),
        "OUT": str(out),
        "REPORT": report["path"],
        "OPTIONS": ",".join([
            "endpoint=" + state["api_url"],
            "cafile=" + state["ca_file"],
            "cache_dir=" + str(tmp_path / "cache"),
        ]),
    })
    result = run(["unshare", "--mount", "--propagation", "private", "sh",
                  "-c", MOUNT_COMMAND_SCRIPT], env=env, text=True, timeout=60)

    # csipfs runs in the background after mount returns: wait for it to exit
    # after the umount.
    deadline = time.monotonic() + 10
    pids = daemon_pids(mountpoint)
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in pids if pid_alive(p)]
    for pid in alive:
        os.kill(pid, 9)

    assert result.returncode == 0, (
        f"mount, reads or umount failed: {result.stderr!r}")
    assert (out / "mounted").exists(), "mount returned before mounting"
    top = set((out / "top").read_text().splitlines())
    expected_top = {a["dir"] for a in manifest["accounts"]}
    assert top == expected_top, set_difference(expected_top, top)
    digest = (out / "sha256").read_text().split()[0]
    assert digest == report["sha256"], "the read returned other bytes"
    assert not alive, f"csipfs {alive} still running 10 s after umount"
