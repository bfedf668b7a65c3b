"""SQS events as Lambda's event source mapping builds them from received messages (used by the test drivers)."""

from __future__ import annotations

import hashlib
from typing import Any


def lambda_sqs_record(message: dict[str, Any], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """One ``Records`` entry for a message received with ``AttributeNames=["All"]`` (and its message attributes)."""
    attributes = message["Attributes"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes["ApproximateReceiveCount"],
            "SentTimestamp": attributes["SentTimestamp"],
            "SenderId": attributes.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
            "ApproximateFirstReceiveTimestamp": attributes["ApproximateFirstReceiveTimestamp"],
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
