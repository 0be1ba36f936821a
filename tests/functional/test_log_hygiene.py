"""No request body, image bytes or whole event ever reaches the logs (issue #7, "Abuse").

Every event shape in events/ and the API's body kinds and error paths go through the real entry
points with every log turned up: the function's Powertools logger at DEBUG, the root logger at
DEBUG (what Lambda's ApplicationLogLevel=DEBUG does; botocore would log request parameters there),
and POWERTOOLS_LOGGER_LOG_EVENT=true, the switch that makes Powertools log each whole event. The
entry points are re-imported under that environment, since Powertools reads the switch when it
decorates. Everything written to the logger, the logging tree, stdout and stderr is then searched
for the image (any 32-character window of its base64 at each byte alignment, of its hex, of its
bytes' repr), for the request body, and for the fields only a dumped event would contain.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import io
import json
import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from handler.local.context import LocalLambdaContext
from tests.forms import multipart_body

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
EVENT_BUCKET = "background-remover-uploads"  # the bucket the jobs events in events/ name
EVENT_KEY = "uploads/holiday photos/beach (1).jpg"
# The small cat JPEG that the API events carry.
IMAGE = base64.b64decode(json.loads((EVENTS / "api_v2_remove.json").read_text())["body"])
WINDOW = 32
# Only a dumped event (or a dumped request) has these; the function's own lines never do.
EVENT_MARKERS = (
    "requestContext", "multiValueHeaders", "isBase64Encoded", "rawQueryString", "Records", "receiptHandle",
    "invocationSchemaVersion", "userIdentity", "x-forwarded-for", "execute-api", "lambda-url",
    "Content-Disposition", "test-boundary",
)  # fmt: skip


def broken_png() -> bytes:
    """A PNG whose second IDAT chunk has a non-ASCII type: Pillow quotes those bytes in its error."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, "PNG")
    data = buffer.getvalue()
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    pixels = data[start + 8 : start + 8 + length]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return data[:start] + chunk(b"IDAT", pixels[:10]) + chunk(b"\x01\xfe\xad\xbe", pixels[10:]) + chunk(b"IEND", b"")


BROKEN_PNG = broken_png()
TRUNCATED_JPEG = IMAGE[: len(IMAGE) // 2]


def _windows(text: str) -> set[str]:
    return {text[i : i + WINDOW] for i in range(0, max(len(text) - WINDOW + 1, 0))}


def forbidden_windows(data: bytes) -> set[str]:
    """Every 32-character piece of `data` as it could appear in text: base64 (at each of the three
    byte alignments), hex, and Python's bytes repr."""
    windows: set[str] = set()
    for offset in range(3):
        windows |= _windows(base64.b64encode(data[offset:]).decode())
    windows |= _windows(binascii.hexlify(data).decode())
    windows |= _windows(repr(data)[2:-1])
    return windows


@dataclass
class Captured:
    """Everything written while a scenario ran."""

    structured: io.StringIO
    records: list[logging.LogRecord] = field(default_factory=list)
    streams: str = ""

    def text(self) -> str:
        rendered = []
        for record in self.records:
            rendered.append(record.getMessage())
            if record.exc_info:
                rendered.append(logging.Formatter().formatException(record.exc_info))
            rendered.append(json.dumps(record.__dict__, default=repr))
        return "\n".join([self.structured.getvalue(), *rendered, self.streams])


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        # The S3 stand-in's own access log (moto's werkzeug server) is not the function's.
        if not record.name.startswith(("werkzeug", "moto")):
            self._records.append(record)


@pytest.fixture
def loud(
    deploy: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Any, Captured]]:
    """A deployment whose every log is on (see the module docstring), and what it writes."""
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    deployment = deploy(INPUT_PREFIX="uploads/", OUTPUT_PREFIX="")
    from handler import api, jobs
    from handler.aws.observability import logger

    # Powertools reads POWERTOOLS_LOGGER_LOG_EVENT when it decorates the handlers: decorate again.
    importlib.reload(api)
    importlib.reload(jobs)
    captured = Captured(structured=io.StringIO())
    # Powertools' handler holds the sys.stdout of its creation: point it at the buffer instead.
    monkeypatch.setattr(logger.registered_handler, "stream", captured.structured)
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    root = logging.getLogger()
    collector = _Collect(captured.records)
    root.addHandler(collector)
    root_level = root.level
    root.setLevel(logging.DEBUG)
    capsys.readouterr()
    try:
        yield deployment, captured
    finally:
        root.setLevel(root_level)
        root.removeHandler(collector)
        logger.setLevel(previous_level)
    # Leave the handlers as the rest of the suite expects them (decorated without the switch).
    monkeypatch.delenv("POWERTOOLS_LOGGER_LOG_EVENT")
    importlib.reload(api)
    importlib.reload(jobs)


