"""remove.bg's vocabulary mapped onto our options (handler/aws/removebg.py), without the model."""

from __future__ import annotations

import pytest

from handler.aws.removebg import SidedMargin, _crop_margin, parse
from handler.aws.removebg_errors import (
    MultipleSources,
    ResultTooLarge,
    UnknownForeground,
    error_document,
    removebg_error,
)
from handler.core.errors import (
    BackgroundRemovalError,
    ImageTooLarge,
    InvalidImage,
    InvalidParameter,
    MethodNotAllowed,
    MissingImage,
    OutputTooLarge,
    RequestTooLarge,
    RouteNotFound,
    SourceForbidden,
    StorageUnavailable,
    TooManyPixels,
    UnsupportedMediaType,
)
from handler.core.image.options import Margin


@pytest.mark.parametrize(
    ("crop_margin", "subject", "sides"),
    [
        ("30px", (400, 200), (30, 30, 30, 30)),
        ("10%", (400, 200), (20, 40, 20, 40)),  # top/bottom of the height, left/right of the width
        ("10px 20px", (400, 200), (10, 20, 10, 20)),
        ("1px 2px 3px 4px", (400, 200), (1, 2, 3, 4)),
        # Clamped to 50% of the subject on each side ...
        ("300px", (400, 200), (100, 200, 100, 200)),
        ("80%", (400, 200), (100, 200, 100, 200)),
        # ... and to 500 pixels
        ("900px", (4000, 3000), (500, 500, 500, 500)),
        ("40%", (4000, 3000), (500, 500, 500, 500)),
    ],
)
def test_crop_margin_sides_and_clamping(crop_margin: str, subject: tuple[int, int], sides: tuple[int, ...]) -> None:
    margin = _crop_margin(crop_margin)

    assert isinstance(margin, SidedMargin)
    assert margin.sides(*subject) == sides


@pytest.mark.parametrize(
    ("fields", "kind", "output", "render_format", "bg_color", "max_pixels"),
    [
        ({}, "cutout", "png", "png", None, 250_000),
        ({"size": "HD"}, "cutout", "png", "png", None, 4_000_000),
        ({"bg_color": "red"}, "cutout", "jpg", "jpeg", (255, 0, 0), 250_000),
        ({"format": "jpg"}, "cutout", "jpg", "jpeg", (255, 255, 255), 250_000),
        ({"format": "zip"}, "cutout", "zip", "png", None, 250_000),
        ({"channels": "alpha", "bg_color": ""}, "mask", "png", "png", None, 250_000),
    ],
)
def test_parse(
    fields: dict[str, str], kind: str, output: str, render_format: str, bg_color: object, max_pixels: int
) -> None:
    request = parse(fields)

    assert (request.kind, request.output) == (kind, output)
    assert (request.options.format, request.options.bg_color, request.options.max_pixels) == (
        render_format,
        bg_color,
        max_pixels,
    )


def test_unsupported_remove_bg_options_are_named() -> None:
    for name in ("roi", "scale", "position", "bg_image_url", "add_shadow", "semitransparency", "shadow_method"):
        with pytest.raises(InvalidParameter) as caught:
            parse({name: "x"})
        assert caught.value.parameter == name


@pytest.mark.parametrize(
    ("fields", "x_type"),
    [
        ({}, "other"),
        ({"type": "auto"}, "other"),
        ({"type": "product"}, "product"),
        ({"type": "graphic", "type_level": "2"}, "graphics"),  # the request's spelling, X-Type's class
        ({"type": "graphic"}, "other"),
        ({"type": "person", "type_level": "none"}, None),
    ],
)
def test_x_type_is_the_declared_type_where_the_level_has_it(fields: dict[str, str], x_type: str | None) -> None:
    assert parse(fields).x_type == x_type


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidParameter("size", "expected one of preview, full"), 400, "invalid_size"),
        (InvalidParameter("type", "expected one of auto, person"), 400, "invalid_parameter"),
        (InvalidParameter("image_url", "not a valid URL"), 400, "failed_image_download"),
        (MultipleSources(["image_file", "image_url"]), 400, "multiple_sources"),
        (MissingImage("no image"), 400, "missing_source"),
        (InvalidImage("not an image"), 400, "failed_to_read_image"),
        (UnsupportedMediaType("gif"), 400, "invalid_file_type"),
        (ImageTooLarge("big"), 400, "file_too_large"),
        (TooManyPixels("many"), 400, "resolution_too_high"),
        (RequestTooLarge("over 10 MB"), 400, "file_too_large"),
        (SourceForbidden("image_url: host"), 400, "failed_image_download"),
        (OutputTooLarge("no bucket"), 400, "output_too_large"),
        (ResultTooLarge("too big"), 400, "result_too_large"),
        (UnknownForeground(), 400, "unknown_foreground"),
        (RouteNotFound("no"), 404, "not_found"),
        (MethodNotAllowed("no", ("POST",)), 405, "method_not_allowed"),
        (StorageUnavailable("S3"), 503, "storage_unavailable"),
        (BackgroundRemovalError("boom"), 500, "internal_error"),
    ],
)
def test_every_input_problem_is_remove_bgs_400_with_its_code(
    error: BackgroundRemovalError, status: int, code: str
) -> None:
    mapped = removebg_error(error)

    assert (mapped.status, mapped.code) == (status, code)
    (entry,) = error_document(error)["errors"]
    assert entry == {"title": mapped.title, "code": code, "detail": error.message} and mapped.title


def test_a_sided_margin_goes_past_the_pictures_edge_where_ours_stops() -> None:
    subject, picture = (0, 10, 40, 20), (100, 50)

    assert _crop_margin("10px").region(subject, picture) == (-10, 0, 50, 40)
    assert Margin(10).region(subject, picture) == (0, 0, 50, 40)
