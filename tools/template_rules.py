"""The project's own rules for template.yaml, which neither `sam validate` nor cfn-lint checks.

* ``visibility_timeout``: a source queue's visibility timeout is at least 6x the function timeout
  plus the largest batching window (Lambda's guidance for SQS event sources);
* ``dead_letter_queue``: every queue a function consumes has a redrive policy to a DLQ;
* ``dlq_retention``: a DLQ keeps messages longer than its source queue (or redriven messages expire);
* ``report_batch_item_failures``: every SQS event source reports partial batch failures;
* ``batching_window``: a batch size above 10 comes with a batching window of at least 1 s (AWS
  rejects the event source mapping otherwise);
* ``no_wildcard_actions``: no statement *allows* ``*`` actions (a deny may be broad), except the
  account-root statement of a KMS key policy (AWS's default, which hands the key's use to IAM);
* ``no_wildcard_resources``: no statement of an IAM role or policy allows on ``*`` resources (or a
  resource ARN whose account, region, or name is ``*``): each names what it may touch. The one
  exception is a statement of only actions IAM defines no resource type for
  (:data:`ACTIONS_WITHOUT_RESOURCES`), which can name nothing but ``*``;
* ``no_managed_policies``: no role attaches AWS-managed policies (``AWSLambdaBasicExecutionRole`` and
  SAM's SQS poller policy grant on ``*``); every function has its own role from this template;
* ``secure_transport``: every queue and bucket has a policy that denies requests without TLS;
* ``dead_letter_senders``: a DLQ's policy denies ``sqs:SendMessage`` to every principal but the ones
  it names (the relay's roles: an attribute of a dead letter is only as good as its senders), or to
  every principal (a DLQ only SQS's redrive moves fill), and denies nobody reading it (the operator
  who redrives; SQS's own redrive moves are no SendMessage);
* ``reply_queue_readers``: a queue only named principals may send to that no function consumes and
  no queue dead-letters into (a tenant's reply queue) denies receiving to all but named readers,
  unconditionally: no reader list means no reader, never whoever IAM allows;
* ``principal_parameters``: a parameter that names principals (a statement's ``Principal`` or an
  ``aws:PrincipalArn`` condition) or resources an allow grants has an ``AllowedPattern`` that
  refuses wildcards (``*`` makes a queue world-writable or world-readable, or a role reach
  everything), and no wildcard default;
* ``object_grants_by_prefix``: no statement allows object actions on a whole bucket of the
  template (``<bucket>/*``): grants name a key prefix, so one tenant's grant is not every tenant's.

Parameters are checked over their whole allowed range (``MinValue``/``MaxValue``), so no value a
user may pass at deploy time breaks a rule. Usage: ``python -m tools.template_rules template.yaml``;
given the translated template (``.json``), it checks the IAM statements SAM generated for wildcards.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay_local.cloudformation import load_template

DEFAULT_QUEUE_RETENTION = 345_600  # SQS default, 4 days
DEFAULT_VISIBILITY_TIMEOUT = 30
DEFAULT_FUNCTION_TIMEOUT = 3


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.resource}: {self.message}"


class _Template:
    def __init__(self, template: dict[str, Any]) -> None:
        self.resources: dict[str, Any] = template.get("Resources", {})
        self.parameters: dict[str, Any] = template.get("Parameters", {})
        self.function_globals: dict[str, Any] = template.get("Globals", {}).get("Function", {})

    def bounds(self, value: Any) -> tuple[float, float] | None:
        """The (lowest, highest) number ``value`` can be: a literal, or a parameter's allowed range."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), float(value)
        if isinstance(value, str):
            try:
                return float(value), float(value)
            except ValueError:
                return None
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in self.parameters:
            parameter = self.parameters[value["Ref"]]
            allowed = parameter.get("AllowedValues")
            if allowed:
                numbers = [float(v) for v in allowed]
                return min(numbers), max(numbers)
            default = parameter.get("Default")
            low = parameter.get("MinValue", default)
            high = parameter.get("MaxValue", default)
            if low is None or high is None:
                return None
            return float(low), float(high)
        return None

    def queue_name(self, reference: Any) -> str | None:
        """The logical id of the queue an event source or redrive policy points at."""
        if isinstance(reference, dict):
            target = reference.get("Fn::GetAtt") or reference.get("Ref")
            name = target[0] if isinstance(target, list) else target
            if name in self.resources and self.resources[name].get("Type") == "AWS::SQS::Queue":
                return str(name)
        return None

    def sqs_event_sources(self) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
        """(function id, event id, function properties, event properties) for every SQS event."""
        for name, resource in self.resources.items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            properties = resource.get("Properties", {})
            for event_name, event in (properties.get("Events") or {}).items():
                if event.get("Type") == "SQS":
                    yield name, event_name, properties, event.get("Properties", {})


