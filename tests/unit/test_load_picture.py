"""`handler.core.image.decode.load_picture` on the odd inputs real users send, all built in memory.

Every input is turned into upright 8-bit RGB plus its own alpha (or None), or refused with a typed
error before any untrusted pixel data is decoded.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pytest
from PIL import EpsImagePlugin, GifImagePlugin, Image, ImageCms, TiffImagePlugin

from handler.core.errors import ImageTooLarge, InvalidImage, TooManyFrames, TooManyPixels, UnsupportedMediaType
from handler.core.image import decode as imaging
from handler.core.image.decode import Picture, load_picture
from handler.core.image.limits import ImageLimits

# JPEG is lossy: flat 16x16 blocks aligned to the MCU grid decode within a few levels.
JPEG_TOLERANCE = 12

# Six well-separated colours in a 3x2 grid of 16x16 blocks: every flip and rotation of the grid is
# distinguishable, and the 48x32 size tells a 90° rotation from a flip.
BLOCK = 16
GRID_COLOURS = np.array(
    [
        [(230, 20, 20), (20, 200, 20), (20, 20, 230)],
        [(240, 240, 30), (30, 230, 230), (120, 40, 160)],
    ],
    dtype=np.uint8,
)

# What a viewer shows for each EXIF orientation, written from the EXIF 2.32 definition of the tag
# (row 0 / column 0 of the stored image is the visual ...), independently of Pillow's transposes.
ORIENTATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,  # top / left
    2: lambda a: a[:, ::-1],  # top / right: mirrored
    3: lambda a: a[::-1, ::-1],  # bottom / right: rotated 180°
    4: lambda a: a[::-1, :],  # bottom / left: flipped
    5: lambda a: a.transpose(1, 0, 2),  # left / top: transposed
    6: lambda a: np.rot90(a, k=-1),  # right / top: shown rotated 90° clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # right / bottom: transversed
    8: lambda a: np.rot90(a, k=1),  # left / bottom: shown rotated 90° counter-clockwise
}


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def pixels(picture: Picture) -> np.ndarray:
    assert picture.rgb.mode == "RGB"
    return np.asarray(picture.rgb).astype(np.int16)


def alpha_of(picture: Picture) -> np.ndarray | None:
    if picture.alpha is None:
        return None
    assert picture.alpha.mode == "L" and picture.alpha.size == picture.rgb.size
    return np.asarray(picture.alpha)


def grid_image() -> np.ndarray:
    return np.repeat(np.repeat(GRID_COLOURS, BLOCK, axis=0), BLOCK, axis=1)


def block_interiors(image: np.ndarray, margin: int = 4) -> np.ndarray:
    """The pixels at least `margin` away from a block edge: lossy codecs smear colour across edges."""
    inside = (np.arange(BLOCK) >= margin) & (np.arange(BLOCK) < BLOCK - margin)
    rows = np.tile(inside, image.shape[0] // BLOCK)
    columns = np.tile(inside, image.shape[1] // BLOCK)
    return image[rows][:, columns]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims `width`x`height`, followed by a few bytes of an unfinished IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixel_data = zlib.compressobj().compress(bytes(64))  # a zlib stream that never ends
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", pixel_data)


# -- orientation ------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation: int) -> None:
    # GIVEN a camera-style JPEG: pixels stored as captured, the orientation only in EXIF
    stored = grid_image()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(Image.fromarray(stored), "JPEG", quality=95, subsampling=0, exif=exif)

    # WHEN decoded
    picture = load_picture(data)

    # THEN the pixels are upright, as a viewer shows them
    expected = ORIENTATIONS[orientation](stored).astype(np.int16)
    assert picture.size == (expected.shape[1], expected.shape[0])
    assert np.abs(pixels(picture) - expected).max() <= JPEG_TOLERANCE


# -- colour models and bit depths ---------------------------------------------------------------


def test_cmyk_jpeg_colours_are_converted() -> None:
    # GIVEN a CMYK JPEG (print workflows) with pure process colours, no embedded profile
    patches = {
        (255, 0, 0, 0): (0, 255, 255),  # cyan
        (0, 255, 0, 0): (255, 0, 255),  # magenta
        (0, 0, 255, 0): (255, 255, 0),  # yellow
        (0, 255, 255, 0): (255, 0, 0),  # magenta + yellow = red
        (0, 0, 0, 255): (0, 0, 0),  # key
        (0, 0, 0, 0): (255, 255, 255),  # no ink
    }
    cmyk = Image.new("CMYK", (BLOCK * len(patches), BLOCK))
    for index, ink in enumerate(patches):
        cmyk.paste(ink, (index * BLOCK, 0, (index + 1) * BLOCK, BLOCK))

    # WHEN decoded
    picture = load_picture(encoded(cmyk, "JPEG", quality=95))

    # THEN each patch has its RGB colour (not inverted, as Adobe CMYK JPEGs easily end up)
    rgb = pixels(picture)
    centres = np.array([rgb[BLOCK // 2, index * BLOCK + BLOCK // 2] for index in range(len(patches))])
    assert np.abs(centres - np.array(list(patches.values()))).max() <= JPEG_TOLERANCE
    assert picture.alpha is None


@pytest.mark.parametrize(
    ("sixteen_bit", "eight_bit"),
    [(0x0000, 0), (0x0100, 1), (0x7FFF, 127), (0x8000, 128), (0xC0DE, 0xC0), (0xFFFF, 255)],
)
def test_16_bit_grey_png_is_scaled_not_clipped(sixteen_bit: int, eight_bit: int) -> None:
    # GIVEN a 16-bit greyscale PNG (scientific and scanner output); one value and a full-scale white
    values = np.array([[sixteen_bit, 0xFFFF]], dtype=np.uint16)
    data = encoded(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")

    # WHEN decoded THEN the value is scaled to 8 bits (Pillow's convert("L") would clip it to 255)
    rgb = pixels(load_picture(data))
    assert rgb[0, 0].tolist() == [eight_bit] * 3
    assert rgb[0, 1].tolist() == [255] * 3


@pytest.mark.parametrize(
    ("image", "rgb", "alpha"),
    [
        pytest.param(Image.new("L", (4, 3), 77), (77, 77, 77), None, id="L"),
        pytest.param(Image.new("1", (4, 3), 1), (255, 255, 255), None, id="1-white"),
        pytest.param(Image.new("1", (4, 3), 0), (0, 0, 0), None, id="1-black"),
        pytest.param(Image.new("RGB", (4, 3), (10, 200, 30)), (10, 200, 30), None, id="RGB"),
        pytest.param(Image.new("RGBA", (4, 3), (10, 200, 30, 90)), (10, 200, 30), 90, id="RGBA"),
        pytest.param(Image.new("RGBA", (4, 3), (10, 200, 30, 255)), (10, 200, 30), None, id="RGBA-opaque"),
        pytest.param(Image.new("LA", (4, 3), (140, 0)), (140, 140, 140), 0, id="LA-transparent"),
        pytest.param(Image.new("LA", (4, 3), (140, 200)), (140, 140, 140), 200, id="LA"),
    ],
)
def test_png_modes_become_rgb_and_keep_their_alpha(
    image: Image.Image, rgb: tuple[int, int, int], alpha: int | None
) -> None:
    picture = load_picture(encoded(image, "PNG"))

    assert picture.size == (4, 3)
    assert (pixels(picture) == rgb).all()
    # an all-opaque alpha carries no information and is dropped
    found = alpha_of(picture)
    assert (found is None) if alpha is None else np.asarray(found == alpha).all()


@pytest.mark.parametrize(
    ("transparency", "alphas"),
    [
        pytest.param(0, (0, 255, 255), id="one-transparent-index"),
        pytest.param(b"\x00\x80\xff", (0, 128, 255), id="per-entry-alpha"),
    ],
)
def test_palette_png_transparency_becomes_alpha(transparency: int | bytes, alphas: tuple[int, int, int]) -> None:
    # GIVEN a palette PNG: index 0 red, 1 green, 2 blue; a row of each
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255]
    indexed = Image.fromarray(np.repeat(np.arange(3, dtype=np.uint8)[:, None], 5, axis=1), "P")
    indexed.putpalette(palette)

    # WHEN decoded with its transparency chunk
    picture = load_picture(encoded(indexed, "PNG", transparency=transparency))

    # THEN the colours come from the palette and the alpha from tRNS
    rgb, alpha = pixels(picture), alpha_of(picture)
    assert alpha is not None
    for row, expected_alpha in enumerate(alphas):
        assert (alpha[row] == expected_alpha).all()
        if row:  # the colour under a fully transparent pixel does not matter
            assert (rgb[row] == palette[3 * row : 3 * row + 3]).all()


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    animation: Any = Image.open(io.BytesIO(data))  # a GifImageFile, which has n_frames
    assert animation.n_frames == 3

    picture = load_picture(data)

    assert picture.size == (8, 6)
    assert (pixels(picture) == (255, 0, 0)).all()


@pytest.mark.parametrize(
    ("fmt", "params", "tolerance"),
    [
        ("PNG", {}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("GIF", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 90}, JPEG_TOLERANCE),
        ("JPEG", {"quality": 95, "subsampling": 0}, JPEG_TOLERANCE),
    ],
)
def test_common_formats_decode_to_rgb(fmt: str, params: dict[str, object], tolerance: int) -> None:
    stored = grid_image()

    picture = load_picture(encoded(Image.fromarray(stored), fmt, **params))

    assert picture.size == (48, 32)
    assert np.abs(block_interiors(pixels(picture)) - block_interiors(stored)).max() <= tolerance


@pytest.mark.parametrize(
    ("profile_space", "kept"),
    [("sRGB", True), ("LAB", False)],  # a non-RGB profile on RGB pixels would make viewers reject the file
)
def test_rgb_icc_profile_is_kept(profile_space: Literal["sRGB", "LAB"], kept: bool) -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile(profile_space)).tobytes()
    data = encoded(Image.fromarray(grid_image()), "JPEG", icc_profile=profile)

    picture = load_picture(data)

    assert picture.icc_profile == (profile if kept else None)


def test_a_pil_image_is_used_as_given() -> None:
    # GIVEN an already decoded image (trusted: limits apply to untrusted bytes and files)
    image = Image.new("RGBA", (40, 30), (1, 2, 3, 4))

    picture = load_picture(image, ImageLimits(max_bytes=1, max_pixels=1))

    assert picture.size == (40, 30) and (pixels(picture) == (1, 2, 3)).all()
    assert np.asarray(alpha_of(picture) == 4).all()


# -- refusals -----------------------------------------------------------------------------------


def noise_image(fmt: str) -> bytes:
    rng = np.random.default_rng(3)
    return encoded(Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)), fmt)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_truncated_file_is_invalid_image(fmt: str) -> None:
    data = noise_image(fmt)

    with pytest.raises(InvalidImage):
        load_picture(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello, this is not an image\n" * 20, id="text"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", id="pdf"),
        pytest.param(bytes(range(256)) * 4, id="binary"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, id="png-signature-only"),
    ],
)
def test_non_image_bytes_are_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        load_picture(data)


@pytest.mark.parametrize(
    ("width", "height", "limits"),
    [
        pytest.param(9_000, 9_000, ImageLimits(), id="81MP-over-our-64MP-limit"),
        pytest.param(60_000, 60_000, ImageLimits(), id="3.6GP-a-decompression-bomb"),
        pytest.param(101, 100, ImageLimits(max_pixels=10_000), id="one-row-over-a-configured-limit"),
    ],
)
def test_too_many_pixels_is_refused_from_the_header(width: int, height: int, limits: ImageLimits) -> None:
    # GIVEN a header claiming a huge image and no pixel data at all: had the decoder run, it would
    # have failed on the missing data (InvalidImage) or tried to allocate gigabytes
    data = png_header_only(width, height)

    with pytest.raises(TooManyPixels, match="pixels") as refused:
        load_picture(data, limits)
    assert refused.value.code == "too_many_pixels" and refused.value.status == 413


def test_the_header_only_png_would_fail_if_decoded() -> None:
    # The premise of the test above: within the limit, the same bytes fail on their missing data.
    with pytest.raises(InvalidImage, match="truncated"):
        load_picture(png_header_only(100, 100), ImageLimits(max_pixels=10_000))


def test_the_pixel_limit_is_inclusive() -> None:
    data = encoded(Image.new("RGB", (100, 100)), "PNG")

    assert load_picture(data, ImageLimits(max_pixels=10_000)).size == (100, 100)
    with pytest.raises(TooManyPixels):
        load_picture(data, ImageLimits(max_pixels=9_999))


def test_too_many_bytes_is_refused() -> None:
    data = noise_image("PNG")

    assert load_picture(data, ImageLimits(max_bytes=len(data))).size == (64, 64)
    with pytest.raises(ImageTooLarge, match="bytes") as refused:
        load_picture(data, ImageLimits(max_bytes=len(data) - 1))
    assert refused.value.code == "image_too_large"


def test_each_limit_has_its_own_code_and_all_are_413() -> None:
    codes = {error.code: error.status for error in (ImageTooLarge, TooManyPixels, TooManyFrames)}

    assert codes == {"image_too_large": 413, "too_many_pixels": 413, "too_many_frames": 413}


def animation(fmt: str, frames: int, **params: object) -> bytes:
    # Each frame differs from the one before, or the GIF and APNG writers would merge them.
    images = [Image.new("RGB", (4, 4), (i % 256, i // 256, 0)) for i in range(frames)]
    return encoded(images[0], fmt, save_all=True, append_images=images[1:], **params)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("GIF", {}), ("PNG", {}), ("TIFF", {}), ("WEBP", {"lossless": True})],
    ids=["gif", "apng", "tiff-pages", "webp"],
)
def test_the_frame_limit_is_inclusive(fmt: str, params: dict[str, object]) -> None:
    limits = ImageLimits(max_frames=5)

    assert load_picture(animation(fmt, 5, **params), limits).size == (4, 4)
    with pytest.raises(TooManyFrames, match="more than 5 frames") as refused:
        load_picture(animation(fmt, 6, **params), limits)
    assert refused.value.code == "too_many_frames" and refused.value.status == 413


@pytest.mark.parametrize(
    ("fmt", "plugin", "method"),
    [("GIF", GifImagePlugin.GifImageFile, "_seek"), ("TIFF", TiffImagePlugin.TiffImageFile, "_seek")],
)
def test_frames_are_counted_no_further_than_the_limit(
    fmt: str, plugin: type, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 3000-frame file (GIF and TIFF declare no count: counting walks the file)
    data = animation(fmt, 3000)
    steps: list[int] = []
    real = getattr(plugin, method)

    def counted(self: Image.Image, frame: int, *args: object) -> None:
        steps.append(frame)
        return real(self, frame, *args)

    monkeypatch.setattr(plugin, method, counted)

    # WHEN it is checked against a limit of 10
    with pytest.raises(TooManyFrames):
        load_picture(data, ImageLimits(max_frames=10))

    # THEN the walk stopped at frame index 10 (the 11th frame, one past the limit), not at 2999
    assert max(steps) == 10


@pytest.mark.filterwarnings("ignore:Truncated File Read")
def test_a_tiff_whose_later_frame_is_broken_is_invalid_not_a_crash() -> None:
    # Found by the corpus: a truncated multi-page TIFF made Pillow raise TypeError on its second frame.
    data = animation("TIFF", 3)

    with pytest.raises(InvalidImage):
        load_picture(data[: len(data) // 10])


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_any_bytes_like_source_is_read(wrap: Callable[[bytes], object]) -> None:
    data = encoded(Image.new("RGB", (5, 4), (9, 8, 7)), "PNG")

    picture = load_picture(wrap(data))  # type: ignore[arg-type]

    assert picture.size == (5, 4) and (pixels(picture) == (9, 8, 7)).all()


def test_formats_outside_the_allow_list_are_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN formats Pillow could open (EPS would even run Ghostscript) but uploads may not use,
    # and an EPS plugin that fails the test if it is ever asked to read anything
    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the EPS plugin (and so Ghostscript) was reached")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", never)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", never)
    ico, ppm = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(ico, "ICO")
    Image.new("RGB", (16, 16), "red").save(ppm, "PPM")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"

    # THEN each is refused as a format this service does not take, named from its magic number
    for data, name in ((ico.getvalue(), "ICO"), (ppm.getvalue(), "PPM"), (eps, "EPS")):
        with pytest.raises(UnsupportedMediaType) as caught:
            load_picture(data)
        assert caught.value.status == 415
        assert caught.value.message.startswith(f"{name} images are not accepted")
        assert "HEIC" in caught.value.message and "AVIF" in caught.value.message


# The ISO-BMFF header of an iPhone photo (size, "ftyp", major brand "heic") with nothing after it.
HEIC_HEADER = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic" + b"\x00" * 32


@pytest.fixture
def without_decoder(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Simulate an installation without one format's decoder (e.g. pillow-heif missing)."""

    def remove(name: str) -> None:
        kept = tuple(fmt for fmt in imaging._decodable_formats() if fmt != name)
        monkeypatch.setattr(imaging, "_decodable_formats", lambda: kept)

    return remove


