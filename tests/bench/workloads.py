"""The workloads, and the Runner that measures them under one network
condition.

Timed runs are cold, except in the warm cases (page-cache, disk-cache,
second, warm). Before a cold run the page cache is dropped and the object
files that the run reads are read back into it on the server side. Then a
fresh mount with an empty cache directory comes up and its root is
stat'ed, and only then does the clock start.

Each run becomes one record (a dict) with the wall time, the throughput,
the daemon's peak RSS and CPU seconds, the API calls per action and the
object store's requests and bytes.
"""

import contextlib
import datetime
import glob
import hashlib
import json
import os
import shutil
from pathlib import Path

import contenders
import measure
import services


class WorkloadError(Exception):
    """A run failed: a command failed, or its output or byte count is
    wrong. The record of the run is already marked failed."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as source:
        while True:
            chunk = source.read(measure.READ_BUFFER)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


class Runner:
    """Runs workloads under one network condition against one emulator.

    settings contains the run's options: csipfs (the binary), timeout (per
    command, seconds), fio_seconds, verify ("csipfs" or "all"), smoke and
    contenders (the names selected for the run).
    """

    def __init__(self, network, emulator, manifest, run_dir, settings):
        self.network = network
        self.state = emulator.state
        self.control = services.Control(emulator.state)
        self.manifest = manifest
        self.run_dir = Path(run_dir)
        self.settings = settings
        self.records = []
        # (workload, contender) pairs that ran over the time limit. They
        # are not run again, because every repetition would take as long.
        self.over_time_limit = set()
        self.objects_dir = Path(emulator.state["objects_dir"])
        self.local = contenders.PlainLayout(self.objects_dir, manifest)
        self.factory = contenders.MountFactory(settings["csipfs"],
                                               emulator.state, manifest,
                                               self.run_dir)
        self.env = services.environment()
        by_id = {r["task_log_id"]: r for r in manifest["reports"]}
        self.groups = {name: [by_id[i] for i in ids]
                       for name, ids in manifest["bench"]["groups"].items()}

    # -------------------------------------------------------- helpers

    def verify(self, contender, rep):
        """Return whether the run of contender in repetition rep reads the
        files again afterwards to check their SHA-256.

        With verify "csipfs" only csipfs's first repetition does, because
        csipfs serves the second read from its cache, while httpdirfs and
        rclone would download everything again.
        """
        if self.settings["verify"] == "all":
            return True
        return contender == "csipfs" and rep == 0

    def object_paths(self, reports):
        return [self.local.report_path(r) for r in reports]

    def prepare_cold(self, reports):
        """Drop the page cache, then read the objects of reports back in,
        so that the server sends them from memory."""
        measure.drop_caches()
        measure.read_files(self.object_paths(reports))

    @contextlib.contextmanager
    def cold_mount(self, name, reports, cache_dir=None, keep_cache=False):
        """Prepare a cold run on reports and yield a fresh, started Mount
        of contender name. The cache directory is removed afterwards
        unless keep_cache is true."""
        if cache_dir is None:
            cache_dir = self.factory.new_cache_dir(name)
        self.prepare_cold(reports)
        try:
            with self.factory.mount(name, cache_dir) as mount:
                yield mount
        finally:
            if not keep_cache:
                shutil.rmtree(cache_dir, ignore_errors=True)

    def new_record(self, workload, case, contender, rep):
        return {
            "network": self.network.name, "workload": workload,
            "case": case, "contender": contender, "rep": rep,
            "started": datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec="seconds"),
            "ok": True, "error": None,
            "seconds": None, "bytes": None, "throughput": None,
            "daemon_peak_rss_kib": None, "daemon_cpu_seconds": None,
            "client_cpu_seconds": None, "client_peak_rss_kib": None,
            "api_calls": {}, "store_requests": None, "store_bytes": None,
            "extra": {}, "over_time_limit": False,
        }

    def fail(self, record, message):
        """Mark record failed with message, keep it, and raise."""
        record["ok"] = False
        record["error"] = message
        if record not in self.records:
            self.records.append(record)
        raise WorkloadError(message)

    def measure(self, workload, case, contender, rep, commands, nbytes,
                mount=None):
        """Run commands at once as one timed run and return its record.

        nbytes is the number of bytes the run reads, for the throughput,
        or None. The record is kept, and marked failed with WorkloadError
        raised when a command fails.
        """
        record = self.new_record(workload, case, contender, rep)
        self.control.reset()
        cpu_before = None
        if mount is not None:
            try:
                measure.reset_peak_rss(mount.pid)
                cpu_before = measure.cpu_seconds(mount.pid)
            except (OSError, measure.CommandError) as error:
                self.fail(record, f"{mount.name} exited before the run "
                                  f"({error}); log:\n{mount.log_tail()}")
        stderr_path = self.run_dir / "logs" / "commands.log"
        stderr_path.parent.mkdir(parents=True, exist_ok=True)
        with open(stderr_path, "a") as log:
            log.write(f"--- {self.network.name} {workload} {case} "
                      f"{contender} rep {rep}\n")
        try:
            timing = measure.run_timed(commands, self.settings["timeout"],
                                       env=self.env, stderr_path=stderr_path)
        except measure.TimeLimitError as error:
            record["over_time_limit"] = True
            record["seconds"] = self.settings["timeout"]
            self.over_time_limit.add((workload, contender))
            self.fail(record, str(error))
        except measure.CommandError as error:
            self.fail(record, str(error))
        if mount is not None:
            try:
                record["daemon_peak_rss_kib"] = measure.peak_rss_kib(
                    mount.pid)
                record["daemon_cpu_seconds"] = round(
                    measure.cpu_seconds(mount.pid) - cpu_before, 3)
            except (OSError, measure.CommandError) as error:
                self.fail(record, f"{mount.name} exited during the run "
                                  f"({error}); log:\n{mount.log_tail()}")
        record["seconds"] = timing.seconds
        record["client_cpu_seconds"] = round(timing.cpu_seconds, 3)
        record["client_peak_rss_kib"] = timing.peak_rss_kib
        if nbytes is not None:
            record["bytes"] = nbytes
            record["throughput"] = nbytes / timing.seconds
        record["api_calls"] = self.control.counts()
        requests, sent = self.control.store_totals()
        record["store_requests"] = requests
        record["store_bytes"] = sent
        self.records.append(record)
        failed = [(c.argv[0], s) for c, s in zip(commands, timing.statuses)
                  if s != 0]
        if failed:
            name, status = failed[0]
            detail = ""
            if mount is not None:
                detail = f"; {mount.name} log:\n{mount.log_tail()}"
            self.fail(record, f"{name} exited with status {status} "
                              f"({len(failed)} of {len(commands)} commands "
                              f"failed; stderr in {stderr_path}){detail}")
        return record

    def check_store_bytes(self, record, minimum):
        """Fail record unless the object store sent at least minimum bytes,
        as a cold read of that much data needs."""
        if record["store_bytes"] < minimum:
            self.fail(record, f"the object store sent "
                              f"{record['store_bytes']} bytes, fewer than "
                              f"the {minimum} that were read")

    def check_digests(self, record, paths, reports):
        """Fail record unless each file has the SHA-256 of its report."""
        for path, report in zip(paths, reports):
            try:
                actual = _sha256(path)
            except OSError as error:
                self.fail(record, f"reading {path} again failed: {error}")
            if actual != report["sha256"]:
                self.fail(record, f"{path} has SHA-256 {actual}, expected "
                                  f"{report['sha256']}")

    def check_tree(self, record, root, layout, reports, digests):
        """Fail record unless root contains exactly the files of reports at
        their relative paths, with their sizes and, when digests is true,
        their SHA-256."""
        expected = {layout.relative_path(r): r for r in reports}
        found = set()
        for directory, _, files in os.walk(root):
            for name in files:
                path = Path(directory) / name
                found.add(str(path.relative_to(root)))
        if found != set(expected):
            missing = sorted(set(expected) - found)[:3]
            unexpected = sorted(found - set(expected))[:3]
            self.fail(record, f"{root} has {len(found)} files, expected "
                              f"{len(expected)}; missing {missing}, "
                              f"unexpected {unexpected}")
        for relative, report in expected.items():
            size = (root / relative).stat().st_size
            if size != report["size"]:
                self.fail(record, f"{root / relative} has {size} bytes, "
                                  f"expected {report['size']}")
        if digests:
            paths = [root / layout.relative_path(r) for r in reports]
            self.check_digests(record, paths, reports)

    def output_path(self, name):
        path = self.run_dir / "output" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


# ------------------------------------------------------------ workloads

def run_cat(runner, contender, rep):
    """Time cat of the large report, cold. curl of its signed URL is the
    reference."""
    report = runner.groups["big"][0]
    size = report["size"]
    if contender == "curl":
        url = runner.control.download_url(report)
        runner.prepare_cold([report])
        output = runner.output_path("curl.out")
        command = measure.Command(
            ["curl", "-sS", "-f", "-o", "/dev/null", "--cacert",
             runner.state["ca_file"], "-w", "%{size_download}", url],
            stdout_path=output)
        record = runner.measure("cat", "cold", "curl", rep, [command], size)
        received = output.read_text().strip()
        if received != str(size):
            runner.fail(record, f"curl received {received} bytes, expected "
                                f"{size}")
        return
    with runner.cold_mount(contender, [report]) as mount:
        path = mount.layout.report_path(report)
        record = runner.measure("cat", "cold", contender, rep,
                                [measure.Command(["cat", str(path)])], size,
                                mount=mount)
        runner.check_store_bytes(record, size)
        if runner.verify(contender, rep):
            runner.check_digests(record, [path], [report])


def _csipfs_data_file(record, runner, cache_dir, size):
    """Return the path of the cache's data file of the report of size
    bytes: the file named data, in a directory below cache_dir, of that
    size."""
    candidates = []
    for path in glob.glob(str(Path(cache_dir) / "**" / "data"),
                          recursive=True):
        if os.stat(path).st_size == size:
            candidates.append(path)
    if len(candidates) != 1:
        runner.fail(record, f"{cache_dir} has {len(candidates)} data files "
                            f"of {size} bytes, expected 1")
    return candidates[0]


def run_reread(runner, contender, rep):
    """Time warm re-reads of the large report through csipfs, from the page
    cache and from csipfs's disk cache, with the local files as
    references. Odd repetitions run the local reference first."""
    report = runner.groups["big"][0]
    size = report["size"]
    local = "local" in runner.settings["contenders"]
    object_path = str(runner.local.report_path(report))
    with runner.cold_mount("csipfs", [report]) as mount:
        path = str(mount.layout.report_path(report))
        first = runner.measure("reread", "first", "csipfs", rep,
                               [measure.Command(["cat", path])], size,
                               mount=mount)
        # The first read only fills the cache and is not a result.
        runner.records.remove(first)

        def csipfs_page_cache():
            runner.measure("reread", "page-cache", "csipfs", rep,
                           [measure.Command(["cat", path])], size,
                           mount=mount)

        def local_page_cache():
            measure.read_files([object_path])
            runner.measure("reread", "page-cache", "local", rep,
                           [measure.Command(["cat", object_path])], size)

        def csipfs_disk_cache():
            measure.drop_caches()
            record = runner.measure("reread", "disk-cache", "csipfs", rep,
                                    [measure.Command(["cat", path])], size,
                                    mount=mount)
            if runner.verify(contender, rep):
                runner.check_digests(record, [path], [report])

        def local_disk_cache():
            record = runner.new_record("reread", "disk-cache", "local", rep)
            data_file = _csipfs_data_file(record, runner, mount.cache_dir,
                                          size)
            measure.drop_caches()
            runner.measure("reread", "disk-cache", "local", rep,
                           [measure.Command(["cat", data_file])], size)

        steps = [[csipfs_page_cache], [csipfs_disk_cache]]
        if local:
            steps[0].append(local_page_cache)
            steps[1].append(local_disk_cache)
        if rep % 2:
            for pair in steps:
                pair.reverse()
        for pair in steps:
            for step in pair:
                step()


def run_grep(runner, contender, rep):
    """Time grep -r of the needle over the grep account's tree, cold, and
    check that the count of matching files equals the fixture's."""
    reports = runner.groups["grep"]
    expected = runner.manifest["bench"]["needle_reports"]
    needle = runner.manifest["bench"]["needle"]
    with runner.cold_mount(contender, reports) as mount:
        tree = mount.layout.tree("grep")
        output = runner.output_path(f"grep-{contender}.out")
        record = runner.measure(
            "grep", "cold", contender, rep,
            [measure.Command(["grep", "-r", needle, str(tree)],
                             stdout_path=output)],
            sum(r["size"] for r in reports), mount=mount)
        runner.check_store_bytes(record, record["bytes"])
        lines = output.read_bytes().splitlines()
        files = {line.split(b":", 1)[0] for line in lines}
        record["extra"]["matching_files"] = len(files)
        if len(files) != expected or len(lines) != expected:
            runner.fail(record, f"grep found {len(lines)} lines in "
                                f"{len(files)} files, expected {expected} "
                                f"in {expected}")


