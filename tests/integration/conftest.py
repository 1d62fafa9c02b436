"""Fixtures for the csipfs integration tests.

One CSIP emulator (API server and nginx object store) runs per session. Each
test mounts the csipfs binary named by the CSIPFS_BIN environment variable,
with its own HOME, cache directory and log file, and fails when the daemon's
log shows a sanitizer report or an error the test did not expect.
"""

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS_DIR))

from emulator import Emulator, load_manifest  # noqa: E402

MOUNT_TIMEOUT = 20
# Sanitizer builds, ThreadSanitizer above all, run several times slower.
EXIT_TIMEOUT = 15
UNMOUNT_ATTEMPTS = 10
DEFAULT_TEST_TIMEOUT = 120
# Seconds the watchdog waits after the alarm before it kills the daemons: a
# read blocked inside FUSE does not return on SIGALRM, but it does return
# ENOTCONN once the daemon is gone.
WATCHDOG_GRACE = 10

SANITIZER_MARKERS = (
    "AddressSanitizer",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "ThreadSanitizer",
    "runtime error:",
)
ERROR_PREFIX = "csipfs: error:"
# Query parameters of the object store's signed URLs: a log line that
# contains one leaks a bearer secret.
SIGNED_URL_MARKERS = ("md5=", "expires=")

# Mounts whose daemon is running, for the watchdog.
active_mounts = []
active_mounts_lock = threading.Lock()


def pytest_configure(config):
    # A shell without job control starts background commands with SIGINT
    # ignored. csipfs would inherit that, and libfuse then leaves SIGINT
    # alone, which fails the tests that stop csipfs with it. A Python
    # handler is reset to the default at exec(), so csipfs gets the default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers",
        "time_limit(seconds): the test's time limit, instead of "
        f"{DEFAULT_TEST_TIMEOUT} s",
    )


def tail(path, lines=40):
    """Return the last lines of a log file, for failure messages."""
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


