"""Property-based tests of request parsing: whatever an API Gateway event carries, a defined answer.

Arbitrary bodies (bytes or text, base64 flag right or wrong), headers (odd content types,
boundaries, charsets), query strings and JSON documents (nested, wrong types, huge numbers) go
through the real API handler. The answer is always a success or redirect, or a 4xx JSON error with
a stable code; never a 5xx or an exception. Derandomised and without an example database, so CI
runs the same examples every time; a bounded number of them keeps it quick on two cores.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.core.image import options
from tests import graphs
from tests.corpus import made_images
from tests.forms import multipart_body
from tests.graphs import GraphFile
from tests.helpers.api import Reply, Service, http_event

pytestmark = pytest.mark.filterwarnings("ignore")

ERROR_STATUSES = {
    "invalid_parameter": 400,
    "invalid_image": 400,
    "missing_image": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "source_forbidden": 403,
    "image_too_large": 413,
    "too_many_pixels": 413,
    "too_many_frames": 413,
    "too_complex": 413,
    "request_too_large": 413,
    "output_too_large": 413,
    "unsupported_media_type": 415,
}
# remove.bg's route answers in its own shape and statuses: 400 for every problem with the request or
# its image, with remove.bg's codes where they apply (handler/aws/removebg.py); 404/405 for paths.
REMOVEBG_STATUSES = {
    **{code: 400 for code, status in ERROR_STATUSES.items() if 400 <= status < 500},
    **{
        code: 400
        for code in (
            "missing_source",
            "multiple_sources",
            "failed_to_read_image",
            "invalid_file_type",
            "file_too_large",
            "resolution_too_high",
            "failed_image_download",
            "unknown_foreground",
            "result_too_large",
            *(f"invalid_{name}" for name in ("size", "format", "channels", "bg_color", "crop_margin", "roi")),
            *(f"invalid_{name}" for name in ("scale", "position", "semitransparency", "bg_image_url")),
        )
    },
    "not_found": 404,
    "method_not_allowed": 405,
}
REMOVEBG_FIELDS = [
    "image_file",
    "image_file_b64",
    "image_url",
    "size",
    "format",
    "channels",
    "bg_color",
    "crop",
    "crop_margin",
    "type",
    "roi",
]
PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
IMAGES = list(made_images().values())
OPTION_NAMES = sorted(options.OPTION_NAMES)  # every option the API takes, whichever is added next

# --- Strategies --------------------------------------------------------------------------------

images = st.sampled_from(IMAGES)
option_values = st.one_of(
    # Values near the parsers' edges: non-ASCII digits, overflowing numbers, the limits themselves.
    st.sampled_from(
        [
            "png",
            "webp",
            "jpeg",
            "jpg",
            "#ff0000",
            "rgb(99999999999999999999,0,0)",
            "hsl(0,1000%,50%)",
            "true",
            "0",
            "20",
            "5%",
            "100.5%",
            "20px",
            "1e400",
            "²",
            "١٢",
            "1" * 400,
            "1" * 400 + "px",
            "20000",
            "20001",
            " 7 ",
            "nan",
            "inf",
            "512",
            "768",
            "1024",
        ]
    ),
    st.text(max_size=20),
    st.integers().map(str),
)
queries = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(st.sampled_from(OPTION_NAMES), st.text(max_size=10)), option_values, max_size=4),
    # crop=true makes the margin count.
    st.dictionaries(st.sampled_from(OPTION_NAMES), option_values, max_size=4).map(
        lambda query: {**query, "crop": "true"}
    ),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True),
        st.text(max_size=30),
        st.integers(),
        st.sampled_from([10**30, -(10**30), 2**63, 10**400]),
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
sources = st.one_of(
    json_values,
    st.fixed_dictionaries({"bucket": st.text(max_size=20), "key": st.text(max_size=40)}),
    st.fixed_dictionaries({"bucket": st.just("not-allowed"), "key": st.just("a.jpg")}),
)
image_fields = st.one_of(json_values, images.map(lambda data: base64.b64encode(data).decode()), st.text(max_size=60))
# JSON text no encoder would write: deep nesting, numbers past Python's int-string limit.
json_texts = st.one_of(
    st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 100_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.integers(1, 10_000).map(lambda digits: '{"max_size": 1' + "0" * digits + "}"),
    st.text(max_size=200),
)
json_documents = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "image": image_fields,
            "source": sources,
            **{name: st.one_of(option_values, json_values) for name in OPTION_NAMES},
        },
    ),
    json_values,
)
boundaries = st.one_of(st.just("b0undary"), st.text(min_size=0, max_size=80))
params = st.lists(
    st.tuples(st.sampled_from(["boundary", "charset", "name", "BOUNDARY", "boundary*"]), st.text(max_size=30)),
    max_size=3,
)
media_types = st.one_of(
    st.sampled_from(
        [
            "image/jpeg",
            "image/png",
            "image/",
            "application/octet-stream",
            "application/json",
            "multipart/form-data",
            "text/plain",
            "",
            "IMAGE/PNG",
            "application/json; charset=utf-16",
            "multipart/mixed",
        ]
    ),
    st.text(max_size=30),
)


@st.composite
def content_types(draw: st.DrawFn) -> str:
    media = draw(media_types)
    return media + "".join(f"; {name}={value}" for name, value in draw(params))


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str | None, str | bytes | None]:
    """A (content type, body) pair: raw bytes, JSON, a multipart form, or anything at all."""
    kind = draw(st.sampled_from(["raw", "json", "multipart", "anything"]))
    if kind == "raw":
        return draw(st.sampled_from(["image/jpeg", "application/octet-stream", None])), draw(
            st.one_of(images, st.binary(max_size=512))
        )
    if kind == "json":
        document = draw(json_documents)
        return "application/json", json.dumps(document) if draw(st.booleans()) else draw(json_texts)
    if kind == "multipart":
        boundary = draw(boundaries)
        fields = draw(
            st.dictionaries(
                st.one_of(st.sampled_from(["image", *OPTION_NAMES]), st.text(max_size=10)),
                st.one_of(images, st.binary(max_size=64), option_values),
                max_size=3,
            )
        )
        body = multipart_body(fields, boundary) if boundary.isprintable() else draw(st.binary(max_size=256))
        declared = draw(st.sampled_from([boundary, f'"{boundary}"', draw(st.text(max_size=20))]))
        return f"multipart/form-data; boundary={declared}", body
    return draw(st.one_of(st.none(), content_types())), draw(
        st.one_of(st.none(), st.binary(max_size=512), st.text(max_size=200))
    )


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    content_type, body = draw(bodies())
    event = http_event(
        b"" if body is None else body,
        content_type=content_type,
        path=draw(st.sampled_from(["/remove", "/mask", "/remove", "/other"])),
        method=draw(st.sampled_from(["POST", "POST", "GET", "PUT"])),
        query=None,
        accept=draw(
            st.one_of(st.none(), st.sampled_from(["application/json", "image/*", "*/*"]), st.text(max_size=20))
        ),
    )
    query = draw(queries)
    event["queryStringParameters"] = query
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in (query or {}).items())
    event["headers"].update(
        draw(
            st.dictionaries(
                st.sampled_from(["x-extra", "content-length", "accept-charset"]), st.text(max_size=20), max_size=2
            )
        )
    )
    if body is None:
        event.pop("body")
    flag = draw(st.sampled_from(["as-sent", "flipped", "missing"]))
    if flag == "flipped":
        event["isBase64Encoded"] = not event["isBase64Encoded"]
    elif flag == "missing":
        event.pop("isBase64Encoded")
    return event


# --- Properties --------------------------------------------------------------------------------


@pytest.fixture
def service(configure: Callable[..., Service], graph_file: GraphFile) -> Service:
    model = graph_file(graphs.channel_affine(1, 8.0, -4.0, size=64))
    return configure(MODEL_PATH=str(model), MODEL_OUTPUT="logits")


def assert_defined(reply: Reply) -> None:
    assert reply.status in {200, 303} | set(ERROR_STATUSES.values()), reply.body[:300]
    if reply.status >= 400:
        error = reply.json["error"]
        assert ERROR_STATUSES.get(error["code"]) == reply.status, error
        assert isinstance(error["message"], str) and error["message"]


@PROPERTIES
@given(event=events())
def test_any_event_gets_a_defined_status(service: Service, event: dict[str, Any]) -> None:
    assert_defined(service.invoke(event))


@st.composite
def removebg_events(draw: st.DrawFn) -> dict[str, Any]:
    """remove.bg requests: its fields (and others) with any values, in any of its body kinds."""
    fields = draw(
        st.dictionaries(
            st.one_of(st.sampled_from(REMOVEBG_FIELDS), st.text(max_size=10)),
            st.one_of(
                images, st.binary(max_size=64), option_values, st.sampled_from(["preview", "zip", "alpha", "10px 5%"])
            ),
            max_size=4,
        )
    )
    kind = draw(st.sampled_from(["multipart", "json", "form"]))
    if kind == "multipart":
        boundary = "----removebg-property"
        return http_event(
            multipart_body(fields, boundary),
            content_type=f"multipart/form-data; boundary={boundary}",
            path="/v1.0/removebg",
        )
    texts = {
        name: base64.b64encode(value).decode() if isinstance(value, bytes) else value for name, value in fields.items()
    }
    if kind == "json":
        return http_event(json.dumps(texts), content_type="application/json", path="/v1.0/removebg")
    from urllib.parse import urlencode

    return http_event(urlencode(texts), content_type="application/x-www-form-urlencoded", path="/v1.0/removebg")


@PROPERTIES
@given(event=removebg_events())
def test_any_removebg_request_gets_a_defined_status_in_its_error_shape(service: Service, event: dict[str, Any]) -> None:
    reply = service.invoke(event)

    assert reply.status in {200} | set(REMOVEBG_STATUSES.values()), reply.body[:300]
    if reply.status >= 400:
        (error,) = reply.json["errors"]
        assert REMOVEBG_STATUSES.get(error["code"]) == reply.status, error
        assert set(error) == {"title", "code", "detail"} and all(error.values())


@PROPERTIES
@given(document=st.one_of(json_documents.map(json.dumps), json_texts), query=queries)
def test_any_json_document_and_query_get_a_defined_status(
    service: Service, document: str, query: dict[str, str] | None
) -> None:
    event = http_event(document, content_type="application/json", query=query)

    assert_defined(service.invoke(event))


@PROPERTIES
@given(data=st.one_of(images, st.binary(max_size=1024)), content_type=content_types(), encoded=st.booleans())
def test_any_raw_body_and_content_type_get_a_defined_status(
    service: Service, data: bytes, content_type: str, encoded: bool
) -> None:
    event = http_event(data if encoded else data.decode("latin-1"), content_type=content_type)

    assert_defined(service.invoke(event))
