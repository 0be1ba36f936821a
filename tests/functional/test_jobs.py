"""The jobs entry point end to end: events from events/ (and `sam local generate-event`), a real
S3 over HTTP (moto server), the real U-2-Net-p model.

Each test deploys its own buckets, uploads a photo from samples/, invokes `handler.jobs` with an
event naming it and checks what landed in the output bucket, what came back, and what was logged
and counted.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote

import onnx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from PIL import Image

from handler.aws import runtime
from handler.core.errors import ConfigurationError, OutputUnavailable, StorageUnavailable, UnsupportedEvent
from tests.composites import changed_edge_pixels
from tests.helpers.jobs import (
    BOX,
    CANONICAL_KEY,
    CANONICAL_OUTPUTS,
    INPUT_PREFIX,
    OUTCOME_MESSAGES,
    SAMPLES,
    batch_operations,
    emf,
    error_codes,
    eventbridge,
    head,
    image,
    keys_in,
    load,
    metric_total,
    s3_put,
    s3_puts,
    sample_size,
    sqs,
    upload,
)
from tests.tools import tool_path

# observability.py silences this for the function; pytest resets warning filters per test.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


# --- S3 event notifications -------------------------------------------------------------------


def test_s3_put_event_file_stores_cutout_and_mask_with_metadata(deploy, s3, invoke, logs, capsys):
    # GIVEN the canonical put event, whose key is URL-encoded ('+' for a space, %28 for '(')
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    etag = upload(s3, deployment.input_bucket, CANONICAL_KEY, "astronaut.jpg")
    event = load("s3_put.json")
    assert event["Records"][0]["s3"]["object"]["key"] == "uploads/holiday+photos/beach+%281%29.jpg"
    event["Records"][0]["s3"]["bucket"]["name"] = deployment.input_bucket

    # WHEN the function handles it
    summary = invoke(event)

    # THEN the decoded object was cut out, its outputs keyed relative to INPUT_PREFIX
    assert (summary["processed"], summary["skipped"], summary["failed"]) == (1, 0, 0)
    assert summary["objects"][0]["outputs"] == list(CANONICAL_OUTPUTS)
    assert keys_in(s3, deployment.output_bucket) == sorted(CANONICAL_OUTPUTS)
    cutout = image(s3, deployment.output_bucket, CANONICAL_OUTPUTS[0])
    mask = image(s3, deployment.output_bucket, CANONICAL_OUTPUTS[1])
    assert (cutout.format, cutout.mode, cutout.size) == ("PNG", "RGBA", sample_size("astronaut.jpg"))
    assert (mask.format, mask.mode, mask.size) == ("PNG", "L", sample_size("astronaut.jpg"))
    # ... a real subject was found: some pixels opaque, some transparent
    alpha = cutout.getchannel("A")
    assert alpha.getextrema() == (0, 255)
    # ... and, with the default options, its soft edge got an estimated foreground colour
    assert changed_edge_pixels(Image.open(SAMPLES / "astronaut.jpg"), cutout) > 0

    # AND each output says where it came from, in ASCII
    for key in CANONICAL_OUTPUTS:
        response = head(s3, deployment.output_bucket, key)
        assert response["ContentType"] == "image/png"
        metadata = response["Metadata"]
        assert metadata["source-bucket"] == deployment.input_bucket
        assert metadata["source-key"].isascii() and unquote(metadata["source-key"]) == CANONICAL_KEY
        assert metadata["source-etag"] == etag
        assert metadata["model"] == "u2netp.onnx"
        assert BOX.match(metadata["foreground-box"])
        assert "source-version" not in metadata  # the bucket is not versioned

    # AND the work was measured and logged with the key (never the event)
    documents = emf(capsys.readouterr().out)
    assert metric_total(documents, "ImagesProcessed") == 1
    processed = [line for line in logs() if line["message"] == "object processed"]
    assert processed and processed[0]["key"] == CANONICAL_KEY
    assert processed[0]["bucket"] == deployment.input_bucket
    assert not any("Records" in json.dumps(line) for line in logs())


@pytest.mark.parametrize(
    ("key", "relative"),
    [
        ("uploads/c++/a+b.jpg", "c++/a+b"),
        ("uploads/100%20 off/spaced  out.jpg", "100%20 off/spaced  out"),
        ("uploads/copy (2) [final]/photo (1).jpeg", "copy (2) [final]/photo (1)"),
        ("uploads/café/Ünïcödé 写真.JPG", "café/Ünïcödé 写真"),
        ("uploads/2024/07/14/deep/nested/x.jpg", "2024/07/14/deep/nested/x"),
        ("photos/a b/c.jpg", "photos/a b/c"),  # not under INPUT_PREFIX: the whole key is mirrored
        ("uploads/no-extension", "no-extension"),
    ],
    ids=["plus", "percent-and-spaces", "parentheses", "non-ascii", "nested", "outside-prefix", "no-extension"],
)
def test_awkward_keys_round_trip(deploy, s3, invoke, key, relative):
    # GIVEN an object whose key S3 notifications must encode
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    etag = upload(s3, deployment.input_bucket, key, "chelsea.jpg")

    # WHEN its put event arrives
    summary = invoke(s3_put(deployment.input_bucket, key))

    # THEN the decoded key was read and mirrored under cutouts/ and masks/
    assert summary["processed"] == 1, summary
    expected = [f"cutouts/{relative}.png", f"masks/{relative}.png"]
    assert keys_in(s3, deployment.output_bucket) == sorted(expected)
    metadata = head(s3, deployment.output_bucket, expected[0])["Metadata"]
    assert metadata["source-key"].isascii()
    assert unquote(metadata["source-key"]) == key
    assert metadata["source-etag"] == etag


def test_leading_slash_is_stripped_from_the_output_key(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "/rooted/photo.jpg", "coffee.jpg")

    summary = invoke(s3_put(deployment.input_bucket, "/rooted/photo.jpg"))

    assert summary["processed"] == 1, summary
    assert keys_in(s3, deployment.output_bucket) == ["cutouts/rooted/photo.png", "masks/rooted/photo.png"]


def test_dot_dot_segment_is_refused_permanently(deploy, s3, invoke, capsys):
    # GIVEN a key whose outputs would climb out of the output prefix
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, OUTPUT_PREFIX="results/")
    key = "uploads/../../escape/photo.jpg"

    # WHEN its event arrives
    summary = invoke(s3_put(deployment.input_bucket, key))

    # THEN nothing is read or written, and the refusal is permanent (no exception: no retry)
    assert (summary["failed"], summary["objects"][0]["code"]) == (1, "invalid_parameter")
    assert keys_in(s3, deployment.output_bucket) == []
    assert error_codes(emf(capsys.readouterr().out)) == ["invalid_parameter"]


def test_versioned_source_records_its_version(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    s3.put_bucket_versioning(Bucket=deployment.input_bucket, VersioningConfiguration={"Status": "Enabled"})
    response = s3.put_object(
        Bucket=deployment.input_bucket, Key="uploads/v.jpg", Body=(SAMPLES / "coffee.jpg").read_bytes()
    )

    invoke(s3_put(deployment.input_bucket, "uploads/v.jpg"))

    metadata = head(s3, deployment.output_bucket, "masks/v.png")["Metadata"]
    assert metadata["source-version"] == response["VersionId"]


def test_repeated_event_is_skipped_until_the_source_or_model_changes(deploy, s3, invoke, capsys, monkeypatch, tmp_path):
    # GIVEN an upload that has been processed once
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    key = "uploads/again.jpg"
    upload(s3, deployment.input_bucket, key, "astronaut.jpg")
    event = s3_put(deployment.input_bucket, key)
    assert invoke(event)["processed"] == 1
    outputs = ["cutouts/again.png", "masks/again.png"]
    # ... and its outputs marked, so that a rewrite would show
    for output in outputs:
        metadata = head(s3, deployment.output_bucket, output)["Metadata"]
        s3.copy_object(
            Bucket=deployment.output_bucket,
            Key=output,
            CopySource={"Bucket": deployment.output_bucket, "Key": output},
            Metadata={**metadata, "test-marker": "first-run"},
            MetadataDirective="REPLACE",
            ContentType="image/png",
        )
    capsys.readouterr()

    # WHEN the same event arrives again (S3 delivers at least once)
    summary = invoke(event)

    # THEN nothing is recomputed or rewritten
    assert (summary["skipped"], summary["objects"][0]["code"]) == (1, "up_to_date")
    for output in outputs:
        assert head(s3, deployment.output_bucket, output)["Metadata"]["test-marker"] == "first-run"
    documents = emf(capsys.readouterr().out)
    assert metric_total(documents, "Skipped") == 1
    assert metric_total(documents, "ImagesProcessed") == 0

    # WHEN the source is replaced by another photo and the event repeats
    new_etag = upload(s3, deployment.input_bucket, key, "chelsea.jpg")
    summary = invoke(event)

    # THEN the outputs are rewritten from the new photo
    assert summary["processed"] == 1
    for output in outputs:
        metadata = head(s3, deployment.output_bucket, output)["Metadata"]
        assert metadata["source-etag"] == new_etag
        assert "test-marker" not in metadata
    assert image(s3, deployment.output_bucket, outputs[0]).size == sample_size("chelsea.jpg")

    # WHEN the function is redeployed with another model under the same file name (every baked
    # model is /opt/model/model.onnx) and the event repeats
    redeployed = tmp_path / "model.onnx"
    retrained = onnx.load(str(runtime.current().settings.model.path))
    retrained.doc_string = "retrained"
    onnx.save(retrained, str(redeployed))
    monkeypatch.setenv("MODEL_PATH", str(redeployed))
    runtime.reset()
    summary = invoke(event)

    # THEN outputs made by the old model are not taken as up to date, and record the new one
    assert summary["processed"] == 1
    metadata = head(s3, deployment.output_bucket, outputs[1])["Metadata"]
    assert metadata["model-sha256"] == hashlib.sha256(redeployed.read_bytes()).hexdigest()

    # WHEN the same model is deployed again under another name
    renamed = tmp_path / "same-model-renamed.onnx"
    shutil.copyfile(redeployed, renamed)
    monkeypatch.setenv("MODEL_PATH", str(renamed))
    runtime.reset()

    # THEN its outputs are up to date
    assert invoke(event)["skipped"] == 1


def test_missing_object_is_a_permanent_counted_failure(deploy, s3, invoke, logs, capsys):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)

    summary = invoke(s3_put(deployment.input_bucket, "uploads/deleted since.jpg"))

    assert (summary["failed"], summary["objects"][0]["code"]) == (1, "source_not_found")
    assert keys_in(s3, deployment.output_bucket) == []
    assert error_codes(emf(capsys.readouterr().out)) == ["source_not_found"]
    refusals = [line for line in logs() if line.get("error_code") == "source_not_found"]
    assert refusals and refusals[0]["key"] == "uploads/deleted since.jpg"


def test_non_image_object_is_skipped_without_output_or_exception(deploy, s3, invoke, capsys):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    notes = b"meeting notes, not a photo"
    upload(s3, deployment.input_bucket, "uploads/notes.jpg", Body=notes, ContentType="text/plain")

    summary = invoke(s3_put(deployment.input_bucket, "uploads/notes.jpg"))

    assert (summary["failed"], summary["objects"][0]["code"]) == (1, "invalid_image")
    assert keys_in(s3, deployment.output_bucket) == []
    assert error_codes(emf(capsys.readouterr().out)) == ["invalid_image"]


def test_object_too_large_is_refused_before_download(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, MAX_INPUT_BYTES="1000")
    upload(s3, deployment.input_bucket, "uploads/big.jpg", "coffee.jpg")

    summary = invoke(s3_put(deployment.input_bucket, "uploads/big.jpg"))

    assert summary["objects"][0]["code"] == "image_too_large"
    assert keys_in(s3, deployment.output_bucket) == []


def test_transient_storage_error_is_raised_for_a_retry(deploy, s3, invoke, capsys):
    # GIVEN an archived object: S3 answers InvalidObjectState, which Storage treats as retryable
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/archived.jpg", StorageClass="GLACIER")

    # WHEN its event arrives THEN the invocation fails, so Lambda retries it
    from handler.core.errors import StorageUnavailable

    with pytest.raises(StorageUnavailable):
        invoke(s3_put(deployment.input_bucket, "uploads/archived.jpg"))
    assert error_codes(emf(capsys.readouterr().out)) == ["storage_unavailable"]


@pytest.mark.parametrize("envelope", ["s3", "sqs"])
def test_unwritable_output_location_is_our_fault_and_retried(deploy, s3, invoke, capsys, envelope):
    # GIVEN a deployment whose output bucket does not exist (deleted, or a typo in the stack)
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, OUTPUT_BUCKET="no-such-output-bucket")
    upload(s3, deployment.input_bucket, "uploads/fine.jpg")
    notification = s3_put(deployment.input_bucket, "uploads/fine.jpg")

    # WHEN the upload's event arrives THEN the invocation fails, so the platform delivers it again
    # (Lambda's retries, then the failure destination; SQS, then its dead-letter queue)
    with pytest.raises(OutputUnavailable if envelope == "s3" else BatchProcessingError):
        invoke(notification if envelope == "s3" else sqs(notification))
    # and the source is not blamed
    assert error_codes(emf(capsys.readouterr().out)) == ["output_unavailable"]


def test_batch_operations_unwritable_output_is_a_temporary_failure(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, OUTPUT_BUCKET="no-such-output-bucket")
    upload(s3, deployment.input_bucket, "uploads/fine.jpg")

    response = invoke(batch_operations("2.0", deployment.input_bucket, "uploads/fine.jpg"))

    assert response["results"][0]["resultCode"] == "TemporaryFailure"
    assert response["results"][0]["resultString"].startswith("output_unavailable: ")


def test_s3_test_event_is_ignored(deploy, invoke, logs):
    deploy(INPUT_PREFIX=INPUT_PREFIX)

    summary = invoke(load("s3_test_event.json"))

    assert summary == {"processed": 0, "skipped": 0, "failed": 0, "ignored": 1, "objects": []}
    assert any("s3:TestEvent" in line["message"] for line in logs())


def test_unknown_event_shape_is_a_clear_error(deploy, invoke, capsys):
    deploy(INPUT_PREFIX=INPUT_PREFIX)

    with pytest.raises(UnsupportedEvent, match=r"top-level fields: body, httpMethod"):
        invoke({"httpMethod": "POST", "body": "aGVsbG8="})
    assert error_codes(emf(capsys.readouterr().out)) == ["unsupported_event"]


def test_events_that_create_nothing_are_ignored(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    removed = s3_put(deployment.input_bucket, "uploads/gone.jpg")
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    deleted = eventbridge(deployment.input_bucket, "uploads/gone.jpg")
    deleted["detail-type"] = "Object Deleted"

    assert invoke(removed)["ignored"] == 1
    assert invoke(deleted)["ignored"] == 1
    assert keys_in(s3, deployment.output_bucket) == []


# --- EventBridge ------------------------------------------------------------------------------


def test_eventbridge_event_file_end_to_end(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, CANONICAL_KEY, "coffee.jpg")
    event = load("eventbridge_object_created.json")
    event["detail"]["bucket"]["name"] = deployment.input_bucket

    summary = invoke(event)

    assert summary["processed"] == 1
    assert keys_in(s3, deployment.output_bucket) == sorted(CANONICAL_OUTPUTS)


def test_eventbridge_key_is_used_as_sent(deploy, s3, invoke):
    # GIVEN a key with literal '+' signs, which unquote_plus would turn into spaces
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/c++ notes/a+b.jpg", "coffee.jpg")

    summary = invoke(eventbridge(deployment.input_bucket, "uploads/c++ notes/a+b.jpg"))

    assert summary["processed"] == 1, summary
    assert keys_in(s3, deployment.output_bucket) == ["cutouts/c++ notes/a+b.png", "masks/c++ notes/a+b.png"]


def test_eventbridge_key_falls_back_to_its_decoded_form(deploy, s3, invoke):
    # GIVEN an EventBridge event whose key arrives URL-encoded, and no object with the encoded key
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, CANONICAL_KEY, "coffee.jpg")

    summary = invoke(eventbridge(deployment.input_bucket, quote_plus(CANONICAL_KEY, safe="/")))

    # THEN the decoded key is read, and the outputs follow it
    assert summary["processed"] == 1, summary
    assert summary["objects"][0]["key"] == CANONICAL_KEY
    assert keys_in(s3, deployment.output_bucket) == sorted(CANONICAL_OUTPUTS)


# --- SQS --------------------------------------------------------------------------------------


def test_sqs_s3_notification_file_end_to_end(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, CANONICAL_KEY, "astronaut.jpg")
    upload(s3, deployment.input_bucket, "uploads/holiday photos/sunset+glow.jpg", "chelsea.jpg")
    event = load("sqs_s3_notification.json")
    for record in event["Records"]:
        body = json.loads(record["body"])
        body["Records"][0]["s3"]["bucket"]["name"] = deployment.input_bucket
        record["body"] = json.dumps(body)

    response = invoke(event)

    assert response == {"batchItemFailures": []}
    assert keys_in(s3, deployment.output_bucket) == sorted(
        [*CANONICAL_OUTPUTS, "cutouts/holiday photos/sunset+glow.png", "masks/holiday photos/sunset+glow.png"]
    )


def test_sqs_eventbridge_file_end_to_end(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, CANONICAL_KEY, "chelsea.jpg")
    event = load("sqs_eventbridge.json")
    body = json.loads(event["Records"][0]["body"])
    body["detail"]["bucket"]["name"] = deployment.input_bucket
    event["Records"][0]["body"] = json.dumps(body)

    response = invoke(event)

    assert response == {"batchItemFailures": []}
    assert keys_in(s3, deployment.output_bucket) == sorted(CANONICAL_OUTPUTS)


def test_sqs_batch_reports_exactly_the_messages_to_retry(deploy, s3, invoke, capsys):
    # GIVEN a batch with a good upload, an archived object (transient), a missing object
    # (permanent), a message that is not JSON, and the test event S3 sends to a new queue
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    bucket = deployment.input_bucket
    upload(s3, bucket, "uploads/good.jpg", "coffee.jpg")
    upload(s3, bucket, "uploads/archived.jpg", StorageClass="GLACIER")
    event = sqs(
        s3_put(bucket, "uploads/good.jpg"),
        s3_put(bucket, "uploads/archived.jpg"),
        s3_put(bucket, "uploads/missing.jpg"),
        "this is not JSON",
        load("s3_test_event.json"),
        eventbridge(bucket, "uploads/good.jpg"),
    )

    # WHEN the batch is handled
    response = invoke(event)

    # THEN only the retryable messages go back to the queue; the permanent failure does not
    assert response == {"batchItemFailures": [{"itemIdentifier": "message-1"}, {"itemIdentifier": "message-3"}]}
    assert keys_in(s3, deployment.output_bucket) == ["cutouts/good.png", "masks/good.png"]
    codes = error_codes(emf(capsys.readouterr().out))
    assert sorted(codes) == ["source_not_found", "storage_unavailable", "unsupported_event"]


def test_sqs_batch_where_every_message_fails_is_retried_whole(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    with pytest.raises(BatchProcessingError):
        invoke(sqs("not JSON", "[]"))
    assert keys_in(s3, deployment.output_bucket) == []


# --- S3 Batch Operations ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_batch_operations_good_and_bad_keys(deploy, s3, invoke, version):
    # GIVEN a photo and a file that is not one, both with awkward keys
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    bucket = deployment.input_bucket
    upload(s3, bucket, CANONICAL_KEY, "astronaut.jpg")
    upload(s3, bucket, "uploads/broken (1)+.jpg", Body=b"\xff\xd8\xff truncated")
    good_event = load("batch_operations_v1.json" if version == "1.0" else "batch_operations_v2.json")
    task = good_event["tasks"][0]
    if version == "1.0":
        task["s3BucketArn"] = f"arn:aws:s3:::{bucket}"
    else:
        task["s3Bucket"] = bucket

    # WHEN Batch Operations invokes the function for each (one task per invocation)
    good = invoke(good_event)
    bad = invoke(batch_operations(version, bucket, "uploads/broken (1)+.jpg"))

    # THEN each answer has exactly the shape S3 Batch Operations requires
    for response in (good, bad):
        assert set(response) == {"invocationSchemaVersion", "treatMissingKeysAs", "invocationId", "results"}
        assert response["invocationSchemaVersion"] == version
        assert response["treatMissingKeysAs"] == "PermanentFailure"
        assert len(response["results"]) == 1
        assert set(response["results"][0]) == {"taskId", "resultCode", "resultString"}
    assert good["invocationId"] == good_event["invocationId"]
    assert good["results"][0]["taskId"] == good_event["tasks"][0]["taskId"]
    # AND the photo succeeded, the other file failed for good with its error code
    assert good["results"][0]["resultCode"] == "Succeeded"
    assert good["results"][0]["resultString"] == " ".join(CANONICAL_OUTPUTS)
    assert bad["results"][0]["resultCode"] == "PermanentFailure"
    assert bad["results"][0]["resultString"].startswith("invalid_image: ")
    assert keys_in(s3, deployment.output_bucket) == sorted(CANONICAL_OUTPUTS)


def test_batch_operations_transient_error_is_a_temporary_failure(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/archived.jpg", StorageClass="GLACIER")

    response = invoke(batch_operations("2.0", deployment.input_bucket, "uploads/archived.jpg"))

    assert response["results"][0]["resultCode"] == "TemporaryFailure"
    assert response["results"][0]["resultString"].startswith("storage_unavailable: ")


def test_batch_operations_rerun_reports_skipped_as_succeeded(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, "uploads/backfill.jpg", "coffee.jpg")
    event = batch_operations("1.0", deployment.input_bucket, "uploads/backfill.jpg")

    first, second = invoke(event), invoke(event)

    assert first["results"][0]["resultCode"] == second["results"][0]["resultCode"] == "Succeeded"
    assert second["results"][0]["resultString"].startswith("skipped (up_to_date)")


# --- Configuration ----------------------------------------------------------------------------


def _start_up() -> None:
    """What Lambda's init phase does: import the entry point module."""
    module = sys.modules.get("handler.jobs")
    if module is None:
        importlib.import_module("handler.jobs")
    else:
        importlib.reload(module)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"INPUT_BUCKET": "shared", "OUTPUT_BUCKET": "shared", "INPUT_PREFIX": "", "OUTPUT_PREFIX": "results/"},
            "recursive loop",
        ),
        (
            {"INPUT_BUCKET": "shared", "OUTPUT_BUCKET": "shared", "INPUT_PREFIX": "in/", "OUTPUT_PREFIX": "in/out/"},
            "recursive loop",
        ),
        ({"OUTPUT_BUCKET": None}, "OUTPUT_BUCKET must be set"),
        ({"OUTPUT_FORMAT": "jpeg"}, "OUTPUT_FORMAT"),
    ],
    ids=["same-bucket-no-input-prefix", "output-inside-input", "no-output-bucket", "jpeg"],
)
def test_unworkable_configuration_fails_at_start_up(deploy, overrides, message):
    deploy(**overrides)

    with pytest.raises(ConfigurationError, match=message):
        _start_up()


