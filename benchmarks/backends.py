"""The tracking servers the benchmark runs against, and the store it seeds and verifies through.

* `sqlite`: a local `mlflow server` with a SQLite file; rows are bulk-inserted with sqlite3.
* `postgres`: a local PostgreSQL cluster (started here) behind a local `mlflow server`; rows
  are bulk-inserted with psycopg2 COPY.
* `mysql`: a local MariaDB server (Debian's `mariadb-server`, started here by
  `tests.support.mariadb`) behind a local `mlflow server` (`mysql+pymysql://`); rows are
  bulk-inserted with pymysql.

Every server is `mlflow server` as installed: 4 uvicorn workers and the job runner on, unless
`workers` says otherwise. A backend that cannot start (MariaDB missing, MLflow's migrations
failing on it) is reported with its error and the others go on.
* `external`: a user-given `--tracking-uri`; the benchmark only measures, and with `--seed`
  seeds through the REST API (slow) and verifies by search.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from benchmarks.database import ExperimentCounts, SqliteDatabase, TraceDatabase
from benchmarks.postgres import local_postgres
from benchmarks.postgres_database import PostgresDatabase
from benchmarks.scenario import TraceBatch
from tests.support.mlflow_server import MlflowServer, ServerStartError, start_mlflow_server
from tests.support.seed import SeedTrace, remaining_traces, seed_traces_api

SERVER_STARTUP_TIMEOUT_SECONDS = 300.0
API_SEED_CONCURRENCY = 8
DEFAULT_WORKERS = 4  # `mlflow server`'s own default (`--workers` / MLFLOW_WORKERS)
# `mlflow server` runs its job runner by default; the test fixture turns it off, users don't.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}


@dataclass
class Backend:
    """A reachable tracking server and the store behind it."""

    name: str
    base_url: str
    database: TraceDatabase
    info: dict[str, Any] = field(default_factory=dict)
    bulk_seeding: bool = True


class ApiStore:
    """Seeds and counts through the REST API, for a server whose database we cannot reach.

    Its methods are synchronous like the database ones; the runner calls them from a worker
    thread, where each opens its own event loop.
    """

    kind = "api"

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url

    def insert(self, batch: TraceBatch) -> None:
        tags: dict[str, dict[str, str]] = {}
        for key, value, request_id in batch.tags:
            if not key.startswith("mlflow."):  # the server sets its own mlflow.* tags
                tags.setdefault(request_id, {})[key] = value
        traces = [
            SeedTrace(
                trace_id=request_id,
                timestamp_ms=timestamp_ms,
                state=status,
                tags=tags.get(request_id, {}),
                execution_time_ms=execution_time_ms,
            )
            for request_id, _, timestamp_ms, execution_time_ms, status in batch.traces
        ]
        if traces:
            experiment_id = str(batch.traces[0][1])
            anyio.run(self._seed, experiment_id, traces)

    async def _seed(self, experiment_id: str, traces: list[SeedTrace]) -> None:
        await seed_traces_api(
            self._base_url, experiment_id, traces, concurrency=API_SEED_CONCURRENCY
        )

    def delete_traces(self, experiment_ids: Sequence[str]) -> None:
        now_ms = time.time_ns() // 1_000_000
        with httpx.Client(base_url=self._base_url, timeout=600.0) as client:
            for experiment_id in experiment_ids:
                response = client.post(
                    "/api/2.0/mlflow/traces/delete-traces",
                    json={"experiment_id": experiment_id, "max_timestamp_millis": now_ms},
                )
                response.raise_for_status()

    def counts(self, experiment_ids: Sequence[str], cutoff_ms: int) -> ExperimentCounts:
        return anyio.run(self._counts, experiment_ids, cutoff_ms)

    async def _counts(self, experiment_ids: Sequence[str], cutoff_ms: int) -> ExperimentCounts:
        result: ExperimentCounts = {}
        for experiment_id in experiment_ids:
            old = await remaining_traces(
                self._base_url, experiment_id, filter_string=f"timestamp_ms <= {cutoff_ms}"
            )
            new = await remaining_traces(
                self._base_url, experiment_id, filter_string=f"timestamp_ms > {cutoff_ms}"
            )
            result[experiment_id] = (len(old), len(new))
        return result

    def old_trace_ids(self, experiment_id: str, cutoff_ms: int) -> set[str]:
        traces = anyio.run(
            lambda: remaining_traces(
                self._base_url, experiment_id, filter_string=f"timestamp_ms <= {cutoff_ms}"
            )
        )
        return {trace.trace_id for trace in traces}

    def orphans(self) -> int:
        return 0  # not visible through the API

    def snapshot(self, experiment_ids: Sequence[str]) -> bool:
        return False  # no staging tables behind the API: every restore goes through it

    def restore_snapshot(self, experiment_ids: Sequence[str]) -> int | None:
        return None

    def settle(self) -> None:
        return None

    def close(self) -> None:
        return None


def _open_sqlite(
    workdir: Path, directory: str = "sqlite", workers: int = DEFAULT_WORKERS
) -> tuple[Backend, Callable[[], None]]:
    started = time.perf_counter()
    server = start_mlflow_server(
        workdir / directory,
        startup_timeout=SERVER_STARTUP_TIMEOUT_SECONDS,
        workers=workers,
        extra_env=SERVER_ENV,
    )
    assert server.db_path is not None
    database = SqliteDatabase(str(server.db_path))
    info = {
        "backend_uri": server.backend_uri,
        "server_startup_seconds": round(time.perf_counter() - started, 1),
        "journal_mode": database.journal_mode(),
        "workers": workers,
        "artifacts_dir": str(server.artifacts_dir),
    }

    def close() -> None:
        database.close()
        server.stop()

    return Backend("sqlite", server.url, database, info), close


def _open_postgres(
    workdir: Path, workers: int = DEFAULT_WORKERS
) -> tuple[Backend, Callable[[], None]]:
    started = time.perf_counter()
    stack = contextlib.ExitStack()
    try:
        cluster = stack.enter_context(local_postgres())
        server: MlflowServer = start_mlflow_server(
            workdir / "postgres",
            backend_uri=cluster.sqlalchemy_uri,
            startup_timeout=SERVER_STARTUP_TIMEOUT_SECONDS,
            workers=workers,
            extra_env=SERVER_ENV,
        )
        stack.callback(server.stop)
        database = PostgresDatabase(cluster.dsn)
        stack.callback(database.close)
    except BaseException:
        stack.close()
        raise
    info = {
        "backend_uri": cluster.sqlalchemy_uri,
        "postgres_version": cluster.version,
        "postgres_settings": "stock (initdb defaults), listen 127.0.0.1, trust auth",
        "server_startup_seconds": round(time.perf_counter() - started, 1),
        "workers": workers,
        "artifacts_dir": str(server.artifacts_dir),
    }
    return Backend("postgres", server.url, database, info), stack.close


def _open_mysql(
    workdir: Path, workers: int = DEFAULT_WORKERS
) -> tuple[Backend, Callable[[], None]]:
    """MariaDB (started here, like PostgreSQL) behind `mlflow server` with `mysql+pymysql://`.

    Raises:
        BackendUnavailableError: MariaDB cannot be installed or started, or `mlflow server`
            fails on it (its migrations, say); the message holds the end of the server's log.
    """
    from benchmarks.mysql_database import MysqlDatabase
    from tests.support.mariadb import MariadbUnavailableError, local_mariadb

    started = time.perf_counter()
    stack = contextlib.ExitStack()
    try:
        try:
            mariadb = stack.enter_context(local_mariadb())
        except MariadbUnavailableError as error:
            raise BackendUnavailableError("mysql", str(error)) from error
        try:
            server: MlflowServer = start_mlflow_server(
                workdir / "mysql",
                backend_uri=mariadb.sqlalchemy_uri,
                startup_timeout=SERVER_STARTUP_TIMEOUT_SECONDS,
                workers=workers,
                extra_env=SERVER_ENV,
            )
        except ServerStartError as error:
            raise BackendUnavailableError(
                "mysql", f"mlflow server failed on MariaDB {mariadb.version}: {error}"
            ) from error
        stack.callback(server.stop)
        database = MysqlDatabase(mariadb.connect)
        stack.callback(database.close)
    except BaseException:
        stack.close()
        raise
    info = {
        "backend_uri": mariadb.sqlalchemy_uri,
        "mysql_version": f"MariaDB {mariadb.version}",
        "mysql_settings": "stock (Debian defaults), listen 127.0.0.1",
        "server_startup_seconds": round(time.perf_counter() - started, 1),
        "workers": workers,
        "artifacts_dir": str(server.artifacts_dir),
    }
    return Backend("mysql", server.url, database, info), stack.close


class BackendUnavailableError(RuntimeError):
    """A backend could not be started; the benchmark reports it and goes on with the others."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason


@contextlib.contextmanager
def open_backends(
    names: Sequence[str],
    *,
    big: Sequence[str] = (),
    keep_workdir: bool = False,
    workers: int = DEFAULT_WORKERS,
    failures: dict[str, str] | None = None,
) -> Iterator[tuple[list[Backend], dict[str, Backend]]]:
    """Start the local backends in parallel (server startup is mostly imports) and stop them after.

    Args:
        names: the backends of the main scenario.
        big: backends whose big experiment gets a server of its own (SQLite only): seeded while
            the others seed, and its 400,000 rows never slow the main scenario's calls (on
            SQLite a delete's cost grows with the size of the whole file).
        keep_workdir: Leave the servers' work directory behind.
        workers: uvicorn workers of each main server (`mlflow server` runs 4 by default).
        failures: When given, a backend that cannot start is left out and its error stored
            here by name (the others go on); when None, the first failure is raised.

    Yields:
        The main backends that started, in the order of `names`, and the big experiment's
        servers by name.
    """
    workdir = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    openers: dict[str, Callable[..., tuple[Backend, Callable[[], None]]]] = {
        "sqlite": _open_sqlite,
        "postgres": _open_postgres,
        "mysql": _open_mysql,
    }
    unknown = [name for name in names if name not in openers]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {sorted(openers)}")
    big_names = [name for name in big if name == "sqlite" and name in names]
    with contextlib.ExitStack() as stack:
        if not keep_workdir:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        with ThreadPoolExecutor(max_workers=len(names) + len(big_names) or 1) as pool:
            futures = [pool.submit(openers[name], workdir, workers=workers) for name in names]
            big_futures = [
                pool.submit(_open_sqlite, workdir, "sqlite-big", workers=workers) for _ in big_names
            ]
        main: list[Backend] = []
        big_servers: dict[str, Backend] = {}
        errors: list[BaseException] = []
        labelled = [*zip(names, futures, strict=True), *zip(big_names, big_futures, strict=True)]
        for index, (name, future) in enumerate(labelled):
            error = future.exception()
            if error is not None:
                if failures is not None and isinstance(error, Exception):
                    failures[name] = f"{type(error).__name__}: {error}"
                else:
                    errors.append(error)
                continue
            backend, close = future.result()
            stack.callback(close)
            if index < len(names):
                main.append(backend)
            else:
                big_servers[name] = backend
        if errors:
            raise errors[0]
        yield main, big_servers


def external_backend(tracking_uri: str) -> Backend:
    """A user-given server: seeded and verified through the REST API only."""
    return Backend(
        "external",
        tracking_uri.rstrip("/"),
        ApiStore(tracking_uri.rstrip("/")),
        {"backend_uri": "unknown (user-given tracking URI)"},
        bulk_seeding=False,
    )
