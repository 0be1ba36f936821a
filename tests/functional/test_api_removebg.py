"""`POST /v1.0/removebg`: remove.bg's clients and vocabulary, unchanged but for the base URL.

remove.bg's own published examples (https://www.remove.bg/api: the curl line and the Python
`requests` snippet) run against the local server with only the URL (and the photo's path)
changed; the vocabulary is checked through `handler.api.lambda_handler` with the real model and
S3 as a moto server, as the other API tests are.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from handler.aws import image_url
from handler.local.server import LocalServer
from tests.helpers.api import (
    EVENT_IMAGE,
    EVENT_SIZE,
    Reply,
    Service,
    assert_box_inside,
    assert_common_headers,
    http_event,
    image_reply,
    multipart_event,
)
from tests.helpers.image_host import ImageHost, serving

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

PATH = "/v1.0/removebg"
ROOT = Path(__file__).resolve().parents[2]
ASTRONAUT = (ROOT / "samples" / "astronaut.jpg").read_bytes()  # 512x512 = 262,144 px: over "preview"
PREVIEW_PIXELS = 250_000

# remove.bg's published examples, verbatim but for the URL (and the photo's path, a placeholder there).
CURL_EXAMPLE = """curl -H 'X-API-Key: INSERT_YOUR_API_KEY_HERE'           \\
       -F 'image_file=@/path/to/file.jpg'                 \\
       -F 'size=auto'                                     \\
       -f https://api.remove.bg/v1.0/removebg -o no-bg.png"""
PYTHON_EXAMPLE = """# Requires "requests" to be installed (see python-requests.org)
import requests

response = requests.post(
    'https://api.remove.bg/v1.0/removebg',
    files={'image_file': open('/path/to/file.jpg', 'rb')},
    data={'size': 'auto'},
    headers={'X-Api-Key': 'INSERT_YOUR_API_KEY_HERE'},
)
if response.status_code == requests.codes.ok:
    with open('no-bg.png', 'wb') as out:
        out.write(response.content)
else:
    print("Error:", response.status_code, response.text)
"""


def _changed(example: str, base_url: str, photo: Path) -> str:
    changed = example.replace("https://api.remove.bg", base_url).replace("/path/to/file.jpg", str(photo))
    assert changed.count(base_url) == 1 and changed.count(str(photo)) == 1
    return changed


def _no_proxy() -> dict[str, str]:
    return {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


# --------------------------------------------------------------------------------------------
# remove.bg's own examples, against the local run
# --------------------------------------------------------------------------------------------


def _assert_full_size_cutout(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGBA"
        assert image.size == size  # size=auto: the original resolution
        alpha = np.asarray(image.getchannel("A"))
    assert (alpha == 0).any() and (alpha == 255).any()


def test_removebgs_curl_example(server: LocalServer, samples: dict[str, Path], tmp_path: Path) -> None:
    photo = samples["chelsea"]
    command = _changed(CURL_EXAMPLE, server.url, photo)

    result = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=_no_proxy(), capture_output=True, timeout=120)

    assert result.returncode == 0, result.stderr  # -f: curl fails on an HTTP error
    with Image.open(photo) as original:
        _assert_full_size_cutout(tmp_path / "no-bg.png", original.size)


def test_removebgs_python_requests_example(server: LocalServer, samples: dict[str, Path], tmp_path: Path) -> None:
    photo = samples["coffee"]
    code = _changed(PYTHON_EXAMPLE, server.url, photo)

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_no_proxy(), capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0 and "Error" not in result.stdout, result.stdout + result.stderr
    with Image.open(photo) as original:
        _assert_full_size_cutout(tmp_path / "no-bg.png", original.size)


def test_the_banner_lists_remove_bgs_routes_and_its_try_line_works(server: LocalServer, tmp_path: Path) -> None:
    banner = server.banner()
    (routes,) = [line for line in banner.splitlines() if line.strip().startswith("remove.bg:")]
    assert f"POST {server.url}/v1.0/removebg" in routes and f"GET {server.url}/v1.0/account" in routes
    assert "X-Api-Key" in routes and "RemoveBgApiKeys=ENABLED" in routes
    (try_line,) = [line.strip() for line in banner.splitlines() if "/v1.0/removebg -o no-bg.png" in line]

    # WHEN it is run as printed, from a checkout (samples/ beside it)
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    result = subprocess.run(["sh", "-c", try_line], cwd=tmp_path, env=_no_proxy(), capture_output=True, timeout=120)

    assert result.returncode == 0, result.stderr
    with Image.open(ROOT / "samples" / "chelsea.jpg") as original:
        _assert_full_size_cutout(tmp_path / "no-bg.png", original.size)


def test_the_curl_example_fails_as_curl_reports_a_remove_bg_error(server: LocalServer, tmp_path: Path) -> None:
    # GIVEN a file that is no image
    (tmp_path / "notes.jpg").write_bytes(b"meeting notes, not a photo\n")
    command = (
        _changed(CURL_EXAMPLE, server.url, tmp_path / "notes.jpg")
        .replace(" -f ", " ")
        .replace("-o no-bg.png", "-o answer.json -w '%{http_code}'")
    )

    result = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=_no_proxy(), capture_output=True, text=True)

    # THEN remove.bg's error shape, with our code and detail
    assert result.stdout == "400"
    (error,) = json.loads((tmp_path / "answer.json").read_text())["errors"]
    assert error["code"] == "failed_to_read_image" and error["title"] and error["detail"]


