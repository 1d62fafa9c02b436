"""Integration tests of what csipfs keeps secret and whom it trusts.

No log line, cache file or command line may contain the SecretKey, the session
token, an Authorization header or the query of a signed download URL. TLS
certificates are always verified, for the API and for the object store.
Without allow_other only the mounting user reaches the mount, and with it
the kernel checks the file modes.
"""

import errno
import os
import pathlib
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emulator import pki
from test_mount import (BLOCK_SIZE, complete_reports, expected_files, run,
                        set_difference, sha256_file, source_path, walk_tree)

NOBODY = 65534
# A uid and gid that own nothing on the test machine.
STRANGER = 65533
URL_LIFETIME = 2
# Failures injected for the failing read, more than the reader's retries.
FAULT_COUNT = 10
CERTIFICATE_ERROR = "certificate verification failed"


# Helpers -------------------------------------------------------------------

def with_options(mounted, drop=(), add=()):
    """Rewrite the -o list of a Mount that has not started yet.

    Options whose name is in drop are removed and the options in add are
    appended.
    """
    index = mounted.command.index("-o") + 1
    options = [option for option in mounted.command[index].split(",")
               if option.split("=", 1)[0] not in drop]
    options.extend(add)
    mounted.command[index] = ",".join(options)
    return mounted


def read_as(uid, gid, path):
    """Read path as uid:gid with no supplementary groups.

    Returns the sha256 of the content, or the errno name the open or read
    failed with.
    """
    script = (
        "import errno, hashlib, sys\n"
        "try:\n"
        "    with open(sys.argv[1], 'rb') as f:\n"
        "        print(hashlib.sha256(f.read()).hexdigest())\n"
        "except OSError as error:\n"
        "    print(errno.errorcode.get(error.errno, str(error.errno)))\n")
    result = run(["setpriv", f"--reuid={uid}", f"--regid={gid}",
                  "--clear-groups", "/usr/bin/python3", "-c", script,
                  str(path)], text=True, timeout=60)
    assert result.returncode == 0, (
        f"reading {path} as {uid}: status {result.returncode}, "
        f"{result.stderr!r}")
    return result.stdout.strip()


def mount_options(mountpoint):
    """Return the option set /proc/mounts shows for mountpoint."""
    for line in pathlib.Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mountpoint):
            return set(fields[3].split(","))
    pytest.fail(f"{mountpoint} is not in /proc/mounts")


@pytest.fixture
def shared_dir():
    """A directory that every user may traverse, for mount points.

    The per-test tmp_path lies under a directory of mode 0700, where another
    user fails with EACCES before ever reaching the mount.
    """
    path = pathlib.Path(tempfile.mkdtemp(prefix="csipfs-shared-"))
    path.chmod(0o755)
    (path / "mnt").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def issued_urls(emulator):
    """Record every download URL that DescribeTaskLogURL returns.

    The emulator has no public record of them, so this wraps its private
    action method for the length of the test.
    """
    service = emulator._service
    original = service._DescribeTaskLogURL
    urls = []
    lock = threading.Lock()

    def recording(uin, params):
        result = original(uin, params)
        with lock:
            urls.extend(item["URL"] for item in result["Data"])
        return result

    service._DescribeTaskLogURL = recording
    try:
        yield urls
    finally:
        del service._DescribeTaskLogURL
        emulator.set_url_lifetime(emulator.url_lifetime)
        emulator.clear_faults()


def secret_strings(mounted, urls):
    """Return {description: text} of everything that must stay secret."""
    secrets = {}
    for name in ("TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SESSION_TOKEN"):
        assert mounted.env.get(name), f"the credential has no {name}"
        secrets[name] = mounted.env[name]
    secret_id = mounted.env["TENCENTCLOUD_SECRET_ID"]
    secrets["Credential= with the SecretId"] = "Credential=" + secret_id
    secrets["an Authorization header's Credential="] = "Credential="
    secrets["an Authorization header's Signature="] = "Signature="
    secrets["a signed URL's md5="] = "md5="
    secrets["a signed URL's expires="] = "expires="
    for url in urls:
        query = urllib.parse.urlsplit(url).query
        assert query, f"issued URL {url} has no query"
        secrets[f"the query of issued URL {url}"] = query
        md5 = urllib.parse.parse_qs(query)["md5"][0]
        secrets[f"the md5 of issued URL {url}"] = md5
    return secrets


def cache_files(cache_dir):
    files = [path for path in pathlib.Path(cache_dir).rglob("*")
             if path.is_file()]
    assert files, f"{cache_dir} holds no files"
    return files


# Secrets -------------------------------------------------------------------

