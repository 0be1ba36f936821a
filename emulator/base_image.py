"""What the base image (public.ecr.aws/lambda/python) brings besides the interpreter.

Its /var/runtime holds the runtime interface client, awslambdaric, on PYTHONPATH; the image's
ENTRYPOINT runs `python3 -m awslambdaric <CMD>`. Installed here into an image root's var/runtime,
pinned with hashes (requirements-runtime-interface.txt), never into the project's own venv.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements-runtime-interface.txt")
_STAMP = ".installed-runtime-interface"


def install_runtime_interface(root: Path, python: Path) -> Path:
    """root/var/runtime with awslambdaric, installed with `python` (the image's interpreter)."""
    runtime_dir = root / "var" / "runtime"
    stamp = runtime_dir / _STAMP
    if stamp.is_file() and stamp.read_text() == REQUIREMENTS.read_text():
        return runtime_dir
    runtime_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "--upgrade",
            "--target",
            str(runtime_dir),
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    stamp.write_text(REQUIREMENTS.read_text())
    return runtime_dir
