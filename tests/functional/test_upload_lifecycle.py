"""The upload flow's results over their whole life: every upload ends done or failed within its
retry budget, a result never changes once it has a photo, and the upload flow's folder and the
`source` reads are nobody else's.

The API and jobs entry points run in this process against the local S3 (moto server on
127.0.0.1). The jobs function gets its uploads the way the template delivers them: EventBridge
events in SQS messages, each carrying its `ApproximateReceiveCount` (the attempt). Faults come
from the fault-injecting proxy (tests/faults.py) between the functions and S3; nothing sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from emulator import configuration
from handler.core.errors import ConfigurationError
from tests import faults
from tests.faults import FaultProxy
from tests.helpers.api import Service, assert_error, fetch, http_event, json_event
from tests.helpers.jobs import eventbridge, load, upload

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 3  # the template's default JobsAttempts: the queue's maxReceiveCount
S3_ATTEMPTS = 2  # S3 calls per SDK call: fewer retries, fewer proxied requests
SECONDS_PER_DAY = 24 * 3600


@dataclass
class Ticket:
    id: str
    key: str
    result: str
    fields: dict[str, str]


@pytest.fixture
def proxy(s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The functions (configured after this) reach S3 through the proxy; the tests' own client does not."""
    with FaultProxy(s3_endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", running.url)
        monkeypatch.setenv("S3_MAX_ATTEMPTS", str(S3_ATTEMPTS))
        yield running


@pytest.fixture
def service(configure: Callable[..., Service]) -> Service:
    return configure(JOBS_MAX_ATTEMPTS=str(ATTEMPTS))


def _ticket(service: Service, **options: str) -> Ticket:
    created = service.invoke(json_event({"content_type": "image/jpeg", **options}, path="/uploads"))
    assert created.status == 201, created.body[:300]
    document = created.json
    fields = document["upload"]["fields"]
    return Ticket(document["id"], fields["key"], document["result"], fields)


def _upload(s3: Any, service: Service, ticket: Ticket, sample: str = "astronaut.jpg") -> str:
    """What S3 stores for a form POST: the photo at the form's key, with the form's type and options."""
    return upload(
        s3,
        service.deployment.input_bucket,
        ticket.key,
        sample,
        ContentType=ticket.fields["Content-Type"],
        Metadata={"options": ticket.fields["x-amz-meta-options"]},
    )


def _message(bucket: str, key: str, receive_count: int) -> dict[str, Any]:
    """The SQS event Lambda's event source mapping sends: one message, an EventBridge event, its receive count."""
    event = load("sqs_eventbridge.json")
    record = event["Records"][0]
    record["body"] = json.dumps(eventbridge(bucket, key))
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return event


def _deliver(invoke: Callable[[dict[str, Any]], Any], service: Service, key: str, receive_count: int) -> bool:
    """Whether the message is done with (deleted), as against handed back to the queue for another attempt.

    A batch whose every message failed is raised as a whole (Powertools), which Lambda treats alike."""
    try:
        answer = invoke(_message(service.deployment.input_bucket, key, receive_count))
    except BatchProcessingError:
        return False
    return bool(answer["batchItemFailures"] == [])


def _poll(service: Service, ticket: Ticket, **headers: str) -> Any:
    event = http_event(b"", content_type=None, path=ticket.result, method="GET")
    event["headers"].update(headers)
    return service.invoke(event)


def _record(s3: Any, service: Service, ticket: Ticket) -> dict[str, Any]:
    stored = s3.get_object(Bucket=service.deployment.output_bucket, Key=f"results/{ticket.id}.json")
    document: dict[str, Any] = json.loads(stored["Body"].read())
    return document


# --- Every upload reaches done or failed -------------------------------------------------------


def test_a_job_failing_on_every_attempt_ends_failed_and_a_redrive_makes_it_done(
    proxy: FaultProxy, s3: Any, service: Service, invoke: Callable[[dict[str, Any]], Any]
) -> None:
    # GIVEN an upload whose cutout S3 refuses to store, on every try
    ticket = _ticket(service)
    _upload(s3, service, ticket)
    cutout_key = f"cutouts/api-uploads/{ticket.id}.png"
    proxy.inject(faults.internal_error(), method="PUT", key=cutout_key, times=None)

    # WHEN the message is delivered as often as the queue allows, failing each time
    for receive_count in range(1, ATTEMPTS + 1):
        assert _poll(service, ticket).status == 202, f"before attempt {receive_count}"
        assert not _deliver(invoke, service, ticket.key, receive_count)

    # THEN the result is failed, with the error's own code (not pending for ever)
    failed = _poll(service, ticket)
    assert_failed(failed, 503, "storage_unavailable")
    # AND each attempt tried the write (botocore's retries within it), no more
    assert len(proxy.seen(method="PUT", key=cutout_key)) == ATTEMPTS * S3_ATTEMPTS

    # WHEN an operator redrives the message once S3 is well (a moved message starts counting again)
    proxy.clear()
    # THEN it is processed and the result is done
    assert _deliver(invoke, service, ticket.key, 1)
    done = _poll(service, ticket)
    assert done.status == 303, done.body[:300]
    assert done.json["status"] == "done"


def assert_failed(reply: Any, status: int, code: str) -> None:
    assert reply.status == status, reply.body[:300]
    assert reply.json["status"] == "failed"
    assert reply.json["error"]["code"] == code


def test_an_attempt_that_never_ended_fails_the_result_once_the_last_ones_deadline_passed(
    proxy: FaultProxy, s3: Any, service: Service, invoke: Callable[[dict[str, Any]], Any]
) -> None:
    """A crash, out of memory or a timeout ends the process without a word: the attempt's record is
    all that is left (the real deaths, under the Lambda runtime: tests/deploy/test_upload_failures.py).
    Here the last attempt writes its record and then loses every later write, as a killed one would."""
    ticket = _ticket(service)
    _upload(s3, service, ticket)
    record_key = f"results/{ticket.id}.json"
    proxy.inject(faults.PASS, method="PUT", key=record_key, times=1)
    proxy.inject(faults.reset(), method="PUT", key=record_key, times=None)
    proxy.inject(faults.reset(), method="PUT", key=f"cutouts/api-uploads/{ticket.id}.png", times=None)
    assert not _deliver(invoke, service, ticket.key, ATTEMPTS)
    record = _record(s3, service, ticket)
    assert record["status"] == "pending"
    assert (record["attempt"]["number"], record["attempt"]["of"]) == (ATTEMPTS, ATTEMPTS)
    proxy.clear()

    # THEN while that attempt may still be running, the result is pending
    assert _poll(service, ticket).status == 202
    # AND once its deadline has passed (the record backdated: nothing sleeps) it has failed, for good
    record["attempt"]["ends_by"] -= 3600
    s3.put_object(Bucket=service.deployment.output_bucket, Key=record_key, Body=json.dumps(record).encode())
    assert_failed(_poll(service, ticket), 500, "processing_failed")
    assert _record(s3, service, ticket)["status"] == "failed"


# --- A result never changes once it has a photo --------------------------------------------------


def test_a_second_photo_through_the_same_form_is_not_processed(
    s3: Any, service: Service, invoke: Callable[[dict[str, Any]], Any]
) -> None:
    # GIVEN a result done from one photo
    ticket = _ticket(service)
    first = _upload(s3, service, ticket, "astronaut.jpg")
    assert _deliver(invoke, service, ticket.key, 1)
    done = _poll(service, ticket, accept="application/json").json
    cutout_before = fetch(done["outputs"]["cutout"]["url"])

    # WHEN the same form is used again (S3 takes it: a form works until it expires) and its event arrives
    second = _upload(s3, service, ticket, "chelsea.jpg")
    assert second != first
    answer = invoke(load_eventbridge(service, ticket.key))

    # THEN it is not processed: a counted, logged skip
    (outcome,) = answer["objects"]
    assert (outcome["status"], outcome["code"]) == ("skipped", "already_uploaded"), outcome
    # AND the result, its cutout and its mask are still the first photo's
    again = _poll(service, ticket, accept="application/json").json
    assert again["status"] == "done"
    assert fetch(again["outputs"]["cutout"]["url"]) == cutout_before
    for kind in ("cutout", "mask"):
        key = f"{kind}s/api-uploads/{ticket.id}.png"
        metadata = s3.head_object(Bucket=service.deployment.output_bucket, Key=key)["Metadata"]
        assert metadata["source-etag"] == first, kind


def load_eventbridge(service: Service, key: str) -> dict[str, Any]:
    return eventbridge(service.deployment.input_bucket, key)


def test_a_photo_replaced_before_it_was_processed_fails_the_result_instead_of_mixing_photos(
    proxy: FaultProxy, s3: Any, service: Service, invoke: Callable[[dict[str, Any]], Any]
) -> None:
    # GIVEN a result whose first attempt claimed its photo and then failed (its mask never written)
    ticket = _ticket(service)
    _upload(s3, service, ticket, "astronaut.jpg")
    proxy.inject(faults.internal_error(), method="PUT", key=f"masks/api-uploads/{ticket.id}.png", times=None)
    assert not _deliver(invoke, service, ticket.key, 1)
    proxy.clear()
    # WHEN another photo replaces it through the same form, and the first message comes back
    _upload(s3, service, ticket, "chelsea.jpg")
    assert _deliver(invoke, service, ticket.key, 2)
    (outcome,) = invoke(load_eventbridge(service, ticket.key))["objects"]

    # THEN the second photo is never processed: no output of it is written
    assert outcome["status"] == "skipped", outcome
    assert not [seen for seen in proxy.seen(method="PUT") if seen.key.startswith(("cutouts/", "masks/"))]
    # AND the result has failed, saying why, rather than pairing one photo's cutout with another's mask
    assert_failed(_poll(service, ticket), 409, "upload_replaced")


# --- The upload flow's folder and `source` reads ----------------------------------------------


@pytest.mark.parametrize(
    "relative",
    ["api-uploads/0123456789abcdef0123456789abcdef", "api-uploads/holiday.jpg", "api-uploads/2024/beach.jpg"],
)
def test_a_users_object_in_the_upload_flows_folder_is_refused(
    deploy: Callable[..., Any], s3: Any, invoke: Callable[[dict[str, Any]], Any], relative: str
) -> None:
    # GIVEN a jobs user's own object where the upload flow keeps its photos (no POST /uploads gave it out)
    deployment = deploy(INPUT_PREFIX="in/", JOBS_MAX_ATTEMPTS=str(ATTEMPTS))
    upload(s3, deployment.input_bucket, f"in/{relative}")

    answer = invoke(eventbridge(deployment.input_bucket, f"in/{relative}"))

    # THEN it is refused, and nothing lands in the upload flow's outputs
    (outcome,) = answer["objects"]
    assert (outcome["status"], outcome["code"]) == ("skipped", "reserved_prefix"), outcome
    assert not s3.list_objects_v2(Bucket=deployment.output_bucket).get("Contents")


def _template_environment(function: str, **resources: str) -> dict[str, str]:
    """The function's environment as template.yaml declares it, with the parameters' defaults."""
    template = configuration.load_template(ROOT / "template.yaml")
    return configuration.template_function(template, function, resources=resources).environment


def _reconfigure(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> None:
    """Change the deployed function's environment; the next call loads the runtime again."""
    from handler.aws import runtime

    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    runtime.reset()


def test_source_reads_are_off_as_deployed_so_no_caller_reads_anothers_upload(
    service: Service, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the API configured as the template configures it, and someone's upload in the input bucket
    bucket = service.deployment.input_bucket
    declared = _template_environment("ApiFunction", InputBucket=bucket, OutputBucket=service.deployment.output_bucket)
    names = ("INPUT_PREFIX", "SOURCE_BUCKETS", "SOURCE_PREFIX")
    _reconfigure(monkeypatch, **{name: declared.get(name) for name in names})
    key = f"{declared['INPUT_PREFIX']}api-uploads/0123456789abcdef0123456789abcdef"
    upload(s3, bucket, key)

    # WHEN a caller names it, or a key next to it that does not exist, as a `source`
    replies = [service.invoke(json_event({"source": {"bucket": bucket, "key": name}})) for name in (key, key + "0")]

    # THEN both are refused the same way, before any read
    for reply in replies:
        assert_error(reply, 403, "source_forbidden")


def test_a_source_prefix_allows_reads_under_it_only(service: Service, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _reconfigure(monkeypatch, INPUT_PREFIX="in/", SOURCE_BUCKETS=None, SOURCE_PREFIX="sources/")
    bucket = service.deployment.input_bucket
    upload(s3, bucket, "sources/cat.jpg", "chelsea.jpg")
    upload(s3, bucket, "elsewhere/cat.jpg", "chelsea.jpg")

    allowed = service.invoke(json_event({"source": {"bucket": bucket, "key": "sources/cat.jpg"}}))
    refused = service.invoke(json_event({"source": {"bucket": bucket, "key": "elsewhere/cat.jpg"}}))

    assert allowed.status == 200, allowed.body[:300]
    assert_error(refused, 403, "source_forbidden")


@pytest.mark.parametrize(
    "overrides",
    [
        {"SOURCE_BUCKETS": "{input}"},
        {"SOURCE_BUCKETS": "{input}/in/api-uploads/"},
        {"SOURCE_BUCKETS": "{output}"},
        {"SOURCE_PREFIX": "in/"},
        {"SOURCE_PREFIX": "in/api-uploads/"},
        {"SOURCE_PREFIX": "i"},
    ],
    ids=[
        "input-bucket",
        "upload-folder",
        "output-bucket",
        "input-prefix",
        "inside-input-prefix",
        "around-input-prefix",
    ],
)
def test_a_source_location_another_flow_writes_to_is_refused_at_start_up(
    service: Service, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str]
) -> None:
    from handler.aws import runtime

    names = {"input": service.deployment.input_bucket, "output": service.deployment.output_bucket}
    env: dict[str, str | None] = {"INPUT_PREFIX": "in/", "SOURCE_BUCKETS": None}
    env.update({name: value.format(**names) for name, value in overrides.items()})
    _reconfigure(monkeypatch, **env)

    with pytest.raises(ConfigurationError, match="SOURCE_"):
        runtime.current()


# --- Links never outlive what they point at ---------------------------------------------------


def test_a_results_links_expire_no_later_than_its_objects(
    configure: Callable[..., Service], s3: Any, invoke: Callable[[dict[str, Any]], Any]
) -> None:
    # GIVEN links configured to live a week, and results kept one day
    service = configure(PRESIGNED_URL_EXPIRY=str(7 * SECONDS_PER_DAY), RESULT_EXPIRY_DAYS="1")
    ticket = _ticket(service)
    _upload(s3, service, ticket)
    invoke(load_eventbridge(service, ticket.key))

    done = _poll(service, ticket, accept="application/json").json

    # THEN neither the form nor the links outlive the objects they lead to
    assert done["expires_in"] <= SECONDS_PER_DAY
    for output in done["outputs"].values():
        assert int(parse_qs(urlsplit(output["url"]).query)["X-Amz-Expires"][0]) <= SECONDS_PER_DAY
    assert _expires_in(service) <= SECONDS_PER_DAY


def _expires_in(service: Service) -> int:
    created = service.invoke(json_event({"content_type": "image/jpeg"}, path="/uploads")).json
    return int(created["expires_in"])
