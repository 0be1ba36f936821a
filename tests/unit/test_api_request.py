"""parse_request: from an API event (Powertools data class) to image bytes or an S3 reference.

Pure parsing: no S3, no model. Events are minimal dicts wrapped in the same data classes the
resolvers hand to the handler: APIGatewayProxyEventV2 (HTTP API, Function URL) and
APIGatewayProxyEvent (REST API).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from handler.aws.request import ImageRequest, S3Reference, parse_request
from handler.core.errors import BackgroundRemovalError, InvalidParameter, MissingImage, UnsupportedMediaType
from tests.forms import multipart_body

IMAGE = b"\xff\xd8\xff\xe0 not really a jpeg, parsing never decodes \x00\x01\xfe"
BOUNDARY = "XyZ-boundary-123"


def v2(
    body: bytes | str | None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> APIGatewayProxyEventV2:
    """An HTTP API event: bytes are sent base64-encoded, text as is."""
    encoded = isinstance(body, bytes)
    return APIGatewayProxyEventV2(
        {
            "version": "2.0",
            "rawPath": "/remove",
            "headers": dict(headers or {}),
            "queryStringParameters": dict(query) if query else None,
            "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
            "isBase64Encoded": encoded,
        }
    )


def v1(
    body: bytes | str | None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> APIGatewayProxyEvent:
    """A REST API event, with headers capitalised as clients send them."""
    encoded = isinstance(body, bytes)
    headers = dict(headers or {})
    return APIGatewayProxyEvent(
        {
            "httpMethod": "POST",
            "path": "/remove",
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": dict(query) if query else None,
            "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
            "isBase64Encoded": encoded,
        }
    )


def multipart(fields: Mapping[str, str | bytes], boundary: str = BOUNDARY) -> bytes:
    return multipart_body(fields, boundary)


def json_body(document: Any) -> str:
    return json.dumps(document)


def refused(event: BaseProxyEvent, error: type[BackgroundRemovalError]) -> BackgroundRemovalError:
    with pytest.raises(error) as caught:
        parse_request(event)
    return caught.value


# ---------------------------------------------------------------------------- raw bodies


@pytest.mark.parametrize("make", [v2, v1], ids=["v2", "v1"])
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "image/jpeg"},
        {"content-type": "image/png"},
        {"Content-Type": "IMAGE/WEBP"},
        {"Content-Type": "application/octet-stream"},
        {"Content-Type": "application/octet-stream; charset=binary"},
        {},
    ],
    ids=["jpeg", "png-lower", "upper-case", "octet-stream", "with-parameter", "no-content-type"],
)
def test_raw_body_is_the_image(make: Any, headers: dict[str, str]) -> None:
    request = parse_request(make(IMAGE, headers))

    assert request == ImageRequest(data=IMAGE, source=None, options={}, wants_json=False)


def test_raw_body_not_base64_encoded_is_taken_as_is() -> None:
    # A REST API without binary media types passes text through unencoded.
    request = parse_request(v1("GIF89a-ish", {"Content-Type": "image/gif"}))

    assert request.data == b"GIF89a-ish"


@pytest.mark.parametrize("make", [v2, v1], ids=["v2", "v1"])
def test_query_string_gives_the_options(make: Any) -> None:
    request = parse_request(make(IMAGE, {"Content-Type": "image/jpeg"}, {"format": "webp", "crop": "true"}))

    assert request.options == {"format": "webp", "crop": "true"}


@pytest.mark.parametrize(
    ("accept", "wants_json"),
    [
        (None, False),
        ("image/png", False),
        ("*/*", False),
        ("application/json", True),
        ("Application/JSON; q=0.9", True),
        ("image/webp, application/json", True),
    ],
)
@pytest.mark.parametrize("make", [v2, v1], ids=["v2", "v1"])
def test_accept_json_asks_for_a_json_answer(make: Any, accept: str | None, wants_json: bool) -> None:
    headers = {"Content-Type": "image/jpeg", **({"Accept": accept} if accept else {})}

    assert parse_request(make(IMAGE, headers)).wants_json is wants_json


# ---------------------------------------------------------------------------- multipart


@pytest.mark.parametrize("make", [v2, v1], ids=["v2", "v1"])
@pytest.mark.parametrize(
    "content_type",
    [f"multipart/form-data; boundary={BOUNDARY}", f'multipart/form-data; boundary="{BOUNDARY}"'],
    ids=["bare-boundary", "quoted-boundary"],
)
def test_multipart_image_field_and_option_fields(make: Any, content_type: str) -> None:
    body = multipart({"format": "webp", "image": IMAGE, "margin": "5%"})

    request = parse_request(make(body, {"Content-Type": content_type}, {"crop": "true"}))

    assert request.data == IMAGE
    assert request.source is None
    assert request.options == {"crop": "true", "format": "webp", "margin": "5%"}


def test_form_fields_override_the_query_string() -> None:
    body = multipart({"image": IMAGE, "format": "webp"})

    request = parse_request(v2(body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, {"format": "png"}))

    assert request.options == {"format": "webp"}


def test_multipart_without_image_field_is_missing_image() -> None:
    body = multipart({"format": "webp"})

    refused(v2(body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}), MissingImage)


def test_multipart_without_boundary_names_the_body() -> None:
    error = refused(v2(multipart({"image": IMAGE}), {"content-type": "multipart/form-data"}), InvalidParameter)

    assert error.parameter == "body"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(IMAGE).decode(),
        "data:image/jpeg;base64," + base64.b64encode(IMAGE).decode(),
    ],
    ids=["base64", "data-url"],
)
@pytest.mark.parametrize("make", [v2, v1], ids=["v2", "v1"])
def test_json_image_in_base64(make: Any, encoded: str) -> None:
    body = json_body({"image": encoded, "format": "webp", "crop": True})

    request = parse_request(make(body, {"Content-Type": "application/json; charset=utf-8"}))

    assert request.data == IMAGE
    assert request.source is None
    assert request.options == {"format": "webp", "crop": True}


def test_json_body_may_itself_arrive_base64_encoded() -> None:
    body = json_body({"image": base64.b64encode(IMAGE).decode()}).encode()

    assert parse_request(v2(body, {"content-type": "application/json"})).data == IMAGE


def test_json_source_is_an_s3_reference() -> None:
    body = json_body({"source": {"bucket": "photos", "key": "2024/cat one.jpg"}, "max_size": 512})

    request = parse_request(v2(body, {"content-type": "application/json"}, {"format": "png"}))

    assert request.data is None
    assert request.source == S3Reference(bucket="photos", key="2024/cat one.jpg")
    assert request.options == {"format": "png", "max_size": 512}


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        ('"a string"', "body"),
        (json_body({"image": "not base64!"}), "image"),
        (json_body({"image": "abc"}), "image"),
        (json_body({"image": 12345}), "image"),
        (json_body({"image": base64.b64encode(IMAGE).decode(), "source": {"bucket": "b", "key": "k"}}), "source"),
        (json_body({"source": "s3://bucket/key"}), "source"),
        (json_body({"source": {"bucket": "b"}}), "source"),
        (json_body({"source": {"bucket": "", "key": "k"}}), "source"),
        (json_body({"source": {"bucket": "b", "key": 7}}), "source"),
        (json_body({"source": {"bucket": "b", "key": "k", "version": "1"}}), "source"),
        # Found by the property tests (each was a 500): nesting past the recursion limit, and an
        # integer past Python's 4300-digit conversion limit.
        ("[" * 100_000 + "]" * 100_000, "body"),
        ('{"max_size": 1' + "0" * 5000 + "}", "body"),
    ],
    ids=[
        "invalid-json",
        "array",
        "string",
        "bad-base64-chars",
        "bad-base64-padding",
        "image-not-string",
        "image-and-source",
        "source-not-object",
        "source-without-key",
        "source-empty-bucket",
        "source-key-not-string",
        "source-unknown-field",
        "nested-too-deeply",
        "integer-too-long",
    ],
)
def test_invalid_json_names_the_parameter(body: str, parameter: str) -> None:
    error = refused(v2(body, {"content-type": "application/json"}), InvalidParameter)

    assert error.parameter == parameter  # type: ignore[attr-defined]
    assert error.status == 400
    assert error.message.startswith(f"{parameter}:")


# ---------------------------------------------------------------------------- missing / refused


@pytest.mark.parametrize("make", [v2, v1], ids=["v2", "v1"])
@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (None, {"Content-Type": "image/jpeg"}),
        ("", {"Content-Type": "image/jpeg"}),
        (b"", {"Content-Type": "application/octet-stream"}),
        (None, {}),
        ("", {}),
        ("{}", {"Content-Type": "application/json"}),
        ('{"format": "png"}', {"Content-Type": "application/json"}),
        ('{"image": ""}', {"Content-Type": "application/json"}),
        (None, {"Content-Type": "application/json"}),
    ],
    ids=[
        "no-body",
        "empty-body",
        "empty-bytes",
        "no-body-no-type",
        "empty-body-no-type",
        "empty-json",
        "json-options-only",
        "json-empty-image",
        "json-no-body",
    ],
)
def test_no_image_is_missing_image(make: Any, body: bytes | str | None, headers: dict[str, str]) -> None:
    error = refused(make(body, headers), MissingImage)

    assert (error.code, error.status) == ("missing_image", 400)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "video/mp4"],
)
def test_other_media_types_are_unsupported(content_type: str) -> None:
    error = refused(v2(IMAGE, {"content-type": content_type}), UnsupportedMediaType)

    assert (error.code, error.status) == ("unsupported_media_type", 415)
    assert content_type in error.message


def test_body_flagged_base64_that_is_not_names_the_body() -> None:
    event = APIGatewayProxyEventV2({"headers": {"content-type": "image/jpeg"}, "body": "abc", "isBase64Encoded": True})

    error = refused(event, InvalidParameter)

    assert error.parameter == "body"  # type: ignore[attr-defined]


REGRESSIONS = Path(__file__).resolve().parents[1] / "corpus_regressions" / "api"


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.json")), ids=lambda path: path.stem)
def test_events_the_fuzzer_found_are_parsed_or_refused_with_a_code(path: Path) -> None:
    # Each event once raised something other than a BackgroundRemovalError (fuzz/README.md).
    event = APIGatewayProxyEventV2(json.loads(path.read_text()))

    try:
        request = parse_request(event)
    except BackgroundRemovalError as error:
        assert error.status == 400 and error.code in {"invalid_parameter", "missing_image"}
    else:
        assert (request.data is None) != (request.source is None)
