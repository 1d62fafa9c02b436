"""Integration tests: csipfs against a misbehaving CSIP API.

The emulator injects rate limits, bursts of server errors, a skewed clock,
odd paging, malformed reports and hostile names. Each test checks the
mounted tree, the bytes read, errno values, log lines and the number of API
calls.
"""

import datetime
import errno
import os
import pathlib
import re
import subprocess
import time

import pytest

from emulator import api as emulator_api
from emulator import naming
from test_mount import complete_reports, sha256_file

# Calls of one action that a one-second window may hold beyond the limit:
# calls already on the way when the first rejection arrives.
RATE_TOLERANCE = 2
# Rejected calls allowed in the whole rate-limited run.
MAX_REJECTED = 15


@pytest.fixture(autouse=True)
def clean_emulator(emulator):
    """Start and end every test with a well-behaved emulator."""
    emulator.reset_behaviour()
    yield
    emulator.reset_behaviour()


def admin_account(manifest):
    return next(a for a in manifest["accounts"] if a["role"] == "Admin")


def member_account(manifest, nick_name):
    return next(a for a in manifest["accounts"]
                if a["role"] == "Member" and a["nick_name"] == nick_name)


def files_under(root):
    """Return the paths of the files under root, relative to root."""
    found = set()
    for top, _, names in os.walk(root):
        for name in names:
            found.add(os.path.relpath(os.path.join(top, name), root))
    return found


def expected_account_files(manifest, uin, infos=None):
    """Return {"task/file": TaskLogId} of an account's directory.

    infos replaces the account's TaskLogInfo dicts (as the API sends them
    after overrides); a report without TaskLogId is left out.
    """
    if infos is None:
        infos = [r["task_log_info"] for r in manifest["reports"]
                 if r["uin"] == uin]
    objects = {r["task_log_id"]: r["object"] for r in manifest["reports"]}
    complete = [i for i in infos
                if i.get("TaskLogId") and i.get("Status") == 2]
    tasks = naming.task_dirs(complete)
    files = {}
    for task_id, task_dir in tasks.items():
        in_task = [i for i in complete if i["TaskCenterTaskId"] == task_id]
        for report_id, name in naming.report_files(in_task, objects).items():
            files[f"{task_dir}/{name}"] = report_id
    return files


def errno_of(operation):
    try:
        operation()
    except OSError as error:
        return error.errno
    return 0


def max_calls_in_window(times, start, width=1.0):
    """Return the maximum count of calls in any window [t, t + width)
    with t >= start."""
    times = sorted(t for t in times if t >= start)
    maximum = 0
    first = 0
    for last, moment in enumerate(times):
        while times[first] <= moment - width:
            first += 1
        maximum = max(maximum, last - first + 1)
    return maximum


# Rate limits --------------------------------------------------------------

@pytest.mark.time_limit(240)
def test_rate_limit_lowers_pace(mount, emulator, manifest):
    expected = {r["path"]: r["sha256"] for r in complete_reports(manifest)}
    assert len(expected) >= 60
    emulator.set_rate_limit(5)
    emulator.reset_counts()
    with mount() as m:
        result = subprocess.run(
            f"find {m.mountpoint} -type f -print0 | "
            f"xargs -0 -P 16 -n 1 sha256sum",
            shell=True, capture_output=True, text=True, timeout=200)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        hashes = {}
        for line in result.stdout.splitlines():
            digest, path = line.split("  ", 1)
            hashes[os.path.relpath(path, m.mountpoint)] = digest
    assert hashes == expected

    log = emulator.call_log()
    rejected = [t for calls in log.values() for t, ok in calls if not ok]
    assert rejected, "the rate limit of 5 calls/s never rejected a call"
    assert len(rejected) <= MAX_REJECTED, (
        f"{len(rejected)} calls rejected: the client kept its pace")
    for action, calls in log.items():
        rejections = [t for t, ok in calls if not ok]
        if not rejections:
            continue
        sent = [t for t, _ in calls]
        maximum = max_calls_in_window(sent, rejections[0])
        assert maximum <= 5 + RATE_TOLERANCE, (
            f"{action}: {maximum} calls in one second after the first "
            f"rejection")


# Server errors ------------------------------------------------------------

