"""The rotation function's entry checks and four steps, driven through moto's own ``rotate_secret``.

moto's ``rotate_secret`` creates the value-less AWSPENDING version and invokes the rotation Lambda
once per step; without Docker it cannot run Lambda code, so its ``LambdaBackend.invoke`` is patched
to call our handler in-process (aws-tooling.md §8.3). Every boto3 call of the handler goes to moto's
server over HTTP; every Pinecone call (Admin API, index stats) to the emulator.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import moto.awslambda.models as moto_lambda
import pytest
from pinecone import Admin

from functions.rotate_key import app as rotate_app
from pinecone_emulator.pytest_plugin import EmulatorHandle
from tests.conftest import FakeLambdaContext
from tests.integration.conftest import Pipeline
from vector_relay.keys import rotation
from vector_relay.keys.key_secret import KeySecret
from vector_relay.keys.rotation_secret import KEY_NAME_PREFIX, RotationDependencies, RotationError, key_name_for
from vector_relay.pinecone.data_plane import check_api_key
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.settings import get_settings

INITIAL_KEY_ID = "initial-key-0"  # the emulator's id for its first --api-key
MARKER = "vector-relay-rotation-marker"


@dataclass
class Rotation:
    """The rotated secret, the admin secret, the marker and a rotation Lambda moto can invoke."""

    pipeline: Pipeline
    function_arn: str
    admin: Admin
    steps: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def emulator(self) -> EmulatorHandle:
        return self.pipeline.emulator

    @property
    def arn(self) -> str:
        return self.pipeline.secret_arn

    def rotate(self) -> str:
        """One scheduled rotation (all four steps); the token. Raises what a step raised."""
        sm = boto3.client("secretsmanager")
        self.errors.clear()
        token = sm.rotate_secret(
            SecretId=self.arn, RotationLambdaARN=self.function_arn, RotationRules={"AutomaticallyAfterDays": 30}
        )["VersionId"]
        if self.errors:
            raise self.errors[0]
        # moto keeps AWSPENDING on the promoted version (AWS removes it) and would refuse the next rotation.
        if "AWSPENDING" in self.stages().get(token, []):
            sm.update_secret_version_stage(SecretId=self.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)
        return token

    def step(self, step: str, token: str) -> None:
        """One step invoked directly, as Secrets Manager does on a retry."""
        rotate_app.lambda_handler(
            {"Step": step, "SecretId": self.arn, "ClientRequestToken": token}, FakeLambdaContext(remaining_ms=60_000)
        )

    def stages(self) -> dict[str, list[str]]:
        return dict(boto3.client("secretsmanager").describe_secret(SecretId=self.arn)["VersionIdsToStages"])

    def secret(self, stage: str = "AWSCURRENT", version: str | None = None) -> dict[str, Any]:
        sm = boto3.client("secretsmanager")
        args: dict[str, Any] = {"SecretId": self.arn, "VersionStage": stage}
        if version:
            args["VersionId"] = version
        return dict(json.loads(sm.get_secret_value(**args)["SecretString"]))

    def marker(self) -> str:
        return str(boto3.client("ssm").get_parameter(Name=MARKER)["Parameter"]["Value"])

    def keys_named(self, name: str) -> list[str]:
        return [k.id for k in self.admin.api_keys.list(project_id=self.emulator.project_id) if k.name == name]

    def key_exists(self, key_id: str) -> bool:
        return key_id in {k.id for k in self.admin.api_keys.list(project_id=self.emulator.project_id)}

    def works(self, value: str) -> bool:
        try:
            check_api_key(host=self.emulator.index_host("relay-test"), api_key=value, timeout=5)
        except PineconeRequestError:
            return False
        return True

    def set_grace(self, seconds: int, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KEY_REVOCATION_GRACE_SECONDS", str(seconds))
        get_settings.cache_clear()


def create_rotation_lambda() -> str:
    role = boto3.client("iam").create_role(RoleName="rotate-key", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "")
    return boto3.client("lambda").create_function(
        FunctionName="rotate-key", Runtime="python3.13", Role=role, Handler="app.lambda_handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]  # fmt: skip


@pytest.fixture
def rotation_setup(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rotation]:
    emulator = pipeline.emulator
    sm = boto3.client("secretsmanager")
    initial = {"api_key": emulator.api_key, "key_id": INITIAL_KEY_ID, "project_id": emulator.project_id}
    sm.put_secret_value(SecretId=pipeline.secret_arn, SecretString=json.dumps(initial))
    account = {"client_id": emulator.client_id, "client_secret": emulator.client_secret}
    admin_arn = sm.create_secret(Name="pinecone-admin", SecretString=json.dumps(account))["ARN"]
    boto3.client("ssm").put_parameter(Name=MARKER, Value="none", Type="String")
    monkeypatch.setenv("PINECONE_ADMIN_SECRET_ARN", admin_arn)
    monkeypatch.setenv("PINECONE_OAUTH_URL", emulator.oauth_url)
    monkeypatch.setenv("ROTATION_MARKER_PARAMETER", MARKER)
    # Revocation at once, to see it happen; coherent only with workers that re-check the key on every
    # invocation and finish at once (rotation refuses a grace below TTL + the longest worker timeout).
    monkeypatch.setenv("KEY_REVOCATION_GRACE_SECONDS", "0")
    monkeypatch.setenv("API_KEY_CACHE_TTL_SECONDS", "0")
    monkeypatch.setenv("WORKER_MAX_TIMEOUT_SECONDS", "0")
    get_settings.cache_clear()
    admin = Admin(
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
        host=emulator.url,
        oauth_url=emulator.oauth_url,
    )
    setup = Rotation(pipeline, create_rotation_lambda(), admin)

    def invoke(self: Any, function_name: str, qualifier: Any, body: str, headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body)
        if setup.errors:  # a failed step ends the rotation, as on AWS
            return b""
        setup.steps.append(event["Step"])
        try:
            rotate_app.lambda_handler(event, FakeLambdaContext(remaining_ms=60_000))
        except Exception as error:
            setup.errors.append(error)
        return b""

    monkeypatch.setattr(moto_lambda.LambdaBackend, "invoke", invoke)
    yield setup
    admin.close()


# ------------------------------------------------------------------------------------ the steps


def test_a_rotation_mints_a_key_named_after_the_token_tests_it_and_promotes_it(rotation_setup: Rotation) -> None:
    r = rotation_setup
    token = r.rotate()

    assert r.steps == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    current = r.secret()
    # testSecret used the new key only, on the data plane
    assert r.emulator.control.count(operation="describe_index_stats", api_key=current["key_id"]) >= 1
    assert current["key_name"] == key_name_for(token) == f"{KEY_NAME_PREFIX}{token}"
    assert current["project_id"] == r.emulator.project_id
    assert r.keys_named(key_name_for(token)) == [current["key_id"]]
    assert r.works(current["api_key"])
    assert "AWSCURRENT" in r.stages()[token]
    assert r.secret("AWSPREVIOUS")["key_id"] == INITIAL_KEY_ID
    assert r.marker() == token
    # alternating keys: the key just replaced stays valid for workers still holding it
    assert r.works(r.emulator.api_key)


def test_the_key_from_two_rotations_back_is_revoked_at_finish(rotation_setup: Rotation) -> None:
    r = rotation_setup
    first = r.secret("AWSCURRENT", r.rotate())
    assert r.works(r.emulator.api_key)
    r.rotate()
    assert not r.works(r.emulator.api_key)  # the initial key, two rotations back
    assert r.works(first["api_key"])  # AWSPREVIOUS stays valid
    r.rotate()
    assert not r.works(first["api_key"])
    assert not r.key_exists(first["key_id"])


def test_a_revocation_pinecone_refuses_does_not_hold_back_the_new_key(
    rotation_setup: Rotation, caplog: pytest.LogCaptureFixture
) -> None:
    r = rotation_setup
    r.rotate()
    r.emulator.control.add_fault("admin_delete_api_key", status=403)
    token = r.rotate()
    assert "AWSCURRENT" in r.stages()[token]
    assert r.works(r.secret()["api_key"])
    assert r.works(r.emulator.api_key)  # not revoked: the error is logged for the operator
    assert "revoking retired keys failed" in caplog.text


def test_a_retired_key_inside_its_grace_is_kept_and_a_later_rotation_revokes_it(
    rotation_setup: Rotation, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rotation_setup
    r.set_grace(3600, monkeypatch)
    k1 = r.secret("AWSCURRENT", r.rotate())
    k2 = r.secret("AWSCURRENT", r.rotate())
    r.rotate()
    assert r.works(r.emulator.api_key)  # each retired key is inside its hour of grace
    assert r.works(k1["api_key"])
    r.set_grace(0, monkeypatch)
    r.rotate()
    assert not r.works(k1["api_key"])  # minted by this function: swept up by a later rotation
    assert not r.works(k2["api_key"])  # two rotations back
    # the initial key was not minted by rotation and has left the secret's labels: left to the operator
    assert r.works(r.emulator.api_key)


def test_create_crashed_after_minting_the_key_is_retried_without_leaving_a_second_key(
    rotation_setup: Rotation, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rotation_setup
    crashes = iter([True])
    real_to_json = KeySecret.to_json

    def crash_once(self: KeySecret) -> str:
        if next(crashes, False):
            raise RuntimeError("the function died after Pinecone minted the key")
        return real_to_json(self)

    monkeypatch.setattr(KeySecret, "to_json", crash_once)
    with pytest.raises(RuntimeError, match="died after"):
        r.rotate()
    token = next(v for v, stages in r.stages().items() if stages == ["AWSPENDING"])
    [orphan] = r.keys_named(key_name_for(token))  # minted, never stored
    assert r.steps == ["createSecret"]

    # Secrets Manager retries: the step finds the orphan by its name, revokes it and mints one key
    r.step("createSecret", token)
    r.step("createSecret", token)  # and once more: the stored key is kept
    pending = r.secret("AWSPENDING", token)
    assert r.keys_named(key_name_for(token)) == [pending["key_id"]]
    assert pending["key_id"] != orphan
    assert not r.key_exists(orphan)
    for step in ("setSecret", "testSecret", "testSecret", "finishSecret"):
        r.step(step, token)
    assert r.secret()["key_id"] == pending["key_id"]
    assert r.works(pending["api_key"])


def test_finish_retried_after_the_label_move_changes_nothing(rotation_setup: Rotation) -> None:
    r = rotation_setup
    r.rotate()
    token = r.rotate()  # the second rotation revokes the initial key
    before = (r.stages(), r.secret(), r.marker())
    history = boto3.client("ssm").get_parameter_history(Name=MARKER)["Parameters"]
    deletes = r.emulator.control.count(operation="admin_delete_api_key")

    for step in ("finishSecret", "finishSecret", "createSecret", "setSecret", "testSecret"):
        r.step(step, token)

    assert (r.stages(), r.secret(), r.marker()) == before
    assert boto3.client("ssm").get_parameter_history(Name=MARKER)["Parameters"] == history
    assert r.emulator.control.count(operation="admin_delete_api_key") == deletes


def test_finish_interrupted_before_the_label_move_is_completed_by_its_retry(
    rotation_setup: Rotation, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rotation_setup
    r.rotate()
    crashes = iter([True])
    real_dependencies = rotation.rotation_dependencies

    class DiesBeforeTheLabelMove:
        def __init__(self, secrets: Any) -> None:
            self._secrets = secrets

        def __getattr__(self, name: str) -> Any:
            return getattr(self._secrets, name)

        def update_secret_version_stage(self, **kwargs: Any) -> Any:
            if kwargs.get("VersionStage") == "AWSCURRENT" and next(crashes, False):
                raise RuntimeError("the function died before moving the label")
            return self._secrets.update_secret_version_stage(**kwargs)

    def dependencies(settings: Any) -> RotationDependencies:
        deps = real_dependencies(settings)
        deps.secrets = DiesBeforeTheLabelMove(deps.secrets)  # type: ignore[assignment]
        return deps

    monkeypatch.setattr(rotation, "rotation_dependencies", dependencies)
    with pytest.raises(RuntimeError, match="before moving"):
        r.rotate()
    token = next(v for v, stages in r.stages().items() if stages == ["AWSPENDING"])
    assert r.marker() == token  # the marker moved first; workers re-check, find the old key current, keep it
    r.step("finishSecret", token)
    assert r.secret()["key_id"] == r.secret("AWSPENDING", token)["key_id"]
    assert "AWSCURRENT" in r.stages()[token]


# ---------------------------------------------------------------------------------- entry checks


@pytest.mark.usefixtures("rotation_setup")
def test_a_secret_other_than_the_configured_one_is_refused() -> None:
    sm = boto3.client("secretsmanager")
    other = sm.create_secret(Name="someone-elses", SecretString=json.dumps({"api_key": "x", "project_id": "p"}))
    with pytest.raises(RotationError, match="not the one this function rotates"):
        rotate_app.lambda_handler(
            {"Step": "createSecret", "SecretId": other["ARN"], "ClientRequestToken": other["VersionId"]},
            FakeLambdaContext(),
        )


def test_a_secret_not_enabled_for_rotation_is_refused(rotation_setup: Rotation) -> None:
    r = rotation_setup
    version = next(iter(r.stages()))
    with pytest.raises(RotationError, match="not enabled for rotation"):
        r.step("createSecret", version)


def test_a_token_that_is_not_a_version_of_the_secret_is_refused(rotation_setup: Rotation) -> None:
    r = rotation_setup
    r.rotate()
    with pytest.raises(RotationError, match="has no version"):
        r.step("createSecret", "00000000-0000-4000-8000-000000000000")


def test_a_version_that_is_not_awspending_is_refused(rotation_setup: Rotation) -> None:
    r = rotation_setup
    r.rotate()
    previous = next(v for v, stages in r.stages().items() if "AWSPREVIOUS" in stages)
    with pytest.raises(RotationError, match="is not AWSPENDING"):
        r.step("finishSecret", previous)


def test_a_pending_key_pinecone_refuses_fails_the_test_step_and_awscurrent_stays(rotation_setup: Rotation) -> None:
    r = rotation_setup
    r.emulator.control.add_fault("describe_index_stats", status=403)
    with pytest.raises(RotationError, match="failed the index stats call"):
        r.rotate()
    assert r.steps == ["createSecret", "setSecret", "testSecret"]
    assert r.secret()["key_id"] == INITIAL_KEY_ID
    assert r.marker() == "none"


def test_a_pending_key_pinecone_no_longer_knows_fails_the_set_step(
    rotation_setup: Rotation, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rotation_setup
    create = rotation.PineconeKeyAdmin.create_key

    def create_then_revoke(self: Any, project_id: str, name: str, roles: Any) -> Any:
        created = create(self, project_id, name, roles)
        r.admin.api_keys.delete(api_key_id=created.info.key_id)
        return created

    monkeypatch.setattr(rotation.PineconeKeyAdmin, "create_key", create_then_revoke)
    with pytest.raises(RotationError, match="does not exist at Pinecone"):
        r.rotate()
    assert r.steps == ["createSecret", "setSecret"]
    assert r.secret()["key_id"] == INITIAL_KEY_ID


# ------------------------------------------------------------------------------------ manual mode


def stage_by_hand(r: Rotation, token: str, **overrides: Any) -> dict[str, Any]:
    """What an operator does in manual mode: mint a key in Pinecone's console, stage it as AWSPENDING."""
    created = r.admin.api_keys.create(project_id=r.emulator.project_id, name="staged-by-hand")
    value = {"api_key": created.value, "key_id": created.key.id, "project_id": r.emulator.project_id, **overrides}
    boto3.client("secretsmanager").put_secret_value(
        SecretId=r.arn, ClientRequestToken=token, SecretString=json.dumps(value), VersionStages=["AWSPENDING"]
    )
    return value


