"""A model's weights set aside while the rewrite works on the rest.

onnx's version converter and checker copy the whole model through serialisation; the weights
(~99% of the bytes) take no part in either, so the rewrite works on a copy without them, which
reads any constant it needs from the original's own tensors and gets the weights back at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto

_APART = "weights-set-aside"  # where set-aside tensors claim to be: an empty file for the checker


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose initializers' raw bytes are left out (marked as external data)."""
    copied = copy_model(model)  # one copy in C; then the bytes are dropped without reading them
    for tensor in copied.graph.initializer:
        if tensor.HasField("raw_data") and not tensor.HasField("data_location"):
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value=_APART)
    return copied


def is_set_aside(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL and [e.value for e in tensor.external_data] == [_APART]


def put_weights(model: onnx.ModelProto, originals: dict[str, onnx.TensorProto]) -> None:
    """Each set-aside tensor replaced by the original it was copied from."""
    for tensor in model.graph.initializer:
        if is_set_aside(tensor):
            tensor.CopyFrom(originals[tensor.name])


def check_without_weights(model: onnx.ModelProto) -> None:
    """onnx's checker on a model whose weights are set aside: nodes, attributes, opsets, order (for
    a set-aside tensor it only checks that its file is there, so an empty one stands in)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, _APART).touch()
        onnx.save(model, str(Path(folder) / "graph.onnx"))
        onnx.checker.check_model(str(Path(folder) / "graph.onnx"))
