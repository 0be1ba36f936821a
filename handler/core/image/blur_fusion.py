"""Blur fusion by definition: Forte & Pitié's foreground estimate at full resolution, and the box
mean it is made of.

The reference `refine_foreground` (handler.core.image.refine) approximates on reduced grids within
a request's budget: tests and benchmarks/refine.py measure it against this. `box_mean` is shared:
the grids are blurred with the same clipped-window mean, so a comparison measures the grids alone.
"""

from __future__ import annotations

import numpy as np

# Keeps the divisions defined where a window holds no foreground (or no background) at all.
EPSILON = 1e-5


def blur_fusion(image: np.ndarray, alpha: np.ndarray, coarse_box: int, fine_box: int) -> np.ndarray:
    """The estimate by definition, at full resolution: float arrays in [0, 1], HxWx3 and HxW.

    BiRefNet's `FB_blur_fusion_foreground_estimator_2`, with a box mean whose window is clipped at
    the image border (the same one the grids use, so measurements compare only the grids).
    """
    a = alpha[..., None]
    first, blurred_bg = _fusion_step(image, image, image, a, coarse_box)
    return _fusion_step(image, first, blurred_bg, a, fine_box)[0]


def _fusion_step(
    image: np.ndarray, fg: np.ndarray, bg: np.ndarray, a: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    blurred_alpha = box_mean(a, width)
    blurred_fg = box_mean(fg * a, width) / (blurred_alpha + EPSILON)
    blurred_bg = box_mean(bg * (1 - a), width) / ((1 - blurred_alpha) + EPSILON)
    estimate = blurred_fg + a * (image - a * blurred_fg - (1 - a) * blurred_bg)
    return np.clip(estimate, 0, 1), blurred_bg


def box_mean(values: np.ndarray, width: int) -> np.ndarray:
    """The mean over a width x width box around each pixel of an HxW(xC) array, clipped at the borders.

    One channel at a time: the running sums then cost a third of the memory of all three.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        return _box_mean_2d(values, width)
    means = np.empty_like(values)
    for channel in range(values.shape[2]):
        means[..., channel] = _box_mean_2d(values[..., channel], width)
    return means


def _box_mean_2d(values: np.ndarray, width: int) -> np.ndarray:
    """`box_mean` of one HxW plane: down the columns, then (on the transpose) along the rows.

    Both passes run down axis 0, whose running sums are whole-row additions (see _box_rows).
    """
    columns = _box_rows(np.ascontiguousarray(values, dtype=np.float32), width)
    return np.ascontiguousarray(_box_rows(np.ascontiguousarray(columns.T), width).T)


def _box_rows(values: np.ndarray, width: int) -> np.ndarray:
    """Box means down axis 0 of an HxW array from running sums: one subtraction per value, whatever the width.

    The running sums are added one row at a time: the same float32 additions in the same order as
    np.cumsum(axis=0) (so the same sums, bit for bit), but each row is one vectorised addition
    where np.cumsum walks value by value (~3x slower on the fine grid of a 12 MP photo).
    """
    length = values.shape[0]
    before, after = (width - 1) // 2, width // 2  # the window is [i - before, i + after]
    # sums[k] = the sum of values[0 : k - before], clamped to 0 and to the total beyond both ends.
    sums = np.empty((length + width, values.shape[1]), dtype=np.float32)
    sums[: before + 1] = 0
    sums[before + 1] = values[0]
    for row in range(1, length):
        np.add(sums[before + row], values[row], out=sums[before + 1 + row])
    sums[before + 1 + length :] = sums[before + length]
    means = sums[width : width + length] - sums[:length]
    index = np.arange(length)
    counts = np.minimum(index + after + 1, length) - np.maximum(index - before, 0)
    means /= counts.astype(np.float32)[:, None]
    return means
