"""File names that csipfs gives accounts, tasks and reports.

csipfs names entries in C by the same rules, so the fixture can record the
path where each report must appear in a mount.
Comparisons of order keys and ids are byte-wise on UTF-8, as strcmp does.
"""

MAX_BYTES = 255

_SOLIDUS = "\uff0f"  # FULLWIDTH SOLIDUS, the stand-in for '/'


def sanitize(text, max_bytes=MAX_BYTES):
    """Turn API text into a valid file name of at most max_bytes bytes.

    '/' becomes U+FF0F, U+0000..U+001F and U+007F become '_', and the text is
    cut before the first character that would exceed max_bytes in UTF-8.
    An empty result becomes "_", "." becomes "_." and ".." becomes "_..".
    None counts as empty.
    """
    max_bytes = min(max_bytes, MAX_BYTES)
    out = []
    used = 0
    for ch in text or "":
        if ch == "/":
            ch = _SOLIDUS
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            ch = "_"
        size = len(ch.encode("utf-8"))
        if used + size > max_bytes:
            break
        out.append(ch)
        used += size
    name = "".join(out)
    if name in ("", ".", ".."):
        name = "_" + name
    return name


def _utf8_sequence_length(data, start):
    """Return the length of the valid UTF-8 sequence at data[start], or 0.

    The rule of names_utf8_length() in fs/names.c: RFC 3629 without
    overlong forms, surrogates or code points above U+10FFFF.
    """
    lead = data[start]
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        length = 2
    elif 0xE0 <= lead <= 0xEF:
        length = 3
    elif 0xF0 <= lead <= 0xF4:
        length = 4
    else:
        return 0
    if start + length > len(data):
        return 0
    low, high = 0x80, 0xBF
    if lead == 0xE0:
        low = 0xA0
    elif lead == 0xED:
        high = 0x9F
    elif lead == 0xF0:
        low = 0x90
    elif lead == 0xF4:
        high = 0x8F
    if not low <= data[start + 1] <= high:
        return 0
    if not all(0x80 <= b <= 0xBF for b in data[start + 2:start + length]):
        return 0
    return length


def repair(data):
    """Decode bytes as csipfs does: each byte outside a valid UTF-8
    sequence becomes U+FFFD on its own (Python's errors="replace" would
    merge some runs), and NUL becomes "_"."""
    out = []
    i = 0
    while i < len(data):
        length = _utf8_sequence_length(data, i)
        if length == 0:
            out.append("\ufffd")
            i += 1
            continue
        out.append(data[i:i + length].decode("utf-8"))
        i += length
    return "".join(out).replace("\0", "_")


def _utf8_len(text):
    return len(text.encode("utf-8"))


def _sort_key(entry):
    return (entry["order_key"].encode("utf-8"), entry["id"].encode("utf-8"))


def assign(entries):
    """Give each entry a unique name and return {id: name}.

    Each entry is a dict with "base" (text or None), "ext" ("" or ".pdf"),
    "id" (unique in the directory) and "order_key". The entry with the
    lowest (order_key, id) keeps the plain name. Each other entry with that
    name gets " (<id>)" before ext, or " (<id>-2)", " (<id>-3)" and so on when
    that is taken too. The result does not depend on the order of entries.
    """
    ordered = sorted(entries, key=_sort_key)
    taken = set()
    names = {}
    losers = []
    for entry in ordered:
        ext = entry["ext"]
        candidate = sanitize(entry["base"], MAX_BYTES - _utf8_len(ext)) + ext
        if candidate in taken:
            losers.append(entry)
        else:
            taken.add(candidate)
            names[entry["id"]] = candidate

    for entry in losers:
        ext = entry["ext"]
        k = 1
        while True:
            if k == 1:
                suffix = " (" + sanitize(entry["id"]) + ")"
            else:
                suffix = " (" + entry["id"] + "-" + str(k) + ")"
            room = MAX_BYTES - _utf8_len(ext) - _utf8_len(suffix)
            name = sanitize(entry["base"], room) + suffix + ext
            if name not in taken:
                break
            k += 1
        taken.add(name)
        names[entry["id"]] = name
    return names


def report_extension(task_log_name, object_path):
    """Return the extension csipfs appends to a report's name.

    The type comes from the URL path (".pdf") or, for a path without an
    extension, from the Content-Type application/pdf, so every fixture object
    gives ".pdf". A name that already ends with ".pdf" in any case gets "".
    """
    del object_path  # every fixture object is a PDF, with or without ".pdf"
    if task_log_name is not None and task_log_name.lower().endswith(".pdf"):
        return ""
    return ".pdf"


def _text_or_none(value):
    """Return value unless it is None or an empty string."""
    return value if value else None


def account_dirs(admin, members):
    """Name the account directories in the mount of a group administrator.

    admin and members are dicts with "uin" and "nick_name". The admin's
    NickName is its base. A member's base is its NickName, or its Uin when
    the NickName is null or empty. Returns {uin: name}.
    """
    entries = [{
        "base": admin["nick_name"],
        "ext": "",
        "id": admin["uin"],
        "order_key": "0",
    }]
    for member in members:
        entries.append({
            "base": _text_or_none(member["nick_name"]) or member["uin"],
            "ext": "",
            "id": member["uin"],
            "order_key": "1",
        })
    return assign(entries)


