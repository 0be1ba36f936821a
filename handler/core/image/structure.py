"""Counting what a file would make its decoder walk, from its bytes alone, before any decoder runs.

Bytes, pixels and frames do not bound what a decode costs. A progressive JPEG that repeats its
last scan hundreds of times is 72 kB, yet libjpeg passes over every pixel once per scan; Pillow
parses PNG chunks, GIF blocks, TIFF tags, JPEG marker segments and the stray bytes between them
one at a time in Python, and decodes uncompressed TIFF strips and RLE BMPs in Python too. Each
walk here counts those units the way the decoder would meet them and stops one past its bound
(`StructureLimits`), so what it costs itself is bounded the same way; anything it cannot parse
ends the count, and the decoder then reports the file as corrupt.

Only the formats the decoders accept are walked (handler.core.image.decode.DECODABLE_FORMATS):
told by their magic numbers, as Pillow's plugins tell them.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Callable, Iterator

from handler.core.errors import TooComplex
from handler.core.image.limits import ImageLimits

# What the walks read: the upload's bytes, or a file mapped read-only (both index and slice alike).
Bytes = bytes | mmap.mmap


def check_structure(data: Bytes, limits: ImageLimits) -> None:
    """Raise TooComplex when `data` holds more of its format's costly units than `limits` allow."""
    head = data[:16]
    for accepts, walk in _WALKS:
        if accepts(head):
            walk(data, limits)
            return


class _Counter:
    """Counts one kind of unit and refuses the file one past the bound."""

    def __init__(self, bound: int, describe: Callable[[int], str]) -> None:
        self.bound = bound
        self.count = 0
        self._describe = describe

    def add(self, units: int = 1) -> None:
        self.count += units
        if self.count > self.bound:
            raise TooComplex(self._describe(self.bound))


# --- JPEG (and MPO) ---------------------------------------------------------------------------

# The next marker in entropy-coded data: 0xFF followed by anything but a stuffed zero, a restart
# marker (RST0-7, part of the scan) or another 0xFF (fill).
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_FF_RUN = re.compile(rb"\xff+")
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Markers without a length: TEM, RST0-7 and a stuffed zero (SOI/EOI are handled on their own).
_JPEG_STANDALONE = frozenset({0x00, 0x01, *range(0xD0, 0xD8)})


def jpeg_units(data: Bytes) -> Iterator[tuple[int, int]]:
    """(marker, stray bytes before it) for each marker segment up to EOI; SOS segments with their scan.

    Before the first scan, Pillow's header parser steps over stray bytes and 0xFF fill one at a
    time, so those are reported beside each marker (after it libjpeg skips them in C).
    """
    position, size = 2, len(data)
    while position + 4 <= size:
        run = _JPEG_FF_RUN.search(data, position)
        if run is None:
            return
        stray = run.end() - 1 - position  # whatever precedes the marker's own 0xFF
        position = run.end() - 1
        marker = data[position + 1 : position + 2]
        if not marker or marker[0] == _JPEG_EOI:
            return
        code = marker[0]
        if code in _JPEG_STANDALONE:
            yield code, stray
            position += 2
            continue
        header = data[position + 2 : position + 4]
        if len(header) < 2:
            return
        end = position + 2 + struct.unpack(">H", header)[0]
        yield code, stray
        if code == _JPEG_SOS:
            found = _JPEG_NEXT_MARKER.search(data, end)
            if found is None:
                return
            end = found.start()
        position = end


def _walk_jpeg(data: Bytes, limits: ImageLimits) -> None:
    bounds = limits.structure
    scans = _Counter(
        bounds.jpeg_scans,
        lambda bound: (
            f"the JPEG has more than {bound} scans; the limit is {bound} "
            "(progressive photos have about 10, each one more pass of the decoder over every pixel)"
        ),
    )
    segments = _Counter(
        bounds.segments,
        lambda bound: f"the JPEG has more than {bound:,} marker segments and stray bytes; the limit is {bound:,}",
    )
    for code, stray in jpeg_units(data):
        segments.add(1 + (stray if scans.count == 0 else 0))
        if code == _JPEG_SOS:
            scans.add()


# --- PNG and WebP: chunks -----------------------------------------------------------------------


