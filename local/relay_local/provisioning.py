"""Create the template's queues, secrets, parameters, table, bucket, alarms and dashboard in moto's server.

Every property comes from template.yaml (through :class:`LocalTemplate`), so a change there (a
visibility timeout, a redrive policy, a retention period, a key schema) changes the local stack
too. Resources that do nothing on one machine (IAM, log groups, layers, the Lambda permission) are
listed as skipped rather than imitated.

The dashboard is put with its body resolved as CloudFormation would (``vector-relay dashboard``
reads it back and draws it), the alarms with ``PutMetricAlarm``: ``DescribeAlarms`` lists them, but
moto never evaluates one (they stay ``INSUFFICIENT_DATA`` or wherever ``SetAlarmState`` puts them).

The rotation schedule enables rotation on its secret with the template's rotation function, as
CloudFormation does. moto's ``RotateSecret`` accepts only the ARN of a function its Lambda knows,
and moto runs no Lambda code: the function is registered there as a stand-in (moto's Lambda
without Docker), and ``make rotate`` (:mod:`relay_local.rotation`) invokes the real one.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from relay_local.cloudformation import FunctionSpec, LocalTemplate, PhysicalResource, TemplateError

# CloudFormation AWS::SQS::Queue properties that are SQS queue attributes under the same name.
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DelaySeconds",
    "FifoQueue",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)
CREATED_TYPES = (
    "AWS::SQS::Queue",
    "AWS::SecretsManager::Secret",
    "AWS::SSM::Parameter",
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::SecretsManager::RotationSchedule",  # rotation enabled on the secret; `make rotate` runs one
    "AWS::CloudWatch::Alarm",  # listed by DescribeAlarms; moto never evaluates them
    "AWS::CloudWatch::Dashboard",  # `vector-relay dashboard` draws it
)
# CloudFormation AWS::CloudWatch::Alarm properties that PutMetricAlarm takes under the same name, and their types.
_ALARM_PROPERTIES: dict[str, type] = {
    "AlarmDescription": str,
    "ActionsEnabled": bool,
    "AlarmActions": list,
    "OKActions": list,
    "InsufficientDataActions": list,
    "Namespace": str,
    "MetricName": str,
    "Dimensions": list,
    "Statistic": str,
    "ExtendedStatistic": str,
    "Period": int,
    "Unit": str,
    "EvaluationPeriods": int,
    "DatapointsToAlarm": int,
    "Threshold": float,
    "ComparisonOperator": str,
    "TreatMissingData": str,
    "EvaluateLowSampleCountPercentile": str,
}
MODELLED_TYPES = (
    "AWS::Serverless::Function",  # run by the local stack's pollers and runtimes
    "Custom::PineconeIndex",  # carried out by the index function's own code, in process (LocalStack._create_index)
)


_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}

# A stopped local stack should be noticed in seconds, not after botocore's default retries.
_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=30)


@dataclass(frozen=True)
class CreatedResource:
    logical_id: str
    resource_type: str
    physical_id: str
    summary: str


def aws_client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for moto's server (fake credentials: moto accepts any)."""
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's documented fake credentials
        config=_CONFIG,
    )


class Provisioner:
    """Creates the template's resources in order, recording what ``Ref``/``Fn::GetAtt`` answer."""

    def __init__(self, template: LocalTemplate, endpoint_url: str) -> None:
        self.template = template
        self.endpoint_url = endpoint_url
        self.created: list[CreatedResource] = []
        self.skipped: list[tuple[str, str]] = []
        self.moto_lambda_config: dict[str, Any] | None = None  # moto's Lambda setting before this stack changed it

    def client(self, service: str) -> Any:
        return aws_client(service, self.endpoint_url, self.template.region)

    def provision(self) -> list[CreatedResource]:
        t = self.template
        queues = t.resources_of_type("AWS::SQS::Queue")
        # Dead-letter queues first: a redrive policy names its target's ARN.
        for logical_id in sorted(queues, key=lambda q: "RedrivePolicy" in t.properties(q)):
            self._queue(logical_id)
        for logical_id in t.resources_of_type("AWS::SecretsManager::Secret"):
            self._secret(logical_id)
        for logical_id in t.resources_of_type("AWS::SSM::Parameter"):
            self._parameter(logical_id)
        for logical_id in t.resources_of_type("AWS::DynamoDB::Table"):
            self._table(logical_id)
        for logical_id in t.resources_of_type("AWS::S3::Bucket"):
            self._bucket(logical_id)
        for spec in t.functions():
            t.physical[spec.logical_id] = PhysicalResource(
                ref=t.function_name(spec), attributes={"Arn": t.function_arn(spec)}
            )
        for logical_id in t.resources_of_type("AWS::SecretsManager::RotationSchedule"):
            self._rotation_schedule(logical_id)
        # After the queues and functions: the alarms and the dashboard name them.
        for logical_id in t.resources_of_type("AWS::CloudWatch::Alarm"):
            self._alarm(logical_id)
        for logical_id in t.resources_of_type("AWS::CloudWatch::Dashboard"):
            self._dashboard(logical_id)
        for logical_id, resource in t.resources.items():
            kind = str(resource.get("Type"))
            if kind not in CREATED_TYPES and kind not in MODELLED_TYPES:
                self.skipped.append((logical_id, kind))
        return self.created

    # ------------------------------------------------------------------ SQS
    def create_queue(self, name: str, attributes: dict[str, str]) -> tuple[str, str]:
        """Create (or update) a queue; its URL and ARN."""
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return str(url), str(arn)

    def _queue(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        name = str(properties.get("QueueName") or t.default_name(logical_id))
        attributes = {key: _attribute(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties}
        if "RedrivePolicy" in properties:
            policy = properties["RedrivePolicy"]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": policy["deadLetterTargetArn"],
                    "maxReceiveCount": int(policy["maxReceiveCount"]),
                }
            )
        url, arn = self.create_queue(name, attributes)
        t.physical[logical_id] = PhysicalResource(ref=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})
        details = [f"visibility {attributes.get('VisibilityTimeout', '30')} s"]
        details.append(f"retention {int(attributes.get('MessageRetentionPeriod', '345600')) // 3600} h")
        if "RedrivePolicy" in properties:
            target = properties["RedrivePolicy"]["deadLetterTargetArn"].rsplit(":", 1)[1]
            details.append(f"redrive to {target} after {properties['RedrivePolicy']['maxReceiveCount']} receives")
        self.created.append(CreatedResource(logical_id, "AWS::SQS::Queue", url, ", ".join(details)))

    # ------------------------------------------------------------------ Secrets Manager
    def _secret(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        if "GenerateSecretString" in properties:
            raise TemplateError(f"{logical_id}: GenerateSecretString is not supported by the local stack")
        name = str(properties.get("Name") or t.default_name(logical_id))
        arn = self.client("secretsmanager").create_secret(
            Name=name, Description=str(properties.get("Description", "")), SecretString=properties["SecretString"]
        )["ARN"]
        t.physical[logical_id] = PhysicalResource(ref=str(arn), attributes={"Id": str(arn)})
        self.created.append(CreatedResource(logical_id, "AWS::SecretsManager::Secret", str(arn), f"name {name}"))

    def put_secret_value(self, logical_id: str, value: dict[str, str]) -> None:
        """A new AWSCURRENT value, as an operator does after deploying (README "Deploy", step 1)."""
        arn = self.template.physical[logical_id].ref
        self.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps(value))

    def _rotation_schedule(self, logical_id: str) -> None:
        """Rotation enabled on the secret with the template's function, as CloudFormation's RotationSchedule does.

        CloudFormation calls ``RotateSecret`` with ``RotateImmediately`` = ``RotateImmediatelyOnUpdate``;
        locally it is always false (the first rotation is ``make rotate``'s): Secrets Manager then only
        tests the configuration, with an AWSPENDING version it removes afterwards. moto keeps that
        label (and would refuse nothing, but the rotation function would take it for a rotation in
        progress), so it is removed here. moto needs ``AutomaticallyAfterDays`` to report
        ``RotationEnabled``: the template's ``ScheduleExpression`` is translated (it never fires locally).
        """
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        secret_arn, function_arn = str(properties["SecretId"]), str(properties["RotationLambdaARN"])
        spec = next((s for s in t.functions() if t.function_arn(s) == function_arn), None)
        if spec is None:
            raise TemplateError(f"{logical_id}: RotationLambdaARN {function_arn} is not a function of the template")
        self.register_function_stand_in(spec)
        schedule = str((properties.get("RotationRules") or {}).get("ScheduleExpression") or "rate(30 days)")
        secrets = self.client("secretsmanager")
        secrets.rotate_secret(
            SecretId=secret_arn,
            RotationLambdaARN=function_arn,
            RotationRules={"AutomaticallyAfterDays": schedule_days(schedule)},
            RotateImmediately=False,
        )
        stages = secrets.describe_secret(SecretId=secret_arn).get("VersionIdsToStages", {})
        for version, labels in stages.items():
            if "AWSPENDING" in labels:
                secrets.update_secret_version_stage(
                    SecretId=secret_arn, VersionStage="AWSPENDING", RemoveFromVersionId=version
                )
        t.physical[logical_id] = PhysicalResource(ref=secret_arn)
        summary = f"rotation enabled with {spec.logical_id}, {schedule} (never fires locally: `make rotate` runs one)"
        self.created.append(CreatedResource(logical_id, "AWS::SecretsManager::RotationSchedule", secret_arn, summary))

    def register_function_stand_in(self, spec: FunctionSpec) -> None:
        """The function in moto's Lambda, so that APIs naming its ARN accept it; moto runs none of its code.

        moto's Lambda is switched to its Docker-less backend first (``/moto-api/config``): with Docker it
        would try to run the stand-in's empty code in a container; without it an invocation answers at
        once and does nothing. The setting is moto's, process-wide: :meth:`restore_moto_config` puts it back.
        """
        if self.moto_lambda_config is None:
            self.moto_lambda_config = dict(self._moto_config()["lambda"])
            self._moto_config({"lambda": {"use_docker": False}})
        t = self.template
        iam = self.client("iam")
        role = t.properties(spec.logical_id).get("Role")
        target = role.get("Fn::GetAtt") if isinstance(role, dict) else None
        role_id = (target[0] if isinstance(target, list) else str(target).split(".", 1)[0]) if target else ""
        role_name = t.default_name(role_id or f"{spec.logical_id}Role")[:64]
        trust = _LAMBDA_TRUST
        if role_id in t.resources:
            trust = t.resolve(t.properties(role_id).get("AssumeRolePolicyDocument")) or _LAMBDA_TRUST
        try:
            role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("README", "a stand-in: the local stack runs the function's CodeUri under awslambdaric\n")
        functions = self.client("lambda")
        with contextlib.suppress(functions.exceptions.ResourceConflictException):  # an earlier stack on this moto
            functions.create_function(
                FunctionName=t.function_name(spec),
                Runtime=spec.runtime,
                Role=role_arn,
                Handler=spec.handler,
                Code={"ZipFile": code.getvalue()},
                Timeout=spec.timeout_seconds,
                MemorySize=spec.memory_mb,
            )

    def _moto_config(self, change: dict[str, Any] | None = None) -> dict[str, Any]:
        """moto's server-wide settings (``/moto-api/config``), after applying ``change`` if given."""
        request = urllib.request.Request(  # noqa: S310 - the local stack's own moto endpoint
            f"{self.endpoint_url}/moto-api/config",
            data=None if change is None else json.dumps(change).encode(),
            method="GET" if change is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http://127.0.0.1
            return dict(json.loads(response.read()))

    def restore_moto_config(self) -> None:
        """Put moto's Lambda setting back as it was (tests share moto's process-wide state with the stack)."""
        if self.moto_lambda_config is not None:
            self._moto_config({"lambda": self.moto_lambda_config})
            self.moto_lambda_config = None

    # ------------------------------------------------------------------ CloudWatch
    def _alarm(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        name = str(properties.pop("AlarmName", None) or t.default_name(logical_id))
        unknown = sorted(set(properties) - set(_ALARM_PROPERTIES))
        if unknown:
            raise TemplateError(f"{logical_id}: alarm properties the local stack does not create: {unknown}")
        arguments = {key: _alarm_argument(_ALARM_PROPERTIES[key], value) for key, value in properties.items()}
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **arguments)
        t.physical[logical_id] = PhysicalResource(ref=name, attributes={"Arn": t.arn("cloudwatch", f"alarm:{name}")})
        statistic = properties.get("Statistic") or properties.get("ExtendedStatistic")
        metric = f"{properties.get('Namespace')} {properties.get('MetricName')}"
        summary = (
            f"{metric} {statistic} over {properties.get('Period')} s {properties.get('ComparisonOperator')} "
            f"{properties.get('Threshold')} (never evaluated locally)"
        )
        self.created.append(CreatedResource(logical_id, "AWS::CloudWatch::Alarm", name, summary))

    def _dashboard(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        name = str(properties.get("DashboardName") or t.default_name(logical_id))
        body = str(properties["DashboardBody"])
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=body)
        t.physical[logical_id] = PhysicalResource(ref=name)
        widgets = len(json.loads(body).get("widgets", []))
        summary = f"{widgets} widgets (`vector-relay dashboard --png DIR` draws it)"
        self.created.append(CreatedResource(logical_id, "AWS::CloudWatch::Dashboard", name, summary))

    # ------------------------------------------------------------------ SSM
    def _parameter(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        name = str(properties.get("Name") or t.default_name(logical_id))
        self.client("ssm").put_parameter(
            Name=name,
            Type=str(properties.get("Type", "String")),
            Value=str(properties["Value"]),
            Description=str(properties.get("Description", "")),
            Overwrite=True,
        )
        t.physical[logical_id] = PhysicalResource(ref=name, attributes={"Value": str(properties["Value"])})
        self.created.append(CreatedResource(logical_id, "AWS::SSM::Parameter", name, f"value {properties['Value']}"))

    def put_parameter(self, logical_id: str, value: str) -> None:
        self.client("ssm").put_parameter(Name=self.template.physical[logical_id].ref, Value=value, Overwrite=True)

    # ------------------------------------------------------------------ DynamoDB
    def _table(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        name = str(properties.get("TableName") or t.default_name(logical_id))
        dynamodb = self.client("dynamodb")
        arguments: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
            "BillingMode": properties.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in properties:
            arguments["ProvisionedThroughput"] = {k: int(v) for k, v in properties["ProvisionedThroughput"].items()}
        if "SSESpecification" in properties:
            arguments["SSESpecification"] = {"Enabled": bool(properties["SSESpecification"].get("SSEEnabled"))}
        arn = dynamodb.create_table(**arguments)["TableDescription"]["TableArn"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        recovery = properties.get("PointInTimeRecoverySpecification")
        if recovery and recovery.get("PointInTimeRecoveryEnabled"):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        t.physical[logical_id] = PhysicalResource(ref=name, attributes={"Arn": str(arn)})
        keys = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in properties["KeySchema"])
        self.created.append(CreatedResource(logical_id, "AWS::DynamoDB::Table", name, f"key {keys}"))

    # ------------------------------------------------------------------ S3
    def _bucket(self, logical_id: str) -> None:
        t = self.template
        properties = t.resolve(t.properties(logical_id))
        name = str(properties.get("BucketName") or t.default_name(logical_id)).lower()
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        encryption = properties.get("BucketEncryption")
        if encryption:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [_encryption_rule(rule) for rule in encryption["ServerSideEncryptionConfiguration"]]
                },
            )
        if "PublicAccessBlockConfiguration" in properties:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    k: bool(v) for k, v in properties["PublicAccessBlockConfiguration"].items()
                },
            )
        if "OwnershipControls" in properties:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=properties["OwnershipControls"])
        rules = (properties.get("LifecycleConfiguration") or {}).get("Rules") or []
        if rules:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(rule) for rule in rules]}
            )
        t.physical[logical_id] = PhysicalResource(
            ref=name, attributes={"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}
        )
        summary = f"expires objects after {rules[0]['ExpirationInDays']} day(s)" if rules else "no lifecycle rules"
        self.created.append(CreatedResource(logical_id, "AWS::S3::Bucket", name, summary))


def schedule_days(expression: str) -> int:
    """``AutomaticallyAfterDays`` for a ``ScheduleExpression`` (moto reports rotation enabled only with it)."""
    rate = re.fullmatch(r"rate\((\d+) (hours?|days?)\)", expression.strip())
    if rate is None:  # cron(...): the schedule never fires locally anyway
        return 1
    count = int(rate.group(1))
    days = count if rate.group(2).startswith("day") else count // 24
    return min(max(days, 1), 1000)


def _alarm_argument(kind: type, value: Any) -> Any:
    """A resolved alarm property as PutMetricAlarm takes it (a parameter's "true" is a bool there)."""
    if kind is bool:
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return kind(value)


def _attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _encryption_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's ServerSideEncryptionRule in the S3 API's shape."""
    translated = {k: v for k, v in rule.items() if k != "ServerSideEncryptionByDefault"}
    if "ServerSideEncryptionByDefault" in rule:
        translated["ApplyServerSideEncryptionByDefault"] = rule["ServerSideEncryptionByDefault"]
    return translated


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape in the S3 API's shape (the parts the template uses)."""
    translated: dict[str, Any] = {"Status": rule.get("Status", "Enabled"), "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        translated["ID"] = rule["Id"]
    if "ExpirationInDays" in rule:
        translated["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    return translated
