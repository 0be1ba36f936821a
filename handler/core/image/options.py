"""Output options, parsed and validated from the strings of a query string, JSON body or CLI."""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import ImageColor

from handler.core.env import switch_word
from handler.core.errors import InvalidParameter
from handler.core.image.formats import FORMATS, OUTPUT_KINDS, OutputFormat, OutputKind, format_named

# The input sizes a request may ask of a dynamic-input export (`resolution`): each step down is
# faster and coarser (benchmarks/README.md, "Resolution").
RESOLUTIONS = (512, 768, 1024)
# Longest side a caller may ask for; beyond it max_size would only upscale, which we never do.
MAX_SIZE_LIMIT = 20_000
# Digits a whole-number option may have: more than any valid value, far below int()'s limit.
_MAX_DIGITS = 9
# Hex colours as CSS writes them (3, 4, 6 or 8 digits), with or without "#": remove.bg's clients send
# "81d4fa", CSS users "#fff". Anything else is tried as a CSS colour name ("green").
_HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_COLOUR_COMPONENTS = ("red", "green", "blue", "alpha")
_MARGIN = re.compile(r"^(\d+(?:\.\d+)?)(px|%)?$")
# Options for cutouts (/remove) only: a mask is the alpha alone, without colour or metadata, and
# `outputs` adds the mask to a cutout's answer (POST /mask already is the mask alone).
CUTOUT_ONLY = frozenset({"bg_color", "refine", "keep_metadata", "outputs"})
# Cutouts get their edge colour refined unless the caller says refine=false: benchmarks/refine.py
# measured the cost on a 12 MP photo within the budget (a quarter of the pipeline's time, 8 bytes
# per pixel of peak memory).
REFINE_BY_DEFAULT = True


