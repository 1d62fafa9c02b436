"""The contenders: csipfs, httpdirfs and rclone mounts, plus curl and the
local files as references.

csipfs mounts the emulator's API. httpdirfs and rclone mount the /plain/
tree of the same nginx, which lists the same object files. Each layout maps
a report of the manifest to its path in a mount or in the objects
directory.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import measure

MOUNT_TIMEOUT = 30
UNMOUNT_ATTEMPTS = 10
EXIT_TIMEOUT = 20

FILESYSTEMS = ("csipfs", "httpdirfs", "rclone")
ALL = ("csipfs", "curl", "httpdirfs", "rclone", "local")


class MountError(Exception):
    """A mount did not come up, or did not go away cleanly."""


class CsipfsLayout:
    """Paths in a csipfs mount: ACCOUNT/TASK/REPORT.pdf."""

    def __init__(self, root, manifest):
        self.root = Path(root)
        self.account_dirs = manifest["bench"]["account_dirs"]

    def report_path(self, report):
        return self.root / report["path"]

    def tree(self, account):
        return self.root / self.account_dirs[account]

    def relative_path(self, report):
        """Return the report's path below its account's tree."""
        return report["path"].split("/", 1)[1]


class PlainLayout:
    """Paths in the objects directory, or in a mount of nginx's /plain/
    tree: r/APPID/TASKID/TASKLOGID.pdf."""

    def __init__(self, root, manifest):
        self.root = Path(root)
        self.app_ids = manifest["bench"]["app_ids"]

    def report_path(self, report):
        return self.root / report["object"]

    def tree(self, account):
        return self.root / "r" / self.app_ids[account]

    def relative_path(self, report):
        return report["object"].split("/", 2)[2]


class Mount:
    """A FUSE daemon started in the foreground, and its mount point.

    Use as a context manager: entering waits until the mount point is
    mounted and stats its root, leaving unmounts it and waits for the
    daemon to exit.
    """

    def __init__(self, name, argv, env, mountpoint, log_path, layout,
                 cache_dir=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.mountpoint = Path(mountpoint)
        self.log_path = Path(log_path)
        self.layout = layout
        self.cache_dir = cache_dir
        self.process = None

    @property
    def pid(self):
        return self.process.pid

    def log_tail(self, lines=15):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self):
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(self.mountpoint):
            status = self.process.poll()
            if status is not None:
                self.process = None
                raise MountError(f"{self.name} exited with status {status} "
                                 f"before mounting {self.mountpoint}; log:\n"
                                 f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise MountError(f"{self.name} did not mount "
                                 f"{self.mountpoint} within {MOUNT_TIMEOUT} "
                                 f"s; log:\n{self.log_tail()}")
            time.sleep(0.02)
        os.stat(self.mountpoint)
        return self

    def _unmount(self):
        """Unmount, retrying while busy, and detach lazily as a last
        resort. Returns the error text of the last attempt, or None."""
        error = None
        for _ in range(UNMOUNT_ATTEMPTS):
            if not os.path.ismount(self.mountpoint):
                return None
            try:
                result = subprocess.run(["umount", str(self.mountpoint)],
                                        capture_output=True, text=True,
                                        timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                error = f"umount timed out after {EXIT_TIMEOUT} s"
                break
            if result.returncode == 0:
                return None
            error = result.stderr.strip()
            time.sleep(0.5)
        subprocess.run(["umount", "-l", str(self.mountpoint)],
                       capture_output=True, timeout=EXIT_TIMEOUT)
        return error

    def stop(self):
        """Unmount and wait for the daemon. Raises MountError when the
        unmount needed a lazy detach or the daemon exited with an error.
        Safe to call more than once."""
        if self.process is None:
            return
        process = self.process
        error = self._unmount()
        status = measure.stop_process(process, grace=EXIT_TIMEOUT)
        self.process = None
        if error is not None:
            raise MountError(f"umount {self.mountpoint} failed ({error}), "
                             f"so it was detached lazily")
        if status != 0:
            raise MountError(f"{self.name} exited with status {status} "
                             f"after the unmount; log:\n{self.log_tail()}")

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.stop()
            return
        # The run failed already: unmount, but keep its error as the one
        # that is reported.
        try:
            self.stop()
        except MountError:
            pass


class MountFactory:
    """Builds the Mount of each filesystem contender for one emulator.

    binary is the csipfs executable, state the emulator's state.json,
    manifest the fixture's manifest and run_dir a directory for mount
    points, homes and logs.
    """

    def __init__(self, binary, state, manifest, run_dir):
        self.binary = str(binary)
        self.state = state
        self.manifest = manifest
        self.run_dir = Path(run_dir)
        self.count = 0

    def new_cache_dir(self, name):
        self.count += 1
        path = self.run_dir / f"cache-{name}-{self.count}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def mount(self, name, cache_dir):
        """Return an unstarted Mount of contender name that keeps its cache
        in cache_dir."""
        self.count += 1
        mountpoint = self.run_dir / f"mnt-{name}-{self.count}"
        log_path = self.run_dir / "logs" / f"{name}-{self.count}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        builder = {"csipfs": self._csipfs, "httpdirfs": self._httpdirfs,
                   "rclone": self._rclone}[name]
        argv, env, layout = builder(mountpoint, Path(cache_dir))
        return Mount(name, argv, env, mountpoint, log_path, layout,
                     cache_dir=cache_dir)

    def _base_env(self):
        home = self.run_dir / "home"
        home.mkdir(exist_ok=True)
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(home)}

    def _csipfs(self, mountpoint, cache_dir):
        state = self.state
        credential = state["credentials"]["admin"]
        env = self._base_env()
        env.update({
            "TENCENTCLOUD_SECRET_ID": credential["secret_id"],
            "TENCENTCLOUD_SECRET_KEY": credential["secret_key"],
            # Keeps a credentials file of the machine out of the run.
            "CSIPFS_SYSTEM_CREDENTIALS": str(self.run_dir /
                                             "no-system-credentials"),
        })
        options = ",".join([f"endpoint={state['api_url']}",
                            f"cafile={state['ca_file']}",
                            f"cache_dir={cache_dir}"])
        argv = [self.binary, "-f", "-o", options, "default", str(mountpoint)]
        return argv, env, CsipfsLayout(mountpoint, self.manifest)

    def _httpdirfs(self, mountpoint, cache_dir):
        # Without --no-range-check, httpdirfs 1.2.5 logs "This web server
        # does not support HTTP range requests" at the first open and
        # exits, although nginx returns 206 to its range requests.
        # Without --cache, httpdirfs sends one range request per 128 KiB
        # read and measured 1.4 MiB/s on loopback here. Its cache mode
        # downloads 8 MiB segments into cache_dir, the way it is meant to
        # be used for large files.
        argv = ["httpdirfs", "-f", "--cacert", self.state["ca_file"],
                "--no-range-check", "--cache", "--cache-location",
                str(cache_dir), self.state["plain_url"], str(mountpoint)]
        return argv, self._base_env(), PlainLayout(mountpoint, self.manifest)

    def _rclone(self, mountpoint, cache_dir):
        config = self.run_dir / "rclone.conf"
        config.touch()
        argv = ["rclone", "mount", ":http:", str(mountpoint),
                "--http-url", self.state["plain_url"], "--read-only",
                "--ca-cert", self.state["ca_file"], "--config", str(config),
                "--cache-dir", str(cache_dir)]
        return argv, self._base_env(), PlainLayout(mountpoint, self.manifest)
