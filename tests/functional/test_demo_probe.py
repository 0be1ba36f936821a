"""The hub probe (handler.core.model.hub_probe): a machine without the hub must not wait out the hub client's retries."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.core.model.hub_probe import hub_reachable
from scripts.demo import prepare_model


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nobody listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


def test_a_listening_endpoint_is_reachable() -> None:
    # GIVEN a server socket on loopback
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # THEN the probe connects
        assert hub_reachable(f"http://127.0.0.1:{port}")


def test_a_closed_port_is_not_reachable(closed_port: int) -> None:
    # THEN the probe says so instead of raising
    assert not hub_reachable(f"http://127.0.0.1:{closed_port}")


def test_without_the_hub_the_demo_leaves_the_choice_to_serve_without_a_word(
    tmp_path: Path, closed_port: int, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no hub (a closed port) and an empty model cache
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port}", "MODEL_CACHE_DIR": str(tmp_path / "empty-cache")}

    # WHEN the demo prepares its model
    prepare_model(env)

    # THEN nothing is downloaded or said: `serve` chooses the fallback and says so in one line
    # (tests/functional/test_model_choice.py)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert not (tmp_path / "empty-cache").exists()


def test_behind_a_proxy_the_probe_reaches_the_proxy_as_the_hub_client_would(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    # GIVEN a proxy on loopback (the hub itself is never connected to: only 127.0.0.1 is allowed here)
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        # THEN the hub counts as reachable through it
        assert hub_reachable("https://huggingface.co")
    # AND a proxy that is down means no hub
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    assert not hub_reachable("https://huggingface.co")
