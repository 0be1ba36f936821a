"""How many CPUs this process may really use: the basis of onnxruntime's thread count.

`os.cpu_count()` reports the host's cores, not the share we are given. On Lambda the share is
bought with memory (1,769 MB = 1 vCPU, 10,240 MB = 6 vCPUs) while the visible core count can be
higher; in containers a cgroup quota does the same. Oversubscribing threads on a fractional share
makes inference slower, not faster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

LAMBDA_MB_PER_VCPU = 1769
LAMBDA_MAX_VCPUS = 6
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def lambda_vcpus(memory_mb: int) -> int:
    """vCPUs a Lambda function gets for its memory size, rounded up (a partial vCPU still runs a thread)."""
    return max(1, min(LAMBDA_MAX_VCPUS, math.ceil(memory_mb / LAMBDA_MB_PER_VCPU)))


def cgroup_cpus(cpu_max: Path = _CGROUP_CPU_MAX) -> int | None:
    """The cgroup v2 CPU quota in whole CPUs (rounded up), or None when unlimited or unknown."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def available_cpus(environ: Mapping[str, str] | None = None, *, cpu_max: Path = _CGROUP_CPU_MAX) -> int:
    """The smallest of: CPUs we may be scheduled on, the cgroup quota, and Lambda's memory share."""
    env = os.environ if environ is None else environ
    limits = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)]
    quota = cgroup_cpus(cpu_max)
    if quota is not None:
        limits.append(quota)
    memory = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory.isdigit():
        limits.append(lambda_vcpus(int(memory)))
    return max(1, min(limits))


def map_over_cpus(work: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """`work` on every item, in order, on threads up to the CPU share (none for one item or one CPU).

    For image work split into independent parts: Pillow and numpy release the GIL in their loops,
    so the parts share the cores. A part's error is raised here.
    """
    threads = min(available_cpus(), len(items))
    if threads <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, items))