@pytest.mark.time_limit(90)
def test_no_secret_in_log_cache_or_argv(mount, emulator, manifest,
                                        issued_urls, tmp_path):
    reports = sorted(complete_reports(manifest), key=lambda r: r["size"])
    large = [r for r in reports if r["size"] > 3 * BLOCK_SIZE]
    assert large, "the fixture has no complete report of 4 blocks or more"
    assert len(large) >= 2, "the fixture has fewer than 2 such reports"
    refreshed = large[-1]
    failing = large[-2]

    mounted = mount(credential="temporary", log_level="debug",
                    cache_dir=tmp_path / "cache",
                    allowed_errors=[r"FailedOperation"])
    mounted.command.insert(1, "-d")
    emulator.set_url_lifetime(URL_LIFETIME)
    with mounted:
        root = mounted.mountpoint
        cmdline = pathlib.Path(f"/proc/{mounted.process.pid}/cmdline")
        argv = cmdline.read_bytes().decode(errors="replace")

        # Listing and reading whole files.
        _, files = walk_tree(root)
        expected = set(expected_files(manifest))
        assert files == expected, set_difference(expected, files)
        small = reports[0]
        assert sha256_file(root / small["path"]) == small["sha256"]

        # A read after the URL expired, which needs a fresh URL.
        source = source_path(emulator, refreshed)
        offset = refreshed["size"] - BLOCK_SIZE
        with open(root / refreshed["path"], "rb") as f:
            # Without the kernel's read-ahead, which would have read the
            # last block before the URL expired.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
            first = os.pread(f.fileno(), BLOCK_SIZE, BLOCK_SIZE)
            time.sleep(URL_LIFETIME + 1)
            emulator.reset_store_log()
            before = emulator.counts().get("DescribeTaskLogURL", 0)
            last = os.pread(f.fileno(), BLOCK_SIZE, offset)
            after = emulator.counts().get("DescribeTaskLogURL", 0)
        with open(source, "rb") as f:
            assert first == os.pread(f.fileno(), BLOCK_SIZE, BLOCK_SIZE)
            assert last == os.pread(f.fileno(), BLOCK_SIZE, offset)
        assert after > before, "no fresh URL was resolved after expiry"
        denied = [r for r in emulator.store_requests() if r["status"] == 403]
        assert denied, "the store never rejected the expired URL"

        # A failing API call, which logs an error.
        emulator.inject_fault("DescribeTaskLogURL", code="FailedOperation",
                              count=FAULT_COUNT)
        with pytest.raises(OSError) as raised:
            with open(root / failing["path"], "rb") as f:
                os.pread(f.fileno(), 4096, BLOCK_SIZE)
        assert raised.value.errno == errno.EIO, (
            f"the failing call gave {errno.errorcode.get(raised.value.errno)}"
            ", expected EIO")

    log = mounted.log_text()
    assert "FailedOperation" in log, "the failing call was not logged"
    assert "unique: " in log, "the log has no FUSE debug output from -d"
    assert issued_urls, "the emulator issued no download URL"
    secrets = secret_strings(mounted, issued_urls)
    for description, text in secrets.items():
        assert text not in log, f"{description} appears in the log"
        assert text not in argv, f"{description} appears in the argv"
    for path in cache_files(mounted.cache_dir):
        content = path.read_bytes()
        for description, text in secrets.items():
            assert text.encode() not in content, (
                f"{description} appears in {path}")


@pytest.mark.parametrize("variable", ["TENCENTCLOUD_SECRET_KEY",
                                      "TENCENTCLOUD_SESSION_TOKEN"])
def test_rejected_secret_not_logged(mount, variable):
    wrong = "wrong-" + variable.lower() + "-" + os.urandom(8).hex()
    failing = mount(credential="temporary", log_level="debug",
                    allowed_errors=[".*"], env={variable: wrong})
    failing.command.insert(1, "-d")
    status, log = failing.run_to_exit()
    assert status == 1, f"csipfs exited with status {status}, log:\n{log}"
    assert "AuthFailure" in log, f"the log names no AuthFailure:\n{log}"
    assert wrong not in log, f"the rejected {variable} appears in the log"
    for secret in failing.secrets:
        assert secret not in log, "a secret appears in the log"
    assert "Signature=" not in log, "an Authorization header is logged"


# TLS -----------------------------------------------------------------------

def test_untrusted_api_fails(mount):
    failing = with_options(mount(allowed_errors=[".*"]), drop=("cafile",))
    status, log = failing.run_to_exit()
    assert status == 1, f"csipfs exited with status {status}, log:\n{log}"
    assert CERTIFICATE_ERROR in log, (
        f"the log does not name certificate verification:\n{log}")


