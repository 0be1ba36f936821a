"""What the DeformConv rewrite finds: a decomposed chain that matched, and the layer it stands for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ChainMismatch(Exception):
    """This chain is not an exact decomposed deformable convolution."""


@dataclass(frozen=True)
class DeformLayer:
    """One rewritten convolution, as the chain's constants say it is."""

    node: str
    channels: int
    out_channels: int | None
    input_hw: tuple[int, int]
    output_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int]
    group: int
    offset_group: int
    batch: int
    mask: bool
    bias: bool


@dataclass
class ChainMatch:
    """A matched chain: the nodes it spans and what its DeformConv takes."""

    nodes: set[int]
    last: int  # the node whose output the DeformConv takes over
    x: str
    w: str
    offset: str
    mask: str | None
    bias: np.ndarray | None
    layer: DeformLayer
