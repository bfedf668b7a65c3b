"""The rules of the DynamoDB fault proxy (:mod:`relay_local.dynamodb_faults`): which requests, and what happens to them.

A rule is a JSON object, in the style of the Pinecone emulator's faults (pinecone_emulator.faults)::

    {"operation": "TransactWriteItems", "table": "relay-write-versions", "drop_then_apply_after_ms": 600000, "times": 1}
    {"operation": "write", "hold_ms": 3000, "rate": 0.08}
    {"operation": "UpdateItem", "duplicate": true, "duplicate_after_ms": 2000}
    {"operation": "PutItem", "sequence": ["ok", {"drop_then_apply_after_ms": 1500}, "drop"]}

``operation`` is a DynamoDB operation (the ``X-Amz-Target`` after the dot), ``write`` for every
operation that changes items (:data:`WRITE_OPERATIONS`) or ``*`` for all; ``table`` restricts a
rule to requests that name that table. The steps:

* ``hold_ms``: forwarded only after that long, then answered with moto's answer. A client whose
  read timeout is shorter has given up by then: its write is applied after it was told it failed.
* ``drop_then_apply_after_ms``: the connection is closed at once without an answer, and the
  request is forwarded that much later (its answer goes nowhere).
* ``drop``: closed without an answer and never forwarded.
* ``duplicate``: forwarded and answered, then forwarded again ``duplicate_after_ms`` later (0: at
  once, before the answer goes out), so it is applied twice.

A sequence answers one step per matching request and then retires; a rate rule fires with
probability ``rate`` (at most ``times`` times). The first rule that fires decides.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
STEP_KEYS = ("hold_ms", "drop", "drop_then_apply_after_ms", "duplicate", "duplicate_after_ms")


class FaultSpecError(ValueError):
    """A fault rule that cannot be understood."""


@dataclass(frozen=True, slots=True)
class FaultStep:
    hold_ms: float = 0.0
    drop: bool = False
    drop_then_apply_after_ms: float | None = None
    duplicate: bool = False
    duplicate_after_ms: float = 0.0

    @property
    def is_fault(self) -> bool:
        return bool(self.hold_ms or self.drop or self.drop_then_apply_after_ms is not None or self.duplicate)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in STEP_KEYS}


def _milliseconds(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
        raise FaultSpecError(f"{key} must be a non-negative number of milliseconds")
    return None if value is None else float(value)


def _parse_step(raw: object) -> FaultStep:
    if raw is None or raw == "ok":
        return FaultStep()
    if raw == "drop":
        return FaultStep(drop=True)
    if not isinstance(raw, dict):
        raise FaultSpecError(f"cannot read fault step {raw!r}: use 'ok', 'drop' or an object")
    unknown = set(raw) - set(STEP_KEYS)
    if unknown:
        raise FaultSpecError(f"unknown fault step keys: {sorted(unknown)}")
    for flag in ("drop", "duplicate"):
        if not isinstance(raw.get(flag, False), bool):
            raise FaultSpecError(f"{flag} must be true or false")
    step = FaultStep(
        hold_ms=_milliseconds(raw, "hold_ms") or 0.0,
        drop=raw.get("drop", False),
        drop_then_apply_after_ms=_milliseconds(raw, "drop_then_apply_after_ms"),
        duplicate=raw.get("duplicate", False),
        duplicate_after_ms=_milliseconds(raw, "duplicate_after_ms") or 0.0,
    )
    dropping = step.drop or step.drop_then_apply_after_ms is not None
    if dropping and step.duplicate:
        raise FaultSpecError("a dropped request is not also duplicated")
    if dropping and step.hold_ms:
        raise FaultSpecError("hold_ms forwards the request; a drop answers at once: choose one")
    if step.drop and step.drop_then_apply_after_ms is not None:
        raise FaultSpecError("drop never applies the request; drop_then_apply_after_ms applies it later: choose one")
    if "duplicate_after_ms" in raw and not step.duplicate:
        raise FaultSpecError("duplicate_after_ms needs duplicate: true")
    return step


@dataclass
class FaultRule:
    operation: str = "write"
    table: str | None = None
    rate: float = 1.0
    times: int | None = None
    step: FaultStep = field(default_factory=FaultStep)
    sequence: list[FaultStep] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    fired: int = 0
    position: int = 0

    @classmethod
    def from_json(cls, raw: object) -> FaultRule:
        if not isinstance(raw, dict):
            raise FaultSpecError("a fault rule must be a JSON object")
        unknown = set(raw) - {"operation", "table", "rate", "times", "sequence", "id", *STEP_KEYS}
        if unknown:
            raise FaultSpecError(f"unknown fault rule keys: {sorted(unknown)}")
        operation = raw.get("operation", "write")
        if not isinstance(operation, str) or not operation:
            raise FaultSpecError("operation must be a DynamoDB operation name, 'write' or '*'")
        table = raw.get("table")
        if table is not None and not isinstance(table, str):
            raise FaultSpecError("table must be a table name")
        rate = raw.get("rate", 1.0)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
            raise FaultSpecError("rate must be a number between 0 and 1")
        times = raw.get("times")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise FaultSpecError("times must be a positive integer")
        sequence = None
        if "sequence" in raw:
            if not isinstance(raw["sequence"], list) or not raw["sequence"]:
                raise FaultSpecError("sequence must be a non-empty array of steps")
            sequence = [_parse_step(item) for item in raw["sequence"]]
        step = _parse_step({key: raw[key] for key in STEP_KEYS if key in raw})
        if sequence is None and not step.is_fault:
            raise FaultSpecError("a rule needs hold_ms, drop, drop_then_apply_after_ms, duplicate or a sequence")
        rule = cls(operation, table, float(rate), times, step, sequence)
        if isinstance(raw.get("id"), str):
            rule.id = raw["id"]
        return rule

    @property
    def exhausted(self) -> bool:
        if self.sequence is not None:
            return self.position >= len(self.sequence)
        return self.times is not None and self.fired >= self.times

    def matches(self, operation: str, tables: frozenset[str]) -> bool:
        if self.exhausted:
            return False
        if self.operation == "write":
            if operation not in WRITE_OPERATIONS:
                return False
        elif self.operation not in ("*", operation):
            return False
        return self.table is None or self.table in tables

    def to_json(self) -> dict[str, Any]:
        shape = {"sequence": [s.to_json() for s in self.sequence]} if self.sequence else self.step.to_json()
        return {
            "id": self.id,
            "operation": self.operation,
            "table": self.table,
            "rate": self.rate,
            "times": self.times,
            "fired": self.fired,
            "exhausted": self.exhausted,
            **shape,
        }
