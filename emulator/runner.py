"""Events through functions: the local S3 staged with what the events name, each event sent to
its entry point the way Lambda would send it, and a one-line account of each outcome."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator import events
from emulator.function import InvokeResult, LambdaFunction
from emulator.local_s3 import LocalS3

API_FUNCTION = "ApiFunction"
JOBS_FUNCTION = "JobsFunction"
FUNCTION_FOR = {events.API: API_FUNCTION, events.JOBS: JOBS_FUNCTION}


def stage(
    s3: LocalS3, event_paths: Iterable[Path], samples: Iterable[Path], extra_buckets: Iterable[str]
) -> dict[tuple[str, str], Path]:
    """Create every bucket the events name (and `extra_buckets`); put a sample photo at every key."""
    documents = [events.load(path) for path in event_paths]
    s3.create_buckets(*sorted({bucket for event in documents for bucket in events.buckets(event)} | set(extra_buckets)))
    photos = sorted(samples)
    named = sorted({ref for event in documents for ref in events.objects(event)})
    placed = {ref: photos[index % len(photos)] for index, ref in enumerate(named)}
    s3.put_objects({ref: photo.read_bytes() for ref, photo in placed.items()})
    return placed


def local_buckets(event_paths: Iterable[Path], env_vars: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Template bucket ids -> local names: the env-vars file's, else the input bucket the events
    name and an output bucket named after it."""
    named = sorted({bucket for path in event_paths for bucket in events.buckets(events.load(path))})
    configured = {name: value for values in env_vars.values() for name, value in values.items()}
    input_bucket = configured.get("INPUT_BUCKET") or (named[0] if named else "background-remover-uploads")
    output_bucket = configured.get("OUTPUT_BUCKET") or f"{input_bucket.removesuffix('-uploads')}-outputs"
    return {"InputBucket": input_bucket, "OutputBucket": output_bucket}


@dataclass(frozen=True)
class Run:
    event: Path
    function: str
    result: InvokeResult


def run_event(path: Path, functions: Mapping[str, LambdaFunction]) -> Run:
    document = events.load(path)
    function_id = FUNCTION_FOR[events.entry_point(document)]
    result = functions[function_id].invoke(path.read_bytes(), synchronous=events.synchronous(document))
    return Run(path, function_id, result)


def describe(run: Run) -> str:
    """One line: the event, the function, what came back."""
    result = run.result
    head = f"{run.event.name:34} {run.function:12} {'cold' if result.cold_start else 'warm'}"
    if result.error_type is not None:
        message = str(result.document.get("errorMessage") or result.document.get("message") or "")
        return f"{head} ERROR {result.error_type}: {message[:120]}"
    document = result.document
    if "statusCode" in document:
        return f"{head} HTTP {document['statusCode']} {_api_body(document)}"
    return f"{head} {_jobs_summary(document)}"


def _api_body(response: Mapping[str, Any]) -> str:
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():  # REST API (v1) responses
        headers.setdefault(name.lower(), ",".join(str(value) for value in values))
    content_type = headers.get("content-type", "")
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    if content_type.startswith("application/json"):
        document = json.loads(data)
        if "url" in document:
            return f"link {document['url'][:90]}"
        if "image" in document:
            return f"{document['content_type']} {document['width']}x{document['height']} (JSON, {len(data):,} bytes)"
        return json.dumps(document)[:120]
    return f"{content_type} {headers.get('x-width')}x{headers.get('x-height')} ({len(data):,} bytes)"


def _jobs_summary(document: Mapping[str, Any]) -> str:
    if "batchItemFailures" in document:
        return f"SQS batch: {len(document['batchItemFailures'])} item failure(s)"
    if "results" in document:
        codes = [result.get("resultCode") for result in document["results"]]
        return f"Batch Operations: {', '.join(str(code) for code in codes)}"
    outputs = [output for item in document.get("objects") or [] for output in item.get("outputs") or []]
    counts = ", ".join(f"{name} {document.get(name, 0)}" for name in ("processed", "skipped", "failed", "ignored"))
    return f"{counts}" + (f"; outputs {', '.join(outputs)}" if outputs else "")
