"""Experiment selectors and retention tags against a real ``mlflow server`` (SQLite).

Each test builds its own *world* of ~50 experiments on the server, all named
``<prefix>-...`` with a fresh random prefix and tagged ``world=<prefix>``: name patterns
(``chat-``, ``search-``, ``batch-``, a ``Chat-`` in another case, a ``chatX00`` for ``_``),
tags ``team`` and ``env``, a few deleted (``experiments/delete``), a few with a retention tag
set through ``experiments/set-experiment-tag`` (valid ``2d`` and ``45d``, unreadable ``soon``
and ``7D``, and ``1h``, shorter than the ``min_retention`` of ``1d``), and two decoys outside
the world whose names contain the prefix. Every experiment holds 2 traces of each age,
seeded by SQL: 40 days old, 10 days old and 1 hour old; the jobs keep 30 days, so a job
alone deletes the 40-day ones and a ``2d`` retention the 10-day ones too.

The session server is shared with the other tests, so every selector here is narrowed to the
world (``name_like=f"{prefix}-..."`` or the ``world`` tag), never ``all_experiments`` alone.
The one test of ``all_experiments`` (with exclusions) starts a server of its own, once for
this module (``own_server``), where it may touch every experiment, the Default one included.

After every run each test reads back every experiment of the world (selected or not,
deleted ones included) through the search API and compares trace for trace, and checks that
the server's other experiments kept exactly the traces they had.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    ExperimentSelector,
    PlanReport,
    RunReport,
    SkippedExperiment,
    UsageError,
)
from tests.support.mlflow_server import MlflowServer, running_mlflow_server
from tests.support.seed import create_experiment, make_traces, remaining_ids, seed_traces_sql

pytestmark = pytest.mark.integration  # own_server is a real server too (not `mlflow_server`)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
AGES_MS = {"ancient": 40 * DAY_MS, "mid": 10 * DAY_MS, "fresh": HOUR_MS}
TRACES_PER_AGE = 2
KEEP = timedelta(days=30)  # the jobs' own older_than: only "ancient" is older
MIN_RETENTION = timedelta(days=1)
RETENTION_TAG = "retention"
CREATE_CONCURRENCY = 4  # the server's SQLite takes one writer at a time anyway

# What each retention tag value does with min_retention 1d: the ages it deletes, or why the
# experiment is skipped.
RETENTIONS: dict[str, tuple[str, ...] | str] = {
    "2d": ("ancient", "mid"),
    "45d": (),
    "soon": "unreadable",
    "7D": "unreadable",
    "1h": "short",
}


@dataclass(frozen=True)
class Blueprint:
    """One experiment of the world: its name after the prefix, tags, retention, lifecycle."""

    key: str
    team: str | None = None
    env: str | None = None
    retention: str | None = None
    deleted: bool = False
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    in_world: bool = True  # False: a decoy, named with the prefix elsewhere, no world tag


def blueprints() -> list[Blueprint]:
    """The world's ~50 experiments."""
    plans: list[Blueprint] = []
    for kind, team in (("chat", "chat"), ("search", "search"), ("batch", "infra")):
        plans += [
            Blueprint(f"{kind}-{i:02d}", team, "prod" if i % 2 == 0 else "staging")
            for i in range(10)
        ]
    plans += [
        Blueprint("Chat-00", "chat", "prod"),  # another case: LIKE is case-sensitive
        Blueprint("Chat-01", "chat", "prod"),
        Blueprint("chatX00", "chat", "prod"),  # `chat_0%` matches it: `_` is one character
        *(Blueprint(f"chat-ret-{value}", "chat", "prod", retention=value) for value in RETENTIONS),
        Blueprint("search-ret-2d", "search", "prod", retention="2d"),
        Blueprint("chat-del-00", "chat", "prod", deleted=True),
        Blueprint("chat-del-01", "chat", "prod", retention="2d", deleted=True),
        Blueprint("search-del-00", "search", "prod", deleted=True),
        Blueprint("batch-del-00", "infra", "prod", deleted=True),
        # Tag keys and values that need the filter's quoting.
        Blueprint("odd-00", "odd", extra_tags={"cost.center": "a%b", "owner-name": 'Zoë "Z" O'}),
        Blueprint("odd-01", "odd", extra_tags={"cost.center": "aXb"}),
        Blueprint("odd-02", "odd", extra_tags={"cost.center": "A%B"}),
        # Decoys: the prefix inside the name, not at its start, and no world tag.
        Blueprint("decoy-chat-00", "chat", "prod", in_world=False),
        Blueprint("decoy-search-00", "search", "prod", in_world=False),
    ]
    return plans


