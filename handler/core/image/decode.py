"""Decoding any image Pillow can read into the one shape the pipeline works on.

Decoding is where untrusted bytes meet C code, so the limits are checked on the header alone,
before a single pixel is decoded.
"""

from __future__ import annotations

import io
import math
import mmap
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, UnidentifiedImageError

from handler.core.errors import ImageTooLarge, InvalidImage, TooManyFrames, TooManyPixels, UnsupportedMediaType
from handler.core.image.limits import ImageLimits
from handler.core.image.refused_formats import HEAD_BYTES, refused_format
from handler.core.image.structure import check_structure

# Pillow quotes a few bytes of the file in some messages ("broken PNG file (chunk b'...')"). An
# error message reaches the client and the jobs' logs, and image bytes belong in neither.
_BYTES_REPR = re.compile(r"(?<!\w)b'(?:[^'\\]|\\.)*'" + r'|(?<!\w)b"(?:[^"\\]|\\.)*"')
_MAX_DETAIL = 200

# HEIC/HEIF through pillow-heif (Pillow 13 reads AVIF itself). libheif applies the file's own
# rotation/mirroring (irot/imir) while decoding and the plugin resets the EXIF Orientation to 1, so
# `_upright` never turns a HEIC twice. Thumbnails, depth maps and auxiliary images are never used.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

ImageSource = str | Path | bytes | bytearray | memoryview | Image.Image

_EXIF_ORIENTATION_TAG = 0x0112
# Offset of the "data colour space" field in an ICC profile header (ICC.1:2022 §7.2.6).
_ICC_COLOUR_SPACE = slice(16, 20)
# Decoders an upload may reach. Pillow knows ~40 formats; most are rarely used and less hardened,
# and EPS/PostScript would run Ghostscript. MPO is how Pillow names many camera and phone JPEGs.
# HEIF is pillow-heif's plugin, AVIF Pillow's own; either counts only where its decoder is present.
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "HEIF")
# What messages tell a caller to send instead (HEIC is how phones name their HEIF files).
ACCEPTED_FORMATS = "JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC/HEIF or AVIF"
# ISO-BMFF brands of HEIC/HEIF and AVIF photos (bytes 8-12 after "ftyp"): recognised even without a
# decoder, so that a phone photo gets "unsupported format" (415) rather than "not an image" (400).
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", *_AVIF_BRANDS}
_EXIF_SUB_IFD = 0x8769
_EXIF_PIXEL_DIMENSIONS = (0xA002, 0xA003)  # the original's size, wrong for a cropped or scaled output
# XMP's copy of the orientation (attribute or element form); the pixels are already upright.
_XMP_ORIENTATION = re.compile(rb"(tiff:Orientation(?:=\"|>))[1-8]")
# The draft decode for the model is kept at least 1.4x the model's input size in each direction,
# so the final bilinear squash still does real filtering. Measured with U-2-Net-p (320x320) on
# sample photos enlarged so their draft lands near that bound (1.46x), masks differed from the
# full-decode path by 0.18-0.88 grey levels on average (IoU >= 0.994); at ~1.2x the difference
# rose to 1.15. A 12 MP 4:3 photo for a 1024 model is drafted at 1/2 scale (2000x1500), and the
# model's input tensor then differs from the full decode's by 0.26 grey levels on average.
DRAFT_OVERSAMPLING = 1.4
# SOI followed by the first marker's 0xFF: every JPEG (and MPO) starts so.
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# What Pillow raises on corrupt or truncated data, at open, on seeking and on first pixel access.
# Beyond the documented OSError/ValueError family, found by the corpus and the fuzzer: TypeError
# (a TIFF frame without dimensions), IndexError (a GIF frame cut short), KeyError (a TIFF frame
# with an unknown compression), struct.error (a short header field), RuntimeError (an AVIF whose
# frame libavif cannot decode).
_CORRUPT_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, LookupError, struct.error, RuntimeError)
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


@dataclass(frozen=True)
class Picture:
    """A decoded input: upright RGB pixels, the input's own alpha, its colour profile and metadata.

    `exif` and `xmp` are the input's own blocks, as read; `output_metadata` gives the copies an
    output may carry.
    """

    rgb: Image.Image
    alpha: Image.Image | None
    icc_profile: bytes | None
    exif: bytes | None = None
    xmp: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size

    def output_metadata(self) -> tuple[bytes | None, bytes | None]:
        """(EXIF, XMP) for an output of these upright pixels: Orientation 1, no stale pixel size."""
        exif = None
        if self.exif is not None:
            parsed = Image.Exif()
            try:
                with warnings.catch_warnings():
                    # Pillow keeps what it can read of a corrupt block and warns; what it kept is copied.
                    warnings.simplefilter("ignore", UserWarning)
                    parsed.load(self.exif)
                    parsed[_EXIF_ORIENTATION_TAG] = 1
                    if _EXIF_SUB_IFD in parsed:
                        details = parsed.get_ifd(_EXIF_SUB_IFD)
                        for tag in _EXIF_PIXEL_DIMENSIONS:
                            details.pop(tag, None)
                    exif = parsed.tobytes()
            except _CORRUPT_DATA_ERRORS:
                exif = None  # unreadable EXIF is dropped, never a reason to fail the image
        xmp = _XMP_ORIENTATION.sub(rb"\g<1>1", self.xmp) if self.xmp is not None else None
        return exif, xmp


def _detail(error: BaseException) -> str:
    """Pillow's message for `error`, with any quoted bytes left out and its length bounded."""
    return _BYTES_REPR.sub("<bytes>", str(error))[:_MAX_DETAIL]


def load_picture(source: ImageSource, limits: ImageLimits | None = None) -> Picture:
    """Decode `source` (a path, bytes or PIL image) into an upright RGB `Picture`.

    Paths and bytes are checked against `limits`; a PIL image is already decoded and is trusted.
    """
    image = opened(source, limits or ImageLimits())
    try:
        return _to_picture(image)
    except _CORRUPT_DATA_ERRORS as error:
        # Pillow reports truncated and corrupt data lazily, on first pixel access.
        raise InvalidImage(f"the image data is corrupt or truncated ({_detail(error)})") from error


def opened(source: ImageSource, limits: ImageLimits) -> Image.Image:
    """`source` opened (header only, limits checked), or the PIL image it already is."""
    return source if isinstance(source, Image.Image) else open_image(source, limits)


def load_model_input(source: ImageSource, limits: ImageLimits, model_size: tuple[int, int]) -> Image.Image | None:
    """An upright RGB decode of a large JPEG at reduced size (libjpeg's DCT scaling), for the model.

    The model sees the photo squashed to ~1024x1024, so decoding 12 MP only to throw most of it
    away is wasted time: a draft decode at 1/2, 1/4 or 1/8 scale, still at least the model's size,
    is several times faster and differs from the full decode only by its low-pass filter. None
    where it does not apply (not a JPEG, too small to reduce, a PIL image, CMYK) and for a
    progressive JPEG: libjpeg scales only the inverse DCT, and a progressive file's cost is its
    scans' entropy decoding (every scan passes over the whole image), which a draft would pay a
    second time beside the full decode.
    """
    if isinstance(source, Image.Image) or not _starts_like_jpeg(source):
        return None
    image = open_image(source, limits)
    if image.format not in ("JPEG", "MPO") or image.mode not in ("RGB", "L") or image.info.get("progressive"):
        return None
    width, height = model_size
    if image.getexif().get(_EXIF_ORIENTATION_TAG, 1) >= 5:
        width, height = height, width  # the draft size is in stored orientation, before rotation
    full_size = image.size
    image.draft(image.mode, (math.ceil(width * DRAFT_OVERSAMPLING), math.ceil(height * DRAFT_OVERSAMPLING)))
    if image.size == full_size:  # too small to reduce: the full decode serves the model too
        return None
    return load_picture(image).rgb


def _starts_like_jpeg(source: str | Path | bytes | bytearray | memoryview) -> bool:
    """A look at the first bytes only: other formats are opened once, by the full decode (opening
    checks the limits, and for GIF and TIFF that walks every frame)."""
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as file:
                head = file.read(len(_JPEG_SIGNATURE))
        except OSError:
            return False  # the full decode reports it
    else:
        head = bytes(source[: len(_JPEG_SIGNATURE)])
    return head == _JPEG_SIGNATURE


def open_image(source: str | Path | bytes | bytearray | memoryview, limits: ImageLimits) -> Image.Image:
    """Open lazily and check the limits: bytes and structure on the raw data, before any decoder
    sees it, then pixels and frames on the header.

    The format is sniffed from the bytes by the allow-listed decoders alone: a declared
    Content-Type or a file name never chooses a decoder.
    """
    if isinstance(source, (str, Path)):
        # A file that cannot be read is the OS's error (FileNotFoundError, PermissionError, ...), as
        # for any Python function given a path: it says nothing about the image data.
        path = Path(source)
        size = path.stat().st_size
        _check_bytes(size, limits)
        if size:
            with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                check_structure(mapped, limits)
        stream: io.BytesIO | Path = path
    else:
        data = bytes(source)
        _check_bytes(len(data), limits)
        if not data:
            raise InvalidImage("the image is empty (0 bytes)")
        check_structure(data, limits)
        stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit (below) is the policy; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=_decodable_formats())
            _check_pixels(image, limits)
            _check_frames(image, limits)
    except Image.DecompressionBombError as error:
        # Pillow's own message speaks of attacks and its own threshold: ours names our limit only.
        raise TooManyPixels(f"the image has too many pixels; the limit is {limits.max_pixels:,}") from error
    except UnidentifiedImageError as error:
        container = _heif_family(stream)
        if container is not None and container not in _decodable_formats():
            raise UnsupportedMediaType(f"this installation has no decoder for {container} images") from error
        if container is not None:
            raise InvalidImage(f"the {container} image is corrupt or truncated") from error
        refused = refused_format(_head(stream, HEAD_BYTES))
        if refused is not None:
            raise UnsupportedMediaType(f"{refused} images are not accepted; send {ACCEPTED_FORMATS}") from error
        raise InvalidImage(f"the data is not an image in a format this service reads ({ACCEPTED_FORMATS})") from error
    except _CORRUPT_DATA_ERRORS as error:
        raise InvalidImage(f"the image header is corrupt ({_detail(error)})") from error
    return image


def _check_pixels(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"the image claims an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}"
        )


def _check_frames(image: Image.Image, limits: ImageLimits) -> None:
    frames = _frame_count(image, limits.max_frames)
    if frames > limits.max_frames:
        raise TooManyFrames(f"the image has more than {limits.max_frames:,} frames; the limit is {limits.max_frames:,}")


def _frame_count(image: Image.Image, at_most: int) -> int:
    """The number of frames, counted no further than `at_most + 1`.

    PNG (acTL), WebP, MPO, AVIF and HEIF declare their count in the header. GIF and TIFF declare
    none, and Pillow's `n_frames` walks the whole file, so they are walked here only up to the
    bound. A frame that cannot be parsed ends the count: only the first one is ever decoded.
    """
    step = _FRAME_STEPS.get(image.format or "")
    if step is None:
        return int(getattr(image, "n_frames", 1))
    frames = 1
    try:
        while frames <= at_most:
            step(image, frames)
            frames += 1
    except _CORRUPT_DATA_ERRORS:
        pass
    image.seek(0)
    return frames


