"""Custom::PineconeIndex against the emulator: every request is answered on its pre-signed URL (a local HTTP
server stands in for S3), the index is waited for until Ready, and changes Pinecone cannot make are refused."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from pinecone import Pinecone

from functions.pinecone_index import app as index_app
from pinecone_emulator.pytest_plugin import EmulatorHandle
from tests.conftest import FakeLambdaContext
from vector_relay.operations.index_resource import FAILED_PREFIX, WAIT_KEY, Answer, handle, send_response
from vector_relay.pinecone.control_plane import PineconeIndexAdmin

PROPERTIES = {"Name": "relay-index", "Dimension": "8", "Metric": "cosine", "Cloud": "aws", "Region": "us-east-1"}


class ResponseCatcher:
    """A pre-signed URL: records the PUT bodies CloudFormation would receive."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                catcher.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response?X-Amz-Signature=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def catcher() -> Iterator[ResponseCatcher]:
    caught = ResponseCatcher()
    yield caught
    caught.close()


def event(kind: str, catcher: ResponseCatcher, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ResponseURL": catcher.url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/relay/1",
        "RequestId": f"request-{kind.lower()}",
        "LogicalResourceId": "PineconeIndex",
        "ResourceType": "Custom::PineconeIndex",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", **properties},
        **extra,
    }


def run(
    emulator: EmulatorHandle,
    catcher: ResponseCatcher,
    request: dict[str, Any],
    *,
    time_left: float = 600.0,
    sleep: Callable[[float], None] = lambda seconds: None,
) -> tuple[Answer | None, list[dict[str, Any]]]:
    """One request through the handler; its answer goes to ``catcher``, hand-overs are returned."""
    handed_on: list[dict[str, Any]] = []
    answer = handle(
        request,
        admin=lambda: PineconeIndexAdmin(api_key=emulator.api_key, control_host=emulator.url),
        time_left=lambda: time_left,
        respond=lambda body: send(catcher, body),
        reinvoke=handed_on.append,
        sleep=sleep,
    )
    return answer, handed_on


def send(catcher: ResponseCatcher, body: Any) -> None:
    send_response(catcher.url, body)


@pytest.fixture
def pc(pinecone_emulator: EmulatorHandle) -> Iterator[Pinecone]:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    yield client
    client.close()


def test_create_waits_until_ready_and_answers_with_the_host(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    # GIVEN new indexes take a while (the test's sleep makes it Ready after the first poll)
    pinecone_emulator.control.set_index_ready_after(3600)
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        pinecone_emulator.control.set_index_state("relay-index", "Ready")

    answer, handed_on = run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES), sleep=sleep)

    # THEN it polled while Initializing, and CloudFormation heard SUCCESS with the data-plane host
    assert (polls, handed_on) == ([1.0], [])
    assert answer is not None
    [body] = catcher.bodies
    assert (body["Status"], body["PhysicalResourceId"], body["RequestId"]) == (
        "SUCCESS",
        "relay-index",
        "request-create",
    )
    assert body["Data"] == {
        "Host": pinecone_emulator.index_host("relay-index"),
        "Name": "relay-index",
        "Dimension": "8",
        "Metric": "cosine",
        "Adopted": "false",
    }
    assert pc.describe_index("relay-index").status.ready


def test_creation_that_outlasts_an_invocation_is_handed_on_and_answered_once(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher
) -> None:
    pinecone_emulator.control.set_index_ready_after(3600)

    # WHEN the first invocation has too little time left to wait
    answer, handed_on = run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES), time_left=20.5)

    # THEN it answers nothing and hands the request to a new invocation, which answers once ready
    assert (answer, catcher.bodies) == (None, [])
    [next_request] = handed_on
    assert next_request[WAIT_KEY]["rounds"] == 1
    pinecone_emulator.control.set_index_state("relay-index", "Ready")
    answer, handed_on = run(pinecone_emulator, catcher, next_request)
    assert handed_on == []
    assert [b["Status"] for b in catcher.bodies] == ["SUCCESS"]
    assert "created index relay-index" in catcher.bodies[0]["Reason"]


