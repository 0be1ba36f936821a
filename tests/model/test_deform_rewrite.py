"""The decomposed-DeformConv rewrite (handler/core/bake/rewrite.py) on graphs made by the public exporter.

The fixtures in deform_fixtures/ were exported by `deform-conv2d-onnx-exporter` 1.2.0 (the exporter
of the public BiRefNet files) from small torch modules, by scripts/make_deform_fixtures.py; each
comes with a fixed input and torchvision's own output for it. Every fixture must be rewritten and
still give torchvision's output; every tampered chain must be left exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from handler.core.bake.rewrite import RewriteRefused, rewrite_model
from tests import graphs

FIXTURES = Path(__file__).resolve().parent / "deform_fixtures"
INDEX = {entry["name"]: entry for entry in json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]}
# float32 outputs of magnitude ~1-4, each a sum of up to 7*7*4 products per corner: torchvision and
# onnxruntime round differently at ~1e-6 relative; the decomposed graph itself is up to 2.4e-5 off
# torchvision on these fixtures. 1e-4 is a few times that, and far below what a wrong sample
# position, border or weight does (tenths, see test_tampered_chain_changes_the_result).
TOLERANCE = 1e-4
CHAIN_OPS = {"GatherND", "Floor", "Clip", "Pad", "Sum"}


def load(name: str) -> onnx.ModelProto:
    return onnx.load(str(FIXTURES / f"{name}.onnx"))


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(FIXTURES / f"{name}.npz")
    return data["x"], data["y"]


@pytest.mark.parametrize("name", sorted(INDEX))
def test_every_variant_is_rewritten_and_matches_torchvision(name: str) -> None:
    # GIVEN a graph exported by the public exporter, and torchvision's output for a fixed input
    original = load(name)
    x, expected = reference(name)
    variant = INDEX[name]
    # WHEN it is rewritten
    rewritten, result = rewrite_model(original)
    # THEN every chain became one DeformConv of the geometry the module had, at opset 19
    assert (result.candidates, result.rewritten) == (variant["layers"], variant["layers"])
    ops = [node.op_type for node in rewritten.graph.node]
    assert ops.count("DeformConv") == variant["layers"]
    assert CHAIN_OPS.isdisjoint(ops), f"chain ops left: {CHAIN_OPS & set(ops)}"
    assert result.opset_from == variant["opset"] and result.opset_to == 19
    for layer in result.layers:
        assert list(layer.kernel) == variant["kernel"]
        assert list(layer.stride) == variant["stride"]
        assert list(layer.padding) == variant["padding"]
        assert list(layer.dilation) == variant["dilation"]
        assert (layer.group, layer.offset_group, layer.batch, layer.mask) == (
            variant["groups"],
            variant["offset_groups"],
            variant["batch"],
            variant["mask"],
        )
    # AND it computes what torchvision computes, as closely as the decomposed graph does
    assert np.abs(run(original, x) - expected).max() <= TOLERANCE  # the fixture itself is sound
    got = run(rewritten, x)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE


# -- tampered chains: one thing differs from a real deformable convolution -----------------------


def _node(model: onnx.ModelProto, op_type: str, nth: int = 0) -> onnx.NodeProto:
    return [node for node in model.graph.node if node.op_type == op_type][nth]


def _constant(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if node.op_type == "Constant" and node.output[0] == name)


def _edit_constant(model: onnx.ModelProto, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    node = _constant(model, name)
    value = numpy_helper.to_array(node.attribute[0].t)
    node.attribute[0].t.CopyFrom(numpy_helper.from_array(change(value.copy()), node.attribute[0].t.name))


def _grid_entry(model: onnx.ModelProto) -> None:
    add = next(n for n in model.graph.node if n.op_type == "Add" and _is_float_grid(model, n.input[0]))

    def bump(grid: np.ndarray) -> np.ndarray:
        grid[0, 0, 4, 1, 3, 5] += 1.0  # one tap's column, one output pixel
        return grid

    _edit_constant(model, add.input[0], bump)


def _is_float_grid(model: onnx.ModelProto, name: str) -> bool:
    try:
        value = numpy_helper.to_array(_constant(model, name).attribute[0].t)
    except StopIteration:
        return False
    return value.dtype == np.float32 and value.ndim == 6


def _clip_upper(model: onnx.ModelProto) -> None:
    _edit_constant(model, _node(model, "Clip", 2).input[2], lambda v: v - 1)


def _clip_lower(model: onnx.ModelProto) -> None:
    _edit_constant(model, _node(model, "Clip", 1).input[1], lambda v: v + 1)


def _pad_amount(model: onnx.ModelProto) -> None:
    def one_more_bottom(pads: np.ndarray) -> np.ndarray:
        pads[6] += 1
        return pads

    _edit_constant(model, _node(model, "Pad").input[1], one_more_bottom)


def _pad_mode(model: onnx.ModelProto) -> None:
    pad = _node(model, "Pad")
    del pad.attribute[:]
    pad.attribute.append(helper.make_attribute("mode", "reflect"))


def _pad_value(model: onnx.ModelProto) -> None:
    pad = _node(model, "Pad")
    model.graph.initializer.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), "pad_value"))
    pad.input.append("pad_value")


def _corner_step(model: onnx.ModelProto) -> None:
    step = next(n for n in model.graph.node if n.op_type == "Add" and "Slice" in n.input[0])
    _edit_constant(model, step.input[1], lambda v: v + 1)


def _weight_complement(model: onnx.ModelProto) -> None:
    _edit_constant(model, _node(model, "Sub", 1).input[0], lambda v: v * np.float32(0.5))


def _swapped_weights(model: onnx.ModelProto) -> None:
    # The top-left values get the bottom-right weight and the other way round.
    first, second = _node(model, "Mul", 5), _node(model, "Mul", 6)
    first_weight, second_weight = first.input[0], second.input[0]
    first.input[0], second.input[0] = second_weight, first_weight


def _swapped_index(model: onnx.ModelProto) -> None:
    # (x, y) instead of (y, x) for one corner's GatherND index.
    concat = _node(model, "Concat")
    concat.input[0], concat.input[1] = concat.input[1], concat.input[0]


def _floor_is_output(model: onnx.ModelProto) -> None:
    floor = _node(model, "Floor")
    model.graph.output.append(helper.make_empty_tensor_value_info(floor.output[0]))


def _gathered_used_elsewhere(model: onnx.ModelProto) -> None:
    gathered = _node(model, "GatherND", 2).output[0]
    model.graph.node.append(helper.make_node("ReduceMax", [gathered], ["peek"], keepdims=0))
    model.graph.output.append(helper.make_empty_tensor_value_info("peek"))


TAMPERS: dict[str, Callable[[onnx.ModelProto], None]] = {
    "grid entry": _grid_entry,
    "clip upper bound": _clip_upper,
    "clip lower bound": _clip_lower,
    "pad amount": _pad_amount,
    "pad mode reflect": _pad_mode,
    "pad value": _pad_value,
    "next-corner step": _corner_step,
    "weight complement": _weight_complement,
    "swapped corner weights": _swapped_weights,
    "swapped index pair": _swapped_index,
    "floor is a graph output": _floor_is_output,
    "gathered values used elsewhere": _gathered_used_elsewhere,
}
# Tampers that leave the graph's computed values unchanged for this input (so no outcome to compare).
_SAME_VALUES = {"floor is a graph output", "gathered values used elsewhere"}


def tampered(name: str, tamper: str) -> onnx.ModelProto:
    model = load(name)
    TAMPERS[tamper](model)
    return model


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_chain_is_left_alone(tamper: str) -> None:
    model = tampered("k3", tamper)
    before = model.SerializeToString()
    result_model, result = rewrite_model(model)
    assert (result.candidates, result.rewritten) == (1, 0)
    assert len(result.skipped) == 1
    assert result_model.SerializeToString() == before


@pytest.mark.parametrize("tamper", sorted(set(TAMPERS) - _SAME_VALUES))
def test_tampered_chain_changes_the_result(tamper: str) -> None:
    """Each tamper matters: the tampered graph no longer computes the deformable convolution (or no
    longer runs), so a rewrite into DeformConv would have changed what it does."""
    x, expected = reference("k3")
    try:
        got = run(tampered("k3", tamper), x)
    except Exception as error:  # noqa: BLE001 - onnxruntime's own Fail/RuntimeException types
        assert "GatherND" in str(error) or "Reshape" in str(error) or "reshape" in str(error)
        return
    assert np.abs(got - expected).max() > 100 * TOLERANCE


def test_half_matching_graph_rewrites_only_the_exact_chain() -> None:
    # GIVEN two deformable convolutions, the second one's clip bound off by one
    model = load("k3_two_layers")
    _edit_constant(model, _node(model, "Clip", 6).input[2], lambda v: v - 1)
    # WHEN rewritten
    rewritten, result = rewrite_model(model)
    # THEN the graph holds two chains, one was rewritten, and the other is still there
    assert (result.candidates, result.rewritten) == (2, 1)
    ops = [node.op_type for node in rewritten.graph.node]
    assert ops.count("DeformConv") == 1 and ops.count("GatherND") == 4
    x, _ = reference("k3_two_layers")
    assert np.abs(run(rewritten, x) - run(model, x)).max() <= TOLERANCE


# -- refusals --------------------------------------------------------------------------------------


def test_onnxruntime_optimised_file_is_refused(tmp_path: Path) -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(FIXTURES / "k3.onnx"), options, providers=["CPUExecutionProvider"])
    with pytest.raises(RewriteRefused, match="outside the default ONNX domain"):
        rewrite_model(onnx.load(str(tmp_path / "optimised.onnx")))


def test_basic_optimised_file_is_not_rewritten(tmp_path: Path) -> None:
    # onnxruntime's BASIC level keeps the default domain but folds the bias Add into the Conv.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "basic.onnx")
    ort.InferenceSession(str(FIXTURES / "k3.onnx"), options, providers=["CPUExecutionProvider"])
    _, result = rewrite_model(onnx.load(str(tmp_path / "basic.onnx")))
    assert (result.candidates, result.rewritten) == (1, 0)
    assert "bias input" in result.skipped[0]


def test_graph_without_deformable_convolutions_is_returned_as_is() -> None:
    model = graphs.channel_affine(0, 1.0, 0.0, size=64)
    rewritten, result = rewrite_model(model)
    assert rewritten is model
    assert (result.candidates, result.rewritten, result.opset_to) == (0, 0, graphs.OPSET)


def test_graph_whose_opset_cannot_be_raised_is_refused() -> None:
    # An op onnx's version converter has no schema (so no adapter) for: the rewrite would need the
    # graph at opset 19 and cannot get it there without guessing.
    model = load("k3")
    model.graph.node.append(helper.make_node("Frobnicate", ["y"], ["z"]))
    model.graph.output.append(helper.make_empty_tensor_value_info("z"))
    with pytest.raises(RewriteRefused, match="cannot raise the opset from 17 to 19"):
        rewrite_model(model)


# -- the rewritten graph's own checks ----------------------------------------------------------------


def test_the_weights_set_aside_for_the_converter_come_back_whole() -> None:
    # The converter and the checker run with the initializers' bytes set aside (external-data marks).
    model = load("k3_two_layers")
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    rewritten, _ = rewrite_model(model)
    kept = {init.name: init for init in rewritten.graph.initializer}
    for name, value in weights.items():
        if name in kept:  # the chains' own constants are gone with them
            assert not kept[name].external_data and not kept[name].HasField("data_location"), name
            np.testing.assert_array_equal(numpy_helper.to_array(kept[name]), value)
    assert any(name in kept for name in weights)


def test_a_malformed_rewrite_is_stopped_by_the_checker(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a rewrite that emits a DeformConv with an attribute the operator does not have
    import handler.core.bake.chain_replace as chain_replace

    real = chain_replace.deform_node

    def malformed(graph: onnx.GraphProto, match: object, names: set[str]) -> onnx.NodeProto:
        node = real(graph, match, names)  # type: ignore[arg-type]
        node.attribute.append(helper.make_attribute("bogus", 1))
        return node

    monkeypatch.setattr(chain_replace, "deform_node", malformed)
    # THEN onnx's checker, run with the weights set aside, refuses it
    with pytest.raises(onnx.checker.ValidationError, match="bogus"):
        rewrite_model(load("k3_two_layers"))
