"""Model download and cache resolution against a local fake of the Hugging Face Hub.

Everything here is offline: `tests/fakehub.py` serves the files on 127.0.0.1, telemetry is off,
and a socket guard fails any in-process connection to another host.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest

from handler.core.errors import ModelUnavailable
from handler.core.model.settings import ModelSettings
from handler.core.model.store import download_model, resolve_model_path
from tests.fakehub import FakeHub

ROOT = Path(__file__).resolve().parents[2]

REPO = "test-org/tiny-birefnet"
FILE = "onnx/model.onnx"
REVISION = "v1.0"
# Arbitrary bytes: the download code never parses the model. Deterministic, and long enough that a
# truncation point and a corrupted copy are both meaningful.
CONTENT = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(512))  # 16 KiB
SHA256 = hashlib.sha256(CONTENT).hexdigest()
OTHER_SHA256 = hashlib.sha256(b"something else").hexdigest()


# -- fixtures ---------------------------------------------------------------------------------


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _hub_client_offline_safe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No telemetry request, whatever the environment, and no connection beyond loopback.

    Refused attempts are also recorded and fail the test at teardown: the hub client swallows
    errors of its background calls (the agent registry), so raising alone could go unnoticed.
    """
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
    # A developer shell with HF_HUB_OFFLINE=1 must not turn the online tests into offline ones.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    refused: list[str] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
            refused.append(f"connect {address!r}")
            raise OSError(f"test tried to connect to {address!r}: only 127.0.0.1 is allowed")
        return real_connect(self, address)

    def resolve_loopback_only(host: object, *args: object, **kwargs: object) -> object:
        if host not in _LOOPBACK and host not in (None, b"127.0.0.1", b"localhost"):
            refused.append(f"resolve {host!r}")
            raise socket.gaierror(f"test tried to resolve {host!r}: only 127.0.0.1 is allowed")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    monkeypatch.setattr(socket, "getaddrinfo", resolve_loopback_only)
    yield
    assert refused == [], f"requests beyond 127.0.0.1: {refused}"


@pytest.fixture(scope="module")
def _hub_server() -> Iterator[FakeHub]:
    # One server for the module: stopping one costs 0.5 s (the stdlib server's poll interval).
    with FakeHub() as fake:
        fake.add_file(REPO, FILE, CONTENT, revision=REVISION)
        yield fake


@pytest.fixture
def hub(_hub_server: FakeHub) -> FakeHub:
    """The shared fake hub with its fault switches off and an empty request log."""
    _hub_server.truncate_to = None
    _hub_server.corrupt = False
    _hub_server.fail_status = None
    _hub_server.requests.clear()
    return _hub_server


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    path = tmp_path / "hf-cache"
    path.mkdir()
    return path


def settings_for(hub: FakeHub, cache_dir: Path, **overrides: object) -> ModelSettings:
    values: dict[str, object] = {
        "repo": REPO,
        "file": FILE,
        "revision": REVISION,
        "cache_dir": cache_dir,
        "hub_endpoint": hub.endpoint,
    }
    values.update(overrides)
    return ModelSettings(**values)  # type: ignore[arg-type]


def cached_files(cache_dir: Path) -> list[Path]:
    """Regular files and symlinks that hold (or point at) model bytes: blobs and snapshot entries.

    Lock files, refs and the `.no_exist` markers are bookkeeping, not model content.
    """
    found = []
    for path in cache_dir.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            continue
        parts = path.relative_to(cache_dir).parts
        if "blobs" in parts or "snapshots" in parts:
            found.append(path)
    return sorted(found)


# -- download_model ---------------------------------------------------------------------------


def test_download_fetches_the_revision_into_the_cache_and_returns_its_digest(hub: FakeHub, cache_dir: Path) -> None:
    from handler.core.model.store import verify_checksum

    path = download_model(settings_for(hub, cache_dir))

    assert path.read_bytes() == CONTENT
    assert path.is_relative_to(cache_dir)
    commit = FakeHub.default_commit(REPO, REVISION)
    assert path == cache_dir / "models--test-org--tiny-birefnet" / "snapshots" / commit / FILE
    assert path.resolve().name == SHA256  # the blob is stored under the ETag
    assert verify_checksum(path, None) == SHA256
    assert hub.requests == [
        ("HEAD", f"/{REPO}/resolve/{REVISION}/{FILE}"),
        ("GET", f"/{REPO}/resolve/{REVISION}/{FILE}"),
    ]


def test_configured_sha256_that_matches_passes(hub: FakeHub, cache_dir: Path) -> None:
    path = download_model(settings_for(hub, cache_dir, sha256=SHA256))
    assert path.read_bytes() == CONTENT