def test_an_index_that_fails_to_initialize_is_reported_failed_and_the_rollback_deletes_it(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    pinecone_emulator.control.set_index_ready_after(3600)

    def fail_it(seconds: float) -> None:
        pinecone_emulator.control.set_index_state("relay-index", "InitializationFailed")

    _, handed_on = run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES), sleep=fail_it)
    assert handed_on == []

    # THEN the Create fails naming the index it made (not "not-created-..."), so the rollback's Delete finds it
    [body] = catcher.bodies
    assert body["Status"] == "FAILED"
    assert body["Reason"] == "index relay-index is InitializationFailed; Pinecone will not make it ready"
    assert body["PhysicalResourceId"] == "relay-index"
    run(pinecone_emulator, catcher, event("Delete", catcher, PROPERTIES, PhysicalResourceId=body["PhysicalResourceId"]))
    assert (catcher.bodies[1]["Status"], catcher.bodies[1]["Reason"]) == ("SUCCESS", "deleted index relay-index")
    assert not pc.has_index("relay-index")


def test_an_existing_index_of_the_same_shape_is_adopted_and_one_of_another_shape_refused(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    from pinecone import ServerlessSpec

    pc.create_index("relay-index", dimension=8, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    pc.create_index("other-shape", dimension=4, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))

    run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES | {"Tags": {"team": "search"}}))
    run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES | {"Name": "other-shape"}))

    adopted, refused = catcher.bodies
    assert (adopted["Status"], adopted["Data"]["Adopted"]) == ("SUCCESS", "true")
    assert adopted["Reason"] == "adopted the existing index relay-index (same shape)"
    assert pc.describe_index("relay-index").tags == {"team": "search"}
    assert refused["Status"] == "FAILED"
    assert refused["Reason"] == (
        "index other-shape already exists with dimension 4, metric cosine, aws us-east-1; asked for dimension 8,"
        " metric cosine, aws us-east-1: refusing to adopt it (choose another name, or delete it yourself)"
    )