def test_outputs_mask_writes_only_masks(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, OUTPUTS="mask")
    upload(s3, deployment.input_bucket, "uploads/only-mask.jpg", "chelsea.jpg")

    summary = invoke(s3_put(deployment.input_bucket, "uploads/only-mask.jpg"))

    assert summary["objects"][0]["outputs"] == ["masks/only-mask.png"]
    assert keys_in(s3, deployment.output_bucket) == ["masks/only-mask.png"]


def test_output_format_webp(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, OUTPUT_FORMAT="webp", OUTPUT_PREFIX="results/")
    upload(s3, deployment.input_bucket, "uploads/w.jpg", "coffee.jpg")

    invoke(s3_put(deployment.input_bucket, "uploads/w.jpg"))

    assert keys_in(s3, deployment.output_bucket) == ["results/cutouts/w.webp", "results/masks/w.webp"]
    assert head(s3, deployment.output_bucket, "results/cutouts/w.webp")["ContentType"] == "image/webp"
    cutout = image(s3, deployment.output_bucket, "results/cutouts/w.webp")
    assert (cutout.format, cutout.mode) == ("WEBP", "RGBA")


def test_object_under_the_output_location_is_not_processed(deploy, new_bucket, s3, invoke, capsys):
    # GIVEN one bucket for uploads and results (non-overlapping prefixes), and a trigger that
    # wrongly fires for every key in it
    bucket = new_bucket("shared")
    deploy(INPUT_BUCKET=bucket, OUTPUT_BUCKET=bucket, INPUT_PREFIX="uploads/", OUTPUT_PREFIX="results/")
    upload(s3, bucket, "uploads/cat.jpg", "chelsea.jpg")
    first = invoke(s3_put(bucket, "uploads/cat.jpg"))
    assert first["objects"][0]["outputs"] == ["results/cutouts/cat.png", "results/masks/cat.png"]
    capsys.readouterr()

    # WHEN the events for the function's own outputs arrive
    summaries = [invoke(s3_put(bucket, key)) for key in first["objects"][0]["outputs"]]

    # THEN they are refused: no output of an output, no loop
    assert [summary["objects"][0]["code"] for summary in summaries] == ["output_location", "output_location"]
    assert keys_in(s3, bucket) == ["results/cutouts/cat.png", "results/masks/cat.png", "uploads/cat.jpg"]
    documents = emf(capsys.readouterr().out)
    assert metric_total(documents, "Skipped") == 2
    assert metric_total(documents, "ImagesProcessed") == 0


