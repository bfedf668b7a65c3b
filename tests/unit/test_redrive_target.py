"""Where ``vector-relay dlq redrive`` sends a dead letter: a source queue SQS lists for the DLQ, never one a message
names on its own (the integration tests drive the same through moto's queues)."""

from __future__ import annotations

from vector_relay.operations.redrive import DeadLetter, SourceQueue, redrive_target

INGEST = SourceQueue("https://sqs.us-east-1.amazonaws.com/1/ingest", "arn:aws:sqs:us-east-1:1:ingest")
QUERY = SourceQueue("https://sqs.us-east-1.amazonaws.com/1/query", "arn:aws:sqs:us-east-1:1:query")
ACME = "arn:aws:sqs:us-east-1:1:relay-tenant-acme-ingest"


def letter(source_queue: str = "", moved_from: str = "") -> DeadLetter:
    return DeadLetter("m", "r", "{}", 0, "", "", source_queue=source_queue, moved_from=moved_from)


def test_the_only_source_queue_whatever_the_message_names() -> None:
    assert redrive_target(letter(source_queue=ACME), [INGEST]) == INGEST
    assert redrive_target(letter(), [INGEST]) == INGEST


def test_with_several_the_one_sqs_moved_it_from_then_the_one_it_names() -> None:
    assert redrive_target(letter(source_queue=QUERY.arn, moved_from=INGEST.arn), [INGEST, QUERY]) == INGEST
    assert redrive_target(letter(source_queue=QUERY.arn), [INGEST, QUERY]) == QUERY


def test_with_several_a_message_naming_none_of_them_stays_even_with_a_target_for_unnamed_ones() -> None:
    assert redrive_target(letter(source_queue=ACME), [INGEST, QUERY], unnamed=INGEST) is None
    assert redrive_target(letter(moved_from=ACME, source_queue=INGEST.arn), [INGEST, QUERY]) is None


def test_with_several_a_message_naming_nothing_goes_where_the_operator_chose_or_stays() -> None:
    assert redrive_target(letter(), [INGEST, QUERY], unnamed=QUERY) == QUERY
    assert redrive_target(letter(), [INGEST, QUERY]) is None
