"""`make rotate` against a running local stack, run as the Makefile runs it (its own process): the real
rotation function under awslambdaric, its four steps driven as Secrets Manager drives them, while the
stack's pollers serve ingest traffic. A new key becomes AWSCURRENT and the emulator accepts it, the key
it replaced stays valid (revocation after the grace is the function's own logic, tested with its clock
injected in tests/integration/test_rotation_steps.py), and a failed step leaves the current key in place
until the same token finishes the rotation.

The workers' key cache TTL is 1 s here (the template's ApiKeyCacheTtlSeconds) so they follow a new key
at once; the grace is the least the rotation function accepts with it: 1 s + the longest worker timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pinecone_emulator.control import EmulatorControl
from relay_local.cli import main
from relay_local.inspection import namespace_counts, queue_depth
from relay_local.provisioning import aws_client
from relay_local.stack import LocalStack, StackOptions
from relay_local.state_file import StackInfo
from tests.conftest import ROOT, SAMPLE_DIMENSION, reset_moto, wait_until
from vector_relay.pinecone.data_plane import check_api_key
from vector_relay.pinecone.errors import PineconeRequestError

TTL_SECONDS = 1
GRACE_SECONDS = TTL_SECONDS + 60  # the rotation function refuses less: WORKER_MAX_TIMEOUT_SECONDS is 60
ROTATE_CEILING = 300.0  # seconds for one `make rotate`: a verdict, not a race
LAND_CEILING = 180.0
NAMESPACE = "tenant-globex"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto_server_url: str) -> Iterator[LocalStack]:
    """A `make up`-like stack with its pollers and its state file, which `make rotate` finds."""
    reset_moto(moto_server_url)  # in-process moto: nothing an earlier test left may collide with the stack's names
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("local-stack"),
        parameters={
            "IngestBatchingWindowSeconds": "1",
            "ApiKeyCacheTtlSeconds": str(TTL_SECONDS),
            "KeyRevocationGraceSeconds": str(GRACE_SECONDS),
        },
    )
    with LocalStack(options, progress=lambda line: None) as running:
        yield running


@dataclass
class Rotated:
    code: int
    out: str
    err: str
    finished_at: float  # time.monotonic() once the command had exited


def rotate(stack: LocalStack, *args: str) -> Rotated:
    """`make rotate` (TOKEN=... as --token) in its own process."""
    done = subprocess.run(
        [sys.executable, "-m", "relay_local", "rotate", "--state-dir", str(stack.options.state_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=ROTATE_CEILING,
        check=False,
    )
    return Rotated(done.returncode, done.stdout, done.stderr, time.monotonic())


class Secret:
    """The stack's API-key secret, read as the workers read it (tests may see values; output may not)."""

    def __init__(self, info: StackInfo) -> None:
        self.info = info
        self.client = aws_client("secretsmanager", info.aws_endpoint, info.region)
        self.arn = info.outputs["PineconeApiKeySecretArn"]

    def stages(self) -> dict[str, list[str]]:
        return dict(self.client.describe_secret(SecretId=self.arn)["VersionIdsToStages"])

    def version(self, label: str) -> str:
        return next(version for version, labels in self.stages().items() if label in labels)

    def value(self, label: str) -> dict[str, Any]:
        return dict(json.loads(self.client.get_secret_value(SecretId=self.arn, VersionStage=label)["SecretString"]))

    def accepted(self, value: dict[str, Any]) -> bool:
        """The emulator answers the index with this key."""
        try:
            check_api_key(host=self.info.index_host, api_key=value["api_key"], timeout=10)
        except PineconeRequestError:
            return False
        return True


@dataclass
class Traffic:
    """Ingest upserts published to the stack's queue, each record id once."""

    info: StackInfo
    sqs: Any
    ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, label: str) -> None:
        with self.lock:
            record_id = f"{label}-{len(self.ids)}"
            self.ids.append(record_id)
        values = [0.1 + (len(record_id) % 7) / 10] * SAMPLE_DIMENSION
        body = {
            "schema_version": 1,
            "op": "upsert",
            "tenant": "globex",
            "records": [{"id": record_id, "version": 1, "values": values}],
        }
        self.sqs.send_message(QueueUrl=self.info.queues["IngestQueue"], MessageBody=json.dumps(body))

    def landed(self) -> int:
        return namespace_counts(self.info.pinecone_url, self.info.index_name).get(NAMESPACE, 0)


def dead_letters(stack: LocalStack) -> int:
    info = stack.info
    assert info is not None
    return sum(sum(queue_depth(stack.sqs(), url).values()) for url in info.dead_letter_queues.values())


