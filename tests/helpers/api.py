"""Events for the API entry point and what its replies are checked for."""

from __future__ import annotations

import base64
import copy
import io
import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from tests.forms import multipart_body

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SAMPLES = ROOT / "samples"

# The small (96x64) cat JPEG that all the example events carry: fast through the model, and
# U-2-Net-p finds a subject in it (so a foreground box is reported and the corners are background).
EVENT_IMAGE = base64.b64decode(json.loads((EVENTS / "api_v2_remove.json").read_text())["body"])
EVENT_SIZE = (96, 64)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


# --------------------------------------------------------------------------------------------
# Helpers: events in, replies out
# --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """A Lambda proxy response, normalised across payload formats 1.0 and 2.0."""

    raw: dict[str, Any]
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Reply:
        if "multiValueHeaders" in raw:  # REST API (payload 1.0)
            headers = {name.lower(): ",".join(values) for name, values in raw["multiValueHeaders"].items()}
        else:
            headers = {name.lower(): value for name, value in (raw.get("headers") or {}).items()}
        body = raw.get("body") or ""
        data = base64.b64decode(body) if raw.get("isBase64Encoded") else body.encode()
        return cls(raw=raw, status=raw["statusCode"], headers=headers, body=data)

    @property
    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)

    @property
    def image(self) -> Image.Image:
        image = Image.open(io.BytesIO(self.body))
        image.load()
        return image

    @property
    def box(self) -> tuple[int, int, int, int]:
        parts = ("left", "top", "width", "height")
        return tuple(int(self.headers[f"x-foreground-{part}"]) for part in parts)  # type: ignore[return-value]


@dataclass
class Service:
    api: ModuleType
    deployment: Any
    context: Any

    def invoke(self, event: Mapping[str, Any]) -> Reply:
        return Reply.of(self.api.lambda_handler(copy.deepcopy(dict(event)), self.context))


def http_event(
    body: bytes | str = EVENT_IMAGE,
    *,
    content_type: str | None = "image/jpeg",
    path: str = "/remove",
    method: str = "POST",
    query: Mapping[str, str] | None = None,
    accept: str | None = None,
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event; bytes travel base64-encoded as API Gateway sends binary."""
    event = load_event("api_v2_remove.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    headers = {"host": event["headers"]["host"]}
    if content_type is not None:
        headers["content-type"] = content_type
    if accept is not None:
        headers["accept"] = accept
    event["headers"] = headers
    event["queryStringParameters"] = dict(query) if query else None
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in (query or {}).items())
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body, False
    return event


def rest_event(
    body: bytes = EVENT_IMAGE, *, path: str = "/remove", method: str = "POST", headers: Mapping[str, str]
) -> dict[str, Any]:
    """A REST API (payload 1.0) event, headers spelled as clients send them (capitalised)."""
    event = load_event("api_v1_remove.json")
    event["path"] = event["resource"] = event["requestContext"]["resourcePath"] = path
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["headers"] = dict(headers)
    event["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def json_event(document: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    return http_event(json.dumps(document), content_type="application/json", **kwargs)


def multipart_event(fields: Mapping[str, str | bytes], **kwargs: Any) -> dict[str, Any]:
    boundary = "----test-boundary-7MA4YWxkTrZu0gW"
    body = multipart_body(fields, boundary)
    return http_event(body, content_type=f"multipart/form-data; boundary={boundary}", **kwargs)


def assert_common_headers(reply: Reply) -> None:
    # Every answer, result or error: never sniffed, never stored by a browser or proxy (handler/aws/headers.py).
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["cache-control"] == "no-store"


def image_reply(reply: Reply, *, pil_format: str, content_type: str) -> Image.Image:
    """200, an image of the declared type whose X-Width/X-Height match it."""
    assert reply.status == 200, reply.body[:300]
    assert_common_headers(reply)
    assert reply.headers["content-type"] == content_type
    image = reply.image
    assert image.format == pil_format
    assert (int(reply.headers["x-width"]), int(reply.headers["x-height"])) == image.size
    return image


def assert_image_reply(reply: Reply, *, pil_format: str, content_type: str) -> Image.Image:
    """`image_reply`, and a subject box inside the input."""
    image = image_reply(reply, pil_format=pil_format, content_type=content_type)
    assert_box_inside(reply.box, EVENT_SIZE)
    return image


def assert_box_inside(box: tuple[int, int, int, int], size: tuple[int, int]) -> None:
    left, top, width, height = box
    assert width > 0 and height > 0
    assert left >= 0 and left + width <= size[0]
    assert top >= 0 and top + height <= size[1]


def assert_error(reply: Reply, status: int, code: str, *, mentions: str | None = None) -> str:
    assert reply.status == status, reply.body[:300]
    assert_common_headers(reply)
    document = reply.json
    assert set(document) == {"error"}
    assert set(document["error"]) == {"code", "message"}
    assert document["error"]["code"] == code
    message = document["error"]["message"]
    assert isinstance(message, str) and message
    if mentions is not None:
        assert mentions in message
    return message


def expected_crop(box: tuple[int, int, int, int], margin: int, size: tuple[int, int]) -> tuple[int, int]:
    left, top, width, height = box
    right = min(size[0], left + width + margin)
    bottom = min(size[1], top + height + margin)
    return right - max(0, left - margin), bottom - max(0, top - margin)


def noisy_photo(size: int, seed: int = 0) -> bytes:
    """A photo with a clear subject, upscaled and overlaid with noise so its cutout is incompressible."""
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open(SAMPLES / "astronaut.jpg").convert("RGB").resize((size, size))).astype(np.int16)
    noisy = np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def fetch(url: str) -> bytes:
    # No proxy: the moto server is on 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return response.read()