def _rsync_pair(runner, contender, rep, source, layout, mount):
    reports = runner.groups["grep"]
    destination = runner.run_dir / f"rsync-{contender}"
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    command = measure.Command(["rsync", "-a", f"{source}/",
                               f"{destination}/"])
    try:
        record = runner.measure("rsync", "first", contender, rep, [command],
                                sum(r["size"] for r in reports), mount=mount)
        if mount is not None:
            runner.check_store_bytes(record, record["bytes"])
        runner.check_tree(record, destination, layout, reports,
                          runner.verify(contender, rep))
        record = runner.measure("rsync", "second", contender, rep,
                                [command], None, mount=mount)
        runner.check_tree(record, destination, layout, reports, False)
    finally:
        shutil.rmtree(destination, ignore_errors=True)


def run_rsync(runner, contender, rep):
    """Time rsync -a of the grep account's tree into an empty directory,
    cold, then the same rsync again. Local to local is the reference."""
    reports = runner.groups["grep"]
    if contender == "local":
        runner.prepare_cold(reports)
        _rsync_pair(runner, contender, rep, runner.local.tree("grep"),
                    runner.local, None)
        return
    with runner.cold_mount(contender, reports) as mount:
        _rsync_pair(runner, contender, rep, mount.layout.tree("grep"),
                    mount.layout, mount)


