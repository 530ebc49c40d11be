"""What MLflow's REST API sends, as plain values: the data types and their parsers.

Pure: no ``httpx``, no I/O. :mod:`._client` sends the requests and hands the bodies and
headers here; :mod:`._error_table` maps error answers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ._exceptions import InvalidResponseError

__all__ = [
    "ARTIFACT_LOCATION_TAG",
    "ArtifactFile",
    "ErrorBody",
    "Experiment",
    "TracePage",
    "TraceSummary",
    "artifact_files",
    "count_from",
    "error_body",
    "excerpt",
    "experiment_from",
    "experiment_of",
    "experiment_tags",
    "experiments_from",
    "iter_pages",
    "parse_retry_after",
    "parse_rfc3339_millis",
    "trace_info_ids",
    "trace_summary",
]

_MAX_ERROR_TEXT = 500
ARTIFACT_LOCATION_TAG = "mlflow.artifactLocation"


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace as search returns it: enough to decide and to delete."""

    trace_id: str
    timestamp_ms: int
    state: str
    experiment_id: str | None = None
    """The experiment the answer says the trace belongs to (``None`` if it did not say)."""
    artifact_location: str | None = None
    """Its ``mlflow.artifactLocation`` tag: where its artifacts (``traces.json``) are."""


@dataclass(frozen=True, slots=True)
class TracePage:
    """One page of search results and the token of the next page (an offset), if any."""

    traces: tuple[TraceSummary, ...]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class Experiment:
    """An MLflow experiment."""

    experiment_id: str
    name: str
    lifecycle_stage: str
    artifact_location: str | None = None
    """Where its runs' and traces' artifacts go (``mlflow-artifacts:/<id>`` when the
    server serves them)."""
    tags: dict[str, str] = field(default_factory=dict, hash=False)
    """Its tags (a retention tag, a team)."""


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One entry of an artifact listing: a file or a folder, by name."""

    name: str
    is_dir: bool
    size: int | None
    """Bytes, for a file whose size the listing gave."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3).

    Args:
        value: The header value, or ``None``.
        now: The current Unix time, for HTTP dates (default: ``time.time()``).

    Returns:
        Seconds to wait (never negative), or ``None`` if absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_rfc3339_millis(text: str) -> int:
    """Convert an RFC 3339 timestamp (protobuf JSON ``Timestamp``) to epoch milliseconds.

    Exact for any number of fractional digits (0 to 9): no float rounding.
    """
    stamp = text.strip()
    if stamp.endswith(("Z", "z")):
        stamp = stamp[:-1] + "+00:00"
    fraction_ms = 0
    if "." in stamp:
        head, rest = stamp.split(".", 1)
        digits = ""
        for char in rest:
            if not char.isdigit():
                break
            digits += char
        tail = rest[len(digits) :]
        fraction_ms = int((digits + "000")[:3]) if digits else 0
        stamp = head + tail
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return int(parsed.timestamp()) * 1000 + fraction_ms


async def iter_pages(
    fetch: Callable[[str | None], Awaitable[TracePage]],
) -> AsyncIterator[TraceSummary]:
    """Yield the traces of every page ``fetch(page_token)`` answers, until a page has no
    next token (or no traces)."""
    token: str | None = None
    while True:
        page = await fetch(token)
        for trace in page.traces:
            yield trace
        token = page.next_page_token
        if not token or not page.traces:
            return


def excerpt(text: str) -> str:
    """``text`` on one line, cut to a readable length."""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "…"


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """An error answer's body: MLflow's ``error_code`` and ``message`` when it is MLflow's
    JSON error shape (each ``None`` when absent or not a string), and an excerpt of the raw
    text (its basic-auth app, proxies, gateways and CDNs answer plain text or HTML)."""

    error_code: str | None
    message: str | None
    text: str


def error_body(raw: str) -> ErrorBody:
    """Read an error answer's body (decoded text)."""
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        code = payload.get("error_code")
        message = payload.get("message")
        return ErrorBody(
            code if isinstance(code, str) else None,
            excerpt(message) if isinstance(message, str) else None,
            excerpt(raw),
        )
    return ErrorBody(None, None, excerpt(raw))


