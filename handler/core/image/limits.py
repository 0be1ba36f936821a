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
class StructureLimits:
    """What a file may hold of the units its decoder pays for one at a time (handler.core.image.structure).

    Bytes, pixels and frames do not bound these: a 72 kB progressive JPEG that repeats one scan
    hundreds of times makes libjpeg pass over every pixel hundreds of times, and Pillow walks PNG
    chunks, GIF blocks and TIFF tags one by one in Python (~2-10 µs each; a 100 MB file holds
    millions). Each bound is well above what real files have (docs/untrusted-input.md); what a
    file at the bounds costs is measured by benchmarks/hostile_input.py.
    """

    # Scans of a JPEG: libjpeg's standard progression has 10 (18 for CMYK); a baseline JPEG 1-4.
    jpeg_scans: int = 32
    # JPEG marker segments (with the stray bytes Pillow steps over one by one before the first
    # scan), PNG chunks, WebP (RIFF) chunks. A 100 MB PNG written in libpng's 8 kB chunks has ~12,800.
    segments: int = 65_536
    # GIF blocks: extension and image-data sub-blocks, and stray bytes between them. Encoders
    # write 255-byte sub-blocks, so 100 MiB of GIF holds ~410,000.
    gif_blocks: int = 524_288
    # TIFF tags, over every image file directory (IFD) the frame count walks; real IFDs have ~10-40.
    tiff_tags: int = 65_536
    # TIFF strips or tiles, over the same IFDs; Pillow decodes an uncompressed TIFF strip by strip.
    tiff_strips: int = 65_536
    # Pixels of a run-length-encoded BMP: Pillow decodes RLE4/RLE8 in Python (~0.3 µs a pixel).
    bmp_rle_pixels: int = 4_194_304
    # Items of a HEIF/AVIF file (grid tiles, thumbnails, metadata), as libheif's own default bound.
    heif_items: int = 1000


@dataclass(frozen=True)
class ImageLimits:
    """Limits checked before an image is fully decoded."""

    max_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    max_frames: int = DEFAULT_MAX_INPUT_FRAMES
    # Fixed bounds, not settings: real files stay far below them whatever the deployment.
    structure: StructureLimits = StructureLimits()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ImageLimits:
        env = Environment(environ)
        return cls(
            max_bytes=env.positive_int("MAX_INPUT_BYTES", DEFAULT_MAX_INPUT_BYTES),
            max_pixels=env.positive_int("MAX_INPUT_PIXELS", DEFAULT_MAX_INPUT_PIXELS),
            max_frames=env.positive_int("MAX_INPUT_FRAMES", DEFAULT_MAX_INPUT_FRAMES),
        )
