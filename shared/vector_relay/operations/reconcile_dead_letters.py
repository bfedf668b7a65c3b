"""The writes a reconcile pass finds in the dead-letter queue: not drift, the relay gave up on them."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

import orjson
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.errors import VectorRelayError
from vector_relay.operations.reconcile import WriteKey
from vector_relay.operations.redrive import DeadLetter, read_all, release

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

# Dead-letter messages read per pass at most (100 receives of 10), and only when a pass found
# records a dead-lettered write could explain. A fuller DLQ leaves the rest reported as drift.
DEAD_LETTER_READ_LIMIT = 1000


class DeadLetterQueue:
    """The writes in a dead-letter queue, looked up for the records a pass could not account for.

    The guard cannot tell a dead-lettered write from a lost one: both leave the claim recorded and
    the index without it (the landed marker that names a write as not landed lasts an hour). The
    DLQ can: its messages are the original bodies. It is read only when a pass has such records,
    at most ``limit`` messages, and without consuming them (:func:`vector_relay.operations.redrive.read_all`
    hides them for the read and makes them visible again right after). ``namespace_for`` maps a
    message's tenant to its namespace (None: not a tenant of this relay). If the queue or the
    registry cannot be read, what was found so far is returned and the rest stay mismatches:
    reported too loudly rather than not at all (the pass's pages are behind its cursor by then).
    """

    def __init__(
        self,
        sqs: SQSClient,
        url: str,
        namespace_for: Callable[[str], str | None],
        *,
        limit: int = DEAD_LETTER_READ_LIMIT,
    ) -> None:
        self._sqs, self._url, self._namespace_for, self._limit = sqs, url, namespace_for, limit

    def dead_lettered(self, writes: Collection[WriteKey]) -> set[WriteKey]:
        wanted = set(writes)
        found: set[WriteKey] = set()
        if not wanted:
            return found
        letters: list[DeadLetter] = []
        try:
            for letter in read_all(self._sqs, self._url, limit=self._limit):
                letters.append(dataclasses.replace(letter, body=""))  # only its receipt handle is kept
                found |= wanted.intersection(_message_writes(letter.body, self._namespace_for))
                if found == wanted:
                    break
        except (ClientError, BotoCoreError, VectorRelayError) as error:
            logger.warning(
                "could not read the dead-letter queue; its writes stay reported as mismatches",
                extra={"queue": self._url, "error": str(error)},
            )
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):  # they come back by themselves (read_all)
                release(self._sqs, self._url, letters)
        return found


def _message_writes(body: str, namespace_for: Callable[[str], str | None]) -> Iterator[WriteKey]:
    """The (namespace, id, version, operation) of each record of a dead-lettered write message.

    Read leniently: a dead-lettered body may be invalid in any way, and anything unreadable is no write.
    """
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if not isinstance(message, dict):
        return
    operation, tenant, records = message.get("op"), message.get("tenant"), message.get("records")
    if operation not in ("upsert", "delete") or not isinstance(tenant, str) or not isinstance(records, list):
        return
    namespace = namespace_for(tenant)
    if namespace is None:
        return
    for record in records:
        if isinstance(record, dict):
            record_id, version = record.get("id"), record.get("version")
            if isinstance(record_id, str) and type(version) is int:
                yield (namespace, record_id, version, operation)
