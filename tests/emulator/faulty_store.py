"""A scriptable object store that misbehaves on request, for fault tests.

FaultyStore serves the emulator's report objects over HTTPS by URL path
(/r/...), honours Range like nginx, rejects HEAD with 403 and rejects a URL
whose expires argument has passed with 403. Faults are added as rules, for
one object path or for every path, for the next count requests or for a time
window. It listens on two ports of 127.0.0.1, so that a redirect can lead to
another origin, and records every request for assertions.

Faults (add(kind, ...)), with their keyword parameters:

- ignore_range: 200 with the whole body, whatever the Range.
- wrong_content_range: 206 whose Content-Range and body start shift bytes
  (default 1) after the requested offset.
- short_body: the right headers, then after bytes bytes (default 65536) the
  connection is closed.
- reset: after bytes bytes the connection is reset (TCP RST, SO_LINGER 0).
- stall: after bytes bytes nothing is sent for seconds seconds (default
  3600, cut short by stop()), then the connection is closed.
- slow: the body goes out in chunks of chunk bytes (default 65536), with
  delay seconds (default 0.5) before each.
- strict_416: a range that reaches past the end gets 416 with
  "Content-Range: bytes */N", as some stores send. Requests inside the
  object are served and do not use up count.
- redirect: status (default 302) to the same path and query on the other
  port, or to location when given.
- redirect_loop: status (default 302) to the same URL.
- redirect_no_location: status (default 302) without a Location header.
- gzip: 200 with "Content-Encoding: gzip" and the gzip of the whole object.
- status: an empty response with status (default 500).
- change: from the path's request number from_request (default 1, counted
  over every request of the path since start or reset_log()) on, a second
  version of the object is served, with other bytes, size and ETag (see
  changed_content()).
"""

import email.utils
import gzip
import hashlib
import http.server
import re
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from pathlib import Path

CHUNK_SIZE = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
# Appended to an object to make its second version for the change fault.
CHANGE_SUFFIX = b"\n% csipfs test: second version of this object\n"


class Rule:
    """One scripted fault: kind and its parameters, for path (None for
    every path), for count requests (None for no limit) until deadline (a
    time.monotonic() value, None for no limit)."""

    def __init__(self, kind, path, count, deadline, params):
        self.kind = kind
        self.path = path
        self.count = count
        self.deadline = deadline
        self.params = params

    def active(self, path, now):
        if self.path is not None and self.path != path:
            return False
        if self.count is not None and self.count <= 0:
            return False
        return self.deadline is None or now < self.deadline


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faulty-store"
    sys_version = ""

    def log_message(self, format, *args):
        pass

    def do_HEAD(self):
        self.server.store.record(self, "HEAD", 403)
        self._send_empty(403)

    def do_GET(self):
        self.server.store.serve(self)

    def _send_empty(self, status, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store, context):
        self.store = store
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):
        sock, address = self.socket.accept()
        sock.settimeout(30)
        return self.context.wrap_socket(sock, server_side=True), address

    def handle_error(self, request, client_address):
        # Clients that csipfs cancels or resets are expected here.
        pass


