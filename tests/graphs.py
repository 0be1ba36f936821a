"""Tiny ONNX graphs with BiRefNet's exact contract, whose masks can be computed by hand.

BiRefNet's export takes `input_image` float32 [1, 3, H, W] (ImageNet-normalised RGB) and returns
`output_image` float32 [1, 1, H, W] logits. Every graph here is a single 1x1 `Conv`, so running it
at 1024x1024 costs a few milliseconds, and its output is an affine function of one input channel:

    output = weight · normalised[channel] + bias

The builders choose weight and bias so that the *normalisation is undone*: the output becomes an
affine function of the raw 0..255 pixel value, which a test can compute from the picture alone.
A pipeline that normalises with the wrong mean/std, forgets the /255, swaps RGB for BGR or feeds
NHWC instead of NCHW then produces a visibly different mask.

The ImageNet statistics are spelled out here on purpose instead of imported from `handler.core.settings`:
the graphs are the tests' independent statement of the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from handler.core.model.session import BackgroundModel

OPSET = 17
# IR version 8 is the one that goes with opset 17 (onnx 1.12/1.13); any onnxruntime reads it.
IR_VERSION = 8
BIREFNET_SIZE = 1024
INPUT_NAME = "input_image"
OUTPUT_NAME = "output_image"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Dim = int | str
# The conftest fixtures' types: write a graph to a file; load a graph (and optional ModelSpec).
GraphFile = Callable[[onnx.ModelProto], Path]
GraphModel = Callable[..., BackgroundModel]


def conv1x1(
    weights: Sequence[float],
    bias: float,
    *,
    size: int | None = BIREFNET_SIZE,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
) -> onnx.ModelProto:
    """One 3→1 channel 1x1 Conv. `size=None` makes H and W dynamic (symbolic dims)."""
    if len(weights) != 3:
        raise ValueError(f"one weight per RGB channel, got {weights!r}")
    height: Dim = size if size is not None else "height"
    width: Dim = size if size is not None else "width"
    graph = helper.make_graph(
        nodes=[helper.make_node("Conv", [input_name, "W", "B"], [output_name], kernel_shape=[1, 1])],
        name="conv1x1_birefnet_contract",
        inputs=[helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, height, width])],
        outputs=[helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, 1, height, width])],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, [1, 3, 1, 1], [float(w) for w in weights]),
            helper.make_tensor("B", TensorProto.FLOAT, [1], [float(bias)]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="tests"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def channel_affine(
    channel: int, slope: float, intercept: float, *, size: int | None = BIREFNET_SIZE
) -> onnx.ModelProto:
    """output = slope · pixel[channel] / 255 + intercept, for the raw 0..255 pixel value.

    The pipeline feeds n = (x/255 - mean) / std, so x/255 = n·std + mean and
    slope·x/255 + intercept = (slope·std)·n + (slope·mean + intercept).
    """
    weights = [0.0, 0.0, 0.0]
    weights[channel] = slope * IMAGENET_STD[channel]
    return conv1x1(weights, slope * IMAGENET_MEAN[channel] + intercept, size=size)


def constant(value: float, *, size: int | None = BIREFNET_SIZE) -> onnx.ModelProto:
    """The same output everywhere, whatever the picture: a picture with (or without) a subject."""
    return conv1x1([0.0, 0.0, 0.0], value, size=size)


def wide(channels: int, *, size: int = BIREFNET_SIZE) -> onnx.ModelProto:
    """BiRefNet's contract through a wide intermediate (`channels` x size x size float32): a model
    whose run needs working memory, as the real one does (its output is 0 everywhere)."""
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Conv", [INPUT_NAME, "W1"], ["wide"], kernel_shape=[1, 1]),
            helper.make_node("Relu", ["wide"], ["relu"]),
            helper.make_node("Conv", ["relu", "W2"], [OUTPUT_NAME], kernel_shape=[1, 1]),
        ],
        name="wide_birefnet_contract",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, size, size])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 1, size, size])],
        initializer=[
            helper.make_tensor("W1", TensorProto.FLOAT, [channels, 3, 1, 1], [1.0] * channels * 3),
            helper.make_tensor("W2", TensorProto.FLOAT, [1, channels, 1, 1], [0.0] * channels),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="tests"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


# The name the last op of `constant`/`conv1x1` writes when a tail is added after it (`ending_in`).
PRE_TAIL = "pre_tail"


def ending_in(
    model: onnx.ModelProto, tail: Sequence[onnx.NodeProto], initializers: Sequence[onnx.TensorProto] = ()
) -> onnx.ModelProto:
    """`model` with more ops after its output: `tail` reads PRE_TAIL and ends by writing OUTPUT_NAME.

    A model that ends in a sigmoid (U-2-Net) or a clip returns probabilities; these graphs say so
    the way real exports do, so what the pipeline reads from a graph can be checked on one.
    """
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    (last,) = [node for node in graph.node if OUTPUT_NAME in node.output]
    last.output[list(last.output).index(OUTPUT_NAME)] = PRE_TAIL
    graph.node.extend(tail)
    graph.initializer.extend(initializers)
    onnx.checker.check_model(result, full_check=True)
    return result
