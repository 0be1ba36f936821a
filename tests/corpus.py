"""A generated corpus of hostile and broken inputs, the same on every run (seeded).

Each `Case` carries the bytes and the outcome codes it may end in (None: any outcome that is a
defined one, i.e. a success or a `BackgroundRemovalError`). The families follow issue #7:
sample photos truncated at many offsets and bit-flipped, wrong magic, zero bytes, headers
claiming 100000x100000, PNG chunk bombs (iCCP, zTXt, iTXt, tEXt), animations with thousands of
frames, structures past their decoder's bounds (JPEG scans, PNG chunks, GIF blocks, TIFF tags and
strips, ...), TIFF compressions, formats outside the allow-list, valid images in wrong containers,
and the regression cases the fuzzer found. Used by the corpus tests and `scripts/corpus_report.py`.
"""

from __future__ import annotations

import base64
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
REGRESSIONS = ROOT / "tests" / "corpus_regressions"

OK = "ok"  # the outcome of a decodable image
# Every code an input can end in; anything else (or an exception) is a bug.
KNOWN_CODES = frozenset(
    {
        OK,
        "invalid_image",
        "missing_image",
        "image_too_large",
        "too_many_pixels",
        "too_many_frames",
        "too_complex",
        "unsupported_media_type",
    }
)
HUGE = 100_000
SEED = 7
TRUNCATIONS_PER_SAMPLE = 24
FLIPS_PER_SAMPLE = 16
MANY_FRAMES = 1500  # above the default MAX_INPUT_FRAMES (1000)
# The zip bombs: 64 MiB of zeros deflate to ~64 kB.
BOMB_BYTES = 64 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    data: bytes
    expect: frozenset[str] | None = None  # None: any known outcome

    @property
    def label(self) -> str:
        return f"{self.family}/{self.name}"


