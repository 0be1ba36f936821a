"""What an execution environment loads once: settings, the model session and the S3 client.

Entry points call `current()` at module scope, so the work happens in Lambda's init phase (and
is reused by every invocation the environment serves); each invocation then passes the runtime
down explicitly. A process that changes its environment on purpose (the local server, tests)
calls `reset()` so that the next `current()` reads it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from handler.aws.settings import Settings
from handler.aws.storage import Storage, UsagePlans
from handler.core.model.session import BackgroundModel, load_model
from handler.core.model.store import model_sha256


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    model: BackgroundModel
    # What outputs record as the model that made them (handler.core.model.store.model_sha256).
    model_sha256: str
    storage: Storage
    # API Gateway's usage figures for remove.bg's API keys; None where the stack has no keys.
    usage_plans: UsagePlans | None = None

    @property
    def model_name(self) -> str:
        return self.settings.model.name


@cache
def current() -> Runtime:
    settings = Settings.from_env()
    model = load_model(settings.model)
    assert model.path is not None  # load_model loads from a file
    return Runtime(
        settings=settings,
        model=model,
        model_sha256=model_sha256(model.path),
        storage=Storage(settings.storage),
        usage_plans=UsagePlans() if settings.function.removebg_api_keys else None,
    )


def reset() -> None:
    """Forget the loaded runtime: the next `current()` reads the environment again."""
    current.cache_clear()
