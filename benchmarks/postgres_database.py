"""The PostgreSQL database behind a local or remote `mlflow server`: COPY seeding, staging copy.

The pristine rows are kept in staging tables in a `bench_staging` schema outside the server's
`search_path`; before each variant exactly the traces the last one deleted (and their child
rows) are inserted again by one set-based `INSERT ... SELECT` per table, the tables in parallel
connections with the foreign-key triggers off (replica role), so children need not wait for
their parents and index maintenance uses both cores.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.database import ExperimentCounts
from benchmarks.scenario import TraceBatch
from benchmarks.tables import CHILD_TABLES, TABLES, TRACE_INFO, double_quoted

STAGING = "bench_staging"


def _copy_text(rows: Sequence[tuple[Any, ...]]) -> io.StringIO:
    """Rows as PostgreSQL COPY text; the generated values hold no tabs, newlines or backslashes."""
    buffer = io.StringIO()
    buffer.writelines(
        "\t".join("\\N" if value is None else str(value) for value in row) + "\n" for row in rows
    )
    buffer.seek(0)
    return buffer


class PostgresDatabase:
    """The PostgreSQL database behind an `mlflow server`, written with COPY."""

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
            for table in TABLES:
                cursor.copy_expert(
                    f"COPY {table.name} ({table.column_list(double_quoted)}) FROM STDIN",
                    _copy_text(table.rows(batch)),
                )

    def snapshot(self, experiment_ids: Sequence[str]) -> bool:
        ids = [int(e) for e in experiment_ids]
        columns = TRACE_INFO.column_list(double_quoted)
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {STAGING} CASCADE")
            cursor.execute(f"CREATE SCHEMA {STAGING}")
            cursor.execute(
                f"CREATE TABLE {STAGING}.trace_info AS SELECT {columns} FROM"
                " public.trace_info WHERE experiment_id = ANY(%s)",
                (ids,),
            )
            cursor.execute(f"CREATE UNIQUE INDEX ON {STAGING}.trace_info (request_id)")
            cursor.execute(f"CREATE INDEX ON {STAGING}.trace_info (experiment_id)")
            for table in CHILD_TABLES:
                cursor.execute(
                    f"CREATE TABLE {STAGING}.{table.name} AS SELECT"
                    f" {table.column_list(double_quoted)} FROM public.{table.name} WHERE"
                    f" {table.trace_column} IN (SELECT request_id FROM {STAGING}.trace_info)"
                )
                cursor.execute(f"CREATE INDEX ON {STAGING}.{table.name} ({table.trace_column})")
            for table in TABLES:
                cursor.execute(f"ANALYZE {STAGING}.{table.name}")
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
            f"INSERT INTO public.{table.name} ({table.column_list(double_quoted)})"
            f" SELECT {', '.join('s.' + double_quoted(c) for c in table.columns)}"
            f" FROM {STAGING}.{table.name} AS s JOIN {STAGING}.missing AS m"
            f" ON m.request_id = s.{table.trace_column}"
            for table in TABLES
        ]
        # One connection per table, in parallel: with the foreign-key triggers off (replica
        # role) the child rows need not wait for their parents. The counts are checked after.
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
                    f"SELECT COUNT(*) FROM {table.name} AS c WHERE NOT EXISTS (SELECT 1 FROM"
                    f" trace_info AS t WHERE t.request_id = c.{table.trace_column})"
                )
                total += int(cursor.fetchone()[0])
        return total

    def settle(self) -> None:
        # Fresh statistics and no dead tuples: autovacuum must not kick in halfway a variant.
        self._connection.autocommit = True
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(f"VACUUM ANALYZE {', '.join(table.name for table in TABLES)}")
        finally:
            self._connection.autocommit = False

    def close(self) -> None:
        self._connection.close()
