"""`python -m handler invoke EVENT_FILE`: the events/ files through their entry points, no Docker.

Run as users run it, in a subprocess, against the local S3 on 127.0.0.1, once with the real
U-2-Net-p and once with a test-made graph of BiRefNet's exact contract.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from PIL import Image

from tests import graphs
from tests.graphs import GraphFile

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def invoke(event: Path, env: dict[str, str], *extra: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "handler", "invoke", str(event), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # stdout is the Lambda response alone (logs and metrics go to stderr), so it parses as JSON.
    return json.loads(result.stdout), result


@pytest.fixture
def function_env(aws_env: str, u2netp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MODEL_PATH": str(u2netp_path),
        "MODEL_OUTPUT": "probabilities",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def test_api_event_prints_the_response_and_writes_the_body(function_env: dict[str, str], tmp_path: Path) -> None:
    body = tmp_path / "mask.png"

    response, run = invoke(EVENTS / "api_v2_mask.json", function_env, "--body-output", str(body))

    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    mask = Image.open(body)
    assert mask.format == "PNG" and mask.mode == "L"
    assert mask.size == (int(response["headers"]["X-Width"]), int(response["headers"]["X-Height"]))
    assert "ImagesProcessed" in run.stderr  # the EMF metrics went to stderr


@pytest.mark.parametrize("model", ["u2netp", "test_made_birefnet_contract"])
def test_s3_put_event_writes_cutout_and_mask(
    model: str,
    function_env: dict[str, str],
    s3: Any,
    graph_file: GraphFile,
    new_bucket: Callable[[str], str],
) -> None:
    # GIVEN the sample event's bucket and (URL-encoded) key, with a photo uploaded there
    event = json.loads((EVENTS / "s3_put.json").read_text())
    record = event["Records"][0]["s3"]
    bucket, key = record["bucket"]["name"], unquote_plus(record["object"]["key"])
    if bucket not in {entry["Name"] for entry in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=(ROOT / "samples" / "coffee.jpg").read_bytes())
    output = new_bucket("invoke-results")
    env = {**function_env, "OUTPUT_BUCKET": output, "INPUT_BUCKET": bucket, "INPUT_PREFIX": "uploads/"}
    if model != "u2netp":
        # Logit = 8 * (green/255) - 4: a mask a person can predict, through BiRefNet's contract.
        env.update(MODEL_PATH=str(graph_file(graphs.channel_affine(1, 8.0, -4.0))), MODEL_OUTPUT="logits")

    # WHEN the event file is invoked as is
    summary, _ = invoke(EVENTS / "s3_put.json", env)

    # THEN both outputs exist at the documented keys, at the photo's size
    assert summary["processed"] == 1 and summary["failed"] == 0
    stem = key.removeprefix("uploads/").rsplit(".", 1)[0]
    for folder, mode in (("cutouts", "RGBA"), ("masks", "L")):
        stored = s3.get_object(Bucket=output, Key=f"{folder}/{stem}.png")
        image = Image.open(io.BytesIO(stored["Body"].read()))
        assert (image.mode, image.size) == (mode, (600, 400))
        assert stored["Metadata"]["source-key"]
