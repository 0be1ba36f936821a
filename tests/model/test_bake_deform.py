"""The bake step's native-DeformConv pass (handler/core/bake/deform.py) on a BiRefNet-contract model.

`birefnet_tiny.onnx` (scripts/make_deform_fixtures.py) takes `input_image` and returns
`output_image` logits like BiRefNet, through two deformable convolutions decomposed by the public
exporter. The bake runs it and its rewrite on the sample photos, as the image build does.
"""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image

import handler.core.bake.deform as deform_bake
from handler.core.bake.run import bake
from handler.core.model.session import BackgroundModel
from handler.core.model.settings import ModelSettings
from handler.core.model.store import sha256_of
from tests import graphs

FIXTURES = Path(__file__).resolve().parent / "deform_fixtures"
TINY = FIXTURES / "birefnet_tiny.onnx"


def ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def settings_for(path: Path) -> ModelSettings:
    return ModelSettings(path=path, threads=1)


@pytest.fixture
def probes(samples: dict[str, Path]) -> list[Path]:
    return sorted(samples.values())


def test_bake_makes_deformable_convolutions_native_and_records_the_check(tmp_path: Path, probes: list[Path]) -> None:
    # WHEN the decomposed model is baked
    baked = bake(settings_for(TINY), tmp_path / "model", probes)
    # THEN the baked file runs native DeformConv, no GatherND chain is left
    baked_ops = ops(tmp_path / "model" / "model.onnx")
    assert baked_ops.count("DeformConv") == 2 and "GatherND" not in baked_ops
    # AND the manifest says what was rewritten, the check's figures and both files' hashes
    manifest = json.loads((tmp_path / "model" / "model.json").read_text())
    record = manifest["native_deform"]
    assert record["applied"] is True
    assert record["rewrite"]["candidates"] == record["rewrite"]["rewritten"] == 2
    assert [layer["kernel"] for layer in record["rewrite"]["layers"]] == [[3, 3], [3, 3]]
    assert record["check"]["probes"] == [path.name for path in probes]
    # (the three photos tiled into one input: each model runs once)
    assert (record["check"]["layout"], record["check"]["runs"]) == ("mosaic 2x2", 1)
    assert record["check"]["max_probability_difference"] <= record["check"]["tolerance"]
    assert record["source_sha256"] == sha256_of(TINY) == manifest["source_sha256"]
    assert record["rewritten_sha256"] not in (None, record["source_sha256"])
    assert manifest["sha256"] == sha256_of(tmp_path / "model" / "model.onnx") == baked.sha256
    # AND the baked model's masks are the original's
    original = BackgroundModel.load(TINY)
    rewritten = BackgroundModel.load(tmp_path / "model" / "model.onnx")
    for path in probes:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        assert (
            np.abs(original.probabilities(rgb) - rewritten.probabilities(rgb)).max()
            <= deform_bake.PROBABILITY_TOLERANCE
        )


def test_a_partial_rewrite_keeps_the_original(tmp_path: Path, probes: list[Path]) -> None:
    # GIVEN the second deformable convolution's clip bound off by one: only the first would match
    model = onnx.load(str(TINY))
    clip = [node for node in model.graph.node if node.op_type == "Clip"][6]
    bound = next(node for node in model.graph.node if node.output[0] == clip.input[2])
    bound.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(bound.attribute[0].t) - 1))
    source = tmp_path / "half.onnx"
    onnx.save(model, str(source))
    # WHEN baked
    bake(settings_for(source), tmp_path / "model", probes)
    # THEN the original chains are baked, and the manifest says why
    record = json.loads((tmp_path / "model" / "model.json").read_text())["native_deform"]
    assert record["applied"] is False
    assert record["reason"].startswith("rewrote 1 of the 2 decomposed chains")
    assert "DeformConv" not in ops(tmp_path / "model" / "model.onnx")


def test_a_rewrite_whose_outputs_differ_is_not_kept(
    tmp_path: Path, probes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a rewrite that gets one layer wrong (its padding off by one: a plausible slip)
    import handler.core.bake.chain_replace as chain_replace

    real = chain_replace.deform_node

    def off_by_one(graph: onnx.GraphProto, match: object, names: set[str]) -> onnx.NodeProto:
        node = real(graph, match, names)  # type: ignore[arg-type]
        pads = next(a for a in node.attribute if a.name == "pads")
        pads.ints[:] = [0, 0, 2, 2]  # same output size, samples shifted by one pixel
        return node

    monkeypatch.setattr(chain_replace, "deform_node", off_by_one)
    # WHEN baked
    bake(settings_for(TINY), tmp_path / "model", probes)
    # THEN the check catches it and the original is baked
    record = json.loads((tmp_path / "model" / "model.json").read_text())["native_deform"]
    assert record["applied"] is False
    assert record["reason"].startswith("outputs differ by")
    assert record["check"]["max_probability_difference"] > record["check"]["tolerance"]
    assert "DeformConv" not in ops(tmp_path / "model" / "model.onnx")


def test_a_graph_without_deformable_convolutions_is_baked_as_it_is(tmp_path: Path, probes: list[Path]) -> None:
    source = tmp_path / "plain.onnx"
    onnx.save(graphs.channel_affine(0, 1.0, 0.0, size=64), str(source))
    bake(settings_for(source), tmp_path / "model", probes)
    record = json.loads((tmp_path / "model" / "model.json").read_text())["native_deform"]
    assert record["applied"] is False
    assert record["reason"] == "no decomposed deformable convolutions in this graph"


def test_without_onnx_installed_the_original_is_baked(
    tmp_path: Path, probes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runtime image has no onnx: a bake there (or from a plain pip install) keeps the original.
    monkeypatch.delitem(sys.modules, "handler.core.bake.rewrite", raising=False)
    real_import = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnx" or name.startswith("onnx."):
            raise ModuleNotFoundError("No module named 'onnx'", name="onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    bake(settings_for(TINY), tmp_path / "model", probes)
    monkeypatch.undo()
    record = json.loads((tmp_path / "model" / "model.json").read_text())["native_deform"]
    assert record["applied"] is False
    assert "No module named 'onnx'" in record["reason"]
    assert "DeformConv" not in ops(tmp_path / "model" / "model.onnx")


def test_without_probe_photos_the_original_is_baked(tmp_path: Path) -> None:
    bake(settings_for(TINY), tmp_path / "model", probes=[])
    record = json.loads((tmp_path / "model" / "model.json").read_text())["native_deform"]
    assert record["applied"] is False
    assert record["reason"].startswith("no probe photos")
