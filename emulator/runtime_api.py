"""Lambda's Runtime API (version 2018-06-01) on 127.0.0.1, for one execution environment.

The runtime interface client (awslambdaric) long-polls `GET /runtime/invocation/next`, runs the
handler and posts the outcome to `/runtime/invocation/{id}/response` or `.../error`; a failed
init posts `/runtime/init/error`. Payload limits and error documents are Lambda's (the shapes the
open-source runtime interface emulator renders):

- a response over 6 MiB + 100 bytes is refused with 413 `RequestEntityTooLarge`, and the caller
  gets `Function.ResponseSizeTooLarge` instead of the response;
- the event is never checked here: `Invoke` refuses an oversized request before any runtime
  sees it (see `function.py`).

Each execution environment gets an API of its own, so a runtime that died (a timeout, a crash)
can never pick up the next environment's invocations.
"""

from __future__ import annotations

import json
import queue
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Lambda's synchronous Invoke payload limit, for the request (6 MiB) and for the response as the
# Runtime API accepts it (6 MiB + 100 bytes, LAMBDA_EVENT_BODY_SIZE).
REQUEST_LIMIT = 6 * 1024 * 1024
RESPONSE_LIMIT = 6 * 1024 * 1024 + 100

_PREFIX = "/2018-06-01/runtime"
_INVOCATION = re.compile(rf"^{_PREFIX}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
_ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"


@dataclass(frozen=True)
class Outcome:
    """What the runtime posted for one invocation (or what Lambda made of it)."""

    payload: bytes
    # None for a response; Lambda's X-Amz-Function-Error otherwise ("Unhandled").
    function_error: str | None = None
    content_type: str = "application/json"


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    function_arn: str
    timeout_ms: int
    trace_id: str = field(default_factory=lambda: _trace_id())
    deadline_ms: int | None = None
    outcome: Outcome | None = None
    # Set when the runtime takes the invocation; `settled` when it answers or its process ends.
    handed_out: threading.Event = field(default_factory=threading.Event)
    settled: threading.Event = field(default_factory=threading.Event)

    def headers(self) -> dict[str, str]:
        assert self.deadline_ms is not None
        return {
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
            "Lambda-Runtime-Trace-Id": self.trace_id,
            "Content-Type": "application/json",
        }


def _trace_id() -> str:
    """An X-Ray trace header as Lambda passes it (Tracing: Active samples every invocation)."""
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=1"


def error_document(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class RuntimeAPI:
    """The HTTP side of one execution environment: hands out invocations, collects outcomes."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Invocation | None] = queue.Queue()
        self._invocations: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self.init_error: Outcome | None = None
        self.init_done = threading.Event()
        # Set while the runtime waits in /next: only then is the environment free for an invocation.
        self.waiting = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """AWS_LAMBDA_RUNTIME_API: host:port, no scheme."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def submit(self, invocation: Invocation) -> None:
        with self._lock:
            self._invocations[invocation.request_id] = invocation
        self._queue.put(invocation)

    def close(self) -> None:
        self._queue.put(None)  # a runtime still polling gets nothing more
        self._server.shutdown()
        self._server.server_close()

    # The request handlers call these.

    def next_invocation(self) -> Invocation | None:
        self.init_done.set()  # the first /next is the end of the init phase
        self.waiting.set()
        invocation = self._queue.get()
        self.waiting.clear()
        if invocation is None:
            self._queue.put(None)
            return None
        invocation.deadline_ms = int(time.time() * 1000) + invocation.timeout_ms
        invocation.handed_out.set()
        return invocation

    def settle(self, request_id: str, outcome: Outcome) -> bool:
        with self._lock:
            invocation = self._invocations.get(request_id)
            if invocation is None or invocation.outcome is not None:
                return False
            invocation.outcome = outcome
        invocation.settled.set()
        return True

    def record_init_error(self, outcome: Outcome) -> None:
        self.init_error = outcome
        self.init_done.set()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A runtime killed mid-request (a timeout) resets its connection: that is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _handler_for(api: RuntimeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1: the runtime client keeps one connection open across invocations.
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path != f"{_PREFIX}/invocation/next":
                self._json(HTTPStatus.NOT_FOUND, error_document("NotFound", f"no route {self.path}"))
                return
            invocation = api.next_invocation()
            if invocation is None:
                self._json(HTTPStatus.GONE, error_document("EnvironmentShutdown", "the environment is shutting down"))
                return
            self._send(HTTPStatus.OK, invocation.payload, invocation.headers())

        def do_POST(self) -> None:
            body = self._body()
            if self.path == f"{_PREFIX}/init/error":
                error_type = self.headers.get(_ERROR_TYPE_HEADER) or "Runtime.Unknown"
                api.record_init_error(Outcome(body or error_document(error_type, "init failed"), "Unhandled"))
                self._json(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
                return
            match = _INVOCATION.match(self.path)
            if match is None:
                self._json(HTTPStatus.NOT_FOUND, error_document("NotFound", f"no route {self.path}"))
                return
            request_id = match["id"]
            if match["kind"] == "error":
                outcome = Outcome(body, "Unhandled")
            elif len(body) > RESPONSE_LIMIT:
                outcome = Outcome(
                    error_document(
                        "Function.ResponseSizeTooLarge",
                        f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload size "
                        f"({RESPONSE_LIMIT} bytes).",
                    ),
                    "Unhandled",
                )
            else:
                outcome = Outcome(body, None, self.headers.get("Content-Type") or "application/json")
            if not api.settle(request_id, outcome):
                self._json(HTTPStatus.BAD_REQUEST, error_document("InvalidRequestID", "Invalid request ID"))
            elif outcome.function_error is not None and match["kind"] == "response":
                message = f"Exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)."
                self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error_document("RequestEntityTooLarge", message))
            else:
                self._json(HTTPStatus.ACCEPTED, b'{"status":"OK"}')

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _json(self, status: HTTPStatus, body: bytes) -> None:
            self._send(status, body, {"Content-Type": "application/json"})

        def _send(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's signature)
            pass  # the runtime's own log is what matters

    return Handler


def new_request_id() -> str:
    return str(uuid.uuid4())
