"""POST /remove with `outputs=cutout,mask`: the cutout and the mask of one inference, in one JSON answer.

Through `handler.api.lambda_handler` with the real U-2-Net-p model and S3 as a moto server on
127.0.0.1, as the other API tests.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from tests.helpers.api import (
    EVENT_IMAGE,
    EVENT_SIZE,
    PNG_MAGIC,
    Reply,
    Service,
    assert_common_headers,
    assert_error,
    fetch,
    http_event,
    json_event,
    multipart_event,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

JSON = "application/json"
BOTH = {"outputs": "cutout,mask"}


@pytest.fixture
def inferences(service: Service, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the model's runs: the real session, with a counter in front of it."""
    from handler.aws import runtime

    model = runtime.current().model
    real = model.probabilities
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "probabilities", counted)
    return calls


def _image(document: dict[str, Any], field: str) -> bytes:
    return base64.b64decode(document[field], validate=True)


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(lambda: http_event(query=BOTH, accept=JSON), id="query"),
        pytest.param(lambda: multipart_event({"image": EVENT_IMAGE, **BOTH}, accept=JSON), id="form"),
        pytest.param(
            lambda: json_event({"image": base64.b64encode(EVENT_IMAGE).decode(), **BOTH}, accept=JSON), id="json"
        ),
    ],
)
def test_one_inference_gives_the_cutout_and_the_mask(
    service: Service, inferences: list[int], make_event: Callable[[], dict[str, Any]]
) -> None:
    # GIVEN the cutout and the mask as /remove and /mask answer them on their own
    cutout = service.invoke(http_event()).body
    mask = service.invoke(http_event(path="/mask")).body
    inferences.clear()

    reply = service.invoke(make_event())

    # THEN one JSON answer carries exactly both, from one model run
    assert reply.status == 200, reply.body[:300]
    assert_common_headers(reply)
    document = reply.json
    assert _image(document, "image") == cutout
    assert _image(document, "mask") == mask
    assert len(inferences) == 1
    # and the same fields as a single image's answer
    assert (document["width"], document["height"]) == EVENT_SIZE
    assert document["content_type"] == "image/png"
    assert document["input"] == {"width": EVENT_SIZE[0], "height": EVENT_SIZE[1]}
    assert tuple(document["foreground"].values()) == reply.box


def test_the_options_shape_both_outputs_as_each_route_alone(service: Service) -> None:
    shared = {"crop": "true", "margin": "4", "max_size": "40", "format": "webp"}
    cutout_only = {"bg_color": "#ff0000", "refine": "false"}

    document = service.invoke(http_event(query={**shared, **cutout_only, **BOTH}, accept=JSON)).json

    # THEN each image is what its own route gives for the options that apply to it
    assert _image(document, "image") == service.invoke(http_event(query={**shared, **cutout_only})).body
    assert _image(document, "mask") == service.invoke(http_event(path="/mask", query=shared)).body
    cutout = Image.open(io.BytesIO(_image(document, "image")))
    assert cutout.format == "WEBP" and max(cutout.size) == 40
    assert cutout.mode == "RGB"  # flattened onto the colour


@pytest.mark.parametrize("accept", [None, "image/png", "*/*"])
def test_two_images_without_json_are_not_acceptable(service: Service, inferences: list[int], accept: str) -> None:
    reply = service.invoke(http_event(query=BOTH, accept=accept))

    assert_error(reply, 406, "not_acceptable", mentions="Accept: application/json")
    assert inferences == []  # refused before the model runs


@pytest.mark.parametrize(
    ("path", "value", "mentions"),
    [
        ("/mask", "cutout,mask", "outputs: applies to cutouts"),
        ("/remove", "mask", "outputs: expected cutout or cutout,mask"),
        ("/remove", "cutout,cutout", "outputs:"),
        ("/remove", "cutout,alpha", "outputs:"),
    ],
)
def test_outputs_where_it_cannot_apply_is_named(service: Service, path: str, value: str, mentions: str) -> None:
    reply = service.invoke(http_event(path=path, query={"outputs": value}, accept=JSON))

    assert_error(reply, 400, "invalid_parameter", mentions=mentions)


def _small_response_limit(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # The example's ~10 kB answer over the budget: the same branch a 4.5 MB result takes.
    monkeypatch.setattr(service.api, "LAMBDA_RESPONSE_LIMIT", service.api.ENVELOPE_RESERVE + 100)


def test_both_too_large_to_return_are_stored_and_linked(
    service: Service, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN both images as they come inline
    inline = service.invoke(http_event(query=BOTH, accept=JSON)).json
    _small_response_limit(service, monkeypatch)

    reply: Reply = service.invoke(http_event(query=BOTH, accept=JSON))

    # THEN a JSON document (a 200: a 303 would be followed to the cutout alone) with the cutout's
    # link and the mask's beside it, each downloading exactly that image
    assert reply.status == 200
    assert "location" not in reply.headers
    document = reply.json
    assert fetch(document["url"]) == _image(inline, "image")
    assert fetch(document["mask_url"]) == _image(inline, "mask")
    assert fetch(document["mask_url"]).startswith(PNG_MAGIC)
    # stored side by side under the request's id
    folder = f"api/{service.context.aws_request_id}/"
    listed = s3.list_objects_v2(Bucket=service.deployment.output_bucket, Prefix=folder)["Contents"]
    assert sorted(item["Key"] for item in listed) == [f"{folder}cutout.png", f"{folder}mask.png"]


def test_both_too_large_without_output_bucket_are_refused(
    configure: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = configure(OUTPUT_BUCKET=None)
    _small_response_limit(service, monkeypatch)

    reply = service.invoke(http_event(query=BOTH, accept=JSON))

    assert_error(reply, 413, "output_too_large", mentions="the cutout and mask are")
