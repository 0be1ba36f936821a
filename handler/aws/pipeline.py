"""The jobs' work on each S3 object: read it, render its outputs, write them, and say what became of it.

Failures split on `BackgroundRemovalError.permanent`: bad input is logged with its error code,
counted, and becomes the object's Outcome (not retried); anything else (S3 trouble, a bug) is
raised, so the platform retries it. Several objects overlap their S3 transfers with the work
(handler.aws.transfers.Overlap) when the function's `prefetch` is on.

An upload POST /uploads asked for is claimed on its record before any work (the attempt, and the
photo the result belongs to: handler.aws.upload_records) and its outcome is recorded once known:
done, a permanent failure, or, in the upload's last attempt, the transient failure itself.

A little over 400 lines on purpose: one object's steps (checks, claim, read, render, write,
record) share its Outcome and the order of its S3 calls, and read as one sequence here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from aws_lambda_powertools.metrics import MetricUnit

from handler.aws import upload_records
from handler.aws.envelopes import ObjectRef
from handler.aws.observability import count_error, logger, metrics, record_processed, tracer
from handler.aws.output_keys import is_under_output, output_keys
from handler.aws.runtime import Runtime
from handler.aws.settings import FunctionSettings
from handler.aws.storage import StoredObject
from handler.aws.transfers import Overlap, write_outputs
from handler.aws.upload_records import Attempt
from handler.core.errors import (
    BackgroundRemovalError,
    ConfigurationError,
    InvalidParameter,
    SourceForbidden,
    SourceNotFound,
)
from handler.core.image.formats import OutputKind
from handler.core.image.options import RenderOptions
from handler.core.render import process

# Characters left as they are in metadata values; everything else is percent-encoded (S3 user
# metadata travels in HTTP headers, so it must be ASCII).
_METADATA_SAFE = "/@:,=+-_.~"

# What an unexpected error is recorded as: its details stay in the logs.
_INTERNAL_MESSAGE = "an unexpected error occurred; see the function's logs"

Status = Literal["processed", "skipped", "failed"]
STATUSES: tuple[Status, ...] = ("processed", "skipped", "failed")
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What became of one object; transient failures are raised instead."""

    bucket: str
    key: str
    status: Status
    code: str | None = None
    message: str = ""
    outputs: tuple[str, ...] = ()
    # A failure's error, for the record GET /results/{id} answers with.
    error: BackgroundRemovalError | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"bucket": self.bucket, "key": self.key, "status": self.status}
        if self.code is not None:
            document["code"] = self.code
        if self.message:
            document["message"] = self.message
        if self.outputs:
            document["outputs"] = list(self.outputs)
        return document


def output_bucket(current: Runtime) -> str:
    """Where the jobs function writes; a deployment without one is refused at start-up."""
    bucket = current.settings.function.output_bucket
    if bucket is None:
        raise ConfigurationError("OUTPUT_BUCKET must be set: it is where the jobs function stores cutouts and masks")
    return bucket


@dataclass(frozen=True)
class _Claim:
    """An upload this attempt claimed: its result id and the photo (ETag) it read."""

    result_id: str
    photo: str


# The uploads claimed while handling one event, by object: filled by `_handle`, read once the
# objects' outcomes are known.
_Claims = dict[ObjectRef, _Claim]


def handle_all(refs: Iterable[ObjectRef], current: Runtime, attempt: Attempt) -> list[Outcome]:
    """Every object gets its turn; the first transient failure is raised once all have had it."""
    refs = list(refs)
    claims: _Claims = {}
    if len(refs) > 1 and current.settings.function.prefetch:
        results = _handle_overlapped(refs, current, attempt, claims)
    else:
        results = [_attempt(ref, partial(_handle_and_finish, ref, current, attempt, claims)) for ref in refs]
    for ref, result in zip(refs, results, strict=True):
        _record_upload(claims.get(ref), result, attempt, current)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return [result for result in results if not isinstance(result, Exception)]


def handle_object(ref: ObjectRef, current: Runtime, attempt: Attempt) -> Outcome:
    """Cut out one object. Permanent failures come back as an Outcome; transient ones raise."""
    claims: _Claims = {}
    result = _attempt(ref, partial(_handle_and_finish, ref, current, attempt, claims))
    _record_upload(claims.get(ref), result, attempt, current)
    if isinstance(result, Exception):
        raise result
    return result


def _record_upload(claim: _Claim | None, result: Outcome | Exception, attempt: Attempt, current: Runtime) -> None:
    """What became of an upload this attempt claimed, on its record (what GET /results/{id} answers).

    A transient failure is recorded only in the upload's last attempt: before it, the queue
    delivers the event again and the record stays pending.
    """
    if claim is None:
        return
    function = current.settings.function
    if isinstance(result, Exception):
        if not attempt.last:
            return
        error = result if isinstance(result, BackgroundRemovalError) else BackgroundRemovalError(_INTERNAL_MESSAGE)
        record = upload_records.failed(error, retryable=True)
    elif result.status == "processed" or result.code == "up_to_date":
        record = upload_records.done(result.outputs, function, time.time())
    elif result.status == "failed" and result.error is not None:
        record = upload_records.failed(result.error)
    else:
        return
    upload_records.settle(current.storage, claim.result_id, claim.photo, record, function)


