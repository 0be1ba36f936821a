"""A copy of the checkout's build context, for tests that edit it and watch what a build would do."""

from __future__ import annotations

import shutil
from pathlib import Path

from emulator.dockerignore import DockerIgnore

ROOT = Path(__file__).resolve().parents[2]


def copy_context(dest: Path, extra: tuple[str, ...] = ()) -> Path:
    """The files `docker build` would send (after .dockerignore), the Dockerfile and .dockerignore,
    and the checkout's `extra` files (which the context does not send), copied into `dest`."""
    for name in [*DockerIgnore.of(ROOT).files(ROOT), "Dockerfile", ".dockerignore", *extra]:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest
