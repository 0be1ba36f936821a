"""The exact requests remove.bg's client libraries send, replayed against the local server.

`make removebg-clients` (dev-only: it needs npm) runs the published clients from npm (`remove.bg`,
`removebg-wrapper`) and PyPI (`removebg`, `remove-bg-api`, `rembgpy`), changed only in their
endpoint, against `python -m handler serve`, and records every request they send (headers and
body, byte for byte) into tests/functional/removebg_clients/. Here each recording is sent again
over HTTP to the local server, and the answer is checked for what that client's own code reads
from it (its source, quoted in CLIENT_NEEDS): so a change that would break one of them fails here,
without npm or the clients installed.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from handler.aws import image_url
from handler.local.server import LocalServer
from scripts.removebg_clients import IMAGE_HOST_PLACEHOLDER
from tests.helpers.image_host import ImageHost, serving

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

RECORDINGS = Path(__file__).resolve().parent / "removebg_clients"
# remove.bg's statuses (its API reference): a result, a refused request (400), no credits (402),
# authentication (403), a rate limit (429), and failures of its own.
REMOVEBG_STATUSES = {200, 400, 402, 403, 429, 500, 503}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format in ("PNG", "JPEG")
    return image


def _result_headers(answer: Answer, image: Image.Image) -> None:
    """remove.bg's headers on a result, which clients read: numbers, for the image they come with."""
    assert int(answer.headers["x-credits-charged"]) >= 0  # remove-bg-api: int(response.headers[...])
    assert (int(answer.headers["x-width"]), int(answer.headers["x-height"])) == image.size
    left, top = int(answer.headers["x-foreground-left"]), int(answer.headers["x-foreground-top"])
    width, height = int(answer.headers["x-foreground-width"]), int(answer.headers["x-foreground-height"])
    assert left >= 0 and left + width <= image.width and top >= 0 and top + height <= image.height


def _image_bytes(answer: Answer, call: str) -> None:
    # removebg, rembgpy, removebg-wrapper, remove-bg-api: the body, written to a file as it is.
    assert answer.status == 200, answer.body[:300]
    if call.endswith("zip"):
        assert answer.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(answer.body)) as archive:
            assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
            image = _image(archive.read("alpha.png"))
    else:
        image = _image(answer.body)
    _result_headers(answer, image)


def _remove_bg_npm(answer: Answer, call: str) -> None:
    # remove.bg (npm): Accept: application/json; on 200 `result.body.data.result_b64` and the headers
    # x-credits-charged, x-type, x-width, x-height; otherwise `reject(result.body.errors)`.
    if call.startswith("error"):
        assert answer.status == 400, answer.body[:300]
        (error,) = answer.json["errors"]
        assert error["title"] and error["code"] and error["detail"]
        return
    assert answer.status == 200, answer.body[:300]
    _result_headers(answer, _image(base64.b64decode(answer.json["data"]["result_b64"])))
    assert answer.headers["x-type"]  # it sends no type_level: remove.bg's default level, which has X-Type


def _status_400(answer: Answer) -> None:
    # removebg: raise_for_status(); remove-bg-api: ApiErrorCode400 for exactly 400 (402, 403, 429 theirs).
    assert answer.status == 400, answer.body[:300]
    (error,) = answer.json["errors"]
    assert error["title"] and error["code"]


def _account(answer: Answer) -> None:
    # remove-bg-api: Account() on construction, then data.attributes.credits.total (it subtracts
    # int(X-Credits-Charged) from it) and data.attributes.api.free_calls.
    assert answer.status == 200, answer.body[:300]
    attributes = answer.json["data"]["attributes"]
    assert isinstance(attributes["credits"]["total"], (int, float)) and attributes["credits"]["total"] >= 0
    assert isinstance(attributes["api"]["free_calls"], int)


