"""The backfill every variant cleans up: K experiments x N old traces plus M new ones.

The rows are generated deterministically, so reseeding before each variant restores exactly the
same data (same IDs, timestamps, states, tags, metadata, spans and assessments).

Each trace has the shape the MLflow SDK gives a small traced call (measured with
`tests/support/sdk_traces.py` against mlflow 3.17.2: a root span and two children, span
`content` JSON of 544-1,625 bytes, mean 633; 4 tags and 12 metadata entries): `SPANS_PER_TRACE`
spans of about `SPAN_CONTENT_BYTES` each, in the `spans` table MLflow >= 3.6 deletes by
cascade, and one trace in `ASSESSMENT_EVERY` carries a feedback assessment (a few users rate a
few answers; the SDK test helper rates every trace, which no production app does).
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
SpanRow = tuple[str, int, str, str | None, str, str, str, int, int, str]
"""(trace_id, experiment_id, span_id, parent_span_id, name, type, status, start_time_unix_nano,
end_time_unix_nano, content) of `spans`."""
AssessmentRow = tuple[str, str, str, str, str, int, int, str, str, bool, int, int]
"""(assessment_id, trace_id, name, assessment_type, value, created_timestamp,
last_updated_timestamp, source_type, source_id, valid, experiment_id, trace_timestamp_ms) of
`assessments`."""

SPANS_PER_TRACE = 3
SPAN_CONTENT_BYTES = 640
ASSESSMENT_EVERY = 10
SPAN_NAMES = (("answer", "CHAIN"), ("retrieve", "RETRIEVER"), ("lookup", "TOOL"))
METADATA_KEYS = (
    ("mlflow.source.git.branch", "main"),
    ("mlflow.source.git.commit", "0123456789abcdef0123456789abcdef01234567"),
    ("mlflow.source.name", "/srv/app/chains/answer_questions_service.py"),
    ("mlflow.source.type", "LOCAL"),
    ("mlflow.trace.infoFinalized", "true"),
    ("mlflow.trace.sizeBytes", "2214"),
    (
        "mlflow.trace.sizeStats",
        '{"total_size_bytes": 2214, "num_spans": 3, "max": 640, "p50": 640}',
    ),
    ("mlflow.traceInputs", '{"question": "what is the refund policy?"}'),
    ("mlflow.traceOutputs", '"see section 4"'),
)


@dataclass(frozen=True)
class TraceBatch:
    """Rows for the three trace tables, ready for a bulk insert."""

    traces: list[TraceRow]
    tags: list[KeyValueRow]
    metadata: list[KeyValueRow]
    spans: list[SpanRow] = field(default_factory=list)
    assessments: list[AssessmentRow] = field(default_factory=list)


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


def _span_content(request_id: str, span_id: str, name: str, kind: str, start_ns: int) -> str:
    """A span's JSON as the SDK stores it, padded to `SPAN_CONTENT_BYTES` with its inputs.

    No tabs, newlines or backslashes: the rows go through PostgreSQL's COPY text format.
    """
    head = (
        f'{{"trace_id": "{request_id[3:27]}", "span_id": "{span_id}", "name": "{name}",'
        f' "start_time_unix_nano": {start_ns}, "end_time_unix_nano": {start_ns + 1_000_000},'
        ' "events": [], "status": {"code": "STATUS_CODE_OK", "message": ""}, "attributes":'
        f' {{"mlflow.traceRequestId": "{request_id}", "mlflow.spanType": "{kind}",'
        ' "mlflow.spanInputs": "'
    )
    tail = '"}, "links": []}'
    filler = "question about the refund policy of order 12345 " * 20
    return head + filler[: max(0, SPAN_CONTENT_BYTES - len(head) - len(tail))] + tail


def _spans(request_id: str, experiment_id: int, timestamp_ms: int, status: str) -> list[SpanRow]:
    """The trace's root span and its children, as the SDK logs a nested call."""
    rows: list[SpanRow] = []
    span_status = "ERROR" if status == "ERROR" else "OK"
    root = request_id[3:19]
    for position, (name, kind) in enumerate(SPAN_NAMES[:SPANS_PER_TRACE]):
        span_id = request_id[3 + position : 19 + position]
        start_ns = timestamp_ms * 1_000_000 + position * 1_000
        content = _span_content(request_id, span_id, name, kind, start_ns)
        parent = None if position == 0 else root
        rows.append(
            (
                request_id,
                experiment_id,
                span_id,
                parent,
                name,
                kind,
                span_status,
                start_ns,
                start_ns + 1_000_000,
                content,
            )
        )
    return rows


def generate_rows(
    experiment_id: int,
    kind: str,
    count: int,
    cutoff_ms: int,
    *,
    chunk: int = 20_000,
) -> Iterator[TraceBatch]:
    """Yield the rows of `count` traces of one kind ("old" or "new") in chunks.

    Every trace has the tags and metadata a real v3 trace carries (artifact location, spans
    location, trace name, schema version, user, source), every third one an `env` tag, its
    spans, and every `ASSESSMENT_EVERY`-th one a feedback assessment; the state cycles through
    OK, ERROR and IN_PROGRESS, so the deletes also cascade into every child table.
    """
    for start in range(0, count, chunk):
        traces: list[TraceRow] = []
        tags: list[KeyValueRow] = []
        metadata: list[KeyValueRow] = []
        spans: list[SpanRow] = []
        assessments: list[AssessmentRow] = []
        for index in range(start, min(count, start + chunk)):
            request_id = trace_id(experiment_id, kind, index)
            timestamp = _timestamp(kind, index, count, cutoff_ms)
            status = STATES[index % 5]
            traces.append((request_id, experiment_id, timestamp, 5 + index % 997, status))
            tags.append(
                (
                    "mlflow.artifactLocation",
                    f"mlflow-artifacts:/{experiment_id}/traces/{request_id}/artifacts",
                    request_id,
                )
            )
            tags.append(("mlflow.trace.spansLocation", "TRACKING_STORE", request_id))
            tags.append(("mlflow.traceName", f"chain_{index % 17}", request_id))
            if index % 3 == 0:
                tags.append(("env", ENVIRONMENTS[index % 9 // 3], request_id))
            metadata.append(("mlflow.trace_schema.version", "3", request_id))
            metadata.append(("mlflow.trace.user", f"user-{index % 41}", request_id))
            metadata.extend((key, value, request_id) for key, value in METADATA_KEYS)
            spans.extend(_spans(request_id, experiment_id, timestamp, status))
            if index % ASSESSMENT_EVERY == 0:
                assessments.append(
                    (
                        "a-" + request_id[3:],
                        request_id,
                        "helpful",
                        "feedback",
                        "true",
                        timestamp + 60_000,
                        timestamp + 60_000,
                        "HUMAN",
                        f"user-{index % 41}",
                        True,
                        experiment_id,
                        timestamp,
                    )
                )
        yield TraceBatch(traces, tags, metadata, spans, assessments)
