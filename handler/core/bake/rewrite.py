"""Native `DeformConv` from the decomposed deformable convolutions of `deform-conv2d-onnx-exporter`.

That exporter (PyPI, 1.2.0) has no native op to emit for torchvision's `deform_conv2d`, so it
spells each one as a chain of plain ops: the offsets are added to a constant sampling grid,
floored and clipped into a zero-padded copy of the input, four `GatherND` read the corners, the
bilinear weights multiply them, a `Sum` adds them, the mask multiplies, a Reshape/Transpose lays
the samples out as `kh x kw` tiles and a `Conv` with stride = kernel applies the weights; a bias
`Add` follows. At BiRefNet-lite's sizes the four gathered tensors of one layer are ~822 MB each.

`rewrite_model` finds each such chain by its structure, derives the geometry it implies (kernel,
stride, dilation, padding, groups), checks every constant the chain depends on against what a
deformable convolution of that geometry uses, and replaces the chain with one ONNX `DeformConv`
(opset 19) only when everything matches exactly. Anything else is left as it is: a chain that
differs in one constant, a pad mode, a wiring or an intermediate used elsewhere is not rewritten.

Why the chain equals `DeformConv` when the checks pass: the grid holds `i*stride + k*dilation + a`
in a copy of the input padded by `P >= 1` on each side, so a sample lands at input coordinate
`grid + offset - P`, i.e. a deformable convolution with padding `P - a`. Clipping the corner
indices to the padded extent sends every corner outside the input onto the zero border, which
is the zero that `DeformConv` (and torchvision) give samples outside the input.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TARGET_OPSET = 19  # the first opset with DeformConv
_DEFAULT_DOMAINS = ("", "ai.onnx")


class RewriteRefused(Exception):
    """The model as a whole cannot be rewritten (its opset cannot be raised, or it is not a plain export)."""


class _Mismatch(Exception):
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
class RewriteResult:
    """What a rewrite did: the chains seen, the ones rewritten, and the opset change."""

    candidates: int
    layers: list[DeformLayer] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    opset_from: int = 0
    opset_to: int = 0

    @property
    def rewritten(self) -> int:
        return len(self.layers)

    def summary(self) -> dict[str, object]:
        return {
            "candidates": self.candidates,
            "rewritten": self.rewritten,
            "opset_from": self.opset_from,
            "opset_to": self.opset_to,
            "skipped": self.skipped,
            "layers": [asdict(layer) for layer in self.layers],
        }


def rewrite_file(source: Path, target: Path) -> RewriteResult:
    """Rewrite `source` into `target` (written only when at least one chain was rewritten)."""
    model = onnx.load(str(source))
    rewritten, result = rewrite_model(model)
    if result.rewritten:
        onnx.save(rewritten, str(target))
    return result


def rewrite_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, RewriteResult]:
    """The model with every exactly matching chain replaced by `DeformConv`, at opset 19.

    Raises RewriteRefused when the model's opset cannot be raised to 19 or it holds nodes outside
    the default ONNX domain (an onnxruntime-optimised file: its fused ops are not the exporter's
    chains and have no opset conversion). Chains that do not match are listed in `skipped`.
    """
    foreign = sorted({node.domain for node in _all_nodes(model.graph) if node.domain not in _DEFAULT_DOMAINS})
    if foreign:
        raise RewriteRefused(f"nodes outside the default ONNX domain ({', '.join(foreign)}): not a plain export")
    opset_from = _default_opset(model)
    graph_index = _Graph(model.graph)
    candidates = graph_index.candidate_count()
    result = RewriteResult(candidates=candidates, opset_from=opset_from, opset_to=opset_from)
    if candidates == 0:
        return model, result
    # The converter and the checker copy the whole model through serialisation; the weights
    # (~99% of the bytes) take no part in either, so the work is done on a copy without them,
    # which reads any constant it needs from `model`'s own tensors and gets the weights at the end.
    originals = {tensor.name: tensor for tensor in model.graph.initializer}
    upgraded = _upgrade(_without_weights(model), opset_from)
    result.opset_to = _default_opset(upgraded)
    graph = _Graph(upgraded.graph, originals)
    matches: list[_Match] = []
    for index, node in enumerate(upgraded.graph.node):
        if node.op_type != "Conv" or node.domain not in _DEFAULT_DOMAINS:
            continue
        try:
            matches.append(_match(graph, index))
        except _Mismatch as why:
            if graph.feeds_from_gather(index):
                result.skipped.append(f"{node.name or node.output[0]}: {why}")
    if not matches:
        return model, result
    _replace(upgraded, matches)
    _prune(upgraded.graph)
    _check(upgraded)
    _put_weights(upgraded, originals)
    result.layers = [m.layer for m in matches]
    return upgraded, result


# -- weights set aside ---------------------------------------------------------------------------

_APART = "weights-set-aside"  # where set-aside tensors claim to be: an empty file for the checker


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose initializers' raw bytes are left out (marked as external data)."""
    copied = _copy(model)  # one copy in C; then the bytes are dropped without reading them
    for tensor in copied.graph.initializer:
        if tensor.HasField("raw_data") and not tensor.HasField("data_location"):
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value=_APART)
    return copied


