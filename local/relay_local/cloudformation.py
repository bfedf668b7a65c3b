"""template.yaml read the way CloudFormation would deploy it, for one machine.

Parameters take their defaults (or local overrides, checked against the parameter's rules); names
are derived from logical ids (``<stack>-<LogicalId>``, as CloudFormation does without its random
suffix); intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If``, ...)
are resolved against the resources the local stack created. Nothing here talks to AWS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
DEFAULT_STACK_NAME = "vector-relay-local"

# A parameter whose AllowedPattern the local stack may break, and why (reported, never silent).
LOCAL_PATTERN_EXEMPTIONS = {
    "PineconeIndexHost": "the emulator serves each index's data plane over plain HTTP on loopback, under /data/<index>",
}


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
    """A CloudFormation template (JSON or YAML with short-form tags) as plain values; the one loader of the project."""
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader with CloudFormation's tags


NO_VALUE = object()  # AWS::NoValue: the property or list item is dropped


class TemplateError(ValueError):
    """The template (or a local override) cannot be resolved."""


@dataclass
class PhysicalResource:
    """What a created resource answers to ``Ref`` and ``Fn::GetAtt``."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event of a function: what Lambda's event source mapping is configured with."""

    function: str
    event: str
    queue: str  # logical id
    batch_size: int
    batching_window_seconds: int
    maximum_concurrency: int | None
    report_batch_item_failures: bool
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str
    runtime: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, Any]  # unresolved (intrinsics left in)
    events: tuple[SqsEventSource, ...]
    tracing: str = "PassThrough"  # X-Ray: Active or PassThrough (Lambda's default), resolved

    @property
    def short_name(self) -> str:
        """``ingest`` for ``functions/ingest/``: the name ``make invoke FN=`` takes."""
        return self.code_uri.name


