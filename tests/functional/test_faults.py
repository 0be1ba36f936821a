"""S3 faults: the jobs function behind a fault-injecting proxy (tests/faults.py) in front of moto.

The function's S3 client goes through the proxy (AWS_ENDPOINT_URL_S3); the tests' own client goes
straight to moto, so only the function meets the faults. Transient faults within the retry
budget must not show; what still fails must raise (S3 notification, EventBridge: Lambda retries
the event), be reported per message (SQS batchItemFailures) or per task (Batch Operations
TemporaryFailure). A missing object is a permanent, counted failure after one GET (no retries).

The accounting tests send a mix of good, corrupt, missing and faulting objects through every
envelope and check that each input key ends with its outputs written or in a failure report.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from handler.core.errors import StorageUnavailable
from tests import faults
from tests.faults import FaultProxy
from tests.helpers.jobs import (
    INPUT_PREFIX,
    OUTCOME_MESSAGES,
    batch_operations,
    eventbridge,
    keys_in,
    s3_put,
    s3_puts,
    sqs,
    upload,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

# Fewer than the default 4, so the tests also show the setting reaches the client.
ATTEMPTS = 3
CORRUPT = b"\xff\xd8\xff\xe0 a JPEG that stops here"


@pytest.fixture
def proxy(s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The proxy in front of moto; the function (configured after this) talks to S3 through it.

    Depends on `s3` so that the tests' own client was made before the endpoint changes.
    """
    with FaultProxy(s3_endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", running.url)
        monkeypatch.setenv("S3_MAX_ATTEMPTS", str(ATTEMPTS))
        yield running


def outputs_of(name: str) -> tuple[str, str]:
    return f"cutouts/{name}.png", f"masks/{name}.png"


# --- Transient faults: retried, invisible ------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "method", "key", "times"),
    [
        (faults.slow_down(), "GET", "uploads/p.jpg", 2),
        (faults.internal_error(), "GET", "uploads/p.jpg", 2),
        (faults.reset(), "GET", "uploads/p.jpg", 1),
        (faults.truncate(), "GET", "uploads/p.jpg", 2),
        (faults.delay(0.2), "GET", "uploads/p.jpg", 1),
        (faults.slow_down(), "PUT", "masks/p.png", 2),
        (faults.reset(), "PUT", "cutouts/p.png", 1),
        (faults.internal_error(), "HEAD", "cutouts/p.png", 1),
    ],
    ids=[
        "get-slowdown-x2",
        "get-500-x2",
        "get-reset",
        "get-truncated-x2",
        "get-slow",
        "put-slowdown-x2",
        "put-reset",
        "head-500",
    ],
)
def test_transient_fault_is_retried_and_the_object_is_processed(proxy, deploy, s3, invoke, fault, method, key, times):
    # GIVEN S3 failing the first `times` requests of one kind for this object, then answering
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/p.jpg", "coffee.jpg")
    proxy.inject(fault, method=method, key=key, times=times)

    # WHEN its event arrives
    summary = invoke(s3_put(deployment.input_bucket, "uploads/p.jpg"))

    # THEN the fault was met and retried (a slow answer within the read timeout is simply waited
    # for), and the object was processed as if nothing happened
    seen = [request.fault for request in proxy.seen(method=method, key=key)]
    assert seen == [fault.kind] * times + ([] if fault.kind == "delay" else ["pass"])
    assert summary["processed"] == 1, summary
    assert keys_in(s3, deployment.output_bucket) == sorted(outputs_of("p"))


def test_response_slower_than_read_timeout_is_abandoned_and_retried(proxy, deploy, s3, invoke):
    # GIVEN a read timeout of 2 s and S3 never answering the first GET
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, S3_READ_TIMEOUT="2")
    upload(s3, deployment.input_bucket, "uploads/p.jpg", "coffee.jpg")
    proxy.inject(faults.hang(), method="GET", key="uploads/p.jpg")

    summary = invoke(s3_put(deployment.input_bucket, "uploads/p.jpg"))

    # THEN the client gave up on it and the retry went through
    assert [request.fault for request in proxy.seen(method="GET", key="uploads/p.jpg")] == ["hang", "pass"]
    assert summary["processed"] == 1


# --- Persistent faults: raised or reported for a retry -----------------------------------------


@pytest.mark.parametrize("envelope", ["s3", "eventbridge"])
def test_persistent_fault_raises_so_lambda_retries(proxy, deploy, s3, invoke, envelope):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/p.jpg", "coffee.jpg")
    proxy.inject(faults.slow_down(), method="GET", key="uploads/p.jpg", times=None)
    event = (s3_put if envelope == "s3" else eventbridge)(deployment.input_bucket, "uploads/p.jpg")

    with pytest.raises(StorageUnavailable, match="SlowDown"):
        invoke(event)

    # exactly the configured attempts, no more
    assert len(proxy.seen(method="GET", key="uploads/p.jpg")) == ATTEMPTS
    assert keys_in(s3, deployment.output_bucket) == []


