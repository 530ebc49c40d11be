"""What the CLI shows: live progress (stderr), dry-run and summary tables or JSON (stdout).

Rendering only: every number comes from the library's :class:`PlanReport`,
:class:`RunReport` and events.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from .._events import BatchDeleted, Event, JobFinished, JobStarted, RetryScheduled, Throttled
from .._planning import JobPlan, PlanReport
from .._reports import JobReport, JobState, RunReport
from .audit import job_summary

__all__ = [
    "ProgressDisplay",
    "iso_millis",
    "plan_json",
    "render_plan",
    "render_summary",
    "report_json",
]

_STATE_WORDS = {
    JobState.PENDING: "waiting",
    JobState.RUNNING: "running",
    JobState.COMPLETED: "done",
    JobState.CANCELLED: "stopped",
    JobState.FAILED: "FAILED",
}
TOTAL = "total"
SAMPLED_JOBS = 10
"""A dry run of more jobs than this shows the sample of this many, the largest."""


def iso_millis(millis: int | None) -> str:
    """Epoch milliseconds as UTC ISO 8601 (``-`` for None)."""
    if millis is None:
        return "-"
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short_time(millis: int | None, *, seconds: bool = True) -> str:
    """Epoch milliseconds as a UTC time for tables (to the second or the minute)."""
    if millis is None:
        return "-"
    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(millis // 1000, UTC).strftime(shape)


def _seconds(value: float) -> str:
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"


# -- live progress -------------------------------------------------------------------------


_BAR = 28  # the bar's width when the terminal has room
_MIN_BAR = 8
_MIN_LABEL = 8
_LABEL_BEFORE_BAR = 24  # label characters kept before the bar starts to shrink
_COUNT = 13  # "12,345/67,890", at least
_RATE = 8  # "12,345/s", "123k/s", "12.3M/s"
# Every column but the label, the bar and the count (rate, batch, retries, ETA, time left,
# a state such as "running") and the gaps between the nine columns.
_OTHER_COLUMNS = _RATE + 12 + 9 + 3 + 7 + 7 + 8


class _CountColumn(ProgressColumn):
    def __init__(self) -> None:
        super().__init__()
        self.min_width = _COUNT

    def get_table_column(self) -> Column:
        return Column(justify="right", min_width=self.min_width, no_wrap=True)

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{int(task.total):,}"
        return Text(f"{int(task.completed):,}/{total}", justify="right")


class _RateColumn(ProgressColumn):
    def __init__(self) -> None:
        super().__init__(table_column=Column(justify="right", min_width=_RATE, no_wrap=True))

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-/s", justify="right")
        if speed >= 1_000_000:  # at most 8 characters, whatever the speed
            return Text(f"{speed / 1_000_000:,.1f}M/s", justify="right")
        if speed >= 100_000:
            return Text(f"{speed / 1_000:,.0f}k/s", justify="right")
        return Text(f"{speed:,.0f}/s", justify="right")


class _LabelColumn(ProgressColumn):
    """The job's label; one too long for the terminal keeps its end (the experiment's name
    is what tells jobs apart): ``…t-number-042``."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.max_chars: int | None = None

    def render(self, task: Task) -> Text:
        label = task.description
        if self.max_chars is not None and len(label) > self.max_chars:
            label = "…" + label[len(label) - self.max_chars + 1 :]
        return Text(label)


class _Progress(Progress):
    """rich's Progress with a line of its own under the bars (the job counts)."""

    status = ""  # a class default: rich renders once while constructing

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.status:
            yield Text(self.status, no_wrap=True, overflow="ellipsis")


