"""The local run of the whole function: `python -m handler serve`.

One process plays the deployment of template.yaml on 127.0.0.1:

- an embedded S3 (moto in server mode) with an input and an output bucket;
- the HTTP API: every request to /remove and /mask becomes an API Gateway HTTP API (payload
  format 2.0) event for the same `handler.api.lambda_handler` the Lambda runs, and its response
  is written back as API Gateway would;
- the upload trigger: a poller lists the input bucket every second and hands each new object to
  `handler.jobs.lambda_handler` as an S3 `ObjectCreated:Put` notification;
- a small web page at `/` to try it from a browser.

Importing this module does nothing: `LocalServer.start()` sets the function's environment, and
only then imports the entry points (which load the model at import, as in Lambda's init phase).
moto comes with the test extras (`pip install -e '.[test]'`), which `make demo` installs.
"""

from __future__ import annotations

import base64
import importlib
import itertools
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit

from handler.errors import BackgroundRemovalError, LengthRequired, MethodNotAllowed, RequestTooLarge, RouteNotFound
from handler.headers import SECURITY_HEADERS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
INPUT_BUCKET = "local-uploads"
OUTPUT_BUCKET = "local-results"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
POLL_INTERVAL_SECONDS = 1.0
API_ROUTES = ("/remove", "/mask", "/v1.0/removebg")
PAGE = Path(__file__).resolve().parent / "static" / "index.html"

# The platform's limits, enforced here too so that what works locally works deployed: API
# Gateway refuses bodies over 10 MB, and Lambda refuses a synchronous request or response whose
# JSON (the image in base64 included) is over 6 MB. The templates' timeouts bound each call.
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024
API_TIMEOUT_SECONDS = 28
JOBS_TIMEOUT_SECONDS = 300
# Entry point calls running at once, API and upload poller together (see LocalServer.__init__).
INVOCATION_CONCURRENCY = 1

# Dummy credentials: the embedded S3 accepts any, and real ones must never reach it.
_LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}
# Shared AWS settings that would send the local run elsewhere or fail without real AWS.
_REMOVED_AWS_SETTINGS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE")

log = logging.getLogger(__name__)


