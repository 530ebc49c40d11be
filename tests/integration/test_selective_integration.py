"""Selective and ID cleanups against a real ``mlflow server``: exact counts AND what is left.

Search pages are kept small (``search_page_size=50``) so that every selective job walks many
pages, and several layouts put many matching traces on one timestamp, which is where a
producer that walks by ``timestamp_ms >= last seen`` could skip or repeat traces. The same on
the simulated server is ``tests/engine/test_selective.py``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, JobState
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import (
    SeedTrace,
    make_trace_id,
    make_traces,
    remaining_ids,
    remaining_traces,
    seed_traces_sql,
)

# 2024-01-01T00:00:00Z: a fixed, readable base for seeded timestamps.
BASE_MS = 1_704_067_200_000
PAGE = 50  # small search pages: hundreds of matches take many pages
ERROR_ONLY = "status = 'ERROR'"


def make_engine(url: str, **settings: Any) -> Engine:
    """An engine on the session's server with small search pages and no pacing to wait for."""
    values: dict[str, Any] = {"rate_limit": 1_000.0, "search_page_size": PAGE, **settings}
    return Engine(EngineConfig(client=ClientConfig(tracking_uri=url), **values))


def database(server: MlflowServer) -> Path:
    """The session server's SQLite file."""
    assert server.db_path is not None, "the session server runs on SQLite"
    return server.db_path


def ids_of(traces: list[SeedTrace]) -> set[str]:
    """The trace IDs of ``traces``."""
    return {trace.trace_id for trace in traces}


def oldest_first(traces: list[SeedTrace]) -> list[SeedTrace]:
    """``traces`` in the server's delete and search order: timestamp, then ID."""
    return sorted(traces, key=lambda trace: (trace.timestamp_ms, trace.trace_id))


def clustered(
    timestamps: int, errors_per_timestamp: int, oks_per_timestamp: int
) -> tuple[list[SeedTrace], list[SeedTrace]]:
    """ERROR and OK traces sharing ``timestamps`` distinct timestamps one second apart."""
    errors: list[SeedTrace] = []
    oks: list[SeedTrace] = []
    for index in range(timestamps):
        start = BASE_MS + index * 1_000
        errors += make_traces(errors_per_timestamp, start_ms=start, step_ms=0, state="ERROR")
        oks += make_traces(oks_per_timestamp, start_ms=start, step_ms=0, state="OK")
    return errors, oks


@pytest.mark.asyncio
async def test_error_only_cleanup_walks_many_pages_and_keeps_every_ok_trace(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """Over ten search pages of matches, exactly the ERROR traces go and every OK one stays."""
    traces = make_traces(1_500, start_ms=BASE_MS, error_every=3)
    errors = [trace for trace in traces if trace.state == "ERROR"]
    seed_traces_sql(database(mlflow_server), experiment_id, traces)

    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, filter_string=ERROR_ONLY)], verify=True
        )

    job = report.jobs[0]
    assert len(errors) == 500
    assert job.state is JobState.COMPLETED
    assert job.mode == "matching"
    assert (job.deleted, job.ambiguous, job.not_found) == (500, 0, 0)
    assert (job.matched_before, job.verified_remaining, job.verified_consistent) == (500, 0, True)
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(traces) - ids_of(errors)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("timestamps", "errors_per_timestamp", "oks_per_timestamp"),
    [(1, 300, 100), (4, 90, 30), (43, 7, 3)],
    ids=["300-on-one-timestamp", "clusters-larger-than-a-page", "clusters-across-page-ends"],
)
async def test_error_only_cleanup_is_exact_when_many_traces_share_a_timestamp(
    mlflow_server: MlflowServer,
    experiment_id: str,
    timestamps: int,
    errors_per_timestamp: int,
    oks_per_timestamp: int,
) -> None:
    """Matches piled on shared timestamps (one of 300, or clusters crossing pages) all go."""
    errors, oks = clustered(timestamps, errors_per_timestamp, oks_per_timestamp)
    seed_traces_sql(database(mlflow_server), experiment_id, errors + oks)

    async with make_engine(mlflow_server.url, initial_id_chunk=20) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, filter_string=ERROR_ONLY)], verify=True
        )

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert (job.deleted, job.ambiguous, job.not_found) == (len(errors), 0, 0)
    assert job.matched_before == len(errors)
    assert job.verified_remaining == 0
    assert job.verified_consistent is True
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(oks)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "filter_string",
    ["tag.env = 'dev'", "status = 'ERROR' AND tag.env = 'dev'"],
    ids=["tag", "status-and-tag"],
)
async def test_tag_filtered_cleanup_deletes_only_matching_tags(
    mlflow_server: MlflowServer, experiment_id: str, filter_string: str
) -> None:
    """``tag.env = 'dev'`` (alone or with a status) deletes those traces; prod and untagged stay."""
    dev = make_traces(240, start_ms=BASE_MS, step_ms=2, tags={"env": "dev"}, error_every=2)
    prod = make_traces(120, start_ms=BASE_MS + 1, step_ms=4, tags={"env": "prod"}, error_every=2)
    untagged = make_traces(60, start_ms=BASE_MS, step_ms=8, error_every=2)
    seed_traces_sql(database(mlflow_server), experiment_id, dev + prod + untagged)
    doomed = [t for t in dev if "status" not in filter_string or t.state == "ERROR"]

    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, filter_string=filter_string)], verify=True
        )

    job = report.jobs[0]
    assert (job.deleted, job.ambiguous, job.not_found) == (len(doomed), 0, 0)
    assert (job.matched_before, job.verified_remaining) == (len(doomed), 0)
    assert job.verified_consistent is True
    left = await remaining_traces(mlflow_server.url, experiment_id)
    assert {t.trace_id for t in left} == ids_of(dev + prod + untagged) - ids_of(doomed)
    assert not await remaining_traces(mlflow_server.url, experiment_id, filter_string=filter_string)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("timestamps", "errors_per_timestamp", "cap"),
    [(300, 1, 120), (15, 20, 75), (1, 300, 130)],
    ids=["distinct-timestamps", "cap-inside-a-cluster", "one-timestamp"],
)
async def test_selective_cap_deletes_exactly_the_cap_oldest_first(
    mlflow_server: MlflowServer,
    experiment_id: str,
    timestamps: int,
    errors_per_timestamp: int,
    cap: int,
) -> None:
    """With ``max_traces``, exactly the cap goes, and it is the oldest matches (ties by ID)."""
    errors, oks = clustered(timestamps, errors_per_timestamp, 1)
    seed_traces_sql(database(mlflow_server), experiment_id, errors + oks)
    doomed = oldest_first(errors)[:cap]

    async with make_engine(mlflow_server.url, initial_id_chunk=30) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, filter_string=ERROR_ONLY, max_traces=cap)],
            verify=True,
        )

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert (job.deleted, job.ambiguous, job.not_found) == (cap, 0, 0)
    assert (job.matched_before, job.verified_remaining) == (len(errors), len(errors) - cap)
    assert job.verified_consistent is True
    left = await remaining_ids(mlflow_server.url, experiment_id)
    assert left == ids_of(errors + oks) - ids_of(doomed)


@pytest.mark.asyncio
@pytest.mark.parametrize("cap", [None, 40], ids=["uncapped", "capped"])
async def test_selective_with_cutoff_deletes_only_older_matches(
    mlflow_server: MlflowServer, experiment_id: str, cap: int | None
) -> None:
    """Filter AND cutoff: ERROR traces at or before the cutoff go (capped: the oldest), no more."""
    traces = make_traces(600, start_ms=BASE_MS, step_ms=10, error_every=2)
    errors = [trace for trace in traces if trace.state == "ERROR"]
    cutoff = errors[200].timestamp_ms  # 201 ERROR traces are at or before it, one exactly AT it
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    older_errors = [trace for trace in errors if trace.timestamp_ms <= cutoff]
    doomed = older_errors if cap is None else older_errors[:cap]

    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run(
            [
                DeleteSpec(
                    experiment_id=experiment_id,
                    filter_string=ERROR_ONLY,
                    max_timestamp_millis=cutoff,
                    max_traces=cap,
                )
            ],
            verify=True,
        )

    job = report.jobs[0]
    assert len(older_errors) == 201
    assert job.mode == "matching"
    assert (job.deleted, job.ambiguous) == (len(doomed), 0)
    assert (job.matched_before, job.verified_remaining) == (201, 201 - len(doomed))
    assert job.verified_consistent is True
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(traces) - ids_of(doomed)


@pytest.mark.asyncio
async def test_ten_thousand_ids_with_duplicates_and_unknowns_are_deleted_exactly(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """10,000 distinct IDs (9,000 real, 1,000 unknown) plus repeats: exactly the real ones go."""
    traces = make_traces(11_000, start_ms=BASE_MS)
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    shuffler = random.Random(4)
    doomed = shuffler.sample(traces, 9_000)
    unknown = [make_trace_id() for _ in range(1_000)]
    requested = [trace.trace_id for trace in doomed] + unknown
    repeats = shuffler.sample(requested, 1_500)
    given = requested + repeats
    shuffler.shuffle(given)

    # No verify here: it re-counts 10,000 IDs by search twice (one search per 100 IDs), which
    # costs more than the deletion; the server is checked directly below instead.
    async with make_engine(mlflow_server.url) as engine:
        report = await engine.run([DeleteSpec(experiment_id=experiment_id, trace_ids=given)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert job.requested_ids == 10_000
    assert (job.deleted, job.not_found, job.ambiguous) == (9_000, 1_000, 0)
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids_of(traces) - ids_of(doomed)