class ProgressDisplay:
    """One bar per job (deleted / expected, rate, batch size, retries, ETA) and a total.

    With more than :attr:`ALL_BARS_UP_TO` jobs (a selector's hundreds of experiments) it
    shows the total, the :attr:`BUSIEST` running jobs with the most traces left, and one
    line of counts (``N jobs done, M running, K waiting``): the terminal stays readable.

    It is an engine hook; it draws on ``console`` (stderr) unless disabled.
    """

    ALL_BARS_UP_TO = 8
    BUSIEST = 5

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.enabled = enabled
        self._label = _LabelColumn()
        self._bar = BarColumn(bar_width=_BAR)
        self._count = _CountColumn()
        self._progress = _Progress(
            self._label,
            self._bar,
            self._count,
            _RateColumn(),
            TextColumn("batch {task.fields[batch]:>6}"),
            TextColumn("retries {task.fields[retries]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[state]}", markup=False),
            console=console,
            disable=not enabled,
            refresh_per_second=8,
        )
        self._tasks: dict[str, TaskID] = {}
        self._expected: dict[str, int] = {}
        self._retries: dict[str, int] = {}
        self._compact = False
        self._state: dict[str, str] = {}  # label -> waiting, running, or a final word
        self._counts: Counter[str] = Counter()  # jobs per state
        self._left: dict[str, int] = {}  # label -> traces still expected
        self._shown: set[str] = set()

    def start(self, expected: Mapping[str, int]) -> None:
        """Show a bar per job (or the busiest few), sized by the dry-run counts, and the
        total."""
        self._expected = dict(expected)
        self._compact = len(expected) > self.ALL_BARS_UP_TO
        self._fit(self._progress.console.width, [*expected, TOTAL], sum(expected.values()))
        for label, count in expected.items():
            self._tasks[label] = self._progress.add_task(
                label,
                total=count,
                batch="-",
                retries=0,
                state="waiting",
                visible=not self._compact,
            )
            self._set_state(label, "waiting")
            self._left[label] = count
        self._tasks[TOTAL] = self._progress.add_task(
            TOTAL, total=sum(expected.values()), batch="", retries=0, state=""
        )
        self._relayout()
        self._progress.start()

    def _fit(self, width: int, labels: Sequence[str], total: int) -> None:
        """One line per bar: in a terminal too narrow for the labels and a full bar, the
        bar shrinks first, then the labels lose their beginnings (never the counts)."""
        # The total's count is the widest (one more character: the run may find more).
        self._count.min_width = max(_COUNT, len(f"{total:,}/{total:,}") + 1)
        room = width - _OTHER_COLUMNS - self._count.min_width
        longest = max(len(label) for label in labels)
        bar = max(_MIN_BAR, min(_BAR, room - min(longest, _LABEL_BEFORE_BAR)))
        self._bar.bar_width = bar
        chars = room - bar - 1
        self._label.max_chars = None if longest <= chars else max(_MIN_LABEL, chars)

    def note(self, text: str) -> None:
        """Print a line above the bars (e.g. "stopping...")."""
        if self.enabled:
            self._progress.console.print(text, markup=False, highlight=False)

    def stop(self) -> None:
        """Draw the final state and release the terminal."""
        self._progress.stop()

    def renderable(self) -> RenderableType:
        """What the display shows now (the bars and the line of counts)."""
        return self._progress.get_renderable()

    def __call__(self, event: Event) -> None:
        """The engine hook."""
        if not self._tasks:
            return
        progress = self._progress
        match event:
            case JobStarted() if event.job in self._tasks:
                self._set_state(event.job, "running")
                progress.update(self._tasks[event.job], state="running")
                self._relayout()
            case BatchDeleted() if event.job in self._tasks:
                progress.update(
                    self._tasks[event.job], advance=event.deleted, batch=f"{event.requested:,}"
                )
                progress.update(self._tasks[TOTAL], advance=event.deleted)
                self._left[event.job] = self._left.get(event.job, 0) - event.deleted
                self._relayout()
            case RetryScheduled() if event.job in self._tasks:
                self._retries[event.job] = self._retries.get(event.job, 0) + 1
                progress.update(self._tasks[event.job], retries=self._retries[event.job])
                progress.update(self._tasks[TOTAL], retries=sum(self._retries.values()))
            case Throttled() if event.job in self._tasks:
                progress.update(self._tasks[event.job], state=f"throttled {event.pause:.1f}s")
            case JobFinished() if event.report.label in self._tasks:
                self._finished(event.report)
                self._relayout()
            case _:
                pass

    def _finished(self, report: JobReport) -> None:
        progress = self._progress
        task_id = self._tasks[report.label]
        state = _STATE_WORDS[report.state]
        if report.state is JobState.COMPLETED:
            # The server had a different count than the dry run (new or vanished traces):
            # finish the bar at what was deleted; the summary shows both numbers.
            expected = self._expected.get(report.label, 0)
            progress.update(task_id, total=report.deleted)
            total_task = progress.tasks[self._tasks[TOTAL]]
            new_total = (total_task.total or 0) + report.deleted - expected
            progress.update(self._tasks[TOTAL], total=new_total)
        progress.update(task_id, state=state)
        self._set_state(report.label, state)

    def _set_state(self, label: str, state: str) -> None:
        old = self._state.get(label)
        if old is not None:
            self._counts[old] -= 1
        self._state[label] = state
        self._counts[state] += 1

    def _relayout(self) -> None:
        """Compact display: show the busiest running jobs only, and count the rest."""
        if not self._compact:
            return
        # Called on every answer, with hundreds of jobs running: the five are picked in one
        # pass (no sort of every job), and the counts are kept as states change.
        running = (label for label, state in self._state.items() if state == "running")
        busiest = set(
            heapq.nlargest(self.BUSIEST, running, key=lambda label: self._left.get(label, 0))
        )
        for label in busiest ^ self._shown:
            self._progress.update(self._tasks[label], visible=label in busiest)
        self._shown = busiest
        counts = self._counts
        words = [
            f"{counts.get('done', 0):,} jobs done",
            f"{counts.get('running', 0):,} running",
            f"{counts.get('waiting', 0):,} waiting",
        ]
        words += [
            f"{counts[word]:,} {word}"
            for word in (_STATE_WORDS[JobState.FAILED], _STATE_WORDS[JobState.CANCELLED])
            if counts.get(word)
        ]
        self._progress.status = ", ".join(words)


