"""The core deletion semantics on every backend: cutoff, caps, IDs, selective, dry-run counts.

Each test seeds a fresh experiment through MLflow's REST API (what a client does, on any
database), runs the engine through its public API, and checks exact counts in the report AND
what the server's search API says is left. MLflow deletes `timestamp_ms <= cutoff`, and with
`max_traces` the oldest first by (`timestamp_ms`, `request_id`) (the store's `_delete_traces`).
"""

from __future__ import annotations

import pytest

from async_trace_delete import DeleteSpec, JobState
from tests.backends.matrix import Backend, fixed_batches, ids, make_engine, new_experiment
from tests.support.seed import (
    SeedTrace,
    make_trace_id,
    make_traces,
    remaining_ids,
    remaining_traces,
    seed_traces_api,
)

pytestmark = [pytest.mark.integration, pytest.mark.backends, pytest.mark.asyncio]

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
ERROR_ONLY = "status = 'ERROR'"


async def test_cutoff_deletes_up_to_and_including_the_cutoff_millisecond(
    backend: Backend, backend_experiment: str
) -> None:
    """Traces at cutoff-1 and at the cutoff go; those one millisecond newer all stay."""
    cutoff = BASE_MS + 10_000
    older, at_cutoff, newer = (
        make_traces(3, start_ms=cutoff + offset, step_ms=0) for offset in (-1, 0, 1)
    )
    await seed_traces_api(backend.url, backend_experiment, [*newer, *at_cutoff, *older])

    async with make_engine(backend) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=backend_experiment, max_timestamp_millis=cutoff)]
        )

    (job,) = report.jobs
    assert (job.state, job.deleted, job.ambiguous) == (JobState.COMPLETED, 6, 0), job
    left = await remaining_traces(backend.url, backend_experiment)
    assert {trace.trace_id for trace in left} == ids(newer)
    assert {trace.timestamp_ms for trace in left} == {cutoff + 1}


@pytest.mark.parametrize(
    ("cap", "batch", "sizes"),
    [(11, 4, (4, 4, 3)), (8, 4, (4, 4)), (3, 4, (3,))],
    ids=["cap-not-multiple", "cap-multiple", "cap-below-batch"],
)
async def test_cap_deletes_exactly_the_oldest_traces_over_several_calls(
    backend: Backend, backend_experiment: str, cap: int, batch: int, sizes: tuple[int, ...]
) -> None:
    """`max_traces` deletes exactly that many, oldest first, in batches of the fixed size."""
    traces = make_traces(20, start_ms=BASE_MS, step_ms=7)
    cutoff = traces[15].timestamp_ms  # 16 old enough, 4 newer than the cutoff
    await seed_traces_api(backend.url, backend_experiment, traces)

    async with make_engine(backend, **fixed_batches(batch)) as engine:
        report = await engine.run(
            [
                DeleteSpec(
                    experiment_id=backend_experiment, max_timestamp_millis=cutoff, max_traces=cap
                )
            ]
        )

    (job,) = report.jobs
    assert (job.state, job.deleted, job.ambiguous) == (JobState.COMPLETED, cap, 0), job
    assert job.batch_sizes == sizes
    assert await remaining_ids(backend.url, backend_experiment) == ids(traces[cap:])


async def test_cap_on_one_shared_timestamp_deletes_exactly_the_cap(
    backend: Backend, backend_experiment: str
) -> None:
    """Ties at the cutoff: a cap of 5 over 9 traces of one millisecond deletes exactly 5."""
    traces = make_traces(9, start_ms=BASE_MS, step_ms=0)
    await seed_traces_api(backend.url, backend_experiment, traces)

    async with make_engine(backend, **fixed_batches(2)) as engine:
        report = await engine.run(
            [
                DeleteSpec(
                    experiment_id=backend_experiment, max_timestamp_millis=BASE_MS, max_traces=5
                )
            ]
        )

    (job,) = report.jobs
    assert (job.state, job.deleted, job.ambiguous, job.batch_sizes) == (
        JobState.COMPLETED,
        5,
        0,
        (2, 2, 1),
    ), job
    left = await remaining_ids(backend.url, backend_experiment)
    assert len(left) == 4
    assert left < ids(traces)


async def test_trace_ids_of_another_experiment_are_never_deleted(
    backend: Backend, backend_experiment: str
) -> None:
    """An ID job deletes its experiment's listed traces; other experiments' IDs stay put."""
    other_experiment = await new_experiment(backend, "other")
    mine = make_traces(8, start_ms=BASE_MS)
    theirs = make_traces(5, start_ms=BASE_MS)
    await seed_traces_api(backend.url, backend_experiment, mine)
    await seed_traces_api(backend.url, other_experiment, theirs)
    unknown = [make_trace_id() for _ in range(2)]
    requested = [t.trace_id for t in mine[:5]] + [t.trace_id for t in theirs[:3]] + unknown

    async with make_engine(backend, **fixed_batches(3)) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=backend_experiment, trace_ids=requested)]
        )

    (job,) = report.jobs
    assert (job.state, job.deleted, job.ambiguous, job.not_found) == (
        JobState.COMPLETED,
        5,
        0,
        5,
    ), job
    assert await remaining_ids(backend.url, backend_experiment) == ids(mine[5:])
    assert await remaining_ids(backend.url, other_experiment) == ids(theirs)


