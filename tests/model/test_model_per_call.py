"""The Python API's per-call model choice, and the cache before the hub, against the fake hub on 127.0.0.1.

Two test-made graphs are served as two hub repos: one sees the whole picture as subject (grey 254),
the other as background (grey 1), so which model made a mask shows in its value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest
from PIL import Image

from handler.core.model.session import BackgroundModel
from handler.core.model.settings import ModelSettings
from handler.core.model.store import resolve_model_path
from handler.local.background import mask, remove
from tests import graphs
from tests.fakehub import FakeHub
from tests.graphs import GraphFile

BRIGHT, DARK, FILE = "test-org/bright", "test-org/dark", "onnx/model.onnx"
PICTURE = Image.new("RGB", (8, 6), (10, 20, 30))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_file(BRIGHT, FILE, graphs.constant(6.0, size=16).SerializeToString())
        fake.add_file(DARK, FILE, graphs.constant(-6.0, size=16).SerializeToString())
        for name in ("MODEL_PATH", "MODEL_REPO", "MODEL_FILE", "MODEL_REVISION", "MODEL_OFFLINE", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        for name in ("MODEL_OUTPUT", "MODEL_INPUT_SIZE", "MODEL_MEAN", "MODEL_STD", "MODEL_SHA256"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "hub-cache"))
        monkeypatch.setenv("MODEL_THREADS", "1")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
        yield fake


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The model files loaded into a new session, in order."""
    loaded: list[Path] = []
    real = BackgroundModel.load

    def load(path: Path | str, *args: Any, **kwargs: Any) -> BackgroundModel:
        loaded.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(BackgroundModel, "load", load)
    return loaded


def _grey(image: Image.Image) -> list[int]:
    return np.unique(np.asarray(image)).tolist()


def test_each_call_names_its_model_and_each_model_gets_one_session(
    hub: FakeHub, loads: list[Path], graph_file: GraphFile
) -> None:
    local_file = graph_file(graphs.constant(0.0, size=16))

    # WHEN calls alternate between models named by hub repo/file and by a local file
    assert _grey(mask(PICTURE, repo=BRIGHT, model_file=FILE)) == [254]
    assert _grey(mask(PICTURE, repo=DARK)) == [1]
    assert _grey(remove(PICTURE, repo=BRIGHT, model_file=FILE).getchannel("A")) == [254]
    assert _grey(mask(PICTURE, model_path=local_file)) == [128]
    assert _grey(mask(PICTURE, repo=DARK)) == [1]

    # THEN each model was downloaded once and loaded into one session, reused by the later calls
    assert len(loads) == 3 and loads[-1] == local_file
    assert sorted(path for method, path in hub.requests if method == "GET") == [
        f"/{BRIGHT}/resolve/main/{FILE}",
        f"/{DARK}/resolve/main/{FILE}",
    ]


def test_a_repo_named_in_the_call_wins_over_model_path_in_the_environment(
    hub: FakeHub, graph_file: GraphFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_PATH", str(graph_file(graphs.constant(0.0, size=16))))

    assert _grey(mask(PICTURE)) == [128]
    assert _grey(mask(PICTURE, repo=BRIGHT)) == [254]


def test_a_model_object_and_a_model_name_together_are_refused(hub: FakeHub, graph_file: GraphFile) -> None:
    model = BackgroundModel.load(graph_file(graphs.constant(0.0, size=16)))

    with pytest.raises(ValueError, match="either model= or"):
        remove(PICTURE, model=model, repo=BRIGHT)


def test_a_cached_model_is_used_without_asking_the_hub(hub: FakeHub) -> None:
    # GIVEN the model in the local cache
    settings = ModelSettings.from_env().naming(repo=DARK)
    first = resolve_model_path(settings)
    hub.requests.clear()

    # WHEN it is resolved again, the hub up and running
    again = resolve_model_path(settings)

    # THEN the cache answers: no request, not even the client's check for a newer revision
    assert again == first
    assert hub.requests == []
