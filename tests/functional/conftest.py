"""Fixtures for the entry points: a real S3 over HTTP on 127.0.0.1 and a configured runtime.

S3 is moto in server mode; boto3 reaches it through its own AWS_ENDPOINT_URL_S3 override, exactly
as a deployment pointing at another endpoint would.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SAMPLES = ROOT / "samples"
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_u2netp import ensure_u2netp  # noqa: E402

from handler.local.context import LocalLambdaContext  # noqa: E402

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
            "SOURCE_BUCKETS": f"{deployment.source_bucket},{deployment.input_bucket}",
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
