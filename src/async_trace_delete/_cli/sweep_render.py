"""What ``sweep-artifacts`` shows: its progress (stderr) and its report (stdout).

Like the trace deletion's, neither loses a number in a narrow terminal: the bar is dropped
first, the progress line wraps at its spaces, and the table becomes one block per
experiment.
"""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from .._events import Event, FoldersSwept
from .._sweep import SweepReport
from .layout import fits, print_block

__all__ = ["SweepProgress", "render_sweep"]

_BAR_FROM = 100  # a terminal narrower than this has no room for the bar: the counts go first
_ONE_LINE_FROM = 90  # narrower: the counts take two lines


class _TwoLinesColumn(ProgressColumn):
    """Folders checked of all, and under it the orphans and removed (a narrow terminal)."""

    def render(self, task: Task) -> Text:
        fields = task.fields
        return Text(
            f"{task.completed:,.0f}/{task.total or 0:,.0f} checked\n"
            f"{fields['orphans']} orphans, {fields['deleted']} removed"
        )


class SweepProgress:
    """One line per experiment swept: folders checked of all, orphans, removed, time (two
    lines and no bar in a terminal narrower than ``_ONE_LINE_FROM``).

    It is an engine hook; it draws on ``console`` (stderr) unless disabled, from the first
    event on (so that an early error has no blank line before it).
    """

    def __init__(self, console: Console, *, enabled: bool) -> None:
        name = TextColumn("{task.description}", table_column=Column(no_wrap=True))
        columns: list[ProgressColumn] = [name]
        if console.width >= _ONE_LINE_FROM:
            columns += [BarColumn()] if console.width >= _BAR_FROM else []
            columns += [
                TextColumn(
                    "{task.completed:,.0f}/{task.total:,.0f}",
                    table_column=Column(justify="right", no_wrap=True),
                ),
                TextColumn("{task.fields[orphans]} orphans, {task.fields[deleted]} removed"),
                TimeElapsedColumn(),
            ]
        else:
            columns.append(_TwoLinesColumn())
        self._progress = Progress(*columns, console=console, disable=not enabled, transient=False)
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: Event) -> None:
        """The engine hook."""
        if not isinstance(event, FoldersSwept):
            return
        if not self._tasks:
            self._progress.start()
        task = self._tasks.get(event.experiment_id)
        if task is None:
            task = self._progress.add_task(
                f"experiment {event.experiment_id}", total=event.folders, orphans=0, deleted=0
            )
            self._tasks[event.experiment_id] = task
        self._progress.update(
            task,
            completed=event.folders if event.done else event.checked,
            total=event.folders,
            orphans=f"{event.orphans:,}",
            deleted=f"{event.deleted:,}",
        )

    def renderable(self) -> RenderableType:
        """What the display shows now."""
        return self._progress.get_renderable()

    def stop(self) -> None:
        """Draw the final state and release the terminal."""
        self._progress.stop()


def render_sweep(console: Console, report: SweepReport, *, server: str, command: str) -> None:
    """The sweep's report: the server, per experiment its folders (a table, or a block per
    experiment in a narrow terminal), the notes, and the command that removes the orphans.

    Args:
        console: Where to draw (stdout).
        report: The sweep.
        server: The line naming the server and where its URL came from.
        command: The command line with ``--execute``.
    """
    console.print(server, markup=False, highlight=False, soft_wrap=True)
    executed = report.executed
    title = "Sweep: orphan trace folders" + ("" if executed else " (dry run: nothing removed)")
    columns = ["Exp", "Name", "Folders", "Live", "Orphans"]
    columns += ["Removed", "Failed"] if executed else []
    columns += ["Bytes"]
    rows = []
    for item in report.experiments:
        row = [
            item.experiment_id,
            item.experiment_name,
            f"{item.folders:,}",
            f"{item.live:,}",
            f"{item.orphans:,}",
        ]
        row += [f"{item.deleted:,}", f"{item.failed:,}"] if executed else []
        row.append("-" if item.bytes is None else _bytes(item.bytes))
        rows.append(row)
    if fits(console, columns, rows):
        table = Table(title=title, title_justify="left")
        for name in columns:
            table.add_column(name, justify="left" if name in ("Exp", "Name") else "right")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    else:  # a narrow terminal: a block per experiment, nothing cut
        console.print(title, markup=False, highlight=False)
        for row in rows:
            pairs = [(name.lower(), cell) for name, cell in zip(columns[2:], row[2:], strict=True)]
            print_block(console, f"{row[1]} (experiment {row[0]})", pairs)
    for item in report.experiments:
        for note in item.notes:
            console.print(f"experiment {item.experiment_id}: {note}", markup=False, soft_wrap=True)
        if item.bytes_unknown:
            console.print(
                f"experiment {item.experiment_id}: the size of {item.bytes_unknown:,} "
                "orphan folders could not be listed; the bytes above leave them out",
                markup=False,
                soft_wrap=True,
            )
    size = "" if report.bytes is None else f" ({_bytes(report.bytes)})"
    if executed:
        console.print(
            f"{report.deleted:,} orphan folders removed{size}, {report.failed:,} failed.",
            markup=False,
        )
    elif report.orphans:
        console.print(
            f"{report.orphans:,} orphan folders{size} would be removed. To remove them, run:",
            markup=False,
        )
        console.print(command, markup=False, highlight=False, soft_wrap=True)
    else:
        console.print("No orphan folders.", markup=False)


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns
