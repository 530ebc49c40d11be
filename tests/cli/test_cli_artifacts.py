"""``delete --with-artifacts`` and a policy's ``with_artifacts``: the folders of the deleted
traces go, the kept traces' folders stay, and the summary, JSON and audit log count folders
beside (never inside) the trace counts.

The CLI runs in-process against the simulated server with an artifact store
(``artifact_recorder`` in tests/cli/conftest.py: in each experiment 50 of the 100 old traces
and 5 of the 10 new ones have a folder).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_trace_delete._cli.inputs import EXIT_BAD_INPUT, EXIT_OK, PROG
from tests.support.cli_harness import (
    FAST,
    Recorder,
    audit_lines,
    cli,
    one_error_line,
    table_rows,
    write_policy,
)
from tests.support.simulated_artifacts import ArtifactCall

EXPERIMENTS = ("1", "2", "3")
WITH_ARTIFACTS_NOTE = (
    ": with artifacts: each deleted trace's artifact folder is removed too, once the trace "
    "is known gone (listed when the job starts)"
)


def artifacts_line(removed: int, failed: int, left: int) -> str:
    """The summary's line of folder counts."""
    return (
        f"Artifact folders: {removed} removed, {failed} failed, {left} left "
        "(the trace counts above do not depend on them)"
    )


def folder_counts(removed: int, failed: int = 0, left: int = 0, notes: tuple[str, ...] = ()) -> Any:
    """An ``artifacts`` object as the JSON report and the audit log write it."""
    return {
        "deleted": removed,
        "failed": failed,
        "skipped": left,
        "retries": 0,
        "notes": list(notes),
    }


def snapshot(recorder: Recorder) -> dict[str, tuple[int, set[str]]]:
    """Per experiment: how many traces are left, and which trace IDs have a folder."""
    return {
        e: (len(recorder.server.remaining(e)), recorder.artifacts.trace_folders(e))
        for e in EXPERIMENTS
    }


def kept_holders(recorder: Recorder, before: set[str], experiment_id: str) -> set[str]:
    """The traces still on the server that had a folder before the run."""
    return before & {trace.trace_id for trace in recorder.server.remaining(experiment_id)}


def total_row(out: str) -> list[str]:
    """The summary's total row: Job, Exp, State, Expected, Deleted, Unknown, Not found, ..."""
    return next(row for row in table_rows(out) if row[0] == "total")


# -- delete --with-artifacts --execute ---------------------------------------------------------


