"""The requests MLflow's trace endpoints take, built and checked against its rules.

Pure: no ``httpx``, no I/O. Every argument is checked *before* anything is sent, so a
wrong call is refused whole (:class:`UsageError`), never half-sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._checks import is_int
from ._counting import CountQuery
from ._exceptions import UsageError

__all__ = [
    "MAX_SEARCH_PAGE",
    "check_artifact_path",
    "check_experiment_id",
    "count_body",
    "delete_body",
    "search_body",
]

MAX_SEARCH_PAGE = 500


def check_experiment_id(experiment_id: object) -> None:
    """Refuse an experiment ID that is not a non-empty string."""
    if not isinstance(experiment_id, str) or not experiment_id.strip():
        raise UsageError(f"experiment_id must be a non-empty string, got {experiment_id!r}")


def check_artifact_path(path: object) -> None:
    """Refuse an artifact path that could name more than one trace's folder: empty, absolute,
    or with an empty, ``.`` or ``..`` segment (the server refuses ``..`` too; we never send it).
    """
    if not isinstance(path, str) or not path or path.startswith("/"):
        raise UsageError(f"artifact path must be a relative path, got {path!r}")
    if any(segment in {"", ".", ".."} or "\\" in segment for segment in path.split("/")):
        raise UsageError(f"artifact path {path!r} has an empty, '.' or '..' segment")


def delete_body(
    experiment_id: str,
    *,
    max_timestamp_millis: int | None = None,
    max_traces: int | None = None,
    trace_ids: Sequence[str] | None = None,
) -> tuple[dict[str, Any], int | None]:
    """The ``delete-traces`` body and how many traces it asks for (``None``: no limit).

    Raises:
        UsageError: the arguments break MLflow's rules.
    """
    check_experiment_id(experiment_id)
    body: dict[str, Any] = {"experiment_id": experiment_id}
    batch_size: int | None
    if (max_timestamp_millis is None) == (trace_ids is None):
        raise UsageError(
            "give exactly one of max_timestamp_millis and trace_ids "
            "(MLflow deletes by cutoff or by IDs)"
        )
    if max_timestamp_millis is not None:
        if not is_int(max_timestamp_millis) or max_timestamp_millis <= 0:
            raise UsageError(
                f"max_timestamp_millis must be an integer > 0, got {max_timestamp_millis!r} "
                "(0 means 'delete everything' on some servers)"
            )
        body["max_timestamp_millis"] = max_timestamp_millis
        if max_traces is not None:
            if not is_int(max_traces) or max_traces <= 0:
                raise UsageError(f"max_traces must be an integer > 0, got {max_traces!r}")
            body["max_traces"] = max_traces
        batch_size = max_traces
    else:
        assert trace_ids is not None
        if max_traces is not None:
            raise UsageError("max_traces cannot be used with trace_ids (MLflow's rule)")
        if isinstance(trace_ids, str):
            raise UsageError("trace_ids must be a list of IDs, not a single string")
        ids = list(trace_ids)
        if not ids:
            raise UsageError("trace_ids must not be empty")
        if not all(isinstance(item, str) and item for item in ids):
            raise UsageError("trace_ids must all be non-empty strings")
        body["request_ids"] = ids
        batch_size = len(ids)
    return body, batch_size


def search_body(
    experiment_id: str,
    *,
    filter_string: str | None,
    max_results: int,
    order_by: Sequence[str],
    page_token: str | None,
) -> dict[str, Any]:
    """The ``traces/search`` body for one experiment's page.

    Raises:
        UsageError: the page size is outside 1..500 or the experiment ID is empty.
    """
    check_experiment_id(experiment_id)
    if not is_int(max_results) or not 1 <= max_results <= MAX_SEARCH_PAGE:
        raise UsageError(f"max_results must be an integer in 1..{MAX_SEARCH_PAGE}")
    body: dict[str, Any] = {
        "locations": [
            {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
        ],
        "max_results": max_results,
        "order_by": list(order_by),
    }
    if filter_string:
        body["filter"] = filter_string
    if page_token:
        body["page_token"] = page_token
    return body


def count_body(query: CountQuery) -> dict[str, Any]:
    """The ``traces/metrics`` body that counts ``query`` exactly (one data point)."""
    check_experiment_id(query.experiment_id)
    if not (is_int(query.start_ms) and is_int(query.end_ms)) or query.start_ms < 0:
        raise UsageError(f"count bounds must be integers >= 0, got {query!r}")
    body: dict[str, Any] = {
        "experiment_ids": [query.experiment_id],
        "view_type": "TRACES",
        "metric_name": "trace_count",
        "aggregations": [{"aggregation_type": "COUNT"}],
        "start_time_ms": query.start_ms,
        "end_time_ms": query.end_ms,
    }
    if query.filters:
        body["filters"] = list(query.filters)
    return body
