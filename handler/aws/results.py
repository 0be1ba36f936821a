"""GET /results/{id}: what became of an upload POST /uploads asked for (handler.aws.upload_records).

- pending (the upload has not arrived, or is being processed): 202; once its form has expired
  (and UPLOAD_GRACE_SECONDS more) with no upload, failed with 410 upload_not_received, and once
  its last attempt's deadline has passed without an outcome, failed with 500 processing_failed,
  each recorded for good (handler.aws.upload_records.conclude);
- done: 303 to a presigned GET of the cutout (`?output=mask` for the mask), or 200 with the same
  JSON when the client asks for `Accept: application/json` (a browser's fetch cannot read the
  Location of a cross-origin 303); the links never outlive the outputs (RESULT_EXPIRY_DAYS);
- failed: the status and `{"error": {"code", "message"}}` POST /remove would have answered.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from handler.aws import upload_records
from handler.aws.output_keys import OUTPUT_FOLDERS
from handler.aws.runtime import Runtime
from handler.aws.uploads import RESULTS_PATH, JsonAnswer
from handler.core.errors import InvalidParameter
from handler.core.image.formats import FORMATS, OutputKind

OUTPUT_PARAMETER = "output"
# How soon a client polling a pending result may ask again.
RETRY_AFTER_SECONDS = 2
_CONTENT_TYPES = {info.extension: info.content_type for info in FORMATS.values()}


def answer(result_id: str, event: BaseProxyEvent, current: Runtime) -> JsonAnswer:
    result_id = upload_records.checked_id(result_id)
    wanted = _wanted_output(event)
    function = current.settings.function
    now = time.time()
    record = upload_records.conclude(current.storage, result_id, function, now)
    base: dict[str, Any] = {"id": result_id, "result": f"{RESULTS_PATH}{result_id}"}
    if record.status == "pending":
        return JsonAnswer(202, {"status": "pending", **base}, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if record.status == "failed":
        error = record.error or {}
        document = {"status": "failed", **base, "error": {"code": error.get("code"), "message": error.get("message")}}
        return JsonAnswer(int(error.get("status", 500)), document)
    _, output_bucket = upload_records.buckets(function)
    expiry = function.link_expiry(record.done_at if record.done_at is not None else now, now)
    outputs = {
        kind: {
            "url": current.storage.presigned_get_url(output_bucket, key, expiry),
            "content_type": _CONTENT_TYPES.get(key.rpartition(".")[2], "application/octet-stream"),
        }
        for kind, key in record.outputs.items()
    }
    document = {
        "status": "done",
        **base,
        "outputs": outputs,
        "expires_in": expiry,
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + expiry)),
    }
    if wanted is not None and wanted not in outputs:
        raise InvalidParameter(OUTPUT_PARAMETER, f"this result has no {wanted}; it has {', '.join(outputs)}")
    if "application/json" in (event.headers.get("accept") or "").lower():
        return JsonAnswer(200, document)
    chosen: OutputKind = "cutout" if "cutout" in outputs else next(iter(outputs))
    if wanted is not None:
        chosen = wanted
    return JsonAnswer(303, document, {"Location": outputs[chosen]["url"]})


def _wanted_output(event: BaseProxyEvent) -> OutputKind | None:
    query = dict(event.query_string_parameters or {})
    value = query.pop(OUTPUT_PARAMETER, None)
    if query:
        raise InvalidParameter(sorted(query)[0], f"unknown parameter; GET /results takes only {OUTPUT_PARAMETER}")
    if value is None:
        return None
    for kind in OUTPUT_FOLDERS:
        if value == kind:
            return kind
    raise InvalidParameter(OUTPUT_PARAMETER, f"expected {' or '.join(OUTPUT_FOLDERS)}, got {value!r}")
