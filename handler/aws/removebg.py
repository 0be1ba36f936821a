"""remove.bg's API vocabulary, mapped onto ours: `POST /v1.0/removebg` for existing remove.bg clients.

Pure: no AWS, no model. It turns remove.bg's request fields into our `RenderOptions` (and the
output shape remove.bg clients expect), and renders our errors in remove.bg's error format. The
pipeline itself is ours (handler.render), unchanged.

What it follows, from remove.bg's public API reference (https://www.remove.bg/api, whose OpenAPI
descriptions its client libraries carry, e.g. https://github.com/remove-bg/ruby) and its recorded
answers (the VCR cassettes in https://github.com/remove-bg/ruby/tree/main/spec/fixtures):

- image sources, exactly one: `image_file` (multipart), `image_file_b64`, `image_url`.
- `size`: "preview" (also "small", "regular") = resize to 0.25 megapixels; "medium" = up to 1.5 MP;
  "hd" = up to 4 MP; "full" (also "4k"), "50MP" and "auto" = the original resolution (our own
  input limits still apply). Default "preview", as remove.bg's.
- `format`: "auto" = PNG if transparent regions exist, otherwise JPG (the default); "png"; "jpg";
  "webp"; "zip" = a ZIP holding `color.jpg` (the colour image) and `alpha.png` (the alpha matte),
  served as `application/zip` (the member names remove.bg's Ruby client extracts).
- `channels`: "rgba" (default, the finalized image) or "alpha" (the alpha mask).
- `bg_color`: a hex colour with or without "#" (3 or 6 digits; 4 or 8 digits with an alpha that
  must be opaque here) or a colour name ("green").
- `crop` (boolean) and `crop_margin`: "30px" or "10%" of the subject's size, one value (all
  sides), two (top/bottom, left/right) or four (top, right, bottom, left); effective only with
  crop=true; "The maximum margin that can be added on each side is 50% of the subject dimensions
  or 500 pixels" (read here as whichever is smaller).
- `type`: "auto" and the documented foreground types are accepted; the model is class-agnostic,
  so they change nothing (no `X-Type` header is sent).
- Errors: `{"errors": [{"title", "code", "detail"}]}`, e.g. remove.bg's recorded
  `{"errors":[{"title":"API Key invalid","code":"auth_failed"}]}` (403) and its
  `unknown_foreground` ("Could not identify foreground in image").

Options remove.bg has that this service does not implement (`roi`, `scale`, `position`,
`bg_image_url`, `bg_image_file`, `add_shadow`, `semitransparency`, `type_level`, ...) are refused
with 400 naming them: silently ignoring one would return a result the client did not ask for.
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

from handler.core.errors import BackgroundRemovalError, InvalidParameter
from handler.core.image.encode import encode
from handler.core.image.formats import OutputKind
from handler.core.image.options import Margin, RenderOptions, parse_colour

PATH = "/v1.0/removebg"
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
TYPES = ("auto", "person", "product", "car", "animal", "graphic", "transportation")
OPTION_NAMES = frozenset({"size", "format", "channels", "bg_color", "crop", "crop_margin", "type"})
# remove.bg's limits on crop_margin, per side.
MAX_MARGIN_FRACTION = 0.5
MAX_MARGIN_PIXELS = 500
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_MARGIN_VALUE = re.compile(r"^(\d+(?:\.\d+)?)(px|%)?$")

OutputFormat = Literal["png", "jpg", "webp", "zip"]
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class SidedMargin(Margin):
    """remove.bg's crop_margin: up to four values, each in pixels or % of the subject, clamped."""

    sides_spec: tuple[tuple[float, bool], ...] = ((0.0, False),) * 4

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


_RENDER_FORMATS = {"png": "png", "jpg": "jpeg", "webp": "webp", "zip": "png"}


def parse(fields: Mapping[str, Any]) -> RemoveBgRequest:
    """remove.bg's option fields (the image sources taken out already) as our request."""
    unknown = sorted(set(fields) - OPTION_NAMES)
    if unknown:
        supported = ", ".join(sorted(OPTION_NAMES | set(SOURCE_FIELDS)))
        raise InvalidParameter(unknown[0], f"not supported by this service; supported: {supported}")
    size = _choice(fields, "size", tuple(SIZES), "preview", fold=True)
    output = _choice(fields, "format", FORMATS, "auto")
    channels = _choice(fields, "channels", CHANNELS, "rgba")
    _choice(fields, "type", TYPES, "auto")
    crop = _boolean(fields, "crop")
    bg_color = _colour(fields["bg_color"]) if fields.get("bg_color") not in (None, "") else None
    kind: OutputKind = "mask" if channels == "alpha" else "cutout"
    if kind == "mask" or output == "zip":
        # A mask has no colour, and the ZIP's colour image is the cutout's own colours.
        bg_color = None
    if output == "auto":
        # PNG if transparent regions exist, otherwise JPG. A mask is data: never JPEG by default.
        output = "jpg" if kind == "cutout" and bg_color is not None else "png"
    if output == "jpg" and kind == "cutout" and bg_color is None:
        bg_color = WHITE  # JPEG has no transparency: remove.bg's jpg is flattened, onto white here
    # crop_margin "only has an effect when crop=true": without crop it is ignored, as remove.bg does.
    given_margin = fields.get("crop_margin") not in (None, "")
    margin = _crop_margin(fields["crop_margin"]) if given_margin else Margin(0)
    options = RenderOptions(
        format=_RENDER_FORMATS[output],  # type: ignore[arg-type]
        bg_color=bg_color,
        crop=crop,
        margin=margin if crop else Margin(0),
        max_pixels=SIZES[size],
    )
    return RemoveBgRequest(kind=kind, output=output, options=options)  # type: ignore[arg-type]


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


# --- Errors ------------------------------------------------------------------------------------


class UnknownForeground(BackgroundRemovalError):
    """remove.bg's answer when it finds no subject: an all-transparent cutout is no result."""

    code = "unknown_foreground"
    status = 400

    def __init__(self) -> None:
        super().__init__("no foreground subject was found in the image")


# remove.bg's own code where one is documented or recorded for the same failure; ours otherwise.
_CODES = {"image_too_large": "file_too_large"}
_TITLES = {
    "invalid_parameter": "Invalid parameter",
    "missing_image": "No image given",
    "invalid_image": "Invalid image",
    "unsupported_media_type": "Unsupported image format",
    "image_too_large": "File too large",
    "too_many_pixels": "Image resolution too high",
    "too_many_frames": "Too many frames",
    "output_too_large": "Result too large",
    "source_forbidden": "Image URL not allowed",
    "unknown_foreground": "Could not identify foreground in image",
    "method_not_allowed": "Method not allowed",
    "not_found": "Not found",
    "storage_unavailable": "Service temporarily unavailable",
    "internal_error": "Internal error",
}


def error_document(error: BackgroundRemovalError) -> dict[str, list[dict[str, str]]]:
    """Our error in remove.bg's shape: the same status, remove.bg's code where it has one."""
    title = _TITLES.get(error.code, error.code.replace("_", " ").capitalize())
    return {"errors": [{"title": title, "code": _CODES.get(error.code, error.code), "detail": error.message}]}
