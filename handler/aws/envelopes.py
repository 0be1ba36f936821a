"""The envelopes an S3 object arrives in at the jobs function, and the objects each one names.

- an S3 event notification (`Records[].s3`), and the `s3:TestEvent` S3 sends when one is set up;
- an EventBridge "Object Created" event from S3 (what template.yaml wires up);
- SQS messages carrying either of those;
- S3 Batch Operations tasks, invocation schema 1.0 and 2.0 (backfills).

How each envelope encodes the object key:

- S3 event notifications URL-encode it, form style ("red flower.jpg" becomes "red+flower.jpg"):
  decoded with `unquote_plus` (Amazon S3 User Guide, "Event message structure").
- Batch Operations: "keys from S3 Batch Operations are URL encoded" (Amazon S3 User Guide,
  "Invoke AWS Lambda function"); documented for schema 1.0, decoded with `unquote_plus`.
- EventBridge's S3 events are not documented as encoded and arrive with keys as stored (a real
  event shows a key's ':' as is, where a notification would send '%3A'); schema 2.0's encoding is
  not documented either. For those the key is used as sent and its `unquote_plus` form is tried
  only if no object has the key as sent, so either behaviour finds the object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, SQSRecord
from aws_lambda_powertools.utilities.data_classes.s3_batch_operation_event import S3BatchOperationTask

from handler.aws.observability import count_error, logger
from handler.core.errors import UnsupportedEvent

S3_TEST_EVENT = "s3:TestEvent"
_FIELD_NAME_CHARS = 24

# The shapes an event can have; "s3_test" is the notification set-up's test message.
EventShape = Literal["s3", "eventbridge", "sqs", "batch_operations", "s3_test"]
E = TypeVar("E")
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectRef:
    """An S3 object named by an event; `decoded_key` is tried when no object has `key`."""

    bucket: str
    key: str
    decoded_key: str | None = None


def checked(parse: Callable[[E], T], event: E) -> T:
    """`parse(event)`, with an unreadable event logged (by its shape, never its content) and counted."""
    try:
        return parse(event)
    except UnsupportedEvent as error:
        count_error(error.code)
        logger.error("event not understood", extra={"error_code": error.code, "error_message": error.message})
        raise


def event_shape(event: Any) -> EventShape:
    if not isinstance(event, Mapping):
        raise UnsupportedEvent(f"expected a JSON object as the event, got {type(event).__name__}")
    if "invocationSchemaVersion" in event and "tasks" in event:
        return "batch_operations"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], Mapping):
        source = records[0].get("eventSource")
        if source == "aws:sqs":
            return "sqs"
        if source == "aws:s3":
            return "s3"
        raise UnsupportedEvent(f"records from {source!r} are not supported; expected aws:s3 or aws:sqs")
    if event.get("Event") == S3_TEST_EVENT:
        return "s3_test"
    if event.get("source") == "aws.s3" and "detail-type" in event:
        return "eventbridge"
    # Name the top-level fields only, each cut short: the event (its field names too) may carry
    # anything, images included.
    fields = ", ".join(sorted(str(name)[:_FIELD_NAME_CHARS] for name in event)[:12]) or "none"
    raise UnsupportedEvent(
        "not an S3 notification, EventBridge S3 event, SQS batch or S3 Batch Operations event "
        f"(top-level fields: {fields})"
    )


def object_refs(shape: EventShape, event: Mapping[str, Any]) -> tuple[list[ObjectRef], int]:
    """The objects an S3 notification or an EventBridge event names, and how many records it ignored."""
    if shape == "s3":
        return _refs_from_notification(event)
    if shape == "eventbridge":
        return _refs_from_eventbridge(event)
    raise UnsupportedEvent(f"{shape} events cannot be nested here")


def sqs_body(record: SQSRecord) -> tuple[Any, EventShape]:
    """The event an SQS message carries, and its shape."""
    try:
        body = json.loads(record.body)
    except ValueError as error:
        # JSONDecodeError's own words, without the document it quotes.
        raise UnsupportedEvent(
            f"SQS message {record.message_id} is not JSON ({getattr(error, 'msg', error)})"
        ) from None
    return body, event_shape(body)


def batch_task_ref(schema_version: str, task: S3BatchOperationTask) -> ObjectRef:
    key = task.get("s3Key")
    # 1.0 names the bucket by ARN (arn:aws:s3:::name), 2.0 by name.
    bucket = task.get("s3Bucket") or str(task.get("s3BucketArn") or "").rsplit(":", 1)[-1]
    if not isinstance(key, str) or not key or not bucket:
        raise UnsupportedEvent("a Batch Operations task without s3Key and s3Bucket/s3BucketArn")
    if schema_version == "1.0":
        return ObjectRef(bucket=bucket, key=unquote_plus(key))
    return _undocumented_encoding(bucket, key)


def _refs_from_notification(event: Mapping[str, Any]) -> tuple[list[ObjectRef], int]:
    refs: list[ObjectRef] = []
    ignored = 0
    for record in S3Event(dict(event)).records:
        if not record.event_name.startswith("ObjectCreated:"):
            logger.info("ignoring an S3 event that creates no object", extra={"event_name": record.event_name})
            ignored += 1
            continue
        # Documented as URL-encoded, form style: '+' is a space, a real '+' arrives as %2B.
        refs.append(ObjectRef(bucket=record.s3.bucket.name, key=unquote_plus(record.s3.get_object.key)))
    return refs, ignored


def _refs_from_eventbridge(event: Mapping[str, Any]) -> tuple[list[ObjectRef], int]:
    if event.get("detail-type") != "Object Created":
        logger.info("ignoring an S3 event that creates no object", extra={"detail_type": event.get("detail-type")})
        return [], 1
    try:
        detail = event["detail"]
        bucket, key = detail["bucket"]["name"], detail["object"]["key"]
    except (KeyError, TypeError) as error:
        raise UnsupportedEvent(
            f"an EventBridge S3 event without detail.bucket.name or detail.object.key ({error})"
        ) from error
    # Used as sent (see the module docstring); Powertools' data class would unquote it.
    return [_undocumented_encoding(bucket, key)], 0


def _undocumented_encoding(bucket: str, key: str) -> ObjectRef:
    decoded = unquote_plus(key)
    return ObjectRef(bucket=bucket, key=key, decoded_key=decoded if decoded != key else None)
