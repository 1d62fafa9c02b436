"""The CSIP API server: TC3-signed JSON over HTTPS, as the real service.

Every call is POST / with the action in X-TC-Action. Errors use the real
envelope with HTTP 200. A control interface under /_emulator/ reads and
resets call counts and changes the URL lifetime, the rate limit and
injected faults.
"""

import base64
import collections
import email.utils
import hashlib
import hmac
import http.server
import json
import logging
import re
import ssl
import threading
import time
import urllib.parse
import uuid

from . import tc3

API_VERSION = "2022-11-21"
MAX_SKEW_SECONDS = 300
MAX_BODY_BYTES = 1 << 20
MAX_PAGE = 100
DEFAULT_PAGE = 10
MAX_URL_IDS = 100

log = logging.getLogger("emulator.api")

_AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/\s]+)/(?P<date>[^/\s]+)"
    r"/(?P<service>[^/\s]+)/tc3_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})")

_PARAMETERS = {
    "DescribeOrganizationUserInfo": {"MemberId", "Filter", "NotSupportCloud"},
    "DescribeTaskLogList": {"MemberId", "Filter"},
    "DescribeTaskLogURL": {"Type", "MemberId", "ReportItemKeyList",
                           "ReportTaskIdList"},
    "DescribeScanTaskList": {"MemberId", "Filter", "Tags"},
}

_FILTER_KEYS = {"Limit", "Offset", "Order", "By", "Filters", "StartTime",
                "EndTime"}


