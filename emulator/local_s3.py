"""The demo's local S3 (moto's server) on 127.0.0.1, and what a function needs to reach it.

Behind the same gate as `python -m handler serve`'s (handler/local/post_policy.py): browser-form
uploads (POST /uploads' presigned forms) are checked against their policy as S3 does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

REGION = "us-east-1"
# Dummy credentials: moto accepts any, and the function must not find real ones anywhere.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}


class LocalS3:
    def __init__(self) -> None:
        from handler.local.post_policy import LocalS3Server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        secrets = {CREDENTIALS["AWS_ACCESS_KEY_ID"]: CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
        self._server = LocalS3Server("127.0.0.1", 0, secrets)
        self.endpoint = ""

    def __enter__(self) -> LocalS3:
        self._server.start()
        self.endpoint = self._server.endpoint
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.stop()

    def function_environment(self) -> dict[str, str]:
        """What a function is given to use this S3 (on Lambda: its role's credentials, S3's endpoint)."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, **CREDENTIALS}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_buckets(self, buckets: Iterable[str]) -> None:
        client = self.client()
        for bucket in buckets:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):  # moto keeps its state per process
                client.create_bucket(Bucket=bucket)

    def put_objects(self, objects: Mapping[tuple[str, str], bytes]) -> None:
        client = self.client()
        for (bucket, key), data in objects.items():
            client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]
