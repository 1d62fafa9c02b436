"""The test fixture: report objects on disk and the manifest that lists them.

The fixture is deterministic: a fixed seed gives the same ids, names, times
and bytes on every run. Building it writes workdir/objects/r/<AppId>/...,
workdir/manifest.json and, last, workdir/fixture.stamp. A later build in the
same workdir reuses the files while the stamp matches and every object still
has its recorded size.
"""

import datetime
import hashlib
import json
import os
import random
from pathlib import Path

from . import naming

FIXTURE_VERSION = "csipfs-fixture-2"
SEED = 20251204
BLOCK_SIZE = 1 << 20
MIB = 1 << 20
KIB = 1 << 10

CST = datetime.timezone(datetime.timedelta(hours=8))

# Words that every PDF of the fixture contains, besides its own words.
COMMON_WORD = "csipreport"
REPORT_TYPE_WORDS = {1: "securitycheck", 2: "dailyscan", 3: "weeklyscan",
                     4: "monthlyscan"}

# The accounts of the group. The first one is the group administrator. The
# member "mem-3f9a2c1b" owns the member credential. Two members share a
# NickName, one has none, and the last one has only incomplete reports.
ACCOUNTS = [
    {"key": "admin", "uin": "100012345678", "app_id": "1251234567",
     "member_id": None, "org_member_id": "mem-0a1b2c3d",
     "nick_name": "Acme 安全运营中心", "role": "Admin"},
    {"key": "retail", "uin": "100023456789", "app_id": "1252345678",
     "member_id": "mem-3f9a2c1b", "org_member_id": "mem-3f9a2c1b",
     "nick_name": "Acme Retail", "role": "Member"},
    {"key": "retail2", "uin": "100034567890", "app_id": "1253456789",
     "member_id": "mem-7d4e8f20", "org_member_id": "mem-7d4e8f20",
     "nick_name": "Acme Retail", "role": "Member"},
    {"key": "nameless", "uin": "100045678901", "app_id": "1254567890",
     "member_id": "mem-b61c09e5", "org_member_id": "mem-b61c09e5",
     "nick_name": None, "role": "Member"},
    {"key": "devtest", "uin": "100056789012", "app_id": "1255678901",
     "member_id": "mem-e2f7a4d8", "org_member_id": "mem-e2f7a4d8",
     "nick_name": "dev/test 账号", "role": "Member"},
]

MEMBER_CREDENTIAL_ACCOUNT = "retail"

# Scan tasks: (key, account key, TaskName, ReportType, TaskType).
# "weekly" and "weekly-b" share a TaskName in one account, and "port" was
# renamed, so its latest report carries a different TaskName.
TASKS = [
    ("weekly", "admin", "Weekly asset scan", 3, 0),
    ("weekly-b", "admin", "Weekly asset scan", 3, 2),
    ("monthly", "admin", "月度安全体检", 4, 0),
    ("port", "admin", "Port exposure check v2", 1, 1),
    ("daily", "admin", "Daily vulnerability scan", 2, 0),
    ("container", "admin", "Container image scan", 1, 1),
    ("retail-daily", "retail", "每日漏洞扫描", 2, 0),
    ("retail-audit", "retail", "Cloud config audit", 1, 3),
    ("retail2-weekly", "retail2", "Weekly asset scan", 3, 0),
    ("retail2-web", "retail2", "Web application scan", 1, 1),
    ("nameless-check", "nameless", "Security check", 1, 2),
    ("devtest-baseline", "devtest", "Baseline check", 1, 1),
]

LONG_NAME = "资产风险评估与漏洞修复建议报告" * 6  # 270 bytes in UTF-8

SPARSE_SIZE = 256 * MIB + 4321

