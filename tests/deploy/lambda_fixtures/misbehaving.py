"""Handlers that break Lambda's rules on purpose, each the way a library would: quietly.

The emulator's checks must catch every one (tests/deploy/test_lambda_runtime.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any


def write_task_root(event: Any, context: Any) -> dict[str, Any]:
    """State kept next to the code: fails on Lambda's read-only /var/task, and the error is swallowed."""
    try:
        with open("/var/task/state.json", "w") as state:
            state.write("{}")
    except OSError:
        pass
    return {"ok": True}


def resolve_name(event: Any, context: Any) -> dict[str, Any]:
    """A telemetry-style lookup whose failure nobody notices."""
    with contextlib.suppress(OSError):
        socket.getaddrinfo("mobile.events.data.microsoft.com", 443)
    return {"ok": True}


def connect_out(event: Any, context: Any) -> dict[str, Any]:
    """A connection to a non-loopback address (TEST-NET-1; UDP, so no packet is sent by connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("192.0.2.1", 9))
    return {"ok": True}


def big_response(event: Any, context: Any) -> str:
    """A response over the Runtime API's 6 MiB + 100 bytes."""
    return "x" * int(event["size"])


def hang(event: Any, context: Any) -> None:
    threading.Event().wait()


def exit_hard(event: Any, context: Any) -> None:
    os._exit(3)


def describe(event: Any, context: Any) -> dict[str, Any]:
    """What the handler sees of its environment and of its invocation."""
    try:
        with open("/tmp/probe", "w") as probe:
            probe.write("ok")
        tmp_writable = True
    except OSError:
        tmp_writable = False
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "home": os.environ.get("HOME"),
        "cwd": os.getcwd(),
        "tmp_writable": tmp_writable,
        "root_writable": os.access("/", os.W_OK) and not _read_only("/var/task"),
        "environ": dict(os.environ),
        "request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
    }


def _read_only(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
