"""The API entry point end to end: API Gateway / Function URL events in, HTTP responses out.

Every request goes through `handler.api.lambda_handler` with the real U-2-Net-p model and S3 as a
moto server on 127.0.0.1. `handler.api` loads the runtime when it is imported, so it is imported
only after `deploy()` has set the environment; later deployments reset `runtime.current` and the
handler picks the new settings up on its next request.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
from PIL import Image

from handler.core.image.decode import load_picture
from tests.composites import changed_edge_pixels
from tests.helpers.api import (
    EVENT_IMAGE,
    EVENT_SIZE,
    JPEG_MAGIC,
    PNG_MAGIC,
    SAMPLES,
    Service,
    assert_box_inside,
    assert_common_headers,
    assert_error,
    assert_image_reply,
    expected_crop,
    fetch,
    http_event,
    json_event,
    load_event,
    multipart_event,
    noisy_photo,
    rest_event,
)

# pytest resets warning filters per test, undoing the one handler.aws.observability installs.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


# --------------------------------------------------------------------------------------------
# The example events, end to end
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_file", "pil_format", "content_type", "mode"),
    [
        ("api_v2_remove.json", "PNG", "image/png", "RGBA"),
        ("api_v2_mask.json", "PNG", "image/png", "L"),
        ("api_v1_remove.json", "WEBP", "image/webp", "RGBA"),
    ],
)
def test_example_event_gives_an_image(
    service: Service, event_file: str, pil_format: str, content_type: str, mode: str
) -> None:
    # WHEN the example event is handled
    reply = service.invoke(load_event(event_file))

    # THEN the body is the image, at the input's size, binary in base64 as API Gateway expects
    assert reply.raw["isBase64Encoded"] is True
    image = assert_image_reply(reply, pil_format=pil_format, content_type=content_type)
    assert image.size == EVENT_SIZE
    assert image.mode == mode
    # and the alpha (or mask) separates subject from background
    alpha = image.getchannel("A") if mode == "RGBA" else image
    low, high = cast(tuple[int, int], alpha.getextrema())
    assert low < 16 and high > 240


def test_rest_api_reply_carries_multi_value_headers(service: Service) -> None:
    reply = service.invoke(load_event("api_v1_remove.json"))

    # REST API (payload 1.0) responses carry headers as lists in multiValueHeaders
    assert reply.status == 200
    multi = reply.raw["multiValueHeaders"]
    assert multi["X-Content-Type-Options"] == ["nosniff"]
    assert multi["Content-Type"] == ["image/webp"]
    assert multi["X-Width"] == [str(EVENT_SIZE[0])]


def test_cutout_alpha_is_the_mask(service: Service) -> None:
    # GIVEN the same image sent to /remove and to /mask
    cutout = service.invoke(load_event("api_v2_remove.json")).image
    mask = service.invoke(load_event("api_v2_mask.json")).image

    # THEN the cutout's alpha is exactly the mask, and fully transparent pixels carry no colour
    assert np.array_equal(np.asarray(cutout.getchannel("A")), np.asarray(mask))
    pixels = np.asarray(cutout)
    assert not pixels[pixels[..., 3] == 0][:, :3].any()


def test_function_url_event_gives_json_with_a_cropped_cutout(service: Service) -> None:
    # GIVEN the Function URL example: Accept: application/json, crop=true, margin=5%
    reply = service.invoke(load_event("function_url_remove.json"))

    assert reply.status == 200
    assert_common_headers(reply)
    document = reply.json
    assert document["content_type"] == "image/png"
    assert document["input"] == {"width": EVENT_SIZE[0], "height": EVENT_SIZE[1]}
    foreground = document["foreground"]
    box = (foreground["left"], foreground["top"], foreground["width"], foreground["height"])
    assert box == reply.box
    assert_box_inside(box, EVENT_SIZE)

    # THEN the base64 image is a PNG of the announced size, cropped to the box plus 5% of its longer side
    data = base64.b64decode(document["image"], validate=True)
    assert data.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(data))
    assert image.size == (document["width"], document["height"])
    assert (int(reply.headers["x-width"]), int(reply.headers["x-height"])) == image.size
    margin = round(0.05 * max(box[2], box[3]))
    assert image.size == expected_crop(box, margin, EVENT_SIZE)
    assert image.width < EVENT_SIZE[0] and image.height < EVENT_SIZE[1]


# --------------------------------------------------------------------------------------------
# How the image arrives
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(lambda source: http_event(content_type="image/jpeg"), id="image/jpeg"),
        pytest.param(lambda source: http_event(content_type="application/octet-stream"), id="octet-stream"),
        pytest.param(lambda source: http_event(content_type=None), id="no-content-type"),
        pytest.param(lambda source: multipart_event({"image": EVENT_IMAGE}), id="multipart"),
        # remove.bg's and rembg's field names, as their clients send them
        pytest.param(lambda source: multipart_event({"image_file": EVENT_IMAGE}), id="multipart-image_file"),
        pytest.param(lambda source: multipart_event({"file": EVENT_IMAGE}), id="multipart-file"),
        pytest.param(lambda source: json_event({"image": base64.b64encode(EVENT_IMAGE).decode()}), id="json-base64"),
        pytest.param(lambda source: json_event({"source": source}), id="json-s3-source"),
    ],
)
def test_every_body_kind_gives_the_same_cutout(
    service: Service, s3: Any, make_event: Callable[[dict[str, str]], dict[str, Any]]
) -> None:
    # GIVEN the image also stored in an allowed source bucket
    source = {"bucket": service.deployment.source_bucket, "key": "photos/cat one.jpg"}
    s3.put_object(Bucket=source["bucket"], Key=source["key"], Body=EVENT_IMAGE)
    expected = service.invoke(http_event()).body

    # WHEN the image is sent in this way
    reply = service.invoke(make_event(source))

    # THEN the cutout is the same as for a plain upload
    assert_image_reply(reply, pil_format="PNG", content_type="image/png")
    assert reply.body == expected


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(
            lambda: multipart_event({"format": "webp", "image": EVENT_IMAGE, "max_size": "48"}), id="multipart-fields"
        ),
        pytest.param(
            lambda: json_event({"image": base64.b64encode(EVENT_IMAGE).decode(), "format": "webp", "max_size": 48}),
            id="json-fields",
        ),
        pytest.param(lambda: http_event(query={"format": "webp", "max_size": "48"}), id="query-string"),
    ],
)
def test_options_come_from_query_form_fields_or_json(
    service: Service, make_event: Callable[[], dict[str, Any]]
) -> None:
    reply = service.invoke(make_event())

    image = assert_image_reply(reply, pil_format="WEBP", content_type="image/webp")
    assert image.size == (48, 32)


def test_source_in_a_bucket_not_allowed_is_forbidden(
    service: Service, s3: Any, new_bucket: Callable[[str], str]
) -> None:
    # GIVEN an object that exists, in a bucket that is not on SOURCE_BUCKETS
    private = new_bucket("private")
    s3.put_object(Bucket=private, Key="cat.jpg", Body=EVENT_IMAGE)

    reply = service.invoke(json_event({"source": {"bucket": private, "key": "cat.jpg"}}))

    assert_error(reply, 403, "source_forbidden", mentions=private)


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(lambda allowed, private: allowed.upper(), id="uppercase"),
        pytest.param(lambda allowed, private: f" {allowed}", id="leading-space"),
        pytest.param(lambda allowed, private: f"{allowed}/", id="trailing-slash"),
        pytest.param(lambda allowed, private: f"arn:aws:s3:::{allowed}", id="arn-of-allowed"),
        pytest.param(lambda allowed, private: f"s3://{allowed}/cat.jpg", id="s3-url-of-allowed"),
        pytest.param(lambda allowed, private: f"{allowed}.s3.amazonaws.com", id="virtual-host"),
        pytest.param(lambda allowed, private: f"{allowed}/../{private}", id="traversal-to-private"),
        pytest.param(lambda allowed, private: f"{allowed},{private}", id="list"),
        pytest.param(lambda allowed, private: "*", id="wildcard"),
        pytest.param(lambda allowed, private: f"arn:aws:s3:::{private}", id="arn-of-private"),
        pytest.param(lambda allowed, private: f"s3://{private}/cat.jpg", id="s3-url-of-private"),
    ],
)
def test_source_bucket_must_be_exactly_an_allowed_name(
    service: Service, s3: Any, new_bucket: Callable[[str], str], spell: Callable[[str, str], str]
) -> None:
    # GIVEN the photo in an allowed bucket and in a private one
    allowed, private = service.deployment.source_bucket, new_bucket("private")
    for bucket in (allowed, private):
        s3.put_object(Bucket=bucket, Key="cat.jpg", Body=EVENT_IMAGE)
    assert service.invoke(json_event({"source": {"bucket": allowed, "key": "cat.jpg"}})).status == 200

    # WHEN the bucket is spelt any other way than its exact name
    reply = service.invoke(json_event({"source": {"bucket": spell(allowed, private), "key": "cat.jpg"}}))

    # THEN nothing is read: the allow-list compares names exactly
    assert_error(reply, 403, "source_forbidden")


@pytest.mark.parametrize(
    "key",
    ["../cat.jpg", "photos/../../cat.jpg", "..\\cat.jpg", "%2e%2e/cat.jpg", "\uff0e\uff0e/cat.jpg", "\u2025/cat.jpg"],
)
def test_source_key_with_a_climbing_segment_is_refused(service: Service, s3: Any, key: str) -> None:
    s3.put_object(Bucket=service.deployment.source_bucket, Key="cat.jpg", Body=EVENT_IMAGE)

    reply = service.invoke(json_event({"source": {"bucket": service.deployment.source_bucket, "key": key}}))

    assert_error(reply, 400, "invalid_parameter", mentions="'..'")


def test_source_key_that_is_not_unicode_is_refused(service: Service) -> None:
    # JSON can carry a lone surrogate, which has no UTF-8 form and so is no S3 key
    body = '{"source": {"bucket": "' + service.deployment.source_bucket + '", "key": "cat\\ud800.jpg"}}'
    reply = service.invoke(http_event(body, content_type="application/json"))

    assert_error(reply, 400, "invalid_parameter", mentions="source:")


def test_missing_source_object_is_not_found(service: Service) -> None:
    reply = service.invoke(
        json_event({"source": {"bucket": service.deployment.source_bucket, "key": "nothing/here.jpg"}})
    )

    assert_error(reply, 404, "source_not_found", mentions="nothing/here.jpg")


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "pil_format", "content_type", "magic"),
    [
        ({"format": "png"}, "PNG", "image/png", PNG_MAGIC),
        ({"format": "webp"}, "WEBP", "image/webp", b"RIFF"),
        ({"format": "jpeg", "bg_color": "#00ff00"}, "JPEG", "image/jpeg", JPEG_MAGIC),
        ({"format": "jpg", "bg_color": "00ff00"}, "JPEG", "image/jpeg", JPEG_MAGIC),
    ],
)
def test_output_format(
    service: Service, query: dict[str, str], pil_format: str, content_type: str, magic: bytes
) -> None:
    reply = service.invoke(http_event(query=query))

    assert_image_reply(reply, pil_format=pil_format, content_type=content_type)
    assert reply.body.startswith(magic)


def test_jpeg_cutout_without_a_background_colour_is_refused(service: Service) -> None:
    reply = service.invoke(http_event(query={"format": "jpeg"}))

    assert_error(reply, 400, "invalid_parameter", mentions="bg_color")


def test_jpeg_mask_needs_no_background_colour(service: Service) -> None:
    reply = service.invoke(http_event(path="/mask", query={"format": "jpeg"}))

    image = assert_image_reply(reply, pil_format="JPEG", content_type="image/jpeg")
    assert image.mode == "L"


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_background_colour_fills_the_background(service: Service, fmt: str, pil_format: str) -> None:
    colour = (30, 144, 255)
    reply = service.invoke(http_event(query={"format": fmt, "bg_color": "#1e90ff"}))

    image = assert_image_reply(reply, pil_format=pil_format, content_type=f"image/{fmt}")
    # THEN the image is opaque and its corners (background in this photo) are the colour
    assert image.mode == "RGB"
    width, height = image.size
    for corner in [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)]:
        pixel = cast(tuple[int, ...], image.getpixel(corner))
        assert all(abs(got - want) <= 12 for got, want in zip(pixel, colour, strict=True)), (corner, pixel)


@pytest.mark.parametrize(
    ("margin", "pixels_of"),
    [
        (None, lambda box: 0),
        ("0", lambda box: 0),
        ("3", lambda box: 3),
        ("3px", lambda box: 3),
        ("10%", lambda box: round(0.10 * max(box[2], box[3]))),
        ("25%", lambda box: round(0.25 * max(box[2], box[3]))),
    ],
)
def test_crop_to_the_subject_with_a_margin(
    service: Service, margin: str | None, pixels_of: Callable[[tuple[int, int, int, int]], int]
) -> None:
    query = {"crop": "true"} if margin is None else {"crop": "true", "margin": margin}

    reply = service.invoke(http_event(query=query))

    image = assert_image_reply(reply, pil_format="PNG", content_type="image/png")
    box = reply.box
    # THEN the output is the box (in input pixels) grown by the margin and clipped to the input
    assert image.size == expected_crop(box, pixels_of(box), EVENT_SIZE)
    assert image.width >= box[2] and image.height >= box[3]
    assert image.width <= EVENT_SIZE[0] and image.height <= EVENT_SIZE[1]
    assert image.size != EVENT_SIZE


def test_crop_false_keeps_the_whole_image(service: Service) -> None:
    reply = service.invoke(http_event(query={"crop": "false"}))

    assert assert_image_reply(reply, pil_format="PNG", content_type="image/png").size == EVENT_SIZE


@pytest.mark.parametrize(
    ("max_size", "expected"),
    [("48", (48, 32)), ("50", (50, 33)), ("96", EVENT_SIZE), ("5000", EVENT_SIZE)],
)
def test_max_size_bounds_the_longest_side_and_never_upscales(
    service: Service, max_size: str, expected: tuple[int, int]
) -> None:
    reply = service.invoke(http_event(query={"max_size": max_size}))

    image = assert_image_reply(reply, pil_format="PNG", content_type="image/png")
    assert image.size == expected
    assert max(image.size) <= int(max_size)


@pytest.mark.parametrize(
    ("query", "refined"),
    [({}, True), ({"refine": "true"}, True), ({"refine": "false"}, False), ({"refine": "0"}, False)],
    ids=["default", "true", "false", "0"],
)
def test_refine_sets_the_edge_colour_and_is_on_by_default(
    service: Service, query: dict[str, str], refined: bool
) -> None:
    reply = service.invoke(http_event(query=query))

    # THEN semi-transparent pixels get an estimated foreground colour unless refine=false; opaque
    # pixels keep the photo's colour and transparent ones are zero either way
    cutout = assert_image_reply(reply, pil_format="PNG", content_type="image/png")
    assert cutout.size == EVENT_SIZE
    changed = changed_edge_pixels(load_picture(EVENT_IMAGE).rgb, cutout)
    assert (changed > 0) == refined, changed


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(lambda: http_event(query={"size": "full"}), id="query-string"),
        pytest.param(lambda: json_event({"image": base64.b64encode(EVENT_IMAGE).decode(), "size": "full"}), id="json"),
        pytest.param(lambda: multipart_event({"image": EVENT_IMAGE, "size": "full"}), id="multipart"),
    ],
)
def test_unknown_parameter_is_named(service: Service, make_event: Callable[[], dict[str, Any]]) -> None:
    reply = service.invoke(make_event())

    message = assert_error(reply, 400, "invalid_parameter")
    assert message.startswith("size:")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("format", "gif"),
        ("bg_color", "reddish"),
        ("bg_color", "#12345"),
        ("crop", "maybe"),
        ("margin", "-5"),
        ("margin", "5em"),
        ("margin", "150%"),
        ("max_size", "0"),
        ("max_size", "big"),
        ("max_size", "100000"),
        ("refine", "2"),
    ],
)
def test_invalid_option_value_is_named(service: Service, name: str, value: str) -> None:
    reply = service.invoke(http_event(query={name: value}))

    message = assert_error(reply, 400, "invalid_parameter")
    assert message.startswith(f"{name}:")


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(lambda: http_event(accept="application/json"), id="http-api"),
        pytest.param(
            lambda: rest_event(headers={"Content-Type": "image/jpeg", "Accept": "application/json"}), id="rest-api"
        ),
    ],
)
def test_accept_json_gives_base64_image_and_metadata(
    service: Service, make_event: Callable[[], dict[str, Any]]
) -> None:
    inline = service.invoke(http_event()).body

    reply = service.invoke(make_event())

    assert reply.status == 200
    assert_common_headers(reply)
    document = reply.json
    assert base64.b64decode(document["image"], validate=True) == inline
    assert (document["width"], document["height"]) == EVENT_SIZE
    assert document["content_type"] == "image/png"
    foreground = document["foreground"]
    assert set(foreground) == {"left", "top", "width", "height"}
    assert tuple(foreground.values()) == reply.box


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

TRUNCATED_JPEG = (SAMPLES / "chelsea.jpg").read_bytes()[:12_000]


def _error_case(
    case_id: str, make_event: Callable[[], dict[str, Any]], status: int, code: str, mentions: str | None = None
) -> Any:
    return pytest.param(make_event, status, code, mentions, id=case_id)


JSON = "application/json"
OCTETS = "application/octet-stream"


@pytest.mark.parametrize(
    ("make_event", "status", "code", "mentions"),
    [
        _error_case("empty-image-body", lambda: http_event(b""), 400, "missing_image"),
        _error_case("empty-body-no-type", lambda: http_event(b"", content_type=None), 400, "missing_image"),
        _error_case("empty-json-body", lambda: http_event("", content_type=JSON), 400, "missing_image"),
        _error_case("json-without-image", lambda: json_event({"format": "png"}), 400, "missing_image"),
        _error_case("form-without-image", lambda: multipart_event({"format": "png"}), 400, "missing_image"),
        _error_case(
            "not-an-image", lambda: http_event(b"just text, no image", content_type=OCTETS), 400, "invalid_image"
        ),
        _error_case("truncated-jpeg", lambda: http_event(TRUNCATED_JPEG), 400, "invalid_image"),
        _error_case(
            "text-plain",
            lambda: http_event("hi", content_type="text/plain"),
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        _error_case(
            "rest-text-plain",
            lambda: rest_event(headers={"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        _error_case("invalid-base64", lambda: json_event({"image": "not base64!"}), 400, "invalid_parameter", "image:"),
        _error_case(
            "invalid-json", lambda: http_event('{"image": ', content_type=JSON), 400, "invalid_parameter", "body:"
        ),
        _error_case(
            "source-not-object", lambda: json_event({"source": "s3://b/k"}), 400, "invalid_parameter", "source:"
        ),
        _error_case("GET /", lambda: http_event(method="GET", path="/"), 404, "not_found", "POST /remove"),
        _error_case("POST /other", lambda: http_event(path="/other"), 404, "not_found"),
        _error_case("GET /remove", lambda: http_event(method="GET", path="/remove"), 405, "method_not_allowed", "POST"),
        _error_case("PUT /mask", lambda: http_event(method="PUT", path="/mask"), 405, "method_not_allowed", "POST"),
        _error_case(
            "bg_color on /mask",
            lambda: http_event(path="/mask", query={"bg_color": "#ffffff"}),
            400,
            "invalid_parameter",
            "bg_color:",
        ),
        _error_case(
            "refine on /mask",
            lambda: http_event(path="/mask", query={"refine": "false"}),
            400,
            "invalid_parameter",
            "refine:",
        ),
        _error_case(
            "margin without crop", lambda: http_event(query={"margin": "5"}), 400, "invalid_parameter", "margin:"
        ),
        _error_case(
            "margin with crop=false",
            lambda: http_event(query={"crop": "false", "margin": "5"}),
            400,
            "invalid_parameter",
            "margin:",
        ),
        _error_case(
            "two images",
            lambda: multipart_event({"image": EVENT_IMAGE, "file": EVENT_IMAGE}),
            400,
            "invalid_parameter",
            "one image",
        ),
        _error_case(
            "rest-POST /other",
            lambda: rest_event(path="/other", headers={"Content-Type": "image/jpeg"}),
            404,
            "not_found",
        ),
    ],
)
def test_errors_have_a_stable_code_and_status(
    service: Service, make_event: Callable[[], dict[str, Any]], status: int, code: str, mentions: str | None
) -> None:
    reply = service.invoke(make_event())

    assert_error(reply, status, code, mentions=mentions)


@pytest.mark.parametrize("path", ["/remove", "/mask"])
@pytest.mark.parametrize("make", [http_event, lambda **kw: rest_event(headers={"Content-Type": "image/jpeg"}, **kw)])
def test_a_wrong_method_is_405_naming_the_allowed_one(
    service: Service, make: Callable[..., dict[str, Any]], path: str
) -> None:
    reply = service.invoke(make(method="GET", path=path))

    assert_error(reply, 405, "method_not_allowed", mentions=path)
    assert reply.headers["allow"] == "POST"


def test_a_webp_mask_is_lossless(service: Service) -> None:
    # GIVEN the PNG mask (lossless) of the example photo, and its pure background
    expected = np.asarray(service.invoke(http_event(path="/mask")).image.convert("L"))
    assert (expected == 0).sum() > 1000

    reply = service.invoke(http_event(path="/mask", query={"format": "webp"}))

    # THEN the WebP mask has exactly the same values: no background pixel turned faintly visible
    image = assert_image_reply(reply, pil_format="WEBP", content_type="image/webp")
    assert np.array_equal(np.asarray(image.convert("L")), expected)


@pytest.mark.parametrize(
    ("env", "body_kind", "code"),
    [
        ({"MAX_INPUT_BYTES": "1000"}, "upload", "image_too_large"),
        ({"MAX_INPUT_PIXELS": "1000"}, "upload", "too_many_pixels"),
        ({"MAX_INPUT_BYTES": "1000"}, "s3-source", "image_too_large"),
        ({"MAX_INPUT_PIXELS": "1000"}, "s3-source", "too_many_pixels"),
    ],
)
def test_input_over_the_limits_is_too_large(
    configure: Callable[..., Service], s3: Any, env: dict[str, str], body_kind: str, code: str
) -> None:
    # GIVEN a deployment whose limits the 96x64, ~2.4 kB example image exceeds
    assert len(EVENT_IMAGE) > 1000 and EVENT_SIZE[0] * EVENT_SIZE[1] > 1000
    service = configure(**env)
    if body_kind == "upload":
        event = http_event()
    else:
        s3.put_object(Bucket=service.deployment.source_bucket, Key="big.jpg", Body=EVENT_IMAGE)
        event = json_event({"source": {"bucket": service.deployment.source_bucket, "key": "big.jpg"}})

    reply = service.invoke(event)

    assert_error(reply, 413, code)


def test_unexpected_error_reveals_no_internals(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a genuine bug deep in the pipeline
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail /var/task/handler/core/render.py")

    monkeypatch.setattr(service.api, "process", broken)

    reply = service.invoke(http_event())

    # THEN a generic 500: the details are for the logs only
    assert_error(reply, 500, "internal_error")
    assert b"secret" not in reply.body
    assert b"render.py" not in reply.body
    assert "secret" not in json.dumps(reply.raw["headers"])


# --------------------------------------------------------------------------------------------
# Results too big for a Lambda response
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_response_limit(service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    """Make the example's ~10 kB cutout exceed the response budget.

    Producing a real > 4.5 MB result for every case would cost seconds each; the limit is a module
    constant read on every request, so shrinking it drives the very same branch. One test below
    (test_large_photo_is_handed_over_through_s3) checks the unpatched limit with a real large result.
    """
    monkeypatch.setattr(service.api, "LAMBDA_RESPONSE_LIMIT", service.api.ENVELOPE_RESERVE + 100)
    return service


@pytest.mark.parametrize("accept", [None, "application/json"])
def test_oversize_result_is_stored_and_redirected(
    service: Service, s3: Any, monkeypatch: pytest.MonkeyPatch, accept: str | None
) -> None:
    # GIVEN the cutout as it is returned inline
    inline = service.invoke(http_event()).body
    # WHEN the response budget is smaller than it
    monkeypatch.setattr(service.api, "LAMBDA_RESPONSE_LIMIT", service.api.ENVELOPE_RESERVE + 100)
    started = time.time()
    reply = service.invoke(http_event(accept=accept))

    # THEN a presigned URL that downloads exactly that image: a 303 to it for an image client; a
    # JSON client gets the document as a 200 (an HTTP client follows a 303 by itself, and would
    # hand it PNG bytes where it asked for JSON)
    assert_common_headers(reply)
    if accept is None:
        assert reply.status == 303
        url = reply.headers["location"]
    else:
        assert reply.status == 200
        assert "location" not in reply.headers
        url = reply.json["url"]
    assert url.startswith("http://127.0.0.1:")
    assert "X-Amz-Signature=" in url
    assert fetch(url) == inline
    # and a JSON body with the link, its expiry and the result's metadata
    document = reply.json
    assert document["url"] == url
    assert document["expires_in"] == 3600
    expires_at = time.mktime(time.strptime(document["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert started + 3600 - 5 <= expires_at <= time.time() + 3600 + 5
    assert (document["width"], document["height"]) == EVENT_SIZE
    assert document["content_type"] == "image/png"
    assert (int(reply.headers["x-width"]), int(reply.headers["x-height"])) == EVENT_SIZE
    # and the object sits in the output bucket under the request's id
    key = f"api/{service.context.aws_request_id}/cutout.png"
    stored = s3.get_object(Bucket=service.deployment.output_bucket, Key=key)
    assert stored["ContentType"] == "image/png"
    assert stored["Body"].read() == inline


@pytest.mark.parametrize("expiry", ["60", "604800"])
def test_presigned_link_expires_as_configured(
    configure: Callable[..., Service], monkeypatch: pytest.MonkeyPatch, expiry: str
) -> None:
    # GIVEN a deployment with its own link lifetime
    service = configure(PRESIGNED_URL_EXPIRY=expiry)
    monkeypatch.setattr(service.api, "LAMBDA_RESPONSE_LIMIT", service.api.ENVELOPE_RESERVE + 100)

    reply = service.invoke(http_event())

    # THEN the signed link carries exactly that lifetime, and the body says so
    assert reply.status == 303
    query = dict(parse_qsl(urlsplit(reply.headers["location"]).query))
    assert query["X-Amz-Expires"] == expiry
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert reply.json["expires_in"] == int(expiry)


def test_oversize_result_without_output_bucket_is_refused_with_a_hint(
    configure: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = configure(OUTPUT_BUCKET=None)
    monkeypatch.setattr(service.api, "LAMBDA_RESPONSE_LIMIT", service.api.ENVELOPE_RESERVE + 100)

    reply = service.invoke(http_event())

    message = assert_error(reply, 413, "output_too_large")
    assert "webp" in message and "max_size" in message


def test_unwritable_output_bucket_is_a_server_error_not_the_clients(
    configure: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a deployment whose output bucket does not exist, and a result too large to return inline
    service = configure(OUTPUT_BUCKET="no-such-output-bucket")
    monkeypatch.setattr(service.api, "LAMBDA_RESPONSE_LIMIT", service.api.ENVELOPE_RESERVE + 100)

    reply = service.invoke(http_event())

    # THEN the service owns the failure: a 5xx naming the output, never a 404 about the request
    message = assert_error(reply, 500, "output_unavailable")
    assert "no-such-output-bucket" in message


def test_large_photo_is_handed_over_through_s3(service: Service, s3: Any) -> None:
    # GIVEN a 2500x2500 noisy photo, whose PNG cutout is far over the ~4.5 MB a response can carry
    photo = noisy_photo(2500)
    source = {"bucket": service.deployment.source_bucket, "key": "large/astronaut.jpg"}
    s3.put_object(Bucket=source["bucket"], Key=source["key"], Body=photo)

    # WHEN it is processed with the real (unpatched) response limit
    reply = service.invoke(json_event({"source": source}))

    # THEN the result is a link, never an oversize response
    assert reply.status == 303
    data = fetch(reply.headers["location"])
    assert len(data) > 4.5 * 1024 * 1024
    assert data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(data)).size == (2500, 2500)
    assert len(json.dumps(reply.raw)) < service.api.LAMBDA_RESPONSE_LIMIT


# --------------------------------------------------------------------------------------------
# Headers on every kind of answer
# --------------------------------------------------------------------------------------------


def _broken(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("make_event", "status", "patch"),
    [
        pytest.param(lambda: load_event("api_v2_remove.json"), 200, None, id="200-image"),
        pytest.param(lambda: load_event("api_v1_remove.json"), 200, None, id="200-image-rest"),
        pytest.param(lambda: load_event("function_url_remove.json"), 200, None, id="200-json"),
        pytest.param(lambda: http_event(), 303, ("LAMBDA_RESPONSE_LIMIT", 16 * 1024 + 100), id="303"),
        pytest.param(lambda: http_event(TRUNCATED_JPEG), 400, None, id="400"),
        pytest.param(lambda: http_event(path="/other"), 404, None, id="404"),
        pytest.param(lambda: rest_event(path="/other", headers={}), 404, None, id="404-rest"),
        pytest.param(lambda: http_event("x", content_type="text/plain"), 415, None, id="415"),
        pytest.param(lambda: http_event(), 500, ("process", _broken), id="500"),
    ],
)
def test_every_answer_is_nosniff_and_never_cached(
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    make_event: Callable[[], dict[str, Any]],
    status: int,
    patch: tuple[str, Any] | None,
) -> None:
    if patch is not None:
        monkeypatch.setattr(service.api, *patch)

    reply = service.invoke(make_event())

    assert reply.status == status
    assert_common_headers(reply)
    if "multiValueHeaders" in reply.raw:
        assert reply.raw["multiValueHeaders"]["Cache-Control"] == ["no-store"]


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything the function's logger writes, at DEBUG level.

    Powertools binds its handler to the sys.stdout of the moment the logger was created, so capsys
    alone may miss it: point that handler at a buffer for the test.
    """
    from handler.aws.observability import logger

    buffer = io.StringIO()
    monkeypatch.setattr(logger.logger_handler, "stream", buffer)
    level = logger.log_level
    logger.setLevel("DEBUG")
    yield buffer
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("make_event", "status", "evidence"),
    [
        # A success writes its metrics (EMF on stdout); a refusal also logs its code and request id.
        pytest.param(lambda: http_event(), 200, ['"ImagesProcessed"'], id="success"),
        pytest.param(
            lambda: http_event(TRUNCATED_JPEG), 400, ['"invalid_image"', "api-v2-remove-example"], id="refused"
        ),
    ],
)
def test_logs_never_contain_the_body(
    service: Service,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    make_event: Callable[[], dict[str, Any]],
    status: int,
    evidence: list[str],
) -> None:
    event = make_event()
    reply = service.invoke(event)
    assert reply.status == status

    logs = captured_logs.getvalue() + "".join(capsys.readouterr())
    # The output was captured ...
    for text in evidence:
        assert text in logs
    # ... and neither the request body nor the image in the response is in them.
    for body in (event["body"], reply.raw["body"]):
        chunk = body[len(body) // 2 : len(body) // 2 + 64]
        assert len(chunk) == 64
        assert chunk not in logs


# --------------------------------------------------------------------------------------------
# The same flow with a graph of BiRefNet's own contract
# --------------------------------------------------------------------------------------------


def test_remove_with_a_birefnet_contract_graph(configure: Callable[..., Service], tmp_path: Path) -> None:
    from tests import graphs

    # GIVEN a 1024x1024 `input_image` -> `output_image` logits graph whose logit is 40·G/255 - 20:
    # a pure green pixel is subject (sigmoid(20) ≈ 1), a pixel without green is background (≈ 0)
    model_path = graphs.save(graphs.channel_affine(1, 40.0, -20.0), tmp_path / "birefnet-contract.onnx")
    service = configure(MODEL_PATH=str(model_path), MODEL_OUTPUT="logits")
    # and a red picture with a green rectangle at (20, 12), 40x24
    picture = Image.new("RGB", (96, 64), (200, 0, 0))
    picture.paste((0, 255, 0), (20, 12, 60, 36))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")

    # WHEN it goes through the API, answered in JSON
    reply = service.invoke(http_event(buffer.getvalue(), content_type="image/png", accept="application/json"))

    # THEN the reported box is the rectangle, and the cutout keeps exactly the green
    assert reply.status == 200
    document = reply.json
    box = document["foreground"]
    assert box == {"left": 20, "top": 12, "width": 40, "height": 24}
    assert reply.box == (20, 12, 40, 24)
    cutout = Image.open(io.BytesIO(base64.b64decode(document["image"]))).convert("RGBA")
    assert cutout.size == (96, 64)
    assert cutout.getpixel((40, 24)) == (0, 255, 0, 255)
    for corner in [(0, 0), (95, 0), (0, 63), (95, 63)]:
        assert cutout.getpixel(corner) == (0, 0, 0, 0)
