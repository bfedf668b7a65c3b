"""The project's template rules hold for template.yaml, and each one catches the mistake it exists for."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from tools.template_rules import check

TEMPLATE = load_template(ROOT / "template.yaml")


def broken(change: Callable[[dict[str, Any]], None]) -> list[str]:
    template = copy.deepcopy(TEMPLATE)
    change(template)
    return [violation.rule for violation in check(template)]


def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def test_template_yaml_breaks_no_rule() -> None:
    assert check(TEMPLATE) == []


def test_short_tags_are_read_as_cloudformation_functions() -> None:
    queue = resources(TEMPLATE)["IngestFunction"]["Properties"]["Events"]["IngestQueueMessages"]["Properties"]["Queue"]
    assert queue == {"Fn::GetAtt": ["IngestQueue", "Arn"]}


def _set_visibility(value: int) -> Callable[[dict[str, Any]], None]:
    def change(template: dict[str, Any]) -> None:
        resources(template)["IngestQueue"]["Properties"]["VisibilityTimeout"] = value

    return change


def test_visibility_below_six_times_the_timeout_plus_window_fails() -> None:
    assert broken(_set_visibility(419)) == ["visibility_timeout"]  # 6 x 60 + 60 = 420
    assert broken(_set_visibility(420)) == []


def test_visibility_rule_uses_the_largest_batching_window_a_parameter_allows() -> None:
    def widen(template: dict[str, Any]) -> None:
        template["Parameters"]["IngestBatchingWindowSeconds"]["MaxValue"] = 120

    assert broken(widen) == ["visibility_timeout"]


def test_function_timeout_from_globals_counts() -> None:
    def drop_timeout(template: dict[str, Any]) -> None:
        del resources(template)["QueryFunction"]["Properties"]["Timeout"]
        template["Globals"]["Function"]["Timeout"] = 60

    assert broken(drop_timeout) == ["visibility_timeout"]


def test_consumed_queue_without_redrive_policy_fails() -> None:
    def drop_redrive(template: dict[str, Any]) -> None:
        del resources(template)["QueryQueue"]["Properties"]["RedrivePolicy"]

    assert broken(drop_redrive) == ["dead_letter_queue"]


def test_dlq_retention_not_longer_than_source_fails() -> None:
    def shorten(template: dict[str, Any]) -> None:
        resources(template)["IngestDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] = 345600

    assert broken(shorten) == ["dlq_retention"]


def test_sqs_event_without_report_batch_item_failures_fails() -> None:
    def drop(template: dict[str, Any]) -> None:
        event = resources(template)["IngestFunction"]["Properties"]["Events"]["IngestQueueMessages"]
        del event["Properties"]["FunctionResponseTypes"]

    assert broken(drop) == ["report_batch_item_failures"]


@pytest.mark.parametrize(
    "change",
    [
        {"MaximumBatchingWindowInSeconds": 0},
        {"BatchSize": 11, "MaximumBatchingWindowInSeconds": 0},
    ],
)
def test_batch_size_above_ten_without_a_window_fails(change: dict[str, Any]) -> None:
    def apply(template: dict[str, Any]) -> None:
        resources(template)["IngestFunction"]["Properties"]["Events"]["IngestQueueMessages"]["Properties"].update(
            change
        )

    assert broken(apply) == ["batching_window"]


def test_a_batch_size_parameter_that_may_exceed_ten_needs_a_window() -> None:
    def raise_query_max(template: dict[str, Any]) -> None:
        template["Parameters"]["QueryBatchSize"]["MaxValue"] = 100

    assert broken(raise_query_max) == ["batching_window"]


def statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The statements of a role's first (always present) inline policy."""
    return resources(template)[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("action", ["*", "s3:*", ["sqs:SendMessage", "sqs:*"]])
def test_wildcard_iam_actions_fail(action: Any) -> None:
    def widen(template: dict[str, Any]) -> None:
        statements(template, "QueryFunctionRole")[-1]["Action"] = action

    assert broken(widen) == ["no_wildcard_actions"]


def test_a_broad_deny_and_the_key_policy_s_account_root_statement_are_not_wildcard_grants() -> None:
    key_policy = resources(TEMPLATE)["RelayKey"]["Properties"]["KeyPolicy"]["Statement"][0]
    assert key_policy["Action"] == "kms:*"  # AWS's default key policy statement: IAM decides who uses the key
    tls = resources(TEMPLATE)["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert (tls["Effect"], tls["Action"]) == ("Deny", "sqs:*")
    assert check(TEMPLATE) == []

    def open_key(template: dict[str, Any]) -> None:
        resources(template)["RelayKey"]["Properties"]["KeyPolicy"]["Statement"][0]["Principal"] = {"AWS": "*"}

    assert broken(open_key) == ["no_wildcard_actions"]


@pytest.mark.parametrize(
    "resource",
    ["*", "arn:aws:sqs:*:*:*", {"Fn::Sub": "arn:${AWS::Partition}:s3:::*"}, ["arn:aws:sqs:us-east-1:1:q", "*"]],
)
def test_iam_statements_on_wildcard_resources_fail(resource: Any) -> None:
    def widen(template: dict[str, Any]) -> None:
        statements(template, "IngestFunctionRole")[-1]["Resource"] = resource

    assert broken(widen) == ["no_wildcard_resources"]


def test_a_function_without_its_own_role_or_a_role_with_managed_policies_fails() -> None:
    def sam_role(template: dict[str, Any]) -> None:
        function = resources(template)["QueryFunction"]["Properties"]
        del function["Role"]
        function["Policies"] = [{"SQSPollerPolicy": {"QueueName": "q"}}]

    def managed(template: dict[str, Any]) -> None:
        resources(template)["QueryFunctionRole"]["Properties"]["ManagedPolicyArns"] = [
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        ]

    assert broken(sam_role) == ["no_managed_policies"]
    assert broken(managed) == ["no_managed_policies"]


def test_a_queue_or_bucket_that_takes_plain_http_fails() -> None:
    def drop_queue_policy(template: dict[str, Any]) -> None:
        del resources(template)["QueryQueuePolicy"]

    def allow_http(template: dict[str, Any]) -> None:
        statement = resources(template)["QueryResultsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
        statement["Condition"]["Bool"]["aws:SecureTransport"] = "true"

    assert broken(drop_queue_policy) == ["secure_transport"]
    assert broken(allow_http) == ["secure_transport"]


def test_the_ingest_role_allows_exactly_the_dynamodb_calls_the_version_guard_makes() -> None:
    source = (ROOT / "shared" / "vector_relay" / "ingest" / "version_guard.py").read_text()
    # IAM governs a transaction's Put by dynamodb:PutItem (there is no TransactWriteItems action; AWS,
    # "Using IAM with DynamoDB transactions"), and the guard's transactions only put
    # botocore's methods called, and the operations named to the JSON client's send (its transport, not a call)
    made = {"".join(part.capitalize() for part in name.split("_")) for name in re.findall(r"_dynamodb\.(\w+)", source)}
    made = (made - {"Send"}) | set(re.findall(r'_send(?:_encoded)?\(\s*"(\w+)"', source))
    assert '"Put": {' in source
    assert not re.search(r'"(Update|Delete|ConditionCheck)": \{', source)
    calls = {"PutItem" if call == "TransactWriteItems" else call for call in made}
    granted = {
        action.removeprefix("dynamodb:")
        for statement in statements(TEMPLATE, "IngestFunctionRole")
        for action in statement["Action"]
        if action.startswith("dynamodb:")
    }
    assert made == {"BatchGetItem", "TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem"}
    assert granted == calls


def test_the_index_function_reads_only_its_secret_and_invokes_only_itself() -> None:
    granted = {
        (action, json.dumps(statement["Resource"], sort_keys=True))
        for statement in statements(TEMPLATE, "PineconeIndexFunctionRole")
        for action in statement["Action"]
    }
    secret = {"Fn::If": ["CreateApiKeySecret", {"Ref": "PineconeApiKeySecret"}, {"Ref": "ExistingApiKeySecretArn"}]}
    lambda_arn = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}"
    itself = {"Fn::Sub": f"{lambda_arn}:function:${{AWS::StackName}}-pinecone-index"}
    function_name = resources(TEMPLATE)["PineconeIndexFunction"]["Properties"]["FunctionName"]
    assert function_name == {"Fn::Sub": "${AWS::StackName}-pinecone-index"}
    assert granted == {
        ("logs:CreateLogStream", json.dumps({"Fn::GetAtt": ["PineconeIndexFunctionLogGroup", "Arn"]})),
        ("logs:PutLogEvents", json.dumps({"Fn::GetAtt": ["PineconeIndexFunctionLogGroup", "Arn"]})),
        ("secretsmanager:GetSecretValue", json.dumps(secret, sort_keys=True)),
        ("lambda:InvokeFunction", json.dumps(itself, sort_keys=True)),
    }


RECEIPT_QUEUES = {
    "Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-tenant-*-receipts"
}


def grants(role: str, condition: str | None = None) -> set[tuple[str, str]]:
    """(action, resource) of every statement of ``role``'s policies, those under ``condition`` included."""
    found = set()
    for policy in resources(TEMPLATE)[role]["Properties"]["Policies"]:
        if "Fn::If" in policy:
            name, when_true, when_false = policy["Fn::If"]
            policy = when_true if name == condition else when_false
        if not isinstance(policy, dict) or "PolicyDocument" not in policy:
            continue
        for statement in policy["PolicyDocument"]["Statement"]:
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            found |= {(action, json.dumps(t, sort_keys=True)) for action in statement["Action"] for t in targets}
    return found


def test_the_ingest_role_sends_write_receipts_to_the_tenants_receipt_queues_and_the_retry_queue_always() -> None:
    retry_queue = {"Fn::GetAtt": ["ReceiptRetryQueue", "Arn"]}
    for condition in ("UseTenantQueues", None):  # receipts need no tenant-bound queues
        granted = grants("IngestFunctionRole", condition)
        assert ("sqs:SendMessage", json.dumps(RECEIPT_QUEUES, sort_keys=True)) in granted
        assert ("sqs:SendMessage", json.dumps(retry_queue, sort_keys=True)) in granted
    ingest = resources(TEMPLATE)["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert ingest["RECEIPT_RETRY_QUEUE_URL"] == {"Ref": "ReceiptRetryQueue"}
    # and only the ingest role may put a receipt on the retry queue, which ReceiptsFunction passes on
    policy = resources(TEMPLATE)["ReceiptRetryQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny = next(s for s in policy if s["Sid"] == "OnlyTheIngestFunctionSends")
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:SendMessage")
    assert deny["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": {"Fn::GetAtt": ["IngestFunctionRole", "Arn"]}}}


def test_the_receipts_function_consumes_its_queue_reads_the_registry_and_sends_to_receipt_queues_only() -> None:
    retry_queue = json.dumps({"Fn::GetAtt": ["ReceiptRetryQueue", "Arn"]})
    log_group = json.dumps({"Fn::GetAtt": ["ReceiptsFunctionLogGroup", "Arn"]})
    registry = json.dumps(
        {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${TenantRegistryParameter}"}
    )
    expected = {
        ("logs:CreateLogStream", log_group),
        ("logs:PutLogEvents", log_group),
        ("sqs:ReceiveMessage", retry_queue),
        ("sqs:DeleteMessage", retry_queue),
        ("sqs:GetQueueAttributes", retry_queue),
        ("sqs:SendMessage", json.dumps(RECEIPT_QUEUES, sort_keys=True)),
        ("ssm:GetParameter", registry),
    }
    assert grants("ReceiptsFunctionRole") == expected
    key = json.dumps({"Fn::GetAtt": ["RelayKey", "Arn"]})
    assert grants("ReceiptsFunctionRole", "UseCustomerManagedKey") == expected | {
        ("kms:Decrypt", key),
        ("kms:GenerateDataKey", key),
        ("kms:DescribeKey", key),
    }
    function = resources(TEMPLATE)["ReceiptsFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["ReceiptsFunctionRole", "Arn"]}
    assert function["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "receipts",
        "POWERTOOLS_TRACE_DISABLED": {"Fn::If": ["TraceFunctions", "false", "true"]},
    }
    [event] = function["Events"].values()
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ReceiptRetryQueue", "Arn"]}


# ---------------------------------------------------------------- who may send, read and be named (docs/security.md)

TENANT = load_template(ROOT / "templates" / "tenant.yaml")


def broken_tenant(change: Callable[[dict[str, Any]], None]) -> list[str]:
    template = copy.deepcopy(TENANT)
    change(template)
    return [violation.rule for violation in check(template)]


def policy_statements(template: dict[str, Any], policy: str) -> list[Any]:
    return resources(template)[policy]["Properties"]["PolicyDocument"]["Statement"]


def without(policy: str, sid: str) -> Callable[[dict[str, Any]], None]:
    def change(template: dict[str, Any]) -> None:
        statements = policy_statements(template, policy)
        statements[:] = [s for s in statements if not (isinstance(s, dict) and s.get("Sid") == sid)]

    return change


def test_tenant_yaml_breaks_no_rule() -> None:
    assert check(TENANT) == []


@pytest.mark.parametrize(
    ("template", "policy", "sid"),
    [
        (TEMPLATE, "IngestDeadLetterQueuePolicy", "OnlyTheRelaySends"),
        (TEMPLATE, "QueryDeadLetterQueuePolicy", "OnlyTheRelaySends"),
        (TEMPLATE, "ReceiptRetryDeadLetterQueuePolicy", "NoOneSends"),
        (TENANT, "DeadLetterQueuesPolicy", "OnlyTheIngestFunctionSends"),
        (TENANT, "DeadLetterQueuesPolicy", "OnlyTheQueryFunctionSends"),
    ],
)
def test_a_dead_letter_queue_anyone_may_send_to_fails(template: dict[str, Any], policy: str, sid: str) -> None:
    changed = copy.deepcopy(template)
    without(policy, sid)(changed)
    assert [v.rule for v in check(changed)] == ["dead_letter_senders"]


def test_a_dead_letter_queue_no_one_sends_to_may_deny_every_sender_but_not_only_some() -> None:
    statement = next(
        s for s in policy_statements(TEMPLATE, "ReceiptRetryDeadLetterQueuePolicy") if s["Sid"] == "NoOneSends"
    )
    assert "Condition" not in statement  # a deny to every principal: stricter than one sparing named ones

    def only_some(template: dict[str, Any]) -> None:
        for s in policy_statements(template, "ReceiptRetryDeadLetterQueuePolicy"):
            if s["Sid"] == "NoOneSends":
                s["Condition"] = {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}

    assert broken(only_some) == ["dead_letter_senders"]


def test_a_dead_letter_queue_that_denies_reading_fails() -> None:
    def deny_reading(template: dict[str, Any]) -> None:
        statements = policy_statements(template, "IngestDeadLetterQueuePolicy")
        statements.append({**statements[-1], "Sid": "NoOneElseReads", "Action": ["sqs:ReceiveMessage"]})

    assert broken(deny_reading) == ["dead_letter_senders"]  # the operator who redrives must receive


def test_a_tenant_reply_queue_readable_without_named_readers_fails() -> None:
    assert "Default" not in TENANT["Parameters"]["ReplyReaderPrincipalArns"]  # readers must be named to deploy

    def only_if_readers_given(template: dict[str, Any]) -> None:
        statements = policy_statements(template, "ReplyQueuePolicy")
        index = next(i for i, s in enumerate(statements) if s.get("Sid") == "OnlyTheTenantsReadersRead")
        statements[index] = {"Fn::If": ["HasReplyReaders", statements[index], {"Ref": "AWS::NoValue"}]}

    assert broken_tenant(only_if_readers_given) == ["reply_queue_readers"]
    assert broken_tenant(without("ReplyQueuePolicy", "OnlyTheTenantsReadersRead")) == ["reply_queue_readers"]


def test_a_tenant_receipt_queue_readable_by_more_than_its_readers_fails() -> None:
    # the receipt queue is a reply queue by the rule's measure: only named principals send, no function reads it
    assert broken_tenant(without("ReceiptQueuePolicy", "OnlyTheTenantsReceiptReadersRead")) == ["reply_queue_readers"]


PRINCIPAL_PARAMETERS = [
    (TENANT, "ProducerPrincipalArns"),
    (TENANT, "ReplyReaderPrincipalArns"),
    (TENANT, "RedrivePrincipalArns"),
    (TENANT, "IngestFunctionRoleArn"),
    (TENANT, "QueryFunctionRoleArn"),
    (TENANT, "ReceiptsFunctionRoleArn"),
    (TENANT, "ReceiptReaderPrincipalArns"),
    (TEMPLATE, "AdditionalReplyQueueArns"),
    (TEMPLATE, "ExistingApiKeySecretArn"),
]


@pytest.mark.parametrize(("template", "name"), PRINCIPAL_PARAMETERS)
@pytest.mark.parametrize(
    "change",
    [
        lambda spec: spec.pop("AllowedPattern"),
        lambda spec: spec.update(AllowedPattern=".+"),
        lambda spec: spec.update(AllowedPattern="^arn:aws:[^,]+$"),
        lambda spec: spec.update(Default="*"),
    ],
    ids=["no-pattern", "any-value", "any-arn", "wildcard-default"],
)
def test_a_principal_or_resource_parameter_that_admits_a_wildcard_fails(
    template: dict[str, Any], name: str, change: Callable[[dict[str, Any]], None]
) -> None:
    changed = copy.deepcopy(template)
    change(changed["Parameters"][name])
    assert "principal_parameters" in [v.rule for v in check(changed)]


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "arn:aws:iam::123456789012:role/*",
        "arn:aws:iam::123456789012:*",
        "arn:aws:iam::*:role/producer",
        "arn:aws:iam::123456789012:role/prod?",
        "arn:aws:iam::123456789012:root",
    ],
)
def test_a_principal_list_refuses_wildcards_at_deploy(value: str) -> None:
    readers = ("ReplyReaderPrincipalArns", "ReceiptReaderPrincipalArns")
    for name in ("ProducerPrincipalArns", *readers, "RedrivePrincipalArns"):
        pattern = TENANT["Parameters"][name]["AllowedPattern"]  # CloudFormation applies it to each item
        assert re.fullmatch(pattern, value) is None, (name, value)
        assert re.fullmatch(pattern, "arn:aws:iam::123456789012:role/team/producer")
        assert re.fullmatch(pattern, "arn:aws:iam::210987654321:user/reader")


def test_object_grants_on_a_whole_bucket_fail() -> None:
    def whole_bucket(template: dict[str, Any]) -> None:
        write = next(s for s in statements(template, "QueryFunctionRole") if s["Sid"] == "WriteOversizedReplies")
        write["Resource"] = {"Fn::Sub": "${QueryResultsBucket.Arn}/*"}

    assert broken(whole_bucket) == ["object_grants_by_prefix"]


# ---------------------------------------------------------------- tracing (docs/operating.md, tracing)

TRACED = ("IngestFunction", "QueryFunction", "ReceiptsFunction")
SEND_TRACES = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_the_tracing_parameter_turns_active_tracing_its_permission_and_the_tracer_on_and_off_together() -> None:
    assert TEMPLATE["Parameters"]["Tracing"]["AllowedValues"] == ["true", "false"]
    assert TEMPLATE["Conditions"]["TraceFunctions"] == {"Fn::Equals": [{"Ref": "Tracing"}, "true"]}
    for name, resource in resources(TEMPLATE).items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        variables = properties.get("Environment", {}).get("Variables", {})
        if name not in TRACED:  # nothing to trace in them: no X-Ray, no permission
            assert "Tracing" not in properties, name
            assert "POWERTOOLS_TRACE_DISABLED" not in variables, name
            continue
        assert properties["Tracing"] == {"Fn::If": ["TraceFunctions", "Active", "PassThrough"]}
        assert variables["POWERTOOLS_TRACE_DISABLED"] == {"Fn::If": ["TraceFunctions", "false", "true"]}
        role = properties["Role"]["Fn::GetAtt"][0]
        traced = {action for action, _ in grants(role, "TraceFunctions") if action.startswith("xray:")}
        assert traced == SEND_TRACES, name
        assert not any(action.startswith("xray:") for action, _ in grants(role)), name  # Tracing=false: none
    assert "Tracing" not in TEMPLATE["Globals"]["Function"]


def test_only_a_statement_of_actions_iam_gives_no_resource_may_name_every_resource() -> None:
    def send_traces(template: dict[str, Any]) -> dict[str, Any]:
        [policy] = [
            p["Fn::If"][1]
            for p in resources(template)["IngestFunctionRole"]["Properties"]["Policies"]
            if "Fn::If" in p and p["Fn::If"][0] == "TraceFunctions"
        ]
        statement: dict[str, Any] = policy["PolicyDocument"]["Statement"][0]
        assert (set(statement["Action"]), statement["Resource"]) == (SEND_TRACES, "*")
        return statement

    def with_more(template: dict[str, Any]) -> None:
        send_traces(template)["Action"].append("xray:GetTraceSummaries")  # a read: may name resources

    def mixed(template: dict[str, Any]) -> None:
        send_traces(template)["Action"].append("sqs:SendMessage")

    assert broken(lambda template: None) == []
    assert broken(with_more) == ["no_wildcard_resources"]
    assert broken(mixed) == ["no_wildcard_resources"]
