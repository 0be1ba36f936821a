"""Soak: many invocations in one process; does memory stay flat, are fds and temp files released?

Usage::

    .venv/bin/python benchmarks/soak.py [--invocations 500] [--warmup 50]

One fresh child process (the "execution environment") loads the real U-2-Net-p and handles
--invocations requests one after another, alternating the two entry points: the jobs function
(`handler.jobs.lambda_handler`, an S3 put notification; its outputs are deleted afterwards so the
next event for the same key is processed again rather than skipped as up to date) and the API
(`handler.api.lambda_handler`, an HTTP API v2 event with the photo in the body, /remove or /mask).
The photos vary: the three samples and generated ones in other sizes and formats (PNG with alpha,
16-bit and grey PNG, WebP, GIF, TIFF, BMP, CMYK JPEG, EXIF-rotated JPEG, 2-4 MP JPEGs).

S3 is moto's ThreadedMotoServer on 127.0.0.1 in the *parent* process, so the objects it holds are
not in the child's memory. The child gets a TMPDIR of its own (where `tempfile` puts everything,
as /tmp is in Lambda), listed before and after. After each invocation it samples its RSS (VmRSS)
and its open file descriptors (/proc/self/fd). Reported: RSS after the warm-up and at the end,
the slope of RSS over the invocations after the warm-up (least squares, KB per invocation), fds
after the warm-up and at the end, and temp files left behind. Writes benchmarks/results/soak.json.

`soak()` (tests/helpers/soak.py) is also what tests/functional/test_soak.py runs, in the test process, with a tiny model.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from measure import loadavg, machine_info, peak_rss_mb, rss_mb, spawn_json, start_local_s3, write_json  # noqa: E402

# The soak loop itself is shared with tests/functional/test_soak.py (100 invocations, in CI).
from tests.helpers.soak import INPUT_PREFIX, soak, varied_photos  # noqa: E402

RESULTS = HERE / "results" / "soak.json"
INPUT_BUCKET = "soak-uploads"
OUTPUT_BUCKET = "soak-results"
CHILD_TIMEOUT_S = 3600
# --- The benchmark: a child process runs the soak ----------------------------------------------


def run_child(invocations: int, warmup: int) -> dict[str, Any]:
    started = time.perf_counter()
    from handler import api, jobs  # noqa: F401 (the init phase: settings, model, S3 client)

    init_s = time.perf_counter() - started
    rss_after_init = rss_mb()
    photos = {key: data for key, data in varied_photos().items()}

    def progress(number: int, rss: float) -> None:
        if (number + 1) % 50 == 0:
            print(f"  {number + 1} invocations, RSS {rss:.0f} MB", file=sys.stderr, flush=True)

    result = soak(photos, invocations, warmup, rss_mb=rss_mb, progress=progress)
    return {
        "init_s": round(init_s, 3),
        "rss_after_init_mb": round(rss_after_init, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **result.summary(),
        "rss_mb_every_10th": [round(value, 1) for value in result.rss_mb[::10]],
        "fds_every_10th": result.fds[::10],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="soak: RSS, fds and temp files over many invocations")
    parser.add_argument("--invocations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_child(spec["invocations"], spec["warmup"])))
        return

    import boto3

    sys.path.insert(0, str(ROOT / "scripts"))
    from fetch_u2netp import ensure_u2netp

    loadavg_before = loadavg()
    server, aws = start_local_s3()
    photos = varied_photos()
    try:
        s3 = boto3.client("s3")
        for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        for key, data in photos.items():
            s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=data)
        with tempfile.TemporaryDirectory(prefix="soak-tmp-") as child_tmp:
            env = {
                **os.environ,
                **aws,
                "TMPDIR": child_tmp,
                "MODEL_PATH": str(ensure_u2netp()),
                "MODEL_OUTPUT": "probabilities",
                "INPUT_BUCKET": INPUT_BUCKET,
                "INPUT_PREFIX": INPUT_PREFIX,
                "OUTPUT_BUCKET": OUTPUT_BUCKET,
                "HF_HUB_OFFLINE": "1",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_NAMESPACE": "BackgroundRemoverSoak",
            }
            print(f"soak: {args.invocations} invocations in one process ...", file=sys.stderr, flush=True)
            began = time.perf_counter()
            command = [
                sys.executable,
                __file__,
                "--child",
                json.dumps({"invocations": args.invocations, "warmup": args.warmup}),
            ]
            result = spawn_json(command, timeout=CHILD_TIMEOUT_S, env=env, cwd=ROOT)
            wall_s = time.perf_counter() - began
    finally:
        server.stop()
    if "error" in result:
        raise SystemExit(f"soak failed: {result['error']}")

    from PIL import Image

    inputs = []
    for key, data in photos.items():
        with Image.open(io.BytesIO(data)) as picture:
            inputs.append(
                {"key": key, "format": picture.format, "mode": picture.mode, "size": picture.size, "bytes": len(data)}
            )
    machine = machine_info()
    machine["loadavg_before_1_5_15"] = loadavg_before
    report = {
        "machine": machine,
        "model": "U-2-Net-p (real, 320x320), MODEL_OUTPUT=probabilities",
        "method": (
            "one child process; entry points alternate: even invocations the jobs function (S3 put "
            "notification, outputs deleted after), odd ones the API (/remove and /mask alternately); "
            "RSS (VmRSS) and /proc/self/fd sampled after each; slope = least squares after the warm-up; "
            "TMPDIR of its own, listed before and after; moto in the parent process"
        ),
        "inputs": inputs,
        "wall_s": round(wall_s, 1),
        "result": result,
    }
    write_json(args.out, report)
    print(_table(result))
    print(f"\nwrote {args.out}")


def _table(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            "| invocations | warm-up | RSS after init (MB) | after warm-up (MB) | end (MB) | max after warm-up (MB) "
            "| slope after warm-up (KB/invocation) | fds after warm-up / end | temp files left | median invocation (ms) |",
            "|" + "---:|" * 10,
            f"| {result['invocations']} | {result['warmup']} | {result['rss_after_init_mb']:.0f} "
            f"| {result['rss_after_warmup_mb']:.0f} | {result['rss_end_mb']:.0f} | {result['rss_max_after_warmup_mb']:.0f} "
            f"| {result['rss_slope_after_warmup_kb_per_invocation']:+.1f} | {result['fds_after_warmup']} / {result['fds_end']} "
            f"| {len(result['temp_files_left'])} | {result['invocation_ms_median']:.0f} |",
        ]
    )


if __name__ == "__main__":
    main()
