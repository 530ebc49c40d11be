"""One real default `mlflow server` per database backend, shared by the backend matrix tests.

`backend` is a session fixture parametrized over `BACKENDS`: pytest runs every test of one
backend before the next, and tears the previous backend's server down when it moves on, so at
most one database and its MLflow server run at a time. PostgreSQL and MariaDB are throwaway
local servers (`tests.support.postgres`, `tests.support.mariadb`, installed with apt-get when
missing and we are root); each gets its own `mlflow server` with MLflow's default 4 workers, on
loopback and a free port. SQLite is left out: the rest of the suite runs these semantics on it,
and a third server would cost its start-up in `make test-backends`.

A database that cannot be installed or started makes the tests error, never skip: CI must not
pass without having run them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
import pytest_asyncio

from tests.backends.matrix import Backend, new_experiment
from tests.support.mariadb import local_mariadb
from tests.support.mlflow_server import running_mlflow_server
from tests.support.postgres import local_postgres

BACKENDS = ("postgresql", "mysql")
DEFAULT_WORKERS = 4  # `mlflow server`'s own default
STARTUP_TIMEOUT_SECONDS = 300.0  # 4 workers importing mlflow on a busy 2-core machine


@pytest.fixture(scope="session", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """The `mlflow server` of one backend (a fresh database; shared by that backend's tests)."""
    name: str = request.param
    with contextlib.ExitStack() as stack:
        workdir = tmp_path_factory.mktemp(f"mlflow-{name}")
        if name == "postgresql":
            cluster = stack.enter_context(local_postgres())
            uri, version = cluster.sqlalchemy_uri, f"PostgreSQL {cluster.version}"
            connect: Callable[[], Any] = lambda: psycopg2.connect(cluster.dsn)  # noqa: E731
        else:
            mariadb = stack.enter_context(local_mariadb())
            uri, version, connect = mariadb.sqlalchemy_uri, mariadb.version, mariadb.connect
        server = stack.enter_context(
            running_mlflow_server(
                workdir,
                backend_uri=uri,
                workers=DEFAULT_WORKERS,
                startup_timeout=STARTUP_TIMEOUT_SECONDS,
            )
        )
        yield Backend(
            name=name,
            database_version=version,
            server=server,
            connect=connect,
        )


@pytest_asyncio.fixture
async def backend_experiment(backend: Backend, request: pytest.FixtureRequest) -> str:
    """The ID of a new experiment on the backend's server, named after the requesting test."""
    return await new_experiment(backend, request.node.name)
