"""remove.bg's vocabulary mapped onto our options (handler/aws/removebg.py), without the model."""

from __future__ import annotations

import pytest

from handler.aws.removebg import SidedMargin, _crop_margin, error_document, parse
from handler.core.errors import BackgroundRemovalError, InvalidParameter


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
        ({"format": "zip", "bg_color": "red"}, "cutout", "zip", "png", None, 250_000),
        ({"channels": "alpha", "bg_color": "red"}, "mask", "png", "png", None, 250_000),
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
    for name in ("roi", "scale", "position", "bg_image_url", "add_shadow", "semitransparency"):
        with pytest.raises(InvalidParameter) as caught:
            parse({name: "x"})
        assert caught.value.parameter == name


def test_error_document_is_remove_bgs_shape() -> None:
    error = InvalidParameter("size", "expected one of preview, full")

    assert error_document(error) == {
        "errors": [
            {"title": "Invalid parameter", "code": "invalid_parameter", "detail": "size: expected one of preview, full"}
        ]
    }
    assert error_document(BackgroundRemovalError("boom"))["errors"][0]["code"] == "internal_error"
