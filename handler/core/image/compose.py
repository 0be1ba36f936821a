"""From the model's probabilities to the images: the alpha at the picture's size, the refined
edge colour, the straight-alpha cutout and the subject's bounding box."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops

from handler.core.cpu import map_over_cpus
from handler.core.image.decode import ImageSource, Picture
from handler.core.image.refine import refine_foreground

# Masks of at least this many pixels are resized in MASK_COLUMNS strips on threads (see to_mask);
# smaller ones take a few milliseconds in one piece.
MIN_SPLIT_MASK_PIXELS = 1 << 22
MASK_COLUMNS = 2
# The mask value from which a pixel counts as subject when reporting the bounding box.
FOREGROUND_THRESHOLD = 128
# 255 exactly where alpha is 0: selects the pixels whose RGB carries no information.
_TRANSPARENT_LUT = [255] + [0] * 255


@dataclass(frozen=True)
class Box:
    """The subject's bounding box in input pixels (remove.bg's X-Foreground-* headers)."""

    left: int
    top: int
    width: int
    height: int


def to_mask(probabilities: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Probabilities at the model's size → mode "L" mask at `size`, bilinear, rounded.

    Scaled (and offset by 0.5) at the model's small size, so the full-size work is a float resize
    and Pillow's F->L conversion, which truncates and clips: truncating x + 0.5 rounds x, and
    bilinear weights sum to 1, so the offset survives the resize exactly. No numpy temporaries at
    full size: ~6 bytes per pixel instead of ~17.
    """
    levels = Image.fromarray((probabilities * np.float32(255.0) + np.float32(0.5)).astype(np.float32, copy=False), "F")
    width, height = size
    if width * height < MIN_SPLIT_MASK_PIXELS:
        return levels.resize(size, Image.Resampling.BILINEAR).convert("L")
    # Pillow resizes on one thread: a large mask is made as MASK_COLUMNS column strips, each resized
    # from its own box of the same source (whose pixels beyond the box still weigh in), on threads.
    # A strip's sampling positions are computed from its box's edge, so they can differ from one
    # resize's in the last bits: a level at a pixel that falls on a rounding boundary. The strip
    # count is fixed, never the CPU count, so the mask is the same on any machine.
    source_width, source_height = levels.size
    bounds = [(width * part // MASK_COLUMNS, width * (part + 1) // MASK_COLUMNS) for part in range(MASK_COLUMNS)]

    def strip(columns: tuple[int, int]) -> Image.Image:
        left, right = columns
        box = (left * source_width / width, 0, right * source_width / width, source_height)
        return levels.resize((right - left, height), Image.Resampling.BILINEAR, box=box).convert("L")

    mask = Image.new("L", size)
    for (left, _), part in zip(bounds, map_over_cpus(strip, bounds), strict=True):
        mask.paste(part, (left, 0))
    return mask


def alpha_from(picture: Picture, probabilities: np.ndarray) -> Image.Image:
    """The model's probabilities as the picture's alpha, at its size, with its own transparency kept."""
    alpha = to_mask(probabilities, picture.size)
    if picture.alpha is not None:
        alpha = ImageChops.multiply(alpha, picture.alpha)
    return alpha


def refined(picture: Picture, alpha: Image.Image, *, source: ImageSource) -> Picture:
    """`picture` with its edge pixels' foreground colour estimated (handler.core.image.refine).

    Our own decode is changed in place (no full-size copy); a caller's PIL image is left alone.
    """
    return replace(picture, rgb=refine_foreground(picture.rgb, alpha, in_place=picture.rgb is not source))


def compose_cutout(picture: Picture, alpha: Image.Image) -> Image.Image:
    """RGBA with straight (not premultiplied) alpha; RGB zeroed where alpha is exactly 0.

    Premultiplying and then storing as straight alpha is what gives dark fringes; zeroing fully
    transparent pixels removes information nobody can see and makes the PNG far smaller.
    """
    # In place on one RGBA copy: 4 bytes per pixel plus a 1-byte selection, nothing more.
    cutout = picture.rgb.convert("RGBA")
    cutout.putalpha(alpha)
    cutout.paste((0, 0, 0, 0), mask=alpha.point(_TRANSPARENT_LUT))
    return cutout


def foreground_box(alpha: Image.Image, threshold: int = FOREGROUND_THRESHOLD) -> Box | None:
    """The bounding box of pixels at or above `threshold`, or None when there is no subject."""
    bbox = alpha.point([255 if value >= threshold else 0 for value in range(256)]).getbbox()
    if bbox is None:
        return None
    left, top, right, bottom = bbox
    return Box(left=left, top=top, width=right - left, height=bottom - top)
