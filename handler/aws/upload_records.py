"""What POST /uploads hands out and the jobs function reports back: result ids, where an upload and
its record live, the options an upload carries, and the record of what became of it.

- An upload is the object `<INPUT_PREFIX>api-uploads/<id>` of the input bucket, created by a browser
  form POST that S3 checks against the policy POST /uploads signed. Its options travel with it as
  the user metadata `x-amz-meta-options` (JSON), pinned by that policy. `<INPUT_PREFIX>api-uploads/`
  is the upload flow's own folder: the jobs path refuses any other object there (`reserved_prefix`),
  so nothing else shares its outputs (`cutouts/api-uploads/`, `masks/api-uploads/`) or its expiry rules.
- Its record is `<OUTPUT_PREFIX>results/<id>.json` in the output bucket, written only by
  check-and-set (S3 conditional writes): `pending` from POST /uploads on, then `done` (with the
  output keys) or `failed` (with the error the synchronous API would have answered). GET
  /results/{id} reads it.
- A result belongs to one photo, the first one an attempt read (its ETag, `photo`): a later
  upload through the same form is never processed (`already_uploaded`), and one that replaced the
  photo before it was processed fails the result (`upload_replaced`) rather than pairing one
  photo's cutout with another's mask. A done result never changes.
- Every attempt first records itself (`attempt`: its number, the queue's budget and the moment
  Lambda stops it at the latest). A transient failure in the last attempt is recorded as failed
  there and then; an attempt that dies without a word (a crash, out of memory, a timeout) leaves
  only that, and once the last one's deadline has passed GET /results/{id} records the result as
  failed (`processing_failed`). Both kinds are `retryable`: an operator's redrive of the failure
  queue runs new attempts, and one that succeeds makes the result done.
- A pending record also says until when the upload may arrive (its form's expiry, `upload_by`):
  still pending well after that, with no upload in the input bucket, it is an upload that never
  came, and GET /results/{id} records it as failed instead of answering "pending" forever.

Ids are 128 random bits in lower-case hex, and an id is accepted only in exactly that form, so no
caller-chosen text ever becomes part of a key.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from handler.aws.output_keys import OUTPUT_FOLDERS
from handler.aws.settings import FunctionSettings
from handler.aws.storage import Storage, WriteConflict
from handler.core.errors import (
    BackgroundRemovalError,
    ConfigurationError,
    InvalidParameter,
    ProcessingFailed,
    ResultNotFound,
    SourceNotFound,
    UploadNotReceived,
    UploadReplaced,
)
from handler.core.image.formats import OutputKind
from handler.core.image.options import RenderOptions, parse_options

UPLOADS_FOLDER = "api-uploads/"
RECORDS_FOLDER = "results/"
OPTIONS_METADATA = "options"
# The form field that stores the options as the upload's user metadata.
OPTIONS_FIELD = f"x-amz-meta-{OPTIONS_METADATA}"
# S3 keeps at most 2 KB of user metadata per object; valid options need a fraction of this.
MAX_OPTIONS_BYTES = 1024
# A record is a few hundred bytes; anything far larger is not one of ours.
MAX_RECORD_BYTES = 64 * 1024
# How long after its form expired an upload may still be arriving: S3 checks a form's expiry when
# the POST starts, and a large photo on a slow link takes minutes (64 MB in 15 minutes is ~0.6
# Mbit/s).
UPLOAD_GRACE_SECONDS = 15 * 60
# How long after an attempt's deadline its last S3 write may still land: Lambda stops the process
# at the deadline, but a request sent just before can complete just after.
ATTEMPT_GRACE_SECONDS = 60
# Check-and-set rounds before giving up (as a transient failure): each lost round means another
# writer changed the record in between, which happens once in a race, not over and over.
_CAS_ROUNDS = 3
_ID = re.compile(r"[0-9a-f]{32}")

RecordStatus = Literal["pending", "done", "failed"]
T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """One delivery of an upload's event: its number, how many the queue allows, and the moment
    (Unix seconds) Lambda stops the invocation at the latest."""

    number: int
    of: int
    ends_by: float

    @property
    def last(self) -> bool:
        return self.number >= self.of


def new_id() -> str:
    return secrets.token_hex(16)


def checked_id(text: str) -> str:
    """`text` if it has the exact form of an id we hand out; anything else is refused before S3."""
    if _ID.fullmatch(text) is None:
        raise InvalidParameter("id", "not a result id (32 lower-case hexadecimal digits, as POST /uploads gives)")
    return text


def upload_key(result_id: str, function: FunctionSettings) -> str:
    return f"{function.input_prefix}{UPLOADS_FOLDER}{result_id}"


def record_key(result_id: str, function: FunctionSettings) -> str:
    return f"{function.output_prefix}{RECORDS_FOLDER}{result_id}.json"


def upload_id(bucket: str, key: str, function: FunctionSettings) -> str | None:
    """The result id if `bucket`/`key` is where POST /uploads has uploads go, else None."""
    if bucket != function.input_bucket:
        return None
    prefix = f"{function.input_prefix}{UPLOADS_FOLDER}"
    if not key.startswith(prefix):
        return None
    candidate = key[len(prefix) :]
    return candidate if _ID.fullmatch(candidate) else None


def in_upload_folder(key: str, function: FunctionSettings) -> bool:
    """Whether `key` (of any bucket) would have its outputs in the upload flow's: its part below the
    input prefix, as output keys are made, starts with the upload folder."""
    relative = key[len(function.input_prefix) :] if key.startswith(function.input_prefix) else key
    return relative.lstrip("/").startswith(UPLOADS_FOLDER)


def buckets(function: FunctionSettings) -> tuple[str, str]:
    """(input bucket, output bucket): both are needed for the upload flow."""
    if function.input_bucket is None or function.output_bucket is None:
        raise ConfigurationError("INPUT_BUCKET and OUTPUT_BUCKET must be set for POST /uploads and GET /results")
    return function.input_bucket, function.output_bucket


def options_metadata(raw: Mapping[str, Any]) -> str:
    """The options as the upload's metadata value: compact ASCII JSON (metadata travels in headers)."""
    text = json.dumps(dict(raw), separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_OPTIONS_BYTES:
        raise InvalidParameter("options", f"more than {MAX_OPTIONS_BYTES} bytes of options")
    return text


def upload_options(metadata: Mapping[str, str]) -> RenderOptions:
    """The options stored with an upload, validated again: metadata is whatever the object has."""
    text = metadata.get(OPTIONS_METADATA)
    if text is None:
        return parse_options({}, "cutout")
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise InvalidParameter("options", "the upload's options metadata is not JSON") from error
    if not isinstance(raw, dict):
        raise InvalidParameter("options", "the upload's options metadata is not a JSON object")
    options = parse_options(raw, "cutout")
    options.check_for("cutout")
    return options


@dataclass(frozen=True)
class Record:
    status: RecordStatus
    outputs: dict[OutputKind, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    # A pending record's deadline for the upload (Unix seconds): the expiry of the form it was given.
    upload_by: int | None = None
    # The ETag of the photo the result belongs to, from its first attempt on.
    photo: str | None = None
    # The latest attempt on the photo.
    attempt: Attempt | None = None
    # When it became done (Unix seconds): its outputs were written just before.
    done_at: int | None = None

    @property
    def retryable(self) -> bool:
        """A failure of ours, which an operator's redrive may still turn into done."""
        return self.status == "failed" and bool((self.error or {}).get("retryable"))

    def as_json(self) -> bytes:
        document: dict[str, Any] = {"status": self.status}
        if self.outputs:
            document["outputs"] = dict(self.outputs)
        if self.error is not None:
            document["error"] = self.error
        if self.upload_by is not None:
            document["upload_by"] = self.upload_by
        if self.photo is not None:
            document["photo"] = self.photo
        if self.attempt is not None:
            attempt = self.attempt
            document["attempt"] = {"number": attempt.number, "of": attempt.of, "ends_by": round(attempt.ends_by, 3)}
        if self.done_at is not None:
            document["done_at"] = self.done_at
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Record:
        document = json.loads(data)
        attempt = document.get("attempt")
        return cls(
            status=document["status"],
            outputs=document.get("outputs") or {},
            error=document.get("error"),
            upload_by=document.get("upload_by"),
            photo=document.get("photo"),
            attempt=Attempt(attempt["number"], attempt["of"], attempt["ends_by"]) if attempt else None,
            done_at=document.get("done_at"),
        )


def failed(error: BackgroundRemovalError, *, retryable: bool = False) -> Record:
    """A failed record: what the synchronous API would have answered for the same input."""
    document = {"code": error.code, "message": error.message, "status": error.status, "retryable": retryable}
    return Record("failed", error=document)


def done(output_keys: tuple[str, ...], function: FunctionSettings, now: float) -> Record:
    """A done record; each output's kind is told by the folder its key is in."""
    outputs: dict[OutputKind, str] = {}
    for key in output_keys:
        for kind, folder in OUTPUT_FOLDERS.items():
            if key.startswith(f"{function.output_prefix}{folder}/"):
                outputs[kind] = key
    return Record("done", outputs=outputs, done_at=int(now))


# --- Reading and check-and-set ----------------------------------------------------------------


def create(storage: Storage, result_id: str, upload_by: int, function: FunctionSettings) -> None:
    """The pending record POST /uploads starts with; never over an existing one."""
    _put(storage, result_id, Record("pending", upload_by=upload_by), function, if_absent=True)


def _read(storage: Storage, result_id: str, function: FunctionSettings) -> tuple[Record, str] | None:
    _, output_bucket = buckets(function)
    try:
        stored = storage.read(output_bucket, record_key(result_id, function), max_bytes=MAX_RECORD_BYTES)
    except SourceNotFound:
        return None
    return Record.from_json(stored.data), stored.etag


def _put(
    storage: Storage,
    result_id: str,
    record: Record,
    function: FunctionSettings,
    *,
    if_match: str | None = None,
    if_absent: bool = False,
) -> None:
    _, output_bucket = buckets(function)
    storage.write(
        output_bucket,
        record_key(result_id, function),
        record.as_json(),
        content_type="application/json",
        metadata={},
        if_match=if_match,
        if_absent=if_absent,
    )


@dataclass(frozen=True)
class Refusal:
    """Why an attempt does not process an upload: a skip, or (`error`) a failure it recorded."""

    code: str
    message: str
    error: BackgroundRemovalError | None = None


def _check_and_set(
    storage: Storage,
    result_id: str,
    function: FunctionSettings,
    decide: Callable[[Record | None], tuple[T, Record | None]],
) -> T:
    """`decide(the record, or None)` gives (the answer, the record to write instead, or None); the
    write is conditional on the record being what was decided on, and on a conflict (another writer
    got there first) the decision is made again on what it wrote."""
    for _ in range(_CAS_ROUNDS):
        found = _read(storage, result_id, function)
        answer, replacement = decide(found[0] if found is not None else None)
        if replacement is None or found is None:
            return answer
        try:
            _put(storage, result_id, replacement, function, if_match=found[1])
            return answer
        except WriteConflict:
            continue
    raise WriteConflict(f"the record of {result_id} kept changing")


def claim(storage: Storage, result_id: str, photo: str, attempt: Attempt, function: FunctionSettings) -> Refusal | None:
    """Record `attempt` on the result for the photo it read (ETag `photo`); None when it may go on.

    The first attempt makes the photo the result's own; any other photo is refused.
    """
    return _check_and_set(storage, result_id, function, lambda record: _claimed(record, result_id, photo, attempt))


def _claimed(
    record: Record | None, result_id: str, photo: str, attempt: Attempt
) -> tuple[Refusal | None, Record | None]:
    """(the refusal, if any; the record to write, if any) for an attempt on `photo`."""
    if record is None:
        return Refusal(
            "reserved_prefix",
            f"no POST /uploads gave out the id {result_id} (or its record has expired): the upload "
            "folder takes only the photos of its forms",
        ), None
    if record.photo not in (None, photo):
        if record.status != "pending":
            return Refusal(
                "already_uploaded",
                f"result {result_id} already has its photo; another upload through its form is not processed",
            ), None
        error = UploadReplaced(
            f"the photo of result {result_id} was replaced by another upload through its form before it "
            "was processed; ask POST /uploads for a new form"
        )
        return Refusal(error.code, error.message, error), replace(failed(error), photo=record.photo)
    if record.status == "done":
        return Refusal("already_done", f"result {result_id} is done: its outputs were made from this photo"), None
    if record.status == "failed" and not record.retryable:
        return Refusal("already_failed", f"result {result_id} has failed for good: {_error_code(record)}"), None
    return None, Record("pending", upload_by=record.upload_by, photo=photo, attempt=attempt)


def settle(storage: Storage, result_id: str, photo: str, outcome: Record, function: FunctionSettings) -> None:
    """Record what became of an attempt that claimed `photo`: done over anything of that photo (its
    outputs are written), a failure only over a pending or retryable record (never over done). A
    record that expired meanwhile is left so."""

    def decide(record: Record | None) -> tuple[None, Record | None]:
        if record is None or record.photo != photo:
            return None, None
        if outcome.status == "failed" and not (record.status == "pending" or record.retryable):
            return None, None
        return None, replace(outcome, upload_by=record.upload_by, photo=photo)

    _check_and_set(storage, result_id, function, decide)


def overdue(
    storage: Storage, result_id: str, record: Record, function: FunctionSettings, now: float
) -> BackgroundRemovalError | None:
    """Why a pending record can no longer become done by itself, if it cannot:

    - its form expired (plus UPLOAD_GRACE_SECONDS) and no upload is in the input bucket;
    - its last attempt started and its deadline (plus ATTEMPT_GRACE_SECONDS) has passed.
    """
    if record.status != "pending":
        return None
    attempt = record.attempt
    if attempt is not None and attempt.last and now > attempt.ends_by + ATTEMPT_GRACE_SECONDS:
        return ProcessingFailed(
            f"processing the photo of {result_id} did not finish in any of its {attempt.of} attempts (the "
            "function crashed, ran out of memory or timed out); it is kept for an operator to retry"
        )
    if record.photo is None and record.upload_by is not None and now > record.upload_by + UPLOAD_GRACE_SECONDS:
        input_bucket, _ = buckets(function)
        if not storage.exists(input_bucket, upload_key(result_id, function)):
            expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.upload_by))
            return UploadNotReceived(f"no photo was uploaded with the form for {result_id}, which expired at {expired}")
    return None


def conclude(storage: Storage, result_id: str, function: FunctionSettings, now: float) -> Record:
    """The record of `result_id`, with an overdue pending one recorded as failed for good first (so
    that later polls get the same answer without looking again)."""

    def decide(record: Record | None) -> tuple[Record, Record | None]:
        if record is None:
            raise ResultNotFound(f"no result has the id {result_id}")
        error = overdue(storage, result_id, record, function, now)
        if error is None:
            return record, None
        retryable = isinstance(error, ProcessingFailed)
        concluded = replace(
            failed(error, retryable=retryable), upload_by=record.upload_by, photo=record.photo, attempt=record.attempt
        )
        return concluded, concluded

    return _check_and_set(storage, result_id, function, decide)


def _error_code(record: Record) -> str:
    return str((record.error or {}).get("code"))
