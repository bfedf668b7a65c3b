"""Admission under the guard waits for a request's claims with one wake-up: every claim done, none lost."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from vector_relay.ingest.admission import _all_done


def test_claims_done_already_need_no_wait() -> None:
    claims: list[Future[int]] = [Future() for _ in range(3)]
    for number, claim in enumerate(claims):
        claim.set_result(number)
    asyncio.run(asyncio.wait_for(_all_done(claims), timeout=60))


def test_the_wait_ends_only_when_the_last_claim_finishes_on_another_thread() -> None:
    claims: list[Future[int]] = [Future() for _ in range(50)]
    claims[0].set_result(0)  # one done before the wait, the rest from claim threads
    release = threading.Event()

    def finish() -> None:
        release.wait(60)
        for number, claim in enumerate(claims[1:], 1):
            if number % 2:
                claim.set_result(number)
            else:
                claim.set_exception(RuntimeError("DynamoDB could not be asked"))

    async def scenario() -> None:
        waiting = asyncio.ensure_future(_all_done(claims))
        await asyncio.sleep(0)
        assert not waiting.done()  # nothing has finished the pending claims yet: the wait cannot have ended
        thread = threading.Thread(target=finish)
        thread.start()
        release.set()
        await asyncio.wait_for(waiting, timeout=60)
        thread.join(60)
        assert all(claim.done() for claim in claims)

    asyncio.run(scenario())


def test_a_cancelled_wait_lets_its_claims_finish_later_without_error() -> None:
    claim: Future[int] = Future()

    errors: list[dict[str, object]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        waiting = asyncio.ensure_future(_all_done([claim]))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        claim.set_result(1)  # wakes a loop future that was cancelled: must be ignored, not raise
        for _ in range(3):
            await asyncio.sleep(0)  # let the loop run the wake-up it was handed

    asyncio.run(scenario())
    assert claim.result() == 1
    assert errors == []