def test_an_adopted_index_keeps_its_deletion_protection_and_its_own_tags_through_create_and_updates(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    from pinecone import ServerlessSpec

    # GIVEN someone's index, protected and tagged by its owner
    pc.create_index(
        "relay-index",
        dimension=8,
        metric="cosine",
        spec=ServerlessSpec(cloud="aws", region="us-east-1"),
        deletion_protection="enabled",
        tags={"owner": "search-team"},
    )

    # WHEN the stack adopts it with protection off and its own tags, then updates those tags twice
    asked = PROPERTIES | {"DeletionProtection": "false", "Tags": {"stack": "relay"}}
    run(pinecone_emulator, catcher, event("Create", catcher, asked))
    adopted_id = catcher.bodies[0]["PhysicalResourceId"]
    more = asked | {"Tags": {"stack": "relay", "env": "prod"}}
    run(
        pinecone_emulator,
        catcher,
        event("Update", catcher, more, PhysicalResourceId=adopted_id, OldResourceProperties=asked),
    )
    after_first_update = pc.describe_index("relay-index")
    run(
        pinecone_emulator,
        catcher,
        event("Update", catcher, asked, PhysicalResourceId=adopted_id, OldResourceProperties=more),
    )

    # THEN the physical id says "adopted" and never changes (CloudFormation sees no replacement)
    created, updated, reverted = catcher.bodies
    assert [b["Status"] for b in catcher.bodies] == ["SUCCESS"] * 3
    assert adopted_id == "adopted:relay-index"
    assert (created["Data"]["Adopted"], updated["Data"]["Adopted"]) == ("true", "true")
    assert updated["PhysicalResourceId"] == reverted["PhysicalResourceId"] == adopted_id
    # AND protection was never lowered; the owner's tag was kept, the stack's own came and went
    assert after_first_update.tags == {"owner": "search-team", "stack": "relay", "env": "prod"}
    model = pc.describe_index("relay-index")
    assert (model.deletion_protection, model.tags) == ("enabled", {"owner": "search-team", "stack": "relay"})


def test_an_adopted_index_is_kept_by_the_rollback_of_the_first_deploy_and_by_stack_delete(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    from pinecone import ServerlessSpec

    # GIVEN an index without deletion protection that the stack adopts, with Retain off
    pc.create_index("relay-index", dimension=8, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    pc.Index(name="relay-index").upsert(vectors=[("kept", [1.0] * 8)], namespace="ns")
    not_retained = PROPERTIES | {"Retain": "false", "DeletionProtection": "false"}
    run(pinecone_emulator, catcher, event("Create", catcher, not_retained))
    adopted_id = catcher.bodies[0]["PhysicalResourceId"]

    # WHEN another resource fails and CloudFormation rolls back (a Delete), and later the stack is deleted
    run(pinecone_emulator, catcher, event("Delete", catcher, not_retained, PhysicalResourceId=adopted_id))
    run(pinecone_emulator, catcher, event("Delete", catcher, not_retained, PhysicalResourceId=adopted_id))

    # THEN both answer SUCCESS and the index, with its records, is still there
    _, rollback, stack_delete = catcher.bodies
    for body in (rollback, stack_delete):
        assert body["Status"] == "SUCCESS"
        assert body["Reason"].startswith("kept: adopted index relay-index")
    assert pc.has_index("relay-index")
    assert pc.Index(name="relay-index").describe_index_stats().total_vector_count == 1


def test_the_rollback_of_a_refused_change_succeeds(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    # GIVEN an Update refused because it asked for another dimension
    run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES))
    bigger = PROPERTIES | {"Dimension": "16"}
    run(
        pinecone_emulator,
        catcher,
        event("Update", catcher, bigger, PhysicalResourceId="relay-index", OldResourceProperties=PROPERTIES),
    )

    # WHEN CloudFormation rolls back: an Update asking for the index as it is, the refused one as "old"
    run(
        pinecone_emulator,
        catcher,
        event("Update", catcher, PROPERTIES, PhysicalResourceId="relay-index", OldResourceProperties=bigger),
    )

    # THEN the rollback succeeds with the same physical id (were it refused, the stack would be UPDATE_ROLLBACK_FAILED)
    _, refused, rollback = catcher.bodies
    assert refused["Status"] == "FAILED"
    assert (rollback["Status"], rollback["PhysicalResourceId"]) == ("SUCCESS", "relay-index")
    assert pc.describe_index("relay-index").dimension == 8


def test_update_changes_tags_and_protection_in_place_and_refuses_a_new_dimension(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES))
    changed = PROPERTIES | {"DeletionProtection": "true", "Tags": {"env": "prod"}}
    run(
        pinecone_emulator,
        catcher,
        event("Update", catcher, changed, PhysicalResourceId="relay-index", OldResourceProperties=PROPERTIES),
    )
    bigger = changed | {"Dimension": "16"}
    run(
        pinecone_emulator,
        catcher,
        event("Update", catcher, bigger, PhysicalResourceId="relay-index", OldResourceProperties=changed),
    )

    _, updated, refused = catcher.bodies
    assert updated["Status"] == "SUCCESS"
    model = pc.describe_index("relay-index")
    assert (model.deletion_protection, model.tags) == ("enabled", {"env": "prod"})
    assert refused["Status"] == "FAILED"
    assert refused["PhysicalResourceId"] == "relay-index"  # unchanged: CloudFormation rolls back
    assert "cannot change to dimension 16" in refused["Reason"]
    assert pc.describe_index("relay-index").dimension == 8


def test_delete_honours_deletion_protection_and_retain(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, pc: Pinecone
) -> None:
    protected = PROPERTIES | {"DeletionProtection": "true"}
    run(pinecone_emulator, catcher, event("Create", catcher, protected))

    run(pinecone_emulator, catcher, event("Delete", catcher, protected, PhysicalResourceId="relay-index"))
    run(
        pinecone_emulator,
        catcher,
        event("Delete", catcher, PROPERTIES | {"Retain": "true"}, PhysicalResourceId="relay-index"),
    )
    pc.configure_index("relay-index", deletion_protection="disabled")
    run(pinecone_emulator, catcher, event("Delete", catcher, PROPERTIES, PhysicalResourceId="relay-index"))
    run(pinecone_emulator, catcher, event("Delete", catcher, PROPERTIES, PhysicalResourceId="relay-index"))

    _, refused, kept, deleted, again = catcher.bodies
    assert refused["Status"] == "FAILED"
    assert refused["Reason"] == (  # in the stack's terms (`vector-relay index delete` says it in the command's)
        "index relay-index has deletion protection enabled, so it was not deleted: turn DeletionProtection off first, "
        "or keep the index (Retain)"
    )
    assert (kept["Status"], kept["Reason"]) == ("SUCCESS", "kept index relay-index (Retain)")
    assert (deleted["Status"], deleted["Reason"]) == ("SUCCESS", "deleted index relay-index")
    assert (again["Status"], again["Reason"]) == ("SUCCESS", "index relay-index was already gone")
    assert not pc.has_index("relay-index")


def test_bad_properties_and_a_failed_create_s_delete_are_answered(
    pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher
) -> None:
    run(pinecone_emulator, catcher, event("Create", catcher, PROPERTIES | {"Dimension": "0", "Metric": "manhattan"}))
    failed_id = catcher.bodies[0]["PhysicalResourceId"]
    run(pinecone_emulator, catcher, event("Delete", catcher, PROPERTIES, PhysicalResourceId=failed_id))

    created, deleted = catcher.bodies
    assert created["Status"] == "FAILED"
    assert created["PhysicalResourceId"] == f"{FAILED_PREFIX}request-create"  # nothing was made
    assert created["Reason"] == (
        "Dimension '0' must be a whole number from 1 to 20000 (empty: sparse); "
        "Metric 'manhattan' must be one of cosine, dotproduct, euclidean"
    )
    assert (deleted["Status"], deleted["Reason"]) == ("SUCCESS", "nothing was created, so nothing to delete")


def test_the_function_answers_even_when_it_cannot_read_the_key(
    aws: str, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a secret that does not exist: the handler raises before it reaches Pinecone
    monkeypatch.setenv("PINECONE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    context = FakeLambdaContext(remaining_ms=60_000)

    index_app.lambda_handler(event("Create", catcher, PROPERTIES), context)  # type: ignore[arg-type]

    [body] = catcher.bodies
    assert body["Status"] == "FAILED"
    assert "(ResourceNotFoundException) when calling the GetSecretValue operation" in body["Reason"]


def test_the_function_creates_the_index_with_the_workers_secret(
    aws: str, pinecone_emulator: EmulatorHandle, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = json.dumps({"api_key": pinecone_emulator.api_key})
    arn = boto3.client("secretsmanager").create_secret(Name="pinecone-api-key", SecretString=secret)["ARN"]
    monkeypatch.setenv("PINECONE_SECRET_ARN", arn)
    monkeypatch.setenv("PINECONE_CONTROL_HOST", pinecone_emulator.url)

    index_app.lambda_handler(event("Create", catcher, PROPERTIES), FakeLambdaContext(remaining_ms=60_000))  # type: ignore[arg-type]

    [body] = catcher.bodies
    assert (body["Status"], body["Data"]["Host"]) == ("SUCCESS", pinecone_emulator.index_host("relay-index"))
    assert pinecone_emulator.api_key not in json.dumps(body)


def test_a_secret_still_holding_the_placeholder_fails_with_what_to_do(
    aws: str, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    placeholder = json.dumps({"api_key": "set-me", "key_id": "", "project_id": ""})  # template.yaml's SecretString
    arn = boto3.client("secretsmanager").create_secret(Name="fresh", SecretString=placeholder)["ARN"]
    monkeypatch.setenv("PINECONE_SECRET_ARN", arn)

    index_app.lambda_handler(event("Create", catcher, PROPERTIES), FakeLambdaContext(remaining_ms=60_000))  # type: ignore[arg-type]

    [body] = catcher.bodies
    assert body["Status"] == "FAILED"
    assert "still holds the template's placeholder" in body["Reason"]
    assert "ExistingApiKeySecretArn" in body["Reason"]
