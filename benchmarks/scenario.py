"""The backfill every variant cleans up: K experiments x N old traces plus M new ones.

The rows are generated deterministically, so reseeding before each variant restores exactly the
same data (same IDs, timestamps, states, tags and metadata).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

DAY_MS = 86_400_000
OLD_SPAN_MS = 60 * DAY_MS
NEW_SPAN_MS = 29 * DAY_MS

STATES = ("OK", "OK", "OK", "ERROR", "IN_PROGRESS")
ENVIRONMENTS = ("prod", "staging", "dev")

TraceRow = tuple[str, int, int, int, str]
"""(request_id, experiment_id, timestamp_ms, execution_time_ms, status) of `trace_info`."""
KeyValueRow = tuple[str, str, str]
"""(key, value, request_id) of `trace_tags` and `trace_request_metadata`."""


@dataclass(frozen=True)
class TraceBatch:
    """Rows for the three trace tables, ready for a bulk insert."""

    traces: list[TraceRow]
    tags: list[KeyValueRow]
    metadata: list[KeyValueRow]


@dataclass(frozen=True)
class Scenario:
    """The shape of the backfill: how many experiments and traces, and where the cutoff is."""

    experiments: int
    old: int
    new: int
    cutoff_ms: int = field(default_factory=lambda: default_cutoff_ms())

    @property
    def total_old(self) -> int:
        """All traces older than the cutoff, over all experiments."""
        return self.experiments * self.old

    @property
    def total_new(self) -> int:
        """All traces newer than the cutoff, over all experiments."""
        return self.experiments * self.new


def default_cutoff_ms(now_ms: int | None = None) -> int:
    """30 days before now, rounded down to a whole day, so new traces lie in the past too.

    The engine refuses cutoffs in the future, so the cutoff follows the clock; within one run
    every variant sees the same rows.
    """
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return (now - 30 * DAY_MS) // DAY_MS * DAY_MS


def trace_id(experiment_id: int, kind: str, index: int) -> str:
    """A stable, random-looking `tr-<32 hex>` ID for one seeded trace."""
    digest = hashlib.blake2b(f"{experiment_id}:{kind}:{index}".encode(), digest_size=16)
    return "tr-" + digest.hexdigest()


def _timestamp(kind: str, index: int, count: int, cutoff_ms: int) -> int:
    """Spread `count` traces evenly over the old or the new window; old ones end at the cutoff."""
    if kind == "old":
        step = max(1, OLD_SPAN_MS // max(count, 1))
        return cutoff_ms - OLD_SPAN_MS + (index + 1) * step
    step = max(1, NEW_SPAN_MS // max(count, 1))
    return cutoff_ms + 1 + index * step


def generate_rows(
    experiment_id: int,
    kind: str,
    count: int,
    cutoff_ms: int,
    *,
    chunk: int = 20_000,
) -> Iterator[TraceBatch]:
    """Yield the rows of `count` traces of one kind ("old" or "new") in chunks.

    Every trace has the tags and metadata a real v3 trace carries (artifact location, trace name,
    schema version, user), every third one an `env` tag, and the state cycles through OK, ERROR
    and IN_PROGRESS, so the deletes also cascade into the child tables.
    """
    for start in range(0, count, chunk):
        traces: list[TraceRow] = []
        tags: list[KeyValueRow] = []
        metadata: list[KeyValueRow] = []
        for index in range(start, min(count, start + chunk)):
            request_id = trace_id(experiment_id, kind, index)
            timestamp = _timestamp(kind, index, count, cutoff_ms)
            traces.append(
                (request_id, experiment_id, timestamp, 5 + index % 997, STATES[index % 5])
            )
            tags.append(
                (
                    "mlflow.artifactLocation",
                    f"mlflow-artifacts:/{experiment_id}/traces/{request_id}/artifacts",
                    request_id,
                )
            )
            tags.append(("mlflow.traceName", f"chain_{index % 17}", request_id))
            if index % 3 == 0:
                tags.append(("env", ENVIRONMENTS[index % 9 // 3], request_id))
            metadata.append(("mlflow.trace_schema.version", "3", request_id))
            metadata.append(("mlflow.trace.user", f"user-{index % 41}", request_id))
        yield TraceBatch(traces, tags, metadata)
