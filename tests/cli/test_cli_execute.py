"""The CLI's dry run (the default) and ``--execute``: JSON, summary table, quiet, exit codes.

The CLI runs in-process (``run_cli``) against the simulated server behind a recording
transport (``tests/support/cli_harness.py``).
"""

from __future__ import annotations

import shlex

import pytest

from async_trace_delete._cli.inputs import EXIT_FAILED, EXIT_OK
from tests.support.cli_harness import DAY_MS, FAST, NOW_MS, Recorder, cli
from tests.support.simulated_server import DeleteCall, Fault

# -- dry run ---------------------------------------------------------------------------------


def test_dry_run_is_the_default_and_prints_the_execute_command(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --execute nothing is deleted; the output ends with the command to execute."""
    argv = ["delete", "--experiment-name", "alpha", "--experiment-id", "2", "--older-than", "7d"]
    result = cli(recorder, capsys, *argv)
    assert result.code == EXIT_OK
    assert recorder.delete_calls == 0
    assert recorder.server.deleted("1") == recorder.server.deleted("2") == 0
    assert "200 traces would be deleted" in result.out
    last_line = result.out.strip().splitlines()[-1]
    assert shlex.split(last_line) == ["async-trace-delete", *argv, "--execute"]


def test_dry_run_json_shape(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the plan: per job counts, bounds, a sample, and the execute command."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "3", "--older-than", "7d",
        "--filter", "status = 'ERROR'", "--json", "--sample", "2",
    )  # fmt: skip
    assert result.code == EXIT_OK
    report = result.json()
    assert report["dry_run"] is True
    assert report["would_delete"] == 25
    (job,) = report["jobs"]
    assert job["label"] == "3"
    assert job["mode"] == "matching"
    assert job["would_delete"] == 25
    assert job["cutoff_millis"] == NOW_MS - 7 * DAY_MS
    assert job["cutoff"].endswith("Z")
    assert len(job["sample"]) == 2
    assert all(item["state"] == "ERROR" for item in job["sample"])
    assert report["execute_command"].endswith("--execute")
    assert recorder.delete_calls == 0


# -- execute ---------------------------------------------------------------------------------


def test_execute_deletes_and_reports_json(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--execute deletes what the dry run counted; the JSON report matches the server."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--experiment-name", "beta",
        "--older-than", "7d", "--execute", "--json", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    report = result.json()
    assert report["dry_run"] is False
    assert report["interrupted"] is False
    assert report["exit_code"] == EXIT_OK
    assert report["expected"] == report["deleted"] == 200
    assert report["ambiguous"] == 0
    assert {job["label"]: job["deleted"] for job in report["jobs"]} == {"1": 100, "beta": 100}
    assert {job["state"] for job in report["jobs"]} == {"completed"}
    assert recorder.server.deleted("1") == recorder.server.deleted("2") == 100
    assert len(recorder.server.remaining("1")) == 10
    assert recorder.server.deleted("3") == 0


def test_execute_prints_a_summary_table(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the summary table goes to stdout and progress to stderr."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d", "--execute",
        *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK
    assert "Summary" in result.out
    assert "100" in result.out
    assert "Summary" not in result.err
    assert "total" in result.err  # the final frame of the progress bars


def test_quiet_prints_nothing(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """--quiet deletes without progress or tables."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d", "--execute",
        "--quiet", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK
    assert (result.out, result.err) == ("", "")
    assert recorder.server.deleted("1") == 100


def test_failed_job_exits_1(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """A job the server refuses fails (exit 1) while its sibling completes."""

    def refuse_beta(call: DeleteCall) -> Fault | None:
        if call.experiment_id == "2":
            return Fault(status=403, text="Permission denied")
        return None

    recorder.server.fault_rule = refuse_beta
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--experiment-id", "2",
        "--older-than", "7d", "--execute", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_FAILED
    assert "job 2 failed: permission denied" in result.out
    assert recorder.server.deleted("1") == 100
    assert recorder.server.deleted("2") == 0


def test_trace_ids_from_stdin(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """`--trace-ids-file -` reads IDs from stdin (comments and blank lines skipped)."""
    ids = [trace.trace_id for trace in recorder.server.remaining("1")[:7]]
    stdin = _Stdin("# to delete\n\n" + "\n".join(ids) + "\n")
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--trace-ids-file", "-",
        "--execute", "--json", *FAST, stdin=stdin,
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    assert result.json()["deleted"] == 7
    assert recorder.server.deleted("1") == 7


def test_trace_ids_inline_are_deleted(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--trace-ids a,b,c --execute` deletes exactly those traces, like MLflow's CLI."""
    ids = [trace.trace_id for trace in recorder.server.remaining("1")[:3]]
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--trace-ids", ", ".join(ids),
        "--execute", "--json", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    assert result.json()["deleted"] == 3
    assert recorder.server.deleted("1") == 3
    assert not {trace.trace_id for trace in recorder.server.remaining("1")} & set(ids)


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text
