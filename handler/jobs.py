"""The jobs entry point: a cutout and a mask stored for each S3 object an event names.

One function, every envelope an S3 object arrives in (handler.aws.envelopes): S3 event
notifications, EventBridge "Object Created" events, SQS messages carrying either (partial batch
failures reported per message) and S3 Batch Operations tasks (backfills).

Thin by design: the envelope is parsed into `ObjectRef`s and handler.aws.pipeline reads each
object, calls `render.process` and writes the outputs; this module shapes the response each
envelope's caller expects. Bad input is recorded and not retried; anything else (S3 trouble, a bug)
goes back to the platform, which retries it.

Each delivery is an `Attempt`: an SQS message's is its receive count, out of JOBS_MAX_ATTEMPTS (the
queue's maxReceiveCount, after which SQS moves the message to the failure queue); any other
envelope's invocation counts as one attempt of one. The attempt ends at the invocation's deadline.

An event naming several objects overlaps S3 transfers with the work (JOBS_PREFETCH, on by default):
while one object is decoded, inferred and encoded, the next one is read and the previous one's
outputs are written, each on its own background thread, one object at a time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import SQSRecord
from aws_lambda_powertools.utilities.data_classes.s3_batch_operation_event import (
    RESULT_CODE_TYPE,
    S3BatchOperationEvent,
    S3BatchOperationResponse,
    S3BatchOperationResponseRecord,
    S3BatchOperationTask,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.aws import runtime
from handler.aws.envelopes import batch_task_ref, checked, event_shape, object_refs, sqs_body
from handler.aws.observability import LOG_EVENT, count_error, logger, metrics, tracer
from handler.aws.pipeline import STATUSES, Outcome, handle_all, handle_object, output_bucket
from handler.aws.upload_records import Attempt
from handler.core.errors import BackgroundRemovalError


def _runtime() -> runtime.Runtime:
    current = runtime.current()
    output_bucket(current)  # refuses a deployment with nowhere to write
    return current


# Load the model (and check the settings) during the init phase, once per execution environment.
_runtime()

_sqs_processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(log_event=LOG_EVENT)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    current = _runtime()
    shape = checked(event_shape, event)
    if shape == "sqs":
        return process_partial_response(
            event=event,
            record_handler=partial(_sqs_record, current=current, context=context),
            processor=_sqs_processor,
            context=context,
        )
    if shape == "batch_operations":
        return _batch_operations(S3BatchOperationEvent(event), current, _attempt(context, 1, 1))
    if shape == "s3_test":
        logger.info("ignoring the s3:TestEvent that S3 sends when a notification is configured")
        return _summary([], ignored=1)
    refs, ignored = object_refs(shape, event)
    return _summary(handle_all(refs, current, _attempt(context, 1, 1)), ignored=ignored)


def _attempt(context: LambdaContext, number: int, of: int) -> Attempt:
    return Attempt(number, of, time.time() + context.get_remaining_time_in_millis() / 1000)


def _sqs_record(record: SQSRecord, current: runtime.Runtime, context: LambdaContext) -> dict[str, Any]:
    """One message: raising reports it in batchItemFailures, so SQS delivers it again (or to its DLQ)."""
    with logger.append_context_keys(message_id=record.message_id):
        body, shape = checked(sqs_body, record)
        if shape == "s3_test":
            logger.info("ignoring the s3:TestEvent that S3 sends when a notification is configured")
            return _summary([], ignored=1)
        refs, ignored = object_refs(shape, body)
        receive_count = int(record.attributes.approximate_receive_count or 1)
        attempt = _attempt(context, receive_count, current.settings.function.max_attempts)
        return _summary(handle_all(refs, current, attempt), ignored=ignored)


def _batch_operations(event: S3BatchOperationEvent, current: runtime.Runtime, attempt: Attempt) -> dict[str, Any]:
    """One result per task, in the response shape S3 Batch Operations requires."""
    response = S3BatchOperationResponse(
        invocation_schema_version=event.invocation_schema_version,
        invocation_id=event.invocation_id,
        # A task left without a result (there should be none) is reported, not silently passed.
        treat_missing_keys_as="PermanentFailure",
    )
    for task in event.tasks:
        response.add_result(_batch_task(event.invocation_schema_version, task, current, attempt))
    if len(response.results) == 1:
        return response.asdict()
    # Powertools' asdict() insists on one result; S3 sends one task per invocation today.
    return {
        "invocationSchemaVersion": response.invocation_schema_version,
        "treatMissingKeysAs": response.treat_missing_keys_as,
        "invocationId": response.invocation_id,
        "results": [result.asdict() for result in response.results],
    }


def _batch_task(
    schema_version: str, task: S3BatchOperationTask, current: runtime.Runtime, attempt: Attempt
) -> S3BatchOperationResponseRecord:
    def result(code: RESULT_CODE_TYPE, text: str) -> S3BatchOperationResponseRecord:
        return task.build_task_batch_response(code, text)

    try:
        outcome = handle_object(batch_task_ref(schema_version, task), current, attempt)
    except BackgroundRemovalError as error:
        if error.permanent:  # only an unreadable task gets here: handle_object returns the others
            count_error(error.code)
            return result("PermanentFailure", f"{error.code}: {error.message}")
        return result("TemporaryFailure", f"{error.code}: {error.message}")
    except Exception:  # noqa: BLE001 - logged and counted by handle_object; the details stay in the logs
        return result("TemporaryFailure", "internal_error: an unexpected error occurred; see the function's logs")
    if outcome.status == "failed":
        return result("PermanentFailure", f"{outcome.code}: {outcome.message}")
    if outcome.status == "skipped":
        return result("Succeeded", f"skipped ({outcome.code}): {outcome.message}")
    return result("Succeeded", " ".join(outcome.outputs))


def _summary(outcomes: list[Outcome], *, ignored: int = 0) -> dict[str, Any]:
    counts: dict[str, Any] = {status: sum(1 for outcome in outcomes if outcome.status == status) for status in STATUSES}
    return {**counts, "ignored": ignored, "objects": [outcome.as_dict() for outcome in outcomes]}
