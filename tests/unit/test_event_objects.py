"""What `invoke --local` stores for an event: the objects the jobs function will look up, and a photo
from samples/ under each, in the format its key's extension names."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from handler.local.event_objects import SAMPLES, named_objects, sample_for

EVENTS = Path(__file__).resolve().parents[2] / "events"
BEACH = ("background-remover-uploads", "uploads/holiday photos/beach (1).jpg")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("s3_put", [BEACH]),  # form-encoded in the event: + and %28 decoded as the function decodes them
        ("batch_operations_v1", [BEACH]),  # percent-encoded, bucket by ARN
        ("batch_operations_v2", [BEACH]),
        ("eventbridge_object_created", [BEACH]),
        ("sqs_eventbridge", [BEACH]),
        ("s3_test_event", []),
    ],
)
def test_the_objects_each_event_names(name: str, expected: list[tuple[str, str]]) -> None:
    assert named_objects(json.loads((EVENTS / f"{name}.json").read_text())) == expected


def test_every_message_of_an_sqs_batch_counts() -> None:
    named = named_objects(json.loads((EVENTS / "sqs_s3_notification.json").read_text()))

    assert len(named) >= 2 and BEACH in named


def test_a_key_naming_a_sample_gets_that_sample() -> None:
    assert sample_for("photos/Coffee.jpg") == (SAMPLES / "coffee.jpg").read_bytes()


@pytest.mark.parametrize(("key", "fmt"), [("a/b.png", "PNG"), ("a/b.webp", "WEBP"), ("b.jpeg", "JPEG"), ("b", "JPEG")])
def test_any_other_key_gets_a_photo_in_its_extension_s_format(key: str, fmt: str) -> None:
    with Image.open(io.BytesIO(sample_for(key))) as image:
        assert image.format == fmt and image.size[0] > 100
