"""The benchmark fixture: three accounts of reports and their manifest.

The manifest has the format of tests/emulator/fixture.py, so the emulator
serves it with --manifest, and a "bench" section that names the reports of
each workload. The group administrator "big" has one large report and the
reports for parallel readers, the member "grep" has text reports of which a
known subset contains NEEDLE, and the member "list" has many small reports.

Objects live under objects/r/<AppId>/<TaskCenterTaskId>/<TaskLogId>.pdf, so
the /plain/ tree that nginx lists has the same tasks as directories as a
csipfs mount. The bytes are deterministic: a build with the same sizes
gives the same files, and a later build reuses them while fixture.stamp
matches and every object has its recorded size.
"""

import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator import fixture as emulator_fixture  # noqa: E402
from emulator import naming  # noqa: E402

FIXTURE_VERSION = "csipfs-bench-fixture-1"
SEED = 20251205
KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
# Chunk size for writing and hashing the pseudo-random objects.
WRITE_CHUNK = 16 * MIB

# The word that grep searches for. It appears once, on a line of its own,
# in every report whose number in the grep account is a multiple of
# NEEDLE_EVERY, and nowhere else.
NEEDLE = "csipneedle"
NEEDLE_EVERY = 7

# Text reports have sizes in this range, in bytes.
GREP_MIN_SIZE = 180 * KIB
GREP_MAX_SIZE = 220 * KIB
LIST_MIN_SIZE = 1 * KIB
LIST_MAX_SIZE = 4 * KIB

FIRST_TIME = emulator_fixture.parse_cst("2025-06-01 08:00:00")


@dataclasses.dataclass(frozen=True)
class FixtureSize:
    """The number and sizes of the reports in each account."""

    name: str
    big_bytes: int
    parallel_count: int
    parallel_bytes: int
    grep_reports: int
    grep_tasks: int
    list_reports: int
    list_tasks: int


FULL = FixtureSize("full", GIB, 8, 64 * MIB, 500, 10, 10000, 100)
SMOKE = FixtureSize("smoke", 32 * MIB, 8, 4 * MIB, 40, 2, 300, 3)

ACCOUNTS = [
    {"key": "big", "uin": "200000000001", "app_id": "1300000001",
     "member_id": None, "org_member_id": "mem-b1900001", "nick_name": "big",
     "role": "Admin", "join_time": "2024-01-10 09:00:00"},
    {"key": "grep", "uin": "200000000002", "app_id": "1300000002",
     "member_id": "mem-67e90002", "org_member_id": "mem-67e90002",
     "nick_name": "grep", "role": "Member",
     "join_time": "2024-01-11 09:00:00"},
    {"key": "list", "uin": "200000000003", "app_id": "1300000003",
     "member_id": "mem-1157a003", "org_member_id": "mem-1157a003",
     "nick_name": "list", "role": "Member",
     "join_time": "2024-01-12 09:00:00"},
]


# ------------------------------------------------------------- contents

def _words(rng, count):
    """Return count pseudo-words of 3 to 9 lowercase letters.

    NEEDLE has 10 letters, so no word equals it, and words are separated by
    spaces and newlines, so no text made of them contains it.
    """
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
            for _ in range(count)]


def _text_pool(rng, size):
    """Return about size bytes of ASCII lines of pseudo-words, ending in a
    newline, so that slices of it can be joined end to start."""
    words = _words(rng, 2000)
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
        lines.append(line)
        total += len(line) + 1
    pool = "\n".join(lines) + "\n"
    assert NEEDLE not in pool
    return pool.encode("ascii")


