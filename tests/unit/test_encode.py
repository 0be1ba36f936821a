"""`handler.core.image.encode.encode`: the output formats, lossless where promised, profiles where they fit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from handler.core.errors import UnsupportedMediaType
from handler.core.image.encode import encode
from handler.core.image.formats import FORMATS, OutputFormat, format_named


@pytest.fixture
def cutout() -> Image.Image:
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, size=(24, 32, 4), dtype=np.uint8)
    rgba[:, :8] = 0  # a transparent, colourless strip
    return Image.fromarray(rgba, "RGBA")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_png_is_lossless_rgba(cutout: Image.Image) -> None:
    reopened = decode(encode(cutout, "png"))

    assert reopened.format == "PNG" and reopened.mode == "RGBA"
    assert reopened.tobytes() == cutout.tobytes()


def test_webp_keeps_alpha_exactly(cutout: Image.Image) -> None:
    # alpha_quality=100: the mask must survive lossy WebP unchanged, only RGB may drift
    reopened = decode(encode(cutout, "webp"))

    assert reopened.format == "WEBP" and reopened.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(reopened)[..., 3], np.asarray(cutout)[..., 3])


@pytest.mark.parametrize(("fmt", "tolerance"), [("png", 0), ("webp", 4), ("jpeg", 4)])
def test_masks_encode_as_grey_in_every_format(fmt: OutputFormat, tolerance: int) -> None:
    grey = Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (4, 1)), "L")

    reopened = decode(encode(grey, fmt))

    # WebP has no single-band mode: a grey mask comes back as RGB with equal channels
    assert reopened.format == fmt.upper() and reopened.mode == ("RGB" if fmt == "webp" else "L")
    values = np.asarray(reopened, dtype=np.int16).reshape(grey.height, grey.width, -1)
    assert np.ptp(values, axis=2).max() <= 1
    assert np.abs(values[..., 0] - np.asarray(grey)).max() <= tolerance


def test_jpeg_refuses_transparency(cutout: Image.Image) -> None:
    with pytest.raises(UnsupportedMediaType, match="background colour"):
        encode(cutout, "jpeg")


def test_unknown_format_is_unsupported(cutout: Image.Image) -> None:
    with pytest.raises(UnsupportedMediaType, match="gif"):
        encode(cutout, "gif")  # type: ignore[arg-type]


def test_an_rgb_profile_is_not_attached_to_a_grey_mask() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    reopened = decode(encode(Image.new("L", (4, 4), 200), "png", icc_profile=profile))

    assert "icc_profile" not in reopened.info


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_is_served_as_what_it_encodes(fmt: OutputFormat) -> None:
    # GIVEN an image encoded in the format WHEN a decoder reads the bytes back
    data = encode(Image.new("RGB", (4, 4), (10, 20, 30)), fmt)
    reopened = Image.open(io.BytesIO(data))

    # THEN the content type and extension outputs get name exactly that format
    assert reopened.get_format_mimetype() == FORMATS[fmt].content_type
    assert format_named(FORMATS[fmt].extension) == fmt


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_format_is_transparent_exactly_when_a_cutout_keeps_its_alpha_in_it(
    cutout: Image.Image, fmt: OutputFormat
) -> None:
    try:
        kept_alpha = decode(encode(cutout, fmt)).mode == "RGBA"
    except UnsupportedMediaType:
        kept_alpha = False

    assert FORMATS[fmt].transparent == kept_alpha
