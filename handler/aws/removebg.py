"""remove.bg's API vocabulary, mapped onto ours: `POST /v1.0/removebg` for existing remove.bg clients.

Pure: no AWS, no model. It turns remove.bg's request fields into our `RenderOptions` (and the
output shape remove.bg clients expect). The pipeline itself is ours (handler.core.render), unchanged. docs/removebg.md has
the whole table, field by field.

What it follows: remove.bg's API reference (https://www.remove.bg/api) and its OpenAPI description
(https://www.remove.bg/api/swagger.yaml, also carried by APIs-guru's openapi-directory under
APIs/remove.bg), the answers recorded by remove.bg's own Ruby client (the VCR cassettes in
https://github.com/remove-bg/ruby/tree/main/spec/fixtures), and what its most used client
libraries read (npm `remove.bg`, PyPI `remove-bg-api`, ...: scripts/removebg_clients.py).

- Image sources, exactly one: `image_file` (multipart), `image_file_b64`, `image_url`; none is
  `missing_source`, several `multiple_sources` (remove.bg's codes). An empty value is no value
  (remove.bg's own JSON examples send "" for the fields they do not use).
- `size`: "preview" (also "small", "regular") = 0.25 megapixels; "medium" = up to 1.5 MP; "hd" =
  up to 4 MP; "full" (also "4k"), "50MP" and "auto" = the original resolution, within our own
  input limits. Default "preview", as remove.bg's.
- `format`: "auto" = PNG if transparent regions exist, otherwise JPG (the default); "png"; "jpg";
  "webp"; "zip" = `color.jpg` and `alpha.png`, the member names remove.bg's Ruby client reads.
- `channels`: "rgba" (default, the finalized image) or "alpha" (the alpha mask).
- `bg_color`: hex with or without "#" (3 or 6 digits; 4 or 8 with an alpha that must be opaque
  here) or a colour name. With `channels=alpha` or `format=zip` the reference does not say what
  it does (a mask has no colours; the ZIP's colour image is the subject's own colours beside its
  matte), so it is refused there (`invalid_bg_color`) rather than silently dropped.
- `crop` and `crop_margin`: the margin is "30px" or "10%" of the subject's size (top/bottom of its
  height, left/right of its width), one value, two (top/bottom, left/right) or four (top, right,
  bottom, left); "only has an effect when crop=true"; "The maximum margin that can be added on
  each side is 50% of the subject dimensions or 500 pixels" (read here as whichever is smaller).
  It is a margin *added* around the subject: where it reaches past the photo's edge the result
  gets empty canvas there (transparent, or `bg_color`), so every side has the margin asked for.
- `type` and `type_level`: the model is class-agnostic, so `type` changes nothing in the result.
  remove.bg's `X-Type` header is the "detected foreground type"; nothing is detected here, so it
  is the type the request declared when it is one of the `type_level`'s classes, otherwise
  remove.bg's "other"; `type_level=none` sends no `X-Type`, as remove.bg documents.
- Options this service does not implement are accepted at the value that changes nothing and
  refused with 400 naming them otherwise (`NO_OP_VALUES`): a result the client did not ask for
  is worse than an error.

Its errors, in remove.bg's statuses, codes and shape: handler.aws.removebg_errors.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from handler.core.errors import (
    InvalidParameter,
)
from handler.core.image.encode import encode
from handler.core.image.formats import OutputKind
from handler.core.image.options import Margin, RenderOptions, parse_colour

PATH = "/v1.0/removebg"
ACCOUNT_PATH = "/v1.0/account"
SOURCE_FIELDS = ("image_file", "image_file_b64", "image_url")

_PREVIEW = 250_000
SIZES: dict[str, int | None] = {
    "preview": _PREVIEW,
    "small": _PREVIEW,
    "regular": _PREVIEW,
    "medium": 1_500_000,
    "hd": 4_000_000,
    "full": None,
    "4k": None,
    "50mp": None,
    "auto": None,
}
FORMATS = ("auto", "png", "jpg", "webp", "zip")
CHANNELS = ("rgba", "alpha")
# remove.bg's foreground types (request) and the classes X-Type names at each `type_level`.
TYPES = ("auto", "person", "product", "car", "animal", "graphic", "graphics", "transportation")
TYPE_LEVELS = ("none", "1", "2", "latest")
_LEVEL_1 = ("person", "product", "animal", "car", "other")
_LEVEL_2 = (*_LEVEL_1, "car_interior", "car_part", "transportation", "graphics")
TYPE_CLASSES = {"1": _LEVEL_1, "2": _LEVEL_2, "latest": _LEVEL_2}
OPTION_NAMES = frozenset({"size", "format", "channels", "bg_color", "crop", "crop_margin", "type", "type_level"})
# Options this service does not implement, at the values that leave the result as it is (their
# documented defaults); any other value is refused with 400 naming the option.
_WHOLE_ROI = re.compile(r"^0(?:px|%)?\s+0(?:px|%)?\s+100%\s+100%$")
NO_OP_VALUES: dict[str, str] = {
    "add_shadow": "false",
    "semitransparency": "true",
    "scale": "original",
    "position": "original",
    "roi": "0% 0% 100% 100%",
    "shadow_method": "latest or legacy (they only matter with add_shadow=true)",
    "bg_image_url": "empty",
    "bg_image_file": "empty",
}
# remove.bg's limits on crop_margin, per side.
MAX_MARGIN_FRACTION = 0.5
MAX_MARGIN_PIXELS = 500
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_MARGIN_VALUE = re.compile(r"^(\d+(?:\.\d+)?)(px|%)?$")

OutputFormat = Literal["png", "jpg", "webp", "zip"]
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class SidedMargin(Margin):
    """remove.bg's crop_margin: up to four values, each in pixels or % of the subject, clamped,
    and added around the subject even past the photo's edge."""

    sides_spec: tuple[tuple[float, bool], ...] = ((0.0, False),) * 4
    stops_at_edge = False

    def sides(self, width: int, height: int) -> tuple[int, int, int, int]:
        top, right, bottom, left = self.sides_spec
        return (
            _clamped(top, height),
            _clamped(right, width),
            _clamped(bottom, height),
            _clamped(left, width),
        )


