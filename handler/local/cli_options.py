"""The command line's output flags: the API's options under rembg-style names, parsed by the API's parser.

Each flag maps to the raw option name a request would send (`--bg-color` is `bg_color`), and
handler.core.image.options.parse_options validates the lot, so a value the API refuses is refused here
with the same words, and a value it accepts means the same thing.
"""

from __future__ import annotations

import argparse
from typing import Any

from handler.core.errors import InvalidParameter
from handler.core.image.formats import OutputKind
from handler.core.image.options import RESOLUTIONS, RenderOptions, parse_options

# The API's option name -> the flag that sets it.
FLAGS: dict[str, str] = {
    "format": "--format",
    "bg_color": "--bg-color",
    "crop": "--crop",
    "margin": "--margin",
    "max_size": "--max-size",
    "resolution": "--resolution",
    "refine": "--refine",
    "keep_metadata": "--keep-metadata",
}


def add_render_flags(command: argparse.ArgumentParser, kind: OutputKind) -> None:
    """The output flags of `remove` (kind "cutout") or `mask`; values stay text until parsed."""
    command.add_argument("--format", metavar="{png,webp,jpeg}", help="output format (default png, or the -o name's)")
    command.add_argument("--crop", action="store_true", default=None, help="crop to the subject")
    command.add_argument(
        "--margin",
        metavar="MARGIN",
        help="with --crop, room around the subject: pixels (20, 20px) or a percentage (5%%)",
    )
    command.add_argument(
        "--max-size", metavar="PIXELS", help="scale the output down so its longer side is at most this (never up)"
    )
    command.add_argument(
        "--resolution",
        metavar="{" + ",".join(map(str, RESOLUTIONS)) + "}",
        help="model input size for exports with a dynamic input: smaller is faster, coarser (default MODEL_INPUT_SIZE)",
    )
    if kind != "cutout":
        return
    command.add_argument(
        "--bg-color",
        metavar="COLOUR",
        help="fill the background with this colour (hex with or without #, or a name: ffffff, #fff, white) instead of transparency; needed for jpeg",
    )
    command.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="estimate the foreground colour of semi-transparent edge pixels (default: on)",
    )
    command.add_argument(
        "--keep-metadata",
        action="store_true",
        default=None,
        help="copy the input's EXIF (incl. GPS) and XMP to the cutout; off by default",
    )


def raw_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options the user gave, under the API's names, as a request would carry them."""
    return {name: getattr(args, name) for name in FLAGS if getattr(args, name, None) is not None}


def render_options(args: argparse.Namespace, kind: OutputKind) -> RenderOptions:
    """The validated options; an InvalidParameter names the flag instead of the API's parameter."""
    try:
        return parse_options(raw_options(args), kind)
    except InvalidParameter as error:
        raise flag_error(error) from None


def flag_error(error: InvalidParameter) -> InvalidParameter:
    """The same error, named by its flag: `bg_color: expected #rrggbb...` -> `--bg-color: expected #rrggbb...`."""
    flag = FLAGS.get(error.parameter)
    if flag is None:
        return error
    return InvalidParameter(flag, error.message.removeprefix(f"{error.parameter}: "))
