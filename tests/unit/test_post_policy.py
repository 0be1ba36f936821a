"""The local S3's check of browser-form uploads (handler/local/post_policy.py) against forms signed by
botocore's own generate_presigned_post, as POST /uploads signs them: what S3 accepts passes, and
each way S3 refuses a form is refused with S3's code. No network: signing is local."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config

from handler.local.post_policy import Refused, check_form

SECRETS = {"local": "local"}
BUCKET = "uploads-bucket"
KEY = "uploads/api-uploads/0123456789abcdef0123456789abcdef"


def _signed(secret: str = "local", **extra: Any) -> dict[str, str]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="local",
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4"),  # as handler.aws.storage signs
    )
    fields = {"Content-Type": "image/jpeg", "x-amz-meta-options": '{"format":"webp"}'}
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    conditions.append(["content-length-range", 1, 1000])
    signed = client.generate_presigned_post(BUCKET, KEY, Fields=fields, Conditions=conditions, ExpiresIn=60, **extra)
    return {name.lower(): value for name, value in signed["fields"].items()}


def _check(fields: dict[str, str], size: int = 10, *, now: datetime | None = None, bucket: str = BUCKET) -> None:
    check_form(bucket, fields, size, SECRETS, now or datetime.now(UTC))


def test_a_form_as_signed_passes() -> None:
    _check(_signed())


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"content-type": "text/html"}, "AccessDenied"),
        ({"x-amz-meta-options": "{}"}, "AccessDenied"),
        ({"key": "uploads/elsewhere"}, "AccessDenied"),
        ({"x-amz-meta-extra": "1"}, "AccessDenied"),  # a field no condition names
        ({"x-amz-signature": "0" * 64}, "SignatureDoesNotMatch"),
    ],
)
def test_a_changed_form_is_refused(change: dict[str, str], code: str) -> None:
    with pytest.raises(Refused) as refused:
        _check({**_signed(), **change})
    assert refused.value.code == code


def test_sizes_outside_the_range_are_refused() -> None:
    fields = _signed()
    with pytest.raises(Refused) as large:
        _check(fields, 1001)
    with pytest.raises(Refused) as empty:
        _check(fields, 0)
    assert (large.value.status, large.value.code) == (400, "EntityTooLarge")
    assert (empty.value.status, empty.value.code) == (400, "EntityTooSmall")


def test_another_bucket_a_wrong_secret_and_an_expired_policy_are_refused() -> None:
    with pytest.raises(Refused, match="bucket"):
        _check(_signed(), bucket="another-bucket")
    with pytest.raises(Refused) as wrong_secret:
        _check(_signed(secret="not-the-secret"))
    with pytest.raises(Refused, match="expired"):
        _check(_signed(), now=datetime.now(UTC) + timedelta(minutes=2))
    assert wrong_secret.value.code == "SignatureDoesNotMatch"
