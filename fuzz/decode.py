"""Fuzz target: bytes → `load_picture` with the service's limits.

Any outcome but a decoded picture or a `BackgroundRemovalError` (the 4xx of the API, the counted
failure of a job) is a finding. Run with `make fuzz` (FUZZ_SECONDS, FUZZ_TARGETS).
"""

from __future__ import annotations

import warnings

import atheris
from common import run  # also puts the repository on sys.path

with atheris.instrument_imports(include=["PIL", "handler"]):
    from PIL import Image

    from handler.core.errors import BackgroundRemovalError
    from handler.core.image.decode import load_picture
    from handler.core.image.limits import ImageLimits

# Lambda-sized limits, smaller than the defaults so that one input cannot take seconds to decode.
LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=4_000_000, max_frames=100)
warnings.simplefilter("ignore")


def test_one_input(data: bytes) -> None:
    try:
        picture = load_picture(data, LIMITS)
    except BackgroundRemovalError:
        return
    assert picture.rgb.mode == "RGB" and picture.rgb.size == picture.size
    assert picture.alpha is None or (picture.alpha.mode == "L" and picture.alpha.size == picture.size)
    assert isinstance(picture.rgb, Image.Image)


def seeds() -> list[bytes]:
    from tests.corpus import SAMPLES, made_images

    small = [path.read_bytes() for path in sorted(SAMPLES.glob("*.jpg"))]
    return small + list(made_images().values())


if __name__ == "__main__":
    run("decode", test_one_input, seeds())
