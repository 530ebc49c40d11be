"""The live progress display (stderr): a bar per job, or the busiest few, and a total.

Each bar is one line. In a terminal too narrow for every column the decoration goes first
(the batch size, the retries, the ETA, then the bar itself) and the label loses its
beginning; the count ``deleted/expected`` and the job's state are always shown whole.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from .._events import BatchDeleted, Event, JobFinished, JobStarted, RetryScheduled, Throttled
from .._reports import JobReport, JobState

__all__ = ["STATE_WORDS", "ProgressDisplay"]

STATE_WORDS = {
    JobState.PENDING: "waiting",
    JobState.RUNNING: "running",
    JobState.COMPLETED: "done",
    JobState.CANCELLED: "stopped",
    JobState.FAILED: "FAILED",
}
TOTAL = "total"

_BAR = 28  # the bar's width when the terminal has room
_MIN_BAR = 8
_MIN_LABEL = 8
_LABEL_WANTED = 16  # label characters a layout must leave before decoration is dropped
_LABEL_BEFORE_BAR = 24  # label characters kept before the bar starts to shrink
_COUNT = 13  # "12,345/67,890", at least
# The widest each other column gets: "12.3M/s", "batch 100,000", "retries 99", "ETA",
# "10:00:00", and a state ("running", "stopped", "FAILED", "throttled").
_WIDTHS = {"rate": 8, "batch": 13, "retries": 10, "eta": 3, "left": 8, "state": 9}


@dataclass(frozen=True)
class _Layout:
    """The columns one terminal width has room for (besides the label and the count)."""

    columns: tuple[str, ...]  # in order, among "bar" and the keys of _WIDTHS


_LAYOUTS = (
    _Layout(("bar", "rate", "batch", "retries", "eta", "left", "state")),
    _Layout(("bar", "rate", "left", "state")),
    _Layout(("rate", "state")),
    _Layout(("state",)),
)


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
        super().__init__(
            table_column=Column(justify="right", min_width=_WIDTHS["rate"], no_wrap=True)
        )

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-/s", justify="right")
        if speed >= 100_000_000:  # at most 8 characters, whatever the speed
            return Text(">100M/s", justify="right")
        if speed >= 1_000_000:
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
            yield Text(self.status)  # wraps in a narrow terminal: every count stays whole


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
        self._columns: dict[str, ProgressColumn] = {
            "bar": self._bar,
            "rate": _RateColumn(),
            "batch": TextColumn("batch {task.fields[batch]:>6}"),
            "retries": TextColumn("retries {task.fields[retries]}"),
            "eta": TextColumn("ETA"),
            "left": TimeRemainingColumn(),
            "state": TextColumn("{task.fields[state]}", markup=False),
        }
        self._progress = _Progress(
            *self._chosen(_LAYOUTS[0]),
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

    def _chosen(self, layout: _Layout) -> list[ProgressColumn]:
        columns = [self._columns[name] for name in layout.columns]
        place = 1 if layout.columns[0] == "bar" else 0  # the count follows the bar
        return [self._label, *columns[:place], self._count, *columns[place:]]

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
        """One line per bar: the richest layout that leaves the labels room (the bar
        shrinking first), then the labels lose their beginnings; never the counts."""
        # The total's count is the widest (one more character: the run may find more).
        self._count.min_width = max(_COUNT, len(f"{total:,}/{total:,}") + 1)
        longest = max(len(label) for label in labels)
        wanted = min(longest, _LABEL_WANTED)
        for layout in _LAYOUTS:
            others = sum(_WIDTHS[name] for name in layout.columns if name != "bar")
            gaps = len(layout.columns) + 1  # one space between each of the columns
            room = width - others - gaps - self._count.min_width  # the label and the bar
            bars = "bar" in layout.columns
            if room - (_MIN_BAR if bars else 0) >= wanted or layout is _LAYOUTS[-1]:
                break
        if bars:
            bar = max(_MIN_BAR, min(_BAR, room - min(longest, _LABEL_BEFORE_BAR)))
            self._bar.bar_width = bar
            room -= bar
        self._progress.columns = tuple(self._chosen(layout))
        self._label.max_chars = None if longest <= room else max(_MIN_LABEL, room)

    def note(self, text: str) -> None:
        """Print a line above the bars (e.g. "stopping...")."""
        if self.enabled:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

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
                progress.update(self._tasks[event.job], state="throttled")
            case JobFinished() if event.report.label in self._tasks:
                self._finished(event.report)
                self._relayout()
            case _:
                pass

    def _finished(self, report: JobReport) -> None:
        progress = self._progress
        task_id = self._tasks[report.label]
        state = STATE_WORDS[report.state]
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
            for word in (STATE_WORDS[JobState.FAILED], STATE_WORDS[JobState.CANCELLED])
            if counts.get(word)
        ]
        self._progress.status = ", ".join(words)
