"""What a hostile input costs at most, per format: the decode of the worst file the limits accept,
and the refusal of files past them (with what decoding them cost before the walks refused them).

Usage::

    .venv/bin/python benchmarks/hostile_input.py            # every case
    .venv/bin/python benchmarks/hostile_input.py jpeg png   # the cases whose name starts so

Each case runs in a fresh subprocess (peak RSS is a high-water mark) and goes through
`load_picture` with the default limits, as every entry point decodes: its outcome, wall and CPU
seconds and peak RSS. A refused case is decoded again with the walks off: what it cost before
(the frame count and the first frame; the API decoded a JPEG twice, its draft and its full decode). Two kinds of worst
accepted file per format: its structure at the bounds (tests/hostile.py, at 64 MP where the
format allows), and 64 MP of noise (the largest ordinary photo: per pixel, noise is the most
work for every codec). The multipart rows time the form parser on the issue's 2.25 MB of
250,000 empty parts, with the standard library's parser as before. Inputs are made once in
.cache/bench/hostile/. Prints a markdown table and writes benchmarks/results/hostile_input.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import ROOT, machine_info, peak_rss_mb, run_child, write_json  # noqa: E402

sys.path.insert(0, str(ROOT))
RESULTS = HERE / "results" / "hostile_input.json"
CACHE = ROOT / ".cache" / "bench" / "hostile"
SIDE = 8000  # 8000x8000 = 64 MP, the default MAX_INPUT_PIXELS
WEBP_SIZE = (16383, 3906)  # WebP's widest: 64.0 MP


def _save(image: Any, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _noise(size: tuple[int, int]) -> Any:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _png_zeros_in_chunks(width: int, height: int, chunks: int) -> bytes:
    """An 8-bit RGB PNG of zeros whose pixel data is cut into `chunks` - 2 IDAT chunks."""
    from tests.hostile import PNG_MAGIC, png_chunk

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    idats = chunks - 2
    step = max(1, len(pixels) // idats)
    pieces = [pixels[index * step : (index + 1) * step] for index in range(idats - 1)]
    pieces.append(pixels[(idats - 1) * step :])
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return PNG_MAGIC + ihdr + b"".join(png_chunk(b"IDAT", piece) for piece in pieces) + png_chunk(b"IEND", b"")


def _gif_64mp_with_blocks(blocks: int) -> bytes:
    from PIL import Image

    from tests.hostile import _gif_block_count

    data = _save(Image.new("P", (SIDE, SIDE), 1), "GIF")
    descriptor = data.index(b",", 13)
    comment = b"!\xfe" + b"\x01c" * (blocks - _gif_block_count(data) - 1) + b"\x00"
    return data[:descriptor] + comment + data[descriptor:]


def _webp_64mp_with_chunks(chunks: int) -> bytes:
    from PIL import Image

    simple = _save(Image.new("RGB", WEBP_SIZE, (1, 2, 3)), "WEBP", lossless=True, method=0)
    width, height = WEBP_SIZE
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + simple[12:] + b"XTRA\x00\x00\x00\x00" * (chunks - 2)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _bmp_rle8_runs(width: int, height: int) -> bytes:
    """RLE8 of one-pixel runs: two bytes per pixel, one step of Pillow's Python decoder each."""
    palette = b"".join(bytes((index, index, index, 0)) for index in range(256))
    rows = (b"\x01\x07" * width + b"\x00\x00") * height + b"\x00\x01"
    header_size = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", header_size + len(rows), 0, 0, header_size) + info + palette + rows


def _multipart_empty_parts(count: int) -> bytes:
    return b"--b\r\n\r\n\r\n" * count + b"--b--\r\n"