def assert_clean(logs: str, *secrets: bytes, bodies: tuple[str, ...] = ()) -> None:
    for marker in EVENT_MARKERS:
        assert marker.lower() not in logs.lower(), f"{marker!r} is in the logs: an event or request was dumped"
    for body in bodies:
        leaked = _windows(body) & _windows(logs)
        assert not leaked, f"a piece of the request body is in the logs: {sorted(leaked)[:1]}"
    for secret in secrets:
        leaked = forbidden_windows(secret) & _windows(logs)
        assert not leaked, f"a piece of the image is in the logs: {sorted(leaked)[:1]}"
        assert repr(secret[:4])[2:-1] not in logs  # its signature, as a bytes repr would show it


def _event(name: str, bucket: str | None = None) -> dict[str, Any]:
    text = (EVENTS / name).read_text()
    return json.loads(text.replace(EVENT_BUCKET, bucket) if bucket else text)


def _http(body: bytes | str, content_type: str, **query: str) -> dict[str, Any]:
    event = _event("api_v2_remove.json")
    event["headers"]["content-type"] = content_type
    event["queryStringParameters"] = query or None
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in query.items())
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body, False
    return event


BOUNDARY = "----test-boundary-5Fq0cYz"
API_CASES: dict[str, tuple[Callable[[], dict[str, Any]], int, bytes]] = {
    # name: (event, expected status, the image it carries)
    "api_v1_remove.json": (lambda: _event("api_v1_remove.json"), 200, IMAGE),
    "api_v2_remove.json": (lambda: _event("api_v2_remove.json"), 200, IMAGE),
    "api_v2_mask.json": (lambda: _event("api_v2_mask.json"), 200, IMAGE),
    "function_url_remove.json": (lambda: _event("function_url_remove.json"), 200, IMAGE),
    "multipart": (
        lambda: _http(
            multipart_body({"image": IMAGE, "format": "webp"}, BOUNDARY), f"multipart/form-data; boundary={BOUNDARY}"
        ),
        200,
        IMAGE,
    ),
    "json-base64": (
        lambda: _http(json.dumps({"image": base64.b64encode(IMAGE).decode(), "crop": True}), "application/json"),
        200,
        IMAGE,
    ),
    "json-data-url": (
        lambda: _http(
            json.dumps({"image": "data:image/jpeg;base64," + base64.b64encode(IMAGE).decode()}), "application/json"
        ),
        200,
        IMAGE,
    ),
    "invalid-image": (lambda: _http(TRUNCATED_JPEG, "image/jpeg"), 400, TRUNCATED_JPEG),
    "broken-png-chunk": (lambda: _http(BROKEN_PNG, "image/png"), 400, BROKEN_PNG),
    "bad-parameter": (lambda: _http(IMAGE, "image/jpeg", format="tiff"), 400, IMAGE),
    "bad-json": (lambda: _http('{"image": "' + base64.b64encode(IMAGE).decode(), "application/json"), 400, IMAGE),
    "unsupported-type": (lambda: _http(IMAGE, "text/plain"), 415, IMAGE),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_logs_hold_no_body_image_or_event(loud: tuple[Any, Captured], capsys: Any, case: str) -> None:
    from handler import api

    make_event, status, image = API_CASES[case]
    event = make_event()
    response = api.lambda_handler(event, LocalLambdaContext("background-remover", 60))
    _, captured = loud
    captured.streams = "".join(capsys.readouterr())
    logs = captured.text()

    assert response["statusCode"] == status, response.get("body", "")[:300]
    # The capture works: the invocation's metrics (EMF on stdout) are there
    assert '"ImagesProcessed"' in logs if status == 200 else '"Errors"' in logs
    # The response body too, when it is the result (an error's JSON shares words with its log line)
    assert_clean(logs, image, bodies=(event["body"], response["body"]) if status == 200 else (event["body"],))


@pytest.mark.parametrize("limit", ["MAX_INPUT_BYTES", "MAX_INPUT_PIXELS"])
def test_api_logs_of_an_oversize_request_hold_no_image(
    loud: tuple[Any, Captured], capsys: Any, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    from handler import api
    from handler.aws import runtime

    monkeypatch.setenv(limit, "1000")
    runtime.reset()
    event = _event("api_v2_remove.json")
    response = api.lambda_handler(event, LocalLambdaContext("background-remover", 60))
    _, captured = loud
    captured.streams = "".join(capsys.readouterr())

    assert response["statusCode"] == 413
    assert_clean(captured.text(), IMAGE, bodies=(event["body"],))


def test_api_logs_of_a_result_handed_over_through_s3_hold_no_image(
    loud: tuple[Any, Captured], capsys: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handler import api

    monkeypatch.setattr(api, "LAMBDA_RESPONSE_LIMIT", api.ENVELOPE_RESERVE + 100)
    event = _event("api_v2_remove.json")
    context = LocalLambdaContext("background-remover", 60)
    response = api.lambda_handler(event, context)
    deployment, captured = loud
    captured.streams = "".join(capsys.readouterr())

    # The result went to S3 through botocore with the root logger at DEBUG: neither the input nor
    # the stored cutout is in the logs.
    assert response["statusCode"] == 303
    assert logging.getLogger().level == logging.DEBUG
    stored = s3.get_object(Bucket=deployment.output_bucket, Key=f"api/{context.aws_request_id}/cutout.png")
    assert_clean(captured.text(), IMAGE, stored["Body"].read(), bodies=(event["body"],))


def test_api_logs_of_an_unexpected_error_hold_its_traceback_but_no_image(
    loud: tuple[Any, Captured], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handler import api

    def broken(data: bytes, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"a bug with {len(data)} bytes in hand")

    monkeypatch.setattr(api, "process", broken)
    event = _event("api_v2_remove.json")
    response = api.lambda_handler(event, LocalLambdaContext("background-remover", 60))
    _, captured = loud
    captured.streams = "".join(capsys.readouterr())
    logs = captured.text()

    assert response["statusCode"] == 500
    assert "Traceback" in logs and "a bug with" in logs
    assert_clean(logs, IMAGE, bodies=(event["body"],))


JOB_EVENTS = (
    "s3_put.json",
    "eventbridge_object_created.json",
    "sqs_s3_notification.json",
    "sqs_eventbridge.json",
    "batch_operations_v1.json",
    "batch_operations_v2.json",
    "s3_test_event.json",
)


@pytest.mark.parametrize("name", JOB_EVENTS)
@pytest.mark.parametrize("content", ["photo", "broken-png"])
def test_jobs_logs_hold_no_image_or_event(
    loud: tuple[Any, Captured], capsys: Any, s3: Any, name: str, content: str
) -> None:
    from handler import jobs

    deployment, captured = loud
    data = IMAGE if content == "photo" else BROKEN_PNG
    s3.put_object(Bucket=deployment.input_bucket, Key=EVENT_KEY, Body=data)

    jobs.lambda_handler(_event(name, deployment.input_bucket), LocalLambdaContext("background-remover-jobs", 60))
    captured.streams = "".join(capsys.readouterr())
    logs = captured.text()

    # The capture works: the function logged this invocation (its request id is on every line)
    assert "function_request_id" in logs
    if name != "s3_test_event.json":
        assert ("object processed" if content == "photo" else '"invalid_image"') in logs
    # ... and neither are the cutouts and masks it stored
    outputs = [
        s3.get_object(Bucket=deployment.output_bucket, Key=item["Key"])["Body"].read()
        for item in s3.list_objects_v2(Bucket=deployment.output_bucket).get("Contents", [])
    ]
    assert len(outputs) == (2 if content == "photo" and name != "s3_test_event.json" else 0)
    assert_clean(logs, *outputs)
    if content == "broken-png" and name != "s3_test_event.json":
        # Pillow's message quoted the chunk's bytes; the logged reason keeps the words only.
        assert "broken PNG file (chunk <bytes>)" in logs
        assert "\\xfe\\xad" not in logs and "\\\\xfe\\\\xad" not in logs
    assert_clean(logs, data)


def test_jobs_logs_of_an_unreadable_event_name_its_fields_not_its_content(
    loud: tuple[Any, Captured], capsys: Any
) -> None:
    from handler import jobs
    from handler.core.errors import UnsupportedEvent

    encoded = base64.b64encode(IMAGE).decode()
    # The image as a value, and as a field name
    event = {"image": encoded, "note": "not an S3 event", encoded: 1}
    with pytest.raises(UnsupportedEvent) as raised:
        jobs.lambda_handler(event, LocalLambdaContext("background-remover-jobs", 60))
    _, captured = loud
    captured.streams = "".join(capsys.readouterr())
    logs = captured.text()

    assert '"unsupported_event"' in logs and "image, note" in logs
    # The Lambda runtime logs an uncaught exception's message too.
    assert_clean(logs + str(raised.value), IMAGE, bodies=(encoded,))


def test_jobs_logs_of_an_unexpected_error_hold_its_traceback_but_no_image(
    loud: tuple[Any, Captured], capsys: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handler import jobs
    from handler.aws import pipeline

    deployment, captured = loud
    s3.put_object(Bucket=deployment.input_bucket, Key=EVENT_KEY, Body=IMAGE)

    def broken(data: bytes, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"a bug with {len(data)} bytes in hand")

    monkeypatch.setattr(pipeline, "process", broken)
    with pytest.raises(RuntimeError):
        jobs.lambda_handler(_event("s3_put.json", deployment.input_bucket), LocalLambdaContext("jobs", 60))
    captured.streams = "".join(capsys.readouterr())
    logs = captured.text()

    assert "Traceback" in logs and "a bug with" in logs
    assert_clean(logs, IMAGE)


def test_the_check_finds_a_dumped_event(loud: tuple[Any, Captured], capsys: Any) -> None:
    """The detector itself: Powertools with log_event=True is caught on every count."""
    from handler.aws.observability import logger

    event = _event("api_v2_remove.json")
    logger.inject_lambda_context(log_event=True)(lambda _event, _context: None)(
        event, LocalLambdaContext("background-remover", 60)
    )
    _, captured = loud
    captured.streams = "".join(capsys.readouterr())

    with pytest.raises(AssertionError, match="an event or request was dumped"):
        assert_clean(captured.text(), IMAGE)
    # and the image is found at any byte alignment, in base64, hex or repr
    for leak in (base64.b64encode(IMAGE[7:60]).decode(), IMAGE[30:60].hex(), repr(IMAGE[100:140])):
        with pytest.raises(AssertionError, match="a piece of the image"):
            assert_clean(f'{{"message": "oops {leak}"}}', IMAGE)
