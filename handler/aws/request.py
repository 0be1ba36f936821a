"""Turning an API event into an image (bytes or an S3 reference) and raw options.

The image comes as the raw body, as a multipart form field `image` (or `image_file`, remove.bg's
name, or `file`, rembg's), or in JSON as base64 `image` or an S3 `source`. Parsing is pure: no S3, no model.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from handler.aws.form_data import parse_form
from handler.aws.keys import climbs_out, is_encodable
from handler.core.errors import InvalidParameter, MissingImage, UnsupportedMediaType

RAW_IMAGE_TYPES = ("image/", "application/octet-stream")
IMAGE_FIELD = "image"
# Multipart file fields that carry the image: ours, remove.bg's and rembg's names.
IMAGE_FIELDS = (IMAGE_FIELD, "image_file", "file")
SOURCE_FIELD = "source"


@dataclass(frozen=True)
class S3Reference:
    bucket: str
    key: str


@dataclass(frozen=True)
class ImageRequest:
    """Exactly one of `data` and `source` is set."""

    data: bytes | None = None
    source: S3Reference | None = None
    options: dict[str, Any] = field(default_factory=dict)
    wants_json: bool = False


def parse_request(event: BaseProxyEvent) -> ImageRequest:
    headers = event.headers
    media_type = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    wants_json = "application/json" in (headers.get("accept") or "").lower()
    options: dict[str, Any] = dict(event.query_string_parameters or {})
    body = _body_bytes(event)

    if media_type == "application/json":
        data, source, fields = _from_json(body)
    elif media_type == "multipart/form-data":
        data, fields = _from_multipart(headers.get("content-type") or "", body)
        source = None
    elif media_type.startswith(RAW_IMAGE_TYPES) or media_type == "":
        # A missing Content-Type is treated as raw bytes (the decoder sniffs the format); an empty
        # body without one is a missing image, not an unsupported media type.
        data, source, fields = body, None, {}
    else:
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'} is not accepted; send image/*, "
            "application/octet-stream, multipart/form-data or application/json"
        )
    options.update(fields)
    if source is None and not data:
        raise MissingImage("no image in the request: send it as the body, a form field `image`, or JSON")
    return ImageRequest(data=data, source=source, options=options, wants_json=wants_json)


def parse_fields(event: BaseProxyEvent) -> dict[str, Any]:
    """The options of a request that carries no image: the query string, then a JSON body's fields.

    For routes that only describe work (POST /uploads); an image in the body is refused, not ignored.
    """
    fields: dict[str, Any] = dict(event.query_string_parameters or {})
    body = _body_bytes(event)
    media_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if not body:
        return fields
    if media_type not in ("application/json", ""):
        raise UnsupportedMediaType(f"Content-Type {media_type} is not accepted here; send application/json")
    data, source, document = _from_json(body)
    if data is not None or source is not None:
        raise InvalidParameter(IMAGE_FIELD, "this route takes no image: upload it to the presigned URL it answers")
    fields.update(document)
    return fields


def _body_bytes(event: BaseProxyEvent) -> bytes:
    body = event.body
    if not body:
        return b""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError) as error:
            raise InvalidParameter("body", "isBase64Encoded is set but the body is not base64") from error
    return body.encode("utf-8", errors="surrogateescape")


def _from_json(body: bytes) -> tuple[bytes | None, S3Reference | None, dict[str, Any]]:
    try:
        # An empty body is an empty object: no image (missing_image), not malformed JSON.
        document = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as error:
        # ValueError covers JSONDecodeError and integers past Python's 4300-digit conversion limit.
        raise InvalidParameter("body", f"not valid JSON ({error})") from error
    except RecursionError as error:  # nesting deeper than the interpreter's stack (found by hypothesis)
        raise InvalidParameter("body", "JSON nested too deeply") from error
    if not isinstance(document, dict):
        raise InvalidParameter("body", "expected a JSON object with `image` or `source`")
    fields = dict(document)
    image = fields.pop(IMAGE_FIELD, None)
    source = fields.pop(SOURCE_FIELD, None)
    if image is not None and source is not None:
        raise InvalidParameter(SOURCE_FIELD, "give either `image` or `source`, not both")
    if source is not None:
        return None, _s3_reference(source), fields
    if image is None:
        return None, None, fields
    if not isinstance(image, str):
        raise InvalidParameter(IMAGE_FIELD, "expected a base64 string")
    try:
        return (
            base64.b64decode(image.split(",", 1)[-1] if image.startswith("data:") else image, validate=True),
            None,
            fields,
        )
    except (binascii.Error, ValueError) as error:
        raise InvalidParameter(IMAGE_FIELD, "not valid base64") from error


def _s3_reference(source: Any) -> S3Reference:
    if not isinstance(source, dict):
        raise InvalidParameter(SOURCE_FIELD, 'expected {"bucket": ..., "key": ...}')
    bucket, key = source.get("bucket"), source.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise InvalidParameter(SOURCE_FIELD, "bucket and key must be non-empty strings")
    unknown = set(source) - {"bucket", "key"}
    if unknown:
        raise InvalidParameter(SOURCE_FIELD, f"unknown field {sorted(unknown)[0]!r}")
    if not is_encodable(bucket) or not is_encodable(key):
        raise InvalidParameter(SOURCE_FIELD, "bucket and key must be valid Unicode")
    if climbs_out(key):
        # S3 itself never resolves '..', but nothing good comes of a key built to look like it does.
        raise InvalidParameter(SOURCE_FIELD, "the key must not have a '..' segment")
    return S3Reference(bucket=bucket, key=key)


def _from_multipart(
    content_type: str, body: bytes, large_fields: tuple[str, ...] = IMAGE_FIELDS
) -> tuple[bytes | None, dict[str, str]]:
    """The image (a file field named in IMAGE_FIELDS) and the text fields of a multipart form.

    `large_fields` are the fields exempt from the text fields' size bound (handler.aws.form_data):
    the image fields, and any other a route reads large data from.
    """
    form = parse_form(content_type, body, large_fields)
    images = [(name, value) for name in IMAGE_FIELDS for value in form.large.get(name, [])]
    if len(images) > 1:
        raise InvalidParameter(images[1][0], f"give one image, in one of the fields {', '.join(IMAGE_FIELDS)}")
    text = dict(form.text)
    for name, values in form.large.items():
        if name not in IMAGE_FIELDS:  # a large field that is no image: the route reads it as text
            text[name] = values[-1].decode("utf-8", errors="replace")
    return (images[0][1] if images else None), text
