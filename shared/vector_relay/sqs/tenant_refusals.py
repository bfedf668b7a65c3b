"""A refusal for the tenant (``unknown_tenant``, ``tenant_not_bound``) gets a second look at the registry first."""

from __future__ import annotations

import math
from collections.abc import Callable

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.errors import PoisonMessageError
from vector_relay.tenancy import TenantRegistry, TenantRegistrySource

logger = Logger(child=True)


# The refusals that depend on the tenant registry alone: a tenant added or bound a moment ago.
REGISTRY_REFUSALS = frozenset({"unknown_tenant", "tenant_not_bound"})
# How much SQS's clock (SentTimestamp) and the worker's may differ: a registry read less than this
# after a message was sent is not taken as knowing everything that was registered before the send.
CLOCK_SKEW_SECONDS = 1.0


class SecondLook:
    """Before a message is refused for its tenant, the registry is read again, within bounds.

    The worker's registry is a cache (``TENANT_REGISTRY_TTL_SECONDS``); a tenant added or bound
    since it was read (``vector-relay tenant add``, then a redrive) must not be refused. So a
    refusal for the tenant stands only when the registry it was judged with was read after the
    message was sent (SQS's ``SentTimestamp``, less :data:`CLOCK_SKEW_SECONDS`) and is younger than
    the re-read interval. Otherwise the parameter is read again (:meth:`TenantRegistrySource.reread`)
    and the message judged with that, at most once per invocation (one ``SecondLook`` per batch)
    and at most every few seconds per container (``REREAD_INTERVAL_SECONDS``). When that interval has not passed
    yet, the message is retried once it has.

    A message the fresh registry takes is retried at once rather than written now: the rest of the
    invocation holds the registry it started with, and the next invocation starts with the fresh one.
    """

    def __init__(self, source: TenantRegistrySource) -> None:
        self._source = source
        self._fresh: TenantRegistry | None = None

    def confirm(
        self, record: SQSRecord, poison: PoisonMessageError, judge: Callable[[SQSRecord, TenantRegistry], object]
    ) -> PoisonMessageError | float:
        """The refusal to dead-letter with, or the seconds after which the message should be judged again."""
        if self._fresh is None:
            sent = int(record.attributes.get("SentTimestamp") or 0) / 1000 or math.inf  # unknown: as if just now
            knows_the_send = self._source.read_at() >= sent + CLOCK_SKEW_SECONDS
            wait = self._source.reread_wait()
            if knows_the_send and (wait > 0 or self._source.age() < self._source.reread_interval):
                return poison  # read after the message was sent, and recently: the refusal stands
            if wait > 0:
                return wait
            self._fresh = self._source.reread()
            logger.info("tenant registry read again to confirm a refusal", extra={"message_id": record.message_id})
        try:
            judge(record, self._fresh)
        except PoisonMessageError as again:
            return again
        return 0.0


def unconfirmed(poison: PoisonMessageError, verdict: float) -> str:
    """Why a refusal for the tenant was not made: the registry as read now takes the message, or is read soon."""
    if verdict == 0:
        return (
            f"the tenant registry as read now takes the message ({poison.error_code} was an older registry's verdict)"
        )
    return f"{poison.error_code} is confirmed only with the tenant registry read again, in {math.ceil(verdict)} s"
