"""Shared fixtures: one real `mlflow server` per session, a fresh experiment per test.

Any test that uses `mlflow_server` (directly or through `mlflow_url` / `experiment_id`) is marked
`integration`, so `pytest -m "not integration"` runs the unit tests without starting a server.
mlflow itself is never imported here: the server runs in its own process.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.mlflow_server import MlflowServer, running_mlflow_server
from tests.support.seed import create_experiment

SERVER_FIXTURE = "mlflow_server"
MAX_EXPERIMENT_NAME_PREFIX = 120


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the real server as `integration`."""
    for item in items:
        if SERVER_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` (SQLite, loopback, free port), started on first use.

    It serves artifacts like a default server: experiments are rooted at
    `mlflow-artifacts:/<experiment_id>`, stored under `artifacts_dir`.
    """
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture
def mlflow_url(mlflow_server: MlflowServer) -> str:
    """The base URL of the session's server, e.g. `http://127.0.0.1:PORT`."""
    return mlflow_server.url


@pytest.fixture
def artifacts_dir(mlflow_server: MlflowServer) -> Path:
    """Where the session's server keeps proxied artifacts (`<exp>/traces/<trace_id>/...`)."""
    return mlflow_server.artifacts_dir


@pytest_asyncio.fixture
async def experiment_id(mlflow_url: str, request: pytest.FixtureRequest) -> str:
    """The ID of a new experiment named after the requesting test."""
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:MAX_EXPERIMENT_NAME_PREFIX]
    return await create_experiment(mlflow_url, f"{test_name}-{uuid.uuid4().hex[:12]}")
