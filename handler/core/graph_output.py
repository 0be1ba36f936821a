"""Whether a graph's output is already a probability, read from the ops that compute it.

BiRefNet's export returns logits; U-2-Net ends in a sigmoid and returns probabilities. Taking the
sigmoid of values that are already in [0, 1] gives 0.5..0.73 everywhere — a cutout that is half
transparent all over — so the graph itself says which it is, rather than a setting that defaults
to one and is easily left unset.

The walk goes back from the output through ops that keep values inside the range of their inputs
(reshapes, slices, linear resizes, pooling...) to the op that made them. The output is bounded to
[0, 1] when that op is one whose result always lies there: Sigmoid, HardSigmoid, Softmax, Hardmax,
a Clip to a sub-range of [0, 1], or onnxruntime's fused Conv with a sigmoid activation (what an
optimised export contains). Anything else — a Conv, an Add, a Div — says nothing: the output is
taken as unbounded, i.e. logits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# Ops whose every output value lies in [0, 1], whatever their input.
_BOUNDING_OPS = frozenset({"Sigmoid", "HardSigmoid", "Softmax", "Hardmax"})
# Ops whose output values are all values of their first input (or convex combinations of them).
_FIRST_INPUT_OPS = frozenset(
    {
        "Identity",
        "Reshape",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Transpose",
        "Slice",
        "Gather",
        "Split",
        "Expand",
        "Tile",
        "Cast",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "SpaceToDepth",
        "DepthToSpace",
    }
)
# Ops whose output values lie between the smallest and largest of all their inputs' values.
_ALL_INPUTS_OPS = frozenset({"Concat", "Max", "Min", "Mean"})
# Resize modes that interpolate without overshoot (cubic can leave [0, 1]).
_CONVEX_RESIZE_MODES = frozenset({b"nearest", b"linear"})

_Bound = Callable[[str], "str | None"]


def read_graph(path: Path) -> onnx.ModelProto | None:
    """The file's graph, or None when it is not an ONNX protobuf onnx can read (an ORT-format file)."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - onnx raises protobuf's DecodeError and others for unreadable files
        return None


def bounding_op(model: onnx.ModelProto, output: str) -> str | None:
    """The op that bounds `output` to [0, 1] (e.g. "Sigmoid"), or None when nothing does."""
    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output if name}
    constants = _Constants(graph.initializer, graph.node)
    seen: dict[str, str | None] = {}

    def bound(name: str) -> str | None:
        if name in seen:
            return seen[name]
        seen[name] = None  # a cycle (never in a valid graph) proves nothing
        node = producers.get(name)
        result = None if node is None else _bound_of(node, bound, constants)
        seen[name] = result
        return result

    return bound(output)


def _bound_of(node: onnx.NodeProto, bound: _Bound, constants: _Constants) -> str | None:
    op = node.op_type
    if op in _BOUNDING_OPS:
        return op
    if op == "Clip":
        return "Clip" if constants.clips_to_unit(node) else None
    if op == "FusedConv":
        activation = _attribute(node, "activation")
        return "FusedConv+Sigmoid" if activation in (b"Sigmoid", b"HardSigmoid") else None
    # Resize's default mode is nearest.
    resizes_convexly = op in ("Resize", "Upsample") and _attribute(node, "mode") in (None, *_CONVEX_RESIZE_MODES)
    if op in _FIRST_INPUT_OPS or resizes_convexly:
        return bound(node.input[0]) if node.input else None
    if op in _ALL_INPUTS_OPS:
        found = [bound(name) for name in node.input if name]
        return found[0] if found and all(found) else None
    return None


def _attribute(node: onnx.NodeProto, name: str) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return None


class _Constants:
    """The graph's constant tensors (initialisers and Constant nodes), for Clip's min and max."""

    def __init__(self, initializers: Iterable[onnx.TensorProto], nodes: Iterable[onnx.NodeProto]) -> None:
        self._tensors = {tensor.name: tensor for tensor in initializers}
        for node in nodes:
            if node.op_type == "Constant" and node.output:
                value = _attribute(node, "value")
                if isinstance(value, onnx.TensorProto):
                    self._tensors[node.output[0]] = value

    def scalar(self, name: str) -> float | None:
        tensor = self._tensors.get(name)
        if tensor is None:
            return None
        values = numpy_helper.to_array(tensor)
        return float(values.reshape(-1)[0]) if values.size == 1 else None

    def clips_to_unit(self, node: onnx.NodeProto) -> bool:
        """Whether a Clip's bounds (inputs since opset 11, attributes before) lie within [0, 1]."""
        low: float | None
        high: float | None
        if len(node.input) > 1:
            low = self.scalar(node.input[1]) if node.input[1] else None
            high = self.scalar(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        else:
            low_attr, high_attr = _attribute(node, "min"), _attribute(node, "max")
            low = float(low_attr) if isinstance(low_attr, float) else None
            high = float(high_attr) if isinstance(high_attr, float) else None
        return low is not None and high is not None and bool(np.float32(low) >= 0.0 and np.float32(high) <= 1.0)
