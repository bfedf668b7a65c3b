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


def role_statements(role: str, *, conditions: frozenset[str] = frozenset({"UseTenantQueues"})) -> list[dict[str, Any]]:
    """The statements of a role's policies that apply when ``conditions`` hold (and the others do not)."""
    found: list[dict[str, Any]] = []
    for policy in RELAY["Resources"][role]["Properties"]["Policies"]:
        if "Fn::If" in policy:
            condition, when_true, when_false = policy["Fn::If"]
            policy = when_true if condition in conditions else when_false
        if isinstance(policy, dict) and "PolicyDocument" in policy:
            found += policy["PolicyDocument"]["Statement"]
    return found


def allowed(
    role: str, action: str, queue_name: str, *, conditions: frozenset[str] = frozenset({"UseTenantQueues"})
) -> bool:
    """Whether ``role`` may ``action`` on the tenant queue named ``queue_name`` (the relay's tenant patterns)."""
    arn = f"arn:aws:sqs:us-east-1:123456789012:{queue_name}"
    for statement in role_statements(role, conditions=conditions):
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        patterns = [
            sub(r["Fn::Sub"])
            for r in resources
            if isinstance(r, dict) and str(r.get("Fn::Sub", "")).startswith("arn:${AWS::Partition}:sqs:")
        ]
        if action in statement["Action"] and any(fnmatch.fnmatchcase(arn, pattern) for pattern in patterns):
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
        "ReceiptQueue": "relay-tenant-acme-receipts",
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
    condition, with_receipts, without_receipts = TENANT["Outputs"]["RegistryEntry"]["Value"]["Fn::If"]
    assert condition == "HasReceiptQueue"
    receipt_url = "https://sqs.us-east-1.amazonaws.com/123456789012/relay-tenant-acme-receipts"
    arns = {
        "IngestQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-ingest",
        "QueryQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-query",
        "ReplyQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/relay-tenant-acme-replies",
        "ReceiptQueue": receipt_url,
    }
    for branch, receipts in ((with_receipts, receipt_url), (without_receipts, None)):
        entry = json.loads(sub(branch["Fn::Sub"], arns))
        registry = TenantRegistry.from_mapping({"acme": entry, "globex": "tenant-globex"}, source="RegistryEntry")
        assert registry.namespace_for("acme") == "tenant-acme"
        assert registry.bound_tenant(arns["IngestQueue.Arn"]) == "acme"
        assert registry.reply_queues_for("acme", frozenset()) == frozenset({arns["ReplyQueue"]})
        assert registry.receipts_for("acme") == receipts
    assert TENANT["Outputs"]["ReceiptQueueUrl"] == {
        "Condition": "HasReceiptQueue",
        "Description": TENANT["Outputs"]["ReceiptQueueUrl"]["Description"],
        "Value": {"Ref": "ReceiptQueue"},
    }


def test_write_receipts_reach_a_tenant_s_receipt_queue_from_the_relay_s_ingest_and_receipts_roles_only() -> None:
    receipts = queue_names()["ReceiptQueue"]
    for tenant_queues in (frozenset({"UseTenantQueues"}), frozenset()):  # receipts need no tenant-bound queues
        assert allowed("IngestFunctionRole", "sqs:SendMessage", receipts, conditions=tenant_queues)
        assert allowed("ReceiptsFunctionRole", "sqs:SendMessage", receipts, conditions=tenant_queues)
    assert not allowed("IngestFunctionRole", "sqs:ReceiveMessage", receipts)
    assert not allowed("QueryFunctionRole", "sqs:SendMessage", receipts)
    for role in ("ReceiptsFunctionRole", "IngestFunctionRole"):  # no other tenant queue, nor another stack's
        assert not allowed(role, "sqs:SendMessage", "relay-tenant-acme-replies")
        assert not allowed(role, "sqs:SendMessage", "other-tenant-acme-receipts")
    assert not allowed("ReceiptsFunctionRole", "sqs:SendMessage", "relay-tenant-acme-ingest")

    statements = TENANT["Resources"]["ReceiptQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    forge = by_sid["OnlyTheRelayTells"]
    assert (forge["Effect"], forge["Principal"], forge["Action"]) == ("Deny", "*", "sqs:SendMessage")
    assert forge["Condition"] == {
        "ArnNotLike": {"aws:PrincipalArn": [{"Ref": "IngestFunctionRoleArn"}, {"Ref": "ReceiptsFunctionRoleArn"}]}
    }
    # the readers named, else the tenant's producers (they wait for the receipts of what they sent)
    readers = {"Fn::If": ["HasReceiptReaders", {"Ref": "ReceiptReaderPrincipalArns"}, {"Ref": "ProducerPrincipalArns"}]}
    deny = by_sid["OnlyTheTenantsReceiptReadersRead"]
    assert (deny["Effect"], deny["Principal"]) == ("Deny", "*")
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= set(deny["Action"])
    assert deny["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": readers}}
    assert by_sid["TheTenantsReceiptReadersRead"]["Principal"] == {"AWS": readers}


def test_the_receipt_queue_is_opt_in_and_needs_the_receipts_role() -> None:
    assert TENANT["Parameters"]["WriteReceipts"]["Default"] == "false"
    for name in ("ReceiptQueue", "ReceiptQueuePolicy"):
        assert TENANT["Resources"][name]["Condition"] == "HasReceiptQueue"
    # docs/contract.md: the queue keeps unread receipts up to 14 days
    assert TENANT["Resources"]["ReceiptQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 86_400
    assert TENANT["Conditions"]["HasReceiptQueue"] == {"Fn::Equals": [{"Ref": "WriteReceipts"}, "true"]}
    rule = TENANT["Rules"]["ReceiptQueueNeedsTheReceiptsRole"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "WriteReceipts"}, "true"]}
    assert [a["Assert"] for a in rule["Assertions"]] == [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReceiptsFunctionRoleArn"}, ""]}]}
    ]
    assert RELAY["Outputs"]["ReceiptsFunctionRoleArn"]["Value"] == {"Fn::GetAtt": ["ReceiptsFunctionRole", "Arn"]}


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
