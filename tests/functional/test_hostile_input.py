"""Requests an attacker would craft, through the API entry point: each gets its coded 4xx (or a
documented 200), never a 500, and is refused before the work it would have cost. The work is
counted (calls into Pillow, inferences, form parts parsed), never timed."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import multipart
import pytest
from PIL import Image

from handler.core.model.session import BackgroundModel
from tests import hostile
from tests.counting import count_calls
from tests.helpers.api import EVENT_IMAGE, Service, assert_error, http_event, json_event, multipart_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

REMOVEBG = "/v1.0/removebg"


@pytest.fixture
def pillow_opens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls into Pillow's opener: a format's header parser is the first of its decoder's work."""
    return count_calls(monkeypatch, Image, "open")


@pytest.fixture
def inferences(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_calls(monkeypatch, BackgroundModel, "probabilities")


@pytest.fixture
def parts_parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Parts whose headers the form parser finished (its documented per-part hook)."""
    return count_calls(monkeypatch, multipart.PushMultipartParser, "_create_segment")


def _png(image: Image.Image, **params: Any) -> bytes:
    return hostile.save(image, "PNG", **params)


# -- 1. a cost budget, enforced before the decoder ------------------------------------------------


@pytest.mark.parametrize("path", ["/mask", "/remove"])
def test_a_progressive_jpeg_that_repeats_its_scans_is_413_before_any_decoding(
    service: Service, pillow_opens: list[int], inferences: list[int], path: str
) -> None:
    # GIVEN a 7 kB progressive JPEG whose last scan is repeated: 40 scans, each a full pass
    data = hostile.jpeg_with_scans(40)

    reply = service.invoke(http_event(data, path=path))

    assert_error(reply, 413, "too_complex", mentions="32 scans")
    assert pillow_opens == [] and inferences == []


@pytest.mark.parametrize(
    ("name", "data"),
    [
        pytest.param("png-chunks", hostile.png_with_chunks(70_000), id="png-chunks"),
        pytest.param("gif-blocks", hostile.gif_with_blocks(600_000), id="gif-blocks"),
        pytest.param("tiff-strips", hostile.tiff_with_strips(70_000), id="tiff-strips"),
        pytest.param("tiff-tags", hostile.tiff_with_tags(70_000), id="tiff-tags"),
        pytest.param("webp-chunks", hostile.webp_with_chunks(70_000), id="webp-chunks"),
        pytest.param("bmp-rle", hostile.bmp_rle8(4096, 4096), id="bmp-rle"),
        pytest.param("avif-items", hostile.avif_with_items(1001), id="avif-items"),
        pytest.param("jpeg-segments", hostile.jpeg_with_segments(70_000), id="jpeg-segments"),
    ],
)
def test_every_format_past_its_structural_bound_is_413_before_any_decoding(
    service: Service, pillow_opens: list[int], name: str, data: bytes
) -> None:
    reply = service.invoke(multipart_event({"image": data}))

    assert_error(reply, 413, "too_complex")
    assert pillow_opens == []


def test_a_progressive_jpeg_is_decoded_once(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a large progressive JPEG (its draft decode would repeat every scan)
    photo = Image.open(io.BytesIO(EVENT_IMAGE)).resize((1600, 1200))
    progressive = hostile.save(photo, "JPEG", progressive=True)
    baseline = hostile.save(photo, "JPEG")
    decoders: list[str] = []
    real = Image._getdecoder

    def counting(mode: str, decoder_name: str, *args: Any, **kwargs: Any) -> Any:
        decoders.append(decoder_name)
        return real(mode, decoder_name, *args, **kwargs)

    monkeypatch.setattr(Image, "_getdecoder", counting)

    # WHEN each is cut out, THEN the progressive one went through libjpeg once, the baseline one
    # twice (its cheap draft for the model beside the full decode)
    assert service.invoke(http_event(progressive, path="/mask")).status == 200
    assert decoders.count("jpeg") == 1
    decoders.clear()
    assert service.invoke(http_event(baseline, path="/mask")).status == 200
    assert decoders.count("jpeg") == 2


# -- 2. multipart with limits ---------------------------------------------------------------------


def test_a_form_of_thousands_of_parts_is_400_after_its_64th(
    service: Service, parts_parsed: list[int], inferences: list[int]
) -> None:
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'.encode()
    image = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'.encode()
        + EVENT_IMAGE
        + b"\r\n"
    )
    body = image + part * 5000 + f"--{boundary}--\r\n".encode()

    for path in ("/remove", REMOVEBG):
        parts_parsed.clear()
        event = http_event(body, content_type=f"multipart/form-data; boundary={boundary}", path=path)

        reply = service.invoke(event)

        assert reply.status == 400, reply.body[:300]
        assert "64 parts" in reply.body.decode()
        assert len(parts_parsed) == 64
    assert inferences == []


def test_an_oversized_option_field_is_413(service: Service, inferences: list[int]) -> None:
    reply = service.invoke(multipart_event({"image": EVENT_IMAGE, "format": "p" * 20_000}))

    assert_error(reply, 413, "request_too_large", mentions="format")
    assert inferences == []


# -- 3. no 500 from anything a client sends --------------------------------------------------------


@pytest.mark.parametrize(
    ("colour", "component"),
    [("rgb(99999999999999999999,0,0)", "red"), ("hsl(0,1000%,50%)", "red"), ("rgb(0,0,-1)", None)],
)
def test_an_out_of_range_colour_is_400_naming_the_component(
    service: Service, inferences: list[int], colour: str, component: str | None
) -> None:
    query = {"bg_color": colour, "format": "jpeg"}
    reply = service.invoke(http_event(query=query))
    message = assert_error(reply, 400, "invalid_parameter", mentions="bg_color")
    if component is not None:
        assert component in message

    removebg_fields = {"image_file_b64": base64.b64encode(EVENT_IMAGE).decode(), "bg_color": colour}
    removebg = service.invoke(json_event(removebg_fields, path=REMOVEBG))
    assert removebg.status == 400 and "bg_color" in removebg.body.decode()

    uploads = service.invoke(json_event({"content_type": "image/jpeg", **query}, path="/uploads"))
    assert_error(uploads, 400, "invalid_parameter", mentions="bg_color")
    assert inferences == []


def test_post_uploads_refuses_a_resolution_the_model_cannot_run(service: Service) -> None:
    # The job would fail on it: the same check as POST /remove, before a form is handed out
    reply = service.invoke(json_event({"content_type": "image/jpeg", "resolution": "512"}, path="/uploads"))

    assert_error(reply, 400, "invalid_parameter", mentions="resolution")


@pytest.mark.parametrize(
    ("size", "query", "limit"),
    [
        ((20_000, 40), {"format": "webp"}, "16383"),
        ((65_501, 20), {"format": "jpeg", "bg_color": "white"}, "65500"),
    ],
    ids=["webp-panorama", "jpeg-panorama"],
)
def test_an_output_wider_than_its_format_allows_is_400_before_inference(
    service: Service, inferences: list[int], size: tuple[int, int], query: dict[str, str], limit: str
) -> None:
    panorama = _png(Image.new("RGB", size, (90, 140, 200)))

    reply = service.invoke(http_event(panorama, content_type="image/png", query=query))

    message = assert_error(reply, 400, "invalid_parameter", mentions=limit)
    assert "format=png" in message
    assert inferences == []
    # the remedy the message names works
    remedy = re.search(r"max_size=(\d+)", message)
    assert remedy is not None
    fitted = service.invoke(http_event(panorama, content_type="image/png", query={**query, "max_size": remedy[1]}))
    assert fitted.status == 200 and int(fitted.headers["x-width"]) == int(remedy[1]) <= int(limit)


@pytest.mark.parametrize(
    ("size", "fields", "limit"),
    [
        ((20_000, 40), {"format": "webp"}, "16383"),
        # The zip's colour image is a JPEG, though the route renders a PNG cutout for it.
        ((65_501, 20), {"format": "zip"}, "65500"),
    ],
    ids=["webp-panorama", "zip-panorama"],
)
def test_remove_bg_outputs_beyond_their_format_are_its_400_before_inference(
    service: Service, inferences: list[int], size: tuple[int, int], fields: dict[str, str], limit: str
) -> None:
    panorama = _png(Image.new("RGB", size, (90, 140, 200)))

    reply = service.invoke(multipart_event({"image_file": panorama, "size": "full", **fields}, path="/v1.0/removebg"))

    assert reply.status == 400, reply.body[:300]
    (error,) = reply.json["errors"]
    assert error["code"] == "invalid_format" and limit in error["detail"]
    # remove.bg's own vocabulary for the way round it: a size, not our max_size
    assert "size=" in error["detail"] and "max_size" not in error["detail"]
    assert inferences == []


def test_exif_too_large_for_a_jpeg_output_is_left_out(service: Service) -> None:
    # GIVEN a PNG whose EXIF block (a long image description) is over the 64 kB a JPEG segment holds
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000
    photo = _png(Image.open(io.BytesIO(EVENT_IMAGE)), exif=exif.tobytes())

    # WHEN it is cut out to JPEG with its metadata kept
    query = {"format": "jpeg", "bg_color": "white", "keep_metadata": "true"}
    reply = service.invoke(http_event(photo, content_type="image/png", query=query))

    # THEN the cutout comes back, without the block it could not carry
    assert reply.status == 200, reply.body[:300]
    assert "exif" not in Image.open(io.BytesIO(reply.body)).info


def test_a_small_exif_block_is_still_kept(service: Service) -> None:
    exif = Image.Exif()
    exif[0x010E] = "a short description"
    photo = _png(Image.open(io.BytesIO(EVENT_IMAGE)), exif=exif.tobytes())
    query = {"format": "jpeg", "bg_color": "white", "keep_metadata": "true"}

    reply = service.invoke(http_event(photo, content_type="image/png", query=query))

    assert reply.status == 200
    assert Image.open(io.BytesIO(reply.body)).getexif()[0x010E] == "a short description"