@dataclass(frozen=True)
class Margin:
    value: float
    percent: bool = False
    # Ours stops at the photo's edge (a crop never adds canvas); a margin that goes on past it
    # (remove.bg's crop_margin) adds empty canvas there: transparent, or the background colour.
    stops_at_edge: ClassVar[bool] = True

    def pixels(self, width: int, height: int) -> int:
        """The margin in pixels; a percentage is of the subject box's longer side."""
        return round(self.value * max(width, height) / 100.0) if self.percent else round(self.value)

    def sides(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(top, right, bottom, left) in pixels around a `width` x `height` subject: here all equal."""
        pixels = self.pixels(width, height)
        return pixels, pixels, pixels, pixels

    def region(self, box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The crop (left, top, right, bottom) around the subject `box` (left, top, width, height)
        of a picture of `size`; beyond the picture only where the margin does not stop at its edge."""
        left, top, width, height = box
        top_margin, right_margin, bottom_margin, left_margin = self.sides(width, height)
        region = (left - left_margin, top - top_margin, left + width + right_margin, top + height + bottom_margin)
        if not self.stops_at_edge:
            return region
        return max(0, region[0]), max(0, region[1]), min(size[0], region[2]), min(size[1], region[3])


@dataclass(frozen=True)
class RenderOptions:
    format: OutputFormat = "png"
    bg_color: tuple[int, int, int] | None = None
    crop: bool = False
    margin: Margin = Margin(0)
    max_size: int | None = None
    # Most pixels an output may have (remove.bg's `size`); scaled down, aspect kept, never up.
    max_pixels: int | None = None
    # None: the service's default (REFINE_BY_DEFAULT); False turns refinement off.
    refine: bool | None = None
    # Copy the input's EXIF (Orientation reset to 1) and XMP to cutouts. Off by default: a cutout
    # published on a shop page must not say where the photo was taken (GPS).
    keep_metadata: bool = False
    # The model's input size for this request; None: the deployment's (MODEL_INPUT_SIZE or the graph's).
    resolution: int | None = None
    # Every output one request answers with, from one inference; None: the route's own output only.
    outputs: tuple[OutputKind, ...] | None = None

    @property
    def refines(self) -> bool:
        """Whether a cutout's semi-transparent pixels get their estimated foreground colour."""
        return REFINE_BY_DEFAULT if self.refine is None else self.refine

    def check_for(self, kind: OutputKind) -> None:
        if kind == "cutout" and not FORMATS[self.format].transparent and self.bg_color is None:
            raise InvalidParameter(
                "bg_color", "JPEG has no transparency: give a background colour (#rrggbb) or use png/webp"
            )


def parse_options(raw: Mapping[str, Any], kind: OutputKind | None = None) -> RenderOptions:
    """Build options from string-ish values; any unknown name or bad value names the parameter.

    With `kind` ("cutout" or "mask"), options that have no effect on that output are refused too,
    as is a margin without crop: a caller who sent one expected it to do something.
    """
    unknown = sorted(set(raw) - OPTION_NAMES)
    if unknown:
        raise InvalidParameter(unknown[0], f"unknown parameter; expected one of {', '.join(sorted(OPTION_NAMES))}")
    if kind == "mask":
        for name in sorted(set(raw) & CUTOUT_ONLY):
            raise InvalidParameter(name, "applies to cutouts (/remove) only, not to masks")
    values: dict[str, Any] = {name: _PARSERS[name](name, value) for name, value in raw.items()}
    if "margin" in raw and not values.get("crop", False):
        raise InvalidParameter("margin", "applies only with crop=true")
    return RenderOptions(**values)


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    raise InvalidParameter(name, f"expected a single value, got {type(value).__name__}")


def _format(name: str, value: Any) -> OutputFormat:
    text = _text(name, value)
    fmt = format_named(text) if not text.startswith(".") else None
    if fmt is None:
        raise InvalidParameter(name, f"expected png, webp or jpeg, got {text.lower()!r}")
    return fmt


def parse_colour(name: str, value: Any) -> tuple[int, int, int]:
    """An opaque RGB colour from hex (with or without "#") or a CSS colour name."""
    text = _text(name, value).strip()
    hex_match = _HEX_COLOUR.match(text)
    try:
        rgba = ImageColor.getrgb(f"#{hex_match.group(1)}" if hex_match else text)
    except ValueError as error:
        raise InvalidParameter(
            name, f"expected a hex colour (81d4fa, #fff) or a colour name, got {reprlib.repr(value)}"
        ) from error
    # Pillow's CSS functions take any integer (rgb(99999999999999999999,0,0)) and hsl()/hsv() with
    # out-of-range percentages compute negative ones; no image can be filled with those.
    for component, amount in zip(_COLOUR_COMPONENTS, rgba, strict=False):
        if not 0 <= amount <= 255:  # reprlib shortens a number of thousands of digits
            raise InvalidParameter(name, f"the {component} component is {reprlib.repr(amount)}, outside 0-255")
    if len(rgba) == 4 and rgba[3] != 255:
        raise InvalidParameter(name, "a semi-transparent background colour is not supported; give an opaque one")
    return rgba[0], rgba[1], rgba[2]


def _switch(name: str, value: Any) -> bool:
    switched = switch_word(_text(name, value))
    if switched is None:
        raise InvalidParameter(name, f"expected true or false, got {value!r}")
    return switched


def _margin(name: str, value: Any) -> Margin:
    match = _MARGIN.match(_text(name, value).lower())
    if match is None:
        raise InvalidParameter(name, f"expected pixels (20 or 20px) or a percentage (5%), got {value!r}")
    amount, unit = float(match.group(1)), match.group(2)
    if not math.isfinite(amount):  # hundreds of digits parse as infinity
        raise InvalidParameter(name, f"expected a finite number, got {value!r}")
    if unit == "%" and amount > 100:
        raise InvalidParameter(name, f"a percentage margin must be at most 100%, got {value!r}")
    return Margin(amount, percent=unit == "%")


def _whole_number(name: str, value: Any) -> int | None:
    """The value of plain ASCII digits, else None.

    isdigit() alone accepts superscripts such as "²", which int() refuses, and int() reads other
    scripts' digits; the length bound keeps int() below its 4300-digit limit (found by the property
    tests, each a 500).
    """
    text = _text(name, value)
    if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
        return int(text)
    return None


def _max_size(name: str, value: Any) -> int:
    number = _whole_number(name, value)
    if number is None or not 0 < number <= MAX_SIZE_LIMIT:
        raise InvalidParameter(name, f"expected a whole number of pixels from 1 to {MAX_SIZE_LIMIT}, got {value!r}")
    return number


def _resolution(name: str, value: Any) -> int:
    number = _whole_number(name, value)
    if number is None or number not in RESOLUTIONS:
        raise InvalidParameter(name, f"expected one of {', '.join(map(str, RESOLUTIONS))}, got {value!r}")
    return number


def _outputs(name: str, value: Any) -> tuple[OutputKind, ...]:
    """`cutout,mask`: the cutout always (it is what /remove answers), and the mask from the same run."""
    words = [word.strip().lower() for word in _text(name, value).split(",")]
    kinds = tuple(kind for kind in OUTPUT_KINDS if kind in words)
    if len(kinds) != len(words) or "cutout" not in kinds:
        raise InvalidParameter(name, f"expected cutout or cutout,mask, got {value!r}")
    return kinds


# Every option a request may set, by its name (RenderOptions' field), and the parser of its value.
_PARSERS: dict[str, Callable[[str, Any], object]] = {
    "format": _format,
    "bg_color": parse_colour,
    "crop": _switch,
    "margin": _margin,
    "max_size": _max_size,
    "refine": _switch,
    "keep_metadata": _switch,
    "resolution": _resolution,
    "outputs": _outputs,
}
OPTION_NAMES = frozenset(_PARSERS)
