"""The libraries' wire loggers stay above DEBUG whatever the root level (vector_relay.log_safety).

The end-to-end check, keys absent from everything logged with every level at DEBUG, is in
tests/integration/test_api_key_refresh.py and test_rotation_under_load.py (``log_level``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import vector_relay
from tests.conftest import ROOT
from vector_relay.log_safety import WIRE_LOG_FLOOR, WIRE_LOGGERS, clamp_wire_loggers

# Where the libraries write payloads at DEBUG: botocore's request and response bodies, httpcore's
# headers, the Pinecone SDK's curl line, urllib3's connection log.
PAYLOAD_LOGGERS = [
    "botocore.endpoint",
    "botocore.parsers",
    "boto3.resources.action",
    "httpcore.http11",
    "httpx",
    "urllib3.connectionpool",
    "pinecone._internal.http_client",
]


@pytest.fixture
def root_at_debug() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.setLevel(level)


@pytest.mark.usefixtures("root_at_debug")
def test_importing_the_package_keeps_every_wire_logger_above_debug_with_the_root_at_debug() -> None:
    assert vector_relay.__version__  # imported, so clamped
    for name in WIRE_LOGGERS:
        assert logging.getLogger(name).level >= WIRE_LOG_FLOOR, name
    for name in PAYLOAD_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name  # their INFO lines carry no payload


def test_a_child_given_debug_of_its_own_is_raised_and_a_higher_level_is_kept() -> None:
    child, quiet = logging.getLogger("botocore.parsers.test-child"), logging.getLogger("httpx")
    child.setLevel(logging.DEBUG)
    quiet.setLevel(logging.ERROR)
    try:
        clamp_wire_loggers()
        assert child.level == WIRE_LOG_FLOOR
        assert quiet.level == logging.ERROR
    finally:
        child.setLevel(logging.NOTSET)
        quiet.setLevel(WIRE_LOG_FLOOR)


def test_nothing_in_the_shipped_code_lowers_a_logger_again() -> None:
    shipped = [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]
    lowering = [
        path.relative_to(ROOT).as_posix()
        for path in shipped
        if path.name != "log_safety.py"
        and any(call in path.read_text() for call in ("setLevel(", "set_stream_logger(", "basicConfig("))
    ]
    assert lowering == []