def _clamped(side: tuple[float, bool], extent: int) -> int:
    """One side's margin for a subject `extent` pixels across in that direction."""
    value, percent = side
    pixels = value * extent / 100.0 if percent else value
    return round(min(pixels, MAX_MARGIN_FRACTION * extent, MAX_MARGIN_PIXELS))


@dataclass(frozen=True)
class RemoveBgRequest:
    """What a remove.bg request asks of our pipeline."""

    kind: OutputKind  # "cutout" (channels=rgba) or "mask" (channels=alpha)
    output: OutputFormat  # "auto" resolved
    options: RenderOptions
    # remove.bg's X-Type for this request, or None when type_level=none asks for no header.
    x_type: str | None = "other"


_RENDER_FORMATS = {"png": "png", "jpg": "jpeg", "webp": "webp", "zip": "png"}


def parse(fields: Mapping[str, Any]) -> RemoveBgRequest:
    """remove.bg's option fields (the image sources taken out already) as our request."""
    given = {name: value for name, value in fields.items() if not _empty(value)}
    for name in sorted(set(given) - OPTION_NAMES):
        _refuse_unless_no_op(name, given[name], given)
    size = _choice(given, "size", tuple(SIZES), "preview", fold=True)
    output = _choice(given, "format", FORMATS, "auto")
    channels = _choice(given, "channels", CHANNELS, "rgba")
    declared = _choice(given, "type", TYPES, "auto")
    type_level = _choice(given, "type_level", TYPE_LEVELS, "1")
    crop = _boolean(given, "crop")
    bg_color = _colour(given["bg_color"]) if "bg_color" in given else None
    kind: OutputKind = "mask" if channels == "alpha" else "cutout"
    if bg_color is not None and (kind == "mask" or output == "zip"):
        what = (
            "channels=alpha (a mask has no colours)"
            if kind == "mask"
            else "format=zip (its colour image and alpha matte are the subject's own)"
        )
        raise InvalidParameter(
            "bg_color", f"has no documented effect with {what}; leave it out, or ask for format=png or jpg"
        )
    if output == "auto":
        # PNG if transparent regions exist, otherwise JPG. A mask is data: never JPEG by default.
        output = "jpg" if kind == "cutout" and bg_color is not None else "png"
    if output == "jpg" and kind == "cutout" and bg_color is None:
        bg_color = WHITE  # JPEG has no transparency: remove.bg's jpg is flattened, onto white here
    # crop_margin "only has an effect when crop=true": without crop it is ignored, as remove.bg does.
    margin = _crop_margin(given["crop_margin"]) if "crop_margin" in given else SidedMargin(0)
    options = RenderOptions(
        format=_RENDER_FORMATS[output],  # type: ignore[arg-type]
        bg_color=bg_color,
        crop=crop,
        margin=margin if crop else Margin(0),
        max_pixels=SIZES[size],
    )
    x_type = None if type_level == "none" else _x_type(declared, TYPE_CLASSES[type_level])
    return RemoveBgRequest(kind=kind, output=output, options=options, x_type=x_type)  # type: ignore[arg-type]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == b""


