"""A swapped model in the image needs no settings of its own: its contract travels in model.json.

The real U-2-Net-p (it ends in a sigmoid) is baked into the image root by the image's own build
step with MODEL_PATH only — no MODEL_OUTPUT anywhere — and the API function then runs under
awslambdaric in the sandbox (emulator/), with the template's environment, as Lambda runs it.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from emulator import configuration, events, runner
from emulator.bench import Bench
from emulator.images import cached_image
from emulator.local_s3 import LocalS3

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "lambda-runtime-tests"

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


def test_u2netp_baked_without_model_output_gives_a_clear_background(
    u2netp_path: Path, samples: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN an image built with U-2-Net-p as its model and no other model setting
    image = cached_image(CACHE / "image-u2netp", step_env={"MODEL_PATH": str(u2netp_path)})
    contract = json.loads((image.root / "opt" / "model" / "model.json").read_text())["contract"]
    assert (contract["output"], contract["bounded_by"]) == ("probabilities", "Sigmoid")

    # WHEN the API function masks a photo
    event = json.loads((ROOT / "events" / "api_v2_mask.json").read_text())
    event["body"] = base64.b64encode(samples["coffee"].read_bytes()).decode()
    resources = runner.local_buckets([], events.env_vars(ROOT / "local-env.json"))
    with LocalS3() as s3:
        runner.stage(s3, [], [], [resources["OutputBucket"]])
        bench = Bench(
            image, s3, tmp_path, template=configuration.load_template(ROOT / "template.yaml"), resources=resources
        )
        try:
            result = bench.function(runner.API_FUNCTION).invoke(json.dumps(event).encode())
        finally:
            bench.close()

    # THEN the cup is foreground and the table corners background: the output was not put
    # through a second sigmoid (which would make every pixel 128..186)
    assert result.status == 200 and result.function_error is None, result.payload[:2000]
    document = result.document
    assert document["statusCode"] == 200, document.get("body")
    alpha = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(document["body"]))))
    assert alpha[120:240, 228:330].mean() > 200
    assert alpha[:40, :40].max() < 30 and alpha[-40:, -40:].max() < 30
