"""Check the emulator against the real protocol, without csipfs.

Usage, from the tests/ directory:
    /usr/bin/python3 -m emulator.selfcheck [--dir DIR]

Starts an Emulator in DIR (a temporary directory by default), runs every
check and prints one line per check. Exits 1 on the first failure.
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import ssl
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from . import Emulator, naming, tc3
from .client import Client, CsipError

MIB = 1 << 20


def _expect_error(code, function, *args):
    try:
        function(*args)
    except CsipError as error:
        assert error.code == code, f"expected {code}, got {error.code}"
        return error
    raise AssertionError(f"expected {code}, the call succeeded")


def _get(state, url, byte_range=None, method="GET"):
    """Fetch url from the store and return (status, headers, body)."""
    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=state["ca_file"])
    connection = http.client.HTTPSConnection(parts.hostname, parts.port,
                                             context=context, timeout=30)
    headers = {"Range": byte_range} if byte_range else {}
    target = parts.path + ("?" + parts.query if parts.query else "")
    connection.request(method, target, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def _all_reports(client, member_id=None, limit=7):
    params = {"Filter": {"Limit": limit, "Offset": 0}}
    if member_id:
        params["MemberId"] = [member_id]
    reports = []
    while True:
        params["Filter"]["Offset"] = len(reports)
        response = client.call("DescribeTaskLogList", params)
        reports.extend(response["Data"])
        if not response["Data"] or len(reports) >= response["TotalCount"]:
            return reports, response["TotalCount"]


def check_accounts(emu, admin, member):
    response = admin.call("DescribeOrganizationUserInfo",
                          {"Filter": {"Limit": 100}})
    accounts = emu.manifest["accounts"]
    assert response["TotalCount"] == len(accounts), response["TotalCount"]
    roles = [item["Role"] for item in response["Data"]]
    assert roles.count("Admin") == 1, roles
    page = admin.call("DescribeOrganizationUserInfo",
                      {"Filter": {"Limit": 2, "Offset": 1}})
    assert [d["Uin"] for d in page["Data"]] == [
        d["Uin"] for d in response["Data"][1:3]]
    empty = member.call("DescribeOrganizationUserInfo", {})
    assert empty["TotalCount"] == 0, empty
    assert empty["Data"] == [], empty


def check_reports(emu, admin, member):
    manifest = emu.manifest
    for account in manifest["accounts"]:
        expected = {r["task_log_id"] for r in manifest["reports"]
                    if r["uin"] == account["uin"]}
        member_id = account["organization_user_info"]["MemberId"]
        if account["role"] == "Admin":
            member_id = None
        reports, total = _all_reports(admin, member_id)
        ids = [r["TaskLogId"] for r in reports]
        assert total == len(expected), (account["uin"], total)
        assert set(ids) == expected, ids
        assert len(ids) == len(expected), ids
        keys = [(r["Time"], r["TaskLogId"]) for r in reports]
        assert keys == sorted(keys, key=lambda k: (
            tuple(-b for b in k[0].encode()), k[1])), "order"
    own, _ = _all_reports(member)
    uin = manifest["member_credential_uin"]
    assert {r["UIN"] for r in own} == {uin}, "member scope"
    complete = [r for r in own if r["Status"] == 2]
    assert naming.self_account_dir(uin, complete) == next(
        a["self_dir"] for a in manifest["accounts"] if a["uin"] == uin)


def check_paths(emu, admin):
    """Derive every path from API responses alone and compare the manifest."""
    organization = admin.call("DescribeOrganizationUserInfo",
                              {"Filter": {"Limit": 100}})["Data"]
    admin_info = next(i for i in organization if i["Role"] == "Admin")
    members = [{"uin": i["Uin"], "nick_name": i["NickName"]}
               for i in organization if i["Role"] == "Member"]
    account_dirs = naming.account_dirs(
        {"uin": admin_info["Uin"], "nick_name": admin_info["NickName"]},
        members)
    paths = set()
    for info in organization:
        member_id = None if info["Role"] == "Admin" else info["MemberId"]
        reports, _ = _all_reports(admin, member_id, limit=100)
        complete = [r for r in reports if r["Status"] == 2]
        task_dirs = naming.task_dirs(complete)
        for task_id, task_dir in task_dirs.items():
            in_task = [r for r in complete
                       if r["TaskCenterTaskId"] == task_id]
            files = naming.report_files(
                in_task, {r["TaskLogId"]: "" for r in in_task})
            for name in files.values():
                paths.add("/".join((account_dirs[info["Uin"]], task_dir,
                                    name)))
    expected = {r["path"] for r in emu.manifest["reports"]
                if r["path"] is not None}
    assert paths == expected, sorted(paths ^ expected)


def check_urls(emu, admin):
    reports = [r for r in emu.manifest["reports"]
               if r["member_id"] is None]
    ids = [r["task_log_id"] for r in reports] + ["tl-missing"]
    response = admin.call("DescribeTaskLogURL", {
        "Type": 1, "ReportItemKeyList": [{"TaskLogList": ids}]})
    complete = {r["task_log_id"]: r for r in reports if r["status"] == 2}
    got = {item["LogId"]: item for item in response["Data"]}
    assert set(got) == set(complete), sorted(set(got) ^ set(complete))

    state = emu.state
    for task_log_id, report in complete.items():
        url = got[task_log_id]["URL"]
        assert url.startswith(state["store_url"] + "/" + report["object"])
        if report["size"] == 0:
            status, _, body = _get(state, url)
            assert status == 200, status
            assert body == b"", body
            continue
        status, headers, body = _get(state, url, "bytes=0-99")
        assert status == 206, (status, report["object"])
        assert headers["Content-Type"] == "application/pdf", headers
        total = int(headers["Content-Range"].rsplit("/", 1)[1])
        assert total == report["size"], (total, report["size"])
        assert len(body) == min(100, report["size"])

    small = next(r for r in complete.values()
                 if 0 < r["size"] < 400 * 1024)
    status, _, body = _get(state, got[small["task_log_id"]]["URL"])
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == small["sha256"]

    url = got[small["task_log_id"]]["URL"]
    status, _, _ = _get(state, url, method="HEAD")
    assert status == 403, f"HEAD gave {status}"
    status, _, _ = _get(state, url.replace("md5=", "md5=x"))
    assert status == 403, f"a wrong md5 gave {status}"
    status, _, _ = _get(state, url.split("?")[0])
    assert status == 403, f"no signature gave {status}"

    by_task = admin.call("DescribeTaskLogURL", {
        "Type": 0, "ReportTaskIdList": [{
            "AppId": small["app_id"],
            "TaskIdList": [small["task_center_task_id"]]}]})
    expected = {r["task_log_id"] for r in complete.values()
                if r["task_center_task_id"] == small["task_center_task_id"]}
    assert {d["LogId"] for d in by_task["Data"]} == expected

    _expect_error("InvalidParameterValue", admin.call, "DescribeTaskLogURL",
                  {"Type": 1, "ReportItemKeyList": [
                      {"TaskLogList": [f"tl-{i}" for i in range(101)]}]})
    _expect_error("MissingParameter", admin.call, "DescribeTaskLogURL",
                  {"ReportItemKeyList": [{"TaskLogList": ids[:1]}]})
    _expect_error("InvalidParameterValue", admin.call, "DescribeTaskLogURL",
                  {"Type": 2, "ReportItemKeyList": [{"TaskLogList": ids[:1]}]})


def check_member_urls(emu, admin, member):
    uin = emu.manifest["member_credential_uin"]
    mine = [r for r in emu.manifest["reports"]
            if r["uin"] == uin and r["status"] == 2]
    others = [r for r in emu.manifest["reports"]
              if r["uin"] != uin and r["status"] == 2]
    ids = [mine[0]["task_log_id"], others[0]["task_log_id"]]
    response = member.call("DescribeTaskLogURL", {
        "Type": 1, "ReportItemKeyList": [{"TaskLogList": ids}]})
    assert [d["LogId"] for d in response["Data"]] == ids[:1], response
    _expect_error("UnauthorizedOperation", member.call, "DescribeTaskLogURL",
                  {"Type": 1, "MemberId": [mine[0]["member_id"]],
                   "ReportItemKeyList": [{"TaskLogList": ids}]})
    response = admin.call("DescribeTaskLogURL", {
        "Type": 1, "MemberId": [mine[0]["member_id"]],
        "ReportItemKeyList": [{"TaskLogList": ids}]})
    assert [d["LogId"] for d in response["Data"]] == ids[:1], response
    _expect_error("UnauthorizedOperation", admin.call, "DescribeTaskLogList",
                  {"MemberId": ["mem-00000000"]})


def check_tasks(emu, admin):
    response = admin.call("DescribeScanTaskList", {"Filter": {"Limit": 100}})
    uin = next(a["uin"] for a in emu.manifest["accounts"]
               if a["role"] == "Admin")
    expected = {t["task_id"] for t in emu.manifest["tasks"]
                if t["account_uin"] == uin}
    assert {t["TaskId"] for t in response["Data"]} == expected
    assert response["UINList"] == [uin], response["UINList"]


def check_parameters(admin):
    for action in ("DescribeTaskLogList", "DescribeOrganizationUserInfo",
                   "DescribeScanTaskList"):
        _expect_error("InvalidParameterValue", admin.call, action,
                      {"Filter": {"Limit": 101}})
        _expect_error("InvalidParameterValue", admin.call, action,
                      {"Filter": {"Offset": -1}})
        _expect_error("UnknownParameter", admin.call, action, {"Bogus": 1})
    page = admin.call("DescribeTaskLogList", {"Filter": {"Limit": 100}})
    assert len(page["Data"]) == page["TotalCount"], "Limit 100"
    default = admin.call("DescribeTaskLogList", {})
    assert len(default["Data"]) == 10, len(default["Data"])
    error = _expect_error("UnknownParameter", admin.call,
                          "DescribeTaskLogList", {"Filters": []})
    assert "Filters" in error.message


def check_authentication(emu, admin):
    state = emu.state
    body = b"{}"
    action = "DescribeTaskLogList"

    def send(headers, payload=body):
        status, _, response = admin.raw(headers, payload)
        assert status == 200, status
        return response["Response"].get("Error", {}).get("Code")

    headers = admin.signed_headers(action, body)
    assert send(headers) is None

    bad = dict(headers, Authorization=headers["Authorization"][:-1] + (
        "0" if headers["Authorization"][-1] != "0" else "1"))
    assert send(bad) == "AuthFailure.SignatureFailure"
    assert send(headers, b'{ }') == "AuthFailure.SignatureFailure"
    assert send(dict(headers, Authorization="Bearer x")) == (
        "AuthFailure.InvalidAuthorization")

    no_timestamp = dict(headers)
    del no_timestamp["X-TC-Timestamp"]
    assert send(no_timestamp) == "MissingParameter"
    assert send(dict(headers, **{"X-TC-Timestamp": "soon"})) == (
        "InvalidParameter")

    skewed = Client.from_state(state, timestamp_offset=-301)
    error = _expect_error("AuthFailure.SignatureExpire", skewed.call, action,
                          {})
    assert "server time" in error.message, error.message
    skewed.close()
    close_enough = Client.from_state(state, timestamp_offset=-290)
    close_enough.call(action, {})
    close_enough.close()

    stranger = Client(state["api_url"], "AKIDunknown", "x",
                      ca_file=state["ca_file"])
    _expect_error("AuthFailure.SecretIdNotFound", stranger.call, action, {})
    stranger.close()

    wrong_key = Client(state["api_url"],
                       state["credentials"]["admin"]["secret_id"], "wrong",
                       ca_file=state["ca_file"])
    _expect_error("AuthFailure.SignatureFailure", wrong_key.call, action, {})
    wrong_key.close()

    timestamp = int(time.time())
    wrong_date = dict(headers)
    wrong_date["X-TC-Timestamp"] = str(timestamp)
    wrong_date["Authorization"] = headers["Authorization"].replace(
        tc3.utc_date(int(headers["X-TC-Timestamp"])), "2001-01-01")
    assert send(wrong_date) == "AuthFailure.SignatureFailure"

    temporary = Client.from_state(state, "temporary")
    temporary.call(action, {})
    temporary.token = "wrong"
    _expect_error("AuthFailure.TokenFailure", temporary.call, action, {})
    temporary.token = None
    _expect_error("AuthFailure.TokenFailure", temporary.call, action, {})
    temporary.close()

    assert send(dict(headers, **{"X-TC-Version": "2017-03-12"})) == (
        "NoSuchVersion")
    unknown = admin.signed_headers("DescribeNothing", body)
    assert send(unknown) == "InvalidAction"
    array = b"[1]"
    assert send(admin.signed_headers(action, array), array) == (
        "InvalidParameter")


def check_rate_limit(emu, state):
    clients = [Client.from_state(state) for _ in range(8)]
    # Each client opens its connection with a call of another action, so
    # that the 8 calls below are not spread over a second by 8 TLS
    # handshakes on a slow machine, which lets a sixth call through.
    for client in clients:
        client.call("DescribeOrganizationUserInfo", {})
    emu.set_rate_limit(5)
    emu.reset_counts()

    def call(client):
        try:
            client.call("DescribeScanTaskList", {})
            return "ok"
        except CsipError as error:
            return error.code

    time.sleep(1.1)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, clients))
    assert results.count("ok") == 5, results
    assert results.count("RequestLimitExceeded") == 3, results
    assert emu.counts()["DescribeScanTaskList"] == 8, emu.counts()
    time.sleep(1.1)
    assert call(clients[0]) == "ok", "the window did not slide"
    for client in clients:
        client.close()
    emu.set_rate_limit(0)


def check_expiry(emu, admin):
    report = next(r for r in emu.manifest["reports"]
                  if r["status"] == 2 and r["member_id"] is None
                  and r["size"] > 1000)
    emu.set_url_lifetime(2)
    response = admin.call("DescribeTaskLogURL", {
        "Type": 1, "ReportItemKeyList": [{"TaskLogList": [
            report["task_log_id"]]}]})
    url = response["Data"][0]["URL"]
    status, _, _ = _get(emu.state, url, "bytes=0-9")
    assert status == 206, status
    time.sleep(3)
    status, _, _ = _get(emu.state, url, "bytes=0-9")
    assert status == 403, f"an expired URL gave {status}"
    emu.set_url_lifetime(300)


def check_store_log(emu, admin):
    emu.reset_store_log()
    assert emu.store_requests() == []
    report = next(r for r in emu.manifest["reports"]
                  if r["size"] > MIB and r["status"] == 2)
    member_id = report["member_id"]
    params = {"Type": 1, "ReportItemKeyList": [
        {"TaskLogList": [report["task_log_id"]]}]}
    if member_id:
        params["MemberId"] = [member_id]
    url = admin.call("DescribeTaskLogURL", params)["Data"][0]["URL"]
    _get(emu.state, url, "bytes=1048576-1048675")
    entries = emu.store_requests()
    assert entries == [{"method": "GET", "uri": "/" + report["object"],
                        "status": 206, "bytes": 100,
                        "range": "bytes=1048576-1048675"}], entries


def check_control(emu):
    state = emu.state
    context = ssl.create_default_context(cafile=state["ca_file"])

    def control(path, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(state["api_url"] + path, data=data,
                                         method="GET" if data is None
                                         else "POST")
        with urllib.request.urlopen(request, context=context,
                                    timeout=10) as response:
            return json.load(response)

    emu.reset_counts()
    admin = Client.from_state(state)
    admin.call("DescribeTaskLogList", {})
    admin.close()
    assert control("/_emulator/counts") == {"DescribeTaskLogList": 1}
    config = control("/_emulator/config", {"url_lifetime": 7,
                                           "rate_limit": 9})
    assert config["url_lifetime"] == 7, config
    assert config["rate_limit"] == 9, config
    control("/_emulator/config", {"url_lifetime": 300, "rate_limit": 0})
    control("/_emulator/reset", {})
    assert control("/_emulator/counts") == {}

    emu.inject_fault("DescribeTaskLogList", "InternalError", count=1)
    admin = Client.from_state(state)
    _expect_error("InternalError", admin.call, "DescribeTaskLogList", {})
    admin.call("DescribeTaskLogList", {})
    admin.close()


def check_not_found(emu):
    state = emu.state
    context = ssl.create_default_context(cafile=state["ca_file"])
    parts = urllib.parse.urlsplit(state["api_url"])
    connection = http.client.HTTPSConnection(parts.hostname, parts.port,
                                             context=context, timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 404, response.status
    assert response.read() == b"", "a 404 has a body"
    assert response.getheader("Date"), "no Date header"
    connection.close()


def run(workdir):
    # Most checks make calls faster than the real limit allows, so the limit
    # is on only in check_rate_limit.
    emu = Emulator(workdir, rate_limit=0).start()
    try:
        state = emu.state
        admin = Client.from_state(state)
        member = Client.from_state(state, "member")
        checks = [
            ("accounts", lambda: check_accounts(emu, admin, member)),
            ("reports", lambda: check_reports(emu, admin, member)),
            ("paths", lambda: check_paths(emu, admin)),
            ("urls", lambda: check_urls(emu, admin)),
            ("member urls", lambda: check_member_urls(emu, admin, member)),
            ("tasks", lambda: check_tasks(emu, admin)),
            ("parameters", lambda: check_parameters(admin)),
            ("authentication", lambda: check_authentication(emu, admin)),
            ("rate limit", lambda: check_rate_limit(emu, state)),
            ("expiry", lambda: check_expiry(emu, admin)),
            ("store log", lambda: check_store_log(emu, admin)),
            ("control", lambda: check_control(emu)),
            ("not found", lambda: check_not_found(emu)),
        ]
        for name, check in checks:
            check()
            print(f"ok: {name}", flush=True)
        admin.close()
        member.close()
    finally:
        emu.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m emulator.selfcheck")
    parser.add_argument("--dir", help="work directory (default: a new "
                                      "temporary directory)")
    args = parser.parse_args(argv)
    try:
        if args.dir:
            run(args.dir)
        else:
            with tempfile.TemporaryDirectory(prefix="csip-emu-") as workdir:
                run(workdir)
    except AssertionError as error:
        print(f"FAILED: {error!r}", file=sys.stderr)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
