"""Fixtures for the entry points: a real S3 over HTTP on 127.0.0.1 and a configured runtime.

S3 is moto in server mode; boto3 reaches it through its own AWS_ENDPOINT_URL_S3 override, exactly
as a deployment pointing at another endpoint would.
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from handler.aws.observability import logger
from handler.local.context import LocalLambdaContext
from scripts.fetch_u2netp import ensure_u2netp
from tests.graphs import GraphFile
from tests.helpers.api import Service
from tests.helpers.cli import CHILD_TIMEOUT_S, Cli, Result, child_env, red_graph

ROOT = Path(__file__).resolve().parents[2]

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> str:
    for name, value in {
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "BackgroundRemoverTests",
        "HF_HUB_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


@pytest.fixture
def s3(aws_env: str) -> Any:
    return boto3.client("s3")


@pytest.fixture
def new_bucket(s3: Any) -> Callable[[str], str]:
    """Create a bucket with a name unique to this test run (moto keeps state across tests)."""

    def create(label: str) -> str:
        name = f"{label}-{next(_bucket_numbers)}"
        s3.create_bucket(Bucket=name)
        return name

    return create


@pytest.fixture(scope="session")
def u2netp_path() -> Path:
    return ensure_u2netp()


@dataclass(frozen=True)
class Deployment:
    input_bucket: str
    output_bucket: str
    source_bucket: str


@pytest.fixture
def deploy(
    monkeypatch: pytest.MonkeyPatch, new_bucket: Callable[[str], str], u2netp_path: Path
) -> Iterator[Callable[..., Deployment]]:
    """Configure the function's environment as the template would and reset the runtime.

    Keyword arguments override environment variables; `OUTPUT_BUCKET=None` removes it.
    """
    from handler.aws import runtime

    def configure(**overrides: str | None) -> Deployment:
        deployment = Deployment(
            input_bucket=new_bucket("uploads"), output_bucket=new_bucket("results"), source_bucket=new_bucket("sources")
        )
        env: dict[str, str | None] = {
            "MODEL_PATH": str(u2netp_path),
            "MODEL_OUTPUT": "probabilities",
            "INPUT_BUCKET": deployment.input_bucket,
            "OUTPUT_BUCKET": deployment.output_bucket,
            "OUTPUT_PREFIX": "",
            # A bucket of its own: `source` reads never come from where another flow writes.
            "SOURCE_BUCKETS": deployment.source_bucket,
        }
        env.update(overrides)
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        runtime.reset()
        return deployment

    yield configure
    runtime.reset()


@pytest.fixture
def lambda_context() -> LocalLambdaContext:
    # The same context object `python -m handler invoke` and the local server pass.
    return LocalLambdaContext(function_name="background-remover", timeout_seconds=60)


# --- The API entry point ---


@pytest.fixture
def configure(deploy: Callable[..., Any], lambda_context: Any) -> Callable[..., Service]:
    """Deploy with environment overrides, then import the handler (it loads the runtime on import)."""

    def make(**env: str | None) -> Service:
        deployment = deploy(**env)
        return Service(api=importlib.import_module("handler.api"), deployment=deployment, context=lambda_context)

    return make


@pytest.fixture
def service(configure: Callable[..., Service]) -> Service:
    return configure()


# --- The jobs entry point ---


@pytest.fixture
def invoke(lambda_context: Any) -> Callable[[dict[str, Any]], Any]:
    """Call handler.jobs.lambda_handler; import it only once a test has deployed (it loads the model)."""

    def call(event: dict[str, Any]) -> Any:
        from handler import jobs

        return jobs.lambda_handler(event, lambda_context)

    return call


@pytest.fixture
def logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The function's structured log lines, as dicts."""
    handler = logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    handler.setStream(previous)  # type: ignore[attr-defined]


# --- The command line ---


@pytest.fixture
def cli(tmp_path: Path, graph_file: GraphFile) -> Cli:
    """Run the CLI in `tmp_path` with the test graph as MODEL_PATH; keyword arguments add variables."""
    model_path = graph_file(red_graph())

    def run(*args: str, **environ: str) -> Result:
        env = child_env(model_path, **environ)
        completed = subprocess.run(
            [sys.executable, "-m", "handler", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    return run