def test_execute_removes_exactly_the_deleted_traces_folders(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A cutoff run removes the 50 folders of each experiment's deleted traces, keeps the 5 of
    its newer traces, and the summary and audit log say 100 removed, 0 failed, 0 left."""
    rec = artifact_recorder
    before = snapshot(rec)
    log = tmp_path / "audit.jsonl"
    result = cli(
        rec, capsys, "delete", "--experiment-id", "1", "--experiment-name", "beta",
        "--older-than", "7d", "--with-artifacts", "--execute", "--audit-log", str(log), *FAST,
    )  # fmt: skip

    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert total_row(result.out)[2:7] == ["ok", "200", "200", "0", "0"]
    assert lines[-1] == artifacts_line(100, 0, 0)  # and no note after it
    for experiment_id in ("1", "2"):
        assert len(rec.server.remaining(experiment_id)) == 10
        assert rec.server.deleted(experiment_id) == 100
        kept = kept_holders(rec, before[experiment_id][1], experiment_id)
        assert len(kept) == 5
        assert rec.artifacts.trace_folders(experiment_id) == kept
    assert snapshot(rec)["3"] == before["3"]
    assert (before["3"][0], len(before["3"][1])) == (110, 55)
    assert len(rec.artifacts.deletes()) == 100  # one call per folder, none repeated

    records = audit_lines(log)
    job_ends = {
        r["job"]: (r["deleted"], r["artifacts"]) for r in records if r["event"] == "job_end"
    }
    assert job_ends == {"1": (100, folder_counts(50)), "beta": (100, folder_counts(50))}
    run_end = records[-1]
    assert run_end["event"] == "run_end"
    assert (run_end["outcome"], run_end["exit_code"]) == ("completed", EXIT_OK)
    assert (run_end["expected"], run_end["deleted"]) == (200, 200)
    assert run_end["artifacts"] == folder_counts(100)
    assert [job["artifacts"] for job in run_end["jobs"]] == [folder_counts(50)] * 2


def test_execute_json_counts_folders_per_job_and_in_total(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json carries a top-level ``artifacts`` (100 removed) and one per job (50 each),
    beside unchanged trace counts."""
    rec = artifact_recorder
    before = snapshot(rec)
    result = cli(
        rec, capsys, "delete", "--experiment-id", "1", "--experiment-id", "2",
        "--older-than", "7d", "--with-artifacts", "--execute", "--json", *FAST,
    )  # fmt: skip

    assert result.code == EXIT_OK, result.err
    report = result.json()
    assert (report["expected"], report["deleted"], report["ambiguous"]) == (200, 200, 0)
    assert report["artifacts"] == folder_counts(100)
    jobs = {job["label"]: (job["deleted"], job["artifacts"]) for job in report["jobs"]}
    assert jobs == {"1": (100, folder_counts(50)), "2": (100, folder_counts(50))}
    for experiment_id in ("1", "2"):
        kept = kept_holders(rec, before[experiment_id][1], experiment_id)
        assert len(kept) == 5
        assert rec.artifacts.trace_folders(experiment_id) == kept
    assert snapshot(rec)["3"] == before["3"]


# -- the dry run -------------------------------------------------------------------------------


def test_dry_run_with_artifacts_touches_nothing_and_prints_the_execute_command(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dry run with --with-artifacts deletes no trace and no folder (no artifact call at
    all), says so per job, and ends with the command plus ``--with-artifacts --execute``."""
    rec = artifact_recorder
    before = snapshot(rec)
    argv = [
        "delete", "--experiment-id", "1", "--experiment-name", "beta", "--older-than", "7d",
        "--with-artifacts",
    ]  # fmt: skip
    result = cli(rec, capsys, *argv)

    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert "200 traces would be deleted. To delete them, run:" in lines
    assert "1" + WITH_ARTIFACTS_NOTE in lines
    assert "beta" + WITH_ARTIFACTS_NOTE in lines
    command = shlex.split(lines[-1])
    assert command == [PROG, *argv, "--execute"]
    assert command[-2:] == ["--with-artifacts", "--execute"]
    assert snapshot(rec) == before
    assert rec.delete_calls == 0
    assert rec.artifacts.calls == []

    plan = cli(rec, capsys, *argv, "--json")
    assert plan.code == EXIT_OK, plan.err
    payload = plan.json()
    assert payload["would_delete"] == 200
    assert {job["label"]: job["with_artifacts"] for job in payload["jobs"]} == {
        "1": True,
        "beta": True,
    }
    assert shlex.split(payload["execute_command"])[-2:] == ["--json", "--execute"]
    assert "--with-artifacts" in shlex.split(payload["execute_command"])
    assert snapshot(rec) == before
    assert rec.artifacts.calls == []


# -- policy files ------------------------------------------------------------------------------

TWO_JOBS = """
[engine]
rate = 10000

[defaults]
older_than = "7d"

[[jobs]]
name = "art"
experiment_ids = [1]
with_artifacts = true

[[jobs]]
name = "plain"
experiment_names = ["beta"]
"""


def test_policy_with_artifacts_in_one_job_removes_only_its_folders(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Only the job with ``with_artifacts = true`` removes folders (50); the other deletes its
    100 traces and leaves all 55 folders."""
    rec = artifact_recorder
    before = snapshot(rec)
    policy = write_policy(tmp_path, TWO_JOBS)

    dry = cli(rec, capsys, "run", str(policy), "--json")
    assert dry.code == EXIT_OK, dry.err
    planned = {job["label"]: job["with_artifacts"] for job in dry.json()["jobs"]}
    assert planned == {"art/1": True, "plain/beta": False}
    assert snapshot(rec) == before

    result = cli(rec, capsys, "run", str(policy), "--execute", "--json")
    assert result.code == EXIT_OK, result.err
    report = result.json()
    assert report["deleted"] == 200
    assert report["artifacts"] == folder_counts(50)
    jobs = {job["label"]: (job["deleted"], job["artifacts"]) for job in report["jobs"]}
    assert jobs == {"art/1": (100, folder_counts(50)), "plain/beta": (100, None)}
    kept = kept_holders(rec, before["1"][1], "1")
    assert len(kept) == 5
    assert rec.artifacts.trace_folders("1") == kept
    assert len(rec.server.remaining("2")) == 10
    assert rec.artifacts.trace_folders("2") == before["2"][1]
    assert len(before["2"][1]) == 55
    assert snapshot(rec)["3"] == before["3"]
    assert all(path.startswith("1/traces/") for path in rec.artifacts.deletes())


@pytest.mark.parametrize("value", ['"yes"', "1"])
def test_policy_with_artifacts_must_be_a_boolean(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
) -> None:
    """``with_artifacts`` that is not a TOML boolean is bad input naming the key, before any
    request."""
    policy = write_policy(
        tmp_path, f'[[jobs]]\nexperiment_ids = [1]\nolder_than = "7d"\nwith_artifacts = {value}\n'
    )
    result = cli(artifact_recorder, capsys, "run", str(policy), "--execute", *FAST)

    assert result.code == EXIT_BAD_INPUT, (result.code, result.out[-400:])
    assert "with_artifacts" in one_error_line(result)
    assert artifact_recorder.requests == []
    assert artifact_recorder.server.deleted("1") == 0
    assert len(artifact_recorder.artifacts.trace_folders("1")) == 55


# -- the artifact API refuses ------------------------------------------------------------------


def test_a_refused_folder_listing_leaves_the_folders_and_still_exits_0(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 on the folder listing leaves every folder; the 100 traces are still deleted
    (exit 0), and the note line names the refusal."""
    rec = artifact_recorder
    before = snapshot(rec)

    def refuse_listing(call: ArtifactCall) -> httpx.Response | None:
        if call.method == "GET" and call.path == "1/traces":
            return httpx.Response(403, text="Permission denied")
        return None

    rec.artifacts.rule = refuse_listing
    result = cli(
        rec, capsys, "delete", "--experiment-id", "1", "--older-than", "7d", "--with-artifacts",
        "--execute", *FAST,
    )  # fmt: skip

    assert result.code == EXIT_OK, result.err
    assert total_row(result.out)[2:7] == ["ok", "100", "100", "0", "0"]
    lines = result.out.splitlines()
    # Every deleted trace is counted as left: the listing that would tell which had a folder
    # was refused.
    assert lines[-2] == artifacts_line(0, 0, 100)
    note = lines[-1]
    assert note.startswith(
        "  the server's artifact API refused (PermissionDeniedError, HTTP 403: permission denied"
    )
    assert note.endswith("the trace folders were left (trace deletion is not affected)")
    assert rec.server.deleted("1") == 100
    assert len(rec.server.remaining("1")) == 10
    assert snapshot(rec)["1"] == (10, before["1"][1])
    assert [(call.method, call.path) for call in rec.artifacts.calls] == [("GET", "1/traces")]


# -- plan files --------------------------------------------------------------------------------


def test_with_artifacts_survives_the_plan_file_round_trip(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--plan-out`` writes ``with_artifacts: true`` into the job's spec; ``apply`` then
    removes the 50 folders of the 100 traces it deletes."""
    rec = artifact_recorder
    before = snapshot(rec)
    path = tmp_path / "plan.json"
    planned = cli(
        rec, capsys, "delete", "--experiment-id", "1", "--older-than", "7d", "--with-artifacts",
        "--plan-out", str(path), *FAST,
    )  # fmt: skip
    assert planned.code == EXIT_OK, planned.err
    (job,) = json.loads(path.read_text())["jobs"]
    assert job["spec"]["with_artifacts"] is True
    assert job["would_delete"] == 100
    assert snapshot(rec) == before
    assert rec.artifacts.calls == []

    applied = cli(rec, capsys, "apply", str(path), "--json")
    assert applied.code == EXIT_OK, applied.err
    report = applied.json()
    assert report["deleted"] == 100
    assert report["artifacts"] == folder_counts(50)
    assert [job["artifacts"] for job in report["jobs"]] == [folder_counts(50)]
    kept = kept_holders(rec, before["1"][1], "1")
    assert len(kept) == 5
    assert rec.artifacts.trace_folders("1") == kept
    assert snapshot(rec)["2"] == before["2"]
