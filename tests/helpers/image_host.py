"""Small HTTP servers on 127.0.0.1 for the remove.bg tests: the photo host `image_url` fetches from,
and `serving`, which runs any request handler on a free port for the length of a block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.api import EVENT_IMAGE


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` on 127.0.0.1; yields its "host:port"."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class ImageHost(BaseHTTPRequestHandler):
    """Serves the example photo at /cat.jpg, redirects and a 404."""

    def do_GET(self) -> None:
        port = self.server.server_port  # type: ignore[attr-defined]  # an HTTPServer's
        routes: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/cat.jpg": (200, {"Content-Type": "image/jpeg"}, EVENT_IMAGE),
            "/moved": (302, {"Location": "/cat.jpg"}, b""),
            "/moved-away": (302, {"Location": "http://images.example.com/cat.jpg"}, b""),
            "/moved-to-other-port": (302, {"Location": f"http://127.0.0.1:{port + 1}/cat.jpg"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
        }
        status, headers, body = routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass
