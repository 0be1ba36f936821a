"""The jobs entry point: a cutout and a mask stored for each S3 object an event names.

One function, every envelope an S3 object arrives in:

- an S3 event notification (`Records[].s3`), and the `s3:TestEvent` S3 sends when one is set up;
- an EventBridge "Object Created" event from S3 (what template.yaml wires up);
- SQS messages carrying either of those (partial batch failures reported per message);
- S3 Batch Operations tasks, invocation schema 1.0 and 2.0 (backfills).

Thin by design: each envelope is parsed into `ObjectRef`s, and `handle_object` reads the object,
calls `render.process` and writes the outputs. Failures split on `BackgroundRemovalError.permanent`:
bad input is logged with its error code, counted, and not retried; anything else (S3 trouble, a
bug) goes back to the platform, which retries it.

An event naming several objects overlaps S3 transfers with the work (JOBS_PREFETCH, on by default):
while one object is decoded, inferred and encoded, the next one is read and the previous one's
outputs are written, each on its own background thread, one object at a time (see `_Overlap`).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote, unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSRecord
from aws_lambda_powertools.utilities.data_classes.s3_batch_operation_event import (
    RESULT_CODE_TYPE,
    S3BatchOperationEvent,
    S3BatchOperationResponse,
    S3BatchOperationResponseRecord,
    S3BatchOperationTask,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.aws import runtime
from handler.aws.settings import FunctionSettings
from handler.core.errors import (
    BackgroundRemovalError,
    ConfigurationError,
    InvalidParameter,
    UnsupportedEvent,
    SourceForbidden,
    SourceNotFound,
)
from handler.core.formats import FORMATS
from handler.aws.keys import output_key
from handler.aws.observability import LOG_EVENT, count_error, logger, metrics, record_processed, tracer
from handler.core.options import RenderOptions
from handler.core.render import process
from handler.aws.storage import Storage, StoredObject

# Characters left as they are in metadata values; everything else is percent-encoded (S3 user
# metadata travels in HTTP headers, so it must be ASCII).
_METADATA_SAFE = "/@:,=+-_.~"
S3_TEST_EVENT = "s3:TestEvent"
_FIELD_NAME_CHARS = 24

Status = Literal["processed", "skipped", "failed"]
E = TypeVar("E")
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectRef:
    """An S3 object named by an event; `decoded_key` is tried when no object has `key`."""

    bucket: str
    key: str
    decoded_key: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one object; transient failures are raised instead."""

    bucket: str
    key: str
    status: Status
    code: str | None = None
    message: str = ""
    outputs: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"bucket": self.bucket, "key": self.key, "status": self.status}
        if self.code is not None:
            document["code"] = self.code
        if self.message:
            document["message"] = self.message
        if self.outputs:
            document["outputs"] = list(self.outputs)
        return document


def _runtime() -> runtime.Runtime:
    current = runtime.current()
    if current.settings.function.output_bucket is None:
        raise ConfigurationError("OUTPUT_BUCKET must be set: it is where the jobs function stores cutouts and masks")
    return current


# Load the model (and check the settings) during the init phase, once per execution environment.
_runtime()


@logger.inject_lambda_context(log_event=LOG_EVENT)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _runtime()
    kind = _checked(_event_kind, event)
    if kind == "sqs":
        return process_partial_response(
            event=event, record_handler=_sqs_record, processor=_sqs_processor, context=context
        )
    if kind == "batch_operations":
        return _batch_operations(S3BatchOperationEvent(event))
    if kind == "s3_test":
        logger.info("ignoring the s3:TestEvent that S3 sends when a notification is configured")
        return _summary([], ignored=1)
    refs, ignored = _refs_from(kind, event)
    return _summary(_handle_all(refs), ignored=ignored)


# --- Envelopes --------------------------------------------------------------------------------


def _checked(parse: Callable[[E], T], event: E) -> T:
    """`parse(event)`, with an unreadable event logged (by its shape, never its content) and counted."""
    try:
        return parse(event)
    except UnsupportedEvent as error:
        count_error(error.code)
        logger.error("event not understood", extra={"error_code": error.code, "error_message": error.message})
        raise


