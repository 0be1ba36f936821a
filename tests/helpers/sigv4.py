"""A local stand-in for API Gateway's IAM check: an HTTP server on 127.0.0.1 that verifies SigV4.

It recomputes each request's signature from what it received, as AWS documents the algorithm
(https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), written here from
the specification rather than with botocore, so that a signer (botocore, curl) is checked by code
it does not share. It refuses what API Gateway refuses: an unknown key, another service or region
in the scope, a signed header that was not sent, a session token that is not the credentials' (an
empty one included), a stale date, a wrong signature. A good request gets a small PNG.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from PIL import Image

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
# How far a request's X-Amz-Date may be from the server's clock (AWS allows 15 minutes).
CLOCK_SKEW = timedelta(minutes=15)


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


@dataclass
class Verdict:
    path: str
    ok: bool
    reason: str
    signed_headers: list[str] = field(default_factory=list)
    region: str = ""


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(out, "PNG")
    return out.getvalue()


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def verify(
    method: str, target: str, headers: dict[str, str], body: bytes, credentials: Credentials, region: str
) -> Verdict:
    """Check one request's Authorization header against `credentials` and `region`."""
    path = urlsplit(target).path
    authorization = headers.get("authorization", "")
    if not authorization.startswith(ALGORITHM + " "):
        return Verdict(path, False, "not signed with AWS4-HMAC-SHA256")
    fields = dict(part.strip().split("=", 1) for part in authorization[len(ALGORITHM) :].split(","))
    access_key, date, scope_region, service, terminator = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    verdict = Verdict(path, False, "", signed, scope_region)
    checks = [
        (access_key == credentials.access_key, f"unknown access key {access_key}"),
        (service == SERVICE and terminator == "aws4_request", f"scope is for {service}, not {SERVICE}"),
        (scope_region == region, f"scope is for region {scope_region}, the API is in {region}"),
        (all(name in headers for name in signed), f"signed headers not sent: {set(signed) - set(headers)}"),
        (headers.get("x-amz-security-token") == credentials.token, "wrong or empty x-amz-security-token"),
    ]
    for passed, reason in checks:
        if not passed:
            verdict.reason = reason
            return verdict
    stamp = headers.get("x-amz-date", "")
    sent_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if abs(datetime.now(UTC) - sent_at) > CLOCK_SKEW or not stamp.startswith(date):
        verdict.reason = f"x-amz-date {stamp} is stale or not the scope's date {date}"
        return verdict
    url = urlsplit(target)
    # Not S3: each path segment is encoded twice.
    canonical_uri = "/".join(_uri_encode(_uri_encode(segment)) for segment in url.path.split("/")) or "/"
    query = sorted(
        (_uri_encode(name), _uri_encode(value)) for name, value in parse_qsl(url.query, keep_blank_values=True)
    )
    canonical_query = "&".join(f"{name}={value}" for name, value in query)
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join([method, canonical_uri, canonical_query, canonical_headers, fields["SignedHeaders"], payload])
    scope = f"{date}/{scope_region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(("AWS4" + credentials.secret_key).encode(), date)
    for part in (scope_region, service, "aws4_request"):
        key = _sign(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    verdict.ok = hmac.compare_digest(expected, fields["Signature"])
    verdict.reason = "signature verified" if verdict.ok else "signature does not match"
    return verdict


class SigV4Server:
    """The stand-in API on 127.0.0.1; `verdicts` lists what it decided, request by request."""

    def __init__(self, credentials: Credentials, region: str) -> None:
        self.credentials = credentials
        self.region = region
        self.verdicts: list[Verdict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                verdict = verify("POST", self.path, headers, body, server.credentials, server.region)
                server.verdicts.append(verdict)
                status, answer, kind = (
                    (200, _png(), "image/png") if verdict.ok else (403, verdict.reason.encode(), "text/plain")
                )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[SigV4Server]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join()