# How to move to the next frame without decoding pixels. GIF: what GifImageFile.n_frames does
# (its public seek() decodes every frame on the way). TIFF: seek() parses IFD tags only; one frame
# at a time, because a single seek past the end makes Pillow 13 record n_frames as that frame + 1.
# Measured per frame: ~2 µs for GIF, ~0.17 ms for TIFF (so at most ~0.2 s at the default bound).
_FRAME_STEPS: dict[str, Callable[[Image.Image, int], None]] = {
    "GIF": lambda image, frame: image._seek(frame, False),  # type: ignore[attr-defined]
    "TIFF": lambda image, frame: image.seek(frame),
}


@cache
def _decodable_formats() -> tuple[str, ...]:
    """The allowed formats this installation has a decoder for (Pillow registers plugins lazily)."""
    Image.init()
    return tuple(name for name in DECODABLE_FORMATS if name in Image.OPEN)


def _head(stream: io.BytesIO | Path, size: int) -> bytes:
    if isinstance(stream, Path):
        with stream.open("rb") as file:
            return file.read(size)
    stream.seek(0)
    return stream.read(size)


def _heif_family(stream: io.BytesIO | Path) -> str | None:
    """ "AVIF" or "HEIF" (Pillow's format names) when the header is an ISO-BMFF photo's, else None."""
    header = _head(stream, 12)
    if header[4:8] != b"ftyp" or header[8:12] not in _HEIF_BRANDS:
        return None
    return "AVIF" if header[8:12] in _AVIF_BRANDS else "HEIF"


def _check_bytes(size: int, limits: ImageLimits) -> None:
    if size > limits.max_bytes:
        raise ImageTooLarge(f"the image is {size:,} bytes; the limit is {limits.max_bytes:,}")


def _to_picture(image: Image.Image) -> Picture:
    icc_profile = image.info.get("icc_profile") or None
    upright = _upright(image)
    exif, xmp = _metadata(image)  # after loading: PNG's eXIf may follow the pixel data
    if upright.mode == "CMYK":
        return Picture(rgb=_cmyk_to_srgb(upright, icc_profile), alpha=None, icc_profile=None, exif=exif, xmp=xmp)
    rgb, alpha = _split_alpha(_to_8bit(upright))
    if icc_profile is not None and icc_profile[_ICC_COLOUR_SPACE] != b"RGB ":
        # A grey profile attached to an RGB image is invalid; viewers would reject the file.
        icc_profile = None
    return Picture(rgb=rgb, alpha=alpha, icc_profile=icc_profile, exif=exif, xmp=xmp)


def _metadata(image: Image.Image) -> tuple[bytes | None, bytes | None]:
    """The EXIF and XMP blocks as the decoder found them (TIFF's own tags are not an EXIF block)."""
    exif = image.info.get("exif") or None
    xmp = image.info.get("xmp") or None
    if isinstance(xmp, str):  # PNG's iTXt arrives as text
        xmp = xmp.encode("utf-8")
    return (bytes(exif) if exif else None), (bytes(xmp) if xmp else None)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; multi-frame files are reduced to their first frame."""
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    transpose = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    # Loading here decodes only the current (first) frame of an animation.
    image.load()
    return image.transpose(transpose) if transpose is not None else image


def _to_8bit(image: Image.Image) -> Image.Image:
    """Bring deep and exotic modes to 8 bits per channel without clipping their range."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        # Pillow's own convert("L") clips 16-bit values at 255 instead of scaling them.
        values = np.asarray(image).astype(np.uint32, copy=False)
        shift = 8 if mode in _SIXTEEN_BIT_MODES or values.max(initial=0) > 255 else 0
        return Image.fromarray((np.minimum(values >> shift, 255)).astype(np.uint8), "L")
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), "L")
    return image


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    mode = image.mode
    has_alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info)
    if not has_alpha:
        return (image if mode == "RGB" else image.convert("RGB")), None
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    if alpha.getextrema() == (255, 255):
        return rgba.convert("RGB"), None
    return rgba.convert("RGB"), alpha


def _cmyk_to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Use the embedded CMYK profile when there is one: a naive conversion shifts colours badly."""
    if icc_profile is not None:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass
    return image.convert("RGB")
