"""Getting the model file: a plain local path, or a verified download from the Hugging Face Hub.

One order for every entry point (the functions, the command line, the Python API, the local
server): `MODEL_PATH` as is; else the hub file from the local cache (or its local bake), with no
request at all; else a download — unless offline, and only once a short probe
(handler.core.model.hub_probe) has found the hub reachable, so a machine without it gets an answer in
seconds rather than after the hub client's ~24 s of retries. The local tools add a fallback model
on top (handler.local.model_choice); the functions never do.

At request time nothing is downloaded when the model was baked in: with `MODEL_OFFLINE=1` (or the
hub's own `HF_HUB_OFFLINE=1`) a missing file is an immediate, clear error instead of a network
wait inside a 29-second API budget.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from huggingface_hub import constants as hub_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError

from handler.core.errors import HubUnreachable, ModelUnavailable
from handler.core.model.hub_probe import PROBE_TIMEOUT_S, hub_reachable
from handler.core.model.settings import ModelSettings

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 8 * 1024 * 1024
# The bake step's record of what it wrote, beside the baked model (handler.core.bake.run writes it).
MANIFEST = "model.json"


def resolve_model_path(settings: ModelSettings) -> Path:
    """The local model file: `MODEL_PATH` as is; else the hub file from the cache, or its local bake
    when `python -m handler download` made one; else the hub file downloaded, when allowed and reachable."""
    if settings.path is not None:
        if not settings.path.is_file():
            raise ModelUnavailable(f"MODEL_PATH {settings.path} does not exist or is not a file")
        return settings.path
    path = _cached(settings) or _fetch(settings, local_files_only=not _may_download(settings))
    folder = local_bake_dir(settings, path)
    if folder is not None and (folder / LOCAL_BAKED_MODEL).is_file():
        return folder / LOCAL_BAKED_MODEL
    return path


def _cached(settings: ModelSettings) -> Path | None:
    try:
        return _fetch(settings, local_files_only=True)
    except ModelUnavailable:
        return None


def _may_download(settings: ModelSettings) -> bool:
    """False when offline; raises HubUnreachable when the probe finds no hub to download from."""
    if settings.offline or hub_constants.is_offline_mode():
        return False
    endpoint = settings.hub_endpoint or hub_constants.ENDPOINT
    if not hub_reachable(endpoint):
        raise HubUnreachable(
            f"the hub {endpoint} is not reachable (no connection within {PROBE_TIMEOUT_S:g} s) and {settings.name} "
            "is not in the local cache; set MODEL_PATH to a local ONNX file, or run `python -m handler download` "
            "where the hub is reachable"
        )
    return True


# The bake's file name (handler.core.bake.run.BAKED_MODEL; bake imports this module, not the other way).
LOCAL_BAKED_MODEL = "model.onnx"


def local_bake_dir(settings: ModelSettings, source: Path) -> Path | None:
    """Where `python -m handler download` bakes a hub file for local runs (None for MODEL_PATH).

    Beside the hub's cache, named by the file's SHA-256 — its blob's name — so finding it costs no
    hashing, and a new revision never picks up the bake of an old one.
    """
    if settings.path is not None or not source.is_symlink():
        return None
    blob = source.resolve().name
    if not _SHA256_HEX.match(blob):
        return None
    root = settings.cache_dir if settings.cache_dir is not None else Path(hub_constants.HF_HUB_CACHE)
    return root / "baked" / blob


def download_model(settings: ModelSettings) -> Path:
    """Fetch the model into the cache (if not there yet) and verify its checksum. Build-time step."""
    if settings.path is not None:
        path = resolve_model_path(settings)
        verify_checksum(path, settings.sha256)
        return path
    try:
        online = _may_download(settings)
    except HubUnreachable:
        # A build step or `python -m handler download` without the hub: a cached copy still verifies.
        if (cached := _cached(settings)) is None:
            raise
        path = cached
    else:
        path = _fetch(settings, local_files_only=not online)
    try:
        verify_checksum(path, settings.sha256)
    except ModelUnavailable:
        # Never leave a bad file in the cache: the next offline start would load it.
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise
    return path


def _fetch(settings: ModelSettings, *, local_files_only: bool) -> Path:
    try:
        downloaded = hf_hub_download(
            settings.repo,
            settings.file,
            revision=settings.revision,
            cache_dir=settings.cache_dir,
            local_files_only=local_files_only,
            endpoint=settings.hub_endpoint,
        )
    except LocalEntryNotFoundError as error:
        # HF_HUB_OFFLINE=1 makes the library skip the network even when asked to download: say
        # so, rather than blame the connection.
        if local_files_only or hub_constants.is_offline_mode():
            raise ModelUnavailable(
                f"model {settings.name} is not in the cache and downloads are off (MODEL_OFFLINE/HF_HUB_OFFLINE); "
                "run `python -m handler download` first or set MODEL_PATH"
            ) from error
        raise ModelUnavailable(f"cannot reach the hub to download {settings.name}: {error}") from error
    except Exception as error:
        # Besides its own HfHubHTTPError, the hub client lets transport errors of its HTTP library
        # escape (an incomplete body raises RemoteProtocolError): any failure here means no model.
        raise ModelUnavailable(f"cannot download {settings.name}: {error}") from error
    return Path(downloaded)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str | None) -> str:
    """Check the file's SHA-256 against `expected`, or else against the hub cache's blob name.

    The hub cache stores large files under their SHA-256 (the LFS ETag), so a cached blob can be
    verified even when no checksum was configured. Returns the digest.
    """
    actual = sha256_of(path)
    if expected is None and path.is_symlink():
        blob_name = path.resolve().name
        expected = blob_name if _SHA256_HEX.match(blob_name) else None
    if expected is not None and actual != expected:
        raise ModelUnavailable(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}")
    return actual


def model_sha256(path: Path) -> str:
    """The model's identity: the SHA-256 of the file it is loaded from.

    Outputs record it, so a redeploy with another model is never mistaken for the one that made
    them (every baked model is called model.onnx, so the name says nothing). Hashing 224 MB costs
    about half a second of a billed cold start, so the digest is taken, in this order, from the
    bake step's manifest beside the file (when it describes a file of exactly this size), from the
    hub cache's blob name, and only then by reading the file.
    """
    recorded = _manifest_sha256(path)
    if recorded is not None:
        return recorded
    if path.is_symlink() and _SHA256_HEX.match(path.resolve().name):
        return path.resolve().name
    return sha256_of(path)


def _manifest_sha256(path: Path) -> str | None:
    manifest = manifest_for(path)
    digest = None if manifest is None else manifest.get("sha256")
    return digest if isinstance(digest, str) and _SHA256_HEX.match(digest) else None


def manifest_for(path: Path) -> dict[str, object] | None:
    """The bake manifest beside `path` when it describes this very file (its name and size), else None."""
    try:
        manifest = json.loads((path.parent / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("file") != path.name:
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return None
    return manifest if manifest.get("size") == size else None
