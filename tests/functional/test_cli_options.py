"""The command line's output options, at parity with the API's: run as users run it, in a subprocess.

The test model's mask follows the red channel (red 255: subject, red 0: background), so a picture
with a red square on a red-free ground has a subject whose box and colours a person can predict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handler.core.errors import InvalidParameter
from handler.core.image.options import parse_options
from tests.helpers.cli import Cli, opened, save

# The subject: a red square at [20, 40) x [12, 32) in a 64 x 48 picture (the model runs at 64 x 64).
SQUARE = (20, 12, 40, 32)


def square_picture(path: Path) -> Path:
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[..., 2] = 200  # a blue ground: no red, so background
    left, top, right, bottom = SQUARE
    pixels[top:bottom, left:right] = (255, 255, 255)
    return save(Image.fromarray(pixels, "RGB"), path)


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    return square_picture(tmp_path / "in.png")


@pytest.mark.parametrize("colour", ["#00ff00", "00ff00", "00FF00", "#0f0", "lime"])
def test_bg_color_fills_the_background_of_a_jpeg(cli: Cli, tmp_path: Path, picture: Path, colour: str) -> None:
    # WHEN cut out to JPEG over green, the colour written as the API takes it
    result = cli("remove", "in.png", "-o", "out.jpg", "--bg-color", colour)

    # THEN an opaque JPEG: green where the ground was, the subject's own white inside the square
    assert result.code == 0, result.stderr
    out = opened(tmp_path / "out.jpg")
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (64, 48))
    pixels = np.asarray(out).astype(int)
    assert np.abs(pixels[2, 2] - (0, 255, 0)).max() < 12
    assert np.abs(pixels[22, 30] - (255, 255, 255)).max() < 12


def test_format_jpeg_for_a_folder(cli: Cli, tmp_path: Path) -> None:
    square_picture(tmp_path / "photos" / "a.png")
    square_picture(tmp_path / "photos" / "sub" / "b.webp")

    result = cli("remove", "photos", "-o", "out", "--format", "jpeg", "--bg-color", "#ffffff")

    assert result.code == 0, result.stderr
    written = sorted(path.relative_to(tmp_path / "out").as_posix() for path in (tmp_path / "out").rglob("*.*"))
    assert written == ["a.jpg", "sub/b.jpg"]
    assert all(opened(tmp_path / "out" / name).format == "JPEG" for name in written)


def test_crop_and_margin(cli: Cli, tmp_path: Path, picture: Path) -> None:
    # WHEN cut out whole, cropped, and cropped with a margin in pixels and in percent
    runs = {
        "whole": (),
        "crop": ("--crop",),
        "px": ("--crop", "--margin", "5px"),
        "pct": ("--crop", "--margin", "25%"),
    }
    sizes = {}
    for name, flags in runs.items():
        result = cli("remove", "in.png", "-o", f"{name}.png", *flags)
        assert result.code == 0, result.stderr
        sizes[name] = opened(tmp_path / f"{name}.png").size

    # THEN the crop is about the square, and each margin adds the same room on every side
    assert sizes["whole"] == (64, 48)
    width, height = sizes["crop"]
    assert abs(width - 20) <= 2 and abs(height - 20) <= 2
    assert sizes["px"] == (width + 10, height + 10)
    margin = round(0.25 * max(width, height))
    assert sizes["pct"] == (width + 2 * margin, height + 2 * margin)


@pytest.mark.parametrize("command", ["remove", "mask"])
def test_max_size_scales_down_never_up(cli: Cli, tmp_path: Path, picture: Path, command: str) -> None:
    small = cli(command, "in.png", "-o", "small.png", "--max-size", "32")
    large = cli(command, "in.png", "-o", "large.png", "--max-size", "1000")

    assert small.code == 0 and large.code == 0, small.stderr + large.stderr
    assert opened(tmp_path / "small.png").size == (32, 24)
    assert opened(tmp_path / "large.png").size == (64, 48)


def test_mask_is_written_beside_the_cutout(cli: Cli, tmp_path: Path, picture: Path) -> None:
    # GIVEN the mask made on its own
    assert cli("mask", "in.png", "-o", "alone.png", "--crop").code == 0

    # WHEN a cutout is made with --mask (cropped, so the mask must follow the same crop)
    result = cli("remove", "in.png", "-o", "cut.png", "--crop", "--mask")

    # THEN both are written, both paths printed, and the mask is the one `mask` makes
    assert result.code == 0, result.stderr
    assert result.stdout.split() == ["cut.png", "cut-mask.png"]
    cutout, mask = opened(tmp_path / "cut.png"), opened(tmp_path / "cut-mask.png")
    assert (cutout.mode, mask.mode) == ("RGBA", "L") and cutout.size == mask.size
    assert mask.tobytes() == opened(tmp_path / "alone.png").tobytes()


def test_mask_for_a_folder_sits_beside_each_cutout(cli: Cli, tmp_path: Path) -> None:
    square_picture(tmp_path / "photos" / "a.png")
    square_picture(tmp_path / "photos" / "sub" / "b.jpg")

    result = cli("remove", "photos", "-o", "out", "--mask", "--format", "webp")

    assert result.code == 0, result.stderr
    written = sorted(path.relative_to(tmp_path / "out").as_posix() for path in (tmp_path / "out").rglob("*.*"))
    assert written == ["a-mask.webp", "a.webp", "sub/b-mask.webp", "sub/b.webp"]


@pytest.mark.parametrize(
    ("flags", "raw"),
    [
        pytest.param(("--bg-color", "zz"), {"bg_color": "zz"}, id="bad-colour"),
        pytest.param(("--format", "gif"), {"format": "gif"}, id="bad-format"),
        pytest.param(("--max-size", "0"), {"max_size": "0"}, id="zero-size"),
        pytest.param(("--resolution", "123"), {"resolution": "123"}, id="bad-resolution"),
        pytest.param(("--crop", "--margin", "200%"), {"crop": "true", "margin": "200%"}, id="bad-margin"),
        pytest.param(("--margin", "5"), {"margin": "5"}, id="margin-without-crop"),
    ],
)
def test_a_value_the_api_refuses_is_refused_with_its_words(
    cli: Cli, tmp_path: Path, picture: Path, flags: tuple[str, ...], raw: dict[str, str]
) -> None:
    # GIVEN what the API's parser says of the same value
    with pytest.raises(InvalidParameter) as refused:
        parse_options(raw, "cutout")
    api = refused.value

    # WHEN the command line is given it
    result = cli("remove", "in.png", "-o", "out.png", *flags)

    # THEN one line, the API's message under the flag's name, a usage status, and nothing written
    flag = "--" + api.parameter.replace("_", "-")
    assert result.code == 2
    assert result.stderr_lines == [f"error: {flag}: {api.message.removeprefix(api.parameter + ': ')}"]
    assert not (tmp_path / "out.png").exists()


def test_jpeg_without_a_background_colour_names_the_flag(cli: Cli, tmp_path: Path, picture: Path) -> None:
    result = cli("remove", "in.png", "-o", "out.jpg")

    assert result.code == 2
    assert result.stderr_lines == [
        "error: --bg-color: JPEG has no transparency: give a background colour (#rrggbb) or use png/webp"
    ]
    assert not (tmp_path / "out.jpg").exists()


def test_a_mask_may_be_a_jpeg(cli: Cli, tmp_path: Path, picture: Path) -> None:
    result = cli("mask", "in.png", "-o", "m.jpg")

    assert result.code == 0, result.stderr
    assert opened(tmp_path / "m.jpg").format == "JPEG"
