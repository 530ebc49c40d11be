"""What the backend matrix tests share: the `Backend` handle, experiments, engines, seeds."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from async_trace_delete import ClientConfig, Engine, EngineConfig
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import SeedTrace, create_experiment

MAX_EXPERIMENT_NAME_PREFIX = 100


@dataclass(frozen=True)
class Backend:
    """A running `mlflow server` on one database, and a way to look into that database."""

    name: str
    database_version: str
    server: MlflowServer
    connect: Callable[[], Any]  # a DB-API connection (psycopg2 or PyMySQL)

    @property
    def url(self) -> str:
        """The MLflow server's base URL."""
        return self.server.url

    def count_rows(self, table: str, column: str, values: Collection[str]) -> int:
        """Rows of `table` whose `column` is one of `values`, counted in the database itself.

        Args:
            table: A table name from MLflow's schema (trusted: it is formatted into the SQL).
            column: A column of that table (trusted, likewise).
            values: The values to match; none gives 0.
        """
        if not values:
            return 0
        markers = ", ".join(["%s"] * len(values))  # psycopg2's and PyMySQL's parameter marker
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} IN ({markers})", tuple(values)
            )
            row = cursor.fetchone()
            connection.rollback()  # a read: end the transaction the driver opened
        return int(row[0])


async def new_experiment(backend: Backend, label: str = "backend") -> str:
    """Create a uniquely named experiment on the backend's server and return its ID."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:MAX_EXPERIMENT_NAME_PREFIX]
    return await create_experiment(backend.url, f"{prefix}-{uuid.uuid4().hex[:12]}")


def make_engine(backend: Backend, **settings: Any) -> Engine:
    """An engine on the backend's server; the rate limiter is not under test here."""
    values: dict[str, Any] = {"rate_limit": 1000, **settings}
    return Engine(EngineConfig(client=ClientConfig(tracking_uri=backend.url), **values))


def fixed_batches(size: int) -> dict[str, Any]:
    """Config settings that pin the delete batch size to `size`."""
    return {"min_batch_size": size, "max_batch_size": size, "initial_batch_size": size}


def ids(traces: Sequence[SeedTrace]) -> set[str]:
    """The trace IDs of `traces`."""
    return {trace.trace_id for trace in traces}