def _visibility_timeout(t: _Template) -> Iterator[Violation]:
    for function, event, properties, source in t.sqs_event_sources():
        queue = t.queue_name(source.get("Queue"))
        if queue is None:
            continue
        timeout = t.bounds(properties.get("Timeout", t.function_globals.get("Timeout", DEFAULT_FUNCTION_TIMEOUT)))
        window = t.bounds(source.get("MaximumBatchingWindowInSeconds", 0))
        visibility = t.bounds(
            t.resources[queue].get("Properties", {}).get("VisibilityTimeout", DEFAULT_VISIBILITY_TIMEOUT)
        )
        if timeout is None or window is None or visibility is None:
            yield Violation("visibility_timeout", queue, "cannot resolve the timeout, window or visibility timeout")
            continue
        needed = 6 * timeout[1] + window[1]
        if visibility[0] < needed:
            yield Violation(
                "visibility_timeout",
                queue,
                f"visibility timeout {visibility[0]:g} s < 6 x {function} timeout {timeout[1]:g} s"
                f" + batching window {window[1]:g} s of {event} = {needed:g} s",
            )


def _dead_letter_queue(t: _Template) -> Iterator[Violation]:
    for function, event, _properties, source in t.sqs_event_sources():
        queue = t.queue_name(source.get("Queue"))
        if queue is None:
            yield Violation("dead_letter_queue", function, f"{event} does not consume a queue of this template")
        elif "RedrivePolicy" not in t.resources[queue].get("Properties", {}):
            yield Violation("dead_letter_queue", queue, f"consumed by {function} but has no RedrivePolicy")


def _dlq_retention(t: _Template) -> Iterator[Violation]:
    for name, resource in t.resources.items():
        properties = resource.get("Properties", {})
        if resource.get("Type") != "AWS::SQS::Queue" or "RedrivePolicy" not in properties:
            continue
        dlq = t.queue_name(properties["RedrivePolicy"].get("deadLetterTargetArn"))
        if dlq is None:
            yield Violation("dlq_retention", name, "the redrive target is not a queue of this template")
            continue
        source = t.bounds(properties.get("MessageRetentionPeriod", DEFAULT_QUEUE_RETENTION))
        target = t.bounds(t.resources[dlq].get("Properties", {}).get("MessageRetentionPeriod", DEFAULT_QUEUE_RETENTION))
        if source is None or target is None or target[0] <= source[1]:
            yield Violation(
                "dlq_retention", dlq, f"keeps messages {target} s, not longer than its source {name} ({source} s)"
            )


def _report_batch_item_failures(t: _Template) -> Iterator[Violation]:
    for function, event, _properties, source in t.sqs_event_sources():
        if "ReportBatchItemFailures" not in (source.get("FunctionResponseTypes") or []):
            yield Violation("report_batch_item_failures", function, f"{event} does not report batch item failures")


def _batching_window(t: _Template) -> Iterator[Violation]:
    for function, event, _properties, source in t.sqs_event_sources():
        batch = t.bounds(source.get("BatchSize", 10))
        window = t.bounds(source.get("MaximumBatchingWindowInSeconds", 0))
        if batch is None or window is None:
            yield Violation("batching_window", function, f"{event}: cannot resolve batch size or window")
        elif batch[1] > 10 and window[0] < 1:
            yield Violation(
                "batching_window",
                function,
                f"{event}: batch size can be {batch[1]:g} (> 10) with a batching window of {window[0]:g} s (< 1)",
            )


def _statements(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "Action" in node or "NotAction" in node:
            yield where, node
        for value in node.values():
            yield from _statements(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _statements(item, where)


def _is_key_policy_root(resource: dict[str, Any], statement: dict[str, Any]) -> bool:
    if resource.get("Type") != "AWS::KMS::Key" or statement.get("Action") != "kms:*":
        return False
    principal = statement.get("Principal", {}).get("AWS") if isinstance(statement.get("Principal"), dict) else None
    return (
        isinstance(principal, dict)
        and ":root" in json.dumps(principal)
        and "${AWS::AccountId}" in json.dumps(principal)
    )


def _no_wildcard_actions(t: _Template) -> Iterator[Violation]:
    for name, resource in t.resources.items():
        for where, statement in _statements(resource.get("Properties", {}), name):
            if statement.get("Effect") == "Deny" or _is_key_policy_root(resource, statement):
                continue
            for key in ("Action", "NotAction"):
                actions = statement.get(key, [])
                for action in [actions] if isinstance(actions, str) else actions:
                    if isinstance(action, str) and "*" in action:
                        yield Violation("no_wildcard_actions", where, f"{key} {action!r} uses a wildcard")


IAM_TYPES = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
# Actions whose "Resource types" column is empty in the Service Authorization Reference: a statement
# granting them can only say "*". X-Ray's uploads (the functions' active tracing) are the ones used here.
ACTIONS_WITHOUT_RESOURCES = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})