def test_persistent_write_fault_raises_so_lambda_retries(proxy, deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/p.jpg", "coffee.jpg")
    proxy.inject(faults.reset(), method="PUT", key="masks/p.png", times=None)

    with pytest.raises(StorageUnavailable, match=r"masks/p\.png"):
        invoke(s3_put(deployment.input_bucket, "uploads/p.jpg"))

    assert len(proxy.seen(method="PUT", key="masks/p.png")) == ATTEMPTS


def test_a_broken_body_is_read_again_only_within_the_attempts(proxy, deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/p.jpg", "coffee.jpg")
    proxy.inject(faults.truncate(), method="GET", key="uploads/p.jpg", times=None)

    with pytest.raises(StorageUnavailable):
        invoke(s3_put(deployment.input_bucket, "uploads/p.jpg"))

    assert len(proxy.seen(method="GET", key="uploads/p.jpg")) == ATTEMPTS


def test_object_deleted_before_it_is_read_is_one_get_and_no_retry(proxy, deploy, s3, invoke):
    # GIVEN an event for an object that was deleted before the function read it
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)

    summary = invoke(s3_put(deployment.input_bucket, "uploads/gone.jpg"))

    # THEN it is a counted, permanent failure after a single GET: nothing to retry, no storm
    assert (summary["failed"], summary["objects"][0]["code"]) == (1, "source_not_found")
    assert len(proxy.seen(key="uploads/gone.jpg")) == 1


def test_sqs_reports_exactly_the_messages_that_met_persistent_faults(proxy, deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    bucket = deployment.input_bucket
    for name in ("good", "get-fails", "put-fails"):
        upload(s3, bucket, f"uploads/{name}.jpg", "chelsea.jpg")
    upload(s3, bucket, "uploads/corrupt.jpg", Body=CORRUPT)
    proxy.inject(faults.internal_error(), method="GET", key="uploads/get-fails.jpg", times=None)
    proxy.inject(faults.reset(), method="PUT", key="cutouts/put-fails.png", times=None)
    names = ["good", "get-fails", "corrupt", "missing", "put-fails"]

    response = invoke(sqs(*(s3_put(bucket, f"uploads/{name}.jpg") for name in names)))

    assert response == {"batchItemFailures": [{"itemIdentifier": "message-1"}, {"itemIdentifier": "message-4"}]}
    assert keys_in(s3, deployment.output_bucket) == sorted(outputs_of("good"))


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_batch_operations_reports_temporary_and_permanent_failures(proxy, deploy, s3, invoke, version):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    bucket = deployment.input_bucket
    upload(s3, bucket, "uploads/good.jpg", "coffee.jpg")
    upload(s3, bucket, "uploads/get-fails.jpg", "coffee.jpg")
    upload(s3, bucket, "uploads/corrupt.jpg", Body=CORRUPT)
    proxy.inject(faults.slow_down(), method="GET", key="uploads/get-fails.jpg", times=None)
    names = ["good", "get-fails", "corrupt", "missing"]

    results = [invoke(batch_operations(version, bucket, f"uploads/{name}.jpg"))["results"][0] for name in names]

    assert [result["resultCode"] for result in results] == [
        "Succeeded",
        "TemporaryFailure",
        "PermanentFailure",
        "PermanentFailure",
    ]
    assert results[1]["resultString"].startswith("storage_unavailable: ")
    assert results[2]["resultString"].startswith("invalid_image: ")
    assert results[3]["resultString"].startswith("source_not_found: ")


# --- Accounting: every input ends with outputs or in a failure report ---------------------------

# Each input of the mix and the fate it must end with. Transient faults on some good objects are
# retried and must not show; the persistent ones must end in a report.
MIX: dict[str, str] = {
    "good-1": "processed",
    "good-2": "processed",  # its first GET is SlowDown
    "good-3": "processed",  # its body breaks off once
    "good-4": "processed",  # its cutout's first PUT is reset
    "corrupt-1": "failed:invalid_image",
    "corrupt-2": "failed:invalid_image",
    "missing-1": "failed:source_not_found",
    "missing-2": "failed:source_not_found",
    "get-fails-1": "retry",  # every GET: 500 InternalError
    "get-fails-2": "retry",  # every GET: connection reset
    "put-fails": "retry",  # every PUT of its mask: 503 SlowDown (the background write, with prefetch)
}
SAMPLE_FOR = {"1": "coffee.jpg", "2": "chelsea.jpg", "3": "astronaut.jpg", "4": "coffee.jpg"}


def prepare_mix(s3: Any, bucket: str, proxy: FaultProxy) -> list[str]:
    keys = []
    for name in MIX:
        key = f"uploads/{name}.jpg"
        keys.append(key)
        if name.startswith("corrupt"):
            upload(s3, bucket, key, Body=CORRUPT)
        elif not name.startswith("missing"):
            upload(s3, bucket, key, SAMPLE_FOR.get(name[-1], "chelsea.jpg"))
    proxy.inject(faults.slow_down(), method="GET", key="uploads/good-2.jpg")
    proxy.inject(faults.truncate(), method="GET", key="uploads/good-3.jpg")
    proxy.inject(faults.reset(), method="PUT", key="cutouts/good-4.png")
    proxy.inject(faults.internal_error(), method="GET", key="uploads/get-fails-1.jpg", times=None)
    proxy.inject(faults.reset(), method="GET", key="uploads/get-fails-2.jpg", times=None)
    proxy.inject(faults.slow_down(), method="PUT", key="masks/put-fails.png", times=None)
    return keys


def logged_fates(lines: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each key's outcome log lines as fates (an object must have exactly one)."""
    fates: dict[str, list[str]] = {}
    for line in lines:
        if line.get("message") not in OUTCOME_MESSAGES:
            continue
        if line["message"] == "object processed":
            fate = "processed"
        elif line["message"] == "object not processed; it will be retried":
            fate = "retry"
        else:
            fate = f"failed:{line.get('error_code')}"
        fates.setdefault(line["key"], []).append(fate)
    return fates


def run_envelope(envelope: str, keys: list[str], bucket: str, invoke: Callable[[Any], Any]) -> dict[str, str]:
    """Send the keys through one envelope; each key's fate as the envelope's own report gives it.

    Where the report has no place for a permanent failure (an SQS message that will not be retried
    is consumed; a notification's summary is lost when the invocation raises), the fate is
    "reported elsewhere" and must come from the logs, which are checked for every envelope.
    """
    fates: dict[str, str] = {}
    if envelope in ("s3-one-event", "s3-one-event-no-prefetch"):
        try:
            summary = invoke(s3_puts(bucket, keys))
        except StorageUnavailable:
            # Lambda retries the whole event: every key is in the retried invocation
            return dict.fromkeys(keys, "retry-whole-event")
        return {item["key"]: _summary_fate(item) for item in summary["objects"]}
    if envelope in ("s3", "eventbridge"):
        for key in keys:
            try:
                summary = invoke((s3_put if envelope == "s3" else eventbridge)(bucket, key))
            except StorageUnavailable:
                fates[key] = "retry"
                continue
            fates[key] = _summary_fate(summary["objects"][0])
        return fates
    if envelope == "sqs":
        response = invoke(sqs(*(s3_put(bucket, key) for key in keys)))
        retried = {int(item["itemIdentifier"].removeprefix("message-")) for item in response["batchItemFailures"]}
        return {key: "retry" if number in retried else "consumed" for number, key in enumerate(keys)}
    if envelope == "batch-operations":
        event = batch_operations("2.0", bucket, keys[0])
        template = event["tasks"][0]
        event["tasks"] = [dict(copy.deepcopy(template), taskId=f"task-{n}", s3Key=key) for n, key in enumerate(keys)]
        results = {result["taskId"]: result for result in invoke(event)["results"]}
        for number, key in enumerate(keys):
            result = results[f"task-{number}"]
            code = result["resultString"].split(":", 1)[0]
            fates[key] = {
                "Succeeded": "processed",
                "TemporaryFailure": "retry",
                "PermanentFailure": f"failed:{code}",
            }[result["resultCode"]]
        return fates
    raise AssertionError(envelope)


def _summary_fate(item: dict[str, Any]) -> str:
    return "processed" if item["status"] == "processed" else f"{item['status']}:{item.get('code')}"


@pytest.mark.parametrize(
    "envelope", ["s3", "s3-one-event", "s3-one-event-no-prefetch", "eventbridge", "sqs", "batch-operations"]
)
def test_every_object_ends_with_outputs_or_in_a_failure_report(proxy, deploy, s3, invoke, logs, envelope):
    # GIVEN a mix of good, corrupt, missing and faulting objects
    prefetch = "0" if envelope.endswith("no-prefetch") else "1"
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, JOBS_PREFETCH=prefetch)
    keys = prepare_mix(s3, deployment.input_bucket, proxy)

    # WHEN they go through the envelope
    reported = run_envelope(envelope, keys, deployment.input_bucket, invoke)

    # THEN every key has exactly one logged fate, and it is the one its kind must have
    logged = logged_fates(logs())
    assert sorted(logged) == sorted(keys), "an object was dropped without an outcome"
    expected = {f"uploads/{name}.jpg": fate for name, fate in MIX.items()}
    assert {key: fates for key, fates in logged.items()} == {key: [fate] for key, fate in expected.items()}
    # AND the envelope's own report agrees wherever it has a place for the object
    for key in keys:
        if reported[key] in ("retry-whole-event", "consumed"):
            continue
        assert reported[key] == expected[key], key
    if envelope == "sqs":  # the retried messages are exactly the faulting objects
        assert {key for key, fate in reported.items() if fate == "retry"} == {
            key for key, fate in expected.items() if fate == "retry"
        }
    if envelope.startswith("s3-one-event"):  # a transient failure in the event retries it whole
        assert set(reported.values()) == {"retry-whole-event"}
    # AND outputs exist exactly for the processed objects (both of them), none for the others
    stored = set(keys_in(s3, deployment.output_bucket))
    for key, fate in expected.items():
        name = key.removeprefix("uploads/").removesuffix(".jpg")
        cutout, mask = outputs_of(name)
        if fate == "processed":
            assert {cutout, mask} <= stored, key
        else:
            assert mask not in stored, key