# --- Events as `sam local generate-event` makes them --------------------------------------------

SAM_KEY = "uploads/sam made/it (really)+é.jpg"


def generate_event(*args: str) -> dict[str, Any]:
    sam = tool_path("sam")
    completed = subprocess.run(
        [str(sam), "local", "generate-event", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PATH": str(sam.parent), "HOME": str(Path.home()), "SAM_CLI_TELEMETRY": "0"},
    )
    return json.loads(completed.stdout)


def test_sam_generated_s3_put_event(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, SAM_KEY, "coffee.jpg")
    event = generate_event("s3", "put", "--bucket", deployment.input_bucket, "--key", SAM_KEY)

    summary = invoke(event)

    assert summary["processed"] == 1, summary
    relative = "sam made/it (really)+é.png"
    assert keys_in(s3, deployment.output_bucket) == [f"cutouts/{relative}", f"masks/{relative}"]


def test_sam_generated_sqs_event_carrying_an_s3_notification(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, SAM_KEY, "coffee.jpg")
    notification = generate_event("s3", "put", "--bucket", deployment.input_bucket, "--key", SAM_KEY)
    # sam pastes --body into its JSON template as is, so it must arrive JSON-string-escaped
    event = generate_event("sqs", "receive-message", "--body", json.dumps(json.dumps(notification))[1:-1])
    assert json.loads(event["Records"][0]["body"]) == notification

    response = invoke(event)

    assert response == {"batchItemFailures": []}
    assert len(keys_in(s3, deployment.output_bucket)) == 2


def test_sam_generated_batch_operations_event(deploy, s3, invoke):
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX)
    upload(s3, deployment.input_bucket, SAM_KEY, "coffee.jpg")
    event = generate_event(
        "s3", "batch-invocation", "--bucket-arn", f"arn:aws:s3:::{deployment.input_bucket}", "--key", SAM_KEY
    )

    response = invoke(event)

    assert response["results"][0]["resultCode"] == "Succeeded", response
    assert len(keys_in(s3, deployment.output_bucket)) == 2


