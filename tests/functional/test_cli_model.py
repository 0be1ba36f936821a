"""The command line with a swapped model: what the model says about itself is what the cutout follows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.cli import ROOT, Cli, opened


def test_u2netp_from_model_path_alone_gives_an_opaque_subject_and_a_clear_background(
    cli: Cli, tmp_path: Path, u2netp_path: Path, samples: dict[str, Path]
) -> None:
    # GIVEN the real U-2-Net-p (it ends in a sigmoid) as MODEL_PATH, and no MODEL_OUTPUT
    result = cli("remove", str(samples["coffee"]), "-o", "cup.png", MODEL_PATH=str(u2netp_path), MODEL_INPUT_SIZE="")

    # THEN the cup is opaque and the table corners are transparent, not everything half-way
    assert result.code == 0, result.stderr
    alpha = np.asarray(opened(tmp_path / "cup.png").getchannel("A"))
    assert alpha[120:240, 228:330].mean() > 200
    assert alpha[:40, :40].max() < 30 and alpha[-40:, -40:].max() < 30


def test_model_output_logits_for_u2netp_is_one_error_line_and_no_output(
    cli: Cli, tmp_path: Path, u2netp_path: Path, samples: dict[str, Path]
) -> None:
    result = cli(
        "remove",
        str(samples["coffee"]),
        "-o",
        "cup.png",
        MODEL_PATH=str(u2netp_path),
        MODEL_OUTPUT="logits",
        MODEL_INPUT_SIZE="",
    )

    assert result.code == 1
    assert len(result.stderr_lines) == 1 and result.stderr_lines[0].startswith("error: MODEL_OUTPUT=logits")
    assert not (tmp_path / "cup.png").exists()


def test_the_model_describes_itself_without_the_onnx_package(
    cli: Cli, tmp_path: Path, u2netp_path: Path, samples: dict[str, Path]
) -> None:
    # GIVEN a Python where `import onnx` fails, as in the image (onnx is a build and test tool only)
    blocker = tmp_path / "no-onnx" / "onnx"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('onnx is not installed here')\n")

    # WHEN U-2-Net-p is run from MODEL_PATH alone
    result = cli(
        "remove",
        str(samples["coffee"]),
        "-o",
        "cup.png",
        MODEL_PATH=str(u2netp_path),
        MODEL_INPUT_SIZE="",
        PYTHONPATH=f"{blocker.parent}:{ROOT}",
    )

    # THEN its graph still says it returns probabilities
    assert result.code == 0, result.stderr
    alpha = np.asarray(opened(tmp_path / "cup.png").getchannel("A"))
    assert alpha[:40, :40].max() < 30