class LocalTemplate:
    """template.yaml with parameters bound and names chosen for the local stack."""

    def __init__(
        self,
        path: Path = TEMPLATE,
        *,
        parameters: Mapping[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = REGION,
    ) -> None:
        self.path = path
        self.raw = load_template(path)
        self.stack_name = stack_name
        self.region = region
        self.resources: dict[str, dict[str, Any]] = self.raw.get("Resources", {})
        self.parameter_specs: dict[str, dict[str, Any]] = self.raw.get("Parameters", {})
        self.exemptions: list[str] = []
        self.parameters = self._bind_parameters(dict(parameters or {}))
        self.physical: dict[str, PhysicalResource] = {}
        self._conditions: dict[str, bool] = {}
        # A resource whose Condition is false does not exist, as in CloudFormation.
        self.resources = {name: r for name, r in self.resources.items() if self._exists(r)}

    def _exists(self, resource: dict[str, Any]) -> bool:
        name = resource.get("Condition")
        return name is None or self.condition(str(name))

    # ------------------------------------------------------------------ parameters
    def _bind_parameters(self, overrides: dict[str, str]) -> dict[str, str]:
        unknown = set(overrides) - set(self.parameter_specs)
        if unknown:
            raise TemplateError(f"unknown template parameters: {sorted(unknown)}")
        bound: dict[str, str] = {}
        for name, spec in self.parameter_specs.items():
            if name in overrides:
                value = str(overrides[name])
            elif "Default" in spec:
                value = str(spec["Default"])
            else:
                raise TemplateError(f"parameter {name} has no default; the local stack must set it")
            self._check_parameter(name, spec, value)
            bound[name] = value
        return bound

    def _check_parameter(self, name: str, spec: dict[str, Any], value: str) -> None:
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in {str(v) for v in allowed}:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        if spec.get("Type") == "Number":
            number = float(value)
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise TemplateError(f"parameter {name}={value} is below its MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise TemplateError(f"parameter {name}={value} is above its MaxValue {spec['MaxValue']}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            if name not in LOCAL_PATTERN_EXEMPTIONS:
                raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
            self.exemptions.append(f"{name}: {value} breaks {pattern} ({LOCAL_PATTERN_EXEMPTIONS[name]})")

    # ------------------------------------------------------------------ names
    def outputs(self) -> dict[str, str]:
        """The template's Outputs as a deployed stack lists them (those naming what is not created locally left out)."""
        found: dict[str, str] = {}
        for name, spec in self.raw.get("Outputs", {}).items():
            if not self._exists(spec):
                continue
            try:
                found[name] = str(self.resolve(spec["Value"]))
            except TemplateError:
                continue
        return found

    def resources_of_type(self, resource_type: str) -> list[str]:
        return [name for name, r in self.resources.items() if r.get("Type") == resource_type]

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.resources[logical_id].get("Properties") or {})

    def default_name(self, logical_id: str) -> str:
        """The physical name CloudFormation would generate, without its random suffix."""
        return f"{self.stack_name}-{logical_id}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    # ------------------------------------------------------------------ intrinsics
    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by what it stands for locally."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key[4:], argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            if self.parameter_specs[name].get("Type") == "CommaDelimitedList":
                return self.parameters[name].split(",")
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name].ref
        function, _, attribute = name.partition(".")
        if attribute == "Alias" and function in self.physical:  # SAM's reference to AutoPublishAlias's alias
            alias = self.properties(function).get("AutoPublishAlias")
            if alias:
                return f"{self._get_att(function, 'Arn')}:{alias}"  # the stack invokes the function itself
        raise TemplateError(f"Ref {name}: not a parameter, and no such resource was created locally")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.physical.get(logical_id)
        if resource is None or attribute not in resource.attributes:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute}: not available locally")
        return resource.attributes[attribute]

    def _function(self, name: str, argument: Any) -> Any:
        if name == "GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._get_att(logical_id, attribute)
        if name == "Sub":
            template, variables = (argument, {}) if isinstance(argument, str) else argument
            variables = {k: self.resolve(v) for k, v in variables.items()}
            return re.sub(r"\$\{(![^}]*|[^}!]+)\}", lambda m: self._sub_piece(m.group(1), variables), template)
        if name == "Join":
            separator, items = argument
            resolved = self.resolve(items)
            flat: list[str] = []
            for item in resolved:
                flat.extend(item if isinstance(item, list) else [str(item)])
            return separator.join(flat)
        if name == "Split":
            separator, source = argument
            return str(self.resolve(source)).split(separator)
        if name == "Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if name == "If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name in {"Equals", "Not", "And", "Or"}:
            return self._condition_function(name, argument)
        raise TemplateError(f"Fn::{name} is not supported by the local stack")

    def _sub_piece(self, name: str, variables: dict[str, Any]) -> str:
        """What ``${name}`` of a ``Fn::Sub`` becomes; ``${!Literal}`` is ``${Literal}``, as in CloudFormation."""
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        return str(self._sub_variable(name, variables))

    def _sub_variable(self, name: str, variables: dict[str, Any]) -> Any:
        if name in variables:
            return variables[name]
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return self._get_att(logical_id, attribute)
        return self._ref(name)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definition = self.raw.get("Conditions", {}).get(name)
            if definition is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(definition))
        return self._conditions[name]

    def _condition_function(self, name: str, argument: Any) -> bool:
        if name == "Equals":
            left, right = (self.resolve(a) for a in argument)
            return bool(left == right)
        values = [bool(self.resolve(a)) for a in argument]
        if name == "Not":
            return not values[0]
        if name == "And":
            return all(values)
        return any(values)

    # ------------------------------------------------------------------ functions
    def functions(self) -> list[FunctionSpec]:
        globals_ = (self.raw.get("Globals") or {}).get("Function") or {}
        specs = []
        for logical_id in self.resources_of_type("AWS::Serverless::Function"):
            properties = self.properties(logical_id)
            merged = {**globals_, **properties}
            environment = {
                **((globals_.get("Environment") or {}).get("Variables") or {}),
                **((properties.get("Environment") or {}).get("Variables") or {}),
            }
            events = []
            for event_name, event in (properties.get("Events") or {}).items():
                if event.get("Type") != "SQS":
                    continue
                source = event.get("Properties") or {}
                queue = source["Queue"]
                target = queue.get("Fn::GetAtt") or queue.get("Ref")
                queue_id = target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
                concurrency = (source.get("ScalingConfig") or {}).get("MaximumConcurrency")
                events.append(
                    SqsEventSource(
                        function=logical_id,
                        event=event_name,
                        queue=queue_id,
                        batch_size=int(self.resolve(source.get("BatchSize", 10))),
                        batching_window_seconds=int(self.resolve(source.get("MaximumBatchingWindowInSeconds", 0))),
                        maximum_concurrency=None if concurrency is None else int(self.resolve(concurrency)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (source.get("FunctionResponseTypes") or []),
                        enabled=bool(self.resolve(source.get("Enabled", True))),
                    )
                )
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    code_uri=(self.path.parent / str(merged["CodeUri"])).resolve(),
                    handler=str(merged["Handler"]),
                    runtime=str(merged.get("Runtime", "python3.13")),
                    timeout_seconds=int(self.resolve(merged.get("Timeout", 3))),
                    memory_mb=int(self.resolve(merged.get("MemorySize", 128))),
                    environment=environment,
                    events=tuple(events),
                    tracing=str(self.resolve(merged.get("Tracing", "PassThrough"))),
                )
            )
        return specs

    def function(self, name: str) -> FunctionSpec:
        """A function by logical id (``IngestFunction``) or by its code folder (``ingest``)."""
        for spec in self.functions():
            if name in {spec.logical_id, spec.short_name}:
                return spec
        known = ", ".join(f"{s.short_name} ({s.logical_id})" for s in self.functions())
        raise TemplateError(f"no function {name!r} in the template; known: {known}")

    def function_environment(self, spec: FunctionSpec) -> dict[str, str]:
        """The function's environment variables as the deployed stack would set them."""
        resolved = self.resolve(spec.environment)
        return {name: _as_env_string(value) for name, value in resolved.items()}

    def function_name(self, spec: FunctionSpec) -> str:
        return self.default_name(spec.logical_id)

    def function_arn(self, spec: FunctionSpec) -> str:
        return self.arn("lambda", f"function:{self.function_name(spec)}")


def _as_env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
