"""What a dry run shows: the plan as a table (or, in a narrow terminal, one block per job),
a sample, the notes and the command to execute; and the dry run as JSON.

Rendering only: every number comes from the library's :class:`PlanReport`. The live
progress is in :mod:`.progress`, the summary after a run in :mod:`.summary`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._planning import JobPlan, PlanReport
from .formats import duration, iso_millis, iso_minutes, iso_seconds, iso_time, iso_with_millis
from .layout import fits, print_block, print_lines
from .progress import ProgressDisplay
from .summary import render_artifacts, render_summary, report_json

__all__ = [
    "ProgressDisplay",
    "iso_millis",
    "plan_json",
    "render_artifacts",
    "render_plan",
    "render_summary",
    "report_json",
]

SAMPLED_JOBS = 10
"""A dry run of more jobs than this shows the sample of this many, the largest."""
_TITLE = "Dry run: nothing was deleted (times in UTC)"
_SAMPLE_HEADERS = ("Job", "Trace ID", "Time", "State")
_HEADERS = ("Job", "Exp", "Cutoff (<=)", "Filter / IDs", "Would delete", "Oldest", "Newest")
_WITHOUT_TIMES = 5  # the columns kept when the oldest and newest do not fit


def _selection(job: JobPlan) -> str:
    parts = []
    if job.requested_ids is not None:
        parts.append(f"{job.requested_ids:,} IDs")
    if job.filter_string:
        parts.append(job.filter_string)
    if job.max_traces is not None:
        parts.append(f"at most {job.max_traces:,}")
    return ", ".join(parts) or "-"


def _row(job: JobPlan) -> list[str]:
    return [
        job.label,
        job.experiment_id,
        iso_time(job.cutoff_millis),
        _selection(job),
        f"{job.would_delete:,}",
        iso_minutes(job.oldest_ms),
        iso_minutes(job.newest_ms),
    ]


def render_plan(
    console: Console,
    plan: PlanReport,
    *,
    command: str,
    skipped: Sequence[Mapping[str, Any]],
    plan_out: str | None = None,
    server: str | None = None,
    now_ms: int | None = None,
) -> None:
    """The dry-run report: which server, per job what would go, a sample, and the command
    to execute.

    Args:
        console: Where to draw (stdout).
        plan: The dry run.
        command: The command that executes it.
        skipped: Experiments left out, with the reason.
        plan_out: Where ``--plan-out`` wrote the plan.
        server: The line naming the server and where its URL came from.
        now_ms: Epoch milliseconds now (the narrow layout shows each cutoff's age).
    """
    if server is not None:
        console.print(server, markup=False, highlight=False, soft_wrap=True)
    rows = [_row(job) for job in plan.jobs]
    total = ["total", "", "", "", f"{plan.would_delete:,}", "", ""]
    wrapping = frozenset({"Filter / IDs"})
    for shown in (len(_HEADERS), _WITHOUT_TIMES):  # the oldest and newest go first
        cut = [row[:shown] for row in [*rows, total]]
        if fits(console, _HEADERS[:shown], cut, wrapping=wrapping):
            _plan_table(console, _HEADERS[:shown], cut[:-1], cut[-1])
            break
    else:
        _plan_blocks(console, plan, now_ms)
    _samples(console, plan)
    for item in skipped:
        console.print(f"skipped {escape(str(item['label']))}: {escape(str(item['reason']))}")
    _notes(console, plan)
    pinned = ", ".join(
        f"{job.label}: --experiment-id {job.experiment_id}"
        + (
            f" --max-timestamp-millis {job.cutoff_millis} ({iso_time(job.cutoff_millis)})"
            if job.cutoff_millis
            else ""
        )
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


def _plan_table(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    total: Sequence[str],
) -> None:
    """The plan as one table: every cell fits (checked by :func:`fits`)."""
    table = Table(title=_TITLE, title_justify="left")
    for name in headers:
        table.add_column(
            name,
            justify="right" if name == "Would delete" else "left",
            no_wrap=name != "Filter / IDs",
            overflow="fold",
        )
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    table.add_section()
    table.add_row(*total)
    console.print(table)


def _plan_blocks(console: Console, plan: PlanReport, now_ms: int | None) -> None:
    """The plan in a terminal too narrow for the table: a block per job, nothing cut."""
    console.print(_TITLE, markup=False, highlight=False)
    for job in plan.jobs:
        pairs = [("would delete", f"{job.would_delete:,}")]
        if job.cutoff_millis is None:
            pairs.append(("cutoff", "none: traces of any age"))
        else:
            age = "" if now_ms is None else f", {duration((now_ms - job.cutoff_millis) / 1000)} ago"
            pairs.append(("cutoff", f"<= {iso_with_millis(job.cutoff_millis)}{age}"))
        if job.filter_string:
            pairs.append(("filter", job.filter_string))
        if job.requested_ids is not None:
            pairs.append(("trace IDs", f"{job.requested_ids:,} given"))
        if job.max_traces is not None:
            pairs.append(("at most", f"{job.max_traces:,}"))
        if job.oldest_ms is not None:
            pairs.append(("oldest", iso_seconds(job.oldest_ms)))
        if job.newest_ms is not None:
            pairs.append(("newest", iso_seconds(job.newest_ms)))
        print_block(console, f"{job.label} (experiment {job.experiment_id})", pairs)
    console.print(f"total: {plan.would_delete:,} traces", markup=False, highlight=False)


def _samples(console: Console, plan: PlanReport) -> None:
    """The oldest traces that would go (of the largest jobs, when there are many)."""
    sampled = list(plan.jobs)
    title = "Sample (oldest first)"
    if len(sampled) > SAMPLED_JOBS:  # a selector's hundreds of jobs: the largest tell most
        sampled = sorted(sampled, key=lambda job: job.would_delete, reverse=True)[:SAMPLED_JOBS]
        title += f" of the {SAMPLED_JOBS} largest of {len(plan.jobs):,} jobs"
    rows = [
        (job.label, trace.trace_id, iso_seconds(trace.timestamp_ms), trace.state)
        for job in sampled
        for trace in job.sample
    ]
    if not rows:
        return
    if not fits(console, _SAMPLE_HEADERS, rows):
        console.print(title, markup=False, highlight=False)
        for job in sampled:
            lines = [
                f"{trace.trace_id}  {iso_seconds(trace.timestamp_ms)}  {trace.state}"
                for trace in job.sample
            ]
            if lines:
                print_lines(console, job.label, lines)
        return
    samples = Table(title=title, title_justify="left")
    for name in _SAMPLE_HEADERS:
        samples.add_column(name, overflow="fold")
    for row in rows:
        samples.add_row(*(escape(cell) for cell in row))
    console.print(samples)


def _notes(console: Console, plan: PlanReport) -> None:
    """How each count was made, and which jobs remove artifact folders too."""
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
    server: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dry run as JSON (``server``: the :func:`.server.server_json` object)."""
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
        "server": None if server is None else dict(server),
        "would_delete": plan.would_delete,
        "jobs": jobs,
        "skipped": list(skipped),
        "execute_command": command,
    }
