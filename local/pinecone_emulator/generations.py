"""Reset generations: a request that arrived before a reset never touches what came after it.

A test resets the emulator between tests while requests of the one before may still be inside it:
held by a latency fault (seconds), waiting for a lock, or sent by a client that gave up on them.
Left alone, such a request would be counted in the next test's counters and carried out on the
next test's index of the same name (a stale upsert landing in a fresh index). So every request
belongs to the generation in which it arrived; a reset starts a new generation, cuts the old
generation's waits short, and returns only once its requests have left. A request of an ended
generation is dropped (as by a server restart), neither counted nor carried out.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class Superseded(Exception):
    """The request's generation ended (a reset) before it was carried out."""


@dataclass(frozen=True, slots=True)
class Ticket:
    generation: int
    ended: threading.Event

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` (a latency fault), unless a reset ends this generation first: then Superseded."""
        if self.ended.wait(seconds):
            raise Superseded

    def check(self) -> None:
        if self.ended.is_set():
            raise Superseded

    @property
    def current(self) -> bool:
        return not self.ended.is_set()


class Generations:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0
        self._ended = threading.Event()
        self._in_flight: Counter[int] = Counter()

    @property
    def current(self) -> int:
        return self._generation

    @contextmanager
    def request(self) -> Iterator[Ticket]:
        """A request in the current generation, for as long as the block runs."""
        with self._changed:
            ticket = Ticket(self._generation, self._ended)
            self._in_flight[ticket.generation] += 1
        try:
            yield ticket
        finally:
            with self._changed:
                self._in_flight[ticket.generation] -= 1
                if not self._in_flight[ticket.generation]:
                    del self._in_flight[ticket.generation]
                self._changed.notify_all()

    def in_flight(self) -> int:
        """Requests inside the emulator now, of any generation."""
        with self._changed:
            return sum(self._in_flight.values())

    def ticket(self) -> Ticket:
        """The current generation, not counted as a request in flight (for work scheduled to run later)."""
        with self._changed:
            return Ticket(self._generation, self._ended)

    def advance(self, ceiling: float = 30.0) -> bool:
        """Start a new generation and wait until the old ones' requests have left (their waits cut
        short); False when some were still inside after ``ceiling`` seconds."""
        with self._changed:
            ended, self._ended = self._ended, threading.Event()
            self._generation += 1
            ended.set()
            newest = self._generation
            return self._changed.wait_for(lambda: all(g >= newest for g in self._in_flight), timeout=ceiling)
