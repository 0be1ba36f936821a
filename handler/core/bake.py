"""The container build's model step: fetch and verify the model, then bake it into a fixed path.

`python -m handler download --output /opt/model` writes `/opt/model/model.onnx` — a copy of the
graph pre-optimised at onnxruntime's EXTENDED level when loading it is measured to be faster
(EXTENDED rewrites are portable across CPUs; the CPU-specific layout passes still run at load) —
and `/opt/model/model.json`, a manifest of where it came from and of the baked file's SHA-256 and
size, which the functions read as the model's identity instead of hashing the file at cold start.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import onnxruntime as ort

from handler.core.model import session_options
from handler.core.model_store import MANIFEST, download_model, sha256_of
from handler.core.settings import ModelSettings

BAKED_MODEL = "model.onnx"


@dataclass(frozen=True)
class BakedModel:
    source: str
    source_sha256: str
    path: str
    # The baked file's name, SHA-256 and size: the model's identity (handler.core.model_store.model_sha256).
    file: str
    sha256: str
    size: int
    preoptimised: bool
    raw_load_seconds: float
    optimised_load_seconds: float | None


def bake(settings: ModelSettings, output_dir: Path) -> BakedModel:
    source = download_model(settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / BAKED_MODEL
    raw_seconds = _load_seconds(source, settings.threads)
    optimised_seconds: float | None = None
    with tempfile.TemporaryDirectory(dir=output_dir) as scratch:
        optimised = Path(scratch) / BAKED_MODEL
        try:
            _write_optimised(source, optimised, settings.threads)
            optimised_seconds = _load_seconds(optimised, settings.threads)
        except Exception:  # an export onnxruntime cannot pre-optimise still works unoptimised
            optimised_seconds = None
        preoptimised = optimised_seconds is not None and optimised_seconds < raw_seconds
        shutil.copyfile(optimised if preoptimised else source, target)
    baked = BakedModel(
        source=settings.name,
        source_sha256=sha256_of(source),
        path=str(target),
        file=target.name,
        sha256=sha256_of(target),
        size=target.stat().st_size,
        preoptimised=preoptimised,
        raw_load_seconds=round(raw_seconds, 3),
        optimised_load_seconds=None if optimised_seconds is None else round(optimised_seconds, 3),
    )
    (output_dir / MANIFEST).write_text(json.dumps(asdict(baked), indent=2) + "\n")
    return baked


def _write_optimised(source: Path, target: Path, threads: int) -> None:
    options = session_options(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def _load_seconds(path: Path, threads: int) -> float:
    started = time.perf_counter()
    ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    return time.perf_counter() - started
