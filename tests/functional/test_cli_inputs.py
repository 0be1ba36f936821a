"""Phone and camera inputs through the command line: HEIC/AVIF files, --keep-metadata, --resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import graphs
from tests.exif import LATITUDE, ORIENTATION, latitude, phone_exif
from tests.graphs import GraphFile
from tests.helpers.cli import Cli, opened, photo, save


@pytest.mark.parametrize(("fmt", "suffix"), [("HEIF", "heic"), ("AVIF", "avif")])
def test_phone_photos_in_a_folder_are_cut_out_upright(cli: Cli, tmp_path: Path, fmt: str, suffix: str) -> None:
    # GIVEN a folder with a phone photo stored sideways (40x30, orientation 6)
    save(
        photo(40, 30, 7), tmp_path / "photos" / f"phone.{suffix}", format=fmt, quality=90, exif=phone_exif(6).tobytes()
    )

    result = cli("remove", "photos", "-o", "cutouts")

    # THEN it was found by its suffix and cut out upright, without its GPS position
    assert result.code == 0, result.stderr
    cutout = opened(tmp_path / "cutouts" / "phone.png")
    assert cutout.size == (30, 40)
    assert latitude(cutout) is None and len(cutout.getexif()) == 0


def test_keep_metadata_copies_exif(cli: Cli, tmp_path: Path) -> None:
    save(photo(40, 30, 8), tmp_path / "phone.jpg", quality=90, exif=phone_exif(6))

    result = cli("remove", "phone.jpg", "-o", "cutout.webp", "--keep-metadata")

    assert result.code == 0, result.stderr
    cutout = opened(tmp_path / "cutout.webp")
    assert latitude(cutout) == LATITUDE and cutout.getexif()[ORIENTATION] == 1


def test_resolution_runs_a_dynamic_model(cli: Cli, tmp_path: Path) -> None:
    save(photo(40, 30, 9), tmp_path / "a.png")

    result = cli("mask", "a.png", "-o", "a-mask.png", "--resolution", "512")

    assert result.code == 0, result.stderr
    assert opened(tmp_path / "a-mask.png").size == (40, 30)


def test_resolution_on_a_fixed_size_model_fails_once_naming_its_size(
    cli: Cli, tmp_path: Path, graph_file: GraphFile
) -> None:
    for name in ("a", "b"):
        save(photo(20, 20, 10), tmp_path / "photos" / f"{name}.png")
    fixed = graph_file(graphs.constant(0.0, size=64))

    result = cli("remove", "photos", "--resolution", "768", MODEL_PATH=str(fixed), MODEL_INPUT_SIZE="")

    assert result.code == 1
    assert result.stderr_lines == [
        "error: resolution: this model's input is fixed at 64x64; resolution applies only to dynamic-input models"
    ]
    assert not (tmp_path / "cutouts").exists()
