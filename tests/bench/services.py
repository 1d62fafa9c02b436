"""The emulator as a child process, and its control interface.

The emulator runs as `python3 -m emulator` from tests/, inside the network
namespace of the wan condition, so the harness reaches its API, its object
store and its /_emulator/ control interface over the network in both
conditions.
"""

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import measure

TESTS_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS_DIR))

from emulator import client  # noqa: E402

START_TIMEOUT = 60
CONTROL_TIMEOUT = 60


class ServiceError(Exception):
    """The emulator failed to start or its control interface failed."""


class EmulatorProcess:
    """One `python3 -m emulator` serving a prebuilt manifest.

    prefix is the argv prefix that runs it in the network condition's
    namespace, address the IPv4 address it binds.
    """

    def __init__(self, workdir, manifest_path, prefix, address):
        self.workdir = Path(workdir)
        self.manifest_path = Path(manifest_path)
        self.prefix = list(prefix)
        self.address = address
        self.log_path = self.workdir / "emulator.log"
        self.process = None
        self.state = None

    def start(self):
        """Start the emulator, wait for its ready line and load state.json."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        state_dir = self.workdir / "state"
        argv = self.prefix + [
            sys.executable, "-m", "emulator", "--dir", str(state_dir),
            "--manifest", str(self.manifest_path),
            "--bind-address", self.address, "--plain-listing"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=TESTS_DIR, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self.log_path.read_text(errors="replace")
            if "emulator ready:" in text:
                break
            if self.process.poll() is not None:
                self.process = None
                raise ServiceError(f"the emulator exited before it was "
                                   f"ready: {text.strip()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"the emulator was not ready after "
                                   f"{START_TIMEOUT} s: {text[-2000:]}")
            time.sleep(0.1)
        with open(state_dir / "state.json", encoding="utf-8") as source:
            self.state = json.load(source)
        return self

    def stop(self):
        """Stop the emulator with SIGTERM. Safe to call more than once."""
        process = self.process
        self.process = None
        if process is not None and process.poll() is None:
            process.terminate()
            measure.stop_process(process, grace=15.0)


class Control:
    """Client of the emulator's /_emulator/ control interface and of the
    DescribeTaskLogURL call that gives curl its URL."""

    def __init__(self, state):
        self.state = state
        url = urllib.parse.urlsplit(state["api_url"])
        self.host = url.hostname
        self.port = url.port
        self.context = ssl.create_default_context(cafile=state["ca_file"])

    def _request(self, method, path, body=None):
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.context,
            timeout=CONTROL_TIMEOUT)
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise ServiceError(f"{method} {path} on the emulator failed: "
                               f"{error}") from error
        finally:
            connection.close()
        if response.status != 200:
            raise ServiceError(f"{method} {path} on the emulator returned "
                               f"HTTP {response.status}")
        return json.loads(payload)

    def reset(self):
        """Reset the API call counts and empty the object store's log."""
        self._request("POST", "/_emulator/reset", {"store_log": True})

    def counts(self):
        """Return {action: calls} since the last reset."""
        return self._request("GET", "/_emulator/counts")

    def store_totals(self):
        """Return (requests, bytes sent) of the object store since the last
        reset."""
        requests = self._request("GET", "/_emulator/store_requests")
        return len(requests), sum(r["bytes"] for r in requests)

    def download_url(self, report):
        """Resolve the signed download URL of one report of the manifest."""
        api = client.Client.from_state(self.state, "admin",
                                       timeout=CONTROL_TIMEOUT)
        params = {"Type": 1,
                  "ReportItemKeyList": [{"TaskLogList":
                                         [report["task_log_id"]]}]}
        if report.get("member_id"):
            params["MemberId"] = [report["member_id"]]
        try:
            response = api.call("DescribeTaskLogURL", params)
        except (client.CsipError, OSError) as error:
            raise ServiceError(f"DescribeTaskLogURL for "
                               f"{report['task_log_id']} failed: "
                               f"{error}") from error
        finally:
            api.close()
        for item in response.get("Data", []):
            if item.get("LogId") == report["task_log_id"]:
                return item["URL"]
        raise ServiceError(f"DescribeTaskLogURL returned no URL for "
                           f"{report['task_log_id']}")


def environment():
    """Return the environment for the timed commands: the harness's PATH
    and the C locale, so that ls and grep sort and match bytes."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LC_ALL": "C"}
