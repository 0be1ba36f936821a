"""The demo's hub probe: a machine without the hub must not wait out the hub client's retries."""

from __future__ import annotations

import socket

from scripts.demo import hub_reachable


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
