"""What POST /uploads hands out and the jobs function reports back: result ids, where an upload and
its record live, the options an upload carries, and the record of what became of it.

- An upload is the object `<INPUT_PREFIX>uploads/<id>` of the input bucket, created by a browser
  form POST that S3 checks against the policy POST /uploads signed. Its options travel with it as
  the user metadata `x-amz-meta-options` (JSON), pinned by that policy.
- Its record is `<OUTPUT_PREFIX>results/<id>.json` in the output bucket: `pending` from POST
  /uploads on, then `done` (with the output keys) or `failed` (with the error the synchronous API
  would have answered) once the jobs function has seen the upload. GET /results/{id} reads it.
  A pending record says until when the upload may arrive (its form's expiry, `upload_by`): a
  record still pending well after that, with no upload in the input bucket, is an upload that
  never came, and GET /results/{id} records it as failed instead of answering "pending" forever.

Ids are 128 random bits in lower-case hex, and an id is accepted only in exactly that form, so no
caller-chosen text ever becomes part of a key.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from handler.aws.output_keys import OUTPUT_FOLDERS
from handler.aws.settings import FunctionSettings
from handler.aws.storage import Storage
from handler.core.errors import (
    ConfigurationError,
    InvalidParameter,
    ResultNotFound,
    SourceNotFound,
)
from handler.core.image.formats import OutputKind
from handler.core.image.options import RenderOptions, parse_options

UPLOADS_FOLDER = "uploads/"
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
# Mbit/s). One that still arrives later is processed all the same, and its record then says done.
UPLOAD_GRACE_SECONDS = 15 * 60
_ID = re.compile(r"[0-9a-f]{32}")

RecordStatus = Literal["pending", "done", "failed"]


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
    """The result id if `bucket`/`key` is an upload POST /uploads asked for, else None."""
    if bucket != function.input_bucket:
        return None
    prefix = f"{function.input_prefix}{UPLOADS_FOLDER}"
    if not key.startswith(prefix):
        return None
    candidate = key[len(prefix) :]
    return candidate if _ID.fullmatch(candidate) else None


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

    def as_json(self) -> bytes:
        document: dict[str, Any] = {"status": self.status}
        if self.outputs:
            document["outputs"] = dict(self.outputs)
        if self.error is not None:
            document["error"] = self.error
        if self.upload_by is not None:
            document["upload_by"] = self.upload_by
        return json.dumps(document, separators=(",", ":")).encode()


def failed(code: str, message: str, status: int) -> Record:
    """A failed record: what the synchronous API would have answered for the same input."""
    return Record("failed", error={"code": code, "message": message, "status": status})


def done(output_keys: tuple[str, ...], function: FunctionSettings) -> Record:
    """A done record; each output's kind is told by the folder its key is in."""
    outputs: dict[OutputKind, str] = {}
    for key in output_keys:
        for kind, folder in OUTPUT_FOLDERS.items():
            if key.startswith(f"{function.output_prefix}{folder}/"):
                outputs[kind] = key
    return Record("done", outputs=outputs)


def never_uploaded(storage: Storage, result_id: str, record: Record, function: FunctionSettings, now: float) -> bool:
    """Whether `record` is pending for an upload that can no longer come: its form expired (plus
    UPLOAD_GRACE_SECONDS) and the input bucket has no upload under its key."""
    if record.status != "pending" or record.upload_by is None or now <= record.upload_by + UPLOAD_GRACE_SECONDS:
        return False
    input_bucket, _ = buckets(function)
    return storage.metadata(input_bucket, upload_key(result_id, function)) is None


def write(storage: Storage, result_id: str, record: Record, function: FunctionSettings) -> None:
    _, output_bucket = buckets(function)
    storage.write(
        output_bucket,
        record_key(result_id, function),
        record.as_json(),
        content_type="application/json",
        metadata={},
    )


def read(storage: Storage, result_id: str, function: FunctionSettings) -> Record:
    """The record of `result_id`; ResultNotFound when there is none."""
    _, output_bucket = buckets(function)
    try:
        stored = storage.read(output_bucket, record_key(result_id, function), max_bytes=MAX_RECORD_BYTES)
    except SourceNotFound as error:
        raise ResultNotFound(f"no result has the id {result_id}") from error
    document = json.loads(stored.data)
    return Record(
        status=document["status"],
        outputs=document.get("outputs") or {},
        error=document.get("error"),
        upload_by=document.get("upload_by"),
    )
