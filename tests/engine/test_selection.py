"""Experiment selectors and retention tags through the Engine, on the simulated server.

Every test runs on a fake clock (``tests/support/sim_engine.py``; the fairness test on the
:class:`SteppedClock` below, on which a call reaches the server when it was sent, so the
server's times show the rate); the engine's "now" is ``NOW_MS``. Each test checks the exact
counts of the run or plan and what is left on the server in every experiment it seeded,
selected or not. The pure rules (model, ``filter_string``, ``matches``, ``describe``,
retention tags read by ``expand``) are ``tests/control/test_selection.py``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import pytest

from async_trace_delete import (
    BatchDeleted,
    DeleteSpec,
    Event,
    ExperimentSelector,
    GuardrailError,
    JobFinished,
    JobStarted,
    JobState,
    ResolvedSpec,
    SkippedExperiment,
    UsageError,
)
from async_trace_delete._durations import format_instant
from tests.support.sim_engine import NOW_MS, fixed_batches, make_engine
from tests.support.simulated_server import (
    BASE_MS,
    SimTrace,
    SimulatedServer,
    sim_traces,
)
from tests.support.stepped_clock import SteppedClock

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CUTOFF = BASE_MS + DAY_MS  # the job's own cutoff in the cutoff tests: old traces are before it
ALL = ExperimentSelector(all_experiments=True)
# Ages (hours before NOW_MS) of the traces of a retention test's experiment: 20d, 10d, 3d,
# 36h, 18h, 6h and 1h. A 1d cutoff takes 4, 12h takes 5, 2w takes 1 and 7d takes 2.
AGES_HOURS = (480, 240, 72, 36, 18, 6, 1)


class Seeded:
    """Experiments seeded on a simulated server, by name, with what each held at the start."""

    def __init__(self, server: SimulatedServer) -> None:
        self.server = server
        self.ids: dict[str, str] = {}
        self.seeded: dict[str, int] = {}

    def add(
        self,
        name: str,
        traces: list[SimTrace],
        *,
        tags: Mapping[str, str] | None = None,
        deleted: bool = False,
    ) -> str:
        experiment_id = self.server.add_experiment(name, traces, tags=tags, deleted=deleted)
        self.ids[name] = experiment_id
        self.seeded[name] = len(traces)
        return experiment_id

    def old_and_new(
        self,
        name: str,
        old: int,
        new: int,
        *,
        tags: Mapping[str, str] | None = None,
        deleted: bool = False,
    ) -> str:
        """An experiment with ``old`` traces at or before :data:`CUTOFF` and ``new`` after it."""
        serial = 2 * len(self.ids)
        traces = sim_traces(old, start_ms=BASE_MS, tag=serial) + sim_traces(
            new, start_ms=CUTOFF + 1, tag=serial + 1
        )
        return self.add(name, traces, tags=tags, deleted=deleted)

    def aged(self, name: str, *, tags: Mapping[str, str] | None = None) -> str:
        """An experiment with one trace at each of :data:`AGES_HOURS` before ``NOW_MS``."""
        serial = len(self.ids)
        traces = [
            SimTrace(NOW_MS - hours * HOUR_MS, f"tr-{serial:04d}-{hours:04d}h")
            for hours in AGES_HOURS
        ]
        return self.add(name, traces, tags=tags)

    def left(self) -> dict[str, int]:
        """How many traces each seeded experiment still holds."""
        return {name: len(self.server.remaining(eid)) for name, eid in self.ids.items()}

    def untouched(self, names: Iterable[str]) -> None:
        """These experiments got no delete call and hold everything they were seeded with."""
        for name in names:
            assert self.server.deletes_for(self.ids[name]) == [], name
            assert len(self.server.remaining(self.ids[name])) == self.seeded[name], name


def left_after(cutoff: int) -> int:
    """How many of an :meth:`Seeded.aged` experiment's traces are newer than ``cutoff``."""
    stamps = sorted(NOW_MS - hours * HOUR_MS for hours in AGES_HOURS)
    return len(stamps) - bisect.bisect_right(stamps, cutoff)


def by_label(jobs: Iterable[Any]) -> dict[str, tuple[str, int]]:
    """``label -> (experiment_id, deleted)`` of a run's job reports."""
    return {job.label: (job.experiment_id, job.deleted) for job in jobs}


