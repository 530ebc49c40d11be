"""The throwaway database servers themselves: what they offer MLflow, and that they go away."""

from __future__ import annotations

import contextlib
import socket

import psycopg2
import pytest

from tests.support.mariadb import local_mariadb
from tests.support.postgres import local_postgres

pytestmark = [pytest.mark.integration, pytest.mark.backends]


def port_is_closed(port: int) -> bool:
    """Whether nothing accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_local_mariadb_serves_an_utf8mb4_database_and_leaves_nothing_behind() -> None:
    """The server listens on loopback with an empty utf8mb4 `mlflow` database the URI's user
    may change, and is stopped and removed on exit."""
    with local_mariadb() as server:
        assert server.sqlalchemy_uri == f"mysql+pymysql://mlflow@127.0.0.1:{server.port}/mlflow"
        assert "MariaDB" in server.version
        with contextlib.closing(server.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT @@character_set_database, @@autocommit, DATABASE()")
            assert cursor.fetchone() == ("utf8mb4", 0, "mlflow")
            cursor.execute("SHOW TABLES")
            assert cursor.fetchall() == ()
            cursor.execute("CREATE TABLE probe (id INT PRIMARY KEY)")
        directory, port = server.directory, server.port
    assert not directory.exists()
    assert port_is_closed(port)


def test_local_postgres_serves_a_database_and_leaves_nothing_behind() -> None:
    """The cluster listens on loopback with the `mlflow` database, and is removed on exit."""
    with local_postgres() as cluster:
        assert cluster.sqlalchemy_uri.endswith(f"@127.0.0.1:{cluster.port}/mlflow")
        with contextlib.closing(psycopg2.connect(cluster.dsn)) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone() == ("mlflow",)
        directory, port = cluster.directory, cluster.port
    assert not directory.exists()
    assert port_is_closed(port)
