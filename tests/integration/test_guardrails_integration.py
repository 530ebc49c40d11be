"""Guardrails stop a cleanup before anything is deleted, or let it run exactly, on a real server.

``expect_at_most`` (counted by a dry-run search), ``min_retention`` / ``force`` (checked
against the pinned cutoff) and ``allow_match_all``. A refusal in ``run()`` refuses the whole
run: the other jobs of that run do not start either.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from async_trace_delete import (
    DeleteSpec,
    GuardrailError,
    JobState,
)
from tests.support.guardrails import BASE_MS, ERROR_ONLY, make_engine
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import (
    SeedTrace,
    StoredTrace,
    create_experiment,
    make_trace_id,
    make_traces,
    remaining_ids,
    remaining_traces,
    seed_traces_sql,
)

DAY_MS = 86_400_000


def now_ms() -> int:
    """The wall clock in epoch milliseconds (what the engine pins cutoffs against)."""
    return time.time_ns() // 1_000_000


def database(server: MlflowServer) -> Path:
    """The session server's SQLite file."""
    assert server.db_path is not None, "the session server runs on SQLite"
    return server.db_path


def snapshot(traces: list[StoredTrace]) -> list[tuple[str, int, str]]:
    """What identifies a stored trace: ID, timestamp, state."""
    return [(t.trace_id, t.timestamp_ms, t.state) for t in traces]


def ids_of(traces: list[SeedTrace]) -> set[str]:
    """The trace IDs of ``traces``."""
    return {trace.trace_id for trace in traces}


# -- integration: expect_at_most ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_expect_at_most_exceeded_leaves_the_server_untouched_for_every_job(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """A run with one job over its limit raises GuardrailError and no job deletes anything."""
    other_experiment = await create_experiment(mlflow_server.url)
    seed_traces_sql(
        database(mlflow_server), experiment_id, make_traces(300, start_ms=BASE_MS, error_every=2)
    )
    seed_traces_sql(database(mlflow_server), other_experiment, make_traces(200, start_ms=BASE_MS))
    before = {
        experiment: snapshot(await remaining_traces(mlflow_server.url, experiment))
        for experiment in (experiment_id, other_experiment)
    }
    specs = [
        DeleteSpec(experiment_id=other_experiment, max_timestamp_millis=BASE_MS + 1_000),
        DeleteSpec(experiment_id=experiment_id, filter_string="status = 'OK'", expect_at_most=150),
        DeleteSpec(experiment_id=experiment_id, filter_string=ERROR_ONLY, expect_at_most=149),
        DeleteSpec(
            experiment_id=other_experiment, trace_ids=[t[0] for t in before[other_experiment]]
        ),
    ]

    async with make_engine(mlflow_server.url) as engine:
        with pytest.raises(GuardrailError, match="would delete 150 traces, more than the 149"):
            await engine.run(specs)
        assert engine.jobs == ()

    for experiment, traces in before.items():
        assert snapshot(await remaining_traces(mlflow_server.url, experiment)) == traces


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("max_traces", "expect_at_most", "deleted"),
    [(None, 150, 150), (60, 60, 60)],
    ids=["exact-count", "capped-below-the-matches"],
)
async def test_expect_at_most_at_the_count_lets_the_job_run_exactly(
    mlflow_server: MlflowServer,
    experiment_id: str,
    max_traces: int | None,
    expect_at_most: int,
    deleted: int,
) -> None:
    """A limit equal to what would go (the cap, when capped) passes and the job deletes that."""
    traces = make_traces(300, start_ms=BASE_MS, error_every=2)
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    errors = [trace for trace in traces if trace.state == "ERROR"]
    spec = DeleteSpec(
        experiment_id=experiment_id,
        filter_string=ERROR_ONLY,
        max_traces=max_traces,
        expect_at_most=expect_at_most,
    )

    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([spec])

    assert report.jobs[0].state is JobState.COMPLETED
    assert report.deleted == deleted
    left = await remaining_ids(mlflow_server.url, experiment_id)
    assert left == ids_of(traces) - ids_of(errors[:deleted])


@pytest.mark.asyncio
async def test_expect_at_most_of_an_id_job_counts_only_existing_ids(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """Unknown IDs do not count against ``expect_at_most``: 80 real of 130 given pass 80."""
    traces = make_traces(120, start_ms=BASE_MS)
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    given = [trace.trace_id for trace in traces[:80]] + [make_trace_id() for _ in range(50)]

    async with make_engine(mlflow_server.url) as engine:
        with pytest.raises(GuardrailError):
            await engine.run(
                [DeleteSpec(experiment_id=experiment_id, trace_ids=given, expect_at_most=79)]
            )
        assert len(await remaining_ids(mlflow_server.url, experiment_id)) == 120
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, trace_ids=given, expect_at_most=80)]
        )

    assert (report.jobs[0].deleted, report.jobs[0].not_found) == (80, 50)
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(traces[80:])