def _text(pool, rng, header, size, needle):
    """Return exactly size bytes: header, pool text from a random offset
    and, when needle is true, one NEEDLE line in the middle."""
    needle_line = f"finding {NEEDLE} confirmed\n".encode("ascii") if needle \
        else b""
    body_size = size - len(header) - len(needle_line)
    if body_size < 0:
        raise ValueError(f"a text report of {size} bytes is too small")
    start = rng.randrange(len(pool))
    body = bytearray()
    while len(body) < body_size:
        body += pool[start:start + body_size - len(body)]
        start = 0
    middle = body.rfind(b"\n", 0, len(body) // 2) + 1
    data = header + bytes(body[:middle]) + needle_line + bytes(body[middle:])
    assert len(data) == size
    return data


def _write_bytes(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _write_random(path, size, seed):
    """Write size pseudo-random bytes from random.Random(seed) and return
    their SHA-256 hex. The file has no holes."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = rng.randbytes(min(remaining, WRITE_CHUNK))
            out.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


# -------------------------------------------------------------- records

class _Builder:
    """Collects accounts, tasks and reports with their API fields."""

    def __init__(self):
        self.rng = random.Random(SEED)
        self.accounts = {a["key"]: dict(a) for a in ACCOUNTS}
        self.tasks = []
        self.reports = []
        self.used_ids = set()
        self.minutes = 0

    def _new_id(self, prefix):
        while True:
            value = prefix + format(self.rng.getrandbits(48), "012x")
            if value not in self.used_ids:
                self.used_ids.add(value)
                return value

    def add_task(self, account_key, name, report_type=1):
        task = {"account": self.accounts[account_key],
                "task_id": self._new_id("task-"), "task_name": name,
                "report_type": report_type,
                "template_id": self.rng.randint(1, 40), "reports": []}
        self.tasks.append(task)
        return task

    def add_report(self, task, name, size, group, **extra):
        """Add a complete report to task; its Time is one minute after the
        previous report's, so every order and name is deterministic."""
        account = task["account"]
        task_log_id = self._new_id("tl-")
        epoch = FIRST_TIME + 60 * self.minutes
        self.minutes += 1
        time_text = emulator_fixture.format_cst(epoch)

        report = {
            "task": task,
            "account": account,
            "task_log_id": task_log_id,
            "size": size,
            "group": group,
            "object": f"r/{account['app_id']}/{task['task_id']}/"
                      f"{task_log_id}.pdf",
            "info": {
                "TaskLogId": task_log_id,
                "TaskLogName": name,
                "TaskName": task["task_name"],
                "TaskCenterTaskId": task["task_id"],
                "Time": time_text,
                "StartTime": emulator_fixture.format_cst(epoch - 600),
                "Status": 2,
                "AssetsNumber": self.rng.randint(3, 400),
                "RiskNumber": self.rng.randint(0, 60),
                "AppId": account["app_id"],
                "UIN": account["uin"],
                "UserName": account["nick_name"],
                "ReportType": task["report_type"],
                "TemplateId": task["template_id"],
            },
        }
        report.update(extra)

        task["reports"].append(report)
        self.reports.append(report)
        return report


def _plan(size):
    """Return a _Builder with every account, task and report of size."""
    builder = _Builder()
    sequential = builder.add_task("big", "Sequential read", 4)
    builder.add_report(sequential, "sequential report", size.big_bytes,
                       "big")
    parallel = builder.add_task("big", "Parallel read", 4)
    for number in range(1, size.parallel_count + 1):
        builder.add_report(parallel, f"parallel report {number:02d}",
                           size.parallel_bytes, "parallel")

    grep_tasks = [builder.add_task("grep", f"Text scan {n:02d}", 3)
                  for n in range(1, size.grep_tasks + 1)]
    for number in range(size.grep_reports):
        task = grep_tasks[number % len(grep_tasks)]
        builder.add_report(
            task, f"text report {number:04d}",
            builder.rng.randint(GREP_MIN_SIZE, GREP_MAX_SIZE), "grep",
            needle=number % NEEDLE_EVERY == 0)

    list_tasks = [builder.add_task("list", f"Inventory {n:03d}", 2)
                  for n in range(1, size.list_tasks + 1)]
    for number in range(size.list_reports):
        task = list_tasks[number % len(list_tasks)]
        builder.add_report(
            task, f"inventory report {number:05d}",
            builder.rng.randint(LIST_MIN_SIZE, LIST_MAX_SIZE), "list")
    return builder


def _name_tree(builder):
    """Return {TaskLogId: path in a csipfs mount} and {task id: dir name}."""
    accounts = builder.accounts
    admin = accounts["big"]
    members = [accounts["grep"], accounts["list"]]
    account_dirs = naming.account_dirs(admin, members)
    objects = {r["task_log_id"]: r["object"] for r in builder.reports}
    paths = {}
    task_names = {}
    for account in accounts.values():
        infos = [r["info"] for r in builder.reports
                 if r["account"] is account]
        task_dirs = naming.task_dirs(infos)
        task_names.update(task_dirs)
        for task_id, task_dir in task_dirs.items():
            in_task = [i for i in infos if i["TaskCenterTaskId"] == task_id]
            files = naming.report_files(in_task, objects)
            naming.check_names(files.values())
            for task_log_id, name in files.items():
                paths[task_log_id] = "/".join(
                    (account_dirs[account["uin"]], task_dir, name))
    return account_dirs, task_names, paths


# ------------------------------------------------------------ manifest

def _org_info(account, admin):
    is_admin = account["role"] == "Admin"
    return {
        "Uin": account["uin"], "NickName": account["nick_name"],
        "NodeName": "Bench Group", "NodeCount": 2 if is_admin else 0,
        "MemberId": account["org_member_id"], "AppId": account["app_id"],
        "Role": account["role"], "Enable": 1, "CloudType": 0,
        "JoinType": 0 if is_admin else 1,
        "JoinTypeInfo": "创建" if is_admin else "邀请",
        "IsExpired": False, "CreateTime": account["join_time"],
        "AdminUin": admin["uin"],
        "MemberCreateTime": account["join_time"],
        "AssetCount": 10, "RiskCount": 1,
    }


def _scan_task(task):
    reports = task["reports"]
    account = task["account"]
    times = sorted(r["info"]["Time"] for r in reports)
    starts = sorted(r["info"]["StartTime"] for r in reports)
    return {
        "TaskId": task["task_id"], "TaskName": task["task_name"],
        "AppId": account["app_id"], "UIN": account["uin"],
        "UserName": account["nick_name"],
        "InsertTime": emulator_fixture.format_cst(
            emulator_fixture.parse_cst(starts[0]) - 86400),
        "StartTime": starts[-1], "EndTime": times[-1], "ScanStatus": 2,
        "ReportNumber": len(reports), "TaskType": 0, "TaskMode": 0,
        "ScanPlanContent": "", "Percent": 100,
    }


def _write_objects(builder, objects_dir):
    """Write every object and return {TaskLogId: SHA-256 hex}."""
    digests = {}
    pool = _text_pool(random.Random(SEED + 1), 2 * MIB)
    text_rng = random.Random(SEED + 2)
    for number, report in enumerate(builder.reports):
        path = objects_dir / report["object"]
        header = (f"CSIP report {report['task_log_id']} of task "
                  f"{report['task']['task_id']}\n").encode("ascii")
        if report["group"] in ("big", "parallel"):
            digest = _write_random(path, report["size"], SEED + 100 + number)
        else:
            data = _text(pool, text_rng, header, report["size"],
                         report.get("needle", False))
            digest = _write_bytes(path, data)
        digests[report["task_log_id"]] = digest
    return digests


def _manifest(builder, size, digests):
    account_dirs, task_names, paths = _name_tree(builder)
    admin = builder.accounts["big"]
    reports = []
    for report in builder.reports:
        info = report["info"]
        account = report["account"]
        reports.append({
            "task_log_id": report["task_log_id"],
            "task_log_name": info["TaskLogName"],
            "task_name": info["TaskName"],
            "task_center_task_id": info["TaskCenterTaskId"],
            "time": info["Time"],
            "mtime": emulator_fixture.parse_cst(info["Time"]),
            "status": 2,
            "app_id": account["app_id"],
            "uin": account["uin"],
            "member_id": account["member_id"],
            "object": report["object"],
            "size": report["size"],
            "sha256": digests[report["task_log_id"]],
            "words": [NEEDLE] if report.get("needle") else [],
            "path": paths[report["task_log_id"]],
            "group": report["group"],
            "task_log_info": info,
        })
    groups = {}
    for report in reports:
        groups.setdefault(report["group"], []).append(report["task_log_id"])
    return {
        "version": emulator_fixture.FIXTURE_VERSION,
        "block_size": emulator_fixture.BLOCK_SIZE,
        "member_credential_uin": builder.accounts["grep"]["uin"],
        "accounts": [{
            "uin": a["uin"], "app_id": a["app_id"],
            "member_id": a["member_id"], "nick_name": a["nick_name"],
            "role": a["role"], "dir": account_dirs[a["uin"]],
            "self_dir": a["nick_name"],
            "organization_user_info": _org_info(a, admin),
        } for a in builder.accounts.values()],
        "tasks": [{
            "account_uin": t["account"]["uin"], "task_id": t["task_id"],
            "task_name": t["task_name"], "dir": task_names[t["task_id"]],
            "scan_task_info": _scan_task(t),
        } for t in builder.tasks],
        "reports": reports,
        "bench": {
            "size": dataclasses.asdict(size),
            "needle": NEEDLE,
            "needle_reports": sum(1 for r in builder.reports
                                  if r.get("needle")),
            "groups": groups,
            "account_dirs": {key: account_dirs[a["uin"]]
                             for key, a in builder.accounts.items()},
            "app_ids": {key: a["app_id"]
                        for key, a in builder.accounts.items()},
        },
    }


def _stamp_text(size):
    return json.dumps({"version": FIXTURE_VERSION,
                       "size": dataclasses.asdict(size)},
                      sort_keys=True) + "\n"


def build(directory, size):
    """Build the fixture of size in directory unless it is there already.

    Returns the path of manifest.json.
    """
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if emulator_fixture.is_complete(directory, _stamp_text(size)):
        return manifest_path
    stamp = directory / "fixture.stamp"
    stamp.unlink(missing_ok=True)
    # Objects of an earlier, different build would show in the /plain/
    # listings, so they go first.
    shutil.rmtree(directory / "objects", ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    builder = _plan(size)
    digests = _write_objects(builder, directory / "objects")
    manifest = _manifest(builder, size, digests)
    temporary = manifest_path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    os.replace(temporary, manifest_path)
    stamp.write_text(_stamp_text(size))
    return manifest_path
