"""Events for the jobs entry point, and reading what it stored and reported."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SAMPLES = ROOT / "samples"

INPUT_PREFIX = "uploads/"
CANONICAL_KEY = "uploads/holiday photos/beach (1).jpg"  # the key the events/ files name
CANONICAL_OUTPUTS = ("cutouts/holiday photos/beach (1).png", "masks/holiday photos/beach (1).png")
BOX = re.compile(r"^\d+,\d+,\d+,\d+$")


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def upload(s3: Any, bucket: str, key: str, sample: str = "astronaut.jpg", **extra: Any) -> str:
    """Store a sample photo (or `Body=...`) at `key`; returns its ETag as S3 reports it, unquoted."""
    body = extra.pop("Body", None)
    if body is None:
        body = (SAMPLES / sample).read_bytes()
    response = s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return response["ETag"].strip('"')


def s3_put(bucket: str, key: str) -> dict[str, Any]:
    """events/s3_put.json for `key`, encoded the way S3 notifications encode keys."""
    event = load("s3_put.json")
    s3 = event["Records"][0]["s3"]
    s3["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    s3["object"]["key"] = quote_plus(key, safe="/")
    return event


def eventbridge(bucket: str, key: str) -> dict[str, Any]:
    """events/eventbridge_object_created.json for `key`, sent as is."""
    event = load("eventbridge_object_created.json")
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    return event


def sqs(*bodies: Any) -> dict[str, Any]:
    """An SQS batch (shaped like events/sqs_s3_notification.json), one message per body."""
    template = load("sqs_s3_notification.json")["Records"][0]
    records = []
    for number, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"message-{number}"
        record["body"] = body if isinstance(body, str) else json.dumps(body)
        records.append(record)
    return {"Records": records}


def batch_operations(version: str, bucket: str, key: str) -> dict[str, Any]:
    """events/batch_operations_v1.json (key URL-encoded) or _v2.json (key as is) for `key`."""
    event = load("batch_operations_v1.json" if version == "1.0" else "batch_operations_v2.json")
    task = event["tasks"][0]
    if version == "1.0":
        task.update(s3BucketArn=f"arn:aws:s3:::{bucket}", s3Key=quote(key, safe="/"))
    else:
        task.update(s3Bucket=bucket, s3Key=key)
    return event


def keys_in(s3: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def head(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return s3.head_object(Bucket=bucket, Key=key)


def image(s3: Any, bucket: str, key: str) -> Image.Image:
    picture = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    picture.load()
    return picture


def emf(out: str) -> list[dict[str, Any]]:
    """The EMF metric documents printed to stdout."""
    documents = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def metric_total(documents: list[dict[str, Any]], name: str) -> float:
    total = 0.0
    for document in documents:
        value = document.get(name)
        if value is not None:
            total += sum(value) if isinstance(value, list) else value
    return total


def error_codes(documents: list[dict[str, Any]]) -> list[str]:
    return [document["code"] for document in documents if "Errors" in document]


def sample_size(name: str) -> tuple[int, int]:
    with Image.open(SAMPLES / name) as picture:
        return picture.size


# What the outcome log lines say, by object; compared between the two modes.
OUTCOME_MESSAGES = {
    "object processed",
    "outputs already match this object; skipped",
    "object is under the output location; not processed (recursive loop guard)",
    "object is in the upload flow's folder; not processed",
    "upload not processed",
    "upload not processed; its result has failed",
    "object not processed; it will not be retried",
    "object not processed; it will be retried",
}


def s3_puts(bucket: str, keys: list[str]) -> dict[str, Any]:
    """One S3 notification with a record per key (S3 sends one, but the format allows many)."""
    event = s3_put(bucket, keys[0])
    event["Records"] = [s3_put(bucket, key)["Records"][0] for key in keys]
    return event
