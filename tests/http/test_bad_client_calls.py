"""The client refuses ``delete_traces`` arguments MLflow would reject, before any request.

A counting transport proves that no request was sent.

Part of the bad-input sweep (``tests/control/test_bad_specs.py``,
``tests/http/test_bad_client_calls.py``, ``tests/engine/test_bad_engine_input.py``,
``tests/cli/test_bad_input.py``): each table row is one invalid input and a fragment of the
message that must name what is wrong.
"""

from __future__ import annotations

from typing import Any

import pytest

from async_trace_delete import ClientConfig, TracesClient, UsageError
from tests.support.counting_server import TRACE_ID, CountingServer
from tests.support.simulated_server import BASE_MS, SIM_URL

# -- the client: refused before sending ----------------------------------------------------------

CLIENT_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("neither", "1", {}, "exactly one of max_timestamp_millis and trace_ids"),
    (
        "both",
        "1",
        {"max_timestamp_millis": BASE_MS, "trace_ids": [TRACE_ID]},
        "exactly one of max_timestamp_millis and trace_ids",
    ),
    ("zero cutoff", "1", {"max_timestamp_millis": 0}, "max_timestamp_millis must be"),
    ("float cutoff", "1", {"max_timestamp_millis": 1.7e12}, "max_timestamp_millis must be"),
    ("boolean cutoff", "1", {"max_timestamp_millis": True}, "max_timestamp_millis must be"),
    ("zero cap", "1", {"max_timestamp_millis": BASE_MS, "max_traces": 0}, "max_traces must be"),
    (
        "cap with IDs",
        "1",
        {"trace_ids": [TRACE_ID], "max_traces": 1},
        "max_traces cannot be used with trace_ids",
    ),
    ("empty IDs", "1", {"trace_ids": []}, "must not be empty"),
    ("ID string", "1", {"trace_ids": TRACE_ID}, "not a single string"),
    ("empty ID", "1", {"trace_ids": [""]}, "non-empty strings"),
    ("empty experiment", "", {"max_timestamp_millis": BASE_MS}, "experiment_id must be"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("experiment_id", "arguments", "fragment"),
    [pytest.param(e, a, f, id=name) for name, e, a, f in CLIENT_CASES],
)
async def test_invalid_delete_call_is_refused_without_a_request(
    experiment_id: str, arguments: dict[str, Any], fragment: str
) -> None:
    """``delete_traces`` with arguments MLflow would refuse raises before any request."""
    server = CountingServer()
    config = ClientConfig(tracking_uri=SIM_URL)
    async with TracesClient(config, transport=server.transport) as client:
        with pytest.raises(UsageError) as raised:
            await client.delete_traces(experiment_id, **arguments)
    assert fragment in str(raised.value)
    assert server.requests == []
