"""Run the CLI in-process against the simulated MLflow server, and read what it wrote.

``cli`` runs ``run_cli`` against a `Recorder`: the simulated server
(``tests/support/simulated_server.py``) behind an httpx ``MockTransport`` that also records
every request, so "nothing was sent" is checked, not assumed. The ``recorder`` fixture (three
experiments) is in ``tests/cli/conftest.py``.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from async_trace_delete._cli.args import run_cli
from async_trace_delete._cli.inputs import EXIT_BAD_INPUT
from tests.support.simulated_artifacts import SimulatedArtifacts
from tests.support.simulated_server import BASE_MS, SIM_URL, SimulatedServer, sim_traces

DAY_MS = 86_400_000
NOW_MS = BASE_MS + 30 * DAY_MS
FAST = ["--rate", "10000"]


@dataclass
class Recorder:
    """The simulated server behind a transport that records every request."""

    server: SimulatedServer = field(default_factory=SimulatedServer)
    requests: list[httpx.Request] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Record, yield to the event loop as real I/O would, then answer."""
        self.requests.append(request)
        await anyio.lowlevel.checkpoint()
        return await self.server.handle(request)

    @property
    def transport(self) -> httpx.MockTransport:
        """The transport to hand to the CLI."""
        return httpx.MockTransport(self.handle)

    @property
    def delete_calls(self) -> int:
        """Delete requests received."""
        return sum(1 for r in self.requests if r.url.path.endswith("/delete-traces"))

    @property
    def artifacts(self) -> SimulatedArtifacts:
        """The server's artifact store (for a recorder whose server has one)."""
        assert self.server.artifacts is not None, "this recorder's server has no artifact store"
        return self.server.artifacts


def three_experiments(rec: Recorder) -> Recorder:
    """Give the recorder's server 'alpha' (1), 'beta' (2) and 'gamma' (3), each with 100
    traces 20 days old (every 4th an ERROR) and 10 traces 1 day old."""
    for tag, name in enumerate(("alpha", "beta", "gamma"), start=1):
        old = sim_traces(100, start_ms=NOW_MS - 20 * DAY_MS, error_every=4, tag=tag)
        new = sim_traces(10, start_ms=NOW_MS - DAY_MS, tag=tag + 10)
        rec.server.add_experiment(name, [*old, *new])
    return rec


def artifact_world() -> Recorder:
    """:func:`three_experiments` with an artifact store (``Recorder.artifacts``): in each
    experiment every other trace, oldest first, has a folder holding a 13-byte
    ``traces.json`` (50 of the 100 old traces and 5 of the 10 new ones: 55 folders)."""
    rec = three_experiments(Recorder(server=SimulatedServer(artifacts=SimulatedArtifacts())))
    for experiment_id in ("1", "2", "3"):
        traces = rec.server.remaining(experiment_id)
        rec.artifacts.add_trace_folders(experiment_id, [trace.trace_id for trace in traces[::2]])
    return rec


@dataclass
class Result:
    """What one CLI run returned and printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """Stdout parsed as JSON."""
        return json.loads(self.out)


def cli(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    env: dict[str, str] | None = None,
    stdin: Any = None,
) -> Result:
    """Run the CLI in-process against the recorder's server."""
    environ = {"MLFLOW_TRACKING_URI": SIM_URL, **(env or {})}
    code = run_cli(
        list(argv),
        environ=environ,
        stdin=stdin,
        wall_clock_ms=lambda: NOW_MS,
        transport=recorder.transport,
        clock=recorder.server.clock,
        sleep=recorder.server.clock.sleep,
        random=lambda: 0.5,
    )
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    """Every record of an audit log."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_error_line(result: Result) -> str:
    """The single stderr line of a run refused as bad input."""
    assert result.code == EXIT_BAD_INPUT, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("async-trace-delete: error: ")
    return lines[0]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the tables printed in ``text`` (not their headers), cells stripped."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


# -- policy files ----------------------------------------------------------------------------


def write_policy(tmp_path: Path, text: str) -> Path:
    """A policy file in tmp_path."""
    path = tmp_path / "policy.toml"
    path.write_text(textwrap.dedent(text))
    return path