def most_starts_in_a_second(starts: Iterable[float]) -> int:
    """The most call starts in any one-second window ``[t, t + 1)`` beginning at a start
    (less a nanosecond: twenty starts 0.05 s apart add up to a hair under one second in floats).
    """
    ordered = sorted(starts)
    return max(
        bisect.bisect_left(ordered, start + 1.0 - 1e-9) - index
        for index, start in enumerate(ordered)
    )


# -- 1. every experiment ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_all_experiments_deletes_in_every_active_one_and_reports_the_rest() -> None:
    """all_experiments deletes the old traces of each active experiment; the deleted one and the
    ones excluded by name and by ID are untouched and reported."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("alpha", 3, 2)
    world.old_and_new("beta", 5, 1)
    world.old_and_new("gamma", 0, 2)
    world.old_and_new("gone", 4, 1, deleted=True)
    world.old_and_new("keep-by-name", 3, 2)
    keep_id = world.old_and_new("keep-by-id", 3, 2)
    selector = ExperimentSelector(
        all_experiments=True, exclude_names=("keep-by-name",), exclude_ids=(keep_id,)
    )
    async with make_engine(server) as engine:
        report = await engine.run([DeleteSpec(experiments=selector, max_timestamp_millis=CUTOFF)])
    ids = world.ids
    assert by_label(report.jobs) == {
        "alpha": (ids["alpha"], 3),
        "beta": (ids["beta"], 5),
        "gamma": (ids["gamma"], 0),
    }
    assert all(job.state is JobState.COMPLETED for job in report.jobs)
    assert all(job.cutoff_millis == CUTOFF for job in report.jobs)
    assert report.skipped == (
        SkippedExperiment("gone", ids["gone"], "gone", "the experiment is deleted"),
        SkippedExperiment("keep-by-name", ids["keep-by-name"], "keep-by-name", "excluded"),
        SkippedExperiment("keep-by-id", keep_id, "keep-by-id", "excluded"),
    )
    assert world.left() == {
        "alpha": 2,
        "beta": 1,
        "gamma": 2,
        "gone": 5,
        "keep-by-name": 5,
        "keep-by-id": 5,
    }
    world.untouched(["gone", "keep-by-name", "keep-by-id"])
    assert server.experiment_searches == 2  # one page of each view


@pytest.mark.asyncio
async def test_a_plan_of_a_selector_carries_its_skipped_into_the_run() -> None:
    """plan() counts each selected experiment and reports the left-out ones; run(plan) deletes
    exactly those counts, reports the same skipped, and searches no experiment again."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("alpha", 4, 1)
    world.old_and_new("beta", 2, 3)
    world.old_and_new("gone", 6, 0, deleted=True)
    world.old_and_new("held", 1, 1)
    selector = ExperimentSelector(all_experiments=True, exclude_names=("held",))
    spec = DeleteSpec(experiments=selector, max_timestamp_millis=CUTOFF, label="nightly")
    async with make_engine(server) as engine:
        plan = await engine.plan([spec])
        searches_after_plan = server.experiment_searches
        report = await engine.run(plan)
    ids = world.ids
    assert {job.label: job.would_delete for job in plan.jobs} == {
        "nightly/alpha": 4,
        "nightly/beta": 2,
    }
    assert plan.skipped == (
        SkippedExperiment("nightly/gone", ids["gone"], "gone", "the experiment is deleted"),
        SkippedExperiment("nightly/held", ids["held"], "held", "excluded"),
    )
    assert report.skipped == plan.skipped
    assert by_label(report.jobs) == {
        "nightly/alpha": (ids["alpha"], 4),
        "nightly/beta": (ids["beta"], 2),
    }
    assert (searches_after_plan, server.experiment_searches) == (2, 2)
    assert world.left() == {"alpha": 1, "beta": 3, "gone": 6, "held": 2}
    world.untouched(["gone", "held"])


# -- 2. by name pattern and by tags -------------------------------------------------------------


