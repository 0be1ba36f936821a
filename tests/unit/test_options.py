"""parse_options: output options from query-string / form / JSON values, and Margin.pixels."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from handler.core.errors import InvalidParameter
from handler.core.image.formats import OutputKind
from handler.core.image.options import MAX_SIZE_LIMIT, OPTION_NAMES, Margin, RenderOptions, parse_options


def test_no_options_gives_the_defaults() -> None:
    assert parse_options({}) == RenderOptions(
        format="png",
        bg_color=None,
        crop=False,
        margin=Margin(0),
        max_size=None,
        refine=None,
        keep_metadata=False,  # GPS never leaks unless asked
        resolution=None,
    )


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"format": "png"}, "format", "png"),
        ({"format": "PNG"}, "format", "png"),
        ({"format": " webp "}, "format", "webp"),
        ({"format": "jpeg"}, "format", "jpeg"),
        ({"format": "jpg"}, "format", "jpeg"),
        ({"bg_color": "#ff8000"}, "bg_color", (255, 128, 0)),
        ({"bg_color": "FF8000"}, "bg_color", (255, 128, 0)),
        ({"bg_color": "#000000"}, "bg_color", (0, 0, 0)),
        ({"bg_color": "#fff"}, "bg_color", (255, 255, 255)),
        ({"bg_color": "0f0"}, "bg_color", (0, 255, 0)),
        ({"bg_color": "ff8000ff"}, "bg_color", (255, 128, 0)),
        ({"bg_color": "red"}, "bg_color", (255, 0, 0)),
        ({"bg_color": "White"}, "bg_color", (255, 255, 255)),
        ({"crop": "true"}, "crop", True),
        ({"crop": "1"}, "crop", True),
        ({"crop": "Yes"}, "crop", True),
        ({"crop": "on"}, "crop", True),
        ({"crop": True}, "crop", True),
        ({"crop": "false"}, "crop", False),
        ({"crop": "0"}, "crop", False),
        ({"crop": "no"}, "crop", False),
        ({"crop": False}, "crop", False),
        ({"crop": "true", "margin": "0"}, "margin", Margin(0)),
        ({"crop": "true", "margin": "20"}, "margin", Margin(20)),
        ({"crop": "true", "margin": "20px"}, "margin", Margin(20)),
        ({"crop": "true", "margin": "20PX"}, "margin", Margin(20)),
        ({"crop": "true", "margin": 12}, "margin", Margin(12)),
        ({"crop": "true", "margin": "2.5%"}, "margin", Margin(2.5, percent=True)),
        ({"crop": "true", "margin": "100%"}, "margin", Margin(100, percent=True)),
        ({"max_size": "1"}, "max_size", 1),
        ({"max_size": "1024"}, "max_size", 1024),
        ({"max_size": 512}, "max_size", 512),
        ({"max_size": str(MAX_SIZE_LIMIT)}, "max_size", MAX_SIZE_LIMIT),
        ({"refine": "true"}, "refine", True),
        ({"refine": "false"}, "refine", False),
        ({"refine": False}, "refine", False),
        ({"keep_metadata": "true"}, "keep_metadata", True),
        ({"keep_metadata": "0"}, "keep_metadata", False),
        ({"keep_metadata": True}, "keep_metadata", True),
        ({"resolution": "512"}, "resolution", 512),
        ({"resolution": " 768 "}, "resolution", 768),
        ({"resolution": 1024}, "resolution", 1024),
        ({"outputs": "cutout"}, "outputs", ("cutout",)),
        ({"outputs": "cutout,mask"}, "outputs", ("cutout", "mask")),
        ({"outputs": " Mask , CUTOUT "}, "outputs", ("cutout", "mask")),
    ],
)
def test_valid_values(raw: dict[str, Any], field: str, expected: Any) -> None:
    options = parse_options(raw)

    assert getattr(options, field) == expected
    # and nothing else moved from its default
    defaults = RenderOptions()
    for other in (option.name for option in dataclasses.fields(RenderOptions)):
        if other != field and not (field == "margin" and other == "crop"):  # a margin needs crop
            assert getattr(options, other) == getattr(defaults, other)


def test_all_options_together() -> None:
    options = parse_options(
        {"format": "jpeg", "bg_color": "#ffffff", "crop": "true", "margin": "5%", "max_size": "800", "refine": "false"}
    )

    assert options == RenderOptions(
        format="jpeg", bg_color=(255, 255, 255), crop=True, margin=Margin(5, percent=True), max_size=800, refine=False
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("format", "gif"),
        ("format", ""),
        ("format", 3),
        ("bg_color", "reddish"),
        ("bg_color", "#ff000080"),
        ("bg_color", "rgb(1,2)"),
        ("bg_color", "#12345g"),
        ("bg_color", "#1234567"),
        ("crop", "maybe"),
        ("crop", ""),
        ("crop", 2),
        ("margin", "-5"),
        ("margin", "5em"),
        ("margin", "%"),
        ("margin", "101%"),
        ("margin", "5 %"),
        ("max_size", "0"),
        ("max_size", "-1"),
        ("max_size", "1.5"),
        ("max_size", "big"),
        ("max_size", str(MAX_SIZE_LIMIT + 1)),
        ("max_size", True),
        ("refine", "2"),
        ("refine", "enabled"),
        ("keep_metadata", "gps"),
        ("resolution", "640"),
        ("resolution", "512px"),
        ("resolution", "-512"),
        ("resolution", True),
        ("format", ["png", "webp"]),
        ("crop", {"enabled": True}),
        ("margin", None),
        # Found by the property tests (each was a 500): a superscript digit, which isdigit() accepts
        # and int() refuses; more digits than int() converts; a margin that parses as infinity.
        ("max_size", "²"),
        ("max_size", "1" * 5000),
        # The same two for resolution (each was a 500 until both went through one number parser),
        # and digits of another script, which int() reads as 1024.
        ("resolution", "²"),
        ("resolution", "1" * 5000),
        ("resolution", "١٠٢٤"),
        ("margin", "1" * 400),
        # The cutout is what /remove answers: a list without it, or with one twice, is a mistake.
        ("outputs", "mask"),
        ("outputs", ""),
        ("outputs", "cutout,cutout"),
        ("outputs", "cutout,mask,alpha"),
        ("outputs", "cutout;mask"),
        ("outputs", ["cutout", "mask"]),
    ],
)
def test_invalid_values_name_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_options({name: value})

    assert caught.value.parameter == name
    assert caught.value.message.startswith(f"{name}:")
    assert (caught.value.code, caught.value.status) == ("invalid_parameter", 400)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"size": "full"}, "size"),
        ({"format": "png", "Format": "png"}, "Format"),
        ({"zeta": "1", "alpha": "1"}, "alpha"),
        ({"image_url": "https://example.com/cat.jpg"}, "image_url"),
    ],
)
def test_unknown_parameter_is_named(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_options(raw)

    assert caught.value.parameter == named
    # the message lists what is accepted
    for name in OPTION_NAMES:
        assert name in caught.value.message


@pytest.mark.parametrize(
    ("margin", "width", "height", "pixels"),
    [
        (Margin(0), 100, 50, 0),
        (Margin(20), 100, 50, 20),
        (Margin(20), 1, 1, 20),
        (Margin(2.4), 100, 50, 2),
        (Margin(2.6), 100, 50, 3),
        (Margin(10, percent=True), 100, 50, 10),
        (Margin(10, percent=True), 50, 100, 10),  # of the longer side, whichever it is
        (Margin(5, percent=True), 44, 18, 2),
        (Margin(2.5, percent=True), 1000, 10, 25),
        (Margin(100, percent=True), 300, 200, 300),
        (Margin(0, percent=True), 300, 200, 0),
    ],
)
def test_margin_pixels(margin: Margin, width: int, height: int, pixels: int) -> None:
    assert margin.pixels(width, height) == pixels


@pytest.mark.parametrize(
    ("options", "kind", "refused"),
    [
        (RenderOptions(format="jpeg"), "cutout", True),
        (RenderOptions(format="jpeg", bg_color=(0, 0, 0)), "cutout", False),
        (RenderOptions(format="jpeg"), "mask", False),
        (RenderOptions(format="png"), "cutout", False),
        (RenderOptions(format="webp"), "cutout", False),
    ],
)
def test_jpeg_cutout_needs_a_background_colour(options: RenderOptions, kind: OutputKind, refused: bool) -> None:
    if refused:
        with pytest.raises(InvalidParameter) as caught:
            options.check_for(kind)
        assert caught.value.parameter == "bg_color"
    else:
        options.check_for(kind)


@pytest.mark.parametrize("raw", [{"margin": "10"}, {"margin": "5%", "crop": "false"}])
def test_a_margin_without_crop_is_refused(raw: dict[str, Any]) -> None:
    # A margin does nothing without crop: the caller expected something that would not happen.
    with pytest.raises(InvalidParameter) as caught:
        parse_options(raw)

    assert caught.value.parameter == "margin"
    assert "crop" in caught.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [("bg_color", "#ffffff"), ("refine", "false"), ("keep_metadata", "true"), ("outputs", "cutout,mask")],
)
def test_cutout_only_options_are_refused_for_a_mask(name: str, value: str) -> None:
    assert getattr(parse_options({name: value}, "cutout"), name) is not None

    with pytest.raises(InvalidParameter) as caught:
        parse_options({name: value}, "mask")

    assert caught.value.parameter == name
    assert "mask" in caught.value.message
