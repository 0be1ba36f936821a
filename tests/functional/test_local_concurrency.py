"""The local server (`python -m handler serve`) under concurrent clients on 127.0.0.1.

Inference is serialised by design (handler/local/server.py, INVOCATION_CONCURRENCY): the test counts, at
the model itself, how many inferences run at once while 8 clients send requests together, and at
the HTTP handler how many requests were in flight (so the serialisation was really put to the
test). The thread pool and the overall timeout bound the test; nothing here is a timing assertion.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from handler.core.model.session import BackgroundModel
from handler.local import server as local
from handler.local.http_server import RequestHandler
from handler.local.server import LocalServer
from tests.helpers.http import post

CLIENTS = 8
REQUESTS_PER_CLIENT = 3
# A bound on the whole test, not an expectation: 24 U-2-Net-p requests take ~10 s here.
TOTAL_TIMEOUT_SECONDS = 300


@dataclass
class Gauge:
    """How many calls are inside a function now, and the most there ever were."""

    now: int = 0
    most: int = 0
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.now += 1
                self.calls += 1
                self.most = max(self.most, self.now)
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.now -= 1

        return counted


@pytest.fixture
def gauges(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Gauge]]:
    inferences, in_flight = Gauge(), Gauge()
    monkeypatch.setattr(BackgroundModel, "infer", inferences.wrap(BackgroundModel.infer))
    monkeypatch.setattr(RequestHandler, "_lambda_or_not_found", in_flight.wrap(RequestHandler._lambda_or_not_found))
    yield {"inferences": inferences, "in_flight": in_flight}


def test_concurrent_clients_all_succeed_with_inference_serialised(
    server: LocalServer, samples: dict[str, Path], gauges: dict[str, Gauge]
) -> None:
    # GIVEN 8 clients, released together, each sending 3 photos to /remove or /mask
    photos = [samples[name] for name in ("astronaut", "chelsea", "coffee")]
    start = threading.Barrier(CLIENTS)

    def client(number: int) -> list[tuple[str, Path, int, bytes]]:
        start.wait()
        answers = []
        for request in range(REQUESTS_PER_CLIENT):
            route = "/remove" if (number + request) % 2 == 0 else "/mask"
            photo = photos[(number + request) % len(photos)]
            status, _headers, body = post(f"{server.url}{route}", photo.read_bytes())
            answers.append((route, photo, status, body))
        return answers

    # WHEN they run at once
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(client, number) for number in range(CLIENTS)]
        _, pending = wait(futures, timeout=TOTAL_TIMEOUT_SECONDS)
    assert not pending, f"{len(pending)} clients did not finish within {TOTAL_TIMEOUT_SECONDS} s"

    # THEN every request succeeded with a valid image of its photo's size
    answers = [answer for future in futures for answer in future.result()]
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    for route, photo, status, body in answers:
        assert status == 200, body[:300]
        with Image.open(io.BytesIO(body)) as output, Image.open(photo) as source:
            assert output.format == "PNG"
            assert output.mode == ("RGBA" if route == "/remove" else "L")
            assert output.size == source.size
    # AND requests really were in flight together, yet never more inferences than designed
    assert gauges["in_flight"].most > 1
    assert gauges["inferences"].calls == CLIENTS * REQUESTS_PER_CLIENT
    assert gauges["inferences"].most == local.INVOCATION_CONCURRENCY == 1
