"""The object store: nginx serving the report objects behind secure links.

nginx runs as a child process with its configuration, pid file, logs and
temporary directories under workdir/nginx/. A URL is valid when its md5 and
expires arguments match secure_link_md5 and expires lies in the future.
Expired or wrong links get 403, as from real object storage.

On request nginx also serves the same objects without secure_link under
/plain/, with directory listings, for clients that need a plain HTTP tree
(httpdirfs and rclone in the benchmark). Every other path gets 404.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

NGINX = "/usr/sbin/nginx"
START_ATTEMPTS = 5
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_CONFIG = """\
{user}worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    types {{
        application/pdf pdf;
    }}
    default_type application/pdf;

    log_format csip "$request_method\\t$uri\\t$status\\t$body_bytes_sent\\t$http_range";
    access_log {prefix}/access.log csip;

    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;

    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 10000;
    server_tokens off;

    server {{
        listen {address}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:csip:1m;

        location /r/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {secret}";
            if ($secure_link = "") {{
                return 403;
            }}
            if ($secure_link = "0") {{
                return 403;
            }}
            # Links are signed for GET, so HEAD is rejected as object
            # storage commonly does.
            if ($request_method = HEAD) {{
                return 403;
            }}
            root {objects};
        }}
{plain}
        location / {{
            return 404;
        }}
    }}
}}
"""


_PLAIN_LOCATION = """
        # The objects without signed links, with listings that show exact
        # sizes, for HTTP clients that browse a directory tree. httpdirfs
        # requests the root without its trailing slash.
        location = /plain {{
            return 301 /plain/;
        }}

        location /plain/ {{
            alias {objects}/;
            autoindex on;
            autoindex_exact_size on;
        }}
"""


def free_port(address="127.0.0.1"):
    """Return a TCP port on the IPv4 address that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class Store:
    """An nginx process that serves objects_dir over HTTPS.

    address is the IPv4 address nginx listens on. plain_listing adds the
    /plain/ location.
    """

    def __init__(self, workdir, objects_dir, cert_file, key_file, secret,
                 address="127.0.0.1", plain_listing=False):
        self.prefix = Path(workdir) / "nginx"
        self.objects_dir = Path(objects_dir)
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.secret = secret
        self.address = address
        self.plain_listing = plain_listing
        self.access_log = self.prefix / "access.log"
        self.error_log = self.prefix / "error.log"
        self.stderr_log = self.prefix / "stderr.log"
        self.config_file = self.prefix / "nginx.conf"
        self.port = None
        self.process = None

    @property
    def url(self):
        return f"https://{self.address}:{self.port}"

    @property
    def plain_url(self):
        """The URL of the /plain/ tree, or None when it is not served."""
        if not self.plain_listing:
            return None
        return self.url + "/plain/"

    def _write_config(self, port):
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
        # nginx started by root switches its workers to "nobody", which may
        # not read the workdir, so the workers stay root.
        user = "user root;\n" if os.geteuid() == 0 else ""
        objects = self.objects_dir.resolve()
        plain = (_PLAIN_LOCATION.format(objects=objects)
                 if self.plain_listing else "")
        self.config_file.write_text(_CONFIG.format(
            user=user, prefix=self.prefix, address=self.address, port=port,
            cert=self.cert_file.resolve(), key=self.key_file.resolve(),
            secret=self.secret, objects=objects, plain=plain))

    def start(self):
        """Start nginx on a free port, retrying when another process wins it.

        Raises RuntimeError with the end of nginx's error log on failure.
        """
        self.prefix.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(START_ATTEMPTS):
            port = free_port(self.address)
            self._write_config(port)
            self.access_log.touch()
            (self.prefix / "nginx.pid").unlink(missing_ok=True)
            with open(self.stderr_log, "wb") as stderr:
                process = subprocess.Popen(
                    [NGINX, "-p", str(self.prefix), "-c",
                     str(self.config_file), "-e", str(self.error_log),
                     "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=stderr)
            if self._wait_listening(process, port):
                self.process = process
                self.port = port
                return self
            last_error = self._reap(process)
        raise RuntimeError(
            f"nginx did not start after {START_ATTEMPTS} attempts: "
            f"{last_error}")

    def _wait_listening(self, process, port):
        """Wait until this nginx has bound port and accepts connections.

        nginx writes its pid file only after it has opened its listening
        sockets, so a connection before that could reach another process
        that took the port.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if self._pid_from_file() != process.pid:
                time.sleep(0.05)
                continue
            try:
                with socket.create_connection((self.address, port),
                                              timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def _pid_from_file(self):
        try:
            return int((self.prefix / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _reap(self, process):
        """Stop a failed nginx and return its error output."""
        if process.poll() is None:
            process.kill()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        text = ""
        for path in (self.stderr_log, self.error_log):
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text.strip()

    def stop(self):
        """Stop nginx: SIGQUIT for a graceful exit, then SIGTERM, then kill."""
        process = self.process
        if process is None:
            return
        self.process = None
        for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                continue

    def requests(self):
        """Parse the access log into a list of request dicts.

        Each dict has method, uri (the path without the query), status and
        bytes (integers), and range (the Range header, None if absent).
        """
        entries = []
        self._wait_for_quiet_log()
        try:
            text = self.access_log.read_text(encoding="utf-8",
                                             errors="replace")
        except FileNotFoundError:
            return entries
        # A line without its newline may still be in the middle of a write.
        for line in text.split("\n")[:-1]:
            fields = line.split("\t")
            if len(fields) != 5:
                continue
            method, uri, status, size, byte_range = fields
            if not (status.isdigit() and size.isdigit()):
                continue
            entries.append({
                "method": method,
                "uri": uri,
                "status": int(status),
                "bytes": int(size),
                "range": None if byte_range == "-" else byte_range,
            })
        return entries

    def _wait_for_quiet_log(self, quiet=0.2, limit=3.0):
        """Wait until the access log has not grown for quiet seconds.

        nginx writes a request's line only after it has sent the response,
        so a client can see the response before the line is in the file.
        Returns after limit seconds even if the log keeps growing.
        """
        deadline = time.monotonic() + limit
        last_size = -1
        while time.monotonic() < deadline:
            try:
                size = self.access_log.stat().st_size
            except FileNotFoundError:
                return
            if size == last_size:
                return
            last_size = size
            time.sleep(quiet)

    def reset_log(self):
        """Empty the access log in place, once lines of requests that
        have already ended are written.

        nginx keeps the file open with O_APPEND, so it goes on writing at
        the new end and no reopen is needed.
        """
        self._wait_for_quiet_log()
        with open(self.access_log, "r+b") as log_file:
            log_file.truncate(0)