def test_error_bursts_are_retried(mount, emulator, manifest):
    admin = admin_account(manifest)
    expected = expected_account_files(manifest, admin["uin"])
    emulator.inject_fault("DescribeOrganizationUserInfo", "InternalError",
                          count=2)
    emulator.inject_fault("DescribeTaskLogList", http_status=502, count=2,
                          body=emulator_api.HTML_502)
    emulator.inject_fault("DescribeTaskLogURL", http_status=503, count=2)
    emulator.reset_counts()
    with mount() as m:
        counts = emulator.counts()
        assert counts["DescribeOrganizationUserInfo"] == 3
        assert counts["DescribeTaskLogList"] == 3
        root = m.mountpoint / admin["dir"]
        assert files_under(root) == set(expected)
        report = next(r for r in complete_reports(manifest)
                      if r["uin"] == admin["uin"])
        assert sha256_file(m.mountpoint / report["path"]) == report["sha256"]
        assert emulator.counts()["DescribeTaskLogURL"] >= 3


def test_slow_api_calls_time_out_and_retry(mount, emulator, manifest):
    member = member_account(manifest, "Acme Retail")
    expected = expected_account_files(manifest, member["uin"])
    with mount(options=["timeout=1"]) as m:
        # Each of the next two calls gets its answer only after 3 s, past
        # the 1 s timeout, so csipfs aborts them and sends a third one.
        emulator.inject_fault("DescribeTaskLogList", "InternalError",
                              count=2, delay=3)
        emulator.reset_counts()
        assert files_under(m.mountpoint / member["dir"]) == set(expected)
        assert emulator.counts()["DescribeTaskLogList"] == 3


def test_persistent_errors_then_recovery(mount, emulator, manifest):
    member = member_account(manifest, "Acme Retail")
    expected = expected_account_files(manifest, member["uin"])
    assert expected
    with mount(allowed_errors=[r"listing the reports of account"]) as m:
        emulator.inject_fault("DescribeTaskLogList", "InternalError",
                              seconds=60)
        emulator.reset_counts()
        directory = m.mountpoint / member["dir"]
        assert errno_of(lambda: os.listdir(directory)) == errno.EIO
        attempts = emulator.counts()["DescribeTaskLogList"]
        assert attempts == 6
        errors = [line for line in m.log_text().splitlines()
                  if "csipfs: error:" in line]
        assert len(errors) == 1, errors
        assert "InternalError" in errors[0]
        assert re.search(r"RequestId [0-9a-f-]{36}", errors[0]), errors[0]

        emulator.clear_faults()
        assert files_under(directory) == set(expected)


def test_html_error_page_gives_eio(mount, emulator, manifest):
    member = member_account(manifest, "Acme Retail")
    with mount(allowed_errors=[r"listing the reports of account"]) as m:
        emulator.inject_fault("DescribeTaskLogList", http_status=502,
                              body=emulator_api.HTML_502, seconds=60)
        directory = m.mountpoint / member["dir"]
        assert errno_of(lambda: os.listdir(directory)) == errno.EIO
        errors = [line for line in m.log_text().splitlines()
                  if "csipfs: error:" in line]
        assert len(errors) == 1, errors
        assert "HTTP 502" in errors[0]
        emulator.clear_faults()
        assert files_under(directory) == set(
            expected_account_files(manifest, member["uin"]))


@pytest.mark.parametrize("body_mode", ["invalid", "truncated"])
def test_broken_json_gives_eio(mount, emulator, manifest, body_mode):
    member = member_account(manifest, "Acme Retail")
    with mount(allowed_errors=[r"listing the reports of account"]) as m:
        emulator.inject_fault("DescribeTaskLogList", body_mode=body_mode,
                              seconds=60)
        emulator.reset_counts()
        directory = m.mountpoint / member["dir"]
        assert errno_of(lambda: os.listdir(directory)) == errno.EIO
        # Invalid JSON is not retried: the next attempt gets the same.
        assert emulator.counts()["DescribeTaskLogList"] == 1
        errors = [line for line in m.log_text().splitlines()
                  if "csipfs: error:" in line]
        assert len(errors) == 1, errors
        assert "invalid API response" in errors[0]
        emulator.clear_faults()
        assert files_under(directory) == set(
            expected_account_files(manifest, member["uin"]))


