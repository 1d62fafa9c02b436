"""Run the csipfs benchmark and write its report.

Started by tests/bench/run.sh, as root, with /usr/bin/python3:

    bench.py --csipfs BIN [--smoke] [--workloads LIST] [--contenders LIST]
             [--network LIST] [--reps N] [--output DIR] ...

For each network condition it starts the emulator with the benchmark
fixture, runs every workload for every contender in each repetition, and
writes benchmarks.json, benchmarks.md and one SVG per condition into the
output directory. Exits 1 when a run or a set-up step failed, 130 when
interrupted.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import contenders
import fixture
import measure
import network
import plot
import report
import services
import workloads

BENCH_DIR = Path(__file__).resolve().parent
ROOT_DIR = BENCH_DIR.parent.parent
NOTES = BENCH_DIR / "notes.md"
JSON_NAME = "benchmarks.json"
MARKDOWN_NAME = "benchmarks.md"
NETWORKS = ("loopback", "wan")
# Seconds a timed command of a full run may take: twice the slowest run
# seen on a 2-core machine, httpdirfs's first rsync over the 20 ms link
# (73 s). A contender that hangs then costs minutes, not an hour.
FULL_TIMEOUT = 150

# The smoke run has to finish within two minutes, so under wan it runs
# only the cat workload.
SMOKE_WAN_WORKLOADS = {"cat"}
# httpdirfs 1.2.5 in its cache mode crashes at random under fio (3 of its
# 10 loopback fio runs in a full run), so the smoke run, which is part of
# the test suite, does not run it there.
SMOKE_SKIPPED = {("fio", "httpdirfs")}


def _list(text, allowed, option):
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"{option} {text!r} is invalid: use a comma-separated list of "
            f"{', '.join(allowed)}")
    return values


def _parser():
    parser = argparse.ArgumentParser(
        prog="tests/bench/run.sh",
        description="Benchmark csipfs against curl, httpdirfs and rclone on "
                    "the CSIP emulator, and write the report. run.sh "
                    "supplies --csipfs, --work-dir, --run-dir and --netns.")
    parser.add_argument("--csipfs", required=True, metavar="BIN",
                        help="the csipfs binary to measure")
    parser.add_argument("--smoke", action="store_true",
                        help="small fixture, 1 repetition, short fio runs "
                             "without httpdirfs, and only cat under wan; "
                             "writes into a new temporary directory unless "
                             "--output is given")

    selection = parser.add_argument_group("what to run")
    selection.add_argument(
        "--workloads", default=",".join(workloads.WORKLOAD_NAMES),
        metavar="LIST",
        type=lambda t: _list(t, workloads.WORKLOAD_NAMES, "--workloads"),
        help="comma-separated workloads to run (default: all of "
             f"{','.join(workloads.WORKLOAD_NAMES)})")
    selection.add_argument(
        "--contenders", default=",".join(contenders.ALL), metavar="LIST",
        type=lambda t: _list(t, contenders.ALL, "--contenders"),
        help="comma-separated contenders to run (default: all of "
             f"{','.join(contenders.ALL)})")
    selection.add_argument(
        "--network", default=",".join(NETWORKS), metavar="LIST",
        type=lambda t: _list(t, NETWORKS, "--network"),
        help="comma-separated network conditions (default: loopback,wan)")
    selection.add_argument("--reps", type=int, metavar="N",
                           help="repetitions per condition (default 5, or 1 "
                                "with --smoke)")

    runs = parser.add_argument_group("how each run goes")
    runs.add_argument("--fio-seconds", type=int, metavar="SECONDS",
                      help="length of each fio run (default 10, or 2 with "
                           "--smoke)")
    runs.add_argument("--timeout", type=int, metavar="SECONDS",
                      help="time limit of each timed command; a contender "
                           "that runs over it is not run again in that "
                           "workload (default 150, or 120 with --smoke)")
    runs.add_argument("--verify", choices=("csipfs", "all"),
                      help="after each run, read the files again and check "
                           "their SHA-256: for csipfs's first repetition "
                           "only, or for every run (default csipfs, or all "
                           "with --smoke)")
    runs.add_argument("--link-delay-ms", type=float,
                      default=network.DEFAULT_DELAY_MS, metavar="MS",
                      help="one-way delay of the wan condition's link "
                           f"(default {network.DEFAULT_DELAY_MS:g})")
    runs.add_argument("--link-rate-mbit", type=float,
                      default=network.DEFAULT_RATE_MBIT, metavar="MBIT",
                      help="rate of the wan condition's link in each "
                           "direction, in Mbit/s; 0 for no limit (default "
                           f"{network.DEFAULT_RATE_MBIT:g})")

    places = parser.add_argument_group("where results and files go")
    places.add_argument("--output", metavar="DIR",
                        help="directory for the report (default docs/, or a "
                             "new temporary directory with --smoke)")
    places.add_argument("--merge", action="store_true",
                        help=f"keep the records of the existing {JSON_NAME} "
                             "in the output directory whose network, "
                             "workload and contender this run does not "
                             "measure")
    places.add_argument("--work-dir", default="/var/tmp/csipfs-bench",
                        metavar="DIR",
                        help="directory for the cached fixture (default "
                             "/var/tmp/csipfs-bench)")
    places.add_argument("--run-dir", metavar="DIR",
                        help="scratch directory for mounts, caches and logs, "
                             "removed at the end (default WORK_DIR/run-PID)")
    places.add_argument("--keep-run-dir", action="store_true",
                        help="keep the scratch directory, with its logs")
    places.add_argument("--netns", default=f"csipbench-{os.getpid()}",
                        metavar="NAME",
                        help="name of the wan condition's network namespace "
                             "(default csipbench-PID)")
    return parser


def parse_args(argv):
    """Parse argv and fill in the defaults that depend on --smoke."""
    parser = _parser()
    args = parser.parse_args(argv)
    smoke = args.smoke
    if args.reps is None:
        args.reps = 1 if smoke else 5
    if args.fio_seconds is None:
        args.fio_seconds = 2 if smoke else 10
    if args.timeout is None:
        args.timeout = 120 if smoke else FULL_TIMEOUT
    if args.verify is None:
        args.verify = "all" if smoke else "csipfs"

    if args.reps < 1:
        parser.error(f"--reps {args.reps} is invalid: use 1 or more")
    if args.fio_seconds < 1:
        parser.error(f"--fio-seconds {args.fio_seconds} is invalid: use 1 "
                     f"or more")
    if args.timeout < 1:
        parser.error(f"--timeout {args.timeout} is invalid: use 1 or more")
    if args.link_delay_ms < 0:
        parser.error(f"--link-delay-ms {args.link_delay_ms:g} is invalid: "
                     f"use 0 or more")
    if args.link_rate_mbit < 0:
        parser.error(f"--link-rate-mbit {args.link_rate_mbit:g} is "
                     f"invalid: use 0 for no limit, or more")
    return args


# ------------------------------------------------------------- metadata

def _first_line(argv, containing=""):
    """Return the first line of argv's stdout, then stderr, that contains
    the text containing."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({argv[0]}: {error})"
    lines = (result.stdout + "\n" + result.stderr).splitlines()
    return next((line.strip() for line in lines
                 if line.strip() and containing in line), "unknown")


