"""Rotation's sweep of retired keys revokes only keys of its own secret, and only with a known retirement time.

Two deployments (stack A: the pipeline's secret and marker; stack B: a second secret and marker)
rotate their keys in one emulator project, as staging and prod, or two regions, do in one Pinecone
project. Both run the same rotation function, configured per stack by the environment as
template.yaml does; the test switches the environment between them. Rotations go through moto's
``rotate_secret`` (see test_rotation_steps.py), with a revocation grace of 0 unless a test says
otherwise, so whatever the sweep may revoke it revokes at once.

Keys are held as :class:`Key`, whose ``repr`` leaves the value out, and every check goes through
:class:`Stack`, whose ``repr`` leaves out the fixtures holding credentials: a failed assertion
prints key ids, never a key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from functions.ingest import app as ingest_app
from tests.integration.conftest import SqsDriver
from tests.integration.test_ingest import upsert_body
from tests.integration.test_rotation_steps import MARKER, Rotation, rotation_setup
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.keys.rotation_secret import RotationError, key_name_for
from vector_relay.settings import get_settings

__all__ = ["rotation_setup"]

OTHER_MARKER = "stack-b-rotation-marker"


@dataclass(frozen=True)
class Key:
    """One API key as a secret version stores it; ``repr`` never shows the value."""

    key_id: str
    api_key: str = field(repr=False)

    @classmethod
    def of(cls, secret: dict[str, Any]) -> Key:
        return cls(key_id=secret["key_id"], api_key=secret["api_key"])


@dataclass
class Stack:
    """One deployment: its secret and marker, rotated by the shared rotation driver (steps and errors shared)."""

    marker: str
    rotation: Rotation = field(repr=False)
    monkeypatch: pytest.MonkeyPatch = field(repr=False)

    def select(self) -> None:
        """Configure the functions as this stack's template does (its secret, its marker)."""
        self.monkeypatch.setenv("PINECONE_SECRET_ARN", self.rotation.arn)
        self.monkeypatch.setenv("ROTATION_MARKER_PARAMETER", self.marker)
        get_settings.cache_clear()
        reset_worker_dependencies()

    def rotate(self) -> Key:
        """One scheduled rotation of this stack's secret; the key it made current."""
        self.select()
        return Key.of(self.rotation.secret("AWSCURRENT", self.rotation.rotate()))

    def key(self, stage: str) -> Key:
        return Key.of(self.rotation.secret(stage))

    def set_grace(self, seconds: int) -> None:
        self.rotation.set_grace(seconds, self.monkeypatch)

    def works(self, key: Key) -> bool:
        """A data-plane call (index stats) with the key is answered."""
        return self.rotation.works(key.api_key)

    def exists(self, key: Key) -> bool:
        return self.rotation.key_exists(key.key_id)

    def keys_named(self, name: str) -> list[str]:
        return self.rotation.keys_named(name)

    def refusals(self, key: Key) -> int:
        """Requests the emulator refused with 401 for this key."""
        return int(self.rotation.emulator.control.count(status=401, api_key=key.key_id))

    def ingest_works(self, record_id: str) -> bool:
        """One upsert through this stack's ingest worker, from a cold start, lands with no batch item failure."""
        self.select()
        pipeline = self.rotation.pipeline
        driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
        driver.publish([upsert_body("acme", [record_id])])
        return driver.deliver_once() == {"batchItemFailures": []} and record_id in pipeline.fetch("acme", [record_id])

    def upserts_with(self, key: Key) -> int:
        return int(self.rotation.emulator.control.count(operation="upsert", status=200, api_key=key.key_id))


def leaked(keys: list[Key], text: str) -> list[str]:
    """The ids of the keys whose value appears in ``text``."""
    return [key.key_id for key in keys if key.api_key in text]


@pytest.fixture
def stack_a(rotation_setup: Rotation, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The pipeline's secret and marker, its first key the emulator's initial key."""
    return Stack(MARKER, rotation_setup, monkeypatch)


@pytest.fixture
def stack_b(stack_a: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A second deployment in the same Pinecone project: its own secret (and first key) and marker."""
    r = stack_a.rotation
    project = r.emulator.project_id
    first = r.admin.api_keys.create(project_id=project, name="stack-b-first-key")
    value = {"api_key": first.value, "key_id": first.key.id, "project_id": project}
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="stack-b-pinecone-api-key", SecretString=json.dumps(value))["ARN"]
    boto3.client("ssm").put_parameter(Name=OTHER_MARKER, Value="none", Type="String")
    other = Rotation(dataclasses.replace(r.pipeline, secret_arn=arn), r.function_arn, r.admin, r.steps, r.errors)
    return Stack(OTHER_MARKER, other, monkeypatch)


def test_another_stack_s_rotations_never_revoke_this_stack_s_keys(stack_a: Stack, stack_b: Stack) -> None:
    a, b = stack_a, stack_b
    a_initial = a.key("AWSCURRENT")
    a1 = a.rotate()  # stack A: a1 is current, its initial key previous

    b_first = b.key("AWSCURRENT")
    b1 = b.rotate()
    b.rotate()  # revokes B's own first key, two rotations back
    b3 = b.rotate()  # revokes b1

    # stack A's keys are untouched: its workers keep working, nothing is refused
    assert a.works(a1)
    assert a.works(a_initial)  # A's AWSPREVIOUS: still valid for A's workers that hold it
    assert a.refusals(a1) == 0
    assert a.ingest_works("after-stack-b-rotated")
    assert a.upserts_with(a1) == 1
    # stack B still revokes its own retired keys
    assert not b.exists(b_first)
    assert not b.works(b1)
    assert b.works(b3)

    # and the other way round: stack A's rotations leave stack B's keys alone
    a.rotate()
    a3 = a.rotate()
    assert not a.exists(a_initial)  # A's own keys from two rotations back
    assert not a.works(a1)
    assert a.works(a3)
    assert b.works(b3)
    assert b.works(b.key("AWSPREVIOUS"))
    assert b.refusals(b3) == 0


def test_the_sweep_revokes_this_stack_s_older_keys_and_leaves_another_stack_s_alone(
    stack_a: Stack, stack_b: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = stack_a, stack_b
    a1 = a.rotate()
    b.set_grace(3600)
    b1 = b.rotate()
    b2 = b.rotate()
    b.rotate()  # b1 and b2 are kept: each is inside its hour of grace
    assert b.works(b1)
    b.set_grace(0)
    b.rotate()

    # b1's version has no label any more: found by its name, proven B's by the version that stores it
    assert not b.works(b1)
    assert not b.works(b2)
    assert a.works(a1)
    assert a.refusals(a1) == 0
    left_alone = [vars(rec)["key_ids"] for rec in caplog.records if "minted for another secret" in rec.getMessage()]
    assert left_alone == [[a1.key_id]] * 4  # each of B's four sweeps saw A's key and left it alone


def test_a_key_whose_retirement_time_is_unknown_is_never_revoked(
    stack_a: Stack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    log_level: str,  # and again with every level at DEBUG: no minted key may reach a log either way
) -> None:
    a = stack_a
    r = a.rotation
    sm = boto3.client("secretsmanager")
    fault = r.emulator.control.add_fault("describe_index_stats", status=403)
    with pytest.raises(RotationError, match="failed the index stats call"):
        a.rotate()
    # the runbook's "drop that attempt": its version keeps the key minted for it, never promoted by rotation
    dropped = next(v for v, stages in r.stages().items() if stages == ["AWSPENDING"])
    sm.update_secret_version_stage(SecretId=r.arn, VersionStage="AWSPENDING", RemoveFromVersionId=dropped)
    kept = Key.of(json.loads(sm.get_secret_value(SecretId=r.arn, VersionId=dropped)["SecretString"]))
    r.emulator.control.remove_fault(fault)
    initial = a.key("AWSCURRENT")

    keys = [a.rotate() for _ in range(3)]

    # whether, and when, that key left AWSCURRENT is unknown (an operator may have promoted it by hand): kept
    assert a.keys_named(key_name_for(dropped)) == [kept.key_id]
    assert a.works(kept)
    assert not a.exists(initial)  # what the sweep knows to be retired it still revokes
    assert not a.works(keys[0])
    warnings = [rec for rec in caplog.records if "when it left AWSCURRENT is unknown" in rec.getMessage()]
    assert [vars(rec)["key_id"] for rec in warnings] == [kept.key_id] * 3
    out = capsys.readouterr().out
    counted = [json.loads(line) for line in out.splitlines() if '"KeysKeptRetirementUnknown"' in line]
    assert [metric["KeysKeptRetirementUnknown"] for metric in counted] == [[1]] * 3  # one per finishSecret (EMF)
    assert leaked([kept, initial, *keys], out + caplog.text) == []


def test_a_key_rolled_back_from_by_hand_without_the_marker_is_kept(
    stack_a: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    a = stack_a
    r = a.rotation
    v1 = r.rotate()
    v2 = r.rotate()
    # a rollback that skips the runbook's marker write: the marker still names v2 as current
    boto3.client("secretsmanager").update_secret_version_stage(
        SecretId=r.arn, VersionStage="AWSCURRENT", MoveToVersionId=v1, RemoveFromVersionId=v2
    )
    rolled_back_from = Key.of(r.secret("AWSPREVIOUS", v2))  # Secrets Manager moved AWSPREVIOUS to v2

    a.rotate()

    # v2 was current until a moment ago; the marker cannot say when it left AWSCURRENT, so it is kept
    assert a.works(rolled_back_from)
    kept = [vars(rec)["key_id"] for rec in caplog.records if "when it left AWSCURRENT is unknown" in rec.getMessage()]
    assert kept == [rolled_back_from.key_id]