# --------------------------------------------------------------------------------------------
# The vocabulary, through the Lambda entry point
# --------------------------------------------------------------------------------------------


def removebg_event(fields: dict[str, str | bytes], **kwargs: Any) -> dict[str, Any]:
    """A multipart remove.bg request, as its clients send it (files and fields in one form)."""
    return multipart_event(fields, path=PATH, **kwargs)


def assert_removebg_error(reply: Reply, status: int, code: str, *, mentions: str | None = None) -> dict[str, str]:
    assert reply.status == status, reply.body[:300]
    assert_common_headers(reply)
    document = reply.json
    assert set(document) == {"errors"}
    (error,) = document["errors"]
    assert set(error) == {"title", "code", "detail"}
    assert error["code"] == code and error["title"] and error["detail"]
    if mentions is not None:
        assert mentions in error["detail"]
    return error


def _image(reply: Reply, pil_format: str, content_type: str) -> Image.Image:
    return image_reply(reply, pil_format=pil_format, content_type=content_type)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("preview", PREVIEW_PIXELS),
        ("small", PREVIEW_PIXELS),
        ("regular", PREVIEW_PIXELS),
        ("medium", 512 * 512),
        ("full", 512 * 512),
        ("4k", 512 * 512),
        ("auto", 512 * 512),
        ("50MP", 512 * 512),
        (None, PREVIEW_PIXELS),  # remove.bg's default is preview
    ],
)
def test_size_bounds_the_megapixels(service: Service, size: str | None, expected: int) -> None:
    fields: dict[str, str | bytes] = {"image_file": ASTRONAUT} | ({} if size is None else {"size": size})

    image = _image(service.invoke(removebg_event(fields)), "PNG", "image/png")

    assert image.width * image.height <= expected
    assert image.width * image.height > 0.99 * min(expected, 512 * 512)
    assert abs(image.width - image.height) <= 1  # the aspect is kept


# A photo above every size's cap but full's: 2400x2000 = 4.8 MP.
LARGE_SIZE = (2400, 2000)


@pytest.fixture(scope="module")
def large_photo() -> bytes:
    output = io.BytesIO()
    Image.open(io.BytesIO(ASTRONAUT)).resize(LARGE_SIZE).save(output, "JPEG", quality=90)
    return output.getvalue()


# remove.bg's reference, not our table: "medium" is up to 1.5 megapixels, "hd" up to 4.
@pytest.mark.parametrize(("size", "cap"), [("medium", 1_500_000), ("hd", 4_000_000), ("full", None)])
def test_medium_and_hd_cap_a_large_photo_as_remove_bg_documents(
    service: Service, large_photo: bytes, size: str, cap: int | None
) -> None:
    image = _image(service.invoke(removebg_event({"image_file": large_photo, "size": size})), "PNG", "image/png")

    pixels = image.width * image.height
    if cap is None:
        assert image.size == LARGE_SIZE
    else:
        assert 0.99 * cap < pixels <= cap
        assert abs(image.width / image.height - LARGE_SIZE[0] / LARGE_SIZE[1]) < 0.01


