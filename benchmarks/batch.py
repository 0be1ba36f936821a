"""Benchmark a batch of 10 S3 objects through the jobs entry point, JOBS_PREFETCH off vs on.

Usage::

    .venv/bin/python benchmarks/batch.py [--rounds 3] [--latency-ms 100] [--heavy-size 512]
                                         [--scenarios u2netp u2netp+latency heavy+latency]

One S3 notification with 10 records (the 3 photos in samples/ and 7 generated 2-12 MP JPEGs)
goes through `handler.jobs.lambda_handler`, reading from and writing to a local S3: moto's
ThreadedMotoServer on 127.0.0.1, run by this (parent) process, so the function's process
holds only the function. With JOBS_PREFETCH=1 the next object is read and the previous one's
outputs are written in the background while one is inferred; with 0, one object after another.

The children import a snapshot of handler/ copied at start (PYTHONPATH), so edits made while the
benchmark runs cannot mix two versions of the code into one table; its git commit and hash are
recorded. Each measurement is a fresh subprocess (a clean peak RSS: VmHWM, which never goes
down): it loads the model (the init phase), handles the whole batch once as a warm-up, empties the
output bucket, then times one invocation of the whole batch. Modes are interleaved (off/on,
on/off, ...) and the median of the rounds is reported per mode, with the on/off ratio both of the
medians and as the median of each round's back-to-back pair.

On a shared machine the time inside render.process moves with the load of everything else; the
batch's time *outside* it (waiting for S3, and the handler's own work) is what the overlap can
remove, and it is reported too.

Scenarios:

- `u2netp`: the real U-2-Net-p model (scripts/fetch_u2netp.py), MODEL_OUTPUT=probabilities, and
  S3 as fast as local moto is.
- `u2netp+latency`, `heavy+latency`: the same, or benchmarks/heavy_graph.py (BiRefNet-lite's
  cost profile) at --heavy-size, with an ARTIFICIAL fixed delay of --latency-ms added to every
  S3 GET and PUT the function makes (in this benchmark only: `Storage.read`/`Storage.write` are
  wrapped in the child; HEADs get none). Local moto answers in a few ms, a real S3 GET of a 5 MB
  object takes ~50-150 ms. The delay sleeps, so like real network waits it costs no CPU; moto's
  own serving does cost CPU on this machine, which real S3 would not.

Prints a markdown table and writes ``benchmarks/results/batch.json`` with machine info.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# benchmarks/, not the repository root: the children must import handler/ from the snapshot that
# PYTHONPATH names, and the root put first on sys.path would shadow it.
sys.path.insert(0, str(HERE))

from measure import loadavg, machine_info, peak_rss_mb, rss_mb, spawn_json, start_local_s3, write_json  # noqa: E402

RESULTS = HERE / "results" / "batch.json"
SAMPLES = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")
# Generated photos (megapixels), from the samples upscaled with film-like grain, JPEG quality 90.
GENERATED_MP = (2, 3, 5, 6, 8, 10, 12)
INPUT_BUCKET = "bench-uploads"
INPUT_PREFIX = "uploads/"
MODES = {"off": "0", "on": "1"}
SCENARIOS = ("u2netp", "u2netp+latency", "heavy+latency")
CHILD_TIMEOUT_S = 600


# --- The child: one fresh process, one mode ---------------------------------------------------


class _S3Clock:
    """Wraps Storage.read/write/metadata: adds the artificial latency (read, write) and times calls."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.seconds = {"read": 0.0, "write": 0.0, "metadata": 0.0}
        self._lock = threading.Lock()

    def install(self) -> None:
        from handler.aws.storage import Storage

        for name in self.seconds:
            setattr(Storage, name, self._wrap(name, getattr(Storage, name)))

    def _wrap(self, name: str, method: Any) -> Any:
        delay = self.latency_s if name in ("read", "write") else 0.0

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                if delay:
                    time.sleep(delay)
                return method(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] += time.perf_counter() - started

        return timed


def _event(keys: list[str]) -> dict[str, Any]:
    template = json.loads((ROOT / "events" / "s3_put.json").read_text())["Records"][0]
    records = []
    for key in keys:
        record = copy.deepcopy(template)
        record["s3"]["bucket"].update(name=INPUT_BUCKET, arn=f"arn:aws:s3:::{INPUT_BUCKET}")
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
        records.append(record)
    return {"Records": records}


