"""A small TC3-signing client for the CSIP API, for tests and checks."""

import http.client
import json
import ssl
import time
import urllib.parse

from . import tc3

API_VERSION = "2022-11-21"


class CsipError(Exception):
    """An error envelope returned by the API."""

    def __init__(self, action, code, message, request_id=None):
        super().__init__(f"{action} failed with {code}: {message}")
        self.action = action
        self.code = code
        self.message = message
        self.request_id = request_id


class Client:
    """Calls CSIP actions on one endpoint with one credential.

    The connection is kept open between calls. timestamp_offset, in seconds,
    is added to the clock to test skew.
    """

    def __init__(self, api_url, secret_id, secret_key, token=None,
                 ca_file=None, timestamp_offset=0, timeout=30):
        url = urllib.parse.urlsplit(api_url)
        self.host = url.netloc
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.token = token
        self.timestamp_offset = timestamp_offset
        context = ssl.create_default_context(cafile=ca_file)
        self._connection = http.client.HTTPSConnection(
            url.hostname, url.port or 443, context=context, timeout=timeout)

    @classmethod
    def from_state(cls, state, name="admin", **options):
        """Build a client for the credential name ("admin", "member" or
        "temporary") of an emulator state dict."""
        credential = state["credentials"][name]
        return cls(state["api_url"], credential["secret_id"],
                   credential["secret_key"], credential.get("token"),
                   ca_file=state["ca_file"], **options)

    def signed_headers(self, action, body, timestamp=None):
        """Return the request headers for body, with the Authorization."""
        if timestamp is None:
            timestamp = int(time.time()) + self.timestamp_offset
        headers = {
            "Content-Type": tc3.CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Timestamp": str(timestamp),
        }
        if self.token is not None:
            headers["X-TC-Token"] = self.token
        lower = {"content-type": tc3.CONTENT_TYPE, "host": self.host}
        headers["Authorization"] = tc3.authorization(
            self.secret_id, self.secret_key, timestamp, lower, body)
        return headers

    def raw(self, headers, body):
        """Send one POST / and return (status, headers, parsed body or None)."""
        self._connection.request("POST", "/", body=body, headers=headers)
        response = self._connection.getresponse()
        data = response.read()
        payload = json.loads(data) if data else None
        return response.status, dict(response.getheaders()), payload

    def call(self, action, params=None):
        """Call action and return its Response object.

        Raises CsipError for an error envelope.
        """
        body = json.dumps(params or {}, ensure_ascii=False).encode("utf-8")
        status, _, payload = self.raw(self.signed_headers(action, body), body)
        if status != 200 or payload is None:
            raise CsipError(action, f"HTTP {status}", "no JSON body")
        response = payload["Response"]
        error = response.get("Error")
        if error is not None:
            raise CsipError(action, error["Code"], error["Message"],
                            response.get("RequestId"))
        return response

    def close(self):
        self._connection.close()
