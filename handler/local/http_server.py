"""The local HTTP front: the web page at `/`, and the API's routes through the API entry point.

Each request is turned into an API Gateway event and handed to `LocalServer.invoke_api`; the
answer is written back as API Gateway would write it, with the service's security headers on
everything served here.

The page cancels its request in flight whenever a photo or an option changes, so clients that go
away are normal here: such a request is one log line, never a traceback, and one still waiting for
its turn is dropped before the function runs for nobody.
"""

from __future__ import annotations

import html
import json
import logging
import select
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from handler.aws.headers import SECURITY_HEADERS
from handler.aws.removebg_errors import error_document, removebg_error
from handler.core.errors import (
    BackgroundRemovalError,
    InvalidRequest,
    LengthRequired,
    MethodNotAllowed,
    RequestTooLarge,
    RouteNotFound,
)
from handler.local.api_gateway import (
    API_GATEWAY_MAX_BODY,
    LAMBDA_PAYLOAD_LIMIT,
    HttpResponse,
    api_gateway_event,
    http_response,
)

if TYPE_CHECKING:  # the server module builds request handlers bound to itself
    from handler.local.server import LocalServer

API_ROUTES = ("/remove", "/mask", "/v1.0/removebg", "/v1.0/account", "/uploads")
# remove.bg's routes: the server's own refusals there come in remove.bg's shape and statuses too.
REMOVEBG_ROUTES = ("/v1.0/removebg", "/v1.0/account")
# GET /results/{id}: the one route with a path parameter.
RESULTS_PREFIX = "/results/"
# What GET serves (the page, and the API's two GET routes); every other path takes POST.
GET_PATHS = ("/", "/favicon.ico", "/v1.0/account")
PAGE = Path(__file__).resolve().parent / "static" / "index.html"
# Where the page names the model the local run serves.
MODEL_PLACEHOLDER = b"<!--model-->"
# A client that closed its connection: the page's cancelled requests, or curl stopped with Ctrl-C.
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)

log = logging.getLogger("handler.local.server")