def _check(client: str, call: str, method: str, answer: Answer) -> None:
    assert answer.status in REMOVEBG_STATUSES, answer.body[:300]
    if method == "GET":
        _account(answer)
    elif client == "remove.bg":
        _remove_bg_npm(answer, call)
    elif call.startswith("error"):
        _status_400(answer)
    else:
        _image_bytes(answer, call)


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    with serving(ImageHost) as host:  # the recorded photo (PHOTO) at /cat.jpg
        yield host


@pytest.fixture(scope="module")
def clients_server(u2netp_path: Path, image_host: str) -> Iterator[LocalServer]:
    """The local run, with the image host allow-listed for image_url (loopback allowed, as recorded)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_url, "address_allowed", lambda address: address.is_loopback)
        env = {"MODEL_PATH": str(u2netp_path), "MODEL_OUTPUT": "probabilities", "IMAGE_URL_HOSTS": image_host}
        with LocalServer(port=0, env=env) as local:
            yield local


def _replay(server: LocalServer, request: dict[str, Any], image_host: str) -> Answer:
    recorded = base64.b64decode(request["body_base64"])
    body = recorded.replace(IMAGE_HOST_PLACEHOLDER.encode(), image_host.encode())
    connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
    try:
        connection.putrequest(request["method"], request["target"], skip_accept_encoding=True)
        for name, value in request["headers"]:
            if name.lower() == "content-length":
                # The recorded length, unless the image host's address changed the body's.
                value = str(len(body)) if body != recorded else value
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return Answer(response.status, {name.lower(): value for name, value in response.getheaders()}, response.read())
    finally:
        connection.close()


RECORDED = sorted(RECORDINGS.glob("*.json"))


def test_the_recordings_cover_two_clients_from_each_registry_and_every_kind_of_call() -> None:
    recordings = [json.loads(path.read_text()) for path in RECORDED]
    clients = {recording["client"] for recording in recordings}
    assert {"remove.bg", "removebg-wrapper"} <= clients  # npm
    assert {"removebg", "remove-bg-api", "rembgpy"} <= clients  # PyPI
    calls = {recording["call"].split("_")[0] for recording in recordings}
    assert {"file", "base64", "url", "account", "error"} <= calls
    assert any(recording["call"].endswith("zip") for recording in recordings)
    assert any(recording["call"].endswith("alpha") for recording in recordings)
    for recording in recordings:
        for request in recording["requests"]:
            # Recorded from a working client: each ended as its documentation says (the driver checks)
            assert request["status"] in REMOVEBG_STATUSES


@pytest.mark.parametrize("recording", RECORDED, ids=lambda path: path.stem)
def test_a_recorded_client_request_gets_what_the_client_reads(
    clients_server: LocalServer, image_host: str, recording: Path
) -> None:
    fixture = json.loads(recording.read_text())

    for request in fixture["requests"]:
        answer = _replay(clients_server, request, image_host)

        _check(fixture["client"], fixture["call"], request["method"], answer)


@pytest.mark.parametrize("recording", ["remove.bg--file", "remove.bg--base64"])
def test_a_json_client_whose_result_does_not_fit_gets_remove_bgs_error_never_bytes(
    clients_server: LocalServer, image_host: str, monkeypatch: pytest.MonkeyPatch, recording: str
) -> None:
    # GIVEN the npm client's own request (Accept: application/json, it reads data.result_b64), and a
    # response limit its result does not fit (the real one needs a ~5 MB result)
    import handler.api

    (request,) = json.loads((RECORDINGS / f"{recording}.json").read_text())["requests"]
    monkeypatch.setattr(handler.api, "LAMBDA_RESPONSE_LIMIT", handler.api.ENVELOPE_RESERVE + 100)

    answer = _replay(clients_server, request, image_host)

    # THEN JSON it can read: remove.bg's error, which the client rejects with (`result.body.errors`),
    # naming the way round; no image bytes, no redirect to them
    assert answer.status == 400
    (error,) = answer.json["errors"]
    assert error["code"] == "result_too_large" and "size=" in error["detail"] and "/uploads" in error["detail"]
