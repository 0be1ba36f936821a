"""`python -m handler invoke EVENT_FILE [--local]`: the no-Docker counterpart of `sam local invoke`.

The event goes through its entry point in-process, with the context Lambda would pass, and the
response is printed on stdout (logs and metrics go to stderr, so stdout pipes into jq). A failure
the function reports as an error (its settings, S3, the model) is one `error:` line and a non-zero
status, not a traceback.

`--local` plays the deployment around the event: the embedded S3 of `serve`, with the buckets the
event names and the output bucket, a photo from samples/ under each key it names, and the
function's environment pointed there; so every file in events/ runs as it is.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from handler.core.errors import BackgroundRemovalError, ConfigurationError
from handler.local.context import API_TIMEOUT_SECONDS, JOBS_TIMEOUT_SECONDS, LocalLambdaContext
from handler.local.embedded_s3 import EmbeddedS3, function_environment, model_is_present
from handler.local.environment import FunctionEnvironment
from handler.local.server import INPUT_BUCKET as LOCAL_INPUT_BUCKET
from handler.local.server import OUTPUT_BUCKET as LOCAL_OUTPUT_BUCKET

_LOCAL_HINT = "; `invoke --local` runs the event against an embedded S3 holding its objects"


def run_invoke(
    event_file: Path,
    body_output: Path | None,
    *,
    local: bool,
    fail: Callable[[str], int],
    outputs: Path | None = None,
) -> int:
    """Print the entry point's response to the event in `event_file`; `outputs` (with `local`) gets
    a copy of what the function wrote to the output bucket, which goes when the embedded S3 does."""
    try:
        event = json.loads(event_file.read_text())
    except (OSError, ValueError) as error:
        return fail(f"cannot read the event {event_file}: {error}")
    api = is_api_event(event)
    hint = "" if local or api else _LOCAL_HINT
    # Logs and EMF metrics go to stderr here, so stdout is only the response.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            with _local_deployment(event, api) if local else contextlib.nullcontext() as deployment:
                context = LocalLambdaContext(
                    function_name="api" if api else "jobs",
                    timeout_seconds=API_TIMEOUT_SECONDS if api else JOBS_TIMEOUT_SECONDS,
                )
                module = importlib.import_module("handler.api" if api else "handler.jobs")
                response = module.lambda_handler(event, context)
                if deployment is not None and outputs is not None:
                    deployment.copy_outputs(outputs)
        except BackgroundRemovalError as error:
            return fail(f"{error.code}: {error.message}{hint}")
        except Exception as error:  # Powertools' error for an SQS batch whose every message failed; others re-raised
            first = _first_batch_failure(error)
            if first is None:
                raise
            return fail(f"every SQS message failed; the first: {first.code}: {first.message}{hint}")
    print(json.dumps(response, indent=2))
    if body_output is not None and isinstance(response, dict) and "body" in response:
        body = response["body"]
        body_output.write_bytes(base64.b64decode(body) if response.get("isBase64Encoded") else body.encode())
    return 0


def is_api_event(event: Any) -> bool:
    """API Gateway (REST or HTTP API) and function URL events; everything else goes to the jobs function."""
    return isinstance(event, dict) and ("httpMethod" in event or "http" in event.get("requestContext", {}))


def _first_batch_failure(error: Exception) -> BackgroundRemovalError | None:
    """The first of our errors inside Powertools' BatchProcessingError (its text holds every traceback)."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    if not isinstance(error, BatchProcessingError):
        return None
    for _type, value, _traceback in error.child_exceptions:
        if isinstance(value, BackgroundRemovalError):
            return value
    return None


class _Deployment:
    def __init__(self, s3: EmbeddedS3, output_bucket: str) -> None:
        self.s3 = s3
        self.output_bucket = output_bucket

    def copy_outputs(self, folder: Path) -> None:
        """Every object in the output bucket, as a file under `folder` at its key."""
        client = self.s3.client()
        root = folder.resolve()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.output_bucket):
            for item in page.get("Contents", []):
                target = (root / item["Key"]).resolve()
                if root not in target.parents:  # the function never writes such keys; a file outside is never made
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(client.get_object(Bucket=self.output_bucket, Key=item["Key"])["Body"].read())
                print(f"invoke --local: s3://{self.output_bucket}/{item['Key']} -> {target}", file=sys.stderr)


@contextlib.contextmanager
def _local_deployment(event: Mapping[str, Any], api: bool) -> Iterator[_Deployment]:
    """The embedded S3 with the event's objects in place, and the function's environment, for one call."""
    s3 = EmbeddedS3()
    environment = FunctionEnvironment()
    try:
        try:
            endpoint = s3.start()
        except RuntimeError as error:  # moto is not installed
            raise ConfigurationError(str(error)) from error
        output_bucket = os.environ.get("OUTPUT_BUCKET") or LOCAL_OUTPUT_BUCKET
        # Set before the event is read: the envelope parsers bring the function's logger with them.
        environment.apply(function_environment(endpoint, LOCAL_INPUT_BUCKET, output_bucket))
        objects = [] if api else _named_objects(event)
        buckets = tuple(dict.fromkeys(bucket for bucket, _key in objects)) or (LOCAL_INPUT_BUCKET,)
        environment.apply(function_environment(endpoint, buckets[0], output_bucket, buckets))
        if model_is_present():
            environment.apply({"HF_HUB_OFFLINE": "1"})
        _store_samples(s3, objects, (*buckets, output_bucket))
        yield _Deployment(s3, output_bucket)
    finally:
        environment.restore()
        s3.stop()


def _named_objects(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    from handler.local.event_objects import named_objects

    return named_objects(event)


def _store_samples(s3: EmbeddedS3, objects: list[tuple[str, str]], buckets: tuple[str, ...]) -> None:
    from handler.local.event_objects import sample_for

    s3.create_buckets(*buckets)
    client = s3.client()
    for bucket, key in objects:
        client.put_object(Bucket=bucket, Key=key, Body=sample_for(key))
        print(f"invoke --local: stored a sample photo at s3://{bucket}/{key}", file=sys.stderr)
