"""Edge colour: the foreground colour of semi-transparent pixels, by blur fusion.

A pixel at the subject's edge (0 < alpha < 1) shows I = alpha*F + (1 - alpha)*B, a blend of the
subject's colour F and the old background's B. Keeping I as the cutout's colour carries the old
background along as a halo. Forte & Pitié's "approximate fast foreground colour estimation"
(ICIP 2021; the method BiRefNet's own demo applies to its cutouts) estimates F with two passes of
alpha-weighted box blurs, a large box for the local fore- and background colours, then a small
one. `blur_fusion` (handler.core.image.blur_fusion) is that definition at full resolution;
`refine_foreground` computes the same estimate for a whole photo within a small time and memory budget.

Box widths. The reference uses boxes of 90 and 6 pixels on images of about 1024 pixels. Here they
scale with the image's longer side: the large box should cover the same part of the scene at any
resolution (a fixed 90 pixels would see a sixteenth of the area on a 12 MP photo, often no
background at all), and the small box should span the soft band itself, whose width in pixels
grows with the image because the mask is the model's ~1024-pixel output enlarged to the photo.

Budget. Only band pixels (0 < alpha < 255) change, and every blurred quantity is smooth:
- the large blur runs on a coarse grid (COARSE_REDUCTION times coarser than the fine one);
- the small blur runs on the coarsest fine grid (a power-of-two reduction) on which its box still
  spans MIN_FINE_BOX_CELLS cells: measured on composites of known foreground from 1024 to 4000
  pixels, a box of 3 cells is as close to full resolution as one of 6, and one of 2 is not. Its
  input, the first estimate times alpha, equals the photo times alpha except at band pixels,
  where the difference is made of polynomials in alpha, the photo and the (smooth) first-pass
  colours: per-cell sums of those polynomials stand in for the first estimate, which is never
  computed per pixel;
- the per-pixel formula runs at band pixels only, strip by strip, each reading the blurred
  colours of its fine-grid cell.
benchmarks/refine.py measures the error of this against `blur_fusion` at full resolution, and
the time and memory it adds.

One module of ~400 lines on purpose: the measuring pass (_Grids), the sampling of its grids
(_SampleGrid) and the per-pixel pass (_refine_strip) share one plan and one cell layout, and
each reads the others' arrays in that layout; apart, they would be one algorithm in three files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from handler.core.cpu import map_over_cpus
from handler.core.image.blur_fusion import EPSILON, box_mean

# The reference's box widths, in pixels of an image whose longer side is REFERENCE_SIDE.
REFERENCE_SIDE = 1024
COARSE_BOX = 90
FINE_BOX = 6
# The small blur's grid is the coarsest on which its box spans at least this many cells: 3, less
# a 3% margin that a 4000-pixel photo's 23.4-pixel box (2.93 cells of 8) meets. Measured
# (benchmarks/refine.py's accuracy, and composites at 1024-4000 pixels): boxes of 2.9-3 cells keep
# the estimate within ~0.7 levels of full resolution, like 6 cells; 2.2-2.6 cells doubled that.
MIN_FINE_BOX_CELLS = 2.9
# The large blur's grid is this much coarser again: its box is 15x the small one, so it still
# spans ~11-22 cells.
COARSE_REDUCTION = 4
# Full-resolution work is done in horizontal strips of about this many pixels: bounded memory.
STRIP_PIXELS = 1 << 19

_LEVELS = np.arange(256, dtype=np.float64) / 255
# The band (0 < alpha < 255) as a mask: its bounding box bounds the per-pixel work.
_BAND_LUT = [0] + [255] * 254 + [0]
# Per alpha level, what the band's cell sums add up (see _Grids.blurred_colours): alpha, the
# first-pass correction's polynomials alpha(1 - alpha²) and alpha²(1 - alpha), and the factors of
# a colour byte in colour x alpha and colour x alpha(1 - alpha). Float64, as np.bincount sums: it
# would convert float32 weights itself, holding the GIL, so two strips' sums ran one at a time.
_ALPHA = _LEVELS
_FIRST_FG = _LEVELS * (1 - _LEVELS**2)
_FIRST_BG = _LEVELS**2 * (1 - _LEVELS)
_BYTE_ALPHA = _LEVELS / 255
_BYTE_CROSS = _LEVELS * (1 - _LEVELS) / 255
# F = F̄(1 - α²) + αI - α(1 - α)B̄: the per-pixel formula's coefficients by alpha level.
_KEEP_FG = (1 - _LEVELS**2).astype(np.float32)
_KEEP_PHOTO = _LEVELS.astype(np.float32)
_DROP_BG = (_LEVELS * (1 - _LEVELS)).astype(np.float32)
# The 4th byte of a little-endian pixel word: the alpha of an opaque pixel.
_OPAQUE_WORD = np.uint32(0xFF000000)


@dataclass(frozen=True)
class Plan:
    """Grid reductions and box widths (in grid cells) for one image size."""

    fine_reduction: int
    coarse_reduction: int
    fine_box: int
    coarse_box: int

    @classmethod
    def for_size(cls, size: tuple[int, int], fine_reduction: int | None = None) -> Plan:
        """The default plan; `fine_reduction` (a power of two) overrides the fine grid's (for measuring)."""
        scale = max(size) / REFERENCE_SIDE
        fine = fine_reduction or _coarsest_fine_reduction(FINE_BOX * scale)
        if fine & (fine - 1):
            raise ValueError(f"the fine reduction must be a power of two, got {fine}")
        coarse = fine * COARSE_REDUCTION
        return cls(
            fine_reduction=fine,
            coarse_reduction=coarse,
            fine_box=max(1, round(FINE_BOX * scale / fine)),
            coarse_box=max(1, round(COARSE_BOX * scale / coarse)),
        )


