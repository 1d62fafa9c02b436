"""The benchmark report: summaries, targets and the markdown page.

Every number in a table is a median, minimum or maximum over the
repetitions that succeeded. A target compares two contenders through the
ratio within each repetition of the same run, and takes the median of
those ratios.
"""

import math
import statistics

import workloads

MIB = 1 << 20

# Cases of each workload in table order.
CASES = {
    "cat": ["cold"],
    "reread": ["page-cache", "disk-cache"],
    "grep": ["cold"],
    "rsync": ["first", "second"],
    "ls": ["cold", "warm"],
    "fio": ["qd1", "qd4"],
    "memory": ["cold"],
}
CONTENDER_ORDER = ["csipfs", "curl", "httpdirfs", "rclone", "local"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _select(records, network, workload, case, contender):
    return [r for r in records
            if r["ok"] and r["network"] == network
            and r["workload"] == workload and r["case"] == case
            and r["contender"] == contender]


def _by_rep(records, network, workload, case, contender, value):
    """Return {rep: value(record)} of the successful runs."""
    return {r["rep"]: value(r)
            for r in _select(records, network, workload, case, contender)}


def _throughput(record):
    return record["throughput"]


def _seconds(record):
    return record["seconds"]


def _calls(action):
    return lambda record: record["api_calls"].get(action, 0)


def _ratio_median(numerators, denominators):
    """Median over the repetitions present in both of numerator divided by
    denominator, or None."""
    ratios = [numerators[rep] / denominators[rep] for rep in numerators
              if rep in denominators and denominators[rep]
              and numerators[rep] is not None]
    return median(ratios), len(ratios)


def _best_of(records, network, workload, case, names, value, pick):
    """Return {rep: pick(value of each contender in names)} for the
    repetitions where every contender in names succeeded."""
    series = [_by_rep(records, network, workload, case, n, value)
              for n in names]
    reps = set.intersection(*(set(s) for s in series)) if series else set()
    return {rep: pick(s[rep] for s in series) for rep in reps}


# --------------------------------------------------------------- targets

# The re-read targets: number, case, text and the least csipfs / local
# ratio.
REREAD_TARGETS = [
    ("2a", "page-cache",
     "re-read from the page cache, csipfs / local cat >= 0.95", 0.95),
    ("2b", "disk-cache",
     "re-read from csipfs's disk cache, csipfs / local cat of the cache "
     "file >= 0.8", 0.8),
]


class Target:
    """One target row: its text, the measured value and whether it is met
    (None when there is no data)."""

    def __init__(self, number, network, text, measured, met, runs):
        self.number = number
        self.network = network
        self.text = text
        self.measured = measured
        self.met = met
        self.runs = runs


def _ratio_target(rows, number, network, text, ratio, minimum=None,
                  maximum=None):
    value, runs = ratio
    if value is None:
        rows.append(Target(number, network, text, "no data", None, 0))
        return
    met = ((minimum is None or value >= minimum)
           and (maximum is None or value <= maximum))
    rows.append(Target(number, network, text, f"{value:.2f}", met, runs))


def _count_target(rows, number, network, text, values, bound):
    """A target on a count: the median over the repetitions of values
    ({rep: count}) must be at most bound ({rep: bound} or a number)."""
    if not values:
        rows.append(Target(number, network, text, "no data", None, 0))
        return
    if isinstance(bound, dict):
        pairs = [(values[rep], bound[rep]) for rep in values if rep in bound]
        value = median(v for v, _ in pairs)
        # The bound differs between repetitions, so the median of the
        # per-repetition margins decides.
        met = median(b - v for v, b in pairs) >= 0
        measured = f"{value:g} (bound {median(b for _, b in pairs):g})"
    else:
        value = median(values.values())
        met = value <= bound
        measured = f"{value:g}"
    rows.append(Target(number, network, text, measured, met, len(values)))


def targets(records, manifest, networks):
    """Return the Target rows for the networks that have records."""
    size = manifest["bench"]["size"]
    grep_count = size["grep_reports"]
    list_count = size["list_reports"]
    url = "DescribeTaskLogURL"
    listing = "DescribeTaskLogList"
    rows = []
    for network in networks:
        def tp(workload, case, contender):
            return _by_rep(records, network, workload, case, contender,
                           _throughput)

        def secs(workload, case, contender):
            return _by_rep(records, network, workload, case, contender,
                           _seconds)

        def calls(workload, case, action, contender="csipfs"):
            return _by_rep(records, network, workload, case, contender,
                           _calls(action))

        csipfs_cat = tp("cat", "cold", "csipfs")
        if network == "loopback":
            _ratio_target(rows, "1", network,
                          "cat throughput, csipfs / curl >= 0.9",
                          _ratio_median(csipfs_cat,
                                        tp("cat", "cold", "curl")), 0.9)
        if network == "wan":
            _ratio_target(rows, "1", network,
                          "cat throughput, csipfs / curl >= 1.0",
                          _ratio_median(csipfs_cat,
                                        tp("cat", "cold", "curl")), 1.0)
            best = _best_of(records, network, "cat", "cold",
                            ["httpdirfs", "rclone"], _throughput, max)
            _ratio_target(rows, "1", network,
                          "cat throughput, csipfs / better of httpdirfs "
                          "and rclone >= 2", _ratio_median(csipfs_cat, best),
                          2.0)
        for number, case, text, minimum in REREAD_TARGETS:
            _ratio_target(rows, number, network, text,
                          _ratio_median(tp("reread", case, "csipfs"),
                                        tp("reread", case, "local")),
                          minimum)
        if network == "wan":
            best = _best_of(records, network, "grep", "cold",
                            ["httpdirfs", "rclone"], _seconds, min)
            _ratio_target(rows, "3", network,
                          "grep time, better of httpdirfs and rclone / "
                          "csipfs >= 3",
                          _ratio_median(best, secs("grep", "cold",
                                                   "csipfs")), 3.0)
            pages = calls("grep", "cold", listing)
            bound = {rep: math.ceil(grep_count / 50) + count
                     for rep, count in pages.items()}
            _count_target(rows, "3", network,
                          f"grep DescribeTaskLogURL calls <= "
                          f"ceil({grep_count}/50) + DescribeTaskLogList "
                          f"calls of the run",
                          calls("grep", "cold", url), bound)
        _count_target(rows, "4", network,
                      "second rsync: DescribeTaskLogURL calls = 0",
                      calls("rsync", "second", url), 0)
        _count_target(rows, "4", network,
                      "second rsync: object bytes = 0",
                      _by_rep(records, network, "rsync", "second", "csipfs",
                              lambda r: r["store_bytes"]), 0)
        _ratio_target(rows, "4", network,
                      "second rsync time, csipfs / local <= 1.2",
                      _ratio_median(secs("rsync", "second", "csipfs"),
                                    secs("rsync", "second", "local")),
                      maximum=1.2)
        _count_target(rows, "5", network,
                      f"cold ls -lR: DescribeTaskLogURL calls <= "
                      f"ceil({list_count}/50)",
                      calls("ls", "cold", url), math.ceil(list_count / 50))
        _count_target(rows, "5", network,
                      "warm ls -lR: DescribeTaskLogURL calls = 0",
                      calls("ls", "warm", url), 0)
        _ratio_target(rows, "5", network,
                      "warm ls -lR time, csipfs / local <= 2",
                      _ratio_median(secs("ls", "warm", "csipfs"),
                                    secs("ls", "warm", "local")),
                      maximum=2.0)
        for case in ("qd1", "qd4"):
            requests = _by_rep(records, network, "fio", case, "csipfs",
                               lambda r: r["store_requests"])
            reads = _by_rep(records, network, "fio", case, "csipfs",
                            lambda r: r["extra"].get("reads"))
            _ratio_target(rows, "6", network,
                          f"fio {case}: object requests / reads <= 1",
                          _ratio_median(requests, reads), maximum=1.0)
        _ratio_target(rows, "6", network, "fio IOPS, qd4 / qd1 >= 2.5",
                      _ratio_median(
                          _by_rep(records, network, "fio", "qd4", "csipfs",
                                  lambda r: r["extra"].get("iops")),
                          _by_rep(records, network, "fio", "qd1", "csipfs",
                                  lambda r: r["extra"].get("iops"))), 2.5)
        rss = _by_rep(records, network, "memory", "cold", "csipfs",
                      lambda r: r["daemon_peak_rss_kib"] / 1024)
        _count_target(rows, "7", network,
                      "csipfs peak RSS with 8 parallel readers <= 64 MiB",
                      {rep: round(v, 1) for rep, v in rss.items()}, 64)
    return rows


# --------------------------------------------------------------- tables

def _range(values, scale=1.0, digits=2):
    values = [v / scale for v in values if v is not None]
    if not values:
        return "–"
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return (f"{middle:.{digits}f} ({min(values):.{digits}f}–"
            f"{max(values):.{digits}f})")


def _median_text(values, scale=1.0, digits=1):
    value = median(values)
    if value is None:
        return "–"
    return f"{value / scale:.{digits}f}"


def _calls_text(runs):
    actions = sorted({a for r in runs for a in r["api_calls"]})
    parts = []
    for action in actions:
        value = median(r["api_calls"].get(action, 0) for r in runs)
        parts.append(f"{action.removeprefix('Describe')} {value:g}")
    return ", ".join(parts) or "0"


def _extra_text(runs):
    keys = [("iops", "IOPS", 0), ("reads", "reads", 0),
            ("matching_files", "matching files", 0), ("files", "files", 0)]
    parts = []
    for key, label, digits in keys:
        value = median(r["extra"].get(key) for r in runs)
        if value is not None:
            parts.append(f"{label} {value:.{digits}f}")
    return ", ".join(parts)


def workload_table(records, network, workload):
    """Return the markdown table of one workload under one network, or
    None when it has no records."""
    chosen = [r for r in records
              if r["network"] == network and r["workload"] == workload]
    if not chosen:
        return None
    lines = [
        "| case | contender | runs | time s: median (min–max) | "
        "MiB/s: median (min–max) | daemon peak RSS MiB | daemon CPU s | "
        "client CPU s | API calls | object requests | object MiB | other |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for case in CASES[workload]:
        for contender in CONTENDER_ORDER:
            all_runs = [r for r in chosen if r["case"] == case
                        and r["contender"] == contender]
            if not all_runs:
                continue
            runs = [r for r in all_runs if r["ok"]]
            over = [r for r in all_runs if r.get("over_time_limit")]
            failed = len(all_runs) - len(runs) - len(over)
            notes = []
            if failed:
                notes.append(f"{failed} failed")
            if over:
                notes.append(f"{len(over)} over the time limit")
            count = f"{len(runs)}" + (f" ({', '.join(notes)})"
                                      if notes else "")
            seconds = _range([r["seconds"] for r in runs], digits=3)
            if over and not runs:
                seconds = f"over {over[0]['seconds']:.0f}"
            lines.append("| " + " | ".join([
                case, contender, count, seconds,
                _range([r["throughput"] for r in runs], MIB, 1),
                _median_text([r["daemon_peak_rss_kib"] for r in runs], 1024),
                _median_text([r["daemon_cpu_seconds"] for r in runs],
                             digits=2),
                _median_text([r["client_cpu_seconds"] for r in runs],
                             digits=2),
                _calls_text(runs) if runs else "–",
                _median_text([r["store_requests"] for r in runs], digits=0),
                _median_text([r["store_bytes"] for r in runs], MIB),
                _extra_text(runs),
            ]) + " |")
    return "\n".join(lines)


def _targets_table(rows):
    lines = ["| target | network | criterion | measured median | runs | "
             "result |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        result = {True: "met", False: "missed", None: "no data"}[row.met]
        lines.append(f"| {row.number} | {row.network} | {row.text} | "
                     f"{row.measured} | {row.runs} | {result} |")
    return "\n".join(lines)


def _machine_lines(meta):
    machine = meta["machine"]
    versions = meta["versions"]
    lines = [
        f"- Date (UTC): {meta['date']}",
        *[f"- Command: `{command}`" for command in meta["commands"]],
        f"- Mode: {meta['mode']}, repetitions: {meta['reps']}, fio "
        f"{meta['fio_seconds']} s per run" +
        (f", time limit {meta['timeout']} s per timed command"
         if meta.get("timeout") else ""),
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']:.1f} GiB memory",
        f"- Kernel: {machine['kernel']}",
    ]
    for name in ("csipfs", "curl", "libcurl", "httpdirfs", "rclone",
                 "nginx", "fio"):
        lines.append(f"- {name}: {versions.get(name, 'unknown')}")
    return lines


def _network_lines(description):
    rtt = description.get("rtt_ms")
    rtt_text = (f"{rtt[1]:.3f} ms average ({rtt[0]:.3f}–{rtt[2]:.3f} ms) "
                f"over 5 pings" if rtt else "not measured")
    lines = [f"- Server address: {description['server_address']}",
             f"- Round-trip time: {rtt_text}"]
    if description["name"] == "wan":
        lines.append(_link_line(description))
    return lines


def _link_line(description):
    """Return the line that describes the wan condition's link."""
    link = description.get("link")
    if link is None:
        # Records of runs before the delay line had a netem qdisc.
        netem = description.get("netem")
        return (f"- netem on both veth ends: `{netem}`" if netem else
                "- netem: none, so this run has no added delay or rate limit")
    rate = (f"{link['rate_mbit']:g} Mbit/s" if link["rate_mbit"]
            else "no rate limit")
    line = (f"- Link: {link['delay_ms']:g} ms each way, {rate}, a queue of "
            f"{link['limit_bytes'] / MIB:g} MiB each way, through "
            f"the delay line of tests/bench/delayline.py")
    delay_line = description.get("delay_line") or {}
    counters = delay_line.get("counters")
    if counters:
        sent = sum(c["bytes"] for c in counters.values()) / MIB
        drops = sum(c["drops"] for c in counters.values())
        line += (f"; it forwarded {sent:.0f} MiB and dropped {drops} "
                 f"packets")
        if delay_line.get("cpu_seconds") is not None:
            line += f", using {delay_line['cpu_seconds']:.1f} CPU seconds"
    return line


def markdown(meta, records, failures, notes, manifest, plots):
    """Return the text of benchmarks.md.

    plots maps a network name to the file name of its SVG.
    """
    size = manifest["bench"]["size"]
    out = [
        "# csipfs benchmarks",
        "",
        "Generated by `tests/bench/run.sh` from the records in "
        f"`{meta['json_name']}`; do not edit by hand. The analysis below is "
        "copied from `tests/bench/notes.md`.",
        "",
        *_machine_lines(meta),
        "",
        "## Method",
        "",
        "All contenders read the same report files from the same nginx "
        "over HTTPS: csipfs through the emulated CSIP API and its signed "
        "URLs, curl with one signed URL from DescribeTaskLogURL, httpdirfs "
        "and rclone through an autoindex listing of the same objects "
        f"directory. The fixture ({size['name']}): one report of "
        f"{size['big_bytes'] / MIB:.0f} MiB and {size['parallel_count']} of "
        f"{size['parallel_bytes'] / MIB:.0f} MiB of pseudo-random bytes, "
        f"{size['grep_reports']} text reports of about 200 KiB in "
        f"{size['grep_tasks']} tasks, and {size['list_reports']} reports "
        f"of 1–4 KiB in {size['list_tasks']} tasks.",
        "",
        "A cold run starts with `echo 3 > /proc/sys/vm/drop_caches`, reads "
        "the object files it needs back into the page cache (so the network, "
        "not the disk, is measured), mounts afresh with an empty cache "
        "directory and stats the mount root; only the workload command is "
        "timed. Warm runs (the second rsync, ls -lR after a remount with "
        "the same cache directory, the page-cache re-read) do not drop the "
        "page cache; the disk-cache re-read drops it first. The local "
        "references run the same command on the objects directory, or on "
        "csipfs's cache file for the disk-cache re-read. The contenders run "
        "in a rotated order in each repetition. Daemon peak RSS is VmHWM "
        "after `echo 5 > /proc/PID/clear_refs`; CPU seconds are user plus "
        "system time of the daemon during the run, and of the workload "
        "commands (client). API calls and object store requests and bytes "
        "count only the timed part. httpdirfs runs with `--cacert`, "
        "`--no-range-check` and `--cache` (8 MiB segments into a fresh "
        "cache directory for each cold run), rclone with `--ca-cert`, "
        "`--read-only` and its default VFS cache mode (off).",
        "",
    ]
    if failures or any(not r["ok"] for r in records):
        out += ["## Failures", ""]
        for failure in failures:
            out.append(f"- {failure['network']}, {failure['stage']}: "
                       f"{failure['error']}")
        for record in records:
            if not record["ok"]:
                first_line = (record["error"] or "").splitlines()[0:1]
                out.append(f"- {record['network']}, {record['workload']} "
                           f"{record['case']}, {record['contender']}, "
                           f"repetition {record['rep'] + 1}: "
                           f"{first_line[0] if first_line else ''}")
        out.append("")
    networks = meta["networks"]
    out += ["## Targets", "",
            _targets_table(targets(records, manifest,
                                   [n["name"] for n in networks])), ""]
    for description in networks:
        name = description["name"]
        out += [f"## Network: {name}", "", *_network_lines(description), ""]
        if name in plots:
            out += [f"![median results, {name}]({plots[name]})", ""]
        for workload, _, _, text in workloads.WORKLOADS:
            table = workload_table(records, name, workload)
            if table is None:
                continue
            out += [f"### {workload}: {text}", "", table, ""]
    out += [notes.rstrip(), ""]
    return "\n".join(out)