def _source_revision():
    """Return the commit of the working tree, with "+changes" when it has
    uncommitted changes, or "unknown" outside a git checkout."""
    commit = _first_line(["git", "-C", str(ROOT_DIR), "rev-parse", "--short",
                          "HEAD"])
    try:
        status = subprocess.run(
            ["git", "-C", str(ROOT_DIR), "status", "--porcelain",
             "--untracked-files=no"], capture_output=True, text=True,
            timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return commit
    return commit + ("+changes" if status.strip() else "")


def _machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as source:
        for line in source:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo") as source:
        for line in source:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": memory_kib / (1 << 20),
            "kernel": platform.release()}


def _versions(csipfs):
    curl = _first_line(["curl", "--version"])
    libcurl = next((word for word in curl.split()
                    if word.startswith("libcurl/")), "unknown")
    return {
        "csipfs": (f"{_first_line([csipfs, '--version'])} (source "
                   f"{_source_revision()})"),
        "curl": " ".join(curl.split()[:2]),
        "libcurl": libcurl,
        # httpdirfs 1.2.5 prints the fusermount3 version first.
        "httpdirfs": _first_line(["httpdirfs", "--version"], "HTTPDirFS"),
        "rclone": _first_line(["rclone", "version"]),
        "nginx": _first_line(["/usr/sbin/nginx", "-v"]),
        "fio": _first_line(["fio", "--version"]),
    }


