"""A baked model carries its contract in its manifest: the image needs no MODEL_* settings of its own.

The bake is run as the image build runs it (`bake()`, what `python -m handler download --output`
calls) on test-made graphs; the baked file is then loaded the way the functions load it, with only
MODEL_PATH and MODEL_OFFLINE set (the Dockerfile's ENV).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handler.core.bake.run import bake
from handler.core.errors import ConfigurationError
from handler.core.model.session import BackgroundModel, load_model
from handler.core.model.settings import ModelSettings
from tests import graphs
from tests.graphs import GraphFile

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _baked(graph_file: GraphFile, tmp_path: Path, graph: object, **build_env: str) -> Path:
    source = graph_file(graph)  # type: ignore[arg-type]
    settings = ModelSettings.from_env({"MODEL_PATH": str(source), "MODEL_THREADS": "1", **build_env})
    return Path(bake(settings, tmp_path / "opt-model", probes=[SAMPLES / "coffee.jpg"]).path)


def _as_the_image_loads_it(path: Path, **env: str) -> BackgroundModel:
    return load_model(
        ModelSettings.from_env({"MODEL_PATH": str(path), "MODEL_OFFLINE": "1", "MODEL_THREADS": "1", **env})
    )


def test_the_build_settings_travel_with_the_baked_model(graph_file: GraphFile, tmp_path: Path) -> None:
    # GIVEN a dynamic-input model baked with its own normalisation and size, and an explicit
    # MODEL_OUTPUT=probabilities that its graph (a plain Conv) could not reveal
    baked = _baked(
        graph_file,
        tmp_path,
        graphs.constant(0.25, size=None),
        MODEL_MEAN="0.5,0.5,0.5",
        MODEL_STD="0.25 0.25 0.25",
        MODEL_INPUT_SIZE="48",
        MODEL_OUTPUT="probabilities",
    )

    # THEN the manifest records them next to the content hash
    manifest = json.loads((baked.parent / "model.json").read_text())
    assert manifest["contract"] == {
        "output": "probabilities",
        "bounded_by": None,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "input": {"width": 48, "height": 48, "dynamic": True},
    }
    assert manifest["sha256"] and manifest["file"] == "model.onnx"

    # WHEN the image loads it with none of those settings
    model = _as_the_image_loads_it(baked)

    # THEN it runs at the baked size, normalised as baked, its output taken as probabilities
    assert model.input_size == (48, 48)
    tensor = model.preprocess(Image.new("RGB", (5, 5), (255, 0, 128)))
    np.testing.assert_allclose(tensor[0, :, 0, 0], [2.0, -2.0, (128 / 255 - 0.5) / 0.25], atol=1e-5)
    assert float(model.probabilities(Image.new("RGB", (5, 5))).max()) == pytest.approx(0.25)


def test_settings_at_run_time_still_override_the_manifest(graph_file: GraphFile, tmp_path: Path) -> None:
    baked = _baked(graph_file, tmp_path, graphs.constant(0.0, size=None), MODEL_MEAN="0.5,0.5,0.5")

    model = _as_the_image_loads_it(baked, MODEL_MEAN="0,0,0", MODEL_INPUT_SIZE="32")

    assert model.input_size == (32, 32)
    assert model.contract.mean == (0.0, 0.0, 0.0)


def test_a_sigmoid_graph_is_recorded_as_probabilities_and_logits_refused_at_run_time(
    graph_file: GraphFile, tmp_path: Path
) -> None:
    from onnx import helper

    sigmoid = graphs.ending_in(
        graphs.constant(-6.0, size=16), [helper.make_node("Sigmoid", [graphs.PRE_TAIL], [graphs.OUTPUT_NAME])]
    )
    baked = _baked(graph_file, tmp_path, sigmoid)

    contract = json.loads((baked.parent / "model.json").read_text())["contract"]
    assert (contract["output"], contract["bounded_by"], contract["input"]) == (
        "probabilities",
        "Sigmoid",
        {"width": 16, "height": 16, "dynamic": False},
    )
    with pytest.raises(ConfigurationError, match="MODEL_OUTPUT=logits"):
        _as_the_image_loads_it(baked, MODEL_OUTPUT="logits")


def test_a_malformed_contract_in_the_manifest_is_a_clear_error(graph_file: GraphFile, tmp_path: Path) -> None:
    baked = _baked(graph_file, tmp_path, graphs.constant(0.0, size=16))
    manifest_path = baked.parent / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["contract"]["output"] = "maybe"
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(ConfigurationError, match=r"model\.json has a malformed 'contract'"):
        _as_the_image_loads_it(baked)
