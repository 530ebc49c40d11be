"""Exact counts in one request: a job's selection as an MLflow trace-metrics query.

MLflow 3.17 answers ``POST /api/3.0/mlflow/traces/metrics`` (``view_type`` TRACES, metric
``trace_count``, aggregation COUNT) with the exact number of traces of the experiments between
``start_time_ms`` and ``end_time_ms``, both inclusive (``sql_trace_metrics_utils.
_build_time_range_predicate``: ``>=`` and ``<=``), that pass every one of its ``filters``.
Its filters are narrower than search's (``SearchTraceMetricsUtils``): one clause each, only
``=``, on ``trace.status``, ``trace.tag.<key>`` and ``trace.metadata.<key>``.

:func:`count_query` translates a job into that query only where the answer is exactly what
the job's search filter selects; anything else (``!=``, ``LIKE``, ``IN``, ``name``, dotted or
``mlflow.`` keys, whose metrics filter reads other columns than search does) answers
``None``, and the count falls back to paging through search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CountQuery", "count_query"]

_KEY = r"[A-Za-z0-9_]+"
_VALUE = r"""(?:'(?P<sq>[^'\\]*)'|"(?P<dq>[^"\\]*)")"""
_VALUE2 = _VALUE.replace("sq", "sq2").replace("dq", "dq2")
_CLAUSE = re.compile(
    rf"""\s*(?:
        (?P<status>status)\s*=\s*{_VALUE}
      | (?P<kind>tag|metadata)\.(?P<key>{_KEY}|`{_KEY}`)\s*=\s*{_VALUE2}
      | timestamp_ms\s*(?P<op><=|>=|<|>|=)\s*(?P<ms>\d+)
    )\s*(?:$|(?P<and>AND\b))""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class CountQuery:
    """One experiment's traces with ``start_ms <= timestamp_ms <= end_ms`` passing every
    filter (each a metrics filter clause, ``trace.status = 'ERROR'``)."""

    experiment_id: str
    start_ms: int
    end_ms: int
    filters: tuple[str, ...] = ()


def count_query(
    experiment_id: str, filter_string: str | None, upper_bound: int | None
) -> CountQuery | None:
    """The metrics query that counts exactly what ``filter_string AND timestamp_ms <=
    upper_bound`` selects, or ``None`` when the metrics endpoint cannot express it.

    Args:
        experiment_id: The experiment.
        filter_string: The job's own search filter (without its bound), if any.
        upper_bound: The newest ``timestamp_ms`` the job may delete, if bounded.
    """
    start, end = 0, upper_bound
    filters: list[str] = []
    text = (filter_string or "").strip()
    position = 0
    while position < len(text):
        match = _CLAUSE.match(text, position)
        if match is None:
            return None
        if match["status"]:
            filters.append(f"trace.status = {_quoted(match['sq'], match['dq'])}")
        elif match["kind"]:
            key = match["key"].strip("`")
            if key.lower().startswith("mlflow"):
                return None  # MLflow's own keys may be read from other columns by metrics
            kind = match["kind"].lower()
            filters.append(f"trace.{kind}.{key} = {_quoted(match['sq2'], match['dq2'])}")
        else:
            start, end = _narrow(start, end, match["op"], int(match["ms"]))
        position = match.end()
        if match["and"] is None and position < len(text):
            return None
        if match["and"] is not None and position >= len(text):
            return None  # a dangling AND: let the server judge it through search
    if end is None:
        return None  # the engine bounds every selective job; an unbounded count is a bug
    return CountQuery(experiment_id, max(start, 0), end, tuple(filters))


def _quoted(single: str | None, double: str | None) -> str:
    value = single if single is not None else double
    assert value is not None
    return "'" + value + "'" if "'" not in value else '"' + value + '"'


def _narrow(start: int, end: int | None, op: str, millis: int) -> tuple[int, int | None]:
    def lower(end_value: int | None, bound: int) -> int | None:
        return bound if end_value is None else min(end_value, bound)

    if op == "<=":
        return start, lower(end, millis)
    if op == "<":
        return start, lower(end, millis - 1)
    if op == ">=":
        return max(start, millis), end
    if op == ">":
        return max(start, millis + 1), end
    return max(start, millis), lower(end, millis)  # "="