def _event_kind(event: Any) -> str:
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


def _refs_from(kind: str, event: Mapping[str, Any]) -> tuple[list[ObjectRef], int]:
    """The objects an S3 notification or an EventBridge event names, and how many records it ignored."""
    if kind == "s3":
        return _refs_from_notification(event)
    if kind == "eventbridge":
        return _refs_from_eventbridge(event)
    raise UnsupportedEvent(f"{kind} events cannot be nested here")


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
        raise UnsupportedEvent(f"an EventBridge S3 event without detail.bucket.name or detail.object.key ({error})")
    # Used as sent (see the module docstring); Powertools' data class would unquote it.
    return [_undocumented_encoding(bucket, key)], 0


def _undocumented_encoding(bucket: str, key: str) -> ObjectRef:
    decoded = unquote_plus(key)
    return ObjectRef(bucket=bucket, key=key, decoded_key=decoded if decoded != key else None)


# --- SQS --------------------------------------------------------------------------------------

_sqs_processor = BatchProcessor(event_type=EventType.SQS)


def _sqs_record(record: SQSRecord) -> dict[str, Any]:
    """One message: raising reports it in batchItemFailures, so SQS delivers it again (or to its DLQ)."""
    with logger.append_context_keys(message_id=record.message_id):
        body, kind = _checked(_sqs_body, record)
        if kind == "s3_test":
            logger.info("ignoring the s3:TestEvent that S3 sends when a notification is configured")
            return _summary([], ignored=1)
        refs, ignored = _refs_from(kind, body)
        return _summary(_handle_all(refs), ignored=ignored)


def _sqs_body(record: SQSRecord) -> tuple[Any, str]:
    try:
        body = json.loads(record.body)
    except ValueError as error:
        raise UnsupportedEvent(f"SQS message {record.message_id} is not JSON ({error.msg})") from None
    return body, _event_kind(body)


# --- S3 Batch Operations ----------------------------------------------------------------------


def _batch_operations(event: S3BatchOperationEvent) -> dict[str, Any]:
    """One result per task, in the response shape S3 Batch Operations requires."""
    response = S3BatchOperationResponse(
        invocation_schema_version=event.invocation_schema_version,
        invocation_id=event.invocation_id,
        # A task left without a result (there should be none) is reported, not silently passed.
        treat_missing_keys_as="PermanentFailure",
    )
    for task in event.tasks:
        response.add_result(_batch_task(event.invocation_schema_version, task))
    if len(response.results) == 1:
        return response.asdict()
    # Powertools' asdict() insists on one result; S3 sends one task per invocation today.
    return {
        "invocationSchemaVersion": response.invocation_schema_version,
        "treatMissingKeysAs": response.treat_missing_keys_as,
        "invocationId": response.invocation_id,
        "results": [result.asdict() for result in response.results],
    }


def _batch_task(schema_version: str, task: S3BatchOperationTask) -> S3BatchOperationResponseRecord:
    def result(code: RESULT_CODE_TYPE, text: str) -> S3BatchOperationResponseRecord:
        return task.build_task_batch_response(code, text)

    try:
        ref = _batch_ref(schema_version, task)
        outcome = handle_object(ref)
    except BackgroundRemovalError as error:
        if error.permanent:  # only an unreadable task gets here: handle_object returns the others
            count_error(error.code)
            return result("PermanentFailure", f"{error.code}: {error.message}")
        return result("TemporaryFailure", f"{error.code}: {error.message}")
    except Exception:  # logged and counted by handle_object; the details stay in the logs
        return result("TemporaryFailure", "internal_error: an unexpected error occurred; see the function's logs")
    if outcome.status == "failed":
        return result("PermanentFailure", f"{outcome.code}: {outcome.message}")
    if outcome.status == "skipped":
        return result("Succeeded", f"skipped ({outcome.code}): {outcome.message}")
    return result("Succeeded", " ".join(outcome.outputs))


