"""Background removal from Python: `remove()` gives the cutout, `mask()` the mask.

A local tool like the command line: the model is the one named, else the environment's, with the
local tools' fallback (handler.local.model_choice) when the default one cannot be had. Free of AWS.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from handler.core.image.compose import alpha_from, compose_cutout, refined
from handler.core.image.decode import ImageSource, Picture, load_picture
from handler.core.image.limits import ImageLimits
from handler.core.model.session import BackgroundModel, load_model
from handler.core.model.settings import ModelSettings
from handler.local.model_choice import local_model_settings


def load_local_model(settings: ModelSettings) -> BackgroundModel:
    """For the local tools (command line, Python API, local server): `load_model`, or the fallback
    model when the default one cannot be had (handler.local.model_choice)."""
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
    (handler.core.image.refine).
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