NAMED_TAGS: dict[str, dict[str, str]] = {
    "chat-a": {"team": "search", "env": "prod"},
    "chat-bb": {"team": "search", "env": "dev"},
    "chat-": {"team": "ads"},
    "chatXa": {"team": "ads", "env": "prod"},
    "Chat-c": {"team": "search", "env": "prod"},
    "xchat-d": {"team": "search"},
    "mail-a": {"team": "search", "env": "prod"},
    "plain": {},
}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        (ExperimentSelector(name_like="chat-%"), {"chat-a", "chat-bb", "chat-"}),
        (ExperimentSelector(name_like="chat-_"), {"chat-a"}),
        (ExperimentSelector(name_like="chat__"), {"chat-a", "chatXa"}),
        (ExperimentSelector(name_like="%-a"), {"chat-a", "mail-a"}),
        (
            ExperimentSelector(name_like="%chat%"),
            {"chat-a", "chat-bb", "chat-", "chatXa", "xchat-d"},
        ),
        (
            ExperimentSelector(tags={"team": "search"}),
            {"chat-a", "chat-bb", "Chat-c", "xchat-d", "mail-a"},
        ),
        (
            ExperimentSelector(tags={"team": "search", "env": "prod"}),
            {"chat-a", "Chat-c", "mail-a"},
        ),
        (ExperimentSelector(tags={"env": "prod", "team": "ads"}), {"chatXa"}),
        (ExperimentSelector(name_like="chat-%", tags={"team": "search"}), {"chat-a", "chat-bb"}),
        (
            ExperimentSelector(name_like="%-_", tags={"team": "search", "env": "prod"}),
            {"chat-a", "Chat-c", "mail-a"},
        ),
        (ExperimentSelector(name_like="chat-%", tags={"team": "nobody"}), set()),
    ],
    ids=[
        "like-percent",
        "like-underscore",
        "like-two-underscores",
        "like-suffix",
        "like-infix",
        "one-tag",
        "two-tags",
        "two-tags-other",
        "like-and-tag",
        "like-and-two-tags",
        "none",
    ],
)
async def test_a_selector_deletes_in_exactly_the_experiments_it_matches(
    selector: ExperimentSelector, selected: set[str]
) -> None:
    """A name pattern (% any run, _ one character, case-sensitive) and tags (all of them) pick
    exactly these experiments; every other one is untouched and not reported."""
    server = SimulatedServer()
    world = Seeded(server)
    for name, tags in NAMED_TAGS.items():
        world.old_and_new(name, 2, 1, tags=tags)
    async with make_engine(server) as engine:
        report = await engine.run([DeleteSpec(experiments=selector, max_timestamp_millis=CUTOFF)])
    assert by_label(report.jobs) == {name: (world.ids[name], 2) for name in selected}
    assert report.skipped == ()
    assert world.left() == {name: 1 if name in selected else 3 for name in NAMED_TAGS}
    world.untouched(set(NAMED_TAGS) - selected)


# -- 3. retention tags --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_retention_tag_gives_its_experiment_its_own_cutoff() -> None:
    """Tags 1d, 12h and 2w pin cutoffs one day, twelve hours and two weeks before now; the
    untagged experiment keeps the job's own 7d; the run deletes exactly what the plan counted."""
    server = SimulatedServer()
    world = Seeded(server)
    world.aged("one-day", tags={"retention": "1d"})
    world.aged("half-day", tags={"retention": "12h"})
    world.aged("two-weeks", tags={"retention": "2w"})
    world.aged("untagged", tags={"team": "search"})
    cutoffs = {
        "one-day": NOW_MS - DAY_MS,
        "half-day": NOW_MS - 12 * HOUR_MS,
        "two-weeks": NOW_MS - 14 * DAY_MS,
        "untagged": NOW_MS - 7 * DAY_MS,
    }
    spec = DeleteSpec(experiments=ALL, older_than=timedelta(days=7), retention_tag="retention")
    async with make_engine(server) as engine:
        plan = await engine.plan([spec])
        report = await engine.run(plan)
    assert {job.label: job.cutoff_millis for job in plan.jobs} == cutoffs
    assert {job.label: job.would_delete for job in plan.jobs} == {
        "one-day": 4,
        "half-day": 5,
        "two-weeks": 1,
        "untagged": 2,
    }
    assert {job.label: (job.cutoff_millis, job.deleted) for job in report.jobs} == {
        "one-day": (cutoffs["one-day"], 4),
        "half-day": (cutoffs["half-day"], 5),
        "two-weeks": (cutoffs["two-weeks"], 1),
        "untagged": (cutoffs["untagged"], 2),
    }
    assert plan.skipped == report.skipped == ()
    assert world.left() == {"one-day": 3, "half-day": 2, "two-weeks": 6, "untagged": 5}
    assert world.left() == {name: left_after(cutoff) for name, cutoff in cutoffs.items()}