def test_zip_is_a_colour_jpeg_and_an_alpha_png(service: Service) -> None:
    png = service.invoke(removebg_event({"image_file": EVENT_IMAGE, "size": "full", "format": "png"})).image

    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, "size": "full", "format": "zip"}))

    assert reply.status == 200 and reply.headers["content-type"] == "application/zip"
    assert (int(reply.headers["x-width"]), int(reply.headers["x-height"])) == EVENT_SIZE
    with zipfile.ZipFile(io.BytesIO(reply.body)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        colour = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert (colour.format, colour.mode, colour.size) == ("JPEG", "RGB", EVENT_SIZE)
    assert (alpha.format, alpha.mode, alpha.size) == ("PNG", "L", EVENT_SIZE)
    # The alpha is exactly the PNG cutout's; the colours are its colours, JPEG-compressed
    assert np.array_equal(np.asarray(alpha), np.asarray(png.getchannel("A")))
    opaque = np.asarray(alpha) >= 128
    assert opaque.sum() > 100
    difference = np.abs(np.asarray(colour, dtype=int) - np.asarray(png.convert("RGB"), dtype=int))[opaque]
    assert difference.mean() < 4


def test_channels_alpha_is_the_mask(service: Service) -> None:
    expected = service.invoke(http_event(path="/mask")).image

    image = _image(
        service.invoke(removebg_event({"image_file": EVENT_IMAGE, "size": "full", "channels": "alpha"})),
        "PNG",
        "image/png",
    )

    assert image.mode == "L"
    assert np.array_equal(np.asarray(image), np.asarray(expected))


@pytest.mark.parametrize(
    ("fields", "pil_format", "content_type"),
    [
        ({}, "PNG", "image/png"),  # auto, transparent regions: PNG
        ({"bg_color": "green"}, "JPEG", "image/jpeg"),  # auto, opaque: JPG
        ({"format": "png", "bg_color": "green"}, "PNG", "image/png"),
        ({"format": "jpg"}, "JPEG", "image/jpeg"),
        ({"format": "webp"}, "WEBP", "image/webp"),
    ],
)
def test_format(service: Service, fields: dict[str, str], pil_format: str, content_type: str) -> None:
    _image(service.invoke(removebg_event({"image_file": EVENT_IMAGE, **fields})), pil_format, content_type)


@pytest.mark.parametrize(
    ("value", "colour"),
    [
        ("green", (0, 128, 0)),
        ("81d4fa", (0x81, 0xD4, 0xFA)),
        ("#81d4fa", (0x81, 0xD4, 0xFA)),
        ("fff", (255, 255, 255)),
        ("81d4faff", (0x81, 0xD4, 0xFA)),
    ],
)
def test_bg_color_fills_the_background(service: Service, value: str, colour: tuple[int, int, int]) -> None:
    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, "format": "png", "bg_color": value}))

    image = _image(reply, "PNG", "image/png").convert("RGB")
    assert image.getpixel((0, 0)) == colour  # a corner is background


def test_jpg_without_bg_color_is_on_white(service: Service) -> None:
    image = _image(service.invoke(removebg_event({"image_file": EVENT_IMAGE, "format": "jpg"})), "JPEG", "image/jpeg")

    corner = image.convert("RGB").getpixel((0, 0))
    assert isinstance(corner, tuple) and all(channel >= 250 for channel in corner)


def _box(reply: Reply) -> tuple[int, int, int, int]:
    return tuple(int(reply.headers[f"x-foreground-{part}"]) for part in ("left", "top", "width", "height"))  # type: ignore[return-value]


def _subject(service: Service) -> tuple[int, int, int, int]:
    """The subject's box in input pixels: a full-size result without crop is the input's frame."""
    return _box(service.invoke(removebg_event({"image_file": EVENT_IMAGE, "size": "full"})))


