"""Direct access to the tracking server's database: bulk seeding and ground-truth counts.

Seeding through MLflow's API runs at ~50-200 traces/s, far too slow for a backfill of hundreds
of thousands of traces, so once the server has created the schema the runner inserts rows into
`trace_info` and its child tables (`benchmarks.tables`: tags, metadata, spans, assessments)
directly. Verification reads the same tables: what is left in the database is the truth, not
what a client reports. SQLite lives here; PostgreSQL in `benchmarks.postgres_database`, MySQL /
MariaDB in `benchmarks.mysql_database`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from benchmarks.scenario import Scenario, TraceBatch, generate_rows
from benchmarks.tables import CHILD_TABLES, TABLES, double_quoted, without

ExperimentCounts = dict[str, tuple[int, int]]
"""experiment ID -> (traces at or before the cutoff, traces after it)."""


class TraceDatabase(Protocol):
    """What the runner needs from a backend store; one implementation per database engine."""

    kind: str

    def insert(self, batch: TraceBatch) -> None:
        """Insert one chunk of trace rows and their tags and metadata in one transaction."""

    def delete_traces(self, experiment_ids: Sequence[str]) -> None:
        """Remove every trace (and its child rows) of the given experiments."""

    def counts(self, experiment_ids: Sequence[str], cutoff_ms: int) -> ExperimentCounts:
        """Count old and new traces per experiment."""

    def old_trace_ids(self, experiment_id: str, cutoff_ms: int) -> set[str]:
        """IDs of the experiment's traces at or before the cutoff."""

    def orphans(self) -> int:
        """Child rows whose trace is gone: a delete that forgot its cascade."""

    def snapshot(self, experiment_ids: Sequence[str]) -> bool:
        """Keep a pristine copy of the experiments' rows in staging tables the server never
        reads; False when the store cannot (the REST API)."""

    def restore_snapshot(self, experiment_ids: Sequence[str]) -> int | None:
        """Insert, set-based, the snapshot's traces (and their child rows) that are missing;
        None when these experiments have no snapshot."""

    def settle(self) -> None:
        """Bring the store to a steady state after seeding (statistics, vacuum)."""

    def close(self) -> None:
        """Release the connection."""


def restore(
    database: TraceDatabase,
    scenario: Scenario,
    experiment_ids: Sequence[str],
    *,
    old: int | None = None,
) -> int:
    """Bring the experiments back to the seeded state by inserting exactly what is missing.

    After a variant, the old traces it deleted are missing and everything else is untouched, so
    only those are inserted again; an experiment in any other state (a new trace lost, an
    unexpected row) is emptied and seeded from scratch.

    The first full seed of the main experiments (generated rows, inserted with executemany or
    COPY) is kept once in a copy the server never reads: PostgreSQL and MySQL staging tables,
    restored with one set-based `INSERT ... SELECT` per table of exactly the missing traces;
    for SQLite an in-memory backup of the whole file, written back page for page. Either way
    the counts are checked whole again afterwards.

    Args:
        database: where to insert.
        scenario: the shape of the backfill.
        experiment_ids: the seeded experiments.
        old: old traces per experiment, when it differs from the scenario (the big experiment).

    Returns:
        How many traces were inserted.
    """
    expected_old = scenario.old if old is None else old
    counts = database.counts(experiment_ids, scenario.cutoff_ms)
    broken = [
        experiment_id
        for experiment_id, (old_count, new_count) in counts.items()
        if new_count != scenario.new or old_count > expected_old
    ]
    if all(counts[e] == (expected_old, scenario.new) for e in experiment_ids):
        return 0
    if broken:
        database.delete_traces(broken)
    staged = database.restore_snapshot(experiment_ids)
    if staged is not None:
        # The staging copy was taken right after the first seed (generate_rows): the rows
        # inserted back are those rows, value for value. Prove the counts are whole again.
        after = database.counts(experiment_ids, scenario.cutoff_ms)
        if any(after[e] != (expected_old, scenario.new) for e in experiment_ids):
            raise RuntimeError(f"restore from the staging copy left {after}")
        if staged:
            database.settle()
        return staged
    counts = database.counts(experiment_ids, scenario.cutoff_ms)
    inserted = 0
    for experiment_id in experiment_ids:
        old_count, new_count = counts[experiment_id]
        if (old_count, new_count) == (expected_old, scenario.new):
            continue
        present: set[str] = set()
        kinds = ["old"]
        if new_count != scenario.new or old_count > expected_old:
            database.delete_traces([experiment_id])
            kinds.append("new")
        elif old_count:
            present = database.old_trace_ids(experiment_id, scenario.cutoff_ms)
        for kind in kinds:
            count = expected_old if kind == "old" else scenario.new
            for batch in generate_rows(int(experiment_id), kind, count, scenario.cutoff_ms):
                missing = without(batch, present)
                if missing.traces:
                    database.insert(missing)
                    inserted += len(missing.traces)
    if inserted:
        database.settle()
    seeded = dict.fromkeys(experiment_ids, (expected_old, scenario.new))
    if old is None and database.counts(experiment_ids, scenario.cutoff_ms) == seeded:
        # First seed of the main experiments: keep the pristine rows for every later restore.
        database.snapshot(experiment_ids)
    return inserted


