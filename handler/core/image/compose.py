"""From the model's probabilities to the images: the alpha at the picture's size, the refined
edge colour, the straight-alpha cutout and the subject's bounding box."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops

from handler.core.cpu import map_over_cpus
from handler.core.image.decode import ImageSource, Picture
from handler.core.image.refine import refine_foreground

# Masks of at least this many pixels are resized band by band on threads (see to_mask); smaller
# ones take a few milliseconds in one piece.
MIN_SPLIT_MASK_PIXELS = 1 << 22
# Pixels per band of a large mask (rows of the full width): the float band it is resized into is
# 4 bytes a pixel, so a few bands in flight cost a few MB where one 64 MP resize cost 256 MB.
MASK_BAND_PIXELS = 1 << 20
# Pixels per band when looking for the subject's box: two 4 MB copies at a time, not two of the mask.
BOX_BAND_PIXELS = 1 << 22
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
    full size, and no full-size float image: a large mask is resized band by band, each band
    converted to 8 bits before the next, so the mask costs its own 1 byte per pixel plus a few MB.
    """
    levels = Image.fromarray((probabilities * np.float32(255.0) + np.float32(0.5)).astype(np.float32, copy=False), "F")
    width, height = size
    if width * height < MIN_SPLIT_MASK_PIXELS:
        return levels.resize(size, Image.Resampling.BILINEAR).convert("L")
    # Each band of rows is resized from its own box of the same source (whose rows beyond the box
    # still weigh in), on threads: Pillow resizes on one. A band's sampling positions are computed
    # from its box's edge, so they can differ from one resize's in the last bits: a level at a pixel
    # that falls on a rounding boundary. The bands depend on the size alone, never on the CPU
    # count, so the mask is the same on any machine.
    source_width, source_height = levels.size
    rows = max(1, MASK_BAND_PIXELS // width)
    mask = Image.new("L", size)

    def band(top: int) -> None:
        bottom = min(height, top + rows)
        box = (0, top * source_height / height, source_width, bottom * source_height / height)
        mask.paste(levels.resize((width, bottom - top), Image.Resampling.BILINEAR, box=box).convert("L"), (0, top))

    map_over_cpus(band, range(0, height, rows))
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
    """The bounding box of pixels at or above `threshold`, or None when there is no subject.

    Band by band: the thresholded copy of a whole 64 MP mask would be another 64 MB.
    """
    width, height = alpha.size
    selected = [255 if value >= threshold else 0 for value in range(256)]
    rows = max(1, BOX_BAND_PIXELS // width)
    found = []
    for top in range(0, height, rows):
        bbox = alpha.crop((0, top, width, min(height, top + rows))).point(selected).getbbox()
        if bbox is not None:
            left, band_top, right, band_bottom = bbox
            found.append((left, top + band_top, right, top + band_bottom))
    if not found:
        return None
    left, top = min(box[0] for box in found), min(box[1] for box in found)
    right, bottom = max(box[2] for box in found), max(box[3] for box in found)
    return Box(left=left, top=top, width=right - left, height=bottom - top)
