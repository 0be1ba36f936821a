"""Cutout composition and the subject's bounding box, on hand-made masks (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from handler.core.image import compose
from handler.core.image.compose import FOREGROUND_THRESHOLD, Box, compose_cutout, foreground_box
from handler.core.image.decode import Picture


def grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8), "L")


@pytest.fixture
def photo() -> Image.Image:
    """A 40x30 RGB picture with no black pixel, so zeroed RGB is always visible."""
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(30, 256, size=(30, 40, 3), dtype=np.uint8), "RGB")


@pytest.fixture
def ramp_alpha() -> Image.Image:
    """Alpha 0 on the left quarter, then a ramp 1..255 with every level between."""
    alpha = np.zeros((30, 40), dtype=np.uint8)
    alpha[:, 10:] = np.linspace(1, 255, 30, dtype=np.uint8)
    return grey(alpha)


def test_cutout_alpha_is_straight_and_transparent_rgb_is_zeroed(photo: Image.Image, ramp_alpha: Image.Image) -> None:
    # GIVEN a picture and a mask with fully transparent, partial and opaque pixels
    # WHEN composed
    cutout = compose_cutout(Picture(rgb=photo, alpha=None, icc_profile=None), ramp_alpha)

    # THEN alpha is the mask, RGB is the input's own colour wherever it is visible (straight alpha:
    # a premultiplied RGB would be darker at alpha < 255) and zero where alpha is exactly 0
    pixels = np.asarray(cutout)
    source = np.asarray(photo)
    alpha = np.asarray(ramp_alpha)
    assert cutout.mode == "RGBA" and cutout.size == photo.size
    np.testing.assert_array_equal(pixels[..., 3], alpha)
    np.testing.assert_array_equal(pixels[alpha > 0, :3], source[alpha > 0])
    assert not pixels[alpha == 0, :3].any()


def test_compose_does_not_modify_the_input(photo: Image.Image, ramp_alpha: Image.Image) -> None:
    before = photo.tobytes()

    compose_cutout(Picture(rgb=photo, alpha=None, icc_profile=None), ramp_alpha)

    assert photo.mode == "RGB" and photo.tobytes() == before


def test_foreground_box_bounds_pixels_at_or_above_the_threshold() -> None:
    # GIVEN a mask with a solid subject, a halo just below the threshold, and one pixel at it
    alpha = np.zeros((60, 80), dtype=np.uint8)
    alpha[20:50, 10:30] = 255
    alpha[5:58, 2:70] = np.maximum(alpha[5:58, 2:70], FOREGROUND_THRESHOLD - 1)
    alpha[55, 40] = FOREGROUND_THRESHOLD

    # WHEN boxed THEN the halo is ignored and the threshold pixel counts
    assert foreground_box(grey(alpha)) == Box(left=10, top=20, width=31, height=36)


@pytest.mark.parametrize(("threshold", "box"), [(200, Box(3, 4, 2, 1)), (50, Box(0, 0, 8, 6))])
def test_foreground_box_threshold_is_a_parameter(threshold: int, box: Box) -> None:
    alpha = np.full((6, 8), 100, dtype=np.uint8)
    alpha[4, 3:5] = 220

    assert foreground_box(grey(alpha), threshold) == box


@pytest.mark.parametrize(("top", "bottom"), [(0, 60), (7, 8), (9, 10), (10, 11), (13, 41), (30, 40), (59, 60)])
def test_foreground_box_is_the_same_when_looked_for_band_by_band(
    monkeypatch: pytest.MonkeyPatch, top: int, bottom: int
) -> None:
    # GIVEN a subject whose rows start and end inside, at or across bands of 10 rows, two scattered
    # pixels beside it, and a halo just below the threshold everywhere
    monkeypatch.setattr(compose, "BOX_BAND_PIXELS", 10 * 80)
    alpha = np.full((60, 80), FOREGROUND_THRESHOLD - 1, dtype=np.uint8)
    alpha[top:bottom, 30:50] = 255
    alpha[(top + bottom) // 2, [12, 71]] = FOREGROUND_THRESHOLD

    # WHEN boxed THEN the box is the one of the whole mask at once
    rows, columns = np.nonzero(alpha >= FOREGROUND_THRESHOLD)
    expected = Box(
        left=int(columns.min()),
        top=int(rows.min()),
        width=int(columns.max() - columns.min() + 1),
        height=int(rows.max() - rows.min() + 1),
    )
    assert foreground_box(grey(alpha)) == expected


@pytest.mark.parametrize("value", [0, FOREGROUND_THRESHOLD - 1])
def test_foreground_box_is_none_without_a_subject(value: int) -> None:
    assert foreground_box(grey(np.full((10, 10), value))) is None
