"""Auth against a real ``mlflow server --app-name basic-auth``: what each user may delete.

One basic-auth server for the module (it takes 20-60 s to start), with three users created
through MLflow's auth REST API: one with READ on the test's experiment, one with MANAGE, and
the admin. What is left is read from the server's SQLite database, not from the engine.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from async_trace_delete import (
    AuthenticationError,
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    JobState,
    PermissionDeniedError,
    TracesClient,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.mlflow_server import BASIC_AUTH_APP, MlflowServer, start_mlflow_server
from tests.support.seed import make_traces, seed_traces_sql

pytestmark = pytest.mark.integration

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
OLD, NEW = 60, 10
CUTOFF = BASE_MS + OLD - 1
CREATE_USER = "/api/2.0/mlflow/users/create"
GRANT_PERMISSION = "/api/3.0/mlflow/users/permissions/grant"
CREATE_EXPERIMENT = "/api/2.0/mlflow/experiments/create"


@dataclass(frozen=True)
class User:
    """A basic-auth user of the test server."""

    username: str
    password: str

    def client_config(self, url: str) -> ClientConfig:
        """Connection settings authenticating as this user."""
        return ClientConfig(tracking_uri=url, username=self.username, password=self.password)


@dataclass(frozen=True)
class AuthServer:
    """The module's basic-auth server and its users."""

    server: MlflowServer
    reader: User
    manager: User

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url

    def admin(self) -> httpx.Client:
        """An HTTP client authenticated as the admin."""
        return httpx.Client(base_url=self.url, auth=self.server.admin_auth, timeout=60.0)

    def new_experiment(self) -> str:
        """A fresh experiment with OLD traces up to CUTOFF and NEW after it, READ for the
        reader and MANAGE for the manager."""
        with self.admin() as admin:
            response = admin.post(CREATE_EXPERIMENT, json={"name": f"auth-{uuid.uuid4().hex}"})
            response.raise_for_status()
            experiment_id: str = response.json()["experiment_id"]
            for user, permission in ((self.reader, "READ"), (self.manager, "MANAGE")):
                grant = {
                    "username": user.username,
                    "resource_type": "experiment",
                    "resource_id": experiment_id,
                    "permission": permission,
                }
                admin.post(GRANT_PERMISSION, json=grant).raise_for_status()
        assert self.server.db_path is not None
        traces = make_traces(OLD, start_ms=BASE_MS) + make_traces(NEW, start_ms=CUTOFF + 1)
        seed_traces_sql(self.server.db_path, experiment_id, traces)
        return experiment_id

    def timestamps(self, experiment_id: str) -> list[int]:
        """The timestamps of the experiment's traces, read from the database."""
        assert self.server.db_path is not None
        with contextlib.closing(sqlite3.connect(self.server.db_path, timeout=60)) as database:
            rows = database.execute(
                "SELECT timestamp_ms FROM trace_info WHERE experiment_id = ? ORDER BY 1",
                (int(experiment_id),),
            ).fetchall()
        return [row[0] for row in rows]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A basic-auth mlflow server with a reader and a manager user."""
    server = start_mlflow_server(
        tmp_path_factory.mktemp("mlflow-basic-auth"), app_name=BASIC_AUTH_APP, startup_timeout=180
    )
    try:
        users = {
            name: User(f"{name}-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16))
            for name in ("reader", "manager")
        }
        with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60.0) as admin:
            for user in users.values():
                body = {"username": user.username, "password": user.password}
                admin.post(CREATE_USER, json=body).raise_for_status()
        yield AuthServer(server, users["reader"], users["manager"])
    finally:
        server.stop()


@pytest_asyncio.fixture
async def counting_proxy(auth_server: AuthServer) -> AsyncIterator[FaultProxy]:
    """A pass-through proxy in front of the auth server, to count the requests sent."""
    async with FaultProxy(upstream=auth_server.url) as proxy:
        yield proxy
    assert proxy.stats.errors == []


def cutoff_spec(experiment_id: str) -> DeleteSpec:
    """Delete the experiment's traces up to CUTOFF."""
    return DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=CUTOFF)


@pytest.mark.asyncio
async def test_reader_gets_a_clear_permission_error_and_nothing_is_deleted(
    auth_server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A READ user can dry-run, but its delete fails once with a permission error; nothing goes."""
    experiment_id = auth_server.new_experiment()
    reader = auth_server.reader
    config = EngineConfig(client=reader.client_config(auth_server.url))
    caplog.set_level(logging.DEBUG)
    async with Engine(config) as engine:
        plan = await engine.plan([cutoff_spec(experiment_id)])
        run = await engine.run([cutoff_spec(experiment_id)])

    (report,) = run.jobs
    assert plan.jobs[0].would_delete == OLD  # READ is enough to count
    assert report.state is JobState.FAILED
    assert report.error_type == PermissionDeniedError.__name__
    assert report.error is not None
    assert "MANAGE" in report.error
    assert "HTTP 403" in report.error
    assert (report.calls, report.retries, report.deleted, report.ambiguous) == (1, 0, 0, 0)
    assert len(auth_server.timestamps(experiment_id)) == OLD + NEW
    for text in (caplog.text, run.model_dump_json(), repr(config), repr(engine)):
        assert reader.password not in text


@pytest.mark.asyncio
async def test_manager_deletes_the_old_traces_and_keeps_the_new(auth_server: AuthServer) -> None:
    """A MANAGE user deletes exactly the traces up to the cutoff."""
    experiment_id = auth_server.new_experiment()
    config = EngineConfig(client=auth_server.manager.client_config(auth_server.url))
    async with Engine(config) as engine:
        run = await engine.run([cutoff_spec(experiment_id)])

    (report,) = run.jobs
    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous) == (OLD, 0)
    left = auth_server.timestamps(experiment_id)
    assert left == list(range(CUTOFF + 1, CUTOFF + 1 + NEW))


@pytest.mark.asyncio
@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
async def test_bad_credentials_fail_once_with_an_authentication_error(
    who: str, auth_server: AuthServer, counting_proxy: FaultProxy
) -> None:
    """Wrong credentials: one request, an authentication error, no retry storm, nothing deleted."""
    experiment_id = auth_server.new_experiment()
    wrong = secrets.token_urlsafe(16)
    username = auth_server.manager.username if who == "wrong-password" else f"nobody-{wrong[:6]}"
    client = ClientConfig(tracking_uri=counting_proxy.url, username=username, password=wrong)
    async with Engine(EngineConfig(client=client)) as engine:
        with pytest.raises(AuthenticationError) as raised:
            await engine.run([cutoff_spec(experiment_id)])
    assert raised.value.status_code == 401
    assert len(counting_proxy.stats.log) == 1  # the experiment lookup, never retried

    async with TracesClient(client) as traces:
        with pytest.raises(AuthenticationError) as direct:
            await traces.delete_traces(experiment_id, max_timestamp_millis=CUTOFF)
    assert len(counting_proxy.stats.requests("delete-traces")) == 1
    for error in (raised.value, direct.value):
        assert wrong not in str(error)
        assert wrong not in repr(error)
    assert len(auth_server.timestamps(experiment_id)) == OLD + NEW
