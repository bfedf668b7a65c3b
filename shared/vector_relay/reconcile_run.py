"""The scheduled reconciler's run: the settings, the key and the clients around :func:`reconcile.scheduled_pass`."""

from __future__ import annotations

import time
from collections.abc import Callable

from vector_relay.api_key_cache import read_api_key
from vector_relay.clients import dynamodb_client, secrets_client
from vector_relay.pinecone_gateway import RecordReader
from vector_relay.reconcile import Report, scheduled_pass
from vector_relay.settings import get_settings


def run_scheduled_reconcile(remaining_ms: Callable[[], int], clock: Callable[[], float] = time.time) -> Report:
    """Go on from the saved cursor until the guard's table ends or ``RECONCILE_RESERVE_SECONDS`` are left."""
    settings = get_settings()
    table = settings.require("write_version_table")
    reserve_ms = settings.reconcile_reserve_seconds * 1000
    secret_arn = settings.pinecone_secret_arn
    reader = RecordReader(
        host=settings.pinecone_index_host, read_key=lambda: read_api_key(secrets_client(), secret_arn).value
    )
    try:
        return scheduled_pass(
            dynamodb_client(),
            table,
            reader,
            now_ms=int(clock() * 1000),
            repair=settings.reconcile_repair,
            out_of_time=lambda: remaining_ms() < reserve_ms,
        )
    finally:
        reader.close()