def _batch_ref(schema_version: str, task: S3BatchOperationTask) -> ObjectRef:
    key = task.get("s3Key")
    # 1.0 names the bucket by ARN (arn:aws:s3:::name), 2.0 by name.
    bucket = task.get("s3Bucket") or str(task.get("s3BucketArn") or "").rsplit(":", 1)[-1]
    if not isinstance(key, str) or not key or not bucket:
        raise UnsupportedEvent("a Batch Operations task without s3Key and s3Bucket/s3BucketArn")
    if schema_version == "1.0":
        return ObjectRef(bucket=bucket, key=unquote_plus(key))
    return _undocumented_encoding(bucket, key)


# --- One object -------------------------------------------------------------------------------


def _handle_all(refs: Iterable[ObjectRef]) -> list[Outcome]:
    """Every object gets its turn; the first transient failure is raised once all have had it."""
    refs = list(refs)
    if len(refs) > 1 and runtime.current().settings.function.prefetch:
        results = _handle_overlapped(refs)
    else:
        results = [_attempt(ref, partial(_handle_and_finish, ref)) for ref in refs]
    retry = next((result for result in results if isinstance(result, Exception)), None)
    if retry is not None:
        raise retry
    return cast(list[Outcome], results)


def _handle_overlapped(refs: Sequence[ObjectRef]) -> list[Outcome | Exception]:
    """`handle_object` for each, in order, with the S3 transfers of neighbours in the background.

    Object i+1 is read while object i is worked on; object i's outputs are written while object
    i+1 is worked on, and only then is object i's outcome known (a failed write is its failure).
    """
    current = runtime.current()
    function = current.settings.function
    results: list[Outcome | Exception] = []
    with _Overlap(current.storage, current.settings.limits.max_bytes) as overlap:
        ahead: Future[StoredObject] | None = None
        behind: _Processed | None = None
        for position, ref in enumerate(refs):
            prefetched, ahead = ahead, None
            following = refs[position + 1] if position + 1 < len(refs) else None
            if following is not None and _will_read(following, function):
                ahead = overlap.read(following)
            started = _attempt(ref, partial(_handle, ref, overlap, prefetched))
            prefetched = None  # its bytes may go as soon as the object is done with them
            if behind is not None:
                results.append(_attempt(behind.ref, behind.finish))
                behind = None
            if isinstance(started, _Processed):
                behind = started
            else:
                results.append(started)
        if behind is not None:
            results.append(_attempt(behind.ref, behind.finish))
    return results


def _attempt(ref: ObjectRef, step: Callable[[], T]) -> T | Outcome | Exception:
    """`_settled(ref, step)`, with a transient failure (logged and counted there) returned, not raised."""
    try:
        return _settled(ref, step)
    except Exception as error:
        return error


def handle_object(ref: ObjectRef) -> Outcome:
    """Cut out one object. Permanent failures come back as an Outcome; transient ones raise."""
    return _settled(ref, partial(_handle_and_finish, ref))


def _handle_and_finish(ref: ObjectRef) -> Outcome:
    handled = _handle(ref)
    return handled.finish() if isinstance(handled, _Processed) else handled


def _settled(ref: ObjectRef, step: Callable[[], T]) -> T | Outcome:
    """`step()`, with failures logged and counted for `ref`: permanent ones become its Outcome."""
    with logger.append_context_keys(bucket=ref.bucket, key=ref.key):
        try:
            return step()
        except BackgroundRemovalError as error:
            count_error(error.code)
            if not error.permanent:
                logger.warning("object not processed; it will be retried", extra={"error_code": error.code})
                raise
            logger.warning(
                "object not processed; it will not be retried",
                extra={"error_code": error.code, "error_message": error.message},
            )
            return Outcome(ref.bucket, ref.key, "failed", code=error.code, message=error.message)
        except Exception:
            count_error("internal_error")
            logger.exception("object not processed; it will be retried")
            raise


