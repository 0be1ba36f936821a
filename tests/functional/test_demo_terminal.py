"""The local run's terminal and page as a person uses them: another port, a busy port, the page's
cancelled requests, and the model named on the page.

The page cancels its request in flight whenever a photo or an option changes (handler/local/static/
index.html): a cancelled request must cost one log line at most, never a traceback, and one still
waiting for its turn must not run the model for nobody.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from handler.local.server import LocalServer
from tests.helpers import readme

CHILD_TIMEOUT_S = 300
# A bound for the server to log what it did, not an expectation.
LOG_TIMEOUT_S = 60


class _Lines(logging.Handler):
    """The server log's records, with a way to wait for some."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def wait_for(self, count: int, matching: str) -> list[logging.LogRecord]:
        def found() -> list[logging.LogRecord]:
            return [record for record in self.records if matching in record.getMessage()]

        with self._changed:
            self._changed.wait_for(lambda: len(found()) >= count, timeout=LOG_TIMEOUT_S)
            return found()


@pytest.fixture
def server_log() -> Any:
    logger = logging.getLogger("handler.local.server")
    lines = _Lines()
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(lines)
    logger.setLevel(level)


def _post(port: int, photo: bytes) -> socket.socket:
    """The page's request, as its bytes: the whole photo sent, the answer not read yet."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(
        b"POST /remove?outputs=cutout,mask HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
        b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(photo) + photo
    )
    return client


def _abort(client: socket.socket) -> None:
    """Close with a reset, as a browser may abort a fetch: the server's next write fails."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def test_cancelled_requests_are_one_line_each_and_a_waiting_one_is_not_run(
    u2netp_path: Path, samples: dict[str, Path], server_log: _Lines, capfd: pytest.CaptureFixture[str]
) -> None:
    photo = samples["chelsea"].read_bytes()
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []
    with LocalServer(port=0, env={"MODEL_PATH": str(u2netp_path)}) as local:
        # GIVEN a request whose function call is under way (held here, so that the order is known)
        api_handler = local._api_handler
        assert api_handler is not None

        def held(event: dict[str, Any], context: Any) -> Any:
            calls.append(event["rawPath"])
            entered.set()
            release.wait(LOG_TIMEOUT_S)
            return api_handler(event, context)

        local._api_handler = held
        running = _post(local.port, photo)
        assert entered.wait(LOG_TIMEOUT_S)
        # AND a second one waiting for its turn
        waiting = _post(local.port, photo)

        # WHEN the page cancels both (the waiting one closes as a fetch's abort does, the running one resets)
        waiting.close()
        _abort(running)
        release.set()
        lines = server_log.wait_for(2, "went away")

    # THEN each is one line, the waiting one never reached the function, and nothing else was written
    assert sorted(record.getMessage().split(": the client ")[1] for record in lines) == [
        "went away before its answer (200)",
        "went away before its turn: not run",
    ]
    assert calls == ["/remove"]
    assert all(record.exc_info is None and "\n" not in record.getMessage() for record in server_log.records)
    assert capfd.readouterr().err == ""


def test_the_page_names_the_model(server: LocalServer) -> None:
    with urllib.request.urlopen(f"{server.url}/") as answer:
        page = answer.read().decode()

    named = re.search(r'<b id="model">(.*?)</b>', page)
    assert named is not None and named.group(1) == html.escape(server.model_summary)
    assert named.group(1).startswith("u2netp.onnx (fixed 320x320 input")


def test_make_demo_on_a_busy_port_names_the_fix(tmp_path: Path, u2netp_path: Path) -> None:
    # GIVEN a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # WHEN the demo is started there, as the README says to choose a port
        demo = subprocess.Popen(
            ["make", "demo", f"PORT={port}"],
            cwd=readme.checkout_view(tmp_path / "checkout"),
            env={"PATH": readme.FRESH_PATH, "HOME": str(tmp_path), "MODEL_PATH": str(u2netp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _out, stderr = demo.communicate(timeout=CHILD_TIMEOUT_S)
        finally:  # a demo that did start (on another port) must not outlive the test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.pid, signal.SIGINT)
            demo.wait()

    # THEN it stops at once with one line that names the port and the way to choose another
    assert demo.returncode != 0
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr
    assert f"port {port}" in errors[0] and "make demo PORT=" in errors[0]
