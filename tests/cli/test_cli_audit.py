"""The CLI's audit log, secrets kept out of it, resuming an ID run, and SIGINT.

The CLI runs in-process (``run_cli``) against the simulated server behind a recording
transport (``tests/support/cli_harness.py``).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from async_trace_delete._cli.audit import Redactor, read_confirmed_ids
from async_trace_delete._cli.inputs import EXIT_INTERRUPTED, EXIT_OK
from tests.support.cli_harness import DAY_MS, FAST, NOW_MS, Recorder, audit_lines, cli
from tests.support.simulated_server import SIM_URL, DeleteCall, Fault, sim_traces

TOKEN = "tok-SECRET-5e6f7a8b"
PASSWORD = "pw-SECRET-0c1d2e3f"


# -- audit log, secrets, resume ------------------------------------------------------------


def test_audit_log_records_the_run(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Start, plan, every batch, job ends and run end are logged; runs append."""
    log = tmp_path / "audit.jsonl"
    for _ in range(2):
        result = cli(
            recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d",
            "--execute", "--audit-log", str(log), "--max-batch-size", "30", *FAST,
        )  # fmt: skip
        assert result.code == EXIT_OK
    records = audit_lines(log)
    runs = list(dict.fromkeys(record["run_id"] for record in records))
    assert len(runs) == 2
    first = [record for record in records if record["run_id"] == runs[0]]
    events = [record["event"] for record in first]
    assert events[:3] == ["run_start", "plan", "job_start"]
    assert events[-2:] == ["job_end", "run_end"]
    start = first[0]
    assert {"user", "host", "pid", "command", "tracking_uri", "jobs", "engine"} <= set(start)
    assert start["execute"] is True
    batches = [record for record in first if record["event"] == "batch"]
    assert sum(batch["deleted"] for batch in batches) == 100
    assert {"time", "experiment_id", "requested", "deleted", "latency", "attempt"} <= set(
        batches[0]
    )
    assert first[-1]["outcome"] == "completed"
    assert first[-1]["deleted"] == 100
    second_end = records[-1]
    assert second_end["event"] == "run_end"
    assert second_end["deleted"] == 0