@pytest.fixture
def manual(rotation_setup: Rotation, monkeypatch: pytest.MonkeyPatch) -> Rotation:
    monkeypatch.setenv("ROTATION_MODE", "manual")
    get_settings.cache_clear()
    return rotation_setup


def test_manual_mode_without_a_staged_key_fails_create_and_changes_nothing(manual: Rotation) -> None:
    with pytest.raises(RotationError, match="manual mode: no key is staged"):
        manual.rotate()
    assert manual.secret()["key_id"] == INITIAL_KEY_ID
    assert manual.emulator.control.count(operation="admin_create_api_key") == 0


def test_manual_mode_tests_and_promotes_the_key_an_operator_staged(manual: Rotation) -> None:
    with pytest.raises(RotationError):
        manual.rotate()  # the schedule fired with nothing staged: the reminder to stage a key
    token = "6a1e3a77-50a5-4c0e-9d55-5f2f1e0a0b0c"
    staged = stage_by_hand(manual, token)
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        manual.step(step, token)
    assert manual.secret()["key_id"] == staged["key_id"]
    assert manual.marker() == token
    assert manual.works(manual.emulator.api_key)  # nothing is revoked without the Admin API
    assert manual.emulator.control.count(operation="admin_create_api_key") == 1  # the operator's, only


def test_manual_mode_refuses_a_staged_key_for_another_project(manual: Rotation) -> None:
    token = "0f3c2b1a-1111-4222-8333-944455566677"
    with pytest.raises(RotationError):
        manual.rotate()
    stage_by_hand(manual, token, project_id="another-project")
    manual.step("createSecret", token)
    with pytest.raises(RotationError, match="another project"):
        manual.step("setSecret", token)
    assert manual.secret()["key_id"] == INITIAL_KEY_ID
