"""The function's memory size, enforced as Lambda enforces it: a process over it is killed.

Lambda runs each execution environment in a memory cgroup of the function's MemorySize; the
kernel kills the runtime when it goes over, and Invoke reports `Runtime.OutOfMemory`. Here each
environment gets a memory cgroup of its own, made inside the emulator's own cgroup (so whatever
limits the machine puts on the emulator still hold), with swap counted too. The cgroup's own
record of OOM kills tells an out-of-memory death from any other SIGKILL.

Where no memory cgroup may be created (not root, no memory controller), `MemoryLimit.create`
returns None and the environment runs unlimited, as before; `enforced` tells callers (the OOM
tests skip without it). Unlike Lambda, /tmp is a tmpfs in the sandbox and its pages are charged
to the cgroup: a function that fills /tmp has that much less memory here.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from pathlib import Path

_V1_ROOT = Path("/sys/fs/cgroup/memory")
_V2_ROOT = Path("/sys/fs/cgroup")
_numbers = itertools.count(1)
# Removing a cgroup whose processes the kernel is still reaping: up to ~1 s.
_REMOVE_TRIES = 50
_REMOVE_PAUSE_S = 0.02


def _own_cgroup(root: Path, v2: bool) -> Path | None:
    """This process's cgroup directory in the hierarchy mounted at `root`."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (v2 and controllers == "") or (not v2 and "memory" in controllers.split(",")):
            return root / path.lstrip("/")
    return None


class MemoryLimit:
    """One environment's memory cgroup, which its processes join as they start (see function.py)."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    @classmethod
    def create(cls, name: str, limit_mb: int) -> MemoryLimit | None:
        limit = str(limit_mb * 1024 * 1024)
        for v2, root in ((True, _V2_ROOT), (False, _V1_ROOT)):
            if v2 and "memory" not in _read(root / "cgroup.controllers").split():
                continue
            parent = _own_cgroup(root, v2)
            if parent is None or not parent.is_dir():
                continue
            path = parent / f"emulator-{os.getpid()}-{next(_numbers)}-{name}"
            try:
                path.mkdir()
                if v2:
                    (path / "memory.max").write_text(limit)
                    with contextlib.suppress(OSError):
                        (path / "memory.swap.max").write_text("0")
                else:
                    (path / "memory.limit_in_bytes").write_text(limit)
                    with contextlib.suppress(OSError):  # absent where swap accounting is off
                        (path / "memory.memsw.limit_in_bytes").write_text(limit)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            return cls(path, v2)
        return None

    @classmethod
    def available(cls) -> bool:
        """Whether environments started here will have their memory size enforced."""
        probe = cls.create("probe", 64)
        if probe is None:
            return False
        probe.remove()
        return True

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this cgroup for going over the limit."""
        text = _read(self.path / ("memory.events" if self.v2 else "memory.oom_control"))
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone. The kernel reaps a killed sandbox's
        processes (bwrap's PID namespace) a moment after its leader: any left are killed and the
        removal tried again, a bounded number of times; a cgroup that still has one stays."""
        for _ in range(_REMOVE_TRIES):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                for pid in _read(self.path / "cgroup.procs").split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(_REMOVE_PAUSE_S)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