@dataclass(frozen=True)
class WorldExperiment:
    """One experiment the world created, and the traces seeded into it by age."""

    blueprint: Blueprint
    name: str
    experiment_id: str
    tags: Mapping[str, str]
    traces: Mapping[str, frozenset[str]]

    @property
    def all_ids(self) -> frozenset[str]:
        return frozenset().union(*self.traces.values())


@dataclass
class World:
    """The experiments of one test, by key (the name after the prefix)."""

    server: MlflowServer
    prefix: str
    experiments: dict[str, WorldExperiment]

    def __getitem__(self, key: str) -> WorldExperiment:
        return self.experiments[key]

    def keys(self, *, active: bool | None = None, world_only: bool = True) -> list[str]:
        """Keys of the world's experiments (active or deleted ones only, when asked)."""
        return [
            key
            for key, exp in self.experiments.items()
            if (active is None or exp.blueprint.deleted is not active)
            and (exp.blueprint.in_world or not world_only)
        ]

    def key_of(self, name: str) -> str:
        return next(key for key, exp in self.experiments.items() if exp.name == name)


def name_for(prefix: str, plan: Blueprint) -> str:
    return f"{prefix}-{plan.key}" if plan.in_world else f"{plan.key}-{prefix}"


async def build_world(server: MlflowServer, prefix: str | None = None) -> World:
    """Create the world's experiments through the REST API, seed their traces by SQL, then set
    the retention tags and delete the deleted ones (as a user would, after the fact)."""
    prefix = prefix or f"sel-{uuid.uuid4().hex[:10]}"
    plans = blueprints()
    created: dict[str, tuple[str, dict[str, str]]] = {}
    limiter = anyio.Semaphore(CREATE_CONCURRENCY)
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:

        async def create(plan: Blueprint) -> None:
            tags = {"team": plan.team, "env": plan.env, **plan.extra_tags}
            if plan.in_world:
                tags["world"] = prefix
            present = {key: value for key, value in tags.items() if value is not None}
            body = {
                "name": name_for(prefix, plan),
                "tags": [{"key": key, "value": value} for key, value in present.items()],
            }
            async with limiter:
                response = await client.post("/api/2.0/mlflow/experiments/create", json=body)
            response.raise_for_status()
            created[plan.key] = (response.json()["experiment_id"], present)

        async with anyio.create_task_group() as group:
            for plan in plans:
                group.start_soon(create, plan)
        now = now_ms()
        experiments: dict[str, WorldExperiment] = {}
        for plan in plans:
            experiment_id, tags = created[plan.key]
            traces = {
                age: make_traces(TRACES_PER_AGE, start_ms=now - age_ms)
                for age, age_ms in AGES_MS.items()
            }
            seed_traces_sql(
                database(server), experiment_id, [t for ts in traces.values() for t in ts]
            )
            if plan.retention is not None:
                await post(
                    client,
                    "/api/2.0/mlflow/experiments/set-experiment-tag",
                    {"experiment_id": experiment_id, "key": RETENTION_TAG, "value": plan.retention},
                )
                tags = {**tags, RETENTION_TAG: plan.retention}
            if plan.deleted:
                await post(
                    client, "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id}
                )
            experiments[plan.key] = WorldExperiment(
                plan,
                name_for(prefix, plan),
                experiment_id,
                tags,
                {age: frozenset(t.trace_id for t in ts) for age, ts in traces.items()},
            )
    return World(server, prefix, experiments)


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    response = await client.post(path, json=body)
    response.raise_for_status()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def database(server: MlflowServer) -> Path:
    assert server.db_path is not None, "the harness runs the server on SQLite"
    return server.db_path


