"""``make rotate``: one rotation of the local stack's Pinecone key secret, run as Secrets Manager runs one.

Secrets Manager's ``RotateSecret`` stages a new version of the secret (its id is the
``ClientRequestToken``) with the label AWSPENDING and no value, then invokes the secret's rotation
function four times, one step after another, with ``Step``, ``SecretId`` (the secret's ARN),
``ClientRequestToken`` and ``RotationToken``; it stops at the first step that fails, leaving
AWSPENDING where it is, and removes AWSPENDING from the version once it is AWSCURRENT.

Against the local stack the two halves come from two places. moto's ``rotate_secret`` stages the
version (no other API creates a version without a value) but runs no Lambda code: the stack
registered a stand-in of the rotation function in moto's Lambda when it enabled rotation
(:meth:`~relay_local.provisioning.Provisioner.register_function_stand_in`), which answers and does
nothing. This module then invokes the template's ``RotateKeyFunction`` itself: the real handler,
under ``awslambdaric`` (:class:`~relay_local.runtime.RuntimeEnvironment`), with the environment
the running ``make up`` gives it, one warm environment for the four steps. Last it removes
AWSPENDING from the promoted version, which moto leaves there.

Output names keys by ``key_id`` and the last four characters of the new key; never a key value.
The workers of the running stack are not told anything: they follow the new key on their own.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from relay_local.aws_metrics import invocation_metrics
from relay_local.metrics_feed import MetricsFeed
from relay_local.provisioning import aws_client
from relay_local.runtime import RuntimeEnvironment
from relay_local.stack import oauth_url
from relay_local.state_file import DEFAULT_STATE_DIR, StackInfo, running_stack

FUNCTION = "rotate_key"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
AWSCURRENT, AWSPENDING, AWSPREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
STEP_DONE = {
    "createSecret": "new key {key} stored as AWSPENDING",
    "setSecret": "pending key checked: same project, a new key id, known to Pinecone",
    "testSecret": "the index answered describe_index_stats with the pending key",
    "finishSecret": "rotation marker set, AWSCURRENT moved to version {token}",
}


class RotationRefused(Exception):
    """The rotation cannot start or go on; the message is the one line that says why and what to do."""


@dataclass(frozen=True)
class StoredKey:
    """What output may say of one version of the secret: never the key itself."""

    version_id: str
    key_id: str
    project_id: str
    tail: str  # the key's last four characters

    def describe(self) -> str:
        return f"{self.key_id or '(no key_id)'} (…{self.tail})"


def command_rotate(*, state_dir: Path = DEFAULT_STATE_DIR, token: str | None = None, out: IO[str] | None = None) -> int:
    """``python -m relay_local rotate [--token T]``: 0 when the secret's AWSCURRENT is the new key, else 1."""
    out = out or sys.stdout
    info = running_stack(state_dir)
    if info is None:
        print("make rotate: no `make up` stack is running in this checkout; start one, then rotate", file=sys.stderr)
        return 1
    try:
        return LocalRotation(info, state_dir / "logs" / f"{FUNCTION}.log", out).run(token)
    except RotationRefused as refused:
        print(f"make rotate: {refused}", file=sys.stderr)
        return 1


