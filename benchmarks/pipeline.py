"""Our pipeline against its limit, cold start, and memory per pixel (issue "Performance", cases 2-4).

Usage::

    .venv/bin/python benchmarks/pipeline.py [--runs 3] [--size 1024]

- Against the limit: the whole pipeline (JPEG bytes in -> PNG cutout bytes out) divided by the
  bare `session.run` of the same model on the same input size, for a graph of realistic cost
  (benchmarks/heavy_graph.py at 1024x1024), on each sample photo and a 12 MP JPEG, with the time
  broken down by stage. Pipeline and bare runs are interleaved in one process, so both see the
  same machine load.
- Cold start: session creation from the raw graph and from the pre-optimised graph that
  `python -m handler download --output` bakes — for the heavy graph and for a many-node graph
  shaped like the default export's decomposed deformable convolutions — and process start ->
  first result from the CLI.
- Memory: peak RSS of one 12 MP cutout, and what it adds above the same process cutting out a
  64x64 image (session, arena and inference working set included in both), per input pixel.

Prints markdown tables and writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.heavy_graph import build_heavy_graph, build_many_node_graph
from benchmarks.measure import (
    RESULTS,
    ROOT,
    SAMPLES,
    machine_info,
    peak_rss_mb,
    rss_mb,
    run_child,
    twelve_megapixel_jpeg,
)

SCRIPT = Path(__file__).resolve()
WORK = RESULTS / "work"
STAGES = ("decode", "preprocess", "inference", "postprocess", "compose", "encode")


def _model(path: str) -> Any:
    from handler.core.cpu import available_cpus
    from handler.core.model.session import BackgroundModel
    from handler.core.model.settings import ModelSpec

    return BackgroundModel.load(path, ModelSpec(), threads=available_cpus())


def child_ratio(model_path: str, image_path: str, runs: int) -> dict[str, Any]:
    """Interleave bare session.run and the whole pipeline; one staged run for the breakdown."""
    from handler.core.image.compose import compose_cutout, to_mask
    from handler.core.image.decode import load_picture
    from handler.core.image.encode import encode
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions
    from handler.core.render import process

    model = _model(model_path)
    data = Path(image_path).read_bytes()
    limits = ImageLimits()
    tensor = model.preprocess(load_picture(data, limits).rgb)
    feeds = {model.input_name: tensor}
    process(data, ["cutout"], RenderOptions(), model, limits)  # warm-up: arena, caches

    bare: list[float] = []
    whole: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        model.session.run([model.output_name], feeds)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        output = process(data, ["cutout"], RenderOptions(), model, limits).outputs["cutout"].data
        whole.append(time.perf_counter() - started)

    stages: dict[str, float] = {}

    def timed(stage: str, step: Any) -> Any:
        started = time.perf_counter()
        result = step()
        stages[stage] = time.perf_counter() - started
        return result

    picture = timed("decode", lambda: load_picture(data, limits))
    tensor = timed("preprocess", lambda: model.preprocess(picture.rgb))
    probabilities = timed("inference", lambda: model.infer(tensor))
    alpha = timed("postprocess", lambda: to_mask(probabilities, picture.size))
    cutout = timed("compose", lambda: compose_cutout(picture, alpha))
    timed("encode", lambda: encode(cutout, "png", icc_profile=picture.icc_profile))
    return {
        "image": Path(image_path).name,
        "pixels": picture.size[0] * picture.size[1],
        "session_run_s": statistics.median(bare),
        "pipeline_s": statistics.median(whole),
        "ratio": statistics.median(whole) / statistics.median(bare),
        "png_mb": len(output) / 1e6,
        "stages_s": stages,
    }


def child_memory(model_path: str, image_path: str) -> dict[str, Any]:
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions
    from handler.core.render import process

    model = _model(model_path)
    after_load = rss_mb()
    result = process(Path(image_path).read_bytes(), ["cutout"], RenderOptions(), model, ImageLimits())
    width, height = result.input_size
    return {
        "image": Path(image_path).name,
        "pixels": width * height,
        "after_load_mb": after_load,
        "peak_mb": peak_rss_mb(),
    }


def child_create(model_path: str, repeats: int) -> dict[str, Any]:
    import onnxruntime as ort

    from handler.core.cpu import available_cpus
    from handler.core.model.session import session_options

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ort.InferenceSession(
            model_path, sess_options=session_options(available_cpus()), providers=["CPUExecutionProvider"]
        )
        times.append(time.perf_counter() - started)
    return {"create_s": statistics.median(times), "all_s": times}


def _cli_seconds(model_path: str, image: Path, output: Path) -> float:
    env = {**os.environ, "MODEL_PATH": model_path, "MODEL_OUTPUT": "logits"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "handler", "remove", str(image), "-o", str(output)],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    return time.perf_counter() - started


def _bake(model: Path, folder: Path) -> Path:
    """The build step's own code: `python -m handler download --output` (pre-optimised when faster)."""
    subprocess.run(
        [sys.executable, "-m", "handler", "download", "--output", str(folder)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "MODEL_PATH": str(model)},
        capture_output=True,
    )
    return folder / "model.onnx"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        handlers = {
            "ratio": lambda: child_ratio(rest[0], rest[1], int(rest[2])),
            "memory": lambda: child_memory(rest[0], rest[1]),
            "create": lambda: child_create(rest[0], int(rest[1])),
        }
        print(json.dumps(handlers[kind]()))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    raw = WORK / f"heavy_subject_{args.size}.onnx"
    if not raw.exists():
        build_heavy_graph(str(raw), size=args.size, subject=True)
    baked = _bake(raw, WORK / "baked")
    many_nodes = WORK / f"many_nodes_{args.size}.onnx"
    if not many_nodes.exists():
        build_many_node_graph(str(many_nodes), size=args.size)
    many_nodes_baked = _bake(many_nodes, WORK / "baked_many_nodes")
    big = twelve_megapixel_jpeg(WORK / "photo_12mp.jpg")
    tiny = WORK / "tiny.png"
    if not tiny.exists():
        from PIL import Image

        Image.open(SAMPLES / "chelsea.jpg").convert("RGB").resize((64, 64)).save(tiny)

    images = [*sorted(SAMPLES.glob("*.jpg")), big]
    ratios = [run_child(SCRIPT, "ratio", str(baked), str(image), str(args.runs)) for image in images]
    memory = {
        name: run_child(SCRIPT, "memory", str(baked), str(path)) for name, path in (("tiny", tiny), ("12mp", big))
    }
    added_mb = memory["12mp"]["peak_mb"] - memory["tiny"]["peak_mb"]
    creation = {
        name: run_child(SCRIPT, "create", str(path), "5")
        for name, path in (
            ("raw", raw),
            ("preoptimised", baked),
            ("many_nodes_raw", many_nodes),
            ("many_nodes_preoptimised", many_nodes_baked),
        )
    }
    cold = {
        name: statistics.median(_cli_seconds(str(path), SAMPLES / "chelsea.jpg", WORK / "cold.png") for _ in range(3))
        for name, path in (("raw", raw), ("preoptimised", baked))
    }
    report = {
        "machine": machine_info(),
        "model": f"benchmarks/heavy_graph.py at {args.size}x{args.size} with a photo-like subject mask "
        "(pre-optimised copy baked by `handler download --output`)",
        "ratio": ratios,
        "memory": {
            **memory,
            "added_by_12mp_mb": added_mb,
            "added_bytes_per_pixel": added_mb * 1024 * 1024 / memory["12mp"]["pixels"],
        },
        "session_creation": creation,
        "cold_cli_first_result_s": cold,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(report, indent=2) + "\n")
    print(_tables(report))