def test_configured_sha256_mismatch_fails_and_removes_the_file_from_the_cache(hub: FakeHub, cache_dir: Path) -> None:
    with pytest.raises(ModelUnavailable, match="checksum mismatch") as caught:
        download_model(settings_for(hub, cache_dir, sha256=OTHER_SHA256))
    assert OTHER_SHA256 in caught.value.message and SHA256 in caught.value.message

    assert cached_files(cache_dir) == []
    # The next (offline) start must not load the rejected file.
    before = len(hub.requests)
    with pytest.raises(ModelUnavailable, match="not in the cache"):
        resolve_model_path(settings_for(hub, cache_dir, offline=True))
    assert len(hub.requests) == before


def test_corrupt_body_is_caught_by_the_blob_name_and_cleaned_up(hub: FakeHub, cache_dir: Path) -> None:
    hub.corrupt = True  # right length, wrong bytes: the hub client itself caches this silently

    with pytest.raises(ModelUnavailable, match="checksum mismatch") as caught:
        download_model(settings_for(hub, cache_dir))  # no MODEL_SHA256: the ETag blob name is the reference
    assert f"expected sha256 {SHA256}" in caught.value.message

    assert cached_files(cache_dir) == []
    with pytest.raises(ModelUnavailable):
        resolve_model_path(settings_for(hub, cache_dir, offline=True))

    # The cleanup leaves a cache the next attempt can fill: once the hub serves good bytes, it works.
    hub.corrupt = False
    assert download_model(settings_for(hub, cache_dir)).read_bytes() == CONTENT


@pytest.mark.slow  # ~5 s: the hub client retries the dropped connection with 1 s sleeps
def test_truncated_body_fails_and_leaves_no_partial_file(hub: FakeHub, cache_dir: Path) -> None:
    hub.truncate_to = len(CONTENT) // 3

    with pytest.raises(ModelUnavailable, match=f"cannot download {REPO}/{FILE}@{REVISION}"):
        download_model(settings_for(hub, cache_dir))

    gets = [request for request in hub.requests if request[0] == "GET"]
    assert len(gets) > 1  # it did retry, and still gave up with our error rather than its own
    assert cached_files(cache_dir) == []
    assert not list(cache_dir.rglob("*.incomplete"))
    with pytest.raises(ModelUnavailable):
        resolve_model_path(settings_for(hub, cache_dir, offline=True))


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"file": "onnx/missing.onnx"}, f"{REPO}/onnx/missing.onnx@{REVISION}"),
        ({"repo": "test-org/no-such-repo"}, f"test-org/no-such-repo/{FILE}@{REVISION}"),
        ({"revision": "no-such-branch"}, f"{REPO}/{FILE}@no-such-branch"),
    ],
    ids=["unknown-file", "unknown-repo", "unknown-revision"],
)
def test_unknown_file_repo_or_revision_names_the_model(
    hub: FakeHub, cache_dir: Path, overrides: dict[str, str], name: str
) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        download_model(settings_for(hub, cache_dir, **overrides))
    assert name in caught.value.message
    assert cached_files(cache_dir) == []


def test_hub_error_status_is_model_unavailable(hub: FakeHub, cache_dir: Path) -> None:
    hub.fail_status = 403  # (5xx and 429 are retried by the library for ~23 s: not tested here)
    with pytest.raises(ModelUnavailable, match=f"{REPO}/{FILE}@{REVISION}"):
        download_model(settings_for(hub, cache_dir))
    assert cached_files(cache_dir) == []


# -- offline switch ---------------------------------------------------------------------------


def test_offline_with_an_empty_cache_fails_at_once_without_a_request(hub: FakeHub, cache_dir: Path) -> None:
    with pytest.raises(ModelUnavailable, match="downloads are off") as caught:
        resolve_model_path(settings_for(hub, cache_dir, offline=True))
    assert f"{REPO}/{FILE}@{REVISION}" in caught.value.message
    assert hub.requests == []


def test_offline_after_a_download_returns_the_cached_file_without_a_request(hub: FakeHub, cache_dir: Path) -> None:
    downloaded = download_model(settings_for(hub, cache_dir))
    before = len(hub.requests)

    path = resolve_model_path(settings_for(hub, cache_dir, offline=True))

    assert path == downloaded
    assert path.read_bytes() == CONTENT
    assert len(hub.requests) == before


