"""Running the command line as users do, and the images it is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from PIL import Image

from tests import graphs

ROOT = Path(__file__).resolve().parents[2]
INPUT_SIZE = 64
# Generous: a safety net against a hung child, not a timing assertion.
CHILD_TIMEOUT_S = 300


def red_graph() -> onnx.ModelProto:
    return graphs.channel_affine(0, 10.0, -5.0, size=None)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


Cli = Callable[..., Result]


def save(image: Image.Image, path: Path, **params: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **params)
    return path


def photo(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")


def opened(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def child_env(model_path: Path, **environ: str) -> dict[str, str]:
    """The environment the `cli` fixture runs the command line in: the test graph, offline, nothing of the
    developer's MODEL_*/HF_* settings; keyword arguments add variables."""
    import os

    base = {name: value for name, value in os.environ.items() if not name.startswith(("MODEL_", "MAX_INPUT_", "HF_"))}
    return {
        **base,
        "MODEL_PATH": str(model_path),
        "MODEL_INPUT_SIZE": str(INPUT_SIZE),
        "MODEL_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(ROOT),
        **environ,
    }
