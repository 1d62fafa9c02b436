"""A local emulator of Tencent Cloud CSIP for the csipfs tests.

Emulator(workdir).start() builds the fixture, a throw-away CA, the API
server and an nginx object store, and writes workdir/state.json with their
URLs, files and credentials.
"""

import json
import logging
import os
import secrets
from pathlib import Path

from . import api, fixture, pki, store
from .fixture import load_manifest

__all__ = ["Emulator", "load_manifest"]


def _new_credential(prefix, token=False):
    credential = {
        "secret_id": "AKID" + prefix + secrets.token_hex(14),
        "secret_key": secrets.token_urlsafe(24),
    }
    if token:
        credential["token"] = secrets.token_urlsafe(48)
    return credential


class Emulator:
    """The API server and object store of one test session.

    workdir is a directory that the emulator owns. url_lifetime is the
    lifetime of download URLs in seconds and rate_limit the number of calls
    per second allowed for each action (0 for no limit).

    manifest is the path of a prebuilt manifest.json in the format of
    fixture.py, with its objects in the objects/ directory next to it.
    Without it, the fixture of fixture.py is built in workdir. address is the
    IPv4 address that the API server and nginx listen on, and that the
    server certificate names besides 127.0.0.1. plain_listing makes nginx
    serve the objects without signed links under /plain/, with directory
    listings.
    """

    def __init__(self, workdir, url_lifetime=300, rate_limit=20,
                 manifest=None, address="127.0.0.1", plain_listing=False):
        self.workdir = Path(workdir).resolve()
        self.url_lifetime = url_lifetime
        self.rate_limit = rate_limit
        self.manifest_path = (Path(manifest).resolve()
                              if manifest is not None else None)
        self.address = address
        self.plain_listing = plain_listing
        self.state = None
        self.manifest = None
        self._service = None
        self._server = None
        self._store = None
        self._log_handler = None

    def start(self):
        """Start everything, write state.json and return self."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_log()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_log(self):
        handler = logging.FileHandler(self.workdir / "api.log",
                                      encoding="utf-8")
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("emulator")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        self._log_handler = handler

    def _start(self):
        files = pki.make_pki(self.workdir / "pki", [self.address])
        if self.manifest_path is None:
            manifest_path = fixture.build_fixture(self.workdir)
        else:
            manifest_path = self.manifest_path
        self.manifest = load_manifest(manifest_path)
        objects_dir = manifest_path.parent / "objects"

        link_secret = secrets.token_hex(16)
        self._store = store.Store(self.workdir, objects_dir,
                                  files.server_cert, files.server_key,
                                  link_secret, address=self.address,
                                  plain_listing=self.plain_listing).start()

        credentials = {
            "admin": _new_credential("adm"),
            "member": _new_credential("mem"),
            "temporary": _new_credential("tmp", token=True),
        }
        admin_uin = next(a["uin"] for a in self.manifest["accounts"]
                         if a["role"] == "Admin")
        member_uin = self.manifest["member_credential_uin"]
        owners = {"admin": admin_uin, "member": member_uin,
                  "temporary": admin_uin}
        self._service = api.ApiService(
            self.manifest,
            [api.Credential(c["secret_id"], c["secret_key"], owners[name],
                            c.get("token"))
             for name, c in credentials.items()],
            link_secret, self.url_lifetime, self.rate_limit)
        self._service.store_url = self._store.url
        self._service.store_log_reset = self._store.reset_log
        self._service.store_requests = self._store.requests
        self._server = api.ApiServer(self._service, files.server_cert,
                                     files.server_key, address=self.address)
        self._server.start()

        self.state = {
            "api_url": self._server.url,
            "store_url": self._store.url,
            "plain_url": self._store.plain_url,
            "ca_file": str(files.ca_cert.resolve()),
            "manifest": str(manifest_path.resolve()),
            "objects_dir": str(objects_dir.resolve()),
            "access_log": str(self._store.access_log.resolve()),
            "credentials": credentials,
        }
        state_path = self.workdir / "state.json"
        temporary = state_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.state, indent=1))
        os.chmod(temporary, 0o600)
        os.replace(temporary, state_path)
        logging.getLogger("emulator").info(
            "emulator started: api %s, store %s", self.state["api_url"],
            self.state["store_url"])

    @property
    def state_file(self):
        return self.workdir / "state.json"

    def counts(self):
        """Return the number of calls per action since the last reset.

        Every request is counted by its X-TC-Action header, including the
        rejected ones.
        """
        return self._service.counts()

    def reset_counts(self):
        self._service.reset_counts()

    def store_requests(self):
        """Return the object store's requests as dicts: method, uri, status,
        bytes and range."""
        return self._store.requests()

    def reset_store_log(self):
        self._store.reset_log()

    def set_url_lifetime(self, seconds):
        self._service.configure(url_lifetime=seconds)

    def set_rate_limit(self, count):
        self._service.configure(rate_limit=count)

    def set_store_url(self, url=None):
        """Point the download URLs at another object store, such as a
        scriptable server that misbehaves; None restores nginx.

        The other store gets the same object paths and the same secure_link
        query, so it can check or ignore them.
        """
        self._service.store_url = url or self.state["store_url"]

    def inject_fault(self, action, code="InternalError", count=1,
                     http_status=200, delay=0.0, body=None, seconds=None,
                     body_mode=None):
        """Make the next count calls of action fail.

        action "*" matches every action. With http_status other than 200 the
        call gets that HTTP status and body (empty by default, or
        api.HTML_502 for a proxy's error page) instead of the error envelope
        with code. delay, in seconds, comes before the response. seconds
        makes the fault apply to every call for that many seconds instead of
        count calls. body_mode "truncated" or "invalid" breaks the body of a
        successful response instead of failing the call.
        """
        self._service.add_fault(api.Fault(action, code, count, http_status,
                                          delay, body=body, seconds=seconds,
                                          body_mode=body_mode))

    def clear_faults(self):
        self._service.clear_faults()

    def call_log(self):
        """Return {action: [(monotonic seconds, accepted)]} for the calls
        that passed the signature check since the last reset_counts();
        accepted is False for a RequestLimitExceeded rejection."""
        return self._service.call_log()

    def set_clock_offset(self, seconds):
        """Run the API's clock (timestamp check and Date header) seconds
        ahead of the real one, or behind for a negative value."""
        self._service.clock_offset = float(seconds)

    def set_list_quirks(self, action, **quirks):
        """Bend the pages of a list action; see ApiService._quirky_page.
        No keyword arguments restores normal pages."""
        self._service.set_list_quirks(action, quirks)

    def set_raw_names(self, names):
        """Send each {TaskLogId: bytes} name raw in DescribeTaskLogList,
        invalid UTF-8 and control bytes included; {} restores the names."""
        self._service.raw_names = dict(names)

    def set_report_overrides(self, overrides):
        """Change TaskLogInfo fields in DescribeTaskLogList:
        {TaskLogId: {field: value}}, with api.DELETE to drop a field."""
        with self._service._lock:
            self._service.report_overrides = dict(overrides)

    def reset_behaviour(self):
        """Undo faults, quirks, raw names, overrides, the clock offset and
        the rate limit, and reset the counts."""
        service = self._service
        service.clear_faults()
        with service._lock:
            service.list_quirks = {}
            service._revealed.clear()
            service.report_overrides = {}
        service.raw_names = {}
        service.clock_offset = 0.0
        service.configure(rate_limit=self.rate_limit)
        service.reset_counts()

    def stop(self):
        """Stop the API server and nginx. Safe to call more than once."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._store is not None:
            self._store.stop()
            self._store = None
        if self._log_handler is not None:
            logging.getLogger("emulator").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
