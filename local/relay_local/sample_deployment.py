"""The deployment the sample events in events/ assume (events/README.md): index, tenants, schemas, reply queue."""

from __future__ import annotations

import json
from typing import Any

from relay_local.cloudformation import ACCOUNT_ID, REGION

INDEX_NAME = "vector-relay-local"
# The deployment events/README.md describes: the sample events work against the local stack.
SAMPLE_TENANTS = {"acme": "tenant-acme", "globex": "tenant-globex"}
# acme declares its metadata (docs/contract.md, tenant metadata schemas); globex keeps the plain form.
SAMPLE_SCHEMAS: dict[str, dict[str, Any]] = {
    "acme": {
        "fields": {
            "doc_id": {"type": "string"},
            "category": {"type": "string"},
            "year": {"type": "number"},
            "tags": {"type": "string_list"},
            "text": {"type": "string", "filterable": False},
        },
        "extra": "allow",
    }
}
SAMPLE_DIMENSION = 384
SAMPLE_METRIC = "cosine"
SAMPLE_REPLY_QUEUE_NAME = "vector-relay-example-replies"
SAMPLE_REPLY_QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{SAMPLE_REPLY_QUEUE_NAME}"
SAMPLE_REPLY_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{SAMPLE_REPLY_QUEUE_NAME}"


def local_parameters(
    index_host: str = "",
    index_name: str = INDEX_NAME,
    dimension: int = SAMPLE_DIMENSION,
    metric: str = SAMPLE_METRIC,
    tenants: dict[str, str] | None = None,
    schemas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, str]:
    """The template parameters the local stack deploys with (as `sam deploy --parameter-overrides` would).

    With no ``index_host`` the stack creates (or adopts) the index through Custom::PineconeIndex, as a
    deployed stack does; ``env.local.json`` names the host of a running ``make up`` stack instead.
    """
    return {
        "PineconeIndexHost": index_host,
        "PineconeIndexName": index_name,
        "PineconeIndexDimension": str(dimension),
        "PineconeIndexMetric": metric,
        "InitialTenantRegistry": json.dumps(
            registry_entries(
                SAMPLE_TENANTS if tenants is None else tenants, SAMPLE_SCHEMAS if schemas is None else schemas
            )
        ),
        # The sample events' reply_to, so events/query*.json work against the local stack too.
        "AdditionalReplyQueueUrls": SAMPLE_REPLY_QUEUE_URL,
        "AdditionalReplyQueueArns": SAMPLE_REPLY_QUEUE_ARN,
        # Off unless asked for (StackOptions(tracing=True), `make up TRACING=1`): the stack then collects
        # the segments itself (relay_local.xray_collector), as no X-Ray daemon listens on this machine.
        "Tracing": "false",
    }


def registry_entries(tenants: dict[str, str], schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The tenant registry: the plain form, or an object with the tenant's schema when it declares one."""
    return {
        tenant: {"namespace": namespace, "schema": schemas[tenant]} if tenant in schemas else namespace
        for tenant, namespace in tenants.items()
    }