# --- Batches: S3 transfers overlapped with the work (JOBS_PREFETCH) -----------------------------


def other_threads() -> set[threading.Thread]:
    """Live threads except the local S3 server's (it serves each connection on a thread of its own)."""
    return {thread for thread in threading.enumerate() if "process_request_thread" not in thread.name}


def stored_outputs(s3: Any, bucket: str) -> dict[str, tuple[bytes, dict[str, str], str]]:
    outputs = {}
    for key in keys_in(s3, bucket):
        response = s3.get_object(Bucket=bucket, Key=key)
        outputs[key] = (response["Body"].read(), response["Metadata"], response["ContentType"])
    return outputs


def run_both_ways(deploy, s3, invoke, logs, capsys, source_bucket, event_for, **settings):
    """The same batch with JOBS_PREFETCH=0 and =1, each into its own output bucket.

    Returns, per mode: the response or the exception raised, the outputs (bytes, metadata), the
    outcome log lines (sorted: with prefetch an object's "processed" comes after the next one's
    work), the error codes counted and the processed/skipped totals. Checks that no thread of the
    function's outlives the invocation.
    """
    runs = {}
    for prefetch in ("0", "1"):
        deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, JOBS_PREFETCH=prefetch, **settings)
        capsys.readouterr()
        logged_before = len(logs())
        threads_before = other_threads()
        try:
            answer: Any = invoke(event_for(source_bucket, deployment.output_bucket))
        except Exception as error:  # noqa: BLE001 - compared below: the same error, raised the same way
            answer = error
        assert other_threads() == threads_before, "a thread of the function outlived the invocation"
        lines = logs()[logged_before:]
        documents = emf(capsys.readouterr().out)
        runs[prefetch] = {
            "answer": answer,
            "outputs": stored_outputs(s3, deployment.output_bucket),
            "outcomes": sorted(
                (line["key"], line["message"], line.get("error_code", ""))
                for line in lines
                if line["message"] in OUTCOME_MESSAGES
            ),
            "errors": sorted(error_codes(documents)),
            "processed": metric_total(documents, "ImagesProcessed"),
            "skipped": metric_total(documents, "Skipped"),
        }
    return runs["0"], runs["1"]


