"""``vector-relay top`` without AWS: the frame drawn from a hand-made snapshot, the JSON of ``--once --json``,
the live loop's q and failed refreshes, and what the watcher asks SQS and CloudWatch (and how often)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from rich.console import Console

from vector_relay_cli.main import cli
from vector_relay_cli.top_command import WatchedQueue, Watcher, deployment_queues, watch
from vector_relay_cli.top_view import (
    DeadLetterCounts,
    QueueDepth,
    RecentError,
    Snapshot,
    TenantRates,
    render,
    snapshot_json,
)

NOW_MS = 1_800_000_000_000


def snapshot(**changes: Any) -> Snapshot:
    fields: dict[str, Any] = {
        "deployment": "stack relay-prod",
        "taken_at_ms": NOW_MS,
        "queues": (
            QueueDepth("ingest", "relay-prod-IngestQueue-ABC", 1234, 56, 7, 42.0, dead_letter=False),
            QueueDepth("ingest DLQ", "relay-prod-IngestDeadLetterQueue-DEF", 3, 0, 0, 754.0, dead_letter=True),
            QueueDepth("query", "relay-prod-QueryQueue-GHI", 0, 0, 0, None, dead_letter=False),
        ),
        "dead_letters": (
            DeadLetterCounts("ingest DLQ", held=3, sampled=3, codes=(("zero_vector", 2), ("unknown_tenant", 1))),
        ),
        "tenants": (
            TenantRates("acme", upserted=None, deleted=None, replies=None, poison=2.0),
            TenantRates("globex", upserted=120.0, deleted=0.4, replies=33.2, poison=None),
        ),
        "recent_errors": (
            RecentError("ingest DLQ", "m-3", "zero_vector", "record z: the vector is all zeros", NOW_MS - 90_000),
            RecentError("ingest DLQ", "m-1", "unknown_tenant", "the tenant is not registered", NOW_MS - 7_200_000),
        ),
        "metrics_at_ms": NOW_MS - 30_000,
    }
    return Snapshot(**(fields | changes))


def drawn(frame: Any, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(frame)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def line_with(text: str, word: str) -> str:
    [found] = [line for line in text.splitlines() if f" {word} " in f" {line} "]
    return found


def test_the_frame_shows_each_queue_its_depths_and_the_oldest_age() -> None:
    out = drawn(render(snapshot()))

    ingest = line_with(out, "relay-prod-IngestQueue-ABC")
    assert ingest.split()[-4:] == ["1,234", "56", "7", "42s"]
    assert line_with(out, "relay-prod-IngestDeadLetterQueue-DEF").split()[-4:] == ["3", "0", "0", "12m"]
    assert line_with(out, "relay-prod-QueryQueue-GHI").split()[-1] == "-"  # no datapoint: not a made-up 0


def test_the_frame_counts_dead_letters_by_code_and_says_when_they_are_all_of_them() -> None:
    out = drawn(render(snapshot(recent_errors=())))

    assert line_with(out, "zero_vector").split()[-4:] == ["zero_vector", "2", "all", "3"]
    assert line_with(out, "unknown_tenant").split()[-2:] == ["unknown_tenant", "1"]


def test_a_dlq_holding_more_than_was_read_is_shown_as_sampled() -> None:
    partial = DeadLetterCounts("ingest DLQ", held=5000, sampled=100, codes=(("zero_vector", 100),))

    out = drawn(render(snapshot(dead_letters=(partial,), recent_errors=())))

    assert "sampled 100 of 5,000" in line_with(out, "zero_vector")


def test_an_empty_dlq_is_shown_empty() -> None:
    out = drawn(render(snapshot(dead_letters=(DeadLetterCounts("query DLQ", 0, 0, ()),))))

    assert line_with(out, "empty").split() == ["query", "DLQ", "empty", "0"]


def test_each_tenant_has_a_row_of_rates_per_minute_and_a_dash_where_cloudwatch_has_none() -> None:
    out = drawn(render(snapshot()))

    assert "per minute over the last 5 minutes" in out
    assert line_with(out, "acme").split() == ["acme", "-", "-", "-", "2.0"]
    assert line_with(out, "globex").split() == ["globex", "120.0", "0.4", "33.2", "-"]


def test_the_latest_errors_show_age_queue_code_id_and_reason_newest_first() -> None:
    out = drawn(render(snapshot()))

    rows = [line.split() for line in out.splitlines() if " m-" in line]
    assert [row[:5] for row in rows] == [
        ["90s", "ingest", "DLQ", "zero_vector", "m-3"],
        ["2h", "ingest", "DLQ", "unknown_tenant", "m-1"],
    ]
    assert " ".join(rows[0][5:]) == "record z: the vector is all zeros"


def test_a_reason_is_shown_literally_without_markup_or_control_sequences() -> None:
    hostile = "bad [bold red]tenant[/] \x1b[2J\x1b]0;owned\x07 end"
    error = RecentError("ingest DLQ", "m-9", "unknown_tenant", hostile, NOW_MS)

    out = drawn(render(snapshot(recent_errors=(error,))), width=240)

    assert "bad [bold red]tenant[/] [2J ]0;owned end" in out
    assert "\x1b" not in out
    assert "\x07" not in out


def test_the_live_frame_says_how_to_quit_and_a_failed_refresh_says_why() -> None:
    assert "q quits" not in drawn(render(snapshot()))
    live = drawn(render(snapshot(problem="refresh failed, figures of 07:59:00Z: throttled"), live=True))
    assert "q quits" in live
    assert "refresh failed, figures of 07:59:00Z: throttled" in live


def test_the_json_has_the_frames_data() -> None:
    data = snapshot_json(snapshot(dead_letters=(DeadLetterCounts("ingest DLQ", 5, 3, (("zero_vector", 3),)),)))

    assert data["queues"][1] == {
        "queue": "ingest DLQ",
        "name": "relay-prod-IngestDeadLetterQueue-DEF",
        "visible": 3,
        "in_flight": 0,
        "delayed": 0,
        "oldest_age_seconds": 754.0,
        "dead_letter": True,
    }
    assert data["dead_letters"] == [
        {"queue": "ingest DLQ", "held": 5, "sampled": 3, "partial": True, "codes": {"zero_vector": 3}}
    ]
    assert data["tenants"][0] == {
        "tenant": "acme",
        "per_minute": {
            "records_upserted": None,
            "records_deleted": None,
            "query_replies": None,
            "poison_messages": 2.0,
        },
    }
    assert data["recent_errors"][0] == {
        "queue": "ingest DLQ",
        "message_id": "m-3",
        "error_code": "zero_vector",
        "reason": "record z: the vector is all zeros",
        "sent_at_ms": NOW_MS - 90_000,
        "age_seconds": 90,
    }


def test_the_queues_are_those_the_outputs_name() -> None:
    outputs = {"IngestQueueUrl": "https://q/ingest", "IngestDeadLetterQueueUrl": "https://q/dlq", "Other": "x"}

    assert deployment_queues(outputs) == [
        WatchedQueue("ingest", "https://q/ingest", dead_letter=False),
        WatchedQueue("ingest DLQ", "https://q/dlq", dead_letter=True),
    ]


def test_json_without_once_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["--outputs", "absent.json", "top", "--json"])

    assert result.exit_code == 2
    assert "--json prints one frame: give --once too" in result.output


# ---------------------------------------------------------------- the live loop


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Keys:
    """Key presses: each call waits (advancing the clock by what it was given) unless a key is next."""

    def __init__(self, clock: Clock, presses: Sequence[str]) -> None:
        self.clock, self.presses, self.calls = clock, list(presses), 0

    def __call__(self, seconds: float) -> str:
        self.calls += 1
        key = self.presses.pop(0) if self.presses else "q"
        if not key:
            self.clock.now += seconds
        return key


class Frames:
    def __init__(self, *results: Snapshot | Exception) -> None:
        self.results = list(results)
        self.taken = 0

    def snapshot(self) -> Snapshot:
        self.taken += 1
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=160, height=60, color_system=None)


def test_q_quits_after_the_first_frame() -> None:
    clock = Clock()
    frames = Frames(snapshot())

    watch(frames, terminal(), 2.0, Keys(clock, ["q"]), clock)  # type: ignore[arg-type]

    assert frames.taken == 1


def test_other_keys_do_not_quit_and_a_frame_is_drawn_each_interval() -> None:
    clock = Clock()
    frames = Frames(snapshot(), snapshot(), snapshot())
    console = terminal()

    watch(frames, console, 2.0, Keys(clock, ["", "x", "", "q"]), clock)  # type: ignore[arg-type]

    assert frames.taken == 3  # the first; after 2 s ("x" in between changed nothing); after 4 s; q
    assert clock.now == 4.0


def test_a_failed_refresh_keeps_the_last_figures_and_says_why() -> None:
    clock = Clock()
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "GetQueueAttributes")
    frames = Frames(snapshot(), throttled)
    console = terminal()

    watch(frames, console, 2.0, Keys(clock, ["", "q"]), clock)  # type: ignore[arg-type]

    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "refresh failed, figures of 08:00:00Z:" in out
    assert "Rate exceeded" in out
    assert "relay-prod-IngestQueue-ABC" in out.rsplit("refresh failed", 1)[1]  # the last figures still shown


# ---------------------------------------------------------------- what the watcher reads, and how often


class FakeSqs:
    """Queues by URL: their attributes, and the dead letters a receive returns (each once per scan)."""

    def __init__(self, depths: dict[str, int], letters: dict[str, list[dict[str, Any]]]) -> None:
        self.depths, self.letters = depths, letters
        self.received: list[str] = []
        self.released: list[tuple[str, int]] = []
        self._handed: dict[str, int] = {}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        name = QueueUrl.rsplit("/", 1)[1]
        return {
            "Attributes": {
                "QueueArn": f"arn:aws:sqs:us-east-1:123456789012:{name}",
                "ApproximateNumberOfMessages": str(self.depths[QueueUrl]),
                "ApproximateNumberOfMessagesNotVisible": "0",
                "ApproximateNumberOfMessagesDelayed": "0",
            }
        }

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:
        self.received.append(QueueUrl)
        start = self._handed.get(QueueUrl, 0)
        batch = self.letters[QueueUrl][start : start + MaxNumberOfMessages]
        self._handed[QueueUrl] = start + len(batch)
        return {"Messages": batch}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[Any]) -> None:
        self.released.append((QueueUrl, len(Entries)))
        self._handed[QueueUrl] = 0


class FakeCloudWatch:
    def __init__(self, values: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]) -> None:
        self.values = values
        self.requests: list[list[Any]] = []

    def get_paginator(self, operation: str) -> FakeCloudWatch:
        assert operation == "get_metric_data"
        return self

    def paginate(self, MetricDataQueries: list[Any], **_: Any) -> Iterator[dict[str, Any]]:
        self.requests.append(MetricDataQueries)
        results = []
        for query in MetricDataQueries:
            metric = query["MetricStat"]["Metric"]
            key = (metric["MetricName"], tuple((d["Name"], d["Value"]) for d in metric["Dimensions"]))
            results.append({"Id": query["Id"], "Values": self.values.get(key, [])})
        yield {"MetricDataResults": results}


def dead_letter(message_id: str, code: str, body: str = '{"values": [0.5]}') -> dict[str, Any]:
    attributes = {
        "error_code": code,
        "error_detail": f"why {message_id}",
        "source_queue": "arn:aws:sqs:us-east-1:123456789012:ingest",
        "source_message_id": f"src-{message_id}",
        "receive_count": "1",
    }
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": body,
        "Attributes": {"SentTimestamp": str(NOW_MS)},
        "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
    }


QUEUES = [WatchedQueue("ingest", "https://sqs/ingest", False), WatchedQueue("ingest DLQ", "https://sqs/dlq", True)]


def watcher(sqs: FakeSqs, cloudwatch: FakeCloudWatch, clock: Clock, tenants: list[str], limit: int = 100) -> Watcher:
    return Watcher(
        deployment="outputs file o.json",
        sqs=sqs,  # type: ignore[arg-type]
        cloudwatch=cloudwatch,  # type: ignore[arg-type]
        queues=QUEUES,
        tenants=lambda: tenants,
        max_sampled=limit,
        clock=clock,
    )


def test_each_tenant_metric_and_service_is_one_explicit_query_read_once_a_minute() -> None:
    clock = Clock()
    clock.now = NOW_MS / 1000
    cloudwatch = FakeCloudWatch(
        {
            ("RecordsUpserted", (("tenant", "globex"), ("service", "ingest"))): [300.0, 300.0],
            ("PoisonMessages", (("tenant", "acme"), ("service", "ingest"))): [4.0],
            ("PoisonMessages", (("tenant", "acme"), ("service", "query"))): [1.0],
            ("PoisonMessages", (("tenant", "-"), ("service", "ingest"))): [2.0, 1.0],
            ("ApproximateAgeOfOldestMessage", (("QueueName", "dlq"),)): [60.0, 45.0],  # newest first
        }
    )
    top = watcher(FakeSqs({"https://sqs/ingest": 0, "https://sqs/dlq": 0}, {}), cloudwatch, clock, ["globex", "acme"])

    first = top.snapshot()
    clock.now += 59
    top.snapshot()

    [queries] = cloudwatch.requests  # one request for the minute
    # a query per queue; per tenant 5: upserted, deleted, poison (ingest), replies, poison (query); and the
    # poison of tenants not in the registry (ingest, query). No SEARCH.
    assert len(queries) == 2 + 5 * 2 + 2
    assert not any("Expression" in q for q in queries)
    assert first.tenants == (
        TenantRates("acme", None, None, None, 1.0),  # (4 + 1) / 5 minutes
        TenantRates("globex", 120.0, None, None, None),
        TenantRates("-", None, None, None, 0.6),
    )
    assert "- (not registered)" in drawn(render(first))
    assert [q.oldest_age_seconds for q in first.queues] == [None, 60.0]

    clock.now += 1
    top.snapshot()
    assert len(cloudwatch.requests) == 2  # a minute later


def test_a_dlq_is_read_again_only_when_its_count_changed_or_a_minute_passed_and_always_released() -> None:
    clock = Clock()
    clock.now = NOW_MS / 1000
    letters = [dead_letter("m-1", "zero_vector"), dead_letter("m-2", "zero_vector"), dead_letter("m-3", "x")]
    sqs = FakeSqs({"https://sqs/ingest": 0, "https://sqs/dlq": 3}, {"https://sqs/dlq": letters})
    top = watcher(sqs, FakeCloudWatch({}), clock, [], limit=2)

    first = top.snapshot()
    assert first.dead_letters == (DeadLetterCounts("ingest DLQ", held=3, sampled=2, codes=(("zero_vector", 2),)),)
    assert sqs.released == [("https://sqs/dlq", 2)]
    reads = len(sqs.received)

    clock.now += 30
    top.snapshot()
    assert len(sqs.received) == reads  # same count, within the minute: not read

    sqs.depths["https://sqs/dlq"] = 4
    top.snapshot()
    assert len(sqs.received) > reads  # the count changed
    assert sqs.released[-1] == ("https://sqs/dlq", 2)


def test_an_empty_dlq_is_not_read_and_no_body_is_kept() -> None:
    clock = Clock()
    sqs = FakeSqs({"https://sqs/ingest": 0, "https://sqs/dlq": 0}, {"https://sqs/dlq": []})

    empty = watcher(sqs, FakeCloudWatch({}), clock, []).snapshot()

    assert sqs.received == []
    assert empty.dead_letters == (DeadLetterCounts("ingest DLQ", 0, 0, ()),)

    sqs.depths["https://sqs/dlq"] = 1
    sqs.letters["https://sqs/dlq"] = [dead_letter("m-1", "zero_vector", body='{"secret_vector": [0.25]}')]
    one = watcher(sqs, FakeCloudWatch({}), clock, []).snapshot()
    assert "secret_vector" not in repr(one)
    assert "secret_vector" not in drawn(render(one))


def test_an_interrupted_dlq_read_still_releases_what_it_read() -> None:
    clock = Clock()
    letters = [dead_letter(f"m-{i}", "zero_vector") for i in range(15)]

    class Interrupted(FakeSqs):
        def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **kw: Any) -> dict[str, Any]:
            if self.received:
                raise KeyboardInterrupt
            return super().receive_message(QueueUrl, MaxNumberOfMessages, **kw)

    sqs = Interrupted({"https://sqs/ingest": 0, "https://sqs/dlq": 15}, {"https://sqs/dlq": letters})

    with pytest.raises(KeyboardInterrupt):
        watcher(sqs, FakeCloudWatch({}), clock, []).snapshot()

    assert sqs.released == [("https://sqs/dlq", 10)]
