"""Guardrails refuse a run before any delete: mocked MLflow (respx) and spec construction.

``expect_at_most`` (counted by a dry-run search) refused in ``run()`` refuses the whole run and
in ``submit()`` starts no job; ``allow_match_all`` is checked when the spec is built. The same
guardrails against the real server are ``tests/integration/test_guardrails_integration.py``.
"""

from __future__ import annotations

import pytest
import respx

from async_trace_delete import DeleteSpec, GuardrailError, SpecError
from tests.support.guardrails import BASE_MS, ERROR_ONLY, make_engine
from tests.support.seed import format_request_time, make_trace_id

# -- a refused run sends no delete -------------------------------------------------------------

FAKE_URL = "http://mlflow.test"


def fake_mlflow(router: respx.MockRouter, matching: int) -> respx.Route:
    """Route experiment look-ups, counts and searches (``matching`` traces); return the delete
    route."""
    router.get("/api/2.0/mlflow/experiments/get").respond(
        json={"experiment": {"experiment_id": "3", "name": "e", "lifecycle_stage": "active"}}
    )
    page = [
        {
            "trace_id": make_trace_id(),
            "request_time": format_request_time(BASE_MS + i),
            "state": "OK",
        }
        for i in range(matching)
    ]
    router.post("/api/3.0/mlflow/traces/search").respond(json={"traces": page})
    count = {"metric_name": "trace_count", "values": {"COUNT": float(matching)}}
    router.post("/api/3.0/mlflow/traces/metrics").respond(json={"data_points": [count]})
    return router.post("/api/2.0/mlflow/traces/delete-traces").respond(json={"traces_deleted": 0})


@pytest.mark.asyncio
async def test_expect_at_most_refusal_in_run_sends_no_delete_for_any_job() -> None:
    """One job over its ``expect_at_most`` makes ``run()`` raise before any job sends a delete."""
    specs = [
        DeleteSpec(experiment_id="3", max_timestamp_millis=BASE_MS + 100),
        DeleteSpec(experiment_id="3", filter_string=ERROR_ONLY, expect_at_most=39, label="x"),
        DeleteSpec(experiment_id="3", trace_ids=["tr-" + "0" * 32]),
    ]
    with respx.mock(base_url=FAKE_URL, assert_all_called=False) as router:
        delete = fake_mlflow(router, matching=40)
        async with make_engine(FAKE_URL) as engine:
            with pytest.raises(GuardrailError, match=r"'x' would delete 40 traces.*39"):
                await engine.run(specs)
            assert engine.jobs == ()

    assert not delete.called


@pytest.mark.asyncio
async def test_expect_at_most_refusal_in_submit_starts_no_job() -> None:
    """``submit()`` of a job over its ``expect_at_most`` raises and starts nothing."""
    with respx.mock(base_url=FAKE_URL, assert_all_called=False) as router:
        delete = fake_mlflow(router, matching=12)
        async with make_engine(FAKE_URL) as engine:
            with pytest.raises(GuardrailError, match="expect_at_most"):
                await engine.submit(
                    DeleteSpec(experiment_id="3", filter_string=ERROR_ONLY, expect_at_most=11)
                )
            assert engine.jobs == ()

    assert not delete.called


# -- allow_match_all ---------------------------------------------------------------------------


@pytest.mark.parametrize("filter_string", ["", "   "])
def test_empty_filter_without_allow_match_all_is_refused_at_construction(
    filter_string: str,
) -> None:
    """An empty filter with no cutoff cannot even be built without ``allow_match_all``."""
    with pytest.raises(SpecError, match="allow_match_all"):
        DeleteSpec(experiment_id="1", filter_string=filter_string)
