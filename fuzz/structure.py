"""Fuzz target: files built near their decoder's structural bounds → `load_picture`.

Seeds are valid files just under small bounds (tests/hostile.py: JPEG scans, PNG and WebP
chunks, GIF blocks, TIFF tags and strips, RLE BMP pixels, HEIF items); the fuzzer mutates them.
Anything raised but a `BackgroundRemovalError` is a finding, and so is an input that passes the
walks yet takes more than FUZZ_INPUT_SECONDS (default 5) to decode: a unit the walks do not count.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace

import atheris
from common import run  # also puts the repository on sys.path

with atheris.instrument_imports(include=["handler"]):
    from handler.core.errors import BackgroundRemovalError
    from handler.core.image.decode import load_picture
    from handler.core.image.limits import ImageLimits, StructureLimits

# Small bounds, so that a seed near them is a small file and a mutation can cross them.
BOUNDS = replace(
    StructureLimits(),
    jpeg_scans=12,
    segments=64,
    gif_blocks=256,
    tiff_tags=64,
    tiff_strips=64,
    bmp_rle_pixels=4096,
    heif_items=16,
)
LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=4_000_000, max_frames=100, structure=BOUNDS)
warnings.simplefilter("ignore")


def test_one_input(data: bytes) -> None:
    try:
        load_picture(data, LIMITS)
    except BackgroundRemovalError:
        return


def seeds() -> list[bytes]:
    from tests import hostile

    return [
        hostile.jpeg_with_scans(12, size=(256, 256)),
        hostile.jpeg_with_segments(60),
        hostile.png_with_chunks(60, size=(64, 64)),
        hostile.webp_with_chunks(60),
        hostile.gif_with_blocks(250),
        hostile.tiff_with_strips(60),
        hostile.tiff_with_tags(60),
        hostile.bmp_rle8(64, 64),
        hostile.avif_with_items(16),
    ]


if __name__ == "__main__":
    run("structure", test_one_input, seeds(), timeout=int(os.environ.get("FUZZ_INPUT_SECONDS", "5")))
