"""What the SQS edge hands a service and what it takes back: deliveries in, verdicts out.

The services (:mod:`vector_relay.ingest.service`, :mod:`vector_relay.query.service`) implement
:class:`BatchService`; the edge (:mod:`vector_relay.sqs.processor`) drives them. Neither imports
the other: this module is all they share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.contract.fields import IndexShape, ValidationContext
from vector_relay.deadline import Deadline
from vector_relay.errors import PoisonMessageError, Problem, WaitingError
from vector_relay.tenancy import TenantRegistry


@dataclass(frozen=True, slots=True)
class Delivery[M]:
    """A valid message of the batch, and whether this is its last delivery before the redrive policy moves it."""

    record: SQSRecord
    message: M
    last: bool


@dataclass(frozen=True, slots=True)
class Retry:
    """It may succeed later: SQS redelivers it (on its last delivery it is dead-lettered as retries_exhausted)."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class Wait:
    """Not a failure: it waits for another worker's hold; it comes back when the hold ends (``retry_at``)."""

    error: WaitingError


@dataclass(frozen=True, slots=True)
class Poison:
    """It can never succeed as sent: dead-lettered with its reasons."""

    error: PoisonMessageError


type Verdict = Retry | Wait | Poison  # a message without one is done: acknowledged


class HasTenant(Protocol):
    @property
    def tenant(self) -> str: ...


class BatchRun[M](Protocol):
    """One batch in a service, from the first valid message to the verdicts."""

    def take(self, delivery: Delivery[M]) -> None:
        """A valid message, as soon as it is judged (the rest of the batch is still being read)."""

    def answer(self, record: SQSRecord, poison: PoisonMessageError) -> bool:
        """Whether the service answers this refused message itself (its verdict then comes from :meth:`finish`)."""

    def finish(self) -> Mapping[str, Verdict]:
        """Do the batch's work; the verdict of every message (by id) that is not done."""

    def close(self) -> None:
        """Always called, after :meth:`finish` or instead of it."""

    def dead_lettered(self, record: SQSRecord, poison: PoisonMessageError) -> None:
        """The edge sent this message of the batch to the DLQ (on validation, or by its verdict)."""

    def settle(self) -> None:
        """After every verdict was applied: what the service does once each message's fate is final
        (the ingest run sends its write receipts). Errors are the service's to handle: the batch is done."""


class BatchService[M: HasTenant](Protocol):
    def validation(self, registry: TenantRegistry, index: IndexShape) -> ValidationContext:
        """What the contract checks this service's messages against."""

    def parse(self, record: SQSRecord, validation: ValidationContext) -> M:
        """The message, or PoisonMessageError with every problem the contract finds."""

    def problems(self, message: M, registry: TenantRegistry) -> list[Problem]:
        """What else is wrong with a valid message for its tenant (schema, reply queue), checked after the binding."""

    def start(self, registry: TenantRegistry, deadline: Deadline) -> BatchRun[M]: ...
