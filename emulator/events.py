"""The sample events in events/: which entry point takes each, how Lambda invokes it, and which
S3 objects it names (so the local S3 can hold them).

Keys are decoded as each envelope encodes them: S3 notifications and Batch Operations schema 1.0
URL-encode keys form-style; EventBridge and schema 2.0 send them as stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

API = "api"
JOBS = "jobs"


def load(path: Path) -> dict[str, Any]:
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, dict), f"{path}: an event is a JSON object"
    return loaded


def event_files(events_dir: Path) -> list[Path]:
    return sorted(events_dir.glob("*.json"))


def env_vars(path: Path) -> dict[str, dict[str, str]]:
    """Function logical id (or "Parameters") -> variables, from a `sam local invoke --env-vars`
    file (the repository's local-env.json), so both local runs name the same buckets."""
    document = load(path)
    return {name: {key: str(value) for key, value in values.items()} for name, values in document.items()}


def entry_point(event: Mapping[str, Any]) -> str:
    """API Gateway (REST v1, HTTP v2) and Function URL events go to the API; the rest to jobs."""
    if "httpMethod" in event or "rawPath" in event or "routeKey" in event:
        return API
    return JOBS


def synchronous(event: Mapping[str, Any]) -> bool:
    """API Gateway, SQS pollers and Batch Operations invoke and wait; S3 and EventBridge invoke
    asynchronously (another payload limit, and nobody reads the response)."""
    if entry_point(event) == API or "invocationSchemaVersion" in event:
        return True
    records = event.get("Records") or []
    return bool(records) and records[0].get("eventSource") == "aws:sqs"


def objects(event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(bucket, key as stored) for each object the event names."""
    for record in event.get("Records") or []:
        if record.get("eventSource") == "aws:sqs":
            yield from objects(json.loads(record["body"]))
        elif "s3" in record:
            yield record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])
    detail = event.get("detail")
    if isinstance(detail, dict) and "bucket" in detail and "object" in detail:
        yield detail["bucket"]["name"], detail["object"]["key"]
    schema = event.get("invocationSchemaVersion")
    for task in event.get("tasks") or []:
        bucket = task.get("s3Bucket") or task["s3BucketArn"].split(":::", 1)[1]
        yield bucket, unquote_plus(task["s3Key"]) if schema == "1.0" else task["s3Key"]


def buckets(event: Mapping[str, Any]) -> set[str]:
    """Every bucket the event names, objects or not (an s3:TestEvent names only its bucket)."""
    named = {bucket for bucket, _ in objects(event)}
    if isinstance(event.get("Bucket"), str):
        named.add(event["Bucket"])
    for resource in event.get("resources") or []:
        if isinstance(resource, str) and resource.startswith("arn:aws:s3:::"):
            named.add(resource.removeprefix("arn:aws:s3:::"))
    return named