class Mount:
    """One csipfs process and its mount point.

    Use it as a context manager: entering starts csipfs and waits until the
    mount point is mounted, leaving unmounts it, waits for the process and
    checks its log.
    """

    def __init__(self, binary, emulator, workdir, number, credential="admin",
                 options=(), cache_dir=None, env=None, allowed_errors=(),
                 log_level="debug", mountpoint=None):
        state = emulator.state
        self.binary = binary
        self.workdir = workdir
        # A caller-given mount point is used as it is, even if missing.
        self.create_mountpoint = mountpoint is None
        self.mountpoint = pathlib.Path(mountpoint
                                       or workdir / f"mnt-{number}")
        self.log_path = workdir / f"csipfs-{number}.log"
        self.home = workdir / "home"
        self.cache_dir = pathlib.Path(cache_dir or workdir / f"cache-{number}")
        self.allowed_errors = [re.compile(p) for p in allowed_errors]
        self.process = None
        self.secrets = []

        option_list = [
            "endpoint=" + state["api_url"],
            "cafile=" + state["ca_file"],
            "cache_dir=" + str(self.cache_dir),
        ]
        if log_level:
            option_list.append("log_level=" + log_level)
        option_list.extend(options)
        self.command = [binary, "-f", "-o", ",".join(option_list), "default",
                        str(self.mountpoint)]

        self.env = base_env(self.home, workdir)
        if credential:
            values = state["credentials"][credential]
            self.env["TENCENTCLOUD_SECRET_ID"] = values["secret_id"]
            self.env["TENCENTCLOUD_SECRET_KEY"] = values["secret_key"]
            if values.get("token"):
                self.env["TENCENTCLOUD_SESSION_TOKEN"] = values["token"]
        # A value of None in env removes the variable.
        for name, value in (env or {}).items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value
        for name in ("TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SESSION_TOKEN"):
            if self.env.get(name):
                self.secrets.append(self.env[name])

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, traceback):
        if self.process is None:
            return
        if exc_type is None:
            self.stop()
            return
        # The test already failed: unmount and show the daemon's log, but let
        # the test's own failure be the one pytest reports.
        try:
            self.stop()
        except BaseException as error:
            print(f"while unmounting {self.mountpoint}: {error}",
                  file=sys.stderr)
        print(f"--- tail of {self.log_path} ---\n{tail(self.log_path)}",
              file=sys.stderr)

    def _spawn(self):
        if self.create_mountpoint:
            self.mountpoint.mkdir(exist_ok=True)
        self.home.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)

    def start(self):
        """Start csipfs and wait until the mount point is mounted."""
        self._spawn()
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(self.mountpoint):
            status = self.process.poll()
            if status is not None:
                self.process = None
                pytest.fail(f"csipfs exited with status {status} before "
                            f"mounting {self.mountpoint}; log:\n"
                            f"{tail(self.log_path)}")
            if time.monotonic() > deadline:
                self._kill()
                pytest.fail(f"{self.mountpoint} not mounted after "
                            f"{MOUNT_TIMEOUT} s; log:\n{tail(self.log_path)}")
            time.sleep(0.05)
        with active_mounts_lock:
            active_mounts.append(self)
        return self

    def run_to_exit(self):
        """Run csipfs when it is expected to fail before mounting.

        Returns (exit status, log text). Fails the test when csipfs mounts
        or is still running after MOUNT_TIMEOUT seconds.
        """
        self._spawn()
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while self.process.poll() is None:
            if os.path.ismount(self.mountpoint):
                with active_mounts_lock:
                    active_mounts.append(self)
                self.stop(check=False)
                pytest.fail(f"csipfs mounted {self.mountpoint} although it "
                            f"was expected to fail; log:\n"
                            f"{tail(self.log_path)}")
            if time.monotonic() > deadline:
                self._kill()
                pytest.fail(f"csipfs still running after {MOUNT_TIMEOUT} s "
                            f"although it was expected to fail; log:\n"
                            f"{tail(self.log_path)}")
            time.sleep(0.05)
        status = self.process.returncode
        self.process = None
        mounted = os.path.ismount(self.mountpoint)
        assert not mounted, f"{self.mountpoint} is mounted after csipfs exited"
        return status, self.log_path.read_text(errors="replace")

    def unmount(self):
        """Run fusermount3 -u, retrying while the mount is busy."""
        for attempt in range(UNMOUNT_ATTEMPTS):
            result = subprocess.run(
                ["fusermount3", "-u", str(self.mountpoint)],
                capture_output=True, text=True, timeout=EXIT_TIMEOUT)
            if result.returncode == 0:
                return
            if not os.path.ismount(self.mountpoint):
                return
            time.sleep(0.5)
        pytest.fail(f"fusermount3 -u {self.mountpoint} failed "
                    f"{UNMOUNT_ATTEMPTS} times: {result.stderr.strip()}")

    def stop(self, check=True):
        """Unmount, wait for csipfs to exit and check its log."""
        try:
            self.unmount()
        finally:
            self._wait()
        if check:
            self.check_log()

    def _wait(self):
        with active_mounts_lock:
            if self in active_mounts:
                active_mounts.remove(self)
        if self.process is None:
            return
        try:
            status = self.process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            stacks = self._thread_stacks()
            self._kill()
            pytest.fail(f"csipfs did not exit within {EXIT_TIMEOUT} s after "
                        f"the unmount; log:\n{tail(self.log_path)}\n"
                        f"threads:\n{stacks}")
        self.process = None
        assert status == 0, (f"csipfs exited with status {status} after the "
                             f"unmount; log:\n{tail(self.log_path)}")

    def _thread_stacks(self):
        """Return the daemon's thread backtraces from gdb, to show where a
        process that does not exit is waiting."""
        if shutil.which("gdb") is None:
            return "(gdb is not installed)"
        try:
            result = subprocess.run(
                ["gdb", "-p", str(self.process.pid), "-batch", "-ex",
                 "thread apply all bt 20"],
                capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return "(gdb timed out)"
        lines = [line for line in result.stdout.splitlines()
                 if line.startswith(("Thread ", "#"))]
        return "\n".join(lines[-200:])

    def _kill(self):
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=EXIT_TIMEOUT)
        self.process = None
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)],
                           capture_output=True, timeout=EXIT_TIMEOUT)

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def check_log(self):
        """Fail on sanitizer reports, unexpected errors and leaked secrets."""
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, (f"{marker!r} in {self.log_path}:\n"
                                        f"{tail(self.log_path, 80)}")
        for secret in self.secrets:
            assert secret not in text, f"a secret appears in {self.log_path}"
        for marker in SIGNED_URL_MARKERS:
            assert marker not in text, (f"a signed URL query ({marker!r}) "
                                        f"appears in {self.log_path}")
        unexpected = [
            line for line in text.splitlines()
            if ERROR_PREFIX in line
            and not any(p.search(line) for p in self.allowed_errors)
        ]
        assert not unexpected, (f"unexpected errors in {self.log_path}:\n"
                                + "\n".join(unexpected))


