"""The Engine against a real ``mlflow server`` (SQLite): exact counts, caps, cancels, plans.

Traces are seeded straight into the server's database (``seed_traces_sql``) for speed, and
every test checks what is left on the server through its search API, not only the report.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_trace_delete import (
    BatchDeleted,
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    Event,
    Hook,
    JobReport,
    JobState,
    NotFoundError,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import (
    SeedTrace,
    create_experiment,
    make_traces,
    remaining_ids,
    remaining_traces,
    seed_traces_sql,
)

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SETTLE_POLL_SECONDS = 0.4


def make_engine(url: str, *, hooks: Sequence[Hook] = (), **settings: Any) -> Engine:
    """An engine on the real server, fast enough for tests (the limiter is not under test)."""
    values: dict[str, Any] = {"rate_limit": 1000, **settings}
    return Engine(EngineConfig(client=ClientConfig(tracking_uri=url), **values), hooks=hooks)


def fixed_batches(size: int) -> dict[str, Any]:
    """Config settings that pin the cutoff batch size to ``size``."""
    return {"min_batch_size": size, "max_batch_size": size, "initial_batch_size": size}


def db_path(server: MlflowServer) -> Path:
    """The server's SQLite file (the harness always uses SQLite)."""
    assert server.db_path is not None
    return server.db_path


def seed(
    server: MlflowServer, experiment_id: str, old: int, new: int, **options: Any
) -> tuple[list[SeedTrace], int]:
    """Seed ``old`` traces at or before the returned cutoff and ``new`` after it, oldest first."""
    traces = make_traces(old + new, start_ms=BASE_MS, **options)
    seed_traces_sql(db_path(server), experiment_id, traces)
    return traces, BASE_MS + old - 1


def ids(traces: Sequence[SeedTrace]) -> set[str]:
    """The trace IDs of ``traces``."""
    return {trace.trace_id for trace in traces}


def count_rows(server: MlflowServer, experiment_id: str) -> int:
    """Traces of the experiment in the server's database right now."""
    with contextlib.closing(sqlite3.connect(db_path(server), timeout=60)) as connection:
        row = connection.execute(
            "SELECT COUNT(*) FROM trace_info WHERE experiment_id = ?", (int(experiment_id),)
        ).fetchone()
    return int(row[0])


async def settled_count(server: MlflowServer, experiment_id: str) -> int:
    """The experiment's trace count once the server finished any delete still running."""
    previous = count_rows(server, experiment_id)
    while True:
        await anyio.sleep(SETTLE_POLL_SECONDS)
        current = count_rows(server, experiment_id)
        if current == previous:
            return current
        previous = current


def assert_loss_within_report(report: JobReport, lost: int) -> None:
    """The server lost at least what was confirmed and at most that plus the ambiguous bound."""
    assert report.deleted <= lost <= report.deleted + report.ambiguous, (report, lost)


async def new_experiment(url: str) -> str:
    """A fresh, uniquely named experiment."""
    return await create_experiment(url, f"engine-it-{uuid.uuid4().hex[:12]}")


# -- whole runs -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_five_experiments_are_each_cleaned_exactly_to_their_cutoff(
    mlflow_server: MlflowServer, mlflow_url: str
) -> None:
    """One run cleans five experiments of different sizes; newer traces all stay."""
    sizes = [2500, 1200, 401, 37, 0]
    experiments = [await new_experiment(mlflow_url) for _ in sizes]
    seeded = [
        seed(mlflow_server, exp, old, 20) for exp, old in zip(experiments, sizes, strict=True)
    ]
    async with make_engine(mlflow_url) as engine:
        report = await engine.run(
            [
                DeleteSpec(experiment_id=exp, max_timestamp_millis=cutoff)
                for exp, (_, cutoff) in zip(experiments, seeded, strict=True)
            ]
        )
    for job, exp, old, (traces, _) in zip(report.jobs, experiments, sizes, seeded, strict=True):
        assert job.state is JobState.COMPLETED, job
        assert (job.deleted, job.ambiguous) == (old, 0)
        assert await remaining_ids(mlflow_url, exp) == ids(traces[old:])
    assert report.deleted == sum(sizes)
    assert report.ok


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("cap", "batch", "sizes"),
    [(50, 300, (50,)), (1000, 300, (300, 300, 300, 100)), (900, 300, (300, 300, 300))],
    ids=["cap-below-batch", "cap-not-multiple", "cap-multiple"],
)
async def test_total_cap_deletes_exactly_the_oldest_cap_traces(
    mlflow_server: MlflowServer,
    mlflow_url: str,
    experiment_id: str,
    cap: int,
    batch: int,
    sizes: tuple[int, ...],
) -> None:
    """A job with ``max_traces`` deletes exactly that many, the oldest first."""
    traces, cutoff = seed(mlflow_server, experiment_id, 1500, 10)
    async with make_engine(mlflow_url, **fixed_batches(batch)) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff, max_traces=cap)]
        )
    job = report.jobs[0]
    assert (job.state, job.deleted, job.ambiguous) == (JobState.COMPLETED, cap, 0)
    assert job.batch_sizes == sizes
    assert await remaining_ids(mlflow_url, experiment_id) == ids(traces[cap:])


