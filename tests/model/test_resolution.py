"""`resolution`: the model's input size per request, for exports whose input size is dynamic.

The graphs are 1x1 convolutions, so the output has the input tensor's size and a spy on
`BackgroundModel.infer` sees exactly what onnxruntime was given.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from handler.core import render
from handler.core.errors import InvalidParameter
from handler.core.image import decode
from handler.core.image.limits import ImageLimits
from handler.core.image.options import RenderOptions, parse_options
from handler.core.model.session import BackgroundModel
from handler.core.model.settings import ModelSpec
from handler.core.render import process
from tests import graphs
from tests.graphs import GraphModel

LIMITS = ImageLimits()


def _jpeg(size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _tensor_shapes(model: BackgroundModel, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Record the shape of every tensor the model is run on."""
    shapes: list[tuple[int, ...]] = []
    run = model.infer

    def spy(tensor: np.ndarray, *, release_memory: bool = False) -> np.ndarray:
        shapes.append(tensor.shape)
        return run(tensor, release_memory=release_memory)

    monkeypatch.setattr(model, "infer", spy)
    return shapes


@pytest.fixture
def dynamic(graph_model: GraphModel) -> BackgroundModel:
    return graph_model(graphs.channel_affine(0, 1.0, 0.0, size=None), ModelSpec(output="probabilities"))


@pytest.mark.parametrize(("resolution", "side"), [(None, 1024), ("512", 512), ("768", 768), ("1024", 1024)])
def test_resolution_sets_the_input_tensor_of_a_dynamic_graph(
    dynamic: BackgroundModel, monkeypatch: pytest.MonkeyPatch, resolution: str | None, side: int
) -> None:
    shapes = _tensor_shapes(dynamic, monkeypatch)
    options = parse_options({} if resolution is None else {"resolution": resolution})

    result = process(_jpeg((300, 200)), ["cutout", "mask"], options, dynamic, LIMITS)

    assert shapes == [(1, 3, side, side)]  # one inference for both outputs, at the asked size
    assert (result.outputs["mask"].width, result.outputs["mask"].height) == (300, 200)  # outputs stay full size


def test_the_deployment_default_is_model_input_size(graph_model: GraphModel, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a deployment whose default for the dynamic graph is 96 (MODEL_INPUT_SIZE)
    model = graph_model(graphs.channel_affine(0, 1.0, 0.0, size=None), ModelSpec(output="probabilities", input_size=96))
    shapes = _tensor_shapes(model, monkeypatch)

    process(_jpeg((40, 30)), ["mask"], RenderOptions(), model, LIMITS)
    process(_jpeg((40, 30)), ["mask"], RenderOptions(resolution=512), model, LIMITS)

    # THEN a request without resolution gets it, and one with resolution overrides it
    assert shapes == [(1, 3, 96, 96), (1, 3, 512, 512)]


def test_the_draft_decode_of_a_large_jpeg_follows_the_resolution(
    dynamic: BackgroundModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 4000x3000 JPEG is drafted for the model at no less than 1.4x the model's size: at 512 that
    # is libjpeg's 1/4 scale (1000x750), at 1024 only 1/2 (2000x1500).
    drafts: list[tuple[int, int] | None] = []
    load = decode.load_model_input

    def spy(*args: Any) -> Image.Image | None:
        small = load(*args)
        drafts.append(None if small is None else small.size)
        return small

    monkeypatch.setattr(render, "load_model_input", spy)
    photo = _jpeg((4000, 3000))

    for resolution in (512, 1024):
        process(photo, ["mask"], RenderOptions(resolution=resolution), dynamic, LIMITS)

    assert drafts == [(1000, 750), (2000, 1500)]


def test_a_fixed_size_graph_refuses_another_resolution_before_decoding(graph_model: GraphModel) -> None:
    fixed = graph_model(graphs.constant(0.0))  # 1024x1024, as BiRefNet's default export

    # its own size is accepted
    assert fixed.size_for(1024) == (1024, 1024)
    # any other is a 400 naming the parameter and the graph's size, before the (here invalid) image is read
    with pytest.raises(InvalidParameter, match="1024x1024") as refused:
        process(b"not an image", ["cutout"], RenderOptions(resolution=512), fixed, LIMITS)
    assert refused.value.message.startswith("resolution:")