def trace_summary(item: Mapping[str, Any]) -> TraceSummary:
    trace_id = item["trace_id"]
    if not isinstance(trace_id, str):
        raise TypeError("trace_id is not a string")
    request_time = item["request_time"]
    if not isinstance(request_time, str):
        raise TypeError("request_time is not a string")
    state = item.get("state", "STATE_UNSPECIFIED")
    experiment_id: str | None = None
    location = item.get("trace_location")
    if isinstance(location, dict):
        experiment = location.get("mlflow_experiment")
        if isinstance(experiment, dict) and experiment.get("experiment_id") is not None:
            experiment_id = str(experiment["experiment_id"])
    tags = item.get("tags")
    location_tag = tags.get(ARTIFACT_LOCATION_TAG) if isinstance(tags, dict) else None
    return TraceSummary(
        trace_id=trace_id,
        timestamp_ms=parse_rfc3339_millis(request_time),
        state=str(state),
        experiment_id=experiment_id,
        artifact_location=location_tag if isinstance(location_tag, str) else None,
    )


def artifact_files(payload: Mapping[str, Any]) -> tuple[ArtifactFile, ...]:
    """The entries of an artifact listing (``{"files": [...]}``; none when omitted).

    Raises:
        TypeError: an entry is not ``{"path": str, "is_dir": bool, "file_size": int}``.
    """
    files = payload.get("files", [])
    if not isinstance(files, list):
        raise TypeError("files is not a list")
    entries = []
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise TypeError(f"unexpected listing entry {item!r}")
        size = item.get("file_size")
        entries.append(
            ArtifactFile(
                name=item["path"].rsplit("/", 1)[-1],
                is_dir=item.get("is_dir") is True,
                size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
            )
        )
    return tuple(entries)


def trace_info_ids(payload: Mapping[str, Any]) -> frozenset[str]:
    """The trace IDs a ``traces/batchGetInfos`` answer holds (``{"trace_infos": [...]}``).

    Raises:
        TypeError: the answer is not that shape.
    """
    infos = payload.get("trace_infos", [])
    if not isinstance(infos, list):
        raise TypeError("trace_infos is not a list")
    ids = set()
    for info in infos:
        trace_id = info.get("trace_id") if isinstance(info, dict) else None
        if not isinstance(trace_id, str):
            raise TypeError(f"unexpected trace info {info!r}")
        ids.add(trace_id)
    return frozenset(ids)


def experiment_from(payload: Mapping[str, Any], endpoint: str) -> Experiment:
    return experiment_of(payload.get("experiment"), endpoint)


def experiments_from(
    payload: Mapping[str, Any], endpoint: str
) -> tuple[tuple[Experiment, ...], str | None]:
    """One page of ``experiments/search``: its experiments and the next page's token."""
    items = payload.get("experiments", [])
    if not isinstance(items, list):
        raise InvalidResponseError(
            "the server answered an unexpected experiments shape",
            status_code=200,
            endpoint=endpoint,
            outcome_unknown=False,
        )
    token = payload.get("next_page_token") or None
    return (
        tuple(experiment_of(item, endpoint) for item in items),
        token if isinstance(token, str) else None,
    )


def experiment_of(data: object, endpoint: str) -> Experiment:
    """One experiment of an answer."""
    if not isinstance(data, dict) or not isinstance(data.get("experiment_id"), str):
        raise InvalidResponseError(
            "the server answered an unexpected experiment shape",
            status_code=200,
            endpoint=endpoint,
            outcome_unknown=False,
        )
    return Experiment(
        experiment_id=data["experiment_id"],
        name=str(data.get("name", "")),
        lifecycle_stage=str(data.get("lifecycle_stage", "active")),
        artifact_location=location
        if isinstance(location := data.get("artifact_location"), str)
        else None,
        tags=experiment_tags(data),
    )


def experiment_tags(data: Mapping[str, Any]) -> dict[str, str]:
    """An experiment answer's ``tags`` (a list of ``{"key", "value"}``) as a mapping."""
    tags = data.get("tags")
    if not isinstance(tags, list):
        return {}
    return {
        str(item["key"]): str(item.get("value", ""))
        for item in tags
        if isinstance(item, dict) and "key" in item
    }


def count_from(payload: Mapping[str, Any]) -> int:
    """The ``COUNT`` of a ``traces/metrics`` answer (no data point means none matched).

    Raises:
        ValueError: the answer is not one whole, non-negative count.
    """
    points = payload.get("data_points", [])
    if not isinstance(points, list) or len(points) > 1:
        raise ValueError(f"expected at most one data point, got {points!r}")
    if not points:
        return 0
    values = points[0].get("values") if isinstance(points[0], dict) else None
    count = values.get("COUNT") if isinstance(values, dict) else None
    if not isinstance(count, int | float) or isinstance(count, bool):
        raise ValueError(f"no COUNT in {points[0]!r}")  # noqa: TRY004 - a bad answer
    if count < 0 or count != int(count):
        raise ValueError(f"COUNT is not a whole number >= 0: {count!r}")
    return int(count)
