"""The model's settings: where it comes from, what it expects, how its session runs.

Read once from the environment into frozen objects and validated there; the input limits are
handler.core.image.limits, the function's own settings (outputs, S3) handler.aws.settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from handler.core.cpu import available_cpus
from handler.core.env import Environment
from handler.core.errors import ConfigurationError

# What a model's graph returns: raw logits (BiRefNet) or probabilities already (U-2-Net).
ModelOutput = Literal["logits", "probabilities"]
MODEL_OUTPUTS: tuple[ModelOutput, ...] = ("logits", "probabilities")

DEFAULT_MODEL_REPO = "onnx-community/BiRefNet_lite-ONNX"
DEFAULT_MODEL_FILE = "onnx/model.onnx"
DEFAULT_MODEL_REVISION = "main"

# ImageNet statistics: BiRefNet (and U-2-Net) were trained on inputs normalised with these; the
# normalisation of a model that says nothing else.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Used only when the graph's spatial input dims are dynamic: BiRefNet was trained at 1024x1024.
DEFAULT_DYNAMIC_INPUT_SIZE = 1024


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects and returns, as set explicitly; None: the model says (handler.core.model.contract).

    A model describes itself: its graph says whether it returns logits or probabilities and its
    input size, and a baked model's manifest carries those and the normalisation it was baked
    with. A value set here overrides that; `input_size` only where the graph leaves it dynamic.
    """

    output: ModelOutput | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    input_size: int | None = None

    def __post_init__(self) -> None:
        if self.output is not None and self.output not in MODEL_OUTPUTS:
            raise ConfigurationError(f"MODEL_OUTPUT must be 'logits' or 'probabilities', got {self.output!r}")
        if self.std is not None and any(value <= 0 for value in self.std):
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
        env = Environment(environ)
        path = env.raw("MODEL_PATH")
        cache_dir = env.raw("MODEL_CACHE_DIR")
        sha256 = env.text("MODEL_SHA256").strip().lower() or None
        if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
            raise ConfigurationError(f"MODEL_SHA256 must be 64 hex digits, got {sha256!r}")
        return cls(
            path=Path(path) if path else None,
            repo=env.text("MODEL_REPO", DEFAULT_MODEL_REPO),
            file=env.text("MODEL_FILE", DEFAULT_MODEL_FILE),
            revision=env.text("MODEL_REVISION", DEFAULT_MODEL_REVISION),
            cache_dir=Path(cache_dir) if cache_dir else None,
            sha256=sha256,
            # The hub's own switch counts too, so a container built with HF_HUB_OFFLINE=1 can
            # never block a request on a download.
            offline=env.switch("MODEL_OFFLINE", False) or env.switch("HF_HUB_OFFLINE", False),
            hub_endpoint=env.raw("HF_ENDPOINT"),
            threads=env.positive_int("MODEL_THREADS", available_cpus(environ)),
            spec=ModelSpec(
                output=env.choice("MODEL_OUTPUT", MODEL_OUTPUTS, None),
                mean=_rgb(env.numbers("MODEL_MEAN", 3, None)),
                std=_rgb(env.numbers("MODEL_STD", 3, None)),
                input_size=env.positive_int("MODEL_INPUT_SIZE", None),
            ),
        )

    def naming(
        self, *, path: Path | None = None, repo: str | None = None, file: str | None = None, revision: str | None = None
    ) -> ModelSettings:
        """These settings with another model named (None: keep). Naming a hub repo, file or revision
        drops a MODEL_PATH from the environment, which would otherwise win over them."""
        if path is not None:
            return replace(self, path=path)
        if repo is None and file is None and revision is None:
            return self
        return replace(
            self,
            path=None,
            repo=repo if repo is not None else self.repo,
            file=file if file is not None else self.file,
            revision=revision if revision is not None else self.revision,
        )

    @property
    def name(self) -> str:
        """A short label for logs, metrics and output metadata."""
        if self.path is not None:
            return self.path.name
        return f"{self.repo}/{self.file}@{self.revision}"


def _rgb(values: tuple[float, ...] | None) -> tuple[float, float, float] | None:
    if values is None:
        return None
    red, green, blue = values  # Environment.numbers gave exactly three
    return red, green, blue
