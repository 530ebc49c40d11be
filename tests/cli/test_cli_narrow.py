"""The CLI's output in 80- and 60-column terminals: nothing that says what is deleted is cut.

Each report is drawn on a rich console of a fixed width (as ``make_console`` builds one on a
terminal) with long experiment names, long filters and 7-digit counts. Every filter, cutoff
and count must appear whole (a value too long for a line may wrap at its spaces, and is then
checked with the line breaks taken out); nothing is cropped to ``…``; no line is wider than
the terminal. At 120 columns the dry-run table, the summary and the sweep are tables as
before.
"""

from __future__ import annotations

import io
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from async_trace_delete._cli.progress import ProgressDisplay
from async_trace_delete._cli.render import render_plan
from async_trace_delete._cli.summary import render_summary
from async_trace_delete._cli.sweep_render import SweepProgress, render_sweep
from async_trace_delete._events import BatchDeleted, FoldersSwept, JobFinished, JobStarted
from async_trace_delete._planning import JobPlan, PlanReport, SampleTrace
from async_trace_delete._reports import JobReport, JobState, RunReport
from async_trace_delete._sweep import SweepExperiment, SweepReport
from tests.support.cli_harness import NOW_MS, Recorder, cli, table_rows
from tests.support.simulated_server import sim_traces

NARROW = [80, 60]
LONG_NAME = "production-chat-assistant-eu-west-1-customer-support"  # 52 characters
LONG_FILTER = (
    "status = 'ERROR' AND tag.`mlflow.traceName` = 'summarise-customer-ticket' "
    "AND metadata.`mlflow.user` = 'support-bot'"
)
CUTOFF_MS = 1_796_067_088_941  # a cutoff with milliseconds: shown to the millisecond
CUTOFF_ISO = "2026-11-30T19:31:28.941Z"
SERVER = "Server: http://mlflow.internal:5000 (from MLFLOW_TRACKING_URI)"


def terminal(width: int) -> tuple[Console, io.StringIO]:
    """A console ``width`` columns wide, without colours, writing to a string."""
    stream = io.StringIO()
    console = Console(file=stream, width=width, color_system=None, highlight=False)
    return console, stream


def flat(text: str) -> str:
    """The text with every run of spaces and line breaks made one space (a value wrapped at
    its spaces reads whole again; one cut or folded inside a word does not)."""
    return re.sub(r"\s+", " ", text)


# Lines printed whole for the terminal to wrap (commands, flags and URLs to copy, paths):
# rich neither wraps nor crops them.
COPIED = ("Server: ", "Pinned (", "To delete exactly this plan later", "async-trace-delete ")


def assert_readable(text: str, width: int, *, whole: list[str], wrapped: list[str]) -> None:
    """No line wider than ``width`` (but those left to the terminal), nothing cropped, each
    ``whole`` value on one line, each ``wrapped`` value in the text (perhaps across lines,
    broken only at its spaces)."""
    lines = text.splitlines()
    drawn = [line for line in lines if not line.startswith(COPIED)]
    assert all(cell_len(line) <= width for line in drawn), text
    assert "…" not in text, text
    for value in whole:
        assert any(value in line for line in lines), f"{value!r} not whole in:\n{text}"
    for value in wrapped:
        assert flat(value) in flat(text), f"{value!r} not in:\n{text}"


# -- the dry run ---------------------------------------------------------------------------


def plan_job(label: str, experiment_id: str, would_delete: int, **fields: object) -> JobPlan:
    """One job of a dry run (a cutoff job unless ``fields`` say otherwise)."""
    values: dict[str, object] = {
        "label": label,
        "experiment_id": experiment_id,
        "mode": "cutoff",
        "cutoff_millis": None,
        "filter_string": None,
        "max_traces": None,
        "would_delete": would_delete,
        "matched": would_delete,
        "requested_ids": None,
        "sample": (),
        "oldest_ms": 1_790_000_000_000,
        "newest_ms": 1_796_000_000_000,
        "count_method": "metrics",
    }
    values.update(fields)
    return JobPlan.model_validate(values)


