"""The core's settings: the model (where it comes from, what it expects) and the input limits.

Read once from the environment into frozen objects and validated there; the function's own
settings (outputs, S3) are handler.aws.settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from handler.core.cpu import available_cpus
from handler.core.errors import ConfigurationError

OutputKind = Literal["logits", "probabilities"]

DEFAULT_MODEL_REPO = "onnx-community/BiRefNet_lite-ONNX"
DEFAULT_MODEL_FILE = "onnx/model.onnx"
DEFAULT_MODEL_REVISION = "main"

# ImageNet statistics: BiRefNet (and U-2-Net) were trained on inputs normalised with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Used only when the graph's spatial input dims are dynamic: BiRefNet was trained at 1024x1024.
DEFAULT_DYNAMIC_INPUT_SIZE = 1024
# The input sizes a request may ask of a dynamic-input export (`resolution`): each step down is
# faster and coarser (benchmarks/README.md, "Resolution").
RESOLUTIONS = (512, 768, 1024)

# Input limits. 100 MB covers any camera JPEG; 64 MP covers phones' 48/50 MP modes while keeping a
# full-resolution RGBA cutout (4 bytes/pixel) far below Lambda's memory.
DEFAULT_MAX_INPUT_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_INPUT_PIXELS = 64_000_000
# Only the first frame is ever decoded, but GIF and TIFF declare no frame count: counting means
# walking the file (~2 µs a GIF frame, so a 100 MB GIF of tiny frames would take seconds). The walk
# stops at this bound, and a file past it is an animation or a document rather than a photo.
DEFAULT_MAX_INPUT_FRAMES = 1000


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _floats(name: str, raw: str | None, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if not raw:
        return default
    try:
        values = tuple(float(part) for part in raw.replace(",", " ").split())
    except ValueError as error:
        raise ConfigurationError(f"{name} must be three numbers, got {raw!r}") from error
    if len(values) != 3:
        raise ConfigurationError(f"{name} must be three numbers (one per RGB channel), got {raw!r}")
    return values  # type: ignore[return-value]


def _switch(name: str, raw: str | None, default: bool) -> bool:
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be 1 or 0 (true/false, on/off), got {raw!r}")


def _positive_int(name: str, raw: str | None, default: int | None) -> int | None:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from error
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects and returns; BiRefNet's contract is the default.

    `input_size` overrides the graph's size only where the graph leaves it dynamic.
    """

    output: OutputKind = "logits"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int | None = None

    def __post_init__(self) -> None:
        if self.output not in ("logits", "probabilities"):
            raise ConfigurationError(f"MODEL_OUTPUT must be 'logits' or 'probabilities', got {self.output!r}")
        if any(value <= 0 for value in self.std):
            raise ConfigurationError(f"MODEL_STD must be positive, got {self.std}")


@dataclass(frozen=True)
class ModelSettings:
    """Where the model comes from and how its session runs."""

    path: Path | None = None
    repo: str = DEFAULT_MODEL_REPO
    file: str = DEFAULT_MODEL_FILE
    revision: str = DEFAULT_MODEL_REVISION
    cache_dir: Path | None = None
    sha256: str | None = None
    offline: bool = False
    hub_endpoint: str | None = None
    threads: int = field(default_factory=available_cpus)
    spec: ModelSpec = field(default_factory=ModelSpec)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModelSettings:
        env = os.environ if environ is None else environ
        path = env.get("MODEL_PATH") or None
        cache_dir = env.get("MODEL_CACHE_DIR") or None
        sha256 = (env.get("MODEL_SHA256") or "").strip().lower() or None
        if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
            raise ConfigurationError(f"MODEL_SHA256 must be 64 hex digits, got {sha256!r}")
        return cls(
            path=Path(path) if path else None,
            repo=env.get("MODEL_REPO") or DEFAULT_MODEL_REPO,
            file=env.get("MODEL_FILE") or DEFAULT_MODEL_FILE,
            revision=env.get("MODEL_REVISION") or DEFAULT_MODEL_REVISION,
            cache_dir=Path(cache_dir) if cache_dir else None,
            sha256=sha256,
            # The hub's own switch counts too, so a container built with HF_HUB_OFFLINE=1 can
            # never block a request on a download.
            offline=_truthy(env.get("MODEL_OFFLINE")) or _truthy(env.get("HF_HUB_OFFLINE")),
            hub_endpoint=env.get("HF_ENDPOINT") or None,
            threads=_positive_int("MODEL_THREADS", env.get("MODEL_THREADS"), None) or available_cpus(env),
            spec=ModelSpec(
                output=env.get("MODEL_OUTPUT") or "logits",  # type: ignore[arg-type]
                mean=_floats("MODEL_MEAN", env.get("MODEL_MEAN"), IMAGENET_MEAN),
                std=_floats("MODEL_STD", env.get("MODEL_STD"), IMAGENET_STD),
                input_size=_positive_int("MODEL_INPUT_SIZE", env.get("MODEL_INPUT_SIZE"), None),
            ),
        )

    @property
    def name(self) -> str:
        """A short label for logs, metrics and output metadata."""
        if self.path is not None:
            return self.path.name
        return f"{self.repo}/{self.file}@{self.revision}"


@dataclass(frozen=True)
class ImageLimits:
    """Limits checked before an image is fully decoded."""

    max_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    max_frames: int = DEFAULT_MAX_INPUT_FRAMES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ImageLimits:
        env = os.environ if environ is None else environ
        return cls(
            max_bytes=_positive_int("MAX_INPUT_BYTES", env.get("MAX_INPUT_BYTES"), DEFAULT_MAX_INPUT_BYTES) or 0,
            max_pixels=_positive_int("MAX_INPUT_PIXELS", env.get("MAX_INPUT_PIXELS"), DEFAULT_MAX_INPUT_PIXELS) or 0,
            max_frames=_positive_int("MAX_INPUT_FRAMES", env.get("MAX_INPUT_FRAMES"), DEFAULT_MAX_INPUT_FRAMES) or 0,
        )


OUTPUT_KINDS = ("cutout", "mask")
