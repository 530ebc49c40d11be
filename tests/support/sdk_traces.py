"""Log traces with the real MLflow SDK, in a child process, and say which IDs it logged.

The SDK keeps global state (tracking URI, active experiment, async span export), so it runs
in its own interpreter: ``python -m tests.support.sdk_traces URL EXPERIMENT OK ERROR`` logs
``OK`` traces that succeed and ``ERROR`` traces that raise, each with a nested span, a tag
and an assessment (feedback), and prints ``{"ok": [...], "error": [...]}`` as JSON.
:func:`log_sdk_traces` runs it and returns that.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from typing import Any

__all__ = ["log_sdk_traces"]


def log_sdk_traces(url: str, experiment: str, *, ok: int, error: int) -> dict[str, list[str]]:
    """Log ``ok`` succeeding and ``error`` failing traces into ``experiment`` (by name).

    Returns:
        The trace IDs the SDK logged, by outcome.
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.sdk_traces", url, experiment, str(ok), str(error)],
        capture_output=True,
        check=True,
        env=env,
        text=True,
        timeout=300,
    )
    logged: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return logged


def _main(url: str, experiment: str, ok: int, error: int) -> None:  # pragma: no cover - child
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(experiment)

    @mlflow.trace(span_type="TOOL")
    def lookup(question: str) -> str:
        return question.upper()

    @mlflow.trace
    def answer(question: str, fail: bool) -> str:
        with mlflow.start_span(name="retrieve") as span:
            span.set_inputs({"question": question})
            found = lookup(question)
            span.set_outputs({"found": found})
        mlflow.update_current_trace(tags={"team": "search", "fail": str(fail)})
        if fail:
            raise ValueError(f"no answer for {question}")
        return found

    logged: dict[str, list[str]] = {"ok": [], "error": []}
    for index in range(ok + error):
        fail = index >= ok
        with contextlib.suppress(ValueError):  # a failing trace is what ERROR means
            answer(f"question {index}", fail)
        trace_id = mlflow.get_last_active_trace_id()
        assert trace_id is not None
        logged["error" if fail else "ok"].append(trace_id)
    mlflow.flush_trace_async_logging()
    for trace_id in logged["ok"] + logged["error"]:
        feedback: Any = mlflow.log_feedback(trace_id=trace_id, name="helpful", value=True)
        assert feedback is not None
    print(json.dumps(logged))


if __name__ == "__main__":  # pragma: no cover - the child process
    _main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
