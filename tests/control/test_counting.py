"""Which selections the one-request count expresses, and exactly how (pure)."""

from __future__ import annotations

import pytest

from async_trace_delete._counting import CountQuery, count_query
from async_trace_delete._requests import count_body
from async_trace_delete._wire import count_from


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        (None, CountQuery("1", 0, 100)),
        ("status = 'ERROR'", CountQuery("1", 0, 100, ("trace.status = 'ERROR'",))),
        (
            "status = 'OK' AND tag.team = \"a\" AND metadata.`user` = 'b'",
            CountQuery(
                "1",
                0,
                100,
                ("trace.status = 'OK'", "trace.tag.team = 'a'", "trace.metadata.user = 'b'"),
            ),
        ),
        ("timestamp_ms > 5 and timestamp_ms < 50", CountQuery("1", 6, 49)),
        ("timestamp_ms >= 5 AND timestamp_ms <= 500", CountQuery("1", 5, 100)),
        ("timestamp_ms = 7", CountQuery("1", 7, 7)),
    ],
)
def test_expressible_selections(filter_string: str | None, expected: CountQuery) -> None:
    """Status, tag and metadata equalities and timestamp bounds map one to one; the job's
    own bound (100) stays the upper end whatever the filter says above it."""
    assert count_query("1", filter_string, 100) == expected


@pytest.mark.parametrize(
    "filter_string",
    [
        "status != 'ERROR'",
        "status IN ('ERROR')",
        "status LIKE 'ERR%'",
        "name = 'chat'",
        "tag.mlflow.traceName = 'x'",
        "tag.`mlflow.user` = 'x'",
        "metadata.`a.b` = 'x'",
        "request_id = 'tr-1'",
        "status = 'ERROR' AND",
        "status = 'ERROR' status = 'OK'",
        "status = 'ERROR' OR status = 'OK'",
        "execution_time_ms > 5",
    ],
)
def test_anything_else_falls_back_to_paging(filter_string: str) -> None:
    """Anything the metrics endpoint would read differently, or not at all, is not translated."""
    assert count_query("1", filter_string, 100) is None


def test_an_unbounded_selection_is_never_counted_this_way() -> None:
    """The engine bounds every selective job; an unbounded query would be a bug."""
    assert count_query("1", "status = 'ERROR'", None) is None


def test_the_request_body_and_the_answer() -> None:
    """The body asks for one COUNT; the answer's float is a whole count, no point is zero."""
    body = count_body(CountQuery("3", 0, 99, ("trace.status = 'ERROR'",)))
    assert body == {
        "experiment_ids": ["3"],
        "view_type": "TRACES",
        "metric_name": "trace_count",
        "aggregations": [{"aggregation_type": "COUNT"}],
        "start_time_ms": 0,
        "end_time_ms": 99,
        "filters": ["trace.status = 'ERROR'"],
    }
    point = {"metric_name": "trace_count", "values": {"COUNT": 20000.0}}
    assert count_from({"data_points": [point]}) == 20_000
    assert count_from({}) == 0
    for bad in ({"COUNT": 1.5}, {"COUNT": -1}, {"COUNT": True}, {}):
        with pytest.raises(ValueError, match="COUNT"):
            count_from({"data_points": [{"values": bad}]})