def cases() -> list[Case]:
    """The whole corpus (a few hundred cases, ~2 MB, built in about a second)."""
    rng = random.Random(SEED)
    made = made_images()
    samples = {path.stem: path.read_bytes() for path in sorted(SAMPLES.glob("*.jpg"))}
    return [
        *(Case("valid", name, data, frozenset({OK})) for name, data in {**samples, **made}.items()),
        *truncated(samples, made, rng),
        *bit_flipped(samples, made, rng),
        *wrong_magic(samples, made),
        *empty(),
        *huge_claims(),
        *png_chunk_bombs(),
        *many_frames(),
        *structures(),
        *refused_formats(),
        *wrong_containers(samples, made),
        *regressions(),
    ]


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _picture(mode: str = "RGB", size: tuple[int, int] = (48, 32)) -> Image.Image:
    """A small picture with structure (a gradient and a block), so compressors have work to do."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((200, 30, 40), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return image.convert(mode)


def made_images() -> dict[str, bytes]:
    """Small valid images in every allowed format, including TIFF's odd compressions."""
    rgb = _picture()
    frames = [_picture().rotate(angle) for angle in (0, 90, 180)]
    images = {
        "png-rgb": _save(rgb, "PNG"),
        "png-rgba": _save(_picture("RGBA"), "PNG"),
        "png-palette": _save(_picture("P"), "PNG", transparency=0),
        "png-16bit": _save(_picture("L").convert("I;16"), "PNG"),
        "apng-3": _save(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "gif": _save(_picture("P"), "GIF"),
        "gif-animated-3": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp-lossy": _save(rgb, "WEBP", quality=80),
        "webp-lossless-rgba": _save(_picture("RGBA"), "WEBP", lossless=True),
        "webp-animated-3": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "bmp": _save(rgb, "BMP"),
        "bmp-rle8": _bmp_rle8(),
        "jpeg-cmyk": _save(_picture("CMYK"), "JPEG"),
        "jpeg-progressive": _save(rgb, "JPEG", progressive=True),
        "tiff-multipage-3": _save(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
    }
    for compression in ("raw", "tiff_lzw", "packbits", "jpeg", "tiff_adobe_deflate", "tiff_deflate"):
        images[f"tiff-{compression}"] = _save(rgb, "TIFF", compression=compression)
    for compression in ("group3", "group4", "tiff_ccitt"):
        images[f"tiff-{compression}"] = _save(_picture("1"), "TIFF", compression=compression)
    images["tiff-lzw-predictor"] = _save(rgb, "TIFF", compression="tiff_lzw", tiffinfo={317: 2})
    images["tiff-float"] = _save(_picture("F"), "TIFF")
    return images


def _bmp_rle8() -> bytes:
    """A BMP with RLE8 compression (Pillow reads it but cannot write it)."""
    width, height = 8, 4
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    rows = b"".join(bytes((width, 40 * row)) + b"\x00\x00" for row in range(height)) + b"\x00\x01"
    header_size = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", header_size + len(rows), 0, 0, header_size) + info + palette + rows


def truncated(samples: dict[str, bytes], made: dict[str, bytes], rng: random.Random) -> Iterator[Case]:
    """Every sample cut at many offsets: inside the header, then spread over the whole file."""
    for name, data in samples.items():
        offsets = {1, 2, 3, 4, 8, 16, 64, 200, 600, len(data) - 2, len(data) - 1}
        offsets |= {rng.randrange(1, len(data)) for _ in range(TRUNCATIONS_PER_SAMPLE - len(offsets))}
        for offset in sorted(offsets):
            yield Case("truncated", f"{name}@{offset}", data[:offset])
    for name, data in made.items():
        for fraction in (0.1, 0.5, 0.9):
            yield Case("truncated", f"{name}@{fraction:.0%}", data[: max(1, int(len(data) * fraction))])


def bit_flipped(samples: dict[str, bytes], made: dict[str, bytes], rng: random.Random) -> Iterator[Case]:
    """Random bit flips: one in the first 1 kB (the headers), or a burst of 8 anywhere."""
    sources = [(name, data, FLIPS_PER_SAMPLE) for name, data in samples.items()]
    sources += [(name, data, 2) for name, data in made.items()]
    for name, data, count in sources:
        for number in range(count):
            flipped = bytearray(data)
            positions = (
                [rng.randrange(min(len(data), 1024))]
                if number % 2 == 0
                else [rng.randrange(len(data)) for _ in range(8)]
            )
            for position in positions:
                flipped[position] ^= 1 << rng.randrange(8)
            yield Case("bitflip", f"{name}#{number}", bytes(flipped))


def wrong_magic(samples: dict[str, bytes], made: dict[str, bytes]) -> Iterator[Case]:
    jpeg = next(iter(samples.values()))
    png = made["png-rgb"]
    refused = frozenset({"invalid_image"})
    yield Case("wrong_magic", "jpeg-with-png-magic", PNG_MAGIC + jpeg[8:], refused)
    # The JPEG's next bytes read as a GIF screen size of thousands of pixels each way.
    yield Case("wrong_magic", "jpeg-with-gif-magic", b"GIF89a" + jpeg[6:], refused | {"too_many_pixels"})
    yield Case("wrong_magic", "png-with-jpeg-magic", b"\xff\xd8\xff\xe0" + png[4:], refused)
    yield Case("wrong_magic", "jpeg-magic-zeroed", b"\x00\x00\x00" + jpeg[3:], refused)
    yield Case("wrong_magic", "png-magic-only", PNG_MAGIC, refused)
    yield Case("wrong_magic", "jpeg-soi-only", b"\xff\xd8", refused)
    yield Case("wrong_magic", "riff-webp-without-chunks", b"RIFF\x04\x00\x00\x00WEBP", refused)
    yield Case("wrong_magic", "tiff-header-only", b"II*\x00\x08\x00\x00\x00", refused)
    yield Case("wrong_magic", "bmp-header-only", b"BM" + b"\x00" * 12, refused)


def empty() -> Iterator[Case]:
    refused = frozenset({"invalid_image"})
    # An empty request body is no image at all (the API's missing_image); an empty object is invalid.
    yield Case("empty", "zero-bytes", b"", refused | {"missing_image"})
    for size in (1, 16, 4096):
        yield Case("empty", f"zeros-{size}", b"\x00" * size, refused)
    yield Case("empty", "ff-4096", b"\xff" * 4096, refused)
    yield Case("empty", "text", b"meeting notes, not a photo\n", refused)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, *chunks: bytes, idat: bytes | None = None) -> bytes:
    """An 8-bit RGB PNG written by hand: IHDR, `chunks`, then one IDAT of `idat` (default: black)."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if idat is None:
        idat = zlib.compress(b"".join(b"\x00" + b"\x00" * 3 * width for _ in range(height)))
    return PNG_MAGIC + ihdr + b"".join(chunks) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def huge_claims() -> Iterator[Case]:
    """Headers claiming 100000x100000 (10 gigapixels) in front of a few bytes of data."""
    too_big = frozenset({"too_many_pixels"})
    yield Case("huge_claim", "png", png(HUGE, HUGE, idat=zlib.compress(b"\x00" * 1000)), too_big)
    jpeg = _save(_picture(), "JPEG")
    sof = jpeg.index(b"\xff\xc0")
    yield Case("huge_claim", "jpeg", jpeg[: sof + 5] + struct.pack(">HH", HUGE % 65536, HUGE % 65536) + jpeg[sof + 9 :])
    yield Case(
        "huge_claim", "jpeg-65535", jpeg[: sof + 5] + struct.pack(">HH", 65535, 65535) + jpeg[sof + 9 :], too_big
    )
    gif = bytearray(_save(_picture("P"), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # GIF's fields are 16-bit: 65535 is its largest claim
    yield Case("huge_claim", "gif-screen", bytes(gif), too_big)
    bmp = bytearray(_save(_picture(), "BMP"))
    bmp[18:26] = struct.pack("<ii", HUGE, HUGE)
    yield Case("huge_claim", "bmp", bytes(bmp), too_big)
    bmp[18:26] = struct.pack("<ii", HUGE, -HUGE)  # top-down
    yield Case("huge_claim", "bmp-top-down", bytes(bmp), too_big)
    yield Case("huge_claim", "tiff", _tiff_claiming(HUGE, HUGE), too_big)
    yield Case("huge_claim", "webp-vp8x", _webp_vp8x_claiming(HUGE, HUGE))


def _tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF (8-bit grey, uncompressed) whose strip holds 16 bytes."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HHI", tag, kind, count) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
        ifd += packed
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + b"\x00\x00\x00\x00" + b"\x00" * 16


def _webp_vp8x_claiming(width: int, height: int) -> bytes:
    """A VP8X (extended) WebP whose canvas claims `width`x`height` around a small lossy frame."""
    lossy = _save(_picture(), "WEBP", quality=50)
    vp8 = lossy[12:]  # the VP8 chunk of a simple-format WebP
    vp8x = (
        b"VP8X"
        + struct.pack("<I", 10)
        + b"\x00\x00\x00\x00"
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    body = b"WEBP" + vp8x + vp8
    return b"RIFF" + struct.pack("<I", len(body)) + body


@cache
def _zip_bomb() -> bytes:
    return zlib.compress(b"\x00" * BOMB_BYTES, 9)


def png_chunk_bombs() -> Iterator[Case]:
    """PNG ancillary chunks whose content inflates far beyond the file (zip bombs) or is simply huge."""
    bomb = _zip_bomb()
    yield Case("png_chunks", "iccp-64MiB-zip-bomb", png(4, 4, png_chunk(b"iCCP", b"icc\x00\x00" + bomb)))
    yield Case("png_chunks", "ztxt-64MiB-zip-bomb", png(4, 4, png_chunk(b"zTXt", b"Comment\x00\x00" + bomb)))
    yield Case(
        "png_chunks", "itxt-64MiB-zip-bomb", png(4, 4, png_chunk(b"iTXt", b"Comment\x00\x01\x00en\x00\x00" + bomb))
    )
    yield Case("png_chunks", "text-2MiB", png(4, 4, png_chunk(b"tEXt", b"Comment\x00" + b"a" * (2 << 20))))
    # 80 chunks of 1 MiB of text each: every one within Pillow's per-chunk limit, 80 MiB together.
    one_mib = zlib.compress(b"b" * ((1 << 20) - 64), 9)
    yield Case(
        "png_chunks", "ztxt-80x1MiB", png(4, 4, *(png_chunk(b"zTXt", b"k%d\x00\x00" % i + one_mib) for i in range(80)))
    )
    # Text after the image data is read only when the pixels are loaded.
    after = png(4, 4)
    iend = after.rindex(b"IEND") - 4
    yield Case(
        "png_chunks",
        "ztxt-bomb-after-idat",
        after[:iend] + png_chunk(b"zTXt", b"Comment\x00\x00" + bomb) + after[iend:],
    )
    yield Case("png_chunks", "chunk-length-4GiB", png(4, 4, struct.pack(">I", 0xFFFFFFF0) + b"tEXt" + b"x" * 32))
    # The pixels of a 4x4 image followed by 64 MiB more: the decoder stops at the image's size.
    yield Case("png_chunks", "idat-64MiB-for-4x4", png(4, 4, idat=bomb), frozenset({OK}))


def many_frames() -> Iterator[Case]:
    too_many = frozenset({"too_many_frames"})
    # Each frame differs from the one before, so that the GIF and APNG writers keep every one.
    rgb = [Image.new("RGB", (2, 2), (i % 256, i // 256, 0)) for i in range(MANY_FRAMES)]
    yield Case(
        "many_frames", f"gif-{MANY_FRAMES}", _save(rgb[0], "GIF", save_all=True, append_images=rgb[1:]), too_many
    )
    yield Case(
        "many_frames", f"apng-{MANY_FRAMES}", _save(rgb[0], "PNG", save_all=True, append_images=rgb[1:]), too_many
    )
    yield Case(
        "many_frames",
        f"tiff-{MANY_FRAMES}-pages",
        _save(rgb[0], "TIFF", save_all=True, append_images=rgb[1:]),
        too_many,
    )
    yield Case(
        "many_frames",
        f"webp-{MANY_FRAMES}",
        _save(rgb[0], "WEBP", save_all=True, append_images=rgb[1:], lossless=True),
        too_many,
    )
    # An APNG whose acTL claims 2^31 frames but carries one.
    apng = _save(_picture(), "PNG", save_all=True, append_images=[_picture().rotate(90)])
    actl = apng.index(b"acTL")
    yield Case(
        "many_frames",
        "apng-claiming-2^31",
        apng[: actl - 4] + png_chunk(b"acTL", struct.pack(">II", 0x80000000, 0)) + apng[actl + 16 :],
    )
    # A TIFF whose IFD chain loops back on itself.
    tiff = bytearray(_save(_picture(), "TIFF"))
    ifd = struct.unpack("<I", tiff[4:8])[0]
    count = struct.unpack("<H", tiff[ifd : ifd + 2])[0]
    next_at = ifd + 2 + 12 * count
    tiff[next_at : next_at + 4] = struct.pack("<I", ifd)
    yield Case("many_frames", "tiff-ifd-loop", bytes(tiff))


def structures() -> Iterator[Case]:
    """Files that hold more of their decoder's costly units than a photo (tests/hostile.py): one past
    each default bound (refused from their bytes), and the issue's JPEG whose scans repeat."""
    from handler.core.image.limits import StructureLimits
    from tests import hostile

    bounds = StructureLimits()
    too_complex = frozenset({"too_complex"})
    yield Case("structure", "jpeg-600-scans-12mp", hostile.jpeg_with_scans(600, size=(4000, 3000)), too_complex)
    yield Case("structure", "jpeg-scans-past-bound", hostile.jpeg_with_scans(bounds.jpeg_scans + 1), too_complex)
    yield Case("structure", "jpeg-scans-at-bound", hostile.jpeg_with_scans(bounds.jpeg_scans), frozenset({OK}))
    yield Case("structure", "jpeg-segments", hostile.jpeg_with_segments(bounds.segments + 1), too_complex)
    yield Case("structure", "png-chunks", hostile.png_with_chunks(bounds.segments + 1), too_complex)
    yield Case("structure", "webp-chunks", hostile.webp_with_chunks(bounds.segments + 1), too_complex)
    yield Case("structure", "gif-blocks", hostile.gif_with_blocks(bounds.gif_blocks + 1), too_complex)
    yield Case("structure", "tiff-strips", hostile.tiff_with_strips(bounds.tiff_strips + 1), too_complex)
    yield Case("structure", "tiff-tags", hostile.tiff_with_tags(bounds.tiff_tags + 1), too_complex)
    yield Case("structure", "bmp-rle8", hostile.bmp_rle8(2049, 2048), too_complex)
    yield Case("structure", "avif-items", hostile.avif_with_items(bounds.heif_items + 1), too_complex)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"


def refused_formats() -> Iterator[Case]:
    """Formats Pillow can read that uploads may not use: never decoded (EPS would run Ghostscript).

    Those with a magic number are named (415 unsupported_media_type); TGA, PCX and SPIDER have
    none, and PDF and SVG are no format Pillow reads: those stay "not an image" (400 invalid_image).
    """
    named = frozenset({"unsupported_media_type"})
    rgb = _picture()
    yield Case("refused_format", "eps", EPS, named)
    yield Case("refused_format", "postscript", b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", named)
    # DOS EPS binary header (C5D0D3C6) with a TIFF preview: Pillow's EPS plugin would take it.
    postscript_offset = 30
    dos_eps = b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIIIH", postscript_offset, len(EPS), 0, 0, 0, 0, 0xFFFF) + EPS
    yield Case("refused_format", "dos-eps", dos_eps, named)
    not_an_image = frozenset({"invalid_image"})
    yield Case("refused_format", "pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", not_an_image)
    for fmt, mode in (
        ("ICO", "RGB"),
        ("PPM", "RGB"),
        ("PCX", "RGB"),
        ("TGA", "RGB"),
        ("SGI", "RGB"),
        ("XBM", "1"),
        ("DDS", "RGB"),
        ("MSP", "1"),
        ("SPIDER", "F"),
        ("QOI", "RGB"),
    ):
        try:
            data = _save(rgb.convert(mode), fmt)
        except (KeyError, OSError, ValueError):  # a writer this Pillow build lacks
            continue
        yield Case("refused_format", fmt.lower(), data, not_an_image if fmt in ("PCX", "TGA", "SPIDER") else named)
    yield Case("refused_format", "psd", _psd(), named)
    yield Case(
        "refused_format",
        "svg",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        frozenset({"invalid_image"}),
    )


def _psd() -> bytes:
    """A minimal Photoshop file: header, empty sections, raw 8-bit RGB data."""
    width, height = 4, 4
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + b"\x80" * (3 * width * height)


def wrong_containers(samples: dict[str, bytes], made: dict[str, bytes]) -> Iterator[Case]:
    """A valid image wrapped in something it does not belong in."""
    jpeg = next(iter(samples.values()))
    png_data = made["png-rgb"]
    yield Case(
        "wrong_container",
        "jpeg-after-http-headers",
        b"Content-Type: image/jpeg\r\n\r\n" + jpeg,
        frozenset({"invalid_image"}),
    )
    yield Case("wrong_container", "jpeg-in-png-idat", png(48, 32, idat=jpeg), frozenset({"invalid_image"}))
    riff = b"WEBP" + b"VP8 " + struct.pack("<I", len(jpeg)) + jpeg
    yield Case(
        "wrong_container",
        "jpeg-in-riff-webp",
        b"RIFF" + struct.pack("<I", len(riff)) + riff,
        frozenset({"invalid_image"}),
    )
    ico = _save(Image.open(io.BytesIO(png_data)).convert("RGBA"), "ICO", sizes=[(32, 32)])
    # An ICO and an EPS are what they are whatever they carry: formats we refuse, named (415).
    yield Case("wrong_container", "png-in-ico", ico, frozenset({"unsupported_media_type"}))
    yield Case("wrong_container", "jpeg-in-eps", EPS + jpeg, frozenset({"unsupported_media_type"}))
    yield Case("wrong_container", "jpeg-in-zip", _zip("photo.jpg", jpeg), frozenset({"invalid_image"}))
    yield Case("wrong_container", "base64-of-jpeg", base64.b64encode(jpeg), frozenset({"invalid_image"}))
    # A JPEG with trailing garbage (common from broken uploaders) still decodes.
    yield Case("wrong_container", "jpeg-with-trailing-zip", jpeg + _zip("x.txt", b"x" * 100), frozenset({OK}))
    yield Case("wrong_container", "png-with-trailing-jpeg", png_data + jpeg, frozenset({OK}))


def _zip(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def regressions() -> Iterator[Case]:
    """Inputs the fuzzer found (fuzz/README.md): each file is kept as found."""
    for path in sorted(REGRESSIONS.glob("*")) if REGRESSIONS.is_dir() else []:
        if path.is_file() and not path.name.startswith("."):
            yield Case("regression", path.name, path.read_bytes())


def decode_outcome(data: bytes) -> str:
    """`load_picture` with the default limits: OK, an error code, or the name of anything else raised."""
    from handler.core.errors import BackgroundRemovalError
    from handler.core.image.decode import load_picture

    try:
        load_picture(data)
    except BackgroundRemovalError as error:
        return error.code
    except Exception as error:  # noqa: BLE001 - exactly what the corpus is looking for
        return f"{type(error).__name__}: {error}"
    return OK


def _virtual_memory_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def main() -> None:
    """Decode every case under an address-space limit of the process's size + HEADROOM_MB.

    Prints one JSON document: {"outcomes": {label: outcome}, "guard_works": bool, "peak_rss_mb": ...}.
    An allocation beyond the headroom fails with MemoryError, which shows up as that case's outcome.
    """
    import argparse
    import json
    import resource
    import warnings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--headroom-mb", type=int, default=1024)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Pillow warns about every corrupt EXIF block
    corpus = cases()
    decode_outcome(corpus[0].data)  # import and initialise the decoders before measuring the baseline
    limit = _virtual_memory_bytes() + args.headroom_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:  # the premise: an allocation past the headroom really fails
        bytearray((args.headroom_mb + 64) * 1024 * 1024)
        guard_works = False
    except MemoryError:
        guard_works = True
    outcomes = {case.label: decode_outcome(case.data) for case in corpus}
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"outcomes": outcomes, "guard_works": guard_works, "peak_rss_mb": round(peak_rss_mb, 1)}))


if __name__ == "__main__":
    main()