def run_child(keys: list[str], output_bucket: str, latency_ms: float) -> dict[str, Any]:
    """Measure one batch in *this* process (the environment names the model, S3 and the mode)."""
    import boto3

    clock = _S3Clock(latency_ms / 1000)
    clock.install()
    started = time.perf_counter()
    from handler import jobs  # the init phase: settings, model session, S3 client
    from handler.aws.observability import logger
    from handler.local.context import LocalLambdaContext

    init_s = time.perf_counter() - started
    rss_after_init = rss_mb()
    log = io.StringIO()
    logger.registered_handler.setStream(log)  # type: ignore[attr-defined]
    event = _event(keys)
    s3 = boto3.client("s3")

    def invoke() -> tuple[float, dict[str, Any]]:
        with contextlib.redirect_stdout(io.StringIO()):  # EMF metrics
            began = time.perf_counter()
            summary = jobs.lambda_handler(
                event,
                LocalLambdaContext(
                    function_name="background-remover-jobs", timeout_seconds=300, memory_limit_in_mb=10240
                ),
            )
            return time.perf_counter() - began, summary

    warmup_s, _ = invoke()
    for item in s3.list_objects_v2(Bucket=output_bucket).get("Contents", []):
        s3.delete_object(Bucket=output_bucket, Key=item["Key"])
    log.seek(0)
    log.truncate()
    clock.seconds = dict.fromkeys(clock.seconds, 0.0)
    threads_before = threading.active_count()

    cpu_started = time.process_time()
    seconds, summary = invoke()
    cpu_s = time.process_time() - cpu_started

    processed = [json.loads(line) for line in log.getvalue().splitlines() if '"object processed"' in line]
    if summary["processed"] != len(keys) or len(processed) != len(keys):
        raise RuntimeError(f"expected {len(keys)} objects processed, got {summary}")
    return {
        "batch_s": round(seconds, 3),
        "objects_per_s": round(len(keys) / seconds, 3),
        "warmup_s": round(warmup_s, 3),
        "init_s": round(init_s, 3),
        # Time inside render.process (decode, inference, encode) and what it reports as
        # inference_ms, summed over the objects.
        "render_s": round(sum(line["total_ms"] for line in processed) / 1000, 3),
        # Wall time of the batch not spent in render.process: waiting for S3, plus the handler's own
        # work. What the overlap can remove; unlike render time it hardly moves with the machine's load.
        "outside_render_s": round(seconds - sum(line["total_ms"] for line in processed) / 1000, 3),
        "cpu_s": round(cpu_s, 3),
        "inference_s": round(sum(line["inference_ms"] for line in processed) / 1000, 3),
        # Time in S3 calls, summed over threads (includes the artificial latency).
        "s3_s": {name: round(value, 3) for name, value in clock.seconds.items()},
        "megapixels": round(sum(line["megapixels"] for line in processed), 1),
        "rss_after_init_mb": round(rss_after_init, 1),
        # VmHWM, not ru_maxrss, which would carry the parent's peak (moto's objects, the photos) over.
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads_left": threading.active_count() - threads_before,
    }


# --- The parent: S3, inputs, children, report -------------------------------------------------


def _photos(directory: Path) -> dict[str, bytes]:
    """The 10 inputs by key: the samples, then generated larger photos (deterministic)."""
    import numpy as np
    from PIL import Image

    photos = {f"{INPUT_PREFIX}{name}": (ROOT / "samples" / name).read_bytes() for name in SAMPLES}
    rng = np.random.default_rng(20240601)
    for number, megapixels in enumerate(GENERATED_MP):
        sample = SAMPLES[number % len(SAMPLES)]
        path = directory / f"generated-{megapixels}mp-{number}.jpg"
        if not path.exists():
            with Image.open(ROOT / "samples" / sample) as source:
                width, height = source.size
                scale = (megapixels * 1e6 / (width * height)) ** 0.5
                size = (round(width * scale), round(height * scale))
                big = np.asarray(source.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
            grain = rng.normal(0.0, 4.0, big.shape).astype(np.int16)
            picture = Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8), "RGB")
            picture.save(path, "JPEG", quality=90)
        photos[f"{INPUT_PREFIX}{path.name}"] = path.read_bytes()
    return photos


