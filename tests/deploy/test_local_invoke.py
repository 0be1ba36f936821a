"""`sam local invoke -e events/<file> --env-vars local-env.json`: the functions see the buckets the events name.

Without the env-vars file SAM CLI sets a `!Ref InputBucket` variable to the text "InputBucket". The
environment is computed by SAM CLI's own code (sam_local_env.py, no Docker); the events are read
here for the buckets and keys they carry.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from tests.deploy.cloudformation import HERE, ROOT, tool_environment

ENV_VARS = ROOT / "local-env.json"
# The jobs function's events: everything in events/ that is not an API request.
JOBS_EVENTS = sorted(
    path for path in (ROOT / "events").glob("*.json") if not path.name.startswith(("api_", "function_url_"))
)
BUCKET_VARIABLES = ("INPUT_BUCKET", "OUTPUT_BUCKET")
# S3's bucket naming rules (general purpose buckets), less the rarely relevant exceptions.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@pytest.fixture(scope="module")
def environments(tool: Callable[[str], Path]) -> dict[str, dict[str, str]]:
    result = subprocess.run(
        [str(tool("python")), str(HERE / "sam_local_env.py"), "template.yaml", str(ENV_VARS)],
        cwd=ROOT,
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _buckets_and_keys(node: Any) -> Iterator[tuple[str, str]]:
    """("bucket"|"key", value) for every bucket and object key an event names, in any envelope."""
    if isinstance(node, str):
        if node.lstrip().startswith("{"):
            yield from _buckets_and_keys(json.loads(node))  # an SQS body
        for bucket in re.findall(r"arn:aws:s3:::([^/\"]+)", node):
            yield "bucket", bucket
    elif isinstance(node, list):
        for item in node:
            yield from _buckets_and_keys(item)
    elif isinstance(node, dict):
        for name, value in node.items():
            if name in {"s3Bucket", "Bucket"}:
                yield "bucket", value
            elif name == "bucket" and isinstance(value, dict):
                yield "bucket", value["name"]
            elif name == "object" and isinstance(value, dict):
                yield "key", value["key"]
            elif name == "s3Key":
                yield "key", value
            else:
                yield from _buckets_and_keys(value)


def test_the_jobs_events_are_found() -> None:
    names = {path.name for path in JOBS_EVENTS}
    assert {"s3_put.json", "eventbridge_object_created.json", "sqs_s3_notification.json"} <= names


@pytest.mark.parametrize("function", ["ApiFunction", "JobsFunction"])
def test_every_bucket_variable_names_a_bucket_not_a_logical_id(
    environments: dict[str, dict[str, str]], function: str
) -> None:
    variables = environments[function]
    for name in BUCKET_VARIABLES:
        for bucket in variables[name].split(","):
            assert BUCKET_NAME.fullmatch(bucket), f"{function}: {name}={variables[name]!r} is not a bucket name"
    assert variables["INPUT_BUCKET"] != variables["OUTPUT_BUCKET"]
    # `source` reads are off, as deployed: no bucket is a source
    assert "SOURCE_BUCKETS" not in variables and not variables.get("SOURCE_PREFIX")
    assert variables["INPUT_PREFIX"] == "uploads/"


@pytest.mark.parametrize("event", JOBS_EVENTS, ids=[path.name for path in JOBS_EVENTS])
def test_jobs_events_name_the_input_bucket_and_keys_under_the_prefix(
    environments: dict[str, dict[str, str]], event: Path
) -> None:
    variables = environments["JobsFunction"]
    found = list(_buckets_and_keys(json.loads(event.read_text())))
    buckets = {value for kind, value in found if kind == "bucket"}
    keys = [value for kind, value in found if kind == "key"]
    assert buckets == {variables["INPUT_BUCKET"]}, f"{event.name} names {buckets}"
    for key in keys:
        # S3 notifications and Batch Operations 1.0 URL-encode keys; the prefix reads the same either way.
        assert unquote_plus(key).startswith(variables["INPUT_PREFIX"]), f"{event.name}: {key}"
