"""Direct access to the tracking server's database: bulk seeding and ground-truth counts.

Seeding through MLflow's API runs at ~50-200 traces/s, far too slow for a backfill of hundreds
of thousands of traces, so once the server has created the schema the runner inserts rows into
`trace_info`, `trace_tags` and `trace_request_metadata` directly. Verification reads the same
tables: what is left in the database is the truth, not what a client reports.
"""

from __future__ import annotations

import functools
import io
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from benchmarks.scenario import KeyValueRow, Scenario, TraceBatch, generate_rows

TRACE_COLUMNS = "request_id, experiment_id, timestamp_ms, execution_time_ms, status"
KEY_VALUE_COLUMNS = '"key", value, request_id'
CHILD_TABLES = ("trace_tags", "trace_request_metadata")
STAGING = "bench_staging"
"""PostgreSQL's staging copy of the seeded rows: a schema outside the server's `search_path`.
SQLite keeps an in-memory backup of the whole seeded file instead (see `SqliteDatabase`)."""

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


def _without(batch: TraceBatch, present: set[str]) -> TraceBatch:
    """The rows of `batch` whose trace is not in `present`."""
    if not present:
        return batch
    return TraceBatch(
        [row for row in batch.traces if row[0] not in present],
        [row for row in batch.tags if row[2] not in present],
        [row for row in batch.metadata if row[2] not in present],
    )


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
    COPY) is kept once in a copy the server never reads: PostgreSQL staging tables (`STAGING`),
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
                missing = _without(batch, present)
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
            cursor.executemany(
                f"INSERT INTO trace_info ({TRACE_COLUMNS}) VALUES (?, ?, ?, ?, ?)", batch.traces
            )
            cursor.executemany(
                f"INSERT INTO trace_tags ({KEY_VALUE_COLUMNS}) VALUES (?, ?, ?)", batch.tags
            )
            cursor.executemany(
                f"INSERT INTO trace_request_metadata ({KEY_VALUE_COLUMNS}) VALUES (?, ?, ?)",
                batch.metadata,
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
                f"SELECT COUNT(*) FROM {table} AS c WHERE NOT EXISTS"
                " (SELECT 1 FROM trace_info AS t WHERE t.request_id = c.request_id)"
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


def _copy_text(rows: Sequence[tuple[Any, ...]]) -> io.StringIO:
    """Rows as PostgreSQL COPY text; the generated values hold no tabs, newlines or backslashes."""
    buffer = io.StringIO()
    buffer.writelines("\t".join(str(value) for value in row) + "\n" for row in rows)
    buffer.seek(0)
    return buffer


class PostgresDatabase:
    """The PostgreSQL database behind a local or remote `mlflow server`, written with COPY."""

    kind = "postgres"

    def __init__(self, dsn: str) -> None:
        import psycopg2  # optional `[bench]` dependency, needed only for this backend

        self._dsn = dsn
        self._connection: Any = psycopg2.connect(dsn)
        self._staged: frozenset[str] = frozenset()

    def insert(self, batch: TraceBatch) -> None:
        with self._connection, self._connection.cursor() as cursor:
            # The rows are consistent by construction: skip the per-row foreign-key triggers
            # for this transaction only (superuser; cascading deletes stay enforced).
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.copy_expert(
                f"COPY trace_info ({TRACE_COLUMNS}) FROM STDIN", _copy_text(batch.traces)
            )
            tables: tuple[tuple[str, list[KeyValueRow]], ...] = (
                ("trace_tags", batch.tags),
                ("trace_request_metadata", batch.metadata),
            )
            for table, rows in tables:
                cursor.copy_expert(
                    f"COPY {table} ({KEY_VALUE_COLUMNS}) FROM STDIN", _copy_text(rows)
                )

    def snapshot(self, experiment_ids: Sequence[str]) -> bool:
        ids = [int(e) for e in experiment_ids]
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {STAGING} CASCADE")
            cursor.execute(f"CREATE SCHEMA {STAGING}")
            cursor.execute(
                f"CREATE TABLE {STAGING}.trace_info AS SELECT {TRACE_COLUMNS} FROM"
                " public.trace_info WHERE experiment_id = ANY(%s)",
                (ids,),
            )
            cursor.execute(f"CREATE UNIQUE INDEX ON {STAGING}.trace_info (request_id)")
            cursor.execute(f"CREATE INDEX ON {STAGING}.trace_info (experiment_id)")
            for table in CHILD_TABLES:
                cursor.execute(
                    f"CREATE TABLE {STAGING}.{table} AS SELECT {KEY_VALUE_COLUMNS} FROM"
                    f" public.{table} WHERE request_id IN"
                    f" (SELECT request_id FROM {STAGING}.trace_info)"
                )
                cursor.execute(f"CREATE INDEX ON {STAGING}.{table} (request_id)")
            for table in ("trace_info", *CHILD_TABLES):
                cursor.execute(f"ANALYZE {STAGING}.{table}")
        self._staged = frozenset(str(e) for e in ids)
        return True

    def restore_snapshot(self, experiment_ids: Sequence[str]) -> int | None:
        if not set(experiment_ids) <= self._staged:
            return None
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {STAGING}.missing")
            cursor.execute(
                f"CREATE UNLOGGED TABLE {STAGING}.missing AS SELECT s.request_id FROM"
                f" {STAGING}.trace_info AS s WHERE s.experiment_id = ANY(%s) AND NOT EXISTS"
                " (SELECT 1 FROM public.trace_info AS t WHERE t.request_id = s.request_id)",
                ([int(e) for e in experiment_ids],),
            )
            cursor.execute(f"ANALYZE {STAGING}.missing")
        statements = [
            f"INSERT INTO public.trace_info ({TRACE_COLUMNS}) SELECT {TRACE_COLUMNS} FROM"
            f" {STAGING}.trace_info JOIN {STAGING}.missing USING (request_id) ORDER BY request_id",
            *(
                f"INSERT INTO public.{table} ({KEY_VALUE_COLUMNS}) SELECT {KEY_VALUE_COLUMNS}"
                f" FROM {STAGING}.{table} JOIN {STAGING}.missing USING (request_id)"
                ' ORDER BY "key", request_id'
                for table in CHILD_TABLES
            ),
        ]
        # One connection per table, in parallel: with the foreign-key triggers off (replica
        # role) the child rows need not wait for their parents, and index maintenance, the
        # bulk of the cost, then uses both cores. The counts are checked whole afterwards.
        with ThreadPoolExecutor(len(statements)) as pool:
            inserted = list(pool.map(self._insert_as_replica, statements))
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {STAGING}.missing")
        return inserted[0]

    def _insert_as_replica(self, statement: str) -> int:
        import psycopg2

        connection: Any = psycopg2.connect(self._dsn)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = replica")
                cursor.execute(statement)
                return int(cursor.rowcount)
        finally:
            connection.close()

    def delete_traces(self, experiment_ids: Sequence[str]) -> None:
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM trace_info WHERE experiment_id = ANY(%s)",
                ([int(e) for e in experiment_ids],),
            )

    def counts(self, experiment_ids: Sequence[str], cutoff_ms: int) -> ExperimentCounts:
        result = dict.fromkeys(experiment_ids, (0, 0))
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(
                "SELECT experiment_id, COUNT(*) FILTER (WHERE timestamp_ms <= %s),"
                " COUNT(*) FILTER (WHERE timestamp_ms > %s) FROM trace_info"
                " WHERE experiment_id = ANY(%s) GROUP BY experiment_id",
                (cutoff_ms, cutoff_ms, [int(e) for e in experiment_ids]),
            )
            for experiment_id, old, new in cursor.fetchall():
                result[str(experiment_id)] = (int(old), int(new))
        return result

    def old_trace_ids(self, experiment_id: str, cutoff_ms: int) -> set[str]:
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(
                "SELECT request_id FROM trace_info WHERE experiment_id = %s AND timestamp_ms <= %s",
                (int(experiment_id), cutoff_ms),
            )
            return {str(row[0]) for row in cursor.fetchall()}

    def orphans(self) -> int:
        total = 0
        with self._connection, self._connection.cursor() as cursor:
            for table in CHILD_TABLES:
                cursor.execute(
                    f"SELECT COUNT(*) FROM {table} AS c WHERE NOT EXISTS"
                    " (SELECT 1 FROM trace_info AS t WHERE t.request_id = c.request_id)"
                )
                total += int(cursor.fetchone()[0])
        return total

    def settle(self) -> None:
        # Fresh statistics and no dead tuples: autovacuum must not kick in halfway a variant.
        self._connection.autocommit = True
        try:
            with self._connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE trace_info, trace_tags, trace_request_metadata")
        finally:
            self._connection.autocommit = False

    def close(self) -> None:
        self._connection.close()