UNREADABLE = {"soon": "soon", "zero": "0d", "negative": "-1d", "empty": "", "months": "6M"}


@pytest.mark.asyncio
async def test_an_unreadable_retention_tag_skips_its_experiment_and_the_others_go_on() -> None:
    """Tags soon, 0d, -1d, '' and 6M each skip their experiment with the reason; the 1d-tagged
    and the untagged experiments are deleted in as usual."""
    server = SimulatedServer()
    world = Seeded(server)
    for name, value in UNREADABLE.items():
        world.aged(name, tags={"retention": value})
    world.aged("one-day", tags={"retention": "1d"})
    world.aged("untagged")
    spec = DeleteSpec(experiments=ALL, older_than=timedelta(days=7), retention_tag="retention")
    async with make_engine(server) as engine:
        report = await engine.run([spec])
    ids = world.ids
    assert by_label(report.jobs) == {
        "one-day": (ids["one-day"], 4),
        "untagged": (ids["untagged"], 2),
    }
    assert [(s.label, s.experiment_id, s.name) for s in report.skipped] == [
        (name, ids[name], name) for name in UNREADABLE
    ]
    reasons = {s.name: s.reason for s in report.skipped}
    for name, value in UNREADABLE.items():
        assert reasons[name].startswith(f"its tag retention={value!r} is not a retention: "), name
        assert reasons[name].endswith("; nothing is deleted in it"), name
    assert "cannot read 'soon' as a duration" in reasons["soon"]
    assert "a retention must be longer than zero" in reasons["zero"]
    assert "cannot read '-1d' as a duration" in reasons["negative"]
    assert "cannot read '' as a duration" in reasons["empty"]
    assert "months and years have no fixed length" in reasons["months"]
    assert world.left() == {**dict.fromkeys(UNREADABLE, 7), "one-day": 3, "untagged": 5}
    world.untouched(UNREADABLE)


@pytest.mark.asyncio
async def test_a_retention_under_min_retention_skips_its_experiment_the_others_go_on() -> None:
    """Under min_retention=1d a 12h tag is skipped with the guardrail's reason; 1d (at the limit),
    2w and the untagged experiment (the job's 7d) are deleted in."""
    server = SimulatedServer()
    world = Seeded(server)
    world.aged("half-day", tags={"retention": "12h"})
    world.aged("one-day", tags={"retention": "1d"})
    world.aged("two-weeks", tags={"retention": "2w"})
    world.aged("untagged")
    spec = DeleteSpec(
        experiments=ALL,
        older_than=timedelta(days=7),
        retention_tag="retention",
        min_retention=timedelta(days=1),
    )
    async with make_engine(server) as engine:
        report = await engine.run([spec])
    ids = world.ids
    assert by_label(report.jobs) == {
        "one-day": (ids["one-day"], 4),
        "two-weeks": (ids["two-weeks"], 1),
        "untagged": (ids["untagged"], 2),
    }
    assert report.skipped == (
        SkippedExperiment(
            "half-day",
            ids["half-day"],
            "half-day",
            f"its tag retention='12h': min_retention: the cutoff "
            f"{format_instant(NOW_MS - 12 * HOUR_MS)} keeps less than 1d of traces (it must be "
            f"at or before {format_instant(NOW_MS - 24 * HOUR_MS)}, 1d before now); pass "
            "force=True to override; nothing is deleted in it",
        ),
    )
    assert world.left() == {"half-day": 7, "one-day": 3, "two-weeks": 6, "untagged": 5}
    world.untouched(["half-day"])