def _x_type(declared: str, classes: tuple[str, ...]) -> str:
    """The declared type where the level has that class; "other" (remove.bg's) for everything else."""
    name = "graphics" if declared == "graphic" else declared
    return name if name in classes else "other"


def _refuse_unless_no_op(name: str, value: Any, given: Mapping[str, Any]) -> None:
    if name not in NO_OP_VALUES:
        supported = ", ".join(sorted(OPTION_NAMES | set(SOURCE_FIELDS) | set(NO_OP_VALUES)))
        raise InvalidParameter(name, f"not a remove.bg option this service knows; known: {supported}")
    text = (_text({name: value}, name) or "").lower() if not isinstance(value, bytes) else "a file"
    no_op = {
        "add_shadow": text in _FALSE,
        "semitransparency": text in _TRUE,
        "scale": text == "original",
        # "original" is the default unless scale is given; with scale=original it changes nothing.
        "position": text == "original",
        "roi": bool(_WHOLE_ROI.match(" ".join(text.split()))),
        "shadow_method": text in ("latest", "legacy") and (_text(given, "add_shadow") or "false").lower() in _FALSE,
    }.get(name, False)
    if not no_op:
        raise InvalidParameter(
            name,
            f"not supported by this service; only its no-op value is accepted ({NO_OP_VALUES[name]}), got {text!r}",
        )


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    raise InvalidParameter(name, f"expected a single value, got {type(value).__name__}")


def _choice(fields: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str, *, fold: bool = False) -> str:
    text = _text(fields, name)
    if not text:
        return default
    key = text.lower() if fold else text
    if key not in allowed:
        raise InvalidParameter(name, f"expected one of {', '.join(allowed)}, got {text!r}")
    return key


def _boolean(fields: Mapping[str, Any], name: str) -> bool:
    text = (_text(fields, name) or "false").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidParameter(name, f"expected true or false, got {text!r}")


def _colour(value: Any) -> tuple[int, int, int]:
    return parse_colour("bg_color", _text({"bg_color": value}, "bg_color") or "")


def _crop_margin(value: Any) -> SidedMargin:
    text = (_text({"crop_margin": value}, "crop_margin") or "").lower()
    parts = text.replace(",", " ").split()
    if len(parts) not in (1, 2, 4):
        raise InvalidParameter("crop_margin", f"expected 1, 2 or 4 values (30px, 10%), got {text!r}")
    sides = [_margin_value(part) for part in parts]
    if len(sides) == 1:
        sides *= 4
    elif len(sides) == 2:
        sides = [sides[0], sides[1], sides[0], sides[1]]
    return SidedMargin(0, sides_spec=tuple(sides))


def _margin_value(text: str) -> tuple[float, bool]:
    match = _MARGIN_VALUE.match(text)
    if match is None:
        raise InvalidParameter("crop_margin", f"expected pixels (30px) or a percentage (10%), got {text!r}")
    amount = float(match.group(1))
    if not math.isfinite(amount):
        raise InvalidParameter("crop_margin", f"expected a finite number, got {text!r}")
    return amount, match.group(2) == "%"


# --- Results -----------------------------------------------------------------------------------

CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "zip": "application/zip",
}


def zip_of(cutout_png: bytes, mask_png: bytes) -> bytes:
    """remove.bg's "zip" format: `color.jpg` (the cutout's colours) and `alpha.png` (its alpha).

    Stored, not deflated: both members are compressed images already.
    """
    with Image.open(io.BytesIO(cutout_png)) as cutout:
        colour = encode(cutout.convert("RGB"), "jpeg")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("color.jpg", colour)
        archive.writestr("alpha.png", mask_png)
    return buffer.getvalue()