def test_secrets_never_appear(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Tokens and passwords appear in no output, audit line or printed command."""
    log = tmp_path / "audit.jsonl"
    env = {
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
    }
    outputs = []
    for extra in ([], ["--execute"], ["--execute", "--json"]):
        recorder.server.add_traces("1", sim_traces(5, start_ms=NOW_MS - 9 * DAY_MS, tag=99))
        result = cli(
            recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d",
            "--audit-log", str(log), *extra, *FAST, env=env,
        )  # fmt: skip
        assert result.code == EXIT_OK
        outputs += [result.out, result.err]
    outputs.append(log.read_text())
    bad = cli(recorder, capsys, "delete", "--experiment-id", "1", env=env)
    outputs += [bad.out, bad.err]
    for text in outputs:
        assert TOKEN not in text
        assert PASSWORD not in text
    assert any(record.get("auth") == "basic" for record in audit_lines(log))


def test_redactor_scrubs_raw_and_escaped_forms() -> None:
    """A secret is scrubbed whether it appears raw or JSON-escaped."""
    redact = Redactor(['pa"ss\\word'])
    assert redact('x pa"ss\\word y') == "x *** y"
    assert redact(json.dumps({"v": 'pa"ss\\word'})) == '{"v": "***"}'


def test_id_file_rerun_skips_ids_the_audit_log_confirmed(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every answered ID call is logged with its IDs; a rerun sends only the unconfirmed ones."""
    log = tmp_path / "audit.jsonl"
    ids_file = tmp_path / "ids.txt"
    first_ids = [trace.trace_id for trace in recorder.server.remaining("2")[:40]]
    ids_file.write_text("\n".join(first_ids) + "\n")
    argv = [
        "delete", "--experiment-name", "beta", "--trace-ids-file", str(ids_file), "--execute",
        "--audit-log", str(log), "--json", "--max-id-chunk", "15", *FAST,
    ]  # fmt: skip
    assert cli(recorder, capsys, *argv).code == EXIT_OK
    assert read_confirmed_ids(log, server=SIM_URL, wanted={"2": first_ids}) == {"2": set(first_ids)}
    deletes_after_first = recorder.delete_calls

    rerun = cli(recorder, capsys, *argv)
    assert rerun.code == EXIT_OK
    assert recorder.delete_calls == deletes_after_first  # nothing left to send
    assert rerun.json()["skipped"][0]["skipped_ids"] == 40

    more_ids = [trace.trace_id for trace in recorder.server.remaining("2")[:5]]
    ids_file.write_text("\n".join(first_ids + more_ids) + "\n")
    sent_before = len(recorder.requests)
    grown = cli(recorder, capsys, *argv)
    assert grown.code == EXIT_OK
    report = grown.json()
    assert report["deleted"] == 5
    assert report["skipped"][0]["remaining_ids"] == 5
    assert sent_ids(recorder.requests[sent_before:]) == set(more_ids)


def test_interrupted_id_run_resumes_where_it_stopped(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """After a SIGINT, the rerun sends exactly the IDs no answered call confirmed."""
    log = tmp_path / "audit.jsonl"
    ids_file = tmp_path / "ids.txt"
    ids = [trace.trace_id for trace in recorder.server.remaining("1")[:60]]
    ids_file.write_text("\n".join(ids) + "\n")
    recorder.server.fault_rule = _interrupt_at_first_delete()
    argv = [
        "delete", "--experiment-id", "1", "--trace-ids-file", str(ids_file), "--execute",
        "--audit-log", str(log), "--json", "--max-id-chunk", "10", "--concurrency", "1", *FAST,
    ]  # fmt: skip
    first = cli(recorder, capsys, *argv)
    assert first.code == EXIT_INTERRUPTED
    confirmed = read_confirmed_ids(log, server=SIM_URL, wanted={"1": ids})["1"]
    assert 0 < len(confirmed) < 60
    assert first.json()["deleted"] == len(confirmed) == recorder.server.deleted("1")

    recorder.server.fault_rule = None
    sent_before = len(recorder.requests)
    rerun = cli(recorder, capsys, *argv)
    assert rerun.code == EXIT_OK
    assert sent_ids(recorder.requests[sent_before:]) == set(ids) - confirmed
    assert rerun.json()["deleted"] == 60 - len(confirmed)
    assert not set(ids) & {trace.trace_id for trace in recorder.server.remaining("1")}


def sent_ids(requests: list[httpx.Request]) -> set[str]:
    """The trace IDs of the delete requests among ``requests``."""
    bodies = [json.loads(r.content) for r in requests if r.url.path.endswith("delete-traces")]
    return {trace_id for body in bodies for trace_id in body.get("request_ids", [])}


def _interrupt_at_first_delete() -> Callable[[DeleteCall], Fault | None]:
    sent: list[DeleteCall] = []

    def interrupt_once(call: DeleteCall) -> Fault | None:
        if not sent:
            sent.append(call)
            os.kill(os.getpid(), signal.SIGINT)
        return None

    return interrupt_once


# -- interruption ----------------------------------------------------------------------------


def test_sigint_stops_gracefully_with_an_exact_partial_report(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A SIGINT during the first delete stops scheduling; exit 130 and exact counts."""
    recorder.server.fault_rule = _interrupt_at_first_delete()
    log = tmp_path / "audit.jsonl"
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--experiment-id", "2",
        "--older-than", "7d", "--max-batch-size", "10", "--concurrency", "1",
        "--execute", "--json", "--audit-log", str(log), *FAST,
    )  # fmt: skip
    assert result.code == EXIT_INTERRUPTED
    report = result.json()
    assert report["interrupted"] is True
    assert report["ambiguous"] == 0
    lost = recorder.server.deleted("1") + recorder.server.deleted("2")
    assert 0 < lost < 200
    assert report["deleted"] == lost
    assert "SIGINT: stopping" in result.err
    records = audit_lines(log)
    assert any(r["event"] == "interrupt" and r["action"] == "stop" for r in records)
    assert records[-1]["outcome"] == "interrupted"
    assert records[-1]["deleted"] == lost