def test_batch_with_failures_ends_the_same_with_and_without_prefetch(deploy, s3, invoke, logs, capsys):
    # GIVEN one notification naming, in order: a photo, the same photo again (its outputs are then
    # up to date), a file that is not an image (permanent), an archived object (transient), a
    # second photo, a missing object (permanent), a second archived object, a key that would
    # escape the output prefix (refused before reading), one of the function's own outputs (loop
    # guard) and a third photo
    source = deploy(INPUT_PREFIX=INPUT_PREFIX).input_bucket
    upload(s3, source, "uploads/a.jpg", "astronaut.jpg")
    upload(s3, source, "uploads/notes.jpg", Body=b"meeting notes, not a photo")
    upload(s3, source, "uploads/cold-1.jpg", StorageClass="GLACIER")
    upload(s3, source, "uploads/b.jpg", "chelsea.jpg")
    upload(s3, source, "uploads/cold-2.jpg", StorageClass="GLACIER")
    upload(s3, source, "uploads/c.jpg", "coffee.jpg")

    def event_for(bucket: str, output_bucket: str) -> dict[str, Any]:
        event = s3_puts(
            bucket,
            [
                "uploads/a.jpg",
                "uploads/a.jpg",
                "uploads/notes.jpg",
                "uploads/cold-1.jpg",
                "uploads/b.jpg",
                "uploads/missing.jpg",
                "uploads/cold-2.jpg",
                "uploads/../escape.jpg",
            ],
        )
        event["Records"] += s3_puts(output_bucket, ["cutouts/a.png"])["Records"]
        event["Records"] += s3_puts(bucket, ["uploads/c.jpg"])["Records"]
        return event

    # WHEN it is handled one object after another, and with the transfers overlapped
    sequential, overlapped = run_both_ways(deploy, s3, invoke, logs, capsys, source, event_for)

    # THEN both raise the first transient failure, after every object has had its turn
    for run in (sequential, overlapped):
        assert isinstance(run["answer"], StorageUnavailable)
        assert "uploads/cold-1.jpg" in str(run["answer"])
    # AND every object had the same fate, logged and counted the same way
    assert overlapped["outcomes"] == sequential["outcomes"]
    assert sorted(key for key, message, _ in sequential["outcomes"]) == sorted(
        [
            *(
                f"uploads/{name}.jpg"
                for name in ("a", "a", "notes", "cold-1", "b", "missing", "cold-2", "../escape", "c")
            ),
            "cutouts/a.png",
        ]
    )
    assert ("uploads/a.jpg", "outputs already match this object; skipped", "") in sequential["outcomes"]
    assert (
        sequential["errors"]
        == overlapped["errors"]
        == sorted(
            ["invalid_image", "storage_unavailable", "source_not_found", "storage_unavailable", "invalid_parameter"]
        )
    )
    assert sequential["processed"] == overlapped["processed"] == 3
    assert sequential["skipped"] == overlapped["skipped"] == 2
    # AND the outputs are the same, byte for byte, metadata included
    assert sorted(sequential["outputs"]) == [
        f"{folder}/{name}.png" for folder in ("cutouts", "masks") for name in "abc"
    ]
    assert overlapped["outputs"] == sequential["outputs"]