def self_account_dir(uin, reports):
    """Name the one account directory of a caller that is not an admin.

    The name is the UserName of the account's complete report with the
    lowest TaskLogId, or the UIN when there is no complete report or that
    UserName is null or empty.
    """
    if reports:
        first = min(reports, key=lambda r: r["TaskLogId"].encode("utf-8"))
        user_name = _text_or_none(first["UserName"])
        if user_name is not None:
            return assign([{"base": user_name, "ext": "", "id": uin,
                            "order_key": "0"}])[uin]
    return assign([{"base": uin, "ext": "", "id": uin,
                    "order_key": "0"}])[uin]


def task_dirs(complete_reports):
    """Name the task directories of one account from its complete reports.

    complete_reports are TaskLogInfo dicts (Status 2). Each distinct
    TaskCenterTaskId is a directory, named by the TaskName of its report with
    the latest (Time, TaskLogId), or by the task id when that TaskName is
    null or empty, and ordered by its earliest Time.
    Returns {task_center_task_id: name}.
    """
    by_task = {}
    for report in complete_reports:
        by_task.setdefault(report["TaskCenterTaskId"], []).append(report)
    entries = []
    for task_id, reports in by_task.items():
        latest = max(reports, key=lambda r: (r["Time"].encode("utf-8"),
                                             r["TaskLogId"].encode("utf-8")))
        earliest = min(r["Time"] for r in reports)
        entries.append({
            "base": latest["TaskName"] or task_id or "untitled",
            "ext": "",
            "id": task_id,
            "order_key": earliest,
        })
    return assign(entries)


def report_files(task_reports, object_paths):
    """Name the files of one task directory.

    task_reports are the task's complete TaskLogInfo dicts, and object_paths
    maps TaskLogId to the object path in the store. Returns {task_log_id:
    name}.
    """
    entries = []
    for report in task_reports:
        name = report["TaskLogName"]
        entries.append({
            "base": name if name is not None else report["TaskLogId"],
            "ext": report_extension(name, object_paths[report["TaskLogId"]]),
            "id": report["TaskLogId"],
            "order_key": report["Time"],
        })
    return assign(entries)


def check_names(names):
    """Raise AssertionError unless names are valid and unique in a directory.

    names is an iterable of file names of one directory.
    """
    seen = set()
    for name in names:
        assert isinstance(name, str), f"name is not a string: {name!r}"
        size = _utf8_len(name)
        assert 1 <= size <= MAX_BYTES, f"name has {size} bytes: {name!r}"
        assert name not in (".", ".."), f"name is reserved: {name!r}"
        assert "/" not in name, f"name contains '/': {name!r}"
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name), (
            f"name contains a control character: {name!r}")
        assert name not in seen, f"name is not unique: {name!r}"
        seen.add(name)


def self_test():
    """Check sanitize() and assign() on hand-computed cases."""
    assert sanitize("a/b") == "a\uff0fb"
    assert sanitize("a\tb\x7f") == "a_b_"
    assert sanitize("") == "_"
    assert sanitize(None) == "_"
    assert sanitize(".") == "_."
    assert sanitize("..") == "_.."
    assert sanitize("...") == "..."
    # A 3-byte character that does not fit is dropped whole.
    assert sanitize("ab\u4e2d", 4) == "ab"
    assert sanitize("\u4e2d" * 100) == "\u4e2d" * 85
    assert sanitize("/" * 100) == _SOLIDUS * 85
    # A truncated 3-byte sequence is two invalid bytes, so two U+FFFD.
    assert repair(b"a\xe4\xb8b") == "a\ufffd\ufffdb"
    assert repair(b"\xed\xa0\x80") == "\ufffd" * 3  # a surrogate
    assert repair(b"\xc0\xaf") == "\ufffd" * 2  # an overlong '/'
    assert repair("\u4e2d".encode()) == "\u4e2d"
    assert repair(b"a\0b") == "a_b"

    entries = [
        {"base": "r", "ext": ".pdf", "id": "b", "order_key": "2025"},
        {"base": "r", "ext": ".pdf", "id": "a", "order_key": "2026"},
        {"base": "r", "ext": ".pdf", "id": "c", "order_key": "2025"},
        {"base": "r (c)", "ext": ".pdf", "id": "d", "order_key": "2027"},
    ]
    # "d" keeps its plain name "r (c).pdf", so the loser "c" takes "-2".
    expected = {"b": "r.pdf", "c": "r (c-2).pdf", "a": "r (a).pdf",
                "d": "r (c).pdf"}
    assert assign(entries) == expected, assign(entries)
    assert assign(list(reversed(entries))) == expected

    long_base = "x" * 300
    names = assign([
        {"base": long_base, "ext": ".pdf", "id": "1", "order_key": "0"},
        {"base": long_base, "ext": ".pdf", "id": "2", "order_key": "0"},
    ])
    assert names["1"] == "x" * 251 + ".pdf"
    assert names["2"] == "x" * 247 + " (2).pdf"
    check_names(names.values())