def _snapshot(directory: Path) -> dict[str, Any]:
    """Copy handler/ to `directory`/handler (the children import it); what the copy is."""
    target = directory / "handler"
    shutil.copytree(ROOT / "handler", target, ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted(target.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        completed = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return completed.stdout.strip()

    return {
        "git_commit": git("rev-parse", "HEAD"),
        "handler_uncommitted_changes": bool(git("status", "--porcelain", "--", "handler")),
        "handler_sha256": digest.hexdigest(),
    }


def _size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        return picture.size


def _spawn(env: dict[str, str], keys: list[str], output_bucket: str, latency_ms: float) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        json.dumps({"keys": keys, "output_bucket": output_bucket, "latency_ms": latency_ms}),
    ]
    return spawn_json(command, timeout=CHILD_TIMEOUT_S, env=env, cwd=ROOT)


def _median(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.median(run[field] for run in runs)


def _summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode, measured in runs.items():
        ok = [run for run in measured if "error" not in run]
        if not ok:
            summary[mode] = {"error": measured[0].get("error") if measured else "no runs"}
            continue
        summary[mode] = {
            "objects_per_s_median": round(_median(ok, "objects_per_s"), 3),
            "batch_s_median": round(_median(ok, "batch_s"), 3),
            "render_s_median": round(_median(ok, "render_s"), 3),
            "outside_render_s_median": round(_median(ok, "outside_render_s"), 3),
            "cpu_s_median": round(_median(ok, "cpu_s"), 3),
            "inference_s_median": round(_median(ok, "inference_s"), 3),
            "peak_rss_mb_median": round(_median(ok, "peak_rss_mb"), 1),
            "peak_rss_mb_max": max(run["peak_rss_mb"] for run in ok),
            "runs": len(ok),
        }
    if all("objects_per_s_median" in summary.get(mode, {}) for mode in MODES):
        summary["speedup"] = round(summary["on"]["objects_per_s_median"] / summary["off"]["objects_per_s_median"], 3)
        # Each round's on/off pair ran back to back: the median of their ratios is less exposed to
        # the machine's load drifting between rounds than the ratio of the medians.
        pairs = [
            on["objects_per_s"] / off["objects_per_s"]
            for on, off in zip(runs["on"], runs["off"], strict=False)
            if "error" not in on and "error" not in off
        ]
        summary["speedup_paired_median"] = round(statistics.median(pairs), 3) if pairs else None
    return summary


def _table(report: dict[str, Any]) -> str:
    lines = [
        "| scenario | model | added S3 latency | prefetch | objects/s (median) | batch (s) "
        "| in render.process (s) | outside it (s) | peak RSS (MB) | on/off (ratio of medians; paired) |",
        "|" + "---|" * 10,
    ]
    for scenario in report["scenarios"]:
        summary = scenario["summary"]
        for mode in MODES:
            row = summary[mode]
            if "error" in row:
                lines.append(f"| {scenario['name']} | {scenario['model']} | | {mode} | {row['error']} |" + " |" * 5)
                continue
            ratio = ""
            if mode == "on" and "speedup" in summary:
                ratio = f"**{summary['speedup']:.2f}x**; {summary['speedup_paired_median']:.2f}x"
            latency = f"{scenario['latency_ms']:.0f} ms per GET/PUT" if scenario["latency_ms"] else "none (moto)"
            lines.append(
                f"| {scenario['name']} | {scenario['model']} | {latency} | {mode} "
                f"| {row['objects_per_s_median']:.2f} | {row['batch_s_median']:.2f} | {row['render_s_median']:.2f} "
                f"| {row['outside_render_s_median']:.2f} | {row['peak_rss_mb_median']:.0f} | {ratio} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="jobs batch benchmark: JOBS_PREFETCH off vs on")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per mode, interleaved (median)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="artificial delay per S3 GET/PUT")
    parser.add_argument("--heavy-size", type=int, default=512, help="input size of the heavy graph")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_child(spec["keys"], spec["output_bucket"], spec["latency_ms"])))
        return

    import boto3

    sys.path.insert(0, str(ROOT / "scripts"))
    from fetch_u2netp import ensure_u2netp
    from heavy_graph import build_heavy_graph

    loadavg_before = loadavg()
    server, aws = start_local_s3()
    try:
        with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
            code = _snapshot(Path(tmp))
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=INPUT_BUCKET)
            photos = _photos(Path(tmp))
            for key, data in photos.items():
                s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=data)
            sizes = {key: _size(data) for key, data in photos.items()}
            inputs = [{"key": key, "bytes": len(data), "size": sizes[key]} for key, data in photos.items()]
            megapixels = sum(width * height for width, height in sizes.values()) / 1e6
            keys = list(photos)
            heavy = Path(tmp) / f"heavy-{args.heavy_size}.onnx"
            build_heavy_graph(str(heavy), size=args.heavy_size)
            models = {
                "u2netp": (str(ensure_u2netp()), "probabilities", "U-2-Net-p (real, 320x320)"),
                "heavy": (str(heavy), "logits", f"heavy_graph.py {args.heavy_size}x{args.heavy_size}"),
            }
            scenarios = []
            bucket_number = 0
            for name in args.scenarios:
                model_name, _, extra = name.partition("+")
                model_path, output, label = models[model_name]
                latency_ms = args.latency_ms if extra == "latency" else 0.0
                runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
                for round_number in range(args.rounds):
                    order = list(MODES) if round_number % 2 == 0 else list(reversed(MODES))
                    for mode in order:
                        bucket_number += 1
                        output_bucket = f"bench-results-{bucket_number}"
                        s3.create_bucket(Bucket=output_bucket)
                        env = {
                            **os.environ,
                            **aws,
                            "PYTHONPATH": tmp,  # the snapshot of handler/
                            "MODEL_PATH": model_path,
                            "MODEL_OUTPUT": output,
                            "INPUT_BUCKET": INPUT_BUCKET,
                            "INPUT_PREFIX": INPUT_PREFIX,
                            "OUTPUT_BUCKET": output_bucket,
                            "JOBS_PREFETCH": MODES[mode],
                            "HF_HUB_OFFLINE": "1",
                            "POWERTOOLS_TRACE_DISABLED": "true",
                            "POWERTOOLS_METRICS_NAMESPACE": "BackgroundRemoverBench",
                        }
                        print(f"{name}: round {round_number + 1}, prefetch {mode} ...", file=sys.stderr, flush=True)
                        result = _spawn(env, keys, output_bucket, latency_ms)
                        result["round"] = round_number + 1
                        runs[mode].append(result)
                        if "error" in result:
                            print(f"  error: {result['error']}", file=sys.stderr, flush=True)
                        else:
                            print(
                                f"  {result['objects_per_s']:.2f} objects/s, peak RSS {result['peak_rss_mb']:.0f} MB",
                                file=sys.stderr,
                                flush=True,
                            )
                scenarios.append(
                    {
                        "name": name,
                        "model": label,
                        "latency_ms": latency_ms,
                        "summary": _summarise(runs),
                        "runs": runs,
                    }
                )
    finally:
        server.stop()

    machine = machine_info()
    machine["loadavg_before_1_5_15"] = loadavg_before
    report = {
        "machine": machine,
        "code": code,
        "batch": {
            "objects": len(inputs),
            "inputs": inputs,
            "megapixels_total": round(megapixels, 1),
            "event": "one S3 notification with 10 records, through handler.jobs.lambda_handler",
            "outputs": "cutout and mask, PNG (the defaults)",
            "s3": "moto ThreadedMotoServer on 127.0.0.1, in the parent process",
        },
        "method": (
            f"fresh subprocess per measurement; init, one warm-up batch, outputs deleted, one timed batch; "
            f"{args.rounds} rounds per mode, interleaved; medians"
        ),
        "latency_note": "added latency is artificial (time.sleep around Storage.read/write, benchmark only)",
        "scenarios": scenarios,
    }
    write_json(args.out, report)
    print(_table(report))
    print(f"\nload average before {loadavg_before}, after {machine['loadavg_1_5_15']} on {machine['cpu_count']} CPUs")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
