"""Inputs crafted to cost their decoder more than their size says: small files, many structural units.

Each builder makes a valid file of one allowed format whose costly units (JPEG scans, PNG chunks,
GIF blocks, TIFF tags and strips, WebP chunks, RLE BMP pixels, HEIF items) number `count`, so a
test can put it just past a bound (refused before any decoder runs) or at it (decoded). Used by
the tests, the corpus (tests/corpus.py), the fuzz seeds and benchmarks/hostile_input.py.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a JPEG Pillow wrote; an SOS runs to the next marker."""
    segments, position = [], 2
    while position < len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            segments.append((marker, position, position + 2))
            break
        end = position + 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker == 0xDA:
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
        segments.append((marker, position, end))
        position = end
    return segments


def jpeg_with_scans(scans: int, size: tuple[int, int] = (1000, 1000)) -> bytes:
    """A progressive JPEG of a flat colour whose last scan (an AC refinement) is repeated until it
    has `scans` scans: each repeat is ~100 bytes (one end-of-band run covers every block), and
    each makes libjpeg pass over the whole image once more."""
    data = save(Image.new("RGB", size, (120, 130, 140)), "JPEG", progressive=True, quality=90)
    segments = _jpeg_segments(data)
    sos = [segment for segment in segments if segment[0] == 0xDA]
    assert len(sos) <= scans, f"Pillow's progression already has {len(sos)} scans"
    last = data[sos[-1][1] : sos[-1][2]]
    end = sos[-1][2]
    return data[:end] + last * (scans - len(sos)) + data[end:]


def jpeg_with_segments(segments: int) -> bytes:
    """A small baseline JPEG with empty comment (COM) segments added before its frame header."""
    data = save(Image.new("RGB", (16, 16), (10, 200, 30)), "JPEG")
    own = len(_jpeg_segments(data)) - 1  # EOI is no segment
    return data[:2] + b"\xff\xfe\x00\x02" * max(0, segments - own) + data[2:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_chunks(chunks: int, size: tuple[int, int] = (4, 4)) -> bytes:
    """A PNG of `chunks` chunks: IHDR, IEND and its pixels cut into that many IDAT chunks (empty ones
    once the data runs out), as a writer with a tiny buffer would."""
    width, height = size
    pixels = zlib.compress(b"".join(b"\x00" + b"\x40" * 3 * width for _ in range(height)))
    idats = max(1, chunks - 2)
    pieces = [pixels[index : index + 1] for index in range(min(idats, len(pixels)))]
    pieces[-1] = pixels[len(pieces) - 1 :]
    pieces += [b""] * (idats - len(pieces))
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return PNG_MAGIC + ihdr + b"".join(png_chunk(b"IDAT", piece) for piece in pieces) + png_chunk(b"IEND", b"")


def gif_with_blocks(blocks: int) -> bytes:
    """A one-frame GIF whose comment extension is `blocks` sub-blocks of one byte each."""
    data = save(Image.new("P", (4, 4), 1), "GIF")
    descriptor = data.index(b",", 13)
    own = _gif_block_count(data)
    comment = b"!\xfe" + b"\x01c" * max(0, blocks - own - 1) + b"\x00"
    return data[:descriptor] + comment + data[descriptor:]


def _gif_block_count(data: bytes) -> int:
    """The sub-blocks (terminators included) of a GIF Pillow wrote: its extensions' and image data's."""
    position = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    blocks = 0
    while data[position : position + 1] in (b"!", b","):
        if data[position : position + 1] == b"!":
            position += 2
        else:
            flags = data[position + 9]
            position += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        while True:
            blocks += 1
            length = data[position]
            position += 1 + length
            if length == 0:
                break
    return blocks


def _tiff(entries: list[tuple[int, int, int, bytes]], tail: bytes, tail_at: int) -> bytes:
    """A little-endian TIFF: one IFD at offset 8 with `entries` (tag, type, count, 4-byte value), then `tail`."""
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in sorted(entries)
    )
    ifd += b"\x00\x00\x00\x00"
    padding = tail_at - 8 - len(ifd)
    assert padding >= 0
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * padding + tail


def _long(value: int) -> bytes:
    return struct.pack("<I", value)


def _short(value: int) -> bytes:
    return struct.pack("<HH", value, 0)


def tiff_with_strips(strips: int, width: int = 64) -> bytes:
    """An uncompressed 8-bit grey TIFF, one row per strip, every strip pointing at the same row
    (Pillow decodes each strip on its own, in Python)."""
    base = 8 + 2 + 12 * 9 + 4
    offsets_at, counts_at = base, base + 4 * strips
    row_at = counts_at + 4 * strips
    entries = [
        (256, 4, 1, _long(width)),
        (257, 4, 1, _long(strips)),
        (258, 3, 1, _short(8)),
        (259, 3, 1, _short(1)),
        (262, 3, 1, _short(1)),
        (273, 4, strips, _long(offsets_at)),
        (277, 3, 1, _short(1)),
        (278, 4, 1, _long(1)),
        (279, 4, strips, _long(counts_at)),
    ]
    tail = _long(row_at) * strips + _long(width) * strips + b"\x80" * width
    return _tiff(entries, tail, base)


def _unknown_tiff_tags() -> list[int]:
    """Tag numbers Pillow gives no meaning to: each one costs its parser the full path of a tag."""
    from PIL import TiffTags

    known = {key if isinstance(key, int) else key[0] for key in [*TiffTags.TAGS_V2, *TiffTags.TAGS]}
    known |= set(range(0xBC00, 0xBD00))  # JPEG XR's, which Pillow refuses a TIFF for
    return [tag for tag in range(1000, 65536) if tag not in known]