# -- dry run ------------------------------------------------------------------------------


def _selection(job: JobPlan) -> str:
    parts = []
    if job.requested_ids is not None:
        parts.append(f"{job.requested_ids:,} IDs")
    if job.filter_string:
        parts.append(job.filter_string)
    if job.max_traces is not None:
        parts.append(f"at most {job.max_traces:,}")
    return ", ".join(parts) or "-"


def render_plan(
    console: Console,
    plan: PlanReport,
    *,
    command: str,
    skipped: Sequence[Mapping[str, Any]],
    plan_out: str | None = None,
) -> None:
    """The dry-run report: per job what would go, a sample, and the command to execute."""
    table = Table(title="Dry run: nothing was deleted (times in UTC)", title_justify="left")
    for name in ("Job", "Exp", "Cutoff (<=)", "Filter / IDs", "Would delete", "Oldest", "Newest"):
        table.add_column(
            name,
            justify="right" if name == "Would delete" else "left",
            no_wrap=name != "Filter / IDs",
            overflow="fold",
        )
    for job in plan.jobs:
        table.add_row(
            escape(job.label),
            job.experiment_id,
            _short_time(job.cutoff_millis),
            escape(_selection(job)),
            f"{job.would_delete:,}",
            _short_time(job.oldest_ms, seconds=False),
            _short_time(job.newest_ms, seconds=False),
        )
    table.add_section()
    table.add_row("total", "", "", "", f"{plan.would_delete:,}", "", "")
    console.print(table)
    sampled = list(plan.jobs)
    title = "Sample (oldest first)"
    if len(sampled) > SAMPLED_JOBS:  # a selector's hundreds of jobs: the largest tell most
        sampled = sorted(sampled, key=lambda job: job.would_delete, reverse=True)[:SAMPLED_JOBS]
        title += f" of the {SAMPLED_JOBS} largest of {len(plan.jobs):,} jobs"
    samples = Table(title=title, title_justify="left")
    for name in ("Job", "Trace ID", "Time", "State"):
        samples.add_column(name, overflow="fold")
    for job in sampled:
        for trace in job.sample:
            samples.add_row(
                escape(job.label), trace.trace_id, _short_time(trace.timestamp_ms), trace.state
            )
    if samples.row_count:
        console.print(samples)
    for item in skipped:
        console.print(f"skipped {escape(str(item['label']))}: {escape(str(item['reason']))}")
    notes: dict[str, list[str]] = {}
    for job in plan.jobs:
        if job.count_method == "search":
            reason = job.count_note or (
                "the server cannot count this selection in one request (IDs, or a filter "
                "beyond status/tag/metadata equalities); counted by paging through search"
            )
            notes.setdefault(f"exact count; {reason}", []).append(job.label)
    for job in plan.jobs:
        if job.with_artifacts:
            notes.setdefault(
                "with artifacts: each deleted trace's artifact folder is removed too, once "
                "the trace is known gone (listed when the job starts)",
                [],
            ).append(job.label)
    for note, labels in notes.items():
        if len(plan.jobs) <= SAMPLED_JOBS:
            for label in labels:
                console.print(f"{escape(label)}: {escape(note)}")
        else:  # one line per note, not one per experiment
            console.print(f"{_some_jobs(labels)}: {escape(note)}")
    pinned = ", ".join(
        f"{job.label}: --experiment-id {job.experiment_id}"
        + (f" --max-timestamp-millis {job.cutoff_millis}" if job.cutoff_millis else "")
        for job in plan.jobs
    )
    if pinned:
        console.print(f"Pinned ({pinned})", markup=False, highlight=False, soft_wrap=True)
    if plan_out is None:
        console.print(
            "To delete exactly this plan later: add --plan-out PLAN.json, then run "
            "async-trace-delete apply PLAN.json",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"Plan written to {plan_out}; delete exactly it with: async-trace-delete apply "
            f"{plan_out}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if plan.would_delete:
        console.print(f"{plan.would_delete:,} traces would be deleted. To delete them, run:")
    else:
        console.print("Nothing to delete now. The command to execute is:")
    console.print(command, markup=False, highlight=False, soft_wrap=True)


def _some_jobs(labels: Sequence[str]) -> str:
    """``3 jobs (a, b, c)``, or the first three and how many more."""
    shown = ", ".join(escape(label) for label in labels[:3])
    more = f", and {len(labels) - 3:,} more" if len(labels) > 3 else ""
    return f"{len(labels):,} job{'s' if len(labels) != 1 else ''} ({shown}{more})"


def plan_json(
    plan: PlanReport,
    *,
    command: str,
    skipped: Sequence[Mapping[str, Any]],
    dry_run: bool = True,
) -> dict[str, Any]:
    """The dry run as JSON."""
    jobs = []
    for job in plan.jobs:
        item = job.model_dump(mode="json")
        item.update(
            cutoff=iso_millis(job.cutoff_millis) if job.cutoff_millis is not None else None,
            oldest=iso_millis(job.oldest_ms) if job.oldest_ms is not None else None,
            newest=iso_millis(job.newest_ms) if job.newest_ms is not None else None,
        )
        jobs.append(item)
    return {
        "dry_run": dry_run,  # False: an --execute run that found nothing to delete
        "would_delete": plan.would_delete,
        "jobs": jobs,
        "skipped": list(skipped),
        "execute_command": command,
    }


# -- after executing ----------------------------------------------------------------------


def render_summary(
    console: Console,
    report: RunReport,
    expected: Mapping[str, int],
    *,
    interrupted: bool,
    skipped: Sequence[Mapping[str, Any]],
) -> None:
    """The final table, then one line per failure, unknown outcome or interruption."""
    verified = any(job.verified_deleted is not None for job in report.jobs)
    table = Table(title="Summary", title_justify="left")
    columns = ["Job", "Exp", "State", "Expected", "Deleted", "Unknown", "Not found"]
    columns += ["Calls", "Retries", "Time", "Rate"] + (["Verified"] if verified else [])
    for name in columns:
        table.add_column(name, justify="left" if name in columns[:3] else "right")
    for job in report.jobs:
        rate = job.deleted / job.elapsed if job.elapsed > 0 else 0.0
        row = [
            escape(job.label),
            job.experiment_id or "-",
            _STATE_WORDS[job.state],
            f"{expected[job.label]:,}" if job.label in expected else "-",
            f"{job.deleted:,}",
            f"{job.ambiguous:,}",
            f"{job.not_found:,}",
            str(job.calls),
            str(job.retries),
            _seconds(job.elapsed),
            f"{rate:,.0f}/s",
        ]
        if verified:
            row.append("-" if job.verified_deleted is None else f"{job.verified_deleted:,}")
        table.add_row(*row)
    table.add_section()
    total_row = [
        "total",
        "",
        "interrupted"
        if interrupted
        else ("ok" if not (report.failed or report.verification_failed) else "FAILED"),
        f"{sum(expected.get(job.label, 0) for job in report.jobs):,}",
        f"{report.deleted:,}",
        f"{report.ambiguous:,}",
        f"{sum(job.not_found for job in report.jobs):,}",
        str(report.calls),
        str(report.retries),
        _seconds(report.elapsed),
        f"{report.throughput:,.0f}/s",
    ]
    if verified:
        total_row.append("")
    table.add_row(*total_row)
    console.print(table)
    for item in skipped:
        console.print(f"skipped {escape(str(item['label']))}: {escape(str(item['reason']))}")
    for job in report.failed:
        console.print(f"job {escape(job.label)} failed: {escape(job.error or 'unknown error')}")
    for job in report.verification_failed:
        console.print(
            f"job {escape(job.label)}: verification failed: "
            f"{escape(job.verification_error or '')}; the counts above are the server's answers"
        )
    render_artifacts(console, report)
    if report.ambiguous:
        console.print(
            f"{report.ambiguous:,} traces have an unknown outcome (a call was cancelled or "
            "its answer lost): they may or may not be deleted; a rerun settles it."
        )
    if interrupted:
        console.print(
            f"Interrupted: {report.deleted:,} traces deleted before stopping. "
            "Rerun the same command to continue."
        )


def render_artifacts(console: Console, report: RunReport) -> None:
    """One line of artifact-folder counts (``--with-artifacts``), and why any were left."""
    artifacts = report.artifacts
    if artifacts is None:
        return
    console.print(
        f"Artifact folders: {artifacts.deleted:,} removed, {artifacts.failed:,} failed, "
        f"{artifacts.skipped:,} left (the trace counts above do not depend on them)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for note in artifacts.notes:
        console.print(f"  {note}", markup=False, highlight=False, soft_wrap=True)


def report_json(
    report: RunReport,
    expected: Mapping[str, int],
    *,
    interrupted: bool,
    exit_code: int,
    skipped: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The run as JSON (per-call records are in the audit log, not here)."""
    jobs = []
    for job in report.jobs:
        item = job_summary(job)
        item["expected"] = expected.get(job.label)
        item["cutoff"] = iso_millis(job.cutoff_millis) if job.cutoff_millis is not None else None
        item["verified_deleted"] = job.verified_deleted
        item["verification_error"] = job.verification_error
        jobs.append(item)
    return {
        "dry_run": False,
        "interrupted": interrupted,
        "exit_code": exit_code,
        "expected": sum(expected.get(job.label, 0) for job in report.jobs),
        "deleted": report.deleted,
        "ambiguous": report.ambiguous,
        "not_found": sum(job.not_found for job in report.jobs),
        "calls": report.calls,
        "retries": report.retries,
        "elapsed": report.elapsed,
        "throughput": report.throughput,
        "artifacts": None if report.artifacts is None else report.artifacts.model_dump(),
        "jobs": jobs,
        "skipped": list(skipped),
    }
