"""Messages a person reads: times in UTC ISO form (epoch ms beside them where useful),
durations as people write them (7d, 36h), and every way to give a cutoff named."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_trace_delete._cli.args import run_cli
from async_trace_delete._durations import format_instant
from tests.support.cli_harness import DAY_MS, NOW_MS, Recorder, cli, one_error_line
from tests.support.simulated_server import SIM_URL

ERROR = "async-trace-delete: error: "


def test_a_future_before_is_shown_as_a_time(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--before in the future: both times in ISO form, the cutoff's ms beside it."""
    line = one_error_line(
        cli(recorder, capsys, "delete", "--experiment-id", "1", "--before", "2099-01-01T00:00:00Z")
    )
    assert line == (
        f"{ERROR}--before: the cutoff 2099-01-01T00:00:00Z (4070908800000 ms) is in the future "
        f"(now is {format_instant(NOW_MS)}); a future cutoff would delete traces being written "
        "right now"
    )
    assert str(NOW_MS) not in line
    assert recorder.requests == []


def test_a_retention_refusal_is_shown_in_days(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--min-retention: durations as typed (7d), times in ISO form; no timedelta repr."""
    line = one_error_line(
        cli(
            recorder,
            capsys,
            "delete",
            "--experiment-id",
            "1",
            "--older-than",
            "36h",
            "--min-retention",
            "7d",
        )
    )
    assert line == (
        f"{ERROR}--min-retention: the cutoff {format_instant(NOW_MS - 36 * 3_600_000)} keeps "
        f"less than 7d of traces (it must be at or before {format_instant(NOW_MS - 7 * DAY_MS)}, "
        "7d before now); pass --force to override"
    )
    assert "days," not in line
    assert ", 0:00:00" not in line


def test_no_cutoff_names_every_way_to_give_one(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing to select by: --older-than, --before, --max-timestamp-millis, the ID flags and
    --filter are all named, and a filter alone is said to be enough."""
    line = one_error_line(cli(recorder, capsys, "delete", "--experiment-id", "1"))
    assert line == (
        f"{ERROR}there is nothing to select traces by: give a cutoff (--older-than or --before "
        "/ --max-timestamp-millis), --trace-ids / --trace-ids-file, or a --filter (a filter "
        "alone is enough: it deletes what it matches)"
    )


def test_a_filter_alone_is_enough(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """As the message says: --filter without a cutoff is a valid job (a dry run here)."""
    result = cli(recorder, capsys, "delete", "--experiment-id", "1", "--filter", "status = 'ERROR'")
    assert result.code == 0, result.err
    assert recorder.delete_calls == 0


def test_an_old_plan_is_refused_in_hours(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """apply: the plan's age and the limit as durations, when it was made as a time."""
    plan = tmp_path / "plan.json"
    made = cli(recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d",
               "--plan-out", str(plan))  # fmt: skip
    assert made.code == 0, made.err
    code = run_cli(
        ["apply", str(plan), "--max-plan-age", "12h"],
        environ={"MLFLOW_TRACKING_URI": SIM_URL},
        wall_clock_ms=lambda: NOW_MS + 36 * 3_600_000,
        transport=recorder.transport,
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"{ERROR}--max-plan-age: the plan is 36h old (made {format_instant(NOW_MS)}), older "
        "than 12h; make a new one (nothing was deleted)\n"
    )


def test_an_age_longer_than_any_date_is_bad_input(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: --older-than 999999999999d was a traceback; it is one line, exit 2."""
    line = one_error_line(
        cli(recorder, capsys, "delete", "-x", "1", "--older-than", "999999999999d")
    )
    assert line.startswith(f"{ERROR}argument --older-than: cannot read '999999999999d'")
    assert recorder.requests == []