def _set_aside(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL and [e.value for e in tensor.external_data] == [_APART]


def _put_weights(model: onnx.ModelProto, originals: dict[str, onnx.TensorProto]) -> None:
    """Each set-aside tensor replaced by the original it was copied from."""
    for tensor in model.graph.initializer:
        if _set_aside(tensor):
            tensor.CopyFrom(originals[tensor.name])


def _check(model: onnx.ModelProto) -> None:
    """onnx's checker on a model whose weights are set aside: nodes, attributes, opsets, order (for
    a set-aside tensor it only checks that its file is there, so an empty one stands in)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, _APART).touch()
        onnx.save(model, str(Path(folder) / "graph.onnx"))
        onnx.checker.check_model(str(Path(folder) / "graph.onnx"))


# -- graph index ----------------------------------------------------------------------------------


class _Graph:
    """Producers, consumers and constant values of one graph's tensors."""

    def __init__(self, graph: onnx.GraphProto, originals: dict[str, onnx.TensorProto] | None = None) -> None:
        self.graph = graph
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for index, node in enumerate(graph.node):
            for name in node.output:
                if name:
                    self.producer[name] = index
            for name in node.input:
                if name:
                    self.consumers[name].append(index)
        # A tensor set aside (_without_weights) is read from the original it was copied from.
        self.initializers = {
            init.name: (originals or {}).get(init.name, init) if _set_aside(init) else init
            for init in graph.initializer
        }
        self.outputs = {output.name for output in graph.output}
        # Names read inside If/Loop/Scan bodies are uses this index cannot see node by node:
        # they count as uses from outside any chain.
        self.outer_uses = {name for node in graph.node for name in _subgraph_reads(node)}
        self.shapes = _static_shapes(graph)

    def node(self, index: int) -> onnx.NodeProto:
        node: onnx.NodeProto = self.graph.node[index]
        return node

    def const(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        index = self.producer.get(name)
        if index is None:
            return None
        node = self.graph.node[index]
        if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
            return None
        (attribute,) = node.attribute
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name == "value_int":
            return np.array(attribute.i, dtype=np.int64)
        if attribute.name == "value_ints":
            return np.array(list(attribute.ints), dtype=np.int64)
        if attribute.name == "value_float":
            return np.array(attribute.f, dtype=np.float32)
        if attribute.name == "value_floats":
            return np.array(list(attribute.floats), dtype=np.float32)
        return None

    def candidate_count(self) -> int:
        """Decomposed convolutions the graph holds: groups of GatherND reading one (transposed) tensor."""
        sources = set()
        for node in self.graph.node:
            if node.op_type == "GatherND" and node.domain in _DEFAULT_DOMAINS:
                data = node.input[0]
                producer = self.producer.get(data)
                if producer is not None and self.graph.node[producer].op_type == "Transpose":
                    data = self.graph.node[producer].input[0]
                sources.add(data)
        return len(sources)

    def feeds_from_gather(self, conv_index: int) -> bool:
        """Whether this Conv reads a Reshape with a GatherND a few nodes upstream: the end of a chain,
        so a failed match is worth reporting."""
        tiles = self.producer.get(self.graph.node[conv_index].input[0])
        if tiles is None or self.graph.node[tiles].op_type != "Reshape":
            return False
        frontier, seen = [conv_index], set()
        for _ in range(12):
            following = []
            for index in frontier:
                for name in self.graph.node[index].input:
                    producer = self.producer.get(name)
                    if producer is None or producer in seen:
                        continue
                    seen.add(producer)
                    if self.graph.node[producer].op_type == "GatherND":
                        return True
                    following.append(producer)
            frontier = following
        return False


def _subgraph_reads(node: onnx.NodeProto) -> Iterable[str]:
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            for inner in _all_nodes(graph):
                yield from inner.input


def _all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    yield from _all_nodes(graph)


def _static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Fully static shapes the file itself declares (inputs, outputs, value_info)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS:
            return int(opset.version)
    raise RewriteRefused("the model imports no default-domain opset")


def _upgrade(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model at opset 19, every op adapted by onnx's version converter, or RewriteRefused."""
    if opset >= TARGET_OPSET:
        return _copy(model)
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, TARGET_OPSET)
    except Exception as error:  # the converter raises RuntimeError/ValueError for ops it has no adapter for
        raise RewriteRefused(f"cannot raise the opset from {opset} to {TARGET_OPSET}: {error}") from error
    if _default_opset(upgraded) != TARGET_OPSET:
        raise RewriteRefused(f"the opset conversion ended at {_default_opset(upgraded)}, not {TARGET_OPSET}")
    upgraded.ir_version = max(upgraded.ir_version, 9)  # IR 9 is opset 19's
    return upgraded


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


# -- matching -------------------------------------------------------------------------------------


@dataclass
class _Match:
    nodes: set[int]
    last: int  # the node whose output the DeformConv takes over
    x: str
    w: str
    offset: str
    mask: str | None
    bias: np.ndarray | None
    layer: DeformLayer


class _Walk:
    """Claims the nodes of one chain while checking their types, attributes and constants."""

    def __init__(self, graph: _Graph) -> None:
        self.graph = graph
        self.nodes: set[int] = set()

    def take(self, tensor: str, op_type: str) -> onnx.NodeProto:
        index = self.graph.producer.get(tensor)
        node = None if index is None else self.graph.node(index)
        if node is None or node.op_type != op_type or node.domain not in _DEFAULT_DOMAINS:
            found = "a graph input or initializer" if node is None else node.op_type
            raise _Mismatch(f"expected {op_type} producing {tensor!r}, found {found}")
        assert index is not None
        self.nodes.add(index)
        return node

    def producer_type(self, tensor: str) -> str | None:
        index = self.graph.producer.get(tensor)
        return None if index is None else self.graph.node(index).op_type

    def ints(self, tensor: str, what: str) -> list[int]:
        value = self.graph.const(tensor)
        if value is None or value.dtype != np.int64:
            raise _Mismatch(f"{what} is not an int64 constant")
        return [int(v) for v in value.reshape(-1)]

    def scalar(self, tensor: str, dtype: type, expected: float, what: str) -> None:
        value = self.graph.const(tensor)
        if value is None or value.dtype != dtype or value.size != 1 or value.reshape(-1)[0] != expected:
            raise _Mismatch(f"{what} is not the constant {expected}")

    def reshape(self, tensor: str, shape: Sequence[int], what: str) -> onnx.NodeProto:
        node = self.take(tensor, "Reshape")
        _attributes(node, {"allowzero": 0})
        if self.ints(node.input[1], f"{what}'s shape") != list(shape):
            raise _Mismatch(f"{what}'s shape is not {list(shape)}")
        return node

    def transpose(self, tensor: str, perm: Sequence[int], what: str) -> onnx.NodeProto:
        node = self.take(tensor, "Transpose")
        if _attributes(node, {"perm": None})["perm"] != list(perm):
            raise _Mismatch(f"{what}'s permutation is not {list(perm)}")
        return node

    def slice(self, tensor: str, start: int, what: str) -> onnx.NodeProto:
        """Slice [start:start+1] along axis 3 of a rank-6 tensor (the y or x half of a coordinate pair)."""
        node = self.take(tensor, "Slice")
        if len(node.input) < 4:
            raise _Mismatch(f"{what} has no axes")
        axes = self.ints(node.input[3], f"{what}'s axes")
        if axes not in ([3], [-3]):
            raise _Mismatch(f"{what} does not slice axis 3")
        if self.ints(node.input[1], f"{what}'s starts") != [start] or self.ints(node.input[2], f"{what}'s ends") != [
            start + 1
        ]:
            raise _Mismatch(f"{what} is not [{start}:{start + 1}]")
        if len(node.input) > 4 and node.input[4] and self.ints(node.input[4], f"{what}'s steps") != [1]:
            raise _Mismatch(f"{what}'s step is not 1")
        return node


def _attributes(node: onnx.NodeProto, allowed: dict[str, object]) -> dict[str, object]:
    """The node's attributes; any attribute not in `allowed` is a mismatch, and so is a missing one
    whose default is None. Defaults fill in absent ones."""
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    unknown = set(values) - set(allowed)
    if unknown:
        raise _Mismatch(f"{node.op_type} has unexpected attributes {sorted(unknown)}")
    result: dict[str, object] = {}
    for name, default in allowed.items():
        if name not in values and default is None:
            raise _Mismatch(f"{node.op_type} lacks {name}")
        result[name] = values.get(name, default)
    return result


def _operands(walk: _Walk, node: onnx.NodeProto, first: str) -> tuple[str, str]:
    """The two inputs of a commutative node, the one produced by a `first` node first."""
    a, b = node.input
    if walk.producer_type(a) == first:
        return a, b
    if walk.producer_type(b) == first:
        return b, a
    raise _Mismatch(f"{node.op_type} {node.name!r} has no {first} operand")


def _match(graph: _Graph, conv_index: int) -> _Match:
    walk = _Walk(graph)
    conv = graph.node(conv_index)
    walk.nodes.add(conv_index)
    if len(conv.input) != 2:
        # The exporter never gives this Conv a bias input; an optimiser that folded one in did.
        raise _Mismatch("the Conv has a bias input")
    attrs = _attributes(
        conv,
        {
            "kernel_shape": None,
            "strides": None,
            "pads": [0, 0, 0, 0],
            "dilations": [1, 1],
            "group": 1,
            "auto_pad": b"NOTSET",
        },
    )
    kernel = cast(list[int], attrs["kernel_shape"])
    if (
        len(kernel) != 2
        or attrs["strides"] != kernel
        or attrs["pads"] != [0, 0, 0, 0]
        or attrs["dilations"] != [1, 1]
        or attrs["auto_pad"] != b"NOTSET"
    ):
        raise _Mismatch("the Conv is not a kernel-sized, kernel-strided, unpadded one")
    kh, kw = kernel
    group = cast(int, attrs["group"])
    k_area = kh * kw

    # The tile layout: [b, C, h*kh, w*kw] <- Transpose <- [b, C, kh, kw, h, w].
    tiles = walk.take(conv.input[0], "Reshape")
    tile_shape = walk.ints(tiles.input[1], "the tile reshape's shape")
    if len(tile_shape) != 4:
        raise _Mismatch("the tile reshape is not 4-D")
    batch, channels = tile_shape[:2]
    layout = walk.transpose(tiles.input[0], [0, 1, 4, 2, 5, 3], "the tile transpose")
    split = walk.take(layout.input[0], "Reshape")
    split_shape = walk.ints(split.input[1], "the kernel split's shape")
    if len(split_shape) != 6 or split_shape[:4] != [batch, channels, kh, kw]:
        raise _Mismatch("the kernel split's shape does not match the Conv")
    out_h, out_w = split_shape[4:]
    if tile_shape[2:] != [out_h * kh, out_w * kw] or min(batch, channels, out_h, out_w) < 1:
        raise _Mismatch("the tile reshape's shape does not match the kernel split")

    # Optional mask: Mul(samples, Reshape(mask, [b, G, 1, K, h, w])).
    mask: str | None = None
    sampled = split.input[0]
    if walk.producer_type(sampled) == "Mul":
        modulation = walk.take(sampled, "Mul")
        sampled, mask_view = _operands(walk, modulation, "Sum")
        mask_reshape = walk.take(mask_view, "Reshape")
        mask_shape = walk.ints(mask_reshape.input[1], "the mask reshape's shape")
        _attributes(mask_reshape, {"allowzero": 0})
        mask = mask_reshape.input[0]
    total = walk.take(sampled, "Sum")
    if len(total.input) != 4:
        raise _Mismatch("the corner Sum does not have 4 terms")

    # The offsets and the sampling grid: p = GRID + Reshape(offset, [b, G, K, 2, h, w]).
    corners = [_corner(walk, term) for term in total.input]
    positions = {c.positions for c in corners}
    pads = {c.padded for c in corners}
    if len(positions) != 1 or len(pads) != 1:
        raise _Mismatch("the corners do not share one sampling grid and one padded input")
    if sorted(c.name for c in corners) != ["bl", "br", "tl", "tr"]:
        raise _Mismatch("the corners are not the four of a bilinear sample")
    (position,) = positions
    add = walk.take(position, "Add")
    offset_view, grid_name = _operands(walk, add, "Reshape")
    offset_reshape = walk.take(offset_view, "Reshape")
    _attributes(offset_reshape, {"allowzero": 0})
    offset_shape = walk.ints(offset_reshape.input[1], "the offset reshape's shape")
    if len(offset_shape) != 6 or offset_shape[0] != batch or offset_shape[2:] != [k_area, 2, out_h, out_w]:
        raise _Mismatch("the offset reshape's shape does not match the Conv")
    offset_group = offset_shape[1]
    if offset_group < 1 or channels % offset_group or channels % group:
        raise _Mismatch("the channels do not divide into the groups")
    per_group = channels // offset_group
    if mask is not None and mask_shape != [batch, offset_group, 1, k_area, out_h, out_w]:
        raise _Mismatch("the mask reshape's shape does not match the offsets")
    for c in corners:
        c.check(walk, batch, offset_group, per_group, k_area, out_h, out_w)
    floor_node = corners[0].floor
    if any(c.floor != floor_node for c in corners) or walk.graph.node(floor_node).input[0] != position:
        raise _Mismatch("the corners' indices and weights do not come from the same positions")

    # The padded input: Pad(X) -> Reshape [b, G, C/G, H + 2P, W + 2P] (read through Transposes).
    (padded,) = pads
    padded_reshape = walk.take(padded, "Reshape")
    _attributes(padded_reshape, {"allowzero": 0})
    padded_shape = walk.ints(padded_reshape.input[1], "the input reshape's shape")
    if len(padded_shape) != 5 or padded_shape[:3] != [batch, offset_group, per_group]:
        raise _Mismatch("the input reshape's shape does not match the offsets")
    in_h, in_w = padded_shape[3:]
    pad = walk.take(padded_reshape.input[0], "Pad")
    if _attributes(pad, {"mode": b"constant"})["mode"] != b"constant":
        raise _Mismatch("the Pad is not a constant pad")
    if len(pad.input) > 2 and pad.input[2]:
        walk.scalar(pad.input[2], np.float32, 0.0, "the pad value")
    if len(pad.input) > 3 and pad.input[3]:
        raise _Mismatch("the Pad names its axes")
    pad_amounts = walk.ints(pad.input[1], "the pad amounts")
    if len(pad_amounts) != 8:
        raise _Mismatch("the Pad is not a 4-D pad")
    border_h, border_w = pad_amounts[2], pad_amounts[3]
    if pad_amounts != [0, 0, border_h, border_w, 0, 0, border_h, border_w] or min(border_h, border_w) < 1:
        raise _Mismatch("the Pad is not a symmetric spatial pad of at least 1")
    height, width = in_h - 2 * border_h, in_w - 2 * border_w
    x = pad.input[0]
    known = graph.shapes.get(x)
    if known is not None and known != (batch, channels, height, width):
        raise _Mismatch(f"the input's declared shape {known} is not the one the chain implies")
    for c in corners:
        c.check_bounds(walk, in_h, in_w)

    # The grid: every value checked against the geometry its first entries imply.
    grid = graph.const(grid_name)
    if grid is None or grid.dtype != np.float32 or grid.shape != (1, 1, k_area, 2, out_h, out_w):
        raise _Mismatch("the sampling grid is not a float32 constant of the expected shape")
    geometry = _grid_geometry(grid, kh, kw, out_h, out_w, height, width, border_h, border_w)

    # The weights, and the bias Add the exporter always emits (zeros when torch had no bias).
    w = conv.input[1]
    w_shape = graph.shapes.get(w) or (tuple(graph.initializers[w].dims) if w in graph.initializers else None)
    if w_shape is not None and (len(w_shape) != 4 or w_shape[1:] != (channels // group, kh, kw) or w_shape[0] % group):
        raise _Mismatch(f"the weight's shape {w_shape} does not fit the Conv")
    out_channels = None if w_shape is None else int(w_shape[0])
    last, bias = conv_index, None
    conv_uses = graph.consumers.get(conv.output[0], [])
    if len(conv_uses) == 1 and conv.output[0] not in graph.outputs and conv.output[0] not in graph.outer_uses:
        follower = graph.node(conv_uses[0])
        if follower.op_type == "Add" and follower.domain in _DEFAULT_DOMAINS and out_channels is not None:
            other = follower.input[1] if follower.input[0] == conv.output[0] else follower.input[0]
            value = graph.const(other)
            if (
                value is not None
                and value.dtype == np.float32
                and value.shape in ((1, out_channels, 1, 1), (out_channels, 1, 1))
            ):
                bias = value.reshape(out_channels)
                last = conv_uses[0]
                walk.nodes.add(last)

    _check_closed(graph, walk.nodes, last)
    layer = DeformLayer(
        node=conv.name or conv.output[0],
        channels=channels,
        out_channels=out_channels,
        input_hw=(height, width),
        output_hw=(out_h, out_w),
        kernel=(kh, kw),
        stride=geometry.stride,
        dilation=geometry.dilation,
        padding=geometry.padding,
        group=group,
        offset_group=offset_group,
        batch=batch,
        mask=mask is not None,
        bias=bias is not None,
    )
    return _Match(
        nodes=walk.nodes, last=last, x=x, w=w, offset=offset_reshape.input[0], mask=mask, bias=bias, layer=layer
    )


@dataclass
class _Corner:
    """One of the four bilinear corners: its gathered values and the weight multiplying them."""

    name: str  # "tl", "tr", "bl" or "br"
    positions: str  # the (float) sampling positions p both index and weight derive from
    floor: int  # the Floor node of p
    padded: str  # the tensor GatherND reads (before its Transpose)
    clips: list[tuple[onnx.NodeProto, str]]  # (Clip node, "h" or "w")
    index_views: list[onnx.NodeProto]
    value_view: onnx.NodeProto
    weight_view: onnx.NodeProto

    def check(self, walk: _Walk, batch: int, groups: int, per_group: int, k_area: int, h: int, w: int) -> None:
        if walk.ints(self.value_view.input[1], "a corner's value reshape") != [batch, groups, per_group, k_area, h, w]:
            raise _Mismatch("a corner's value reshape does not match the geometry")
        if walk.ints(self.weight_view.input[1], "a corner's weight reshape") != [batch, groups, 1, k_area, h, w]:
            raise _Mismatch("a corner's weight reshape does not match the geometry")
        for view in self.index_views:
            if walk.ints(view.input[1], "a corner's index reshape") != [batch, groups, k_area * h * w, 1]:
                raise _Mismatch("a corner's index reshape does not match the geometry")

    def check_bounds(self, walk: _Walk, in_h: int, in_w: int) -> None:
        for clip, axis in self.clips:
            if len(clip.input) != 3 or not clip.input[1] or not clip.input[2]:
                raise _Mismatch("a corner's Clip lacks a bound")
            if walk.ints(clip.input[1], "a Clip's lower bound") != [0]:
                raise _Mismatch("a corner's Clip does not start at 0")
            upper = in_h - 1 if axis == "h" else in_w - 1
            if walk.ints(clip.input[2], "a Clip's upper bound") != [upper]:
                raise _Mismatch(
                    f"a corner's Clip does not end at the padded input's last {'row' if axis == 'h' else 'column'}"
                )


def _corner(walk: _Walk, term: str) -> _Corner:
    product = walk.take(term, "Mul")
    weight_view, value_view = _operands(walk, product, "Reshape")
    # Both operands are Reshapes: the value's comes from a Transpose, the weight's from a Mul.
    if walk.producer_type(walk.graph.node(walk.graph.producer[weight_view]).input[0]) == "Transpose":
        weight_view, value_view = value_view, weight_view
    value_reshape = walk.take(value_view, "Reshape")
    _attributes(value_reshape, {"allowzero": 0})
    back = walk.transpose(value_reshape.input[0], [0, 1, 3, 2], "a corner's value transpose")
    gather = walk.take(back.input[0], "GatherND")
    if _attributes(gather, {"batch_dims": 0})["batch_dims"] != 2:
        raise _Mismatch("a GatherND does not have batch_dims=2")
    channels_last = walk.transpose(gather.input[0], [0, 1, 3, 4, 2], "the input's channels-last transpose")
    index = walk.take(gather.input[1], "Concat")
    if _attributes(index, {"axis": None})["axis"] not in (3, -1) or len(index.input) != 2:
        raise _Mismatch("a corner's index is not a pair concatenated on the last axis")
    y_view = walk.take(index.input[0], "Reshape")
    x_view = walk.take(index.input[1], "Reshape")
    for view in (y_view, x_view):
        _attributes(view, {"allowzero": 0})
    y_name, y_clip, y_floor, y_int = _index_half(walk, y_view.input[0], 0)
    x_name, x_clip, x_floor, x_int = _index_half(walk, x_view.input[0], 1)
    if y_int != x_int:
        raise _Mismatch("a corner's y and x indices come from different positions")

    weight_reshape = walk.take(weight_view, "Reshape")
    _attributes(weight_reshape, {"allowzero": 0})
    weight = walk.take(weight_reshape.input[0], "Mul")
    halves = [_weight_half(walk, name) for name in weight.input]
    if sorted(axis for axis, _, _ in halves) != [0, 1]:
        raise _Mismatch("a corner's weight is not a y factor times an x factor")
    far = {axis: is_far for axis, is_far, _ in halves}
    # The bilinear weight of the bottom (right) corner is the fraction p - floor(p); of the top
    # (left) corner, one minus it. The corner read and the weight applied must agree.
    if far[0] != (y_name == "b") or far[1] != (x_name == "r"):
        raise _Mismatch("a corner's weight is not the one for the corner it reads")
    diffs = {diff for _, _, diff in halves}
    if len(diffs) != 1:
        raise _Mismatch("a corner's weight factors come from different fractions")
    (diff,) = diffs
    sub = walk.take(diff, "Sub")
    floor = walk.take(y_floor, "Floor")
    if sub.input[1] != floor.output[0] or sub.input[0] != floor.input[0] or y_floor != x_floor:
        raise _Mismatch("a corner's fraction is not p - floor(p) of its own positions")
    return _Corner(
        name=y_name + x_name,
        positions=floor.input[0],
        floor=walk.graph.producer[floor.output[0]],
        padded=channels_last.input[0],
        clips=[(y_clip, "h"), (x_clip, "w")],
        index_views=[y_view, x_view],
        value_view=value_reshape,
        weight_view=weight_reshape,
    )


def _index_half(walk: _Walk, tensor: str, axis: int) -> tuple[str, onnx.NodeProto, str, str]:
    """A clipped corner index: ("t"/"l" or "b"/"r", its Clip, the Floor output, the int cast output)."""
    clip = walk.take(tensor, "Clip")
    source = clip.input[0]
    near = "t" if axis == 0 else "l"
    far = "b" if axis == 0 else "r"
    name = near
    if walk.producer_type(source) == "Add":
        step = walk.take(source, "Add")
        source, one = _operands(walk, step, "Slice")
        walk.scalar(one, np.int64, 1, "the next-corner step")
        name = far
    sliced = walk.slice(source, axis, "a coordinate slice")
    cast = walk.take(sliced.input[0], "Cast")
    if _attributes(cast, {"to": None, "saturate": 1})["to"] != TensorProto.INT64:
        raise _Mismatch("the floored positions are not cast to int64")
    return name, clip, cast.input[0], cast.output[0]


def _weight_half(walk: _Walk, tensor: str) -> tuple[int, bool, str]:
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
        raise _Mismatch("a fraction slice takes neither y nor x")
    walk.slice(sliced.output[0], starts[0], "a fraction slice")
    return starts[0], is_far, sliced.input[0]


@dataclass(frozen=True)
class _Geometry:
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int]


def _grid_geometry(
    grid: np.ndarray, kh: int, kw: int, out_h: int, out_w: int, height: int, width: int, border_h: int, border_w: int
) -> _Geometry:
    """Stride, dilation and padding from the grid's first entries, then the whole grid checked."""
    g = grid[0, 0]  # [K, 2, h, w]

    def integral(value: float, what: str, minimum: int) -> int:
        if not float(value).is_integer() or value < minimum:
            raise _Mismatch(f"the grid's {what} is not a whole number >= {minimum}")
        return int(value)

    base_h = integral(g[0, 0, 0, 0], "row origin", 0)
    base_w = integral(g[0, 1, 0, 0], "column origin", 0)
    stride_h = integral(g[0, 0, 1, 0] - base_h, "row stride", 1) if out_h > 1 else None
    stride_w = integral(g[0, 1, 0, 1] - base_w, "column stride", 1) if out_w > 1 else None
    dilation_h = integral(g[kw, 0, 0, 0] - base_h, "row dilation", 1) if kh > 1 else 1
    dilation_w = integral(g[1, 1, 0, 0] - base_w, "column dilation", 1) if kw > 1 else 1
    pad_h, pad_w = border_h - base_h, border_w - base_w
    if pad_h < 0 or pad_w < 0:
        raise _Mismatch("the grid starts beyond the padded border")
    # One output row (column) does not show the stride; any stride that yields one output is the
    # same convolution, so take the one that makes the output-size formula give exactly 1.
    span_h = height + 2 * pad_h - dilation_h * (kh - 1) - 1
    span_w = width + 2 * pad_w - dilation_w * (kw - 1) - 1
    if stride_h is None:
        stride_h = max(1, span_h + 1)
    if stride_w is None:
        stride_w = max(1, span_w + 1)
    if span_h < 0 or span_w < 0 or span_h // stride_h + 1 != out_h or span_w // stride_w + 1 != out_w:
        raise _Mismatch("the output size is not the one this geometry gives")
    ki, kj = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    oi, oj = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    rows = base_h + oi[None] * stride_h + (ki.reshape(-1) * dilation_h)[:, None, None]
    cols = base_w + oj[None] * stride_w + (kj.reshape(-1) * dilation_w)[:, None, None]
    expected = np.stack([rows, cols], axis=1).astype(np.float32)
    if not np.array_equal(g, expected):
        raise _Mismatch("the sampling grid is not the one this geometry gives")
    return _Geometry(stride=(stride_h, stride_w), dilation=(dilation_h, dilation_w), padding=(pad_h, pad_w))


def _check_closed(graph: _Graph, nodes: set[int], last: int) -> None:
    """No tensor inside the chain may be used outside it: the rewrite removes them all."""
    for index in nodes:
        if index == last:
            continue
        for name in graph.node(index).output:
            if name in graph.outputs or name in graph.outer_uses:
                raise _Mismatch(f"the chain's intermediate {name!r} is a graph output or read by a subgraph")
            outside = [i for i in graph.consumers.get(name, []) if i not in nodes]
            if outside:
                raise _Mismatch(f"the chain's intermediate {name!r} is also used by {graph.node(outside[0]).op_type}")


# -- replacing ------------------------------------------------------------------------------------


def _replace(model: onnx.ModelProto, matches: list[_Match]) -> None:
    graph = model.graph
    taken = set().union(*(m.nodes for m in matches))
    at_last = {m.last: m for m in matches}
    names = {node.name for node in graph.node} | {init.name for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if index in at_last:
            kept.append(_deform_node(graph, at_last[index], names))
        elif index not in taken:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _deform_node(graph: onnx.GraphProto, match: _Match, names: set[str]) -> onnx.NodeProto:
    layer = match.layer
    name = _unique(f"{layer.node}/DeformConv", names)
    bias = ""
    if match.bias is not None:
        bias = _unique(f"{name}/bias", names)
        graph.initializer.append(numpy_helper.from_array(match.bias.astype(np.float32), bias))
    inputs = [match.x, match.w, match.offset, bias, match.mask or ""]
    while inputs[-1] == "":
        inputs.pop()
    output = graph.node[match.last].output[0]
    return helper.make_node(
        "DeformConv",
        inputs,
        [output],
        name=name,
        kernel_shape=list(layer.kernel),
        strides=list(layer.stride),
        dilations=list(layer.dilation),
        pads=[layer.padding[0], layer.padding[1], layer.padding[0], layer.padding[1]],
        group=layer.group,
        offset_group=layer.offset_group,
    )


def _unique(name: str, names: set[str]) -> str:
    candidate, n = name, 1
    while candidate in names:
        n += 1
        candidate = f"{name}_{n}"
    names.add(candidate)
    return candidate


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers nothing reads any more (the removed chains' constants)."""
    while True:
        used = {o.name for o in graph.output}
        for node in graph.node:
            used.update(node.input)
            used.update(_subgraph_reads(node))
        dead = [i for i, node in enumerate(graph.node) if not any(o in used for o in node.output if o)]
        if not dead:
            break
        for i in reversed(dead):
            del graph.node[i]
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        used.update(_subgraph_reads(node))
    # Deleted in place: clearing and re-adding the kept ones would copy every weight.
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in used:
            del graph.initializer[index]
    produced = {name for node in graph.node for name in node.output}
    kept_info = [info for info in graph.value_info if info.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
