"""BiRefNet's model contract, end to end through onnxruntime, on graphs whose masks are known.

The graphs (tests/graphs.py) are 1x1 convolutions that undo the ImageNet normalisation of one
channel and map the raw pixel value to a logit. The expected mask is computed here in float64
numpy from the picture alone; the only shared step is Pillow's bilinear resize, which is the
contract itself (squash to the model size, and back to the picture's size).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from handler.core.errors import ConfigurationError, ModelUnavailable
from handler.core.image.decode import load_picture
from handler.core.model.session import BackgroundModel, load_model
from handler.core.model.settings import ModelSettings, ModelSpec
from handler.local.background import segment
from tests import graphs
from tests.graphs import GraphFile, GraphModel

# Rounding to 8 bits is the only loss: the float32 pipeline must be within one grey level.
TOLERANCE = 1.0
# logit = 10·x/255 - 5 spans -5..5: probabilities 0.7%..99.3%, the sigmoid's whole useful range.
SLOPE, INTERCEPT = 10.0, -5.0
PICTURE_SIZE = (300, 200)  # not square: a crop or letterbox instead of a squash would show

Probability = Callable[[np.ndarray], np.ndarray]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def affine_logits(channel: int, slope: float = SLOPE, intercept: float = INTERCEPT) -> Probability:
    return lambda squashed: sigmoid(slope * squashed[..., channel] / 255.0 + intercept)


def logit_graph(channel: int, *, size: int | None = graphs.BIREFNET_SIZE) -> onnx.ModelProto:
    return graphs.channel_affine(channel, SLOPE, INTERCEPT, size=size)


def expected_mask(picture: Image.Image, probability: Probability, size: int = graphs.BIREFNET_SIZE) -> np.ndarray:
    """The mask (as float grey levels) that the contract defines for `picture`."""
    squashed = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)
    at_model_size = Image.fromarray(probability(squashed).astype(np.float32), "F")
    return np.asarray(at_model_size.resize(picture.size, Image.Resampling.BILINEAR), dtype=np.float64) * 255.0


def mask_of(model: BackgroundModel, picture: Image.Image) -> Image.Image:
    """The mask the pipeline makes of an opaque RGB picture with `model`."""
    return segment(load_picture(picture), model)


def assert_mask(mask: Image.Image, expected: np.ndarray) -> None:
    assert mask.mode == "L"
    assert mask.size == (expected.shape[1], expected.shape[0])
    difference = np.abs(np.asarray(mask, dtype=np.float64) - expected)
    assert difference.max() <= TOLERANCE, f"max difference {difference.max():.2f} grey levels"


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    """Three independent channels: a horizontal ramp, a vertical ramp, and a fine 2-D wave."""
    width, height = PICTURE_SIZE
    x = np.linspace(0.0, 1.0, width)[None, :]
    y = np.linspace(0.0, 1.0, height)[:, None]
    red = np.broadcast_to(255.0 * x, (height, width))
    green = np.broadcast_to(255.0 * y, (height, width))
    blue = 127.5 + 127.5 * np.sin(40.0 * x) * np.cos(25.0 * y)
    return Image.fromarray(np.round(np.stack([red, green, blue], axis=-1)).astype(np.uint8), "RGB")


# -- pre-processing -----------------------------------------------------------------------------


def test_preprocess_squashes_scales_normalises_and_goes_nchw(graph_model: GraphModel, picture: Image.Image) -> None:
    model = graph_model(graphs.constant(0.0))

    tensor = model.preprocess(picture)

    squashed = np.asarray(picture.resize((1024, 1024), Image.Resampling.BILINEAR), dtype=np.float64)
    normalised = (squashed / 255.0 - np.array(graphs.IMAGENET_MEAN)) / np.array(graphs.IMAGENET_STD)
    assert tensor.shape == (1, 3, 1024, 1024)
    assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
    np.testing.assert_allclose(tensor[0], normalised.transpose(2, 0, 1), atol=1e-5)


def test_preprocess_refuses_a_non_rgb_image(graph_model: GraphModel) -> None:
    with pytest.raises(ValueError, match="RGB"):
        graph_model(graphs.constant(0.0)).preprocess(Image.new("RGBA", (4, 4)))


# -- logits → mask ----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [0, 1, 2], ids=["red", "green", "blue"])
def test_logit_graph_mask_matches_the_hand_computed_mask(
    graph_model: GraphModel, picture: Image.Image, channel: int
) -> None:
    # GIVEN BiRefNet's exact contract at 1024x1024, logits an affine function of one channel
    model = graph_model(logit_graph(channel))
    assert (model.input_name, model.output_name, model.input_size) == ("input_image", "output_image", (1024, 1024))

    # WHEN masking a non-square picture
    mask = mask_of(model, picture)

    # THEN it is sigmoid(logits) resized back to the picture's size, within one grey level
    expected = expected_mask(picture, affine_logits(channel))
    assert expected.min() < 30 and expected.max() > 225  # the comparison covers the whole range
    assert_mask(mask, expected)


@pytest.mark.parametrize(
    ("slope", "intercept"),
    [(1.0, 0.0), (2.0, -0.5)],  # the second leaves [0, 1] on both sides: clipped, not stretched
    ids=["in-range", "out-of-range"],
)
def test_probability_graph_is_used_without_sigmoid(
    graph_model: GraphModel, picture: Image.Image, slope: float, intercept: float
) -> None:
    model = graph_model(graphs.channel_affine(0, slope, intercept), ModelSpec(output="probabilities"))

    mask = mask_of(model, picture)

    def clipped(squashed: np.ndarray) -> np.ndarray:
        return np.clip(slope * squashed[..., 0] / 255.0 + intercept, 0.0, 1.0)

    assert_mask(mask, expected_mask(picture, clipped))


# -- no min-max stretch ---------------------------------------------------------------------------


@pytest.mark.parametrize(("logit", "grey"), [(-6.0, 1), (0.0, 128), (6.0, 254)])
def test_constant_logits_give_a_constant_mask(
    graph_model: GraphModel, picture: Image.Image, logit: float, grey: int
) -> None:
    # GIVEN a model that sees no subject anywhere (or the same certainty everywhere)
    model = graph_model(graphs.constant(logit))

    # WHEN masking THEN every pixel is sigmoid(logit), not stretched to the full 0..255 range
    assert round(255 * float(sigmoid(np.array(logit, dtype=np.float64)))) == grey
    assert np.unique(np.asarray(mask_of(model, picture))).tolist() == [grey]


def test_faint_varying_logits_stay_faint(graph_model: GraphModel, picture: Image.Image) -> None:
    # GIVEN logits between -8 and -6: a picture without a subject, with a little structure
    model = graph_model(graphs.channel_affine(0, 2.0, -8.0))

    mask = np.asarray(mask_of(model, picture))

    # THEN the mask stays near 0 (a min-max stretch would turn it into a full 0..255 ramp)
    assert mask.max() <= 1


# -- input size: read from the graph, fixed or dynamic ---------------------------------------------


@pytest.mark.parametrize(("override", "size"), [(None, 1024), (64, 64), (512, 512)])
def test_dynamic_graph_uses_the_configured_size_or_1024(
    graph_model: GraphModel, picture: Image.Image, override: int | None, size: int
) -> None:
    model = graph_model(logit_graph(1, size=None), ModelSpec(input_size=override))

    assert model.input_size == (size, size)
    assert_mask(mask_of(model, picture), expected_mask(picture, affine_logits(1), size))


def test_model_input_size_setting_reaches_a_dynamic_graph(graph_file: GraphFile, picture: Image.Image) -> None:
    # GIVEN the environment of a deployment with a dynamic-size export
    path = graph_file(logit_graph(2, size=None))
    settings = ModelSettings.from_env({"MODEL_PATH": str(path), "MODEL_INPUT_SIZE": "96", "MODEL_THREADS": "1"})

    # WHEN the model is loaded as the entry points do
    model = load_model(settings)

    # THEN it runs at the configured size
    assert model.input_size == (96, 96)
    assert_mask(mask_of(model, picture), expected_mask(picture, affine_logits(2), 96))


def test_fixed_size_is_read_from_the_graph(graph_model: GraphModel, picture: Image.Image) -> None:
    model = graph_model(logit_graph(0, size=320))

    assert model.input_size == (320, 320)
    assert_mask(mask_of(model, picture), expected_mask(picture, affine_logits(0), 320))


@pytest.mark.parametrize("override", [512, 1023, 2048])
def test_fixed_size_graph_refuses_a_conflicting_override(graph_file: GraphFile, override: int) -> None:
    path = graph_file(graphs.constant(0.0))

    with pytest.raises(ConfigurationError, match=f"MODEL_INPUT_SIZE={override}.*1024x1024"):
        BackgroundModel.load(path, ModelSpec(input_size=override))


def test_fixed_size_graph_accepts_its_own_size_as_override(graph_model: GraphModel) -> None:
    assert graph_model(graphs.constant(0.0), ModelSpec(input_size=1024)).input_size == (1024, 1024)


# -- loading ------------------------------------------------------------------------------------


def test_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="not found"):
        BackgroundModel.load(tmp_path / "absent.onnx")


def test_a_file_that_is_not_onnx_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"<html>404 Not Found</html>")

    with pytest.raises(ModelUnavailable, match="cannot load"):
        BackgroundModel.load(path)