def test_batch_summary_is_the_same_with_and_without_prefetch(deploy, s3, invoke, logs, capsys):
    # GIVEN a notification naming four photos (two of them larger) and a broken file, in webp
    source = deploy(INPUT_PREFIX=INPUT_PREFIX).input_bucket
    keys = ["uploads/1.jpg", "uploads/2.jpg", "uploads/broken.jpg", "uploads/3.jpg", "uploads/4.jpg"]
    for key, sample in zip(keys, ["coffee.jpg", "astronaut.jpg", "", "chelsea.jpg", "coffee.jpg"], strict=True):
        if sample:
            upload(s3, source, key, sample)
    upload(s3, source, "uploads/broken.jpg", Body=b"\xff\xd8\xff truncated")

    sequential, overlapped = run_both_ways(
        deploy, s3, invoke, logs, capsys, source, lambda bucket, _: s3_puts(bucket, keys), OUTPUT_FORMAT="webp"
    )

    # THEN the summaries are equal, objects in the order the event named them
    assert overlapped["answer"] == sequential["answer"]
    summary = sequential["answer"]
    assert (summary["processed"], summary["skipped"], summary["failed"]) == (4, 0, 1)
    assert [item["key"] for item in summary["objects"]] == keys
    assert summary["objects"][2]["code"] == "invalid_image"
    assert overlapped["outcomes"] == sequential["outcomes"]
    assert len(overlapped["outputs"]) == 8
    assert overlapped["outputs"] == sequential["outputs"]


