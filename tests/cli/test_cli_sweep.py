"""``sweep-artifacts``: the folders of traces that no longer exist are counted (a dry run) or,
with ``--execute``, removed; live traces' folders and other experiments are never touched.

The CLI runs in-process against the simulated server with an artifact store (``swept``
below: ``artifact_world()`` of tests/support/cli_harness.py, 55 live folders of 13 bytes per
experiment, plus orphan folders of 1,000 bytes: 7 in alpha, 14 in beta, 3 in gamma).
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_trace_delete._cli.inputs import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, PROG
from tests.support.cli_harness import (
    FAST,
    Recorder,
    artifact_world,
    audit_lines,
    cli,
    one_error_line,
    table_rows,
)
from tests.support.simulated_artifacts import ArtifactCall
from tests.support.simulated_server import sim_traces

ORPHANS = {"1": 7, "2": 14, "3": 3}
ORPHAN_BYTES = 1_000
LIVE = 55
SWEEP = ["sweep-artifacts", "--experiment-id", "1", "--experiment-name", "beta"]


def with_orphans() -> Recorder:
    """``artifact_world()`` plus the folders of traces that are gone (never stored): 7 in
    alpha (1), 14 in beta (2) and 3 in gamma (3), 1,000 bytes each."""
    rec = artifact_world()
    for tag, (experiment_id, count) in enumerate(ORPHANS.items(), start=0xD0):
        ids = [trace.trace_id for trace in sim_traces(count, tag=tag)]
        rec.artifacts.add_trace_folders(experiment_id, ids, size=ORPHAN_BYTES)
    return rec


@pytest.fixture
def swept() -> Recorder:
    """See :func:`with_orphans`."""
    return with_orphans()


def live_folders(recorder: Recorder, experiment_id: str) -> set[str]:
    """The folders whose trace exists."""
    live = {trace.trace_id for trace in recorder.server.remaining(experiment_id)}
    return recorder.artifacts.trace_folders(experiment_id) & live


def orphan_folders(recorder: Recorder, experiment_id: str) -> set[str]:
    """The folders whose trace is gone."""
    return recorder.artifacts.trace_folders(experiment_id) - live_folders(recorder, experiment_id)


def untouched(recorder: Recorder, experiment_id: str) -> bool:
    """The experiment still has its 110 traces, 55 live folders and all its orphans."""
    return (
        len(recorder.server.remaining(experiment_id)) == 110
        and len(live_folders(recorder, experiment_id)) == LIVE
        and len(orphan_folders(recorder, experiment_id)) == ORPHANS[experiment_id]
    )


def artifact_gets(recorder: Recorder) -> int:
    """Artifact listings received."""
    return sum(1 for call in recorder.artifacts.calls if call.method == "GET")


def experiment_json(experiment_id: str, name: str, *, removed: bool, counted: bool) -> Any:
    """One experiment of the JSON report (and of a ``sweep_experiment`` audit line)."""
    orphans = ORPHANS[experiment_id]
    return {
        "experiment_id": experiment_id,
        "experiment_name": name,
        "folders": LIVE + orphans,
        "live": LIVE,
        "orphans": orphans,
        "deleted": orphans if removed else 0,
        "failed": 0,
        "bytes": orphans * ORPHAN_BYTES if counted else None,
        "bytes_unknown": 0,
        "other_folders": 0,
        "notes": [],
        "complete": True,
    }


# -- the dry run -------------------------------------------------------------------------------


def test_dry_run_counts_the_orphans_and_prints_the_execute_command(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --execute the table counts 62 and 69 folders (7 and 14 orphans, 6.8 KB and
    13.7 KB), says 21 would be removed with the command to do it, and removes nothing."""
    result = cli(swept, capsys, *SWEEP)

    assert result.code == EXIT_OK, result.err
    assert "Sweep: orphan trace folders (dry run: nothing removed)" in " ".join(result.out.split())
    assert table_rows(result.out) == [
        ["1", "alpha", "62", "55", "7", "6.8 KB"],
        ["2", "beta", "69", "55", "14", "13.7 KB"],
    ]
    lines = result.out.splitlines()
    assert lines[-2] == "21 orphan folders (20.5 KB) would be removed. To remove them, run:"
    assert shlex.split(lines[-1]) == [PROG, *SWEEP, "--execute"]
    assert swept.artifacts.deletes() == []
    assert all(untouched(swept, experiment_id) for experiment_id in ORPHANS)


