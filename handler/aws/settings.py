"""The function's settings: where outputs go, what may be read, how S3 is called; and `Settings`,
everything the Lambda entry points read once at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

from handler.aws.keys import climbs_out
from handler.core.env import Environment
from handler.core.errors import ConfigurationError
from handler.core.image.formats import OUTPUT_KINDS, TRANSPARENT_FORMATS, OutputFormat, OutputKind
from handler.core.image.limits import ImageLimits
from handler.core.model.settings import ModelSettings

DEFAULT_PRESIGNED_URL_EXPIRY = 3600
# SigV4 refuses X-Amz-Expires above 7 days. A link signed with the function's role's temporary
# credentials stops working when they expire, whichever comes first.
MAX_PRESIGNED_URL_EXPIRY = 7 * 24 * 3600
SECONDS_PER_DAY = 24 * 3600


@dataclass(frozen=True)
class SourceLocation:
    """Where the API's `source` may read: a bucket, or the keys under a prefix of it."""

    bucket: str
    prefix: str = ""

    def holds(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.prefix)

    def overlaps(self, bucket: str | None, prefix: str) -> bool:
        """Whether some key could be both here and under `bucket`/`prefix`."""
        return bucket == self.bucket and (prefix.startswith(self.prefix) or self.prefix.startswith(prefix))

    @classmethod
    def parse(cls, text: str) -> SourceLocation:
        """`bucket` or `bucket/prefix`."""
        bucket, _, prefix = text.partition("/")
        if not bucket or climbs_out(prefix):
            raise ConfigurationError(f"SOURCE_BUCKETS entries are `bucket` or `bucket/prefix/`, got {text!r}")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class FunctionSettings:
    """What the Lambda entry points need beyond the model: where outputs go, what may be read."""

    output_bucket: str | None = None
    output_prefix: str = ""
    outputs: tuple[OutputKind, ...] = OUTPUT_KINDS
    # Where the API's `source` may read (SOURCE_BUCKETS, SOURCE_PREFIX): none unless configured, and
    # never where another flow writes (start-up refuses a location overlapping the input or output).
    source_locations: tuple[SourceLocation, ...] = ()
    # Where uploads arrive (the S3 trigger's bucket and prefix): known so that start-up can refuse
    # a configuration whose outputs would trigger the function again.
    input_bucket: str | None = None
    input_prefix: str = ""
    presigned_url_expiry: int = DEFAULT_PRESIGNED_URL_EXPIRY
    # Format of the cutouts and masks the jobs function stores: one that keeps transparency.
    output_format: OutputFormat = "png"
    # Jobs with several objects overlap S3 transfers with the work: the next object is read and the
    # previous one's outputs are written in the background while one is inferred (JOBS_PREFETCH).
    prefetch: bool = True
    # Copy the uploads' EXIF and XMP to the cutouts (JOBS_KEEP_METADATA). Off: GPS must not leak.
    keep_metadata: bool = False
    # remove.bg's routes behind API keys (RemoveBgApiKeys=ENABLED, REMOVEBG_API_KEYS): each key's
    # usage-plan quota is its credits (handler/aws/removebg_api.py).
    removebg_api_keys: bool = False
    # How many times the jobs' queue delivers a message before moving it to the failure queue (its
    # maxReceiveCount, JOBS_MAX_ATTEMPTS): the attempt of that number is an upload's last.
    max_attempts: int = 1
    # How long the API's results and the upload flow's photos, records and outputs are kept before
    # the buckets' lifecycle rules delete them (RESULT_EXPIRY_DAYS); None: for ever. Links are
    # never signed to outlive them.
    result_expiry_days: int | None = None

    def __post_init__(self) -> None:
        _refuse_unknown_kinds(self.outputs)
        if self.output_format not in TRANSPARENT_FORMATS:
            raise ConfigurationError(
                f"OUTPUT_FORMAT must be one of {', '.join(TRANSPARENT_FORMATS)}, got {self.output_format!r}"
            )
        if self.output_prefix.startswith("/"):
            raise ConfigurationError(f"OUTPUT_PREFIX must not start with '/', got {self.output_prefix!r}")
        if climbs_out(self.output_prefix):
            raise ConfigurationError(f"OUTPUT_PREFIX must not have a '..' segment, got {self.output_prefix!r}")
        if self.presigned_url_expiry > MAX_PRESIGNED_URL_EXPIRY:
            raise ConfigurationError(
                f"PRESIGNED_URL_EXPIRY must be at most {MAX_PRESIGNED_URL_EXPIRY} seconds (7 days, the longest "
                f"a SigV4 presigned URL can live), got {self.presigned_url_expiry}"
            )
        self._refuse_recursive_loop()
        self._refuse_shared_sources()

    def link_expiry(self, created_at: float, now: float) -> int:
        """Seconds a link to an object created at `created_at` may be signed for, from `now`: the
        configured expiry, cut to what is left of the object's life (at least 1 s: S3 refuses 0)."""
        if self.result_expiry_days is None:
            return self.presigned_url_expiry
        left = int(created_at + self.result_expiry_days * SECONDS_PER_DAY - now)
        return max(1, min(self.presigned_url_expiry, left))

    def may_read_source(self, bucket: str, key: str) -> bool:
        return any(location.holds(bucket, key) for location in self.source_locations)

    def _refuse_shared_sources(self) -> None:
        """A `source` location where another flow writes would let any caller read what that flow
        stores (another caller's uploads, their cutouts) and probe which keys exist."""
        flows = {
            "the input location, where the jobs' uploads and POST /uploads photos arrive": (
                self.input_bucket,
                self.input_prefix,
            ),
            "the output location": (self.output_bucket, self.output_prefix),
        }
        for location in self.source_locations:
            for flow, (bucket, prefix) in flows.items():
                if bucket is not None and location.overlaps(bucket, prefix):
                    raise ConfigurationError(
                        f"SOURCE_BUCKETS/SOURCE_PREFIX {location} overlaps {flow} s3://{bucket}/{prefix}: "
                        "`source` reads must come from a bucket or prefix no other flow writes to "
                        "(e.g. SOURCE_PREFIX=sources/ beside INPUT_PREFIX=uploads/)"
                    )

    def _refuse_recursive_loop(self) -> None:
        if self.output_bucket is None or self.output_bucket != self.input_bucket:
            return
        # Same bucket: the prefixes must not overlap, or every output would re-trigger the function.
        if self.output_prefix.startswith(self.input_prefix) or self.input_prefix.startswith(self.output_prefix):
            raise ConfigurationError(
                f"OUTPUT_BUCKET/OUTPUT_PREFIX s3://{self.output_bucket}/{self.output_prefix} overlaps the input "
                f"location s3://{self.input_bucket}/{self.input_prefix}: every output would trigger the function "
                "again (a recursive loop that runs up the bill). Use a separate output bucket, or "
                "non-overlapping prefixes such as INPUT_PREFIX=uploads/ and OUTPUT_PREFIX=results/."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FunctionSettings:
        env = Environment(environ)
        input_bucket = env.raw("INPUT_BUCKET")
        return cls(
            output_bucket=env.raw("OUTPUT_BUCKET"),
            output_prefix=env.text("OUTPUT_PREFIX"),
            outputs=_refuse_unknown_kinds(env.names("OUTPUTS", OUTPUT_KINDS)),
            source_locations=_source_locations(env, input_bucket),
            input_bucket=input_bucket,
            input_prefix=env.text("INPUT_PREFIX"),
            presigned_url_expiry=env.positive_int("PRESIGNED_URL_EXPIRY", DEFAULT_PRESIGNED_URL_EXPIRY),
            output_format=env.choice("OUTPUT_FORMAT", TRANSPARENT_FORMATS, "png", any_case=True),
            prefetch=env.switch("JOBS_PREFETCH", True),
            keep_metadata=env.switch("JOBS_KEEP_METADATA", False),
            removebg_api_keys=env.choice("REMOVEBG_API_KEYS", ("ENABLED", "DISABLED"), "DISABLED") == "ENABLED",
            max_attempts=env.positive_int("JOBS_MAX_ATTEMPTS", 1),
            result_expiry_days=env.positive_int("RESULT_EXPIRY_DAYS", None),
        )


def _source_locations(env: Environment, input_bucket: str | None) -> tuple[SourceLocation, ...]:
    """SOURCE_BUCKETS (`bucket` or `bucket/prefix/` entries) and SOURCE_PREFIX (a prefix of the input bucket)."""
    locations = [SourceLocation.parse(entry) for entry in env.names("SOURCE_BUCKETS")]
    prefix = env.text("SOURCE_PREFIX")
    if prefix:
        if input_bucket is None:
            raise ConfigurationError("SOURCE_PREFIX names a prefix of INPUT_BUCKET, which is not set")
        locations.append(SourceLocation.parse(f"{input_bucket}/{prefix}"))
    return tuple(locations)


def _are_kinds(names: tuple[str, ...]) -> TypeGuard[tuple[OutputKind, ...]]:
    return bool(names) and all(name in OUTPUT_KINDS for name in names)


def _refuse_unknown_kinds(names: tuple[str, ...]) -> tuple[OutputKind, ...]:
    if not _are_kinds(names):
        raise ConfigurationError(f"OUTPUTS must list cutout and/or mask, got {','.join(names)!r}")
    return names


RetryMode = Literal["standard", "adaptive"]
S3_RETRY_MODES: tuple[RetryMode, ...] = ("standard", "adaptive")
DEFAULT_S3_MAX_ATTEMPTS = 4
DEFAULT_S3_CONNECT_TIMEOUT = 5.0
DEFAULT_S3_READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class StorageSettings:
    """How the S3 client retries and how long it waits (docs/s3-jobs.md, "Faults and retries").

    - `retry_mode`: botocore's "standard" retries throttling (503 SlowDown), 5xx, timeouts and
      connection errors with jittered exponential backoff (1 s base for throttling, 50 ms for the
      rest) and stops early when the client's retry quota is spent (an outage fails fast instead
      of multiplying the load). "adaptive" adds client-side rate limiting on throttling.
    - `max_attempts`: attempts in total, the first included; 4 is standard mode's default (3) plus
      one: throttling comes in bursts, and one more retry of a call is far cheaper than Lambda
      re-running the whole invocation, the model's work included.
    - `connect_timeout` 5 s: S3 accepts a connection in milliseconds; longer means it will not.
    - `read_timeout` 30 s: the longest silence between bytes, not the transfer's length. S3's
      first byte comes in well under a second even for large objects; 30 s leaves room for a
      slow moment without letting a dead connection eat the jobs function's 5-minute timeout.
    """

    retry_mode: RetryMode = "standard"
    max_attempts: int = DEFAULT_S3_MAX_ATTEMPTS
    connect_timeout: float = DEFAULT_S3_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_S3_READ_TIMEOUT

    def __post_init__(self) -> None:
        if self.retry_mode not in S3_RETRY_MODES:
            raise ConfigurationError(
                f"S3_RETRY_MODE must be one of {', '.join(S3_RETRY_MODES)}, got {self.retry_mode!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageSettings:
        env = Environment(environ)
        return cls(
            retry_mode=env.choice("S3_RETRY_MODE", S3_RETRY_MODES, "standard", any_case=True),
            max_attempts=env.positive_int("S3_MAX_ATTEMPTS", DEFAULT_S3_MAX_ATTEMPTS),
            connect_timeout=env.positive_float("S3_CONNECT_TIMEOUT", DEFAULT_S3_CONNECT_TIMEOUT),
            read_timeout=env.positive_float("S3_READ_TIMEOUT", DEFAULT_S3_READ_TIMEOUT),
        )


@dataclass(frozen=True)
class Settings:
    """Everything, read once at start-up."""

    model: ModelSettings = field(default_factory=ModelSettings)
    limits: ImageLimits = field(default_factory=ImageLimits)
    function: FunctionSettings = field(default_factory=FunctionSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return cls(
            model=ModelSettings.from_env(environ),
            limits=ImageLimits.from_env(environ),
            function=FunctionSettings.from_env(environ),
            storage=StorageSettings.from_env(environ),
        )
