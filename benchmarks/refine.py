"""Edge colour refinement (handler.refine) on a 12 MP photo: added time, added memory, accuracy.

Usage::

    .venv/bin/python benchmarks/refine.py [--rounds 5]

The model is the real U-2-Net-p (scripts/fetch_u2netp.py): its 320x320 mask enlarged to
4000x3000 has a wide soft band (about a fifth of the photo's pixels), far more band pixels than
BiRefNet's 1024x1024 mask would leave, so the cost measured here is on the high side.

- Time: in one process, the whole pipeline (JPEG bytes in -> PNG cutout bytes out,
  `handler.render.process`) with refine=false and refine=true, interleaved for --rounds rounds
  after a warm-up, medians; the added time as a share of the unrefined pipeline, and the time of
  `refine_foreground` alone on the same photo and mask. Twice: with U-2-Net-p, and with
  benchmarks/heavy_graph.py at 1024x1024 (BiRefNet-lite's cost profile, a photo-like subject
  mask), the pipeline the service runs by default.
- Memory: peak RSS (VmHWM) of a fresh process making one 12 MP cutout, refine off and on; and, in
  another process, refine_foreground alone in place: its peak above the RSS before the call.
  Both as bytes per input pixel.
- Accuracy: a composite of known alpha and foreground at 12 MP (the U-2-Net-p mask of the photo
  as alpha, a smooth synthetic subject colour as F, the photo as background), refined with each
  grid reduction and compared with `blur_fusion` at full resolution (mean absolute difference over
  the band, 0-255) and with the true F; and the full-resolution estimate with the reference's
  unscaled 90/6-pixel boxes, to show why the widths scale with the photo.

Prints markdown tables and writes benchmarks/results/refine.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import (
    RESULTS,
    ROOT,
    machine_info,
    peak_rss_mb,
    rss_mb,
    run_child,
    twelve_megapixel_jpeg,
)

SCRIPT = Path(__file__).resolve()
PHOTO = RESULTS / "work" / "photo_12mp.jpg"
ALPHA = RESULTS / "work" / "photo_12mp_u2netp_alpha.png"  # written by the time child, read by the others
MB = 1024 * 1024
# Fine grid reductions measured for accuracy; 4 is the default at 12 MP.
FINE_REDUCTIONS = [1, 2, 4, 8, 16]


HEAVY = RESULTS / "work" / "heavy_subject_1024.onnx"


def _u2netp() -> Any:
    return _model("u2netp")


def _model(name: str) -> Any:
    """U-2-Net-p, or the stand-in with BiRefNet-lite's cost at 1024x1024 (benchmarks/heavy_graph.py)."""
    from handler.core.cpu import available_cpus
    from handler.core.model.session import BackgroundModel
    from handler.core.model.settings import ModelSpec

    if name == "heavy":
        return BackgroundModel.load(HEAVY, ModelSpec(), threads=available_cpus())
    sys.path.insert(0, str(ROOT / "scripts"))
    from fetch_u2netp import ensure_u2netp

    return BackgroundModel.load(ensure_u2netp(), ModelSpec(output="probabilities"), threads=available_cpus())


def _picture_and_alpha(model: Any) -> tuple[Any, Any]:
    """The 12 MP photo decoded and its U-2-Net-p alpha, as the pipeline makes them."""
    from handler.core.image.compose import alpha_from
    from handler.core.image.decode import load_picture

    picture = load_picture(PHOTO.read_bytes())
    return picture, alpha_from(picture, model.probabilities(picture.rgb))


def child_time(model_name: str, rounds: int) -> dict[str, Any]:
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions
    from handler.core.image.refine import refine_foreground
    from handler.core.render import process

    model = _model(model_name)
    data = PHOTO.read_bytes()
    limits = ImageLimits()
    options = {"off": RenderOptions(refine=False), "on": RenderOptions(refine=True)}
    for choice in options.values():  # warm-up: arena, caches
        process(data, ["cutout"], choice, model, limits)
    times: dict[str, list[float]] = {"off": [], "on": []}
    for index in range(rounds):
        for name in ("off", "on") if index % 2 == 0 else ("on", "off"):
            started = time.perf_counter()
            process(data, ["cutout"], options[name], model, limits)
            times[name].append(time.perf_counter() - started)
    picture, alpha = _picture_and_alpha(model)
    if model_name == "u2netp":
        alpha.save(ALPHA)
    histogram = alpha.histogram()
    alone = []
    for _ in range(rounds):
        rgb = picture.rgb.copy()
        started = time.perf_counter()
        refine_foreground(rgb, alpha, in_place=True)
        alone.append(time.perf_counter() - started)
    return {
        "pixels": picture.size[0] * picture.size[1],
        "band_share": sum(histogram[1:255]) / sum(histogram),
        "pipeline_off_s": times["off"],
        "pipeline_on_s": times["on"],
        "refine_alone_s": alone,
    }


def child_pipeline_peak(refine: str) -> dict[str, Any]:
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions
    from handler.core.render import process

    model = _u2netp()
    after_load = rss_mb()
    result = process(PHOTO.read_bytes(), ["cutout"], RenderOptions(refine=refine == "on"), model, ImageLimits())
    return {
        "after_load_mb": after_load,
        "peak_mb": peak_rss_mb(),
        "pixels": result.input_size[0] * result.input_size[1],
    }


def _saved_alpha() -> Any:
    from PIL import Image

    with Image.open(ALPHA) as alpha:
        alpha.load()
        return alpha


def child_refine_peak() -> dict[str, Any]:
    """No model in this process: the photo and its saved mask, then refine_foreground in place."""
    from handler.core.image.decode import load_picture
    from handler.core.image.refine import refine_foreground

    picture, alpha = load_picture(PHOTO.read_bytes()), _saved_alpha()
    before_peak, before = peak_rss_mb(), rss_mb()
    refine_foreground(picture.rgb, alpha, in_place=True)
    # If the peak did not move, refine stayed below the decode's own peak: its rise is at most that gap.
    return {
        "rss_before_mb": before,
        "peak_before_mb": before_peak,
        "peak_mb": peak_rss_mb(),
        "pixels": picture.size[0] * picture.size[1],
    }


