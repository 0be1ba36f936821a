"""The four bilinear corners of a decomposed deformable convolution's samples.

Each is Mul(Reshape(weight), Reshape(Transpose(GatherND(padded input, index)))): the index is the
floored sampling position (plus one for the bottom or right corner) clipped to the padded input,
and the weight the matching product of the fraction p - floor(p) or its complement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from handler.core.bake.chain import ChainMismatch
from handler.core.bake.chain_walk import Walk, attributes, operands


@dataclass
class Corner:
    """One of the four bilinear corners: its gathered values and the weight multiplying them."""

    name: str  # "tl", "tr", "bl" or "br"
    positions: str  # the (float) sampling positions p both index and weight derive from
    floor: int  # the Floor node of p
    padded: str  # the tensor GatherND reads (before its Transpose)
    clips: list[tuple[onnx.NodeProto, str]]  # (Clip node, "h" or "w")
    index_views: list[onnx.NodeProto]
    value_view: onnx.NodeProto
    weight_view: onnx.NodeProto

    def check(self, walk: Walk, batch: int, groups: int, per_group: int, k_area: int, h: int, w: int) -> None:
        if walk.ints(self.value_view.input[1], "a corner's value reshape") != [batch, groups, per_group, k_area, h, w]:
            raise ChainMismatch("a corner's value reshape does not match the geometry")
        if walk.ints(self.weight_view.input[1], "a corner's weight reshape") != [batch, groups, 1, k_area, h, w]:
            raise ChainMismatch("a corner's weight reshape does not match the geometry")
        for view in self.index_views:
            if walk.ints(view.input[1], "a corner's index reshape") != [batch, groups, k_area * h * w, 1]:
                raise ChainMismatch("a corner's index reshape does not match the geometry")

    def check_bounds(self, walk: Walk, in_h: int, in_w: int) -> None:
        for clip, axis in self.clips:
            if len(clip.input) != 3 or not clip.input[1] or not clip.input[2]:
                raise ChainMismatch("a corner's Clip lacks a bound")
            if walk.ints(clip.input[1], "a Clip's lower bound") != [0]:
                raise ChainMismatch("a corner's Clip does not start at 0")
            upper = in_h - 1 if axis == "h" else in_w - 1
            if walk.ints(clip.input[2], "a Clip's upper bound") != [upper]:
                raise ChainMismatch(
                    f"a corner's Clip does not end at the padded input's last {'row' if axis == 'h' else 'column'}"
                )


def corner(walk: Walk, term: str) -> Corner:
    """One term of the corner Sum: Mul(Reshape(weight), Reshape(Transpose(GatherND(input, index))))."""
    product = walk.take(term, "Mul")
    weight_view, value_view = operands(walk, product, "Reshape")
    # Both operands are Reshapes: the value's comes from a Transpose, the weight's from a Mul.
    if walk.producer_type(walk.graph.node(walk.graph.producer[weight_view]).input[0]) == "Transpose":
        weight_view, value_view = value_view, weight_view
    value_reshape = walk.reshape(value_view)
    back = walk.transpose(value_reshape.input[0], [0, 1, 3, 2], "a corner's value transpose")
    gather = walk.take(back.input[0], "GatherND")
    if attributes(gather, {"batch_dims": 0})["batch_dims"] != 2:
        raise ChainMismatch("a GatherND does not have batch_dims=2")
    channels_last = walk.transpose(gather.input[0], [0, 1, 3, 4, 2], "the input's channels-last transpose")
    index = walk.take(gather.input[1], "Concat")
    if attributes(index, {"axis": None})["axis"] not in (3, -1) or len(index.input) != 2:
        raise ChainMismatch("a corner's index is not a pair concatenated on the last axis")
    y_view = walk.reshape(index.input[0])
    x_view = walk.reshape(index.input[1])
    y_name, y_clip, y_floor, y_int = _index_half(walk, y_view.input[0], 0)
    x_name, x_clip, x_floor, x_int = _index_half(walk, x_view.input[0], 1)
    if y_int != x_int:
        raise ChainMismatch("a corner's y and x indices come from different positions")
    weight_reshape = walk.reshape(weight_view)
    floor = _corner_weight(walk, weight_reshape.input[0], y_name + x_name, y_floor)
    if y_floor != x_floor:
        raise ChainMismatch("a corner's fraction is not p - floor(p) of its own positions")
    return Corner(
        name=y_name + x_name,
        positions=floor.input[0],
        floor=walk.graph.producer[floor.output[0]],
        padded=channels_last.input[0],
        clips=[(y_clip, "h"), (x_clip, "w")],
        index_views=[y_view, x_view],
        value_view=value_reshape,
        weight_view=weight_reshape,
    )


def _corner_weight(walk: Walk, tensor: str, corner: str, floored: str) -> onnx.NodeProto:
    """A corner's bilinear weight, a y factor times an x factor of the fraction p - floor(p), checked
    to be the one for `corner`; returns the Floor node of p."""
    weight = walk.take(tensor, "Mul")
    halves = [_weight_half(walk, name) for name in weight.input]
    if sorted(axis for axis, _, _ in halves) != [0, 1]:
        raise ChainMismatch("a corner's weight is not a y factor times an x factor")
    far = {axis: is_far for axis, is_far, _ in halves}
    # The bilinear weight of the bottom (right) corner is the fraction p - floor(p); of the top
    # (left) corner, one minus it. The corner read and the weight applied must agree.
    if far[0] != (corner[0] == "b") or far[1] != (corner[1] == "r"):
        raise ChainMismatch("a corner's weight is not the one for the corner it reads")
    diffs = {diff for _, _, diff in halves}
    if len(diffs) != 1:
        raise ChainMismatch("a corner's weight factors come from different fractions")
    (diff,) = diffs
    sub = walk.take(diff, "Sub")
    floor = walk.take(floored, "Floor")
    if sub.input[1] != floor.output[0] or sub.input[0] != floor.input[0]:
        raise ChainMismatch("a corner's fraction is not p - floor(p) of its own positions")
    return floor


def _index_half(walk: Walk, tensor: str, axis: int) -> tuple[str, onnx.NodeProto, str, str]:
    """A clipped corner index: ("t"/"l" or "b"/"r", its Clip, the Floor output, the int cast output)."""
    clip = walk.take(tensor, "Clip")
    source = clip.input[0]
    near = "t" if axis == 0 else "l"
    far = "b" if axis == 0 else "r"
    name = near
    if walk.producer_type(source) == "Add":
        step = walk.take(source, "Add")
        source, one = operands(walk, step, "Slice")
        walk.scalar(one, np.int64, 1, "the next-corner step")
        name = far
    sliced = walk.slice(source, axis, "a coordinate slice")
    cast_node = walk.take(sliced.input[0], "Cast")
    if attributes(cast_node, {"to": None, "saturate": 1})["to"] != TensorProto.INT64:
        raise ChainMismatch("the floored positions are not cast to int64")
    return name, clip, cast_node.input[0], cast_node.output[0]


def _weight_half(walk: Walk, tensor: str) -> tuple[int, bool, str]:
    """A bilinear weight factor: (axis, whether it is the fraction itself, the fraction tensor)."""
    if walk.producer_type(tensor) == "Sub":
        complement = walk.take(tensor, "Sub")
        walk.scalar(complement.input[0], np.float32, 1.0, "the weight complement's 1")
        sliced = walk.take(complement.input[1], "Slice")
        is_far = False
    else:
        sliced = walk.take(tensor, "Slice")
        is_far = True
    starts = walk.ints(sliced.input[1], "a fraction slice's starts")
    if starts not in ([0], [1]):
        raise ChainMismatch("a fraction slice takes neither y nor x")
    walk.slice(sliced.output[0], starts[0], "a fraction slice")
    return starts[0], is_far, sliced.input[0]
