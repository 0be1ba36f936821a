"""S3 (and API Gateway's usage figures for remove.bg's API keys): the only module that talks to boto3.

Endpoint overrides go through boto3's own `AWS_ENDPOINT_URL_S3`, so the same code talks to AWS
and to a local S3. Retries are configured deliberately (config.StorageSettings): botocore's
"standard" mode retries throttling, 5xx, timeouts and connection errors with backoff, within
S3_MAX_ATTEMPTS. botocore cannot retry a GET whose body breaks off after the headers arrived (the
body is read after the call returned), so `read` reads it again, up to S3_MAX_ATTEMPTS GETs. What
still fails becomes StorageUnavailable (not permanent, so the jobs path lets Lambda retry it); a
missing key is SourceNotFound at once (standard mode does not retry a 404). A write that S3
refuses (no such bucket, access denied) is OutputUnavailable: the output location is the service's
configuration, so it is never reported as a fault of the source or the client's input.

Writes may be conditional, S3's check-and-set (`If-None-Match: *`, `If-Match: <ETag>`): a write
whose condition no longer holds is `WriteConflict`, for the caller to read again and decide.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from handler.aws.observability import logger
from handler.aws.settings import StorageSettings
from handler.core.errors import (
    ImageTooLarge,
    OutputUnavailable,
    SourceForbidden,
    SourceNotFound,
    StorageUnavailable,
)

_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
# A conditional write whose condition failed (412), or that raced another one on the key (409).
_CONFLICT = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}
_FORBIDDEN = {"403", "AccessDenied", "Forbidden"}
# A body that stopped arriving: ResponseStreamingError (reset, short read) or ReadTimeoutError.
_BROKEN_BODY = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError)


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    etag: str
    version_id: str | None
    # The object's user metadata (x-amz-meta-*), names lower-cased as S3 returns them.
    metadata: Mapping[str, str] = field(default_factory=dict)


class WriteConflict(Exception):
    """A conditional write refused because the object is not (or no longer) as the condition said."""


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


class Storage:
    def __init__(self, settings: StorageSettings | None = None, *, client: Any | None = None) -> None:
        self.settings = settings or StorageSettings()
        # A session of its own: boto3's default one keeps the credentials it resolved first for the
        # whole process, so a runtime made again after the environment changed (the local server,
        # tests) would sign with the old ones.
        self._client = client or boto3.session.Session().client(
            "s3",
            config=Config(
                retries={"mode": self.settings.retry_mode, "total_max_attempts": self.settings.max_attempts},
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
                signature_version="s3v4",
            ),
        )

    def read(self, bucket: str, key: str, *, max_bytes: int, version_id: str | None = None) -> StoredObject:
        """Read a whole object, refusing one over `max_bytes` before downloading its body.

        A body that breaks off (connection reset, read timeout, short read) is read again from the
        start, up to `max_attempts` GETs; each GET has botocore's own retries for its answer.
        """
        extra = {"VersionId": version_id} if version_id else {}
        with _s3_errors(bucket, key):
            for attempt in range(1, self.settings.max_attempts + 1):
                response = self._client.get_object(Bucket=bucket, Key=key, **extra)
                body = response["Body"]
                try:
                    if response.get("ContentLength", 0) > max_bytes:
                        raise ImageTooLarge(
                            f"s3://{bucket}/{key} is {response['ContentLength']:,} bytes; the limit is {max_bytes:,}"
                        )
                    data = body.read()
                    break
                except _BROKEN_BODY:
                    if attempt == self.settings.max_attempts:
                        raise
                finally:
                    body.close()
        return StoredObject(
            data=data,
            etag=response.get("ETag", "").strip('"'),
            version_id=response.get("VersionId"),
            metadata=response.get("Metadata") or {},
        )

    def metadata(self, bucket: str, key: str) -> Mapping[str, str] | None:
        """The user metadata of an object, or None when it does not exist."""
        try:
            with _s3_errors(bucket, key):
                return self._client.head_object(Bucket=bucket, Key=key).get("Metadata", {})
        except SourceNotFound:
            return None

    def exists(self, bucket: str, key: str) -> bool:
        """Whether the object exists, told by a listing: the caller needs s3:ListBucket, not read access."""
        with _s3_errors(bucket, key):
            listed = self._client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in listed.get("Contents", []))

    def write(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str],
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        """Store the object; its new ETag. `if_match` (an ETag) or `if_absent` make it a check-and-set."""
        condition = {"IfMatch": f'"{if_match}"'} if if_match is not None else {}
        if if_absent:
            condition["IfNoneMatch"] = "*"
        try:
            with _s3_errors(bucket, key, writing=True):
                response = self._client.put_object(
                    Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata=dict(metadata), **condition
                )
        except OutputUnavailable as error:
            # If-Match on a key that is gone is S3's 404: the object is not as the condition said.
            if (
                if_match is not None
                and isinstance(error.__cause__, ClientError)
                and _code(error.__cause__) == "NoSuchKey"
            ):
                raise WriteConflict(f"s3://{bucket}/{key} no longer exists") from error
            raise
        return str(response.get("ETag", "")).strip('"')

    def presigned_post(
        self,
        bucket: str,
        key: str,
        *,
        fields: Mapping[str, str],
        max_bytes: int,
        expires_in: int,
    ) -> PresignedPost:
        """A browser-form upload of exactly `key`: every one of `fields` pinned by the policy, and
        the file 1..`max_bytes` bytes long (S3 refuses anything else before storing a byte)."""
        conditions: list[Any] = [{name: value} for name, value in fields.items()]
        conditions.append(["content-length-range", 1, max_bytes])
        with _s3_errors(bucket, key):
            signed = self._client.generate_presigned_post(
                bucket, key, Fields=dict(fields), Conditions=conditions, ExpiresIn=expires_in
            )
        return PresignedPost(url=signed["url"], fields=dict(signed["fields"]))

    def presigned_get_url(self, bucket: str, key: str, expires_in: int) -> str:
        with _s3_errors(bucket, key):
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
            )


@contextmanager
def _s3_errors(bucket: str, key: str, *, writing: bool = False) -> Iterator[None]:
    """Translate botocore failures into the service's error kinds.

    `writing`: the location is one of our outputs, so a refusal is our configuration's fault.
    """
    location = f"s3://{bucket}/{key}"
    try:
        yield
    except ClientError as error:
        code = _code(error)
        if code in _CONFLICT:
            raise WriteConflict(f"{location} changed: {code}") from error
        if writing and (code in _NOT_FOUND or code in _FORBIDDEN):
            raise OutputUnavailable(f"cannot write the output {location}: {code}") from error
        if code in _NOT_FOUND:
            raise SourceNotFound(f"{location} does not exist") from error
        if code in _FORBIDDEN:
            raise SourceForbidden(f"access to {location} is denied") from error
        raise StorageUnavailable(f"S3 failed for {location}: {code or 'unknown error'}") from error
    except BotoCoreError as error:
        raise StorageUnavailable(f"S3 could not be reached for {location}: {type(error).__name__}") from error


@dataclass(frozen=True)
class KeyQuota:
    """The quota of the usage plan an API key is in: `limit` requests a `period` (DAY, WEEK, MONTH)."""

    plan_id: str
    limit: int
    period: str


class UsagePlans:
    """What an API key has used of its usage plan's quota (API Gateway's GetUsagePlans, GetUsage),
    for remove.bg's account figures and rate-limit headers. Figures, not a gate: API Gateway itself
    refuses a key whose quota is spent, so a failed look-up answers None and nothing is guessed.

    Few attempts and short timeouts: the answer only decorates a response that is ready. A key's
    plan is looked up once per execution environment (plans change rarely; a new one is seen on
    the next cold start); its usage on every call.
    """

    def __init__(self, *, client: Any | None = None) -> None:
        self._client = client or boto3.session.Session().client(
            "apigateway",
            config=Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=3),
        )
        self._quotas: dict[str, KeyQuota | None] = {}

    def quota_of(self, key_id: str) -> KeyQuota | Literal[False] | None:
        """The quota of `key_id`'s plan; None for a plan without one; False when it cannot be read."""
        if key_id not in self._quotas:
            try:
                plans = self._client.get_usage_plans(keyId=key_id).get("items") or []
            except (ClientError, BotoCoreError) as error:
                logger.warning("usage plans unavailable", extra={"error": type(error).__name__})
                return False
            quotas = [plan for plan in plans if (plan.get("quota") or {}).get("limit")]
            # A key may be in several plans (one per stage); remove.bg's routes are one stage's.
            self._quotas[key_id] = (
                KeyQuota(
                    quotas[0]["id"], int(quotas[0]["quota"]["limit"]), str(quotas[0]["quota"].get("period", "DAY"))
                )
                if quotas
                else None
            )
        return self._quotas[key_id]

    def used(self, plan_id: str, key_id: str, first_day: str, last_day: str) -> int | None:
        """Requests `key_id` made from `first_day` to `last_day` (YYYY-MM-DD, UTC); None if unknown."""
        try:
            usage = self._client.get_usage(usagePlanId=plan_id, keyId=key_id, startDate=first_day, endDate=last_day)
        except (ClientError, BotoCoreError) as error:
            logger.warning("usage plan figures unavailable", extra={"error": type(error).__name__})
            return None
        # items: {key id: [[used, remaining], ...]}, one pair a day; none for a key unused so far.
        return sum(int(day[0]) for day in (usage.get("items") or {}).get(key_id) or [])


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
