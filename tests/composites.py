"""Photos of known alpha and known foreground colour: I = alpha*F + (1 - alpha)*B, made by hand.

The backgrounds B are the real photos in samples/; the foregrounds F are synthetic subjects with
smooth colour (hair, a moving object, a product); the alphas are the soft edges foreground colour
estimation is for:

- hair: a head with hundreds of thin strands, drawn 4x larger and reduced, so most strand pixels
  are partly covered (alpha spread over the whole 1..254 range, much of it low);
- motion: a shape moving horizontally during the exposure, so both its alpha and its premultiplied
  colour are smeared by a box of MOTION_PIXELS (a band tens of pixels wide);
- antialiased: a star drawn 8x larger and reduced: a crisp one-pixel band.

Everything is seeded: the same call gives the same pixels. Shared by the tests and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
BACKGROUNDS = ("astronaut", "chelsea", "coffee")
MOTION_PIXELS = 31


@dataclass(frozen=True)
class Composite:
    name: str
    image: Image.Image  # RGB, the photo a camera would have taken (8-bit)
    alpha: Image.Image  # L, the true alpha (8-bit; the composite was made with exactly these values)
    foreground: np.ndarray  # HxWx3 float in [0, 255]: the true foreground colour (meaningful where alpha > 0)

    def band(self) -> np.ndarray:
        """The pixels of 0 < alpha < 1: where the colour differs from the photo's."""
        alpha = np.asarray(self.alpha)
        return (alpha > 0) & (alpha < 255)

    def band_error(self, colour: Image.Image) -> float:
        """Mean absolute difference (0-255, over channels) of `colour` from the true foreground in the band."""
        band = self.band()
        return float(np.abs(np.asarray(colour, dtype=np.float64)[band] - self.foreground[band]).mean())


def background(name: str, size: tuple[int, int]) -> np.ndarray:
    """A sample photo cropped to the aspect ratio of `size` and resized to it, as float."""
    photo = Image.open(SAMPLES / f"{name}.jpg").convert("RGB")
    width, height = photo.size
    aspect = size[0] / size[1]
    crop_width, crop_height = min(width, round(height * aspect)), min(height, round(width / aspect))
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    photo = photo.crop((left, top, left + crop_width, top + crop_height)).resize(size, Image.Resampling.BICUBIC)
    return np.asarray(photo, dtype=np.float64)


def _smooth_colour(size: tuple[int, int], base: tuple[int, int, int], seed: int) -> np.ndarray:
    """A subject's colour: a base colour under gentle shading (a gradient and soft blotches), HxWx3."""
    width, height = size
    rng = np.random.default_rng(seed)
    blotches = Image.fromarray(rng.integers(0, 256, (max(2, height // 32), max(2, width // 32)), dtype=np.uint8))
    shading = np.asarray(blotches.resize(size, Image.Resampling.BICUBIC), dtype=np.float64) - 128
    shading = 0.2 * shading + np.linspace(-25, 25, height)[:, None]
    return np.clip(np.asarray(base, dtype=np.float64) + shading[..., None], 0, 255)


def _supersampled(size: tuple[int, int], factor: int, draw: Callable[[ImageDraw.ImageDraw, int], None]) -> np.ndarray:
    """Alpha drawn `factor` times larger and box-reduced: true partial coverage at every edge."""
    large = Image.new("L", (size[0] * factor, size[1] * factor), 0)
    draw(ImageDraw.Draw(large), factor)
    return np.asarray(large.reduce(factor), dtype=np.float64) / 255


def hair_alpha(size: tuple[int, int], seed: int = 1) -> np.ndarray:
    width, height = size
    rng = np.random.default_rng(seed)
    centre = np.array([width * 0.5, height * 0.62])
    radius = min(width, height) * 0.3

    def draw(canvas: ImageDraw.ImageDraw, k: int) -> None:
        cx, cy = centre * k
        canvas.ellipse((cx - radius * k, cy - radius * 1.1 * k, cx + radius * k, cy + radius * 1.1 * k), fill=255)
        for _ in range(600):
            angle = rng.uniform(-np.pi * 0.95, -np.pi * 0.05)  # strands grow upwards and sideways
            length = radius * rng.uniform(0.35, 0.9)
            curl = rng.normal(0, 0.9)
            steps = np.linspace(0, 1, 12)
            directions = angle + curl * steps**2
            start = radius * 0.85
            xs = centre[0] + np.cos(angle) * start + np.cumsum(np.cos(directions)) * length / 12
            ys = centre[1] + np.sin(angle) * start * 1.1 + np.cumsum(np.sin(directions)) * length / 12
            canvas.line([(x * k, y * k) for x, y in zip(xs, ys, strict=True)], fill=255, width=int(rng.integers(1, 4)))

    return _supersampled(size, 4, draw)


def antialiased_alpha(size: tuple[int, int]) -> np.ndarray:
    width, height = size
    angles = np.linspace(0, 2 * np.pi, 15, endpoint=False)
    radii = np.where(np.arange(15) % 2 == 0, 0.42, 0.2) * min(width, height)

    def draw(canvas: ImageDraw.ImageDraw, k: int) -> None:
        points = [
            ((width / 2 + r * np.cos(t)) * k, (height / 2 + r * np.sin(t)) * k)
            for r, t in zip(radii, angles + 0.1, strict=True)
        ]
        canvas.polygon(points, fill=255)

    return _supersampled(size, 8, draw)


def _motion(alpha: np.ndarray, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A subject that moved MOTION_PIXELS sideways while the shutter was open: alpha and F smeared alike."""
    kernel = np.ones(MOTION_PIXELS) / MOTION_PIXELS

    def smear(values: np.ndarray) -> np.ndarray:
        return np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), 1, values)

    smeared = smear(alpha)
    premultiplied = np.stack([smear(alpha * colour[..., c]) for c in range(3)], axis=-1)
    foreground = np.where(smeared[..., None] > 1e-6, premultiplied / np.maximum(smeared, 1e-6)[..., None], colour)
    return smeared, foreground


def motion_alpha_and_colour(size: tuple[int, int], seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    width, height = size

    def draw(canvas: ImageDraw.ImageDraw, k: int) -> None:
        canvas.rounded_rectangle(
            (width * 0.2 * k, height * 0.35 * k, width * 0.8 * k, height * 0.75 * k), radius=height * 0.1 * k, fill=255
        )
        canvas.ellipse((width * 0.3 * k, height * 0.2 * k, width * 0.6 * k, height * 0.5 * k), fill=255)

    return _motion(_supersampled(size, 4, draw), _smooth_colour(size, (40, 90, 200), seed))


def compose(name: str, alpha: np.ndarray, foreground: np.ndarray, back: np.ndarray) -> Composite:
    """The 8-bit photo of `foreground` over `back` with `alpha` (itself rounded to 8 bits first)."""
    alpha8 = np.rint(np.clip(alpha, 0, 1) * 255).astype(np.uint8)
    a = alpha8[..., None].astype(np.float64) / 255
    image = np.rint(a * foreground + (1 - a) * back).astype(np.uint8)
    return Composite(name, Image.fromarray(image, "RGB"), Image.fromarray(alpha8, "L"), foreground)


def cases(size: tuple[int, int] = (480, 360), backgrounds: tuple[str, ...] = BACKGROUNDS) -> list[Composite]:
    """Each soft alpha over each background photo."""
    hair_colour = _smooth_colour(size, (150, 100, 55), seed=2)
    product_colour = _smooth_colour(size, (215, 40, 50), seed=4)
    hair = hair_alpha(size)
    star = antialiased_alpha(size)
    motion, motion_colour = motion_alpha_and_colour(size)
    made = []
    for name in backgrounds:
        back = background(name, size)
        made.append(compose(f"hair-{name}", hair, hair_colour, back))
        made.append(compose(f"motion-{name}", motion, motion_colour, back))
        made.append(compose(f"antialiased-{name}", star, product_colour, back))
    return made


def changed_edge_pixels(source: Image.Image, cutout: Image.Image) -> int:
    """How many semi-transparent pixels of an RGBA cutout differ in colour from the source photo.

    Checks on the way that the rest follows the cutout contract whether refined or not: opaque
    pixels keep the photo's colour exactly, fully transparent ones are zero.
    """
    pixels = np.asarray(cutout.convert("RGBA"))
    photo = np.asarray(source.convert("RGB"))
    alpha = pixels[..., 3]
    np.testing.assert_array_equal(pixels[alpha == 255, :3], photo[alpha == 255])
    assert not pixels[alpha == 0, :3].any()
    band = (alpha > 0) & (alpha < 255)
    assert band.any(), "no semi-transparent pixels: nothing to refine"
    return int((pixels[band, :3] != photo[band]).any(axis=1).sum())
