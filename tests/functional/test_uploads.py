"""The upload flow end to end, over HTTP as a client runs it: POST /uploads on the local server,
the photo POSTed to the presigned form on the embedded S3 (which checks the policy as S3 does),
the jobs function triggered by the upload, then GET /results/{id}.

The server is the local run (`python -m handler serve`) with the real U-2-Net-p and a small
MAX_INPUT_BYTES, so that "too large" is a few hundred kilobytes. "Processed" is the upload
poller's own signal (wait_for), never a sleep.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from PIL import Image

from handler.local.server import LocalServer
from tests.forms import multipart_body

# Bounds, not expectations: U-2-Net-p answers in well under a second here.
JOB_TIMEOUT_SECONDS = 120
HTTP_TIMEOUT_SECONDS = 60
# Above every sample photo (the largest is ~70 KB), far below the default 100 MB.
MAX_INPUT_BYTES = 100_000


@pytest.fixture(scope="module")
def local(u2netp_path: Path) -> Iterator[LocalServer]:
    env = {"MODEL_PATH": str(u2netp_path), "MODEL_OUTPUT": "probabilities", "MAX_INPUT_BYTES": str(MAX_INPUT_BYTES)}
    with LocalServer(port=0, env=env) as server:
        yield server


def _create(local: LocalServer, **body: Any) -> requests.Response:
    return requests.post(f"{local.url}/uploads", json=body, timeout=HTTP_TIMEOUT_SECONDS)


def _upload(ticket: dict[str, Any], data: bytes, *, fields: dict[str, str] | None = None) -> requests.Response:
    """What a client does with the ticket: a multipart form, its fields first, then the file."""
    form = fields if fields is not None else ticket["upload"]["fields"]
    return requests.request(
        ticket["upload"]["method"],
        ticket["upload"]["url"],
        data=form,
        files={"file": ("photo", data, form.get("Content-Type", "application/octet-stream"))},
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def _result(local: LocalServer, ticket: dict[str, Any], query: str = "", **headers: str) -> requests.Response:
    return requests.get(
        f"{local.url}{ticket['result']}{query}", headers=headers, allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS
    )


def _processed(local: LocalServer, ticket: dict[str, Any]) -> None:
    assert local.poller is not None
    outcome = local.poller.wait_for(ticket["upload"]["fields"]["key"], JOB_TIMEOUT_SECONDS)
    assert outcome is not None and outcome.error is None, outcome


def _picture(url: str) -> Image.Image:
    response = requests.get(url, timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text[:300]
    picture = Image.open(io.BytesIO(response.content))
    picture.load()
    return picture


def _stored(local: LocalServer, key: str) -> bool:
    return any(
        item["Key"] == key
        for item in local.s3_client().list_objects_v2(Bucket=local.input_bucket, Prefix=key).get("Contents", [])
    )


# -- the whole flow ----------------------------------------------------------------------------


def test_an_upload_is_pending_then_redirects_to_its_cutout(local: LocalServer, samples: dict[str, Path]) -> None:
    photo = samples["chelsea"].read_bytes()

    # GIVEN a ticket for a JPEG
    created = _create(local, content_type="image/jpeg")
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert ticket["result"] == f"/results/{ticket['id']}" and ticket["max_bytes"] == MAX_INPUT_BYTES
    # THEN until the photo arrives the result is pending
    pending = _result(local, ticket)
    assert pending.status_code == 202 and pending.json()["status"] == "pending", pending.text

    # WHEN the photo is posted to the presigned form, and the upload has been processed
    uploaded = _upload(ticket, photo)
    assert uploaded.status_code in (200, 201, 204), uploaded.text
    _processed(local, ticket)

    # THEN the result redirects to the cutout: an RGBA PNG of the photo's size
    done = _result(local, ticket)
    assert done.status_code == 303, done.text
    assert done.json()["status"] == "done"
    cutout = _picture(done.headers["Location"])
    assert (cutout.format, cutout.mode, cutout.size) == ("PNG", "RGBA", Image.open(io.BytesIO(photo)).size)
    # AND a browser's fetch (which cannot read a cross-origin 303) gets the same document as 200
    as_json = _result(local, ticket, Accept="application/json")
    assert as_json.status_code == 200 and set(as_json.json()["outputs"]) == {"cutout", "mask"}
    # AND ?output=mask redirects to the mask
    mask = _picture(_result(local, ticket, "?output=mask").headers["Location"])
    assert (mask.mode, mask.size) == ("L", cutout.size)


def test_the_options_given_to_post_uploads_are_applied(local: LocalServer, samples: dict[str, Path]) -> None:
    ticket = _create(local, content_type="image/jpeg", format="jpeg", bg_color="#00ff00", max_size="200").json()
    assert _upload(ticket, samples["astronaut"].read_bytes()).ok
    _processed(local, ticket)

    document = _result(local, ticket, Accept="application/json").json()
    cutout = _picture(document["outputs"]["cutout"]["url"])
    mask = _picture(document["outputs"]["mask"]["url"])
    assert (cutout.format, cutout.mode, max(cutout.size)) == ("JPEG", "RGB", 200)
    # Where the mask says background, the cutout is the background colour asked for.
    background = mask.convert("L").resize(cutout.size).point(lambda value: 255 if value < 8 else 0)
    assert background.getbbox() is not None, "the astronaut photo has background"
    pixels = [cast(tuple[int, int, int], cutout.getpixel(xy)) for xy in _points(background)]
    assert all(r < 60 and g > 200 and b < 60 for r, g, b in pixels), pixels[:5]
    red, _, blue = (cast(tuple[int, int], channel.getextrema()) for channel in cutout.split())
    assert red[1] > 60 and blue[1] > 60, "the subject keeps its own colours"


def _points(region: Image.Image) -> list[tuple[int, int]]:
    """Up to 50 points well inside `region` (255) for sampling."""
    inner = region.resize((region.width // 4, region.height // 4)).point(lambda value: 255 if value == 255 else 0)
    points = [(x * 4 + 2, y * 4 + 2) for y in range(inner.height) for x in range(inner.width) if inner.getpixel((x, y))]
    return points[:: max(1, len(points) // 50)]


def test_webp_is_asked_for_and_given(local: LocalServer, samples: dict[str, Path]) -> None:
    ticket = _create(local, content_type="image/jpeg", format="webp").json()
    assert _upload(ticket, samples["coffee"].read_bytes()).ok
    _processed(local, ticket)

    done = _result(local, ticket)
    assert done.status_code == 303
    cutout = _picture(done.headers["Location"])
    assert (cutout.format, cutout.mode) == ("WEBP", "RGBA")


# -- what S3 refuses ----------------------------------------------------------------------------


def test_a_file_over_max_input_bytes_is_refused_by_the_policy(local: LocalServer) -> None:
    ticket = _create(local, content_type="image/jpeg").json()
    key = ticket["upload"]["fields"]["key"]

    refused = _upload(ticket, b"\xff" * (MAX_INPUT_BYTES + 1))

    assert refused.status_code == 400 and "EntityTooLarge" in refused.text, refused.text
    assert not _stored(local, key)
    assert _result(local, ticket).status_code == 202


def test_a_content_type_other_than_the_one_signed_is_refused(local: LocalServer, samples: dict[str, Path]) -> None:
    ticket = _create(local, content_type="image/jpeg").json()
    fields = {**ticket["upload"]["fields"], "Content-Type": "text/html"}

    refused = _upload(ticket, samples["chelsea"].read_bytes(), fields=fields)

    assert refused.status_code == 403 and "AccessDenied" in refused.text, refused.text
    assert not _stored(local, ticket["upload"]["fields"]["key"])


def test_options_other_than_the_ones_signed_are_refused(local: LocalServer, samples: dict[str, Path]) -> None:
    ticket = _create(local, content_type="image/jpeg", format="webp").json()
    fields = {**ticket["upload"]["fields"], "x-amz-meta-options": json.dumps({"format": "png"})}

    refused = _upload(ticket, samples["chelsea"].read_bytes(), fields=fields)

    assert refused.status_code == 403, refused.text
    assert not _stored(local, ticket["upload"]["fields"]["key"])


def test_the_buckets_answer_a_browsers_preflight_upload_and_fetch(local: LocalServer, samples: dict[str, Path]) -> None:
    ticket = _create(local, content_type="image/jpeg").json()
    origin = local.url

    preflight = requests.options(
        ticket["upload"]["url"],
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    form = ticket["upload"]["fields"]
    uploaded = requests.post(
        ticket["upload"]["url"],
        data=form,
        files={"file": ("photo.jpg", samples["chelsea"].read_bytes(), "image/jpeg")},
        headers={"Origin": origin},
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Origin"] in (origin, "*")
    assert uploaded.ok and uploaded.headers["Access-Control-Allow-Origin"] in (origin, "*")
    _processed(local, ticket)
    # AND the page may read the cutout through the link GET /results/{id} gives it
    link = _result(local, ticket, Accept="application/json").json()["outputs"]["cutout"]["url"]
    fetched = requests.get(link, headers={"Origin": origin}, timeout=HTTP_TIMEOUT_SECONDS)
    assert fetched.ok and fetched.headers["Access-Control-Allow-Origin"] in (origin, "*")


def _raw_form(ticket: dict[str, Any], body: bytes, content_type: str) -> requests.Response:
    return requests.post(
        ticket["upload"]["url"], data=body, headers={"Content-Type": content_type}, timeout=HTTP_TIMEOUT_SECONDS
    )


BOUNDARY = "----form-boundary-5dH2kQ"


def test_fields_after_the_file_are_ignored_as_s3_ignores_them(local: LocalServer, samples: dict[str, Path]) -> None:
    photo = samples["chelsea"].read_bytes()
    # GIVEN a form whose policy and signature come after the file: S3 never sees them
    late = _create(local, content_type="image/jpeg").json()
    body = multipart_body({"file": photo, **late["upload"]["fields"]}, BOUNDARY)
    refused = _raw_form(late, body, f"multipart/form-data; boundary={BOUNDARY}")
    # AND a form as signed, followed by a field no condition names and other options
    extra = _create(local, content_type="image/jpeg", format="webp").json()
    trailing = {"x-amz-meta-options": json.dumps({"format": "png"}), "x-amz-meta-extra": "1"}
    body = multipart_body({**extra["upload"]["fields"], "file": photo}, BOUNDARY)
    body = body.removesuffix(f"--{BOUNDARY}--\r\n".encode()) + multipart_body(trailing, BOUNDARY)
    stored = _raw_form(extra, body, f"multipart/form-data; boundary={BOUNDARY}")

    # THEN the first is refused (no policy), the second stored with what was signed and nothing after the file
    assert refused.status_code == 403 and "AccessDenied" in refused.text, refused.text
    assert not _stored(local, late["upload"]["fields"]["key"])
    assert stored.status_code in (200, 201, 204), stored.text
    head = local.s3_client().head_object(Bucket=local.input_bucket, Key=extra["upload"]["fields"]["key"])
    assert head["Metadata"] == {"options": extra["upload"]["fields"]["x-amz-meta-options"]}


def test_the_form_content_type_is_matched_in_any_case(local: LocalServer, samples: dict[str, Path]) -> None:
    # GIVEN a form changed to another Content-Type than the one signed, sent as Multipart/Form-Data
    ticket = _create(local, content_type="image/jpeg").json()
    fields = {**ticket["upload"]["fields"], "Content-Type": "text/html"}
    body = multipart_body({**fields, "file": samples["chelsea"].read_bytes()}, BOUNDARY)

    refused = _raw_form(ticket, body, f"Multipart/Form-Data; boundary={BOUNDARY}")

    # THEN the policy is checked all the same
    assert refused.status_code == 403 and "AccessDenied" in refused.text, refused.text
    assert not _stored(local, ticket["upload"]["fields"]["key"])


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "application/json", None])
def test_a_bucket_post_that_is_not_a_multipart_form_is_refused(local: LocalServer, content_type: str | None) -> None:
    ticket = _create(local, content_type="image/jpeg").json()
    fields = {**ticket["upload"]["fields"], "file": "not a photo"}
    body = "&".join(f"{requests.utils.quote(name)}={requests.utils.quote(value)}" for name, value in fields.items())
    headers = {} if content_type is None else {"Content-Type": content_type}

    refused = requests.post(ticket["upload"]["url"], data=body.encode(), headers=headers, timeout=HTTP_TIMEOUT_SECONDS)

    # THEN S3's answer to a bucket POST that is not multipart/form-data, and nothing stored
    assert refused.status_code == 412 and "PreconditionFailed" in refused.text, refused.text
    assert not _stored(local, ticket["upload"]["fields"]["key"])


def test_a_form_used_again_leaves_the_result_as_it_was(local: LocalServer, samples: dict[str, Path]) -> None:
    # GIVEN a result done from a photo uploaded with its form
    ticket = _create(local, content_type="image/jpeg").json()
    assert _upload(ticket, samples["astronaut"].read_bytes()).ok
    _processed(local, ticket)
    before = _result(local, ticket, Accept="application/json").json()
    cutout = requests.get(before["outputs"]["cutout"]["url"], timeout=HTTP_TIMEOUT_SECONDS).content

    # WHEN the form is used again for another photo (S3 takes it: a form works until it expires)
    second = samples["chelsea"].read_bytes()
    assert _upload(ticket, second).ok
    assert local.poller is not None
    outcome = local.poller.wait_for(
        ticket["upload"]["fields"]["key"], JOB_TIMEOUT_SECONDS, etag=hashlib.md5(second).hexdigest()
    )

    # THEN the second photo is not processed, and the result is still the first photo's
    assert outcome is not None and outcome.error is None, outcome
    (handled,) = outcome.response["objects"]
    assert (handled["status"], handled["code"]) == ("skipped", "already_uploaded")
    after = _result(local, ticket, Accept="application/json").json()
    assert after["status"] == "done"
    assert requests.get(after["outputs"]["cutout"]["url"], timeout=HTTP_TIMEOUT_SECONDS).content == cutout


# -- what the API refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"content_type": "image/jpeg", "format": "gif"}, 400, "invalid_parameter"),
        ({"content_type": "image/jpeg", "format": "jpeg"}, 400, "invalid_parameter"),  # JPEG needs bg_color
        ({"content_type": "image/jpeg", "colour": "red"}, 400, "invalid_parameter"),
        ({"format": "png"}, 400, "invalid_parameter"),
        ({"content_type": "text/html"}, 415, "unsupported_media_type"),
        ({"content_type": "image/jpeg", "image": "aGVsbG8="}, 400, "invalid_parameter"),
        # An upload's result holds both outputs: accepting this would promise something it ignores.
        ({"content_type": "image/jpeg", "outputs": "cutout,mask"}, 400, "invalid_parameter"),
    ],
)
def test_post_uploads_refuses_what_post_remove_refuses(
    local: LocalServer, body: dict[str, Any], status: int, code: str
) -> None:
    refused = _create(local, **body)

    assert refused.status_code == status, refused.text
    assert refused.json()["error"]["code"] == code


def test_options_may_come_in_the_query_string(local: LocalServer) -> None:
    refused = requests.post(f"{local.url}/uploads?content_type=image/png&max_size=0", timeout=HTTP_TIMEOUT_SECONDS)
    created = requests.post(f"{local.url}/uploads?content_type=image/png&max_size=64", timeout=HTTP_TIMEOUT_SECONDS)

    assert refused.status_code == 400 and "max_size" in refused.json()["error"]["message"]
    assert created.status_code == 201
    assert json.loads(created.json()["upload"]["fields"]["x-amz-meta-options"]) == {"max_size": "64"}


# -- failures the jobs function records -----------------------------------------------------------


def test_a_corrupt_image_is_a_400_invalid_image(local: LocalServer) -> None:
    ticket = _create(local, content_type="image/png").json()
    assert _upload(ticket, b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20).ok
    _processed(local, ticket)

    failed = _result(local, ticket)

    assert failed.status_code == 400, failed.text
    assert failed.json()["error"]["code"] == "invalid_image"


def test_options_that_fail_revalidation_are_a_recorded_400(local: LocalServer, samples: dict[str, Path]) -> None:
    # Someone with write access to the bucket puts an upload with options no policy would sign.
    ticket = _create(local, content_type="image/jpeg").json()
    key = ticket["upload"]["fields"]["key"]
    local.s3_client().put_object(
        Bucket=local.input_bucket,
        Key=key,
        Body=samples["chelsea"].read_bytes(),
        Metadata={"options": '{"format":"gif"}'},
    )
    _processed(local, ticket)

    failed = _result(local, ticket)

    assert failed.status_code == 400, failed.text
    assert failed.json()["error"]["code"] == "invalid_parameter"
    assert "format" in failed.json()["error"]["message"]


# -- ids ----------------------------------------------------------------------------------------


def test_an_unknown_id_is_404_result_not_found(local: LocalServer) -> None:
    missing = requests.get(f"{local.url}/results/{'0' * 32}", allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "result_not_found"


@pytest.mark.parametrize(
    "result_id",
    ["ABCDEF0123456789ABCDEF0123456789", "0" * 31, "0" * 33, "..%2F..%2Fcutouts%2Fx", "%2e%2e", "0" * 32 + ".json"],
)
def test_a_malformed_id_is_refused_before_any_key_is_built(local: LocalServer, result_id: str) -> None:
    # GIVEN a record where the malformed id would find one if it were used as a key
    client = local.s3_client()
    client.put_object(Bucket=local.output_bucket, Key=f"results/{result_id}.json", Body=b'{"status":"pending"}')

    answer = requests.get(f"{local.url}/results/{result_id}", allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)

    assert answer.status_code in (400, 404), answer.text
    assert answer.json()["error"]["code"] in ("invalid_parameter", "not_found")


def test_other_methods_are_405(local: LocalServer) -> None:
    get_uploads = requests.get(f"{local.url}/uploads", timeout=HTTP_TIMEOUT_SECONDS)
    post_result = requests.post(f"{local.url}/results/{'0' * 32}", timeout=HTTP_TIMEOUT_SECONDS)

    assert get_uploads.status_code == 405 and get_uploads.headers["Allow"] == "POST"
    assert post_result.status_code == 405 and post_result.headers["Allow"] == "GET"
