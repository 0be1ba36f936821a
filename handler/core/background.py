"""Background removal, the public core: `remove()` gives the cutout, `mask()` the mask.

Free of AWS: the entry points, the command line and tests all come through here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from handler.core.decode import ImageSource, Picture, load_picture
from handler.core.model import BackgroundModel, to_mask
from handler.core.model_choice import local_model_settings
from handler.core.model_store import resolve_model_path
from handler.core.refine import refine_foreground
from handler.core.settings import ImageLimits, ModelSettings

# Models kept loaded at once, one session each. The functions only ever load one; a Python caller
# that alternates between a few (`remove(..., repo=...)`) reuses each one's session rather than
# loading it per call. BiRefNet's session holds gigabytes, so the cache is small.
MODEL_SESSIONS = 4
# The mask value from which a pixel counts as subject when reporting the bounding box.
FOREGROUND_THRESHOLD = 128
# 255 exactly where alpha is 0: selects the pixels whose RGB carries no information.
_TRANSPARENT_LUT = [255] + [0] * 255


@dataclass(frozen=True)
class Box:
    """The subject's bounding box in input pixels (remove.bg's X-Foreground-* headers)."""

    left: int
    top: int
    width: int
    height: int


@lru_cache(maxsize=MODEL_SESSIONS)
def load_model(settings: ModelSettings) -> BackgroundModel:
    """The model `settings` name, loaded once: the process's model cache, one session per model.

    What the Lambda runtime (handler.aws.runtime) loads: the named model or an error, never a fallback.
    """
    return BackgroundModel.load(resolve_model_path(settings), settings.spec, threads=settings.threads)


def load_local_model(settings: ModelSettings) -> BackgroundModel:
    """For the local tools (command line, Python API, local server): `load_model`, or the fallback
    model when the default one cannot be had (handler.core.model_choice)."""
    return load_model(local_model_settings(settings))


def default_model() -> BackgroundModel:
    """The model named by the environment (MODEL_* variables), loaded once per process."""
    return load_local_model(ModelSettings.from_env())


def chosen_model(
    model: BackgroundModel | None = None,
    *,
    model_path: str | Path | None = None,
    repo: str | None = None,
    model_file: str | None = None,
    revision: str | None = None,
) -> BackgroundModel:
    """The model for one call: `model` itself, or the one named (a file, or a hub repo/file/revision
    with the rest from the environment), or the environment's; each loaded once per process."""
    named = model_path is not None or repo is not None or model_file is not None or revision is not None
    if model is not None:
        if named:
            raise ValueError("give either model= or a model's name (model_path, repo, model_file, revision), not both")
        return model
    if not named:
        return default_model()
    settings = ModelSettings.from_env().naming(
        path=None if model_path is None else Path(model_path), repo=repo, file=model_file, revision=revision
    )
    return load_local_model(settings)


def segment(picture: Picture, model: BackgroundModel) -> Image.Image:
    """The alpha for `picture`: the model's mask, cut further by the input's own transparency."""
    return alpha_from(picture, model.probabilities(picture.rgb))


def alpha_from(picture: Picture, probabilities: np.ndarray) -> Image.Image:
    """The model's probabilities as the picture's alpha, at its size, with its own transparency kept."""
    alpha = to_mask(probabilities, picture.size)
    if picture.alpha is not None:
        alpha = ImageChops.multiply(alpha, picture.alpha)
    return alpha


def refined(picture: Picture, alpha: Image.Image, *, source: ImageSource) -> Picture:
    """`picture` with its edge pixels' foreground colour estimated (handler.core.refine).

    Our own decode is changed in place (no full-size copy); a caller's PIL image is left alone.
    """
    return replace(picture, rgb=refine_foreground(picture.rgb, alpha, in_place=picture.rgb is not source))


def compose_cutout(picture: Picture, alpha: Image.Image) -> Image.Image:
    """RGBA with straight (not premultiplied) alpha; RGB zeroed where alpha is exactly 0.

    Premultiplying and then storing as straight alpha is what gives dark fringes; zeroing fully
    transparent pixels removes information nobody can see and makes the PNG far smaller.
    """
    # In place on one RGBA copy: 4 bytes per pixel plus a 1-byte selection, nothing more.
    cutout = picture.rgb.convert("RGBA")
    cutout.putalpha(alpha)
    cutout.paste((0, 0, 0, 0), mask=alpha.point(_TRANSPARENT_LUT))
    return cutout


def foreground_box(alpha: Image.Image, threshold: int = FOREGROUND_THRESHOLD) -> Box | None:
    """The bounding box of pixels at or above `threshold`, or None when there is no subject."""
    bbox = alpha.point([255 if value >= threshold else 0 for value in range(256)]).getbbox()
    if bbox is None:
        return None
    left, top, right, bottom = bbox
    return Box(left=left, top=top, width=right - left, height=bottom - top)


def mask(
    image: ImageSource,
    *,
    model: BackgroundModel | None = None,
    model_path: str | Path | None = None,
    repo: str | None = None,
    model_file: str | None = None,
    revision: str | None = None,
    limits: ImageLimits | None = None,
) -> Image.Image:
    """The foreground mask, mode "L", at the input's size after EXIF orientation.

    The model: `model`, or the one `model_path` or `repo`/`model_file`/`revision` name, or the
    environment's (see `chosen_model`).
    """
    chosen = chosen_model(model, model_path=model_path, repo=repo, model_file=model_file, revision=revision)
    return segment(load_picture(image, limits), chosen)


def remove(
    image: ImageSource,
    *,
    model: BackgroundModel | None = None,
    model_path: str | Path | None = None,
    repo: str | None = None,
    model_file: str | None = None,
    revision: str | None = None,
    limits: ImageLimits | None = None,
    refine: bool = True,
) -> Image.Image:
    """The input with its background made transparent: mode "RGBA", same size, ICC profile kept in `info`.

    The model: `model`, or the one `model_path` or `repo`/`model_file`/`revision` name, or the
    environment's (see `chosen_model`). With `refine` (the default) semi-transparent edge pixels
    get their estimated foreground colour instead of the blend with the old background
    (handler.core.refine).
    """
    chosen = chosen_model(model, model_path=model_path, repo=repo, model_file=model_file, revision=revision)
    picture = load_picture(image, limits)
    alpha = segment(picture, chosen)
    if refine:
        picture = refined(picture, alpha, source=image)
    cutout = compose_cutout(picture, alpha)
    if picture.icc_profile is not None:
        cutout.info["icc_profile"] = picture.icc_profile
    return cutout