def test_a_rotation_while_the_stack_serves_traffic_loses_nothing_and_the_workers_follow_the_new_key(
    stack: LocalStack,
) -> None:
    info = stack.info
    assert info is not None
    secret, emulator = Secret(info), EmulatorControl(info.pinecone_url)
    traffic = Traffic(info, stack.sqs(), ids=[])
    already = traffic.landed()
    refused_before = emulator.count(status=401) + emulator.count(status=403)
    old_version, old = secret.version("AWSCURRENT"), secret.value("AWSCURRENT")

    # GIVEN traffic before the rotation, carried by the current key
    for _ in range(5):
        traffic.publish("before")
    wait_until(lambda: traffic.landed() == already + 5, "the writes before the rotation land", ceiling=LAND_CEILING)

    # WHEN `make rotate` runs while a producer keeps publishing
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            traffic.publish("during")
            time.sleep(0.1)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        rotated = rotate(stack)
    finally:
        stop.set()
        producer.join(timeout=30)

    # THEN each step ran through the real function, and a new key is AWSCURRENT that the emulator accepts
    assert rotated.code == 0, rotated.out + rotated.err
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        assert f"{step:<13} ok" in rotated.out, rotated.out
    new_version, new = secret.version("AWSCURRENT"), secret.value("AWSCURRENT")
    assert new_version != old_version
    assert new["key_id"] != old["key_id"]
    assert new["key_name"] == f"vector-relay-rotation-{new_version}"
    assert secret.accepted(new)
    assert f"{new['key_id']} (…{new['api_key'][-4:]})" in rotated.out
    # the replaced key is AWSPREVIOUS and still valid (alternating keys); no label is left pending
    assert secret.stages()[old_version] == ["AWSPREVIOUS"]
    assert secret.stages()[new_version] == ["AWSCURRENT"]
    assert secret.accepted(old)
    # no key value is printed
    assert old["api_key"] not in rotated.out + rotated.err
    assert new["api_key"] not in rotated.out + rotated.err

    # AND the workers follow the new key on their own (nothing restarted), with traffic after the rotation
    def new_key_carries_a_write() -> bool:
        traffic.publish("after")
        return emulator.count(operation="upsert", status=200, api_key=new["key_id"]) > 0

    wait_until(new_key_carries_a_write, "a worker writes with the new key", ceiling=LAND_CEILING, poll=1.0)

    # AND every write published before, during and after landed, nothing was dead-lettered or refused
    total = len(traffic.ids)
    assert any(record_id.startswith("during") for record_id in traffic.ids)
    wait_until(
        lambda: traffic.landed() >= already + total or dead_letters(stack) > 0,
        "every write is judged",
        ceiling=LAND_CEILING,
    )
    assert (traffic.landed() - already, dead_letters(stack)) == (total, 0)
    assert emulator.count(status=401) + emulator.count(status=403) == refused_before


def test_two_rotations_in_a_row_keep_the_keys_they_replaced_inside_the_grace(stack: LocalStack) -> None:
    """Revocation once the grace has passed is the function's own logic, tested with its clock injected
    (tests/integration/test_rotation_steps.py); here the local driver runs rotations back to back."""
    info = stack.info
    assert info is not None
    secret = Secret(info)
    replaced = secret.value("AWSCURRENT")

    # GIVEN two rotations in a row: the key the first replaced left AWSCURRENT moments ago
    first = rotate(stack)
    assert first.code == 0, first.out + first.err
    a = secret.value("AWSCURRENT")
    second = rotate(stack)
    assert second.code == 0, second.out + second.err
    b = secret.value("AWSCURRENT")

    # THEN inside its grace it is kept: still valid, and the second rotation revoked nothing
    assert "revoked by this rotation: none" in second.out, second.out
    assert len({replaced["key_id"], a["key_id"], b["key_id"]}) == 3
    assert secret.accepted(replaced)
    assert secret.accepted(a)
    assert secret.accepted(b)
    assert secret.value("AWSPREVIOUS")["key_id"] == a["key_id"]
    for value in (replaced, a, b):
        assert value["api_key"] not in first.out + first.err + second.out + second.err


def test_a_failed_step_keeps_the_current_key_and_the_same_token_finishes_the_rotation(stack: LocalStack) -> None:
    info = stack.info
    assert info is not None
    secret, emulator = Secret(info), EmulatorControl(info.pinecone_url)
    current_version = secret.version("AWSCURRENT")

    # GIVEN the index refuses the pending key in testSecret
    fault = emulator.add_fault("describe_index_stats", status=403)
    try:
        failed = rotate(stack)

        # THEN the rotation stops there, says so in one line and exits 1; the current key stays current
        assert failed.code == 1, failed.out + failed.err
        assert "make rotate: the rotation stopped at testSecret: AWSCURRENT is untouched" in failed.err
        assert "finishSecret" not in failed.out
        token = next(v for v, labels in secret.stages().items() if "AWSPENDING" in labels)
        assert f"make rotate TOKEN={token}" in failed.err
        assert secret.version("AWSCURRENT") == current_version

        # AND a new rotation is refused while that one is unfinished, as Secrets Manager refuses it
        refused = rotate(stack)
        assert refused.code == 1
        assert f"make rotate: a rotation is unfinished: version {token} has AWSPENDING" in refused.err
    finally:
        emulator.remove_fault(fault)
    assert secret.accepted(secret.value("AWSCURRENT"))  # the workers' key was never touched

    # WHEN the cause is gone and the steps run again with the same token
    resumed = rotate(stack, "--token", token)

    # THEN that version becomes AWSCURRENT and nothing is left pending
    assert resumed.code == 0, resumed.out + resumed.err
    assert secret.stages()[token] == ["AWSCURRENT"]
    assert secret.stages()[current_version] == ["AWSPREVIOUS"]
    assert secret.accepted(secret.value("AWSCURRENT"))
    # and running it again is harmless: that rotation finished
    again = rotate(stack, "--token", token)
    assert again.code == 0, again.out + again.err
    assert "that rotation finished" in again.out


def test_make_rotate_without_a_running_stack_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["rotate", "--state-dir", str(tmp_path)])

    assert exit_code == 1
    assert capsys.readouterr().err.startswith("make rotate: no `make up` stack is running in this checkout")
