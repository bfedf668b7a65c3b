"""templates/tenant.yaml fits the relay: its queue names are the ones the relay's roles may use, its
policies admit only the tenant's producers, and its RegistryEntry output is a registry entry the workers accept."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from vector_relay.query.replies import results_prefix
from vector_relay.tenancy import TenantRegistry

RELAY = load_template(ROOT / "template.yaml")
TENANT = load_template(ROOT / "templates" / "tenant.yaml")
VALUES = {
    "RelayStackName": "relay",
    "Tenant": "acme",
    "Namespace": "tenant-acme",
    "AWS::StackName": "relay",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
}
REPLY_ARN = "arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-replies"


def sub(text: str, extra: dict[str, str] | None = None) -> str:
    values = VALUES | (extra or {})
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)


def queue_names() -> dict[str, str]:
    return {
        logical_id: sub(resource["Properties"]["QueueName"]["Fn::Sub"])
        for logical_id, resource in TENANT["Resources"].items()
        if resource["Type"] == "AWS::SQS::Queue"
    }


def tenant_statements(role: str) -> list[dict[str, Any]]:
    for policy in RELAY["Resources"][role]["Properties"]["Policies"]:
        if isinstance(policy, dict) and "Fn::If" in policy and policy["Fn::If"][0] == "UseTenantQueues":
            return policy["Fn::If"][1]["PolicyDocument"]["Statement"]
    raise AssertionError(f"{role} has no UseTenantQueues policy")


def allowed(role: str, action: str, queue_name: str) -> bool:
    arn = f"arn:aws:sqs:us-east-1:123456789012:{queue_name}"
    for statement in tenant_statements(role):
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action in statement["Action"] and any(fnmatch.fnmatchcase(arn, sub(r["Fn::Sub"])) for r in resources):
            return True
    return False


def test_the_relay_roles_reach_exactly_the_tenant_queues_they_use() -> None:
    names = queue_names()
    assert names == {
        "IngestDeadLetterQueue": "relay-tenant-acme-ingest-dlq",
        "IngestQueue": "relay-tenant-acme-ingest",
        "QueryDeadLetterQueue": "relay-tenant-acme-query-dlq",
        "QueryQueue": "relay-tenant-acme-query",
        "ReplyQueue": "relay-tenant-acme-replies",
    }
    assert allowed("IngestFunctionRole", "sqs:ReceiveMessage", names["IngestQueue"])
    assert allowed("IngestFunctionRole", "sqs:SendMessage", names["IngestDeadLetterQueue"])
    assert not allowed("IngestFunctionRole", "sqs:ReceiveMessage", names["QueryQueue"])
    assert not allowed("IngestFunctionRole", "sqs:SendMessage", names["ReplyQueue"])
    assert allowed("QueryFunctionRole", "sqs:ReceiveMessage", names["QueryQueue"])
    assert allowed("QueryFunctionRole", "sqs:SendMessage", names["ReplyQueue"])
    assert allowed("QueryFunctionRole", "sqs:SendMessage", names["QueryDeadLetterQueue"])
    assert not allowed("QueryFunctionRole", "sqs:ReceiveMessage", names["IngestQueue"])
    # another stack's tenant queues are out of reach
    assert not allowed("IngestFunctionRole", "sqs:ReceiveMessage", "other-tenant-acme-ingest")


def test_the_longest_names_fit_sqs() -> None:
    stack = "s" * 32  # the patterns' limits
    tenant = "t" * 24
    for name in queue_names():
        resource = TENANT["Resources"][name]["Properties"]["QueueName"]["Fn::Sub"]
        assert len(sub(resource, {"RelayStackName": stack, "Tenant": tenant})) <= 80


def test_only_the_tenant_s_producers_may_send_and_only_the_relay_may_answer() -> None:
    resources = TENANT["Resources"]
    for policy in ("IngestQueuePolicy", "QueryQueuePolicy"):
        statements = resources[policy]["Properties"]["PolicyDocument"]["Statement"]
        deny = next(s for s in statements if s["Sid"] == "OnlyTheTenantsProducersSend")
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:SendMessage")
        senders = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
        assert "ProducerPrincipalArns" in json.dumps(senders)
        # the relay's ingest role may send to the ingest queue too (it requeues a busy message), no one else
        assert ("IngestFunctionRoleArn" in json.dumps(senders)) == (policy == "IngestQueuePolicy")
    replies = resources["ReplyQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    forge = next(s for s in replies if isinstance(s, dict) and s.get("Sid") == "OnlyTheRelayAnswers")
    assert forge["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": {"Ref": "QueryFunctionRoleArn"}}}


def test_the_registry_entry_output_is_accepted_by_the_workers() -> None:
    text = TENANT["Outputs"]["RegistryEntry"]["Value"]["Fn::Sub"]
    arns = {
        "IngestQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-ingest",
        "QueryQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-query",
        "ReplyQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/relay-tenant-acme-replies",
    }
    entry = json.loads(sub(text, arns))
    registry = TenantRegistry.from_mapping({"acme": entry, "globex": "tenant-globex"}, source="RegistryEntry")
    assert registry.namespace_for("acme") == "tenant-acme"
    assert registry.bound_tenant(arns["IngestQueue.Arn"]) == "acme"
    assert registry.reply_queues_for("acme", frozenset()) == frozenset({arns["ReplyQueue"]})


def test_a_tenant_s_readers_get_its_bucket_its_prefix_and_a_grant_on_that_prefix_only() -> None:
    outputs = TENANT["Outputs"]
    values = {"QueryResultsBucketName": "relay-queryresultsbucket-abc", "ReplyQueue.Arn": REPLY_ARN}
    assert outputs["QueryResultsBucketName"]["Value"] == {"Ref": "QueryResultsBucketName"}
    assert sub(outputs["QueryResultsPrefix"]["Value"]["Fn::Sub"]) == results_prefix("acme")
    has_key, without_key = (
        json.loads(sub(branch["Fn::Sub"], values | {"KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k"}))
        for branch in outputs["ReplyReaderPolicy"]["Value"]["Fn::If"][1:]
    )
    grants = {(s["Sid"], json.dumps(s["Action"]), s["Resource"]) for s in without_key["Statement"]}
    reads = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    reads += ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    assert grants == {
        ("ReadReplies", json.dumps(reads), REPLY_ARN),
        ("ReadLargeReplies", '"s3:GetObject"', f"arn:aws:s3:::relay-queryresultsbucket-abc/{results_prefix('acme')}*"),
    }
    assert has_key["Statement"][:2] == without_key["Statement"]
    assert has_key["Statement"][2]["Action"] == "kms:Decrypt"
    # the relay writes nowhere else: its query role may put objects under tenants/ only
    put = next(
        s
        for s in RELAY["Resources"]["QueryFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if s["Sid"] == "WriteOversizedReplies"
    )
    assert put["Resource"] == {"Fn::Sub": "${QueryResultsBucket.Arn}/tenants/*"}


def test_only_the_relay_s_roles_send_to_the_dlqs_and_the_named_operators_may_redrive() -> None:
    statements = TENANT["Resources"]["DeadLetterQueuesPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    senders = {
        s["Resource"]["Fn::GetAtt"][0]: s["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
        for s in statements
        if isinstance(s, dict) and s.get("Action") == "sqs:SendMessage"
    }
    assert senders == {
        "IngestDeadLetterQueue": {"Ref": "IngestFunctionRoleArn"},
        "QueryDeadLetterQueue": {"Ref": "QueryFunctionRoleArn"},
    }
    ingest = TENANT["Resources"]["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny = next(s for s in ingest if isinstance(s, dict) and s.get("Sid") == "OnlyTheTenantsProducersSend")
    with_operators, without_operators = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::If"][1:]
    assert "RedrivePrincipalArns" in json.dumps(with_operators)
    assert "RedrivePrincipalArns" not in json.dumps(without_operators)  # no empty ARN pattern when none are named


def test_the_documented_reader_grant_is_the_template_s() -> None:
    page = (ROOT / "docs" / "security.md").read_text()
    documented = re.search(r"<!-- reader-grant:[^>]*-->\n```json\n(.*?)\n```", page, flags=re.DOTALL)
    assert documented is not None
    values = {"QueryResultsBucketName": "relay-queryresultsbucket-abc", "ReplyQueue.Arn": REPLY_ARN}
    without_key = TENANT["Outputs"]["ReplyReaderPolicy"]["Value"]["Fn::If"][2]["Fn::Sub"]
    assert json.loads(documented.group(1)) == json.loads(sub(without_key, values))
