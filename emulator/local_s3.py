"""The demo's local S3, and what a function needs to reach it: the embedded S3 of the local runs
(handler/local/embedded_s3.py: moto behind S3's check of browser-form uploads), as a context manager
with the emulator's helpers."""

from __future__ import annotations

from collections.abc import Mapping

from handler.local.context import REGION
from handler.local.embedded_s3 import LOCAL_CREDENTIALS as CREDENTIALS
from handler.local.embedded_s3 import EmbeddedS3

__all__ = ["CREDENTIALS", "REGION", "LocalS3"]


class LocalS3(EmbeddedS3):
    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def function_environment(self) -> dict[str, str]:
        """What a function is given to use this S3 (on Lambda: its role's credentials, S3's endpoint)."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, **CREDENTIALS}

    def put_objects(self, objects: Mapping[tuple[str, str], bytes]) -> None:
        client = self.client()
        for (bucket, key), data in objects.items():
            client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]
