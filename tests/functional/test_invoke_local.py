"""`python -m handler invoke`: every file in events/ runs as it is with `--local`, and a function that
fails on its settings or on S3 ends in one `error:` line, not a traceback.

Run as users run it, in a subprocess, with the test graph the command line tests use; `--local`
starts its own S3 (moto) on 127.0.0.1, and the failure cases point S3 at a closed port there.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.graphs import GraphFile
from tests.helpers.cli import CHILD_TIMEOUT_S, child_env, red_graph

ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted((ROOT / "events").glob("*.json"))


@pytest.fixture
def env(graph_file: GraphFile) -> dict[str, str]:
    environ = child_env(graph_file(red_graph()))
    # Whatever the developer's shell points AWS at must not decide these runs.
    return {name: value for name, value in environ.items() if not name.startswith(("AWS_", "OUTPUT_", "INPUT_"))}


def invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", "invoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


# The API events whose right answer is not 200 OK.
API_STATUS = {"api_v2_uploads.json": 201, "api_v2_results.json": 404}


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: S3 calls there are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stored_images(folder: Path) -> dict[str, tuple[str | None, str]]:
    """(format, mode) of every file under `folder`, by its path relative to it."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix != ".json":  # results/<id>.json: POST /uploads' records
            with Image.open(path) as image:
                found[path.relative_to(folder).as_posix()] = (image.format, image.mode)
    return found


@pytest.mark.parametrize("event", EVENTS, ids=[path.stem for path in EVENTS])
def test_every_event_file_runs_with_local(env: dict[str, str], tmp_path: Path, event: Path) -> None:
    # WHEN the event file is invoked as it is, against the embedded S3
    outputs = tmp_path / "outputs"
    run = invoke(env, "--local", str(event), "--outputs", str(outputs))

    # THEN it succeeds without a traceback, stdout is the function's response alone
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    response: dict[str, Any] = json.loads(run.stdout)
    stored = stored_images(outputs) if outputs.exists() else {}
    document = json.loads(event.read_text())
    if "statusCode" in response:  # the API: an answer, nothing stored
        # events/api_v2_results.json asks for an id no upload made here: the route's own 404 is its answer
        assert response["statusCode"] == API_STATUS.get(event.name, 200), response.get("body")
        assert stored == {}
        return
    # AND the jobs function found the object the event names and stored its cutout and mask
    if document.get("Event") == "s3:TestEvent":
        assert response["ignored"] == 1 and stored == {}
        return
    if "batchItemFailures" in response:
        assert response["batchItemFailures"] == []
    elif "results" in response:
        assert [result["resultCode"] for result in response["results"]] == ["Succeeded"]
    else:
        assert response["failed"] == 0 and response["processed"] >= 1
    seeded = run.stderr.count("invoke --local: stored a sample photo at s3://")
    cutouts = {name.removeprefix("cutouts/"): kind for name, kind in stored.items() if name.startswith("cutouts/")}
    masks = {name.removeprefix("masks/"): kind for name, kind in stored.items() if name.startswith("masks/")}
    assert seeded >= 1 and len(cutouts) == seeded and len(stored) == 2 * seeded
    assert cutouts.keys() == masks.keys()
    assert set(cutouts.values()) == {("PNG", "RGBA")} and set(masks.values()) == {("PNG", "L")}


def test_a_key_that_names_no_sample_gets_one(env: dict[str, str], tmp_path: Path) -> None:
    # GIVEN an S3 notification for a PNG key that names no sample
    event = json.loads((ROOT / "events" / "s3_put.json").read_text())
    event["Records"][0]["s3"]["object"]["key"] = "uploads/shop+item.png"
    path = tmp_path / "png_put.json"
    path.write_text(json.dumps(event))

    run = invoke(env, "--local", str(path), "--outputs", str(tmp_path / "outputs"))

    # THEN a photo was stored under that key, and the function cut it out
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["processed"] == 1, summary
    assert (tmp_path / "outputs" / "cutouts" / "uploads" / "shop item.png").is_file()


def test_missing_output_bucket_is_one_error_line(env: dict[str, str]) -> None:
    # WHEN a jobs event is invoked without --local and without OUTPUT_BUCKET
    run = invoke(env, str(ROOT / "events" / "s3_put.json"))

    # THEN one line names the setting, and no traceback
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[-1].startswith("error: configuration_error: OUTPUT_BUCKET must be set")
    assert [line for line in lines if not line.startswith("{")] == lines[-1:]


@pytest.mark.parametrize("name", ["s3_put", "eventbridge_object_created", "sqs_s3_notification"])
def test_unreachable_s3_is_one_error_line(env: dict[str, str], name: str) -> None:
    # GIVEN S3 at a closed port on 127.0.0.1
    env = {
        **env,
        "OUTPUT_BUCKET": "results",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{closed_port()}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_MAX_ATTEMPTS": "1",
    }

    run = invoke(env, str(ROOT / "events" / f"{name}.json"))

    # THEN the function's structured logs, then one error line, and no traceback
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert "storage_unavailable: S3 could not be reached" in lines[-1] and lines[-1].startswith("error: ")
    assert [line for line in lines if not line.startswith("{")] == lines[-1:]