def _ls(runner, case, contender, rep, tree, mount):
    reports = runner.groups["list"]
    output = runner.output_path(f"ls-{contender}.out")
    record = runner.measure(
        "ls", case, contender, rep,
        [measure.Command(["ls", "-lR", str(tree)], stdout_path=output)],
        None, mount=mount)
    files = sum(1 for line in output.read_bytes().splitlines()
                if line.startswith(b"-"))
    record["extra"]["files"] = files
    if files != len(reports):
        runner.fail(record, f"ls -lR listed {files} files, expected "
                            f"{len(reports)}")


def run_ls(runner, contender, rep):
    """Time ls -lR of the list account's tree cold, then after an unmount
    and a remount with the same cache directory.

    The reference is ls -lR of the local objects directory, once after the
    page cache is dropped and once warm.
    """
    reports = runner.groups["list"]
    if contender == "local":
        measure.drop_caches()
        tree = runner.local.tree("list")
        _ls(runner, "cold", contender, rep, tree, None)
        _ls(runner, "warm", contender, rep, tree, None)
        return
    cache_dir = runner.factory.new_cache_dir(contender)
    try:
        with runner.cold_mount(contender, reports, cache_dir=cache_dir,
                               keep_cache=True) as mount:
            _ls(runner, "cold", contender, rep, mount.layout.tree("list"),
                mount)
        with runner.factory.mount(contender, cache_dir) as mount:
            _ls(runner, "warm", contender, rep, mount.layout.tree("list"),
                mount)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def run_fio(runner, contender, rep):
    """Time fio random 4 KiB reads of the large report with 1 and with 4
    jobs, each cold on its own mount."""
    report = runner.groups["big"][0]
    for jobs in (1, 4):
        case = f"qd{jobs}"
        with runner.cold_mount(contender, [report]) as mount:
            path = str(mount.layout.report_path(report))
            if ":" in path:
                raise WorkloadError(f"fio cannot open {path}: fio splits "
                                    f"file names at ':'")
            output = runner.output_path(f"fio-{contender}-{case}.json")
            command = measure.Command([
                "fio", "--name=randread", f"--filename={path}", "--readonly",
                "--rw=randread", "--bs=4k", "--ioengine=psync",
                f"--numjobs={jobs}", "--group_reporting", "--time_based",
                f"--runtime={runner.settings['fio_seconds']}",
                "--output-format=json", f"--output={output}"])
            record = runner.measure("fio", case, contender, rep, [command],
                                    None, mount=mount)
            try:
                result = json.loads(output.read_text())["jobs"][0]
            except (OSError, ValueError, KeyError, IndexError) as error:
                runner.fail(record, f"fio wrote no readable result to "
                                    f"{output}: {error}")
            read = result["read"]
            record["bytes"] = read["io_bytes"]
            record["throughput"] = read["bw_bytes"]
            record["extra"].update({"iops": read["iops"],
                                    "reads": read["total_ios"],
                                    "jobs": jobs})
            if result.get("error"):
                runner.fail(record, f"fio reported error {result['error']}")
            if read["total_ios"] <= 0:
                runner.fail(record, "fio completed no reads")


