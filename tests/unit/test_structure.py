"""Structural limits: files whose decoder would walk too many units are refused from their bytes,
before any decoder sees them, and the walk itself stops one unit past the bound.

Each hostile input is a valid file (tests/hostile.py). Work is counted, never timed: the units
the walk reads, and the calls into Pillow (`Image.open`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from handler.core.errors import ImageTooLarge, TooComplex
from handler.core.image import decode, structure
from handler.core.image.decode import load_picture
from handler.core.image.limits import ImageLimits, StructureLimits
from tests import hostile
from tests.counting import count_calls

DEFAULTS = StructureLimits()
# Bounds no test file reaches: a walk then reads the whole file.
UNBOUNDED = ImageLimits(structure=StructureLimits(*([1 << 40] * len(fields(StructureLimits)))))


# (name, the walk that counts the unit, builder of a file holding `count` units, bound, the limit's
# field, what the refusal names). Past the bound under the default limits; at it under a small one.
CASES: list[tuple[str, str, Callable[[int], bytes], str, str]] = [
    ("jpeg-scans", "jpeg_units", hostile.jpeg_with_scans, "jpeg_scans", "scans"),
    ("jpeg-segments", "jpeg_units", hostile.jpeg_with_segments, "segments", "marker segments"),
    ("png-chunks", "png_chunks", hostile.png_with_chunks, "segments", "chunks"),
    ("webp-chunks", "riff_chunks", hostile.webp_with_chunks, "segments", "chunks"),
    ("gif-blocks", "gif_units", hostile.gif_with_blocks, "gif_blocks", "blocks"),
    ("tiff-strips", "tiff_directories", hostile.tiff_with_strips, "tiff_strips", "strips"),
    ("tiff-tags", "tiff_directories", hostile.tiff_with_tags, "tiff_tags", "tags"),
]
SMALL_BOUNDS = {"jpeg_scans": 12, "segments": 40, "gif_blocks": 40, "tiff_strips": 40, "tiff_tags": 40}


def _opens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls into Pillow's opener (the format's header parser is its first work)."""
    return count_calls(monkeypatch, Image, "open")


def _units_read(monkeypatch: pytest.MonkeyPatch, walk: str) -> list[int]:
    """Count what one of structure's walks yields: the units it has read."""
    read: list[int] = []
    real_walk = getattr(structure, walk)

    def counting_walk(*args: Any) -> Iterator[Any]:
        for unit in real_walk(*args):
            read.append(1)
            yield unit

    monkeypatch.setattr(structure, walk, counting_walk)
    return read


@pytest.mark.parametrize(("name", "walk", "build", "field", "named"), CASES, ids=[case[0] for case in CASES])
def test_past_its_bound_a_file_is_refused_before_pillow_opens_it(
    monkeypatch: pytest.MonkeyPatch, name: str, walk: str, build: Callable[[int], bytes], field: str, named: str
) -> None:
    # GIVEN a file holding four times the default bound of its costly unit
    bound = getattr(DEFAULTS, field)
    data = build(4 * bound)
    read = _units_read(monkeypatch, walk)
    structure.check_structure(data, UNBOUNDED)
    in_the_file, read[:] = len(read), []
    with pytest.raises(TooComplex):
        structure.check_structure(build(bound + 1), ImageLimits())
    just_past, read[:] = len(read), []
    opens = _opens(monkeypatch)

    # WHEN it is decoded with the default limits
    with pytest.raises(TooComplex) as refused:
        load_picture(data)

    # THEN it is refused naming the unit and the bound, as a 413 (an input-size limit) ...
    assert refused.value.code == "too_complex" and refused.value.status == 413
    assert named in refused.value.message and f"{bound:,}" in refused.value.message
    # ... before Pillow opened it, its walk having read no further than into a file one unit past
    # the bound (a TIFF walk reads whole directories: one holds all the strips or tags here)
    assert opens == []
    assert len(read) <= just_past
    assert in_the_file > just_past or walk == "tiff_directories"


@pytest.mark.parametrize(("name", "walk", "build", "field", "named"), CASES, ids=[case[0] for case in CASES])
def test_at_its_bound_a_file_is_decoded(
    name: str, walk: str, build: Callable[[int], bytes], field: str, named: str
) -> None:
    bound = SMALL_BOUNDS[field]
    limits = ImageLimits(structure=replace(DEFAULTS, **{field: bound}))

    picture = load_picture(build(bound), limits)

    assert picture.rgb.mode == "RGB"
    with pytest.raises(TooComplex):
        load_picture(build(bound + 1), limits)


def test_the_attack_the_scan_bound_stops_repeats_its_last_scan_hundreds_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the attack: a 12 MP progressive JPEG under 100 kB, its last scan repeated ~600 times
    data = hostile.jpeg_with_scans(600, size=(4000, 3000))
    assert len(data) < 100_000
    opens = _opens(monkeypatch)

    # THEN it is refused before libjpeg runs a single scan
    with pytest.raises(TooComplex, match="more than 32 scans"):
        load_picture(data)
    assert opens == []


