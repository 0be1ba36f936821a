"""The image root the functions run from: built once per content, then reused.

The build (the Dockerfile's steps) is `build_image`; this module adds the cache and the base
image's runtime interface client, and lays the result out for the sandbox.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from emulator import base_image, sandbox
from emulator.dockerignore import DockerIgnore
from emulator.image import REPO_ROOT as ROOT
from emulator.image import Image, build_image

_KEY_FILE = "image-key.txt"
_IMAGE_FILE = "image.json"


def cached_image(
    dest: Path,
    *,
    context: Path = ROOT,
    build_args: Mapping[str, str] | None = None,
    step_env: Mapping[str, str] | None = None,
) -> Image:
    """The image built from `context` into `dest`/build, rebuilt only when what goes into it changed
    (build_image caches its RUN layers too; this skips even the COPY steps and the unpacking)."""
    dest = dest.resolve()
    build_args, step_env = dict(build_args or {}), dict(step_env or {})
    key = content_key(context, build_args, step_env)
    key_file, image_file = dest / _KEY_FILE, dest / _IMAGE_FILE
    dest.mkdir(parents=True, exist_ok=True)
    if key_file.is_file() and key_file.read_text() == key and image_file.is_file():
        stored = json.loads(image_file.read_text())
        image = Image(Path(stored["root"]), stored["env"], stored["cmd"], Path(stored["python"]))
    else:
        key_file.unlink(missing_ok=True)
        shutil.rmtree(dest / "build", ignore_errors=True)
        image = build_image(dest / "build", context=context, build_args=build_args, step_env=step_env)
        image_file.write_text(
            json.dumps({"root": str(image.root), "env": image.env, "cmd": image.cmd, "python": str(image.python)})
        )
        key_file.write_text(key)
    base_image.install_runtime_interface(image.root, image.python)
    return image


def layout(image: Image, scratch: Path, extra: Mapping[Path, str] | None = None) -> sandbox.Layout:
    opt = image.root / "opt"
    return sandbox.Layout(
        task_root=image.root / "var" / "task",
        runtime_dir=image.root / "var" / "runtime",
        interpreter_prefix=sandbox.installation_prefix(image.python),
        opt=opt if opt.is_dir() else None,
        scratch=scratch,
        extra=dict(extra or {}),
    )


def content_key(context: Path, build_args: Mapping[str, str], step_env: Mapping[str, str]) -> str:
    """Everything the build can read: the Dockerfile, .dockerignore and every file the context sends
    (what any COPY could take, so no hand-kept list can leave one out), the step inputs and arguments."""
    digest = hashlib.sha256()
    files = [context / name for name in ("Dockerfile", ".dockerignore") if (context / name).is_file()]
    files += [context / name for name in DockerIgnore.of(context).files(context)]
    files += [Path(value) for value in step_env.values() if Path(value).is_file()]  # e.g. MODEL_PATH's content
    for path in files:
        digest.update(str(path.relative_to(context) if path.is_relative_to(context) else path).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps([sorted(build_args.items()), sorted(step_env.items())]).encode())
    return digest.hexdigest()
