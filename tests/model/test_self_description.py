"""A model says whether it returns logits or probabilities: its graph's last ops, not a setting left at a default.

Each graph is the constant test graph with a real tail after it (a sigmoid, a clip, a resize...),
so the mask value it must give is known: the tail's value when the output is bounded to [0, 1],
its sigmoid when not. Taking the sigmoid of an output already in [0, 1] gives grey 128..186
everywhere: the half-transparent cutout these tests guard against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from handler.core.errors import ConfigurationError
from handler.core.image.compose import to_mask
from handler.core.model.session import BackgroundModel, load_model
from handler.core.model.settings import ModelSettings, ModelSpec
from tests import graphs
from tests.graphs import OUTPUT_NAME, PRE_TAIL, GraphFile, GraphModel

SIZE = 16
LOGIT = -6.0  # sigmoid(-6) = 0.0025: grey 1 when used as is, 128 after a second sigmoid


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [], [value])


def _tail(*nodes: onnx.NodeProto, constants: tuple[onnx.TensorProto, ...] = ()) -> onnx.ModelProto:
    return graphs.ending_in(graphs.constant(LOGIT, size=SIZE), nodes, constants)


def _sigmoid_then(op: str, *extra_inputs: str, **attributes: Any) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Sigmoid", [PRE_TAIL], ["probability"]),
        helper.make_node(op, ["probability", *extra_inputs], [OUTPUT_NAME], **attributes),
    ]


def _halves_joined(op: str) -> list[onnx.NodeProto]:
    """Sigmoid, then the left and right halves joined again by `op` (Concat along the width)."""
    return [
        helper.make_node("Sigmoid", [PRE_TAIL], ["probability"]),
        helper.make_node("Slice", ["probability", "start", "middle", "width_axis"], ["left"]),
        helper.make_node("Slice", ["probability", "middle", "end", "width_axis"], ["right"]),
        helper.make_node(op, ["left", "right"], [OUTPUT_NAME], axis=3),
    ]


_HALVES = (
    helper.make_tensor("start", TensorProto.INT64, [1], [0]),
    helper.make_tensor("middle", TensorProto.INT64, [1], [SIZE // 2]),
    helper.make_tensor("end", TensorProto.INT64, [1], [SIZE]),
    helper.make_tensor("width_axis", TensorProto.INT64, [1], [3]),
)


def _fused_conv(activation: str) -> onnx.ModelProto:
    """The constant graph with its Conv fused with an activation, as onnxruntime's optimiser writes
    it into a pre-optimised export (com.microsoft's FusedConv)."""
    model = onnx.ModelProto()
    model.CopyFrom(graphs.constant(LOGIT, size=SIZE))
    (conv,) = model.graph.node
    conv.op_type, conv.domain = "FusedConv", "com.microsoft"
    conv.attribute.append(helper.make_attribute("activation", activation))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def _clip_by_attributes(low: float, high: float) -> onnx.ModelProto:
    """A Clip as opsets before 11 wrote it: its bounds are attributes, not inputs."""
    model = onnx.ModelProto()
    model.CopyFrom(graphs.constant(LOGIT, size=SIZE))
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 10))
    return graphs.ending_in(model, [helper.make_node("Clip", [PRE_TAIL], [OUTPUT_NAME], min=low, max=high)])


_UNIT_SCALES = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 1.0, 1.0])
_SHAPE = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 1, SIZE, SIZE])

# (graph, grey level every mask pixel must have)
BOUNDED = {
    "sigmoid": (_tail(helper.make_node("Sigmoid", [PRE_TAIL], [OUTPUT_NAME])), 1),
    "clip-0-1": (
        _tail(
            helper.make_node("Clip", [PRE_TAIL, "low", "high"], [OUTPUT_NAME]),
            constants=(_scalar("low", 0.0), _scalar("high", 1.0)),
        ),
        0,
    ),
    "hard-sigmoid": (_tail(helper.make_node("HardSigmoid", [PRE_TAIL], [OUTPUT_NAME])), 0),
    # A softmax over the single channel is 1 everywhere.
    "softmax": (_tail(helper.make_node("Softmax", [PRE_TAIL], [OUTPUT_NAME], axis=1)), 255),
    "sigmoid-linear-resize": (
        _tail(*_sigmoid_then("Resize", "", "scales", mode="linear"), constants=(_UNIT_SCALES,)),
        1,
    ),
    "sigmoid-reshape": (_tail(*_sigmoid_then("Reshape", "shape"), constants=(_SHAPE,)), 1),
    # Resize's default mode is nearest: no new values.
    "sigmoid-default-resize": (_tail(*_sigmoid_then("Resize", "", "scales"), constants=(_UNIT_SCALES,)), 1),
    # A single channel's hardmax is 1 everywhere.
    "hardmax": (_tail(helper.make_node("Hardmax", [PRE_TAIL], [OUTPUT_NAME], axis=1)), 255),
    "clip-attributes-0-1": (_clip_by_attributes(0.0, 1.0), 0),
    "fused-conv-sigmoid": (_fused_conv("Sigmoid"), 1),
    # Ops that join several inputs keep their values between the inputs' own.
    "sigmoid-halves-concat": (_tail(*_halves_joined("Concat"), constants=_HALVES), 1),
    **{
        f"sigmoid-{op.lower()}-of-two": (
            _tail(
                helper.make_node("Sigmoid", [PRE_TAIL], ["probability"]),
                helper.make_node(op, ["probability", "probability"], [OUTPUT_NAME]),
            ),
            1,
        )
        for op in ("Max", "Min", "Mean")
    },
}
UNBOUNDED = {
    "conv": (graphs.constant(LOGIT, size=SIZE), 1),
    # Twice a probability is not a probability: the walk stops at ops that can leave [0, 1].
    "sigmoid-times-two": (_tail(*_sigmoid_then("Mul", "two"), constants=(_scalar("two", 2.0),)), 128),
    "clip-minus-1-1": (
        _tail(
            helper.make_node("Clip", [PRE_TAIL, "low", "high"], [OUTPUT_NAME]),
            constants=(_scalar("low", -1.0), _scalar("high", 1.0)),
        ),
        69,
    ),
    "clip-attributes-minus-1-1": (_clip_by_attributes(-1.0, 1.0), 69),
    # Cubic interpolation overshoots: a probability resized by it can leave [0, 1].
    "sigmoid-cubic-resize": (
        _tail(*_sigmoid_then("Resize", "", "scales", mode="cubic"), constants=(_UNIT_SCALES,)),
        128,
    ),
    # relu(-6) = 0, sigmoid(0) = 0.5: fused with anything but a sigmoid, a Conv says nothing.
    "fused-conv-relu": (_fused_conv("Relu"), 128),
    # One unbounded input is enough: max(sigmoid(-6), -6) is sigmoid(-6), but the graph cannot tell.
    "max-of-probability-and-logit": (
        _tail(
            helper.make_node("Sigmoid", [PRE_TAIL], ["probability"]),
            helper.make_node("Max", ["probability", PRE_TAIL], [OUTPUT_NAME]),
        ),
        128,
    ),
}


def _grey_levels(model: BackgroundModel) -> list[int]:
    picture = Image.new("RGB", (8, 6), (90, 140, 200))
    return np.unique(np.asarray(to_mask(model.probabilities(picture), picture.size))).tolist()


@pytest.mark.parametrize(("graph", "grey"), BOUNDED.values(), ids=BOUNDED.keys())
def test_a_graph_bounded_to_0_1_is_used_as_probabilities_without_a_setting(
    graph_model: GraphModel, graph: onnx.ModelProto, grey: int
) -> None:
    # GIVEN a graph whose last op keeps its output in [0, 1], and no MODEL_OUTPUT
    model = graph_model(graph)

    # THEN its output is the mask as is: no second sigmoid
    assert model.contract.output == "probabilities"
    assert _grey_levels(model) == [grey]


@pytest.mark.parametrize(("graph", "grey"), UNBOUNDED.values(), ids=UNBOUNDED.keys())
def test_an_unbounded_output_is_taken_as_logits(graph_model: GraphModel, graph: onnx.ModelProto, grey: int) -> None:
    model = graph_model(graph)

    assert model.contract.output == "logits"
    assert _grey_levels(model) == [grey]


def test_model_output_logits_on_a_bounded_graph_is_refused_at_load(graph_file: GraphFile) -> None:
    # GIVEN the environment of a deployment that says logits for a graph ending in a sigmoid
    path = graph_file(BOUNDED["sigmoid"][0])
    settings = ModelSettings.from_env({"MODEL_PATH": str(path), "MODEL_OUTPUT": "logits", "MODEL_THREADS": "1"})

    # THEN loading it fails, naming the setting and the op, instead of half-transparent cutouts
    with pytest.raises(ConfigurationError, match=r"MODEL_OUTPUT=logits.*Sigmoid"):
        load_model(settings)


def test_model_output_probabilities_agrees_with_a_bounded_graph(graph_model: GraphModel) -> None:
    model = graph_model(BOUNDED["sigmoid"][0], ModelSpec(output="probabilities"))

    assert _grey_levels(model) == [1]


def test_model_output_probabilities_may_override_an_unbounded_graph(graph_model: GraphModel) -> None:
    # A graph may normalise its output in ways no op reveals: the explicit setting is the override.
    model = graph_model(graphs.constant(0.25, size=SIZE), ModelSpec(output="probabilities"))

    assert _grey_levels(model) == [64]


def test_the_real_u2netp_says_it_returns_probabilities(u2netp_path: object) -> None:
    model = BackgroundModel.load(str(u2netp_path), threads=1)

    assert (model.contract.output, model.contract.bounded_by, model.input_size) == (
        "probabilities",
        "Sigmoid",
        (320, 320),
    )
