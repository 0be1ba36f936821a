"""The command line, run as users run it: `python -m handler remove|mask ...` in a subprocess.

The model is a test-made graph (dynamic size, run at 64x64 so each call is quick) whose mask
follows the red channel, so outputs can be compared with the in-process `mask()`; one test runs
the real U-2-Net-p on a sample photo.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handler.core.model.settings import ModelSpec
from handler.local.background import mask
from tests.composites import changed_edge_pixels
from tests.graphs import GraphModel
from tests.helpers.cli import INPUT_SIZE, Cli, opened, photo, red_graph, save


@pytest.fixture
def red_model(graph_model: GraphModel) -> Callable[[Path], Image.Image]:
    """The in-process mask the CLI's output must match."""
    model = graph_model(red_graph(), ModelSpec(input_size=INPUT_SIZE))
    return lambda path: mask(path, model=model)


@pytest.fixture
def photo_tree(tmp_path: Path) -> dict[str, Path]:
    """photos/ with images at three depths, in three formats, and files that are not images."""
    root = tmp_path / "photos"
    images = {
        "a": save(photo(40, 30, 1), root / "a.jpg", quality=95),
        "sub/b": save(photo(25, 35, 2).convert("RGBA"), root / "sub" / "b.png"),
        "sub/deeper/c": save(photo(33, 21, 3), root / "sub" / "deeper" / "c.webp", lossless=True),
    }
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "model.onnx").write_bytes(b"not an image either")
    return images


def test_folder_cutouts_keep_the_relative_paths(cli: Cli, tmp_path: Path, photo_tree: dict[str, Path]) -> None:
    # GIVEN a folder of images in subfolders WHEN cutting out the folder
    result = cli("remove", "photos", "-o", "cutouts")

    # THEN each image has a PNG cutout at the same relative path, and nothing else was written
    assert result.code == 0, result.stderr
    assert not result.stderr_lines
    written = sorted(path.relative_to(tmp_path / "cutouts").as_posix() for path in (tmp_path / "cutouts").rglob("*.*"))
    assert written == sorted(f"{name}.png" for name in photo_tree)
    for name, source in photo_tree.items():
        cutout = opened(tmp_path / "cutouts" / f"{name}.png")
        assert cutout.format == "PNG" and cutout.mode == "RGBA" and cutout.size == opened(source).size


def test_folder_masks_match_the_library(
    cli: Cli, tmp_path: Path, photo_tree: dict[str, Path], red_model: Callable[[Path], Image.Image]
) -> None:
    result = cli("mask", "photos")  # default output folder: ./masks

    assert result.code == 0, result.stderr
    for name, source in photo_tree.items():
        written = opened(tmp_path / "masks" / f"{name}.png")
        assert written.mode == "L"
        assert written.tobytes() == red_model(source).tobytes()


@pytest.mark.parametrize(
    ("command", "output", "fmt", "mode"),
    [
        ("remove", "out.png", "PNG", "RGBA"),
        ("remove", "out.webp", "WEBP", "RGBA"),
        ("mask", "result/m.png", "PNG", "L"),
        ("mask", "m.webp", "WEBP", "RGB"),  # WebP has no single-band mode: grey comes back as RGB
    ],
)
def test_single_input_writes_the_named_file(
    cli: Cli, tmp_path: Path, command: str, output: str, fmt: str, mode: str
) -> None:
    # GIVEN one image and an output file name WHEN run
    save(photo(50, 20, 4), tmp_path / "in.jpg")
    result = cli(command, "in.jpg", "-o", output)

    # THEN that file is written in the format its suffix names, and its path is printed
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == output
    written = opened(tmp_path / output)
    assert (written.format, written.mode, written.size) == (fmt, mode, (50, 20))


