"""Thread scaling, oversubscription, and the Lambda sizing table derived from them.

Usage::

    .venv/bin/python benchmarks/threads.py [--runs 3] [--size 1024]

Measures one 1024x1024 inference of the heavy stand-in graph with 1 and 2 intra-op threads (all
this 2-core machine has) and with 4 and 8 (what `os.cpu_count()` could suggest on a Lambda host
whose visible cores exceed the vCPU share). From the 1->2 thread speed-up it fits Amdahl's law,
then estimates time and cost per image for Lambda memory sizes from 3008 to 10240 MB, scaled to
BiRefNet-lite's own time measured on this kind of machine (the real export, not a stand-in).

Prints markdown tables and writes benchmarks/results/threads.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.heavy_graph import build_heavy_graph
from benchmarks.measure import RESULTS, machine_info, run_child

SCRIPT = Path(__file__).resolve()
THREADS = (1, 2, 4, 8)
MEMORY_SIZES_MB = (3008, 4096, 6144, 8192, 10240)
# BiRefNet-lite's default export at 1024x1024 on a 2-vCPU machine like this one (the real export, measured):
# 8.7-15.4 s per image, peak 7.0 GB with enable_mem_pattern=False; the native-DeformConv export
# 5.2-7.5 s, 2.4 GB. Midpoints are used for the estimate.
BIREFNET_LITE_2_THREADS_S = {"default export (GatherND)": (8.7 + 15.4) / 2, "native DeformConv export": (5.2 + 7.5) / 2}
BIREFNET_LITE_PEAK_MB = {"default export (GatherND)": 7000, "native DeformConv export": 2400}
# AWS Lambda price list for x86_64 in us-east-1 (the published on-demand rates, unchanged since
# the 2020 per-millisecond billing; checked against the pricing page as known on 2026-11-24):
PRICE_PER_GB_SECOND = 0.0000166667
PRICE_PER_REQUEST = 0.20 / 1_000_000
# Above the model's peak: the largest photo's share of the function's peak (~0.25 GB for 64 MP, whose
# cutout is made after the model's working memory is handed back; benchmarks/lambda_memory.py) and
# as much again for what varies between runs and between the stand-in and the real network.
HEADROOM_MB = 512


def child(model: str, size: int, threads: int, runs: int) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from handler.core.model.session import session_options

    session = ort.InferenceSession(model, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    feeds = {"input_image": np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)}
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return {"threads": threads, "run_s": statistics.median(times), "all_s": times}


def lambda_vcpus(memory_mb: int) -> float:
    return min(6.0, memory_mb / 1769)


def sizing(one_thread_s: float, two_threads_s: float) -> list[dict[str, Any]]:
    """Amdahl's law fitted on 1 and 2 threads, applied to the vCPU share each memory size buys."""
    parallel = min(1.0, max(0.0, 2.0 * (1.0 - two_threads_s / one_thread_s)))
    rows = []
    for export, birefnet_2_threads_s in BIREFNET_LITE_2_THREADS_S.items():
        # Time for n (possibly fractional) vCPUs, relative to 2 vCPUs, from the fitted curve.
        def relative(vcpus: float) -> float:
            return ((1 - parallel) + parallel / vcpus) / ((1 - parallel) + parallel / 2)

        for memory in MEMORY_SIZES_MB:
            vcpus = lambda_vcpus(memory)
            seconds = birefnet_2_threads_s * relative(vcpus)
            fits = BIREFNET_LITE_PEAK_MB[export] + HEADROOM_MB <= memory
            cost = seconds * memory / 1024 * PRICE_PER_GB_SECOND + PRICE_PER_REQUEST
            rows.append(
                {
                    "export": export,
                    "memory_mb": memory,
                    "vcpus": round(vcpus, 2),
                    "threads": math.ceil(vcpus),
                    "seconds": round(seconds, 1),
                    "fits": fits,
                    "usd_per_1000_images": round(cost * 1000, 3) if fits else None,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args(argv)
    if args.child:
        model, size, threads, runs = args.child
        print(json.dumps(child(model, int(size), int(threads), int(runs))))
        return

    model = RESULTS / "work" / f"heavy_{args.size}.onnx"
    model.parent.mkdir(parents=True, exist_ok=True)
    if not model.exists():
        build_heavy_graph(str(model), size=args.size)
    measured = {n: run_child(SCRIPT, str(model), str(args.size), str(n), str(args.runs)) for n in THREADS}
    rows = sizing(measured[1]["run_s"], measured[2]["run_s"])
    report: dict[str, Any] = {"machine": machine_info(), "threads": list(measured.values()), "lambda_sizing": rows}
    (RESULTS / "threads.json").write_text(json.dumps(report, indent=2) + "\n")

    lines = ["| intra-op threads | run (s) | vs 2 threads |", "|---|---|---|"]
    lines += [f"| {n} | {m['run_s']:.2f} | {m['run_s'] / measured[2]['run_s']:.2f}x |" for n, m in measured.items()]
    lines += [
        "",
        "| export | memory (MB) | vCPUs | threads | s / image | fits | USD / 1000 images |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cost = f"{row['usd_per_1000_images']:.3f}" if row["fits"] else "—"
        lines.append(
            f"| {row['export']} | {row['memory_mb']} | {row['vcpus']} | {row['threads']} | {row['seconds']} | "
            f"{'yes' if row['fits'] else 'no'} | {cost} |"
        )
    lines.append(
        f"\nMachine: {report['machine']['cpu_count']} x {report['machine']['cpu_model']}, load {report['machine']['loadavg_1_5_15']}."
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
