"""The S3 objects an event file names, and a sample photo to store under each, for `invoke --local`.

The objects are read from the event by the jobs function's own envelope parsers, so `--local`
seeds exactly the keys the function will ask for (decoded as it decodes them).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from handler.core.errors import ConfigurationError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# The photo a key gets when its name is not a sample's.
DEFAULT_SAMPLE = "chelsea.jpg"


def named_objects(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of every object the event names, as the jobs function will look them up."""
    from aws_lambda_powertools.utilities.data_classes import SQSEvent
    from aws_lambda_powertools.utilities.data_classes.s3_batch_operation_event import S3BatchOperationEvent

    from handler.aws.envelopes import batch_task_ref, event_shape, object_refs, sqs_body

    shape = event_shape(event)
    if shape == "s3_test":
        return []
    if shape == "batch_operations":
        batch = S3BatchOperationEvent(dict(event))
        refs = [batch_task_ref(batch.invocation_schema_version, task) for task in batch.tasks]
    elif shape == "sqs":
        refs = []
        for record in SQSEvent(dict(event)).records:
            body, inner = sqs_body(record)
            if inner != "s3_test":
                refs.extend(object_refs(inner, body)[0])
    else:
        refs = object_refs(shape, event)[0]
    # The key as sent is the one the function tries first.
    return list(dict.fromkeys((ref.bucket, ref.key) for ref in refs))


def sample_for(key: str, samples: Path = SAMPLES) -> bytes:
    """A photo from samples/ for `key`: the sample of that name if there is one, else DEFAULT_SAMPLE;
    stored in the format the key's extension names (a .png key gets PNG bytes), when Pillow writes it."""
    name = PurePosixPath(key)
    available = {path.stem.lower(): path for path in sorted(samples.glob("*.jpg"))}
    if not available:
        raise ConfigurationError(
            f"invoke --local stores photos from {samples}, which has none: run it from the repository"
        )
    path = (
        available.get(name.stem.lower()) or available.get(Path(DEFAULT_SAMPLE).stem) or next(iter(available.values()))
    )
    wanted = Image.registered_extensions().get(name.suffix.lower())
    if wanted is None or wanted == "JPEG" or wanted not in Image.SAVE:
        return path.read_bytes()
    with Image.open(path) as image:
        converted = io.BytesIO()
        image.save(converted, wanted)
        return converted.getvalue()
