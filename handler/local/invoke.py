"""`python -m handler invoke EVENT_FILE [--local]`: the no-Docker counterpart of `sam local invoke`.

The event goes through its entry point in-process, with the context Lambda would pass, and the
response is printed on stdout (logs and metrics go to stderr, so stdout pipes into jq). A failure
the function reports as an error (its settings, S3, the model) is one `error:` line and a non-zero
status, not a traceback. The model is the one every local tool chooses (handler.local.model_choice),
fallback included, handed to the function as its MODEL_PATH, as `serve` does; `--body-output`
writes a successful API response's image to a file, and stdout then holds the rest of the response.

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
    model_env: Mapping[str, str | None] | None = None,
) -> int:
    """Print the entry point's response to the event in `event_file`; `outputs` (with `local`) gets
    a copy of what the function wrote to the output bucket, which goes when the embedded S3 does;
    `model_env` names the model (MODEL_* variables, None: unset) over the environment's."""
    try:
        event = json.loads(event_file.read_text())
    except (OSError, ValueError) as error:
        return fail(f"cannot read the event {event_file}: {error}")
    api = is_api_event(event)
    hint = "" if local or api else _LOCAL_HINT
    model_environment = FunctionEnvironment()
    # Logs and EMF metrics go to stderr here, so stdout is only the response.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            model_environment.apply(model_env or {})
            _choose_model(model_environment)
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
        finally:
            model_environment.restore()
    if body_output is not None:
        return _write_body(response, body_output, fail)
    print(json.dumps(response, indent=2))
    return 0


def _choose_model(environment: FunctionEnvironment) -> None:
    """The local tools' choice (the named model, or the fallback with its one `model:` line), set as the
    function's MODEL_PATH before its entry point loads it; HF_HUB_OFFLINE when the file is on disk."""
    from handler.core.model.settings import ModelSettings
    from handler.local.model_choice import function_environment_for

    environment.apply(function_environment_for(ModelSettings.from_env()))
    if model_is_present():
        environment.apply({"HF_HUB_OFFLINE": "1"})


def _write_body(response: Any, target: Path, fail: Callable[[str], int]) -> int:
    """A successful API response's body into `target`; stdout gets the response without it. Anything else
    (an error, a redirect to a stored result, a jobs summary) is printed whole and written nowhere."""
    status = response.get("statusCode") if isinstance(response, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    if not isinstance(status, int) or not 200 <= status < 300 or not body:
        print(json.dumps(response, indent=2))
        what = f"answered {status}" if isinstance(status, int) else "did not answer as an API does"
        return fail(f"the function {what} with no image to write: {target} was not written")
    data = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    print(json.dumps({**response, "body": f"<{len(data)} bytes written to {target}>"}, indent=2))
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
        environment.apply(function_environment(endpoint, buckets[0], output_bucket))
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