@pytest.mark.parametrize(
    ("crop_margin", "sides_of"),
    [
        (None, lambda w, h: (0, 0, 0, 0)),
        ("3px", lambda w, h: (3, 3, 3, 3)),
        ("3", lambda w, h: (3, 3, 3, 3)),
        ("10%", lambda w, h: (round(0.1 * h), round(0.1 * w), round(0.1 * h), round(0.1 * w))),
        ("2px 4px", lambda w, h: (2, 4, 2, 4)),
        ("1px 2px 3px 4px", lambda w, h: (1, 2, 3, 4)),
        # Clamped: at most 50% of the subject's size on each side (and at most 500 px)
        ("400px", lambda w, h: (round(0.5 * h), round(0.5 * w), round(0.5 * h), round(0.5 * w))),
        ("90%", lambda w, h: (round(0.5 * h), round(0.5 * w), round(0.5 * h), round(0.5 * w))),
    ],
)
def test_crop_adds_crop_margin_on_every_side_even_past_the_photos_edge(
    service: Service, crop_margin: str | None, sides_of: Callable[[int, int], tuple[int, int, int, int]]
) -> None:
    _, _, width, height = _subject(service)
    fields: dict[str, str | bytes] = {"image_file": EVENT_IMAGE, "size": "full", "crop": "true"}
    if crop_margin is not None:
        fields["crop_margin"] = crop_margin

    reply = service.invoke(removebg_event(fields))

    # THEN the subject with the whole margin around it, whatever the photo's edges
    image = _image(reply, "PNG", "image/png")
    top_m, right_m, bottom_m, left_m = sides_of(width, height)
    assert image.size == (left_m + width + right_m, top_m + height + bottom_m)
    # ... and the foreground box in the result's own pixels: where the subject is in this image
    assert _box(reply) == (left_m, top_m, width, height)


