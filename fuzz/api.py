"""Fuzz target: a fuzzer-built API Gateway event → `parse_request` and `parse_options`.

The event's content type, accept header, query string, base64 flag and body all come from the
fuzzer's bytes. Any outcome but a parsed request or a `BackgroundRemovalError` is a finding.
"""

from __future__ import annotations

import base64

import atheris
from common import run  # also puts the repository on sys.path

with atheris.instrument_imports(include=["handler", "multipart", "json", "base64"]):
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    from handler.aws.request import parse_request
    from handler.core.errors import BackgroundRemovalError
    from handler.core.image.options import OPTION_NAMES, parse_options

MEDIA_TYPES = ["image/jpeg", "application/octet-stream", "application/json", "multipart/form-data", "text/plain", ""]
NAMES = [*sorted(OPTION_NAMES), "image", "source", "x"]


def event_from(data: bytes) -> dict[str, object]:
    fdp = atheris.FuzzedDataProvider(data)
    media = fdp.PickValueInList(MEDIA_TYPES)
    content_type = media + fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 60)) if fdp.ConsumeBool() else media
    headers = {"content-type": content_type}
    if fdp.ConsumeBool():
        headers["accept"] = fdp.ConsumeUnicodeNoSurrogates(20)
    query = {fdp.PickValueInList(NAMES): fdp.ConsumeUnicodeNoSurrogates(12) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    encoded = fdp.ConsumeBool()
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    if encoded:
        body = base64.b64encode(raw).decode() if raw[:1] != b"!" else raw.decode("latin-1")
    else:
        body = raw.decode("utf-8", errors="replace")
    return {
        "version": "2.0",
        "rawPath": "/remove",
        "headers": headers,
        "queryStringParameters": query or None,
        "body": body,
        "isBase64Encoded": encoded,
        "requestContext": {"http": {"method": "POST", "path": "/remove"}},
    }


def test_one_input(data: bytes) -> None:
    event = APIGatewayProxyEventV2(event_from(data))
    try:
        request = parse_request(event)
        parse_options(request.options)
    except BackgroundRemovalError:
        return
    assert (request.data is None) != (request.source is None)


def seeds() -> list[bytes]:
    from tests.forms import multipart_body

    form = multipart_body({"image": b"\xff\xd8\xff", "format": "webp"}, "b0undary")
    return [
        b"\x00" * 8 + b'{"image": "/9j/", "max_size": "10"}',
        b"\x03" + b"; boundary=b0undary" + b"\x00" * 4 + form,
        b"\x02\x01" + b"\x00" * 6 + b'{"source": {"bucket": "b", "key": "k"}}',
    ]


if __name__ == "__main__":
    run("api", test_one_input, seeds())
