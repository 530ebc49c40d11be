"""A verification that fails after the deletes keeps the run's report (engine and CLI)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_trace_delete import Engine, JobReport, JobState
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.fault_tally import TALLY
from tests.support.fault_world import (
    by_experiment,
    check_invariants,
    cli_delete_command,
    cutoff_job,
    engine_config,
    seed_world,
)
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
async def test_a_failed_verification_keeps_the_run_report(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.8) A count failure after the deletes marks verification failed, keeps the counts;
    a transient one is retried and verification succeeds."""
    world = await seed_world(mlflow_server, targets=2, old=200, new=10)
    flaky, broken = world.targets
    # Counts (one traces/metrics request each), in order: flaky's before, broken's before,
    # then the counts after.
    proxy.script(
        path_contains="traces/metrics",
        faults=[Fault.PASS, Fault.PASS, Fault.database_locked(), Fault.PASS, Fault.forbidden()],
    )
    async with Engine(engine_config(proxy.url, max_concurrency=1)) as engine:
        run = await engine.run(
            [cutoff_job(flaky, world.cutoff), cutoff_job(broken, world.cutoff)], verify=True
        )

    reports = by_experiment(run.jobs)
    await check_invariants(world, reports, transient=True)
    good, bad = reports[flaky.experiment_id], reports[broken.experiment_id]
    assert (good.deleted, good.verified_deleted, good.verification_error) == (200, 200, None)
    assert bad.deleted == 200
    assert bad.state is JobState.COMPLETED
    assert bad.verified_deleted is None
    assert bad.verification_error is not None
    assert "PermissionDeniedError" in bad.verification_error
    assert run.verification_failed == (bad,)
    assert not run.ok
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_cli_prints_the_report_when_verification_fails(
    mlflow_server: MlflowServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """(11.8) The CLI with --verify prints the whole report and exits 1 when the count after
    the deletes fails, and the audit log's run_end has the counts."""
    world = await seed_world(mlflow_server, old=150, new=10)
    (experiment,) = world.targets
    # The plan's count (which is also the count before: counted once): passes; every count
    # after the deletes: refused.
    proxy.script(path_contains="traces/metrics", faults=[Fault.PASS, Fault.forbidden().repeat(5)])
    audit_log = tmp_path / "audit.jsonl"
    command = cli_delete_command(experiment, world.cutoff, proxy.url, audit_log, "--verify")
    with anyio.fail_after(60):
        result = await anyio.run_process(command, check=False)

    assert result.returncode == 1, result.stderr.decode()
    payload = json.loads(result.stdout)
    assert (payload["deleted"], payload["exit_code"]) == (150, 1)
    (job,) = payload["jobs"]
    assert "PermissionDeniedError" in job["verification_error"]
    run_end = [json.loads(line) for line in audit_log.read_text().splitlines()][-1]
    assert (run_end["event"], run_end["deleted"], run_end["exit_code"]) == ("run_end", 150, 1)
    await check_invariants(world, {experiment.experiment_id: _as_report(payload)}, transient=True)
    TALLY.add_survived(proxy)


def _as_report(payload: Mapping[str, Any]) -> JobReport:
    """A minimal JobReport from the CLI's JSON, for the invariant checks."""
    (job,) = payload["jobs"]
    return JobReport(
        label=job["label"],
        experiment_id=job["experiment_id"],
        mode="cutoff",
        cutoff_millis=None,
        max_traces=None,
        state=JobState(job["state"]),
        deleted=job["deleted"],
        ambiguous=job["ambiguous"],
        ambiguous_calls=0,
        not_found=0,
        requested_ids=None,
        calls=0,
        retries=0,
        errors=(),
        error=None,
        error_type=None,
        batches=(),
        elapsed=0.0,
    )
