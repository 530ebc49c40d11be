"""The progress display with hundreds of jobs (a selector over a whole server).

With more than ``ProgressDisplay.ALL_BARS_UP_TO`` jobs it shows the total, the running jobs
with the most traces left (``BUSIEST``) and one line of counts; with few jobs, one bar per
job and the total, as before. Events are fed by hand (``_events.py``) to a display drawing
on a rich console at a fixed width.
"""

from __future__ import annotations

import io

from rich.console import Console

from async_trace_delete._cli.progress import ProgressDisplay
from async_trace_delete._events import BatchDeleted, JobFinished, JobStarted
from async_trace_delete._reports import JobReport, JobState

WIDTH = 100


def terminal() -> tuple[Console, io.StringIO]:
    """A terminal console, 100 columns wide, without colours, writing to a string."""
    stream = io.StringIO()
    return Console(file=stream, force_terminal=True, width=WIDTH, color_system=None), stream


def shown(display: ProgressDisplay) -> list[str]:
    """What the display shows now, one string per line at 100 columns."""
    console, stream = terminal()
    console.print(display.renderable())
    return stream.getvalue().splitlines()


def jobs_shown(lines: list[str]) -> list[str]:
    """The experiment part of each bar's label (a label too long for the terminal loses
    its beginning, never its end)."""
    return [line.split()[0].rsplit("/", 1)[-1] for line in lines]


def short(labels: list[str]) -> list[str]:
    """The experiment part of each label."""
    return [label.rsplit("/", 1)[-1] for label in labels]


def report(label: str, deleted: int, state: JobState = JobState.COMPLETED) -> JobReport:
    """A job's final report."""
    return JobReport(
        label=label,
        experiment_id=label.rsplit("-", 1)[-1],
        mode="cutoff",
        cutoff_millis=1,
        max_traces=None,
        state=state,
        deleted=deleted,
        ambiguous=0,
        ambiguous_calls=0,
        not_found=0,
        requested_ids=None,
        calls=1,
        retries=0,
        errors=(),
        error=None,
        error_type=None,
        batches=(),
        elapsed=1.0,
    )


def delete(display: ProgressDisplay, label: str, count: int, at: float = 1.0) -> None:
    """One delete call of ``count`` traces answered."""
    display(BatchDeleted(label, "1", count, count, 0.1, 1, count, at))


LABELS = [f"nightly/experiment-{index:03d}" for index in range(300)]
EXPECTED = dict.fromkeys(LABELS, 1_000)


def test_300_jobs_show_the_total_the_busiest_five_and_one_line_of_counts() -> None:
    """Jobs 0-9 done, 10-29 running with different amounts left, 270 waiting: the display
    is the five running jobs with the most left, the total and the counts."""
    display = ProgressDisplay(terminal()[0], enabled=False)
    display.start(EXPECTED)
    for index, label in enumerate(LABELS[:30]):
        display(JobStarted(label, str(index), "cutoff", 1, 0.0))
    for label in LABELS[:10]:
        delete(display, label, 1_000)
        display(JobFinished(report(label, 1_000), 1.0))
    for index, label in enumerate(LABELS[10:30], start=10):
        delete(display, label, (index * 37) % 900)  # traces left: 1000 minus that
    lines = shown(display)
    assert len(lines) <= 10, "\n".join(lines)
    assert len(lines) == 7  # five bars, the total, the counts
    left = {
        label: 1_000 - (index * 37) % 900 for index, label in enumerate(LABELS) if 9 < index < 30
    }
    busiest = sorted(left, key=lambda label: left[label], reverse=True)[:5]
    assert set(jobs_shown(lines[:5])) == set(short(busiest))
    deleted = 10_000 + sum(1_000 - value for value in left.values())
    total = lines[5]
    assert total.startswith("total")
    assert f"{deleted:,}/300,000" in total
    assert lines[6] == "10 jobs done, 20 running, 270 waiting"
    assert all(len(line) <= WIDTH for line in lines)


def test_the_counts_follow_jobs_to_the_end_and_name_failures() -> None:
    """Once every job has ended nothing is running: the total (finished at what was
    deleted), and the counts with the failed and stopped jobs."""
    display = ProgressDisplay(terminal()[0], enabled=False)
    display.start(EXPECTED)
    for index, label in enumerate(LABELS):
        display(JobStarted(label, str(index), "cutoff", 1, 0.0))
        delete(display, label, 900)
        state = {0: JobState.FAILED, 1: JobState.CANCELLED}.get(index, JobState.COMPLETED)
        display(JobFinished(report(label, 900, state), 1.0))
    lines = shown(display)
    assert len(lines) == 2, "\n".join(lines)
    # Completed jobs close at what they deleted (900 of 1000); the two others keep theirs.
    assert "270,000/270,200" in lines[0]
    assert lines[1] == "298 jobs done, 0 running, 0 waiting, 1 FAILED, 1 stopped"


def test_a_running_job_leaves_the_display_once_others_have_more_left() -> None:
    """The busiest are chosen again after every answer."""
    display = ProgressDisplay(terminal()[0], enabled=False)
    display.start(EXPECTED)
    for index, label in enumerate(LABELS[:6]):
        display(JobStarted(label, str(index), "cutoff", 1, 0.0))
    assert jobs_shown(shown(display)[:5]) == short(LABELS[:5])  # a tie: the first five
    delete(display, LABELS[0], 500)
    assert jobs_shown(shown(display)[:5]) == short(LABELS[1:6])


def test_few_jobs_keep_one_bar_each() -> None:
    """Up to eight jobs: every job has its bar, waiting ones too, and no line of counts."""
    labels = LABELS[:8]
    display = ProgressDisplay(terminal()[0], enabled=False)
    display.start(dict.fromkeys(labels, 100))
    display(JobStarted(labels[0], "0", "cutoff", 1, 0.0))
    delete(display, labels[0], 40)
    lines = shown(display)
    assert jobs_shown(lines) == [*short(labels), "total"]
    assert "40/100" in lines[0]
    assert "running" in lines[0]
    assert lines[1].rstrip().endswith("waiting")
    assert "40/800" in lines[-1]


def test_a_live_display_on_a_terminal_ends_on_the_compact_frame() -> None:
    """Started and stopped on a terminal (rich redraws in place), the last frame drawn is
    the compact one."""
    console, stream = terminal()
    display = ProgressDisplay(console, enabled=True)
    display.start(EXPECTED)
    for index, label in enumerate(LABELS[:7]):
        display(JobStarted(label, str(index), "cutoff", 1, 0.0))
        delete(display, label, index + 1)
    display.stop()
    final = stream.getvalue().rsplit("\x1b[2K", 1)[-1].replace("\x1b[?25h", "")
    lines = final.splitlines()
    assert len(lines) == 7, final
    assert lines[-1] == "0 jobs done, 7 running, 293 waiting"
    assert "28/300,000" in lines[-2]