class ApiError(Exception):
    """An error that the API returns in the Response.Error envelope."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Fault:
    """An injected failure for the next count calls of one action.

    With http_status 200 the call returns the error code in the envelope,
    otherwise that HTTP status with body as its body (bytes or text, empty
    by default). delay is in seconds and applies before the response. With
    seconds set, the fault applies to every call in the next seconds
    seconds instead of the next count calls. body_mode replaces a
    successful response body instead: "truncated" sends its first half,
    "invalid" sends text that is not JSON.
    """

    def __init__(self, action, code="InternalError", count=1,
                 http_status=200, delay=0.0, message=None, body=None,
                 seconds=None, body_mode=None):
        self.action = action
        self.code = code
        self.count = int(count)
        self.http_status = int(http_status)
        self.delay = float(delay)
        self.message = message or f"injected fault {code}"
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.body = body
        self.until = (time.monotonic() + float(seconds)
                      if seconds is not None else None)
        self.body_mode = body_mode

    def expired(self, now):
        if self.until is not None:
            return now >= self.until
        return self.count <= 0


HTML_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
            b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
            b"</body>\r\n</html>\r\n")


def secure_link(store_url, object_path, secret, expires):
    """Return a URL that nginx's secure_link accepts until expires.

    The md5 argument is base64url without padding of the binary MD5 of
    "<expires><uri> <secret>", as secure_link_md5 computes it.
    """
    uri = "/" + object_path
    digest = hashlib.md5(f"{expires}{uri} {secret}".encode("utf-8")).digest()
    md5 = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    return f"{store_url}{uri}?md5={md5}&expires={expires}"


class Credential:
    """A SecretId with its key, the account it acts for, and its token."""

    def __init__(self, secret_id, secret_key, uin, token=None):
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.uin = uin
        self.token = token


class Directory:
    """The accounts, tasks and reports of the manifest, indexed for calls."""

    def __init__(self, manifest):
        self.accounts = manifest["accounts"]
        self.admin = next(a for a in self.accounts if a["role"] == "Admin")
        self.by_uin = {a["uin"]: a for a in self.accounts}
        self.by_member_id = {a["organization_user_info"]["MemberId"]: a
                             for a in self.accounts}
        self.reports = collections.defaultdict(list)
        self.objects = {}
        for report in manifest["reports"]:
            info = report["task_log_info"]
            self.reports[report["uin"]].append(info)
            self.objects[(report["uin"], report["task_log_id"])] = report
        for infos in self.reports.values():
            infos.sort(key=_report_order)
        self.tasks = collections.defaultdict(list)
        for task in manifest["tasks"]:
            self.tasks[task["account_uin"]].append(task["scan_task_info"])

    def is_admin(self, uin):
        return uin == self.admin["uin"]


def _report_order(info):
    """Sort key: Time descending, then TaskLogId ascending."""
    descending_time = tuple(-b for b in info["Time"].encode("utf-8"))
    return (descending_time, info["TaskLogId"].encode("utf-8"))


class ApiService:
    """The state of the API: credentials, counts, limits and the actions.

    All methods are safe to call from several threads.
    """

    def __init__(self, manifest, credentials, link_secret, url_lifetime=300,
                 rate_limit=20):
        self.directory = Directory(manifest)
        self.credentials = {c.secret_id: c for c in credentials}
        self.link_secret = link_secret
        self.store_url = None
        self.store_log_reset = None
        self.store_requests = None
        self._lock = threading.Lock()
        self._counts = collections.Counter()
        self._windows = collections.defaultdict(collections.deque)
        self._faults = []
        self.url_lifetime = int(url_lifetime)
        self.rate_limit = int(rate_limit)
        # Seconds the server clock runs ahead of the real one.
        self.clock_offset = 0.0
        # Per action: [(monotonic time, accepted)] of calls past the
        # signature check, for rate assertions.
        self._call_log = collections.defaultdict(list)
        # Quirks of the list actions, see set_list_quirks().
        self.list_quirks = {}
        # TaskLogId -> bytes sent raw as that report's TaskLogName.
        self.raw_names = {}
        # TaskLogId -> {field: value} merged into a report's TaskLogInfo;
        # a value of DELETE removes the field.
        self.report_overrides = {}
        self._revealed = set()

    # ------------------------------------------------------- control

    def counts(self):
        with self._lock:
            return dict(self._counts)

    def reset_counts(self):
        with self._lock:
            self._counts.clear()
            self._call_log.clear()

    def call_log(self):
        """Return {action: [(monotonic seconds, accepted)]} since the last
        reset, for the calls that passed the signature check."""
        with self._lock:
            return {action: list(calls)
                    for action, calls in self._call_log.items()}

    def now(self):
        """Return the server's clock in Unix seconds."""
        return time.time() + self.clock_offset

    def configure(self, url_lifetime=None, rate_limit=None):
        with self._lock:
            if url_lifetime is not None:
                self.url_lifetime = int(url_lifetime)
            if rate_limit is not None:
                self.rate_limit = int(rate_limit)
                self._windows.clear()

    def add_fault(self, fault):
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    def config(self):
        with self._lock:
            return {"url_lifetime": self.url_lifetime,
                    "rate_limit": self.rate_limit,
                    "faults": [{"action": f.action, "code": f.code,
                                "count": f.count,
                                "http_status": f.http_status,
                                "delay": f.delay} for f in self._faults]}

    def _take_fault(self, action):
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if not f.expired(now)]
            for fault in self._faults:
                if fault.action in (action, "*"):
                    if fault.until is None:
                        fault.count -= 1
                    return fault
        return None

    # ------------------------------------------------------- requests

    def count(self, action):
        if action:
            with self._lock:
                self._counts[action] += 1

    def authenticate(self, headers, body):
        """Check the signature headers and return the Credential.

        headers maps lowercase names to values. Raises ApiError in the
        order the real service checks: header format, timestamp, SecretId,
        credential scope, signature, token, version and action.
        """
        match = _AUTHORIZATION.fullmatch(headers.get("authorization", ""))
        if match is None:
            raise ApiError("AuthFailure.InvalidAuthorization",
                           "The Authorization header is missing or invalid.")
        signed_headers = match["signed"]
        names = signed_headers.split(";")
        if "content-type" not in names or "host" not in names:
            raise ApiError("AuthFailure.InvalidAuthorization",
                           "SignedHeaders must contain content-type and host.")

        raw_timestamp = headers.get("x-tc-timestamp")
        if raw_timestamp is None:
            raise ApiError("MissingParameter",
                           "The header X-TC-Timestamp is missing.")
        if not re.fullmatch(r"[0-9]{1,12}", raw_timestamp.strip()):
            raise ApiError("InvalidParameter",
                           "The header X-TC-Timestamp is not an integer.")
        timestamp = int(raw_timestamp)
        now = int(self.now())
        if abs(now - timestamp) > MAX_SKEW_SECONDS:
            raise ApiError(
                "AuthFailure.SignatureExpire",
                f"The request timestamp {timestamp} differs from the server "
                f"time {now} by more than {MAX_SKEW_SECONDS} seconds. Check "
                f"the local clock.")

        credential = self.credentials.get(match["id"])
        if credential is None:
            raise ApiError("AuthFailure.SecretIdNotFound",
                           "The SecretId is not found.")

        if (match["date"] != tc3.utc_date(timestamp)
                or match["service"] != tc3.SERVICE):
            raise ApiError(
                "AuthFailure.SignatureFailure",
                "The credential scope does not match the UTC date of "
                "X-TC-Timestamp and the service csip.")

        expected = tc3.signature(credential.secret_key, timestamp, headers,
                                 body, signed_headers=signed_headers,
                                 date=match["date"])
        if not hmac.compare_digest(expected, match["sig"]):
            raise ApiError("AuthFailure.SignatureFailure",
                           "The provided credentials could not be validated. "
                           "Check the signature.")

        if credential.token is not None:
            token = headers.get("x-tc-token", "")
            if not hmac.compare_digest(token.encode("utf-8"),
                                       credential.token.encode("utf-8")):
                raise ApiError("AuthFailure.TokenFailure",
                               "The session token is missing or invalid.")

        version = headers.get("x-tc-version")
        if version is None:
            raise ApiError("MissingParameter",
                           "The header X-TC-Version is missing.")
        if version != API_VERSION:
            raise ApiError("NoSuchVersion",
                           f"The API version {version!r} does not exist. "
                           f"Use {API_VERSION}.")
        action = headers.get("x-tc-action")
        if action is None:
            raise ApiError("MissingParameter",
                           "The header X-TC-Action is missing.")
        if action not in _PARAMETERS:
            raise ApiError("InvalidAction",
                           f"The action {action!r} does not exist.")
        return credential

    def _check_rate(self, action):
        now = time.monotonic()
        with self._lock:
            if self.rate_limit <= 0:
                self._call_log[action].append((now, True))
                return
            window = self._windows[action]
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.rate_limit:
                self._call_log[action].append((now, False))
                raise ApiError(
                    "RequestLimitExceeded",
                    f"The request rate of {action} exceeds "
                    f"{self.rate_limit} per second.")
            window.append(now)
            self._call_log[action].append((now, True))

    def handle(self, headers, body):
        """Run one API call and return (http_status, response object,
        body bytes or None).

        The body, when not None, is sent as it is instead of the encoded
        response object. A bare HTTP error status has neither.
        """
        action = headers.get("x-tc-action")
        self.count(action)
        request_id = str(uuid.uuid4())
        uin = None
        try:
            credential = self.authenticate(headers, body)
            uin = credential.uin
            self._check_rate(action)
            fault = self._take_fault(action)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.http_status != 200:
                    log.info("%s %s HTTP %d (injected)", action, uin,
                             fault.http_status)
                    return fault.http_status, None, fault.body
                if fault.body_mode is None:
                    raise ApiError(fault.code, fault.message)
            params = _parse_body(body, action)
            result = getattr(self, "_" + action)(uin, params)
        except ApiError as error:
            log.info("%s %s %s", action, uin or "-", error.code)
            return 200, _error_envelope(error, request_id), None
        except Exception:
            # A bug in the emulator still gets a well-formed response, so the
            # client under test sees InternalError, not a dropped connection.
            log.exception("%s %s failed inside the emulator", action, uin)
            return 200, _error_envelope(
                ApiError("InternalError", "The emulator failed."),
                request_id), None
        log.info("%s %s OK", action, uin)
        result["RequestId"] = request_id
        payload = {"Response": result}
        raw = self._encode_raw(payload)
        if fault is not None and fault.body_mode is not None:
            encoded = raw or json.dumps(payload).encode("utf-8")
            if fault.body_mode == "truncated":
                raw = encoded[:len(encoded) // 2]
            else:
                raw = b"this is not JSON {" + encoded[:40]
        return 200, payload, raw

    def _encode_raw(self, payload):
        """Return the response body with raw_names spliced in, or None."""
        data = payload["Response"].get("Data")
        if not self.raw_names or not isinstance(data, list):
            return None
        markers = {}
        # The items are the directory's own dicts: change copies only.
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                continue
            raw = self.raw_names.get(item.get("TaskLogId"))
            if raw is not None:
                marker = f"@@raw-name-{len(markers)}@@"
                markers[marker] = raw
                data[index] = dict(item, TaskLogName=marker)
        if not markers:
            return None
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        for marker, raw in markers.items():
            escaped = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            body = body.replace(marker.encode("ascii"), escaped)
        return body

    # ------------------------------------------------------- scope

    def _scope(self, uin, params):
        """Return the accounts a call applies to, from MemberId."""
        member_ids = params.get("MemberId")
        if member_ids is None or member_ids == []:
            return [self.directory.by_uin[uin]]
        if not self.directory.is_admin(uin):
            raise ApiError("UnauthorizedOperation",
                           "Only the group administrator may use MemberId.")
        accounts = []
        for member_id in member_ids:
            account = self.directory.by_member_id.get(member_id)
            if account is None:
                raise ApiError("UnauthorizedOperation",
                               f"The member {member_id} is not in the "
                               f"caller's group.")
            if account not in accounts:
                accounts.append(account)
        return accounts

    # ------------------------------------------------------- actions

    def _DescribeOrganizationUserInfo(self, uin, params):
        _check_bool(params, "NotSupportCloud")
        limit, offset = _page(params)
        if not self.directory.is_admin(uin):
            return {"TotalCount": 0, "Data": []}
        requested = params.get("MemberId") or None
        items = [a["organization_user_info"] for a in self.directory.accounts
                 if requested is None
                 or a["organization_user_info"]["MemberId"] in requested]
        return self._quirky_page("DescribeOrganizationUserInfo", items,
                                 limit, offset, {})

    def _DescribeTaskLogList(self, uin, params):
        limit, offset = _page(params)
        accounts = self._scope(uin, params)
        reports = []
        for account in accounts:
            reports.extend(self.directory.reports[account["uin"]])
        reports.sort(key=_report_order)
        complete = sum(1 for r in reports if r["Status"] == 2)
        templates = {r["TemplateId"] for r in reports}
        with self._lock:
            overrides = dict(self.report_overrides)
        if overrides:
            reports = [_override(r, overrides.get(r["TaskLogId"]))
                       for r in reports]
        return self._quirky_page(
            "DescribeTaskLogList", reports, limit, offset,
            {"NotViewNumber": complete // 3,
             "ReportTemplateNumber": len(templates)})

    def set_list_quirks(self, action, quirks):
        with self._lock:
            self.list_quirks[action] = dict(quirks)
            self._revealed.clear()

    def _quirky_page(self, action, items, limit, offset, extra):
        """Return one page of items, bent by the action's list quirks.

        The quirks are:
        page_limit: the maximum Limit served.
        total_extra: added to TotalCount.
        total_as: "string" or "real", the JSON type of TotalCount.
        empty_from: the offset from which pages come back empty.
        insert_after_first_page: a TaskLogId hidden until a page at an
        offset above 0 is served, so the list shifts by one between pages.
        """
        with self._lock:
            quirks = dict(self.list_quirks.get(action, {}))
            hidden = quirks.get("insert_after_first_page")
            if hidden is not None and offset > 0:
                self._revealed.add(hidden)
            if hidden in self._revealed:
                hidden = None
        if hidden is not None:
            items = [i for i in items if i.get("TaskLogId") != hidden]
        if quirks.get("page_limit"):
            limit = min(limit, int(quirks["page_limit"]))
        page = items[offset:offset + limit]
        if "empty_from" in quirks and offset >= int(quirks["empty_from"]):
            page = []
        total = len(items) + int(quirks.get("total_extra", 0))
        if quirks.get("total_as") == "string":
            total = str(total)
        elif quirks.get("total_as") == "real":
            total = float(total)
        result = {"TotalCount": total, "Data": page}
        result.update(extra)
        return result

    def _DescribeTaskLogURL(self, uin, params):
        if "Type" not in params:
            raise ApiError("MissingParameter",
                           "The parameter Type is missing.")
        kind = params["Type"]
        if not _is_int(kind) or kind not in (0, 1):
            raise ApiError("InvalidParameterValue",
                           f"The parameter Type must be 0 or 1, not {kind!r}.")
        report_ids = _report_item_keys(params.get("ReportItemKeyList"))
        task_keys = _report_task_ids(params.get("ReportTaskIdList"))
        requested = len(report_ids) + sum(len(ids) for _, ids in task_keys)
        if requested > MAX_URL_IDS:
            raise ApiError("InvalidParameterValue",
                           f"At most {MAX_URL_IDS} ids are allowed in one "
                           f"call, got {requested}.")
        accounts = self._scope(uin, params)

        chosen = []
        for report_id in report_ids:
            for account in accounts:
                report = self.directory.objects.get((account["uin"],
                                                     report_id))
                if report is not None:
                    chosen.append(report)
        for app_id, task_ids in task_keys:
            for account in accounts:
                if account["app_id"] != app_id:
                    continue
                for info in self.directory.reports[account["uin"]]:
                    if info["TaskCenterTaskId"] in task_ids:
                        chosen.append(self.directory.objects[
                            (account["uin"], info["TaskLogId"])])

        with self._lock:
            lifetime = self.url_lifetime
        expires = int(time.time()) + lifetime
        data = []
        seen = set()
        for report in chosen:
            if report["status"] != 2 or report["task_log_id"] in seen:
                continue
            seen.add(report["task_log_id"])
            data.append({
                "URL": secure_link(self.store_url, report["object"],
                                   self.link_secret, expires),
                "LogId": report["task_log_id"],
                "TaskLogName": report["task_log_name"],
                "AppId": report["app_id"],
            })
        return {"Data": data}

    def _DescribeScanTaskList(self, uin, params):
        limit, offset = _page(params)
        tags = params.get("Tags")
        if tags is not None and not isinstance(tags, list):
            raise ApiError("InvalidParameter", "Tags must be an array.")
        accounts = self._scope(uin, params)
        tasks = []
        for account in accounts:
            tasks.extend(self.directory.tasks[account["uin"]])
        tasks.sort(key=lambda t: (tuple(-b for b in t["InsertTime"].encode()),
                                  t["TaskId"]))
        uins = []
        for task in tasks:
            if task["UIN"] not in uins:
                uins.append(task["UIN"])
        return {"TotalCount": len(tasks),
                "Data": tasks[offset:offset + limit],
                "UINList": uins}


# ----------------------------------------------------------- parameters

DELETE = object()


def _override(info, changes):
    """Return a copy of a TaskLogInfo with changes applied."""
    if not changes:
        return info
    changed = dict(info)
    for name, value in changes.items():
        if value is DELETE:
            changed.pop(name, None)
        else:
            changed[name] = value
    return changed


def _error_envelope(error, request_id):
    return {"Response": {
        "Error": {"Code": error.code, "Message": error.message},
        "RequestId": request_id}}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_body(body, action):
    try:
        params = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError("InvalidParameter",
                       "The request body is not valid JSON.") from None
    if not isinstance(params, dict):
        raise ApiError("InvalidParameter",
                       "The request body must be a JSON object.")
    for name in params:
        if name not in _PARAMETERS[action]:
            raise ApiError("UnknownParameter",
                           f"The parameter {name} is not recognized.")
    member_ids = params.get("MemberId")
    if member_ids is not None and not (
            isinstance(member_ids, list)
            and all(isinstance(m, str) for m in member_ids)):
        raise ApiError("InvalidParameter",
                       "MemberId must be an array of strings.")
    return params


def _check_bool(params, name):
    value = params.get(name)
    if value is not None and not isinstance(value, bool):
        raise ApiError("InvalidParameter", f"{name} must be a boolean.")


def _page(params):
    """Return (limit, offset) from params["Filter"]."""
    page_filter = params.get("Filter")
    if page_filter is None:
        return DEFAULT_PAGE, 0
    if not isinstance(page_filter, dict):
        raise ApiError("InvalidParameter", "Filter must be an object.")
    for name in page_filter:
        if name not in _FILTER_KEYS:
            raise ApiError("UnknownParameter",
                           f"The parameter Filter.{name} is not recognized.")
    limit = page_filter.get("Limit", DEFAULT_PAGE)
    offset = page_filter.get("Offset", 0)
    if not _is_int(limit):
        raise ApiError("InvalidParameter", "Filter.Limit must be an integer.")
    if not _is_int(offset):
        raise ApiError("InvalidParameter",
                       "Filter.Offset must be an integer.")
    if limit < 0 or limit > MAX_PAGE:
        raise ApiError("InvalidParameterValue",
                       f"Filter.Limit must be from 0 to {MAX_PAGE}, "
                       f"not {limit}.")
    if offset < 0:
        raise ApiError("InvalidParameterValue",
                       f"Filter.Offset must not be negative, not {offset}.")
    if limit == 0:
        limit = DEFAULT_PAGE
    return limit, offset


def _report_item_keys(value):
    """Return the report ids of ReportItemKeyList in request order."""
    if value is None:
        return []
    error = ApiError("InvalidParameter",
                     "ReportItemKeyList must be an array of objects with a "
                     "TaskLogList array of strings.")
    if not isinstance(value, list):
        raise error
    ids = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"TaskLogList"}:
            raise error
        task_logs = item.get("TaskLogList", [])
        if not isinstance(task_logs, list) or not all(
                isinstance(t, str) for t in task_logs):
            raise error
        ids.extend(task_logs)
    return ids


