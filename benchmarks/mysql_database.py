"""The MySQL / MariaDB database behind an `mlflow server`: bulk seeding and a staging copy.

Rows go in with pymysql's `executemany` (which sends multi-row `INSERT ... VALUES`), with the
foreign-key checks off for that session only (the rows are consistent by construction;
InnoDB's `ON DELETE CASCADE` stays enforced for the server's deletes). The pristine rows are
kept in `bench_staging_*` tables beside MLflow's, which the server never reads (the
application user owns one database only); before each variant exactly the
traces the last one deleted (and their child rows) are inserted again by one set-based
`INSERT ... SELECT` per table, the tables in parallel connections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.database import ExperimentCounts
from benchmarks.scenario import TraceBatch
from benchmarks.tables import CHILD_TABLES, TABLES, TRACE_INFO, backquoted

STAGING = "bench_staging_"
"""Prefix of the staging copies of the trace tables (`bench_staging_trace_info`, ...)."""


def _in_list(ids: Sequence[str]) -> str:
    """A literal `IN` list of experiment IDs (integers: nothing to escape)."""
    return ", ".join(str(int(e)) for e in ids)


class MysqlDatabase:
    """The MySQL / MariaDB database `mlflow` behind a local `mlflow server`."""

    kind = "mysql"

    def __init__(self, connect: Callable[[], Any]) -> None:
        """Args: connect: opens a new pymysql connection to the server's database."""
        self._connect = connect
        self._connection: Any = connect()
        # Autocommit: under REPEATABLE READ a long-lived transaction would count a stale view.
        self._connection.autocommit(True)
        self._staged: frozenset[str] = frozenset()

    def _execute(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection.cursor() as cursor:
            cursor.execute(statement, tuple(parameters))
            return list(cursor.fetchall())

    def insert(self, batch: TraceBatch) -> None:
        with self._connection.cursor() as cursor:
            cursor.execute("SET foreign_key_checks = 0")
            cursor.execute("START TRANSACTION")
            try:
                for table in TABLES:
                    rows = table.rows(batch)
                    if not rows:
                        continue
                    marks = ", ".join("%s" for _ in table.columns)
                    cursor.executemany(
                        f"INSERT INTO {table.name} ({table.column_list(backquoted)})"
                        f" VALUES ({marks})",
                        rows,
                    )
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            finally:
                cursor.execute("SET foreign_key_checks = 1")

    def snapshot(self, experiment_ids: Sequence[str]) -> bool:
        ids = _in_list(experiment_ids)
        for table in TABLES:
            self._execute(f"DROP TABLE IF EXISTS {STAGING}{table.name}")
        self._execute(
            f"CREATE TABLE {STAGING}trace_info (PRIMARY KEY (request_id), KEY (experiment_id))"
            f" AS SELECT {TRACE_INFO.column_list(backquoted)} FROM trace_info"
            f" WHERE experiment_id IN ({ids})"
        )
        for table in CHILD_TABLES:
            self._execute(
                f"CREATE TABLE {STAGING}{table.name} (KEY ({table.trace_column})) AS SELECT"
                f" {', '.join('c.' + backquoted(column) for column in table.columns)}"
                f" FROM {table.name} AS c"
                f" JOIN {STAGING}trace_info AS s ON s.request_id = c.{table.trace_column}"
            )
        self._staged = frozenset(str(int(e)) for e in experiment_ids)
        return True

    def restore_snapshot(self, experiment_ids: Sequence[str]) -> int | None:
        if not set(experiment_ids) <= self._staged:
            return None
        self._execute(f"DROP TABLE IF EXISTS {STAGING}missing")
        self._execute(
            f"CREATE TABLE {STAGING}missing (PRIMARY KEY (request_id)) AS SELECT s.request_id"
            f" FROM {STAGING}trace_info AS s LEFT JOIN trace_info AS t"
            f" ON t.request_id = s.request_id"
            f" WHERE s.experiment_id IN ({_in_list(experiment_ids)}) AND t.request_id IS NULL"
        )
        statements = [
            f"INSERT INTO {table.name} ({table.column_list(backquoted)})"
            f" SELECT {', '.join('s.' + backquoted(c) for c in table.columns)}"
            f" FROM {STAGING}{table.name} AS s JOIN {STAGING}missing AS m"
            f" ON m.request_id = s.{table.trace_column}"
            for table in TABLES
        ]
        with ThreadPoolExecutor(len(statements)) as pool:
            inserted = list(pool.map(self._insert_unchecked, statements))
        self._execute(f"DROP TABLE {STAGING}missing")
        return inserted[0]

    def _insert_unchecked(self, statement: str) -> int:
        connection: Any = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET foreign_key_checks = 0")
                count = int(cursor.execute(statement))
            connection.commit()
            return count
        finally:
            connection.close()

    def delete_traces(self, experiment_ids: Sequence[str]) -> None:
        self._execute(f"DELETE FROM trace_info WHERE experiment_id IN ({_in_list(experiment_ids)})")

    def counts(self, experiment_ids: Sequence[str], cutoff_ms: int) -> ExperimentCounts:
        result = dict.fromkeys(experiment_ids, (0, 0))
        rows = self._execute(
            "SELECT experiment_id, SUM(timestamp_ms <= %s), SUM(timestamp_ms > %s)"
            f" FROM trace_info WHERE experiment_id IN ({_in_list(experiment_ids)})"
            " GROUP BY experiment_id",
            (cutoff_ms, cutoff_ms),
        )
        for experiment_id, old, new in rows:
            result[str(experiment_id)] = (int(old or 0), int(new or 0))
        return result

    def old_trace_ids(self, experiment_id: str, cutoff_ms: int) -> set[str]:
        rows = self._execute(
            "SELECT request_id FROM trace_info WHERE experiment_id = %s AND timestamp_ms <= %s",
            (int(experiment_id), cutoff_ms),
        )
        return {str(row[0]) for row in rows}

    def orphans(self) -> int:
        total = 0
        for table in CHILD_TABLES:
            [(count,)] = self._execute(
                f"SELECT COUNT(*) FROM {table.name} AS c LEFT JOIN trace_info AS t"
                f" ON t.request_id = c.{table.trace_column} WHERE t.request_id IS NULL"
            )
            total += int(count)
        return total

    def settle(self) -> None:
        self._execute(f"ANALYZE TABLE {', '.join(table.name for table in TABLES)}")

    def close(self) -> None:
        self._connection.close()