def _cases() -> dict[str, tuple[str, Callable[[], bytes]]]:
    """name -> (what it is, how to make it). Names say the format first."""
    from PIL import Image

    from tests import hostile

    return {
        "jpeg-64mp-noise": (
            "baseline JPEG, 64 MP of noise, quality 95",
            lambda: _save(_noise((SIDE, SIDE)), "JPEG", quality=95),
        ),
        "jpeg-64mp-progressive-noise": (
            "progressive JPEG, 64 MP of noise, quality 95 (10 scans)",
            lambda: _save(_noise((SIDE, SIDE)), "JPEG", quality=95, progressive=True),
        ),
        "jpeg-64mp-32-scans": (
            "progressive JPEG, 64 MP, its last scan repeated up to 32 scans",
            lambda: hostile.jpeg_with_scans(32, (SIDE, SIDE)),
        ),
        "jpeg-12mp-600-scans": (
            "the issue's attack: 12 MP, last scan repeated up to 600 scans",
            lambda: hostile.jpeg_with_scans(600, (4000, 3000)),
        ),
        "jpeg-65536-segments": (
            "JPEG with 65,536 marker segments (empty comments)",
            lambda: hostile.jpeg_with_segments(65_536),
        ),
        "jpeg-1m-stray-bytes": (
            "JPEG with 1 MB of stray bytes before its frame header",
            lambda: (lambda data: data[:20] + b"\x00" * 1_000_000 + data[20:])(hostile.jpeg_with_segments(1)),
        ),
        "png-31mp-noise": (
            "PNG, 31 MP of noise (5600x5600, zlib level 1: 94 MB, the most noise under 100 MB)",
            lambda: _save(_noise((5600, 5600)), "PNG", compress_level=1),
        ),
        "png-64mp-65536-chunks": (
            "PNG, 64 MP of zeros in 65,536 chunks",
            lambda: _png_zeros_in_chunks(SIDE, SIDE, 65_536),
        ),
        "png-1m-chunks": ("PNG of 1,000,000 chunks (12 MB)", lambda: hostile.png_with_chunks(1_000_000)),
        "gif-64mp-524288-blocks": (
            "GIF, 64 MP frame, 524,288 blocks (1-byte comment sub-blocks)",
            lambda: _gif_64mp_with_blocks(524_288),
        ),
        "gif-10m-blocks": (
            "GIF of 10,000,000 one-byte comment sub-blocks (20 MB)",
            lambda: hostile.gif_with_blocks(10_000_000),
        ),
        "tiff-64mp-65536-strips": (
            "uncompressed TIFF, 976x65536, one row per strip",
            lambda: hostile.tiff_with_strips(65_536, width=976),
        ),
        "tiff-1m-strips": ("uncompressed TIFF of 1,000,000 strips (8 MB)", lambda: hostile.tiff_with_strips(1_000_000)),
        "tiff-65536-tags": ("TIFF with 65,536 tags over two pages", lambda: hostile.tiff_with_tags(65_536)),
        "tiff-1m-tags": ("TIFF with 1,000,000 tags over 17 pages (12 MB)", lambda: hostile.tiff_with_tags(1_000_000)),
        "webp-64mp-noise": (
            "lossy WebP, 64 MP of noise (16383x3906), quality 80 (90 overflows the encoder at this size)",
            lambda: _save(_noise(WEBP_SIZE), "WEBP", quality=80, method=0),
        ),
        "webp-64mp-65536-chunks": ("lossless WebP, 64 MP flat, 65,536 chunks", lambda: _webp_64mp_with_chunks(65_536)),
        "bmp-4mp-rle8-runs": ("RLE8 BMP, 2048x2048 of one-pixel runs", lambda: _bmp_rle8_runs(2048, 2048)),
        "bmp-4mp-rle8-row-ends": (
            "RLE8 BMP, 2048x2048, each row one pixel then end-of-line",
            lambda: hostile.bmp_rle8(2048, 2048),
        ),
        "bmp-64mp-rle8-row-ends": (
            "RLE8 BMP, 8000x8000, each row one pixel then end-of-line (12 kB)",
            lambda: hostile.bmp_rle8(SIDE, SIDE),
        ),
        "bmp-64mp-raw": ("uncompressed 8-bit BMP, 64 MP", lambda: _save(Image.new("P", (SIDE, SIDE), 9), "BMP")),
        "avif-64mp-noise": (
            "AVIF, 64 MP of noise, quality 90",
            lambda: _save(_noise((SIDE, SIDE)), "AVIF", quality=90, speed=10),
        ),
        "avif-1000-items": ("AVIF with 1,000 items", lambda: hostile.avif_with_items(1000)),
        "heif-4mp-noise": (
            "HEIC, 4 MP of noise, quality 90 (libde265 cannot decode the 16 MP one x265 writes)",
            lambda: _heic(_noise((2000, 2000))),
        ),
        "multipart-250k-empty-parts": (
            "multipart body of 250,000 empty parts (2.25 MB)",
            lambda: _multipart_empty_parts(250_000),
        ),
    }


