"""Naming an image format that we recognise but refuse, from its first bytes alone.

Uploads are decoded only by an allow-list of Pillow's plugins (handler.core.image.decode). A file in another
format Pillow knows (a Photoshop PSD, an EPS, an SGI, ...) is a real image we choose not to read:
the caller deserves `415 unsupported_media_type` naming it, not `400 invalid_image` ("not an
image"). The format is told from published magic numbers here, never by asking Pillow's plugin:
opening an EPS with its plugin is the first step towards running Ghostscript, which is exactly
what the allow-list keeps out of reach.

Signatures come from each format's specification as Pillow's own `_accept` checks read them; only
ones that are specific enough to never claim a JPEG/PNG/WebP/GIF/TIFF/BMP/HEIF/AVIF are listed
(TGA, SPIDER and PCX have no reliable magic number, so they stay `invalid_image`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

# How many leading bytes the checks below need (PCD's marker sits at 2048).
HEAD_BYTES = 2056


def _starts(*prefixes: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(prefixes)


def _fli(head: bytes) -> bool:
    # Autodesk FLI/FLC: the frame-type word at offset 4 (0xAF11 FLI, 0xAF12 FLC), then a frame count.
    return len(head) >= 16 and struct.unpack_from("<H", head, 4)[0] in (0xAF11, 0xAF12) and head[14] in (0, 3)


def _sgi(head: bytes) -> bool:
    # SGI image file format: magic 474 (big-endian), then storage 0/1 and bytes per channel 1/2.
    return len(head) >= 4 and head[:2] == b"\x01\xda" and head[2] in (0, 1) and head[3] in (1, 2)


_NETPBM = re.compile(rb"^P[1-7fF][ \t\r\n]")

# (Pillow's format name, check). The first that matches names the file.
SIGNATURES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("EPS", _starts(b"%!PS", b"\xc5\xd0\xd3\xc6")),  # PostScript/EPS text, and DOS EPS binary header
    ("PSD", _starts(b"8BPS\x00\x01")),
    ("SGI", _sgi),
    ("FLI", _fli),
    ("PCD", lambda head: head[2048:2055] == b"PCD_IPI"),
    ("ICO", _starts(b"\x00\x00\x01\x00")),
    ("DDS", _starts(b"DDS ")),
    ("ICNS", _starts(b"icns")),
    ("QOI", _starts(b"qoif")),
    ("BLP", _starts(b"BLP1", b"BLP2")),
    ("FITS", _starts(b"SIMPLE  =")),
    ("JPEG2000", _starts(b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")),
    ("DCX", _starts(b"\xb1\x68\xde\x3a")),
    ("MSP", _starts(b"DanM", b"LinS")),
    ("WMF", _starts(b"\xd7\xcd\xc6\x9a", b"\x01\x00\x09\x00\x00\x03")),
    ("XPM", _starts(b"/* XPM */")),
    ("XBM", _starts(b"#define")),
    ("PPM", lambda head: _NETPBM.match(head) is not None),
    ("GBR", lambda head: head[20:24] == b"GIMP"),
    ("IM", _starts(b"Image type:")),
)


def refused_format(head: bytes) -> str | None:
    """The name of the format `head` (a file's first HEAD_BYTES) is in, if it is one we refuse."""
    for name, matches in SIGNATURES:
        if matches(head):
            return name
    return None