def _tables(report: dict[str, Any]) -> str:
    lines = [
        "| image | pixels | session.run (s) | pipeline (s) | ratio | PNG (MB) | " + " | ".join(STAGES) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(STAGES),
    ]
    for row in report["ratio"]:
        stages = " | ".join(f"{row['stages_s'][stage]:.3f}" for stage in STAGES)
        lines.append(
            f"| {row['image']} | {row['pixels']:,} | {row['session_run_s']:.2f} | {row['pipeline_s']:.2f} | "
            f"{row['ratio']:.3f} | {row['png_mb']:.2f} | {stages} |"
        )
    memory = report["memory"]
    creation = report["session_creation"]
    cold = report["cold_cli_first_result_s"]
    lines += [
        "",
        f"Memory: peak {memory['12mp']['peak_mb']:.0f} MB for a 12 MP cutout, {memory['tiny']['peak_mb']:.0f} MB for 64x64; "
        f"the 12 MP image adds {memory['added_by_12mp_mb']:.0f} MB = {memory['added_bytes_per_pixel']:.1f} bytes per input pixel.",
        f"Session creation, heavy graph: raw {creation['raw']['create_s']:.3f} s, pre-optimised "
        f"{creation['preoptimised']['create_s']:.3f} s ({creation['preoptimised']['create_s'] / creation['raw']['create_s']:.2f}x); "
        f"many-node graph: raw {creation['many_nodes_raw']['create_s']:.3f} s, pre-optimised "
        f"{creation['many_nodes_preoptimised']['create_s']:.3f} s "
        f"({creation['many_nodes_preoptimised']['create_s'] / creation['many_nodes_raw']['create_s']:.2f}x).",
        f"Process start -> first cutout (CLI, chelsea.jpg): raw {cold['raw']:.2f} s, pre-optimised {cold['preoptimised']:.2f} s.",
        f"Machine: {report['machine']['cpu_count']} x {report['machine']['cpu_model']}, load {report['machine']['loadavg_1_5_15']}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