def _wildcard_arn(resource: Any) -> bool:
    """``*``, or an ARN naming no particular thing (``arn:aws:sqs:*:*:*``, ``arn:aws:s3:::*``)."""
    if isinstance(resource, dict):  # !GetAtt, !Ref, !Sub ...: a Sub may still hide a wildcard
        text = resource.get("Fn::Sub")
        if isinstance(text, list):
            text = text[0]
        return isinstance(text, str) and _wildcard_arn(text.replace("${AWS::Partition}", "aws"))
    if not isinstance(resource, str):
        return False
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    return len(parts) == 6 and ("*" in parts[3:5] or parts[5] in {"*", "/*"} or parts[5].startswith("*"))


def _no_wildcard_resources(t: _Template) -> Iterator[Violation]:
    for name, resource in t.resources.items():
        if resource.get("Type") not in IAM_TYPES:
            continue
        for where, statement in _statements(resource.get("Properties", {}), name):
            if statement.get("Effect") == "Deny" or _only_actions_without_resources(statement):
                continue
            targets = statement.get("Resource", [])
            for target in targets if isinstance(targets, list) else [targets]:
                if _wildcard_arn(target):
                    yield Violation("no_wildcard_resources", where, f"allows {statement.get('Action')} on {target!r}")


def _only_actions_without_resources(statement: dict[str, Any]) -> bool:
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    return "NotAction" not in statement and bool(actions) and set(actions) <= ACTIONS_WITHOUT_RESOURCES


def _no_managed_policies(t: _Template) -> Iterator[Violation]:
    for name, resource in t.resources.items():
        if resource.get("Type") == "AWS::IAM::Role" and resource.get("Properties", {}).get("ManagedPolicyArns"):
            yield Violation("no_managed_policies", name, "attaches managed policies; give it inline, scoped statements")
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and (
            "Policies" in properties or "Role" not in properties
        ):
            yield Violation(
                "no_managed_policies", name, "needs its own Role (SAM's generated role attaches managed policies)"
            )


def _policy_denying_plain_http(t: _Template, policy_type: str, key: str) -> set[str]:
    """Logical ids of the queues or buckets a policy of ``policy_type`` denies aws:SecureTransport=false on."""
    covered: set[str] = set()
    for resource in t.resources.values():
        if resource.get("Type") != policy_type:
            continue
        properties = resource.get("Properties", {})
        denies = any(
            statement.get("Effect") == "Deny"
            and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
            for _, statement in _statements(properties.get("PolicyDocument", {}), "")
        )
        if not denies:
            continue
        targets = properties.get(key)
        for target in targets if isinstance(targets, list) else [targets]:
            if isinstance(target, dict) and "Ref" in target:
                covered.add(target["Ref"])
    return covered


def _secure_transport(t: _Template) -> Iterator[Violation]:
    queues = _policy_denying_plain_http(t, "AWS::SQS::QueuePolicy", "Queues")
    buckets = _policy_denying_plain_http(t, "AWS::S3::BucketPolicy", "Bucket")
    for name, resource in t.resources.items():
        if resource.get("Type") == "AWS::SQS::Queue" and name not in queues:
            yield Violation("secure_transport", name, "no queue policy denies aws:SecureTransport=false")
        if resource.get("Type") == "AWS::S3::Bucket" and name not in buckets:
            yield Violation("secure_transport", name, "no bucket policy denies aws:SecureTransport=false")


def _is_everyone(principal: Any) -> bool:
    return principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement.get("Action", [])
    return {a.lower() for a in ([actions] if isinstance(actions, str) else actions) if isinstance(a, str)}


def _named_principals_condition(statement: dict[str, Any]) -> bool:
    """The statement's condition is ``aws:PrincipalArn`` not matching a list of named principals."""
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return False
    for operator in ("ArnNotLike", "ArnNotEquals"):
        keys = condition.get(operator)
        if isinstance(keys, dict) and any(k.lower() == "aws:principalarn" and v for k, v in keys.items()):
            return True
    return False


