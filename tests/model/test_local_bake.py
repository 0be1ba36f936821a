"""`python -m handler download` bakes for local runs what the image build bakes.

A BiRefNet-contract model with decomposed deformable convolutions (deform_fixtures/birefnet_tiny)
is served by the fake hub (tests/fakehub.py) on 127.0.0.1; the download command fetches it, bakes
it beside the cache, and the local runs' model resolution then picks the bake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from handler.core.model.settings import ModelSettings
from handler.core.model.store import resolve_model_path
from tests.fakehub import FakeHub

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "model" / "deform_fixtures" / "birefnet_tiny.onnx"
REPO, FILE, REVISION = "test-org/tiny-birefnet", "onnx/model.onnx", "main"


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_file(REPO, FILE, TINY.read_bytes(), revision=REVISION)
        yield fake


def download(hub: FakeHub, cache_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("MODEL_", "HF_")) and key != "PYTHONPATH"
    }
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(tmp_path / "hf-home"),
            "MODEL_CACHE_DIR": str(cache_dir),
            "MODEL_REPO": REPO,
            "MODEL_FILE": FILE,
            "MODEL_REVISION": REVISION,
            "MODEL_THREADS": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "handler", "download"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_download_bakes_for_local_runs_and_local_runs_use_the_bake(hub: FakeHub, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    # WHEN the model is downloaded
    first = download(hub, cache_dir, tmp_path)
    # THEN the plain download is reported as before, and a bake with native DeformConv sits beside the cache
    assert first.returncode == 0, first.stderr
    downloaded = Path(first.stdout.strip().rpartition("  sha256=")[0])
    assert downloaded.read_bytes() == TINY.read_bytes()
    assert "native DeformConv: rewrote all 2 decomposed chains" in first.stderr
    settings = ModelSettings(repo=REPO, file=FILE, revision=REVISION, cache_dir=cache_dir, offline=True)
    # AND local runs resolve the model to the bake, offline
    resolved = resolve_model_path(settings)
    assert resolved != downloaded and resolved.is_relative_to(cache_dir / "baked")
    assert "DeformConv" in {node.op_type for node in onnx.load(str(resolved)).graph.node}
    # AND a second download neither bakes again nor changes what local runs use
    before = resolved.stat().st_mtime_ns
    again = download(hub, cache_dir, tmp_path)
    assert again.returncode == 0 and "baked before" in again.stderr
    assert resolve_model_path(settings) == resolved and resolved.stat().st_mtime_ns == before


def test_without_a_bake_local_runs_use_the_download(hub: FakeHub, tmp_path: Path) -> None:
    from handler.core.model.store import download_model

    settings = ModelSettings(
        repo=REPO, file=FILE, revision=REVISION, cache_dir=tmp_path / "cache", hub_endpoint=hub.endpoint
    )
    downloaded = download_model(settings)
    assert resolve_model_path(settings) == downloaded