def child_accuracy() -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from handler.core.image.blur_fusion import blur_fusion
    from handler.core.image.refine import Plan, refine_foreground
    from tests.composites import _smooth_colour, compose

    alpha = _saved_alpha()
    photo = Image.open(PHOTO).convert("RGB")
    size = photo.size
    composite = compose(
        "u2netp-mask-12mp",
        np.asarray(alpha, dtype=np.float32) / 255,
        _smooth_colour(size, (40, 90, 200), seed=3).astype(np.float32),
        np.asarray(photo, dtype=np.float32),
    )
    del photo
    band = composite.band()
    image = np.asarray(composite.image, dtype=np.float32) / 255
    opacity = np.asarray(composite.alpha, dtype=np.float32) / 255

    def band_colours(estimate: np.ndarray) -> Image.Image:
        colours = np.asarray(composite.image).copy()
        colours[band] = np.rint(estimate[band] * 255)
        return Image.fromarray(colours)

    default = Plan.for_size(size)
    coarse_px, fine_px = default.coarse_box * default.coarse_reduction, default.fine_box * default.fine_reduction
    exact = band_colours(blur_fusion(image, opacity, coarse_px, fine_px))
    unscaled = band_colours(blur_fusion(image, opacity, 90, 6))
    del image, opacity
    exact_band = np.asarray(exact, dtype=np.float32)[band]
    rows = []
    for fine in FINE_REDUCTIONS:
        coarse = Plan.for_size(size, fine_reduction=fine).coarse_reduction
        # Same box widths in photo pixels whatever the grid, as near as whole cells allow.
        plan = Plan(fine, coarse, max(1, round(fine_px / fine)), max(1, round(coarse_px / coarse)))
        started = time.perf_counter()
        refined = refine_foreground(composite.image, composite.alpha, plan=plan)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "fine_reduction": fine,
                "coarse_reduction": plan.coarse_reduction,
                "default": fine == default.fine_reduction,
                "seconds": seconds,
                "vs_full_resolution": float(np.abs(np.asarray(refined, dtype=np.float32)[band] - exact_band).mean()),
                "band_error": composite.band_error(refined),
            }
        )
    return {
        "size": list(size),
        "band_share": float(band.mean()),
        "box_widths_px": {"coarse": coarse_px, "fine": fine_px},
        "band_error_unrefined": composite.band_error(composite.image),
        "band_error_full_resolution": composite.band_error(exact),
        "band_error_full_resolution_unscaled_90_6": composite.band_error(unscaled),
        "plans": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--tables", action="store_true", help="only re-summarise and print results/refine.json")
    args = parser.parse_args(argv)
    if args.tables:
        report = json.loads((RESULTS / "refine.json").read_text())
        report["time"] = {name: _time_summary(timing) for name, timing in report["time"].items()}
        (RESULTS / "refine.json").write_text(json.dumps(report, indent=2) + "\n")
        print(_tables(report))
        return
    if args.child:
        kind, *rest = args.child
        handlers = {
            "time": lambda: child_time(rest[0], int(rest[1])),
            "pipeline-peak": lambda: child_pipeline_peak(rest[0]),
            "refine-peak": child_refine_peak,
            "accuracy": child_accuracy,
        }
        print(json.dumps(handlers[kind]()))
        return

    twelve_megapixel_jpeg(PHOTO)
    if not HEAVY.exists():
        from benchmarks.heavy_graph import build_heavy_graph

        build_heavy_graph(str(HEAVY), size=1024, subject=True)
    machine_before = machine_info()
    timing = run_child(SCRIPT, "time", "u2netp", str(args.rounds))
    heavy = run_child(SCRIPT, "time", "heavy", str(args.rounds))
    peaks = {name: run_child(SCRIPT, "pipeline-peak", name) for name in ("off", "on")}
    alone = run_child(SCRIPT, "refine-peak")
    accuracy = run_child(SCRIPT, "accuracy", timeout=1800)
    pixels = timing["pixels"]
    report = {
        "machine": machine_before,
        "machine_after": machine_info(),
        "model": "U-2-Net-p (scripts/fetch_u2netp.py), MODEL_OUTPUT=probabilities",
        "photo": "benchmarks/measure.py twelve_megapixel_jpeg (4000x3000)",
        "time": {"u2netp": _time_summary(timing), "heavy": _time_summary(heavy)},
        "memory": {
            "pipeline_peak_mb": {name: peak["peak_mb"] for name, peak in peaks.items()},
            "pipeline_added_bytes_per_pixel": (peaks["on"]["peak_mb"] - peaks["off"]["peak_mb"]) * MB / pixels,
            "refine_alone": alone,
            "refine_alone_bytes_per_pixel": (alone["peak_mb"] - alone["rss_before_mb"]) * MB / pixels,
        },
        "accuracy": accuracy,
    }
    (RESULTS / "refine.json").write_text(json.dumps(report, indent=2) + "\n")
    print(_tables(report))


def _time_summary(timing: dict[str, Any]) -> dict[str, Any]:
    off, on = statistics.median(timing["pipeline_off_s"]), statistics.median(timing["pipeline_on_s"])
    alone = statistics.median(timing["refine_alone_s"])
    # Each round ran off and on back to back: the median of those differences is steadier than
    # the difference of the medians when other work on the machine comes and goes.
    paired = statistics.median(b - a for a, b in zip(timing["pipeline_off_s"], timing["pipeline_on_s"], strict=False))
    return {
        **timing,
        "pipeline_off_median_s": off,
        "pipeline_on_median_s": on,
        "added_share_of_pipeline": (on - off) / off,
        "added_paired_share_of_pipeline": paired / off,
        "refine_alone_median_s": alone,
        "refine_alone_share_of_pipeline": alone / off,
    }


def _tables(report: dict[str, Any]) -> str:
    memory, accuracy = report["memory"], report["accuracy"]
    lines = [
        "| model | pipeline, refine off (s) | pipeline, refine on (s) | added (medians) | added (paired) | refine alone (s) | band share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("u2netp", "U-2-Net-p"), ("heavy", "BiRefNet-lite stand-in")):
        timing = report["time"][name]
        lines.append(
            f"| {label} | {timing['pipeline_off_median_s']:.2f} | {timing['pipeline_on_median_s']:.2f} | "
            f"{timing['added_share_of_pipeline']:+.1%} | {timing['added_paired_share_of_pipeline']:+.1%} | "
            f"{timing['refine_alone_median_s']:.3f} "
            f"({timing['refine_alone_share_of_pipeline']:.1%}) | {timing['band_share']:.1%} |"
        )
    lines += [
        "",
        f"Peak RSS of one 12 MP cutout: refine off {memory['pipeline_peak_mb']['off']:.0f} MB, on "
        f"{memory['pipeline_peak_mb']['on']:.0f} MB ({memory['pipeline_added_bytes_per_pixel']:+.2f} bytes/px); "
        f"refine_foreground alone rises {memory['refine_alone_bytes_per_pixel']:.2f} bytes/px above the RSS before it.",
        "",
        f"Accuracy at {accuracy['size'][0]}x{accuracy['size'][1]} (band {accuracy['band_share']:.1%}, boxes "
        f"{accuracy['box_widths_px']['coarse']}/{accuracy['box_widths_px']['fine']} px): band error unrefined "
        f"{accuracy['band_error_unrefined']:.2f}, full-resolution blur fusion {accuracy['band_error_full_resolution']:.2f}, "
        f"with the unscaled 90/6 px boxes {accuracy['band_error_full_resolution_unscaled_90_6']:.2f}.",
        "",
        "| fine grid | coarse grid | vs full resolution (levels) | band error vs true F | time (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in accuracy["plans"]:
        mark = " (default)" if row["default"] else ""
        lines.append(
            f"| 1/{row['fine_reduction']}{mark} | 1/{row['coarse_reduction']} | "
            f"{row['vs_full_resolution']:.2f} | {row['band_error']:.2f} | {row['seconds']:.3f} |"
        )
    machine = report["machine"]
    lines.append(
        f"\nMachine: {machine['cpu_count']} x {machine['cpu_model']}, load {machine['loadavg_1_5_15']} -> "
        f"{report['machine_after']['loadavg_1_5_15']}."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
