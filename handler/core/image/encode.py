"""Encoding results: PNG (through handler.core.image.png), WebP and JPEG, with only the metadata asked for."""

from __future__ import annotations

import io

from PIL import Image

from handler.core.errors import UnsupportedMediaType
from handler.core.image.formats import OutputFormat
from handler.core.image.png import encode_png

WEBP_QUALITY = 90
# libwebp's effort (0-6). On a 12 MP cutout, method 0 took 0.66 s for 0.78 MB and the usual 4 took
# 2.0 s for 0.56 MB: the fast option must stay fast, and is still ~8x smaller than the PNG.
WEBP_METHOD = 0
JPEG_QUALITY = 90
# A JPEG carries EXIF and XMP in one APP1 segment each, whose length field stops at 65,535 bytes
# (65,533 of data; XMP's also holds its 29-byte namespace). A larger block, which a PNG, TIFF,
# WebP or HEIC input may have, is left out of a JPEG output rather than failing the cutout.
JPEG_MAX_EXIF = 65_533
JPEG_MAX_XMP = 65_533 - 29


def encode(
    image: Image.Image,
    fmt: OutputFormat = "png",
    *,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
) -> bytes:
    """Encode with settings chosen for cutouts: fast PNG, lossy WebP with exact alpha, JPEG.

    Only the metadata given here is written (`exif` as Pillow's Exif.tobytes() gives it): never
    what the image object still carries from its decoder. JPEG drops blocks it cannot carry.
    """
    if fmt == "jpeg":
        exif = exif if exif is None or len(exif) <= JPEG_MAX_EXIF else None
        xmp = xmp if xmp is None or len(xmp) <= JPEG_MAX_XMP else None
    buffer = io.BytesIO()
    extra: dict[str, object] = {}
    if icc_profile is not None and image.mode in ("RGB", "RGBA"):
        extra["icc_profile"] = icc_profile
    if exif is not None:
        extra["exif"] = exif
    if xmp is not None:
        extra["xmp"] = xmp
    if fmt == "png":
        if image.mode in ("L", "RGB", "RGBA"):
            return encode_png(image, icc_profile=icc_profile if image.mode != "L" else None, exif=exif, xmp=xmp)
        image.save(buffer, "PNG", **extra)
    elif fmt == "webp" and image.mode == "L":
        # A mask is data, not a photo: lossy WebP turned pure background into faint non-zero alpha.
        image.save(buffer, "WEBP", lossless=True, method=WEBP_METHOD, **extra)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=WEBP_QUALITY, alpha_quality=100, method=WEBP_METHOD, **extra)
    elif fmt == "jpeg":
        if image.mode not in ("RGB", "L"):
            raise UnsupportedMediaType("JPEG has no transparency: give a background colour")
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=False, **extra)
    else:
        raise UnsupportedMediaType(f"unknown output format {fmt!r}")
    return buffer.getvalue()
