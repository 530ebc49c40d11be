"""What a run shows when it ends: the summary table (or, in a narrow terminal, a few lines
per job), one line per failure, unknown outcome or interruption; and the run as JSON.

Rendering only: every number comes from the library's :class:`RunReport`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._reports import JobReport, RunReport
from .audit import job_summary
from .formats import duration, iso_millis
from .layout import fits, print_lines
from .progress import STATE_WORDS

__all__ = ["render_artifacts", "render_summary", "report_json"]

_HEADERS = ["Job", "Exp", "State", "Expected", "Deleted", "Unknown", "Not found"]
_PACE = ["Calls", "Retries", "Time", "Rate"]
_HEADERS += _PACE


def _rate(deleted: int, elapsed: float) -> str:
    return f"{deleted / elapsed if elapsed > 0 else 0.0:,.0f}/s"


def _job_row(job: JobReport, expected: Mapping[str, int], verified: bool) -> list[str]:
    row = [
        job.label,
        job.experiment_id or "-",
        STATE_WORDS[job.state],
        f"{expected[job.label]:,}" if job.label in expected else "-",
        f"{job.deleted:,}",
        f"{job.ambiguous:,}",
        f"{job.not_found:,}",
        str(job.calls),
        str(job.retries),
        duration(job.elapsed),
        _rate(job.deleted, job.elapsed),
    ]
    if verified:
        row.append("-" if job.verified_deleted is None else f"{job.verified_deleted:,}")
    return row


def _total_row(
    report: RunReport, expected: Mapping[str, int], *, interrupted: bool, verified: bool
) -> list[str]:
    failed = report.failed or report.verification_failed
    row = [
        "total",
        "",
        "interrupted" if interrupted else ("FAILED" if failed else "ok"),
        f"{sum(expected.get(job.label, 0) for job in report.jobs):,}",
        f"{report.deleted:,}",
        f"{report.ambiguous:,}",
        f"{sum(job.not_found for job in report.jobs):,}",
        str(report.calls),
        str(report.retries),
        duration(report.elapsed),
        f"{report.throughput:,.0f}/s",
    ]
    return [*row, ""] if verified else row


def render_summary(
    console: Console,
    report: RunReport,
    expected: Mapping[str, int],
    *,
    interrupted: bool,
    skipped: Sequence[Mapping[str, Any]],
    server: str | None = None,
) -> None:
    """The server, the final table, then one line per failure, unknown outcome or
    interruption."""
    if server is not None:
        console.print(server, markup=False, highlight=False, soft_wrap=True)
    verified = any(job.verified_deleted is not None for job in report.jobs)
    headers = _HEADERS + (["Verified"] if verified else [])
    rows = [_job_row(job, expected, verified) for job in report.jobs]
    total = _total_row(report, expected, interrupted=interrupted, verified=verified)
    # The counts stay; the calls, retries, time and rate per job go first (their totals
    # are kept on a line of their own).
    counts = [index for index, name in enumerate(headers) if name not in _PACE]
    count_headers = [headers[index] for index in counts]
    count_rows = [[row[index] for index in counts] for row in [*rows, total]]
    if fits(console, headers, [*rows, total]):
        _table(console, headers, rows, total)
    elif fits(console, count_headers, count_rows):
        _table(console, count_headers, count_rows[:-1], count_rows[-1])
        calls, retries, elapsed, rate = total[7:11]
        console.print(
            f"In all: calls {calls}, retries {retries}, time {elapsed}, rate {rate}",
            markup=False,
            highlight=False,
        )
    else:
        console.print("Summary", markup=False, highlight=False)
        for row in [*rows, total]:
            _summary_lines(console, row, verified=verified)
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


def _table(
    console: Console, headers: Sequence[str], rows: Sequence[Sequence[str]], total: Sequence[str]
) -> None:
    """The summary as one table (every cell fits: checked by :func:`fits`)."""
    table = Table(title="Summary", title_justify="left")
    for name in headers:
        table.add_column(name, justify="left" if name in headers[:3] else "right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    table.add_section()
    table.add_row(*total)
    console.print(table)


def _summary_lines(console: Console, row: Sequence[str], *, verified: bool) -> None:
    """One row of the summary as a heading and two lines that wrap at spaces only."""
    label, experiment, state, expected, deleted, unknown, not_found = row[:7]
    calls, retries, elapsed, rate = row[7:11]
    heading = (
        f"{label}: {state}" if not experiment else f"{label} (experiment {experiment}): {state}"
    )
    lines = [
        f"deleted {deleted} of {expected} expected, {unknown} unknown, {not_found} not found",
        f"calls {calls}, retries {retries}, time {elapsed}, rate {rate}",
    ]
    if verified and row[11] not in ("", "-"):
        lines[-1] += f", verified {row[11]}"
    print_lines(console, heading, lines)


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
    server: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run as JSON (per-call records are in the audit log, not here; ``server``: the
    :func:`.server.server_json` object)."""
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
        "server": None if server is None else dict(server),
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