def traces_per_experiment(server: MlflowServer) -> dict[str, int]:
    """Every experiment's trace count in the server's database right now."""
    with contextlib.closing(sqlite3.connect(database(server), timeout=60)) as connection:
        rows = connection.execute(
            "SELECT experiment_id, COUNT(*) FROM trace_info GROUP BY experiment_id"
        ).fetchall()
    return {str(experiment_id): int(count) for experiment_id, count in rows}


def make_engine(url: str) -> Engine:
    """An engine fast enough for tests (the rate limiter is not under test here)."""
    return Engine(EngineConfig(client=ClientConfig(tracking_uri=url), rate_limit=1000))


def spec(selector: ExperimentSelector, **fields: Any) -> DeleteSpec:
    """A job on the selector that keeps 30 days (unless ``fields`` say otherwise)."""
    values: dict[str, Any] = {"older_than": KEEP, "label": "sel", **fields}
    return DeleteSpec(experiments=selector, **values)


def reason_kind(reason: str) -> str:
    """What a skipped experiment's reason says, in one word."""
    if reason == "the experiment is deleted":
        return "deleted"
    if reason == "excluded":
        return "excluded"
    if "is not a retention" in reason:
        return "unreadable"
    if "keeps less than" in reason and "min_retention" in reason:
        return "short"
    return f"unknown: {reason}"


def skipped_by_key(world: World, skipped: Sequence[SkippedExperiment]) -> dict[str, str]:
    """The report's skipped experiments as ``key -> kind`` (labels and IDs checked)."""
    found: dict[str, str] = {}
    for item in skipped:
        key = world.key_of(item.name)
        assert item.experiment_id == world[key].experiment_id, item
        assert item.label == f"sel/{item.name}", item
        assert key not in found, f"{key} reported twice: {skipped}"
        found[key] = reason_kind(item.reason)
    return found


async def assert_left(
    world: World,
    deleted_ages: Mapping[str, Collection[str]],
    outside_before: Mapping[str, int],
) -> None:
    """Every world experiment (decoys and deleted ones included) holds exactly its seeded
    traces less the ages ``deleted_ages`` names for it, read back through the search API;
    every experiment outside the world holds the traces it had."""
    problems = []
    for key, exp in world.experiments.items():
        gone = frozenset().union(*(exp.traces[age] for age in deleted_ages.get(key, ())))
        left = await remaining_ids(world.server.url, exp.experiment_id)
        if left != exp.all_ids - gone:
            problems.append(
                f"{key}: {len(left)} left, expected {len(exp.all_ids - gone)}"
                f" (ages gone: {sorted(deleted_ages.get(key, ()))})"
            )
    assert not problems, problems
    ours = {exp.experiment_id for exp in world.experiments.values()}
    now = {k: v for k, v in traces_per_experiment(world.server).items() if k not in ours}
    assert now == {k: v for k, v in outside_before.items() if k not in ours}


def outside(world: World) -> dict[str, int]:
    """The trace counts of the experiments outside the world, before a run."""
    ours = {exp.experiment_id for exp in world.experiments.values()}
    return {k: v for k, v in traces_per_experiment(world.server).items() if k not in ours}


def assert_jobs(world: World, report: RunReport | PlanReport, keys: Collection[str]) -> None:
    """The run (or plan) holds one job per selected experiment, labelled ``sel/<name>``."""
    jobs = {job.label: job.experiment_id for job in report.jobs}
    expected = {f"sel/{world[key].name}": world[key].experiment_id for key in keys}
    assert jobs == expected


def ancient_in(keys: Collection[str]) -> dict[str, tuple[str, ...]]:
    return dict.fromkeys(keys, ("ancient",))


# -- selectors on the shared session server ----------------------------------------------------


@pytest.mark.asyncio
async def test_name_like_deletes_in_its_pattern_only(mlflow_server: MlflowServer) -> None:
    """``name LIKE '<prefix>-chat-%'``: every active ``chat-`` experiment loses its traces
    older than 30 days (a retention tag is ignored without ``retention_tag``); ``Chat-``
    (another case), ``chatX00``, the decoys and the other names are untouched; the deleted
    ``chat-`` experiments are reported as skipped and keep everything."""
    world = await build_world(mlflow_server)
    before = outside(world)
    selector = ExperimentSelector(name_like=f"{world.prefix}-chat-%")
    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([spec(selector)])
    chat = [k for k in world.keys(active=True) if k.startswith("chat-")]
    assert len(chat) == 15
    assert_jobs(world, report, chat)
    assert skipped_by_key(world, report.skipped) == {
        "chat-del-00": "deleted",
        "chat-del-01": "deleted",
    }
    assert report.deleted == len(chat) * TRACES_PER_AGE
    await assert_left(world, ancient_in(chat), before)


