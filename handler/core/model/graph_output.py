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

from collections.abc import Callable
from pathlib import Path

from handler.core.model.onnx_graph import Graph, GraphUnreadable, Node
from handler.core.model.onnx_graph import read_graph as _read

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
# Resize modes that interpolate without overshoot (cubic can leave [0, 1]); the default is nearest.
_CONVEX_RESIZE_MODES = frozenset({None, "nearest", "linear"})

_Bound = Callable[[str], "str | None"]


def read_graph(path: Path) -> Graph | None:
    """The file's graph, or None when it is not an ONNX protobuf (an ORT-format file, say)."""
    try:
        return _read(path)
    except (OSError, GraphUnreadable):
        return None


def bounding_op(graph: Graph, output: str) -> str | None:
    """The op that bounds `output` to [0, 1] (e.g. "Sigmoid"), or None when nothing does."""
    producers = {name: node for node in graph.nodes for name in node.outputs if name}
    seen: dict[str, str | None] = {}

    def bound(name: str) -> str | None:
        if name in seen:
            return seen[name]
        seen[name] = None  # a cycle (never in a valid graph) proves nothing
        node = producers.get(name)
        result = None if node is None else _bound_of(node, bound, graph.scalars)
        seen[name] = result
        return result

    return bound(output)


def _bound_of(node: Node, bound: _Bound, scalars: dict[str, float]) -> str | None:
    op = node.op_type
    if op in _BOUNDING_OPS:
        return op
    if op == "Clip":
        return "Clip" if _clips_to_unit(node, scalars) else None
    if op == "FusedConv":
        return "FusedConv+Sigmoid" if node.attributes.get("activation") in ("Sigmoid", "HardSigmoid") else None
    resizes_convexly = op in ("Resize", "Upsample") and node.attributes.get("mode") in _CONVEX_RESIZE_MODES
    if op in _FIRST_INPUT_OPS or resizes_convexly:
        return bound(node.inputs[0]) if node.inputs else None
    if op in _ALL_INPUTS_OPS:
        found = [bound(name) for name in node.inputs if name]
        return found[0] if found and all(found) else None
    return None


def _clips_to_unit(node: Node, scalars: dict[str, float]) -> bool:
    """Whether a Clip's bounds (inputs since opset 11, attributes before) lie within [0, 1]."""
    if len(node.inputs) > 1:
        low = scalars.get(node.inputs[1]) if node.inputs[1] else None
        high = scalars.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    else:
        low_attr, high_attr = node.attributes.get("min"), node.attributes.get("max")
        low = low_attr if isinstance(low_attr, float) else None
        high = high_attr if isinstance(high_attr, float) else None
    return low is not None and high is not None and low >= 0.0 and high <= 1.0
