"""Both entry points as Lambda runs them: awslambdaric against the Runtime API emulator, in a
read-only sandbox as Lambda's non-root user, with Lambda's environment and limits (emulator/).

Each function starts once for the session (one cold start, many invocations, as on Lambda).
The model is a test-made graph with BiRefNet's contract (everything foreground), baked into the
image root by the image's own build step; the image root is cached in .cache/ by content.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image as PILImage

from emulator import configuration, events, runner
from emulator.bench import Bench
from emulator.function import LambdaFunction
from emulator.image import Image
from emulator.images import cached_image
from emulator.local_s3 import LocalS3
from emulator.runtime_api import REQUEST_LIMIT, RESPONSE_LIMIT
from emulator.sandbox import LAMBDA_GID, LAMBDA_UID
from handler.local.upload_trigger import s3_put_event
from tests import graphs

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
FIXTURES = Path(__file__).resolve().parent / "lambda_fixtures"
CACHE = ROOT / ".cache" / "lambda-runtime-tests"

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


# The upload flow's events and what each answers alone: a ticket, and an id no one was given.
UNKNOWN_RESULT_ID = "0123456789abcdef0123456789abcdef"  # the id events/api_v2_results.json asks for
UPLOAD_FLOW_EVENTS = {"api_v2_uploads.json": (201, None), "api_v2_results.json": (404, "result_not_found")}


@pytest.fixture(scope="session")
def image() -> Image:
    model = graphs.save(graphs.constant(8.0), CACHE / "model.onnx")  # logit 8: all foreground
    return cached_image(CACHE / "image", step_env={"MODEL_PATH": str(model)})


@pytest.fixture(scope="session")
def event_paths() -> list[Path]:
    found = events.event_files(EVENTS)
    assert found, "events/ has no events"
    return found


@pytest.fixture(scope="session")
def bench(image: Image, event_paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    resources = runner.local_buckets(event_paths, events.env_vars(ROOT / "local-env.json"))
    with LocalS3() as s3:
        runner.stage(s3, event_paths, (ROOT / "samples").glob("*.jpg"), [resources["OutputBucket"]])
        bench = Bench(
            image,
            s3,
            tmp_path_factory.mktemp("lambda"),
            template=configuration.load_template(ROOT / "template.yaml"),
            resources=resources,
        )
        yield bench
        bench.close()


@pytest.fixture(scope="session")
def functions(bench: Bench) -> dict[str, LambdaFunction]:
    return {function_id: bench.function(function_id) for function_id in (runner.API_FUNCTION, runner.JOBS_FUNCTION)}


def _fixture_function(bench: Bench, handler: str, *, timeout_s: float = 10) -> LambdaFunction:
    """A deliberately misbehaving handler (lambda_fixtures/misbehaving.py) in the same image and sandbox."""
    return bench.function(
        runner.API_FUNCTION,
        handler=f"misbehaving.{handler}",
        environment={"PYTHONPATH": "/var/runtime:/var/fixtures"},
        extra_binds={FIXTURES: "/var/fixtures"},
        timeout_s=timeout_s,
        name=f"fixture-{handler.replace('_', '-')}",
    )


def _api_image(response: dict[str, Any]) -> PILImage.Image:
    body = base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    headers.update({name.lower(): values[0] for name, values in (response.get("multiValueHeaders") or {}).items()})
    if headers["content-type"].startswith("application/json"):
        body = base64.b64decode(json.loads(body)["image"])
    return PILImage.open(io.BytesIO(body))


@pytest.mark.parametrize("name", [path.name for path in events.event_files(EVENTS)])
def test_every_event_goes_through_its_entry_point(
    name: str, bench: Bench, functions: dict[str, LambdaFunction]
) -> None:
    path = EVENTS / name
    event = events.load(path)
    run = runner.run_event(path, functions)
    result = run.result
    assert result.status == 200 and result.function_error is None, result.payload[:2000]
    document = result.document
    if name in UPLOAD_FLOW_EVENTS:
        # Their own statuses; test_the_upload_flow_through_both_entry_points runs the flow itself.
        status, code = UPLOAD_FLOW_EVENTS[name]
        assert document["statusCode"] == status, document.get("body")
        body = json.loads(document["body"])
        if code is None:
            assert body["upload"]["method"] == "POST"
        else:
            assert body["error"]["code"] == code
        return
    if run.function == runner.API_FUNCTION:
        assert document["statusCode"] == 200, document.get("body")
        if event.get("path") == "/v1.0/account":  # remove.bg's account call: its credits, no image
            assert json.loads(document["body"])["data"]["attributes"]["credits"]["total"] >= 0
            return
        picture = _api_image(document)
        assert picture.width > 0 and picture.height > 0
        return
    named = sorted(set(events.objects(event)))
    output_bucket = bench.resources["OutputBucket"]
    written = set(bench.s3.keys(output_bucket))
    for _bucket, key in named:
        stem = key.removeprefix("uploads/").rsplit(".", 1)[0]
        assert {f"cutouts/{stem}.png", f"masks/{stem}.png"} <= written, f"{key}: outputs missing from {sorted(written)}"
    if "batchItemFailures" in document:  # SQS: no message goes back to the queue
        assert document["batchItemFailures"] == []
    elif "results" in document:  # Batch Operations: every task succeeded
        assert [task["resultCode"] for task in document["results"]] == ["Succeeded"] * len(event["tasks"])
    elif event.get("Event") == "s3:TestEvent":
        assert document["ignored"] == 1 and document["objects"] == []
    else:
        assert document["failed"] == 0 and document["processed"] + document["skipped"] == len(named)


def test_each_function_starts_once_and_then_stays_warm(functions: dict[str, LambdaFunction]) -> None:
    api = functions[runner.API_FUNCTION]
    api.invoke((EVENTS / "api_v2_mask.json").read_bytes())  # cold if this test runs first
    starts = api.cold_starts
    again = api.invoke((EVENTS / "api_v2_mask.json").read_bytes())
    assert not again.cold_start and api.cold_starts == starts == 1


def test_no_writes_outside_tmp_and_no_connections_beyond_loopback(
    functions: dict[str, LambdaFunction], event_paths: list[Path]
) -> None:
    """Every event again (the functions are warm by now), then what their strace logs show:
    onnxruntime's telemetry (mkdir /home, a DNS lookup) fails this unless ORT_DISABLE_TELEMETRY=1."""
    for path in event_paths:
        runner.run_event(path, functions)
    for function in functions.values():
        report = function.syscall_report()
        assert report.started, f"{function.config.name}: strace never saw the interpreter start"
        if report.forbidden:
            pytest.fail(f"{function.config.name} broke Lambda's rules:\n{report.describe()}", pytrace=False)
        # The image ships its bytecode: a cold start that compiles the package is slower.
        assert not report.bytecode, [finding.target for finding in report.bytecode]


