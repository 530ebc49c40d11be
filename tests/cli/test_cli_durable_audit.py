"""The audit log survives crashes and full disks; resume is keyed by server; late signals.

Issue 14's durable-log points: every line whole and synced, a fresh line after a cut one,
a write failure stops deleting (exit 1), confirmed IDs are only those of runs on the same
server, and a signal after every delete finished leaves the run's own exit code.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from async_trace_delete._cli.audit import read_confirmed_ids
from async_trace_delete._cli.inputs import EXIT_FAILED, EXIT_OK
from tests.support.cli_harness import FAST, Recorder, cli
from tests.support.simulated_server import SIM_URL

CUTOFF = ["--before", "2024-01-25T00:00:00Z"]


def lines(log: Path) -> list[dict[str, object]]:
    """Every line of the log, parsed (each must parse)."""
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_run_starts_on_a_fresh_line_after_a_cut_one(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A crash left half a line: the next run's lines all parse, the cut one stays apart."""
    log = tmp_path / "audit.jsonl"
    log.write_text('{"time":"2026-12-01T00:00:00Z","run_id":"x","event":"batch","trace_ids":["tr')
    argv = ["delete", "--experiment-id", "1", *CUTOFF, "--audit-log", str(log), *FAST]
    assert cli(recorder, capsys, *argv).code == EXIT_OK
    cut, *rest = log.read_text().splitlines()
    assert cut.endswith('["tr')
    assert [json.loads(line)["event"] for line in rest][:2] == ["run_start", "plan"]


def test_every_line_is_synced_to_disk(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One fsync per line written: a batch is on disk before the next delete is sent."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    log = tmp_path / "audit.jsonl"
    argv = ["delete", "--experiment-id", "1", *CUTOFF, "--execute", "--audit-log", str(log)]
    assert cli(recorder, capsys, *argv, *FAST).code == EXIT_OK
    assert len(synced) == len(lines(log)) > 4


def test_a_write_failure_stops_the_run_before_the_next_delete(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills at the first batch line: no further delete is sent, exit 1, and the
    message names the log; what the log holds is exactly what the server lost before."""
    calls = 0
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:  # run_start, plan, job_start, then the first batch
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    log = tmp_path / "audit.jsonl"
    argv = [
        "delete", "--experiment-id", "1", *CUTOFF, "--execute", "--audit-log", str(log),
        "--concurrency", "1", "--max-batch-size", "20", *FAST,
    ]  # fmt: skip
    result = cli(recorder, capsys, *argv)
    assert result.code == EXIT_FAILED
    assert "--audit-log" in result.err
    assert "No space left" in result.err
    assert recorder.delete_calls == 1  # the call whose line failed; none after it
    assert recorder.server.deleted("1") == 20


def test_an_unwritable_log_deletes_nothing(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log on a full device fails its first line: exit 1 before any request."""
    assert Path("/dev/full").exists(), "this test needs Linux's always-full device"
    argv = ["delete", "--experiment-id", "1", *CUTOFF, "--execute", "--audit-log", "/dev/full"]
    result = cli(recorder, capsys, *argv, *FAST)
    assert result.code == EXIT_FAILED
    assert "--audit-log" in result.err
    assert recorder.requests == []


def test_confirmed_ids_are_those_of_runs_on_the_same_server(tmp_path: Path) -> None:
    """A log shared by two servers: a batch of another server's run confirms nothing here;
    only the wanted IDs are kept (the log is streamed)."""
    log = tmp_path / "audit.jsonl"
    records = [
        {"run_id": "prod", "event": "run_start", "tracking_uri": "http://prod:5000"},
        {"run_id": "prod", "event": "batch", "experiment_id": "1", "trace_ids": ["a", "b"]},
        {"run_id": "here", "event": "run_start", "tracking_uri": SIM_URL},
        {"run_id": "here", "event": "batch", "experiment_id": "1", "trace_ids": ["c", "z"]},
        {"run_id": "here", "event": "batch", "experiment_id": "2", "trace_ids": ["a"]},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"run_id": "here", "ev')
    wanted = {"1": ["a", "b", "c", "d"]}
    assert read_confirmed_ids(log, server=SIM_URL, wanted=wanted) == {"1": {"c"}}
    assert read_confirmed_ids(log, server="http://prod:5000", wanted=wanted) == {"1": {"a", "b"}}
    assert read_confirmed_ids(tmp_path / "missing.jsonl", server=SIM_URL, wanted=wanted) == {}


def test_an_id_rerun_on_another_server_resumes_nothing(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The IDs a production run confirmed are deleted on this server too (staging restored
    from production): nothing is skipped, every ID is sent."""
    ids = [trace.trace_id for trace in recorder.server.remaining("1")[:30]]
    log = tmp_path / "audit.jsonl"
    records = [
        {"run_id": "prod", "event": "run_start", "tracking_uri": "http://prod:5000"},
        {"run_id": "prod", "event": "batch", "experiment_id": "1", "trace_ids": ids},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    argv = [
        "delete", "--experiment-id", "1", "--trace-ids-file", str(ids_file), "--execute",
        "--audit-log", str(log), "--json", *FAST,
    ]  # fmt: skip
    result = cli(recorder, capsys, *argv)
    assert result.code == EXIT_OK
    payload = result.json()
    assert (payload["deleted"], payload["skipped"], payload["dry_run"]) == (30, [], False)
    assert recorder.server.deleted("1") == 30


def test_a_signal_during_verification_keeps_the_runs_exit_code(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every delete finished; a SIGINT while --verify counts afterwards exits 0, not 130."""
    handle = recorder.handle
    deleted = False

    async def interrupting(request: httpx.Request) -> httpx.Response:
        nonlocal deleted
        response = await handle(request)
        if request.url.path.endswith("/delete-traces"):
            deleted = True
        elif deleted and request.url.path.endswith(("/traces/search", "/traces/metrics")):
            os.kill(os.getpid(), signal.SIGINT)  # the count after the deletes
        return response

    recorder.handle = interrupting  # type: ignore[method-assign]
    argv = ["delete", "--experiment-id", "1", *CUTOFF, "--execute", "--verify", "--json", *FAST]
    result = cli(recorder, capsys, *argv)
    assert result.code == EXIT_OK, result.err
    payload = result.json()
    assert payload["interrupted"] is False
    assert payload["deleted"] == recorder.server.deleted("1") > 0


@pytest.mark.parametrize("value", ["abc", "1.5", "-3", "\uff11"])
def test_a_non_numeric_experiment_id_is_bad_input(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """A non-numeric --experiment-id exits 2 before any request (it exited 1 after one)."""
    result = cli(recorder, capsys, "delete", "--experiment-id", value, *CUTOFF, *FAST)
    assert result.code == 2
    assert "--experiment-id" in result.err
    assert "--experiment-name" in result.err
    assert recorder.requests == []