@pytest.mark.parametrize(("flags", "refined"), [((), True), (("--refine",), True), (("--no-refine",), False)])
def test_edge_colour_is_refined_unless_no_refine(
    cli: Cli, tmp_path: Path, flags: tuple[str, ...], refined: bool
) -> None:
    # GIVEN a photo whose red channel (the test model's mask) ramps, so its edge is soft
    pixels = np.asarray(photo(60, 40, 7)).copy()
    pixels[..., 0] = np.linspace(0, 255, 60, dtype=np.uint8)
    save(Image.fromarray(pixels, "RGB"), tmp_path / "in.png")

    # WHEN cut out
    result = cli("remove", "in.png", "-o", "out.png", *flags)

    # THEN partial pixels get an estimated foreground colour unless --no-refine
    assert result.code == 0, result.stderr
    changed = changed_edge_pixels(opened(tmp_path / "in.png"), opened(tmp_path / "out.png"))
    assert (changed > 0) == refined, changed


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("broken.jpg", None, id="truncated"),
        pytest.param("notes.png", b"this is text, not a PNG\n", id="not-an-image"),
        pytest.param("empty.webp", b"", id="empty"),
    ],
)
def test_an_unreadable_file_fails_alone(
    cli: Cli, tmp_path: Path, photo_tree: dict[str, Path], name: str, content: bytes | None
) -> None:
    # GIVEN a folder of good images and one bad file among them
    if content is None:
        good = io.BytesIO()
        photo(64, 64, 9).save(good, "JPEG")
        content = good.getvalue()[: len(good.getvalue()) // 2]
    (tmp_path / "photos" / name).write_bytes(content)

    # WHEN the folder is processed
    result = cli("remove", "photos", "-o", "out")

    # THEN the run fails with exactly one error line naming the bad file, and the rest is written
    assert result.code == 1
    assert len(result.stderr_lines) == 1, result.stderr
    assert result.stderr_lines[0].startswith("error: ") and name in result.stderr_lines[0]
    assert all((tmp_path / "out" / f"{image}.png").is_file() for image in photo_tree)
    assert not (tmp_path / "out" / f"{Path(name).stem}.png").exists()


def test_a_missing_explicit_input_fails_alone(cli: Cli, tmp_path: Path) -> None:
    save(photo(20, 20, 5), tmp_path / "here.png")

    result = cli("mask", "here.png", "gone.jpg", "-o", "out")

    assert result.code == 1
    assert len(result.stderr_lines) == 1 and result.stderr_lines[0].startswith("error: gone.jpg")
    assert (tmp_path / "out" / "here.png").is_file()


def test_format_webp_for_a_folder(cli: Cli, tmp_path: Path, photo_tree: dict[str, Path]) -> None:
    result = cli("remove", "photos", "-o", "out", "--format", "webp")

    assert result.code == 0, result.stderr
    for name in photo_tree:
        written = opened(tmp_path / "out" / f"{name}.webp")
        assert written.format == "WEBP" and written.mode == "RGBA"
    assert not list((tmp_path / "out").rglob("*.png"))


def test_a_format_that_contradicts_the_output_name_is_refused(cli: Cli, tmp_path: Path) -> None:
    save(photo(20, 20, 5), tmp_path / "here.png")

    result = cli("remove", "here.png", "-o", "cut.png", "--format", "webp")

    assert result.code != 0
    assert "--format webp does not match" in result.stderr
    assert not (tmp_path / "cut.png").exists()


def test_outputs_inside_the_input_folder_are_not_taken_as_inputs(
    cli: Cli, tmp_path: Path, photo_tree: dict[str, Path]
) -> None:
    # GIVEN a first run that wrote its cutouts inside the input folder
    assert cli("remove", "photos", "-o", "photos/cutouts").code == 0

    # WHEN the same command runs again
    result = cli("remove", "photos", "-o", "photos/cutouts")

    # THEN it cut out the same images again, and no cutout of a cutout appeared
    assert result.code == 0, result.stderr
    written = sorted(
        p.relative_to(tmp_path / "photos" / "cutouts").as_posix()
        for p in (tmp_path / "photos" / "cutouts").rglob("*.*")
    )
    assert written == sorted(f"{name}.png" for name in photo_tree)


def test_the_input_byte_limit_applies(cli: Cli, tmp_path: Path) -> None:
    small = save(photo(8, 8, 6), tmp_path / "small.png")
    large = save(photo(64, 64, 7), tmp_path / "large.png")
    limit = small.stat().st_size
    assert large.stat().st_size > limit

    result = cli("mask", "small.png", "large.png", "-o", "out", MAX_INPUT_BYTES=str(limit))

    assert result.code == 1
    assert len(result.stderr_lines) == 1 and "large.png" in result.stderr_lines[0]
    assert "limit" in result.stderr_lines[0]
    assert (tmp_path / "out" / "small.png").is_file() and not (tmp_path / "out" / "large.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("remove", "empty-folder"), "no image files", id="no-images"),
        pytest.param(("remove", "in.png", "--model-path", "absent.onnx"), "absent.onnx", id="missing-model"),
    ],
)
def test_nothing_to_do_or_no_model_is_one_error_line(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "empty-folder").mkdir()
    save(photo(8, 8, 8), tmp_path / "in.png")

    result = cli(*args)

    assert result.code == 1
    assert len(result.stderr_lines) == 1 and result.stderr_lines[0].startswith("error: ")
    assert message in result.stderr_lines[0]


def test_real_model_cuts_out_the_cup(cli: Cli, tmp_path: Path, u2netp_path: Path, samples: dict[str, Path]) -> None:
    # GIVEN the real U-2-Net-p, configured as a deployment would be
    result = cli(
        "remove",
        str(samples["coffee"]),
        "-o",
        "cup.png",
        MODEL_PATH=str(u2netp_path),
        MODEL_OUTPUT="probabilities",
        MODEL_INPUT_SIZE="",
    )

    # THEN the cup is opaque and the table corners transparent
    assert result.code == 0, result.stderr
    alpha = np.asarray(opened(tmp_path / "cup.png").getchannel("A"))
    assert alpha.shape == (400, 600)
    assert alpha[120:240, 228:330].mean() > 200
    assert max(alpha[:60, :90].mean(), alpha[:60, -90:].mean(), alpha[-60:, :90].mean(), alpha[-60:, -90:].mean()) < 40