def big_plan() -> PlanReport:
    """Three jobs: a long name, a long filter and a cutoff with milliseconds; 2.5 million
    IDs capped at a million; a filter with no cutoff. 7-digit counts everywhere."""
    sample = (
        SampleTrace(trace_id="tr-" + "0" * 31 + "1", timestamp_ms=1_790_000_000_000, state="ERROR"),
    )
    return PlanReport(
        jobs=(
            plan_job(
                LONG_NAME,
                "123456",
                1_234_567,
                cutoff_millis=CUTOFF_MS,
                filter_string=LONG_FILTER,
                sample=sample,
            ),
            plan_job(
                "nightly/ids-from-the-incident-review",
                "7",
                2_345_678,
                mode="ids",
                requested_ids=2_500_000,
                max_traces=1_000_000,
                count_method="upper_bound",
            ),
            plan_job("beta", "2", 9_876_543, mode="matching", filter_string="status = 'ERROR'"),
        )
    )


@pytest.mark.parametrize("width", NARROW)
def test_a_narrow_dry_run_shows_every_filter_cutoff_and_count_whole(width: int) -> None:
    """At 80 and 60 columns the plan becomes a block per job: names, experiment IDs, the
    cutoff (ISO and epoch ms), every filter, ID count, cap and count, and the total."""
    console, stream = terminal(width)
    render_plan(
        console, big_plan(), command="async-trace-delete run p.toml --execute", skipped=[],
        server=SERVER, now_ms=CUTOFF_MS + 7 * 86_400_000,
    )  # fmt: skip
    text = stream.getvalue()
    assert_readable(
        text,
        width,
        whole=[
            SERVER,
            LONG_NAME,
            "experiment 123456",
            "nightly/ids-from-the-incident-review",
            "experiment 7",
            CUTOFF_ISO,
            str(CUTOFF_MS),
            "7d ago",
            "status = 'ERROR'",
            "1,234,567",
            "2,345,678",
            "9,876,543",
            "2,500,000 given",
            "1,000,000",
            "none: traces of any age",
            "total: 13,456,788 traces",
        ],
        wrapped=[LONG_FILTER],
    )
    assert text.count("would delete  ") == 3  # one block per job


def short_plan() -> PlanReport:
    """Two jobs with short names and a short filter: a table fits 120 columns."""
    return PlanReport(
        jobs=(
            plan_job(
                "alpha", "1", 25, cutoff_millis=1_706_054_400_000, filter_string="status = 'ERROR'"
            ),
            plan_job("beta", "2", 1_234_567, cutoff_millis=1_706_054_400_000),
        )
    )


def test_at_120_columns_the_dry_run_is_the_table_of_seven_columns() -> None:
    """A table as before: every header, and each row's cells whole (times in ISO form)."""
    console, stream = terminal(120)
    render_plan(console, short_plan(), command="x", skipped=[])
    text = stream.getvalue()
    header = next(line for line in text.splitlines() if "Job" in line and "Exp" in line)
    for name in ("Job", "Exp", "Cutoff (<=)", "Filter / IDs", "Would delete", "Oldest", "Newest"):
        assert name in header
    oldest, newest = "2026-09-21T14:13Z", "2026-11-30T00:53Z"
    cutoff = "2024-01-24T00:00:00Z"
    assert table_rows(text)[:3] == [
        ["alpha", "1", cutoff, "status = 'ERROR'", "25", oldest, newest],
        ["beta", "2", cutoff, "-", "1,234,567", oldest, newest],
        ["total", "", "", "", "1,234,592", "", ""],
    ]
    assert "…" not in text


def test_at_80_columns_short_jobs_keep_a_table_without_the_oldest_and_newest() -> None:
    """Decoration goes first: the oldest and newest columns, not a cutoff or a count."""
    console, stream = terminal(80)
    render_plan(console, short_plan(), command="x", skipped=[])
    text = stream.getvalue()
    assert table_rows(text)[:3] == [
        ["alpha", "1", "2024-01-24T00:00:00Z", "status = 'ERROR'", "25"],
        ["beta", "2", "2024-01-24T00:00:00Z", "-", "1,234,567"],
        ["total", "", "", "", "1,234,592"],
    ]
    assert "Oldest" not in text
    assert_readable(text, 80, whole=["1,234,592 traces would be deleted"], wrapped=[])


