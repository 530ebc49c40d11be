"""Plan once, apply exactly that plan, on the real server (issue 14).

``delete ... --plan-out PLAN`` then ``apply PLAN`` deletes exactly the planned traces; apply
refuses another server, a renamed or deleted experiment and an old plan before any delete
(exit 2), and a job that finds more than its count plus ``--max-growth`` stops there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import httpx
import pytest

from async_trace_delete._cli.args import run_cli
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import make_traces, remaining_traces, seed_traces_sql

pytestmark = pytest.mark.integration

BASE_MS = 1_704_067_200_000
CUTOFF = BASE_MS + 199  # 200 old traces (1 ms apart), 50 newer


def seed(server: MlflowServer, experiment_id: str, count: int = 250, start: int = BASE_MS) -> None:
    assert server.db_path is not None
    seed_traces_sql(server.db_path, experiment_id, make_traces(count, start_ms=start))


def make_plan(server: MlflowServer, experiment_id: str, path: Path) -> dict[str, object]:
    argv = ["delete", "--experiment-id", experiment_id, "--max-timestamp-millis", str(CUTOFF)]
    argv += ["--tracking-uri", server.url, "--plan-out", str(path), "--quiet"]
    assert run_cli(argv, environ={}) == 0
    plan: dict[str, object] = json.loads(path.read_text())
    return plan


def apply(
    path: Path, *flags: str, environ: dict[str, str] | None = None, now_ms: int | None = None
) -> int:
    argv = ["apply", str(path), "--quiet", *flags]
    clock = (lambda: now_ms) if now_ms is not None else None
    return run_cli(argv, environ=environ or {}, wall_clock_ms=clock)


def left(server: MlflowServer, experiment_id: str) -> int:
    return len(anyio.run(remaining_traces, server.url, experiment_id))


def test_apply_deletes_exactly_the_planned_traces(
    mlflow_server: MlflowServer, experiment_id: str, tmp_path: Path
) -> None:
    """The plan pins the server, experiment, name, cutoff and count; apply deletes those."""
    seed(mlflow_server, experiment_id)
    plan = make_plan(mlflow_server, experiment_id, tmp_path / "plan.json")
    jobs: list[dict[str, object]] = plan["jobs"]  # type: ignore[assignment]
    (job,) = jobs
    assert plan["server"] == mlflow_server.url
    assert (job["experiment_id"], job["cutoff_millis"], job["would_delete"]) == (
        experiment_id,
        CUTOFF,
        200,
    )
    assert job["experiment_name"]
    assert left(mlflow_server, experiment_id) == 250  # the plan deleted nothing
    assert apply(tmp_path / "plan.json") == 0
    assert left(mlflow_server, experiment_id) == 50


def test_apply_refuses_what_is_not_the_plan(
    mlflow_server: MlflowServer, experiment_id: str, tmp_path: Path
) -> None:
    """Another server, an old plan, a renamed and a deleted experiment: exit 2, nothing gone."""
    seed(mlflow_server, experiment_id)
    path = tmp_path / "plan.json"
    plan = make_plan(mlflow_server, experiment_id, path)
    other = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    assert apply(path, environ=other) == 2
    day_later = int(plan["created_ms"]) + 25 * 3_600_000  # type: ignore[call-overload]
    assert apply(path, now_ms=day_later) == 2
    assert apply(path, "--max-plan-age", "30h", now_ms=day_later) == 0  # within its own age
    assert left(mlflow_server, experiment_id) == 50

    seed(mlflow_server, experiment_id, count=200, start=BASE_MS - 1_000)
    path = tmp_path / "plan2.json"
    make_plan(mlflow_server, experiment_id, path)
    with httpx.Client(base_url=mlflow_server.url) as http:
        renamed = http.post(
            "/api/2.0/mlflow/experiments/update",
            json={"experiment_id": experiment_id, "new_name": f"renamed-{time.time_ns()}"},
        )
        assert renamed.status_code == 200
        assert apply(path) == 2
        deleted = http.post(
            "/api/2.0/mlflow/experiments/delete", json={"experiment_id": experiment_id}
        )
        assert deleted.status_code == 200
        assert apply(path) == 2
        http.post("/api/2.0/mlflow/experiments/restore", json={"experiment_id": experiment_id})
    assert left(mlflow_server, experiment_id) == 250


def test_a_job_that_grew_past_the_margin_stops_at_its_ceiling(
    mlflow_server: MlflowServer, experiment_id: str, tmp_path: Path
) -> None:
    """200 planned; 100 more old traces written after the plan: apply with --max-growth 10%
    deletes at most 220, fails the job (exit 1) and leaves the rest."""
    seed(mlflow_server, experiment_id)
    path = tmp_path / "plan.json"
    make_plan(mlflow_server, experiment_id, path)
    seed(mlflow_server, experiment_id, count=100, start=BASE_MS - 1_000)
    assert apply(path, "--max-growth", "10%") == 1
    assert left(mlflow_server, experiment_id) == 350 - 220
