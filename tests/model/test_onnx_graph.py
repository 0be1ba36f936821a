"""The wire-format reader of ONNX graphs (handler.core.model.onnx_graph) against the onnx package's own parser.

The image has no onnx package, so the contract reads graphs itself; it must see the same nodes,
outputs and constants as onnx does, on the real U-2-Net-p and on test-made graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from handler.core.model.onnx_graph import GraphUnreadable, read_graph
from tests import graphs
from tests.graphs import GraphFile


def _as_onnx_sees_it(path: Path) -> tuple[list[tuple[str, list[str], list[str]]], list[str]]:
    model = onnx.load(str(path))
    nodes = [(node.op_type, list(node.input), list(node.output)) for node in model.graph.node]
    return nodes, [output.name for output in model.graph.output]


def test_the_real_u2netp_reads_as_onnx_reads_it(u2netp_path: Path) -> None:
    graph = read_graph(u2netp_path)

    nodes, outputs = _as_onnx_sees_it(u2netp_path)
    assert [(node.op_type, list(node.inputs), list(node.outputs)) for node in graph.nodes] == nodes
    assert list(graph.outputs) == outputs
    resize_modes = {node.attributes.get("mode") for node in graph.nodes if node.op_type in ("Resize", "Upsample")}
    assert resize_modes <= {"linear", "nearest", None}


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64], ids=["float", "float16", "double"])
def test_scalar_constants_are_read_from_initialisers_and_constant_nodes(graph_file: GraphFile, dtype: type) -> None:
    low = numpy_helper.from_array(np.array(0.25, dtype=dtype), "low")
    high_node = helper.make_node(
        "Constant", [], ["high"], value=numpy_helper.from_array(np.array(0.75, dtype=dtype), "high_value")
    )
    cast = [
        helper.make_node(
            "Cast", [graphs.PRE_TAIL], ["pre_cast"], to=int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
        )
    ]
    back = helper.make_node("Cast", ["clipped"], [graphs.OUTPUT_NAME], to=TensorProto.FLOAT)
    clip = helper.make_node("Clip", ["pre_cast", "low", "high"], ["clipped"])
    vector = numpy_helper.from_array(np.array([0.5, 0.5], dtype=np.float32), "not_a_scalar")
    path = graph_file(graphs.ending_in(graphs.constant(0.0, size=8), [*cast, high_node, clip, back], [low, vector]))

    graph = read_graph(path)

    assert graph.scalars == {"B": 0.0, "low": 0.25, "high": 0.75}  # the Conv's one-value bias too
    assert [node.op_type for node in graph.nodes] == ["Conv", "Cast", "Constant", "Clip", "Cast"]


@pytest.mark.parametrize(
    "content", [b"", b"not an onnx file at all", bytes(range(256)) * 4], ids=["empty", "text", "bytes"]
)
def test_a_file_that_is_not_onnx_is_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)

    with pytest.raises(GraphUnreadable):
        read_graph(path)
