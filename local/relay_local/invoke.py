"""``make invoke FN=... EVENT=...``: what ``sam local invoke`` does for one event, without Docker.

The function runs under the real ``awslambdaric`` in its own process (:class:`RuntimeEnvironment`),
with the environment the template gives it, against a running ``make up`` stack if there is one
in this checkout, else against a local stack started for this one invocation (without pollers).
The response (or Lambda's error object) goes to stdout as JSON; the function's logs and a
``REPORT`` line go to stderr. As with ``sam local invoke``, a function error is an answer (exit 0);
a timeout or a runtime that dies is not (exit 1). A function the template does not have, or an
event file that is missing or not JSON, is one line on stderr naming what exists (exit 2), before
any stack starts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

from relay_local.aws_metrics import invocation_metrics
from relay_local.cloudformation import ROOT, LocalTemplate, TemplateError
from relay_local.metrics_feed import MetricsFeed
from relay_local.runtime import InvocationResult, RuntimeEnvironment
from relay_local.stack import LocalStack, StackOptions
from relay_local.state_file import DEFAULT_STATE_DIR, StackInfo, running_stack


def function_short_name(function: str) -> str:
    """``ingest`` for ``ingest`` or ``IngestFunction``."""
    return LocalTemplate(parameters={"PineconeIndexHost": "http://127.0.0.1"}).function(function).short_name


def invoke_event(
    info: StackInfo,
    function: str,
    event: dict[str, Any],
    *,
    log: IO[str] | None = None,
    metrics: MetricsFeed | None = None,
) -> InvocationResult:
    """Run ``event`` through a fresh environment of ``function`` (a cold start), then stop the environment.

    With ``metrics``, the function's EMF lines and Lambda's metrics of the invocation go to it too.
    """
    config = info.runtime_config(function_short_name(function))
    on_line = metrics.log_line if metrics is not None else None
    environment = RuntimeEnvironment(config, log=log or sys.stderr, on_line=on_line)
    try:
        result = environment.invoke(event)
    finally:
        environment.close()
    if metrics is not None:
        metrics.publish(invocation_metrics(config.name, result, concurrent=1))
    return result


def command_invoke(function: str, event_path: Path, *, state_dir: Path = DEFAULT_STATE_DIR) -> int:
    try:
        name = function_short_name(function)
    except TemplateError as error:
        return _refuse(f"FN={function}: {error}")
    try:
        event = json.loads(event_path.read_text())
    except OSError as error:
        samples = ", ".join(path.name for path in sorted((ROOT / "events").glob("*.json")))
        return _refuse(
            f"EVENT={event_path}: cannot read it ({error.strerror}); the sample events in events/: {samples}"
        )
    except ValueError as error:
        return _refuse(f"EVENT={event_path} is not JSON: {error}")
    info = running_stack(state_dir)
    if info is not None:
        print(f"invoking {name} against the running local stack ({info.aws_endpoint})", file=sys.stderr)
        with MetricsFeed(info.aws_endpoint, info.region) as metrics:  # as Lambda's would, into its CloudWatch
            result = invoke_event(info, name, event, metrics=metrics)
    else:
        print(f"no `make up` stack is running: starting one for this invocation of {name}", file=sys.stderr)
        options = StackOptions(state_dir=state_dir, pollers=False, write_state_file=False)
        with LocalStack(options, progress=lambda line: print(f"  {line}", file=sys.stderr)) as stack:
            assert stack.info is not None
            result = invoke_event(stack.info, name, event, metrics=stack.metrics_feed)
    print(
        f"REPORT RequestId: {result.request_id}  Outcome: {result.outcome}  Duration: {result.duration_ms:.2f} ms",
        file=sys.stderr,
    )
    print(json.dumps(result.payload, indent=2))
    return 0 if result.outcome in {"ok", "error"} else 1


def _refuse(reason: str) -> int:
    """One line on stderr, no traceback: what was asked for that does not exist, and what does (exit 2)."""
    print(f"make invoke: {reason}", file=sys.stderr)
    return 2
