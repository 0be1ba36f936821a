"""Peak memory of a piece of work, counted by the kernel in a fresh interpreter.

Pillow's pixel buffers are invisible to tracemalloc, so what image work holds at its peak is read
from the process's own high-water mark (VmHWM), reset once the setup is done (`clear_refs`), less
what the process held then. glibc's free memory is handed back before the work starts, so the
figure is what the work itself made resident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import ctypes, gc, sys
def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))
exec(sys.argv[1])
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")  # resets VmHWM to the current RSS
exec(sys.argv[2])
print(status("VmHWM") - before)
"""


def peak_bytes(setup: str, work: str, *, cpus: int = 2) -> int:
    """How far resident memory rose above its level after `setup` while `work` ran (Python source,
    run in a fresh interpreter with the checkout importable, on at most `cpus` CPUs' worth of threads
    as a Lambda function of that share)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(1769 * cpus)}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, setup, work], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])