def test_sqs_message_naming_several_objects_is_retried_the_same_with_and_without_prefetch(
    deploy, s3, invoke, logs, capsys
):
    source = deploy(INPUT_PREFIX=INPUT_PREFIX).input_bucket
    upload(s3, source, "uploads/x.jpg", "coffee.jpg")
    upload(s3, source, "uploads/y.jpg", "chelsea.jpg")
    upload(s3, source, "uploads/cold.jpg", StorageClass="GLACIER")

    def event_for(bucket: str, _: str) -> dict[str, Any]:
        return sqs(
            s3_puts(bucket, ["uploads/x.jpg", "uploads/cold.jpg", "uploads/y.jpg"]),
            s3_puts(bucket, ["uploads/y.jpg", "uploads/missing.jpg", "uploads/x.jpg"]),
        )

    sequential, overlapped = run_both_ways(deploy, s3, invoke, logs, capsys, source, event_for)

    # THEN only the message with the transient failure goes back to the queue, in both modes
    assert sequential["answer"] == overlapped["answer"] == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}
    assert overlapped["outcomes"] == sequential["outcomes"]
    assert overlapped["errors"] == sequential["errors"] == ["source_not_found", "storage_unavailable"]
    assert overlapped["outputs"] == sequential["outputs"]
    assert len(sequential["outputs"]) == 4


