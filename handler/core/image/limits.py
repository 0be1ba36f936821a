"""The input limits: what an upload may weigh before it is decoded.

Read once from the environment into a frozen object; the model's settings are
handler.core.model.settings, the function's own (outputs, S3) handler.aws.settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from handler.core.env import Environment

# 100 MB covers any camera JPEG; 64 MP covers phones' 48/50 MP modes while keeping a full-resolution
# RGBA cutout (4 bytes/pixel) far below Lambda's memory.
DEFAULT_MAX_INPUT_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_INPUT_PIXELS = 64_000_000
# Only the first frame is ever decoded, but GIF and TIFF declare no frame count: counting means
# walking the file (~2 µs a GIF frame, so a 100 MB GIF of tiny frames would take seconds). The walk
# stops at this bound, and a file past it is an animation or a document rather than a photo.
DEFAULT_MAX_INPUT_FRAMES = 1000


@dataclass(frozen=True)
class ImageLimits:
    """Limits checked before an image is fully decoded."""

    max_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    max_frames: int = DEFAULT_MAX_INPUT_FRAMES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ImageLimits:
        env = Environment(environ)
        return cls(
            max_bytes=env.positive_int("MAX_INPUT_BYTES", DEFAULT_MAX_INPUT_BYTES),
            max_pixels=env.positive_int("MAX_INPUT_PIXELS", DEFAULT_MAX_INPUT_PIXELS),
            max_frames=env.positive_int("MAX_INPUT_FRAMES", DEFAULT_MAX_INPUT_FRAMES),
        )