# Reports in fixture order: (task key, TaskLogName, Time, Status, size,
# options). A size of None means a random size from 2 KiB to 300 KiB.
# Options: "noext" stores the object without ".pdf", "task_name" overrides
# the TaskName recorded in the report.
REPORTS = [
    ("weekly", "Weekly asset scan report", "2025-01-06 03:00:00", 2, None, {}),
    ("weekly", "Weekly asset scan report", "2025-01-13 09:30:00", 2, None, {}),
    ("weekly", "Weekly asset scan report", "2025-01-13 09:30:00", 2, None, {}),
    ("weekly", "Weekly asset scan report 2025-02-03", "2025-02-03 10:12:45",
     2, None, {}),
    ("weekly", "prod/web servers", "2025-02-10 11:00:00", 2, None, {}),
    ("weekly", "Weekly asset scan report 2026-01-05", "2026-01-05 10:00:07",
     2, MIB - 1, {}),
    ("weekly", "Weekly asset scan report 2026-02-02", "2026-02-02 10:00:00",
     1, None, {}),
    ("weekly-b", "Weekly asset scan report", "2025-03-03 08:00:00", 2, None,
     {}),
    ("weekly-b", "Staging servers\tweekly", "2025-03-10 08:00:00", 2, None, {}),
    ("weekly-b", "Quarterly summary.PDF", "2025-03-31 23:59:59", 2, None, {}),
    ("monthly", "月度安全体检报告 2025年4月", "2025-04-30 18:20:00", 2, None, {}),
    ("monthly", "月度安全体检报告 2025年5月", "2025-05-31 18:20:00", 2, None, {}),
    ("monthly", LONG_NAME + "（第一版）", "2025-06-15 12:00:00", 2, None, {}),
    ("monthly", LONG_NAME + "（第二版）", "2025-06-16 12:00:00", 2, None, {}),
    ("monthly", "月度安全体检报告 2025年6月", "2025-06-30 18:20:00", 2,
     3 * MIB + 12345, {}),
    ("monthly", "月度安全体检报告 2025年3月", "2025-03-31 18:20:00", 3, None, {}),
    ("port", "Port exposure 2025-07", "2025-07-01 09:00:00", 2, None,
     {"task_name": "Port exposure check"}),
    ("port", "Port exposure 2025-08", "2025-08-01 09:00:00", 2, None,
     {"task_name": "Port exposure check"}),
    ("port", "Port exposure 2025-09", "2025-09-01 09:00:00", 2, None, {}),
    ("port", "..", "2025-08-15 09:00:00", 2, None,
     {"task_name": "Port exposure check"}),
    ("port", None, "2025-08-20 09:00:00", 2, None,
     {"task_name": "Port exposure check"}),
    ("daily", "Daily vulnerability scan 2025-10-01", "2025-10-01 03:00:05", 2,
     MIB, {}),
    ("daily", "Daily vulnerability scan 2025-10-02", "2025-10-02 03:00:05", 2,
     MIB + 1, {}),
    ("daily", "Daily vulnerability scan 2025-10-03", "2025-10-03 03:00:05", 2,
     0, {}),
    ("daily", "Daily vulnerability scan 2025-10-04", "2025-10-04 03:00:05", 2,
     1, {}),
    ("daily", "Daily vulnerability scan 2025-10-05", "2025-10-05 03:00:05", 2,
     5 * MIB, {}),
    ("daily", "Daily vulnerability scan 2025-10-06", "2025-10-06 03:00:05", 2,
     None, {"noext": True}),
    ("daily", "Daily vulnerability scan 2025-10-07", "2025-10-07 03:00:05", 0,
     None, {}),
    ("container", "Container image scan 2025-11", "2025-11-11 11:11:11", 4,
     None, {}),
    ("container", "Container image scan 2025-12", "2025-12-12 12:12:12", 5,
     None, {}),
    ("retail-daily", "每日漏洞扫描 2025-11-01", "2025-11-01 06:00:00", 2, None,
     {}),
    ("retail-daily", "每日漏洞扫描 2025-11-02", "2025-11-02 06:00:00", 2, None,
     {}),
    ("retail-daily", "每日漏洞扫描 2025-11-03", "2025-11-03 06:00:00", 2, None,
     {"noext": True}),
    ("retail-daily", "每日漏洞扫描 2025-11-04", "2025-11-04 06:00:00", 2, None,
     {}),
    ("retail-daily", "每日漏洞扫描 2025-11-05", "2025-11-05 06:00:00", 2, None,
     {}),
    ("retail-daily", "每日漏洞扫描 2025-11-06", "2025-11-06 06:00:00", 2, None,
     {}),
    ("retail-daily", ".", "2025-11-07 06:00:00", 2, None, {}),
    ("retail-audit", "Cloud config audit", "2026-01-20 14:30:00", 2, None, {}),
    ("retail-audit", "Cloud config audit", "2026-02-20 14:30:00", 2, None, {}),
    ("retail-audit", "Cloud config audit 2026-03", "2026-03-20 14:30:00", 2,
     None, {}),
    ("retail-audit", "Cloud config audit 2026-04", "2026-04-20 14:30:00", 6,
     None, {}),
    ("retail2-weekly", "Weekly asset scan report", "2025-05-05 10:00:00", 2,
     None, {}),
    ("retail2-weekly", "Weekly asset scan report 2025-05-12",
     "2025-05-12 10:00:00", 2, None, {}),
    ("retail2-weekly", "Weekly asset scan report 2025-05-19",
     "2025-05-19 10:00:00", 2, None, {}),
    ("retail2-web", "Web application scan full report", "2026-04-01 02:15:00",
     2, SPARSE_SIZE, {}),
    ("retail2-web", "Web application scan 2026-04", "2026-04-08 02:15:00", 2,
     None, {}),
    ("nameless-check", "Security check 2026-05-01", "2026-05-01 16:45:00", 2,
     None, {}),
    ("nameless-check", "Security check 2026-05-08", "2026-05-08 16:45:00", 2,
     None, {"noext": True}),
    ("nameless-check", "Security check 2026-05-15", "2026-05-15 16:45:00", 2,
     None, {}),
    ("nameless-check", "Security check 2026-05-22", "2026-05-22 16:45:00", 2,
     None, {}),
    ("devtest-baseline", "Baseline check 2026-06-01", "2026-06-01 20:00:00", 1,
     None, {}),
]


