"""The one rule every SendMessageBatch is packed by: at most 10 entries and 1 MiB together, in order."""

from __future__ import annotations

from collections.abc import Iterator

from vector_relay.sqs.limits import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES, send_batches


def test_a_batch_holds_at_most_ten_entries() -> None:
    groups = list(send_batches(range(25), lambda _: 1))
    assert [len(group) for group in groups] == [SQS_MAX_BATCH_ENTRIES, SQS_MAX_BATCH_ENTRIES, 5]
    assert [entry for group in groups for entry in group] == list(range(25))


def test_a_batch_holds_at_most_one_mib_and_an_oversized_entry_goes_alone() -> None:
    sizes = [SQS_MAX_BATCH_BYTES // 2, SQS_MAX_BATCH_BYTES // 2, 1, SQS_MAX_BATCH_BYTES + 1, 3]
    groups = list(send_batches(sizes, lambda size: size))
    assert groups == [sizes[:2], [1], [SQS_MAX_BATCH_BYTES + 1], [3]]
    assert SQS_MAX_BATCH_BYTES == 1_048_576


def test_a_batch_is_handed_over_before_the_entries_after_it_are_read() -> None:
    read: list[int] = []

    def entries() -> Iterator[int]:
        for entry in range(12):
            read.append(entry)
            yield entry

    first = next(send_batches(entries(), lambda _: 1))
    assert first == list(range(10))
    assert read == list(range(11))  # the 11th told the first batch it was full; nothing more was read
