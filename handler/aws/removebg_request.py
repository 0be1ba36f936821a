"""Reading a remove.bg request from an API event: its one image source and its option fields.

remove.bg's clients send multipart forms (`image_file`, the official curl and Python examples),
URL-encoded forms (its Ruby client, for `image_url`) or JSON (its Node clients, for
`image_file_b64`/`image_url`). The body and multipart handling are handler.aws.request's.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from handler.aws.removebg import SOURCE_FIELDS
from handler.aws.removebg_errors import MultipleSources
from handler.aws.request import IMAGE_FIELDS, _body_bytes, _from_multipart
from handler.core.errors import InvalidParameter, MissingImage, UnsupportedMediaType


@dataclass(frozen=True)
class RemoveBgSource:
    """Exactly one of `data` (uploaded or base64) and `url` is set."""

    data: bytes | None = None
    url: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    wants_json: bool = False


def parse_event(event: BaseProxyEvent) -> RemoveBgSource:
    headers = event.headers
    content_type = headers.get("content-type") or ""
    media_type = content_type.split(";", 1)[0].strip().lower()
    wants_json = "application/json" in (headers.get("accept") or "").lower()
    fields: dict[str, Any] = dict(event.query_string_parameters or {})
    body = _body_bytes(event)
    upload: bytes | None = None
    if media_type == "multipart/form-data":
        upload, form = _from_multipart(content_type, body, (*IMAGE_FIELDS, "image_file_b64"))
        fields.update(form)
    elif media_type == "application/x-www-form-urlencoded":
        fields.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    elif media_type == "application/json":
        fields.update(_json_fields(body))
    elif body:
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'} is not accepted here; send multipart/form-data, "
            "application/x-www-form-urlencoded or application/json, as remove.bg's API takes"
        )
    b64, url = fields.pop("image_file_b64", None), fields.pop("image_url", None)
    given = [
        name for name, value in zip(SOURCE_FIELDS, (upload, b64, url), strict=True) if value not in (None, "", b"")
    ]
    if not given:
        raise MissingImage("no image given: send image_file, image_file_b64 or image_url")
    if len(given) > 1:
        raise MultipleSources(given)
    if url is not None and url != "":
        if not isinstance(url, str):
            raise InvalidParameter("image_url", "expected a URL string")
        return RemoveBgSource(url=url, fields=fields, wants_json=wants_json)
    data = upload if upload else _base64(b64)
    return RemoveBgSource(data=data, fields=fields, wants_json=wants_json)


def _json_fields(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise InvalidParameter("body", "not valid JSON") from error
    if not isinstance(document, dict):
        raise InvalidParameter("body", "expected a JSON object")
    return document


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidParameter("image_file_b64", "expected a base64 string")
    text = value.split(",", 1)[-1] if value.startswith("data:") else value
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidParameter("image_file_b64", "not valid base64") from error