@tracer.capture_method(capture_response=False)
def _handle(
    ref: ObjectRef, overlap: _Overlap | None = None, prefetched: Future[StoredObject] | None = None
) -> Outcome | _Processed:
    """One object up to its outputs; with `overlap`, they are still being written on return."""
    current = runtime.current()
    function = current.settings.function
    output_bucket = cast(str, function.output_bucket)  # checked by _runtime()
    if _under_output(ref, function):
        logger.warning("object is under the output location; not processed (recursive loop guard)")
        _count_skipped()
        return Outcome(
            ref.bucket,
            ref.key,
            "skipped",
            code="output_location",
            message=f"s3://{ref.bucket}/{ref.key} is under the output location "
            f"s3://{output_bucket}/{function.output_prefix}",
        )

    targets = _targets(ref.key, function)  # refuses a key that could escape the prefix before reading it
    key, stored = _read(ref, current, prefetched)
    if key != ref.key:
        targets = _targets(key, function)
    if overlap is not None:
        overlap.wait_for_writes(targets.values())  # the object before may be writing these very outputs
    if _up_to_date(current, output_bucket, targets.values(), stored.etag):
        logger.info("outputs already match this object; skipped", extra={"etag": stored.etag})
        _count_skipped()
        return Outcome(
            ref.bucket,
            key,
            "skipped",
            code="up_to_date",
            message="the outputs were made from this object by this model",
            outputs=tuple(targets.values()),
        )

    result = process(
        stored.data,
        kinds=function.outputs,
        options=RenderOptions(format=function.output_format, keep_metadata=function.keep_metadata),
        model=current.model,
        limits=current.settings.limits,
    )
    box = result.box
    metadata = {
        "source-bucket": ref.bucket,
        "source-key": _metadata_text(key),
        "source-etag": stored.etag,
        "model": _metadata_text(current.model_name),
        "model-sha256": current.model_sha256,
        "foreground-box": f"{box.left},{box.top},{box.width},{box.height}" if box is not None else "none",
    }
    if stored.version_id:
        metadata["source-version"] = stored.version_id
    writes = [(targets[kind], rendered.data, rendered.content_type) for kind, rendered in result.outputs.items()]
    processed = _Processed(
        ref, key, tuple(targets.values()), result.megapixels, result.inference_ms, result.total_ms
    )
    if overlap is None:
        _write(current.storage, output_bucket, writes, metadata)
        return processed
    return processed.writing(overlap.write(output_bucket, writes, metadata))


@dataclass(frozen=True)
class _Processed:
    """An object whose outputs are written, or being written (`written`); finish() gives its Outcome."""

    ref: ObjectRef
    key: str
    outputs: tuple[str, ...]
    megapixels: float
    inference_ms: float
    total_ms: float
    written: Future[None] | None = None

    def writing(self, written: Future[None]) -> _Processed:
        return replace(self, written=written)

    def finish(self) -> Outcome:
        if self.written is not None:
            self.written.result()  # a failed write is this object's failure, raised here
        record_processed(self.megapixels, self.inference_ms, self.total_ms)
        logger.info(
            "object processed",
            extra={
                "outputs": list(self.outputs),
                "megapixels": round(self.megapixels, 3),
                "inference_ms": round(self.inference_ms, 1),
                "total_ms": round(self.total_ms, 1),
            },
        )
        return Outcome(self.ref.bucket, self.key, "processed", outputs=self.outputs)


Write = tuple[str, bytes, str]  # key, data, content type


def _write(storage: Storage, bucket: str, writes: Iterable[Write], metadata: Mapping[str, str]) -> None:
    for key, data, content_type in writes:
        storage.write(bucket, key, data, content_type=content_type, metadata=metadata)


