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

The physical id says whose the index is: its name for an index the stack created, ``adopted:``
and its name for one it adopted. An adopted index is never deleted by the stack (stack delete,
rollback, replacement), its deletion protection is never lowered and its own tags are kept. An
Update of the same index answers with the physical id it had, so CloudFormation never takes it
for a replacement. A Create that failed before making an index answers ``not-created-...`` (its
Delete has nothing to do); once the index exists, a failure answers with the index's id, so the
rollback's Delete finds it.

Time: the wait for the index stops :data:`RESERVE_SECONDS` before the invocation ends, the longest
a hand-over to the next invocation and then the answer to CloudFormation can take (both derived
from the calls' own attempts and timeouts, so the reserve cannot fall behind them).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from vector_relay.aws_clients import AWS_PROFILES
from vector_relay.operations.index_lifecycle import (
    DeletionProtected,
    IndexAdmin,
    IndexChangeRefused,
    IndexLifecycleError,
    IndexSpec,
    NotReadyInTime,
    delete,
    ensure,
    update,
    wait_ready,
)
from vector_relay.pinecone.control_plane import IndexDescription
from vector_relay.settings import require_https

logger = Logger(child=True)

SEND_ATTEMPTS = 3  # PUTs of the answer to the pre-signed URL
SEND_TIMEOUT_SECONDS = 15.0  # urlopen's timeout: bounds connecting, and then each wait for the answer


def send_pause(attempt: int) -> float:
    """Seconds :func:`send_response` waits after failed attempt ``attempt`` (1, 2, ...) before the next."""
    return float(attempt)


def send_worst_case_seconds(attempts: int = SEND_ATTEMPTS, timeout: float = SEND_TIMEOUT_SECONDS) -> float:
    """The longest :func:`send_response` can take: every attempt runs into its timeout twice (connecting,
    then waiting for the answer; the request and S3's reply are small, each sent and read in one go),
    and every pause between attempts is taken."""
    return attempts * 2 * timeout + sum(send_pause(attempt) for attempt in range(1, attempts))


# The hand-over is one Lambda Invoke through vector_relay.aws_clients' most patient profile (this
# function sets no invocation deadline, so lambda_client() uses it); if it fails, the answer
# (FAILED) still has to go out. So the reserve is the worst case of both, one after the other.
HAND_OVER_WORST_CASE_SECONDS = AWS_PROFILES[0].worst_case_seconds
RESERVE_SECONDS = HAND_OVER_WORST_CASE_SECONDS + send_worst_case_seconds()
MAX_WAIT_SECONDS = 45 * 60  # the custom resource's own limit is an hour
MAX_REASON_CHARS = 1500  # CloudFormation takes 4 KB for the whole response
WAIT_KEY = "VectorRelayWait"
FAILED_PREFIX = "not-created-"  # the physical id of a create that failed: its delete has nothing to do
ADOPTED_PREFIX = "adopted:"  # the physical id of an index the stack adopted: its delete keeps it
PLACEHOLDER_KEY = "set-me"  # template.yaml's PineconeApiKeySecret until an operator puts the key in


@dataclass(frozen=True, slots=True)
class Answer:
    status: str  # SUCCESS or FAILED
    reason: str
    physical_id: str
    data: Mapping[str, str]


def physical_id(name: str, adopted: bool) -> str:
    """The physical id of index ``name``: ``adopted:<name>`` when the stack adopted it, else the name."""
    return f"{ADOPTED_PREFIX}{name}" if adopted else name


def index_of(resource_id: str) -> tuple[str, bool] | None:
    """(index name, adopted) that a physical id stands for; None when it stands for no index (a failed create)."""
    if not resource_id or resource_id.startswith(FAILED_PREFIX):
        return None
    if resource_id.startswith(ADOPTED_PREFIX):
        return resource_id.removeprefix(ADOPTED_PREFIX), True
    return resource_id, False


@dataclass(slots=True)
class _Progress:
    """The physical id a failure answers with: it changes once a Create has made (or adopted) the index."""

    physical_id: str


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
    progress = _Progress(_failed_id(event))
    try:
        answer = _carry_out(event, progress, admin, time_left, reinvoke, clock, sleep)
    except Exception as error:  # every failure is an answer: never leave CloudFormation waiting
        logger.exception("Custom::PineconeIndex request failed", extra={"request_type": event.get("RequestType")})
        answer = Answer("FAILED", _reason(error), progress.physical_id, {})
    if answer is not None:
        respond(response_body(event, answer))
    return answer


def _carry_out(
    event: Mapping[str, Any],
    progress: _Progress,
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
    if waiting is None:  # the first invocation does the change; the ones after only wait
        message, resource_id = _change(event, spec, admin)
        started = clock()
    else:
        started = float(waiting["started"])
        message = str(waiting.get("message", "the index is ready"))
        resource_id = str(waiting.get("physical_id") or physical_id(spec.name, bool(waiting.get("adopted", False))))
    if kind == "Create":  # the index exists now: a failure from here on answers with its id
        progress.physical_id = resource_id
    adopted = index_of(resource_id) == (spec.name, True)
    try:
        ready = wait_ready(admin, spec.name, time_left=lambda: time_left() - RESERVE_SECONDS, sleep=sleep)
    except NotReadyInTime as still:
        if clock() - started > MAX_WAIT_SECONDS:
            raise NotReadyInTime(f"{still} after {MAX_WAIT_SECONDS // 60} minutes") from None
        rounds = int(waiting.get("rounds", 0)) + 1 if waiting else 1
        logger.info("index not ready yet; waiting on in a new invocation", extra={"index": spec.name, "round": rounds})
        handed_on = {"started": started, "rounds": rounds, "physical_id": resource_id, "adopted": adopted}
        reinvoke({**event, WAIT_KEY: {**handed_on, "message": message}})
        return None
    return Answer("SUCCESS", message, resource_id, _data(ready, adopted))


def _change(event: Mapping[str, Any], spec: IndexSpec, admin: IndexAdmin) -> tuple[str, str]:
    """Carry out a Create or an Update; returns the reason and the physical id to answer with."""
    if event["RequestType"] == "Create":
        ensured = ensure(admin, spec)
        return ensured.message, physical_id(spec.name, ensured.adopted)
    current = str(event.get("PhysicalResourceId", ""))
    named = index_of(current)
    if named is None or named[0] != spec.name:  # another index: a replacement; CloudFormation deletes the old one
        ensured = ensure(admin, spec)
        return f"replacement: {ensured.message}", physical_id(spec.name, ensured.adopted)
    # The same index (also when a rollback brings the resource back to it): changed in place, and
    # answered with the physical id it has, so CloudFormation sees no replacement and deletes nothing.
    adopted = named[1]
    update(admin, spec, adopted=adopted, dropped_tags=_tags_asked_before(event))
    whose = " (adopted: its own tags kept, deletion protection never lowered)" if adopted else ""
    return f"updated deletion protection and tags of index {spec.name}{whose}", current


def _tags_asked_before(event: Mapping[str, Any]) -> frozenset[str]:
    """The tag keys the previous properties asked for (an adopted index loses only those it no longer asks for)."""
    old = event.get("OldResourceProperties", {})
    tags = old.get("Tags") if isinstance(old, Mapping) else None
    return frozenset(str(key) for key in tags) if isinstance(tags, Mapping) else frozenset()


def _delete(event: Mapping[str, Any], properties: Mapping[str, Any], admin_factory: Callable[[], IndexAdmin]) -> Answer:
    resource_id = str(event.get("PhysicalResourceId", ""))
    named = index_of(resource_id)
    if named is None:
        return Answer("SUCCESS", "nothing was created, so nothing to delete", resource_id, {})
    name, adopted = named
    if adopted:
        reason = f"kept: adopted index {name} existed before the stack, which never deletes it"
        return Answer("SUCCESS", reason, resource_id, {})
    if str(properties.get("Retain", "false")).lower() == "true":
        return Answer("SUCCESS", f"kept index {name} (Retain)", resource_id, {})
    try:
        return Answer("SUCCESS", delete(admin_factory(), name), resource_id, {})
    except DeletionProtected as refused:  # said in the stack's terms; `vector-relay index delete` says it in its own
        raise IndexChangeRefused(f"{refused}: turn DeletionProtection off first, or keep the index (Retain)") from None


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


def send_response(
    url: str,
    body: Mapping[str, Any],
    *,
    timeout: float = SEND_TIMEOUT_SECONDS,
    attempts: int = SEND_ATTEMPTS,
    opener: Callable[..., Any] = urllib.request.urlopen,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """PUT the answer to the pre-signed URL (no content type: S3 signed the request without one).

    At most ``attempts`` attempts with :func:`send_pause` between them: at most
    :func:`send_worst_case_seconds`, which :data:`RESERVE_SECONDS` keeps back.
    """
    require_https(url)  # CloudFormation's URL is https; plain http only for a loopback stand-in (tests)
    payload = json.dumps(body).encode()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(  # noqa: S310 - CloudFormation's pre-signed https URL
            url, data=payload, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(payload))}
        )
        try:
            with opener(request, timeout=timeout):
                return
        except OSError:
            if attempt == attempts:
                raise
            sleep(send_pause(attempt))


def run(event: Mapping[str, Any], context: Any) -> Answer | None:
    """The Lambda entry: the key from the workers' secret, answers to CloudFormation, waits handed on."""
    from vector_relay.aws_clients import lambda_client, secrets_client
    from vector_relay.keys.api_key_cache import read_api_key
    from vector_relay.pinecone.control_plane import PineconeIndexAdmin
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
