"""The local HTTP front: the web page at `/`, and the API's routes through the API entry point.

Each request is turned into an API Gateway event and handed to `LocalServer.invoke_api`; the
answer is written back as API Gateway would write it, with the service's security headers on
everything served here.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from handler.aws.headers import SECURITY_HEADERS
from handler.aws.removebg import error_document, removebg_error
from handler.core.errors import (
    BackgroundRemovalError,
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
PAGE = Path(__file__).resolve().parent / "static" / "index.html"

log = logging.getLogger("handler.local.server")


class RequestHandler(BaseHTTPRequestHandler):
    """GET / is the page; /remove and /mask go through the Lambda entry point; the rest is 404."""

    local: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "background-remover-local"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HttpResponse(200, [("Content-Type", "text/html; charset=utf-8")], PAGE.read_bytes()))
        elif path == "/favicon.ico":
            self._send(HttpResponse(204, [], b""))
        else:
            self._lambda_or_not_found()

    def do_POST(self) -> None:
        self._lambda_or_not_found()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST  # noqa: N815 (BaseHTTPRequestHandler's naming)

    def do_HEAD(self) -> None:
        self._send(self._refusal(MethodNotAllowed("HEAD is not served; use POST", ("POST",))))

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
            result = self.local.invoke_api(event)
        except Exception:
            # The entry point itself failed (not an error response): API Gateway answers so.
            log.exception("the API function failed")
            self._send(self._refusal(_INTERNAL_ERROR))
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
        length = int(self.headers.get("Content-Length") or 0)
        if length > API_GATEWAY_MAX_BODY:
            self._send(
                self._refusal(
                    RequestTooLarge("the body exceeds API Gateway's 10 MB; upload the photo with POST /uploads")
                ),
                close=True,
            )
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: HttpResponse, *, close: bool = False) -> None:
        self.send_response(response.status)
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
