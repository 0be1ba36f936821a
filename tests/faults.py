"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the local S3 (moto in server mode).

boto3 reaches it through AWS_ENDPOINT_URL_S3, like any other S3 endpoint; every request is passed
through to moto unless a programmed rule matches it first. Rules match by method and object key
(or a key prefix)
and are used up in the order they were added, so a test can say "the first two GETs of this key
get 503 SlowDown, the third goes through". What the proxy can do to one request:

- `delay(seconds)`: answer after a pause (slow S3);
- `hang()`: never answer (until the proxy stops or the test releases it): a read timeout;
- `slow_down()` / `internal_error()`: 503 SlowDown / 500 InternalError, S3's own XML error bodies;
- `reset()`: close the connection with SO_LINGER 0 (a TCP RST) instead of answering;
- `truncate()`: S3's answer with its full Content-Length but only half the body, then a reset;
- `PASS`: pass the request through (a rule that only counts).

Every request is recorded (`seen`) with the fault it got, so tests can count attempts.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import unquote, urlsplit

Kind = Literal["pass", "delay", "hang", "slow_down", "internal_error", "reset", "truncate"]
# Headers that belong to one connection, not to the request or answer passed on.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}
# A hung request is released after this long at most, so a forgotten one cannot hold a test.
HANG_LIMIT_SECONDS = 60.0
_ERRORS = {
    "slow_down": (503, "SlowDown", "Please reduce your request rate."),
    "internal_error": (500, "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass(frozen=True)
class Fault:
    kind: Kind
    seconds: float = 0.0


PASS = Fault("pass")


def delay(seconds: float) -> Fault:
    return Fault("delay", seconds)


def hang() -> Fault:
    return Fault("hang")


def slow_down() -> Fault:
    return Fault("slow_down")


def internal_error() -> Fault:
    return Fault("internal_error")


def reset() -> Fault:
    return Fault("reset")


def truncate() -> Fault:
    return Fault("truncate")


@dataclass
class _Rule:
    fault: Fault
    method: str | None
    key: str | None
    remaining: int | None  # None: every matching request
    prefix: str = ""

    def matches(self, method: str, key: str) -> bool:
        return self.method in (None, method) and self.key in (None, key) and key.startswith(self.prefix)


@dataclass(frozen=True)
class Seen:
    """One request the proxy received: its method, bucket, key and what was done to it."""

    method: str
    bucket: str
    key: str
    fault: Kind


def _bucket_and_key(target: str) -> tuple[str, str]:
    """Path-style addressing (what boto3 uses for an IP endpoint): /bucket/key?query."""
    path = unquote(urlsplit(target).path)
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


class FaultProxy:
    """The proxy; a context manager. `url` is what AWS_ENDPOINT_URL_S3 should name."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rules: list[_Rule] = []
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an IPv4 server's address
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()

    def inject(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        key: str | None = None,
        prefix: str = "",
        times: int | None = 1,
    ) -> None:
        """Apply `fault` to the next `times` requests (all, if None) with this method and key (or key prefix)."""
        with self._lock:
            self._rules.append(_Rule(fault, method, key, times, prefix))

    def clear(self) -> None:
        """Forget the rules and what was seen; release hung requests."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()
        self._release.set()
        self._release = threading.Event()

    def seen(self, *, method: str | None = None, key: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if method in (None, s.method) and key in (None, s.key)]

    def _fault_for(self, method: str, bucket: str, key: str) -> tuple[Fault, threading.Event]:
        with self._lock:
            fault = PASS
            for rule in self._rules:
                if rule.remaining != 0 and rule.matches(method, key):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    fault = rule.fault
                    break
            self._seen.append(Seen(method, bucket, key, fault.kind))
            return fault, self._release

    @contextmanager
    def _upstream_connection(self) -> Iterator[http.client.HTTPConnection]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            yield connection
        finally:
            connection.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

    def do_GET(self) -> None:
        self._proxy()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET  # noqa: N815 (BaseHTTPRequestHandler's naming)

    def _proxy(self) -> None:
        body = self._read_body()
        bucket, key = _bucket_and_key(self.path)
        fault, release = self.owner._fault_for(self.command, bucket, key)
        if fault.kind == "reset":
            self._reset()
            return
        if fault.kind in _ERRORS:
            self._send_error_document(*_ERRORS[fault.kind])
            return
        if fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault.kind == "hang":
            release.wait(HANG_LIMIT_SECONDS)
            self._reset()
            return
        status, headers, data = self._forward(body)
        if fault.kind == "truncate" and len(data) > 1:
            self._send(status, headers, data, send=data[: len(data) // 2])
            self._reset()
            return
        self._send(status, headers, data)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        headers.pop("Host", None)
        headers["Content-Length"] = str(len(body))
        with self.owner._upstream_connection() as upstream:
            upstream.request(
                self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers
            )
            response = upstream.getresponse()
            data = response.read()
            return response.status, [(n, v) for n, v in response.getheaders() if n.lower() not in _HOP_BY_HOP], data

    def _send(self, status: int, headers: list[tuple[str, str]], data: bytes, *, send: bytes | None = None) -> None:
        self.send_response_only(status)
        for name, value in headers:
            # A HEAD answer's Content-Length is the object's, with no body: keep moto's.
            if name.lower() != "content-length" or self.command == "HEAD":
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data if send is None else send)
            self.wfile.flush()

    def _send_error_document(self, status: int, code: str, message: str) -> None:
        document = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>FAULTPROXY</RequestId><HostId>fault-proxy</HostId></Error>"
        ).encode()
        self._send(status, [("Content-Type", "application/xml")], document)

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends a RST, as a dropped connection or a crashed peer does."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's signature)
        pass