def _metadata(args):
    command = shlex.join(["tests/bench/bench.py"] + sys.argv[1:])
    # run.sh passes its own arguments last, and their count.
    count = os.environ.get("CSIPFS_BENCH_ARGC", "")
    if count.isdigit():
        user_args = sys.argv[len(sys.argv) - int(count):]
        command = shlex.join(["tests/bench/run.sh"] + user_args)
        if os.environ.get("CSIPFS_BENCH_BIN"):
            command = ("CSIPFS_BIN=" +
                       shlex.quote(os.environ["CSIPFS_BENCH_BIN"]) + " " +
                       command)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "commands": [command],
        "mode": "smoke" if args.smoke else "full",
        "reps": args.reps,
        "fio_seconds": args.fio_seconds,
        "timeout": args.timeout,
        "machine": _machine(),
        "versions": _versions(args.csipfs),
        "json_name": JSON_NAME,
        "networks": [],
    }


# ------------------------------------------------------------ the run

class Interrupted(Exception):
    """SIGTERM or SIGINT arrived."""


def _on_signal(signum, frame):
    # A second signal must not interrupt the clean-up of the first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def _progress(text):
    print(text, flush=True)


def _describe_record(record):
    if not record["ok"]:
        first = (record["error"] or "").splitlines()[:1]
        return "FAILED: " + (first[0] if first else "")
    parts = [f"{record['seconds']:.3f} s"]
    if record["throughput"]:
        parts.append(f"{record['throughput'] / report.MIB:.1f} MiB/s")
    if record["extra"].get("iops") is not None:
        parts.append(f"{record['extra']['iops']:.0f} IOPS")
    if record["daemon_peak_rss_kib"]:
        parts.append(f"RSS {record['daemon_peak_rss_kib'] / 1024:.1f} MiB")
    return ", ".join(parts)


def _in_smoke(network_name, workload, contender):
    if (workload, contender) in SMOKE_SKIPPED:
        return False
    return network_name != "wan" or workload in SMOKE_WAN_WORKLOADS


def _selected(args, network_name, workload, names):
    """Return the contenders of names that run workload under
    network_name, after the filters and the smoke plan."""
    if workload not in args.workloads:
        return []
    return [c for c in names if c in args.contenders
            and (not args.smoke or _in_smoke(network_name, workload, c))]


def _run_unit(runner, workload, function, contender, rep):
    """Run one workload for one contender; a failure becomes a failed
    record and the run goes on."""
    before = len(runner.records)
    try:
        function(runner, contender, rep)
    except workloads.WorkloadError:
        pass
    except (OSError, subprocess.SubprocessError, contenders.MountError,
            services.ServiceError, measure.CommandError, ValueError,
            KeyError) as error:
        record = runner.new_record(workload, "-", contender, rep)
        record["ok"] = False
        record["error"] = f"{type(error).__name__}: {error}"
        runner.records.append(record)
    for record in runner.records[before:]:
        _progress(f"  {workload} {record['case']} {record['contender']}: "
                  f"{_describe_record(record)}")


def run_network(args, condition, manifest_path, manifest, run_dir, meta,
                failures):
    """Set up one network condition, run the workloads and tear it down.
    Returns the records."""
    name = condition.name
    runner = None
    emulator = None
    try:
        try:
            condition.setup()
        finally:
            meta["networks"].append(condition.describe())
        _progress(f"== {name}: round-trip time "
                  f"{condition.rtt_ms[1]:.3f} ms")
        emulator = services.EmulatorProcess(
            run_dir / f"emulator-{name}", manifest_path,
            condition.command_prefix(), condition.address).start()
        settings = {"csipfs": args.csipfs, "timeout": args.timeout,
                    "fio_seconds": args.fio_seconds, "verify": args.verify,
                    "smoke": args.smoke, "contenders": args.contenders}
        runner = workloads.Runner(condition, emulator, manifest,
                                  run_dir / name, settings)
        for rep in range(args.reps):
            _progress(f"-- {name}: repetition {rep + 1} of {args.reps}")
            for workload, names, function, _ in workloads.WORKLOADS:
                chosen = _selected(args, name, workload, names)
                if not chosen:
                    continue
                shift = rep % len(chosen)
                for contender in chosen[shift:] + chosen[:shift]:
                    if (workload, contender) in runner.over_time_limit:
                        _progress(f"  {workload} {contender}: skipped, an "
                                  f"earlier repetition ran over the time "
                                  f"limit")
                        continue
                    _run_unit(runner, workload, function, contender, rep)
    except (network.NetworkError, services.ServiceError, OSError) as error:
        failures.append({"network": name, "stage": "set-up",
                         "error": str(error)})
        _progress(f"== {name}: FAILED: {error}")
    finally:
        if emulator is not None:
            emulator.stop()
        try:
            condition.teardown()
        except network.NetworkError as error:
            failures.append({"network": name, "stage": "tear-down",
                             "error": str(error)})
        # The description gains the delay line's counters at tear-down.
        if meta["networks"] and meta["networks"][-1]["name"] == name:
            meta["networks"][-1] = condition.describe()
    return runner.records if runner is not None else []