# Small reports that bring the complete ones to 64, for tests that need many
# uncached reports. They draw ids, sizes and bytes from their own random
# generator (seed EXTRA_SEED), so the reports above keep their values.
EXTRA_SEED = SEED + 1
EXTRA_TASKS = [
    ("retail2-bulk", "retail2", "Log export check", 1, 1),
    ("nameless-bulk", "nameless", "Asset inventory", 1, 0),
]
EXTRA_REPORTS = [
    (task, f"{title} {day:02d}", f"2024-1{month}-{day:02d} 08:00:00", 2,
     None, {})
    for task, title, month in (("retail2-bulk", "Log export", 1),
                               ("nameless-bulk", "Asset inventory", 2))
    for day in range(1, 11)
]
EXTRA_MIN_SIZE = 2 * KIB
EXTRA_MAX_SIZE = 8 * KIB


def parse_cst(text):
    """Convert "YYYY-MM-DD HH:MM:SS" in China Standard Time to epoch seconds."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return int(moment.replace(tzinfo=CST).timestamp())


def format_cst(epoch):
    return datetime.datetime.fromtimestamp(epoch, CST).strftime(
        "%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------- PDF files

def _pdf_escape(text):
    return (text.replace("\\", "\\\\").replace("(", "\\(")
            .replace(")", "\\)"))


class _PdfLayout:
    """The parts of a one-page PDF padded to an exact size.

    The file is: head (header and objects 1 to 5), the padding stream
    object 6 whose data is pad_length bytes, slack newlines, a comment with
    the tail words, then the xref table and trailer. Every offset in the
    xref table is exact, so the file stays a valid PDF at any size.
    """

    def __init__(self, text, tail_comment):
        content = f"BT /F1 12 Tf 72 720 Td ({_pdf_escape(text)}) Tj ET\n"
        content = content.encode("ascii")
        objects = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content
            + b"endstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
            b"/Encoding /WinAnsiEncoding >>",
        ]
        head = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        self.offsets = []
        for number, body in enumerate(objects, start=1):
            self.offsets.append(len(head))
            head += b"%d 0 obj\n" % number + body + b"\nendobj\n"
        self.head = bytes(head)
        self.tail_comment = tail_comment.encode("ascii")

    def pad_header(self, pad_length):
        return b"6 0 obj\n<< /Length %d >>\nstream\n" % pad_length

    PAD_FOOTER = b"\nendstream\nendobj\n"

    def trailer(self, pad_length, slack):
        pad_offset = len(self.head)
        body_end = (pad_offset + len(self.pad_header(pad_length)) + pad_length
                    + len(self.PAD_FOOTER) + slack)
        comment = b"% " + self.tail_comment + b"\n"
        xref_offset = body_end + len(comment)
        xref = bytearray(b"xref\n0 7\n0000000000 65535 f \n")
        for offset in self.offsets + [pad_offset]:
            xref += b"%010d 00000 n \n" % offset
        xref += (b"trailer\n<< /Size 7 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                 % xref_offset)
        return b"\n" * slack + comment + bytes(xref)

    def total(self, pad_length, slack=0):
        return (len(self.head) + len(self.pad_header(pad_length)) + pad_length
                + len(self.PAD_FOOTER) + len(self.trailer(pad_length, slack)))

    def fit(self, size):
        """Return (pad_length, slack) that make the file exactly size bytes."""
        estimate = size - self.total(0)
        if estimate < 0:
            raise ValueError(f"a PDF of {size} bytes is too small")
        # total() grows by at least one byte per pad byte, so the largest
        # pad_length that does not overshoot leaves a few bytes of slack.
        for pad_length in range(estimate, -1, -1):
            overshoot = self.total(pad_length) - size
            if overshoot <= 0:
                return pad_length, -overshoot
        raise ValueError(f"no PDF layout has {size} bytes")


def write_pdf(path, size, text, tail_comment, rng, sparse=False):
    """Write a valid PDF of exactly size bytes and return its SHA-256 hex.

    text goes into the page's uncompressed content stream and tail_comment
    into a comment near the end. The padding stream contains random bytes, or a
    hole of zeros when sparse is true.
    """
    layout = _PdfLayout(text, tail_comment)
    pad_length, slack = layout.fit(size)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        first = layout.head + layout.pad_header(pad_length)
        out.write(first)
        digest.update(first)
        if sparse:
            out.seek(pad_length, os.SEEK_CUR)
            zeros = bytes(MIB)
            remaining = pad_length
            while remaining:
                chunk = min(remaining, MIB)
                digest.update(zeros[:chunk])
                remaining -= chunk
        else:
            data = rng.randbytes(pad_length)
            out.write(data)
            digest.update(data)
        last = layout.PAD_FOOTER + layout.trailer(pad_length, slack)
        out.write(last)
        digest.update(last)
    actual = os.path.getsize(path)
    if actual != size:
        raise AssertionError(f"{path} has {actual} bytes, expected {size}")
    return digest.hexdigest()


def write_plain(path, data):
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------ the fixture

def _hex_id(rng, digits):
    return format(rng.getrandbits(digits * 4), f"0{digits}x")


def _make_records(rng, extra_rng):
    """Build the accounts, tasks and reports with their API fields.

    Each report records in "rng" the generator that writes its object.
    """
    accounts = {a["key"]: dict(a) for a in ACCOUNTS}
    join_times = ["2024-03-18 10:21:33", "2024-05-02 09:00:12",
                  "2024-05-02 09:04:51", "2024-08-30 17:40:02",
                  "2025-01-09 08:15:44"]
    for account, joined in zip(accounts.values(), join_times):
        account["join_time"] = joined

    tasks = {}
    for task_list, task_rng in ((TASKS, rng), (EXTRA_TASKS, extra_rng)):
        for key, account_key, name, report_type, task_type in task_list:
            tasks[key] = {
                "key": key, "account": account_key,
                "task_id": "task-" + _hex_id(task_rng, 12),
                "task_name": name, "report_type": report_type,
                "task_type": task_type,
                "template_id": task_rng.randint(1, 40), "reports": [],
            }

    reports = []
    used_ids = set()
    entries = [(row, rng, None) for row in REPORTS]
    entries += [(row, extra_rng, (EXTRA_MIN_SIZE, EXTRA_MAX_SIZE))
                for row in EXTRA_REPORTS]
    for number, (row, rng, size_range) in enumerate(entries, start=1):
        task_key, name, time, status, size, options = row
        task = tasks[task_key]
        account = accounts[task["account"]]
        while True:
            task_log_id = "tl-" + _hex_id(rng, 12)
            if task_log_id not in used_ids:
                used_ids.add(task_log_id)
                break
        if size is None:
            size = rng.randint(*(size_range or (2 * KIB, 300 * KIB)))
        minutes = rng.randint(3, 180)
        start = format_cst(parse_cst(time) - minutes * 60)
        suffix = "" if options.get("noext") else ".pdf"
        report = {
            "number": number,
            "rng": rng,
            "task": task,
            "account": account,
            "task_log_id": task_log_id,
            "size": size,
            "object": f"r/{account['app_id']}/{task_log_id}{suffix}",
            "info": {
                "TaskLogId": task_log_id,
                "TaskLogName": name,
                "TaskName": options.get("task_name", task["task_name"]),
                "TaskCenterTaskId": task["task_id"],
                "Time": time,
                "StartTime": start,
                "Status": status,
                "AssetsNumber": rng.randint(3, 400),
                "RiskNumber": rng.randint(0, 60),
                "AppId": account["app_id"],
                "UIN": account["uin"],
                "UserName": account["nick_name"],
                "ReportType": task["report_type"],
                "TemplateId": task["template_id"],
            },
        }
        task["reports"].append(report)
        reports.append(report)
    return accounts, tasks, reports


def _report_words(report):
    number = report["number"]
    type_word = REPORT_TYPE_WORDS[report["task"]["report_type"]]
    return (f"csipword{number:03d}", f"csiptail{number:03d}", type_word)


def _write_object(objects_dir, report, rng):
    path = objects_dir / report["object"]
    path.parent.mkdir(parents=True, exist_ok=True)
    size = report["size"]
    if size == 0:
        return write_plain(path, b""), []
    if size == 1:
        return write_plain(path, b"%"), []
    unique, tail, type_word = _report_words(report)
    text = f"CSIP {COMMON_WORD} {unique} {type_word} scan report"
    digest = write_pdf(path, size, text, f"{tail} {COMMON_WORD}", rng,
                       sparse=size > 64 * MIB)
    return digest, [unique, tail, COMMON_WORD, type_word]


def _name_tree(accounts, reports):
    """Compute the directory and file names and check each directory.

    Returns (account dirs by uin, self dirs by uin, task dirs by task id,
    file names by report id).
    """
    admin = next(a for a in accounts.values() if a["role"] == "Admin")
    members = [a for a in accounts.values() if a["role"] == "Member"]
    account_dirs = naming.account_dirs(admin, members)
    naming.check_names(account_dirs.values())

    self_dirs = {}
    task_dirs = {}
    file_names = {}
    for account in accounts.values():
        own = [r for r in reports if r["account"] is account]
        complete = [r["info"] for r in own if r["info"]["Status"] == 2]
        self_dirs[account["uin"]] = naming.self_account_dir(
            account["uin"], complete)
        names = naming.task_dirs(complete)
        naming.check_names(names.values())
        task_dirs.update(names)
        objects = {r["task_log_id"]: r["object"] for r in own}
        for task_id in names:
            in_task = [i for i in complete if i["TaskCenterTaskId"] == task_id]
            files = naming.report_files(in_task, objects)
            naming.check_names(files.values())
            file_names.update(files)
    return account_dirs, self_dirs, task_dirs, file_names


def _org_info(account, admin):
    is_admin = account["role"] == "Admin"
    return {
        "Uin": account["uin"],
        "NickName": account["nick_name"],
        "NodeName": "Acme Group" if is_admin else "Acme Subsidiaries",
        "NodeCount": 4 if is_admin else 0,
        "MemberId": account["org_member_id"],
        "AppId": account["app_id"],
        "Role": account["role"],
        "Enable": 1,
        "CloudType": 0,
        "JoinType": 0 if is_admin else 1,
        "JoinTypeInfo": "创建" if is_admin else "邀请",
        "IsExpired": False,
        "CreateTime": account["join_time"],
        "AdminUin": admin["uin"],
        "MemberCreateTime": account["join_time"],
        "AssetCount": 12 + int(account["uin"]) % 50,
        "RiskCount": 3,
    }


def _scan_task(task):
    reports = task["reports"]
    account = reports[0]["account"]
    times = sorted(r["info"]["Time"] for r in reports)
    starts = sorted(r["info"]["StartTime"] for r in reports)
    latest = max(reports, key=lambda r: r["info"]["Time"])
    scan_status = {2: 2, 0: 0, 1: 1, 3: 3, 4: 4, 5: 4, 6: 1}
    return {
        "TaskId": task["task_id"],
        "TaskName": task["task_name"],
        "AppId": account["app_id"],
        "UIN": account["uin"],
        "UserName": account["nick_name"],
        "InsertTime": format_cst(parse_cst(starts[0]) - 86400),
        "StartTime": starts[-1],
        "EndTime": times[-1],
        "ScanStatus": scan_status[latest["info"]["Status"]],
        "ReportNumber": len(reports),
        "TaskType": task["task_type"],
        "TaskMode": 0,
        "ScanPlanContent": "0 0 3 * * 1 *" if task["task_type"] == 0 else "",
        "Percent": 100 if latest["info"]["Status"] == 2 else 40,
    }


def _build(workdir):
    rng = random.Random(SEED)
    accounts, tasks, reports = _make_records(rng,
                                             random.Random(EXTRA_SEED))
    account_dirs, self_dirs, task_dirs, file_names = _name_tree(
        accounts, reports)
    admin = accounts["admin"]

    objects_dir = workdir / "objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    manifest_reports = []
    paths = set()
    for report in reports:
        info = report["info"]
        digest, words = _write_object(objects_dir, report, report["rng"])
        account = report["account"]
        path = None
        if info["Status"] == 2:
            path = "/".join((account_dirs[account["uin"]],
                             task_dirs[info["TaskCenterTaskId"]],
                             file_names[report["task_log_id"]]))
            assert path not in paths, f"duplicate path {path!r}"
            paths.add(path)
        manifest_reports.append({
            "task_log_id": report["task_log_id"],
            "task_log_name": info["TaskLogName"],
            "task_name": info["TaskName"],
            "task_center_task_id": info["TaskCenterTaskId"],
            "time": info["Time"],
            "mtime": parse_cst(info["Time"]),
            "status": info["Status"],
            "app_id": account["app_id"],
            "uin": account["uin"],
            "member_id": account["member_id"],
            "object": report["object"],
            "size": report["size"],
            "sha256": digest,
            "words": words,
            "path": path,
            "task_log_info": info,
        })

    manifest = {
        "version": FIXTURE_VERSION,
        "block_size": BLOCK_SIZE,
        "member_credential_uin": accounts[MEMBER_CREDENTIAL_ACCOUNT]["uin"],
        "accounts": [{
            "uin": a["uin"],
            "app_id": a["app_id"],
            "member_id": a["member_id"],
            "nick_name": a["nick_name"],
            "role": a["role"],
            "dir": account_dirs[a["uin"]],
            "self_dir": self_dirs[a["uin"]],
            "organization_user_info": _org_info(a, admin),
        } for a in accounts.values()],
        "tasks": [{
            "account_uin": accounts[t["account"]]["uin"],
            "task_id": t["task_id"],
            "task_name": t["task_name"],
            "dir": task_dirs.get(t["task_id"]),
            "scan_task_info": _scan_task(t),
        } for t in tasks.values()],
        "reports": manifest_reports,
    }
    return manifest


def _stamp_text():
    return FIXTURE_VERSION + "\n"


def is_complete(workdir, stamp_text):
    """Return whether workdir contains a fixture built with stamp_text as its
    stamp, with every object of its manifest at its full size."""
    stamp = workdir / "fixture.stamp"
    manifest_path = workdir / "manifest.json"
    try:
        if stamp.read_text() != stamp_text:
            return False
        manifest = load_manifest(manifest_path)
        for report in manifest["reports"]:
            path = workdir / "objects" / report["object"]
            if path.stat().st_size != report["size"]:
                return False
    except (OSError, ValueError, KeyError):
        return False
    return True


def build_fixture(workdir):
    """Build the fixture in workdir unless a complete one is there already.

    Returns the path of manifest.json.
    """
    workdir = Path(workdir)
    manifest_path = workdir / "manifest.json"
    if is_complete(workdir, _stamp_text()):
        return manifest_path
    stamp = workdir / "fixture.stamp"
    stamp.unlink(missing_ok=True)
    naming.self_test()
    manifest = _build(workdir)
    temporary = manifest_path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    os.replace(temporary, manifest_path)
    stamp.write_text(_stamp_text())
    return manifest_path


def load_manifest(path):
    """Read manifest.json and return it as a dict."""
    with open(path, encoding="utf-8") as source:
        return json.load(source)
