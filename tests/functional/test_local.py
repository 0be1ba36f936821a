"""The local run (`python -m handler serve`): HTTP in, API Gateway v2 events to the real API entry
point, uploads to the embedded S3 fed to the real jobs entry point.

The server runs in this process on a free port with the real U-2-Net-p model; its embedded S3 is
reached with boto3 over HTTP, as a user would with `aws --endpoint-url`.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import cast
from urllib.parse import unquote_plus

import pytest
from PIL import Image

from handler.local.api_gateway import api_gateway_event, http_response
from handler.local.server import LocalServer
from handler.local.upload_trigger import s3_put_event
from tests.helpers.http import post

ROOT = Path(__file__).resolve().parents[2]
# Bounds, not expectations: U-2-Net-p answers in well under a second on this machine.
JOB_TIMEOUT_SECONDS = 120
START_TIMEOUT_SECONDS = 120


def _size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


# -- the HTTP API ---------------------------------------------------------------------------------


def test_remove_answers_with_an_rgba_cutout_of_the_photos_size(server: LocalServer, samples: dict[str, Path]) -> None:
    # GIVEN a photo sent the way the curl example sends it
    photo = samples["chelsea"]

    # WHEN it is posted to /remove
    status, headers, body = post(f"{server.url}/remove", photo.read_bytes())

    # THEN the cutout comes back as a PNG with transparency, at the photo's own size
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(body)) as cutout:
        assert cutout.format == "PNG"
        assert cutout.mode == "RGBA"
        assert cutout.size == _size_of(photo)
        low, high = cast(tuple[int, int], cutout.getchannel("A").getextrema())
    assert low < 64 and high > 192, "a cat photo has both background and subject"
    assert (headers["X-Width"], headers["X-Height"]) == tuple(str(n) for n in _size_of(photo))


def test_mask_answers_with_a_greyscale_png(server: LocalServer, samples: dict[str, Path]) -> None:
    status, headers, body = post(f"{server.url}/mask", samples["astronaut"].read_bytes())

    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(body)) as mask:
        assert mask.mode == "L"
        assert mask.size == _size_of(samples["astronaut"])


def test_query_options_reach_the_function(server: LocalServer, samples: dict[str, Path]) -> None:
    # The query string travels in the event (rawQueryString, queryStringParameters).
    status, headers, body = post(f"{server.url}/remove?format=webp", samples["coffee"].read_bytes())

    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(body)) as cutout:
        assert cutout.format == "WEBP"


def test_a_body_that_is_not_an_image_is_a_400_with_a_json_error(server: LocalServer) -> None:
    status, headers, body = post(f"{server.url}/remove", b"these bytes are not a picture")

    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "invalid_image"


def test_a_route_the_api_does_not_have_is_a_404(server: LocalServer) -> None:
    status, _headers, body = post(f"{server.url}/resize", b"x")

    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"


@pytest.mark.parametrize("length", ["abc", "-1", "²", "1 2", "0x10"])
def test_malformed_framing_is_a_400_json_error_not_a_dropped_connection(server: LocalServer, length: str) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.putrequest("POST", "/remove")
        connection.putheader("Content-Type", "image/jpeg")
        connection.putheader("Content-Length", length.encode())
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 400, body[:300]
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Connection") == "close"
    assert json.loads(body)["error"]["code"] == "invalid_request"


def test_the_web_page_is_served_and_self_contained(server: LocalServer) -> None:
    with urllib.request.urlopen(f"{server.url}/", timeout=10) as response:
        content_type = response.headers["Content-Type"]
        html = response.read().decode("utf-8")

    assert content_type.startswith("text/html")
    assert 'id="file"' in html and 'id="cutout"' in html and 'id="mask"' in html
    # One request for both images (POST /remove?outputs=cutout,mask), large photos through /uploads
    assert "/remove" in html and "outputs" in html and "/uploads" in html
    # The network is closed: nothing may be loaded from elsewhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.IGNORECASE)
    assert "@import" not in html


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("GET", "/", {}, b"", 200),
        ("GET", "/favicon.ico", {}, b"", 204),
        ("POST", "/remove", {"Content-Type": "image/jpeg"}, None, 200),
        ("POST", "/mask", {"Content-Type": "image/jpeg"}, b"not a picture", 400),
        ("POST", "/resize", {}, b"x", 404),
        ("HEAD", "/", {}, b"", 405),
        ("HEAD", "/remove", {}, b"", 405),
        ("HEAD", "/v1.0/account", {}, b"", 405),
        ("POST", "/remove", {"Content-Length": str(11 * 1024 * 1024)}, b"", 413),
        ("POST", "/remove", {"Transfer-Encoding": "chunked"}, b"", 411),
    ],
    ids=["page", "favicon", "200-image", "400", "404", "405-get-route", "405-post-route", "405-account", "413", "411"],
)
def test_every_local_answer_is_nosniff_and_never_cached(
    server: LocalServer,
    samples: dict[str, Path],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
) -> None:
    # The function's own answers carry these headers; so do the ones the local server makes itself.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        payload = samples["chelsea"].read_bytes() if body is None else body
        if "Content-Length" in headers or "Transfer-Encoding" in headers:
            connection.putrequest(method, path)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
        else:
            connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()

    assert response.status == status
    if status >= 400 and method != "HEAD":  # a HEAD answer has no body
        # One error format, whoever answers: the function or the server itself (404, 413, 411)
        document = json.loads(answer)
        assert set(document) == {"error"} and set(document["error"]) == {"code", "message"}
        assert document["error"]["message"]
    if status == 405:
        # The method the route does take: GET for the page and the account, POST for /remove
        assert response.getheader("Allow") == ("GET" if path in ("/", "/v1.0/account") else "POST")
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Cache-Control") == "no-store"
    assert len(response.headers.get_all("Cache-Control") or []) == 1


# -- the upload trigger ---------------------------------------------------------------------------


def _output_keys(server: LocalServer, attempts: int = 5) -> list[str]:
    """The output bucket's keys. The poller's signal comes after the jobs function returned, so the
    first listing should have them; a few bounded re-listings only absorb a listing lag."""
    s3 = server.s3_client()
    pause = threading.Event()
    keys: list[str] = []
    for _ in range(attempts):
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket=server.output_bucket).get("Contents", [])]
        if keys:
            break
        pause.wait(0.2)
    return keys


def test_an_upload_to_the_input_bucket_gets_its_cutout_and_mask(server: LocalServer, samples: dict[str, Path]) -> None:
    assert server.poller is not None
    s3 = server.s3_client()
    # GIVEN a key that S3 URL-encodes in its event (spaces become '+')
    key = "holiday photos/chelsea the cat.jpg"

    # WHEN the photo is uploaded to the local input bucket
    etag = s3.put_object(Bucket=server.input_bucket, Key=key, Body=samples["chelsea"].read_bytes())["ETag"].strip('"')

    # THEN the poller hands it to the jobs function, which succeeds
    outcome = server.poller.wait_for(key, timeout=JOB_TIMEOUT_SECONDS, etag=etag)
    assert outcome is not None, f"the poller did not process {key!r} within {JOB_TIMEOUT_SECONDS} s"
    assert outcome.error is None, outcome.error

    assert outcome.response["processed"] == 1, outcome.response
    outputs = outcome.response["objects"][0]["outputs"]

    # AND its cutout and mask are in the output bucket, at the photo's size
    keys = _output_keys(server)
    assert set(outputs) <= set(keys), keys
    modes = {}
    for output in outputs:
        with Image.open(io.BytesIO(s3.get_object(Bucket=server.output_bucket, Key=output)["Body"].read())) as image:
            assert image.size == _size_of(samples["chelsea"]), output
            modes[image.mode] = output
    assert set(modes) == {"RGBA", "L"}, modes
    assert "cutout" in modes["RGBA"] and "mask" in modes["L"] and "chelsea the cat" in modes["RGBA"]


def test_an_overwritten_upload_is_processed_again(server: LocalServer, samples: dict[str, Path]) -> None:
    # The poller tells objects apart by key and ETag, as S3 sends one event per PUT.
    assert server.poller is not None
    s3 = server.s3_client()
    key = "overwritten.jpg"
    first = s3.put_object(Bucket=server.input_bucket, Key=key, Body=samples["coffee"].read_bytes())["ETag"].strip('"')
    assert server.poller.wait_for(key, timeout=JOB_TIMEOUT_SECONDS, etag=first) is not None

    second = s3.put_object(Bucket=server.input_bucket, Key=key, Body=samples["astronaut"].read_bytes())["ETag"].strip(
        '"'
    )
    outcome = server.poller.wait_for(key, timeout=JOB_TIMEOUT_SECONDS, etag=second)

    assert first != second
    assert outcome is not None and outcome.etag == second and outcome.error is None
    assert outcome.response["processed"] == 1, outcome.response


# -- the events it builds (no server) ------------------------------------------------------------


def test_the_api_event_has_the_http_api_v2_shape() -> None:
    event = api_gateway_event(
        "POST",
        "/mask?format=webp&max_size=512&format=png",
        [("Content-Type", "image/png"), ("X-Trace", "a"), ("x-trace", "b"), ("Cookie", "a=1; b=2")],
        b"\x89PNG raw bytes",
    )

    assert event["version"] == "2.0"
    assert event["rawPath"] == "/mask" and event["rawQueryString"] == "format=webp&max_size=512&format=png"
    assert event["queryStringParameters"] == {"format": "webp,png", "max_size": "512"}
    assert event["headers"] == {"content-type": "image/png", "x-trace": "a,b"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x89PNG raw bytes"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["path"] == "/mask"
    assert (
        event["requestContext"]["requestId"]
        != api_gateway_event("POST", "/mask", [], b"")["requestContext"]["requestId"]
    )


def test_a_lambda_response_becomes_the_http_answer() -> None:
    response = http_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "image/png"},
            "cookies": ["session=1; Path=/"],
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
        }
    )

    assert response.status == 201
    assert response.body == b"\x89PNG"
    assert ("Set-Cookie", "session=1; Path=/") in response.headers
    assert http_response({"statusCode": 400, "body": '{"a":1}'}).body == b'{"a":1}'


def test_the_upload_event_url_encodes_the_key_as_s3_does() -> None:
    event = s3_put_event("uploads", "a folder/my photo+1.jpg", 10, "abc", 1)

    record = event["Records"][0]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["object"]["key"] == "a+folder/my+photo%2B1.jpg"
    assert unquote_plus(record["s3"]["object"]["key"]) == "a folder/my photo+1.jpg"
    assert record["s3"]["bucket"]["name"] == "uploads"


# -- the command ----------------------------------------------------------------------------------


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MODEL_"))}
    env.update(extra)
    return env


def test_importing_the_module_starts_nothing() -> None:
    code = (
        "import sys, threading, handler.local.server\n"
        "assert 'handler.api' not in sys.modules and 'moto' not in sys.modules, sorted(sys.modules)\n"
        "assert threading.active_count() == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60, env=_subprocess_env())


def test_serve_prints_where_things_are_and_stops_cleanly_on_ctrl_c(u2netp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "handler", "serve", "--port", "0"],
        cwd=ROOT,
        env=_subprocess_env(MODEL_PATH=str(u2netp_path), MODEL_OUTPUT="probabilities", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    output: list[str] = []
    try:
        # GIVEN the command has printed its whole banner (up to its last line)
        url = None
        while not output or not output[-1].startswith("Ctrl-C stops it"):
            line = lines.get(timeout=START_TIMEOUT_SECONDS)
            assert line is not None, "serve exited early:\n" + "".join(output)
            output.append(line)
            match = re.search(r"web page:\s+(http://127\.0\.0\.1:\d+)/", line)
            url = match.group(1) if match else url
        assert url is not None, "".join(output)
        # THEN the page answers
        with urllib.request.urlopen(f"{url}/", timeout=10) as response:
            assert response.status == 200
        # WHEN Ctrl-C arrives
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    text = "".join(output)
    # AND the banner said how to try it, and it stopped without a traceback
    assert "curl --data-binary @samples/chelsea.jpg -H 'Content-Type: image/jpeg'" in text
    assert "s3 cp samples/chelsea.jpg s3://local-uploads/" in text
    assert text.rstrip().endswith("stopped."), text[-2000:]
    assert "Traceback" not in text, text


def test_serve_with_a_missing_model_fails_with_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"

    result = subprocess.run(
        [sys.executable, "-m", "handler", "serve", "--port", "0"],
        cwd=ROOT,
        env=_subprocess_env(MODEL_PATH=str(missing)),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
    )

    assert result.returncode == 1
    assert f"error: the local run did not start: MODEL_PATH {missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