def test_sandbox_is_lambda_shaped(bench: Bench) -> None:
    with _fixture_function(bench, "describe", timeout_s=7) as function:
        result = function.invoke(b"{}")
    seen = result.document
    assert (seen["uid"], seen["gid"]) == (LAMBDA_UID, LAMBDA_GID)
    assert seen["home"] is None and seen["cwd"] == "/var/task"
    assert seen["tmp_writable"] and not seen["root_writable"]
    environ = seen["environ"]
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == function.config.name
    assert environ["LAMBDA_TASK_ROOT"] == "/var/task" and environ["_HANDLER"] == "misbehaving.describe"
    assert environ["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert environ["OUTPUT_BUCKET"] == bench.resources["OutputBucket"]  # template.yaml's Globals, !Ref resolved
    assert seen["request_id"] == result.request_id and seen["invoked_function_arn"] == function.config.arn
    assert 0 < seen["remaining_ms"] <= 7000
    assert seen["trace_id"].startswith("Root=1-")


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("write_task_root", "write outside /tmp: openat /var/task/state.json"),
        ("resolve_name", ":53"),
        ("connect_out", "connection: connect 192.0.2.1:9"),
    ],
)
def test_forbidden_writes_and_connections_are_caught(bench: Bench, handler: str, expected: str) -> None:
    """The checks themselves: each of these handlers swallows its failure, and is still caught."""
    with _fixture_function(bench, handler) as function:
        result = function.invoke(b"{}")
    assert result.function_error is None, result.payload
    report = function.syscall_report()
    assert report.forbidden and expected in report.describe(), report.describe()


