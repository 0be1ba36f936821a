"""The PNG writer: whatever it writes, Pillow (an independent decoder) reads back pixel for pixel."""

from __future__ import annotations

import io
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from handler.core.image import png
from handler.core.image.png import _adler32_combine, encode_png


def _noisy(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(axis=2) if channels == 1 else pixels, mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (1, 37), (53, 1), (97, 61)])
def test_round_trip_is_exact(mode: str, width: int, height: int) -> None:
    image = _noisy(mode, width, height)

    decoded = Image.open(io.BytesIO(encode_png(image)))

    assert decoded.format == "PNG" and decoded.mode == mode and decoded.size == (width, height)
    assert decoded.tobytes() == image.tobytes()


def test_many_strips_on_many_threads_join_into_one_valid_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN strips of a few rows each, so the stream is dozens of independently deflated pieces
    monkeypatch.setattr(png, "STRIP_BYTES", 500)
    monkeypatch.setattr(png, "IDAT_CHUNK_BYTES", 1000)
    image = _noisy("RGBA", 120, 90, seed=3)

    data = encode_png(image, threads=3)

    # THEN Pillow decodes it exactly (it checks every chunk CRC and the zlib Adler-32)
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    assert decoded.tobytes() == image.tobytes()
    assert data.count(b"IDAT") > 5


def test_icc_profile_is_embedded() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    decoded = Image.open(io.BytesIO(encode_png(_noisy("RGB", 8, 8), icc_profile=profile)))

    assert decoded.info["icc_profile"] == profile


def test_zeroed_transparent_pixels_compress_far_better_than_noise() -> None:
    image = _noisy("RGBA", 200, 200)
    empty = Image.new("RGBA", (200, 200), (0, 0, 0, 0))

    assert len(encode_png(empty)) * 50 < len(encode_png(image))


@pytest.mark.parametrize("split", [0, 1, 7, 65520, 65521, 70000])
def test_adler32_combine_matches_zlib(split: int) -> None:
    data = np.random.default_rng(split).integers(0, 256, 140_000, dtype=np.uint8).tobytes()
    first, second = data[:split], data[split:]

    assert _adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(data)


def test_other_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="mode 'P'"):
        encode_png(Image.new("P", (4, 4)))


def test_cutout_encoding_matches_compose_cutout(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a photo and an alpha with fully transparent, soft and opaque pixels, in many strips
    from handler.core.image.compose import compose_cutout

    monkeypatch.setattr(png, "STRIP_BYTES", 300)
    from handler.core.image.decode import Picture

    rgb = _noisy("RGB", 71, 43, seed=5)
    alpha = _noisy("L", 71, 43, seed=6).point(lambda value: 0 if value < 90 else value)
    expected = compose_cutout(Picture(rgb=rgb, alpha=None, icc_profile=None), alpha)

    # WHEN the encoder composes it strip by strip
    decoded = Image.open(io.BytesIO(png.encode_png_cutout(rgb, alpha, threads=2)))

    # THEN the pixels are exactly compose_cutout's
    assert decoded.mode == "RGBA"
    assert decoded.tobytes() == expected.tobytes()


def test_the_file_is_the_only_full_size_copy_the_writer_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a cutout whose PNG (noise barely compresses) is many strips and chunks, written on one thread
    monkeypatch.setattr(png, "STRIP_BYTES", 1 << 18)
    monkeypatch.setattr(png, "IDAT_CHUNK_BYTES", 1 << 20)
    rgb = _noisy("RGB", 2000, 1500, seed=5)
    alpha = _noisy("L", 2000, 1500, seed=6)
    tracemalloc.start()
    try:
        # WHEN it is encoded (tracemalloc counts the bytes and numpy buffers the writer makes)
        size = len(png.encode_png_cutout(rgb, alpha, threads=1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # THEN at the peak it held the compressed strips and the file they are joined into, plus the
    # strip being worked on: not the stream joined, cut into chunks and joined again besides
    assert size > 40 * png.STRIP_BYTES
    assert peak <= 2 * size + 8 * png.STRIP_BYTES, f"{peak / size:.2f}x the file"
