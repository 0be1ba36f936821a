"""POST /uploads: a presigned S3 form upload for a photo too large for a synchronous request
(Lambda takes 6 MB of event, ~4.5 MB of image once base64'd) or a model too slow for API Gateway's
30 s. The jobs function processes the upload when it arrives; GET /results/{id} tells the outcome.

The options are validated here, as POST /remove would, and pinned in the upload's policy (with
the key, the image's Content-Type and the size range) so that what arrives is what was accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from handler.aws import upload_records
from handler.aws.request import parse_fields
from handler.aws.runtime import Runtime
from handler.core.errors import InvalidParameter, UnsupportedMediaType
from handler.core.image.options import parse_options
from handler.core.render import check_request

CONTENT_TYPE_FIELD = "content_type"
# The types a browser gives the photos we decode (handler.core.image.decode.DECODABLE_FORMATS).
UPLOAD_CONTENT_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/tiff",
    "image/bmp",
    "image/heic",
    "image/heif",
    "image/avif",
)
RESULTS_PATH = "/results/"


@dataclass(frozen=True)
class JsonAnswer:
    """A JSON response for the API entry point to send as is."""

    status: int
    document: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def create(event: BaseProxyEvent, current: Runtime) -> JsonAnswer:
    function = current.settings.function
    input_bucket, _ = upload_records.buckets(function)
    raw = parse_fields(event)
    content_type = _content_type(raw.pop(CONTENT_TYPE_FIELD, None))
    check_request(("cutout",), parse_options(raw, "cutout"), current.model)  # the same refusals as POST /remove
    if "outputs" in raw:  # accepted by the parser for POST /remove; an upload's job writes both anyway
        raise InvalidParameter("outputs", "an upload's result has the cutout and the mask already (GET ?output=mask)")
    result_id = upload_records.new_id()
    now = time.time()
    # The form may not outlive the record it reports to (both go after RESULT_EXPIRY_DAYS).
    expiry = function.link_expiry(now, now)
    max_bytes = current.settings.limits.max_bytes
    post = current.storage.presigned_post(
        input_bucket,
        upload_records.upload_key(result_id, function),
        fields={"Content-Type": content_type, upload_records.OPTIONS_FIELD: upload_records.options_metadata(raw)},
        max_bytes=max_bytes,
        expires_in=expiry,
    )
    upload_by = int(now) + expiry
    # Written before the answer: from now on GET /results/{id} knows the id (202 until it is done).
    upload_records.create(current.storage, result_id, upload_by, function)
    result = f"{RESULTS_PATH}{result_id}"
    document = {
        "id": result_id,
        "upload": {"url": post.url, "method": "POST", "fields": post.fields},
        "result": result,
        "expires_in": expiry,
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(upload_by)),
        "max_bytes": max_bytes,
    }
    return JsonAnswer(201, document, {"Location": result})


def _content_type(value: Any) -> str:
    if value is None:
        raise InvalidParameter(
            CONTENT_TYPE_FIELD,
            f"required: the type of the image you will upload, one of {', '.join(UPLOAD_CONTENT_TYPES)}",
        )
    if not isinstance(value, str):
        raise InvalidParameter(CONTENT_TYPE_FIELD, "expected a string such as image/jpeg")
    media_type = value.split(";", 1)[0].strip().lower()
    if media_type not in UPLOAD_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content_type {media_type or '(empty)'} is not accepted; upload one of {', '.join(UPLOAD_CONTENT_TYPES)}"
        )
    return media_type