@pytest.mark.asyncio
async def test_the_jobs_own_cutoff_under_min_retention_refuses_the_whole_run() -> None:
    """A job whose own older_than (12h) breaks min_retention=1d is refused, by run() and by
    plan(), before any count or delete, although a tagged experiment's 2w would be allowed."""
    server = SimulatedServer()
    world = Seeded(server)
    world.aged("two-weeks", tags={"retention": "2w"})
    world.aged("untagged")
    spec = DeleteSpec(
        experiments=ALL,
        older_than=timedelta(hours=12),
        retention_tag="retention",
        min_retention=timedelta(days=1),
    )
    async with make_engine(server) as engine:
        with pytest.raises(GuardrailError, match="min_retention: the cutoff"):
            await engine.run([spec])
        with pytest.raises(GuardrailError, match="min_retention: the cutoff"):
            await engine.plan([spec])
    assert server.calls == []  # refused before the experiments are even searched
    assert server.deletes == []
    assert world.left() == {"two-weeks": 7, "untagged": 7}


@pytest.mark.asyncio
async def test_the_jobs_own_cutoff_is_refused_when_every_experiment_is_tagged() -> None:
    """The job's own older_than (12h) breaking min_retention=1d refuses the run even when every
    selected experiment has a (valid) retention tag: the refusal must not depend on the data."""
    server = SimulatedServer()
    world = Seeded(server)
    world.aged("two-weeks", tags={"retention": "2w"})
    world.aged("one-day", tags={"retention": "1d"})
    spec = DeleteSpec(
        experiments=ALL,
        older_than=timedelta(hours=12),
        retention_tag="retention",
        min_retention=timedelta(days=1),
    )
    async with make_engine(server) as engine:
        with pytest.raises(GuardrailError, match="min_retention: the cutoff"):
            await engine.run([spec])
    assert server.deletes == []
    assert world.left() == {"two-weeks": 7, "one-day": 7}


# -- 4. experiments created after the selection -------------------------------------------------


@pytest.mark.asyncio
async def test_an_experiment_created_during_the_run_is_not_touched() -> None:
    """An experiment matching the selector, created when the first job starts, is not deleted in:
    the selection was made once, before."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("chat-a", 3, 1)
    world.old_and_new("chat-b", 2, 2)
    late: list[str] = []

    def create_late(event: Event) -> None:
        if isinstance(event, JobStarted) and not late:
            late.append(world.old_and_new("chat-late", 4, 1))

    spec = DeleteSpec(
        experiments=ExperimentSelector(name_like="chat-%"), max_timestamp_millis=CUTOFF
    )
    async with make_engine(server, hooks=[create_late]) as engine:
        report = await engine.run([spec])
    ids = world.ids
    assert late == [ids["chat-late"]]
    assert by_label(report.jobs) == {"chat-a": (ids["chat-a"], 3), "chat-b": (ids["chat-b"], 2)}
    assert report.skipped == ()
    assert server.experiment_searches == 2
    assert world.left() == {"chat-a": 1, "chat-b": 2, "chat-late": 5}
    world.untouched(["chat-late"])


@pytest.mark.asyncio
async def test_an_experiment_created_between_select_and_run_is_not_touched() -> None:
    """select() fixes the experiments; one created before plan()/run() of that selection is not
    deleted in, and no experiment is searched again."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("chat-a", 3, 1)
    world.old_and_new("mail", 2, 1)
    spec = DeleteSpec(
        experiments=ExperimentSelector(name_like="chat-%"), max_timestamp_millis=CUTOFF
    )
    async with make_engine(server) as engine:
        selection = await engine.select([spec])
        world.old_and_new("chat-late", 4, 1)
        resolved: list[ResolvedSpec] = list(selection.resolved)
        plan = await engine.plan(resolved)
        report = await engine.run(plan)
    ids = world.ids
    assert [(item.label, item.experiment_id) for item in resolved] == [("chat-a", ids["chat-a"])]
    assert selection.skipped == ()
    assert [(job.label, job.would_delete) for job in plan.jobs] == [("chat-a", 3)]
    assert by_label(report.jobs) == {"chat-a": (ids["chat-a"], 3)}
    assert server.experiment_searches == 2
    assert world.left() == {"chat-a": 1, "mail": 3, "chat-late": 5}
    world.untouched(["mail", "chat-late"])