def test_a_dry_run_at_80_columns_through_the_cli_shows_the_filter_and_cutoff(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: a ``status = 'ERROR'`` job on an 80-column terminal (``COLUMNS``)
    shows its filter, its whole cutoff and its count: the table without the oldest and
    newest columns; nothing is deleted."""
    monkeypatch.setenv("COLUMNS", "80")
    result = cli(
        recorder, capsys, "delete", "--experiment-name", "alpha", "--older-than", "7d",
        "--filter", "status = 'ERROR'",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert_readable(
        result.out,
        80,
        whole=[
            "Server: http://mlflow.sim:5000 (from MLFLOW_TRACKING_URI)",
            "┃ Job   ┃ Exp ┃ Cutoff (<=)          ┃ Filter / IDs     ┃ Would delete ┃",
            "25 traces would be deleted",
        ],
        wrapped=[],
    )
    assert table_rows(result.out)[:2] == [
        ["alpha", "1", "2024-01-24T00:00:00Z", "status = 'ERROR'", "25"],
        ["total", "", "", "", "25"],
    ]
    assert recorder.delete_calls == 0


def test_a_long_name_at_80_columns_through_the_cli_gets_a_block(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An experiment name too long for even the narrower table: a block, the cutoff with
    its epoch milliseconds and its age, the filter and the count whole."""
    monkeypatch.setenv("COLUMNS", "80")
    recorder = Recorder()
    traces = sim_traces(100, start_ms=NOW_MS - 20 * 86_400_000, error_every=4, tag=1)
    recorder.server.add_experiment(LONG_NAME, traces)
    result = cli(
        recorder, capsys, "delete", "--experiment-name", LONG_NAME, "--older-than", "7d",
        "--filter", "status = 'ERROR'",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert_readable(
        result.out,
        80,
        whole=[
            f"{LONG_NAME} (experiment 1)",
            "would delete  25",
            "filter        status = 'ERROR'",
            f"cutoff        <= 2024-01-24T00:00:00Z ({NOW_MS - 7 * 86_400_000}), 7d ago",
            "total: 25 traces",
        ],
        wrapped=[],
    )
    assert recorder.delete_calls == 0


# -- the summary ---------------------------------------------------------------------------


def run_job(label: str, experiment_id: str | None, deleted: int, **fields: object) -> JobReport:
    """One job's final report (completed unless ``fields`` say otherwise)."""
    values: dict[str, object] = {
        "label": label,
        "experiment_id": experiment_id,
        "mode": "cutoff",
        "cutoff_millis": CUTOFF_MS,
        "max_traces": None,
        "state": JobState.COMPLETED,
        "deleted": deleted,
        "ambiguous": 0,
        "ambiguous_calls": 0,
        "not_found": 0,
        "requested_ids": None,
        "calls": 1_235,
        "retries": 3,
        "errors": (),
        "error": None,
        "error_type": None,
        "batches": (),
        "elapsed": 3_725.0,
    }
    values.update(fields)
    return JobReport.model_validate(values)


def big_run() -> tuple[RunReport, dict[str, int]]:
    """A run of a long-named job (verified), and one that failed after a million."""
    jobs = (
        run_job(LONG_NAME, "123456", 1_234_567, ambiguous=12_345, not_found=7,
                matched_before=1_250_000, verified_remaining=15_433),
        run_job("beta", "2", 1_000_000, state=JobState.FAILED, error="boom", elapsed=12.34),
    )  # fmt: skip
    return RunReport(jobs=jobs, elapsed=3_725.0), {LONG_NAME: 1_250_000, "beta": 9_876_543}


@pytest.mark.parametrize("width", NARROW)
def test_a_narrow_summary_shows_every_count_and_state_whole(width: int) -> None:
    """At 80 and 60 columns each job is a heading and two lines; every count, the states,
    the time (``1h2m5s``) and the totals are whole."""
    report, expected = big_run()
    console, stream = terminal(width)
    render_summary(console, report, expected, interrupted=False, skipped=[], server=SERVER)
    assert_readable(
        stream.getvalue(),
        width,
        whole=[
            SERVER,
            LONG_NAME,
            "(experiment 123456): done",
            "beta (experiment 2): FAILED",
            "total: FAILED",
            "1,234,567",
            "1,250,000",
            "12,345 unknown",
            "7 not found",
            "1,000,000",
            "9,876,543",
            "2,234,567",  # deleted in all
            "11,126,543",  # expected in all
            "1h2m5s",
            "12.3s",
            "job beta failed: boom",
        ],
        wrapped=["verified 1,234,567"],
    )


def test_at_120_columns_the_summary_is_a_table() -> None:
    """Short names and counts: the summary table with every column, as before."""
    report = RunReport(
        jobs=(run_job("alpha", "1", 25, elapsed=1.5, calls=2, retries=0),), elapsed=1.5
    )
    console, stream = terminal(120)
    render_summary(console, report, {"alpha": 25}, interrupted=False, skipped=[])
    rows = table_rows(stream.getvalue())
    assert rows == [
        ["alpha", "1", "done", "25", "25", "0", "0", "2", "0", "1.5s", "17/s"],
        ["total", "", "ok", "25", "25", "0", "0", "2", "0", "1.5s", "17/s"],
    ]


def test_at_80_columns_short_jobs_keep_a_table_of_their_counts() -> None:
    """The calls, retries, time and rate per job go first; their totals stay on a line."""
    jobs = (
        run_job("alpha", "1", 25, elapsed=1.5, calls=2, retries=0),
        run_job("beta", "2", 1_234_567, elapsed=200.0, calls=1_235, retries=4),
    )
    report = RunReport(jobs=jobs, elapsed=201.5)
    console, stream = terminal(80)
    render_summary(console, report, {"alpha": 25, "beta": 1_234_567}, interrupted=False, skipped=[])
    text = stream.getvalue()
    assert table_rows(text) == [
        ["alpha", "1", "done", "25", "25", "0", "0"],
        ["beta", "2", "done", "1,234,567", "1,234,567", "0", "0"],
        ["total", "", "ok", "1,234,592", "1,234,592", "0", "0"],
    ]
    assert_readable(
        text, 80, whole=["In all: calls 1237, retries 4, time 3m22s, rate 6,127/s"], wrapped=[]
    )


# -- the progress --------------------------------------------------------------------------


def shown(display: ProgressDisplay, width: int) -> str:
    """What the display shows now, drawn ``width`` columns wide."""
    console, stream = terminal(width)
    console.print(display.renderable())
    return stream.getvalue()


def deleted(display: ProgressDisplay, label: str, count: int) -> None:
    """One delete call of ``count`` traces answered."""
    display(BatchDeleted(label, "1", 100_000, count, 0.1, 1, count, 1.0))


@pytest.mark.parametrize("width", [*NARROW, 120])
def test_progress_lines_keep_their_counts_and_states_whole(width: int) -> None:
    """A bar per job: the count ``deleted/expected`` and the state end each line whole;
    at 120 columns the batch size, retries and ETA are shown too."""
    expected = {LONG_NAME: 1_234_567, "beta": 2_345_678, "gamma": 10}
    console, _ = terminal(width)
    display = ProgressDisplay(console, enabled=False)
    display.start(expected)
    for label in expected:
        display(JobStarted(label, "1", "cutoff", 1, 0.0))
    deleted(display, LONG_NAME, 1_000_000)
    deleted(display, "gamma", 10)
    display(JobFinished(run_job("gamma", "3", 10), 1.0))
    text = shown(display, width)
    lines = [line.rstrip() for line in text.splitlines()]
    assert len(lines) == 4, text  # one line per job and the total
    assert all(cell_len(line) <= width for line in lines), text
    assert "1,000,000/1,234,567" in lines[0]
    assert lines[0].endswith("running")
    assert "0/2,345,678" in lines[1]
    assert lines[1].endswith("running")
    assert "10/10" in lines[2]
    assert lines[2].endswith("done")
    assert lines[3].startswith("total")
    assert "1,000,010/3,580,255" in lines[3]
    assert lines[1].startswith("beta")
    assert lines[2].startswith("gamma")
    assert LONG_NAME[-12:] in lines[0]  # a label too long keeps its end
    assert ("batch 100,000" in lines[0] and "ETA" in lines[0]) is (width >= 120)


@pytest.mark.parametrize("width", NARROW)
def test_the_compact_progress_of_300_jobs_keeps_every_count(width: int) -> None:
    """300 jobs of a million each: the five busiest bars, the total and the line of job
    counts (wrapping at its spaces in 60 columns), every number whole."""
    labels = [f"nightly/experiment-with-a-long-name-{index:03d}" for index in range(300)]
    console, _ = terminal(width)
    display = ProgressDisplay(console, enabled=False)
    display.start(dict.fromkeys(labels, 1_234_567))
    for label in labels[:30]:
        display(JobStarted(label, "1", "cutoff", 1, 0.0))
    for label in labels[:10]:
        deleted(display, label, 1_234_567)
        display(JobFinished(run_job(label, "1", 1_234_567), 1.0))
    for label in labels[10:20]:
        display(JobFinished(run_job(label, "1", 0, state=JobState.FAILED), 1.0))
    text = shown(display, width)
    lines = [line.rstrip() for line in text.splitlines()]
    assert all(cell_len(line) <= width for line in lines), text
    assert sum("/1,234,567" in line and line.endswith("running") for line in lines) == 5
    total = next(line for line in lines if line.startswith("total"))
    # Completed jobs close at what they deleted, failed ones keep what they expected.
    assert "12,345,670/370,370,100" in total
    assert "10 jobs done, 10 running, 270 waiting, 10 FAILED" in flat(text)


# -- sweep-artifacts -----------------------------------------------------------------------


def big_sweep() -> SweepReport:
    """Two experiments with 7-digit folder counts, one with a long name."""
    return SweepReport(
        experiments=(
            SweepExperiment(
                experiment_id="123456",
                experiment_name=LONG_NAME,
                folders=2_345_678,
                live=1_111_111,
                orphans=1_234_567,
                deleted=1_234_000,
                failed=567,
                bytes=12_345_678_901,
            ),
            SweepExperiment(
                experiment_id="2",
                experiment_name="beta",
                folders=1_000_000,
                live=999_999,
                orphans=1,
                deleted=1,
                bytes=1_000,
            ),
        ),
        executed=True,
        elapsed=100.0,
    )


@pytest.mark.parametrize("width", NARROW)
def test_a_narrow_sweep_report_shows_every_count_whole(width: int) -> None:
    """Each experiment is a block: its name and ID, folders, live, orphans, removed, failed
    and bytes, whole; then the totals."""
    console, stream = terminal(width)
    render_sweep(console, big_sweep(), server=SERVER, command="x")
    assert_readable(
        stream.getvalue(),
        width,
        whole=[
            SERVER,
            LONG_NAME,
            "(experiment 123456)",
            "beta (experiment 2)",
            "2,345,678",
            "1,111,111",
            "1,234,567",
            "1,234,000",
            "567",
            "11.5 GB",
            "1,000,000",
            "999,999",
            "1,234,001 orphan folders removed (11.5 GB), 567 failed.",
        ],
        wrapped=[],
    )


def test_at_120_columns_the_sweep_is_a_table() -> None:
    """Short names: the table, as before."""
    report = SweepReport(
        experiments=(SweepExperiment(experiment_id="1", experiment_name="alpha", folders=62,
                                     live=55, orphans=7, bytes=7_000),),
        executed=False,
        elapsed=1.0,
    )  # fmt: skip
    console, stream = terminal(120)
    render_sweep(console, report, server=SERVER, command="x")
    assert table_rows(stream.getvalue()) == [["1", "alpha", "62", "55", "7", "6.8 KB"]]


@pytest.mark.parametrize("width", NARROW)
def test_the_sweep_progress_keeps_its_counts_whole(width: int) -> None:
    """Folders checked of all, orphans and removed, whole (the bar is dropped first)."""
    console, _ = terminal(width)
    progress = SweepProgress(console, enabled=False)
    progress(FoldersSwept("123456", 2_345_678, 1_234_567, 1_000_000, 999_999, False, 1.0))
    out, stream = terminal(width)
    out.print(progress.renderable())
    assert_readable(
        stream.getvalue(),
        width,
        whole=["experiment 123456", "1,234,567/2,345,678", "1,000,000 orphans, 999,999 removed"],
        wrapped=[],
    )
