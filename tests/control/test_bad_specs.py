"""Every invalid spec and setting is refused at construction, naming the rule or the field.

The library's models (``DeleteSpec``, ``EngineConfig``, ``ClientConfig``, ``RetryPolicy``)
reject invalid values when they are built, before anything could be sent.

Part of the bad-input sweep (``tests/control/test_bad_specs.py``,
``tests/http/test_bad_client_calls.py``, ``tests/engine/test_bad_engine_input.py``,
``tests/cli/test_bad_input.py``): each table row is one invalid input and a fragment of the
message that must name what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from async_trace_delete import ClientConfig, DeleteSpec, EngineConfig, RetryPolicy, SpecError
from tests.support.counting_server import TRACE_ID
from tests.support.simulated_server import BASE_MS, SIM_URL

# -- the library's models ----------------------------------------------------------------------

CUTOFF = {"max_timestamp_millis": BASE_MS}
SPEC_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "no experiment",
        {**CUTOFF},
        "exactly one of experiment_id, experiment_name and an experiment selector",
    ),
    (
        "both experiment forms",
        {"experiment_id": "1", "experiment_name": "x", **CUTOFF},
        "exactly one of experiment_id, experiment_name and an experiment selector",
    ),
    ("empty experiment id", {"experiment_id": "", **CUTOFF}, "experiment_id"),
    ("blank experiment name", {"experiment_name": "  ", **CUTOFF}, "experiment_name"),
    ("padded experiment id", {"experiment_id": " 1", **CUTOFF}, "whitespace"),
    ("nothing selected", {"experiment_id": "1"}, "nothing to select traces by"),
    ("zero cutoff", {"experiment_id": "1", "max_timestamp_millis": 0}, "max_timestamp_millis"),
    (
        "negative cutoff",
        {"experiment_id": "1", "max_timestamp_millis": -1},
        "max_timestamp_millis",
    ),
    (
        "float cutoff",
        {"experiment_id": "1", "max_timestamp_millis": 1.5e12},
        "max_timestamp_millis",
    ),
    (
        "text cutoff",
        {"experiment_id": "1", "max_timestamp_millis": "1700000000000"},
        "max_timestamp_millis",
    ),
    (
        "boolean cutoff",
        {"experiment_id": "1", "max_timestamp_millis": True},
        "max_timestamp_millis",
    ),
    (
        "cutoff and age",
        {"experiment_id": "1", **CUTOFF, "older_than": timedelta(days=1)},
        "not both",
    ),
    ("zero age", {"experiment_id": "1", "older_than": timedelta(0)}, "positive duration"),
    ("negative age", {"experiment_id": "1", "older_than": timedelta(days=-1)}, "positive"),
    ("zero cap", {"experiment_id": "1", **CUTOFF, "max_traces": 0}, "max_traces"),
    ("negative cap", {"experiment_id": "1", **CUTOFF, "max_traces": -5}, "max_traces"),
    ("fractional cap", {"experiment_id": "1", **CUTOFF, "max_traces": 2.5}, "max_traces"),
    ("text cap", {"experiment_id": "1", **CUTOFF, "max_traces": "10"}, "max_traces"),
    ("empty ID list", {"experiment_id": "1", "trace_ids": []}, "at least one trace ID"),
    ("one ID as a string", {"experiment_id": "1", "trace_ids": TRACE_ID}, "not a single string"),
    ("empty ID", {"experiment_id": "1", "trace_ids": [TRACE_ID, ""]}, "position 1"),
    ("padded ID", {"experiment_id": "1", "trace_ids": [f" {TRACE_ID}"]}, "whitespace"),
    ("IDs and cutoff", {"experiment_id": "1", "trace_ids": [TRACE_ID], **CUTOFF}, "never both"),
    (
        "IDs and cap",
        {"experiment_id": "1", "trace_ids": [TRACE_ID], "max_traces": 1},
        "max_traces cannot be used with trace_ids",
    ),
    (
        "IDs and filter",
        {"experiment_id": "1", "trace_ids": [TRACE_ID], "filter_string": "status = 'OK'"},
        "filter_string cannot be combined with trace_ids",
    ),
    ("match all", {"experiment_id": "1", "filter_string": "  "}, "allow_match_all"),
    (
        "negative guardrail",
        {"experiment_id": "1", **CUTOFF, "expect_at_most": -1},
        "expect_at_most",
    ),
    ("unknown field", {"experiment_id": "1", **CUTOFF, "cutoff": 5}, "cutoff"),
]

MODEL_CASES: list[tuple[str, Callable[..., BaseModel], dict[str, Any], str]] = [
    ("rate zero", EngineConfig, {"rate_limit": 0}, "rate_limit"),
    ("rate negative", EngineConfig, {"rate_limit": -1}, "rate_limit"),
    ("rate huge", EngineConfig, {"rate_limit": 1e9}, "rate_limit"),
    ("rate infinite", EngineConfig, {"rate_limit": float("inf")}, "rate_limit"),
    ("rate nan", EngineConfig, {"rate_limit": float("nan")}, "rate_limit"),
    ("concurrency zero", EngineConfig, {"max_concurrency": 0}, "max_concurrency"),
    ("concurrency huge", EngineConfig, {"max_concurrency": 10_000}, "max_concurrency"),
    ("concurrency fraction", EngineConfig, {"max_concurrency": 1.5}, "max_concurrency"),
    ("target zero", EngineConfig, {"target_latency": 0}, "target_latency"),
    ("min batch zero", EngineConfig, {"min_batch_size": 0}, "min_batch_size"),
    ("max batch huge", EngineConfig, {"max_batch_size": 10**7}, "max_batch_size"),
    (
        "min above max",
        EngineConfig,
        {"min_batch_size": 500, "max_batch_size": 100},
        "min_batch_size <= initial_batch_size <= max_batch_size",
    ),
    (
        "initial above max",
        EngineConfig,
        {"initial_batch_size": 5_000, "max_batch_size": 1_000},
        "min_batch_size <= initial_batch_size <= max_batch_size",
    ),
    (
        "ID chunk above max",
        EngineConfig,
        {"initial_id_chunk": 500, "max_id_chunk": 100},
        "initial_id_chunk (500) must be <= max_id_chunk (100)",
    ),
    ("sleep negative", EngineConfig, {"sleep_coefficient": -1}, "sleep_coefficient"),
    ("timeout zero", EngineConfig, {"request_timeout": 0}, "request_timeout"),
    ("timeout huge", EngineConfig, {"request_timeout": 10**6}, "request_timeout"),
    ("budget negative", EngineConfig, {"retry_budget": -1}, "retry_budget"),
    ("unknown setting", EngineConfig, {"speed": "fast"}, "speed"),
    ("attempts zero", RetryPolicy, {"max_attempts": 0}, "max_attempts"),
    ("backoff negative", RetryPolicy, {"initial_backoff": -1}, "initial_backoff"),
    ("multiplier below one", RetryPolicy, {"multiplier": 0.5}, "multiplier"),
    ("no tracking URI", ClientConfig, {}, "tracking_uri"),
    ("file URI", ClientConfig, {"tracking_uri": "file:///tmp/mlruns"}, "not a server"),
    ("databricks URI", ClientConfig, {"tracking_uri": "databricks"}, "http(s)://"),
    (
        "user without password",
        ClientConfig,
        {"tracking_uri": SIM_URL, "username": "bob"},
        "username and password must be given together",
    ),
    ("client timeout zero", ClientConfig, {"tracking_uri": SIM_URL, "timeout": 0}, "timeout"),
]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [pytest.param(fields, fragment, id=name) for name, fields, fragment in SPEC_CASES],
)
def test_invalid_delete_spec_is_refused_naming_the_rule(
    fields: dict[str, Any], fragment: str
) -> None:
    """Each invalid job spec is refused at construction with a message naming the rule."""
    with pytest.raises(SpecError) as raised:
        DeleteSpec.model_validate(fields)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("model", "fields", "fragment"),
    [
        pytest.param(model, fields, fragment, id=name)
        for name, model, fields, fragment in MODEL_CASES
    ],
)
def test_invalid_setting_is_refused_naming_the_field(
    model: Callable[..., BaseModel], fields: dict[str, Any], fragment: str
) -> None:
    """Each invalid engine, retry or client setting is refused with the field in the message."""
    with pytest.raises(SpecError) as raised:
        model(**fields)
    assert fragment in str(raised.value)
