"""Real SDK traces on every backend: since MLflow 3.6 their spans live in the database, and a
delete must take the spans and assessments with the trace (by cascade), on each database."""

from __future__ import annotations

import time
import uuid

import pytest

from async_trace_delete import DeleteSpec, JobState
from tests.backends.matrix import Backend, make_engine
from tests.support.sdk_traces import log_sdk_traces
from tests.support.seed import create_experiment, remaining_ids

pytestmark = [pytest.mark.integration, pytest.mark.backends, pytest.mark.asyncio]

SPANS_PER_SDK_TRACE = 3  # answer -> retrieve -> lookup


async def test_error_cleanup_of_sdk_traces_takes_their_spans_and_assessments(
    backend: Backend,
) -> None:
    """Deleting the SDK's failed traces (with a cutoff) leaves no span or assessment of them in
    the database, and every span and assessment of the kept traces."""
    name = f"sdk-spans-{uuid.uuid4().hex[:12]}"
    experiment_id = await create_experiment(backend.url, name)
    logged = log_sdk_traces(backend.url, name, ok=3, error=3)
    failed, kept = logged["error"], logged["ok"]
    assert await remaining_ids(backend.url, experiment_id) == {*failed, *kept}
    assert backend.count_rows("spans", "trace_id", failed) == SPANS_PER_SDK_TRACE * len(failed)
    assert backend.count_rows("spans", "trace_id", kept) == SPANS_PER_SDK_TRACE * len(kept)
    assert backend.count_rows("assessments", "trace_id", [*failed, *kept]) == 6

    async with make_engine(backend) as engine:
        report = await engine.run(
            [
                DeleteSpec(
                    experiment_id=experiment_id,
                    filter_string="status = 'ERROR'",
                    max_timestamp_millis=time.time_ns() // 1_000_000,
                )
            ]
        )

    (job,) = report.jobs
    assert (job.state, job.deleted, job.ambiguous) == (JobState.COMPLETED, 3, 0), job
    assert await remaining_ids(backend.url, experiment_id) == set(kept)
    assert backend.count_rows("trace_info", "request_id", failed) == 0
    assert backend.count_rows("spans", "trace_id", failed) == 0
    assert backend.count_rows("assessments", "trace_id", failed) == 0
    assert backend.count_rows("spans", "trace_id", kept) == SPANS_PER_SDK_TRACE * len(kept)
    assert backend.count_rows("assessments", "trace_id", kept) == 3
