"""The whole pipeline on a 12 MP photo against the bare model run, stage by stage, with peak memory.

Usage::

    .venv/bin/python benchmarks/deform_standin.py      # once: bakes the stand-in (results/work/deform_after)
    .venv/bin/python benchmarks/overhead.py [--model PATH] [--rounds 5]

The model is what `python -m handler download --output` bakes from benchmarks/deform_standin.py's
stand-in (BiRefNet-lite's 20 deformable convolutions at 1024x1024, rewritten to native DeformConv,
a photo-like subject in its logits), loaded with the service's session options. The photo is a
4000x3000 JPEG (a sample upscaled, sensor-like noise, quality 90) carrying an EXIF block with
Orientation 6, as a phone's portrait photo does: the pipeline decodes, turns it upright
(3000x4000), and cuts it out with the API's defaults (PNG, edge colour refined).

The stand-in's mask is softer than BiRefNet's: its logits ramp over ~240 pixels at 12 MP, so 18%
of the photo is semi-transparent and the edge refinement (whose work grows with those pixels) is
at a worst case, like U-2-Net-p's 320-pixel mask enlarged. BiRefNet's own 1024-pixel masks are
near-binary, their soft edge a pixel or two wide outside hair. `--edge sharp` multiplies the
stand-in's logits by EDGE_SHARPNESS inside the pipeline's session (the bare run is untouched and
the multiply counts against the pipeline), which leaves ~3% of the photo semi-transparent.
Results go to results/overhead.json (stand-in edge) and results/overhead_sharp_edge.json.

In one process, after a warm-up, each round times the bare `session.run` on the input tensor of
this photo, then `render.process` (JPEG bytes in -> PNG bytes out) with every stage it calls
timed in place (wall seconds; the full decode runs on a second thread from the start, so
the stages do not add up to the total). Both also report the process's CPU seconds (all
threads). The ratio is the median pipeline over the median bare run. Peak memory: one fresh
process runs the bare model once, another the pipeline once (VmHWM); the difference is what the
photo adds. Prints a markdown table and writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import RESULTS, loadavg, machine_info, peak_rss_mb, rss_mb, run_child, write_json

SCRIPT = Path(__file__).resolve()
WORK = RESULTS / "work"
DEFAULT_MODEL = WORK / "deform_after" / "model.onnx"
# The logits' factor for `--edge sharp`: ~3% of the 12 MP photo semi-transparent instead of 18%.
EDGE_SHARPNESS = 6.0
EDGES = {"stand-in": 1.0, "sharp": EDGE_SHARPNESS}
STAGES = (
    "draft decode",
    "full decode (during inference)",
    "preprocess",
    "session.run + sigmoid",
    "sigmoid",
    "mask to 12 MP",
    "subject box",
    "refine",
    "compose + PNG",
)


def phone_photo(path: Path) -> Path:
    """The 12 MP benchmark JPEG re-saved with an EXIF block saying Orientation 6; made once."""
    if path.exists():
        return path
    from PIL import Image

    from benchmarks.measure import twelve_megapixel_jpeg

    source = twelve_megapixel_jpeg(path.with_name("photo_12mp.jpg"))
    with Image.open(source) as image:
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
        exif[0x010F] = "Benchmark"  # Make
        exif[0x0110] = "Phone"  # Model
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    path.write_bytes(buffer.getvalue())
    return path


def _load(model_path: str) -> Any:
    from handler.core.cpu import available_cpus
    from handler.core.model.session import BackgroundModel
    from handler.core.model.settings import ModelSpec

    return BackgroundModel.load(model_path, ModelSpec(), threads=available_cpus())


class _Sharpened:
    """The session with its logits multiplied by `factor` (a sharper edge, same subject)."""

    def __init__(self, session: Any, factor: float) -> None:
        self._session = session
        self._factor = factor

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[Any]:
        return [output * self._factor for output in self._session.run(names, feeds)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _with_edge(model: Any, edge: str) -> Any:
    if EDGES[edge] != 1.0:
        model.session = _Sharpened(model.session, EDGES[edge])
    return model


def _band_share(model: Any, data: bytes) -> float:
    """The share of the upright photo's pixels that the mask leaves semi-transparent (1-254)."""
    from handler.core.image.compose import alpha_from
    from handler.core.image.decode import load_picture
    from handler.core.image.limits import ImageLimits

    picture = load_picture(data, ImageLimits())
    histogram = alpha_from(picture, model.probabilities(picture.rgb, model.input_size)).histogram()
    return sum(histogram[1:255]) / sum(histogram)


def _feeds(model: Any, data: bytes) -> dict[str, Any]:
    """The tensor the pipeline gives the model for this photo (its draft decode, resized)."""
    from handler.core.image.decode import load_model_input
    from handler.core.image.limits import ImageLimits

    small = load_model_input(data, ImageLimits(), model.input_size)
    assert small is not None, "the benchmark photo must be a JPEG large enough for a draft decode"
    return {model.input_name: model.preprocess(small)}