class RequestHandler(BaseHTTPRequestHandler):
    """GET / is the page; /remove and /mask go through the Lambda entry point; the rest is 404."""

    local: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "background-remover-local"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            model = html.escape(self.local.model_summary).encode()
            page = PAGE.read_bytes().replace(MODEL_PLACEHOLDER, model)
            self._send(HttpResponse(200, [("Content-Type", "text/html; charset=utf-8")], page))
        elif path == "/favicon.ico":
            self._send(HttpResponse(204, [], b""))
        else:
            self._lambda_or_not_found()

    def do_POST(self) -> None:
        self._lambda_or_not_found()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST  # noqa: N815 (BaseHTTPRequestHandler's naming)

    def do_HEAD(self) -> None:
        path = urlsplit(self.path).path
        method = "GET" if path in GET_PATHS or path.startswith(RESULTS_PREFIX) else "POST"
        self._send(self._refusal(MethodNotAllowed(f"HEAD is not served; use {method}", (method,))))

    def _lambda_or_not_found(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path not in API_ROUTES and not path.startswith(RESULTS_PREFIX):
            # API Gateway's own answer for a route the API does not have.
            self._send(
                _error_response(
                    RouteNotFound(
                        "use POST /remove, POST /mask, POST /v1.0/removebg, GET /v1.0/account, POST /uploads "
                        "or GET /results/{id}"
                    )
                )
            )
            return
        event = api_gateway_event(
            self.command, self.path, list(self.headers.items()), body, source_ip=self.client_address[0]
        )
        if len(json.dumps(event)) > LAMBDA_PAYLOAD_LIMIT:
            self._send(
                self._refusal(
                    RequestTooLarge(
                        "the image in base64 exceeds Lambda's 6 MB request payload (about 4.5 MB of photo); upload it with POST /uploads"
                    )
                )
            )
            return
        try:
            result = self.local.invoke_api(event, still_wanted=self._client_waits)
        except Exception:
            # The entry point itself failed (not an error response): API Gateway answers so.
            log.exception("the API function failed")
            self._send(self._refusal(_INTERNAL_ERROR))
            return
        if result is None:
            self._went_away("before its turn: not run")
            return
        if len(json.dumps(result)) > LAMBDA_PAYLOAD_LIMIT:
            log.error("the API response exceeds Lambda's 6 MB payload limit; deployed, this is a 500")
            self._send(self._refusal(_INTERNAL_ERROR))
            return
        self._send(http_response(result))

    def _refusal(self, error: BackgroundRemovalError) -> HttpResponse:
        return _error_response(error, removebg=urlsplit(self.path).path in REMOVEBG_ROUTES)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._send(self._refusal(LengthRequired("send a Content-Length; chunked bodies are not taken")), close=True)
            return None
        length = _content_length(self.headers.get_all("Content-Length") or [])
        if length is None:
            self._send(_error_response(InvalidRequest("Content-Length must be one whole number of bytes")), close=True)
            return None
        if length > API_GATEWAY_MAX_BODY:
            self._send(
                self._refusal(
                    RequestTooLarge("the body exceeds API Gateway's 10 MB; upload the photo with POST /uploads")
                ),
                close=True,
            )
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the connection closed part-way through the body
            self._went_away("while sending its body")
            return None
        return body

    def _client_waits(self) -> bool:
        """Whether the client still holds its connection open: a closed one reads as end-of-file at once."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return not readable or self.connection.recv(1, socket.MSG_PEEK) != b""
        except OSError:  # reset by the client
            return False

    def _went_away(self, when: str) -> None:
        """The one line a request whose client left gets (a cancelled request is not an error)."""
        self.close_connection = True
        log.info("%s %r: the client went away %s", self.address_string(), self.requestline, when)

    def _send(self, response: HttpResponse, *, close: bool = False) -> None:
        try:
            self._write(response, close=close)
        except _CLIENT_GONE:
            self._went_away(f"before its answer ({response.status})")
            return
        # Logged once written (send_response would log before): a request is one line either way.
        self.log_request(response.status)

    def _write(self, response: HttpResponse, *, close: bool) -> None:
        self.send_response_only(response.status)
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        given = {name.lower() for name, _ in response.headers}
        for name, value in SECURITY_HEADERS.items():
            # The function's own responses carry these already; the server's own answers (the
            # page, 404, 413, ...) get the same, so nothing served here is sniffed or cached.
            if name.lower() not in given:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        log.info("%s %s", self.address_string(), format % args)


class LocalHTTPServer(ThreadingHTTPServer):
    """The stdlib's threaded server, with a client that leaves mid-request logged as one line."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, _CLIENT_GONE):
            log.info("%s: the client went away (%s)", client_address[0], error.strerror or error)
            return
        super().handle_error(request, client_address)


def _content_length(values: list[str]) -> int | None:
    """The body's length from its Content-Length header(s), or None when they are not one number of
    ASCII digits (as HTTP has it: no sign, no spaces inside, no other digits such as '²')."""
    lengths = {value.strip() for value in values} or {"0"}
    if len(lengths) != 1:
        return None
    (text,) = lengths
    return int(text) if text.isascii() and text.isdigit() else None


def _json_response(status: int, document: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], json.dumps(document).encode())


# What API Gateway answers when the function itself fails, in our error format.
_INTERNAL_ERROR = BackgroundRemovalError("an unexpected error occurred")


def _error_response(error: BackgroundRemovalError, *, removebg: bool = False) -> HttpResponse:
    """The server's own refusals in the same format and status as the function's on that route:
    ours (`{"error": {"code", "message"}}`), or remove.bg's on its routes (handler/aws/removebg.py)."""
    if removebg:
        response = _json_response(removebg_error(error).status, error_document(error))
    else:
        response = _json_response(error.status, error.document())
    if isinstance(error, MethodNotAllowed):
        response.headers.append(("Allow", ", ".join(error.allowed)))
    return response
