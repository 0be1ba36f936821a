"""The bake step's native-DeformConv pass: rewrite, verify on photos, keep only what agrees.

The public BiRefNet files spell each deformable convolution as a chain of plain ops
(handler/core/bake/rewrite.py); native `DeformConv` runs the same network ~1.8x faster in about a
third of the memory. The rewrite is kept only when

- it rewrote every decomposed chain the graph holds (a partial rewrite means a chain looked
  different from what the exporter emits: better to keep the file as published), and
- the original and the rewritten model, run on the probe photos, give the same probabilities
  within PROBABILITY_TOLERANCE.

The probes are tiled into one input of the model's size (`mosaic`), so each model runs once: the
original's run is the check's cost (~20 s and ~7.5 GB for BiRefNet-lite at 1024x1024, most of it
its first run), and three separate photos tripled it for the same photos' content.

Otherwise the original is baked and the manifest says why. Needs the `onnx` package, which only
the build step installs; without it the original is baked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from handler.core.model.session import BackgroundModel, session_options
from handler.core.model.settings import ModelSpec
from handler.core.model.store import sha256_of

REWRITTEN = "deformconv.onnx"
# Masks are 8-bit: one grey level is 1/255 ~ 3.9e-3 in probability. The two graphs differ only in
# the order float32 sums are taken inside the deformable convolutions (~1e-6 on logits, and a
# probability moves at most a quarter of its logit), so 1e-4 — 1/39 of a grey level — leaves ~100x
# margin over rounding while any real error (a sample position, border or weight off) moves
# probabilities by tenths.
PROBABILITY_TOLERANCE = 1e-4
PROBE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Check:
    """The original and the rewritten model on the same probes."""

    probes: list[str]
    # How the probes reached the models: tiles of one input ("mosaic <columns>x<rows>"), one run each.
    layout: str
    runs: int
    tolerance: float
    max_probability_difference: float
    max_logit_difference: float
    original_seconds: float
    rewritten_seconds: float

    @property
    def agrees(self) -> bool:
        return self.max_probability_difference <= self.tolerance


@dataclass(frozen=True)
class Outcome:
    """What the pass decided, for the manifest."""

    applied: bool
    reason: str
    source_sha256: str
    rewritten_sha256: str | None = None
    rewrite_seconds: float | None = None
    rewrite: dict[str, object] | None = None
    check: dict[str, object] | None = None

    def record(self) -> dict[str, object]:
        return asdict(self)


def native_deform(
    source: Path, scratch: Path, *, threads: int, probes: Sequence[Path], spec: ModelSpec | None = None
) -> tuple[Path, Outcome]:
    """The file to bake (the rewritten one, or `source`) and why."""
    source_sha256 = sha256_of(source)
    started = time.perf_counter()
    try:
        from handler.core.bake.rewrite import RewriteRefused, rewrite_file
    except ModuleNotFoundError as error:
        # onnx is a build-time tool, not a run-time dependency; any other missing module is a bug.
        if error.name != "onnx":
            raise
        return source, Outcome(False, f"not attempted: {error} (the build step installs onnx)", source_sha256)
    target = scratch / REWRITTEN
    try:
        result = rewrite_file(source, target)
    except RewriteRefused as refused:
        return source, Outcome(False, f"refused: {refused}", source_sha256)
    seconds = round(time.perf_counter() - started, 3)
    summary = result.summary()
    if result.candidates == 0:
        return source, Outcome(
            False, "no decomposed deformable convolutions in this graph", source_sha256, rewrite=summary
        )
    if result.rewritten != result.candidates:
        reason = f"rewrote {result.rewritten} of the {result.candidates} decomposed chains; keeping the original"
        return source, Outcome(False, reason, source_sha256, rewrite_seconds=seconds, rewrite=summary)
    rewritten_sha256 = sha256_of(target)
    if not probes:
        reason = "no probe photos to verify the rewrite with; keeping the original"
        return source, Outcome(False, reason, source_sha256, rewritten_sha256, seconds, summary)
    try:
        check = compare(source, target, probes, threads=threads, spec=spec)
    except Exception as error:  # noqa: BLE001 - onnxruntime's own untyped errors: the rewritten file does not load or run
        reason = f"the rewritten model failed to run: {error}"
        return source, Outcome(False, reason, source_sha256, rewritten_sha256, seconds, summary)
    if not check.agrees:
        reason = (
            f"outputs differ by {check.max_probability_difference:.3g} in probability "
            f"(tolerance {check.tolerance:g}); keeping the original"
        )
        return source, Outcome(False, reason, source_sha256, rewritten_sha256, seconds, summary, asdict(check))
    reason = f"rewrote all {result.rewritten} decomposed chains; outputs agree on {len(check.probes)} probes ({check.layout})"
    return target, Outcome(True, reason, source_sha256, rewritten_sha256, seconds, summary, asdict(check))


def compare(
    original: Path, rewritten: Path, probes: Sequence[Path], *, threads: int, spec: ModelSpec | None = None
) -> Check:
    """Run both models on the probes' mosaic (one model at a time: the original's peak alone is large)."""
    pictures = [_picture(path) for path in probes]
    (original_raw, original_probabilities), original_seconds, layout = _output(original, pictures, threads, spec)
    (rewritten_raw, rewritten_probabilities), rewritten_seconds, _ = _output(rewritten, pictures, threads, spec)
    return Check(
        probes=[path.name for path in probes],
        layout=layout,
        runs=1,
        tolerance=PROBABILITY_TOLERANCE,
        max_probability_difference=float(np.max(np.abs(original_probabilities - rewritten_probabilities))),
        max_logit_difference=float(np.max(np.abs(original_raw - rewritten_raw))),
        original_seconds=round(original_seconds, 3),
        rewritten_seconds=round(rewritten_seconds, 3),
    )


def mosaic(pictures: Sequence[Image.Image], size: tuple[int, int]) -> tuple[Image.Image, str]:
    """The pictures tiled into one image of `size` (columns x rows as square as they go), and its layout.

    Tiles left over are the pictures again, mirrored, so that no part of the input is blank.
    """
    columns = math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / columns)
    width, height = size
    canvas = Image.new("RGB", size)
    for tile in range(columns * rows):
        picture = pictures[tile % len(pictures)]
        if tile >= len(pictures):
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        left, top = width * (tile % columns) // columns, height * (tile // columns) // rows
        right, bottom = width * (tile % columns + 1) // columns, height * (tile // columns + 1) // rows
        canvas.paste(picture.resize((right - left, bottom - top), Image.Resampling.BILINEAR), (left, top))
    return canvas, f"mosaic {columns}x{rows}"


def default_probes(root: Path) -> list[Path]:
    """The sample photos shipped beside the package (the build copies them next to the bake step)."""
    folder = root / "samples"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PROBE_SUFFIXES) if folder.is_dir() else []


def _picture(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _output(
    path: Path, pictures: Sequence[Image.Image], threads: int, spec: ModelSpec | None
) -> tuple[tuple[np.ndarray, np.ndarray], float, str]:
    """(raw output, probabilities) on the pictures' mosaic, the run's seconds, and the mosaic's layout."""
    session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    model = BackgroundModel(session, spec)
    image, layout = mosaic(pictures, model.input_size)
    tensor = model.preprocess(image)
    started = time.perf_counter()
    (raw,) = session.run([model.output_name], {model.input_name: tensor})
    seconds = time.perf_counter() - started
    return (np.asarray(raw, dtype=np.float32), model.to_probabilities(raw)), seconds, layout
