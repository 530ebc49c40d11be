"""The command line against a real `mlflow server`: policy runs, SIGINT, resume.

Assertions are on what is left on the server, not only on what the CLI reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_trace_delete._cli.args import run_cli
from async_trace_delete._cli.inputs import EXIT_INTERRUPTED, EXIT_OK
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import (
    SeedTrace,
    create_experiment,
    make_traces,
    remaining_ids,
    seed_traces_sql,
)

DAY_MS = 86_400_000
TOKEN = "tok-SECRET-cli-4d3c2b1a"


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def new_experiment(server: MlflowServer, prefix: str) -> tuple[str, str]:
    """Create a uniquely named experiment; return (ID, name)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return anyio.run(create_experiment, server.url, name), name


def seed(server: MlflowServer, experiment_id: str, traces: list[SeedTrace]) -> set[str]:
    """Insert traces straight into the server's database; return their IDs."""
    assert server.db_path is not None
    seed_traces_sql(server.db_path, experiment_id, traces)
    return {trace.trace_id for trace in traces}


def left(server: MlflowServer, experiment_id: str) -> set[str]:
    """The IDs still on the server."""
    return anyio.run(remaining_ids, server.url, experiment_id)


def audit_records(path: Path) -> list[dict[str, Any]]:
    """Every record of an audit log."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_policy_dry_run_then_execute_matches_the_server(
    mlflow_server: MlflowServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 3-experiment policy counts exactly in the dry run, then deletes exactly that."""
    start = now_ms() - 40 * DAY_MS
    recent = now_ms() - DAY_MS
    (id_a, _), (id_b, name_b), (id_c, _) = (
        new_experiment(mlflow_server, prefix) for prefix in ("cli-a", "cli-b", "cli-c")
    )
    keep = {}
    for experiment_id in (id_a, id_b):
        seed(mlflow_server, experiment_id, make_traces(300, start_ms=start))
        keep[experiment_id] = seed(mlflow_server, experiment_id, make_traces(50, start_ms=recent))
    c_old = make_traces(200, start_ms=start, error_every=4)
    seed(mlflow_server, id_c, c_old)
    c_recent = seed(mlflow_server, id_c, make_traces(20, start_ms=recent, error_every=4))
    keep[id_c] = c_recent | {trace.trace_id for trace in c_old if trace.state == "OK"}
    before = {experiment_id: left(mlflow_server, experiment_id) for experiment_id in keep}

    policy = tmp_path / "nightly.toml"
    policy.write_text(
        textwrap.dedent(
            f"""
            tracking_uri = "{mlflow_server.url}"

            [engine]
            rate = 50
            max_batch_size = 120

            [defaults]
            older_than = "30d"
            min_retention = "7d"

            [[jobs]]
            name = "old"
            experiment_ids = ["{id_a}"]
            experiment_names = ["{name_b}"]

            [[jobs]]
            name = "errors"
            experiment_ids = [{id_c}]
            filter = "status = 'ERROR'"
            """
        )
    )
    env = {"MLFLOW_TRACKING_TOKEN": TOKEN}
    audit = tmp_path / "audit.jsonl"
    base = ["run", str(policy), "--audit-log", str(audit), "--json"]

    assert run_cli(base, environ=env) == EXIT_OK
    dry = capsys.readouterr()
    plan = json.loads(dry.out)
    expected = {f"old/{id_a}": 300, f"old/{name_b}": 300, f"errors/{id_c}": 50}
    assert {job["label"]: job["would_delete"] for job in plan["jobs"]} == expected
    assert {eid: left(mlflow_server, eid) for eid in keep} == before  # a dry run deletes nothing

    assert run_cli([*base, "--execute", "--verify"], environ=env) == EXIT_OK
    executed = capsys.readouterr()
    report = json.loads(executed.out)
    assert {job["label"]: job["deleted"] for job in report["jobs"]} == expected
    assert {job["label"]: job["verified_deleted"] for job in report["jobs"]} == expected
    assert report["ambiguous"] == 0
    assert {eid: left(mlflow_server, eid) for eid in keep} == keep

    for text in (dry.out, dry.err, executed.out, executed.err, audit.read_text()):
        assert TOKEN not in text
    records = audit_records(audit)
    assert [r["outcome"] for r in records if r["event"] == "run_end"] == ["dry_run", "completed"]
    assert sum(r["deleted"] for r in records if r["event"] == "batch") == 650


def test_sigint_mid_run_reports_exactly_and_a_rerun_finishes(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """SIGINT to a real subprocess: exit 130, report == server's loss; the rerun finishes."""
    start = now_ms() - 40 * DAY_MS
    experiments = [new_experiment(mlflow_server, f"cli-sig{i}") for i in range(3)]
    old_count = 1_500
    recent: dict[str, set[str]] = {}
    for experiment_id, _ in experiments:
        seed(mlflow_server, experiment_id, make_traces(old_count, start_ms=start))
        recent[experiment_id] = seed(
            mlflow_server, experiment_id, make_traces(10, start_ms=now_ms() - DAY_MS)
        )
    audit = tmp_path / "audit.jsonl"
    command = [
        sys.executable, "-m", "async_trace_delete", "delete",
        "--tracking-uri", mlflow_server.url,
        "--experiment-id", experiments[0][0],
        "--experiment-name", experiments[1][1],
        "--experiment-name", experiments[2][1],
        "--older-than", "30d", "--execute", "--json", "--audit-log", str(audit),
        "--rate", "5", "--min-batch-size", "100", "--max-batch-size", "100",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    ) as process:
        deadline = time.monotonic() + 60
        while _batches(audit) < 3:
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no batch in 60 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["ambiguous"] == 0
    lost = {eid: old_count + 10 - len(left(mlflow_server, eid)) for eid, _ in experiments}
    assert {job["experiment_id"]: job["deleted"] for job in report["jobs"]} == lost
    assert 0 < sum(lost.values()) < 3 * old_count
    records = audit_records(audit)
    assert [r["action"] for r in records if r["event"] == "interrupt"] == ["stop"]
    assert records[-1]["event"] == "run_end"
    assert records[-1]["outcome"] == "interrupted"
    assert sum(r["deleted"] for r in records if r["event"] == "batch") == sum(lost.values())

    rerun = subprocess.run(command, capture_output=True, env=env, text=True, timeout=120)
    assert rerun.returncode == EXIT_OK, rerun.stderr
    finished = json.loads(rerun.stdout)
    assert finished["deleted"] == 3 * old_count - sum(lost.values())
    for experiment_id, _ in experiments:
        assert left(mlflow_server, experiment_id) == recent[experiment_id]
    for text in (out, err, rerun.stdout, rerun.stderr, audit.read_text()):
        assert TOKEN not in text


def _batches(audit: Path) -> int:
    try:
        text = audit.read_text()
    except FileNotFoundError:
        return 0
    return text.count('"event":"batch"')