class RangeHandler(BaseHTTPRequestHandler):
    """Serves objects_dir with single byte ranges, ignoring the query."""

    protocol_version = "HTTP/1.1"
    objects_dir = None

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        relative = urllib.parse.urlsplit(self.path).path.lstrip("/")
        path = (self.objects_dir / relative).resolve()
        if self.objects_dir not in path.parents or not path.is_file():
            self._reply(404, b"")
            return
        data = path.read_bytes()
        header = self.headers.get("Range", "")
        if not header.startswith("bytes="):
            self._reply(200, data)
            return
        first_text, _, last_text = header[len("bytes="):].partition("-")
        first = int(first_text)
        last = min(int(last_text), len(data) - 1) if last_text else (
            len(data) - 1)
        if first >= len(data):
            self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            return
        self._reply(206, data[first:last + 1],
                    {"Content-Range": f"bytes {first}-{last}/{len(data)}"})

    def _reply(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def second_store(emulator, tmp_path):
    """An HTTPS object store whose certificate comes from a second CA.

    Yields the PkiFiles of that CA. Download URLs point at the store while
    the test runs.
    """
    files = pki.make_pki(tmp_path / "second-pki")
    handler = type("Handler", (RangeHandler,), {
        "objects_dir": pathlib.Path(emulator.state["objects_dir"])})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    emulator.set_store_url(f"https://127.0.0.1:{server.server_address[1]}")
    try:
        yield files
    finally:
        emulator.set_store_url(None)
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_untrusted_store_gives_eio(mount, emulator, manifest, second_store,
                                   tmp_path):
    report = complete_reports(manifest)[0]
    task_dir = pathlib.PurePosixPath(report["path"]).parent
    with mount(allowed_errors=[CERTIFICATE_ERROR,
                               "reports could not be read"]) as mounted:
        with pytest.raises(OSError) as raised:
            os.listdir(mounted.mountpoint / task_dir)
    assert raised.value.errno == errno.EIO, (
        f"listing {task_dir} gave "
        f"{errno.errorcode.get(raised.value.errno)}, expected EIO")
    log = mounted.log_text()
    assert CERTIFICATE_ERROR in log, (
        f"the log does not name certificate verification:\n{log}")

    # Trusting both CAs makes the same store work.
    bundle = tmp_path / "both-cas.pem"
    bundle.write_bytes(pathlib.Path(emulator.state["ca_file"]).read_bytes()
                       + second_store.ca_cert.read_bytes())
    trusting = with_options(mount(), drop=("cafile",),
                            add=(f"cafile={bundle}",))
    with trusting:
        path = trusting.mountpoint / report["path"]
        assert sha256_file(path) == report["sha256"]
    assert CERTIFICATE_ERROR not in trusting.log_text()


def test_help_has_no_insecure_option(csipfs_bin):
    result = run([csipfs_bin, "--help"], text=True)
    assert result.returncode == 0, f"--help failed: {result.stderr!r}"
    text = result.stdout.lower()
    for word in ("insecure", "verify", "no_check", "skip"):
        assert word not in text, f"--help mentions {word!r}"


@pytest.mark.parametrize("option", ["insecure", "ssl_verify=0", "no_verify",
                                    "verify=0", "ssl_no_verify"])
def test_insecure_options_rejected(mount, option):
    failing = mount(log_level=None, allowed_errors=[".*"],
                    options=[option])
    status, log = failing.run_to_exit()
    assert status == 1, f"csipfs exited with status {status}, log:\n{log}"
    name = option.split("=", 1)[0]
    assert name in log, f"the error does not name {name}:\n{log}"


# Access by other users -----------------------------------------------------

def test_other_user_denied_without_allow_other(mount, manifest, shared_dir):
    report = complete_reports(manifest)[0]
    with mount(mountpoint=shared_dir / "mnt") as mounted:
        options = mount_options(mounted.mountpoint)
        assert "allow_other" not in options, f"mount options: {options}"
        assert "default_permissions" in options, f"mount options: {options}"
        path = mounted.mountpoint / report["path"]
        assert sha256_file(path) == report["sha256"]
        assert read_as(NOBODY, NOBODY, path) == "EACCES"
        assert read_as(NOBODY, NOBODY, mounted.mountpoint) == "EACCES"


def test_allow_other_lets_others_read(mount, manifest, shared_dir):
    report = complete_reports(manifest)[0]
    with mount(mountpoint=shared_dir / "mnt",
               options=["allow_other"]) as mounted:
        options = mount_options(mounted.mountpoint)
        assert "allow_other" in options, f"mount options: {options}"
        assert "default_permissions" in options, f"mount options: {options}"
        path = mounted.mountpoint / report["path"]
        assert read_as(NOBODY, NOBODY, path) == report["sha256"]


def test_allow_other_enforces_umask(mount, manifest, shared_dir):
    report = complete_reports(manifest)[0]
    with mount(mountpoint=shared_dir / "mnt",
               options=["allow_other", "umask=0077"]) as mounted:
        options = mount_options(mounted.mountpoint)
        assert "default_permissions" in options, f"mount options: {options}"
        path = mounted.mountpoint / report["path"]
        mode = os.stat(path).st_mode
        assert mode & 0o077 == 0, f"mode {mode:o} has group or other bits"
        assert mode & 0o400, f"mode {mode:o} lacks the owner's read bit"
        assert read_as(NOBODY, NOBODY, path) == "EACCES"
        # root passes the mode check and reads the file.
        assert sha256_file(path) == report["sha256"]


def test_allow_other_enforces_owner(mount, manifest, shared_dir):
    report = complete_reports(manifest)[0]
    with mount(mountpoint=shared_dir / "mnt",
               options=["allow_other", f"uid={NOBODY}", f"gid={NOBODY}",
                        "umask=0077"]) as mounted:
        path = mounted.mountpoint / report["path"]
        info = os.stat(path)
        assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)
        assert read_as(NOBODY, NOBODY, path) == report["sha256"]
        assert read_as(STRANGER, STRANGER, path) == "EACCES"
