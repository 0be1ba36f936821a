"""A result whose upload never came: GET /results/{id} stops answering "pending" once the upload's
form has expired, instead of leaving a client to poll for ever.

The handlers run against the local S3 (moto server); a ticket's record is backdated in S3 to stand
for one handed out hours ago (no clock is patched and nothing sleeps).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.helpers.api import Service, http_event, json_event

EXPIRY = 3600  # PRESIGNED_URL_EXPIRY's default: the form's lifetime
# What the README promises, stated here rather than read from the code it checks: a result fails
# 15 minutes after its form expired with no upload.
UPLOAD_GRACE_SECONDS = 15 * 60


def _ticket(service: Service) -> dict[str, Any]:
    created = service.invoke(json_event({"content_type": "image/jpeg"}, path="/uploads", accept="application/json"))
    assert created.status == 201, created.body[:300]
    ticket: dict[str, Any] = created.json
    return ticket


def _record(service: Service, s3: Any, ticket: dict[str, Any]) -> dict[str, Any]:
    stored = s3.get_object(Bucket=service.deployment.output_bucket, Key=f"results/{ticket['id']}.json")
    record: dict[str, Any] = json.loads(stored["Body"].read())
    return record


def _backdate(service: Service, s3: Any, ticket: dict[str, Any], seconds: int) -> int:
    """The ticket's record as if it had been handed out `seconds` earlier; its new deadline."""
    record = _record(service, s3, ticket)
    record["upload_by"] -= seconds
    s3.put_object(
        Bucket=service.deployment.output_bucket, Key=f"results/{ticket['id']}.json", Body=json.dumps(record).encode()
    )
    upload_by: int = record["upload_by"]
    return upload_by


def _poll(service: Service, ticket: dict[str, Any]) -> Any:
    return service.invoke(http_event(b"", content_type=None, path=ticket["result"], method="GET"))


def test_a_pending_record_says_until_when_the_upload_may_come(service: Service, s3: Any) -> None:
    started = time.time()
    ticket = _ticket(service)

    record = _record(service, s3, ticket)

    assert record["status"] == "pending"
    assert started + EXPIRY - 1 <= record["upload_by"] <= time.time() + EXPIRY
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record["upload_by"])) == ticket["expires_at"]


def test_an_upload_that_never_came_fails_once_its_form_has_expired(service: Service, s3: Any) -> None:
    # GIVEN a ticket whose form expired more than the grace period ago, and no upload
    ticket = _ticket(service)
    upload_by = _backdate(service, s3, ticket, EXPIRY + UPLOAD_GRACE_SECONDS + 60)

    reply = _poll(service, ticket)

    # THEN the result has failed, saying why, and the record says so for good
    assert reply.status == 410, reply.body[:300]
    assert reply.json["status"] == "failed"
    assert reply.json["error"]["code"] == "upload_not_received"
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(upload_by)) in reply.json["error"]["message"]
    assert _record(service, s3, ticket)["status"] == "failed"
    assert _poll(service, ticket).status == 410


@pytest.mark.parametrize(
    "age",
    [
        pytest.param(EXPIRY + UPLOAD_GRACE_SECONDS - 60, id="within the grace period"),
        pytest.param(0, id="form still valid"),
    ],
)
def test_an_upload_may_still_come_until_the_grace_period_ends(service: Service, s3: Any, age: int) -> None:
    ticket = _ticket(service)
    _backdate(service, s3, ticket, age)

    reply = _poll(service, ticket)

    assert reply.status == 202, reply.body[:300]
    assert _record(service, s3, ticket)["status"] == "pending"


def test_an_upload_that_came_stays_pending_while_it_is_processed(service: Service, s3: Any) -> None:
    # GIVEN an old ticket whose photo did arrive (the jobs function has not finished with it yet)
    ticket = _ticket(service)
    _backdate(service, s3, ticket, EXPIRY + UPLOAD_GRACE_SECONDS + 60)
    s3.put_object(Bucket=service.deployment.input_bucket, Key=ticket["upload"]["fields"]["key"], Body=b"photo")

    reply = _poll(service, ticket)

    assert reply.status == 202, reply.body[:300]
    assert _record(service, s3, ticket)["status"] == "pending"


def test_a_record_from_before_upload_deadlines_stays_pending(service: Service, s3: Any) -> None:
    ticket = _ticket(service)
    record = _record(service, s3, ticket)
    del record["upload_by"]
    s3.put_object(
        Bucket=service.deployment.output_bucket, Key=f"results/{ticket['id']}.json", Body=json.dumps(record).encode()
    )

    assert _poll(service, ticket).status == 202
