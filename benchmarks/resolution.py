"""The `resolution` option's trade: inference time and peak memory at 512, 768 and 1024.

Usage::

    .venv/bin/python benchmarks/resolution.py [--runs 3]

The graph is benchmarks/heavy_graph.py's BiRefNet-lite stand-in with *dynamic* H/W (~260 GMAC at
1024x1024, like the real model), loaded through BackgroundModel with the service's session options,
and fed a 12 MP photo through the service's own preprocessing at each size. Each resolution runs in
a fresh subprocess, because peak RSS (VmHWM) never goes down. Prints a markdown table and writes
benchmarks/results/resolution.json.

Quality is not measured here: the stand-in's weights are random, and the one real model available
offline (U-2-Net-p) has a fixed 320x320 input.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import machine_info, peak_rss_mb, rss_mb, run_child, twelve_megapixel_jpeg, write_json  # noqa: E402

RESULTS = HERE / "results" / "resolution.json"
PHOTO = HERE.parent / ".cache" / "bench" / "photo_12mp.jpg"
RESOLUTIONS = (512, 768, 1024)


def child(model_path: str, resolution: int, runs: int) -> dict[str, Any]:
    """Measure one resolution in this process (the subprocess)."""
    from handler.cpu import available_cpus
    from handler.imaging import load_picture
    from handler.model import BackgroundModel

    picture = load_picture(PHOTO)
    model = BackgroundModel.load(model_path, threads=available_cpus())
    size = model.size_for(resolution)
    rss_loaded = rss_mb()
    timings = []
    for _ in range(runs + 1):  # the first run is onnxruntime's warm-up (kernel selection, arena growth)
        started = time.perf_counter()
        probabilities = model.probabilities(picture.rgb, size)
        timings.append(time.perf_counter() - started)
    assert probabilities.shape == (resolution, resolution)
    peak = peak_rss_mb()
    return {
        "resolution": resolution,
        "first_s": round(timings[0], 3),
        "run_s_median": round(statistics.median(timings[1:]), 3),
        "run_s_all": [round(value, 3) for value in timings[1:]],
        "rss_loaded_mb": round(rss_loaded),
        "peak_rss_mb": round(peak),
        "peak_above_loaded_mb": round(peak - rss_loaded),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.resolution, args.runs)))
        return

    from heavy_graph import build_heavy_graph

    twelve_megapixel_jpeg(PHOTO)
    with tempfile.TemporaryDirectory() as folder:
        model_path = str(Path(folder) / "heavy-dynamic.onnx")
        build_heavy_graph(model_path, dynamic=True)
        results = [
            run_child(Path(__file__), "--model", model_path, "--resolution", str(size), "--runs", str(args.runs))
            for size in RESOLUTIONS
        ]
    full = next(row for row in results if row["resolution"] == 1024)
    print("| resolution | inference (median) | vs 1024 | peak RSS | above loaded session |")
    print("| --- | --- | --- | --- | --- |")
    for row in results:
        row["time_vs_1024"] = round(row["run_s_median"] / full["run_s_median"], 2)
        print(
            f"| {row['resolution']} | {row['run_s_median']:.2f} s | {row['time_vs_1024']:.2f}x "
            f"| {row['peak_rss_mb']} MB | {row['peak_above_loaded_mb']} MB |"
        )
    write_json(
        RESULTS,
        {
            "machine": machine_info(),
            "model": "benchmarks/heavy_graph.py (dynamic H/W), BackgroundModel session options",
            "input": "12 MP JPEG (benchmarks/measure.py twelve_megapixel_jpeg), decoded once before timing",
            "runs": args.runs,
            "results": results,
        },
    )
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