@pytest.mark.asyncio
async def test_verify_reports_the_server_truth(
    mlflow_server: MlflowServer, mlflow_url: str, experiment_id: str
) -> None:
    """``run(verify=True)`` reports matched_before and verified_remaining as the server counts."""
    _, cutoff = seed(mlflow_server, experiment_id, 1500, 100)
    matching = f"timestamp_ms <= {cutoff}"
    before = len(await remaining_traces(mlflow_url, experiment_id, filter_string=matching))
    async with make_engine(mlflow_url) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff, max_traces=1000)],
            verify=True,
        )
    job = report.jobs[0]
    after = len(await remaining_traces(mlflow_url, experiment_id, filter_string=matching))
    assert (job.matched_before, job.verified_remaining) == (before, after) == (1500, 500)
    assert job.verified_deleted == job.deleted == 1000
    assert job.verified_consistent
    assert len(await remaining_ids(mlflow_url, experiment_id)) == 600


@pytest.mark.asyncio
async def test_plan_counts_what_the_run_then_deletes(
    mlflow_server: MlflowServer, mlflow_url: str
) -> None:
    """``engine.plan`` predicts, job by job, exactly what a real run deletes, deleting nothing."""
    by_cutoff, capped, selective, by_ids = [await new_experiment(mlflow_url) for _ in range(4)]
    _, cutoff_a = seed(mlflow_server, by_cutoff, 900, 30)
    _, cutoff_b = seed(mlflow_server, capped, 800, 30)
    _, cutoff_c = seed(mlflow_server, selective, 900, 30, error_every=3)
    id_traces, _ = seed(mlflow_server, by_ids, 250, 0)
    unknown = [f"tr-{uuid.uuid4().hex}" for _ in range(50)]
    specs = [
        DeleteSpec(experiment_id=by_cutoff, max_timestamp_millis=cutoff_a),
        DeleteSpec(experiment_id=capped, max_timestamp_millis=cutoff_b, max_traces=333),
        DeleteSpec(
            experiment_id=selective, filter_string="status = 'ERROR'", max_timestamp_millis=cutoff_c
        ),
        DeleteSpec(experiment_id=by_ids, trace_ids=[t.trace_id for t in id_traces] + unknown),
    ]
    experiments = [by_cutoff, capped, selective, by_ids]
    counts_before = [count_rows(mlflow_server, exp) for exp in experiments]
    async with make_engine(mlflow_url) as engine:
        plan = await engine.plan(specs)
        assert [count_rows(mlflow_server, exp) for exp in experiments] == counts_before
        report = await engine.run(specs)
    assert [job.would_delete for job in plan.jobs] == [900, 333, 300, 250]
    assert [job.deleted for job in report.jobs] == [job.would_delete for job in plan.jobs]
    assert report.jobs[3].not_found == 50
    lost = [
        b - count_rows(mlflow_server, exp)
        for b, exp in zip(counts_before, experiments, strict=True)
    ]
    assert lost == [900, 333, 300, 250]
    left = await remaining_traces(mlflow_url, selective)
    assert not [t for t in left if t.state == "ERROR" and t.timestamp_ms <= cutoff_c]


@pytest.mark.asyncio
@pytest.mark.parametrize("missing", ["id", "name"])
async def test_unknown_experiment_fails_the_run_before_any_delete(
    mlflow_server: MlflowServer, mlflow_url: str, experiment_id: str, missing: str
) -> None:
    """A run naming an unknown experiment raises NotFoundError and deletes nothing in any job."""
    traces, cutoff = seed(mlflow_server, experiment_id, 300, 0)
    unknown = (
        DeleteSpec(experiment_id="987654321", max_timestamp_millis=cutoff)
        if missing == "id"
        else DeleteSpec(experiment_name=f"no-such-{uuid.uuid4().hex}", max_timestamp_millis=cutoff)
    )
    async with make_engine(mlflow_url) as engine:
        with pytest.raises(NotFoundError):
            await engine.run(
                [DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff), unknown]
            )
        assert engine.jobs == ()
    assert await remaining_ids(mlflow_url, experiment_id) == ids(traces)