def _handle_overlapped(
    refs: Sequence[ObjectRef], current: Runtime, attempt: Attempt, claims: _Claims
) -> list[Outcome | Exception]:
    """`handle_object` for each, in order, with the S3 transfers of neighbours in the background.

    Object i+1 is read while object i is worked on; object i's outputs are written while object
    i+1 is worked on, and only then is object i's outcome known (a failed write is its failure).
    """
    function = current.settings.function
    results: list[Outcome | Exception] = []
    with Overlap(current.storage, current.settings.limits.max_bytes) as overlap:
        ahead: Future[StoredObject] | None = None
        behind: _Processed | None = None
        for position, ref in enumerate(refs):
            prefetched, ahead = ahead, None
            following = refs[position + 1] if position + 1 < len(refs) else None
            if following is not None and _will_read(following, function):
                ahead = overlap.read(following)
            started = _attempt(ref, partial(_handle, ref, current, attempt, claims, overlap, prefetched))
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
    except Exception as error:  # noqa: BLE001 - every failure is this object's result, raised after the batch
        return error


def _handle_and_finish(ref: ObjectRef, current: Runtime, attempt: Attempt, claims: _Claims) -> Outcome:
    handled = _handle(ref, current, attempt, claims)
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
            return Outcome(ref.bucket, ref.key, "failed", code=error.code, message=error.message, error=error)
        except Exception:
            count_error("internal_error")
            logger.exception("object not processed; it will be retried")
            raise


def _before_reading(ref: ObjectRef, function: FunctionSettings) -> Outcome | dict[OutputKind, str]:
    """What the event alone decides, before any S3 call: the object's Outcome when it is not to be
    processed, else its output keys. A key whose outputs could not stay under the output prefix
    raises InvalidParameter."""
    keys = [key for key in (ref.key, ref.decoded_key) if key is not None]
    if any(is_under_output(ref.bucket, key, function) for key in keys):
        return Outcome(
            ref.bucket,
            ref.key,
            "skipped",
            code="output_location",
            message=f"s3://{ref.bucket}/{ref.key} is under the output location "
            f"s3://{function.output_bucket}/{function.output_prefix}",
        )
    if any(
        upload_records.in_upload_folder(key, function) and upload_records.upload_id(ref.bucket, key, function) is None
        for key in keys
    ):
        return Outcome(
            ref.bucket,
            ref.key,
            "skipped",
            code="reserved_prefix",
            message=f"s3://{ref.bucket}/{ref.key} is in the folder of POST /uploads' photos "
            f"({function.input_prefix}{upload_records.UPLOADS_FOLDER}), which takes no other object",
        )
    return output_keys(ref.key, function)


def _will_read(ref: ObjectRef, function: FunctionSettings) -> bool:
    """Whether `_handle` reads this object: `_before_reading` lets it through."""
    try:
        return not isinstance(_before_reading(ref, function), Outcome)
    except InvalidParameter:
        return False


@tracer.capture_method(capture_response=False)
def _handle(
    ref: ObjectRef,
    current: Runtime,
    attempt: Attempt,
    claims: _Claims,
    overlap: Overlap | None = None,
    prefetched: Future[StoredObject] | None = None,
) -> Outcome | _Processed:
    """One object up to its outputs; with `overlap`, they are still being written on return."""
    function = current.settings.function
    bucket = output_bucket(current)
    targets = _before_reading(ref, function)
    if isinstance(targets, Outcome):
        if targets.code == "output_location":
            logger.warning("object is under the output location; not processed (recursive loop guard)")
        else:
            logger.warning("object is in the upload flow's folder; not processed", extra={"reason": targets.code})
        _count_skipped()
        return targets

    key, stored = _read(ref, current, prefetched)
    options = RenderOptions(format=function.output_format, keep_metadata=function.keep_metadata)
    result_id = upload_records.upload_id(ref.bucket, key, function)
    if result_id is not None:
        refusal = upload_records.claim(current.storage, result_id, stored.etag, attempt, function)
        if refusal is not None:
            return _refused(ref.bucket, key, refusal)
        claims[ref] = _Claim(result_id, stored.etag)
        # An upload through POST /uploads: the caller's options, stored with it, in place of the
        # function's; its outputs get the extension of the format asked for.
        options = upload_records.upload_options(stored.metadata)
        targets = output_keys(key, function, options.format)
    elif key != ref.key:
        targets = output_keys(key, function)
    if overlap is not None:
        overlap.wait_for_writes(targets.values())  # the object before may be writing these very outputs
    if _up_to_date(current, bucket, targets.values(), stored.etag):
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
        options=options,
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
    processed = _Processed(ref, key, tuple(targets.values()), result.megapixels, result.inference_ms, result.total_ms)
    if overlap is None:
        write_outputs(current.storage, bucket, writes, metadata)
        return processed
    return processed.writing(overlap.write(bucket, writes, metadata))


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


def _refused(bucket: str, key: str, refusal: upload_records.Refusal) -> Outcome:
    """An upload not processed: skipped, or failed when the refusal fails its result."""
    if refusal.error is not None:
        count_error(refusal.code)
        logger.warning("upload not processed; its result has failed", extra={"error_code": refusal.code})
        return Outcome(bucket, key, "failed", code=refusal.code, message=refusal.message, error=refusal.error)
    logger.warning("upload not processed", extra={"reason": refusal.code})
    _count_skipped()
    return Outcome(bucket, key, "skipped", code=refusal.code, message=refusal.message)


def _read(ref: ObjectRef, current: Runtime, prefetched: Future[StoredObject] | None = None) -> tuple[str, StoredObject]:
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


def _up_to_date(current: Runtime, bucket: str, keys: Iterable[str], etag: str) -> bool:
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


def _metadata_text(value: str) -> str:
    return quote(value, safe=_METADATA_SAFE)


def _count_skipped() -> None:
    metrics.add_metric(name="Skipped", unit=MetricUnit.Count, value=1)
