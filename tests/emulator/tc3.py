"""TC3-HMAC-SHA256 request signing, shared by the API server and the client."""

import datetime
import hashlib
import hmac

ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = "csip"
CONTENT_TYPE = "application/json; charset=utf-8"


def utc_date(timestamp):
    """Return the UTC date of a Unix timestamp as YYYY-MM-DD."""
    moment = datetime.datetime.fromtimestamp(int(timestamp),
                                             datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d")


def canonical_headers(headers, signed_headers):
    """Build the canonical header block for the names in signed_headers.

    headers maps lowercase header names to values. Names and values are
    lowercased and stripped, one "name:value\\n" line per signed header.
    """
    lines = []
    for name in signed_headers.split(";"):
        value = headers.get(name, "")
        lines.append(f"{name}:{value.strip().lower()}\n")
    return "".join(lines)


def signature(secret_key, timestamp, headers, body,
              signed_headers="content-type;host", date=None,
              service=SERVICE):
    """Compute the hex TC3 signature of a POST / request.

    headers maps lowercase header names to the values sent, body is the
    exact request body in bytes, and date defaults to the UTC date of
    timestamp.
    """
    if date is None:
        date = utc_date(timestamp)
    canonical_request = "\n".join([
        "POST",
        "/",
        "",
        canonical_headers(headers, signed_headers),
        signed_headers,
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([
        ALGORITHM,
        str(timestamp),
        scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
    ])

    def hmac_sha256(key, message):
        return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()

    key_date = hmac_sha256(("TC3" + secret_key).encode("utf-8"), date)
    key_service = hmac_sha256(key_date, service)
    key_signing = hmac_sha256(key_service, "tc3_request")
    return hmac.new(key_signing, string_to_sign.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def authorization(secret_id, secret_key, timestamp, headers, body):
    """Return the Authorization header value for a request."""
    date = utc_date(timestamp)
    signed = signature(secret_key, timestamp, headers, body, date=date)
    return (f"{ALGORITHM} Credential={secret_id}/{date}/{SERVICE}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signed}")


def _check_test_vector():
    """Check signature() against a known TC3 test vector for csip."""
    headers = {"content-type": CONTENT_TYPE,
               "host": "csip.intl.tencentcloudapi.com"}
    body = b'{"Type":1,"ReportItemKeyList":[{"TaskLogList":["tl-0001"]}]}'
    got = signature("ExampleSecretKeyExampleSecretKey", 1764851200, headers,
                    body)
    expected = "b135ba183ef277dcac080b22a8821a2b445d9f2b50c95760d71f782d115a7961"
    if got != expected:
        raise AssertionError(f"TC3 test vector failed: got {got}")
    if utc_date(1764851200) != "2025-12-04":
        raise AssertionError("TC3 test vector date is not 2025-12-04")


_check_test_vector()