def _at_the_top_edge() -> bytes:
    """The example photo cut through its subject, so the subject touches the top edge."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(EVENT_IMAGE)).crop((0, 20, 96, 64)).save(buffer, "PNG")
    return buffer.getvalue()


def test_margin_past_the_photos_edge_is_empty_canvas_or_the_background_colour(service: Service) -> None:
    # GIVEN a subject that touches the photo's top edge, and a 10px margin
    photo = _at_the_top_edge()
    _, top, width, height = _box(service.invoke(removebg_event({"image_file": photo, "size": "full"})))
    assert top == 0
    fields: dict[str, str | bytes] = {"image_file": photo, "size": "full", "crop": "true", "crop_margin": "10px"}

    transparent = service.invoke(removebg_event({**fields, "format": "png"}))
    coloured = service.invoke(removebg_event({**fields, "format": "png", "bg_color": "00ff00"}))

    # THEN 10px on top too, where the photo has none: empty canvas, or the background colour
    image = _image(transparent, "PNG", "image/png")
    assert image.size == (10 + width + 10, 10 + height + 10) and _box(transparent)[:2] == (10, 10)
    strip = np.asarray(image)[:10]
    assert (strip[..., 3] == 0).all()
    filled = np.asarray(_image(coloured, "PNG", "image/png").convert("RGB"))[:10]
    assert (filled == (0, 255, 0)).all()


def test_foreground_is_in_the_scaled_results_pixels(service: Service) -> None:
    # GIVEN a 512x512 photo: size=preview makes it 500x500 (0.25 MP)
    full = service.invoke(removebg_event({"image_file": ASTRONAUT, "size": "full"}))
    preview = service.invoke(removebg_event({"image_file": ASTRONAUT, "size": "preview"}))

    # THEN the preview's box is the full box scaled as the image was, inside the preview
    image = _image(preview, "PNG", "image/png")
    scale = image.width / 512
    assert all(abs(got - round(want * scale)) <= 1 for got, want in zip(_box(preview), _box(full), strict=True))
    assert_box_inside(_box(preview), image.size)


def test_crop_margin_without_crop_has_no_effect(service: Service) -> None:
    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, "crop_margin": "10px"}))

    assert _image(reply, "PNG", "image/png").size == EVENT_SIZE


@pytest.mark.parametrize("value", ["auto", "person", "product"])
def test_type_is_accepted(service: Service, value: str) -> None:
    _image(service.invoke(removebg_event({"image_file": EVENT_IMAGE, "type": value})), "PNG", "image/png")


def test_image_file_b64_as_json_or_form_gives_the_same_cutout(service: Service) -> None:
    expected = service.invoke(removebg_event({"image_file": EVENT_IMAGE})).body
    encoded = base64.b64encode(EVENT_IMAGE).decode()
    as_json = http_event(json.dumps({"image_file_b64": encoded}), content_type="application/json", path=PATH)
    as_form = removebg_event({"image_file_b64": encoded})
    from urllib.parse import urlencode

    urlencoded = http_event(
        urlencode({"image_file_b64": encoded, "size": "preview"}),
        content_type="application/x-www-form-urlencoded",
        path=PATH,
    )

    for event in (as_json, as_form, urlencoded):
        reply = service.invoke(event)
        _image(reply, "PNG", "image/png")
        assert reply.body == expected


def test_accept_json_gives_result_b64_and_the_foreground(service: Service) -> None:
    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE}, accept="application/json"))

    assert reply.status == 200
    data = reply.json["data"]
    image = Image.open(io.BytesIO(base64.b64decode(data["result_b64"])))
    assert image.format == "PNG" and image.size == EVENT_SIZE
    assert (
        data["foreground_left"],
        data["foreground_top"],
        data["foreground_width"],
        data["foreground_height"],
    ) == _box(reply)


@pytest.mark.parametrize(
    ("make_event", "status", "code", "mentions"),
    [
        pytest.param(lambda: removebg_event({"size": "full"}), 400, "missing_source", "image_file", id="no-image"),
        pytest.param(
            lambda: removebg_event(
                {"image_file": EVENT_IMAGE, "image_file_b64": base64.b64encode(EVENT_IMAGE).decode()}
            ),
            400,
            "multiple_sources",
            "one image source",
            id="two-sources",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": b"not a photo"}), 400, "failed_to_read_image", None, id="not-an-image"
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "size": "huge"}),
            400,
            "invalid_size",
            "size:",
            id="bad-size",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "format": "gif"}),
            400,
            "invalid_format",
            "format:",
            id="bad-format",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "channels": "rgb"}),
            400,
            "invalid_channels",
            "channels:",
            id="bad-channels",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "bg_color": "81d4fa77"}),
            400,
            "invalid_bg_color",
            "bg_color:",
            id="semi-transparent-bg_color",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "bg_color": "notacolour"}),
            400,
            "invalid_bg_color",
            "bg_color:",
            id="bad-bg_color",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "crop": "true", "crop_margin": "1px 2px 3px"}),
            400,
            "invalid_crop_margin",
            "crop_margin:",
            id="three-margins",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "type": "spaceship"}),
            400,
            "invalid_parameter",
            "type:",
            id="bad-type",
        ),
        pytest.param(
            lambda: removebg_event({"image_file": EVENT_IMAGE, "roi": "0% 0% 50% 50%"}),
            400,
            "invalid_roi",
            "roi:",
            id="unsupported-roi",
        ),
        pytest.param(lambda: http_event(path=PATH), 400, "invalid_file_type", None, id="raw-body"),
        pytest.param(lambda: http_event(method="GET", path=PATH), 405, "method_not_allowed", "POST", id="GET"),
    ],
)
def test_errors_are_in_remove_bgs_shape(
    service: Service, make_event: Callable[[], dict[str, Any]], status: int, code: str, mentions: str | None
) -> None:
    reply = service.invoke(make_event())

    assert_removebg_error(reply, status, code, mentions=mentions)
    if status == 405:
        assert reply.headers["allow"] == "POST"


def test_a_photo_without_a_subject_is_unknown_foreground(service: Service) -> None:
    # GIVEN a plain grey picture: nothing in it for the model to find
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (128, 128, 128)).save(buffer, "PNG")

    reply = service.invoke(removebg_event({"image_file": buffer.getvalue()}))

    # THEN remove.bg's code for it, rather than an all-transparent "result"
    error = assert_removebg_error(reply, 400, "unknown_foreground")
    assert error["title"] == "Could not identify foreground in image"


def test_input_over_the_byte_limit_is_remove_bgs_file_too_large(configure: Callable[..., Service]) -> None:
    service = configure(MAX_INPUT_BYTES="1000")

    assert_removebg_error(service.invoke(removebg_event({"image_file": EVENT_IMAGE})), 400, "file_too_large")


@pytest.mark.parametrize(
    "fields",
    [
        # What remove.bg's clients send at their defaults (rembgpy sends all of these on every call)
        {"add_shadow": "false", "semitransparency": "true", "scale": "original", "position": "original"},
        {"roi": "0% 0% 100% 100%"},
        {"roi": "0 0 100% 100%"},
        {"roi": "0px 0px 100% 100%"},
        {"shadow_method": "legacy", "add_shadow": "0"},
        {"type_level": "2", "bg_image_url": "", "bg_color": "", "crop_margin": ""},  # "" is no value
    ],
)
def test_unsupported_options_at_their_no_op_values_are_accepted(service: Service, fields: dict[str, str]) -> None:
    expected = service.invoke(removebg_event({"image_file": EVENT_IMAGE})).body

    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, **fields}))

    # THEN the same result as without them
    assert _image(reply, "PNG", "image/png") and reply.body == expected


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("add_shadow", "true", "invalid_parameter"),
        ("semitransparency", "false", "invalid_semitransparency"),
        ("scale", "50%", "invalid_scale"),
        ("position", "center", "invalid_position"),
        ("roi", "10% 10% 90% 90%", "invalid_roi"),
        ("shadow_method", "fancy", "invalid_parameter"),
        ("bg_image_url", "https://example.com/beach.jpg", "invalid_bg_image_url"),
        ("colour", "red", "invalid_parameter"),  # not a remove.bg option at all
    ],
)
def test_unsupported_options_at_other_values_are_refused_naming_them(
    service: Service, name: str, value: str, code: str
) -> None:
    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, name: value}))

    assert_removebg_error(reply, 400, code, mentions=f"{name}:")


@pytest.mark.parametrize("fields", [{"format": "zip"}, {"channels": "alpha"}])
def test_bg_color_with_zip_or_alpha_is_refused_never_dropped(service: Service, fields: dict[str, str]) -> None:
    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, "bg_color": "81d4fa", **fields}))

    assert_removebg_error(reply, 400, "invalid_bg_color", mentions="bg_color:")


@pytest.mark.parametrize(
    ("fields", "accept", "x_type"),
    [
        ({}, None, "other"),  # nothing is detected: remove.bg's "other"
        ({"type": "person"}, None, "person"),  # the type the request declared
        ({"type": "transportation"}, None, "other"),  # not a class of the default type_level 1
        ({"type": "transportation", "type_level": "2"}, None, "transportation"),
        ({"type": "car", "type_level": "none"}, None, None),  # "X-Type Header won't be set"
        ({"format": "zip"}, None, "other"),
        ({}, "application/json", "other"),
    ],
)
def test_every_success_has_remove_bgs_headers(
    service: Service, fields: dict[str, str], accept: str | None, x_type: str | None
) -> None:
    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, **fields}, accept=accept))

    assert reply.status == 200, reply.body[:300]
    # Nothing is metered without API keys: nothing charged (an integer: clients parse it with int())
    assert reply.headers["x-credits-charged"] == "0"
    assert reply.headers.get("x-type") == x_type
    assert int(reply.headers["x-width"]) > 0 and int(reply.headers["x-height"]) > 0
    assert_box_inside(_box(reply), (int(reply.headers["x-width"]), int(reply.headers["x-height"])))
    # No usage plan here: no rate-limit figures to tell
    assert not any(name.startswith("x-ratelimit") for name in reply.headers)


@pytest.mark.parametrize("accept", ["application/json", None])
def test_a_result_too_large_for_a_response_is_remove_bgs_error_naming_the_way_round(
    service: Service, monkeypatch: pytest.MonkeyPatch, accept: str | None
) -> None:
    # GIVEN a response limit the result does not fit (the real one needs a ~5 MB result)
    monkeypatch.setattr(service.api, "LAMBDA_RESPONSE_LIMIT", service.api.ENVELOPE_RESERVE + 100)

    reply = service.invoke(removebg_event({"image_file": EVENT_IMAGE, "size": "full"}, accept=accept))

    # THEN never image bytes (nor a redirect to them) where JSON was asked for: remove.bg's error,
    # naming the smaller sizes and the upload flow
    error = assert_removebg_error(reply, 400, "result_too_large")
    assert "size=preview" in error["detail"] and "POST /uploads" in error["detail"]


# --------------------------------------------------------------------------------------------
# image_url: only from allow-listed hosts
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    with serving(ImageHost) as host:
        yield host


@pytest.fixture
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may only use 127.0.0.1, which the real check refuses: allow loopback, nothing else.
    monkeypatch.setattr(image_url, "address_allowed", lambda address: address.is_loopback)


def _from_url(url: str) -> dict[str, Any]:
    return removebg_event({"image_url": url, "size": "full"})


def test_image_url_from_an_allowed_host(
    configure: Callable[..., Service], image_host: str, loopback_allowed: None
) -> None:
    service = configure(IMAGE_URL_HOSTS=f"images.example.com, {image_host}")
    expected = service.invoke(removebg_event({"image_file": EVENT_IMAGE, "size": "full"})).body

    for path in ("/cat.jpg", "/moved"):  # a redirect within the host is followed
        reply = service.invoke(_from_url(f"http://{image_host}{path}"))
        _image(reply, "PNG", "image/png")
        assert reply.body == expected


def test_image_url_as_the_ruby_client_sends_it(
    configure: Callable[..., Service], image_host: str, loopback_allowed: None
) -> None:
    # remove.bg's Ruby client posts image_url URL-encoded (its recorded request in remove-bg/ruby)
    from urllib.parse import urlencode

    service = configure(IMAGE_URL_HOSTS=image_host)
    event = http_event(
        urlencode({"image_url": f"http://{image_host}/cat.jpg", "size": "auto"}),
        content_type="application/x-www-form-urlencoded",
        path=PATH,
    )

    _image(service.invoke(event), "PNG", "image/png")


@pytest.mark.parametrize(
    ("hosts", "path", "status", "code", "mentions"),
    [
        # remove.bg's status and code for every image_url that is not fetched (403 is for API keys only)
        ("", "/cat.jpg", 400, "failed_image_download", "IMAGE_URL_HOSTS"),  # off unless configured
        ("images.example.com", "/cat.jpg", 400, "failed_image_download", "allow-list"),
        ("127.0.0.1", "/cat.jpg", 400, "failed_image_download", "allow-list"),  # a bare host: default port only
        ("{host}", "/moved-away", 400, "failed_image_download", "images.example.com"),
        ("{host}", "/moved-to-other-port", 400, "failed_image_download", "allow-list"),
        ("{host}", "/missing.jpg", 400, "failed_image_download", "HTTP status 404"),
        ("{host}", "/loop", 400, "failed_image_download", "redirects"),
    ],
)
def test_image_url_refusals(
    configure: Callable[..., Service],
    image_host: str,
    loopback_allowed: None,
    hosts: str,
    path: str,
    status: int,
    code: str,
    mentions: str,
) -> None:
    service = configure(IMAGE_URL_HOSTS=hosts.format(host=image_host))

    reply = service.invoke(_from_url(f"http://{image_host}{path}"))

    assert_removebg_error(reply, status, code, mentions=mentions)


def test_image_url_to_a_loopback_address_is_refused_by_the_real_check(
    configure: Callable[..., Service], image_host: str
) -> None:
    # GIVEN the host allow-listed, but no test override: the address check is the real one
    assert image_url.address_allowed is image_url.is_public
    service = configure(IMAGE_URL_HOSTS=image_host)

    reply = service.invoke(_from_url(f"http://{image_host}/cat.jpg"))

    assert_removebg_error(reply, 400, "failed_image_download", mentions="address")


def test_image_url_over_the_byte_limit_is_not_read(
    configure: Callable[..., Service], image_host: str, loopback_allowed: None
) -> None:
    service = configure(IMAGE_URL_HOSTS=image_host, MAX_INPUT_BYTES="1000")

    assert_removebg_error(service.invoke(_from_url(f"http://{image_host}/cat.jpg")), 400, "file_too_large")
