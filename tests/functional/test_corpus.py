"""The bad-input corpus (tests/corpus.py) through both entry points, and the format chosen by bytes.

Every case must end in a defined outcome: through the API a 2xx or a 4xx JSON error with a known
code; through the jobs function a processed object or a counted, permanent failure (a
`PermanentFailure` in S3 Batch Operations). Never a 5xx, an exception, or an allocation beyond a
fixed address-space limit. The model is a one-layer test graph at 64x64, so hundreds of cases run
in seconds; the decoding is the real thing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import EpsImagePlugin

from tests import graphs
from tests.corpus import KNOWN_CODES, OK, Case, cases, made_images
from tests.graphs import GraphFile
from tests.helpers.api import Service, http_event
from tests.helpers.jobs import batch_operations, emf, error_codes, keys_in, s3_puts

pytestmark = pytest.mark.filterwarnings("ignore")  # Pillow warns about each corrupt EXIF block

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
CORPUS = cases()
STATUSES = {OK: 200, "invalid_image": 400, "missing_image": 400, "unsupported_media_type": 415} | dict.fromkeys(
    ("image_too_large", "too_many_pixels", "too_many_frames", "too_complex"), 413
)
# A fixed 64x64 graph: the cost per case is the decoding, not the model.
TINY_SIZE = 64


def unexpected(outcomes: dict[Case, str]) -> list[str]:
    """Cases whose outcome is unknown, or not one their case allows."""
    return [
        f"{case.label}: {outcome}"
        for case, outcome in outcomes.items()
        if outcome not in KNOWN_CODES or (case.expect is not None and outcome not in case.expect)
    ]


@pytest.fixture
def tiny_env(graph_file: GraphFile) -> dict[str, str]:
    return {
        "MODEL_PATH": str(graph_file(graphs.channel_affine(1, 8.0, -4.0, size=TINY_SIZE))),
        "MODEL_OUTPUT": "logits",
    }


def test_the_corpus_covers_every_family() -> None:
    families = Counter(case.family for case in CORPUS)

    assert set(families) >= {
        "valid",
        "truncated",
        "bitflip",
        "wrong_magic",
        "empty",
        "huge_claim",
        "png_chunks",
        "many_frames",
        "refused_format",
        "wrong_container",
    }
    assert len(CORPUS) >= 300 and len({case.label for case in CORPUS}) == len(CORPUS)


def test_every_case_decodes_to_a_defined_outcome_within_bounded_memory() -> None:
    # GIVEN a process whose address space may grow at most 1 GiB past its size after start-up,
    # while the corpus holds headers claiming 10 gigapixels and 64 MiB zip bombs
    # WHEN it decodes every case with the default limits
    run = subprocess.run(
        [sys.executable, "-m", "tests.corpus", "--headroom-mb", "1024"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    # THEN it finishes, the memory guard was live, and no case raised anything but a known error
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["guard_works"]
    by_label = {case.label: case for case in CORPUS}
    outcomes = {by_label[label]: outcome for label, outcome in report["outcomes"].items()}
    assert len(outcomes) == len(CORPUS)
    assert unexpected(outcomes) == []


def test_every_case_through_the_api_gets_2xx_or_a_4xx_json_error(
    configure: Callable[..., Service], tiny_env: dict[str, str]
) -> None:
    # GIVEN the API function; every body is declared image/jpeg, whatever it really is
    service = configure(**tiny_env)
    outcomes: dict[Case, str] = {}
    wrong_status: list[str] = []

    # WHEN each case is POSTed as the raw body
    for case in CORPUS:
        reply = service.invoke(http_event(case.data, content_type="image/jpeg"))
        if reply.status == 200:
            outcomes[case] = OK
            continue
        document = reply.json  # asserts a JSON body
        outcomes[case] = document["error"]["code"]
        if STATUSES.get(outcomes[case]) != reply.status:
            wrong_status.append(f"{case.label}: {reply.status} {outcomes[case]}")

    # THEN each got a success or the 4xx its code declares, and the outcome its case allows
    assert wrong_status == []
    assert unexpected(outcomes) == []
    assert {outcome for outcome in outcomes.values()} >= {OK, "invalid_image", "too_many_pixels", "too_many_frames"}


def test_every_case_as_an_s3_upload_is_processed_or_a_counted_failure(
    deploy: Callable[..., Any], tiny_env: dict[str, str], s3: Any, invoke: Callable[[dict[str, Any]], Any], capsys: Any
) -> None:
    # GIVEN every case uploaded under a key ending in .png, whatever its bytes are
    deployment = deploy(INPUT_PREFIX="uploads/", **tiny_env)
    keys = {f"uploads/{number:03d}.png": case for number, case in enumerate(CORPUS)}
    for key, case in keys.items():
        s3.put_object(Bucket=deployment.input_bucket, Key=key, Body=case.data, ContentType="image/png")

    # WHEN one notification names them all
    summary = invoke(s3_puts(deployment.input_bucket, list(keys)))

    # THEN nothing was raised for a retry: each object was processed or failed for good with its code
    outcomes = {keys[item["key"]]: item.get("code", OK) for item in summary["objects"]}
    assert len(outcomes) == len(CORPUS)
    assert {item["status"] for item in summary["objects"]} <= {"processed", "failed"}
    assert unexpected(outcomes) == []
    # AND every failure was counted by its code, and every processed object has its two outputs
    failures = sorted(code for code in outcomes.values() if code != OK)
    assert sorted(error_codes(emf(capsys.readouterr().out))) == failures
    assert summary["failed"] == len(failures)
    assert len(keys_in(s3, deployment.output_bucket)) == 2 * summary["processed"]


def test_every_refused_case_is_a_permanent_failure_in_batch_operations(
    deploy: Callable[..., Any], tiny_env: dict[str, str], s3: Any, invoke: Callable[[dict[str, Any]], Any]
) -> None:
    # GIVEN the cases that are not decodable images, one Batch Operations task each
    deployment = deploy(INPUT_PREFIX="uploads/", **tiny_env)
    refused = [case for case in CORPUS if case.expect is not None and OK not in case.expect]
    results: dict[Case, tuple[str, str]] = {}

    for number, case in enumerate(refused):
        key = f"uploads/{number:03d}.jpg"
        s3.put_object(Bucket=deployment.input_bucket, Key=key, Body=case.data)
        response = invoke(batch_operations("2.0", deployment.input_bucket, key))
        result = response["results"][0]
        results[case] = (result["resultCode"], result["resultString"].split(":", 1)[0])

    # THEN each is a PermanentFailure carrying the code its case expects (never a retry)
    assert len(results) >= 40
    assert {code for code, _ in results.values()} == {"PermanentFailure"}
    assert unexpected({case: code for case, (_, code) in results.items()}) == []


# --- The format comes from the bytes -----------------------------------------------------------


def test_a_png_declared_as_jpeg_is_read_as_png(configure: Callable[..., Service], tiny_env: dict[str, str]) -> None:
    service = configure(**tiny_env)

    reply = service.invoke(http_event(made_images()["png-rgba"], content_type="image/jpeg"))

    assert reply.status == 200 and reply.image.size == (48, 32)


def test_a_jpeg_under_a_png_key_is_read_as_jpeg(
    deploy: Callable[..., Any], tiny_env: dict[str, str], s3: Any, invoke: Callable[[dict[str, Any]], Any]
) -> None:
    deployment = deploy(INPUT_PREFIX="uploads/", **tiny_env)
    s3.put_object(Bucket=deployment.input_bucket, Key="uploads/photo.png", Body=(SAMPLES / "coffee.jpg").read_bytes())

    summary = invoke(s3_puts(deployment.input_bucket, ["uploads/photo.png"]))

    assert summary["processed"] == 1
    assert keys_in(s3, deployment.output_bucket) == ["cutouts/photo.png", "masks/photo.png"]


@pytest.mark.parametrize("name", [case.name for case in CORPUS if case.family == "refused_format"])
def test_other_formats_with_an_image_content_type_are_refused_without_reaching_their_decoder(
    configure: Callable[..., Service], tiny_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # GIVEN an EPS plugin (which would run Ghostscript) that fails the test if it is ever reached
    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the EPS plugin (and so Ghostscript) was reached")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", never)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", never)
    service = configure(**tiny_env)
    case = next(case for case in CORPUS if case.family == "refused_format" and case.name == name)
    data = case.data

    # WHEN the file is sent as an image type, its own or PNG
    replies = [service.invoke(http_event(data, content_type=declared)) for declared in (f"image/{name}", "image/png")]

    # THEN it is refused, as a format we do not take (415, named) or as not an image (400); a 500
    # would mean the plugin ran
    for reply in replies:
        assert case.expect is not None and reply.json["error"]["code"] in case.expect
        assert reply.status == (415 if reply.json["error"]["code"] == "unsupported_media_type" else 400)
