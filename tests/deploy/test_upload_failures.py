"""Uploads whose job dies on every attempt, as Lambda runs them: the jobs function under awslambdaric
in the sandbox (emulator/), killed for going over its memory size or past its timeout, fed by the
upload queue the template declares (moto's SQS: its visibility timeout and redrive policy, so the
queue counts the attempts and moves the message to the failure queue), then redriven.

What is asserted is what a client and an operator see: GET /results/{id} (the API function, under
awslambdaric too) answers pending while an attempt may still run and failed once none can, the
event waits in the failure queue, and a redrive that succeeds makes the result done. Attempts are
counted, never timed; the record's deadline is backdated instead of waited for.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from PIL import Image as PILImage

from emulator import configuration, runner
from emulator.bench import Bench
from emulator.event_source import SqsEventSource, redrive
from emulator.function import LambdaFunction
from emulator.image import Image
from emulator.images import cached_image
from emulator.local_s3 import CREDENTIALS, REGION, LocalS3
from emulator.memory import MemoryLimit
from tests import faults, graphs
from tests.faults import FaultProxy
from tests.helpers.jobs import eventbridge
from tests.tools import require

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
CACHE = ROOT / ".cache" / "lambda-runtime-tests"
TEMPLATE = configuration.load_template(ROOT / "template.yaml")
RESOURCES = {"InputBucket": "lifecycle-uploads", "OutputBucket": "lifecycle-results"}
# The jobs function starts in ~160 MB and needs ~580 MB for a 36 MP photo (measured through
# its cgroup): this fits the start and not the photo.
SMALL_MEMORY_MB = 320
HUGE_PHOTO = (6000, 6000)

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


@pytest.fixture(scope="module")
def image() -> Image:
    # The same image as test_lambda_runtime.py (cached by content): a graph that calls everything foreground.
    model = graphs.save(graphs.constant(8.0), CACHE / "model.onnx")
    return cached_image(CACHE / "image", step_env={"MODEL_PATH": str(model)})


@dataclass
class Stack:
    """The functions on the local S3, and this test's own upload and failure queues."""

    bench: Bench
    s3: LocalS3
    sqs: Any
    api: LambdaFunction
    upload_queue: str = ""
    failure_queue: str = ""

    @property
    def attempts(self) -> int:
        """The queue's maxReceiveCount: how many attempts a message gets."""
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.upload_queue, AttributeNames=["RedrivePolicy"])
        return int(json.loads(attributes["Attributes"]["RedrivePolicy"])["maxReceiveCount"])


