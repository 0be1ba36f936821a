"""What an execution environment loads once: one model, whoever asks for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handler.aws import runtime
from handler.local import background


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


def test_a_reset_runtime_signs_with_the_environments_current_credentials(
    deploy: Callable[..., Any], monkeypatch: Any
) -> None:
    # GIVEN a runtime whose S3 client was made with one set of credentials, and boto3's default
    # session used with them too (as any boto3.client() call in the process does)
    import boto3

    deploy()
    boto3.client("s3").generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    before = runtime.current().storage.presigned_post("b", "k", fields={}, max_bytes=10, expires_in=60)
    assert before.fields["x-amz-credential"].startswith("testing/")

    # WHEN the environment's credentials change (a local server sets its own) and the runtime is reset
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    runtime.reset()

    # THEN forms and links are signed with the new ones, not with what boto3 resolved first
    after = runtime.current().storage.presigned_post("b", "k", fields={}, max_bytes=10, expires_in=60)
    assert after.fields["x-amz-credential"].startswith("local/")
