"""Small shared pieces: Google's error shape, timestamps, paging, CRC32C, ids."""

import base64
import datetime
import hashlib
import json
import os
import random
import re
import string
import time

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# gRPC code numbers, for google.rpc.Status inside long-running operations.
GRPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}


class ApiError(Exception):
    """An error answered in Google's JSON error shape.

    `violation=True` also records it as a contract violation: used for constraints the
    discovery document states only in prose (e.g. accountId's length and regex).
    """

    def __init__(self, code, message, status=None, retry_after=None, details=None,
                 violation=False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.retry_after = retry_after
        self.details = details
        self.violation = violation

    def body(self):
        err = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            err["details"] = self.details
        return {"error": err}


def not_found(what):
    return ApiError(404, "%s not found." % what)


def now():
    return time.time()


def rfc3339(ts):
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % dt.microsecond


def parse_duration(text, default=None):
    if text is None:
        return default
    m = re.match(r"^(-?\d+(?:\.\d+)?)s$", text)
    if not m:
        raise ApiError(400, "Invalid duration %r." % text)
    return float(m.group(1))


def project_number(project_id):
    """A stable 12-digit number per project id (Google numbers every project)."""
    if re.fullmatch(r"\d+", project_id):
        return project_id
    h = int(hashlib.sha256(project_id.encode()).hexdigest(), 16)
    return str(100000000000 + h % 900000000000)


def new_etag():
    """IAM-style etag: base64 of opaque bytes, different on every write."""
    return base64.b64encode(b"\x07" + os.urandom(7)).decode()


def quoted_etag():
    """Secret Manager / Run etags are quoted opaque strings."""
    return '"%s"' % os.urandom(7).hex()


def random_suffix(n=5):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def paginate(items, page_size, page_token, default_size, max_size):
    """Offset paging with an opaque token. Returns (page, next_token or None)."""
    size = page_size or default_size
    if size < 0:
        raise ApiError(400, "page_size must not be negative.")
    size = min(size, max_size)
    start = 0
    if page_token:
        try:
            start = json.loads(base64.urlsafe_b64decode(page_token.encode()))["o"]
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "Invalid page token.")
    page = items[start:start + size]
    nxt = None
    if start + size < len(items):
        nxt = base64.urlsafe_b64encode(json.dumps({"o": start + size}).encode()).decode()
    return page, nxt


def listing(key, items, call, default_size, max_size, **fields):
    """A list method's answer: one page of `items` under `key` (left out when
    empty, as Google does), `nextPageToken` when more follow, and `fields`."""
    page, nxt = paginate(items, call.query.get("pageSize"), call.query.get("pageToken"),
                         default_size, max_size)
    out = dict(fields)
    if page:
        out[key] = page
    if nxt:
        out["nextPageToken"] = nxt
    return out


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as Secret Manager's dataCrc32c; zlib only has CRC-32."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def b64decode_any(text):
    s = text.replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s)
