"""``Custom::PineconeIndex``: CloudFormation's create, update and delete of the Pinecone index.

Every request gets an answer on its pre-signed ``ResponseURL`` (a custom resource that never
answers holds the stack for an hour), whatever goes wrong, except while the index is still
coming up: then the function hands the same request to a new invocation of itself (asynchronous,
``VectorRelayWait`` in the event says since when) and that one answers. Waiting ends with FAILED
after :data:`MAX_WAIT_SECONDS`.

Create adopts an index of the same name and shape (and says so), refuses one of another shape,
and answers with ``Host`` (what the workers' ``PINECONE_INDEX_HOST`` takes), ``Name``,
``Dimension``, ``Metric`` and ``Adopted``. Update changes deletion protection and tags in place;
a new name is a replacement (CloudFormation then deletes the old one); a new dimension, metric,
cloud or region is refused with the reason, and CloudFormation rolls back. Delete honours
deletion protection (FAILED with the reason) and ``Retain: "true"`` (the index is kept).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from vector_relay.index_lifecycle import (
    IndexAdmin,
    IndexLifecycleError,
    IndexSpec,
    NotReadyInTime,
    delete,
    ensure,
    update,
    wait_ready,
)
from vector_relay.pinecone_gateway import IndexDescription
from vector_relay.settings import require_https

logger = Logger(child=True)

RESERVE_SECONDS = 20.0  # kept back to answer CloudFormation or hand over to the next invocation
MAX_WAIT_SECONDS = 45 * 60  # the custom resource's own limit is an hour
MAX_REASON_CHARS = 1500  # CloudFormation takes 4 KB for the whole response
WAIT_KEY = "VectorRelayWait"
FAILED_PREFIX = "not-created-"  # the physical id of a create that failed: its delete has nothing to do
PLACEHOLDER_KEY = "set-me"  # template.yaml's PineconeApiKeySecret until an operator puts the key in


@dataclass(frozen=True, slots=True)
class Answer:
    status: str  # SUCCESS or FAILED
    reason: str
    physical_id: str
    data: Mapping[str, str]


def handle(
    event: Mapping[str, Any],
    *,
    admin: Callable[[], IndexAdmin],
    time_left: Callable[[], float],
    respond: Callable[[Mapping[str, Any]], None],
    reinvoke: Callable[[Mapping[str, Any]], None],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Answer | None:
    """Carry out one CloudFormation request and answer it; None when a new invocation will answer instead."""
    try:
        answer = _carry_out(event, admin, time_left, reinvoke, clock, sleep)
    except Exception as error:  # every failure is an answer: never leave CloudFormation waiting
        logger.exception("Custom::PineconeIndex request failed", extra={"request_type": event.get("RequestType")})
        answer = Answer("FAILED", _reason(error), _failed_id(event), {})
    if answer is not None:
        respond(response_body(event, answer))
    return answer


def _carry_out(
    event: Mapping[str, Any],
    admin_factory: Callable[[], IndexAdmin],
    time_left: Callable[[], float],
    reinvoke: Callable[[Mapping[str, Any]], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Answer | None:
    kind = event["RequestType"]
    properties = event.get("ResourceProperties", {})
    if kind == "Delete":
        return _delete(event, properties, admin_factory)
    spec = IndexSpec.from_properties(properties)
    admin = admin_factory()
    waiting = event.get(WAIT_KEY)
    message = "the index is ready"
    adopted = False
    if waiting is None:  # the first invocation does the change; the ones after only wait
        if kind == "Create":
            ensured = ensure(admin, spec)
            message, adopted = ensured.message, ensured.adopted
        else:
            old = IndexSpec.from_properties(event.get("OldResourceProperties", {}))
            if spec.name != old.name:  # replacement: a new index; CloudFormation deletes the old one after
                ensured = ensure(admin, spec)
                message, adopted = f"replacement: {ensured.message}", ensured.adopted
            else:
                update(admin, old, spec)
                message = f"updated deletion protection and tags of index {spec.name}"
        started = clock()
    else:
        started = float(waiting["started"])
        adopted = bool(waiting.get("adopted", False))
        message = str(waiting.get("message", message))
    try:
        ready = wait_ready(admin, spec.name, time_left=lambda: time_left() - RESERVE_SECONDS, sleep=sleep)
    except NotReadyInTime as still:
        if clock() - started > MAX_WAIT_SECONDS:
            raise NotReadyInTime(f"{still} after {MAX_WAIT_SECONDS // 60} minutes") from None
        rounds = int(waiting.get("rounds", 0)) + 1 if waiting else 1
        logger.info("index not ready yet; waiting on in a new invocation", extra={"index": spec.name, "round": rounds})
        reinvoke({**event, WAIT_KEY: {"started": started, "rounds": rounds, "adopted": adopted, "message": message}})
        return None
    return Answer("SUCCESS", message, spec.name, _data(ready, adopted))


def _delete(event: Mapping[str, Any], properties: Mapping[str, Any], admin_factory: Callable[[], IndexAdmin]) -> Answer:
    physical_id = str(event.get("PhysicalResourceId", ""))
    if physical_id.startswith(FAILED_PREFIX) or not physical_id:
        return Answer("SUCCESS", "nothing was created, so nothing to delete", physical_id, {})
    if str(properties.get("Retain", "false")).lower() == "true":
        return Answer("SUCCESS", f"kept index {physical_id} (Retain)", physical_id, {})
    return Answer("SUCCESS", delete(admin_factory(), physical_id), physical_id, {})


def _data(index: IndexDescription, adopted: bool) -> dict[str, str]:
    return {
        "Host": index.host,
        "Name": index.name,
        "Dimension": "" if index.dimension is None else str(index.dimension),
        "Metric": index.metric,
        "Adopted": "true" if adopted else "false",
    }


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:MAX_REASON_CHARS]


def _failed_id(event: Mapping[str, Any]) -> str:
    """A failed create has no index: its physical id says so, and its delete then does nothing."""
    if event.get("RequestType") == "Create":
        return f"{FAILED_PREFIX}{event.get('RequestId', 'unknown')}"
    return str(event.get("PhysicalResourceId", ""))


def response_body(event: Mapping[str, Any], answer: Answer) -> dict[str, Any]:
    return {
        "Status": answer.status,
        "Reason": answer.reason,
        "PhysicalResourceId": answer.physical_id,
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "NoEcho": False,
        "Data": dict(answer.data),
    }


def send_response(url: str, body: Mapping[str, Any], timeout: float = 15.0, attempts: int = 3) -> None:
    """PUT the answer to the pre-signed URL (no content type: S3 signed the request without one)."""
    require_https(url)  # CloudFormation's URL is https; plain http only for a loopback stand-in (tests)
    payload = json.dumps(body).encode()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(  # noqa: S310 - CloudFormation's pre-signed https URL
            url, data=payload, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(payload))}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
                return
        except OSError:
            if attempt == attempts:
                raise
            time.sleep(attempt)


def run(event: Mapping[str, Any], context: Any) -> Answer | None:
    """The Lambda entry: the key from the workers' secret, answers to CloudFormation, waits handed on."""
    from vector_relay.api_key_cache import read_api_key
    from vector_relay.clients import lambda_client, secrets_client
    from vector_relay.pinecone_gateway import PineconeIndexAdmin
    from vector_relay.settings import index_function_settings

    def admin() -> IndexAdmin:
        settings = index_function_settings()
        key = read_api_key(secrets_client(), settings.pinecone_secret_arn)
        if key.value == PLACEHOLDER_KEY:
            raise IndexLifecycleError(
                f"the API-key secret {settings.pinecone_secret_arn} still holds the template's placeholder, so the "
                "index cannot be created yet: deploy with ExistingApiKeySecretArn (a secret that already holds the "
                "key), or with PineconeIndexHost of an index you made yourself (docs/index-lifecycle.md)"
            )
        return PineconeIndexAdmin(api_key=key.value, control_host=settings.pinecone_control_host)

    def reinvoke(next_event: Mapping[str, Any]) -> None:
        lambda_client().invoke(
            FunctionName=context.invoked_function_arn, InvocationType="Event", Payload=json.dumps(next_event).encode()
        )

    return handle(
        event,
        admin=admin,
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        respond=lambda body: send_response(str(event["ResponseURL"]), body),
        reinvoke=reinvoke,
    )
