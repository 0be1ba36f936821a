"""Formats Pillow recognises but uploads may not use: 415 naming the format, never their decoder."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import EpsImagePlugin, Image

from handler.core.errors import InvalidImage, TooManyPixels, UnsupportedMediaType
from handler.core.image.decode import load_picture
from handler.core.image.limits import ImageLimits
from handler.core.image.refused_formats import HEAD_BYTES, refused_format


def _written(fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (16, 16), "red" if mode == "RGB" else 1).save(buffer, fmt)
    return buffer.getvalue()


# Files as Pillow itself writes them: Pillow must recognise each as the format we name.
WRITTEN = {
    name: (fmt, mode)
    for name, fmt, mode in (
        ("SGI", "SGI", "RGB"),
        ("ICO", "ICO", "RGB"),
        ("PPM", "PPM", "RGB"),
        ("DDS", "DDS", "RGB"),
        ("QOI", "QOI", "RGB"),
        ("XBM", "XBM", "1"),
        ("MSP", "MSP", "1"),
        ("IM", "IM", "RGB"),
    )
}
# Headers built from the formats' specifications, for formats Pillow reads but cannot write.
PSD = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 4, 4, 8, 3) + struct.pack(">III", 0, 0, 0) + b"\x00\x00" + b"\x80" * 48
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
DOS_EPS = b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIIIH", 30, len(EPS), 0, 0, 0, 0, 0xFFFF) + EPS
# FLI: file size, magic 0xAF11, 1 frame, 16x16, depth 8.
FLI = struct.pack("<IHHHHH", 128, 0xAF11, 1, 16, 16, 8) + b"\x00" * 116
# Kodak Photo CD: the "PCD_IPI" marker at 2048.
PCD = b"\x00" * 2048 + b"PCD_IPI" + b"\x00" * 1024
HANDMADE = {"PSD": PSD, "EPS": EPS, "EPS (DOS)": DOS_EPS, "FLI": FLI, "PCD": PCD}


@pytest.fixture(autouse=True)
def no_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the EPS plugin (and so Ghostscript) was reached")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", never)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", never)


def _cases() -> list[tuple[str, bytes]]:
    cases = []
    for name, (fmt, mode) in WRITTEN.items():
        try:
            cases.append((name, _written(fmt, mode)))
        except (KeyError, OSError, ValueError):  # a writer this Pillow build lacks
            continue
    return cases + [(name.split()[0], data) for name, data in HANDMADE.items()]


@pytest.mark.parametrize(("name", "data"), _cases(), ids=[name for name, _ in _cases()])
def test_a_refused_format_is_unsupported_media_type_naming_it(name: str, data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        load_picture(data)

    assert caught.value.status == 415
    assert caught.value.message.startswith(f"{name} images are not accepted")
    # The formats we do take, HEIC and AVIF among them
    for accepted in ("JPEG", "PNG", "WebP", "HEIC", "AVIF"):
        assert accepted in caught.value.message


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_the_named_format_is_the_one_pillow_recognises(name: str) -> None:
    fmt, mode = WRITTEN[name]
    try:
        data = _written(fmt, mode)
    except (KeyError, OSError, ValueError):
        pytest.skip(f"this Pillow cannot write {fmt}")

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == name
    assert refused_format(data[:HEAD_BYTES]) == name


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"])
def test_no_accepted_format_is_ever_claimed(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(buffer, fmt)

    assert refused_format(buffer.getvalue()[:HEAD_BYTES]) is None


@pytest.mark.parametrize("data", [b"", b"\x00" * 4096, b"meeting notes, not a photo\n", b"<svg/>"])
def test_what_is_no_image_stays_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        load_picture(data)


def test_too_many_pixels_names_our_limit_not_pillows_warning() -> None:
    # A header claiming far more pixels than Pillow's own bomb threshold: Pillow refuses it first
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", 65_535, 65_535)  # the logical screen's width and height

    with pytest.raises(TooManyPixels) as caught:
        load_picture(bytes(data), ImageLimits(max_pixels=1_000))

    assert caught.value.message == "the image has too many pixels; the limit is 1,000"
    assert "decompression" not in caught.value.message.lower()


@pytest.mark.parametrize("fmt", ["TGA", "PCX"])
def test_a_format_without_magic_is_never_named_as_another(fmt: str) -> None:
    # An uncompressed TGA starts 00 00 02 00, as a Windows cursor (CUR) does: naming it would be a guess
    data = _written(fmt)

    assert refused_format(data[:HEAD_BYTES]) is None
    with pytest.raises(InvalidImage):
        load_picture(data)
