"""Create experiments and traces with chosen timestamps, states and tags; read back what is left.

Two ways to seed: through MLflow's REST API (`seed_traces_api`, ~50-200 traces/s, exactly what a
client would do) and straight into the server's SQLite database (`seed_traces_sql`, ~10k+
traces/s, for scale). Both produce the same rows, so search and delete see no difference.
`remaining_traces` pages through the search API to report what is on the server now.
"""

from __future__ import annotations

import calendar
import contextlib
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx

__all__ = [
    "ARTIFACT_LOCATION_TAG",
    "INFO_FINALIZED_METADATA",
    "TRACE_STATES",
    "FrozenTags",
    "SeedError",
    "SeedTrace",
    "StoredTrace",
    "create_experiment",
    "format_request_time",
    "make_trace_id",
    "make_traces",
    "parse_request_time_ms",
    "remaining_ids",
    "remaining_traces",
    "seed_traces_api",
    "seed_traces_sql",
]

TRACE_STATES = frozenset({"OK", "ERROR", "IN_PROGRESS"})
SEARCH_PAGE_SIZE = 500  # the server's maximum
REQUEST_TIMEOUT_SECONDS = 60.0  # SQLite writers may wait out the server's 20 s busy timeout
SQLITE_BUSY_TIMEOUT_SECONDS = 60.0
ARTIFACT_LOCATION_TAG = "mlflow.artifactLocation"
INFO_FINALIZED_METADATA = "mlflow.trace.infoFinalized"

CREATE_EXPERIMENT_PATH = "/api/2.0/mlflow/experiments/create"
CREATE_TRACE_PATH = "/api/3.0/mlflow/traces"
SEARCH_TRACES_PATH = "/api/3.0/mlflow/traces/search"