# -- integration: min_retention / force --------------------------------------------------------


def aged_traces(now: int) -> tuple[list[SeedTrace], list[SeedTrace]]:
    """50 traces about ten days old and 50 about one day old."""
    old = make_traces(50, start_ms=now - 10 * DAY_MS, step_ms=1_000)
    recent = make_traces(50, start_ms=now - DAY_MS, step_ms=1_000)
    return old, recent


def too_new_cutoff(style: str, now: int) -> dict[str, Any]:
    """A cutoff two days ago, as an absolute time or as an age."""
    if style == "max_timestamp_millis":
        return {"max_timestamp_millis": now - 2 * DAY_MS}
    return {"older_than": timedelta(days=2)}


@pytest.mark.asyncio
@pytest.mark.parametrize("style", ["max_timestamp_millis", "older_than"])
async def test_min_retention_refuses_a_too_new_cutoff_without_force(
    mlflow_server: MlflowServer, experiment_id: str, style: str
) -> None:
    """A cutoff inside ``min_retention`` is refused by plan, submit and run; nothing is deleted."""
    now = now_ms()
    old, recent = aged_traces(now)
    seed_traces_sql(database(mlflow_server), experiment_id, old + recent)
    spec = DeleteSpec(
        experiment_id=experiment_id, min_retention=timedelta(days=7), **too_new_cutoff(style, now)
    )

    async with make_engine(mlflow_server.url) as engine:
        with pytest.raises(GuardrailError, match="min_retention"):
            await engine.plan([spec])
        with pytest.raises(GuardrailError, match="min_retention"):
            await engine.submit(spec)
        with pytest.raises(GuardrailError, match="min_retention"):
            await engine.run([spec])
        assert engine.jobs == ()

    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(old + recent)


@pytest.mark.asyncio
@pytest.mark.parametrize("style", ["max_timestamp_millis", "older_than"])
async def test_force_overrides_min_retention_and_deletes_exactly_up_to_the_cutoff(
    mlflow_server: MlflowServer, experiment_id: str, style: str
) -> None:
    """With ``force=True`` the same job runs: the old traces go and the recent ones stay."""
    now = now_ms()
    old, recent = aged_traces(now)
    seed_traces_sql(database(mlflow_server), experiment_id, old + recent)
    spec = DeleteSpec(
        experiment_id=experiment_id,
        min_retention=timedelta(days=7),
        force=True,
        **too_new_cutoff(style, now),
    )

    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([spec])

    assert report.jobs[0].state is JobState.COMPLETED
    assert report.deleted == 50
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(recent)


@pytest.mark.asyncio
async def test_min_retention_lets_an_old_enough_cutoff_run_without_force(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """A cutoff older than ``min_retention`` needs no force and deletes exactly what it covers."""
    now = now_ms()
    old, recent = aged_traces(now)
    seed_traces_sql(database(mlflow_server), experiment_id, old + recent)
    spec = DeleteSpec(
        experiment_id=experiment_id, older_than=timedelta(days=8), min_retention=timedelta(days=7)
    )

    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([spec])

    assert report.deleted == 50
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(recent)


@pytest.mark.asyncio
async def test_min_retention_protects_recent_traces_from_a_selective_job(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """A selective job with ``min_retention`` and no cutoff must not delete recent matches."""
    now = now_ms()
    old = make_traces(20, start_ms=now - 10 * DAY_MS, state="ERROR")
    recent = make_traces(20, start_ms=now - DAY_MS, state="ERROR")
    seed_traces_sql(database(mlflow_server), experiment_id, old + recent)
    spec = DeleteSpec(
        experiment_id=experiment_id, filter_string=ERROR_ONLY, min_retention=timedelta(days=7)
    )

    async with make_engine(mlflow_server.url) as engine:
        # Refusing the job is as good as keeping the recent traces.
        with contextlib.suppress(GuardrailError):
            await engine.run([spec])

    assert ids_of(recent) <= await remaining_ids(mlflow_server.url, experiment_id)


@pytest.mark.asyncio
async def test_match_all_with_allow_match_all_deletes_every_trace(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """An empty filter allowed by ``allow_match_all`` deletes exactly what its plan counted."""
    traces = make_traces(120, start_ms=BASE_MS, error_every=2)
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    spec = DeleteSpec(experiment_id=experiment_id, filter_string="", allow_match_all=True)

    async with make_engine(mlflow_server.url) as engine:
        plan = await engine.plan([spec])
        report = await engine.run([spec])

    assert plan.would_delete == 120
    assert report.jobs[0].state is JobState.COMPLETED, report.jobs[0].error
    assert report.deleted == 120
    assert await remaining_ids(mlflow_server.url, experiment_id) == set()