def test_real_progressive_jpegs_are_far_below_the_scan_bound(samples: dict[str, Path]) -> None:
    # libjpeg's standard progressions: 10 scans for colour, 6 for grey, 18 for CMYK
    photo = Image.open(samples["astronaut"])
    for mode, scans in (("RGB", 10), ("L", 6), ("CMYK", 18)):
        data = hostile.save(photo.convert(mode), "JPEG", progressive=True)
        assert sum(1 for marker, _ in structure.jpeg_units(data) if marker == 0xDA) == scans
        assert scans < DEFAULTS.jpeg_scans
        load_picture(data)


def test_stray_bytes_before_the_first_scan_count_as_segments() -> None:
    # Pillow's JPEG header parser steps over bytes between segments one at a time, in Python
    data = hostile.jpeg_with_segments(1)
    sof = data.index(b"\xff\xc0")
    padded = data[:sof] + b"\x00" * (DEFAULTS.segments + 1) + data[sof:]

    with pytest.raises(TooComplex, match="stray bytes"):
        load_picture(padded)


def test_gif_blocks_are_counted_across_frames_as_far_as_the_frame_count_walks() -> None:
    # Every frame's image data is walked sub-block by sub-block when the frames are counted
    frames = [Image.new("P", (64, 64), index) for index in range(3)]
    data = hostile.save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    blocks = sum(units for kind, units in structure.gif_units(data, 1000) if kind != "frame")
    limits = ImageLimits(structure=replace(DEFAULTS, gif_blocks=blocks - 1))

    with pytest.raises(TooComplex):
        load_picture(data, limits)
    load_picture(data, ImageLimits(structure=replace(DEFAULTS, gif_blocks=blocks)))


def test_a_tiff_directory_that_claims_more_tags_than_it_holds_counts_what_it_holds() -> None:
    data = bytearray(hostile.tiff_with_tags(20))
    data[8:10] = (60_000).to_bytes(2, "little")  # the IFD claims 60,000 entries; 20 are in the file

    assert [tags for tags, _ in structure.tiff_directories(bytes(data), 1000)] == [20]


def test_a_large_rle_bmp_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow decodes RLE BMPs in Python, padding each ended row byte by byte
    opens = _opens(monkeypatch)
    with pytest.raises(TooComplex, match="RLE8"):
        load_picture(hostile.bmp_rle8(2049, 2048))
    assert opens == []

    limits = ImageLimits(structure=replace(DEFAULTS, bmp_rle_pixels=64 * 32))
    assert load_picture(hostile.bmp_rle8(64, 32), limits).size == (64, 32)


def test_a_heif_file_with_too_many_items_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    opens = _opens(monkeypatch)
    with pytest.raises(TooComplex, match="items"):
        load_picture(hostile.avif_with_items(DEFAULTS.heif_items + 1))
    assert opens == []

    assert load_picture(hostile.avif_with_items(DEFAULTS.heif_items)).size == (8, 8)


def test_a_file_on_disk_is_walked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scans.jpg"
    path.write_bytes(hostile.jpeg_with_scans(40))
    opens = _opens(monkeypatch)

    with pytest.raises(TooComplex):
        load_picture(path)
    assert opens == []


def test_too_complex_is_an_input_size_limit() -> None:
    # The jobs treat it as every other limit (a permanent failure), the API answers 413
    assert issubclass(TooComplex, ImageTooLarge)
    assert TooComplex.permanent


def test_the_walks_read_nothing_past_the_end_of_truncated_files() -> None:
    # A walk never fails on a cut-short file: the decoder reports it as corrupt instead
    for data in (
        hostile.jpeg_with_scans(20),
        hostile.png_with_chunks(20),
        hostile.gif_with_blocks(20),
        hostile.tiff_with_strips(20),
        hostile.webp_with_chunks(20),
        hostile.avif_with_items(20),
        hostile.bmp_rle8(10, 10),
    ):
        for cut in range(1, len(data), max(1, len(data) // 97)):
            structure.check_structure(data[:cut], ImageLimits())


@pytest.mark.parametrize("fmt", decode.DECODABLE_FORMATS)
def test_every_allowed_format_has_its_walk(fmt: str) -> None:
    # A decoder added to the allow-list without a walk would be bounded by bytes, pixels and frames only
    image = Image.new("RGB", (16, 16), (200, 100, 50))
    data = hostile.save(image, fmt, **({"save_all": True, "append_images": [image]} if fmt == "MPO" else {}))
    assert Image.open(io.BytesIO(data)).format == fmt

    assert any(accepts(data[:16]) for accepts, _walk in structure._WALKS)
