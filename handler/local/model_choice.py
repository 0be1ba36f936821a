"""Which model the local tools load: the one the settings name, or else the documented fallback.

The command line, the Python API, the local server and the demo resolve the model as the functions
do (handler.core.model.store: MODEL_PATH, the cache, the hub) — and where the default BiRefNet-lite
cannot be had (no hub, not cached), they use the real U-2-Net-p from PyPI
(handler.local.fallback_model), saying so in one line on stderr, so they work on a machine that
reaches only a package registry. Only the default model falls back: a model named explicitly
(MODEL_PATH, another repo or file, a checksum) that cannot be had is an error, as is any model
with MODEL_FALLBACK=0. The Lambda functions never come here: a deployment either has its model or
fails at init.
"""

from __future__ import annotations

import dataclasses
import sys
from functools import lru_cache
from pathlib import Path

from handler.core.env import Environment
from handler.core.errors import ModelUnavailable
from handler.core.model.settings import (
    DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_REPO,
    DEFAULT_MODEL_REVISION,
    ModelSettings,
    ModelSpec,
)
from handler.core.model.store import resolve_model_path
from handler.local import fallback_model


def is_default_model(settings: ModelSettings) -> bool:
    """Whether `settings` name the default BiRefNet-lite and nothing more specific."""
    return (settings.path, settings.repo, settings.file, settings.revision, settings.sha256) == (
        None,
        DEFAULT_MODEL_REPO,
        DEFAULT_MODEL_FILE,
        DEFAULT_MODEL_REVISION,
        None,
    )


def fallback_allowed() -> bool:
    return Environment().switch("MODEL_FALLBACK", True)


@lru_cache(maxsize=16)
def local_model_settings(settings: ModelSettings) -> ModelSettings:
    """`settings` when their model can be had, else settings naming the fallback file (and one line on stderr).

    Cached, so the line is written once per process, and the model is resolved (downloaded, if it
    must be) once.
    """
    try:
        resolve_model_path(settings)
        return settings
    except ModelUnavailable as error:
        if not is_default_model(settings) or not fallback_allowed():
            raise
        reason = error.message
    try:
        path = fallback_model.ensure_u2netp()
    except (OSError, RuntimeError) as fetch_error:
        raise ModelUnavailable(f"{reason}; and the fallback model could not be fetched: {fetch_error}") from None
    note(f"{fallback_model.LABEL} ({_shown(path)}), because {_lowered(reason)}")
    # The fallback describes itself (its graph): MODEL_OUTPUT, MODEL_INPUT_SIZE... were set for the default.
    return dataclasses.replace(settings, path=path, spec=ModelSpec())


# Settings made for the default model that must not reach the fallback, which describes itself (its graph).
_DEFAULT_MODEL_CONTRACT = ("MODEL_OUTPUT", "MODEL_INPUT_SIZE", "MODEL_MEAN", "MODEL_STD")


def function_environment_for(named: ModelSettings) -> dict[str, str | None]:
    """What a function's environment needs for the entry points to load the model the local tools
    choose for `named` (`serve` and `invoke` run the Lambda entry points, which never fall back
    themselves): nothing for the named model; the fallback's file as MODEL_PATH otherwise (None: unset)."""
    chosen = local_model_settings(named)
    if chosen.path is None or chosen.path == named.path:
        return {}
    return {**dict.fromkeys(_DEFAULT_MODEL_CONTRACT), "MODEL_PATH": str(chosen.path)}


def note(message: str) -> None:
    """The one line the local tools write about the model they chose (not an error: it works)."""
    print(f"model: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _lowered(reason: str) -> str:
    return reason[:1].lower() + reason[1:]
