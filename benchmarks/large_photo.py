"""Memory of a 50 MP photo (phones' 48/50 MP modes) through the whole pipeline, against 12 MP.

Usage::

    .venv/bin/python benchmarks/large_photo.py

Each case runs `handler.render.process` once in a fresh subprocess (peak RSS, VmHWM, never goes
down) with benchmarks/heavy_graph.py's BiRefNet-lite stand-in at 1024x1024, so the session, arena
and inference working set are those of a model of the real cost. What a photo adds is its peak
minus the peak of the same process cutting out a 64x64 image; divided by the input's pixels, that
is the memory a deployment needs per input pixel on top of the model. Cases: the API's default
(PNG cutout) and the jobs' default (PNG cutout + mask). Prints a markdown table and writes
benchmarks/results/large_photo.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

if TYPE_CHECKING:
    from handler.core.image.formats import OutputKind

from measure import ROOT, SAMPLES, machine_info, peak_rss_mb, rss_mb, run_child, write_json  # noqa: E402

RESULTS = HERE / "results" / "large_photo.json"
CACHE = ROOT / ".cache" / "bench"
SIZES = {"tiny": (64, 64), "12mp": (4000, 3000), "50mp": (8660, 5774)}
OUTPUTS = {"api (cutout)": ("cutout",), "jobs (cutout + mask)": ("cutout", "mask")}


def photo(name: str) -> Path:
    """A photo-like JPEG of the named size: a sample upscaled, with sensor-like noise; made once."""
    path = CACHE / f"photo_{name}.jpg"
    if path.exists():
        return path
    import numpy as np
    from PIL import Image

    size = SIZES[name]
    image = Image.open(SAMPLES / "astronaut.jpg").convert("RGB").resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(image).astype(np.int16)
    pixels += np.random.default_rng(0).integers(-6, 7, pixels.shape, dtype=np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def child(model_path: str, image_path: str, kinds: list[OutputKind]) -> dict[str, Any]:
    from handler.core.cpu import available_cpus
    from handler.core.image.limits import ImageLimits
    from handler.core.image.options import RenderOptions
    from handler.core.model.session import BackgroundModel
    from handler.core.model.settings import ModelSpec
    from handler.core.render import process

    model = BackgroundModel.load(model_path, ModelSpec(), threads=available_cpus())
    after_load = rss_mb()
    data = Path(image_path).read_bytes()
    started = time.perf_counter()
    result = process(data, kinds, RenderOptions(), model, ImageLimits())
    seconds = time.perf_counter() - started
    width, height = result.input_size
    return {
        "pixels": width * height,
        "input_bytes": len(data),
        "output_bytes": sum(len(rendered.data) for rendered in result.outputs.values()),
        "after_load_mb": round(after_load),
        "peak_mb": round(peak_rss_mb()),
        "total_s": round(seconds, 2),
        "inference_s": round(result.inference_ms / 1000, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--kinds", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.image, args.kinds.split(","))))
        return

    from heavy_graph import build_heavy_graph

    images = {name: photo(name) for name in SIZES}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model_path = str(Path(folder) / "heavy-1024.onnx")
        build_heavy_graph(model_path, size=1024, subject=True)
        for label, kinds in OUTPUTS.items():
            measured = {
                name: run_child(Path(__file__), "--model", model_path, "--image", str(path), "--kinds", ",".join(kinds))
                for name, path in images.items()
            }
            for name in ("12mp", "50mp"):
                row = measured[name]
                added = row["peak_mb"] - measured["tiny"]["peak_mb"]
                rows.append(
                    {
                        "outputs": label,
                        "image": name,
                        **row,
                        "tiny_peak_mb": measured["tiny"]["peak_mb"],
                        "added_mb": added,
                        "added_bytes_per_pixel": round(added * 1024 * 1024 / row["pixels"], 1),
                    }
                )
    print("| outputs | photo | peak RSS | 64x64 peak | added by the photo | bytes / input pixel | total time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['outputs']} | {row['image']} | {row['peak_mb']} MB | {row['tiny_peak_mb']} MB | {row['added_mb']} MB "
            f"| {row['added_bytes_per_pixel']} | {row['total_s']} s |"
        )
    write_json(
        RESULTS,
        {
            "machine": machine_info(),
            "model": "benchmarks/heavy_graph.py (static 1024x1024, photo-like subject mask)",
            "inputs": {name: list(size) for name, size in SIZES.items()},
            "results": rows,
        },
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
