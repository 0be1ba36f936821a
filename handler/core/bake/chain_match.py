"""Matching one decomposed deformable convolution, backwards from its final `Conv`.

The chain, as `deform-conv2d-onnx-exporter` spells it (read from the end):

    Add(bias) <- Conv(stride = kernel) <- Reshape/Transpose/Reshape (the kh x kw tiles)
      <- [Mul(mask)] <- Sum of four corners <- Mul(bilinear weight, GatherND(padded input, index))

with each corner's index and weight derived from `p = grid + Reshape(offset)`: floored, clipped
to the padded extent, split into its y and x halves. Every node is claimed as it is checked; any
type, attribute, shape or constant that differs from what the exporter emits raises
ChainMismatch, and so does an intermediate the rest of the graph also reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import onnx

from handler.core.bake.chain import ChainMatch, ChainMismatch, DeformLayer
from handler.core.bake.chain_corners import Corner, corner
from handler.core.bake.chain_geometry import grid_geometry
from handler.core.bake.chain_walk import Walk, attributes, operands
from handler.core.bake.onnx_index import DEFAULT_DOMAINS, GraphIndex


def match_chain(graph: GraphIndex, conv_index: int) -> ChainMatch:
    """The chain ending in the Conv at `conv_index`, or ChainMismatch saying where it differs."""
    walk = Walk(graph)
    conv = graph.node(conv_index)
    walk.nodes.add(conv_index)
    kh, kw, group = _conv_kernel(conv)
    tiles = _tiles(walk, conv, kh, kw)
    sampled, mask, mask_shape = _modulation(walk, tiles.samples)
    offsets = _offsets(walk, sampled, tiles, kh * kw, group, mask_shape)
    padded = _padded_input(walk, offsets, tiles)
    grid = graph.const(offsets.grid)
    if grid is None or grid.dtype != np.float32 or grid.shape != (1, 1, kh * kw, 2, tiles.out_h, tiles.out_w):
        raise ChainMismatch("the sampling grid is not a float32 constant of the expected shape")
    geometry = grid_geometry(
        grid, kh, kw, tiles.out_h, tiles.out_w, padded.height, padded.width, padded.border_h, padded.border_w
    )
    w, out_channels = _weights(graph, conv, tiles.channels, group, kh, kw)
    last, bias = _bias(walk, conv_index, out_channels)
    _check_closed(graph, walk.nodes, last)
    layer = DeformLayer(
        node=conv.name or conv.output[0],
        channels=tiles.channels,
        out_channels=out_channels,
        input_hw=(padded.height, padded.width),
        output_hw=(tiles.out_h, tiles.out_w),
        kernel=(kh, kw),
        stride=geometry.stride,
        dilation=geometry.dilation,
        padding=geometry.padding,
        group=group,
        offset_group=offsets.group,
        batch=tiles.batch,
        mask=mask is not None,
        bias=bias is not None,
    )
    return ChainMatch(
        nodes=walk.nodes, last=last, x=padded.x, w=w, offset=offsets.offset, mask=mask, bias=bias, layer=layer
    )


# -- the Conv and the tiles it reads ---------------------------------------------------------------


def _conv_kernel(conv: onnx.NodeProto) -> tuple[int, int, int]:
    """(kh, kw, group) of the final Conv, which must be kernel-sized, kernel-strided and unpadded."""
    if len(conv.input) != 2:
        # The exporter never gives this Conv a bias input; an optimiser that folded one in did.
        raise ChainMismatch("the Conv has a bias input")
    defaults = {"kernel_shape": None, "strides": None, "pads": [0, 0, 0, 0], "dilations": [1, 1]}
    attrs = attributes(conv, {**defaults, "group": 1, "auto_pad": b"NOTSET"})
    kernel = cast(list[int], attrs["kernel_shape"])
    if (
        len(kernel) != 2
        or attrs["strides"] != kernel
        or attrs["pads"] != [0, 0, 0, 0]
        or attrs["dilations"] != [1, 1]
        or attrs["auto_pad"] != b"NOTSET"
    ):
        raise ChainMismatch("the Conv is not a kernel-sized, kernel-strided, unpadded one")
    return kernel[0], kernel[1], cast(int, attrs["group"])


@dataclass(frozen=True)
class _Tiles:
    batch: int
    channels: int
    out_h: int
    out_w: int
    samples: str  # the [b, C, kh, kw, h, w] samples the tiles are laid out from


def _tiles(walk: Walk, conv: onnx.NodeProto, kh: int, kw: int) -> _Tiles:
    """The tile layout: [b, C, h*kh, w*kw] <- Transpose <- [b, C, kh, kw, h, w]."""
    tiles = walk.take(conv.input[0], "Reshape")
    tile_shape = walk.ints(tiles.input[1], "the tile reshape's shape")
    if len(tile_shape) != 4:
        raise ChainMismatch("the tile reshape is not 4-D")
    batch, channels = tile_shape[:2]
    layout = walk.transpose(tiles.input[0], [0, 1, 4, 2, 5, 3], "the tile transpose")
    split = walk.take(layout.input[0], "Reshape")
    split_shape = walk.ints(split.input[1], "the kernel split's shape")
    if len(split_shape) != 6 or split_shape[:4] != [batch, channels, kh, kw]:
        raise ChainMismatch("the kernel split's shape does not match the Conv")
    out_h, out_w = split_shape[4:]
    if tile_shape[2:] != [out_h * kh, out_w * kw] or min(batch, channels, out_h, out_w) < 1:
        raise ChainMismatch("the tile reshape's shape does not match the kernel split")
    return _Tiles(batch, channels, out_h, out_w, split.input[0])


def _modulation(walk: Walk, samples: str) -> tuple[str, str | None, list[int] | None]:
    """The optional mask, Mul(samples, Reshape(mask, [b, G, 1, K, h, w])): (the corner sum, the
    mask tensor, its reshape's shape), or the samples themselves when there is no mask."""
    if walk.producer_type(samples) != "Mul":
        return samples, None, None
    modulation = walk.take(samples, "Mul")
    summed, mask_view = operands(walk, modulation, "Sum")
    mask_reshape = walk.take(mask_view, "Reshape")
    mask_shape = walk.ints(mask_reshape.input[1], "the mask reshape's shape")
    attributes(mask_reshape, {"allowzero": 0})
    return summed, mask_reshape.input[0], mask_shape


# -- the offsets and the four corners -----------------------------------------------------------------


@dataclass(frozen=True)
class _Offsets:
    offset: str  # the offset input, before its reshape
    grid: str  # the constant sampling grid the offsets are added to
    group: int  # offset groups
    per_group: int  # channels per offset group
    corners: list[Corner]


def _offsets(
    walk: Walk, summed: str, tiles: _Tiles, k_area: int, conv_group: int, mask_shape: list[int] | None
) -> _Offsets:
    """The four corners summed, and the positions they sample: p = GRID + Reshape(offset, [b, G, K, 2, h, w]);
    the mask's shape (when there is one) checked against the offsets'."""
    total = walk.take(summed, "Sum")
    if len(total.input) != 4:
        raise ChainMismatch("the corner Sum does not have 4 terms")
    corners = [corner(walk, term) for term in total.input]
    positions = {c.positions for c in corners}
    if len(positions) != 1 or len({c.padded for c in corners}) != 1:
        raise ChainMismatch("the corners do not share one sampling grid and one padded input")
    if sorted(c.name for c in corners) != ["bl", "br", "tl", "tr"]:
        raise ChainMismatch("the corners are not the four of a bilinear sample")
    (position,) = positions
    offset_view, grid = operands(walk, walk.take(position, "Add"), "Reshape")
    offset_reshape = walk.reshape(offset_view)
    offset_shape = walk.ints(offset_reshape.input[1], "the offset reshape's shape")
    if (
        len(offset_shape) != 6
        or offset_shape[0] != tiles.batch
        or offset_shape[2:] != [k_area, 2, tiles.out_h, tiles.out_w]
    ):
        raise ChainMismatch("the offset reshape's shape does not match the Conv")
    group = offset_shape[1]
    if group < 1 or tiles.channels % group or tiles.channels % conv_group:
        raise ChainMismatch("the channels do not divide into the groups")
    per_group = tiles.channels // group
    if mask_shape is not None and mask_shape != [tiles.batch, group, 1, k_area, tiles.out_h, tiles.out_w]:
        raise ChainMismatch("the mask reshape's shape does not match the offsets")
    for c in corners:
        c.check(walk, tiles.batch, group, per_group, k_area, tiles.out_h, tiles.out_w)
    if any(c.floor != corners[0].floor for c in corners) or walk.graph.node(corners[0].floor).input[0] != position:
        raise ChainMismatch("the corners' indices and weights do not come from the same positions")
    return _Offsets(offset_reshape.input[0], grid, group, per_group, corners)


# -- the padded input, the weights and the bias ---------------------------------------------------


@dataclass(frozen=True)
class _PaddedInput:
    x: str  # the DeformConv's input, before the Pad
    height: int
    width: int
    border_h: int  # the Pad's rows on each side
    border_w: int


def _padded_input(walk: Walk, offsets: _Offsets, tiles: _Tiles) -> _PaddedInput:
    """The input the corners read: Pad(X) -> Reshape [b, G, C/G, H + 2P, W + 2P] (through Transposes)."""
    padded_reshape = walk.reshape(offsets.corners[0].padded)
    padded_shape = walk.ints(padded_reshape.input[1], "the input reshape's shape")
    if len(padded_shape) != 5 or padded_shape[:3] != [tiles.batch, offsets.group, offsets.per_group]:
        raise ChainMismatch("the input reshape's shape does not match the offsets")
    in_h, in_w = padded_shape[3:]
    pad = walk.take(padded_reshape.input[0], "Pad")
    if attributes(pad, {"mode": b"constant"})["mode"] != b"constant":
        raise ChainMismatch("the Pad is not a constant pad")
    if len(pad.input) > 2 and pad.input[2]:
        walk.scalar(pad.input[2], np.float32, 0.0, "the pad value")
    if len(pad.input) > 3 and pad.input[3]:
        raise ChainMismatch("the Pad names its axes")
    pad_amounts = walk.ints(pad.input[1], "the pad amounts")
    if len(pad_amounts) != 8:
        raise ChainMismatch("the Pad is not a 4-D pad")
    border_h, border_w = pad_amounts[2], pad_amounts[3]
    if pad_amounts != [0, 0, border_h, border_w, 0, 0, border_h, border_w] or min(border_h, border_w) < 1:
        raise ChainMismatch("the Pad is not a symmetric spatial pad of at least 1")
    height, width = in_h - 2 * border_h, in_w - 2 * border_w
    x = pad.input[0]
    known = walk.graph.shapes.get(x)
    if known is not None and known != (tiles.batch, tiles.channels, height, width):
        raise ChainMismatch(f"the input's declared shape {known} is not the one the chain implies")
    for each in offsets.corners:
        each.check_bounds(walk, in_h, in_w)
    return _PaddedInput(x, height, width, border_h, border_w)


def _weights(
    graph: GraphIndex, conv: onnx.NodeProto, channels: int, group: int, kh: int, kw: int
) -> tuple[str, int | None]:
    """The Conv's weight tensor and its output channels (None when its shape is not declared)."""
    w = conv.input[1]
    w_shape = graph.shapes.get(w) or (tuple(graph.initializers[w].dims) if w in graph.initializers else None)
    if w_shape is not None and (len(w_shape) != 4 or w_shape[1:] != (channels // group, kh, kw) or w_shape[0] % group):
        raise ChainMismatch(f"the weight's shape {w_shape} does not fit the Conv")
    return w, None if w_shape is None else int(w_shape[0])


def _bias(walk: Walk, conv_index: int, out_channels: int | None) -> tuple[int, np.ndarray | None]:
    """The bias Add the exporter always emits (zeros when torch had no bias), taken into the chain
    when it adds a constant per output channel: (the chain's last node, the bias)."""
    graph = walk.graph
    output = graph.node(conv_index).output[0]
    uses = graph.consumers.get(output, [])
    if len(uses) != 1 or output in graph.outputs or output in graph.outer_uses or out_channels is None:
        return conv_index, None
    follower = graph.node(uses[0])
    if follower.op_type != "Add" or follower.domain not in DEFAULT_DOMAINS:
        return conv_index, None
    value = graph.const(follower.input[1] if follower.input[0] == output else follower.input[0])
    if value is None or value.dtype != np.float32 or value.shape not in ((1, out_channels, 1, 1), (out_channels, 1, 1)):
        return conv_index, None
    walk.nodes.add(uses[0])
    return uses[0], value.reshape(out_channels)


def _check_closed(graph: GraphIndex, nodes: set[int], last: int) -> None:
    """No tensor inside the chain may be used outside it: the rewrite removes them all."""
    for index in nodes:
        if index == last:
            continue
        for name in graph.node(index).output:
            if name in graph.outputs or name in graph.outer_uses:
                raise ChainMismatch(f"the chain's intermediate {name!r} is a graph output or read by a subgraph")
            outside = [i for i in graph.consumers.get(name, []) if i not in nodes]
            if outside:
                raise ChainMismatch(
                    f"the chain's intermediate {name!r} is also used by {graph.node(outside[0]).op_type}"
                )
