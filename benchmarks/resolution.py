"""The `resolution` option's trade: inference time and peak memory at 512, 768 and 1024.

Usage::

    .venv/bin/python benchmarks/resolution.py [--rounds 5]

The graph is benchmarks/heavy_graph.py's BiRefNet-lite stand-in with *dynamic* H/W (~260 GMAC at
1024x1024, like the real model), loaded through BackgroundModel with the service's session options,
and fed a 12 MP photo through the service's own preprocessing at each size. Peak memory is measured
for each resolution in a fresh subprocess (peak RSS, VmHWM, never goes down); time in one process
that runs the resolutions in turn, round after round, so that a busy shared machine slows all
alike. Prints a markdown table and writes benchmarks/results/resolution.json.

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


def child_memory(model_path: str, resolution: int) -> dict[str, Any]:
    """Peak memory of inference at one resolution, alone in this process (the subprocess)."""
    picture, model = _loaded(model_path)
    rss_loaded = rss_mb()
    for _ in range(2):  # the first run is onnxruntime's warm-up (kernel selection, arena growth)
        probabilities = model.probabilities(picture.rgb, model.size_for(resolution))
    assert probabilities.shape == (resolution, resolution)
    peak = peak_rss_mb()
    return {
        "resolution": resolution,
        "rss_loaded_mb": round(rss_loaded),
        "peak_rss_mb": round(peak),
        "peak_above_loaded_mb": round(peak - rss_loaded),
    }


def child_time(model_path: str, rounds: int) -> dict[str, Any]:
    """Inference time at every resolution, interleaved round by round so that all see the same load."""
    picture, model = _loaded(model_path)
    for resolution in RESOLUTIONS:  # warm-up of each input shape
        model.probabilities(picture.rgb, model.size_for(resolution))
    timings: dict[int, list[float]] = {resolution: [] for resolution in RESOLUTIONS}
    for _ in range(rounds):
        for resolution in RESOLUTIONS:
            started = time.perf_counter()
            model.probabilities(picture.rgb, model.size_for(resolution))
            timings[resolution].append(time.perf_counter() - started)
    return {str(resolution): [round(value, 3) for value in values] for resolution, values in timings.items()}


def _loaded(model_path: str) -> tuple[Any, Any]:
    from handler.core.cpu import available_cpus
    from handler.core.image.decode import load_picture
    from handler.core.model.session import BackgroundModel

    return load_picture(PHOTO), BackgroundModel.load(model_path, threads=available_cpus())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=["memory", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "memory":
        print(json.dumps(child_memory(args.model, args.resolution)))
        return
    if args.child == "time":
        print(json.dumps(child_time(args.model, args.rounds)))
        return

    from heavy_graph import build_heavy_graph

    twelve_megapixel_jpeg(PHOTO)
    script = Path(__file__)
    with tempfile.TemporaryDirectory() as folder:
        model_path = str(Path(folder) / "heavy-dynamic.onnx")
        build_heavy_graph(model_path, dynamic=True)
        memory = [run_child(script, "memory", "--model", model_path, "--resolution", str(size)) for size in RESOLUTIONS]
        timings = run_child(script, "time", "--model", model_path, "--rounds", str(args.rounds), timeout=1800)
    full = statistics.median(timings["1024"])
    print("| resolution | input pixels vs 1024 | inference (median) | vs 1024 | peak RSS | above loaded session |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in memory:
        runs = timings[str(row["resolution"])]
        row.update(
            run_s_all=runs,
            run_s_median=round(statistics.median(runs), 3),
            time_vs_1024=round(statistics.median(runs) / full, 2),
            pixels_vs_1024=round((row["resolution"] / 1024) ** 2, 2),
        )
        print(
            f"| {row['resolution']} | {row['pixels_vs_1024']:.2f}x | {row['run_s_median']:.2f} s | {row['time_vs_1024']:.2f}x "
            f"| {row['peak_rss_mb']} MB | {row['peak_above_loaded_mb']} MB |"
        )
    write_json(
        RESULTS,
        {
            "machine": machine_info(),
            "model": "benchmarks/heavy_graph.py (dynamic H/W), BackgroundModel session options",
            "input": "12 MP JPEG (benchmarks/measure.py twelve_megapixel_jpeg), decoded once before timing",
            "rounds": args.rounds,
            "timing": "one process, resolutions interleaved round by round after one warm-up each",
            "results": memory,
        },
    )
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
