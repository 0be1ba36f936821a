"""PROVISIONAL stand-in for `emulator.image.build_image` (being written on the `image` branch).

Same interface; does what the Dockerfile's steps do, the simple way: a clean venv for the
interpreter, `pip install --target var/task` of the hashed lock, the model baked with
`python -m handler download --output opt/model`, `handler/` copied, and the Dockerfile's ENV
and CMD read from the file. To be replaced by `emulator.image` once it lands: only
`emulator/images.py` imports this module.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The python base image's own ENV (public.ecr.aws/lambda/python:3.12).
BASE_ENV = {
    "LANG": "en_US.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}


@dataclass(frozen=True)
class Image:
    root: Path
    env: dict[str, str]
    cmd: list[str]
    python: Path


def build_image(
    dest: Path,
    *,
    context: Path = ROOT,
    build_args: Mapping[str, str] = {},  # noqa: B006 (the agreed interface; never mutated)
    step_env: Mapping[str, str] = {},  # noqa: B006
) -> Image:
    dest = dest.resolve()
    dockerfile = (context / "Dockerfile").read_text()
    env, cmd = dockerfile_env(dockerfile), dockerfile_cmd(dockerfile)
    python = _venv(dest / "python")
    task = dest / "root" / "var" / "task"
    shutil.rmtree(dest / "root", ignore_errors=True)
    task.mkdir(parents=True)
    arch = build_args.get("TARGETARCH", "amd64")
    subprocess.run(
        [
            str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--require-hashes", "--only-binary=:all:", "-r", str(context / "layers" / f"requirements-{arch}.txt"),
            "--target", str(task),
        ],
        check=True,
    )
    _bake(python, context, task, dest / "root" / "opt" / "model", step_env)
    shutil.copytree(context / "handler", task / "handler", ignore=shutil.ignore_patterns("__pycache__"))
    return Image(root=dest / "root", env={**BASE_ENV, **env}, cmd=cmd, python=python)


def _venv(where: Path) -> Path:
    python = where / "bin" / "python"
    if not python.exists():
        subprocess.run([str(Path(sys.base_prefix) / "bin" / "python3"), "-m", "venv", str(where)], check=True)
    return python


def _bake(python: Path, context: Path, task: Path, output: Path, step_env: Mapping[str, str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(context / "handler", Path(scratch) / "handler", ignore=shutil.ignore_patterns("__pycache__"))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "MODEL_CACHE_DIR": str(Path(scratch) / "hub-cache"),
            "PYTHONPATH": str(task),
            **step_env,
        }
        subprocess.run([str(python), "-m", "handler", "download", "--output", str(output)], cwd=scratch, env=env, check=True)


def dockerfile_env(dockerfile: str) -> dict[str, str]:
    """The ENV instructions' values (the `ENV a=b c=d` form this Dockerfile uses)."""
    env: dict[str, str] = {}
    for instruction in _instructions(dockerfile):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_cmd(dockerfile: str) -> list[str]:
    cmd: list[str] = []
    for instruction in _instructions(dockerfile):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() == "CMD":
            cmd = json.loads(rest)
    return cmd


def _instructions(dockerfile: str) -> list[str]:
    instructions: list[str] = []
    current = ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        instructions.append((current + stripped).strip())
        current = ""
    return instructions