def tiff_with_tags(tags: int, per_page: int = 60_000) -> bytes:
    """A TIFF of 1x1 pages carrying `tags` tags in all, at most `per_page` per page (an IFD holds at
    most 65,535): nine describe each page's image, the rest are distinct tags Pillow does not know."""
    unknown = _unknown_tiff_tags()
    pages, position = [], 8
    left = tags
    while left > 0:
        count = max(9, min(per_page, left))
        left -= count
        size = 2 + 12 * count + 4
        pixel_at = position + size
        entries = [
            (256, 4, 1, _long(1)),
            (257, 4, 1, _long(1)),
            (258, 3, 1, _short(8)),
            (259, 3, 1, _short(1)),
            (262, 3, 1, _short(1)),
            (273, 4, 1, _long(pixel_at)),
            (277, 3, 1, _short(1)),
            (278, 4, 1, _long(1)),
            (279, 4, 1, _long(1)),
        ] + [(unknown[index], 3, 1, _short(index % 65536)) for index in range(count - 9)]
        next_at = pixel_at + 1 if left > 0 else 0
        ifd = struct.pack("<H", count) + b"".join(
            struct.pack("<HHI", tag, kind, number) + value for tag, kind, number, value in sorted(entries)
        )
        pages.append(ifd + _long(next_at) + b"\x80")
        position = pixel_at + 1
    return b"II*\x00" + _long(8) + b"".join(pages)


def webp_with_chunks(chunks: int) -> bytes:
    """A lossless WebP (VP8X) followed by empty unknown chunks, `chunks` in all."""
    simple = save(Image.new("RGB", (4, 4), (1, 2, 3)), "WEBP", lossless=True)
    vp8l = simple[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (3).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x + vp8l + b"XTRA\x00\x00\x00\x00" * max(0, chunks - 2)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_rle8(width: int, height: int) -> bytes:
    """An RLE8 BMP whose every row is one pixel, then end-of-line: Pillow pads each row in Python."""
    palette = b"".join(bytes((index, index, index, 0)) for index in range(256))
    rows = b"\x01\x07\x00\x00" * height + b"\x00\x01"
    header_size = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", header_size + len(rows), 0, 0, header_size) + info + palette + rows


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def avif_with_items(items: int) -> bytes:
    """An AVIF whose `iinf` declares and holds `items` items: its own, then `mime` items without data."""
    data = save(Image.new("RGB", (8, 8), (9, 99, 199)), "AVIF")
    meta_at = data.index(b"meta") - 4
    meta_size = struct.unpack(">I", data[meta_at : meta_at + 4])[0]
    meta = data[meta_at : meta_at + meta_size]
    iinf_at = meta.index(b"iinf") - 4
    iinf_size = struct.unpack(">I", meta[iinf_at : iinf_at + 4])[0]
    iinf = meta[iinf_at : iinf_at + iinf_size]
    version = iinf[8]
    own = struct.unpack(">H", iinf[12:14])[0] if version == 0 else struct.unpack(">I", iinf[12:16])[0]
    entries = iinf[14:] if version == 0 else iinf[16:]
    extra = b"".join(
        _box(b"infe", b"\x02\x00\x00\x00" + struct.pack(">HH", 1000 + index, 0) + b"mime" + b"x\x00\x00")
        for index in range(max(0, items - own))
    )
    new_iinf = _box(b"iinf", b"\x01\x00\x00\x00" + struct.pack(">I", max(items, own)) + entries + extra)
    new_meta_payload = meta[8:iinf_at] + new_iinf + meta[iinf_at + iinf_size :]
    new_meta = _box(b"meta", new_meta_payload)
    # The media data after `meta` moves by as much as `meta` grew: so do iloc's offsets into it.
    moved = _shift_iloc_in_meta(new_meta, len(new_meta) - len(meta))
    return data[:meta_at] + moved + data[meta_at + meta_size :]


def _shift_iloc_in_meta(meta: bytes, by: int) -> bytes:
    """Move the absolute offsets of `iloc` (version 0/1, 4-byte offsets) by `by`: the media data
    after `meta` moved that far."""
    at = meta.index(b"iloc") - 4
    box = bytearray(meta[at : at + struct.unpack(">I", meta[at : at + 4])[0]])
    version = box[8]
    offset_size, length_size = box[12] >> 4, box[12] & 15
    base_offset_size = box[13] >> 4
    index_size = box[13] & 15 if version in (1, 2) else 0
    position = 14
    count_format = ">H" if version < 2 else ">I"
    (count,) = struct.unpack_from(count_format, box, position)
    position += struct.calcsize(count_format)
    for _ in range(count):
        position += 2 if version < 2 else 4  # item id
        if version in (1, 2):
            position += 2  # construction method
        position += 2  # data reference index
        base_at = position
        position += base_offset_size
        (extents,) = struct.unpack_from(">H", box, position)
        position += 2
        base = int.from_bytes(box[base_at : base_at + base_offset_size], "big") if base_offset_size else 0
        for _ in range(extents):
            position += index_size
            if offset_size:
                value = int.from_bytes(box[position : position + offset_size], "big")
                if base == 0 and value:
                    box[position : position + offset_size] = (value + by).to_bytes(offset_size, "big")
            position += offset_size + length_size
        if base_offset_size and base:
            box[base_at : base_at + base_offset_size] = (base + by).to_bytes(base_offset_size, "big")
    return meta[:at] + bytes(box) + meta[at + len(box) :]
