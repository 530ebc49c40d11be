"""Cancelling, stopping and signalling while a call hangs or a long ``Retry-After`` is waited out.

The engine and the CLI (a real subprocess) end promptly and their reports stay exact against
the real server: see ``conftest.py`` for the invariants each test checks.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from async_trace_delete import Engine, Event, JobState, RetryPolicy, RetryScheduled
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.fault_tally import TALLY, violation
from tests.support.fault_world import (
    DELETE,
    PROMPTLY,
    by_experiment,
    check_invariants,
    cli_delete_command,
    cutoff_job,
    engine_config,
    seed_world,
    wait_for_stuck_delete,
)
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


# -- cancellation ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancel_during_a_stuck_call_is_prompt_and_exact(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Cancelling while a delete hangs ends the job at once; the stuck batch is ambiguous."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.PASS, Fault.delay(60)])
    fixed = {"min_batch_size": 50, "initial_batch_size": 50, "max_batch_size": 50}
    config = engine_config(proxy.url, request_timeout=120.0, **fixed)
    async with Engine(config) as engine:
        handle = await engine.submit(cutoff_job(experiment, world.cutoff))
        await wait_for_stuck_delete(proxy)
        started = time.monotonic()
        handle.cancel()
        with anyio.fail_after(PROMPTLY):
            report = await handle.wait()
    assert time.monotonic() - started < PROMPTLY  # the engine closed promptly too

    lost = await check_invariants(world, {experiment.experiment_id: report}, transient=False)
    assert report.state is JobState.CANCELLED
    assert (report.deleted, report.ambiguous, report.ambiguous_calls) == (50, 50, 1)
    assert report.batches[-1].outcome == "cancelled"
    assert report.batches[-1].outcome_unknown
    # The server finished the stuck call: it lost exactly deleted + ambiguous.
    assert lost[experiment.experiment_id] == 100
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_cli_interrupted_twice_during_a_stuck_call_exits_promptly_and_exactly(
    mlflow_server: MlflowServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The CLI, signalled twice while a delete hangs, exits 130 at once with an exact report."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.delay(60)])
    audit_log = tmp_path / "audit.jsonl"
    command = cli_delete_command(
        experiment,
        world.cutoff,
        proxy.url,
        audit_log,
        "--initial-batch-size",
        "100",
        "--min-batch-size",
        "10",
    )
    process = await anyio.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    async with process:
        try:
            await wait_for_stuck_delete(proxy)
            process.send_signal(signal.SIGINT)  # stop: let the call in flight finish...
            await anyio.sleep(0.3)
            started = time.monotonic()
            process.send_signal(signal.SIGINT)  # ...no: cancel it
            with anyio.fail_after(PROMPTLY * 2):
                assert process.stdout is not None
                stdout = b"".join([chunk async for chunk in process.stdout])
                await process.wait()
            elapsed = time.monotonic() - started
        finally:
            if process.returncode is None:
                process.kill()

    assert process.returncode == 130
    assert elapsed < PROMPTLY
    payload = json.loads(stdout)
    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    events = Counter(line["event"] for line in lines)
    assert events["interrupt"] == 2
    assert events["batch_outcome_unknown"] == 1
    assert payload["interrupted"] is True
    assert (payload["deleted"], payload["ambiguous"]) == (0, 100)
    assert payload["jobs"][0]["state"] == "cancelled"
    left = await world.remaining(experiment)
    violation(set(experiment.new) <= left, "the CLI deleted a trace newer than the cutoff")
    violation(
        await world.remaining(world.bystander) == world.bystander.all_ids,
        "the bystander experiment lost traces",
    )
    # The held call was carried out upstream: the server lost the whole ambiguous batch.
    assert len(experiment.all_ids - left) == 100
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_stop_wakes_a_long_retry_after_at_once(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.9) stop_all() during a 100 s Retry-After ends the job within 2 s, exactly."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(
        path_contains=DELETE, faults=[Fault.PASS, Fault.too_many_requests(retry_after=100)]
    )
    fixed = {"min_batch_size": 50, "initial_batch_size": 50, "max_batch_size": 50}
    unbounded = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)  # Retry-After is honoured
    config = engine_config(proxy.url, retry=unbounded, **fixed)
    events: list[Event] = []
    async with Engine(config, hooks=[events.append]) as engine:
        handle = await engine.submit(cutoff_job(experiment, world.cutoff))
        with anyio.fail_after(30):
            while not any(isinstance(event, RetryScheduled) for event in events):  # noqa: ASYNC110
                await anyio.sleep(0.02)
        started = time.monotonic()
        engine.stop_all()
        with anyio.fail_after(10):
            report = await handle.wait()
        elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert report.state is JobState.CANCELLED
    lost = await check_invariants(world, by_experiment([report]), transient=False)
    assert lost[experiment.experiment_id] == report.deleted == 50
    assert len(proxy.stats.requests(DELETE)) == 2
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_cli_first_signal_stops_within_two_seconds_during_retry_after(
    mlflow_server: MlflowServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """(11.9) One SIGTERM while the CLI waits out a 100 s Retry-After: it exits 130 within
    2 s, with the run_end line and the exact count in the audit log."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(
        path_contains=DELETE, faults=[Fault.PASS, Fault.too_many_requests(retry_after=100)]
    )
    audit_log = tmp_path / "audit.jsonl"
    command = cli_delete_command(
        experiment,
        world.cutoff,
        proxy.url,
        audit_log,
        "--initial-batch-size",
        "50",
        "--min-batch-size",
        "50",
        "--max-batch-size",
        "50",
    )
    process = await anyio.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    async with process:
        try:
            with anyio.fail_after(60):
                # The audit log has no event to wait on.
                while not _audit_has(audit_log, "retry"):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                assert process.stdout is not None
                assert process.stderr is not None
                stdout = b"".join([chunk async for chunk in process.stdout])
                stderr = b"".join([chunk async for chunk in process.stderr])
                await process.wait()
            elapsed = time.monotonic() - started
        finally:
            if process.returncode is None:
                process.kill()

    assert process.returncode == 130, stderr.decode()
    assert elapsed < 2.0
    assert stdout, stderr.decode()
    payload = json.loads(stdout)
    assert (payload["deleted"], payload["ambiguous"], payload["interrupted"]) == (50, 0, True)
    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert lines[-1]["event"] == "run_end"
    assert lines[-1]["deleted"] == 50
    assert len(experiment.all_ids - await world.remaining(experiment)) == 50
    TALLY.add_survived(proxy)


def _audit_has(audit_log: Path, event: str) -> bool:
    """Whether the audit log has a line of this event yet."""
    if not audit_log.exists():
        return False
    for line in audit_log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written
            if json.loads(line).get("event") == event:
                return True
    return False