def test_failed_background_write_is_its_own_objects_transient_failure(deploy, s3, invoke, logs, capsys, monkeypatch):
    # GIVEN S3 refusing (transiently) the mask of the first of three photos
    from handler.aws.storage import Storage

    real_write = Storage.write

    def flaky_write(self: Storage, bucket: str, key: str, data: bytes, **kwargs: Any) -> None:
        if key == "masks/p1.png":
            raise StorageUnavailable(f"S3 failed for s3://{bucket}/{key}: SlowDown")
        real_write(self, bucket, key, data, **kwargs)

    monkeypatch.setattr(Storage, "write", flaky_write)
    source = deploy(INPUT_PREFIX=INPUT_PREFIX).input_bucket
    keys = ["uploads/p1.jpg", "uploads/p2.jpg", "uploads/p3.jpg"]
    for key, sample in zip(keys, ["coffee.jpg", "chelsea.jpg", "astronaut.jpg"], strict=True):
        upload(s3, source, key, sample)

    # WHEN the batch is handled both ways
    sequential, overlapped = run_both_ways(deploy, s3, invoke, logs, capsys, source, lambda b, _: s3_puts(b, keys))

    # THEN the write's failure is the first photo's: raised for a retry, logged with its key, not
    # counted as processed; the others are done
    for run in (sequential, overlapped):
        assert isinstance(run["answer"], StorageUnavailable) and "masks/p1.png" in str(run["answer"])
        assert ("uploads/p1.jpg", "object not processed; it will be retried", "storage_unavailable") in run["outcomes"]
        assert run["processed"] == 2
    assert overlapped["outcomes"] == sequential["outcomes"]
    # ... the cutout written before the failing mask stays, as it always did
    assert sorted(overlapped["outputs"]) == [
        "cutouts/p1.png",
        "cutouts/p2.png",
        "cutouts/p3.png",
        "masks/p2.png",
        "masks/p3.png",
    ]
    assert overlapped["outputs"] == sequential["outputs"]


def test_jobs_prefetch_setting_is_validated_at_start_up(deploy):
    deploy(JOBS_PREFETCH="sometimes")

    with pytest.raises(ConfigurationError, match="JOBS_PREFETCH"):
        _start_up()
