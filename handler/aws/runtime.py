"""What an execution environment loads once: settings, the model session and the S3 client.

Entry points call `current()` at module scope, so the work happens in Lambda's init phase (and
is reused by every invocation the environment serves). Tests change the environment and call
`current.cache_clear()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from handler.aws.settings import Settings
from handler.core.model import BackgroundModel
from handler.core.model_store import model_sha256, resolve_model_path
from handler.aws.storage import Storage


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    model: BackgroundModel
    # What outputs record as the model that made them (handler.model_store.model_sha256).
    model_sha256: str
    storage: Storage

    @property
    def model_name(self) -> str:
        return self.settings.model.name


@cache
def current() -> Runtime:
    settings = Settings.from_env()
    path = resolve_model_path(settings.model)
    return Runtime(
        settings=settings,
        model=BackgroundModel.load(path, settings.model.spec, threads=settings.model.threads),
        model_sha256=model_sha256(path),
        storage=Storage(settings.storage),
    )
