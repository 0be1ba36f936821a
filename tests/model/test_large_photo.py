"""A 50 MP phone photo (the 48/50 MP modes) within the default pixel limit, through the whole pipeline."""

from __future__ import annotations

import io
from typing import cast

import numpy as np
import pytest
from PIL import Image

from handler.core.image.limits import DEFAULT_MAX_INPUT_PIXELS, ImageLimits
from handler.core.image.options import RenderOptions
from handler.core.model.session import BackgroundModel
from handler.core.model.settings import ModelSpec
from handler.core.render import process
from tests import graphs
from tests.graphs import GraphModel

FIFTY_MP = (8660, 5774)  # 50.0 MP, 3:2


@pytest.fixture(scope="module")
def fifty_megapixel_jpeg() -> bytes:
    """Red rises left to right (the test graph's mask follows red); made in memory, a few MB."""
    width, height = FIFTY_MP
    row = np.linspace(0, 255, width).astype(np.uint8)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = row
    pixels[..., 1] = 90
    pixels[..., 2] = 160
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def test_a_50_megapixel_photo_gives_full_size_outputs(
    graph_model: GraphModel, fifty_megapixel_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert FIFTY_MP[0] * FIFTY_MP[1] <= DEFAULT_MAX_INPUT_PIXELS
    model = graph_model(graphs.channel_affine(0, 1.0, 0.0), ModelSpec(output="probabilities"))
    releases = _watch_releases(model, monkeypatch)

    result = process(fifty_megapixel_jpeg, ["cutout", "mask"], RenderOptions(), model, ImageLimits())

    # the model's working memory went back before the photo's own work began: it did not add to it
    assert releases == [True]

    assert result.input_size == FIFTY_MP
    for kind in ("cutout", "mask"):
        rendered = result.outputs[kind]
        assert (rendered.width, rendered.height) == FIFTY_MP
        with Image.open(io.BytesIO(rendered.data)) as image:
            assert image.size == FIFTY_MP and image.mode == ("RGBA" if kind == "cutout" else "L")
            # the mask follows red: clear on the left edge, opaque on the right
            alpha = image.getchannel("A") if kind == "cutout" else image
            left, right = cast(int, alpha.getpixel((0, 2000))), cast(int, alpha.getpixel((FIFTY_MP[0] - 1, 2000)))
            assert left <= 2 and right >= 253


def test_a_12_megapixel_photo_keeps_the_model_s_memory_for_the_next(
    graph_model: GraphModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its buffers fit beside the model's, and taking the memory back costs the next run its page faults.
    model = graph_model(graphs.channel_affine(0, 1.0, 0.0), ModelSpec(output="probabilities"))
    releases = _watch_releases(model, monkeypatch)

    process(Image.new("RGB", (4000, 3000), (200, 90, 160)), ["mask"], RenderOptions(), model, ImageLimits())

    assert releases == [False]


def _watch_releases(model: BackgroundModel, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each run's `release_memory`, as the model is asked."""
    releases: list[bool] = []
    infer = model.infer

    def watched(tensor: np.ndarray, *, release_memory: bool = False) -> np.ndarray:
        releases.append(release_memory)
        return infer(tensor, release_memory=release_memory)

    monkeypatch.setattr(model, "infer", watched)
    return releases
