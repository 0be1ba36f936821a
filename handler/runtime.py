"""What an execution environment loads once: settings, the model session and the S3 client.

Entry points call `current()` at module scope, so the work happens in Lambda's init phase (and
is reused by every invocation the environment serves). Tests change the environment and call
`current.cache_clear()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from handler.background import load_model
from handler.config import Settings
from handler.model import BackgroundModel
from handler.storage import Storage


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    model: BackgroundModel
    storage: Storage

    @property
    def model_name(self) -> str:
        return self.settings.model.name


@cache
def current() -> Runtime:
    settings = Settings.from_env()
    return Runtime(settings=settings, model=load_model(settings.model), storage=Storage(settings.storage))
