"""Matched chains replaced by one `DeformConv` each, and what they leave unread pruned."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from handler.core.bake.chain import ChainMatch
from handler.core.bake.onnx_index import subgraph_reads


def replace_chains(model: onnx.ModelProto, matches: list[ChainMatch]) -> None:
    """Each chain's nodes dropped and one DeformConv put where its last node was (keeping the order)."""
    graph = model.graph
    taken = set().union(*(m.nodes for m in matches))
    at_last = {m.last: m for m in matches}
    names = {node.name for node in graph.node} | {init.name for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if index in at_last:
            kept.append(deform_node(graph, at_last[index], names))
        elif index not in taken:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def deform_node(graph: onnx.GraphProto, match: ChainMatch, names: set[str]) -> onnx.NodeProto:
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


def prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers nothing reads any more (the removed chains' constants)."""
    while True:
        used = _read_names(graph)
        dead = [i for i, node in enumerate(graph.node) if not any(o in used for o in node.output if o)]
        if not dead:
            break
        for i in reversed(dead):
            del graph.node[i]
    used = _read_names(graph)
    # Deleted in place: clearing and re-adding the kept ones would copy every weight.
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in used:
            del graph.initializer[index]
    produced = {name for node in graph.node for name in node.output}
    kept_info = [info for info in graph.value_info if info.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)


def _read_names(graph: onnx.GraphProto) -> set[str]:
    """The graph's outputs and every tensor a node (or a node's subgraph) reads."""
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        used.update(subgraph_reads(node))
    return used
