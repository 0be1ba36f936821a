"""One inference, then each requested output (cutout and/or mask) rendered with the options.

This is the single logic function both entry points and the command line call.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from handler.core.errors import OutputBeyondFormat
from handler.core.image.compose import Box, alpha_from, compose_cutout, foreground_box, refined
from handler.core.image.decode import ImageSource, Picture, load_model_input, load_picture, opened
from handler.core.image.encode import encode
from handler.core.image.formats import FORMATS, OutputFormat, OutputKind
from handler.core.image.limits import ImageLimits
from handler.core.image.options import MAX_SIZE_LIMIT, RenderOptions
from handler.core.image.png import encode_png_cutout
from handler.core.model.session import BackgroundModel

# Above this many input pixels the model's working memory is handed back after inference, before
# the cutout is made: the photo's own buffers (~4-6 bytes per pixel: its mask, the PNG, strips) then
# reuse it instead of adding to it. With a stand-in of BiRefNet-lite a 64 MP cutout and mask peaked
# at 2.25 GB instead of 2.47 GB (benchmarks/README.md, "The largest photo"), leaving a 3,008 MB
# function room to spare; the next inference pays for the memory again (~0.65 s on 2 cores here),
# so photos up to twice a 12 MP phone photo keep it: theirs fit beside it.
RELEASE_MODEL_MEMORY_ABOVE_PIXELS = 24_000_000


@dataclass(frozen=True)
class Rendered:
    """An encoded output and what a client needs to know about it."""

    kind: OutputKind
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


@dataclass(frozen=True)
class Result:
    input_size: tuple[int, int]
    box: Box | None
    outputs: dict[OutputKind, Rendered]
    inference_ms: float
    total_ms: float

    @property
    def megapixels(self) -> float:
        return self.input_size[0] * self.input_size[1] / 1e6


def process(
    source: ImageSource,
    kinds: Sequence[OutputKind],
    options: RenderOptions,
    model: BackgroundModel,
    limits: ImageLimits,
    also_encoded_as: Sequence[OutputFormat] = (),
) -> Result:
    """Decode once, infer once, render each of `kinds` ("cutout", "mask"); a caller that encodes an
    output again in another format names it in `also_encoded_as`, to have its size limit checked too."""
    model_size = check_request(kinds, options, model)
    _return_freed_memory()
    started = time.perf_counter()
    image = opened(source, limits)  # the header alone, checked against the limits
    check_output_size(image.size, options, also_encoded_as)  # refused before any pixel is decoded
    picture, probabilities, inference_ms = _decode_and_infer(image, source, model, limits, model_size)
    alpha = alpha_from(picture, probabilities)
    box = foreground_box(alpha)
    input_size = picture.size
    if "cutout" in kinds and options.refines:
        # Before cropping, so the blurs see the same surroundings whatever the crop.
        picture = refined(picture, alpha, source=source)
    picture, alpha = _crop(picture, alpha, box, options)
    outputs = {kind: _render(kind, picture, alpha, options) for kind in kinds}
    return Result(
        input_size=input_size,
        box=box,
        outputs=outputs,
        inference_ms=inference_ms,
        total_ms=(time.perf_counter() - started) * 1000,
    )


def _return_freed_memory() -> None:
    """Hand the memory the last photo (or the model's loading) freed back to the system.

    glibc keeps freed memory for reuse, and after a few large photos a warm environment held enough
    of it, fragmented, that the next photo's peak rose on top: 2.73 -> 3.12 GB over ten 64 MP
    photos (benchmarks/lambda_memory.py), Lambda's kill for a 3,008 MB function. `malloc_trim`
    returns the free pages (5-25 ms); elsewhere than glibc it is a no-op.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return None


_MALLOC_TRIM = _malloc_trim()


def check_request(kinds: Sequence[OutputKind], options: RenderOptions, model: BackgroundModel) -> tuple[int, int]:
    """What is refused before the image is read: options no output of `kinds` can honour, and a
    resolution the model cannot run at; else the model's input size for this request.

    Every entry point goes through here: `process` first of all, and POST /uploads before it hands
    out a form, so that the job an upload starts can do what the form was given for.
    """
    for kind in kinds:
        options.check_for(kind)
    return model.size_for(options.resolution)


def check_output_size(size: tuple[int, int], options: RenderOptions, also: Sequence[OutputFormat] = ()) -> None:
    """Refuse options whose output format cannot hold an output from a picture of `size`.

    WebP stops at 16383 pixels a side and JPEG at 65500, well inside the input limits (a 20000x3000
    panorama is 60 MP). The bound is the picture's own size (as stored: the orientation changes
    neither its longest side nor its pixels), with the canvas a margin may add past its edge
    (remove.bg's crop_margin; at most the margin of a subject as large as the picture), after
    `max_size` and `max_pixels`. A crop is only known after the inference, so with crop=true an
    output that would fit once cropped is refused too, and `max_size` at the format's limit is then
    the way to ask for it. `also` names the formats an output is encoded in besides its own (remove.bg's
    zip holds the cutout's colours as a JPEG).
    """
    width, height = size
    if options.crop and not options.margin.stops_at_edge:
        top, right, bottom, left = options.margin.sides(width, height)
        width, height = width + left + right, height + top + bottom
    if options.max_size is not None and max(width, height) > options.max_size:
        scale = options.max_size / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if options.max_pixels is not None and width * height > options.max_pixels:
        scale = math.sqrt(options.max_pixels / (width * height))
        width, height = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    for output_format in (options.format, *also):
        limit = FORMATS[output_format].max_side
        if limit is not None and max(width, height) > limit:
            name = "WebP" if output_format == "webp" else "JPEG"
            fix = f"ask for max_size={min(limit, MAX_SIZE_LIMIT)} (or less) or format=png"
            raise OutputBeyondFormat(name, limit, (width, height), fix)


def _decode_and_infer(
    image: Image.Image, source: ImageSource, model: BackgroundModel, limits: ImageLimits, model_size: tuple[int, int]
) -> tuple[Picture, np.ndarray, float]:
    """The full-size picture (`image` is its opened, checked header) and the model's probabilities
    (and the inference time in ms).

    The full decode runs on a second thread from the start (Pillow decodes without the GIL). For
    a large baseline JPEG the model runs on a reduced draft decode made meanwhile on this thread, so the
    full decode, needed only for the cutout, has the otherwise idle second core during the draft
    decode and preprocessing, and shares the cores with the inference only for what is left.
    Both opens (header checks) happen on this thread: `open_image`'s warning filter is not
    thread-safe. Everything else is decoded once (a progressive JPEG's draft would repeat its
    costly part, the scans: `load_model_input`).
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        full_decode = pool.submit(load_picture, image)
        small = load_model_input(source, limits, model_size)
        model_input = small if small is not None else full_decode.result().rgb
        inference_started = time.perf_counter()
        width, height = image.size
        probabilities = model.probabilities(
            model_input, model_size, release_memory=width * height > RELEASE_MODEL_MEMORY_ABOVE_PIXELS
        )
        inference_ms = (time.perf_counter() - inference_started) * 1000
        return full_decode.result(), probabilities, inference_ms


def _crop(picture: Picture, alpha: Image.Image, box: Box | None, options: RenderOptions) -> tuple[Picture, Image.Image]:
    """Crop to the subject plus margin; with no subject there is nothing to crop to, so keep all.

    A region past the picture's edge (a margin that does not stop there) is filled with zeros by
    Pillow: alpha 0, so empty canvas, which the background colour fills where one is given."""
    if not options.crop or box is None:
        return picture, alpha
    region = options.margin.region((box.left, box.top, box.width, box.height), picture.size)
    cropped = replace(
        picture,
        rgb=picture.rgb.crop(region),
        alpha=picture.alpha.crop(region) if picture.alpha is not None else None,
    )
    return cropped, alpha.crop(region)


def _render(kind: OutputKind, picture: Picture, alpha: Image.Image, options: RenderOptions) -> Rendered:
    # Masks are data derived from the photo, not the photo: no metadata, no colour profile.
    exif, xmp = picture.output_metadata() if options.keep_metadata and kind == "cutout" else (None, None)
    if (
        kind == "cutout"
        and options.format == "png"
        and options.bg_color is None
        and options.max_size is None
        and options.max_pixels is None
    ):
        # The common case, composed inside the PNG encoder's threads: no full-size RGBA copy.
        data = encode_png_cutout(picture.rgb, alpha, icc_profile=picture.icc_profile, exif=exif, xmp=xmp)
        return Rendered(
            kind, data, FORMATS["png"].content_type, FORMATS["png"].extension, picture.size[0], picture.size[1]
        )
    if kind == "mask":
        image = alpha
    elif options.bg_color is not None:
        # Straight-alpha "over" onto an opaque colour: the cutout flattened, e.g. for JPEG.
        image = Image.new("RGB", picture.size, options.bg_color)
        image.paste(picture.rgb, mask=alpha)
    else:
        image = compose_cutout(picture, alpha)
    if options.max_size is not None and max(image.size) > options.max_size:
        # Lanczos: the sharpest of Pillow's downscaling filters; thumbnail keeps the aspect ratio.
        image.thumbnail((options.max_size, options.max_size), Image.Resampling.LANCZOS)
    if options.max_pixels is not None and image.width * image.height > options.max_pixels:
        scale = math.sqrt(options.max_pixels / (image.width * image.height))
        # Floor, so the product stays within the bound; at least 1 pixel on each side.
        fitted = (max(1, math.floor(image.width * scale)), max(1, math.floor(image.height * scale)))
        image = image.resize(fitted, Image.Resampling.LANCZOS)
    data = encode(
        image, options.format, icc_profile=None if kind == "mask" else picture.icc_profile, exif=exif, xmp=xmp
    )
    return Rendered(
        kind=kind,
        data=data,
        content_type=FORMATS[options.format].content_type,
        extension=FORMATS[options.format].extension,
        width=image.width,
        height=image.height,
    )
