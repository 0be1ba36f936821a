"""The jobs' S3 transfers: writing one object's outputs, and overlapping a batch's reads and writes
with the work (JOBS_PREFETCH)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from handler.aws.envelopes import ObjectRef
from handler.aws.storage import Storage, StoredObject

Write = tuple[str, bytes, str]  # key, data, content type


def write_outputs(storage: Storage, bucket: str, writes: Iterable[Write], metadata: Mapping[str, str]) -> None:
    for key, data, content_type in writes:
        storage.write(bucket, key, data, content_type=content_type, metadata=metadata)


class Overlap:
    """S3 transfers for a batch on two background threads: reads one object ahead, writes one behind.

    One read and one write at a time (each executor has one thread, and a write waits for the one
    before), so a batch holds at most three objects' data: the next one's bytes, the current one
    and the previous one's outputs. Peak memory is the bill. Leaving the `with` waits for both.
    """

    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self._storage = storage
        self._max_bytes = max_bytes
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs-read")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs-write")
        self._writing: tuple[frozenset[str], Future[None]] | None = None

    def __enter__(self) -> Overlap:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True)

    def read(self, ref: ObjectRef) -> Future[StoredObject]:
        """Start reading `ref.key` (its decoded form, if needed, is read later, in the foreground)."""
        return self._reader.submit(self._storage.read, ref.bucket, ref.key, max_bytes=self._max_bytes)

    def write(self, bucket: str, writes: Sequence[Write], metadata: Mapping[str, str]) -> Future[None]:
        self.wait_for_writes()
        future = self._writer.submit(write_outputs, self._storage, bucket, writes, metadata)
        self._writing = (frozenset(key for key, _, _ in writes), future)
        return future

    def wait_for_writes(self, keys: Iterable[str] | None = None) -> None:
        """Wait for the pending write (only if it writes one of `keys`, when given).

        Without raising: a failed write is reported by its own object.
        """
        if self._writing is not None and (keys is None or not self._writing[0].isdisjoint(keys)):
            wait([self._writing[1]])