@pytest.mark.asyncio
async def test_all_tags_must_match(mlflow_server: MlflowServer) -> None:
    """``tags={world, team=search, env=prod}``: only the active experiments holding all three
    (the even ``search-`` ones and ``search-ret-2d``) are cleaned; the deleted one is skipped."""
    world = await build_world(mlflow_server)
    before = outside(world)
    selector = ExperimentSelector(tags={"world": world.prefix, "team": "search", "env": "prod"})
    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([spec(selector)])
    chosen = [*(f"search-{i:02d}" for i in range(0, 10, 2)), "search-ret-2d"]
    assert_jobs(world, report, chosen)
    assert skipped_by_key(world, report.skipped) == {"search-del-00": "deleted"}
    await assert_left(world, ancient_in(chosen), before)


@pytest.mark.asyncio
async def test_name_pattern_and_tags_together(mlflow_server: MlflowServer) -> None:
    """``name LIKE '<prefix>-%' AND team=chat AND env=prod``: both must hold (the decoys
    have the tags but not the name; ``chat-01`` the name but ``env=staging``)."""
    world = await build_world(mlflow_server)
    before = outside(world)
    selector = ExperimentSelector(
        name_like=f"{world.prefix}-%", tags={"team": "chat", "env": "prod"}
    )
    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([spec(selector)])
    chosen = [
        key
        for key in world.keys(active=True)
        if world[key].tags.get("team") == "chat" and world[key].tags.get("env") == "prod"
    ]
    assert "chat-01" not in chosen
    assert {"Chat-00", "chat-ret-soon"} <= set(chosen)
    assert_jobs(world, report, chosen)
    assert skipped_by_key(world, report.skipped) == {
        "chat-del-00": "deleted",
        "chat-del-01": "deleted",
    }
    await assert_left(world, ancient_in(chosen), before)


@pytest.mark.asyncio
async def test_excluded_names_and_ids_are_reported_and_untouched(
    mlflow_server: MlflowServer,
) -> None:
    """Excluded by name and by ID: reported ``excluded`` and untouched, whatever the pattern
    selects; a deleted experiment that is also excluded is reported as deleted; an excluded
    name that does not exist changes nothing."""
    world = await build_world(mlflow_server)
    before = outside(world)
    by_name = ["chat-00", "search-03", "chat-del-00"]
    by_id = ["batch-05", "Chat-01"]
    selector = ExperimentSelector(
        name_like=f"{world.prefix}-%",
        exclude_names=(*(world[k].name for k in by_name), f"{world.prefix}-no-such-experiment"),
        exclude_ids=tuple(world[k].experiment_id for k in by_id),
    )
    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([spec(selector)])
    excluded = {"chat-00", "search-03", "batch-05", "Chat-01"}
    chosen = [k for k in world.keys(active=True) if k not in excluded]
    assert_jobs(world, report, chosen)
    assert skipped_by_key(world, report.skipped) == {
        **dict.fromkeys(excluded, "excluded"),
        **dict.fromkeys(world.keys(active=False), "deleted"),
    }
    await assert_left(world, ancient_in(chosen), before)


@pytest.mark.asyncio
async def test_retention_tags_plan_then_run(mlflow_server: MlflowServer) -> None:
    """``retention_tag="retention"``, ``older_than=30d``, ``min_retention=1d``, planned then
    run from the plan: ``2d`` deletes the 10-day-old traces too, ``45d`` keeps everything,
    ``soon`` and ``7D`` (unreadable) and ``1h`` (shorter than min_retention) are skipped with
    their reason and keep everything, untagged experiments keep 30 days; the plan's skipped
    experiments are the run's."""
    world = await build_world(mlflow_server)
    before = outside(world)
    job = spec(
        ExperimentSelector(name_like=f"{world.prefix}-%"),
        retention_tag=RETENTION_TAG,
        min_retention=MIN_RETENTION,
    )
    async with make_engine(mlflow_server.url) as engine:
        planned_at = now_ms()
        plan = await engine.plan([job])
        report = await engine.run(plan)
    skipped: dict[str, str] = dict.fromkeys(world.keys(active=False), "deleted")
    deleted_ages: dict[str, tuple[str, ...]] = {}
    for key in world.keys(active=True):
        retention = world[key].blueprint.retention
        effect = RETENTIONS[retention] if retention is not None else ("ancient",)
        if isinstance(effect, str):
            skipped[key] = effect
        else:
            deleted_ages[key] = effect
    assert skipped_by_key(world, plan.skipped) == skipped
    assert report.skipped == plan.skipped
    assert_jobs(world, plan, deleted_ages)
    assert_jobs(world, report, deleted_ages)
    cutoffs = {job.label: job.cutoff_millis for job in plan.jobs}
    for key, days in (("chat-ret-2d", 2), ("chat-ret-45d", 45), ("chat-00", 30)):
        cutoff = cutoffs[f"sel/{world[key].name}"]
        assert cutoff is not None
        assert abs(cutoff - (planned_at - days * DAY_MS)) < 60_000, (key, cutoff)
    assert {job.label: job.would_delete for job in plan.jobs} == {
        job.label: job.deleted for job in report.jobs
    }
    assert report.deleted == sum(len(ages) for ages in deleted_ages.values()) * TRACES_PER_AGE
    await assert_left(world, deleted_ages, before)


@pytest.mark.asyncio
async def test_an_experiment_created_after_select_is_untouched(
    mlflow_server: MlflowServer,
) -> None:
    """The selector is resolved once: an experiment that matches it, created after
    ``Engine.select`` and before ``Engine.run(plan)``, keeps every trace."""
    world = await build_world(mlflow_server)
    async with make_engine(mlflow_server.url) as engine:
        selection = await engine.select([spec(ExperimentSelector(name_like=f"{world.prefix}-%"))])
        late_name = f"{world.prefix}-chat-late"
        late_id = await create_experiment(mlflow_server.url, late_name)
        late = make_traces(3, start_ms=now_ms() - AGES_MS["ancient"])
        seed_traces_sql(database(mlflow_server), late_id, late)
        before = outside(world)
        plan = await engine.plan(selection.resolved)
        report = await engine.run(plan)
        again = await engine.select([spec(ExperimentSelector(name_like=f"{world.prefix}-%"))])
    assert late_id not in {job.experiment_id for job in report.jobs}
    assert await remaining_ids(mlflow_server.url, late_id) == {t.trace_id for t in late}
    assert before[late_id] == len(late)  # counted as "outside the world": checked unchanged
    await assert_left(world, ancient_in(world.keys(active=True)), before)
    # A new selection would take it: it was left out because it came late, not by the filter.
    assert late_id in {item.experiment_id for item in again.resolved}


@pytest.mark.asyncio
async def test_a_named_deleted_experiment_is_refused(mlflow_server: MlflowServer) -> None:
    """Named (not selected), a deleted experiment is refused before anything is deleted."""
    world = await build_world(mlflow_server)
    before = outside(world)
    async with make_engine(mlflow_server.url) as engine:
        with pytest.raises(UsageError, match="is deleted"):
            await engine.run(
                [
                    DeleteSpec(experiment_name=world["chat-00"].name, older_than=KEEP),
                    DeleteSpec(experiment_id=world["chat-del-00"].experiment_id, older_than=KEEP),
                ]
            )
    await assert_left(world, {}, before)


@pytest.mark.asyncio
async def test_the_real_filter_grammar_reads_our_filters_as_meant(
    mlflow_server: MlflowServer,
) -> None:
    """What ``ExperimentSelector.filter_string()`` selects on the real server (nothing is
    deleted): ``_`` is one character, ``LIKE`` is case-sensitive, backticked tag keys with
    ``.`` and ``-`` work, and a tag value with ``%``, quotes or non-ASCII letters is compared
    literally. The server's own answer to the filter (``experiments/search``, asked here
    directly) is what ``Engine.select`` keeps: ``ExperimentSelector.matches``, the client's
    check of that answer, drops nothing the server chose."""
    world = await build_world(mlflow_server)
    p, w = world.prefix, {"world": world.prefix}
    cases: list[tuple[ExperimentSelector, set[str]]] = [
        (
            ExperimentSelector(name_like=f"{p}-chat_0%"),
            {*(f"chat-{i:02d}" for i in range(10)), "chatX00"},
        ),
        (ExperimentSelector(name_like=f"{p}-Chat-%"), {"Chat-00", "Chat-01"}),
        (
            ExperimentSelector(name_like=f"{p}-%-ret-%"),  # `%` spans "-": chat- and search-
            {k for k in world.keys(active=True) if "-ret-" in k},
        ),
        (ExperimentSelector(tags={**w, "cost.center": "a%b"}), {"odd-00"}),
        (ExperimentSelector(tags={**w, "owner-name": 'Zoë "Z" O'}), {"odd-00"}),
        (ExperimentSelector(tags={**w, "team": "CHAT"}), set()),
        (ExperimentSelector(tags={**w, RETENTION_TAG: "7D"}), {"chat-ret-7D"}),
    ]
    async with make_engine(mlflow_server.url) as engine:
        for selector, expected in cases:
            selection = await engine.select([spec(selector)])
            found = {_key_of_id(world, job.experiment_id) for job in selection.resolved}
            answered = await search_active(mlflow_server.url, selector.filter_string())
            served = {_key_of_id(world, i) for i in answered}
            assert served == found == expected, (selector.filter_string(), served, found)


async def search_active(url: str, filter_string: str | None) -> set[str]:
    """The IDs of the active experiments the server answers for a filter (one page)."""
    body = {"filter": filter_string, "max_results": 1000, "view_type": "ACTIVE_ONLY"}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        response = await client.post("/api/2.0/mlflow/experiments/search", json=body)
    response.raise_for_status()
    return {item["experiment_id"] for item in response.json().get("experiments", [])}


def _key_of_id(world: World, experiment_id: str) -> str:
    return next(k for k, e in world.experiments.items() if e.experiment_id == experiment_id)


# -- all_experiments, on a server of this module's own ---------------------------------------


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A server for this module alone (started once, ~20 s): ``all_experiments`` selects every
    experiment of its server, which on the shared one would touch the other tests' data."""
    with running_mlflow_server(tmp_path_factory.mktemp("selection-own-server")) as server:
        yield server


@pytest.mark.asyncio
async def test_all_experiments_less_exclusions(own_server: MlflowServer) -> None:
    """``all_experiments`` with excluded names and IDs on a server of its own: every active
    experiment, the Default one (ID 0) included, loses its traces older than 30 days; the
    excluded are reported and untouched; the deleted are reported and untouched."""
    world = await build_world(own_server)
    default = make_traces(3, start_ms=now_ms() - AGES_MS["ancient"])
    seed_traces_sql(database(own_server), "0", default)
    by_name, by_id = ["chat-01", "decoy-chat-00", "search-del-00"], ["batch-03", "odd-02"]
    selector = ExperimentSelector(
        all_experiments=True,
        exclude_names=tuple(world[k].name for k in by_name),
        exclude_ids=tuple(world[k].experiment_id for k in by_id),
    )
    async with make_engine(own_server.url) as engine:
        report = await engine.run([spec(selector)])
    excluded = {"chat-01", "decoy-chat-00", "batch-03", "odd-02"}
    active = world.keys(active=True, world_only=False)
    chosen = [k for k in active if k not in excluded]
    jobs = {job.experiment_id: job.label for job in report.jobs}
    assert jobs.pop("0") == "sel/Default"
    assert jobs == {world[k].experiment_id: f"sel/{world[k].name}" for k in chosen}
    assert skipped_by_key(world, report.skipped) == {
        **dict.fromkeys(excluded, "excluded"),
        **dict.fromkeys(world.keys(active=False), "deleted"),
    }
    assert report.deleted == len(chosen) * TRACES_PER_AGE + len(default)
    assert await remaining_ids(own_server.url, "0") == set()
    await assert_left(world, ancient_in(chosen), {})
