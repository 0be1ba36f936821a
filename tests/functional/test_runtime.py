"""What an execution environment loads once: one model, whoever asks for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handler.aws import runtime
from handler.core import background


def test_the_runtime_and_the_python_api_share_one_loaded_model(deploy: Callable[..., Any]) -> None:
    # GIVEN the function's environment, and its runtime loaded (as the entry points do at init)
    deploy()
    loaded = runtime.current()

    # WHEN the Python API is used without a model in the same process
    # THEN it is handed the very session the runtime holds, not a second copy of the model
    assert background.default_model() is loaded.model


def test_a_reset_runtime_reads_the_environment_again(
    deploy: Callable[..., Any], u2netp_path: Any, tmp_path: Any
) -> None:
    # GIVEN a loaded runtime
    deploy()
    before = runtime.current()

    # WHEN the environment names another model file and the runtime is reset
    other = tmp_path / "copy.onnx"
    other.write_bytes(u2netp_path.read_bytes())
    deploy(MODEL_PATH=str(other))

    # THEN the next runtime has the new settings and its own session
    after = runtime.current()
    assert after.settings.model.path == other
    assert after.model is not before.model
    assert after.model_sha256 == before.model_sha256  # the same content: the same identity
