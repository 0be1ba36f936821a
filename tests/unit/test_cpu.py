"""The CPU share: Lambda's memory-bought vCPUs, cgroup quotas, and the onnxruntime options built on them."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort
import pytest

from handler.core.cpu import available_cpus, cgroup_cpus, lambda_vcpus
from handler.core.model.session import session_options


@pytest.mark.parametrize(
    ("memory_mb", "vcpus"),
    [
        (128, 1),
        (1769, 1),  # AWS: 1,769 MB is exactly one vCPU
        (1770, 2),  # a partial vCPU still runs a thread
        (3008, 2),
        (3538, 2),
        (3539, 3),
        (10240, 6),  # the maximum memory buys the maximum of 6 vCPUs
    ],
)
def test_lambda_vcpus(memory_mb: int, vcpus: int) -> None:
    assert lambda_vcpus(memory_mb) == vcpus


@pytest.mark.parametrize(
    ("content", "cpus"),
    [
        ("200000 100000\n", 2),
        ("150000 100000\n", 2),  # 1.5 CPUs round up
        ("50000 100000\n", 1),  # never below one
        ("400000 100000", 4),
        ("max 100000\n", None),  # no quota
        ("", None),
        ("abc 100000\n", None),  # malformed: unknown, not a crash
        ("100000 0\n", None),
    ],
)
def test_cgroup_cpus_reads_cpu_max(tmp_path: Path, content: str, cpus: int | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)

    assert cgroup_cpus(cpu_max) == cpus


def test_cgroup_cpus_without_the_file_is_unknown(tmp_path: Path) -> None:
    assert cgroup_cpus(tmp_path / "missing" / "cpu.max") is None


@pytest.mark.parametrize(
    ("schedulable", "cpu_max", "memory_mb", "cpus"),
    [
        (4, "max 100000", None, 4),  # nothing but the CPUs we may run on
        (4, "max 100000", "1769", 1),  # Lambda's memory share is the limit
        (4, "max 100000", "10240", 4),  # 6 vCPUs bought, 4 schedulable
        (8, "max 100000", "10240", 6),  # 8 schedulable, 6 vCPUs bought
        (4, "200000 100000", "10240", 2),  # the cgroup quota is the limit
        (4, "250000 100000", "3538", 2),  # 2 vCPUs bought, a quota of 2.5 rounds up to 3
        (1, "400000 100000", "10240", 1),  # one schedulable CPU, whatever else is allowed
        (4, "max 100000", "lots", 4),  # an unreadable memory size is no limit
    ],
)
def test_available_cpus_is_the_smallest_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, schedulable: int, cpu_max: str, memory_mb: str | None, cpus: int
) -> None:
    # GIVEN a process allowed on `schedulable` CPUs, a cgroup quota, and a Lambda memory size
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(schedulable)))
    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max + "\n")
    environ = {} if memory_mb is None else {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory_mb}

    # THEN the thread count is the tightest of them
    assert available_cpus(environ, cpu_max=quota) == cpus


@pytest.mark.parametrize("threads", [1, 2, 6])
def test_session_options_use_the_share_sequentially_without_memory_pattern(threads: int) -> None:
    options = session_options(threads)

    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    # with the memory pattern on, BiRefNet-lite peaked at 11-12 GB instead of 7 GB (docs/sizing.md)
    assert options.enable_mem_pattern is False
    assert options.enable_cpu_mem_arena is True
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
