"""The model's probabilities enlarged to the photo's size as an 8-bit mask (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from handler.core import cpu
from handler.core.image.compose import to_mask


def bilinear(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Independent float64 reference: Pillow's bilinear enlargement samples the source at
    (x + 0.5) * source / target - 0.5, interpolating linearly and clamping at the edges."""

    def along(axis_values: np.ndarray, target: int, axis: int) -> np.ndarray:
        source = axis_values.shape[axis]
        position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, source - 1)
        weight = position - low
        shape = [1, 1]
        shape[axis] = target
        return np.take(axis_values, low, axis) * (1 - weight.reshape(shape)) + np.take(
            axis_values, high, axis
        ) * weight.reshape(shape)

    width, height = size
    return along(along(values.astype(np.float64), height, 0), width, 1)


@pytest.mark.parametrize(
    "size",
    [
        (1500, 1100),  # 1.7 MP: one resize
        (2600, 1700),  # 4.4 MP: column strips on threads
        (2049, 2051),  # odd widths: strips whose edges fall between source pixels
    ],
)
def test_the_mask_is_the_bilinear_enlargement_rounded(size: tuple[int, int]) -> None:
    # GIVEN probabilities with smooth ramps and noise, at a model's 1024x1024
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 1, 1024, dtype=np.float32)
    probabilities = np.clip(np.outer(ramp, ramp[::-1]) + rng.normal(0, 0.05, (1024, 1024)), 0, 1).astype(np.float32)

    # WHEN they are enlarged to the photo's size
    mask = np.asarray(to_mask(probabilities, size)).astype(int)

    # THEN every level is the rounded enlargement, give or take the one level that float rounding
    # decides at a pixel lying on a rounding boundary (rare: under 1% of the pixels)
    expected = np.floor(bilinear(probabilities, size) * 255 + 0.5).astype(int)
    assert mask.shape == expected.shape
    difference = np.abs(mask - expected)
    assert difference.max() <= 1
    assert np.count_nonzero(difference) < 0.01 * difference.size


def test_a_large_mask_is_the_same_whatever_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    probabilities = np.random.default_rng(5).random((1024, 1024), dtype=np.float32)
    masks = []
    for cpus in (1, 2, 6):
        monkeypatch.setattr(cpu, "available_cpus", lambda cpus=cpus: cpus)
        masks.append(np.asarray(to_mask(probabilities, (2600, 1700))))
    assert all(np.array_equal(masks[0], other) for other in masks[1:])
