"""Receipt bodies as the ingest worker writes them (the contract's fields), for tests on either side."""

from __future__ import annotations

from typing import Any

from vector_relay.contract.receipts import receipt_id

AT = 1765087200123  # when the fate was decided (epoch ms)
SENT = 1765087199000  # when the producer first sent the message


def applied_receipt(
    message_id: str = "m-1",
    *,
    lsn: int | None = 1234,
    tenant: str = "acme",
    at: int = AT,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An ``applied`` receipt's body for one record (``doc-42#0`` at version 17 unless ``records`` says)."""
    written = records if records is not None else [{"id": "doc-42#0", "version": 17}]
    return {
        "schema_version": 1,
        "type": "receipt",
        "receipt_id": receipt_id(message_id, "applied", "upsert", written, [], None),
        "message_id": message_id,
        "tenant": tenant,
        "op": "upsert",
        "fate": "applied",
        "namespace": f"tenant-{tenant}",
        "records": written,
        "record_count": len(written),
        "stale": [],
        "stale_count": 0,
        "lsn": lsn,
        "at": at,
        "first_sent_at": SENT,
    }