def deleted_oldest_first(
    database: TraceDatabase,
    scenario: Scenario,
    experiment_ids: Sequence[str],
    *,
    old: int | None = None,
) -> bool:
    """Whether the old traces still there are exactly the newest ones of each experiment.

    A cutoff delete with `max_traces` removes the oldest first (by timestamp, then ID); a
    variant stopped halfway must have left a suffix of that order, nothing else.
    """
    expected_old = scenario.old if old is None else old
    for experiment_id in experiment_ids:
        present = database.old_trace_ids(experiment_id, scenario.cutoff_ms)
        ordered = _deletion_order(int(experiment_id), expected_old, scenario.cutoff_ms)
        if present != set(ordered[len(ordered) - len(present) :]):
            return False
    return True


@functools.lru_cache(maxsize=16)
def _deletion_order(experiment_id: int, count: int, cutoff_ms: int) -> tuple[str, ...]:
    """The seeded old trace IDs in the order a cutoff delete takes them (timestamp, then ID).

    Cached: the rows are deterministic, and generating 200,000 of them again after every
    time-boxed variant cost more than a second each time.
    """
    ordered = sorted(
        (row[2], row[0])
        for batch in generate_rows(experiment_id, "old", count, cutoff_ms)
        for row in batch.traces
    )
    return tuple(request_id for _, request_id in ordered)