class FaultyStore:
    """The scriptable store. objects_dir is the emulator's objects
    directory; cert_file and key_file are the server certificate and key
    that the emulator's CA signed."""

    def __init__(self, objects_dir, cert_file, key_file):
        self.objects_dir = Path(objects_dir).resolve()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(cert_file), str(key_file))
        self._lock = threading.Lock()
        self._rules = []
        self._log = []
        self._path_counts = {}
        self._stopping = threading.Event()
        self._servers = []
        self._threads = []

    @classmethod
    def for_emulator(cls, emulator):
        """Make a store with the objects and certificate of emulator."""
        pki_dir = Path(emulator.state["ca_file"]).parent
        return cls(emulator.state["objects_dir"], pki_dir / "server.pem",
                   pki_dir / "server.key")

    def start(self):
        for _ in range(2):
            server = _Server(self, self._context)
            thread = threading.Thread(target=server.serve_forever,
                                      kwargs={"poll_interval": 0.1},
                                      daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self):
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers = []
        self._threads = []

    @property
    def url(self):
        return f"https://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def other_url(self):
        """The second port, a different origin, for redirects."""
        return f"https://127.0.0.1:{self._servers[1].server_address[1]}"

    # Scripting --------------------------------------------------------

    def add(self, kind, path=None, count=None, seconds=None, **params):
        """Add a fault rule; path is a URL path such as "/r/1/x.pdf"."""
        deadline = None if seconds is None else time.monotonic() + seconds
        with self._lock:
            self._rules.append(Rule(kind, path, count, deadline, params))

    def clear(self):
        with self._lock:
            self._rules = []

    def requests(self, path=None):
        """Return the recorded requests as dicts: method, path, range (None
        if absent), status, port, accept_encoding and time."""
        with self._lock:
            return [dict(r) for r in self._log
                    if path is None or r["path"] == path]

    def count(self, path=None, method="GET"):
        return len([r for r in self.requests(path) if r["method"] == method])

    def reset_log(self):
        with self._lock:
            self._log = []
            self._path_counts = {}

    def content(self, path):
        return (self.objects_dir / path.lstrip("/")).read_bytes()

    def changed_content(self, path):
        """The second version of the object at path, for the change fault."""
        return self.content(path) + CHANGE_SUFFIX

    # Serving ----------------------------------------------------------

    def record(self, handler, method, status, path=None):
        if path is None:
            path = urllib.parse.urlsplit(handler.path).path
        entry = {
            "method": method,
            "path": path,
            "range": handler.headers.get("Range"),
            "accept_encoding": handler.headers.get("Accept-Encoding"),
            "status": status,
            "port": handler.server.server_address[1],
            "time": time.monotonic(),
        }
        with self._lock:
            self._log.append(entry)

    def _take_rule(self, path, port, byte_range, size):
        """Return the rule that applies to this request and use it up.
        Redirect rules apply only on the first port, so that a redirect to
        the other port is served there."""
        now = time.monotonic()
        other_port = self._servers[1].server_address[1]
        with self._lock:
            for rule in self._rules:
                if rule.kind == "change" or not rule.active(path, now):
                    continue
                if rule.kind.startswith("redirect") and port == other_port:
                    continue
                if rule.kind == "strict_416" and (
                        byte_range is None or byte_range[1] < size):
                    continue
                if rule.count is not None:
                    rule.count -= 1
                return rule
        return None

    def _is_changed(self, path, number):
        now = time.monotonic()
        with self._lock:
            return any(rule.kind == "change" and rule.active(path, now)
                       and number >= rule.params.get("from_request", 1)
                       for rule in self._rules)

    def serve(self, handler):
        split = urllib.parse.urlsplit(handler.path)
        path = split.path
        with self._lock:
            number = self._path_counts.get(path, 0) + 1
            self._path_counts[path] = number
        query = urllib.parse.parse_qs(split.query)
        expires = query.get("expires", [None])[0]
        if expires is not None and expires.isdigit() and \
                int(expires) < time.time():
            self.record(handler, "GET", 403, path)
            handler._send_empty(403)
            return

        file_path = (self.objects_dir / path.lstrip("/")).resolve()
        if not path.startswith("/r/") or \
                self.objects_dir not in file_path.parents or \
                not file_path.is_file():
            self.record(handler, "GET", 404, path)
            handler._send_empty(404)
            return
        if self._is_changed(path, number):
            body = self.changed_content(path)
            etag = '"changed-' + hashlib.sha256(body).hexdigest()[:16] + '"'
        else:
            body = file_path.read_bytes()
            stat = file_path.stat()
            etag = f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'
        size = len(body)

        byte_range = None
        header = handler.headers.get("Range")
        match = _RANGE.match(header) if header else None
        if match:
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) else size - 1
            byte_range = (first, last)

        rule = self._take_rule(path, handler.server.server_address[1],
                               byte_range, size)
        kind = rule.kind if rule else None
        params = rule.params if rule else {}
        common = [("ETag", etag), ("Content-Type", "application/pdf"),
                  ("Last-Modified", email.utils.formatdate(usegmt=True)),
                  ("Accept-Ranges", "bytes")]

        if kind == "status":
            status = params.get("status", 500)
            self.record(handler, "GET", status, path)
            handler._send_empty(status)
            return
        if kind in ("redirect", "redirect_loop", "redirect_no_location"):
            status = params.get("status", 302)
            headers = []
            if kind == "redirect":
                target = params.get("location") or (
                    self.other_url + handler.path)
                headers.append(("Location", target))
            elif kind == "redirect_loop":
                port = handler.server.server_address[1]
                headers.append(("Location",
                                f"https://127.0.0.1:{port}{handler.path}"))
            self.record(handler, "GET", status, path)
            handler._send_empty(status, headers)
            return
        if kind == "gzip":
            encoded = gzip.compress(body)
            self.record(handler, "GET", 200, path)
            handler.send_response(200)
            for name, value in common:
                handler.send_header(name, value)
            handler.send_header("Content-Encoding", "gzip")
            handler.send_header("Content-Length", str(len(encoded)))
            handler.end_headers()
            self._send_body(handler, encoded, None, {})
            return

        if byte_range is not None and kind != "ignore_range":
            first, last = byte_range
            if first >= size or kind == "strict_416":
                self.record(handler, "GET", 416, path)
                handler._send_empty(416,
                                    [("Content-Range", f"bytes */{size}")])
                return
            last = min(last, size - 1)
            if kind == "wrong_content_range":
                shift = params.get("shift", 1)
                first = min(first + shift, size - 1)
            part = body[first:last + 1]
            status = 206
            headers = common + [
                ("Content-Range", f"bytes {first}-{last}/{size}")]
        else:
            part = body
            status = 200
            headers = list(common)
        self.record(handler, "GET", status, path)
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(part)))
        handler.end_headers()
        self._send_body(handler, part, kind, params)

    def _send_body(self, handler, data, kind, params):
        limit = params.get("bytes", CHUNK_SIZE)
        if kind in ("short_body", "reset", "stall"):
            handler.wfile.write(data[:limit])
            handler.close_connection = True
            if kind == "reset":
                handler.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
                handler.connection.close()
            elif kind == "stall":
                self._stopping.wait(params.get("seconds", 3600))
            return
        chunk = params.get("chunk", CHUNK_SIZE) if kind == "slow" \
            else CHUNK_SIZE
        for start in range(0, len(data), chunk):
            if kind == "slow" and self._stopping.wait(
                    params.get("delay", 0.5)):
                handler.close_connection = True
                return
            handler.wfile.write(data[start:start + chunk])