@pytest.mark.asyncio
async def test_experiment_given_by_name_is_resolved(
    mlflow_server: MlflowServer, mlflow_url: str
) -> None:
    """A spec naming its experiment by name deletes from that experiment."""
    name = f"engine-by-name-{uuid.uuid4().hex[:12]}"
    experiment_id = await create_experiment(mlflow_url, name)
    traces, cutoff = seed(mlflow_server, experiment_id, 700, 15)
    async with make_engine(mlflow_url) as engine:
        report = await engine.run([DeleteSpec(experiment_name=name, max_timestamp_millis=cutoff)])
    job = report.jobs[0]
    assert (job.experiment_id, job.label, job.deleted) == (experiment_id, name, 700)
    assert await remaining_ids(mlflow_url, experiment_id) == ids(traces[700:])


# -- cancellation -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_handle_cancel_after_some_batches_matches_the_server(
    mlflow_server: MlflowServer, mlflow_url: str, experiment_id: str
) -> None:
    """``handle.cancel()`` after three batches stops the job with the server loss in its report."""
    traces, cutoff = seed(mlflow_server, experiment_id, 3000, 10)
    handles: list[Any] = []

    def cancel_after_three(event: Event) -> None:
        if isinstance(event, BatchDeleted) and event.total_deleted >= 900:
            handles[0].cancel()

    async with make_engine(mlflow_url, hooks=[cancel_after_three], **fixed_batches(300)) as engine:
        handles.append(
            await engine.submit(
                DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff)
            )
        )
        report = await handles[0].wait()
    assert report.state is JobState.CANCELLED
    assert report.deleted == 900
    lost = 3010 - await settled_count(mlflow_server, experiment_id)
    assert_loss_within_report(report, lost)
    assert await remaining_ids(mlflow_url, experiment_id) == ids(traces[lost:])


@pytest.mark.asyncio
async def test_cancel_all_mid_call_keeps_the_report_consistent_with_the_server(
    mlflow_server: MlflowServer, mlflow_url: str
) -> None:
    """``engine.cancel_all()`` while calls run: each job's loss lies in [deleted, +ambiguous]."""
    experiments = [await new_experiment(mlflow_url) for _ in range(2)]
    seeded = [seed(mlflow_server, exp, 3000, 10) for exp in experiments]
    two_batches = anyio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, BatchDeleted) and event.total_deleted >= 600:
            two_batches.set()

    async with make_engine(mlflow_url, hooks=[watch], **fixed_batches(300)) as engine:
        async with anyio.create_task_group() as group:

            async def run() -> None:
                await engine.run(
                    [
                        DeleteSpec(experiment_id=exp, max_timestamp_millis=cutoff)
                        for exp, (_, cutoff) in zip(experiments, seeded, strict=True)
                    ]
                )

            group.start_soon(run)
            await two_batches.wait()
            await anyio.sleep(0.05)  # most likely in the middle of a call
            engine.cancel_all()
        reports = [handle.report() for handle in engine.jobs]
    for report, exp, (traces, _) in zip(reports, experiments, seeded, strict=True):
        assert report.state is JobState.CANCELLED
        lost = 3010 - await settled_count(mlflow_server, exp)
        assert_loss_within_report(report, lost)
        assert await remaining_ids(mlflow_url, exp) == ids(traces[lost:])


@pytest.mark.asyncio
async def test_move_on_after_around_run_leaves_exact_partial_reports(
    mlflow_server: MlflowServer, mlflow_url: str
) -> None:
    """A timeout around ``engine.run`` cancels it; ``engine.jobs`` keep the server-exact reports."""
    experiments = [await new_experiment(mlflow_url) for _ in range(2)]
    seeded = [seed(mlflow_server, exp, 3000, 10) for exp in experiments]
    # 20 calls at 4 a second cannot finish within the 1 s timeout, however fast the machine.
    async with make_engine(mlflow_url, rate_limit=4.0, **fixed_batches(300)) as engine:
        with anyio.move_on_after(1.0) as scope:
            await engine.run(
                [
                    DeleteSpec(experiment_id=exp, max_timestamp_millis=cutoff)
                    for exp, (_, cutoff) in zip(experiments, seeded, strict=True)
                ]
            )
        assert scope.cancelled_caught
        reports = [handle.report() for handle in engine.jobs]
    assert len(reports) == 2
    assert sum(report.deleted for report in reports) > 0
    for report, exp, (traces, _) in zip(reports, experiments, seeded, strict=True):
        assert report.state is JobState.CANCELLED
        lost = 3010 - await settled_count(mlflow_server, exp)
        assert_loss_within_report(report, lost)
        assert await remaining_ids(mlflow_url, exp) == ids(traces[lost:])