@pytest.mark.parametrize(("fmt", "brand"), [("HEIF", b"heic"), ("AVIF", b"avif")])
def test_phone_format_without_its_decoder_is_unsupported_not_invalid(
    without_decoder: Callable[[str], None], fmt: str, brand: bytes
) -> None:
    # GIVEN a real photo of the format, and an installation without its decoder
    data = encoded(Image.fromarray(grid_image()), fmt, quality=90)
    assert data[8:12] == brand
    without_decoder(fmt)

    # THEN it is refused as an unsupported format (415), naming it, rather than as not an image
    with pytest.raises(UnsupportedMediaType, match=fmt):
        load_picture(data)


def test_a_truncated_heic_with_its_decoder_installed_is_invalid() -> None:
    with pytest.raises(InvalidImage, match="HEIF"):
        load_picture(HEIC_HEADER)


# -- phone and camera formats: HEIC (pillow-heif) and AVIF (Pillow's own) --------------------------

PHONE_FORMATS = [("HEIF", {"quality": 90}), ("AVIF", {"quality": 90})]
# Lossy HEVC/AV1 at quality 90 on flat blocks; measured differences were 1 (HEIC) and 8 (AVIF).
PHONE_TOLERANCE = 12


@pytest.mark.parametrize(("fmt", "params"), PHONE_FORMATS)
@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_phone_formats_are_upright_exactly_once(fmt: str, params: dict[str, object], orientation: int) -> None:
    # GIVEN a phone photo whose orientation is in EXIF; pillow-heif also writes it as the HEIF
    # transform (irot/imir) an iPhone writes, which libheif applies while decoding
    stored = grid_image()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(Image.fromarray(stored), fmt, exif=exif.tobytes(), **params)
    if fmt == "HEIF" and orientation in (6, 8):
        assert b"irot" in data

    # WHEN decoded
    picture = load_picture(data)

    # THEN the pixels are as a viewer shows them: turned once, never twice
    expected = ORIENTATIONS[orientation](stored).astype(np.int16)
    assert picture.size == (expected.shape[1], expected.shape[0])
    assert np.abs(block_interiors(pixels(picture)) - block_interiors(expected)).max() <= PHONE_TOLERANCE
    # and the EXIF an output may carry says so (a turned photo always has one)
    exif_out, _ = picture.output_metadata()
    if orientation != 1:
        assert exif_out is not None
        kept = Image.Exif()
        kept.load(exif_out)
        assert kept[0x0112] == 1


@pytest.mark.parametrize(("fmt", "params"), PHONE_FORMATS)
def test_phone_formats_keep_their_icc_profile(fmt: str, params: dict[str, object]) -> None:
    # iPhones tag their photos Display P3; any RGB profile must reach the outputs unchanged.
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(Image.fromarray(grid_image()), fmt, icc_profile=profile, **params)

    assert load_picture(data).icc_profile == profile