SELECTORS = {"status": ERROR_ONLY, "tag": "tags.team = 'search'"}


def matches(selector: str, trace: SeedTrace) -> bool:
    """Whether `trace` matches the filter `SELECTORS[selector]`."""
    return trace.state == "ERROR" if selector == "status" else trace.tags["team"] == "search"


@pytest.mark.parametrize("selector", sorted(SELECTORS))
async def test_selective_cleanup_with_a_cutoff_deletes_only_old_matching_traces(
    backend: Backend, backend_experiment: str, selector: str
) -> None:
    """A filter and a cutoff together: only matching traces at or before the cutoff go, and a
    tag match is exact (case-sensitive) on every database."""
    traces = [
        SeedTrace(
            trace_id=make_trace_id(),
            timestamp_ms=BASE_MS + index,
            state="ERROR" if index % 3 == 2 else "OK",
            tags={"team": "search" if index % 2 == 0 else "ranking"},
        )
        for index in range(18)
    ]
    # Old traces whose tag differs from the filter's only in case: MySQL compares strings
    # case-insensitively by default, MLflow adds BINARY to keep `=` exact; they must stay.
    traces += [
        SeedTrace(trace_id=make_trace_id(), timestamp_ms=BASE_MS, tags={"team": team})
        for team in ("Search", "SEARCH")
    ]
    cutoff = BASE_MS + 11  # traces 0..11 are old enough
    doomed = [t for t in traces if t.timestamp_ms <= cutoff and matches(selector, t)]
    assert len(doomed) == (4 if selector == "status" else 6)
    await seed_traces_api(backend.url, backend_experiment, traces)

    async with make_engine(backend, search_page_size=5) as engine:
        report = await engine.run(
            [
                DeleteSpec(
                    experiment_id=backend_experiment,
                    filter_string=SELECTORS[selector],
                    max_timestamp_millis=cutoff,
                )
            ]
        )

    (job,) = report.jobs
    assert (job.state, job.deleted, job.ambiguous) == (JobState.COMPLETED, len(doomed), 0), job
    assert await remaining_ids(backend.url, backend_experiment) == ids(traces) - ids(doomed)


async def test_plan_counts_exactly_what_the_run_then_deletes(backend: Backend) -> None:
    """`Engine.plan` predicts each job's deletions exactly and deletes nothing itself."""
    by_cutoff, capped, selective, by_ids = [await new_experiment(backend, "plan") for _ in range(4)]
    cutoff_traces = make_traces(15, start_ms=BASE_MS)  # 12 old, 3 new
    capped_traces = make_traces(14, start_ms=BASE_MS)  # 12 old, cap 7
    selective_traces = make_traces(15, start_ms=BASE_MS, error_every=3)  # 4 old ERROR
    id_traces = make_traces(6, start_ms=BASE_MS)
    cutoff = BASE_MS + 11
    seeded = {
        by_cutoff: cutoff_traces,
        capped: capped_traces,
        selective: selective_traces,
        by_ids: id_traces,
    }
    for experiment, traces in seeded.items():
        await seed_traces_api(backend.url, experiment, traces)
    specs = [
        DeleteSpec(experiment_id=by_cutoff, max_timestamp_millis=cutoff),
        DeleteSpec(experiment_id=capped, max_timestamp_millis=cutoff, max_traces=7),
        DeleteSpec(experiment_id=selective, filter_string=ERROR_ONLY, max_timestamp_millis=cutoff),
        DeleteSpec(
            experiment_id=by_ids,
            trace_ids=[t.trace_id for t in id_traces[:4]] + [make_trace_id()],
        ),
    ]

    async with make_engine(backend, **fixed_batches(3)) as engine:
        plan = await engine.plan(specs)
        for experiment, traces in seeded.items():
            assert await remaining_ids(backend.url, experiment) == ids(traces)
        report = await engine.run(specs)

    assert [job.would_delete for job in plan.jobs] == [12, 7, 4, 4]
    assert [job.deleted for job in report.jobs] == [12, 7, 4, 4]
    assert all(job.state is JobState.COMPLETED for job in report.jobs), report.jobs
    old_errors = [t for t in selective_traces if t.state == "ERROR" and t.timestamp_ms <= cutoff]
    expected_left = {
        by_cutoff: ids(cutoff_traces[12:]),
        capped: ids(capped_traces[7:]),
        selective: ids(selective_traces) - ids(old_errors),
        by_ids: ids(id_traces[4:]),
    }
    for experiment, left in expected_left.items():
        assert await remaining_ids(backend.url, experiment) == left
