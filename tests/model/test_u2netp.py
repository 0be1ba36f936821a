"""The real, trained U-2-Net-p on real photos, through the public `mask()` and `remove()`.

The criterion: on each sample photo, regions that are plainly subject have a mean mask value
above 200, regions that are plainly background (image corners away from the subject) a mean below
40, and the share of foreground pixels (mask >= 128) is in a range that fits the photo. The
regions were chosen by looking at the photos and the masks (samples/SOURCES.md names the subjects);
they are fractions of the image size: (left, top, right, bottom).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import handler.local.background as background
from handler.core.image.compose import foreground_box
from handler.core.image.decode import ImageSource
from handler.core.model.session import BackgroundModel
from handler.local.background import mask, remove

SUBJECT_MIN_MEAN = 200
BACKGROUND_MAX_MEAN = 40

Region = tuple[float, float, float, float]


@dataclass(frozen=True)
class Expectation:
    subject: list[Region]
    background: list[Region]
    foreground_share: tuple[float, float]


EXPECTATIONS = {
    # a person in a space suit; the flag and shuttle model behind her, her suit fills the bottom
    "astronaut": Expectation(
        subject=[(0.38, 0.18, 0.48, 0.28), (0.25, 0.65, 0.50, 0.85)],  # face; mission patch on the suit
        background=[(0.0, 0.0, 0.15, 0.15), (0.85, 0.0, 1.0, 0.15)],  # the two top corners
        foreground_share=(0.35, 0.80),
    ),
    # a cat's face filling most of the frame; the room, out of focus, on the right
    "chelsea": Expectation(
        subject=[(0.35, 0.25, 0.65, 0.65)],  # eyes and nose
        background=[(0.88, 0.30, 1.0, 1.0)],  # the right edge below the ear
        foreground_share=(0.40, 0.85),
    ),
    # a cup on a saucer on a wooden table
    "coffee": Expectation(
        subject=[(0.38, 0.30, 0.55, 0.60)],  # the coffee in the cup
        background=[(0.0, 0.0, 0.15, 0.15), (0.85, 0.0, 1.0, 0.15), (0.0, 0.85, 0.15, 1.0), (0.85, 0.85, 1.0, 1.0)],
        foreground_share=(0.30, 0.65),
    ),
}


def region_mean(mask_pixels: np.ndarray, region: Region) -> float:
    height, width = mask_pixels.shape
    left, top, right, bottom = region
    rows = slice(round(top * height), round(bottom * height))
    columns = slice(round(left * width), round(right * width))
    return float(mask_pixels[rows, columns].mean())


@pytest.fixture(scope="module")
def masks(u2netp: BackgroundModel, samples: dict[str, Path]) -> dict[str, Image.Image]:
    return {name: mask(samples[name], model=u2netp) for name in EXPECTATIONS}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_subject_is_foreground_and_background_is_not(
    masks: dict[str, Image.Image], samples: dict[str, Path], name: str
) -> None:
    # GIVEN a sample photo WHEN masked by the real model
    found = masks[name]
    with Image.open(samples[name]) as photo:
        assert found.mode == "L" and found.size == photo.size
    pixels = np.asarray(found)
    expectation = EXPECTATIONS[name]

    # THEN the subject is kept, the background removed, and the subject's size is plausible
    for region in expectation.subject:
        assert region_mean(pixels, region) > SUBJECT_MIN_MEAN, f"subject region {region}"
    for region in expectation.background:
        assert region_mean(pixels, region) < BACKGROUND_MAX_MEAN, f"background region {region}"
    low, high = expectation.foreground_share
    assert low <= float((pixels >= 128).mean()) <= high


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_subject_box_covers_the_subject_regions(masks: dict[str, Image.Image], name: str) -> None:
    box = foreground_box(masks[name])
    assert box is not None
    width, height = masks[name].size

    for left, top, right, bottom in EXPECTATIONS[name].subject:
        assert box.left <= left * width and box.top <= top * height
        assert box.left + box.width >= right * width and box.top + box.height >= bottom * height


# -- the public functions accept every kind of source ---------------------------------------------


SOURCES: dict[str, Callable[[Path], ImageSource]] = {
    "path": lambda path: path,
    "bytes": Path.read_bytes,
    "pil": lambda path: Image.open(io.BytesIO(path.read_bytes())),
}


@pytest.fixture(scope="module")
def cat(samples: dict[str, Path]) -> Path:
    return samples["chelsea"]  # 451x300: not square, so a swapped width and height would show


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_mask_accepts_paths_bytes_and_pil_images(
    u2netp: BackgroundModel, masks: dict[str, Image.Image], cat: Path, kind: str
) -> None:
    found = mask(SOURCES[kind](cat), model=u2netp)

    assert found.mode == "L" and found.size == (451, 300)
    assert found.tobytes() == masks["chelsea"].tobytes()


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_remove_accepts_paths_bytes_and_pil_images(
    u2netp: BackgroundModel, masks: dict[str, Image.Image], cat: Path, kind: str
) -> None:
    cutout = remove(SOURCES[kind](cat), model=u2netp)

    assert cutout.mode == "RGBA" and cutout.size == (451, 300)
    assert cutout.getchannel("A").tobytes() == masks["chelsea"].tobytes()


@pytest.fixture
def model_from_environment(monkeypatch: pytest.MonkeyPatch, u2netp_path: Path) -> Iterator[None]:
    """The deployment's way: the model named by MODEL_PATH, loaded once per process."""
    monkeypatch.setenv("MODEL_PATH", str(u2netp_path))
    monkeypatch.setenv("MODEL_OUTPUT", "probabilities")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    background.load_model.cache_clear()
    yield
    background.load_model.cache_clear()


@pytest.mark.usefixtures("model_from_environment")
def test_without_a_model_argument_the_environments_model_is_loaded_once(
    masks: dict[str, Image.Image], cat: Path
) -> None:
    cutout = remove(cat)
    found = mask(cat)

    assert background.load_model.cache_info().misses == 1
    assert background.default_model().input_size == (320, 320)
    assert found.tobytes() == cutout.getchannel("A").tobytes() == masks["chelsea"].tobytes()