_TRACE_ID = re.compile(r"tr-[0-9a-f]{32}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SeedError(RuntimeError):
    """The server refused a seeding or read-back request; carries the status and body."""

    def __init__(self, action: str, response: httpx.Response) -> None:
        self.action = action
        self.status_code = response.status_code
        self.body = response.text
        super().__init__(f"{action}: HTTP {self.status_code}: {self.body[:500]}")


class FrozenTags(Mapping[str, str]):
    """An immutable, hashable str -> str mapping that compares equal to any equal mapping."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, str] = dict(items)

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self._items == dict(other.items())

    def __repr__(self) -> str:
        return f"FrozenTags({self._items!r})"


@dataclass(frozen=True)
class SeedTrace:
    """One trace to create: its ID, start time, final state, tags and duration."""

    trace_id: str
    timestamp_ms: int
    state: str = "OK"
    tags: Mapping[str, str] = field(default_factory=FrozenTags)
    execution_time_ms: int = 10

    def __post_init__(self) -> None:
        if not _TRACE_ID.fullmatch(self.trace_id):
            raise ValueError(f"trace_id must be 'tr-' + 32 lowercase hex, got {self.trace_id!r}")
        if self.state not in TRACE_STATES:
            raise ValueError(f"state must be one of {sorted(TRACE_STATES)}, got {self.state!r}")
        if self.timestamp_ms < 0 or self.execution_time_ms < 0:
            raise ValueError("timestamp_ms and execution_time_ms must not be negative")
        object.__setattr__(self, "tags", FrozenTags(self.tags))


@dataclass(frozen=True)
class StoredTrace:
    """One trace as the search API reports it."""

    trace_id: str
    timestamp_ms: int
    state: str
    tags: Mapping[str, str]
    metadata: Mapping[str, str] = field(default_factory=FrozenTags)
    execution_time_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", FrozenTags(self.tags))
        object.__setattr__(self, "metadata", FrozenTags(self.metadata))

    @property
    def user_tags(self) -> FrozenTags:
        """The tags without the `mlflow.`-prefixed ones the server adds itself."""
        return FrozenTags((k, v) for k, v in self.tags.items() if not k.startswith("mlflow."))


def make_trace_id() -> str:
    """Return a fresh random trace ID in MLflow's `tr-<32 hex>` form."""
    return f"tr-{uuid.uuid4().hex}"


def make_traces(
    count: int,
    *,
    start_ms: int,
    step_ms: int = 1,
    state: str = "OK",
    tags: Mapping[str, str] | None = None,
    error_every: int | None = None,
) -> list[SeedTrace]:
    """Build `count` traces with unique random IDs and timestamps `start_ms + i * step_ms`.

    Args:
        count: Number of traces.
        start_ms: Timestamp of the first trace (epoch milliseconds).
        step_ms: Gap between consecutive timestamps; 0 gives them all the same timestamp.
        state: State of every trace, except those `error_every` turns into ERROR.
        tags: Tags put on every trace.
        error_every: When set, every `error_every`-th trace (the 1st-based positions
            `error_every`, `2 * error_every`, ...) gets state ERROR.

    Returns:
        The traces, oldest first.
    """
    if error_every is not None and error_every < 1:
        raise ValueError(f"error_every must be >= 1, got {error_every}")
    shared_tags = FrozenTags(tags or {})
    return [
        SeedTrace(
            trace_id=make_trace_id(),
            timestamp_ms=start_ms + index * step_ms,
            state="ERROR" if error_every and (index + 1) % error_every == 0 else state,
            tags=shared_tags,
        )
        for index in range(count)
    ]


def format_request_time(timestamp_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with exactly three fraction digits."""
    seconds, millis = divmod(timestamp_ms, 1000)
    moment = _EPOCH + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def parse_request_time_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp (0-9 fraction digits, Z or offset) to epoch milliseconds.

    Digits beyond milliseconds are truncated towards the past, as MLflow stores milliseconds.

    Raises:
        ValueError: `text` is not RFC 3339.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, _, sign, offset_hours, offset_minutes = match.groups()[6:]
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if sign is not None:
        offset = int(offset_hours) * 3600 + int(offset_minutes) * 60
        seconds -= offset if sign == "+" else -offset
    millis = int((fraction or "").ljust(9, "0")) // 1_000_000
    return seconds * 1000 + millis


async def create_experiment(base_url: str, name: str | None = None) -> str:
    """Create an experiment (uniquely named when `name` is None) and return its ID.

    Raises:
        SeedError: The server did not answer 200.
    """
    name = name or f"seed-{uuid.uuid4().hex}"
    async with _client(base_url) as client:
        response = await client.post(CREATE_EXPERIMENT_PATH, json={"name": name})
    _raise_for_status(response, f"create experiment {name!r}")
    experiment_id: str = response.json()["experiment_id"]
    return experiment_id


async def seed_traces_api(
    base_url: str, experiment_id: str, traces: Sequence[SeedTrace], *, concurrency: int = 8
) -> None:
    """Create `traces` in the experiment through `POST /api/3.0/mlflow/traces`.

    Args:
        base_url: Server URL, e.g. `http://127.0.0.1:5000`.
        experiment_id: Experiment to put the traces in.
        traces: Traces to create.
        concurrency: Requests in flight at most. Keep it under the server's SQLAlchemy pool
            (5 + 10 overflow connections by default): 16 can exhaust it and get a 400
            "QueuePool limit ... reached".

    Raises:
        SeedError: Any request did not answer 200 (the remaining requests are cancelled).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    pending = iter(traces)

    async def create_until_done(client: httpx.AsyncClient) -> None:
        # Workers share one iterator: next() never awaits, so no trace is taken twice.
        for trace in pending:
            response = await client.post(
                CREATE_TRACE_PATH, json=_create_trace_body(experiment_id, trace)
            )
            _raise_for_status(response, f"create trace {trace.trace_id}")

    async with _client(base_url) as client:
        try:
            async with anyio.create_task_group() as task_group:
                for _ in range(min(concurrency, len(traces))):
                    task_group.start_soon(create_until_done, client)
        except ExceptionGroup as group:
            # The first failure cancels the other workers, so there is normally one error.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


def seed_traces_sql(db_path: Path, experiment_id: str, traces: Sequence[SeedTrace]) -> None:
    """Insert `traces` straight into the server's SQLite database, in one transaction.

    The rows match what `seed_traces_api` makes the server write (trace_info, the
    `mlflow.artifactLocation` tag, the `mlflow.trace.infoFinalized` metadata), so search and
    delete treat both alike. The server must have created the schema (it does at startup).

    Raises:
        ValueError: The experiment does not exist in that database.
    """
    with contextlib.closing(
        sqlite3.connect(db_path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
    ) as connection:
        row = connection.execute(
            "SELECT artifact_location FROM experiments WHERE experiment_id = ?",
            (int(experiment_id),),
        ).fetchone()
        if row is None:
            raise ValueError(f"experiment {experiment_id} does not exist in {db_path}")
        artifact_root = str(row[0]).rstrip("/")
        with connection:  # one transaction: commits on success, rolls back on error
            connection.executemany(
                "INSERT INTO trace_info"
                " (request_id, experiment_id, timestamp_ms, execution_time_ms, status)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    (t.trace_id, int(experiment_id), t.timestamp_ms, t.execution_time_ms, t.state)
                    for t in traces
                ),
            )
            connection.executemany(
                'INSERT INTO trace_tags ("key", value, request_id) VALUES (?, ?, ?)',
                _sql_tag_rows(traces, artifact_root),
            )
            connection.executemany(
                'INSERT INTO trace_request_metadata ("key", value, request_id) VALUES (?, ?, ?)',
                ((INFO_FINALIZED_METADATA, "true", t.trace_id) for t in traces),
            )


async def remaining_traces(
    base_url: str, experiment_id: str, *, filter_string: str | None = None
) -> list[StoredTrace]:
    """Return every trace of the experiment (matching `filter_string`), oldest first.

    Pages through `POST /api/3.0/mlflow/traces/search` to the end. The page token is an
    offset, so do not delete while this runs.

    Raises:
        SeedError: A search request did not answer 200.
    """
    body: dict[str, Any] = {
        "locations": [
            {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
        ],
        "max_results": SEARCH_PAGE_SIZE,
        "order_by": ["timestamp_ms ASC"],
    }
    if filter_string is not None:
        body["filter"] = filter_string
    found: list[StoredTrace] = []
    async with _client(base_url) as client:
        while True:
            response = await client.post(SEARCH_TRACES_PATH, json=body)
            _raise_for_status(response, f"search traces of experiment {experiment_id}")
            page = response.json()
            found.extend(_stored_trace(item) for item in page.get("traces", []))
            next_token = page.get("next_page_token")
            if not next_token:
                return found
            body["page_token"] = next_token


async def remaining_ids(base_url: str, experiment_id: str) -> set[str]:
    """Return the IDs of every trace left in the experiment."""
    return {trace.trace_id for trace in await remaining_traces(base_url, experiment_id)}


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS)


def _raise_for_status(response: httpx.Response, action: str) -> None:
    if response.status_code != 200:
        raise SeedError(action, response)


def _create_trace_body(experiment_id: str, trace: SeedTrace) -> dict[str, Any]:
    return {
        "trace": {
            "trace_info": {
                "trace_id": trace.trace_id,
                "trace_location": {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": experiment_id},
                },
                "request_time": format_request_time(trace.timestamp_ms),
                "execution_duration": f"{trace.execution_time_ms / 1000:.3f}s",
                "state": trace.state,
                "trace_metadata": {},
                "tags": dict(trace.tags),
            }
        }
    }


def _sql_tag_rows(
    traces: Sequence[SeedTrace], artifact_root: str
) -> Iterator[tuple[str, str, str]]:
    for trace in traces:
        yield (
            ARTIFACT_LOCATION_TAG,
            f"{artifact_root}/traces/{trace.trace_id}/artifacts",
            trace.trace_id,
        )
        for key, value in trace.tags.items():
            yield (key, value, trace.trace_id)


def _stored_trace(item: Mapping[str, Any]) -> StoredTrace:
    return StoredTrace(
        trace_id=item["trace_id"],
        timestamp_ms=parse_request_time_ms(item["request_time"]),
        state=item["state"],
        tags=item.get("tags", {}),
        metadata=item.get("trace_metadata", {}),
        execution_time_ms=_duration_ms(item.get("execution_duration")),
    )


def _duration_ms(duration: str | None) -> int | None:
    """Convert a protobuf JSON duration such as `"0.010s"` to whole milliseconds."""
    if duration is None:
        return None
    seconds, _, fraction = duration.removesuffix("s").partition(".")
    return int(seconds) * 1000 + int(fraction.ljust(9, "0")[:9]) // 1_000_000