def run_memory(runner, contender, rep):
    """Time 8 parallel cat of the parallel reports, cold, and record the
    daemon's peak RSS."""
    reports = runner.groups["parallel"]
    with runner.cold_mount(contender, reports) as mount:
        paths = [str(mount.layout.report_path(r)) for r in reports]
        record = runner.measure(
            "memory", "cold", contender, rep,
            [measure.Command(["cat", p]) for p in paths],
            sum(r["size"] for r in reports), mount=mount)
        runner.check_store_bytes(record, record["bytes"])
        if runner.verify(contender, rep):
            runner.check_digests(record, paths, reports)


# Workloads in run order: (name, contenders, function, description).
WORKLOADS = [
    ("cat", ["csipfs", "curl", "httpdirfs", "rclone"], run_cat,
     "cat of the large report to /dev/null, cold"),
    ("reread", ["csipfs"], run_reread,
     "cat of the large report again: from the page cache, and after "
     "dropping it, from csipfs's disk cache"),
    ("grep", list(contenders.FILESYSTEMS), run_grep,
     "grep -r of a word over the grep account's tree, cold"),
    ("rsync", list(contenders.FILESYSTEMS) + ["local"], run_rsync,
     "rsync -a of the grep account's tree into an empty directory, cold, "
     "then again"),
    ("ls", list(contenders.FILESYSTEMS) + ["local"], run_ls,
     "ls -lR of the list account's tree, cold, then after a remount"),
    ("fio", list(contenders.FILESYSTEMS), run_fio,
     "fio random 4 KiB reads of the large report, 1 and 4 jobs, cold"),
    ("memory", list(contenders.FILESYSTEMS), run_memory,
     "8 parallel cat of the parallel reports, cold"),
]

WORKLOAD_NAMES = [w[0] for w in WORKLOADS]
