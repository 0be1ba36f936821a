"""Phone and camera inputs through the API: HEIC/AVIF bodies, metadata, and the resolution option."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from handler.core.image import decode as imaging
from tests.exif import LATITUDE, ORIENTATION, latitude, phone_exif
from tests.helpers.api import EVENT_IMAGE, EVENT_SIZE, Service, assert_error, http_event, multipart_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def phone_photo(fmt: str, **params: object) -> bytes:
    """The example cat as a phone saves it: stored sideways (orientation 6), with a GPS position."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(EVENT_IMAGE)).save(buffer, fmt, exif=phone_exif(6).tobytes(), quality=90, **params)
    return buffer.getvalue()


UPRIGHT_SIZE = (EVENT_SIZE[1], EVENT_SIZE[0])  # orientation 6: shown turned a quarter


@pytest.mark.parametrize(
    ("fmt", "make_event"),
    [
        pytest.param("HEIF", lambda data: http_event(data, content_type="image/heic"), id="heic-raw-body"),
        pytest.param("HEIF", lambda data: multipart_event({"image": data}), id="heic-multipart"),
        pytest.param("AVIF", lambda data: http_event(data, content_type="image/avif"), id="avif-raw-body"),
        pytest.param("AVIF", lambda data: multipart_event({"image": data}), id="avif-multipart"),
    ],
)
def test_phone_formats_give_an_upright_cutout(
    service: Service, fmt: str, make_event: Callable[[bytes], dict[str, Any]]
) -> None:
    reply = service.invoke(make_event(phone_photo(fmt)))

    assert reply.status == 200, reply.body[:300]
    image = reply.image
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.size == UPRIGHT_SIZE  # turned once: never left sideways, never turned twice
    assert latitude(image) is None and len(image.getexif()) == 0  # and the GPS position stayed behind


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_format_without_its_decoder_is_415(service: Service, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    kept = tuple(name for name in imaging._decodable_formats() if name != fmt)
    monkeypatch.setattr(imaging, "_decodable_formats", lambda: kept)

    reply = service.invoke(http_event(phone_photo(fmt), content_type="application/octet-stream"))

    assert_error(reply, 415, "unsupported_media_type", mentions=fmt)


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(lambda data: http_event(data, query={"keep_metadata": "true"}), id="query-string"),
        pytest.param(lambda data: multipart_event({"image": data, "keep_metadata": "true"}), id="multipart"),
    ],
)
def test_keep_metadata_copies_the_gps_position(service: Service, make_event: Callable[[bytes], dict[str, Any]]) -> None:
    reply = service.invoke(make_event(phone_photo("JPEG")))

    assert reply.status == 200, reply.body[:300]
    assert latitude(reply.image) == LATITUDE
    assert reply.image.getexif()[ORIENTATION] == 1 and reply.image.size == UPRIGHT_SIZE


@pytest.mark.parametrize("resolution", ["512", "768", "1024"])
def test_resolution_on_a_fixed_size_model_is_refused_naming_its_size(service: Service, resolution: str) -> None:
    # U-2-Net-p's input is fixed at 320x320: no other size can be run.
    reply = service.invoke(http_event(query={"resolution": resolution}))

    message = assert_error(reply, 400, "invalid_parameter")
    assert message.startswith("resolution:") and "320x320" in message


def test_resolution_on_a_dynamic_model(configure: Callable[..., Service], tmp_path: Any) -> None:
    from tests import graphs

    model_path = graphs.save(graphs.channel_affine(1, 40.0, -20.0, size=None), tmp_path / "dynamic.onnx")
    service = configure(MODEL_PATH=str(model_path), MODEL_OUTPUT="logits")

    reply = service.invoke(http_event(query={"resolution": "512"}))

    assert reply.status == 200, reply.body[:300]
    assert reply.image.size == EVENT_SIZE
