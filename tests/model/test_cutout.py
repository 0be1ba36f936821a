"""Cutouts a professional would accept, through `remove()` with test-made graphs.

A "probability = red / 255" graph gives a mask that follows the picture's red channel, so the test
picture decides where the cutout is transparent, partial and opaque.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from handler.core.image.decode import load_picture
from handler.core.image.encode import encode
from handler.core.image.formats import OutputFormat
from handler.core.model.session import BackgroundModel
from handler.core.model.settings import ModelSpec
from handler.local.background import mask, remove, segment
from tests import graphs
from tests.composites import changed_edge_pixels
from tests.graphs import GraphModel

SIZE = (120, 80)
CLEAR_COLUMNS = 40  # red is 0 here: the mask is exactly 0


@pytest.fixture(scope="module")
def red_is_alpha(graph_model: GraphModel) -> BackgroundModel:
    return graph_model(graphs.channel_affine(0, 1.0, 0.0), ModelSpec(output="probabilities"))


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """Red 0 on the left third, then a ramp 30..255; green and blue are noise, never 0."""
    width, height = SIZE
    rng = np.random.default_rng(11)
    pixels = rng.integers(40, 256, size=(height, width, 3), dtype=np.uint8)
    pixels[:, :CLEAR_COLUMNS, 0] = 0
    pixels[:, CLEAR_COLUMNS:, 0] = np.linspace(30, 255, width - CLEAR_COLUMNS).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def jpeg_with_profile(image: Image.Image, profile: bytes) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, icc_profile=profile)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_cutout_has_straight_alpha_and_zeroed_transparent_rgb(
    red_is_alpha: BackgroundModel, photo: Image.Image
) -> None:
    # WHEN cutting out without edge colour refinement (which changes partial pixels on purpose)
    cutout = remove(photo, model=red_is_alpha, refine=False)

    # THEN its alpha is the mask, with clear, partial and opaque pixels
    rgba = np.asarray(cutout)
    alpha = rgba[..., 3]
    source = np.asarray(photo)
    assert cutout.mode == "RGBA" and cutout.size == SIZE
    np.testing.assert_array_equal(alpha, np.asarray(mask(photo, model=red_is_alpha)))
    assert (alpha == 0).any() and ((alpha > 0) & (alpha < 200)).any() and (alpha >= 250).any()
    # AND visible pixels keep the input's colour exactly (premultiplied ones would be darker)
    np.testing.assert_array_equal(rgba[alpha > 0, :3], source[alpha > 0])
    # AND fully transparent pixels carry no colour
    assert not rgba[alpha == 0, :3].any()
    assert (alpha[:, 5 : CLEAR_COLUMNS - 5] == 0).all()


@pytest.mark.parametrize(("logit", "mask_grey"), [(12.0, 255), (0.0, 128)])
def test_input_alpha_is_respected(graph_model: GraphModel, logit: float, mask_grey: int) -> None:
    # GIVEN an RGBA input: transparent left third, half-transparent middle, opaque right
    rgba = np.zeros((30, 60, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 150, 100)
    rgba[:, 20:40, 3] = 128
    rgba[:, 40:, 3] = 255
    model = graph_model(graphs.constant(logit))
    assert np.unique(np.asarray(segment(load_picture(Image.new("RGB", (60, 30))), model))).tolist() == [mask_grey]

    # WHEN cut out with a model that sees the same subject everywhere
    cutout = np.asarray(remove(Image.fromarray(rgba, "RGBA"), model=model))

    # THEN the cutout's alpha is the product of the input's alpha and the mask
    expected = np.round(rgba[..., 3].astype(np.float64) * mask_grey / 255.0)
    assert np.abs(cutout[..., 3] - expected).max() <= 1
    assert not cutout[:, :20].any()  # the input's transparent region stays transparent, colourless


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_icc_profile_is_kept_in_the_cutout_and_the_encoded_file(
    red_is_alpha: BackgroundModel, photo: Image.Image, srgb_profile: bytes, fmt: OutputFormat
) -> None:
    # GIVEN a JPEG with an embedded colour profile
    data = jpeg_with_profile(photo, srgb_profile)

    # WHEN cut out and encoded
    cutout = remove(data, model=red_is_alpha)
    encoded = encode(cutout, fmt, icc_profile=cutout.info.get("icc_profile"))

    # THEN the profile travels with the cutout and into the file
    assert cutout.info["icc_profile"] == srgb_profile
    with Image.open(io.BytesIO(encoded)) as reopened:
        assert reopened.format == fmt.upper() and reopened.mode == "RGBA"
        assert reopened.info.get("icc_profile") == srgb_profile


def test_without_an_input_profile_none_is_invented(red_is_alpha: BackgroundModel, photo: Image.Image) -> None:
    cutout = remove(photo, model=red_is_alpha)

    assert "icc_profile" not in cutout.info
    with Image.open(io.BytesIO(encode(cutout, "png"))) as reopened:
        assert "icc_profile" not in reopened.info


def test_cutout_edges_are_refined_by_default_and_the_callers_image_is_left_alone(
    red_is_alpha: BackgroundModel, photo: Image.Image
) -> None:
    before = photo.tobytes()

    refined = remove(photo, model=red_is_alpha)
    plain = remove(photo, model=red_is_alpha, refine=False)

    # THEN only the default changes partial pixels' colour; the alpha is the same either way
    assert changed_edge_pixels(photo, refined) > 0
    assert changed_edge_pixels(photo, plain) == 0
    assert refined.getchannel("A").tobytes() == plain.getchannel("A").tobytes()
    # AND the caller's PIL image was not refined in place
    assert photo.tobytes() == before


def test_a_missing_file_is_the_os_error_not_invalid_image(u2netp: BackgroundModel, tmp_path: Path) -> None:
    # A Python caller's typo is a FileNotFoundError, as from open(): not a claim about image data.
    with pytest.raises(FileNotFoundError):
        remove(tmp_path / "missing.jpg", model=u2netp)
    with pytest.raises(FileNotFoundError):
        mask(str(tmp_path / "missing.jpg"), model=u2netp)
