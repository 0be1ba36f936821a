"""The local runs' S3 (moto in server mode on 127.0.0.1) and the function environment pointed at it.

Shared by `serve` (handler.local.server) and `invoke --local` (handler.local.invoke), so both play
the same deployment. moto comes with the test extras (`pip install -e '.[test]'`), which
`make venv` and `make demo` install.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from handler.local.context import REGION

if TYPE_CHECKING:  # werkzeug comes with moto, which the local runs check for when they start
    from handler.local.post_policy import LocalS3Server

# Dummy credentials: the embedded S3 accepts any, and real ones must never reach it.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}
# Shared AWS settings that would send the local run elsewhere or fail without real AWS.
_REMOVED_AWS_SETTINGS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE")


class EmbeddedS3:
    """moto's S3 server behind S3's check of form uploads (handler.local.post_policy).

    `start()` returns its endpoint, `stop()` is idempotent."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.endpoint = ""
        self._server: LocalS3Server | None = None

    def start(self) -> str:
        try:
            import moto.server  # noqa: F401 - only to tell a missing moto apart
        except ImportError as error:
            raise RuntimeError(
                "the local run needs moto's S3 server: pip install -e '.[test]' (make venv does it)"
            ) from error
        from handler.local.post_policy import LocalS3Server

        # werkzeug logs every request at INFO; the serve's poller lists the bucket every second.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        secrets = {LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]: LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
        self._server = LocalS3Server("127.0.0.1", self.port, secrets)
        self._server.start()
        self.endpoint = self._server.endpoint
        return self.endpoint

    def client(self) -> Any:
        """A boto3 client for the embedded S3."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_buckets(self, *names: str) -> None:
        client = self.client()
        for bucket in dict.fromkeys(names):
            # moto keeps its state per process: a second local run finds its buckets there.
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=bucket)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def function_environment(s3_endpoint: str, input_bucket: str, output_bucket: str) -> dict[str, str | None]:
    """The function's environment, as template.yaml sets it, pointed at the embedded S3 (None: unset).

    `source` reads are off, as deployed: SOURCE_BUCKETS or SOURCE_PREFIX (a prefix outside
    INPUT_PREFIX) in the caller's environment turn them on."""
    return {
        **dict.fromkeys(_REMOVED_AWS_SETTINGS),
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "INPUT_BUCKET": input_bucket,
        "OUTPUT_BUCKET": output_bucket,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", "background-remover"),
        # EMF metrics are JSON documents on stdout, for CloudWatch; locally they only bury the logs.
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
    }


def model_is_present() -> bool:
    """Whether the model the environment names is on disk already (then no download is tried)."""
    from handler.core.errors import BackgroundRemovalError
    from handler.core.model.settings import ModelSettings
    from handler.core.model.store import resolve_model_path

    try:
        resolve_model_path(dataclasses.replace(ModelSettings.from_env(), offline=True))
    except BackgroundRemovalError:
        return False
    return True