def _coarsest_fine_reduction(fine_box_px: float) -> int:
    reduction = 1
    while fine_box_px / (reduction * 2) >= MIN_FINE_BOX_CELLS:
        reduction *= 2
    return reduction


def refine_foreground(
    rgb: Image.Image, alpha: Image.Image, *, in_place: bool = False, plan: Plan | None = None
) -> Image.Image:
    """`rgb` with each pixel of 0 < alpha < 255 replaced by its estimated foreground colour.

    Pixels where alpha is 0 or 255 keep their colour exactly. With `in_place` the pixels of `rgb`
    itself are changed (no full-size copy, for a caller that owns the image); otherwise a copy's.
    `plan` overrides the grids and box widths chosen for the image's size (for measuring).
    """
    if rgb.mode != "RGB" or alpha.mode != "L" or rgb.size != alpha.size:
        raise ValueError(f"expected RGB + L of one size, got {rgb.mode} {rgb.size} + {alpha.mode} {alpha.size}")
    target = rgb if in_place else rgb.copy()
    if target.readonly:
        # An image over a buffer (Image.frombuffer): paste() copies it first, which two strips'
        # threads must not both do, so it is made writable once, here.
        target.paste(target.copy())
    band_box = alpha.point(_BAND_LUT).getbbox()
    if band_box is None:  # a hard mask: nothing is semi-transparent
        return target
    plan = plan or Plan.for_size(rgb.size)
    fg, bg = _Grids.measure(target, alpha, plan).blurred_colours(plan)
    fg_cells = _SampleGrid.of(fg, plan.fine_reduction)
    del fg
    bg_cells = _SampleGrid.of(bg, plan.fine_reduction)
    del bg
    left, top, right, bottom = band_box
    step = plan.fine_reduction
    # Strips start on grid rows, so each pixel's cell is one lookup in a map made once for them all.
    strips = list(_strips(top // step * step, bottom, right - left, step))
    cell_map = _cell_map(max(stop - start for start, stop in strips), (left, right), step, fg_cells.width)
    _each(
        lambda rows: _refine_strip(target, alpha, (left, rows[0], right, rows[1]), cell_map, fg_cells, bg_cells),
        strips,
    )
    return target


@dataclass
class _Grids:
    """The photo measured on the two grids: cell means, float32, colours in [0, 1].

    Opaque pixels go through Pillow (RGBa premultiplication by a 0/255 alpha is exact; the cell
    means are rounded to 8 bits), band pixels through numpy sums in floating point: 8-bit means of
    colour x alpha lose the precision that low-alpha pixels' estimates divide by. Measured on a
    12 MP photo, all-8-bit grids took ~1.5 levels of the error reduction away.
    """

    premultiplied: np.ndarray  # fine grid, HxWx4: colour x alpha, alpha
    band_terms: np.ndarray  # fine grid, HxWx5: alpha(1 - alpha²), alpha²(1 - alpha), alpha(1 - alpha) x colour
    coarse_premultiplied: np.ndarray  # coarse grid, HxWx4
    coarse_colour: np.ndarray  # coarse grid, HxWx3

    @classmethod
    def measure(cls, rgb: Image.Image, alpha: Image.Image, plan: Plan) -> _Grids:
        """Strip by strip, so that no full-size copy exists."""
        width, height = rgb.size
        step = plan.fine_reduction
        shape = (-(-height // step), -(-width // step))
        premultiplied = np.empty((*shape, 4), dtype=np.float32)
        band_terms = np.zeros((*shape, 5), dtype=np.float32)
        colour_means = np.empty((*shape, 3), dtype=np.uint8)
        column_counts = np.minimum(step, width - np.arange(shape[1]) * step)
        strips = list(_strips(0, height, width, plan.coarse_reduction))
        # Each pixel's cell, flat in its strip's grid rows (strips start on grid rows): one gather
        # per band pixel instead of a division and four more operations.
        strip_rows = max(bottom - top for top, bottom in strips)
        cell_map = _cell_map(strip_rows, (0, width), step, shape[1])

        def measure_strip(bounds: tuple[int, int]) -> None:
            top, bottom = bounds
            box = (0, top, width, bottom)
            rows = slice(top // step, -(-bottom // step))
            colour = rgb.crop(box)
            colour_means[rows] = np.asarray(colour.reduce(step))
            levels = np.asarray(alpha.crop(box)).ravel()
            # One 4-byte word per pixel ("<u4": the 4th byte is the high one on any machine), so
            # that a pixel is kept or zeroed with one multiply.
            words = np.frombuffer(colour.tobytes("raw", "RGBX"), dtype="<u4")
            del colour
            index = _band_index(levels)
            band_colour = words[index].view(np.uint8).reshape(-1, 4)
            # Colour x alpha and alpha where alpha is 255, 0 elsewhere (the band is added below):
            # premultiplied by a 0/255 alpha as it is (RGBa: reduce() would convert an RGBA image).
            opaque = np.multiply(words | _OPAQUE_WORD, levels == 255, dtype="<u4")
            del words
            premultiplied[rows] = (
                np.asarray(
                    Image.frombuffer("RGBa", (width, bottom - top), opaque, "raw", "RGBa", 0, 1).reduce(step),
                    dtype=np.float32,
                )
                / 255
            )
            del opaque
            if index.size == 0:
                return
            cells = cell_map[index]
            band_levels = levels[index]
            count = (rows.stop - rows.start) * shape[1]
            row_counts = np.minimum(step, bottom - np.arange(rows.start, rows.stop) * step)
            pixels = np.outer(row_counts, column_counts).astype(np.float32).ravel()
            cell_means = _CellMeans(cells, count, pixels)
            byte_alpha = _BYTE_ALPHA[band_levels]
            byte_cross = _BYTE_CROSS[band_levels]
            region = premultiplied[rows].reshape(count, 4)  # views: whole rows are contiguous
            terms = band_terms[rows].reshape(count, 5)
            weights = np.empty(index.size)
            for channel in range(3):
                region[:, channel] += cell_means(np.multiply(band_colour[:, channel], byte_alpha, out=weights))
                terms[:, 2 + channel] = cell_means(np.multiply(band_colour[:, channel], byte_cross, out=weights))
            region[:, 3] += cell_means(_ALPHA[band_levels])
            terms[:, 0] = cell_means(_FIRST_FG[band_levels])
            terms[:, 1] = cell_means(_FIRST_BG[band_levels])

        _each(measure_strip, strips)
        # Opaque pixels give the same 8-bit means on both paths, so inside the subject
        # colour - premultiplied (the background's share) is exactly 0 on the coarse grid too.
        return cls(
            premultiplied=premultiplied,
            band_terms=band_terms,
            coarse_premultiplied=_block_mean(premultiplied, COARSE_REDUCTION),
            coarse_colour=_block_mean(colour_means, COARSE_REDUCTION) / 255,
        )

    def blurred_colours(self, plan: Plan) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The second pass's blurred fore- and background colours on the fine grid, in [0, 1]: one
        contiguous HxW plane per channel (whole-plane arithmetic runs ~2x faster than on strided
        channels of HxWx3 arrays; the values are the same, operation for operation)."""
        # First pass, coarse grid.
        coarse = self.coarse_premultiplied
        blurred_alpha = box_mean(coarse[..., 3], plan.coarse_box)[..., None]
        first_fg = box_mean(coarse[..., :3], plan.coarse_box) / (blurred_alpha + EPSILON)
        first_bg = box_mean(self.coarse_colour - coarse[..., :3], plan.coarse_box) / ((1 - blurred_alpha) + EPSILON)
        del blurred_alpha
        # The second pass's foreground input, first estimate x alpha, per fine cell: colour x alpha,
        # plus at band pixels alpha(1 - alpha²)F̄ - alpha(1 - alpha)I - alpha²(1 - alpha)B̄ (the first
        # estimate's formula multiplied out; F̄ and B̄ are smooth, so constant within a cell).
        shape = self.premultiplied.shape[:2]
        first_fg_terms = np.ascontiguousarray(self.band_terms[..., 0])
        first_bg_terms = np.ascontiguousarray(self.band_terms[..., 1])
        opacity = np.ascontiguousarray(self.premultiplied[..., 3])
        blurred_opacity = box_mean(opacity, plan.fine_box)
        fg_divisor = blurred_opacity + EPSILON
        bg_divisor = (1 - blurred_opacity) + EPSILON
        del blurred_opacity
        transparency = 1 - opacity
        fg_planes, bg_planes = [], []
        for channel in range(3):
            fg_input = _upsample(first_fg[..., channel], COARSE_REDUCTION, shape)
            fg_input *= first_fg_terms
            fg_input -= self.band_terms[..., 2 + channel]
            first_bg_plane = _upsample(first_bg[..., channel], COARSE_REDUCTION, shape)
            fg_input -= first_bg_plane * first_bg_terms
            fg_input += self.premultiplied[..., channel]
            # Second pass, fine grid.
            fg = box_mean(fg_input, plan.fine_box)
            del fg_input
            fg /= fg_divisor
            fg_planes.append(fg)
            first_bg_plane *= transparency
            bg = box_mean(first_bg_plane, plan.fine_box)
            del first_bg_plane
            bg /= bg_divisor
            bg_planes.append(bg)
        self.band_terms = np.empty((0, 0, 5), dtype=np.float32)  # used up: its memory goes back now
        return fg_planes, bg_planes


@dataclass(frozen=True)
class _CellMeans:
    """Per-pixel values of a strip's band pixels averaged per grid cell."""

    cells: np.ndarray  # each band pixel's cell, flat in the strip's grid rows
    count: int  # cells in those rows
    pixels: np.ndarray  # pixels per cell (fewer at the right and bottom edges)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        # Summed in float64 (np.bincount's precision; `weights` are float64 already), kept as float32.
        means: np.ndarray = (np.bincount(self.cells, weights=weights, minlength=self.count) / self.pixels).astype(
            np.float32
        )
        return means


@dataclass(frozen=True)
class _SampleGrid:
    """A blurred colour field on the fine grid, 8 bits per channel packed one cell per uint32.

    Each band pixel reads its own cell. Measured at 12 MP, this put the estimate 0.28 levels on
    average from full-resolution blur fusion (8x grid; 0.33 on the 4x grid, where bilinear samples
    of a grid twice as fine put it 0.32 levels away at one more full-size resize per field).
    """

    cells: np.ndarray  # flat, row-major
    width: int
    reduction: int

    @classmethod
    def of(cls, planes: list[np.ndarray], reduction: int) -> _SampleGrid:
        """From a field's three HxW channel planes (float, in [0, 1])."""
        cells = np.empty((*planes[0].shape, 4), dtype=np.uint8)
        for channel, plane in enumerate(planes):
            cells[..., channel] = np.rint(np.clip(plane, 0, 1) * 255)
        return cls(cells.view(np.uint32).ravel(), planes[0].shape[1], reduction)

    def channels(self, cells: np.ndarray) -> np.ndarray:
        """The colours of the given cells, N x 4 bytes (R, G, B, unused): one column per channel."""
        channels: np.ndarray = self.cells[cells].view(np.uint8).reshape(-1, 4)
        return channels


def _refine_strip(
    target: Image.Image,
    alpha: Image.Image,
    box: tuple[int, int, int, int],
    cell_map: np.ndarray,
    fg: _SampleGrid,
    bg: _SampleGrid,
) -> None:
    """F = F̄(1 - α²) + αI - α(1 - α)B̄ at the band pixels of `box` (whose top is on a grid row),
    written into `target`; `cell_map` gives each pixel of such a box its cell, relative to the box's
    first grid row."""
    left, top, right, bottom = box
    opacity = np.asarray(alpha.crop(box))
    index = _band_index(opacity)
    if index.size == 0:
        return
    levels = opacity.ravel()[index]
    # The whole strip, one uint32 per pixel (RGBX): gathers and scatters move whole pixels.
    pixels = np.frombuffer(bytearray(target.crop(box).tobytes("raw", "RGBX")), dtype=np.uint32)
    cells = cell_map[index]
    cells += top // fg.reduction * fg.width  # one gather then serves both fields: they share the grid
    photo = pixels[index].view(np.uint8).reshape(-1, 4)
    fg_colours, bg_colours = fg.channels(cells), bg.channels(cells)
    keep_fg, keep_photo, drop_bg = _KEEP_FG[levels], _KEEP_PHOTO[levels], _DROP_BG[levels]
    packed = np.empty((index.size, 4), dtype=np.uint8)
    packed[:, 3] = 255
    # Channel by channel over contiguous N-vectors: broadcasting over N x 3 runs numpy's inner
    # loop three values at a time, ~2x slower for the same operations in the same order.
    estimate = np.empty(index.size, dtype=np.float32)
    term = np.empty_like(estimate)
    for channel in range(3):
        np.multiply(fg_colours[:, channel], keep_fg, out=estimate)
        estimate += np.multiply(photo[:, channel], keep_photo, out=term)
        estimate -= np.multiply(bg_colours[:, channel], drop_bg, out=term)
        np.rint(np.clip(estimate, 0, 255, out=estimate), out=estimate)
        packed[:, channel] = estimate
    pixels[index] = packed.view(np.uint32).ravel()
    target.paste(Image.frombytes("RGB", (right - left, bottom - top), pixels, "raw", "RGBX"), (left, top))


def _cell_map(rows: int, columns: tuple[int, int], step: int, grid_width: int) -> np.ndarray:
    """The grid cell of each pixel of `rows` rows (from a grid row) by `columns` (left, right),
    flat in row-major order, relative to the first grid row."""
    cells: np.ndarray = (
        np.arange(rows, dtype=np.intp)[:, None] // step * grid_width
        + np.arange(*columns, dtype=np.intp)[None, :] // step
    ).ravel()
    return cells


def _band_index(levels: np.ndarray) -> np.ndarray:
    """Flat positions of the band pixels (0 < alpha < 255) of an alpha array."""
    return np.flatnonzero(np.subtract(levels.ravel(), 1, dtype=np.uint8) < 254)  # 1..254; 0 wraps to 255


def _each(work: Callable[[tuple[int, int]], None], strips: list[tuple[int, int]]) -> None:
    """`work` on every strip, over the CPU share: strips write disjoint rows, so they can share
    the cores for the full-resolution passes."""
    map_over_cpus(work, strips)


def _strips(start: int, stop: int, width: int, rows_multiple: int) -> Iterator[tuple[int, int]]:
    """Row ranges of about STRIP_PIXELS each, starting on multiples of `rows_multiple` (grid-aligned)."""
    rows = max(rows_multiple, STRIP_PIXELS // max(width, 1) // rows_multiple * rows_multiple)
    for top in range(start, stop, rows):
        yield top, min(stop, top + rows)


def _block_mean(grid: np.ndarray, factor: int) -> np.ndarray:
    """Means of factor x factor blocks of an HxWxC grid (the edge cells repeated to fill the last blocks)."""
    height, width = grid.shape[:2]
    padded = np.pad(grid, ((0, -height % factor), (0, -width % factor), (0, 0)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor, grid.shape[2])
    # Summed cell by cell in row-major order within each block, as blocks.mean(axis=(1, 3)) sums
    # (the same float32 sums), in factor² whole-grid additions: ~3x faster than the strided reduction.
    means: np.ndarray = blocks[:, 0, :, 0].astype(np.float32)
    for row in range(factor):
        for column in range(factor):
            if row or column:
                means += blocks[:, row, :, column]
    means /= np.float32(factor * factor)
    return means


def _upsample(field: np.ndarray, reduction: int, shape: tuple[int, int]) -> np.ndarray:
    """A coarse HxW grid plane bilinearly resampled onto a grid `reduction` times finer, of `shape`."""
    height, width = shape
    # The region of the coarse grid that the finer one covers: cell centres stay aligned.
    box = (0.0, 0.0, min(field.shape[1], width / reduction), min(field.shape[0], height / reduction))
    upsampled: np.ndarray = np.asarray(
        Image.fromarray(np.ascontiguousarray(field), "F").resize((width, height), Image.Resampling.BILINEAR, box=box)
    )
    # asarray over an image's bytes is read-only; the caller accumulates into it.
    return upsampled if upsampled.flags.writeable else upsampled.copy()
