"""The scheduled reconciler's run: the settings, the key and the clients around :func:`reconcile.scheduled_pass`."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache

from vector_relay.aws_clients import dynamodb_client, secrets_client, sqs_client, ssm_client
from vector_relay.ingest.version_guard import VersionGuard
from vector_relay.keys.api_key_cache import read_api_key
from vector_relay.operations.reconcile import Report, redelivery_horizon_ms
from vector_relay.operations.reconcile_dead_letters import DeadLetterQueue
from vector_relay.operations.reconcile_scan import scheduled_pass
from vector_relay.pinecone.record_reader import RecordReader
from vector_relay.settings import Settings, get_settings
from vector_relay.tenancy import TenantRegistrySource


def run_scheduled_reconcile(remaining_ms: Callable[[], int], clock: Callable[[], float] = time.time) -> Report:
    """Go on from the saved cursor until the guard's table ends or ``RECONCILE_RESERVE_SECONDS`` are left.

    Records are judged once no retry of their write can still come (``SOURCE_QUEUE_VISIBILITY_TIMEOUT_SECONDS``
    x ``SOURCE_QUEUE_MAX_RECEIVE_COUNT`` after its lease); writes found in ``DEAD_LETTER_QUEUE_URL``
    are reported apart from drift; a repair (``RECONCILE_REPAIR``) holds its records through the guard.
    """
    settings = get_settings()
    table = settings.require("write_version_table")
    reserve_ms = settings.reconcile_reserve_seconds * 1000
    secret_arn = settings.pinecone_secret_arn
    reader = RecordReader(
        host=settings.pinecone_index_host, read_key=lambda: read_api_key(secrets_client(), secret_arn).value
    )
    dynamodb = dynamodb_client()
    guard = None
    if settings.reconcile_repair:
        guard = VersionGuard(dynamodb, table, ttl_seconds=settings.write_version_ttl_seconds, clock=clock)
    try:
        return scheduled_pass(
            dynamodb,
            table,
            reader,
            now_ms=int(clock() * 1000),
            repair=settings.reconcile_repair,
            out_of_time=lambda: remaining_ms() < reserve_ms,
            guard=guard,
            redelivery_ms=redelivery_horizon_ms(
                settings.source_queue_visibility_timeout_seconds, settings.source_queue_max_receive_count
            ),
            dead_letters=_dead_letter_queue(settings),
        )
    finally:
        reader.close()


def _dead_letter_queue(settings: Settings) -> DeadLetterQueue | None:
    """The ingest DLQ, read only when a pass needs it; its tenants' namespaces from the tenant registry."""
    url = settings.dead_letter_queue_url
    if not url:
        return None

    @cache  # built on first use: a pass that finds nothing to look up reads no registry
    def registry() -> TenantRegistrySource:
        return TenantRegistrySource(
            inline=settings.tenant_registry,
            parameter_name=settings.tenant_registry_parameter,
            read_parameter=lambda name: ssm_client().get_parameter(Name=name)["Parameter"]["Value"],
            ttl_seconds=settings.tenant_registry_ttl_seconds,
        )

    return DeadLetterQueue(sqs_client(), url, lambda tenant: registry().current().get(tenant))