# Clock skew ---------------------------------------------------------------

def test_clock_skew_is_corrected(mount, emulator, manifest):
    admin = admin_account(manifest)
    emulator.set_clock_offset(600)
    emulator.reset_counts()
    with mount() as m:
        counts = emulator.counts()
        assert sum(counts.values()) < 5, counts
        assert counts["DescribeOrganizationUserInfo"] == 2
        assert counts["DescribeTaskLogList"] == 1
        assert "using the server clock" in m.log_text()
        assert files_under(m.mountpoint / admin["dir"]) == set(
            expected_account_files(manifest, admin["uin"]))


def test_signing_at_cst_early_morning(mount, emulator, manifest):
    # At 03:00 in UTC+8 the UTC date is still the day before, and the
    # credential scope must carry the UTC date.
    cst = datetime.timezone(datetime.timedelta(hours=8))
    today = datetime.datetime.now(cst).date()
    moment = datetime.datetime.combine(today, datetime.time(3, 0), cst)
    # Near 03:00 CST the offset would be within the 300 s that the
    # service allows, so no call would fail. The day before works as well.
    if abs(moment.timestamp() - time.time()) < 3600:
        moment -= datetime.timedelta(days=1)
    emulator.set_clock_offset(moment.timestamp() - time.time())
    emulator.reset_counts()
    admin = admin_account(manifest)
    with mount() as m:
        counts = emulator.counts()
        assert counts["DescribeOrganizationUserInfo"] == 2
        assert files_under(m.mountpoint / admin["dir"]) == set(
            expected_account_files(manifest, admin["uin"]))


# Paging -------------------------------------------------------------------

def admin_report_count(manifest):
    uin = admin_account(manifest)["uin"]
    return sum(1 for r in manifest["reports"] if r["uin"] == uin)


def newest_admin_report(manifest):
    uin = admin_account(manifest)["uin"]
    infos = [r["task_log_info"] for r in manifest["reports"]
             if r["uin"] == uin]
    return min(infos, key=emulator_api._report_order)["TaskLogId"]


PAGE = 3


@pytest.mark.parametrize("quirk", [
    "total_as_string", "total_too_large", "inserted_between_pages"])
