"""The few facts of an ONNX file's graph the model contract needs, read without the `onnx` package.

The image and a plain install carry onnxruntime only (onnx is a build and test tool here), and
onnxruntime does not show a session's nodes. An ONNX file is a protobuf message, so its nodes
(op type, inputs, outputs, a few attributes), its outputs and its scalar constants are read from
the wire format directly: the file is memory-mapped and the large fields — the weights, most of
a 224 MB file — are skipped, never copied. Field numbers are those of onnx.proto, which are
stable across ONNX versions.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# onnx.proto field numbers.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_OUTPUT = 1, 5, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_NAME, _ATTR_F, _ATTR_I, _ATTR_S, _ATTR_T = 1, 2, 3, 4, 5
_VALUE_INFO_NAME = 1
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_FLOAT_DATA, _TENSOR_NAME = 1, 2, 4, 8
_TENSOR_RAW_DATA, _TENSOR_DOUBLE_DATA = 9, 10
# TensorProto.DataType values with a float meaning, and their little-endian layout in raw_data.
_FLOAT_TYPES: dict[int, np.dtype[np.generic]] = {1: np.dtype("<f4"), 10: np.dtype("<f2"), 11: np.dtype("<f8")}

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

AttributeValue = float | int | str | None


@dataclass(frozen=True)
class Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # Float, int and string attributes; a tensor attribute (Constant's `value`) as its scalar, if it is one.
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    # Single-value float initialisers and Constant outputs, by name (Clip's bounds, say).
    scalars: dict[str, float]


class GraphUnreadable(ValueError):
    """The file is not an ONNX protobuf this reader understands (an ORT-format file, say)."""


def read_graph(path: Path) -> Graph:
    problem = "the file is empty"
    with path.open("rb") as stream:
        if path.stat().st_size == 0:
            raise GraphUnreadable(f"{path} is not an ONNX graph: {problem}")
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                graph: Graph | None = _graph(_only(view, _MODEL_GRAPH))
            except (IndexError, UnicodeDecodeError, ValueError) as error:
                # Only the message is kept: the traceback's frames hold views of the map, which
                # must all be gone before it can close.
                graph, problem = None, str(error)
            view.release()
    if graph is None:
        raise GraphUnreadable(f"{path} is not an ONNX graph: {problem}")
    return graph


def _graph(data: memoryview) -> Graph:
    nodes: list[Node] = []
    outputs: list[str] = []
    scalars: dict[str, float] = {}
    for number, value in _fields(data):
        if number == _GRAPH_NODE and isinstance(value, memoryview):
            node = _node(value)
            nodes.append(node)
            constant = node.attributes.get("value") if node.op_type == "Constant" else None
            if isinstance(constant, float) and node.outputs:
                scalars[node.outputs[0]] = constant
        elif number == _GRAPH_INITIALIZER and isinstance(value, memoryview):
            name, scalar = _tensor_scalar(value)
            if scalar is not None:
                scalars[name] = scalar
        elif number == _GRAPH_OUTPUT and isinstance(value, memoryview):
            outputs.append(_text(_only(value, _VALUE_INFO_NAME)))
    return Graph(nodes=tuple(nodes), outputs=tuple(outputs), scalars=scalars)


def _node(data: memoryview) -> Node:
    inputs: list[str] = []
    outputs: list[str] = []
    op_type = ""
    attributes: dict[str, AttributeValue] = {}
    for number, value in _fields(data):
        if not isinstance(value, memoryview):
            continue
        if number == _NODE_INPUT:
            inputs.append(_text(value))
        elif number == _NODE_OUTPUT:
            outputs.append(_text(value))
        elif number == _NODE_OP_TYPE:
            op_type = _text(value)
        elif number == _NODE_ATTRIBUTE:
            name, attribute = _attribute(value)
            attributes[name] = attribute
    return Node(op_type=op_type, inputs=tuple(inputs), outputs=tuple(outputs), attributes=attributes)


def _attribute(data: memoryview) -> tuple[str, AttributeValue]:
    name = ""
    found_value: AttributeValue = None
    for number, value in _fields(data):
        if number == _ATTR_NAME and isinstance(value, memoryview):
            name = _text(value)
        elif number == _ATTR_F and isinstance(value, bytes):
            found_value = _floats(value, "<f4")[0]
        elif number == _ATTR_I and isinstance(value, int):
            found_value = value
        elif number == _ATTR_S and isinstance(value, memoryview):
            found_value = _text(value)
        elif number == _ATTR_T and isinstance(value, memoryview):
            found_value = _tensor_scalar(value)[1]
    return name, found_value


def _tensor_scalar(data: memoryview) -> tuple[str, float | None]:
    """(name, its value when the tensor holds exactly one float-typed value, else None)."""
    name, data_type, count = "", 0, 1
    values: list[float] = []
    raw: memoryview | None = None
    for number, value in _fields(data):
        if number == _TENSOR_NAME and isinstance(value, memoryview):
            name = _text(value)
        elif number == _TENSOR_DATA_TYPE and isinstance(value, int):
            data_type = value
        elif number == _TENSOR_DIMS:
            count *= _product(value)
        elif number == _TENSOR_RAW_DATA and isinstance(value, memoryview):
            raw = value
        elif number == _TENSOR_FLOAT_DATA:
            values.extend(_packed(value, "<f4"))
        elif number == _TENSOR_DOUBLE_DATA:
            values.extend(_packed(value, "<f8"))
    dtype = _FLOAT_TYPES.get(data_type)
    if dtype is None or count != 1:
        return name, None
    if raw is not None:
        values = _floats(raw, dtype) if len(raw) == dtype.itemsize else []
    return name, float(values[0]) if len(values) == 1 else None


def _product(value: int | bytes | memoryview) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, memoryview):  # packed dims
        result = 1
        for _, dim in _fields_of_packed_varints(value):
            result *= dim
        return result
    return 0


def _packed(value: int | bytes | memoryview, dtype: str) -> list[float]:
    # Packed (a length-delimited run) or one unpacked fixed-width value.
    return _floats(value, np.dtype(dtype)) if isinstance(value, bytes | memoryview) else []


def _floats(data: bytes | memoryview, dtype: np.dtype[np.generic] | str) -> list[float]:
    return [float(value) for value in np.frombuffer(data, dtype=np.dtype(dtype))]


def _only(data: memoryview, wanted: int) -> memoryview:
    for number, value in _fields(data):
        if number == wanted and isinstance(value, memoryview):
            return value
    raise ValueError(f"no field {wanted}")


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8")


def _fields(data: memoryview) -> Iterator[tuple[int, int | bytes | memoryview]]:
    """(field number, value) for each field: an int, 4 or 8 bytes, or a view of a length-delimited field."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = _varint(data, position)
            yield number, value
        elif wire_type == _LENGTH:
            length, position = _varint(data, position)
            if position + length > end:
                raise ValueError("a field runs past the end of its message")
            yield number, data[position : position + length]
            position += length
        elif wire_type in (_FIXED32, _FIXED64):
            width = 4 if wire_type == _FIXED32 else 8
            yield number, bytes(data[position : position + width])
            position += width
        else:
            raise ValueError(f"wire type {wire_type} is not used by ONNX")


def _fields_of_packed_varints(data: memoryview) -> Iterator[tuple[int, int]]:
    position, index = 0, 0
    while position < len(data):
        value, position = _varint(data, position)
        yield index, value
        index += 1


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 64 bits")