def _timed_stages(model: Any) -> dict[str, list[float]]:
    """Wrap each stage of the pipeline (render's steps, the model's) to record its wall time, per call."""
    import handler.core.render as render

    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}

    def timed(stage: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                stages[stage].append(time.perf_counter() - started)

        return wrapper

    render.load_model_input = timed("draft decode", render.load_model_input)  # type: ignore[attr-defined]
    render.load_picture = timed("full decode (during inference)", render.load_picture)  # type: ignore[attr-defined]
    render.alpha_from = timed("mask to 12 MP", render.alpha_from)  # type: ignore[attr-defined]
    render.foreground_box = timed("subject box", render.foreground_box)  # type: ignore[attr-defined]
    render.refined = timed("refine", render.refined)  # type: ignore[attr-defined]
    render._render = timed("compose + PNG", render._render)
    model.preprocess = timed("preprocess", model.preprocess)
    model.infer = timed("session.run + sigmoid", model.infer)
    model.to_probabilities = timed("sigmoid", model.to_probabilities)
    return stages


def child_time(model_path: str, image_path: str, rounds: int, edge: str) -> dict[str, Any]:
    import handler.core.render as render
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions

    model = _load(model_path)
    data = Path(image_path).read_bytes()
    feeds = _feeds(model, data)
    session = model.session  # the bare run's: never sharpened
    model = _with_edge(model, edge)
    band_share = _band_share(model, data)
    stages = _timed_stages(model)

    def pipeline() -> bytes:
        result = render.process(data, ["cutout"], RenderOptions(), model, ImageLimits())
        output: bytes = result.outputs["cutout"].data
        return output

    def bare() -> None:
        session.run([model.output_name], feeds)

    pipeline()  # warm-up: arena, caches
    bare()
    for values in stages.values():
        values.clear()
    bare_s: list[float] = []
    bare_cpu: list[float] = []
    whole_s: list[float] = []
    whole_cpu: list[float] = []
    load = [loadavg()]
    for _ in range(rounds):
        for run, wall, cpu in ((bare, bare_s, bare_cpu), (pipeline, whole_s, whole_cpu)):
            cpu_started, started = time.process_time(), time.perf_counter()
            output = run()
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            if output is not None:
                png_bytes = len(output)
        load.append(loadavg())
    bare_median, whole_median = statistics.median(bare_s), statistics.median(whole_s)
    # The pipeline's own time per round: its wall time less its inference's. The model's run
    # swings by ±0.3 s from round to round, more than the pipeline's whole cost; a concurrent full
    # decode did not slow it measurably (14 alternating pairs: -0.004 s median, se 0.06 s), so the
    # bare median plus this is the steadier estimate of the pipeline. The sigmoid is the pipeline's.
    around = [
        whole - (inference - sigmoid)
        for whole, inference, sigmoid in zip(whole_s, stages["session.run + sigmoid"], stages["sigmoid"], strict=True)
    ]
    return {
        "image": Path(image_path).name,
        "edge": edge,
        "band_share": band_share,
        "rounds": rounds,
        "session_run_s": bare_median,
        "pipeline_s": whole_median,
        "ratio": whole_median / bare_median,
        "around_model_s": statistics.median(around),
        "ratio_around": (bare_median + statistics.median(around)) / bare_median,
        "all_around_model_s": around,
        "ratios_per_round": [w / b for w, b in zip(whole_s, bare_s, strict=True)],
        "session_run_cpu_s": statistics.median(bare_cpu),
        "pipeline_cpu_s": statistics.median(whole_cpu),
        "all_session_run_s": bare_s,
        "all_pipeline_s": whole_s,
        "stages_s": {stage: statistics.median(values) for stage, values in stages.items() if values},
        "png_mb": png_bytes / 1e6,
        "loadavg_per_round": load,
    }


class _Recorded:
    """A session that answers with one recorded output at once: the pipeline's own cost, without the
    model's seconds (whose noise on a shared machine swamps it)."""

    def __init__(self, session: Any, feeds: dict[str, Any], output_name: str) -> None:
        self._session = session
        (self._output,) = session.run([output_name], feeds)

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[Any]:
        return [self._output.copy()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def child_overhead(model_path: str, image_path: str, rounds: int, edge: str) -> dict[str, Any]:
    """`render.process` with the model's run replaced by its recorded output, `rounds` times.

    The full decode then has no inference to hide behind, so this is an upper bound of what the
    pipeline adds to the run."""
    import handler.core.render as render
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions

    model = _load(model_path)
    data = Path(image_path).read_bytes()
    model.session = _Recorded(_with_edge(model, edge).session, _feeds(model, data), model.output_name)
    stages = _timed_stages(model)
    walls, cpus = [], []
    for _ in range(rounds + 1):
        cpu_started, started = time.process_time(), time.perf_counter()
        output = render.process(data, ["cutout"], RenderOptions(), model, ImageLimits()).outputs["cutout"].data
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    del walls[0], cpus[0]  # the warm-up
    return {
        "edge": edge,
        "rounds": rounds,
        "overhead_s": statistics.median(walls),
        "overhead_cpu_s": statistics.median(cpus),
        "all_s": walls,
        "stages_s": {stage: statistics.median(values[1:]) for stage, values in stages.items() if values[1:]},
        "png_mb": len(output) / 1e6,
        "loadavg": loadavg(),
    }


def child_peak(model_path: str, image_path: str, what: str, edge: str) -> dict[str, Any]:
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions
    from handler.core.render import process

    model = _load(model_path)
    if what != "bare":
        model = _with_edge(model, edge)
    after_load = rss_mb()
    data = Path(image_path).read_bytes()
    if what == "bare":
        feeds = _feeds(model, data)
        model.session.run([model.output_name], feeds)
    else:
        process(data, ["cutout"], RenderOptions(), model, ImageLimits())
    return {"after_load_mb": after_load, "peak_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--label", default="", help="a note kept with the results (e.g. which code was measured)")
    parser.add_argument("--overhead-only", action="store_true", help="only the pipeline around a recorded model output")
    parser.add_argument("--edge", choices=sorted(EDGES), default="stand-in", help="the mask's edge (see above)")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args(argv)
    if args.child:
        import json

        kind, *rest = args.child
        if kind == "overhead":
            result = child_overhead(rest[0], rest[1], int(rest[2]), rest[3])
        elif kind == "time":
            result = child_time(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            result = child_peak(*rest)
        print(json.dumps(result))
        return
    if not args.model.exists():
        raise SystemExit(f"{args.model} is missing: run benchmarks/deform_standin.py first (it bakes the stand-in)")
    WORK.mkdir(parents=True, exist_ok=True)
    photo = phone_photo(WORK / "photo_12mp_exif6.jpg")
    if args.overhead_only:
        import json

        overhead = run_child(SCRIPT, "overhead", str(args.model), str(photo), str(args.rounds), args.edge, timeout=3600)
        print(json.dumps(overhead))
        return
    timing = run_child(SCRIPT, "time", str(args.model), str(photo), str(args.rounds), args.edge, timeout=3600)
    peaks = {
        what: run_child(SCRIPT, "peak", str(args.model), str(photo), what, args.edge, timeout=1800)
        for what in ("bare", "pipeline")
    }
    report = {
        "machine": machine_info(),
        "label": args.label,
        "model": str(
            args.model.relative_to(RESULTS.parent.parent)
            if args.model.is_relative_to(RESULTS.parent.parent)
            else args.model
        ),
        "photo": "4000x3000 JPEG q90, EXIF Orientation 6 (upright 3000x4000)",
        "timing": timing,
        "peak": {**peaks, "added_by_photo_mb": peaks["pipeline"]["peak_mb"] - peaks["bare"]["peak_mb"]},
    }
    write_json(RESULTS / ("overhead.json" if args.edge == "stand-in" else "overhead_sharp_edge.json"), report)
    print("\n".join(tables(report)))


def tables(report: dict[str, Any]) -> list[str]:
    timing, peak = report["timing"], report["peak"]
    lines = [
        f"| stage (median of {timing['rounds']}) | wall (s) |",
        "|---|---:|",
        *(f"| {stage} | {seconds:.3f} |" for stage, seconds in timing["stages_s"].items()),
        f"| **pipeline** | **{timing['pipeline_s']:.2f}** (CPU {timing['pipeline_cpu_s']:.2f}) |",
        f"| **bare session.run** | **{timing['session_run_s']:.2f}** (CPU {timing['session_run_cpu_s']:.2f}) |",
        f"| **pipeline less its own inference** | **{timing['around_model_s']:.3f}** |",
        "",
        f"ratio with the pipeline's own time: (bare + around) / bare = {timing['ratio_around']:.3f}",
        f"edge {timing['edge']}: {timing['band_share']:.1%} of the photo semi-transparent; "
        f"ratio {timing['ratio']:.3f} (per round: {', '.join(f'{r:.3f}' for r in timing['ratios_per_round'])}); "
        f"PNG {timing['png_mb']:.2f} MB; peak RSS bare {peak['bare']['peak_mb']:.0f} MB, pipeline "
        f"{peak['pipeline']['peak_mb']:.0f} MB (+{peak['added_by_photo_mb']:.0f} MB); "
        f"load average per round {[round(load[0], 1) for load in timing['loadavg_per_round']]}",
    ]
    return lines


if __name__ == "__main__":
    main()
