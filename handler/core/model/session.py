"""The model session: one object owns the onnxruntime session and the model's pre/post-processing."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from handler.core.errors import ConfigurationError, InvalidParameter, ModelUnavailable
from handler.core.model.contract import RGB, ModelContract, contract_for
from handler.core.model.settings import DEFAULT_DYNAMIC_INPUT_SIZE, ModelSettings, ModelSpec
from handler.core.model.store import resolve_model_path

# BiRefNet's export names; other models (U-2-Net) fall back to their first input and output.
PREFERRED_INPUT = "input_image"
PREFERRED_OUTPUT = "output_image"
# Models kept loaded at once, one session each. The functions only ever load one; a Python caller
# that alternates between a few (`remove(..., repo=...)`) reuses each one's session rather than
# loading it per call. BiRefNet's session holds gigabytes, so the cache is small.
MODEL_SESSIONS = 4


def session_options(threads: int) -> ort.SessionOptions:
    """Options chosen for one image at a time on a small, memory-billed CPU share.

    - `intra_op_num_threads` = the CPU share we really have (see handler.core.cpu): more threads than
      vCPUs only adds contention.
    - Sequential execution, one inter-op thread: BiRefNet's graph is a chain; parallel branches
      would add threads and memory for no gain on 1-6 vCPUs.
    - `enable_mem_pattern=False`: the memory pattern pre-plans one arena block for the whole run.
      On BiRefNet-lite itself at 1024x1024 (measured on the real export) it took peak memory
      from ~11.3 GB to ~7.0 GB — the difference between failing and fitting in Lambda's 10,240 MB.
      On our stand-in encoder/decoder graph (benchmarks/session_options.py) it took the peak from
      2.80 GB to 1.55 GB (-45%) at the same speed. The CPU arena itself stays on: turning it off
      saved ~0.25 GB more there and cost 30-85% in time.
    - No spinning: by default the pool's threads busy-wait for more work after every run (~40 ms
      of a core here), which is exactly when the cutout's own work starts on the same cores; on a
      fractional vCPU it also burns the quota. Measured on the 12 MP pipeline (benchmarks/README.md,
      "Fourth round"): the work around the model ran ~60 ms faster, the model run itself no slower.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_mem_pattern = False
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are noise in Lambda logs
    return options


@dataclass(frozen=True)
class _Normalisation:
    """x * scale + offset == (x / 255 - mean) / std, folded into one multiply-add per value."""

    scale: np.ndarray
    offset: np.ndarray

    @classmethod
    def of(cls, mean_rgb: RGB, std_rgb: RGB) -> _Normalisation:
        mean = np.asarray(mean_rgb, dtype=np.float32)
        std = np.asarray(std_rgb, dtype=np.float32)
        return cls(scale=(1.0 / (255.0 * std)).astype(np.float32), offset=(-mean / std).astype(np.float32))


