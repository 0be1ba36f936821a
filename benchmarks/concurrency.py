"""Concurrency: the local server under 1/2/4/8 concurrent clients, and why inference is serialised.

Usage::

    .venv/bin/python benchmarks/concurrency.py [--requests 24] [--clients 1 2 4 8] [--heavy-size 512]
                                              [--parts server model]

Part `server`: `python -m handler serve`'s LocalServer (real U-2-Net-p, embedded moto S3) in a
fresh child process per client count; the parent sends --requests POST /remove requests in total
(the three samples in turn), spread over N client threads, each on its own connection, after two
untimed warm-up requests. Reported: throughput (requests/s over the wall time), latency
percentiles as the clients see them (queueing for the model included), and the server process's
peak RSS (VmHWM, read from /proc/<pid>/status: model, embedded S3 and every request's buffers).

Part `model`: the design question behind the server's single invocation slot. The model alone
(`BackgroundModel.mask`, threads = all CPUs as in Lambda) under N threads, each running
--model-runs inferences, either serialised (a lock around the call: what the server does) or
concurrent (onnxruntime's `run()` is thread-safe, so N runs at once): throughput and peak RSS
above the loaded model, per model: U-2-Net-p and benchmarks/heavy_graph.py at --heavy-size
(BiRefNet-lite's cost profile). A fresh process per measurement.

Prints markdown tables and writes benchmarks/results/concurrency.json with machine info.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from measure import loadavg, machine_info, peak_rss_mb, rss_mb, spawn_json, write_json  # noqa: E402

RESULTS = HERE / "results" / "concurrency.json"
SAMPLES = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")
START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 600


# --- Part `server` ------------------------------------------------------------------------------


def serve_child(model_path: str) -> None:
    """Run the local server until stdin closes; its URL is the first line on stdout."""
    from handler.local.server import LocalServer

    with LocalServer(port=0, env={"MODEL_PATH": model_path, "MODEL_OUTPUT": "probabilities"}) as server:
        print(json.dumps({"url": server.url}), flush=True)
        sys.stdin.read()


def _vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _post(url: str, body: bytes) -> tuple[int, float]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "image/jpeg"})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        response.read()
        return response.status, time.perf_counter() - began


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def measure_server(clients: int, requests: int, model_path: str) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-child", model_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        url = json.loads(child.stdout.readline())["url"]
        photos = [(ROOT / "samples" / name).read_bytes() for name in SAMPLES]
        for photo in photos[:2]:
            _post(f"{url}/remove", photo)  # warm-up: first-call allocations, connections
        rss_after_warmup = _vm_hwm_mb(child.pid)
        start = threading.Barrier(clients)

        def client(number: int) -> list[tuple[int, float]]:
            start.wait()
            mine = range(number, requests, clients)
            return [_post(f"{url}/remove", photos[index % len(photos)]) for index in mine]

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            answers = [answer for result in pool.map(client, range(clients)) for answer in result]
        wall = time.perf_counter() - began
        peak = _vm_hwm_mb(child.pid)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(60)
    latencies = [seconds * 1000 for _, seconds in answers]
    return {
        "clients": clients,
        "requests": len(answers),
        "errors": sum(1 for status, _ in answers if status != 200),
        "requests_per_s": round(len(answers) / wall, 3),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p95": round(_percentile(latencies, 0.95), 1),
        "latency_ms_max": round(max(latencies), 1),
        "peak_rss_after_warmup_mb": round(rss_after_warmup, 1),
        "peak_rss_mb": round(peak, 1),
    }


# --- Part `model` -------------------------------------------------------------------------------


def model_child(model_path: str, output: str, threads: int, runs: int, serialised: bool) -> dict[str, Any]:
    from PIL import Image

    from handler.core.cpu import available_cpus
    from handler.core.model.session import BackgroundModel
    from handler.core.model.settings import ModelSpec

    model = BackgroundModel.load(model_path, ModelSpec(output=output), threads=available_cpus())  # type: ignore[arg-type]
    photo = Image.open(ROOT / "samples" / "astronaut.jpg").convert("RGB")
    model.probabilities(photo)  # warm-up
    rss_loaded = rss_mb()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(_: int) -> None:
        start.wait()
        for _ in range(runs):
            if serialised:
                with lock:
                    model.probabilities(photo)
            else:
                model.probabilities(photo)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(worker, range(threads)))
    wall = time.perf_counter() - began
    peak = peak_rss_mb()
    return {
        "threads": threads,
        "mode": "serialised" if serialised else "concurrent",
        "inferences": threads * runs,
        "inferences_per_s": round(threads * runs / wall, 3),
        "rss_loaded_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_above_loaded_mb": round(peak - rss_loaded, 1),
    }


def _model_children(models: dict[str, tuple[str, str]], levels: list[int], runs: int) -> list[dict[str, Any]]:
    rows = []
    for label, (path, output) in models.items():
        for threads in levels:
            for serialised in [True] if threads == 1 else [True, False]:
                spec = json.dumps(
                    {"model": path, "output": output, "threads": threads, "runs": runs, "serialised": serialised}
                )
                print(
                    f"model {label}: {threads} threads, {'serialised' if serialised else 'concurrent'} ...",
                    file=sys.stderr,
                    flush=True,
                )
                result = spawn_json(
                    [sys.executable, __file__, "--model-child", spec], timeout=REQUEST_TIMEOUT_S, cwd=ROOT
                )
                rows.append({"model": label, **result})
    return rows


# --- The parent ---------------------------------------------------------------------------------


def _tables(report: dict[str, Any]) -> str:
    lines = []
    if report.get("server"):
        lines += [
            "| clients | requests | errors | requests/s | latency p50 (ms) | p95 (ms) | max (ms) | peak RSS (MB) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in report["server"]:
            lines.append(
                f"| {row['clients']} | {row['requests']} | {row['errors']} | {row['requests_per_s']:.2f} "
                f"| {row['latency_ms_p50']:.0f} | {row['latency_ms_p95']:.0f} | {row['latency_ms_max']:.0f} "
                f"| {row['peak_rss_mb']:.0f} |"
            )
    if report.get("model"):
        lines += [
            "",
            "| model | threads | mode | inferences/s | peak RSS (MB) | peak above the process after one warm inference (MB) |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for row in report["model"]:
            if "error" in row:
                lines.append(f"| {row['model']} | | | {row['error']} | | |")
                continue
            lines.append(
                f"| {row['model']} | {row['threads']} | {row['mode']} | {row['inferences_per_s']:.2f} "
                f"| {row['peak_rss_mb']:.0f} | {row['peak_above_loaded_mb']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="local server under concurrent clients; serialised vs concurrent")
    parser.add_argument("--requests", type=int, default=24, help="timed requests per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--model-threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--model-runs", type=int, default=3, help="inferences per thread (part model)")
    parser.add_argument("--heavy-size", type=int, default=512)
    parser.add_argument("--parts", nargs="+", choices=["server", "model"], default=["server", "model"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve-child", help=argparse.SUPPRESS)
    parser.add_argument("--model-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve_child:
        serve_child(args.serve_child)
        return
    if args.model_child:
        spec = json.loads(args.model_child)
        print(json.dumps(model_child(spec["model"], spec["output"], spec["threads"], spec["runs"], spec["serialised"])))
        return

    sys.path.insert(0, str(ROOT / "scripts"))
    from fetch_u2netp import ensure_u2netp
    from heavy_graph import build_heavy_graph

    u2netp = str(ensure_u2netp())
    loadavg_before = loadavg()
    report: dict[str, Any] = {}
    began = time.perf_counter()
    if "server" in args.parts:
        report["server"] = []
        for clients in args.clients:
            print(f"server: {clients} clients ...", file=sys.stderr, flush=True)
            report["server"].append(measure_server(clients, args.requests, u2netp))
    if "model" in args.parts:
        with tempfile.TemporaryDirectory(prefix="concurrency-bench-") as tmp:
            heavy = os.path.join(tmp, f"heavy-{args.heavy_size}.onnx")
            build_heavy_graph(heavy, size=args.heavy_size)
            models = {"U-2-Net-p": (u2netp, "probabilities"), f"heavy_graph {args.heavy_size}": (heavy, "logits")}
            report["model"] = _model_children(models, args.model_threads, args.model_runs)
    machine = machine_info()
    machine["loadavg_before_1_5_15"] = loadavg_before
    report = {
        "machine": machine,
        "wall_s": round(time.perf_counter() - began, 1),
        "method": {
            "server": (
                f"LocalServer (U-2-Net-p, embedded moto S3) in a fresh child per client count; {args.requests} "
                "timed POST /remove of the 3 samples in turn, spread over the clients, after 2 warm-up requests; "
                "peak RSS = the server's VmHWM"
            ),
            "model": (
                f"BackgroundModel.mask on astronaut.jpg, threads = all CPUs; N threads x {args.model_runs} "
                "inferences, with a lock (serialised) or without (concurrent); fresh process each; peak = VmHWM"
            ),
        },
        **report,
    }
    write_json(args.out, report)
    print(_tables(report))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
