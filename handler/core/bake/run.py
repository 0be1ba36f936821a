"""The container build's model step: fetch and verify the model, then bake it into a fixed path.

`python -m handler.core.bake /opt/model` (the image build) and `python -m handler download --output
/opt/model` (the same, from the command line) write `/opt/model/model.onnx` — the graph, with
its decomposed deformable convolutions made native DeformConv when that is verified to give the
same outputs (handler.core.bake.deform), pre-optimised at onnxruntime's EXTENDED level when loading
it is measured to be faster (EXTENDED rewrites are portable across CPUs; the CPU-specific layout
passes still run at load) — and `/opt/model/model.json`, a manifest of where it came from and of
the baked file's SHA-256 and size, which the functions read as the model's identity instead of
hashing the file at cold start, and of the model's contract (logits or probabilities, input size,
normalisation), which they read instead of settings of their own (handler.core.model.contract).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import onnxruntime as ort

from handler.core.bake.deform import default_probes, native_deform
from handler.core.model.session import BackgroundModel, session_options
from handler.core.model.settings import ModelSettings
from handler.core.model.store import MANIFEST, download_model, sha256_of

BAKED_MODEL = "model.onnx"
# The checkout (or the build's /tmp/bake), whose samples/ holds the photos the rewrite is checked on.
_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class BakedModel:
    source: str
    source_sha256: str
    path: str
    # The baked file's name, SHA-256 and size: the model's identity (handler.core.model.store.model_sha256).
    file: str
    sha256: str
    size: int
    preoptimised: bool
    raw_load_seconds: float
    optimised_load_seconds: float | None
    native_deform: dict[str, object]
    # What the model returns and expects (handler.core.model.contract): the image needs no MODEL_*
    # settings for a swapped model, and a cold start reads no graph to find out.
    contract: dict[str, object]

    def summary(self) -> str:
        """What the build's log and the command line print: where it went and what was done to it."""
        deform = "applied" if self.native_deform["applied"] else "not applied"
        return (
            f"{self.path}  source_sha256={self.source_sha256}  preoptimised={self.preoptimised}  native_deform={deform}\n"
            f"native DeformConv: {self.native_deform['reason']}"
        )


def bake(settings: ModelSettings, output_dir: Path, probes: Sequence[Path] | None = None) -> BakedModel:
    source = download_model(settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / BAKED_MODEL
    optimised_seconds: float | None = None
    with tempfile.TemporaryDirectory(dir=output_dir) as scratch:
        model_file, deform = native_deform(
            source,
            Path(scratch),
            threads=settings.threads,
            spec=settings.spec,
            probes=default_probes(_ROOT) if probes is None else probes,
        )
        raw_seconds = _load_seconds(model_file, settings.threads)
        optimised = Path(scratch) / BAKED_MODEL
        try:
            _write_optimised(model_file, optimised, settings.threads)
            optimised_seconds = _load_seconds(optimised, settings.threads)
        except Exception:  # an export onnxruntime cannot pre-optimise still works unoptimised
            optimised_seconds = None
        preoptimised = optimised_seconds is not None and optimised_seconds < raw_seconds
        # Read before pre-optimisation, which may fuse the final activation into the op before it.
        contract = _contract(model_file, settings)
        # A manifest left from an earlier bake must never describe the new file, even for a moment.
        (output_dir / MANIFEST).unlink(missing_ok=True)
        # Written whole or not at all: local runs take any model.onnx in a bake folder as finished.
        partial = Path(scratch) / "partial.onnx"
        shutil.copyfile(optimised if preoptimised else model_file, partial)
        partial.replace(target)
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
        native_deform=deform.record(),
        contract=contract,
    )
    (output_dir / MANIFEST).write_text(json.dumps(asdict(baked), indent=2) + "\n")
    return baked


def _contract(model_file: Path, settings: ModelSettings) -> dict[str, object]:
    model = BackgroundModel.load(model_file, settings.spec, threads=settings.threads)
    width, height = model.input_size
    return model.contract.record(width=width, height=height, dynamic=model.dynamic)


def _write_optimised(source: Path, target: Path, threads: int) -> None:
    options = session_options(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def _load_seconds(path: Path, threads: int) -> float:
    started = time.perf_counter()
    ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    return time.perf_counter() - started
