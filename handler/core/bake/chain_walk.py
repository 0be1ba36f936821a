"""Walking a decomposed chain backwards: each node claimed as its type, attributes and constants
are checked; anything unexpected is a ChainMismatch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper

from handler.core.bake.chain import ChainMismatch
from handler.core.bake.onnx_index import DEFAULT_DOMAINS, GraphIndex


class Walk:
    """Claims the nodes of one chain while checking their types, attributes and constants."""

    def __init__(self, graph: GraphIndex) -> None:
        self.graph = graph
        self.nodes: set[int] = set()

    def take(self, tensor: str, op_type: str) -> onnx.NodeProto:
        index = self.graph.producer.get(tensor)
        node = None if index is None else self.graph.node(index)
        if node is None or node.op_type != op_type or node.domain not in DEFAULT_DOMAINS:
            found = "a graph input or initializer" if node is None else node.op_type
            raise ChainMismatch(f"expected {op_type} producing {tensor!r}, found {found}")
        assert index is not None
        self.nodes.add(index)
        return node

    def producer_type(self, tensor: str) -> str | None:
        index = self.graph.producer.get(tensor)
        return None if index is None else self.graph.node(index).op_type

    def ints(self, tensor: str, what: str) -> list[int]:
        value = self.graph.const(tensor)
        if value is None or value.dtype != np.int64:
            raise ChainMismatch(f"{what} is not an int64 constant")
        return [int(v) for v in value.reshape(-1)]

    def scalar(self, tensor: str, dtype: type, expected: float, what: str) -> None:
        value = self.graph.const(tensor)
        if value is None or value.dtype != dtype or value.size != 1 or value.reshape(-1)[0] != expected:
            raise ChainMismatch(f"{what} is not the constant {expected}")

    def reshape(self, tensor: str) -> onnx.NodeProto:
        """A plain Reshape (no allowzero)."""
        node = self.take(tensor, "Reshape")
        attributes(node, {"allowzero": 0})
        return node

    def transpose(self, tensor: str, perm: Sequence[int], what: str) -> onnx.NodeProto:
        node = self.take(tensor, "Transpose")
        if attributes(node, {"perm": None})["perm"] != list(perm):
            raise ChainMismatch(f"{what}'s permutation is not {list(perm)}")
        return node

    def slice(self, tensor: str, start: int, what: str) -> onnx.NodeProto:
        """Slice [start:start+1] along axis 3 of a rank-6 tensor (the y or x half of a coordinate pair)."""
        node = self.take(tensor, "Slice")
        if len(node.input) < 4:
            raise ChainMismatch(f"{what} has no axes")
        axes = self.ints(node.input[3], f"{what}'s axes")
        if axes not in ([3], [-3]):
            raise ChainMismatch(f"{what} does not slice axis 3")
        starts, ends = self.ints(node.input[1], f"{what}'s starts"), self.ints(node.input[2], f"{what}'s ends")
        if starts != [start] or ends != [start + 1]:
            raise ChainMismatch(f"{what} is not [{start}:{start + 1}]")
        if len(node.input) > 4 and node.input[4] and self.ints(node.input[4], f"{what}'s steps") != [1]:
            raise ChainMismatch(f"{what}'s step is not 1")
        return node


def attributes(node: onnx.NodeProto, allowed: dict[str, object]) -> dict[str, object]:
    """The node's attributes; any attribute not in `allowed` is a mismatch, and so is a missing one
    whose default is None. Defaults fill in absent ones."""
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    unknown = set(values) - set(allowed)
    if unknown:
        raise ChainMismatch(f"{node.op_type} has unexpected attributes {sorted(unknown)}")
    result: dict[str, object] = {}
    for name, default in allowed.items():
        if name not in values and default is None:
            raise ChainMismatch(f"{node.op_type} lacks {name}")
        result[name] = values.get(name, default)
    return result


def operands(walk: Walk, node: onnx.NodeProto, first: str) -> tuple[str, str]:
    """The two inputs of a commutative node, the one produced by a `first` node first."""
    a, b = node.input
    if walk.producer_type(a) == first:
        return a, b
    if walk.producer_type(b) == first:
        return b, a
    raise ChainMismatch(f"{node.op_type} {node.name!r} has no {first} operand")