class BackgroundModel:
    """A loaded salient-object model: RGB image in, foreground probability mask out."""

    def __init__(
        self, session: ort.InferenceSession, spec: ModelSpec | None = None, *, path: Path | None = None
    ) -> None:
        """`path`, the file the session was loaded from, lets the model describe itself (its graph, its
        bake manifest); a bare session has only `spec` and the defaults."""
        self.session = session
        self.spec = spec or ModelSpec()
        # The file the session was loaded from (its identity is the file's hash), if any.
        self.path = path
        inputs = {node.name: node for node in session.get_inputs()}
        outputs = [node.name for node in session.get_outputs()]
        self.input_name = PREFERRED_INPUT if PREFERRED_INPUT in inputs else next(iter(inputs))
        self.output_name = PREFERRED_OUTPUT if PREFERRED_OUTPUT in outputs else outputs[0]
        shape = inputs[self.input_name].shape
        # What the model returns and expects: the spec's explicit values, else what the model says.
        self.contract: ModelContract = contract_for(self.spec, path=path, output_name=self.output_name)
        # Dynamic H/W: the export runs at any size, so a caller may trade quality for speed.
        self.dynamic = _fixed_size(shape) is None
        self.input_size = _input_size(shape, self.contract.input_size)
        self._normalisation = _Normalisation.of(self.contract.mean, self.contract.std)

    @classmethod
    def load(cls, path: Path | str, spec: ModelSpec | None = None, *, threads: int = 1) -> BackgroundModel:
        path = Path(path)
        if not path.is_file():
            raise ModelUnavailable(f"model file not found: {path}")
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise ModelUnavailable(f"cannot load the ONNX model {path}: {error}") from error
        return cls(session, spec, path=path)

    def size_for(self, resolution: int | None) -> tuple[int, int]:
        """(width, height) of the input tensor for a requested square `resolution` (None: the default).

        A fixed-size graph runs at its own size only: resizing its input tensor would be refused by
        onnxruntime, and silently ignoring the request would mislead the caller.
        """
        if resolution is None or (resolution, resolution) == self.input_size:
            return self.input_size
        if not self.dynamic:
            width, height = self.input_size
            raise InvalidParameter(
                "resolution",
                f"this model's input is fixed at {width}x{height}; resolution applies only to dynamic-input models",
            )
        return resolution, resolution

    def preprocess(self, rgb: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
        """RGB image → float32 [1, 3, H, W] at `size` (default: the model's), normalised as the model was trained.

        The resize squashes (ignores aspect ratio) with Pillow's bilinear filter, which is what
        BiRefNet's own torchvision pipeline applies to PIL images.
        """
        if rgb.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {rgb.mode!r}")
        resized = rgb.resize(size or self.input_size, Image.Resampling.BILINEAR)
        pixels = np.asarray(resized)  # HWC, uint8
        # NCHW, the graph's layout, written plane by plane: a scalar multiply-add per contiguous
        # plane is several times faster than broadcasting the three channels' constants over HWC.
        tensor = np.empty((1, 3, *pixels.shape[:2]), dtype=np.float32)
        for channel in range(3):
            plane = tensor[0, channel]
            np.multiply(pixels[..., channel], self._normalisation.scale[channel], out=plane)
            plane += self._normalisation.offset[channel]
        return tensor

    def probabilities(
        self, rgb: Image.Image, size: tuple[int, int] | None = None, *, release_memory: bool = False
    ) -> np.ndarray:
        """Foreground probability in [0, 1] at the model's resolution (or `size`), float32 [H, W]."""
        return self.infer(self.preprocess(rgb, size), release_memory=release_memory)

    def infer(self, tensor: np.ndarray, *, release_memory: bool = False) -> np.ndarray:
        """The model on a preprocessed tensor, as probabilities (float32 [H, W]).

        `release_memory` hands the run's working memory back to the system when it ends. onnxruntime
        otherwise keeps it for the next run (~1.6 GB for a stand-in of BiRefNet-lite), and whatever
        the caller does next with a large photo stacks on top of it; the price is the next run's page
        faults (~430,000 there, ~0.65 s on 2 cores here).
        """
        options = _RELEASE_MEMORY if release_memory else None
        (raw,) = self.session.run([self.output_name], {self.input_name: tensor}, options)
        return self.to_probabilities(raw)

    def to_probabilities(self, raw: np.ndarray) -> np.ndarray:
        """The graph's raw output ([..., H, W] logits or probabilities) as probabilities, float32 [H, W]."""
        values = np.asarray(raw, dtype=np.float32).reshape(raw.shape[-2:])
        if self.contract.output == "logits":
            # sigmoid via tanh: never overflows for large negative logits. No min-max stretch, so an
            # image with no subject keeps a near-empty mask.
            probabilities: np.ndarray = 0.5 * (np.tanh(values * 0.5) + 1.0)
        else:
            probabilities = np.clip(values, 0.0, 1.0)
        return probabilities


def _release_memory_options() -> ort.RunOptions:
    options = ort.RunOptions()
    # Frees the CPU arena's regions that hold nothing once the run ends: after a whole run, nearly
    # all of them, so the process's resident memory falls back to about the session's weights.
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


_RELEASE_MEMORY = _release_memory_options()


@lru_cache(maxsize=MODEL_SESSIONS)
def load_model(settings: ModelSettings) -> BackgroundModel:
    """The model `settings` name, loaded once: the process's model cache, one session per model.

    What the Lambda runtime (handler.aws.runtime) loads: the named model or an error, never a fallback.
    """
    return BackgroundModel.load(resolve_model_path(settings), settings.spec, threads=settings.threads)


def _input_size(shape: list[int | str | None], override: int | None) -> tuple[int, int]:
    """(width, height) the model wants: fixed dims from the graph, else the override or 1024."""
    if len(shape) != 4:
        raise ConfigurationError(f"the model input must be [N, 3, H, W], the graph says {shape}")
    fixed = _fixed_size(shape)
    if fixed is not None:
        width, height = fixed
        if override is not None and (override, override) != fixed:
            raise ConfigurationError(f"MODEL_INPUT_SIZE={override} but the graph's input is fixed at {width}x{height}")
        return fixed
    size = override or DEFAULT_DYNAMIC_INPUT_SIZE
    return size, size


def _fixed_size(shape: list[int | str | None]) -> tuple[int, int] | None:
    """(width, height) when the graph fixes both, else None (named or unknown dims are dynamic)."""
    height, width = shape[-2:] if len(shape) >= 2 else (None, None)
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return width, height
    return None
