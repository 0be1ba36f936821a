"""The S3 jobs function on phone photos: HEIC uploads, and metadata kept only when configured."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.exif import LATITUDE, latitude, phone_exif
from tests.helpers.jobs import INPUT_PREFIX, image, keys_in, s3_put, upload

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def _phone_photo(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 120, 40)).save(buffer, fmt, exif=phone_exif().tobytes(), quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(("setting", "kept"), [(None, False), ("0", False), ("1", True)])
def test_jobs_keep_metadata_only_when_configured(
    deploy: Any, s3: Any, invoke: Any, setting: str | None, kept: bool
) -> None:
    # GIVEN a HEIC upload with a GPS position, and JOBS_KEEP_METADATA unset, off or on
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, JOBS_KEEP_METADATA=setting)
    upload(s3, deployment.input_bucket, "uploads/phone.heic", Body=_phone_photo("HEIF"))

    invoke(s3_put(deployment.input_bucket, "uploads/phone.heic"))

    # THEN both outputs are made; only the cutout may carry the position, and only when configured
    assert keys_in(s3, deployment.output_bucket) == ["cutouts/phone.png", "masks/phone.png"]
    cutout = image(s3, deployment.output_bucket, "cutouts/phone.png")
    assert cutout.size == (48, 32)
    assert latitude(cutout) == (LATITUDE if kept else None)
    assert len(image(s3, deployment.output_bucket, "masks/phone.png").getexif()) == 0