@dataclass
class LocalLambdaContext:
    """What Lambda passes as `context`: the attributes Powertools and the entry points read."""

    function_name: str
    timeout_seconds: int
    memory_limit_in_mb: int = 3008
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def api_gateway_event(
    method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes, *, source_ip: str = "127.0.0.1"
) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload format 2.0) for one HTTP request, as AWS builds it:
    lower-cased header names, repeated headers and query values joined with commas, cookies in
    their own list, the body always base64."""
    url = urlsplit(target)
    path = url.path or "/"
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    route_key = f"{method} {path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": url.query,
        "headers": joined,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": joined.get("host", DEFAULT_HOST),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    return event


def http_response(result: Mapping[str, Any]) -> HttpResponse:
    """What API Gateway sends the client for a Lambda response in payload format 2.0."""
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    headers = [(name, str(value)) for name, value in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(value)) for value in values)
    headers.extend(("Set-Cookie", cookie) for cookie in result.get("cookies") or [])
    return HttpResponse(status=int(result.get("statusCode", 200)), headers=headers, body=data)


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


class LocalServer:
    """The embedded S3, the HTTP API and the upload poller, started and stopped together.

    Use as a context manager, or `start()` / `stop()`. `port=0` picks a free port (tests).
    `start()` sets the function's environment in `os.environ` (a Lambda environment is a process
    of its own; this is one too, for as long as it runs) and `stop()` restores it; `env` adds
    variables for the function, e.g. MODEL_PATH.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        s3_port: int = 0,
        input_bucket: str = INPUT_BUCKET,
        output_bucket: str = OUTPUT_BUCKET,
        env: Mapping[str, str] | None = None,
        poll_interval: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.s3_port = s3_port
        self.input_bucket = input_bucket
        self.output_bucket = output_bucket
        self._extra_env = dict(env or {})
        self._poll_interval = poll_interval
        self.s3_endpoint = ""
        self.input_prefix = ""
        self.model_name = ""
        self._moto: Any = None
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.poller: UploadPoller | None = None
        self._saved_env: dict[str, str | None] = {}
        self._api_handler: Callable[[dict[str, Any], Any], Any] | None = None
        self._jobs_handler: Callable[[dict[str, Any], Any], Any] | None = None
        # One model session serves everything, as one Lambda execution environment serves one
        # invocation at a time: the HTTP server is threaded (the page and queued requests keep
        # their connections), but every entry point call, from the API or the poller, takes this
        # lock. Concurrent runs would multiply the inference's peak memory (gigabytes for
        # BiRefNet) for no more throughput: each run already uses every core through
        # onnxruntime's intra-op threads (benchmarks/concurrency.py measures both), and the entry
        # points' Powertools state (logger keys, metrics buffer, the resolver's current event) is
        # per invocation, not made to be shared between threads. Waiting requests queue here.
        self._invocation_lock = threading.BoundedSemaphore(INVOCATION_CONCURRENCY)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start_s3()
            self._configure_environment()
            self._bind_http()  # before loading the model: a busy port fails at once
            self._load_function()
            self._start_http()
            self.poller = UploadPoller(
                self.s3_client(), self.input_bucket, self._invoke_jobs,
                prefix=self.input_prefix, interval=self._poll_interval,
            )
            self.poller.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Idempotent; safe after a failed start."""
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        if self._httpd is not None:
            if self._http_thread is not None:  # shutdown() waits for serve_forever(): only if it runs
                self._httpd.shutdown()
                self._http_thread.join(10)
                self._http_thread = None
            self._httpd.server_close()
            self._httpd = None
        if self._moto is not None:
            self._moto.stop()
            wsgi = getattr(self._moto, "_server", None)  # moto's stop() leaves its socket open
            if wsgi is not None:
                wsgi.server_close()
            self._moto = None
        self._restore_environment()

    def s3_client(self) -> Any:
        """A boto3 client for the embedded S3."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=REGION,
            aws_access_key_id=_LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def invoke_api(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self._api_handler is not None, "start() first"
        context = LocalLambdaContext("background-remover-api-local", API_TIMEOUT_SECONDS)
        with self._invocation_lock:
            return self._api_handler(event, context)

    def banner(self) -> str:
        """Where things are and how to try them."""
        s3 = f"aws --endpoint-url {self.s3_endpoint} --region {REGION}"
        creds = "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local"
        upload = f"s3://{self.input_bucket}/{self.input_prefix}"
        results = f"s3://{self.output_bucket}/{os.environ.get('OUTPUT_PREFIX', '')}"
        return "\n".join(
            [
                "Background remover, running locally (the Lambda entry points, an embedded S3).",
                f"  model:       {self.model_name}",
                f"  web page:    {self.url}/",
                f"  HTTP API:    POST {self.url}/remove   POST {self.url}/mask",
                f"  S3 endpoint: {self.s3_endpoint}  (any credentials)",
                f"  uploads:     {upload}   (new objects are processed within {self._poll_interval:g} s)",
                f"  results:     {results}",
                "",
                "Try:",
                f"  curl --data-binary @samples/chelsea.jpg -H 'Content-Type: image/jpeg' {self.url}/remove -o cutout.png",
                f"  curl --data-binary @samples/chelsea.jpg -H 'Content-Type: image/jpeg' {self.url}/mask -o mask.png",
                f"  {creds} {s3} s3 cp samples/chelsea.jpg {upload}chelsea.jpg",
                f"  {creds} {s3} s3 ls --recursive {results}",
                "",
                "Ctrl-C stops it; the embedded S3 and its contents go with it.",
            ]
        )

    def serve_until_interrupted(self, banner: str = "") -> None:
        """Print `banner`, block until Ctrl-C (or SIGTERM, which the caller maps to KeyboardInterrupt), then stop.

        The banner is printed inside the same guard: a Ctrl-C that arrives while it is still being
        written (a client may act on its first lines) must stop the server cleanly too.
        """
        try:
            if banner:
                print(banner, flush=True)
            while self._http_thread is not None and self._http_thread.is_alive():
                self._http_thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # -- start-up --------------------------------------------------------------------------

    def _start_s3(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as error:
            raise RuntimeError(
                "the local run needs moto's S3 server: pip install -e '.[test]' (make demo does it)"
            ) from error
        # werkzeug logs every request at INFO; the poller lists the bucket every second.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.s3_port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.s3_endpoint = f"http://{host}:{port}"
        client = self.s3_client()
        for bucket in (self.input_bucket, self.output_bucket):
            try:
                client.create_bucket(Bucket=bucket)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass  # moto keeps its state per process: a second local server finds it there

    def _configure_environment(self) -> None:
        """The function's environment, as template.yaml sets it, pointed at the embedded S3.

        Set before the entry points are imported: they read it once, at import (Lambda's init)."""
        settings: dict[str, str | None] = {
            **dict.fromkeys(_REMOVED_AWS_SETTINGS),
            **_LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "INPUT_BUCKET": self.input_bucket,
            "OUTPUT_BUCKET": self.output_bucket,
            "SOURCE_BUCKETS": self.input_bucket,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", "background-remover"),
            # EMF metrics are JSON documents on stdout, for CloudWatch; locally they only bury the logs.
            "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
            **self._extra_env,
        }
        self._apply_environment(settings)
        self.input_prefix = os.environ.get("INPUT_PREFIX", "")
        if self._model_is_present():
            # Never block a request on a download: the file is on disk already.
            self._apply_environment({"HF_HUB_OFFLINE": "1"})

    def _apply_environment(self, settings: Mapping[str, str | None]) -> None:
        for name, value in settings.items():
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _restore_environment(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        if "handler.runtime" in sys.modules:
            sys.modules["handler.runtime"].current.cache_clear()

    @staticmethod
    def _model_is_present() -> bool:
        import dataclasses

        from handler.config import ModelSettings
        from handler.errors import BackgroundRemovalError
        from handler.model_store import resolve_model_path

        try:
            resolve_model_path(dataclasses.replace(ModelSettings.from_env(), offline=True))
        except BackgroundRemovalError:
            return False
        return True

    def _load_function(self) -> None:
        """Import the entry points with the environment in place; loading the model happens here,
        as in Lambda's init phase, so a missing model fails now rather than on the first request."""
        runtime = importlib.import_module("handler.runtime")
        runtime.current.cache_clear()  # a previous local server in this process had its own settings
        self._api_handler = importlib.import_module("handler.api").lambda_handler
        self._jobs_handler = importlib.import_module("handler.jobs").lambda_handler
        self.model_name = runtime.current().model_name

    def _bind_http(self) -> None:
        server = self

        class Handler(_RequestHandler):
            local = server

        try:
            self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as error:
            raise RuntimeError(f"cannot listen on {self.host}:{self.port}: {error.strerror or error}") from error
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]

    def _start_http(self) -> None:
        assert self._httpd is not None
        self._http_thread = threading.Thread(target=self._httpd.serve_forever, name="local-http", daemon=True)
        self._http_thread.start()

    def _invoke_jobs(self, event: dict[str, Any]) -> Any:
        assert self._jobs_handler is not None
        context = LocalLambdaContext("background-remover-jobs-local", JOBS_TIMEOUT_SECONDS)
        with self._invocation_lock:
            return self._jobs_handler(event, context)


class _RequestHandler(BaseHTTPRequestHandler):
    """GET / is the page; /remove and /mask go through the Lambda entry point; the rest is 404."""

    local: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "background-remover-local"

    def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's naming)
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HttpResponse(200, [("Content-Type", "text/html; charset=utf-8")], PAGE.read_bytes()))
        elif path == "/favicon.ico":
            self._send(HttpResponse(204, [], b""))
        else:
            self._lambda_or_not_found()

    def do_POST(self) -> None:  # noqa: N802
        self._lambda_or_not_found()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(_error_response(MethodNotAllowed("HEAD is not served; use POST", ("POST",))))

    def _lambda_or_not_found(self) -> None:
        body = self._read_body()
        if body is None:
            return
        if urlsplit(self.path).path not in API_ROUTES:
            # API Gateway's own answer for a route the API does not have.
            self._send(_error_response(RouteNotFound("use POST /remove or POST /mask")))
            return
        event = api_gateway_event(
            self.command, self.path, list(self.headers.items()), body, source_ip=self.client_address[0]
        )
        if len(json.dumps(event)) > LAMBDA_PAYLOAD_LIMIT:
            self._send(_error_response(RequestTooLarge("the image in base64 exceeds Lambda's 6 MB request payload; "
                                                       "send it through S3")))
            return
        try:
            result = self.local.invoke_api(event)
        except Exception:
            # The entry point itself failed (not an error response): API Gateway answers so.
            log.exception("the API function failed")
            self._send(_error_response(_INTERNAL_ERROR))
            return
        if len(json.dumps(result)) > LAMBDA_PAYLOAD_LIMIT:
            log.error("the API response exceeds Lambda's 6 MB payload limit; deployed, this is a 500")
            self._send(_error_response(_INTERNAL_ERROR))
            return
        self._send(http_response(result))

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._send(_error_response(LengthRequired("send a Content-Length; chunked bodies are not taken")), close=True)
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > API_GATEWAY_MAX_BODY:
            self._send(_error_response(RequestTooLarge("the body exceeds API Gateway's 10 MB; send it through S3")), close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: HttpResponse, *, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        given = {name.lower() for name, _ in response.headers}
        for name, value in SECURITY_HEADERS.items():
            # The function's own responses carry these already; the server's own answers (the
            # page, 404, 413, ...) get the same, so nothing served here is sniffed or cached.
            if name.lower() not in given:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        log.info("%s %s", self.address_string(), format % args)


def _json_response(status: int, document: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], json.dumps(document).encode())


# What API Gateway answers when the function itself fails, in our error format.
_INTERNAL_ERROR = BackgroundRemovalError("an unexpected error occurred")


def _error_response(error: BackgroundRemovalError) -> HttpResponse:
    """The server's own refusals in the same `{"error": {"code", "message"}}` format as the function's."""
    response = _json_response(error.status, error.document())
    if isinstance(error, MethodNotAllowed):
        response.headers.append(("Allow", ", ".join(error.allowed)))
    return response


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, s3_port: int = 0, env: Mapping[str, str] | None = None
) -> int:
    """`python -m handler serve`: start everything, print where it is, run until Ctrl-C."""
    import signal

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    access_log = logging.StreamHandler(sys.stderr)
    access_log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(access_log)
    log.setLevel(logging.INFO)
    server = LocalServer(host, port, s3_port=s3_port, env=env)
    try:
        server.start()
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        message = getattr(error, "message", None) or str(error)
        print(f"error: the local run did not start: {message}", file=sys.stderr)
        return 1
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: the API has no authentication here", file=sys.stderr)
    server.serve_until_interrupted(server.banner())
    print("stopped.", flush=True)
    return 0