# -- 5. an answer that widens the selection -----------------------------------------------------


@pytest.mark.asyncio
async def test_a_search_answer_wider_than_the_filter_is_not_taken() -> None:
    """When experiments/search also answers experiments outside the filter (both views), the
    engine takes only those the selector matches and reports only the matching deleted one."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("chat-a", 3, 1, tags={"team": "search"})
    world.old_and_new("chat-b", 3, 1, tags={"team": "ads"})  # the tag does not match
    world.old_and_new("billing", 3, 1, tags={"team": "search"})  # the name does not match
    world.old_and_new("archive", 3, 1, tags={"team": "search"}, deleted=True)
    world.old_and_new("chat-old", 3, 1, tags={"team": "search"}, deleted=True)
    extra = [world.ids[name] for name in ("chat-b", "billing", "archive")]
    answered: list[tuple[str | None, str, list[str]]] = []

    def widen(filter_string: str | None, view: str, page: list[str]) -> list[str]:
        answered.append((filter_string, view, page))
        return page + extra

    server.experiment_search_rule = widen
    selector = ExperimentSelector(name_like="chat-%", tags={"team": "search"})
    async with make_engine(server) as engine:
        report = await engine.run([DeleteSpec(experiments=selector, max_timestamp_millis=CUTOFF)])
    ids = world.ids
    wanted = "name LIKE 'chat-%' AND tags.`team` = 'search'"
    assert answered == [
        (wanted, "ACTIVE_ONLY", [ids["chat-a"]]),
        (wanted, "DELETED_ONLY", [ids["chat-old"]]),
    ]
    assert by_label(report.jobs) == {"chat-a": (ids["chat-a"], 3)}
    assert report.skipped == (
        SkippedExperiment("chat-old", ids["chat-old"], "chat-old", "the experiment is deleted"),
    )
    assert world.left() == {"chat-a": 1, "chat-b": 4, "billing": 4, "archive": 4, "chat-old": 4}
    world.untouched(["chat-b", "billing", "archive", "chat-old"])


@pytest.mark.asyncio
async def test_an_experiment_answered_twice_is_one_job() -> None:
    """An answer that repeats an experiment (on one page and on the next) makes one job for it."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("chat-a", 3, 1)
    world.old_and_new("chat-b", 2, 1)
    server.experiment_search_rule = lambda _filter, _view, page: page + page
    async with make_engine(server) as engine:
        report = await engine.run([DeleteSpec(experiments=ALL, max_timestamp_millis=CUTOFF)])
    ids = world.ids
    assert by_label(report.jobs) == {"chat-a": (ids["chat-a"], 3), "chat-b": (ids["chat-b"], 2)}
    assert len(report.jobs) == 2
    assert world.left() == {"chat-a": 1, "chat-b": 1}


# -- 6. paging ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_selection_of_2500_experiments_pages_the_search() -> None:
    """2,500 active experiments (three pages of 1,000) and three deleted ones (one page) are
    selected with four searches; the plan and its run cover all 2,500 and search no more."""
    server = SimulatedServer()
    active = [
        server.add_experiment(
            f"exp-{index:04d}",
            [SimTrace(BASE_MS, f"tr-{index:04d}-old"), SimTrace(CUTOFF + 1, f"tr-{index:04d}-new")],
        )
        for index in range(2500)
    ]
    deleted = [
        server.add_experiment(f"gone-{index}", sim_traces(2, tag=index), deleted=True)
        for index in range(3)
    ]
    async with make_engine(server) as engine:
        plan = await engine.plan(
            [DeleteSpec(experiments=ALL, max_timestamp_millis=CUTOFF)], counts_only=True
        )
        searches_for_plan = server.experiment_searches
        report = await engine.run(plan)
    assert searches_for_plan == 4
    assert server.experiment_searches == 4
    assert [job.experiment_id for job in plan.jobs] == active
    assert plan.would_delete == 2500
    assert [(s.experiment_id, s.reason) for s in plan.skipped] == [
        (experiment_id, "the experiment is deleted") for experiment_id in deleted
    ]
    assert len(report.jobs) == 2500
    assert all(job.state is JobState.COMPLETED and job.deleted == 1 for job in report.jobs)
    assert report.deleted == 2500
    assert all(
        server.remaining(experiment_id) == [SimTrace(CUTOFF + 1, f"tr-{index:04d}-new")]
        for index, experiment_id in enumerate(active)
    )
    assert all(len(server.remaining(experiment_id)) == 2 for experiment_id in deleted)
    assert all(server.deletes_for(experiment_id) == [] for experiment_id in deleted)


