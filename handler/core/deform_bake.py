"""The bake step's native-DeformConv pass: rewrite, verify on photos, keep only what agrees.

The public BiRefNet files spell each deformable convolution as a chain of plain ops
(handler/core/deform_rewrite.py); native `DeformConv` runs the same network ~1.8x faster in about a
third of the memory. The rewrite is kept only when

- it rewrote every decomposed chain the graph holds (a partial rewrite means a chain looked
  different from what the exporter emits: better to keep the file as published), and
- the original and the rewritten model, run on the probe photos, give the same probabilities
  within PROBABILITY_TOLERANCE.

Otherwise the original is baked and the manifest says why. Needs the `onnx` package, which only
the build step installs; without it the original is baked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from handler.core.model import BackgroundModel, session_options
from handler.core.model_store import sha256_of
from handler.core.settings import ModelSpec

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
        from handler.core.deform_rewrite import RewriteRefused, rewrite_file
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
    reason = f"rewrote all {result.rewritten} decomposed chains; outputs agree on {len(check.probes)} probes"
    return target, Outcome(True, reason, source_sha256, rewritten_sha256, seconds, summary, asdict(check))


def compare(
    original: Path, rewritten: Path, probes: Sequence[Path], *, threads: int, spec: ModelSpec | None = None
) -> Check:
    """Run both models on every probe photo (one model at a time: the original's peak alone is large)."""
    pictures = [_picture(path) for path in probes]
    original_out, original_seconds = _outputs(original, pictures, threads, spec)
    rewritten_out, rewritten_seconds = _outputs(rewritten, pictures, threads, spec)
    logit_diff = max(float(np.max(np.abs(a - b))) for (a, _), (b, _) in zip(original_out, rewritten_out, strict=True))
    prob_diff = max(float(np.max(np.abs(a - b))) for (_, a), (_, b) in zip(original_out, rewritten_out, strict=True))
    return Check(
        probes=[path.name for path in probes],
        tolerance=PROBABILITY_TOLERANCE,
        max_probability_difference=prob_diff,
        max_logit_difference=logit_diff,
        original_seconds=round(original_seconds, 3),
        rewritten_seconds=round(rewritten_seconds, 3),
    )


def default_probes(root: Path) -> list[Path]:
    """The sample photos shipped beside the package (the build copies them next to the bake step)."""
    folder = root / "samples"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PROBE_SUFFIXES) if folder.is_dir() else []


def _picture(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _outputs(
    path: Path, pictures: Sequence[Image.Image], threads: int, spec: ModelSpec | None
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """(raw output, probabilities) per picture, and the seconds all runs took."""
    session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    model = BackgroundModel(session, spec)
    outputs = []
    started = time.perf_counter()
    for picture in pictures:
        (raw,) = session.run([model.output_name], {model.input_name: model.preprocess(picture)})
        outputs.append((np.asarray(raw, dtype=np.float32), model.to_probabilities(raw)))
    return outputs, time.perf_counter() - started
