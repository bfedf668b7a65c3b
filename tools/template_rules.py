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
  resource ARN whose account, region, or name is ``*``): each names what it may touch;
* ``no_managed_policies``: no role attaches AWS-managed policies (``AWSLambdaBasicExecutionRole`` and
  SAM's SQS poller policy grant on ``*``); every function has its own role from this template;
* ``secure_transport``: every queue and bucket has a policy that denies requests without TLS.

Parameters are checked over their whole allowed range (``MinValue``/``MaxValue``), so no value a
user may pass at deploy time breaks a rule. Usage: ``python -m tools.template_rules template.yaml``;
given the translated template (``.json``), it checks the IAM statements SAM generated for wildcards.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !GetAtt, !Sub, ...) as their long forms."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


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
            if statement.get("Effect") == "Deny":
                continue
            targets = statement.get("Resource", [])
            for target in targets if isinstance(targets, list) else [targets]:
                if _wildcard_arn(target):
                    yield Violation("no_wildcard_resources", where, f"allows {statement.get('Action')} on {target!r}")


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
)


def check(template: dict[str, Any]) -> list[Violation]:
    parsed = _Template(template)
    return [violation for rule in RULES for violation in rule(parsed)]


def check_translated(template: dict[str, Any]) -> list[Violation]:
    """The rules that still apply once SAM has expanded the template into roles, policies and event sources."""
    parsed = _Template(template)
    rules = (_no_wildcard_actions, _no_wildcard_resources, _no_managed_policies, _secure_transport)
    return [violation for rule in rules for violation in rule(parsed)]


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