def _heic(image: Any) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _save(image, "HEIF", quality=90)


def _input(name: str) -> Path:
    path = CACHE / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_cases()[name][1]())
    return path


def child(name: str) -> dict[str, Any]:
    """One case, in this fresh process: the pipeline's decode, then (if refused) Pillow's alone."""
    import warnings

    warnings.simplefilter("ignore")
    data = _input(name).read_bytes()
    if name.startswith("multipart"):
        return _child_multipart(data)
    from handler.core.errors import BackgroundRemovalError
    from handler.core.image.decode import load_picture
    from handler.core.image.limits import ImageLimits
    from handler.core.image.structure import check_structure

    started = time.perf_counter()
    with contextlib.suppress(BackgroundRemovalError):
        check_structure(data, ImageLimits())
    walk_seconds = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    try:
        picture = load_picture(data)
        outcome = f"decoded {picture.size[0]}x{picture.size[1]}"
    except BackgroundRemovalError as error:
        outcome = error.code
    report: dict[str, Any] = {
        "bytes": len(data),
        "walk_seconds": round(walk_seconds, 4),
        "outcome": outcome,
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if not outcome.startswith("decoded"):
        # What decoding it cost before the walks: the same call with them off (the frame count,
        # then the first frame's decode; the API decoded a JPEG twice, its draft and its full decode).
        from handler.core.image import decode

        decode.check_structure = lambda data, limits: None  # type: ignore[attr-defined]
        started, cpu = time.perf_counter(), time.process_time()
        try:
            load_picture(data)
            before = "decoded"
        except BackgroundRemovalError as error:
            before = error.code
        report["without_walks"] = {
            "outcome": before,
            "seconds": round(time.perf_counter() - started, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3),
        }
    return report


def _child_multipart(body: bytes) -> dict[str, Any]:
    from email.parser import BytesParser
    from email.policy import HTTP

    from handler.aws.request import _from_multipart
    from handler.core.errors import BackgroundRemovalError

    content_type = "multipart/form-data; boundary=b"
    started = time.perf_counter()
    try:
        _from_multipart(content_type, body)
        outcome = "parsed"
    except BackgroundRemovalError as error:
        outcome = error.code
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    parts = sum(1 for _ in message.iter_parts())
    return {
        "bytes": len(body),
        "outcome": outcome,
        "seconds": round(seconds, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "without_walks": {
            "outcome": f"standard library: {parts:,} parts",
            "seconds": round(time.perf_counter() - started, 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="run only the cases whose name starts with one of these")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    names = [name for name in _cases() if not args.prefixes or name.startswith(tuple(args.prefixes))]
    results: dict[str, Any] = {}
    print("| case | bytes | outcome | s (CPU s) | peak RSS MB | decoded without the walks: s |")
    print("|---|---:|---|---:|---:|---:|")
    for name in names:
        _input(name)
        result = run_child(Path(__file__), name, timeout=1200)
        result["what"] = _cases()[name][0]
        results[name] = result
        before = result.get("without_walks")
        earlier = "" if before is None else f"{before['seconds']} ({before['outcome']})"
        print(
            f"| {name} | {result['bytes']:,} | {result['outcome']} | {result['seconds']}"
            f" ({result.get('cpu_seconds', '-')}) | {result['peak_rss_mb']} | {earlier} |",
            flush=True,
        )
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    write_json(RESULTS, {"machine": machine_info(), "cases": {**previous.get("cases", {}), **results}})


if __name__ == "__main__":
    main()
