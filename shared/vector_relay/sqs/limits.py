"""SQS's limits on a message and a batch call, and the one rule that packs entries into batch calls.

Figures from the SQS message quotas (docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
quotas-messages.html) and the SendMessage reference ("The maximum size is 1 MiB or 1,048,576 bytes").
SQS raised the message limit from 256 KiB to 1 MiB in 2025; Lambda's SQS event source mapping takes
such messages too (AWS Compute Blog, "More room to build: serverless services now support payloads
up to 1 MB", 2026-01-29). A queue's own ``MaximumMessageSize`` may still be set lower.

Imported by the workers, the operator tools and the producer SDK alike, so it imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

# One message: its body and its attributes together.
SQS_MAX_MESSAGE_BYTES = 1_048_576
# Entries of one SendMessageBatch, ChangeMessageVisibilityBatch or DeleteMessageBatch call.
SQS_MAX_BATCH_ENTRIES = 10
# The messages of one SendMessageBatch call together.
SQS_MAX_BATCH_BYTES = SQS_MAX_MESSAGE_BYTES
# Messages one ReceiveMessage call returns at most (MaxNumberOfMessages).
SQS_MAX_RECEIVE_MESSAGES = 10


def send_batches[T](
    entries: Iterable[T], size: Callable[[T], int], *, max_bytes: int = SQS_MAX_BATCH_BYTES
) -> Iterator[list[T]]:
    """``entries`` in order, in groups one SendMessageBatch takes: at most :data:`SQS_MAX_BATCH_ENTRIES`
    entries and ``max_bytes`` of ``size`` together (an entry larger than that alone is a group of its own).

    Lazy: a group is yielded as soon as the next entry does not fit in it, so a caller can act on
    each group (send it, record a checkpoint) before the following entries are read.
    """
    group: list[T] = []
    total = 0
    for entry in entries:
        entry_size = size(entry)
        if group and (len(group) == SQS_MAX_BATCH_ENTRIES or total + entry_size > max_bytes):
            yield group
            group, total = [], 0
        group.append(entry)
        total += entry_size
    if group:
        yield group
