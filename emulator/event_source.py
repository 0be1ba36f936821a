"""Lambda's SQS event source mapping, played against a local queue (moto's SQS, on the local S3's
endpoint), so that attempts are counted by the queue itself as they are deployed.

What one poll does, as the mapping does it: receive up to the batch size, invoke the function
synchronously with the messages as an SQS event (each with its `ApproximateReceiveCount`), then
delete the messages it reported done. Messages it reported in `batchItemFailures`, or all of
them when the invocation itself failed (an error, a crash, out of memory, a timeout), stay in the
queue: on SQS they come back once their visibility timeout has passed; here that moment is
brought forward (visibility set to 0), so nothing waits. The queue's redrive policy, not this
code, moves a message to its dead-letter queue once its receive count passes maxReceiveCount.

`redrive` moves every message of a dead-letter queue back to a queue, as the console's "Start
DLQ redrive" (StartMessageMoveTask) does: each arrives as a new message, its receive count at 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from emulator.function import InvokeResult, LambdaFunction

REGION = "us-east-1"


@dataclass(frozen=True)
class Delivery:
    """One message in one invocation: its receive count then, and whether it was deleted."""

    message_id: str
    receive_count: int
    result: InvokeResult
    deleted: bool


class SqsEventSource:
    def __init__(self, client: Any, queue_url: str, function: LambdaFunction, *, batch_size: int = 1) -> None:
        self._client = client
        self.queue_url = queue_url
        self.function = function
        self.batch_size = batch_size
        self._arn = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def poll(self) -> list[Delivery]:
        """One receive and, if it got any message, one invocation."""
        messages = self._client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return []
        event = {"Records": [self._record(message) for message in messages]}
        result = self.function.invoke(json.dumps(event).encode())
        failed = self._failed(result, messages)
        deliveries = []
        for message in messages:
            done = message["MessageId"] not in failed
            if done:
                self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                self._client.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            count = int(message["Attributes"]["ApproximateReceiveCount"])
            deliveries.append(Delivery(message["MessageId"], count, result, done))
        return deliveries

    def drain(self, *, max_polls: int) -> list[Delivery]:
        """Poll until the queue has nothing to give (or `max_polls` polls); every delivery, in order."""
        deliveries: list[Delivery] = []
        for _ in range(max_polls):
            polled = self.poll()
            if not polled:
                break
            deliveries.extend(polled)
        return deliveries

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message["Attributes"],
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": REGION,
        }

    @staticmethod
    def _failed(result: InvokeResult, messages: list[dict[str, Any]]) -> set[str]:
        if result.function_error is not None or result.status != 200:
            return {message["MessageId"] for message in messages}
        return {str(item["itemIdentifier"]) for item in result.document.get("batchItemFailures") or []}


def redrive(client: Any, dead_letter_url: str, destination_url: str) -> int:
    """Move every message of the dead-letter queue to `destination_url`; how many were moved."""
    moved = 0
    while messages := client.receive_message(QueueUrl=dead_letter_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            client.send_message(QueueUrl=destination_url, MessageBody=message["Body"])
            client.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return moved
