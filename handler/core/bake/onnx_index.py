"""An ONNX graph's tensors indexed for the DeformConv rewrite: who produces and reads each one,
which are constants (and their values), which shapes the file declares."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from handler.core.bake.weights_aside import is_set_aside

DEFAULT_DOMAINS = ("", "ai.onnx")


class GraphIndex:
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
        # A tensor set aside (weights_aside.without_weights) is read from the original it was copied from.
        self.initializers = {
            init.name: (originals or {}).get(init.name, init) if is_set_aside(init) else init
            for init in graph.initializer
        }
        self.outputs = {output.name for output in graph.output}
        # Names read inside If/Loop/Scan bodies are uses this index cannot see node by node:
        # they count as uses from outside any chain.
        self.outer_uses = {name for node in graph.node for name in subgraph_reads(node)}
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
        if node.op_type != "Constant" or node.domain not in DEFAULT_DOMAINS:
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
            if node.op_type == "GatherND" and node.domain in DEFAULT_DOMAINS:
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


def subgraph_reads(node: onnx.NodeProto) -> Iterable[str]:
    """The tensors a node's subgraphs (If/Loop/Scan bodies) read."""
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            for inner in all_nodes(graph):
                yield from inner.input


def all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    """Every node of the graph and of its subgraphs."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    yield from all_nodes(graph)


def _static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Fully static shapes the file itself declares (inputs, outputs, value_info)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes
