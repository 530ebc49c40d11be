"""The CLI killed with SIGKILL mid-run, on the real server: the audit log stays true.

Every complete line parses, every ID a ``batch`` line confirms is gone from the server, and
the next run appends on a fresh line and resumes exactly: it sends none of the confirmed IDs
and deletes the rest.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import pytest

from tests.support.mlflow_server import MlflowServer
from tests.support.seed import make_traces, remaining_traces, seed_traces_sql

pytestmark = pytest.mark.integration

BASE_MS = 1_704_067_200_000


def command(url: str, experiment_id: str, ids_file: Path, log: Path, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "async_trace_delete", "delete", "--experiment-id", experiment_id,
        "--trace-ids-file", str(ids_file), "--tracking-uri", url, "--audit-log", str(log),
        "--max-id-chunk", "20", "--concurrency", "1", "--json", "--execute", *flags,
    ]  # fmt: skip


def records(log: Path) -> tuple[list[dict[str, object]], list[str]]:
    """The parsed lines, and the lines that do not parse (at most a crash's last one)."""
    parsed, broken = [], []
    for line in log.read_text().splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            broken.append(line)
    return parsed, broken


def confirmed(lines: list[dict[str, object]], run_id: object = None) -> set[str]:
    ids: set[str] = set()
    for line in lines:
        if line["event"] == "batch" and (run_id is None or line["run_id"] == run_id):
            ids.update(line["trace_ids"])  # type: ignore[arg-type]
    return ids


@pytest.mark.asyncio
async def test_sigkill_mid_run_leaves_a_true_log_and_the_rerun_resumes_exactly(
    mlflow_server: MlflowServer, experiment_id: str, tmp_path: Path
) -> None:
    """SIGKILL after a few batches; the log's confirmed IDs are gone; the rerun deletes the
    rest, sending none of them again."""
    traces = make_traces(400, start_ms=BASE_MS)
    assert mlflow_server.db_path is not None
    seed_traces_sql(mlflow_server.db_path, experiment_id, traces)
    ids = [t.trace_id for t in traces[:300]]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    log = tmp_path / "audit.jsonl"

    slow = command(mlflow_server.url, experiment_id, ids_file, log, "--rate", "4")
    process = await anyio.open_process(slow)
    for _ in range(1_200):  # up to a minute for two batches to be logged
        if log.exists() and len(confirmed(records(log)[0])) >= 40:
            break
        await anyio.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    await process.wait()

    lines, broken = records(log)
    assert len(broken) <= 1
    first = confirmed(lines)
    left = {t.trace_id for t in await remaining_traces(mlflow_server.url, experiment_id)}
    assert first
    assert not first & left  # every confirmed ID is gone
    # The server lost what the log confirms, and at most the one chunk in flight more.
    assert len(first) <= 400 - len(left) <= len(first) + 20

    rerun = await anyio.run_process(
        command(mlflow_server.url, experiment_id, ids_file, log), check=False
    )
    assert rerun.returncode == 0, rerun.stderr.decode()
    report = json.loads(rerun.stdout)
    lines, broken = records(log)
    assert len(broken) <= 1  # the killed run's cut line, if any, stays apart
    run_id = next(line["run_id"] for line in reversed(lines) if line["event"] == "run_start")
    resent = confirmed(lines, run_id)
    assert not resent & first  # resumed exactly: nothing confirmed was sent again
    assert report["skipped"][0]["skipped_ids"] == len(first)
    left = {t.trace_id for t in await remaining_traces(mlflow_server.url, experiment_id)}
    assert left == {t.trace_id for t in traces[300:]}
