"""Tracking URIs that name a store, not a server (pure): what they are, and the advice."""

from __future__ import annotations

import pytest

from async_trace_delete import ClientConfig, SpecError
from async_trace_delete._config import store_kind


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("sqlite:///mlflow.db", "an SQLite database"),
        ("postgresql://u:p@db/mlflow", "a PostgreSQL database"),
        ("postgresql+psycopg2://db/mlflow", "a PostgreSQL database"),
        ("mysql+pymysql://db/mlflow", "a MySQL database"),
        ("mssql://db/mlflow", "a SQL Server database"),
        ("file:///tmp/mlruns", "a local folder (a file store)"),
        ("./mlruns", "a local folder (a file store)"),
        ("/data/mlruns", "a local folder (a file store)"),
        ("mlruns", "a local folder (a file store)"),
        ("databricks", "Databricks"),
        ("databricks://profile", "Databricks"),
        ("databricks-uc", "Databricks"),
        ("http://127.0.0.1:5000", None),
        ("https://mlflow.example.com", None),
        ("127.0.0.1:5000", None),
        ("localhost:5000", None),
        ("ftp://host/x", None),
        ("", None),
    ],
)
def test_store_kind(uri: str, kind: str | None) -> None:
    """MLflow's store URIs are recognised; servers and other mistakes are not stores."""
    assert store_kind(uri) == kind


def test_a_store_uri_says_how_to_serve_it_with_the_password_hidden() -> None:
    """The advice names the store and the mlflow server command; a password is ***."""
    with pytest.raises(SpecError) as caught:
        ClientConfig(tracking_uri="postgresql://app:hunter2@db/mlflow")
    message = str(caught.value)
    assert "hunter2" not in message
    assert message == (
        "tracking_uri is 'postgresql://***@db/mlflow', a PostgreSQL database, not a server: "
        "deleting traces needs a running `mlflow server` in front of that store. Start one "
        "with `mlflow server --backend-store-uri postgresql://***@db/mlflow --port 5000`, then "
        "use MLFLOW_TRACKING_URI=http://127.0.0.1:5000"
    )