class SqliteDatabase:
    """The SQLite file behind a local `mlflow server`, written while the server runs."""

    kind = "sqlite"

    def __init__(self, path: str) -> None:
        # The server holds the same file open: wait for its write lock instead of failing.
        # Opened while the servers start (pool thread), used from anyio's worker threads, one
        # call at a time: sqlite3's same-thread check would only get in the way.
        self._connection = sqlite3.connect(
            path, timeout=120.0, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA busy_timeout = 120000")
        self._connection.execute("PRAGMA foreign_keys = ON")
        # Only this connection's own writes: a big page cache, and no fsync of the seed rows.
        self._connection.execute("PRAGMA cache_size = -262144")
        self._connection.execute("PRAGMA synchronous = OFF")
        self._staged: frozenset[str] = frozenset()
        self._pristine: sqlite3.Connection | None = None
        self._snapshot_experiments: tuple[Any, ...] = ()

    def journal_mode(self) -> str:
        """The file's journal mode (MLflow leaves SQLite's default, `delete`)."""
        return str(self._connection.execute("PRAGMA journal_mode").fetchone()[0])

    def insert(self, batch: TraceBatch) -> None:
        # The rows are consistent by construction: no per-row foreign-key lookups while
        # inserting (like PostgreSQL's replica role below); cascading deletes stay enforced.
        self._connection.execute("PRAGMA foreign_keys = OFF")
        try:
            self._insert(batch)
        finally:
            self._connection.execute("PRAGMA foreign_keys = ON")

    def _insert(self, batch: TraceBatch) -> None:
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES:
                marks = ", ".join("?" for _ in table.columns)
                cursor.executemany(
                    f"INSERT INTO {table.name} ({table.column_list(double_quoted)})"
                    f" VALUES ({marks})",
                    table.rows(batch),
                )
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def snapshot(self, experiment_ids: Sequence[str]) -> bool:
        # SQLite's online backup API: a page-for-page copy of the whole seeded file into an
        # in-memory database of the runner's own, which the server never sees.
        pristine = sqlite3.connect(":memory:", check_same_thread=False)
        self._connection.backup(pristine)
        if self._pristine is not None:
            self._pristine.close()
        self._pristine = pristine
        self._snapshot_experiments = self._experiments()
        self._staged = frozenset(experiment_ids)
        return True

    def _experiments(self) -> tuple[Any, ...]:
        return tuple(self._connection.execute("SELECT MAX(experiment_id) FROM experiments"))

    def _trace_count(self, experiment_ids: Sequence[str]) -> int:
        marks = ", ".join("?" for _ in experiment_ids)
        row = self._connection.execute(
            f"SELECT COUNT(*) FROM trace_info WHERE experiment_id IN ({marks})",
            [int(e) for e in experiment_ids],
        ).fetchone()
        return int(row[0])

    def restore_snapshot(self, experiment_ids: Sequence[str]) -> int | None:
        # The copy is of the whole file: only usable while no experiment was created since
        # (the big experiment comes after the main ones and is seeded from generated rows).
        if (
            self._pristine is None
            or not set(experiment_ids) <= self._staged
            or self._experiments() != self._snapshot_experiments
        ):
            return None
        before = self._trace_count(experiment_ids)
        # One write transaction on the live file; the server's connections see the new pages
        # when they next read (SQLite's file change counter), as after any other writer.
        self._pristine.backup(self._connection)
        return self._trace_count(experiment_ids) - before

    def delete_traces(self, experiment_ids: Sequence[str]) -> None:
        marks = ", ".join("?" for _ in experiment_ids)
        self._connection.execute(
            f"DELETE FROM trace_info WHERE experiment_id IN ({marks})",
            [int(e) for e in experiment_ids],
        )

    def counts(self, experiment_ids: Sequence[str], cutoff_ms: int) -> ExperimentCounts:
        result = dict.fromkeys(experiment_ids, (0, 0))
        marks = ", ".join("?" for _ in experiment_ids)
        rows = self._connection.execute(
            "SELECT experiment_id, SUM(timestamp_ms <= ?), SUM(timestamp_ms > ?) FROM trace_info"
            f" WHERE experiment_id IN ({marks}) GROUP BY experiment_id",
            [cutoff_ms, cutoff_ms, *[int(e) for e in experiment_ids]],
        ).fetchall()
        for experiment_id, old, new in rows:
            result[str(experiment_id)] = (int(old or 0), int(new or 0))
        return result

    def old_trace_ids(self, experiment_id: str, cutoff_ms: int) -> set[str]:
        rows = self._connection.execute(
            "SELECT request_id FROM trace_info WHERE experiment_id = ? AND timestamp_ms <= ?",
            (int(experiment_id), cutoff_ms),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def orphans(self) -> int:
        total = 0
        for table in CHILD_TABLES:
            row = self._connection.execute(
                f"SELECT COUNT(*) FROM {table.name} AS c WHERE NOT EXISTS"
                f" (SELECT 1 FROM trace_info AS t WHERE t.request_id = c.{table.trace_column})"
            ).fetchone()
            total += int(row[0])
        return total

    def settle(self) -> None:
        # Checkpoint a WAL if the server uses one, so every variant starts from the same file.
        self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._pristine is not None:
            self._pristine.close()
        self._connection.close()