def base_env(home, workdir):
    """Return the environment csipfs runs with, before any credentials."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        # Replaces /etc/tencentcloud/credentials, so that a file on the
        # test machine cannot supply credentials.
        "CSIPFS_SYSTEM_CREDENTIALS": str(workdir / "no-system-credentials"),
    }
    for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                 "TSAN_OPTIONS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def kill_active_daemons():
    with active_mounts_lock:
        mounts = list(active_mounts)
    for mount in mounts:
        process = mount.process
        if process is not None and process.poll() is None:
            print(f"time limit: killing csipfs pid {process.pid} "
                  f"({mount.mountpoint})", file=sys.stderr)
            process.kill()


@pytest.fixture(autouse=True)
def time_limit(request):
    """Fail a test that runs longer than its limit.

    SIGALRM interrupts the test in Python code and in most system calls. A
    watchdog thread kills the csipfs daemons WATCHDOG_GRACE seconds later,
    which ends a system call blocked on an unresponsive mount.
    """
    marker = request.node.get_closest_marker("time_limit")
    seconds = marker.args[0] if marker else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded its time limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    watchdog = threading.Timer(seconds + WATCHDOG_GRACE, kill_active_daemons)
    watchdog.daemon = True
    watchdog.start()
    yield
    watchdog.cancel()
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def csipfs_bin():
    path = os.environ.get("CSIPFS_BIN")
    if not path:
        pytest.fail("CSIPFS_BIN is not set: set it to the csipfs binary, "
                    "e.g. CSIPFS_BIN=build/fs/csipfs")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail(f"CSIPFS_BIN={path} is not an executable file: build it "
                    "first (meson compile -C build)")
    return path


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("emulator"))
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def manifest(emulator):
    return load_manifest(emulator.state["manifest"])


@pytest.fixture
def mount(csipfs_bin, emulator, tmp_path):
    """Return a factory of Mount objects that share the test's HOME.

    Keyword arguments: credential (a key of the emulator's credentials or
    None), options (extra -o options), cache_dir, env (overrides),
    allowed_errors (regular expressions of "csipfs: error:" lines the test
    expects), log_level and mountpoint. Teardown stops every mount still
    running, then deletes the test's directories but keeps the logs,
    because caches and copies of the fixture take hundreds of MiB.
    """
    mounts = []

    def make(**kwargs):
        created = Mount(csipfs_bin, emulator, tmp_path, len(mounts) + 1,
                        **kwargs)
        mounts.append(created)
        return created

    yield make

    failures = []
    for created in mounts:
        if created.process is None:
            continue
        try:
            created.stop()
        except BaseException as error:
            failures.append(f"{created.mountpoint}: {error}")
    if any(os.path.ismount(m.mountpoint) for m in mounts):
        failures.append("a mount point is still mounted")
    else:
        for entry in tmp_path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
    if failures:
        pytest.fail("teardown failed:\n" + "\n".join(failures))


@pytest.fixture
def admin_mount(mount):
    """A started mount with the group administrator's credential."""
    with mount() as started:
        yield started
