"""The harness's pure helpers, without a server: RFC 3339 request times and `make_traces`."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.seed import format_request_time, make_traces, parse_request_time_ms

# 2024-01-01T00:00:00Z: a fixed, readable base for seeded timestamps.
BASE_MS = 1_704_067_200_000


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_request_time_round_trips_exactly(timestamp_ms: int) -> None:
    """Formatting epoch milliseconds as RFC 3339 and parsing it back is lossless."""
    assert parse_request_time_ms(format_request_time(timestamp_ms)) == timestamp_ms


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2024-01-01T00:00:00Z", BASE_MS),
        ("2024-01-01T00:00:00.1Z", BASE_MS + 100),
        ("2024-01-01T00:00:00.12Z", BASE_MS + 120),
        ("2024-01-01T00:00:00.123Z", BASE_MS + 123),
        ("2024-01-01T00:00:00.123999999Z", BASE_MS + 123),
        ("2024-01-01T02:00:00.5+02:00", BASE_MS + 500),
        ("2023-12-31T23:30:00-00:30", BASE_MS),
    ],
)
def test_request_time_parses_any_fraction_and_offset(text: str, expected_ms: int) -> None:
    """RFC 3339 times with 0-9 fraction digits and any offset parse to exact milliseconds."""
    assert parse_request_time_ms(text) == expected_ms


def test_make_traces_builds_valid_unique_hashable_traces() -> None:
    """make_traces gives unique IDs, stepped timestamps, ERROR every n-th and hashable traces."""
    traces = make_traces(9, start_ms=BASE_MS, step_ms=5, tags={"team": "a"}, error_every=3)
    assert len({trace.trace_id for trace in traces}) == 9
    assert [trace.timestamp_ms for trace in traces] == [BASE_MS + 5 * i for i in range(9)]
    assert [i for i, trace in enumerate(traces) if trace.state == "ERROR"] == [2, 5, 8]
    assert len(set(traces)) == 9
    assert traces[0].tags == {"team": "a"}
    with pytest.raises(ValueError, match="state"):
        dataclasses.replace(traces[0], state="DONE")
