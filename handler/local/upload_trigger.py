"""The S3 upload trigger, played locally: a poller lists the input bucket and hands each new object
to the jobs function as an S3 `ObjectCreated:Put` notification."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from handler.local.context import REGION

POLL_INTERVAL_SECONDS = 1.0

log = logging.getLogger(__name__)


def s3_put_event(bucket: str, key: str, size: int, etag: str, sequencer: int) -> dict[str, Any]:
    """An S3 `ObjectCreated:Put` notification for one object. The key is URL-encoded as S3 does
    it (`+` for a space), so the entry point's decoding is exercised locally too."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "local"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper()},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "local-upload-trigger",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "local"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag,
                        "sequencer": f"{sequencer:016X}",
                    },
                },
            }
        ]
    }


@dataclass(frozen=True)
class JobOutcome:
    """What became of one uploaded object: `error` is None when the jobs entry point returned."""

    key: str
    etag: str
    error: str | None = None
    response: Any = None


class UploadPoller:
    """Plays the S3 upload trigger: lists the input bucket every `interval` seconds and hands each
    object it has not seen (by key and ETag, so an overwrite counts as new) to `handle` as an S3
    put event. Objects present when it starts are taken as already seen.

    `wait_for(key)` is the "processed" signal: it blocks, up to a timeout, until that key's event
    has been handled (the jobs function returned or raised), and returns the outcome.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        handle: Callable[[dict[str, Any]], Any],
        *,
        prefix: str = "",
        interval: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self._handle = handle
        self._interval = interval
        self._seen: set[tuple[str, str]] = set()
        self._outcomes: dict[str, JobOutcome] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._sequencer = itertools.count(1)
        self._thread = threading.Thread(target=self._run, name="upload-poller", daemon=True)

    def start(self) -> None:
        self._seen.update(self._listing())
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops after the current object (a running inference is not interrupted)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_for(self, key: str, timeout: float, *, etag: str | None = None) -> JobOutcome | None:
        """The latest outcome for `key` (for that `etag`, if given) once the poller has handled it,
        or None if that has not happened within `timeout` seconds."""

        def handled() -> JobOutcome | None:
            outcome = self._outcomes.get(key)
            return outcome if outcome is not None and etag in (None, outcome.etag) else None

        with self._changed:
            return self._changed.wait_for(handled, timeout=timeout)

    def poll_once(self) -> int:
        """One listing; handles every new object. Returns how many were handled."""
        handled = 0
        for (key, etag), size in self._listing().items():
            if self._stopping.is_set():
                break
            if (key, etag) in self._seen:
                continue
            self._seen.add((key, etag))
            self._record(self._process(key, etag, size))
            handled += 1
        return handled

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # the embedded S3 going away at shutdown, or a bug: keep polling
                if not self._stopping.is_set():
                    log.exception("listing s3://%s/%s failed", self.bucket, self.prefix)
            self._stopping.wait(self._interval)

    def _listing(self) -> dict[tuple[str, str], int]:
        objects: dict[tuple[str, str], int] = {}
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):  # a console "folder" is not an upload
                    objects[(item["Key"], item["ETag"].strip('"'))] = item["Size"]
        return objects

    def _process(self, key: str, etag: str, size: int) -> JobOutcome:
        event = s3_put_event(self.bucket, key, size, etag, next(self._sequencer))
        try:
            response = self._handle(event)
        except Exception as error:  # Lambda would retry and then send it to the failure queue
            log.exception("the jobs function failed for s3://%s/%s", self.bucket, key)
            return JobOutcome(key, etag, error=f"{type(error).__name__}: {error}")
        return JobOutcome(key, etag, response=response)

    def _record(self, outcome: JobOutcome) -> None:
        with self._changed:
            self._outcomes[outcome.key] = outcome
            self._changed.notify_all()