def png_chunks(data: Bytes) -> Iterator[bytes]:
    """The type of each chunk, up to IEND (Pillow reads nothing after it)."""
    position, size = 8, len(data)
    while position + 8 <= size:
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        yield kind
        if kind == b"IEND":
            return
        position += 12 + length


def _walk_png(data: Bytes, limits: ImageLimits) -> None:
    bound = limits.structure.segments
    chunks = _Counter(bound, lambda bound: f"the PNG has more than {bound:,} chunks; the limit is {bound:,}")
    for _ in png_chunks(data):
        chunks.add()


def riff_chunks(data: Bytes) -> Iterator[bytes]:
    """The FourCC of each chunk of a RIFF (WebP) file, nested ones (ANMF frames' own) included."""
    yield from _riff_chunks_in(data, 12, min(len(data), 8 + struct.unpack("<I", data[4:8])[0]))


def _riff_chunks_in(data: Bytes, position: int, end: int) -> Iterator[bytes]:
    while position + 8 <= end:
        kind, length = struct.unpack("<4sI", data[position : position + 8])
        yield kind
        if kind == b"ANMF":  # a frame: 16 bytes of its own header, then its chunks
            yield from _riff_chunks_in(data, position + 24, min(end, position + 8 + length))
        position += 8 + length + (length & 1)


def _walk_webp(data: Bytes, limits: ImageLimits) -> None:
    bound = limits.structure.segments
    chunks = _Counter(bound, lambda bound: f"the WebP has more than {bound:,} chunks; the limit is {bound:,}")
    for _ in riff_chunks(data):
        chunks.add()


# --- GIF: blocks ----------------------------------------------------------------------------------

_GIF_INTRODUCERS = re.compile(rb"[!,;]")


def gif_units(data: Bytes, max_frames: int) -> Iterator[tuple[str, int]]:
    """("block", 1) for each sub-block, ("stray", n) for bytes Pillow steps over one by one,
    ("frame", 1) for each image: as far as Pillow's frame count walks (one frame past the bound)."""
    size = len(data)
    if size < 13:
        return
    position = 13
    flags = data[10]
    if flags & 0x80:  # global colour table
        position += 3 << ((flags & 7) + 1)
    frames = 0
    while position < size:
        introducer = data[position : position + 1]
        if introducer == b";":
            return
        if introducer == b"!":
            position += 2  # introducer and label
        elif introducer == b",":
            frames += 1
            yield "frame", 1
            if frames > max_frames:
                return
            descriptor = data[position + 1 : position + 10]
            if len(descriptor) < 9:
                return
            position += 10
            if descriptor[8] & 0x80:  # local colour table
                position += 3 << ((descriptor[8] & 7) + 1)
            position += 1  # LZW minimum code size
        else:
            found = _GIF_INTRODUCERS.search(data, position)
            following = size if found is None else found.start()
            yield "stray", following - position
            position = following
            continue
        while position < size:  # sub-blocks, up to the empty one
            length = data[position]
            yield "block", 1
            position += 1 + length
            if length == 0:
                break


def _walk_gif(data: Bytes, limits: ImageLimits) -> None:
    bound = limits.structure.gif_blocks
    blocks = _Counter(
        bound, lambda bound: f"the GIF has more than {bound:,} blocks and stray bytes; the limit is {bound:,}"
    )
    for kind, units in gif_units(data, limits.max_frames):
        if kind != "frame":
            blocks.add(units)


# --- TIFF: tags and strips over the image file directories -------------------------------------

_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS = 273, 324


def tiff_directories(data: Bytes, max_frames: int) -> Iterator[tuple[int, int]]:
    """(tags, strips or tiles) of each IFD, as far as Pillow's frame count walks them."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(f"{order}H", data[2:4])[0] == 43  # BigTIFF: 64-bit counts and offsets
    count_size, offset_size = (8, 8) if big else (2, 4)
    count_format, offset_format = ("Q", "Q") if big else ("H", "I")
    entry = struct.Struct(f"{order}HH{offset_format}{offset_size}s")
    first_at = 8 if big else 4
    raw = data[first_at : first_at + offset_size]
    if len(raw) < offset_size:
        return
    (offset,) = struct.unpack(f"{order}{offset_format}", raw)
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) <= max_frames:  # Pillow stops at a loop too
        seen.add(offset)
        raw = data[offset : offset + count_size]
        if len(raw) < count_size:
            return
        (declared,) = struct.unpack(f"{order}{count_format}", raw)
        table_at = offset + count_size
        # Only the entries the file holds cost anything: Pillow stops reading at the end of the data.
        held = min(declared, max(0, len(data) - table_at) // entry.size)
        strips = 0
        for tag, _kind, count, _value in entry.iter_unpack(data[table_at : table_at + held * entry.size]):
            if tag in (_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS):
                strips += count
        yield held, strips
        next_at = table_at + held * entry.size
        raw = data[next_at : next_at + offset_size]
        if held < declared or len(raw) < offset_size:
            return
        (offset,) = struct.unpack(f"{order}{offset_format}", raw)


def _walk_tiff(data: Bytes, limits: ImageLimits) -> None:
    bounds = limits.structure
    tags = _Counter(bounds.tiff_tags, lambda bound: f"the TIFF has more than {bound:,} tags; the limit is {bound:,}")
    strips = _Counter(
        bounds.tiff_strips, lambda bound: f"the TIFF has more than {bound:,} strips or tiles; the limit is {bound:,}"
    )
    for held, strip_count in tiff_directories(data, limits.max_frames):
        tags.add(held)
        strips.add(strip_count)


# --- BMP: run-length encoding ---------------------------------------------------------------------

_BMP_RLE = {1: "RLE8", 2: "RLE4"}


def _walk_bmp(data: Bytes, limits: ImageLimits) -> None:
    header = data[14:34]
    if len(header) < 20 or struct.unpack("<I", header[:4])[0] < 40:
        return  # the 12-byte OS/2 header has no compression
    width, height, _planes, _bits, compression = struct.unpack("<iiHHI", header[4:20])
    bound = limits.structure.bmp_rle_pixels
    if compression in _BMP_RLE and abs(width) * abs(height) > bound:
        raise TooComplex(
            f"the {_BMP_RLE[compression]} BMP is {abs(width)}x{abs(height)}; run-length-encoded BMPs "
            f"may have at most {bound:,} pixels (send it as PNG)"
        )


# --- HEIF and AVIF: items -------------------------------------------------------------------------


def _boxes(data: Bytes, position: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, content start, content end) of each ISO-BMFF box between `position` and `end`."""
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        start = position + 8
        if size == 1:
            raw = data[start : start + 8]
            if len(raw) < 8:
                return
            (size,) = struct.unpack(">Q", raw)
            start += 8
        elif size == 0:
            size = end - position
        if size < start - position:
            return
        yield kind, start, min(end, position + size)
        position += size


def heif_items(data: Bytes) -> int:
    """The number of items the file's `iinf` box declares (0 without one)."""
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind != b"meta":
            continue
        for child, child_start, _child_end in _boxes(data, start + 4, end):  # meta is a FullBox
            if child == b"iinf":  # a FullBox: version, flags, then a 16-bit (version 0) or 32-bit count
                width = 2 if data[child_start : child_start + 1] == b"\x00" else 4
                raw = data[child_start + 4 : child_start + 4 + width]
                return int.from_bytes(raw, "big") if len(raw) == width else 0
    return 0


def _walk_heif(data: Bytes, limits: ImageLimits) -> None:
    bound = limits.structure.heif_items
    items = heif_items(data)
    if items > bound:
        raise TooComplex(
            f"the HEIF/AVIF file has {items:,} items (tiles, thumbnails, metadata); the limit is {bound:,}"
        )


_WALKS: tuple[tuple[Callable[[bytes], bool], Callable[[Bytes, ImageLimits], None]], ...] = (
    (lambda head: head.startswith(b"\xff\xd8\xff"), _walk_jpeg),
    (lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), _walk_png),
    (lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP", _walk_webp),
    (lambda head: head[:6] in (b"GIF87a", b"GIF89a"), _walk_gif),
    (lambda head: head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _walk_tiff),
    (lambda head: head[:2] == b"BM", _walk_bmp),
    (lambda head: head[4:8] == b"ftyp", _walk_heif),
)
