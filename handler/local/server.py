"""The local run of the whole function: `python -m handler serve`.

One process plays the deployment of template.yaml on 127.0.0.1:

- an embedded S3 (moto in server mode) with an input and an output bucket, behind a gate that
  checks browser-form uploads against their presigned POST policy as S3 does (post_policy.py);
- the HTTP API: every request to /remove, /mask, /uploads, /results/{id} and remove.bg's routes
  (/v1.0/removebg, /v1.0/account) becomes an API Gateway HTTP API (payload format 2.0) event for
  the same `handler.api.lambda_handler` the Lambda runs, and its response is written back as API
  Gateway would;
- the upload trigger: a poller lists the input bucket every second and hands each new object to
  `handler.jobs.lambda_handler` as an S3 `ObjectCreated:Put` notification;
- a small web page at `/` to try it from a browser.

Importing this module does nothing: `LocalServer.start()` sets the function's environment, and
only then imports the entry points (which load the model at import, as in Lambda's init phase).
moto comes with the test extras (`pip install -e '.[test]'`), which `make demo` installs.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from handler.local.api_gateway import DEFAULT_HOST
from handler.local.context import API_TIMEOUT_SECONDS, JOBS_TIMEOUT_SECONDS, REGION, LocalLambdaContext
from handler.local.embedded_s3 import EmbeddedS3, function_environment, model_is_present
from handler.local.environment import FunctionEnvironment
from handler.local.http_server import LocalHTTPServer, RequestHandler
from handler.local.upload_trigger import POLL_INTERVAL_SECONDS, UploadPoller

if TYPE_CHECKING:  # onnxruntime is loaded by start(), not by importing this module
    from handler.core.model.session import BackgroundModel

DEFAULT_PORT = 3000
INPUT_BUCKET = "local-uploads"
OUTPUT_BUCKET = "local-results"
# Entry point calls running at once, API and upload poller together (see LocalServer.__init__).
INVOCATION_CONCURRENCY = 1

log = logging.getLogger(__name__)


def _cors(method: str) -> dict[str, Any]:
    # Any origin: the local run listens on 127.0.0.1 only, and its page may be served from any port.
    return {
        "CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": [method], "AllowedHeaders": ["*"], "MaxAgeSeconds": 600}
        ]
    }


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
        env: Mapping[str, str | None] | None = None,
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
        # What the banner and the page say about the model: its name and input size, and whether it
        # is the fallback (handler.local.model_choice).
        self.model_summary = ""
        self._s3 = EmbeddedS3(s3_port)
        self._httpd: LocalHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.poller: UploadPoller | None = None
        self._environment = FunctionEnvironment()
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
        self._fallback = False

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
            self._bind_http()  # before choosing (maybe downloading) the model: a busy port fails at once
            self._configure_model()
            self._load_function()
            self._start_http()
            self.poller = UploadPoller(
                self.s3_client(),
                self.input_bucket,
                self._invoke_jobs,
                prefix=self.input_prefix,
                interval=self._poll_interval,
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
        self._s3.stop()
        self._restore_environment()

    def s3_client(self) -> Any:
        """A boto3 client for the embedded S3."""
        return self._s3.client()

    def invoke_api(
        self, event: dict[str, Any], still_wanted: Callable[[], bool] | None = None
    ) -> dict[str, Any] | None:
        """The API entry point's response to `event`, once the calls before it are done; None, without
        calling it, when `still_wanted` says by then that nobody waits for the answer any more (the
        page cancels its previous request whenever a photo or an option changes)."""
        assert self._api_handler is not None, "start() first"
        context = LocalLambdaContext("background-remover-api-local", API_TIMEOUT_SECONDS)
        with self._invocation_lock:
            if still_wanted is not None and not still_wanted():
                return None
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
                f"  model:       {self.model_summary}",
                f"  web page:    {self.url}/",
                f"  HTTP API:    POST {self.url}/remove   POST {self.url}/mask   POST {self.url}/uploads"
                f"   GET {self.url}/results/<id>",
                f"  remove.bg:   POST {self.url}/v1.0/removebg   GET {self.url}/v1.0/account   (base URL {self.url};"
                " any X-Api-Key here; deployed: the HTTP API's auth, or API keys with RemoveBgApiKeys=ENABLED;"
                " fields: README, docs/removebg.md)",
                f"  S3 endpoint: {self.s3_endpoint}  (any credentials)",
                f"  uploads:     {upload}   (new objects are processed within {self._poll_interval:g} s)",
                f"  results:     {results}",
                "",
                "Try:",
                f"  curl --data-binary @samples/chelsea.jpg -H 'Content-Type: image/jpeg' {self.url}/remove -o cutout.png",
                f"  curl --data-binary @samples/chelsea.jpg -H 'Content-Type: image/jpeg' {self.url}/mask -o mask.png",
                f"  curl -H 'X-API-Key: any' -F 'image_file=@samples/chelsea.jpg' -F 'size=auto'"
                f" -f {self.url}/v1.0/removebg -o no-bg.png",
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
        self.s3_endpoint = self._s3.start()
        self._s3.create_buckets(self.input_bucket, self.output_bucket)
        client = self._s3.client()
        # The web page uploads to the input bucket (POST /uploads' presigned form) and fetches
        # results from the output bucket, from another origin than the embedded S3's.
        client.put_bucket_cors(Bucket=self.input_bucket, CORSConfiguration=_cors("POST"))
        client.put_bucket_cors(Bucket=self.output_bucket, CORSConfiguration=_cors("GET"))

    def _configure_environment(self) -> None:
        """The function's environment, as template.yaml sets it, pointed at the embedded S3.

        Set before the entry points are imported: they read it once, at import (Lambda's init)."""
        self._environment.apply(
            {**function_environment(self.s3_endpoint, self.input_bucket, self.output_bucket), **self._extra_env}
        )
        self.input_prefix = os.environ.get("INPUT_PREFIX", "")

    def _configure_model(self) -> None:
        self._choose_model()
        if model_is_present():
            # Never block a request on a download: the file is on disk already.
            self._environment.apply({"HF_HUB_OFFLINE": "1"})

    def _restore_environment(self) -> None:
        self._environment.restore()
        if self._api_handler is not None:
            # The runtime this server loaded had its settings: whoever comes next reads their own.
            from handler.aws import runtime

            runtime.reset()

    def _choose_model(self) -> None:
        """The local tools' model choice (handler.local.model_choice): the named model, or the fallback,
        which the function then gets as its MODEL_PATH, as a deployment of that model would."""
        from handler.core.model.settings import ModelSettings
        from handler.local.model_choice import function_environment_for

        chosen = function_environment_for(ModelSettings.from_env())
        self._environment.apply(chosen)
        self._fallback = bool(chosen)

    def _load_function(self) -> None:
        """Import the entry points with the environment in place; loading the model happens here,
        as in Lambda's init phase, so a missing model fails now rather than on the first request."""
        from handler.aws import runtime

        runtime.reset()  # a previous local server in this process had its own settings
        self._api_handler = importlib.import_module("handler.api").lambda_handler
        self._jobs_handler = importlib.import_module("handler.jobs").lambda_handler
        current = runtime.current()
        self.model_name = current.model_name
        self.model_summary = _model_summary(current.model, current.model_name, fallback=self._fallback)

    def _bind_http(self) -> None:
        server = self

        class Handler(RequestHandler):
            local = server

        try:
            self._httpd = LocalHTTPServer((self.host, self.port), Handler)
        except OSError as error:
            reason = f"cannot listen on {self.host}:{self.port}: {error.strerror or error}"
            if error.errno == errno.EADDRINUSE:
                reason += (
                    f"; another program (another demo?) uses port {self.port}: stop it, or choose another port "
                    "with `make demo PORT=8080` (`bgremove serve --port 8080`)"
                )
            raise RuntimeError(reason) from error
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


def _model_summary(model: BackgroundModel, name: str, *, fallback: bool) -> str:
    """The model in a few words for a person: which one, and whether the resolution option applies to it."""
    width, height = model.input_size
    if model.dynamic:
        size = f"dynamic input, {width}x{height} unless a resolution is asked for"
    else:
        size = f"fixed {width}x{height} input: the resolution option does not apply"
    if fallback:
        from handler.local.fallback_model import LABEL

        return f"{LABEL}, the offline fallback for BiRefNet-lite ({size})"
    return f"{name} ({size})"


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, s3_port: int = 0, env: Mapping[str, str | None] | None = None
) -> int:
    """`python -m handler serve`: start everything, print where it is, run until Ctrl-C."""
    import signal

    def interrupt(_signum: int, _frame: object) -> None:
        # One is enough: a second signal during the clean stop would only break it with a traceback.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.SIG_IGN)
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background inherits SIGINT ignored, and Ctrl-C (or a
    # supervisor's SIGINT) must still stop the server cleanly.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, interrupt)
    access_log = logging.StreamHandler(sys.stderr)
    access_log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(access_log)
    log.setLevel(logging.INFO)
    server = LocalServer(host, port, s3_port=s3_port, env=env)
    try:
        server.start()
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - any start-up failure is one line for the user
        message = getattr(error, "message", None) or str(error)
        print(f"error: the local run did not start: {message}", file=sys.stderr)
        return 1
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: the API has no authentication here", file=sys.stderr)
    server.serve_until_interrupted(server.banner())
    print("stopped.", flush=True)
    return 0
