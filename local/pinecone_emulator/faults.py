"""Faults on demand: error rates, scripted sequences, latency, dropped connections, rate limits, indexing lag.

A rule is a JSON object, the same on the command line (``--fault JSON``) and at run time
(``POST /_emulator/faults``)::

    {"operation": "query", "status": 429, "retry_after": 0, "rate": 0.5, "times": 3}
    {"operation": "upsert", "sequence": [429, {"status": 503, "retry_after": "0"}, "ok", "drop"]}
    {"operation": "*", "latency_ms": 50}
    {"operation": "upsert", "status": 503, "apply": true, "rate": 0.05}
    {"operation": "delete", "drop": true, "apply_after_ms": 1500, "times": 2}

``operation`` is an operation name (see docs/emulator.md) or ``*`` for every data-plane and
control-plane operation; ``index`` restricts a rule to one index. A sequence answers one step per
matching request and then retires; a rate rule fires with probability ``rate`` (at most ``times``
times). Latency adds up across matching rules; the first rule that answers with a status or a
drop decides the response. With ``apply`` the request is carried out first and *then* answered
with the status or the drop (the client cannot tell that it landed); with ``apply_after_ms`` it is
answered at once and carried out that much later, server-side (a write that lands after its
client gave up on it).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

RATE_LIMITED_OPERATIONS = ("upsert", "query", "delete", "update")


class FaultSpecError(ValueError):
    """A fault rule that cannot be understood."""


@dataclass
class FaultStep:
    status: int | None = None
    retry_after: str | None = None
    latency_ms: float = 0.0
    drop: bool = False
    message: str | None = None
    apply: bool = False  # carry the request out, then answer with the status or the drop
    apply_after_ms: float | None = None  # answer now, carry the request out this much later

    @property
    def answers(self) -> bool:
        return self.drop or self.status is not None

    @property
    def applies(self) -> bool:
        return self.apply or self.apply_after_ms is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "retry_after": self.retry_after,
            "latency_ms": self.latency_ms,
            "drop": self.drop,
            "message": self.message,
            "apply": self.apply,
            "apply_after_ms": self.apply_after_ms,
        }


def _parse_step(raw: object) -> FaultStep:
    if raw is None or raw == "ok":
        return FaultStep()
    if raw == "drop":
        return FaultStep(drop=True)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return FaultStep(status=_parse_status(raw))
    if isinstance(raw, dict):
        unknown = set(raw) - set(STEP_KEYS)
        if unknown:
            raise FaultSpecError(f"unknown fault step keys: {sorted(unknown)}")
        retry_after = raw.get("retry_after")
        latency = raw.get("latency_ms", 0)
        if not isinstance(latency, int | float) or isinstance(latency, bool) or latency < 0:
            raise FaultSpecError("latency_ms must be a non-negative number")
        message = raw.get("message")
        if message is not None and not isinstance(message, str):
            raise FaultSpecError("message must be a string")
        status = raw.get("status")
        apply = raw.get("apply", False)
        if not isinstance(apply, bool):
            raise FaultSpecError("apply must be true or false")
        after = raw.get("apply_after_ms")
        if after is not None and (not isinstance(after, int | float) or isinstance(after, bool) or after < 0):
            raise FaultSpecError("apply_after_ms must be a non-negative number")
        step = FaultStep(
            status=None if status is None else _parse_status(status),
            retry_after=None if retry_after is None else _format_retry_after(retry_after),
            latency_ms=float(latency),
            drop=bool(raw.get("drop", False)),
            message=message,
            apply=apply,
            apply_after_ms=None if after is None else float(after),
        )
        if step.applies and not step.answers:
            raise FaultSpecError("apply and apply_after_ms need a status or drop to answer with")
        return step
    raise FaultSpecError(f"cannot read fault step {raw!r}: use a status, 'ok', 'drop' or an object")


STEP_KEYS = ("status", "retry_after", "latency_ms", "drop", "message", "apply", "apply_after_ms")


def _parse_status(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 400 <= value <= 599:
        raise FaultSpecError(f"status must be an HTTP error status (400-599), got {value!r}")
    return value


def _format_retry_after(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FaultSpecError("retry_after must be a number of seconds (or an HTTP date string)")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Scheduled[Step](Protocol):
    """What :func:`draw` needs of a rule: a sequence it walks, or a step it fires at a rate."""

    sequence: list[Step] | None
    position: int
    rate: float
    step: Step
    fired: int


def draw[Step](rule: _Scheduled[Step], dice: random.Random) -> Step | None:
    """The step ``rule`` fires for one matching request (the next of its sequence, or its step at its rate), or None.

    The caller holds its lock and has checked that the rule matches; shared with the DynamoDB fault
    proxy (relay_local.dynamodb_faults), whose rules are scheduled the same way.
    """
    if rule.sequence is not None:
        step = rule.sequence[rule.position]
        rule.position += 1
    elif dice.random() < rule.rate:
        step = rule.step
    else:
        return None
    rule.fired += 1
    return step


@dataclass
class FaultRule:
    operation: str = "*"
    index: str | None = None
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
        known = {"operation", "index", "rate", "times", "sequence", "id", *STEP_KEYS}
        unknown = set(raw) - known
        if unknown:
            raise FaultSpecError(f"unknown fault rule keys: {sorted(unknown)}")
        operation = raw.get("operation", "*")
        if not isinstance(operation, str) or not operation:
            raise FaultSpecError("operation must be an operation name or '*'")
        index = raw.get("index")
        if index is not None and not isinstance(index, str):
            raise FaultSpecError("index must be an index name")
        rate = raw.get("rate", 1.0)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
            raise FaultSpecError("rate must be a number between 0 and 1")
        times = raw.get("times")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise FaultSpecError("times must be a positive integer")
        sequence_raw = raw.get("sequence")
        sequence = None
        if sequence_raw is not None:
            if not isinstance(sequence_raw, list) or not sequence_raw:
                raise FaultSpecError("sequence must be a non-empty array of steps")
            sequence = [_parse_step(item) for item in sequence_raw]
        step = _parse_step({k: raw[k] for k in STEP_KEYS if k in raw})
        if sequence is None and not step.answers and not step.latency_ms:
            raise FaultSpecError("a rule needs a status, drop, latency_ms or a sequence")
        rule = cls(operation=operation, index=index, rate=float(rate), times=times, step=step, sequence=sequence)
        if isinstance(raw.get("id"), str):
            rule.id = raw["id"]
        return rule

    @property
    def exhausted(self) -> bool:
        if self.sequence is not None:
            return self.position >= len(self.sequence)
        return self.times is not None and self.fired >= self.times

    def matches(self, operation: str, index: str | None) -> bool:
        if self.exhausted:
            return False
        if self.operation not in ("*", operation):
            return False
        return self.index is None or self.index == index

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "index": self.index,
            "rate": self.rate,
            "times": self.times,
            "fired": self.fired,
            "exhausted": self.exhausted,
            **({"sequence": [s.to_json() for s in self.sequence], "position": self.position} if self.sequence else {}),
            **({} if self.sequence else self.step.to_json()),
        }


@dataclass
class RateLimit:
    requests_per_second: int = 0  # 0 = off (Pinecone's serverless limit is 100/s per namespace)
    operations: tuple[str, ...] = RATE_LIMITED_OPERATIONS
    retry_after: str | None = "1"
    window_seconds: float = 1.0  # a sliding window; tests lengthen it so that no verdict hangs on speed

    @classmethod
    def from_json(cls, raw: object) -> RateLimit:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise FaultSpecError("rate_limit must be an object")
        rps = raw.get("requests_per_second", 0)
        if not isinstance(rps, int) or isinstance(rps, bool) or rps < 0:
            raise FaultSpecError("requests_per_second must be a non-negative integer")
        operations = raw.get("operations", list(RATE_LIMITED_OPERATIONS))
        if not isinstance(operations, list) or not all(isinstance(op, str) for op in operations):
            raise FaultSpecError("operations must be an array of operation names")
        retry_after = raw.get("retry_after", "1")
        window = raw.get("window_seconds", 1.0)
        if not isinstance(window, int | float) or isinstance(window, bool) or not window > 0:
            raise FaultSpecError("window_seconds must be a positive number")
        formatted = None if retry_after is None else _format_retry_after(retry_after)
        return cls(rps, tuple(operations), formatted, float(window))

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_per_second": self.requests_per_second,
            "operations": list(self.operations),
            "retry_after": self.retry_after,
            "window_seconds": self.window_seconds,
        }


@dataclass
class Decision:
    latency_ms: float = 0.0
    answer: FaultStep | None = None
    rule_id: str | None = None


def _milliseconds(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
        raise FaultSpecError(f"{key} must be a non-negative number")
    return None if value is None else float(value)


class FaultPlan:
    """The faults in force; thread-safe, changed at run time through the control endpoint."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not cryptography
        self._seed = seed
        self.rules: list[FaultRule] = []
        self.rate_limit = RateLimit()
        self.indexing_lag_ms = 0.0
        self.index_ready_after_ms = 0.0  # a new index is Initializing this long, as Pinecone's are for a while
        self._windows: dict[tuple[str, str, str], deque[float]] = {}

    def configure(self, raw: dict[str, Any], *, replace: bool) -> None:
        """Apply ``{"rules": [...], "rate_limit": {...}, "indexing_lag_ms": n, "index_ready_after_ms": n}``; keys left
        out stay as they are."""
        unknown = set(raw) - {"rules", "rate_limit", "indexing_lag_ms", "index_ready_after_ms", "seed"}
        if unknown:
            raise FaultSpecError(f"unknown fault settings: {sorted(unknown)}")
        rules = raw.get("rules")
        if rules is not None and not isinstance(rules, list):
            raise FaultSpecError("rules must be an array")
        parsed = [FaultRule.from_json(rule) for rule in rules or []]
        rate_limit = RateLimit.from_json(raw["rate_limit"]) if "rate_limit" in raw else None
        lag = _milliseconds(raw, "indexing_lag_ms")
        ready_after = _milliseconds(raw, "index_ready_after_ms")
        with self._lock:
            if replace:
                self.rules = parsed
                self.rate_limit = rate_limit or RateLimit()
                self.indexing_lag_ms = float(lag or 0.0)
                self.index_ready_after_ms = float(ready_after or 0.0)
                self._windows.clear()
            else:
                self.rules.extend(parsed)
                if rate_limit is not None:
                    self.rate_limit = rate_limit
                    self._windows.clear()
                if lag is not None:
                    self.indexing_lag_ms = float(lag)
                if ready_after is not None:
                    self.index_ready_after_ms = float(ready_after)
            if "seed" in raw:
                self._random.seed(raw["seed"])

    def add_rule(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def remove_rule(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self.rules)
            self.rules = [r for r in self.rules if r.id != rule_id]
            return len(self.rules) != before

    def clear(self) -> None:
        with self._lock:
            self.rules = []
            self.rate_limit = RateLimit()
            self.indexing_lag_ms = 0.0
            self.index_ready_after_ms = 0.0
            self._windows.clear()
            self._random.seed(self._seed)

    @property
    def lag_seconds(self) -> float:
        return self.indexing_lag_ms / 1000.0

    def decide(self, operation: str, index: str | None) -> Decision:
        decision = Decision()
        with self._lock:
            for rule in self.rules:
                if not rule.matches(operation, index):
                    continue
                step = draw(rule, self._random)
                if step is None:
                    continue
                decision.latency_ms += step.latency_ms
                if step.answers:
                    decision.answer = step
                    decision.rule_id = rule.id
                    break
        return decision

    def over_rate_limit(self, operation: str, index: str, namespace: str) -> bool:
        """Counts this request against its namespace's window; True when it is over the limit."""
        with self._lock:
            limit = self.rate_limit.requests_per_second
            if not limit or operation not in self.rate_limit.operations:
                return False
            now = time.monotonic()
            window = self._windows.setdefault((operation, index, namespace), deque())
            while window and window[0] <= now - self.rate_limit.window_seconds:
                window.popleft()
            if len(window) >= limit:
                return True
            window.append(now)
            return False

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rules": [rule.to_json() for rule in self.rules],
                "rate_limit": self.rate_limit.to_json(),
                "indexing_lag_ms": self.indexing_lag_ms,
                "index_ready_after_ms": self.index_ready_after_ms,
            }
