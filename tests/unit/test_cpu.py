"""The CPU share: Lambda's memory-bought vCPUs, cgroup quotas, and the onnxruntime options built on them."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort
import pytest

from handler.core.cpu import available_cpus, cgroup_cpus, lambda_vcpus
from handler.core.model import session_options


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


def test_available_cpus_is_capped_by_lambda_memory() -> None:
    schedulable = len(os.sched_getaffinity(0))

    assert available_cpus({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}) == 1
    assert available_cpus({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240"}) == min(schedulable, 6, cgroup_cpus() or 6)
    assert 1 <= available_cpus({}) <= schedulable


@pytest.mark.parametrize("threads", [1, 2, 6])
def test_session_options_use_the_share_sequentially_without_memory_pattern(threads: int) -> None:
    options = session_options(threads)

    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    # DESIGN §2: with the memory pattern on, BiRefNet-lite peaked at 11-12 GB instead of 7 GB
    assert options.enable_mem_pattern is False
    assert options.enable_cpu_mem_arena is True
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
