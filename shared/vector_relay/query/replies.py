"""A query's reply: its JSON, inline in one SQS message or stored in S3 behind a pointer, or an error reply."""

from __future__ import annotations

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.aws_clients import s3_client
from vector_relay.contract.messages import QueryMessage
from vector_relay.contract.replies import Match, QueryReplyError, QueryReplyOk, ReplyError, ResultLocation, Usage
from vector_relay.pinecone.data_plane import QueryResult
from vector_relay.sqs.limits import SQS_MAX_MESSAGE_BYTES

logger = Logger(child=True)

# Room kept below the SQS limit for the batch entry's id and bookkeeping.
MAX_INLINE_REPLY_BYTES = SQS_MAX_MESSAGE_BYTES - 1024
# The relay's bound on one reply (its JSON, inline or stored in S3). Pinecone refuses results over
# 4 MB itself, but measures them its own way; this bound holds whatever Pinecone returns, so a
# batch of 10 large answers stays well inside the function's memory. A larger reply is answered
# with result_too_large, never retried (docs/contract.md, "Replies").
MAX_REPLY_BYTES = 4 * 1024 * 1024


def error_reply(correlation_id: str | None, tenant: str | None, code: str, message: str) -> str:
    reply = QueryReplyError(correlation_id=correlation_id, tenant=tenant, error=ReplyError(code=code, message=message))
    return reply.model_dump_json(exclude_none=True)


class ReplyTooLargeError(Exception):
    """The reply to a query would exceed :data:`MAX_REPLY_BYTES`."""


def ok_reply(record: SQSRecord, message: QueryMessage, result: QueryResult, fresh: bool | None) -> tuple[str, bool]:
    """The reply body, and whether the matches went to S3 because they exceed one SQS message.

    The reply carries the indexed LSN the result was read at (``lsn``, null when Pinecone said none)
    and, for a query with ``min_lsn``, whether it reached it (``fresh``). Raises
    :class:`ReplyTooLargeError` past the relay's bound on a reply.
    """
    usage = Usage(read_units=result.read_units) if result.read_units is not None else None
    matches = [Match.model_construct(**match) for match in result.matches]
    reply = QueryReplyOk(
        correlation_id=message.correlation_id,
        tenant=message.tenant,
        matches=matches,
        usage=usage,
        lsn=result.indexed_lsn,
        fresh=fresh,
    )
    body = reply.model_dump_json(exclude_none=True)
    size = len(body.encode())
    if size > MAX_REPLY_BYTES:
        raise ReplyTooLargeError(
            f"the reply would be {size} bytes; the relay answers at most {MAX_REPLY_BYTES} bytes (4 MiB): "
            "ask for a lower top_k, or leave out values or metadata"
        )
    if size <= MAX_INLINE_REPLY_BYTES:
        return body, False
    return store_large_reply(record, message, body, reply), True


def store_large_reply(record: SQSRecord, message: QueryMessage, body: str, full: QueryReplyOk) -> str:
    """Store ``body`` (the reply ``full``) in S3; the pointer reply names it, with the same usage, lsn and fresh."""
    from vector_relay.settings import get_settings  # the bucket is only needed for large replies

    bucket = get_settings().require("query_results_bucket")
    key = large_reply_key(message.tenant, record.message_id)
    s3_client().put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    pointer = QueryReplyOk(
        correlation_id=message.correlation_id,
        tenant=message.tenant,
        result_location=ResultLocation(bucket=bucket, key=key),
        usage=full.usage,
        lsn=full.lsn,
        fresh=full.fresh,
    )
    logger.info("query reply stored in S3", extra={"message_id": record.message_id, "bytes": len(body.encode())})
    return pointer.model_dump_json(exclude_none=True)


# Bytes a tenant's name keeps as they are in its key prefix; every other byte is written %XX.
_KEY_PLAIN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def results_prefix(tenant: str) -> str:
    """The key prefix of a tenant's large replies: ``tenants/<the name, percent-encoded>/``.

    Every byte of the name's UTF-8 outside ``A-Z a-z 0-9 _ -`` is written ``%XX`` (``%`` too), so
    the encoding is one-to-one and holds no ``/``: no tenant's prefix lies inside another's,
    whatever names the registry holds, and one ``s3:GetObject`` grant on ``<prefix>*`` is one
    tenant's. Nor does it hold IAM's wildcards (``*``, ``?``). A name made of those characters
    only, as templates/tenant.yaml requires, is its own encoding (docs/security.md).
    """
    encoded = "".join(chr(byte) if byte in _KEY_PLAIN_BYTES else f"%{byte:02X}" for byte in tenant.encode())
    return f"tenants/{encoded}/"


def large_reply_key(tenant: str, message_id: str) -> str:
    """Where a large reply to query ``message_id`` of ``tenant`` is stored: ``<results_prefix>YYYY/MM/DD/<id>.json``."""
    return f"{results_prefix(tenant)}{time.strftime('%Y/%m/%d', time.gmtime())}/{message_id}.json"