def _denies_all_but_named(statement: dict[str, Any], action: str) -> bool:
    """A deny of ``action`` to every principal whose ARN is not one the statement names (or to every principal)."""
    return (
        statement.get("Effect") == "Deny"
        and _is_everyone(statement.get("Principal"))
        and action.lower() in _actions(statement)
        and (_named_principals_condition(statement) or "Condition" not in statement)
    )


READ_ACTIONS = {"sqs:receivemessage", "sqs:deletemessage", "sqs:changemessagevisibility", "sqs:*", "*"}


def _only_plain_http(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition")
    return condition == {"Bool": {"aws:SecureTransport": "false"}} or condition == {
        "Bool": {"aws:SecureTransport": False}
    }


def _queue_policy_statements(t: _Template, queue: str) -> Iterator[tuple[dict[str, Any], bool]]:
    """(statement, unconditional) of every queue policy statement that applies to ``queue``."""
    for resource in t.resources.values():
        properties = resource.get("Properties", {})
        if resource.get("Type") != "AWS::SQS::QueuePolicy":
            continue
        targets = properties.get("Queues", [])
        if not any(isinstance(q, dict) and q.get("Ref") == queue for q in targets):
            continue
        listed = properties.get("PolicyDocument", {}).get("Statement", [])
        for item in listed if isinstance(listed, list) else [listed]:
            unconditional = isinstance(item, dict) and "Fn::If" not in item
            for _, statement in _statements(item, ""):
                named = statement.get("Resource", "*")
                names = {t.queue_name(r) for r in (named if isinstance(named, list) else [named])}
                if named == "*" or queue in names:
                    yield statement, unconditional


def _dead_letter_queues(t: _Template) -> set[str]:
    """Queues a redrive policy moves messages to, or a function sends its poison to (``DEAD_LETTER_QUEUE_URL``)."""
    found: set[str | None] = set()
    for resource in t.resources.values():
        properties = resource.get("Properties", {})
        redrive = properties.get("RedrivePolicy")
        if resource.get("Type") == "AWS::SQS::Queue" and isinstance(redrive, dict):
            found.add(t.queue_name(redrive.get("deadLetterTargetArn")))
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            variables = (properties.get("Environment") or {}).get("Variables") or {}
            found.add(t.queue_name(variables.get("DEAD_LETTER_QUEUE_URL")))
    return {name for name in found if name is not None}


def _consumed_queues(t: _Template) -> set[str]:
    found = {t.queue_name(source.get("Queue")) for _, _, _, source in t.sqs_event_sources()}
    for resource in t.resources.values():
        if resource.get("Type") == "AWS::Lambda::EventSourceMapping":
            found.add(t.queue_name(resource.get("Properties", {}).get("EventSourceArn")))
    return {name for name in found if name is not None}


def _dead_letter_senders(t: _Template) -> Iterator[Violation]:
    for dlq in sorted(_dead_letter_queues(t)):
        statements = list(_queue_policy_statements(t, dlq))
        if not any(unconditional and _denies_all_but_named(s, "sqs:SendMessage") for s, unconditional in statements):
            yield Violation(
                "dead_letter_senders",
                dlq,
                "no queue policy denies sqs:SendMessage to every principal but the relay's (aws:PrincipalArn)",
            )
        for statement, _ in statements:
            if (
                statement.get("Effect") == "Deny"
                and _actions(statement) & READ_ACTIONS
                and not _only_plain_http(statement)
            ):
                yield Violation(
                    "dead_letter_senders",
                    dlq,
                    f"denies reading ({statement.get('Action')}): an operator must redrive it",
                )


def _reply_queue_readers(t: _Template) -> Iterator[Violation]:
    others = _dead_letter_queues(t) | _consumed_queues(t)
    for name, resource in t.resources.items():
        if resource.get("Type") != "AWS::SQS::Queue" or name in others:
            continue
        statements = list(_queue_policy_statements(t, name))
        answered_by_named = any(u and _denies_all_but_named(s, "sqs:SendMessage") for s, u in statements)
        if answered_by_named and not any(u and _denies_all_but_named(s, "sqs:ReceiveMessage") for s, u in statements):
            yield Violation(
                "reply_queue_readers",
                name,
                "only named principals answer here, but receiving is not denied to all but named readers at all times",
            )


def _parameter_references(node: Any, parameters: dict[str, Any]) -> set[str]:
    """Parameters ``node`` refers to, by ``Ref`` or inside a ``Fn::Sub`` string."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                if isinstance(text, str):
                    found.update(re.findall(r"\$\{([^}!.]+)\}", text))
                if isinstance(value, list):
                    found |= _parameter_references(value[1:], parameters)
            else:
                found |= _parameter_references(value, parameters)
    elif isinstance(node, list):
        for item in node:
            found |= _parameter_references(item, parameters)
    return {name for name in found if name in parameters}


# Wildcard forms a deployer could pass for a principal or a resource ARN; a parameter's pattern refuses them all.
WILDCARD_PROBES = (
    "*",
    "?",
    "arn:aws:iam::123456789012:*",
    "arn:aws:iam::123456789012:role/*",
    "arn:aws:iam::123456789012:role/producer*",
    "arn:aws:iam::123456789012:role/producer?",
    "arn:aws:iam::*:role/producer",
    "arn:aws:sqs:us-east-1:123456789012:*",
    "arn:aws:sqs:*:123456789012:replies",
    "arn:aws:sqs:us-east-1:123456789012:replies*",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:*",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:pinecone*",
)


def _principal_parameters(t: _Template) -> Iterator[Violation]:
    named: dict[str, str] = {}
    for name, resource in t.resources.items():
        for _, statement in _statements(resource.get("Properties", {}), name):
            places = [statement.get("Principal"), statement.get("NotPrincipal"), statement.get("Condition")]
            if statement.get("Effect") != "Deny":
                places.append(statement.get("Resource"))
            for parameter in _parameter_references(places, t.parameters):
                named.setdefault(parameter, name)
    for parameter, where in sorted(named.items()):
        spec = t.parameters[parameter]
        pattern = spec.get("AllowedPattern")
        default = str(spec.get("Default", ""))
        if "*" in default or "?" in default:
            yield Violation("principal_parameters", parameter, f"its default {default!r} is a wildcard")
        if not isinstance(pattern, str):
            yield Violation(
                "principal_parameters", parameter, f"used in a policy of {where} with no AllowedPattern to refuse '*'"
            )
            continue
        admitted = [probe for probe in WILDCARD_PROBES if re.fullmatch(pattern, probe)]
        if admitted:
            yield Violation("principal_parameters", parameter, f"its AllowedPattern admits {admitted[0]!r}")


def _object_grants_by_prefix(t: _Template) -> Iterator[Violation]:
    buckets = {name for name, r in t.resources.items() if r.get("Type") == "AWS::S3::Bucket"}
    for name, resource in t.resources.items():
        for where, statement in _statements(resource.get("Properties", {}), name):
            if statement.get("Effect") == "Deny":
                continue
            targets = statement.get("Resource", [])
            for target in targets if isinstance(targets, list) else [targets]:
                text = target.get("Fn::Sub") if isinstance(target, dict) else None
                text = text[0] if isinstance(text, list) else text
                match = re.fullmatch(r"\$\{(\w+)\.Arn\}/(.*)", text) if isinstance(text, str) else None
                if match and match.group(1) in buckets and match.group(2).startswith("*"):
                    yield Violation(
                        "object_grants_by_prefix",
                        where,
                        f"allows {statement.get('Action')} on every object of {match.group(1)}; name a key prefix",
                    )


RULES = (
    _visibility_timeout,
    _dead_letter_queue,
    _dlq_retention,
    _report_batch_item_failures,
    _batching_window,
    _no_wildcard_actions,
    _no_wildcard_resources,
    _no_managed_policies,
    _secure_transport,
    _dead_letter_senders,
    _reply_queue_readers,
    _principal_parameters,
    _object_grants_by_prefix,
)

# The rules that still apply once SAM has expanded the template into roles, policies and event sources.
TRANSLATED_RULES = (
    _no_wildcard_actions,
    _no_wildcard_resources,
    _no_managed_policies,
    _secure_transport,
    _dead_letter_senders,
    _reply_queue_readers,
    _principal_parameters,
    _object_grants_by_prefix,
)


def check(template: dict[str, Any]) -> list[Violation]:
    parsed = _Template(template)
    return [violation for rule in RULES for violation in rule(parsed)]


def check_translated(template: dict[str, Any]) -> list[Violation]:
    """The rules that still apply once SAM has expanded the template into roles, policies and event sources."""
    parsed = _Template(template)
    return [violation for rule in TRANSLATED_RULES for violation in rule(parsed)]


def main(path: str) -> int:
    if path.endswith(".json"):
        violations = check_translated(json.loads(Path(path).read_text()))
    else:
        violations = check(load_template(Path(path)))
    for violation in violations:
        print(violation)
    print(f"{path}: {len(violations)} rule violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
