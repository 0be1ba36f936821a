"""Edge colour: the foreground colour of semi-transparent pixels, by blur fusion.

A pixel at the subject's edge (0 < alpha < 1) shows I = alpha*F + (1 - alpha)*B, a blend of the
subject's colour F and the old background's B. Keeping I as the cutout's colour carries the old
background along as a halo. Forte & Pitié's "approximate fast foreground colour estimation"
(ICIP 2021; the method BiRefNet's own demo applies to its cutouts) estimates F with two passes of
alpha-weighted box blurs, a large box for the local fore- and background colours, then a small
one. `blur_fusion` below is that definition at full resolution; `refine_foreground` computes the
same estimate for a whole photo within a small time and memory budget.

Box widths. The reference uses boxes of 90 and 6 pixels on images of about 1024 pixels. Here they
scale with the image's longer side: the large box should cover the same part of the scene at any
resolution (a fixed 90 pixels would see a sixteenth of the area on a 12 MP photo, often no
background at all), and the small box should span the soft band itself, whose width in pixels
grows with the image because the mask is the model's ~1024-pixel output enlarged to the photo.

Budget. Only band pixels (0 < alpha < 255) change, and every blurred quantity is smooth:
- the large blur runs on a coarse grid (COARSE_REDUCTION times coarser than the fine one);
- the small blur runs on a fine grid whose longer side is about FINE_GRID_SIDE, the resolution
  the reference widths were chosen for. Its input, the first estimate times alpha, equals the
  photo times alpha except at band pixels, where the difference is a polynomial in alpha times
  the photo and the (smooth) first-pass colours: its cell means come from 8-bit lookup tables
  and Pillow's reductions, so the first pass never runs per pixel;
- the per-pixel formula runs at band pixels only, strip by strip, on the blurred colours
  enlarged (bilinear) to a grid SAMPLE_REDUCTION times coarser than the photo.
benchmarks/refine.py measures the error of this against `blur_fusion` at full resolution, and
the time and memory it adds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

# The reference's box widths, in pixels of an image whose longer side is REFERENCE_SIDE.
REFERENCE_SIDE = 1024
COARSE_BOX = 90
FINE_BOX = 6
# Keeps the divisions defined where a window holds no foreground (or no background) at all.
EPSILON = 1e-5
# The small blur's grid: the photo reduced by a power of two to a longer side of at most this.
FINE_GRID_SIDE = 1024
# The large blur's grid is this much coarser again: its box is 15x the small one, so it still
# spans ~22 cells.
COARSE_REDUCTION = 4
# The blurred colours are read per pixel from a grid this much coarser than the photo.
SAMPLE_REDUCTION = 2
# Full-resolution work is done in horizontal strips of about this many pixels: bounded memory.
STRIP_PIXELS = 1 << 20

_LEVELS = np.arange(256, dtype=np.float64) / 255
# The band (0 < alpha < 255) as a mask: its bounding box bounds the per-pixel work.
_BAND_LUT = [0] + [255] * 254 + [0]
# Cell means of the first-pass correction's alpha polynomials, each as an 8-bit table scaled so
# that its peak is 255: alpha(1 - alpha) (peak 1/4), alpha(1 - alpha²) (peak 2/(3√3)) and
# alpha²(1 - alpha) (peak 4/27).
_CROSS_PEAK, _FG_PEAK, _BG_PEAK = 0.25, 2 / (3 * math.sqrt(3)), 4 / 27
_CROSS_LUT = np.rint(_LEVELS * (1 - _LEVELS) / _CROSS_PEAK * 255).astype(np.uint8).tolist()
_FG_LUT = np.rint(_LEVELS * (1 - _LEVELS**2) / _FG_PEAK * 255).astype(np.uint8).tolist()
_BG_LUT = np.rint(_LEVELS**2 * (1 - _LEVELS) / _BG_PEAK * 255).astype(np.uint8).tolist()
# F = F̄(1 - α²) + αI - α(1 - α)B̄: the per-pixel formula's coefficients by alpha level.
_KEEP_FG = (1 - _LEVELS**2).astype(np.float32)
_KEEP_PHOTO = _LEVELS.astype(np.float32)
_DROP_BG = (_LEVELS * (1 - _LEVELS)).astype(np.float32)


@dataclass(frozen=True)
class Plan:
    """Grid reductions and box widths (in grid cells) for one image size."""

    fine_reduction: int
    coarse_reduction: int
    sample_reduction: int
    fine_box: int
    coarse_box: int

    @classmethod
    def for_size(cls, size: tuple[int, int], fine_reduction: int | None = None, sample_reduction: int | None = None) -> Plan:
        """The default plan; `fine_reduction` (a power of two) and `sample_reduction` override it (for measuring)."""
        scale = max(size) / REFERENCE_SIDE
        fine = fine_reduction or 2 ** max(0, math.ceil(math.log2(max(size) / FINE_GRID_SIDE)))
        if fine & (fine - 1):
            raise ValueError(f"the fine reduction must be a power of two, got {fine}")
        coarse = fine * COARSE_REDUCTION
        return cls(
            fine_reduction=fine,
            coarse_reduction=coarse,
            sample_reduction=min(fine, sample_reduction or SAMPLE_REDUCTION),
            fine_box=max(1, round(FINE_BOX * scale / fine)),
            coarse_box=max(1, round(COARSE_BOX * scale / coarse)),
        )


def refine_foreground(rgb: Image.Image, alpha: Image.Image, *, in_place: bool = False, plan: Plan | None = None) -> Image.Image:
    """`rgb` with each pixel of 0 < alpha < 255 replaced by its estimated foreground colour.

    Pixels where alpha is 0 or 255 keep their colour exactly. With `in_place` the pixels of `rgb`
    itself are changed (no full-size copy, for a caller that owns the image); otherwise a copy's.
    """
    if rgb.mode != "RGB" or alpha.mode != "L" or rgb.size != alpha.size:
        raise ValueError(f"expected RGB + L of one size, got {rgb.mode} {rgb.size} + {alpha.mode} {alpha.size}")
    target = rgb if in_place else rgb.copy()
    band_box = alpha.point(_BAND_LUT).getbbox()
    if band_box is None:  # a hard mask: nothing is semi-transparent
        return target
    plan = plan or Plan.for_size(rgb.size)
    fg, bg = _Grids.measure(target, alpha, plan).blurred_colours(plan)
    fg_cells = _SampleGrid.of(fg, plan, rgb.size)
    del fg
    bg_cells = _SampleGrid.of(bg, plan, rgb.size)
    del bg
    left, top, right, bottom = band_box
    for strip_top, strip_bottom in _strips(top, bottom, right - left, 1):
        _refine_strip(target, alpha, (left, strip_top, right, strip_bottom), fg_cells, bg_cells)
    return target


def blur_fusion(image: np.ndarray, alpha: np.ndarray, coarse_box: int, fine_box: int) -> np.ndarray:
    """The estimate by definition, at full resolution: float arrays in [0, 1], HxWx3 and HxW.

    BiRefNet's `FB_blur_fusion_foreground_estimator_2`, with a box mean whose window is clipped at
    the image border (the same one the grids use, so measurements compare only the grids).
    """
    a = alpha[..., None]
    first, blurred_bg = _fusion_step(image, image, image, a, coarse_box)
    return _fusion_step(image, first, blurred_bg, a, fine_box)[0]


def _fusion_step(image: np.ndarray, fg: np.ndarray, bg: np.ndarray, a: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    blurred_alpha = box_mean(a, width)
    blurred_fg = box_mean(fg * a, width) / (blurred_alpha + EPSILON)
    blurred_bg = box_mean(bg * (1 - a), width) / ((1 - blurred_alpha) + EPSILON)
    estimate = blurred_fg + a * (image - a * blurred_fg - (1 - a) * blurred_bg)
    return np.clip(estimate, 0, 1), blurred_bg


def box_mean(values: np.ndarray, width: int) -> np.ndarray:
    """The mean over a width x width box around each pixel of an HxW(xC) array, clipped at the borders."""
    return _box_axis(_box_axis(np.asarray(values, dtype=np.float32), width, 0), width, 1)


def _box_axis(values: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Box means along one axis from running sums: one subtraction per value, whatever the width."""
    length = values.shape[axis]
    before, after = (width - 1) // 2, width // 2  # the window is [i - before, i + after]

    def span(start: int, stop: int) -> tuple[slice, ...]:
        return (slice(None),) * axis + (slice(start, stop),)

    # sums[k] = the sum of values[0 : k - before], clamped to 0 and to the total beyond both ends.
    shape = list(values.shape)
    shape[axis] = length + width
    sums = np.empty(shape, dtype=np.float32)
    sums[span(0, before + 1)] = 0
    np.cumsum(values, axis=axis, dtype=np.float32, out=sums[span(before + 1, before + 1 + length)])
    sums[span(before + 1 + length, None)] = sums[span(before + length, before + length + 1)]
    means = sums[span(width, width + length)] - sums[span(0, length)]
    index = np.arange(length)
    counts = np.minimum(index + after + 1, length) - np.maximum(index - before, 0)
    means /= counts.astype(np.float32).reshape((length,) + (1,) * (values.ndim - 1 - axis))
    return means