def _merge(output_dir, meta, records):
    """Return records with the records of output_dir's JSON added that
    they do not replace, by network, workload and contender, and update
    meta with the earlier networks and commands."""
    path = output_dir / JSON_NAME
    try:
        with open(path, encoding="utf-8") as source:
            old = json.load(source)
    except FileNotFoundError:
        return records
    measured = {(r["network"], r["workload"], r["contender"])
                for r in records}
    previous = [r for r in old["records"]
                if (r["network"], r["workload"], r["contender"])
                not in measured]
    names = {n["name"] for n in meta["networks"]}
    meta["networks"] = sorted(
        [n for n in old["meta"]["networks"] if n["name"] not in names]
        + meta["networks"], key=lambda n: NETWORKS.index(n["name"]))
    if previous:
        meta["commands"] = old["meta"]["commands"] + meta["commands"]
    return previous + records


def write_outputs(output_dir, meta, records, failures, manifest):
    output_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    for description in meta["networks"]:
        name = description["name"]
        text = plot.svg(records, name,
                        f"csipfs benchmark, {name}: medians, repetitions: "
                        f"{meta['reps']}")
        if text is not None:
            plots[name] = f"bench-{name}.svg"
            (output_dir / plots[name]).write_text(text)
    notes = NOTES.read_text(encoding="utf-8")
    (output_dir / MARKDOWN_NAME).write_text(
        report.markdown(meta, records, failures, notes, manifest, plots),
        encoding="utf-8")
    data = {"meta": meta, "failures": failures, "records": records}
    (output_dir / JSON_NAME).write_text(json.dumps(data, indent=1) + "\n")


def _output_dir(args):
    if args.output:
        return Path(args.output).resolve()
    if args.smoke:
        return Path(tempfile.mkdtemp(prefix="csipfs-bench-smoke-"))
    return ROOT_DIR / "docs"


def _run_all(args, run_dir, records, failures):
    """Build the fixture and run every network condition. Returns (meta,
    manifest)."""
    work_dir = Path(args.work_dir)
    size = fixture.SMOKE if args.smoke else fixture.FULL
    _progress(f"building or reusing the {size.name} fixture in {work_dir}")
    manifest_path = fixture.build(work_dir / f"fixture-{size.name}", size)
    with open(manifest_path, encoding="utf-8") as source:
        manifest = json.load(source)
    meta = _metadata(args)

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for name in args.network:
        if name == "loopback":
            condition = network.Loopback()
        else:
            condition = network.Wan(args.netns, args.link_delay_ms,
                                    args.link_rate_mbit)
        records += run_network(args, condition, manifest_path, manifest,
                               run_dir, meta, failures)
    return meta, manifest


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("error: bench.py needs root for FUSE mounts, network "
              "namespaces and drop_caches: run tests/bench/run.sh",
              file=sys.stderr)
        return 1
    args.csipfs = str(Path(args.csipfs).resolve())
    if not os.access(args.csipfs, os.X_OK):
        print(f"error: --csipfs {args.csipfs} is not an executable file",
              file=sys.stderr)
        return 1

    if not any(_selected(args, name, workload, names)
               for name in args.network
               for workload, names, _, _ in workloads.WORKLOADS):
        print("error: --workloads, --contenders and --network select no "
              "run (the smoke mode skips httpdirfs in fio, and runs only "
              "cat under wan)", file=sys.stderr)
        return 1
    output_dir = _output_dir(args)
    run_dir = Path(args.run_dir or Path(args.work_dir) /
                   f"run-{os.getpid()}")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = time.monotonic()
    records = []
    failures = []
    try:
        meta, manifest = _run_all(args, run_dir, records, failures)
    except Interrupted as signal_name:
        print(f"interrupted by {signal_name}; no report written",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not args.keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)

    if args.merge:
        records = _merge(output_dir, meta, records)
    write_outputs(output_dir, meta, records, failures, manifest)
    failed = [r for r in records if not r["ok"]]
    elapsed = time.monotonic() - started
    _progress(f"wrote {output_dir / MARKDOWN_NAME} in {elapsed:.0f} s: "
              f"{len(records)} runs, {len(failed)} failed, "
              f"{len(failures)} set-up failures")
    return 1 if failed or failures else 0


if __name__ == "__main__":
    sys.exit(main())
