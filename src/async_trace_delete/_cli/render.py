"""What the CLI shows: live progress (stderr), dry-run and summary tables or JSON (stdout).

Rendering only: every number comes from the library's :class:`PlanReport`,
:class:`RunReport` and events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
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


class _CountColumn(ProgressColumn):
    def __init__(self) -> None:
        super().__init__(table_column=Column(justify="right", min_width=13))

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{int(task.total):,}"
        return Text(f"{int(task.completed):,}/{total}", justify="right")


class _RateColumn(ProgressColumn):
    def __init__(self) -> None:
        super().__init__(table_column=Column(justify="right", min_width=8))

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s", justify="right")


class ProgressDisplay:
    """One bar per job (deleted / expected, rate, batch size, retries, ETA) and a total.

    It is an engine hook; it draws on ``console`` (stderr) unless disabled.
    """

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=28),
            _CountColumn(),
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

    def start(self, expected: Mapping[str, int]) -> None:
        """Show a bar per job, sized by the dry-run counts, and the total."""
        self._expected = dict(expected)
        for label, count in expected.items():
            self._tasks[label] = self._progress.add_task(
                label, total=count, batch="-", retries=0, state="waiting"
            )
        self._tasks[TOTAL] = self._progress.add_task(
            TOTAL, total=sum(expected.values()), batch="", retries=0, state=""
        )
        self._progress.start()

    def note(self, text: str) -> None:
        """Print a line above the bars (e.g. "stopping...")."""
        if self.enabled:
            self._progress.console.print(text, markup=False, highlight=False)

    def stop(self) -> None:
        """Draw the final state and release the terminal."""
        self._progress.stop()

    def __call__(self, event: Event) -> None:
        """The engine hook."""
        if not self._tasks:
            return
        progress = self._progress
        match event:
            case JobStarted() if event.job in self._tasks:
                progress.update(self._tasks[event.job], state="running")
            case BatchDeleted() if event.job in self._tasks:
                progress.update(
                    self._tasks[event.job], advance=event.deleted, batch=f"{event.requested:,}"
                )
                progress.update(self._tasks[TOTAL], advance=event.deleted)
            case RetryScheduled() if event.job in self._tasks:
                self._retries[event.job] = self._retries.get(event.job, 0) + 1
                progress.update(self._tasks[event.job], retries=self._retries[event.job])
                progress.update(self._tasks[TOTAL], retries=sum(self._retries.values()))
            case Throttled() if event.job in self._tasks:
                progress.update(self._tasks[event.job], state=f"throttled {event.pause:.1f}s")
            case JobFinished() if event.report.label in self._tasks:
                self._finished(event.report)
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
    samples = Table(title="Sample (oldest first)", title_justify="left")
    for name in ("Job", "Trace ID", "Time", "State"):
        samples.add_column(name, overflow="fold")
    for job in plan.jobs:
        for trace in job.sample:
            samples.add_row(
                escape(job.label), trace.trace_id, _short_time(trace.timestamp_ms), trace.state
            )
    if samples.row_count:
        console.print(samples)
    for item in skipped:
        console.print(f"skipped {escape(str(item['label']))}: {escape(str(item['reason']))}")
    for job in plan.jobs:
        if job.count_method == "search":
            reason = job.count_note or (
                "the server cannot count this selection in one request (IDs, or a filter "
                "beyond status/tag/metadata equalities); counted by paging through search"
            )
            console.print(f"{escape(job.label)}: exact count; {escape(reason)}")
    for job in plan.jobs:
        if job.with_artifacts:
            console.print(
                f"{escape(job.label)}: with artifacts: each deleted trace's artifact folder "
                "is removed too, once the trace is known gone (listed when the job starts)"
            )
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
