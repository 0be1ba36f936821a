"""Benchmark onnxruntime session options on a BiRefNet-lite-sized graph at 1024x1024.

Usage::

    .venv/bin/python benchmarks/session_options.py [--model M.onnx] [--runs 3] [--size 1024]

Each configuration runs in its own fresh Python subprocess: peak RSS (VmHWM) is a
per-process high-water mark that never goes down, so measuring several configs in
one process would only ever report the worst one. The child prints one JSON line;
the parent collects them, prints a markdown table and writes
``benchmarks/results/session_options.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import machine_info, peak_rss_mb, rss_mb, spawn_json, write_json  # noqa: E402

RESULTS = HERE / "results" / "session_options.json"

# name -> (description, SessionOptions attributes). "ours" mirrors what the Lambda
# handler sets: Lambda gives ~2 vCPUs at 3-4 GB, so 2 intra-op threads, no
# inter-op pool, sequential execution, and no memory pattern (the pattern
# pre-allocates one big block per input shape; with a single 1024^2 shape it buys
# little speed but raises and pins peak memory).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("onnxruntime defaults", {}),
    "ours": (
        "intra=2, inter=1, sequential, mem_pattern=off",
        {
            "intra_op_num_threads": 2,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "enable_mem_pattern": False,
        },
    ),
    "ours_no_arena": (
        "ours + cpu_mem_arena=off",
        {
            "intra_op_num_threads": 2,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "enable_mem_pattern": False,
            "enable_cpu_mem_arena": False,
        },
    ),
}

CHILD_TIMEOUT_S = 150  # per config; the whole benchmark must stay under ~6 minutes


def run_child(config: str, model: str, size: int, runs: int) -> dict[str, Any]:
    """Measure one configuration in *this* process (called in the subprocess)."""
    import numpy as np
    import onnxruntime as ort

    _, attrs = CONFIGS[config]
    so = ort.SessionOptions()
    for key, value in attrs.items():
        if key == "execution_mode":
            value = getattr(ort.ExecutionMode, value)
        setattr(so, key, value)

    # Input built before the session so its 12 MB is part of every baseline alike.
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    rss_imports = rss_mb()

    t0 = time.perf_counter()
    sess = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - t0
    rss_after_create = rss_mb()

    feeds = {"input_image": x}
    # The warm-up run is reported separately: on Lambda it is the cold-start request.
    t0 = time.perf_counter()
    sess.run(None, feeds)
    warmup_s = time.perf_counter() - t0

    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        (out,) = sess.run(None, feeds)
        times.append(time.perf_counter() - t0)

    assert out.shape == (1, 1, size, size), out.shape
    return {
        "config": config,
        "description": CONFIGS[config][0],
        "options": attrs,
        "create_s": round(create_s, 3),
        "warmup_s": round(warmup_s, 3),
        "run_s_median": round(statistics.median(times), 3),
        "run_s_all": [round(t, 3) for t in times],
        "rss_after_imports_mb": round(rss_imports, 1),
        "rss_after_create_mb": round(rss_after_create, 1),
        # Current RSS after the runs shows what a warm Lambda container keeps holding
        # (the arena does not return memory to the OS).
        "rss_after_runs_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _spawn(config: str, model: str, size: int, runs: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", config, "--model", model, "--size", str(size), "--runs", str(runs)]
    result = spawn_json(cmd, timeout=CHILD_TIMEOUT_S)
    if "error" in result:
        # e.g. killed by the OOM killer (-9): record it instead of aborting the rest.
        return {"config": config, "description": CONFIGS[config][0], **result}
    return result


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| config | options | create (s) | warm-up (s) | run median (s) "
        "| RSS after create (MB) | RSS after runs (MB) | peak RSS (MB) |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['description']} | {r['error']} |" + " |" * 5)
            continue
        lines.append(
            f"| {r['config']} | {r['description']} | {r['create_s']:.2f} | {r['warmup_s']:.2f} "
            f"| {r['run_s_median']:.2f} | {r['rss_after_create_mb']:.0f} "
            f"| {r['rss_after_runs_mb']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="onnxruntime session-options benchmark")
    p.add_argument("--model", help="existing .onnx to use (default: build the heavy graph in a temp dir)")
    p.add_argument("--size", type=int, default=1024, help="input H=W")
    p.add_argument("--runs", type=int, default=3, help="timed runs after 1 warm-up (median reported)")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    p.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.child:
        print(json.dumps(run_child(a.child, a.model, a.size, a.runs)))
        return

    with tempfile.TemporaryDirectory(prefix="ort-bench-") as tmp:
        model = a.model
        if model is None:
            from heavy_graph import build_heavy_graph

            model = os.path.join(tmp, "heavy.onnx")
            # Static shape, like a fixed-size 1024 BiRefNet export.
            build_heavy_graph(model, size=a.size)
        rows = []
        for config in a.configs:
            print(f"running {config} ...", file=sys.stderr, flush=True)
            rows.append(_spawn(config, model, a.size, a.runs))

    machine = machine_info()
    report = {
        "machine": machine,
        "model": a.model or f"benchmarks/heavy_graph.py (static {a.size}x{a.size})",
        "size": a.size,
        "runs": a.runs,
        "results": rows,
    }
    write_json(a.out, report)
    print(_table(rows))
    print(f"\nload average after the run: {machine['loadavg_1_5_15']} on {machine['cpu_count']} CPUs")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