@dataclass
class _Grids:
    """The photo measured on the two grids: 8-bit cell means (Pillow's reductions)."""

    premultiplied: np.ndarray  # fine grid, HxWx4: colour x alpha and alpha
    colour: np.ndarray  # fine grid, HxWx3
    weights: np.ndarray  # fine grid, HxWx3: _FG_LUT(alpha), _BG_LUT(alpha), _CROSS_LUT(alpha)
    coarse_premultiplied: np.ndarray  # coarse grid, HxWx4
    coarse_colour: np.ndarray  # coarse grid, HxWx3

    @classmethod
    def measure(cls, rgb: Image.Image, alpha: Image.Image, plan: Plan) -> _Grids:
        """Strip by strip, so that no full-size copy exists; Pillow's RGBa mode does the multiplying."""
        width, height = rgb.size
        parts: dict[str, list[np.ndarray]] = {"premultiplied": [], "colour": [], "weights": [], "coarse": []}
        for top, bottom in _strips(0, height, width, plan.coarse_reduction):
            box = (0, top, width, bottom)
            opacity = alpha.crop(box)
            colour = rgb.crop(box)
            parts["colour"].append(np.asarray(colour.reduce(plan.fine_reduction)))
            colour.putalpha(opacity)
            premultiplied = colour.convert("RGBa").reduce(plan.fine_reduction)
            parts["premultiplied"].append(np.asarray(premultiplied))
            parts["coarse"].append(np.asarray(premultiplied.reduce(COARSE_REDUCTION)))
            weights = Image.merge("RGB", (opacity.point(_FG_LUT), opacity.point(_BG_LUT), opacity.point(_CROSS_LUT)))
            parts["weights"].append(np.asarray(weights.reduce(plan.fine_reduction)))
        return cls(
            premultiplied=np.concatenate(parts["premultiplied"]),
            colour=np.concatenate(parts["colour"]),
            weights=np.concatenate(parts["weights"]),
            coarse_premultiplied=np.concatenate(parts["coarse"]),
            coarse_colour=np.asarray(rgb.reduce(plan.coarse_reduction)),
        )

    def blurred_colours(self, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """The second pass's blurred fore- and background colours on the fine grid, in [0, 1]."""
        # First pass, coarse grid.
        coarse = self.coarse_premultiplied.astype(np.float32) / 255
        blurred_alpha = box_mean(coarse[..., 3], plan.coarse_box)[..., None]
        first_fg = box_mean(coarse[..., :3], plan.coarse_box) / (blurred_alpha + EPSILON)
        colour = self.coarse_colour.astype(np.float32) / 255
        first_bg = box_mean(colour - coarse[..., :3], plan.coarse_box) / ((1 - blurred_alpha) + EPSILON)
        del coarse, colour, blurred_alpha
        # The second pass's foreground input, first estimate x alpha, per fine cell: photo x alpha
        # plus, at band pixels, alpha(1 - alpha²)F̄ - alpha(1 - alpha)I - alpha²(1 - alpha)B̄.
        shape = self.premultiplied.shape[:2]
        weights = self.weights.astype(np.float32) / 255
        fg_input = _upsample(first_fg, COARSE_REDUCTION, shape)
        del first_fg
        fg_input *= weights[..., :1] * _FG_PEAK
        # The mean of alpha(1 - alpha)I is taken as mean(alpha(1 - alpha)) x mean(I): one less
        # full-size multiply, and the cells are a few pixels wide.
        fg_input -= self.colour.astype(np.float32) * (weights[..., 2:3] * (_CROSS_PEAK / 255))
        first_bg = _upsample(first_bg, COARSE_REDUCTION, shape)
        fg_input -= first_bg * (weights[..., 1:2] * _BG_PEAK)
        fg_input += self.premultiplied[..., :3].astype(np.float32) / 255
        del weights
        # Second pass, fine grid.
        opacity = self.premultiplied[..., 3].astype(np.float32) / 255
        blurred_alpha = box_mean(opacity, plan.fine_box)[..., None]
        fg = box_mean(fg_input, plan.fine_box)
        del fg_input
        fg /= blurred_alpha + EPSILON
        first_bg *= (1 - opacity)[..., None]
        bg = box_mean(first_bg, plan.fine_box)
        del first_bg
        bg /= (1 - blurred_alpha) + EPSILON
        return fg, bg


@dataclass(frozen=True)
class _SampleGrid:
    """A blurred colour field on the sampling grid, 8 bits per channel packed one pixel per uint32."""

    cells: np.ndarray  # flat, row-major
    width: int
    reduction: int

    @classmethod
    def of(cls, field: np.ndarray, plan: Plan, size: tuple[int, int]) -> _SampleGrid:
        image = Image.fromarray(np.rint(np.clip(field, 0, 1) * 255).astype(np.uint8), "RGB")
        step = plan.sample_reduction
        if step != plan.fine_reduction:
            # Bilinear enlargement; `box` keeps the cell centres aligned when the size is not a multiple.
            grid_size = (-(-size[0] // step), -(-size[1] // step))
            ratio = step / plan.fine_reduction
            box = (0.0, 0.0, min(image.width, grid_size[0] * ratio), min(image.height, grid_size[1] * ratio))
            image = image.resize(grid_size, Image.Resampling.BILINEAR, box=box)
        return cls(np.frombuffer(image.tobytes("raw", "RGBX"), dtype=np.uint32), image.width, step)

    def at(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """The colours (0-255, float32, N x 3) of the cells holding the given pixels."""
        packed = self.cells[(rows // self.reduction) * self.width + columns // self.reduction]
        return packed.view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)


def _refine_strip(target: Image.Image, alpha: Image.Image, box: tuple[int, int, int, int], fg: _SampleGrid, bg: _SampleGrid) -> None:
    """F = F̄(1 - α²) + αI - α(1 - α)B̄ at the band pixels of `box`, written into `target`."""
    left, top, right, bottom = box
    opacity = np.asarray(alpha.crop(box)).ravel()
    band = np.flatnonzero(np.subtract(opacity, 1, dtype=np.uint8) < 254)  # 1..254; 0 wraps to 255
    if band.size == 0:
        return
    rows, columns = np.divmod(band, right - left)
    rows += top
    columns += left
    # One uint32 per pixel (RGBX): a gather or scatter moves whole pixels.
    pixels = np.frombuffer(bytearray(target.crop(box).tobytes("raw", "RGBX")), dtype=np.uint32)
    level = opacity[band]
    colour = pixels[band].view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)
    estimate = fg.at(rows, columns)
    estimate *= _KEEP_FG[level][:, None]
    colour *= _KEEP_PHOTO[level][:, None]
    estimate += colour
    del colour
    estimate -= bg.at(rows, columns) * _DROP_BG[level][:, None]
    packed = np.empty((band.size, 4), dtype=np.uint8)
    packed[:, 3] = 255
    np.rint(np.clip(estimate, 0, 255, out=estimate), out=estimate)
    packed[:, :3] = estimate
    pixels[band] = packed.view(np.uint32).ravel()
    target.paste(Image.frombytes("RGB", (right - left, bottom - top), pixels, "raw", "RGBX"), (left, top))


def _strips(start: int, stop: int, width: int, rows_multiple: int) -> Iterator[tuple[int, int]]:
    """Row ranges of about STRIP_PIXELS each, starting on multiples of `rows_multiple` (grid-aligned)."""
    rows = max(rows_multiple, STRIP_PIXELS // max(width, 1) // rows_multiple * rows_multiple)
    for top in range(start, stop, rows):
        yield top, min(stop, top + rows)


def _upsample(field: np.ndarray, reduction: int, shape: tuple[int, int]) -> np.ndarray:
    """A coarse HxWxC grid field bilinearly resampled onto a grid `reduction` times finer, of `shape`."""
    height, width = shape
    # The region of the coarse grid that the finer one covers: cell centres stay aligned.
    box = (0.0, 0.0, min(field.shape[1], width / reduction), min(field.shape[0], height / reduction))
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(field[..., c]), "F").resize((width, height), Image.Resampling.BILINEAR, box=box))
        for c in range(field.shape[2])
    ]
    return np.stack(channels, axis=-1)
