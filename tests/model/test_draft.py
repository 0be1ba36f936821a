"""Large JPEGs reach the model through a reduced (draft) decode; the result must match the full path."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from handler.core import render
from handler.core.image import decode
from handler.core.image.decode import load_model_input, load_picture
from handler.core.image.limits import ImageLimits
from handler.core.image.options import RenderOptions
from handler.core.model.session import BackgroundModel
from handler.local.background import segment

LIMITS = ImageLimits()


def _jpeg(image: Image.Image, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def large_photo(samples: dict[str, Path]) -> Image.Image:
    return Image.open(samples["chelsea"]).convert("RGB").resize((2400, 1600), Image.Resampling.BICUBIC)


def test_the_model_input_of_a_large_jpeg_is_drafted_but_kept_well_above_the_model_size(
    u2netp: BackgroundModel, large_photo: Image.Image
) -> None:
    small = load_model_input(_jpeg(large_photo), LIMITS, u2netp.input_size)

    assert small is not None and small.mode == "RGB"
    assert small.size == (1200, 800)  # libjpeg's 1/2 scale: 1/4 (600x400) would fall under 1.4 x 320
    assert min(small.size) >= 1.4 * min(u2netp.input_size)


def test_draft_keeps_the_exif_orientation(u2netp: BackgroundModel, large_photo: Image.Image) -> None:
    # Orientation 6: stored landscape, shown portrait.
    small = load_model_input(_jpeg(large_photo, orientation=6), LIMITS, u2netp.input_size)

    assert small is not None and small.size == (800, 1200)


@pytest.mark.parametrize("kind", ["png", "small_jpeg", "pil"])
def test_no_draft_where_it_does_not_apply(u2netp: BackgroundModel, large_photo: Image.Image, kind: str) -> None:
    source: object
    if kind == "png":
        buffer = io.BytesIO()
        large_photo.save(buffer, "PNG")
        source = buffer.getvalue()
    elif kind == "small_jpeg":
        source = _jpeg(large_photo.resize((400, 300)))
    else:
        source = large_photo

    assert load_model_input(source, LIMITS, u2netp.input_size) is None


def test_the_drafted_path_gives_the_full_path_mask(u2netp: BackgroundModel, large_photo: Image.Image) -> None:
    # GIVEN a large JPEG, and its mask computed from the full-resolution decode
    data = _jpeg(large_photo)
    full = np.asarray(segment(load_picture(data, LIMITS), u2netp), dtype=np.int16)

    # WHEN the pipeline runs it (draft decode for the model, full decode alongside)
    result = render.process(data, ["mask"], RenderOptions(), u2netp, LIMITS)
    drafted = np.asarray(Image.open(io.BytesIO(result.outputs["mask"].data)), dtype=np.int16)

    # THEN the masks agree: same size, under one grey level apart on average, same subject
    assert drafted.shape == full.shape == (1600, 2400)
    assert np.abs(drafted - full).mean() < 1.0
    overlap = ((drafted > 127) & (full > 127)).sum() / ((drafted > 127) | (full > 127)).sum()
    assert overlap > 0.99


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "PNG"])
def test_other_formats_are_opened_once_for_the_model_and_the_cutout(
    u2netp: BackgroundModel, large_photo: Image.Image, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a large non-JPEG photo (opening a GIF or TIFF walks its frames for the frame limit)
    buffer = io.BytesIO()
    large_photo.save(buffer, fmt)
    opened: list[int] = []
    real_open = decode.open_image

    def counting_open(*args: Any, **kwargs: Any) -> Image.Image:
        opened.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(decode, "open_image", counting_open)
    # WHEN it is cut out
    result = render.process(buffer.getvalue(), ["cutout"], RenderOptions(refine=False), u2netp, LIMITS)
    # THEN it was opened once, by the full decode alone
    assert result.input_size == large_photo.size
    assert len(opened) == 1


def test_a_large_jpeg_path_still_gets_its_draft(
    u2netp: BackgroundModel, large_photo: Image.Image, tmp_path: Path
) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(_jpeg(large_photo))

    small = load_model_input(path, LIMITS, u2netp.input_size)

    assert small is not None and small.size[0] < large_photo.size[0]