class _Overlap:
    """S3 transfers for a batch on two background threads: reads one object ahead, writes one behind.

    One read and one write at a time (each executor has one thread, and a write waits for the one
    before), so a batch holds at most three objects' data: the next one's bytes, the current one
    and the previous one's outputs. Peak memory is the bill. Leaving the `with` waits for both.
    """

    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self._storage = storage
        self._max_bytes = max_bytes
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs-read")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs-write")
        self._writing: tuple[frozenset[str], Future[None]] | None = None

    def __enter__(self) -> _Overlap:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True)

    def read(self, ref: ObjectRef) -> Future[StoredObject]:
        """Start reading `ref.key` (its decoded form, if needed, is read later, in the foreground)."""
        return self._reader.submit(self._storage.read, ref.bucket, ref.key, max_bytes=self._max_bytes)

    def write(self, bucket: str, writes: Sequence[Write], metadata: Mapping[str, str]) -> Future[None]:
        self.wait_for_writes()
        future = self._writer.submit(_write, self._storage, bucket, writes, metadata)
        self._writing = (frozenset(key for key, _, _ in writes), future)
        return future

    def wait_for_writes(self, keys: Iterable[str] | None = None) -> None:
        """Wait for the pending write (only if it writes one of `keys`, when given).

        Without raising: a failed write is reported by its own object.
        """
        if self._writing is not None and (keys is None or not self._writing[0].isdisjoint(keys)):
            wait([self._writing[1]])


def _read(
    ref: ObjectRef, current: runtime.Runtime, prefetched: Future[StoredObject] | None = None
) -> tuple[str, StoredObject]:
    """The key that exists and its object; the decoded key is the fallback for undocumented encodings."""
    max_bytes = current.settings.limits.max_bytes
    try:
        if prefetched is not None:
            return ref.key, prefetched.result()
        return ref.key, current.storage.read(ref.bucket, ref.key, max_bytes=max_bytes)
    except (SourceNotFound, SourceForbidden):
        # Without s3:ListBucket, S3 answers 403 rather than 404 for a key that does not exist.
        if ref.decoded_key is None:
            raise
    logger.info("no object has the key as sent; trying it URL-decoded", extra={"decoded_key": ref.decoded_key})
    return ref.decoded_key, current.storage.read(ref.bucket, ref.decoded_key, max_bytes=max_bytes)


def _up_to_date(current: runtime.Runtime, bucket: str, keys: Iterable[str], etag: str) -> bool:
    """True when every output exists and was made from this version of the source by this model.

    The model is told by its content's hash: a redeployed model has the same file name.
    """
    for key in keys:
        try:
            existing = current.storage.metadata(bucket, key)
        except SourceForbidden:
            # S3 answers HEAD of a missing key with 403 when the role may not list the bucket.
            return False
        if (
            existing is None
            or existing.get("source-etag") != etag
            or existing.get("model-sha256") != current.model_sha256
        ):
            return False
    return True


def _is_output(bucket: str, key: str, function: FunctionSettings) -> bool:
    return bucket == function.output_bucket and key.startswith(function.output_prefix)


def _under_output(ref: ObjectRef, function: FunctionSettings) -> bool:
    return any(_is_output(ref.bucket, key, function) for key in (ref.key, ref.decoded_key) if key is not None)


def _targets(source_key: str, function: FunctionSettings) -> dict[str, str]:
    extension = FORMATS[function.output_format].extension
    return {kind: output_key(source_key, kind, extension, function) for kind in function.outputs}


def _will_read(ref: ObjectRef, function: FunctionSettings) -> bool:
    """Whether `_handle` reads this object: it is not refused on its location or key alone."""
    if _under_output(ref, function):
        return False
    try:
        _targets(ref.key, function)
    except InvalidParameter:
        return False
    return True


def _metadata_text(value: str) -> str:
    return quote(value, safe=_METADATA_SAFE)


def _count_skipped() -> None:
    metrics.add_metric(name="Skipped", unit=MetricUnit.Count, value=1)


def _summary(outcomes: list[Outcome], *, ignored: int = 0) -> dict[str, Any]:
    statuses = ("processed", "skipped", "failed")
    counts = {status: sum(1 for outcome in outcomes if outcome.status == status) for status in statuses}
    return {**counts, "ignored": ignored, "objects": [outcome.as_dict() for outcome in outcomes]}
