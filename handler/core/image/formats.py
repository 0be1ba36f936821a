"""What is rendered (cutout, mask) and in which format: one table of what each format is called, how it is
served and whether it keeps alpha."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What a request or a job may ask to be rendered: the cutout (RGBA) and/or the mask (L).
OutputKind = Literal["cutout", "mask"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("cutout", "mask")

OutputFormat = Literal["png", "webp", "jpeg"]


@dataclass(frozen=True)
class FormatInfo:
    content_type: str
    # The extension outputs get.
    extension: str
    # What a request option or a file name may call it (lower case, no dot).
    names: tuple[str, ...]
    # Whether it carries an alpha channel: a cutout in a format without one needs a background colour.
    transparent: bool
    # The longest side its encoder writes (libwebp's and libjpeg's limits); None: past any input's.
    max_side: int | None = None


FORMATS: dict[OutputFormat, FormatInfo] = {
    "png": FormatInfo("image/png", "png", ("png",), transparent=True),
    "webp": FormatInfo("image/webp", "webp", ("webp",), transparent=True, max_side=16383),
    "jpeg": FormatInfo("image/jpeg", "jpg", ("jpeg", "jpg"), transparent=False, max_side=65500),
}
# What stored cutouts and masks (the jobs function, the command line) may be written as.
TRANSPARENT_FORMATS: tuple[OutputFormat, ...] = tuple(name for name, info in FORMATS.items() if info.transparent)
_BY_NAME: dict[str, OutputFormat] = {alias: name for name, info in FORMATS.items() for alias in info.names}


def format_named(text: str) -> OutputFormat | None:
    """The format a name ("png", "JPG", ...) or a file suffix (".jpeg") stands for, else None."""
    return _BY_NAME.get(text.strip().lower().removeprefix("."))