def test_dry_run_json_counts_without_removing(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json without --execute reports 131 folders, 21 orphans, 21,000 bytes and 0 removed."""
    result = cli(swept, capsys, *SWEEP, "--json")

    assert result.code == EXIT_OK, result.err
    report = result.json()
    totals = {key: report[key] for key in ("executed", "folders", "orphans", "deleted", "failed")}
    assert totals == {"executed": False, "folders": 131, "orphans": 21, "deleted": 0, "failed": 0}
    assert report["bytes"] == 21_000
    assert (report["interrupted"], report["exit_code"]) == (False, EXIT_OK)
    assert report["experiments"] == [
        experiment_json("1", "alpha", removed=False, counted=True),
        experiment_json("2", "beta", removed=False, counted=True),
    ]
    assert swept.artifacts.deletes() == []
    assert all(untouched(swept, experiment_id) for experiment_id in ORPHANS)


# -- --execute ---------------------------------------------------------------------------------


def test_execute_removes_exactly_the_orphans(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--execute removes the 7 + 14 orphans (one delete each), keeps every live folder and
    trace, leaves gamma alone, and exits 0; a second sweep finds nothing."""
    live_before = {e: live_folders(swept, e) for e in ORPHANS}
    orphans_before = {e: orphan_folders(swept, e) for e in ORPHANS}
    result = cli(swept, capsys, *SWEEP, "--execute", *FAST)

    assert result.code == EXIT_OK, result.err
    assert table_rows(result.out) == [
        ["1", "alpha", "62", "55", "7", "7", "0", "6.8 KB"],
        ["2", "beta", "69", "55", "14", "14", "0", "13.7 KB"],
    ]
    assert result.out.splitlines()[-1] == "21 orphan folders removed (20.5 KB), 0 failed."
    for experiment_id in ("1", "2"):
        assert swept.artifacts.trace_folders(experiment_id) == live_before[experiment_id]
        assert len(live_before[experiment_id]) == LIVE
        assert len(swept.server.remaining(experiment_id)) == 110
    assert sorted(swept.artifacts.deletes()) == sorted(
        f"{e}/traces/{trace_id}" for e in ("1", "2") for trace_id in orphans_before[e]
    )
    assert untouched(swept, "3")
    assert swept.delete_calls == 0  # no trace is deleted by a sweep

    again = cli(swept, capsys, *SWEEP, "--execute", *FAST)
    assert again.code == EXIT_OK, again.err
    assert table_rows(again.out) == [
        ["1", "alpha", "55", "55", "0", "0", "0", "0 B"],
        ["2", "beta", "55", "55", "0", "0", "0", "0 B"],
    ]
    assert again.out.splitlines()[-1] == "0 orphan folders removed (0 B), 0 failed."
    assert len(swept.artifacts.deletes()) == 21


def test_execute_json_totals(swept: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """--execute --json reports 131 folders, 21 orphans, 21 removed, 0 failed, 21,000 bytes."""
    result = cli(swept, capsys, *SWEEP, "--execute", "--json", *FAST)

    assert result.code == EXIT_OK, result.err
    report = result.json()
    totals = {key: report[key] for key in ("executed", "folders", "orphans", "deleted", "failed")}
    assert totals == {"executed": True, "folders": 131, "orphans": 21, "deleted": 21, "failed": 0}
    assert report["bytes"] == 21_000
    assert (report["interrupted"], report["exit_code"]) == (False, EXIT_OK)
    assert report["experiments"] == [
        experiment_json("1", "alpha", removed=True, counted=True),
        experiment_json("2", "beta", removed=True, counted=True),
    ]
    assert [len(orphan_folders(swept, e)) for e in ORPHANS] == [0, 0, 3]
    assert [len(live_folders(swept, e)) for e in ORPHANS] == [LIVE] * 3


def test_audit_log_has_the_start_each_experiment_and_the_totals(
    swept: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--audit-log gets sweep_start, one sweep_experiment per experiment, and sweep_end with
    21 orphans removed of 131 folders and exit code 0."""
    log = tmp_path / "audit.jsonl"
    result = cli(swept, capsys, *SWEEP, "--execute", "--audit-log", str(log), "-q", *FAST)

    assert result.code == EXIT_OK, result.err
    assert (result.out, result.err) == ("", "")
    records = audit_lines(log)
    assert [record["event"] for record in records] == [
        "sweep_start",
        "sweep_experiment",
        "sweep_experiment",
        "sweep_end",
    ]
    assert len({record["run_id"] for record in records}) == 1
    start, alpha, beta, end = records
    assert start["execute"] is True
    assert shlex.split(start["command"]) == [
        PROG, *SWEEP, "--execute", "--audit-log", str(log), "-q", *FAST,
    ]  # fmt: skip
    assert {"user", "host", "pid", "version", "tracking_uri"} <= set(start)
    strip = {"time", "run_id", "event"}
    assert {k: v for k, v in alpha.items() if k not in strip} == experiment_json(
        "1", "alpha", removed=True, counted=True
    )
    assert {k: v for k, v in beta.items() if k not in strip} == experiment_json(
        "2", "beta", removed=True, counted=True
    )
    totals = {k: v for k, v in end.items() if k not in strip | {"elapsed"}}
    assert totals == {
        "executed": True,
        "folders": 131,
        "orphans": 21,
        "deleted": 21,
        "failed": 0,
        "bytes": 21_000,
        "exit_code": EXIT_OK,
    }
    assert [len(orphan_folders(swept, e)) for e in ORPHANS] == [0, 0, 3]


def test_no_bytes_skips_one_listing_per_orphan(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-bytes sends 21 artifact listings fewer (2 instead of 23: one per orphan less),
    still removes the 21 orphans, and reports bytes as null."""
    counted = cli(swept, capsys, *SWEEP, "--execute", "--json", *FAST)
    assert counted.code == EXIT_OK, counted.err
    assert artifact_gets(swept) == 2 + 21  # the two trace listings, one per orphan

    fresh = with_orphans()
    result = cli(fresh, capsys, *SWEEP, "--execute", "--json", "--no-bytes", *FAST)
    assert result.code == EXIT_OK, result.err
    assert artifact_gets(fresh) == 2
    report = result.json()
    assert (report["deleted"], report["bytes"]) == (21, None)
    assert report["experiments"] == [
        experiment_json("1", "alpha", removed=True, counted=False),
        experiment_json("2", "beta", removed=True, counted=False),
    ]
    assert len(fresh.artifacts.deletes()) == 21
    assert [len(orphan_folders(fresh, e)) for e in ORPHANS] == [0, 0, 3]
    assert [len(live_folders(fresh, e)) for e in ORPHANS] == [LIVE] * 3


def test_no_bytes_prints_a_dash_for_the_bytes(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The --no-bytes table shows ``-`` in the Bytes column and the totals line no size."""
    result = cli(swept, capsys, *SWEEP, "--no-bytes")

    assert result.code == EXIT_OK, result.err
    assert table_rows(result.out) == [
        ["1", "alpha", "62", "55", "7", "-"],
        ["2", "beta", "69", "55", "14", "-"],
    ]
    assert result.out.splitlines()[-2] == "21 orphan folders would be removed. To remove them, run:"
    assert artifact_gets(swept) == 2
    assert all(untouched(swept, experiment_id) for experiment_id in ORPHANS)


def test_a_failed_removal_is_counted_and_exits_1(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """An orphan whose delete the store keeps failing (500) stays, counted as failed (exit 1);
    the other 6 of alpha go."""
    stuck = sorted(orphan_folders(swept, "1"))[3]

    def fail_one(call: ArtifactCall) -> httpx.Response | None:
        if call.method == "DELETE" and call.path == f"1/traces/{stuck}":
            return httpx.Response(500, json={"error_code": "INTERNAL_ERROR", "message": "boom"})
        return None

    swept.artifacts.rule = fail_one
    result = cli(swept, capsys, "sweep-artifacts", "--experiment-id", "1", "--execute", *FAST)

    assert result.code == EXIT_FAILED, result.err
    assert table_rows(result.out) == [["1", "alpha", "62", "55", "7", "6", "1", "6.8 KB"]]
    assert result.out.splitlines()[-1] == "6 orphan folders removed (6.8 KB), 1 failed."
    assert orphan_folders(swept, "1") == {stuck}
    assert len(live_folders(swept, "1")) == LIVE


# -- bad input ---------------------------------------------------------------------------------


def test_no_experiment_is_bad_input_before_any_request(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep naming no experiment exits 2 naming both flags, and sends nothing."""
    result = cli(swept, capsys, "sweep-artifacts", "--execute")

    assert "--experiment-id / --experiment-name" in one_error_line(result)
    assert swept.requests == []


@pytest.mark.parametrize("value", ["abc", "1a", "-1", "1.5", " 1", "", "\u00b2", "\u0661"])
def test_a_non_digit_experiment_id_is_bad_input_before_any_request(
    swept: Recorder, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """An experiment ID that is not ASCII digits (MLflow's IDs are whole numbers) exits 2
    naming --experiment-id, and sends nothing."""
    result = cli(swept, capsys, "sweep-artifacts", "--experiment-id", value, "--execute")

    assert result.code == EXIT_BAD_INPUT, (result.code, result.err)
    assert f"--experiment-id: {value!r}" in one_error_line(result)
    assert swept.requests == []


def test_an_unknown_experiment_name_exits_1_naming_it_and_removes_nothing(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown name beside a known ID exits 1 with one error line naming it; every
    experiment is looked up first, so not one folder is removed."""
    result = cli(
        swept, capsys, "sweep-artifacts", "--experiment-id", "1", "--experiment-name", "nope",
        "--execute", *FAST,
    )  # fmt: skip

    assert result.code == EXIT_FAILED
    assert result.out == ""
    # An --execute sweep names its server first, then the one error line.
    server, line = [line for line in result.err.splitlines() if line.strip()]
    assert server == "Server: http://mlflow.sim:5000 (from MLFLOW_TRACKING_URI)"
    assert line.startswith(f"{PROG}: error: NotFoundError: ")
    assert "nope" in line
    assert swept.artifacts.calls == []
    assert all(untouched(swept, experiment_id) for experiment_id in ORPHANS)

    as_json = cli(swept, capsys, "sweep-artifacts", "--experiment-name", "nope", "--json")
    assert as_json.code == EXIT_FAILED
    payload = as_json.json()
    assert payload["exit_code"] == EXIT_FAILED
    assert "nope" in payload["error"]


def test_an_unwritable_audit_log_removes_nothing(
    swept: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log on a full device fails its first line: exit 1 naming --audit-log, before any
    request (as ``delete`` does: nothing is removed without the record asked for)."""
    assert Path("/dev/full").exists(), "this test needs Linux's always-full device"
    result = cli(swept, capsys, *SWEEP, "--execute", "--audit-log", "/dev/full", *FAST)

    assert result.code == EXIT_FAILED, (result.code, result.out[-300:])
    assert "--audit-log" in result.err
    assert swept.requests == []
    assert all(untouched(swept, experiment_id) for experiment_id in ORPHANS)


# -- secrets -----------------------------------------------------------------------------------


def test_the_token_never_appears_in_output_json_or_audit_log(
    swept: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With MLFLOW_TRACKING_TOKEN set (and a refusal that quotes it back), the token is sent
    but appears in no table, JSON report, error or audit line."""
    token = "s3cr3t-" + secrets.token_urlsafe(18)
    env = {"MLFLOW_TRACKING_TOKEN": token}
    log = tmp_path / "audit.jsonl"

    def echo_token(call: ArtifactCall) -> httpx.Response | None:
        if call.method == "GET" and call.path == "2/traces":
            return httpx.Response(403, text=f"Permission denied for token {token}")
        return None

    swept.artifacts.rule = echo_token
    outputs: dict[str, str] = {}
    runs = {
        "dry run": [*SWEEP, "--audit-log", str(log)],
        "execute": [*SWEEP, "--execute", "--audit-log", str(log), *FAST],
        "json": [*SWEEP, "--execute", "--json", "--audit-log", str(log), *FAST],
        "unknown name": ["sweep-artifacts", "--experiment-name", "nope", "--audit-log", str(log)],
    }
    for name, argv in runs.items():
        result = cli(swept, capsys, *argv, env=env)
        assert result.code == EXIT_FAILED, (name, result.err)  # beta's listing is refused
        outputs[f"{name} stdout"] = result.out
        outputs[f"{name} stderr"] = result.err
    outputs["audit log"] = log.read_text()

    leaks = [name for name, text in outputs.items() if token in text]
    assert leaks == [], f"the token leaked into: {leaks}"
    assert "***" in outputs["dry run stdout"]  # the refusal was shown, its token scrubbed
    assert "***" in outputs["audit log"]
    assert all(r.headers["authorization"] == f"Bearer {token}" for r in swept.requests)
    assert [len(orphan_folders(swept, e)) for e in ORPHANS] == [0, 14, 3]
