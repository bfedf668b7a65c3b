"""No AWS call carries an invocation past its end: each gets a client that fits the time left, or none.

Handlers run with real SQS events; AWS is moto's server, or a server that accepts requests and never
answers (an SQS endpoint in trouble). Both outcomes are transient: the messages stay on their queue.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import FakeLambdaContext, load_event, wait_until
from tests.integration.conftest import Pipeline
from vector_relay.aws_clients import clear_client_caches


def poison_event(count: int) -> dict[str, Any]:
    """``count`` messages that are not JSON, as SQS would deliver them to the ingest function."""
    event = load_event("ingest-upsert")
    template = event["Records"][0]
    event["Records"] = []
    for i in range(count):
        record = copy.deepcopy(template)
        record["messageId"] = f"poison-{i}"
        record["body"] = "{not json"
        event["Records"].append(record)
    return event


def test_a_dead_letter_send_with_too_little_time_left_is_not_made_and_the_message_stays(pipeline: Pipeline) -> None:
    # GIVEN a warm worker (its cold-start checks passed with a full minute)
    event = poison_event(2)
    ingest_app.lambda_handler(load_event("ingest-upsert"), FakeLambdaContext(remaining_ms=60_000))

    # WHEN a batch of poison arrives with 2 s left: less than the briefest AWS call may take (3 s + 0.5 s)
    with pytest.raises(BatchProcessingError):  # every message failed: SQS keeps them all
        ingest_app.lambda_handler(event, FakeLambdaContext(remaining_ms=2_000))

    # THEN nothing was sent (a send that might outlive the invocation is not started) ...
    assert pipeline.drain() == []
    # ... and the next delivery, with time, dead-letters both: nothing was lost
    assert ingest_app.lambda_handler(event, FakeLambdaContext(remaining_ms=60_000)) == {"batchItemFailures": []}
    assert sorted(m["MessageAttributes"]["source_message_id"]["StringValue"] for m in pipeline.drain()) == [
        "poison-0",
        "poison-1",
    ]


class Silent(BaseHTTPRequestHandler):
    """Reads each request and answers nothing until the test ends."""

    requests = 0
    release = threading.Event()

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).release.wait(120)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def silent_sqs(aws: str, sample_settings: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", url)  # SQS only; the rest stays on moto
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", f"{url}/123456789012/ingest-dlq")
    clear_client_caches()
    Silent.requests = 0
    Silent.release.clear()
    yield url
    Silent.release.set()
    server.shutdown()
    server.server_close()


def test_a_dead_letter_send_that_never_answers_is_given_up_within_the_time_left(silent_sqs: str) -> None:
    # GIVEN an SQS endpoint that takes requests and never answers, and an invocation with 10 s left
    event = poison_event(2)

    # WHEN the ingest function dead-letters two poison messages
    with pytest.raises(BatchProcessingError):  # both sends failed: SQS keeps both messages
        ingest_app.lambda_handler(event, FakeLambdaContext(remaining_ms=10_000))

    # THEN each send was a single short attempt (the client that fits 9.5 s: one attempt, 1 s + 2 s);
    # the most patient client would have sent the first message 3 times, waiting 10 s for each answer
    assert 1 <= Silent.requests <= 2


@pytest.mark.parametrize("handler", ["ingest", "query"])
def test_a_warm_worker_bounds_its_aws_calls_by_this_invocation_not_its_first(pipeline: Pipeline, handler: str) -> None:
    """The worker's event loop (one asyncio.Runner per container) runs each batch in that batch's context.

    asyncio.Runner.run uses the context of the Runner's first run unless given one, so the time box of
    the container's first invocation bounded every AWS call made inside the loop for good: once that
    invocation's end had passed, reading the API key in a request was refused as "0.0 s of the
    invocation left", on every delivery (seen in the chaos run: one message dead-lettered five redrives
    running), and a warm worker could not take up a rotated key after a refusal either.
    """
    function = ingest_app if handler == "ingest" else query_app
    valid = load_event("ingest-upsert" if handler == "ingest" else "query")
    # GIVEN a worker whose first invocation had 7 s and read no key (its one message was not JSON)
    first = time.monotonic()
    assert function.lambda_handler(poison_event(1), FakeLambdaContext(remaining_ms=7_000)) == {"batchItemFailures": []}
    wait_until(lambda: time.monotonic() > first + 7.5, "the first invocation's time is over", poll=0.1)

    # WHEN a later invocation with a minute left needs the key
    response = function.lambda_handler(valid, FakeLambdaContext(remaining_ms=60_000))

    # THEN the key is read (the AWS call fits this invocation) and the batch succeeds
    assert response == {"batchItemFailures": []}
