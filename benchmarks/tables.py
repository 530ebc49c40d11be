"""The five trace tables the benchmark seeds, restores and checks, and how to name their columns.

A delete removes a `trace_info` row; its tags, metadata, spans and assessments go by the
database's `ON DELETE CASCADE` (mlflow/store/tracking/dbmodels/models.py, 3.17.2). Columns not
listed here are nullable or computed (`spans.duration_ns`) or have a database default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.scenario import TraceBatch


@dataclass(frozen=True)
class Table:
    """One table: its columns, where its rows are in a `TraceBatch`, and its trace column."""

    name: str
    columns: tuple[str, ...]
    batch_field: str
    trace_column: str

    @property
    def trace_index(self) -> int:
        """Position of the trace ID in a row of this table."""
        return self.columns.index(self.trace_column)

    def column_list(self, quote: Callable[[str], str]) -> str:
        """The columns, comma-separated, each quoted the database's way."""
        return ", ".join(quote(column) for column in self.columns)

    def rows(self, batch: TraceBatch) -> Sequence[tuple[Any, ...]]:
        """This table's rows in `batch`."""
        rows: Sequence[tuple[Any, ...]] = getattr(batch, self.batch_field)
        return rows


TRACE_INFO = Table(
    "trace_info",
    ("request_id", "experiment_id", "timestamp_ms", "execution_time_ms", "status"),
    "traces",
    "request_id",
)
CHILD_TABLES = (
    Table("trace_tags", ("key", "value", "request_id"), "tags", "request_id"),
    Table("trace_request_metadata", ("key", "value", "request_id"), "metadata", "request_id"),
    Table(
        "spans",
        (
            "trace_id",
            "experiment_id",
            "span_id",
            "parent_span_id",
            "name",
            "type",
            "status",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "content",
        ),
        "spans",
        "trace_id",
    ),
    Table(
        "assessments",
        (
            "assessment_id",
            "trace_id",
            "name",
            "assessment_type",
            "value",
            "created_timestamp",
            "last_updated_timestamp",
            "source_type",
            "source_id",
            "valid",
            "experiment_id",
            "trace_timestamp_ms",
        ),
        "assessments",
        "trace_id",
    ),
)
TABLES = (TRACE_INFO, *CHILD_TABLES)


def double_quoted(column: str) -> str:
    """SQLite and PostgreSQL identifier quoting (`key` is a keyword)."""
    return f'"{column}"'


def backquoted(column: str) -> str:
    """MySQL / MariaDB identifier quoting."""
    return f"`{column}`"


def without(batch: TraceBatch, present: set[str]) -> TraceBatch:
    """The rows of `batch` whose trace is not in `present`."""
    if not present:
        return batch
    parts = {
        table.batch_field: [
            row for row in table.rows(batch) if row[table.trace_index] not in present
        ]
        for table in TABLES
    }
    return TraceBatch(**parts)