class LocalRotation:
    """One rotation of the stack's API-key secret: moto stages the version, the real function runs the steps."""

    def __init__(self, info: StackInfo, log_path: Path, out: IO[str]) -> None:
        self.info = info
        self.log_path = log_path
        self.out = out
        self.secrets = aws_client("secretsmanager", info.aws_endpoint, info.region)
        self.secret_arn = info.outputs.get("PineconeApiKeySecretArn") or info.resources["PineconeApiKeySecret"]

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # ------------------------------------------------------------------ the rotation
    def run(self, token: str | None = None) -> int:
        metadata = self.secrets.describe_secret(SecretId=self.secret_arn)
        function_arn = metadata.get("RotationLambdaARN")
        if not metadata.get("RotationEnabled") or not function_arn:
            raise RotationRefused(
                f"rotation is not enabled on {metadata['Name']}; this `make up` predates `make rotate`: restart it"
            )
        stages: dict[str, list[str]] = metadata.get("VersionIdsToStages", {})
        current = self.stored(_labelled(stages, AWSCURRENT))
        self.say(f"rotating {metadata['Name']}: AWSCURRENT is version {current.version_id}, key {current.describe()}")
        if token is None:
            token = self.start(stages, function_arn)
        elif not self.resume(stages, token):
            return 0
        keys_before = self.project_keys(current.project_id)
        failed = self.run_steps(token)
        if failed is not None:
            print(
                f"make rotate: the rotation stopped at {failed}: AWSCURRENT is untouched (key {current.key_id} stays "
                f"current), version {token} keeps AWSPENDING\n"
                f"  fix the cause (the function's log: {self.log_path}), then run the steps again: "
                f"make rotate TOKEN={token}\n  or drop the attempt: {self.drop_command(token)}",
                file=sys.stderr,
            )
            return 1
        return self.finish(token, current, keys_before)

    def start(self, stages: dict[str, list[str]], function_arn: str) -> str:
        """``RotateSecret``: a fresh token staged as AWSPENDING. Refused while another rotation is unfinished."""
        for version, labels in stages.items():
            if AWSPENDING in labels and AWSCURRENT in labels:  # a finished rotation whose label nobody removed
                self.remove_pending(version)
        unfinished = [v for v, labels in stages.items() if AWSPENDING in labels and AWSCURRENT not in labels]
        if unfinished:
            raise RotationRefused(
                f"a rotation is unfinished: version {unfinished[0]} has AWSPENDING (Secrets Manager refuses a new "
                f"one too)\n  finish it: make rotate TOKEN={unfinished[0]}\n"
                f"  or drop it: {self.drop_command(unfinished[0])}"
            )
        token = str(uuid.uuid4())
        # The function ARN is passed again: moto forgets it (and promotes an empty version) without it.
        self.secrets.rotate_secret(SecretId=self.secret_arn, ClientRequestToken=token, RotationLambdaARN=function_arn)
        self.say(f"  RotateSecret  version {token} staged as AWSPENDING (no value yet)")
        return token

    def resume(self, stages: dict[str, list[str]], token: str) -> bool:
        """Checks for re-running the steps of ``token``; False when that rotation already finished."""
        labels = stages.get(token)
        if labels is None:
            raise RotationRefused(f"the secret has no version {token}")
        if AWSCURRENT in labels:
            if AWSPENDING in labels:
                self.remove_pending(token)
            self.say(f"version {token} is AWSCURRENT already: that rotation finished; nothing to do")
            return False
        if AWSPENDING not in labels:
            raise RotationRefused(f"version {token} is not AWSPENDING: it is no rotation in progress")
        self.say(f"  resuming the rotation of version {token} (every step is safe to repeat)")
        return True

    def run_steps(self, token: str) -> str | None:
        """The four steps through one environment of the function, in order; the step that failed, if one did."""
        config = self.info.runtime_config(FUNCTION)
        self.say(f"  invoking {config.name} (awslambdaric, log: {self.log_path})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        rotation_token = str(uuid.uuid4())  # opaque to the function, as Secrets Manager's is
        with (
            self.log_path.open("a", buffering=1) as log,
            MetricsFeed(self.info.aws_endpoint, self.info.region) as metrics,  # as Lambda's would: its CloudWatch
        ):
            environment = RuntimeEnvironment(config, log=log, on_line=metrics.log_line)
            try:
                for step in STEPS:
                    event = {
                        "Step": step,
                        "SecretId": self.secret_arn,
                        "ClientRequestToken": token,
                        "RotationToken": rotation_token,
                    }
                    result = environment.invoke(event)
                    metrics.publish(invocation_metrics(config.name, result, concurrent=1))
                    seconds = result.duration_ms / 1000
                    if result.outcome != "ok":
                        message = result.payload.get("errorMessage", "") if isinstance(result.payload, dict) else ""
                        self.say(f"  {step:<13} failed ({seconds:.1f} s): {result.error_type}: {message}")
                        return step
                    self.say(f"  {step:<13} ok ({seconds:.1f} s): {self.step_done(step, token)}")
            finally:
                environment.close()
        return None

    def step_done(self, step: str, token: str) -> str:
        key = self.stored(token).describe() if step == "createSecret" else ""
        return STEP_DONE[step].format(key=key, token=token)

    def finish(self, token: str, replaced: StoredKey, keys_before: set[str] | None) -> int:
        stages = self.secrets.describe_secret(SecretId=self.secret_arn).get("VersionIdsToStages", {})
        if AWSCURRENT not in stages.get(token, []):
            print(f"make rotate: finishSecret answered but version {token} is not AWSCURRENT", file=sys.stderr)
            return 1
        if AWSPENDING in stages[token]:
            self.remove_pending(token)  # Secrets Manager does this once the version is current; moto does not
        new = self.stored(token)
        previous_version = _labelled(stages, AWSPREVIOUS)
        previous = self.stored(previous_version) if previous_version else replaced
        self.say(f"rotated: AWSCURRENT is version {token}, key {new.describe()}")
        self.say(f"  AWSPREVIOUS: key {previous.key_id or '(no key_id)'}, still valid (alternating keys)")
        keys_after = self.project_keys(new.project_id)
        if keys_before is not None and keys_after is not None:
            revoked = sorted(keys_before - keys_after)
            others = sorted(keys_after - {new.key_id, previous.key_id})
            self.say(f"  revoked by this rotation: {', '.join(revoked) or 'none'}")
            if others:
                grace = self.function_setting("KEY_REVOCATION_GRACE_SECONDS", "900")
                self.say(
                    f"  other keys of the project still valid: {', '.join(others)}: kept inside their {grace} s "
                    "grace (KEY_REVOCATION_GRACE_SECONDS) or not the function's to revoke; its log says which "
                    "(docs/rotation.md, Revocation)"
                )
        ttl = self.worker_setting("API_KEY_CACHE_TTL_SECONDS", "300")
        self.say(
            f"  the workers move to the new key on their own within {ttl} s (API_KEY_CACHE_TTL_SECONDS), at once "
            "on a 401; nothing to restart"
        )
        return 0

    # ------------------------------------------------------------------ reads
    def stored(self, version: str | None) -> StoredKey:
        """The key a version stores, described without its value."""
        from vector_relay.keys.key_secret import MalformedSecretError, parse_key_secret

        if version is None:
            raise RotationRefused("the secret has no AWSCURRENT version")
        try:
            text = self.secrets.get_secret_value(SecretId=self.secret_arn, VersionId=version).get("SecretString")
            stored = parse_key_secret(text, f"version {version}", required=())
        except (self.secrets.exceptions.ResourceNotFoundException, MalformedSecretError):
            return StoredKey(version, "", "", "????")
        return StoredKey(version, stored.key_id, stored.project_id, stored.api_key[-4:] or "????")

    def drop_command(self, token: str) -> str:
        """The command that drops an unfinished rotation (docs/rotation.md, "A rotation that failed")."""
        return (
            f"aws secretsmanager update-secret-version-stage --secret-id {self.secret_arn} "
            f"--version-stage AWSPENDING --remove-from-version-id {token}"
        )

    def remove_pending(self, version: str) -> None:
        self.secrets.update_secret_version_stage(
            SecretId=self.secret_arn, VersionStage=AWSPENDING, RemoveFromVersionId=version
        )

    def project_keys(self, project_id: str) -> set[str] | None:
        """The ids of the project's API keys (Admin API, the stack's service account); None if unreadable."""
        from vector_relay.keys.key_secret import MalformedSecretError, parse_admin_account
        from vector_relay.pinecone.admin_api import PineconeKeyAdmin
        from vector_relay.pinecone.errors import PineconeRequestError

        try:
            arn = self.info.outputs.get("PineconeAdminSecretArn") or self.info.resources["PineconeAdminSecret"]
            account = parse_admin_account(self.secrets.get_secret_value(SecretId=arn)["SecretString"], arn)
            admin = PineconeKeyAdmin(
                client_id=account.client_id,
                client_secret=account.client_secret,
                host=self.info.pinecone_url,
                oauth_url=oauth_url(self.info.pinecone_url),
            )
        except (
            KeyError,
            MalformedSecretError,
            PineconeRequestError,
            self.secrets.exceptions.ResourceNotFoundException,
        ):
            return None
        try:
            return {key.key_id for key in admin.list_keys(project_id)}
        except PineconeRequestError:
            return None
        finally:
            admin.close()

    def function_setting(self, name: str, default: str) -> str:
        return str(self.info.functions[FUNCTION]["environment"].get(name, default))

    def worker_setting(self, name: str, default: str) -> str:
        worker = self.info.functions.get("ingest") or self.info.functions[FUNCTION]
        return str(worker["environment"].get(name, default))


def _labelled(stages: dict[str, list[str]], label: str) -> str | None:
    return next((version for version, labels in stages.items() if label in labels), None)
