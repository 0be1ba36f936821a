"""The demo's hub probe: a machine without the hub must not wait out the hub client's retries."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scripts.demo import choose_model_env, hub_reachable


def test_a_listening_endpoint_is_reachable() -> None:
    # GIVEN a server socket on loopback
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # THEN the probe connects
        assert hub_reachable(f"http://127.0.0.1:{port}")


def test_a_closed_port_is_not_reachable() -> None:
    # GIVEN a port nobody listens on (bound, then closed)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # THEN the probe says so instead of raising
    assert not hub_reachable(f"http://127.0.0.1:{port}")


def test_without_the_hub_the_fallback_is_announced_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no hub (a closed port) and an empty model cache
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("MODEL_PATH", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")

    # WHEN the demo chooses its model
    env = choose_model_env()

    # THEN it falls back to U-2-Net-p and says why, and nothing on the way reads as a failure
    assert Path(env["MODEL_PATH"]).name == "u2netp.onnx"
    assert env["MODEL_OUTPUT"] == "probabilities"
    out, err = capfd.readouterr()
    assert "U-2-Net-p" in out
    assert "error" not in (out + err).lower(), out + err
