"""A new index is Initializing for a while, as Pinecone's are: describe says so, data-plane calls get 503 until
it is Ready; InitializationFailed and Terminating can be forced; deletion protection refuses a delete."""

from __future__ import annotations

import httpx
import pytest
from pinecone import ForbiddenError, Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle
from tests.conftest import wait_until

SPEC = ServerlessSpec(cloud="aws", region="us-east-1")


def upsert_status(emulator: EmulatorHandle, index: str) -> int:
    response = httpx.post(
        f"{emulator.index_host(index)}/vectors/upsert",
        headers={"Api-Key": emulator.api_key},
        json={"vectors": [{"id": "a", "values": [0.1, 0.2, 0.3]}], "namespace": "ns"},
    )
    return response.status_code


def test_a_new_index_is_initializing_and_refuses_data_calls_until_it_is_ready(
    pc: Pinecone, pinecone_emulator: EmulatorHandle
) -> None:
    # GIVEN indexes that take a moment to come up (an hour here: the test makes it Ready itself)
    pinecone_emulator.control.set_index_ready_after(3600)
    model = pc.create_index("slow", dimension=3, metric="cosine", spec=SPEC, timeout=-1)  # -1: do not wait

    # THEN it says Initializing, and a write is answered 503 (retryable), as Pinecone does
    assert (model.status.state, model.status.ready) == ("Initializing", False)
    assert (pc.describe_index("slow").status.state, pc.describe_index("slow").status.ready) == ("Initializing", False)
    response = httpx.post(
        f"{pinecone_emulator.index_host('slow')}/vectors/upsert",
        headers={"Api-Key": pinecone_emulator.api_key},
        json={"vectors": [{"id": "a", "values": [0.1, 0.2, 0.3]}]},
    )
    assert response.status_code == 503
    assert "is not ready" in response.json()["message"]

    # WHEN its time has come, THEN it is Ready and takes writes
    assert pinecone_emulator.control.set_index_state("slow", "Ready") == "Ready"
    assert pc.describe_index("slow").status.ready is True
    assert upsert_status(pinecone_emulator, "slow") == 200


def test_readiness_follows_the_clock(pc: Pinecone, pinecone_emulator: EmulatorHandle) -> None:
    pinecone_emulator.control.set_index_ready_after(0.5)
    pc.create_index("brief", dimension=3, metric="cosine", spec=SPEC, timeout=-1)

    wait_until(lambda: pc.describe_index("brief").status.ready, "the index became Ready")
    assert upsert_status(pinecone_emulator, "brief") == 200


@pytest.mark.parametrize("state", ["InitializationFailed", "Terminating"])
def test_failed_and_terminating_states_can_be_forced(
    pc: Pinecone, pinecone_emulator: EmulatorHandle, state: str
) -> None:
    pc.create_index("doomed", dimension=3, metric="cosine", spec=SPEC)

    pinecone_emulator.control.set_index_state("doomed", state)

    assert (pc.describe_index("doomed").status.state, pc.describe_index("doomed").status.ready) == (state, False)
    assert upsert_status(pinecone_emulator, "doomed") == 503


def test_deletion_protection_refuses_a_delete_with_pinecone_s_403(pc: Pinecone) -> None:
    pc.create_index("kept", dimension=3, metric="cosine", spec=SPEC, deletion_protection="enabled")

    with pytest.raises(ForbiddenError, match="Deletion protection is enabled"):
        pc.delete_index("kept", timeout=-1)
    assert pc.has_index("kept")


def test_the_default_is_ready_at_once(pc: Pinecone) -> None:
    model = pc.create_index("quick", dimension=3, metric="cosine", spec=SPEC, timeout=-1)
    assert (model.status.state, model.status.ready) == ("Ready", True)