def test_download_under_hf_hub_offline_says_downloads_are_off(
    hub: FakeHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HF_HUB_OFFLINE=1 (frozen into the library's constants at import) wins over a download request.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable, match="downloads are off"):
        download_model(settings_for(hub, cache_dir))
    assert hub.requests == []


def test_online_resolve_downloads_when_the_cache_is_empty(hub: FakeHub, cache_dir: Path) -> None:
    path = resolve_model_path(settings_for(hub, cache_dir))
    assert path.read_bytes() == CONTENT
    assert [method for method, _ in hub.requests] == ["HEAD", "GET"]


# -- MODEL_PATH -------------------------------------------------------------------------------


def test_model_path_is_used_as_is_without_any_request(hub: FakeHub, cache_dir: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.onnx"
    local.write_bytes(CONTENT)

    assert resolve_model_path(settings_for(hub, cache_dir, path=local)) == local
    assert download_model(settings_for(hub, cache_dir, path=local, sha256=SHA256)) == local

    assert hub.requests == []
    assert list(cache_dir.iterdir()) == []


def test_model_path_with_a_wrong_sha256_is_rejected(hub: FakeHub, cache_dir: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.onnx"
    local.write_bytes(CONTENT)
    with pytest.raises(ModelUnavailable, match="checksum mismatch"):
        download_model(settings_for(hub, cache_dir, path=local, sha256=OTHER_SHA256))
    assert hub.requests == []


def test_missing_model_path_is_model_unavailable(hub: FakeHub, cache_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ModelUnavailable, match="MODEL_PATH"):
        resolve_model_path(settings_for(hub, cache_dir, path=missing))
    with pytest.raises(ModelUnavailable, match="MODEL_PATH"):
        download_model(settings_for(hub, cache_dir, path=missing))
    # A directory is not a model file either.
    with pytest.raises(ModelUnavailable, match="MODEL_PATH"):
        resolve_model_path(settings_for(hub, cache_dir, path=tmp_path))
    assert hub.requests == []


# -- `python -m handler download` -------------------------------------------------------------


def run_download(hub: FakeHub, cache_dir: Path, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MODEL_", "HF_")) and key not in ("TRANSFORMERS_OFFLINE", "PYTHONPATH")
    }
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,  # read by huggingface_hub at import, and by ModelSettings.from_env
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(tmp_path / "hf-home"),  # nothing from (or into) the developer's own HF cache
            "MODEL_CACHE_DIR": str(cache_dir),
            "MODEL_REPO": REPO,
            "MODEL_FILE": FILE,
            "MODEL_REVISION": REVISION,
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "handler", "download"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_download_prints_the_path_and_sha256(hub: FakeHub, cache_dir: Path, tmp_path: Path) -> None:
    result = run_download(hub, cache_dir, tmp_path)

    assert result.returncode == 0, result.stderr
    printed_path, _, digest = result.stdout.strip().rpartition("  sha256=")
    assert digest == SHA256
    assert Path(printed_path).is_relative_to(cache_dir)
    assert Path(printed_path).read_bytes() == CONTENT
    # Only the file itself was fetched: no telemetry or agent-registry call reached the (fake) endpoint.
    assert hub.requests == [
        ("HEAD", f"/{REPO}/resolve/{REVISION}/{FILE}"),
        ("GET", f"/{REPO}/resolve/{REVISION}/{FILE}"),
    ]

    # A baked image then runs offline: same command, no request, same answer.
    again = run_download(hub, cache_dir, tmp_path, HF_HUB_OFFLINE="1", MODEL_SHA256=SHA256)
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout
    assert len(hub.requests) == 2


def test_cli_download_hub_error_exits_1_with_one_error_line(hub: FakeHub, cache_dir: Path, tmp_path: Path) -> None:
    hub.fail_status = 404

    result = run_download(hub, cache_dir, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert f"{REPO}/{FILE}@{REVISION}" in lines[0]
    assert cached_files(cache_dir) == []


def test_cli_download_offline_with_an_empty_cache_exits_1_without_a_request(
    hub: FakeHub, cache_dir: Path, tmp_path: Path
) -> None:
    result = run_download(hub, cache_dir, tmp_path, HF_HUB_OFFLINE="1")

    assert result.returncode == 1
    assert result.stderr.startswith("error: "), result.stderr
    assert "downloads are off" in result.stderr  # not "check your connection"
    assert hub.requests == []  # no network wait, no retries: timing belongs in benchmarks


# -- the model's identity -------------------------------------------------------------------


def test_a_baked_model_is_identified_by_its_content(u2netp_path: Path, tmp_path: Path) -> None:
    from handler.core.bake.run import bake
    from handler.core.model.store import model_sha256

    # GIVEN a model baked the way the image build bakes it
    baked = bake(ModelSettings(path=u2netp_path, threads=1), tmp_path / "model")
    path = Path(baked.path)
    # THEN its identity is its content's hash, as the manifest records it
    assert model_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest() == baked.sha256

    # WHEN another model is dropped in under the same name, beside the old manifest
    path.write_bytes(path.read_bytes() + b"\0")
    # THEN the stale record is not believed
    assert model_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest() != baked.sha256


def test_a_cached_hub_model_is_identified_by_its_blob(hub: FakeHub, cache_dir: Path) -> None:
    from handler.core.model.store import model_sha256

    path = download_model(settings_for(hub, cache_dir))

    assert model_sha256(path) == SHA256