def test_paging_quirks(mount, emulator, manifest, quirk):
    admin = admin_account(manifest)
    count = admin_report_count(manifest)
    pages = -(-count // PAGE)
    if quirk == "total_as_string":
        quirks = {"total_as": "string"}
        calls = pages
    elif quirk == "total_too_large":
        quirks = {"total_extra": 7}
        # One more page, which comes back empty.
        calls = pages + 1
    else:
        quirks = {"insert_after_first_page": newest_admin_report(manifest)}
        calls = pages
    emulator.set_list_quirks("DescribeTaskLogList", page_limit=PAGE,
                             **quirks)
    emulator.set_list_quirks("DescribeOrganizationUserInfo", page_limit=2,
                             total_as="real")
    emulator.reset_counts()
    with mount() as m:
        counts = emulator.counts()
        assert counts["DescribeTaskLogList"] == calls, counts
        assert counts["DescribeOrganizationUserInfo"] == 3, counts
        assert set(os.listdir(m.mountpoint)) == {
            a["dir"] for a in manifest["accounts"]}
        assert files_under(m.mountpoint / admin["dir"]) == set(
            expected_account_files(manifest, admin["uin"]))


def test_empty_page_ends_listing(mount, emulator, manifest):
    admin = admin_account(manifest)
    uin = admin["uin"]
    infos = sorted((r["task_log_info"] for r in manifest["reports"]
                    if r["uin"] == uin), key=emulator_api._report_order)
    cut = 2 * PAGE
    emulator.set_list_quirks("DescribeTaskLogList", page_limit=PAGE,
                             empty_from=cut)
    emulator.reset_counts()
    with mount() as m:
        assert emulator.counts()["DescribeTaskLogList"] == 3
        listed = files_under(m.mountpoint / admin["dir"])
        assert listed == set(expected_account_files(manifest, uin,
                                                    infos[:cut]))


# Malformed reports --------------------------------------------------------

def test_malformed_reports(mount, emulator, manifest):
    admin = admin_account(manifest)
    uin = admin["uin"]
    own = [r for r in complete_reports(manifest) if r["uin"] == uin]
    # A task whose newest report loses its TaskName is named by its id.
    by_task = {}
    for report in own:
        by_task.setdefault(report["task_center_task_id"], []).append(report)
    renamed_task = max(by_task.values(), key=len)
    newest = max(renamed_task, key=lambda r: (r["time"], r["task_log_id"]))
    overrides = {
        own[0]["task_log_id"]: {"TaskLogName": None},
        own[1]["task_log_id"]: {"TaskLogId": emulator_api.DELETE},
        own[2]["task_log_id"]: {"Status": 2.0},
        own[3]["task_log_id"]: {"TaskLogName": "x" * 100000},
        newest["task_log_id"]: {"TaskName": None},
    }
    assert len({*overrides}) == 5
    infos = []
    for report in manifest["reports"]:
        if report["uin"] != uin:
            continue
        info = dict(report["task_log_info"])
        for name, value in overrides.get(report["task_log_id"], {}).items():
            if value is emulator_api.DELETE:
                info.pop(name)
            else:
                info[name] = value
        infos.append(info)
    expected = expected_account_files(manifest, uin, infos)
    assert len(expected) == len(own) - 1
    emulator.set_report_overrides(overrides)
    emulator.set_list_quirks("DescribeTaskLogList", total_as="real")
    with mount() as m:
        root = m.mountpoint / admin["dir"]
        assert files_under(root) == set(expected)
        long_name = next(p for p, i in expected.items()
                         if i == own[3]["task_log_id"])
        assert len(os.path.basename(long_name).encode()) == 255
        assert sha256_file(root / long_name) == own[3]["sha256"]
        warnings = [line for line in m.log_text().splitlines()
                    if "skipping a report" in line]
        assert len(warnings) == 1, warnings
        assert "no TaskLogId" in warnings[0]


# Hostile names ------------------------------------------------------------

HOSTILE_NAMES = [
    b"evil/../../etc/passwd",
    b"..",
    b"ctl\x01\x1f\x7fend",
    b"bad \xff\xfe utf8 \xe4\xb8 cut",
    b"nul\x00byte",
    b"\xc0\xaf overlong",
    b"\xed\xa0\x80 surrogate",
    "长".encode() * 120,
    b"quote \" and \\ backslash",
]


def test_hostile_names_listed_safely(mount, emulator, manifest):
    admin = admin_account(manifest)
    uin = admin["uin"]
    own = [r for r in complete_reports(manifest) if r["uin"] == uin]
    raw = {r["task_log_id"]: name for r, name in zip(own, HOSTILE_NAMES)}
    infos = []
    for report in manifest["reports"]:
        if report["uin"] != uin:
            continue
        info = dict(report["task_log_info"])
        if report["task_log_id"] in raw:
            info["TaskLogName"] = naming.repair(raw[report["task_log_id"]])
        infos.append(info)
    expected = expected_account_files(manifest, uin, infos)
    emulator.set_raw_names(raw)
    with mount() as m:
        root = m.mountpoint / admin["dir"]
        listed = files_under(root)
        assert listed == set(expected)
        for task in os.listdir(root):
            naming.check_names(os.listdir(root / task))
        by_id = {i: p for p, i in expected.items()}
        for report in own[:len(HOSTILE_NAMES)]:
            path = root / by_id[report["task_log_id"]]
            assert sha256_file(path) == report["sha256"]
        cache_paths = [str(p.relative_to(m.cache_dir))
                       for p in pathlib.Path(m.cache_dir).rglob("*")]
    assert cache_paths
    for path in cache_paths:
        assert path.isascii(), f"cache path {path!r} is not ASCII"
        for fragment in ("evil", "passwd", "ctl", "overlong", "quote"):
            assert fragment not in path, f"cache path {path!r} has a name"


# API down -----------------------------------------------------------------

def closed_port():
    """Return a loopback TCP port that nothing listens on."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.time_limit(180)
def saved_listing_dir(cache_dir):
    """Return the one directory of saved listings under cache_dir."""
    found = list(cache_dir.glob("owners/*/listing"))
    assert len(found) == 1, f"saved listing directories: {found}"
    return found[0]


def test_mount_from_saved_listing(mount, emulator, manifest, tmp_path):
    admin = admin_account(manifest)
    cache_dir = tmp_path / "shared-cache"
    expected = expected_account_files(manifest, admin["uin"])
    own = [r for r in complete_reports(manifest) if r["uin"] == admin["uin"]]
    cached = next(r for r in own if 0 < r["size"] < (1 << 20))
    # Listing probes the first block of every report, so only a block past
    # the first is still uncached.
    uncached = next(r for r in own if r["size"] > (2 << 20))
    with mount(cache_dir=cache_dir) as m:
        assert files_under(m.mountpoint / admin["dir"]) == set(expected)
        assert sha256_file(m.mountpoint / cached["path"]) == cached["sha256"]
    listing = saved_listing_dir(cache_dir)
    saved = sorted(os.listdir(listing))
    assert "accounts.json" in saved
    assert len(saved) == 2, saved
    for name in saved:
        mode = os.stat(listing / name).st_mode & 0o777
        assert mode == 0o600, f"{name} has mode {mode:o}"
        assert re.fullmatch(r"accounts\.json|[0-9a-f]{64}\.json", name)

    endpoint = f"endpoint=https://127.0.0.1:{closed_port()}"
    with mount(cache_dir=cache_dir, options=[endpoint],
               allowed_errors=[r"report", r"URL"]) as m:
        assert "mounting the listing saved by an earlier mount" in \
            m.log_text()
        assert files_under(m.mountpoint / admin["dir"]) == set(expected)
        assert sha256_file(m.mountpoint / cached["path"]) == cached["sha256"]
        started = time.monotonic()
        with open(m.mountpoint / uncached["path"], "rb") as source:
            assert errno_of(lambda: os.pread(source.fileno(), 4096,
                                             2 << 20)) == errno.EIO
        assert time.monotonic() - started < 5


def test_mount_fails_without_saved_listing(mount, tmp_path):
    port = closed_port()
    m = mount(cache_dir=tmp_path / "empty-cache",
              options=[f"endpoint=https://127.0.0.1:{port}"])
    status, log = m.run_to_exit()
    assert status == 1, log
    errors = [line for line in log.splitlines() if "csipfs: error:" in line]
    assert len(errors) == 1, errors
    assert f"127.0.0.1:{port}" in errors[0]
    assert "no listing saved by an earlier mount" in errors[0]


def test_other_credentials_ignore_saved_listing(mount, emulator, tmp_path):
    cache_dir = tmp_path / "shared-cache"
    with mount(cache_dir=cache_dir):
        pass
    assert (saved_listing_dir(cache_dir) / "accounts.json").exists()
    # The API is down, so nothing can check these credentials: the
    # administrator's saved listing must still not be shown to them.
    port = closed_port()
    m = mount(cache_dir=cache_dir, credential="member",
              options=[f"endpoint=https://127.0.0.1:{port}"])
    status, log = m.run_to_exit()
    assert status == 1, log
    assert "no listing saved by an earlier mount" in log
    assert "mounting the listing saved" not in log


def test_auth_failure_ignores_saved_listing(mount, emulator, tmp_path):
    cache_dir = tmp_path / "shared-cache"
    with mount(cache_dir=cache_dir):
        pass
    assert (saved_listing_dir(cache_dir) / "accounts.json").exists()
    m = mount(cache_dir=cache_dir,
              env={"TENCENTCLOUD_SECRET_KEY": "not-the-key"})
    status, log = m.run_to_exit()
    assert status == 1, log
    assert "AuthFailure.SignatureFailure" in log
    assert "saved by an earlier mount" not in log


def test_api_down_keeps_listing(mount, emulator, manifest):
    admin = admin_account(manifest)
    expected = expected_account_files(manifest, admin["uin"])
    with mount(options=["dir_ttl=1"],
               allowed_errors=[r"listing the"]) as m:
        root = m.mountpoint / admin["dir"]
        assert files_under(root) == set(expected)
        emulator.inject_fault("*", http_status=503, seconds=120)
        time.sleep(1.5)
        assert files_under(root) == set(expected)
        assert "keeping the previous" in m.log_text()
        emulator.clear_faults()