@pytest.fixture(scope="module")
def functions(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with LocalS3() as s3:
        s3.create_buckets(*RESOURCES.values())
        sqs = boto3.client(
            "sqs",
            endpoint_url=s3.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        bench = Bench(image, s3, tmp_path_factory.mktemp("lifecycle"), template=TEMPLATE, resources=RESOURCES)
        try:
            yield Stack(bench, s3, sqs, bench.function(runner.API_FUNCTION))
        finally:
            bench.close()


@pytest.fixture
def stack(functions: Stack, request: pytest.FixtureRequest) -> Stack:
    """The queues as the template declares them, new for each test."""
    sqs, name = functions.sqs, f"q{abs(hash(request.node.nodeid)) % 10**8}"
    failure = configuration.queue_attributes(TEMPLATE, "FailureQueue", resources={})
    failure_queue = sqs.create_queue(QueueName=f"{name}-failures", Attributes=failure)["QueueUrl"]
    failure_arn = sqs.get_queue_attributes(QueueUrl=failure_queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    uploads = configuration.queue_attributes(TEMPLATE, "UploadQueue", resources={"FailureQueue.Arn": failure_arn})
    upload_queue = sqs.create_queue(QueueName=f"{name}-uploads", Attributes=uploads)["QueueUrl"]
    return replace(functions, upload_queue=upload_queue, failure_queue=failure_queue)


def _api(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    result = stack.api.invoke(json.dumps(event).encode())
    assert result.function_error is None, result.payload[:2000]
    return result.document


def _ticket(stack: Stack) -> dict[str, Any]:
    created = _api(stack, json.loads((EVENTS / "api_v2_uploads.json").read_text()))
    assert created["statusCode"] == 201, created.get("body")
    ticket: dict[str, Any] = json.loads(created["body"])
    return ticket


def _result(stack: Stack, ticket: dict[str, Any]) -> dict[str, Any]:
    event = json.loads((EVENTS / "api_v2_results.json").read_text().replace("0123456789abcdef" * 2, ticket["id"]))
    return _api(stack, event)


def _upload(stack: Stack, ticket: dict[str, Any], photo: bytes) -> None:
    """The photo through its form, and the upload's event into the upload queue (what the rule does)."""
    form = ticket["upload"]["fields"]
    posted = requests.post(ticket["upload"]["url"], data=form, files={"file": ("photo", photo)}, timeout=60)
    assert posted.ok, posted.text
    body = json.dumps(eventbridge(RESOURCES["InputBucket"], form["key"]))
    stack.sqs.send_message(QueueUrl=stack.upload_queue, MessageBody=body)


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (40, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _backdate_attempt(stack: Stack, ticket: dict[str, Any], seconds: int) -> None:
    client = stack.s3.client()
    key = f"results/{ticket['id']}.json"
    record = json.loads(client.get_object(Bucket=RESOURCES["OutputBucket"], Key=key)["Body"].read())
    if "attempt" not in record:
        return  # no attempt recorded itself: nothing tells the result's deadline
    record["attempt"]["ends_by"] -= seconds
    client.put_object(Bucket=RESOURCES["OutputBucket"], Key=key, Body=json.dumps(record).encode())


def _queued(stack: Stack, queue: str) -> int:
    attributes = stack.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


@contextmanager
def _out_of_memory(stack: Stack, ticket: dict[str, Any]) -> Iterator[LambdaFunction]:
    """The jobs function at a memory size its start fits in and the huge photo does not."""
    if not MemoryLimit.available():
        require(
            "sandbox",
            ["no memory cgroup can be made here, so the memory size cannot be enforced"],
            "run as root on a machine with cgroups' memory controller",
        )
    _upload(stack, ticket, _png(HUGE_PHOTO))
    with stack.bench.function(runner.JOBS_FUNCTION, memory_mb=SMALL_MEMORY_MB, name="jobs-small-memory") as jobs:
        yield jobs
    assert jobs.memory_enforced


@contextmanager
def _timed_out(stack: Stack, ticket: dict[str, Any]) -> Iterator[LambdaFunction]:
    """The jobs function, behind an S3 that never answers a cutout's write, with a short timeout."""
    _upload(stack, ticket, _png((320, 240)))
    with FaultProxy(stack.s3.endpoint) as proxy:
        proxy.inject(faults.hang(), method="PUT", prefix="cutouts/", times=None)
        environment = {"AWS_ENDPOINT_URL_S3": proxy.url}
        with stack.bench.function(
            runner.JOBS_FUNCTION, environment=environment, timeout_s=10, name="jobs-hung-write"
        ) as jobs:
            yield jobs


@pytest.mark.parametrize(
    ("setup", "error_type"),
    [(_out_of_memory, "Runtime.OutOfMemory"), (_timed_out, "Sandbox.Timedout")],
    ids=["out-of-memory", "timeout"],
)
def test_a_job_dying_on_every_attempt_fails_its_result_and_a_redrive_finishes_it(
    stack: Stack, setup: Callable[[Stack, dict[str, Any]], AbstractContextManager[LambdaFunction]], error_type: str
) -> None:
    ticket = _ticket(stack)

    # WHEN the upload queue delivers the message until it gives up on it
    with setup(stack, ticket) as jobs:
        deliveries = SqsEventSource(stack.sqs, stack.upload_queue, jobs).drain(max_polls=stack.attempts + 2)

    # THEN every attempt died the same way, the queue counted them, and the event is in the failure queue
    assert [delivery.result.error_type for delivery in deliveries] == [error_type] * stack.attempts
    assert [delivery.receive_count for delivery in deliveries] == list(range(1, stack.attempts + 1))
    assert (_queued(stack, stack.upload_queue), _queued(stack, stack.failure_queue)) == (0, 1)
    # AND the result is pending while the last attempt may still run, then failed for good
    assert _result(stack, ticket)["statusCode"] == 202
    _backdate_attempt(stack, ticket, 3600)
    failed = _result(stack, ticket)
    assert failed["statusCode"] == 500, failed.get("body")
    assert json.loads(failed["body"])["error"]["code"] == "processing_failed"

    # WHEN an operator redrives the failure queue to a jobs function that can do the work
    assert redrive(stack.sqs, stack.failure_queue, stack.upload_queue) == 1
    with stack.bench.function(runner.JOBS_FUNCTION, name="jobs-redriven") as healthy:
        (delivery,) = SqsEventSource(stack.sqs, stack.upload_queue, healthy).drain(max_polls=3)

    # THEN it is processed at the first attempt and the result is done
    assert delivery.deleted and delivery.result.function_error is None, delivery.result.payload[:2000]
    done = _result(stack, ticket)
    assert done["statusCode"] == 200 and json.loads(done["body"])["status"] == "done", done.get("body")
