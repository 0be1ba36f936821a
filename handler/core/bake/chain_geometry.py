"""The geometry a decomposed chain's sampling grid implies: stride, dilation and padding.

The grid holds `i*stride + k*dilation + a` in a copy of the input padded by `P >= 1` on each side,
so a sample lands at input coordinate `grid + offset - P`: a deformable convolution with padding
`P - a`. The first entries give the numbers; then every entry of the grid is checked against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handler.core.bake.chain import ChainMismatch


@dataclass(frozen=True)
class Geometry:
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int]


def grid_geometry(
    grid: np.ndarray, kh: int, kw: int, out_h: int, out_w: int, height: int, width: int, border_h: int, border_w: int
) -> Geometry:
    """Stride, dilation and padding from the grid's first entries, then the whole grid checked."""
    g = grid[0, 0]  # [K, 2, h, w]
    base_h = _integral(g[0, 0, 0, 0], "row origin", 0)
    base_w = _integral(g[0, 1, 0, 0], "column origin", 0)
    stride_h = _integral(g[0, 0, 1, 0] - base_h, "row stride", 1) if out_h > 1 else None
    stride_w = _integral(g[0, 1, 0, 1] - base_w, "column stride", 1) if out_w > 1 else None
    dilation_h = _integral(g[kw, 0, 0, 0] - base_h, "row dilation", 1) if kh > 1 else 1
    dilation_w = _integral(g[1, 1, 0, 0] - base_w, "column dilation", 1) if kw > 1 else 1
    pad_h, pad_w = border_h - base_h, border_w - base_w
    if pad_h < 0 or pad_w < 0:
        raise ChainMismatch("the grid starts beyond the padded border")
    # One output row (column) does not show the stride; any stride that yields one output is the
    # same convolution, so take the one that makes the output-size formula give exactly 1.
    span_h = height + 2 * pad_h - dilation_h * (kh - 1) - 1
    span_w = width + 2 * pad_w - dilation_w * (kw - 1) - 1
    if stride_h is None:
        stride_h = max(1, span_h + 1)
    if stride_w is None:
        stride_w = max(1, span_w + 1)
    if span_h < 0 or span_w < 0 or span_h // stride_h + 1 != out_h or span_w // stride_w + 1 != out_w:
        raise ChainMismatch("the output size is not the one this geometry gives")
    ki, kj = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    oi, oj = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    rows = base_h + oi[None] * stride_h + (ki.reshape(-1) * dilation_h)[:, None, None]
    cols = base_w + oj[None] * stride_w + (kj.reshape(-1) * dilation_w)[:, None, None]
    expected = np.stack([rows, cols], axis=1).astype(np.float32)
    if not np.array_equal(g, expected):
        raise ChainMismatch("the sampling grid is not the one this geometry gives")
    return Geometry(stride=(stride_h, stride_w), dilation=(dilation_h, dilation_w), padding=(pad_h, pad_w))


def _integral(value: float, what: str, minimum: int) -> int:
    if not float(value).is_integer() or value < minimum:
        raise ChainMismatch(f"the grid's {what} is not a whole number >= {minimum}")
    return int(value)
