"""Engine checks that need the server (unknown experiment, guardrails) read only, and a
refused job stops its whole run before any delete.

A counting transport proves that no *delete* was sent.

Part of the bad-input sweep (``tests/control/test_bad_specs.py``,
``tests/http/test_bad_client_calls.py``, ``tests/engine/test_bad_engine_input.py``,
``tests/cli/test_bad_input.py``): each table row is one invalid input and a fragment of the
message that must name what is wrong.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    GuardrailError,
    NotFoundError,
    TraceDeleteError,
    UsageError,
)
from tests.support.counting_server import DAY_MS, NOW_MS, CountingServer
from tests.support.simulated_server import BASE_MS, SIM_URL

# -- the engine: checks that need the server still delete nothing ------------------------------


ENGINE_CASES: list[tuple[str, dict[str, Any], type[TraceDeleteError], str]] = [
    (
        "future cutoff",
        {"experiment_id": "1", "max_timestamp_millis": NOW_MS + DAY_MS},
        GuardrailError,
        "is in the future",
    ),
    (
        "age before 1970",
        {"experiment_id": "1", "older_than": timedelta(days=365 * 100)},
        GuardrailError,
        "reaches back before 1970",
    ),
    (
        "retention too short",
        {
            "experiment_id": "1",
            "older_than": timedelta(days=1),
            "min_retention": timedelta(days=7),
        },
        GuardrailError,
        "min_retention",
    ),
    (
        "unknown experiment name",
        {"experiment_name": "no-such-experiment", "max_timestamp_millis": BASE_MS},
        NotFoundError,
        "no-such-experiment",
    ),
    (
        "unknown experiment id",
        {"experiment_id": "999", "max_timestamp_millis": BASE_MS},
        NotFoundError,
        "999",
    ),
    (
        "more than expected",
        {"experiment_id": "1", "max_timestamp_millis": NOW_MS, "expect_at_most": 5},
        GuardrailError,
        "expect_at_most",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fields", "error_type", "fragment"),
    [pytest.param(f, e, m, id=name) for name, f, e, m in ENGINE_CASES],
)
async def test_refused_job_sends_no_delete_and_stops_its_siblings(
    fields: dict[str, Any], error_type: type[TraceDeleteError], fragment: str
) -> None:
    """A job refused at submission raises a clear error, and no job of the run deletes anything."""
    server = CountingServer()
    valid = DeleteSpec(experiment_id=server.experiment_id, max_timestamp_millis=NOW_MS)
    config = EngineConfig(client=ClientConfig(tracking_uri=SIM_URL))
    async with Engine(config, transport=server.transport, wall_clock_ms=lambda: NOW_MS) as engine:
        with pytest.raises(error_type) as raised:
            await engine.run([valid, DeleteSpec.model_validate(fields)])
    assert fragment in str(raised.value)
    assert server.deletes == 0
    assert server.server.deleted(server.experiment_id) == 0


@pytest.mark.asyncio
async def test_empty_run_is_refused_without_a_request() -> None:
    """``Engine.run([])`` is a usage error, not a silent success."""
    server = CountingServer()
    config = EngineConfig(client=ClientConfig(tracking_uri=SIM_URL))
    async with Engine(config, transport=server.transport) as engine:
        with pytest.raises(UsageError, match="at least one spec"):
            await engine.run([])
    assert server.requests == []