def _report_task_ids(value):
    """Return [(AppId, set of task ids)] from ReportTaskIdList."""
    if value is None:
        return []
    error = ApiError("InvalidParameter",
                     "ReportTaskIdList must be an array of objects with an "
                     "AppId string and a TaskIdList array of strings.")
    if not isinstance(value, list):
        raise error
    keys = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"AppId", "TaskIdList"}:
            raise error
        app_id = item.get("AppId")
        task_ids = item.get("TaskIdList", [])
        if not isinstance(app_id, str) or not isinstance(task_ids, list) or \
                not all(isinstance(t, str) for t in task_ids):
            raise error
        keys.append((app_id, set(task_ids)))
    return keys


# ----------------------------------------------------------- HTTP server

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "csip-emulator/1"
    sys_version = ""
    timeout = 60
    # Headers and body go out in separate writes, and Nagle's algorithm
    # would hold the body until the client's delayed ACK.
    disable_nagle_algorithm = True

    def setup(self):
        # The TLS handshake runs here, in the connection's own thread, so a
        # slow client cannot stall the accept loop.
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)

    def date_time_string(self, timestamp=None):
        # The Date header follows the server's clock, offset included.
        return email.utils.formatdate(self.server.service.now(),
                                      usegmt=True)

    def _send(self, status, payload=None, raw=None):
        body = b""
        if raw is not None:
            body = raw
        elif payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        if raw is not None and status != 200:
            self.send_header("Content-Type", "text/html")
        elif payload is not None or raw is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return b""
        length = int(length)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        body = self._read_body()
        if body is None:
            self._send(413)
            return
        service = self.server.service
        if path == "/":
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, raw = service.handle(headers, body)
            self._send(status, payload, raw)
        elif path == "/_emulator/reset":
            options = _control_options(body)
            service.reset_counts()
            if options.get("store_log") and service.store_log_reset:
                service.store_log_reset()
            self._send(200, {"counts": service.counts()})
        elif path == "/_emulator/config":
            self._configure(_control_options(body))
        else:
            self._send(404)

    def _configure(self, options):
        service = self.server.service
        try:
            service.configure(options.get("url_lifetime"),
                              options.get("rate_limit"))
            if options.get("clear_faults"):
                service.clear_faults()
            fault = options.get("fault")
            if fault is not None:
                service.add_fault(Fault(**fault))
        except (TypeError, ValueError) as error:
            log.warning("invalid control request %r: %s", options, error)
            self._send(400, {"error": str(error)})
            return
        self._send(200, service.config())

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        service = self.server.service
        if path == "/_emulator/counts":
            self._send(200, service.counts())
        elif path == "/_emulator/config":
            self._send(200, service.config())
        elif path == "/_emulator/store_requests" and service.store_requests:
            self._send(200, service.store_requests())
        else:
            self._send(404)

    def _not_found(self):
        self._read_body()
        self._send(404)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_found

    def do_HEAD(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _control_options(body):
    if not body.strip():
        return {}
    try:
        options = json.loads(body)
    except ValueError:
        return {}
    return options if isinstance(options, dict) else {}


class ApiServer(http.server.ThreadingHTTPServer):
    """The HTTPS server for one ApiService, bound to an IPv4 address,
    127.0.0.1 by default."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, service, cert_file, key_file, port=0,
                 address="127.0.0.1"):
        super().__init__((address, port), _Handler)
        self.service = service
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)
        self._thread = None

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"https://{host}:{port}"

    def handle_error(self, request, client_address):
        # TLS handshakes that fail and clients that hang up are normal in
        # tests, so they are logged instead of printed with a traceback.
        log.debug("connection from %s failed", client_address, exc_info=True)

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever,
                                        name="csip-api", daemon=True)
        self._thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
