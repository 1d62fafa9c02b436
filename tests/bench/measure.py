"""Timing of commands, counters of daemons and control of the page cache.

Linux only: the counters come from /proc and the page cache is dropped
through /proc/sys/vm/drop_caches, which needs root.
"""

import dataclasses
import os
import signal
import subprocess
import threading
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READ_BUFFER = 8 << 20


class CommandError(Exception):
    """A timed command failed, timed out or could not start."""


class TimeLimitError(CommandError):
    """A timed command that ran over its time limit and was killed."""


@dataclasses.dataclass
class Command:
    """One program to run: its argv and the file for its stdout, or None
    for /dev/null."""

    argv: list
    stdout_path: object = None


@dataclasses.dataclass
class Timing:
    """The result of run_timed: wall time in seconds from the first start
    to the last exit, the exit statuses, and the user plus system CPU
    seconds and the maximum resident set size (KiB) of the commands."""

    seconds: float
    statuses: list
    cpu_seconds: float
    peak_rss_kib: int


def _open_stdout(command):
    if command.stdout_path is None:
        return open(os.devnull, "wb")
    return open(command.stdout_path, "wb")


def run_timed(commands, timeout, env=None, stderr_path=None):
    """Start every command at once, wait until all have exited, and return
    a Timing.

    The commands get stdin from /dev/null and stderr in stderr_path (or
    /dev/null). After timeout seconds every command still running is
    killed and TimeLimitError is raised. A status other than 0 is returned
    in Timing.statuses, not raised.
    """
    processes = []
    timed_out = threading.Event()
    stderr = open(stderr_path or os.devnull, "ab")
    outputs = [_open_stdout(c) for c in commands]

    def kill_all():
        timed_out.set()
        for process in processes:
            try:
                process.kill()
            except ProcessLookupError:
                pass

    timer = threading.Timer(timeout, kill_all)
    statuses = []
    cpu_seconds = 0.0
    peak_rss = 0
    try:
        start = time.monotonic()
        for command, output in zip(commands, outputs):
            try:
                processes.append(subprocess.Popen(
                    command.argv, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=stderr, env=env))
            except OSError as error:
                raise CommandError(f"{command.argv[0]} could not start: "
                                   f"{error}") from error
        timer.start()
        # wait4 gives the resource usage of exactly this child, so the
        # counters do not mix with other children of the harness.
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            statuses.append(process.returncode)
            cpu_seconds += usage.ru_utime + usage.ru_stime
            peak_rss = max(peak_rss, usage.ru_maxrss)
        seconds = time.monotonic() - start
    finally:
        timer.cancel()
        for process in processes:
            if process.returncode is None:
                process.kill()
                process.wait()
        for output in outputs:
            output.close()
        stderr.close()
    if timed_out.is_set():
        raise TimeLimitError(f"{commands[0].argv[0]} did not finish within "
                             f"{timeout} s and was killed")
    return Timing(seconds, statuses, cpu_seconds, peak_rss)


def drop_caches():
    """Write back dirty pages, then drop the page cache, dentries and
    inodes of the whole machine."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as control:
        control.write("3\n")


def read_files(paths):
    """Read every file in paths to its end and return the byte count, which
    puts the files into the page cache."""
    buffer = bytearray(READ_BUFFER)
    view = memoryview(buffer)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as source:
            while True:
                count = source.readinto(view)
                if not count:
                    break
                total += count
    return total


# ------------------------------------------------------------- daemons

def reset_peak_rss(pid):
    """Reset the peak resident set size (VmHWM) of process pid to its
    current size."""
    with open(f"/proc/{pid}/clear_refs", "w") as control:
        control.write("5\n")


def peak_rss_kib(pid):
    """Return VmHWM of process pid in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise CommandError(f"/proc/{pid}/status has no VmHWM line")


def cpu_seconds(pid):
    """Return the user plus system CPU seconds of process pid, all threads
    included."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # The command name in brackets may contain spaces, so the fields are
    # counted from the closing bracket: utime and stime are fields 14 and
    # 15 of the line, 12 and 13 after it.
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def stop_process(process, grace=10.0):
    """Wait grace seconds for a subprocess.Popen to exit, then send SIGTERM
    and at last SIGKILL. Returns its exit status."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()