# -- 7. named deleted experiments and submit() --------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("field", ["experiment_id", "experiment_name"])
async def test_a_named_deleted_experiment_refuses_the_run(field: str) -> None:
    """A spec naming a deleted experiment (by ID or by name) refuses the whole run, naming the
    field; nothing is sent after the lookups, and the good experiment is untouched."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("good", 3, 1)
    gone_id = world.old_and_new("gone", 3, 1, deleted=True)
    named = {"experiment_id": gone_id} if field == "experiment_id" else {"experiment_name": "gone"}
    specs = [
        DeleteSpec(experiment_id=world.ids["good"], max_timestamp_millis=CUTOFF),
        DeleteSpec(max_timestamp_millis=CUTOFF, **named),
    ]
    async with make_engine(server) as engine:
        with pytest.raises(UsageError) as refused:
            await engine.run(specs)
        assert [call.kind for call in server.calls] == ["get", "get"]
        with pytest.raises(UsageError) as refused_alone:
            await engine.submit(specs[1])
        assert [call.kind for call in server.calls] == ["get", "get", "get"]
    for error in (refused.value, refused_alone.value):
        assert str(error).startswith(
            f"{field}: experiment 'gone' (ID {gone_id}) is deleted (lifecycle_stage deleted); "
        )
        assert str(error).endswith("nothing was deleted")
    assert server.deletes == []
    assert world.left() == {"good": 4, "gone": 4}


@pytest.mark.asyncio
async def test_submit_refuses_a_selector() -> None:
    """submit() of a spec with a selector is refused before any request: it is many jobs."""
    server = SimulatedServer()
    world = Seeded(server)
    world.old_and_new("alpha", 3, 1)
    async with make_engine(server) as engine:
        with pytest.raises(UsageError, match="a spec with an experiment selector is many jobs"):
            await engine.submit(DeleteSpec(experiments=ALL, max_timestamp_millis=CUTOFF))
        assert engine.jobs == ()
    assert server.calls == []
    assert world.left() == {"alpha": 4}


# -- 9. fairness and the shared rate --------------------------------------------------------------


@pytest.mark.asyncio
async def test_small_experiments_finish_before_the_huge_ones_are_half_done() -> None:
    """In one run(selector) over 30 experiments of 50 traces and 2 of 20,000, every small job
    finishes before either huge one has deleted half, and no second of the run holds more calls
    than rate_limit deletes (the two searches are reads, paced at their own rate)."""
    rate = 20.0
    server = SimulatedServer(SteppedClock())
    world = Seeded(server)
    world.old_and_new("huge-1", 20_000, 2)
    for index in range(30):
        world.old_and_new(f"small-{index:02d}", 50, 2)
    world.old_and_new("huge-2", 20_000, 2)
    finished: dict[str, float] = {}
    half_done: dict[str, float] = {}

    def watch(event: Event) -> None:
        if isinstance(event, JobFinished):
            finished[event.report.label] = event.at
        elif isinstance(event, BatchDeleted) and event.total_deleted >= 10_000:
            half_done.setdefault(event.job, event.at)

    opened = server.clock()
    async with make_engine(server, hooks=[watch], rate_limit=rate, **fixed_batches(100)) as engine:
        report = await engine.run([DeleteSpec(experiments=ALL, max_timestamp_millis=CUTOFF)])
    small = [name for name in world.ids if name.startswith("small-")]
    assert by_label(report.jobs) == {
        name: (world.ids[name], 20_000 if name.startswith("huge") else 50) for name in world.ids
    }
    assert all(job.state is JobState.COMPLETED for job in report.jobs)
    assert set(half_done) == {"huge-1", "huge-2"}
    assert set(finished) == set(world.ids)
    assert max(finished[name] for name in small) < min(half_done.values())
    assert world.left() == dict.fromkeys(world.ids, 2)
    starts = [call.started_at for call in server.calls]
    # The clock is faithful: every delete reached the server when the engine sent it.
    sent = sorted(opened + batch.started_at for job in report.jobs for batch in job.batches)
    assert sent == pytest.approx(sorted(call.started_at for call in server.deletes), abs=1e-9)
    assert [call.kind for call in server.calls[:2]] == ["other", "other"]  # the two searches
    assert len(server.deletes) == len(starts) - 2 >= 30 + 2 * 200
    deletes = [call.started_at for call in server.deletes]
    assert most_starts_in_a_second(deletes) <= rate
    assert max(deletes) - min(deletes) >= (len(deletes) - 1) / rate - 1e-6  # the rate, no faster


@pytest.mark.asyncio
async def test_a_plan_of_a_selection_keeps_what_it_left_out() -> None:
    """plan(select(...)) reports the experiments the selection skipped, as plan(specs) does."""
    server = SimulatedServer()
    world = Seeded(server)
    world.aged("kept")
    world.old_and_new("gone", 3, 1, deleted=True)
    spec = DeleteSpec(experiments=ALL, older_than=timedelta(days=1))
    async with make_engine(server) as engine:
        selection = await engine.select([spec])
        plan = await engine.plan(selection)
        direct = await engine.plan([spec])
    assert [job.label for job in plan.jobs] == [job.label for job in direct.jobs]
    assert plan.skipped == direct.skipped == selection.skipped
    assert [item.name for item in plan.skipped] == ["gone"]


@pytest.mark.asyncio
async def test_a_job_named_by_name_keeps_the_name_as_its_label() -> None:
    """A spec naming its experiment (by name, with a retention tag or not) is labelled by that
    name, not by the ID it resolved to."""
    server = SimulatedServer()
    world = Seeded(server)
    world.aged("plain")
    world.aged("tagged", tags={"retention": "1d"})
    specs = [
        DeleteSpec(experiment_name="plain", older_than=timedelta(days=1)),
        DeleteSpec(
            experiment_name="tagged", older_than=timedelta(days=7), retention_tag="retention"
        ),
    ]
    async with make_engine(server) as engine:
        plan = await engine.plan(specs)
    assert [(job.label, job.experiment_id) for job in plan.jobs] == [
        ("plain", world.ids["plain"]),
        ("tagged", world.ids["tagged"]),
    ]


@pytest.mark.asyncio
async def test_a_plan_counts_its_jobs_side_by_side() -> None:
    """plan() of 12 experiments has max_concurrency (4) counts in flight at once, while the
    learnt delete limit is 1, and reports the jobs in their order with exact counts."""
    server = SimulatedServer()
    server.in_flight_turns = 5  # every call stays in flight a while: overlaps can happen
    world = Seeded(server)
    for index in range(12):
        world.old_and_new(f"exp-{index:02d}", 3 + index, 2)
    async with make_engine(server) as engine:
        plan = await engine.plan([DeleteSpec(experiments=ALL, max_timestamp_millis=CUTOFF)])
    assert [(job.label, job.would_delete) for job in plan.jobs] == [
        (f"exp-{index:02d}", 3 + index) for index in range(12)
    ]
    counts = [call for call in server.calls if call.kind != "other"]
    assert max(call.concurrent for call in counts) == 3  # four in flight, never five
    assert server.deletes == []
    assert world.left() == {name: world.seeded[name] for name in world.ids}


@pytest.mark.asyncio
async def test_a_plan_raises_the_first_failure_in_the_jobs_order() -> None:
    """Two jobs over their expect_at_most, counted side by side: the error is the first
    job's, as counting in turn would raise."""
    server = SimulatedServer()
    server.in_flight_turns = 5
    world = Seeded(server)
    for index in range(8):
        world.old_and_new(f"exp-{index}", 10, 0)
    specs = [
        DeleteSpec(
            experiment_name=f"exp-{index}",
            max_timestamp_millis=CUTOFF,
            expect_at_most=1 if index in (3, 1) else None,
        )
        for index in range(8)
    ]
    async with make_engine(server) as engine:
        with pytest.raises(GuardrailError, match="exp-1"):
            await engine.plan(specs)
    assert server.deletes == []
