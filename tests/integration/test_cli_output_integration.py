"""The CLI's output on an 80-column terminal against a real `mlflow server`: the dry run
names the server, the filter, the cutoff and the count whole, and the command it prints,
split as a shell would, deletes exactly those traces.

Assertions are on what is left on the server, not only on what the CLI reports.
"""

from __future__ import annotations

import shlex
import time
import uuid

import anyio
import pytest

from async_trace_delete._cli.args import run_cli
from async_trace_delete._cli.inputs import EXIT_OK
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import create_experiment, make_traces, remaining_traces, seed_traces_sql

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def test_an_80_column_dry_run_and_its_printed_command_delete_exactly_the_errors(
    mlflow_server: MlflowServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """300 old traces (75 ERROR) and 50 recent in an experiment with a long name: at 80
    columns the dry run shows the server, ``status = 'ERROR'``, the cutoff and 75, nothing
    cropped; the printed command, run as printed, deletes the 75 old errors and no other."""
    monkeypatch.setenv("COLUMNS", "80")
    name = f"production-chat-assistant-eu-west-{uuid.uuid4().hex[:10]}"
    experiment_id = anyio.run(create_experiment, mlflow_server.url, name)
    now = time.time_ns() // 1_000_000
    assert mlflow_server.db_path is not None
    old = make_traces(300, start_ms=now - 40 * DAY_MS, error_every=4)
    recent = make_traces(50, start_ms=now - DAY_MS, error_every=4)
    seed_traces_sql(mlflow_server.db_path, experiment_id, [*old, *recent])
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url}
    argv = ["delete", "--experiment-name", name, "--older-than", "7d"]
    argv += ["--filter", "status = 'ERROR'", "--sample", "2"]

    assert run_cli(argv, environ=env) == EXIT_OK
    dry = capsys.readouterr()
    lines = dry.out.splitlines()
    assert lines[0] == f"Server: {mlflow_server.url} (from MLFLOW_TRACKING_URI)"
    assert f"{name} (experiment {experiment_id})" in lines
    assert "  would delete  75" in [line.rstrip() for line in lines]
    assert "  filter        status = 'ERROR'" in [line.rstrip() for line in lines]
    cutoff = next(line for line in lines if line.startswith("  cutoff        <= "))
    assert cutoff.rstrip().endswith(", 7d ago")
    assert "…" not in dry.out
    printed = lines[-1]
    assert "--filter \"status = 'ERROR'\"" in printed
    assert len(anyio.run(remaining_traces, mlflow_server.url, experiment_id)) == 350

    words = shlex.split(printed)
    assert words == ["async-trace-delete", *argv, "--execute"]
    assert run_cli(words[1:], environ=env) == EXIT_OK
    executed = capsys.readouterr()
    assert executed.err.splitlines()[0] == lines[0]
    assert "  deleted 75 of 75 expected, 0 unknown, 0 not found" in executed.out.splitlines()
    left = anyio.run(remaining_traces, mlflow_server.url, experiment_id)
    old_errors = {trace.trace_id for trace in old if trace.state == "ERROR"}
    assert len(left) == 275
    assert not old_errors & {trace.trace_id for trace in left}