def test_request_over_the_synchronous_limit_never_reaches_the_function(functions: dict[str, LambdaFunction]) -> None:
    api = functions[runner.API_FUNCTION]
    template = (EVENTS / "api_v2_remove.json").read_bytes()
    delivered = api.invocations_delivered

    def padded(size: int) -> bytes:
        event = json.loads(template)
        event["body"] = ""
        base = len(json.dumps(event).encode())
        event["body"] = "A" * (size - base)
        data = json.dumps(event).encode()
        assert len(data) == size
        return data

    refused = api.invoke(padded(REQUEST_LIMIT + 1))
    assert refused.status == 413 and refused.error_type == "RequestTooLargeException"
    assert api.invocations_delivered == delivered
    at_limit = api.invoke(padded(REQUEST_LIMIT))
    assert at_limit.status == 200 and api.invocations_delivered == delivered + 1


def _noise_event(accept: str | None) -> bytes:
    """A photo whose cutout cannot fit a Lambda response: noise does not compress."""
    pixels = np.random.default_rng(7).integers(0, 256, size=(1400, 1800, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "JPEG", quality=95)
    event = json.loads((EVENTS / "api_v2_remove.json").read_text())
    event["body"] = base64.b64encode(buffer.getvalue()).decode()
    event["rawQueryString"] = ""
    event["queryStringParameters"] = {}
    event["headers"] = {"content-type": "image/jpeg", **({"accept": accept} if accept else {})}
    return json.dumps(event).encode()


@pytest.mark.parametrize("accept", [None, "application/json"])
def test_a_large_cutout_comes_back_as_a_link_never_an_oversized_response(
    functions: dict[str, LambdaFunction], bench: Bench, accept: str | None
) -> None:
    result = functions[runner.API_FUNCTION].invoke(_noise_event(accept))
    assert result.function_error is None, result.payload[:1000]
    assert len(result.payload) <= RESPONSE_LIMIT
    response = result.document
    # A 303 for an image client; a JSON client gets the same document as a 200 (it would follow a 303)
    assert response["statusCode"] == (303 if accept is None else 200), response.get("body")
    link = json.loads(response["body"])["url"]
    assert link.startswith(bench.s3.endpoint)
    with urllib.request.urlopen(link) as stored:  # the local S3, on 127.0.0.1
        cutout = PILImage.open(io.BytesIO(stored.read()))
    assert cutout.size == (1800, 1400) and cutout.mode == "RGBA"


def test_the_upload_flow_through_both_entry_points(functions: dict[str, LambdaFunction], bench: Bench) -> None:
    """POST /uploads, the photo POSTed to its form on the local S3 (policy checked as S3 does), the
    jobs function on the upload's S3 event, then GET /results/{id}: each function under awslambdaric."""
    api, jobs = functions[runner.API_FUNCTION], functions[runner.JOBS_FUNCTION]
    created = api.invoke((EVENTS / "api_v2_uploads.json").read_bytes()).document
    assert created["statusCode"] == 201, created.get("body")
    ticket = json.loads(created["body"])
    assert ticket["upload"]["url"].startswith(bench.s3.endpoint)
    photo = (ROOT / "samples" / "chelsea.jpg").read_bytes()
    form = ticket["upload"]["fields"]
    uploaded = requests.post(ticket["upload"]["url"], data=form, files={"file": ("photo.jpg", photo)}, timeout=60)
    assert uploaded.ok, uploaded.text

    key = form["key"]
    processed = jobs.invoke(
        json.dumps(s3_put_event(bench.resources["InputBucket"], key, len(photo), "etag", 1)).encode()
    )
    assert processed.function_error is None and processed.document["processed"] == 1, processed.payload[:2000]

    event = json.loads((EVENTS / "api_v2_results.json").read_text().replace(UNKNOWN_RESULT_ID, ticket["id"]))
    event["headers"].pop("accept")
    done = api.invoke(json.dumps(event).encode()).document
    assert done["statusCode"] == 303, done.get("body")
    location = next(value for name, value in done["headers"].items() if name.lower() == "location")
    with urllib.request.urlopen(location) as stored:  # the local S3, on 127.0.0.1
        cutout = PILImage.open(io.BytesIO(stored.read()))
    assert cutout.format == "WEBP"  # the option POST /uploads was given, applied by the jobs function


def test_without_an_output_bucket_a_large_cutout_is_a_clean_413(bench: Bench) -> None:
    with bench.function(runner.API_FUNCTION, remove=("OUTPUT_BUCKET",), name="api-without-output-bucket") as function:
        result = function.invoke(_noise_event(None))
    assert result.function_error is None and len(result.payload) <= RESPONSE_LIMIT
    response = result.document
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["error"]["code"] == "output_too_large"


def test_an_oversized_response_becomes_lambdas_error_and_ends_the_runtime(bench: Bench) -> None:
    with _fixture_function(bench, "big_response") as function:
        result = function.invoke(json.dumps({"size": RESPONSE_LIMIT}).encode())  # + 2 quotes of JSON
        assert result.error_type == "Function.ResponseSizeTooLarge"
        assert (
            f"({RESPONSE_LIMIT + 2} bytes) exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)"
            in (result.document["errorMessage"])
        )
        # awslambdaric cannot post the response (413) and exits: the next invocation starts afresh.
        fits = function.invoke(json.dumps({"size": RESPONSE_LIMIT - 2}).encode())
    assert fits.function_error is None and fits.cold_start and len(fits.payload) == RESPONSE_LIMIT


def test_a_handler_past_its_timeout_is_ended_as_lambda_ends_it(bench: Bench) -> None:
    with _fixture_function(bench, "hang", timeout_s=1) as function:
        result = function.invoke(b"{}")
        assert result.error_type == "Sandbox.Timedout"
        assert (
            result.document["errorMessage"]
            == f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds"
        )
        assert function.cold_starts == 1
        function.invoke(b"{}")
        assert function.cold_starts == 2  # the timed-out environment was killed, not reused


def test_jobs_function_that_cannot_reach_s3_times_out(bench: Bench) -> None:
    """The real jobs function, with an S3 that accepts connections and never answers."""
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        endpoint = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        with bench.function(
            runner.JOBS_FUNCTION, environment={"AWS_ENDPOINT_URL_S3": endpoint}, timeout_s=2, name="jobs-black-hole"
        ) as function:
            result = function.invoke((EVENTS / "s3_put.json").read_bytes(), synchronous=False)
            assert result.error_type == "Sandbox.Timedout", result.payload
            assert "Task timed out after 2.00 seconds" in result.document["errorMessage"]
            after = function.invoke((EVENTS / "s3_test_event.json").read_bytes(), synchronous=False)
    assert after.cold_start and after.document["ignored"] == 1


def test_a_crashing_runtime_is_reported_as_lambda_reports_it(bench: Bench) -> None:
    with _fixture_function(bench, "exit_hard") as function:
        result = function.invoke(b"{}")
    assert result.error_type == "Runtime.ExitError"
    assert result.document["errorMessage"].endswith("Runtime exited with error: exit status 3")
