"""Fault tests: the engine against a real `mlflow server` behind a fault-injecting proxy.

Every test seeds fresh experiments (old traces at or before the cutoff, new ones after it, and
a bystander experiment no job names), runs the engine through a `FaultProxy`, and checks the
server's truth afterwards, not only the report:

* no trace newer than the cutoff is deleted, no trace of an experiment outside the job is
  deleted, no job deletes more than its cap, and when the faults are transient every old trace
  is gone;
* what the server lost lies in ``[deleted, deleted + ambiguous]`` (exactly ``deleted`` when no
  call was ambiguous).

The faults injected and survived are tallied across the module and printed at its end, with the
number of invariant violations.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import pytest_asyncio

from async_trace_delete import (
    AuthenticationError,
    BatchSizeChanged,
    BatchTooLargeError,
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    Event,
    InvalidParameterError,
    JobReport,
    JobState,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    RetryScheduled,
    ServerError,
    Throttled,
)
from tests.support.fault_proxy import Fault, FaultKind, FaultProxy
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import create_experiment, make_traces, remaining_ids, seed_traces_sql

pytestmark = pytest.mark.integration

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DELETE = "delete-traces"
REQUEST_TIMEOUT = 3.0  # seconds one delete call may take before it counts as timed out
PROMPTLY = 3.0  # seconds within which a cancelled job or process must be gone


# -- the tally printed at the end of the module ------------------------------------------------


@dataclass
class FaultTally:
    """Faults injected and survived across the module's tests, and invariant violations."""

    injected: Counter[str] = field(default_factory=Counter)
    survived: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def add_injected(self, proxy: FaultProxy) -> None:
        """Count what a proxy injected (called once per proxy, when it closes)."""
        self.injected.update(fault_kinds(proxy))

    def add_survived(self, proxy: FaultProxy) -> None:
        """Count a proxy's faults as survived (called once the test's checks all passed)."""
        self.survived.update(fault_kinds(proxy))

    def lines(self) -> list[str]:
        """The summary table."""
        rows = [f"{'fault':<24}{'injected':>10}{'survived':>10}"]
        for kind in sorted(self.injected):
            rows.append(f"{kind:<24}{self.injected[kind]:>10}{self.survived[kind]:>10}")
        total_injected = sum(self.injected.values())
        total_survived = sum(self.survived.values())
        rows.append(f"{'total':<24}{total_injected:>10}{total_survived:>10}")
        rows.append(f"invariant violations: {len(self.violations)}")
        rows += [f"  - {violation}" for violation in self.violations]
        return ["fault suite (real mlflow server behind FaultProxy):", *rows]


TALLY = FaultTally()


def fault_kinds(proxy: FaultProxy) -> Counter[str]:
    """The proxy's injected faults by kind, those with a status of their own split by it.

    A `status` fault shows as `http 503`; the other kinds keep their name, e.g.
    `status_after 503` (the server did the work) or `redirect 302`.
    """
    by_status = proxy.stats.injected_kind_statuses
    split = {kind for kind, _ in by_status}
    kinds: Counter[str] = Counter(
        {kind: count for kind, count in proxy.stats.injected.items() if kind not in split}
    )
    for (kind, status), count in by_status.items():
        kinds[f"http {status}" if kind == FaultKind.STATUS else f"{kind} {status}"] += count
    return kinds


@pytest.fixture(scope="module", autouse=True)
def _print_fault_tally(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of the module, write the fault tally to the terminal (past output capture)."""
    yield
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    lines = TALLY.lines()
    disabled = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with disabled:
        if reporter is not None:
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
        else:  # pragma: no cover - the terminal plugin is disabled (-p no:terminal)
            print("\n" + "\n".join(lines))


# -- the world each test seeds -----------------------------------------------------------------


@dataclass
class Experiment:
    """One seeded experiment: IDs of its traces at or before the cutoff and after it."""

    experiment_id: str
    old: list[str]  # oldest first
    new: list[str]

    @property
    def all_ids(self) -> set[str]:
        """Every trace seeded into it."""
        return {*self.old, *self.new}


@dataclass
class World:
    """Target experiments, a bystander no job names, and the cutoff between old and new."""

    url: str
    cutoff: int
    targets: list[Experiment]
    bystander: Experiment

    async def remaining(self, experiment: Experiment) -> set[str]:
        """What the server still holds of the experiment (read straight, not via the proxy)."""
        return await remaining_ids(self.url, experiment.experiment_id)


async def seed_world(
    server: MlflowServer, *, targets: int = 1, old: int = 300, new: int = 40
) -> World:
    """Fresh experiments with ``old`` traces at or before the cutoff and ``new`` after it.

    The last old trace sits exactly on the cutoff and the first new one 1 ms after it.
    """
    assert server.db_path is not None, "the session server runs on SQLite"
    cutoff = BASE_MS + old - 1
    experiments = []
    for index in range(targets + 1):
        name = f"faults-{index}-{uuid.uuid4().hex[:12]}"
        experiment_id = await create_experiment(server.url, name)
        old_traces = make_traces(old, start_ms=BASE_MS)
        new_traces = make_traces(new, start_ms=cutoff + 1)
        seed_traces_sql(server.db_path, experiment_id, [*old_traces, *new_traces])
        ordered = sorted(old_traces, key=lambda trace: (trace.timestamp_ms, trace.trace_id))
        experiments.append(
            Experiment(
                experiment_id,
                old=[trace.trace_id for trace in ordered],
                new=[trace.trace_id for trace in new_traces],
            )
        )
    return World(server.url, cutoff, experiments[:-1], experiments[-1])


def violation(condition: bool, message: str) -> None:
    """Assert an invariant; a failure is also counted in the module's tally."""
    if not condition:
        TALLY.violations.append(message)
    assert condition, message


async def check_invariants(
    world: World,
    reports: Mapping[str, JobReport],
    *,
    transient: bool,
) -> dict[str, int]:
    """Check the invariants against the server; return what each target experiment lost.

    Args:
        world: The seeded experiments.
        reports: The cutoff job of each target experiment, by experiment ID.
        transient: The faults were all transient: every uncapped job must have completed
            and deleted every old trace.
    """
    lost: dict[str, int] = {}
    for experiment in world.targets:
        left = await world.remaining(experiment)
        report = reports[experiment.experiment_id]
        label = f"experiment {experiment.experiment_id}"
        violation(set(experiment.new) <= left, f"{label}: a trace newer than the cutoff went")
        violation(left <= experiment.all_ids, f"{label}: unknown traces appeared")
        gone = experiment.all_ids - left
        # Oldest first: what went is a prefix of the old traces.
        violation(gone == set(experiment.old[: len(gone)]), f"{label}: not the oldest traces went")
        lost[experiment.experiment_id] = len(gone)
        if report.max_traces is not None:
            violation(len(gone) <= report.max_traces, f"{label}: the cap was passed")
        violation(
            report.deleted <= len(gone) <= report.deleted + report.ambiguous,
            f"{label}: the server lost {len(gone)}, the report says {report.deleted} "
            f"deleted + {report.ambiguous} ambiguous",
        )
        if report.ambiguous == 0:
            violation(len(gone) == report.deleted, f"{label}: the count is not exact")
        if transient and report.max_traces is None:
            violation(report.state is JobState.COMPLETED, f"{label}: {report.error}")
            violation(not left & set(experiment.old), f"{label}: old traces were left behind")
    bystander_left = await world.remaining(world.bystander)
    violation(bystander_left == world.bystander.all_ids, "the bystander experiment lost traces")
    return lost


# -- engines and proxies -----------------------------------------------------------------------


def engine_config(url: str, **settings: Any) -> EngineConfig:
    """Fast retries and small batches, so a fault test takes seconds."""
    retry = settings.pop("retry", None) or RetryPolicy(
        initial_backoff=0.05, max_backoff=0.5, max_attempts=20, max_elapsed=60.0
    )
    values: dict[str, Any] = {
        "rate_limit": 50.0,
        "min_batch_size": 25,
        "initial_batch_size": 50,
        "max_batch_size": 200,
        "retry_budget": 200,
        "request_timeout": REQUEST_TIMEOUT,
        **settings,
    }
    return EngineConfig(client=ClientConfig(tracking_uri=url, timeout=30.0), retry=retry, **values)


def cutoff_job(experiment: Experiment, cutoff: int, **extra: Any) -> DeleteSpec:
    """A cutoff job on one experiment."""
    return DeleteSpec(experiment_id=experiment.experiment_id, max_timestamp_millis=cutoff, **extra)


def by_experiment(reports: Sequence[JobReport]) -> dict[str, JobReport]:
    """Job reports keyed by experiment ID."""
    return {report.experiment_id or "": report for report in reports}


def delete_requests(proxy: FaultProxy) -> list[float]:
    """When each delete request reached the proxy (monotonic seconds), in order."""
    return [entry.started for entry in proxy.stats.requests(DELETE)]


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy whose injected faults go into the module's tally."""
    async with FaultProxy(upstream=upstream) as proxy:
        try:
            yield proxy
        finally:
            TALLY.add_injected(proxy)
    assert proxy.stats.errors == []


@pytest_asyncio.fixture
async def proxy(mlflow_server: MlflowServer) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the session's server."""
    async with fault_proxy(mlflow_server.url) as running:
        yield running


class ExperimentRouter(httpx.AsyncBaseTransport):
    """Sends the delete calls of some experiments to another address (their own proxy).

    The fault proxy scripts by path only; routing by experiment lets one job meet faults
    while the others talk to the server directly.
    """

    def __init__(self, routes: Mapping[str, str]) -> None:
        self._routes = {key: httpx.URL(value) for key, value in routes.items()}
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite the address of a routed delete call, then send it."""
        if request.url.path.endswith(DELETE):
            target = self._routes.get(json.loads(request.content).get("experiment_id"))
            if target is not None:
                request.url = request.url.copy_with(host=target.host, port=target.port)
                request.headers["Host"] = f"{target.host}:{target.port}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the underlying transport."""
        await self._inner.aclose()


def cli_delete_command(
    experiment: Experiment, cutoff: int, url: str, audit_log: Path, *flags: str
) -> list[str]:
    """The CLI deleting an experiment's traces up to the cutoff, for real, with a JSON report
    and an audit log; ``flags`` come before ``--json --execute``."""
    return [
        sys.executable,
        "-m",
        "async_trace_delete",
        "delete",
        "--experiment-id",
        experiment.experiment_id,
        "--max-timestamp-millis",
        str(cutoff),
        "--tracking-uri",
        url,
        "--audit-log",
        str(audit_log),
        *flags,
        "--json",
        "--execute",
    ]


async def wait_for_stuck_delete(proxy: FaultProxy, within: float = 30.0) -> None:
    """Wait until a delayed delete call was carried out upstream and is being held."""
    with anyio.fail_after(within):
        while not any(  # noqa: ASYNC110 - the proxy's log has no event to wait on
            entry.fault is FaultKind.DELAY and entry.upstream_status == 200
            for entry in proxy.stats.requests(DELETE)
        ):
            await anyio.sleep(0.02)


# -- invariants across fault mixes -------------------------------------------------------------

FAULT_MIXES: dict[str, list[Fault]] = {
    "pushback": [
        Fault.too_many_requests(retry_after=0.2),
        Fault.database_locked(),
        Fault.PASS,
        Fault.too_many_requests(),
        Fault.internal_error(),
        Fault.PASS,
        Fault.status(502),
        Fault.database_locked().repeat(2),
    ],
    "lost-answers": [
        Fault.reset_after(),
        Fault.PASS,
        Fault.truncated_json(),
        Fault.reset_before(),
        Fault.PASS,
        Fault.reset_after(),
        Fault.invalid_json(),
    ],
    "slow-answers": [
        Fault.delay(REQUEST_TIMEOUT + 1),
        Fault.trickle(chunk_bytes=4, interval=0.05),
        Fault.PASS,
        Fault.delay(0.5),
        Fault.reset_after(),
    ],
}
# Transient faults only: "too many SQL variables" is permanent for a size (tested apart).
RANDOM_WEIGHTS: dict[Fault, float] = {
    Fault.too_many_requests(): 0.06,
    Fault.database_locked(): 0.06,
    Fault.internal_error(): 0.06,
    Fault.status(504): 0.04,
    Fault.reset_before(): 0.06,
    Fault.reset_after(): 0.06,
    Fault.truncated_json(): 0.06,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("mix", [*FAULT_MIXES, "random-7", "random-42"])
async def test_invariants_hold_under_each_fault_mix(
    mix: str, mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Under each mix of transient faults, two concurrent jobs keep every invariant."""
    world = await seed_world(mlflow_server, targets=2)
    if mix.startswith("random-"):
        seed = int(mix.removeprefix("random-"))
        proxy.script_random(
            path_contains=DELETE, seed=seed, weights=RANDOM_WEIGHTS, max_requests=40
        )
    else:
        proxy.script(path_contains=DELETE, faults=FAULT_MIXES[mix])
    uncapped, capped = world.targets
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run(
            [cutoff_job(uncapped, world.cutoff), cutoff_job(capped, world.cutoff, max_traces=120)]
        )

    reports = by_experiment(run.jobs)
    lost = await check_invariants(world, reports, transient=True)
    assert sum(fault_kinds(proxy).values()) > 0, "no fault was injected"
    assert lost[uncapped.experiment_id] == len(uncapped.old)
    assert reports[capped.experiment_id].state is JobState.COMPLETED
    TALLY.add_survived(proxy)


# -- accounting ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lost_answers_are_ambiguous_in_report_records_and_events(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Answers lost after the server deleted are counted ambiguous, exactly, and flagged."""
    world = await seed_world(mlflow_server, old=200)
    (experiment,) = world.targets
    proxy.script(
        path_contains=DELETE, faults=[Fault.PASS, Fault.reset_after(), Fault.truncated_json()]
    )
    events: list[Event] = []
    fixed = {"min_batch_size": 50, "initial_batch_size": 50, "max_batch_size": 50}
    async with Engine(engine_config(proxy.url, **fixed), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=True)
    # Both lost calls deleted a full batch: the server lost exactly deleted + ambiguous.
    assert lost[experiment.experiment_id] == report.deleted + report.ambiguous == 200
    assert (report.ambiguous, report.ambiguous_calls) == (100, 2)
    assert not report.ok
    unknown = [batch for batch in report.batches if batch.outcome_unknown]
    assert [(batch.requested, batch.deleted) for batch in unknown] == [(50, None), (50, None)]
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert [event.outcome_unknown for event in retries] == [True, True]
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_id_job_resolves_lost_answers_by_retrying_the_same_ids(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """An ID job stays exact: deleted + ambiguous + not found = requested = what the server lost."""
    world = await seed_world(mlflow_server, old=120, new=10)
    (experiment,) = world.targets
    wanted = experiment.old[:100]
    proxy.script(
        path_contains=DELETE,
        faults=[Fault.reset_before(), Fault.reset_after(), Fault.truncated_json(), Fault.PASS],
    )
    config = engine_config(proxy.url, initial_id_chunk=25, max_id_chunk=25)
    async with Engine(config) as engine:
        run = await engine.run(
            [DeleteSpec(experiment_id=experiment.experiment_id, trace_ids=tuple(wanted))]
        )

    (report,) = run.jobs
    left = await world.remaining(experiment)
    violation(left == experiment.all_ids - set(wanted), "an ID job deleted outside its IDs")
    violation(
        await world.remaining(world.bystander) == world.bystander.all_ids,
        "the bystander experiment lost traces",
    )
    assert report.state is JobState.COMPLETED
    assert report.deleted + report.ambiguous + report.not_found == len(wanted)
    # The connection reset before forwarding did nothing: its retry found all 25 IDs. The two
    # lost answers did delete: their retries found none, so those 50 stay ambiguous.
    assert (report.ambiguous, report.ambiguous_calls, report.not_found) == (50, 3, 0)
    TALLY.add_survived(proxy)


# -- back-off ----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "pushback", [Fault.too_many_requests(), Fault.database_locked()], ids=["429", "503"]
)
async def test_sustained_pushback_slows_calls_and_fails_only_that_job_on_no_progress(
    pushback: Fault, mlflow_server: MlflowServer
) -> None:
    """Sustained 429/503 on one job: calls slow down, the spent budget throttles instead of
    failing, the job fails once it made no progress for progress_timeout; others finish."""
    world = await seed_world(mlflow_server, targets=2, old=150)
    sick, healthy = world.targets
    budget = 5
    async with fault_proxy(mlflow_server.url) as proxy:
        proxy.script(path_contains=DELETE, faults=[pushback.repeat(1_000)])
        config = engine_config(
            mlflow_server.url,
            retry_budget=budget,
            retry_budget_ratio=0.0,
            progress_timeout=4.0,
            retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.5),
        )
        events: list[Event] = []
        router = ExperimentRouter({sick.experiment_id: proxy.url})
        async with Engine(
            config, hooks=[events.append], transport=router, random=lambda: 0.999
        ) as engine:
            run = await engine.run(
                [cutoff_job(sick, world.cutoff), cutoff_job(healthy, world.cutoff)]
            )

        reports = by_experiment(run.jobs)
        sick_report, healthy_report = reports[sick.experiment_id], reports[healthy.experiment_id]
        lost = await check_invariants(world, reports, transient=False)
        # The sick job: retried past the budget, then a clear failure naming the setting.
        assert sick_report.state is JobState.FAILED
        assert sick_report.error_type == "NoProgressError"
        assert sick_report.error is not None
        assert "progress_timeout" in sick_report.error
        assert sick_report.retries > budget
        assert sick_report.calls == sick_report.retries + 1
        assert lost[sick.experiment_id] == 0
        # The other job went on to the end.
        assert healthy_report.state is JobState.COMPLETED
        assert lost[healthy.experiment_id] == len(healthy.old)
        # Measured at the proxy: the calls of the sick job spread out...
        starts = delete_requests(proxy)
        assert len(starts) == sick_report.calls
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        early_rate = 2 / (starts[2] - starts[0])
        late_rate = 2 / (starts[-1] - starts[-3])
        assert late_rate < early_rate / 2, f"gaps between calls: {gaps}"
        # ...and the engine-wide rate only ever went down while it was pushed back.
        rates = [event.rate for event in events if isinstance(event, Throttled)]
        assert rates == sorted(rates, reverse=True)
        assert rates[-1] < rates[0]
        TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_retry_after_is_waited_for(mlflow_server: MlflowServer, proxy: FaultProxy) -> None:
    """A 429 with ``Retry-After: 1`` delays the next attempt by at least one second."""
    world = await seed_world(mlflow_server, old=20, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_requests(retry_after=1)])
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    await check_invariants(world, by_experiment(run.jobs), transient=True)
    first, second = delete_requests(proxy)[:2]
    assert second - first >= 0.95
    assert run.jobs[0].retries == 1
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_each_call_gives_up_after_max_attempts(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """A call failing 500 every time is tried ``max_attempts`` times, then the job fails."""
    world = await seed_world(mlflow_server, old=50, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.internal_error().repeat(10)])
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_attempts=3)
    async with Engine(engine_config(proxy.url, retry=retry)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == ServerError.__name__
    assert (report.calls, report.retries, len(delete_requests(proxy))) == (3, 2, 3)
    TALLY.add_survived(proxy)


# -- permanent errors --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, InvalidParameterError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
    ],
)
async def test_permanent_errors_fail_after_one_call(
    status: int, error_type: type[Exception], mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """400, 401, 403 and 404 are never retried: one call, a clear error, nothing deleted."""
    world = await seed_world(mlflow_server, old=50, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.status(status).repeat(5)])
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == error_type.__name__
    assert report.error is not None
    assert f"HTTP {status}" in report.error
    assert (report.calls, report.retries, len(delete_requests(proxy))) == (1, 0, 1)
    assert lost[experiment.experiment_id] == 0
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_too_many_sql_variables_halves_the_batch_and_never_grows_back(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """SQLite's "too many SQL variables" halves the batch (no retry of the same size), for good."""
    world = await seed_world(mlflow_server, old=250, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_sql_variables().repeat(2)])
    events: list[Event] = []
    sizes = {"min_batch_size": 10, "initial_batch_size": 200, "max_batch_size": 400}
    async with Engine(engine_config(proxy.url, **sizes), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=True)
    requested = report.batch_sizes
    assert requested[:3] == (200, 100, 50)
    assert [batch.outcome for batch in report.batches[:2]] == ["too_large", "too_large"]
    assert max(requested[2:]) <= 50
    assert report.retries == 0
    shrinks = [e for e in events if isinstance(e, BatchSizeChanged) and e.reason == "too_large"]
    assert [(e.old, e.new) for e in shrinks] == [(200, 100), (100, 50)]
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_too_many_sql_variables_at_the_smallest_batch_fails_fast(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """At the smallest allowed batch, "too many SQL variables" fails the job after one call."""
    world = await seed_world(mlflow_server, old=50, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_sql_variables().repeat(5)])
    fixed = {"min_batch_size": 20, "initial_batch_size": 20, "max_batch_size": 20}
    async with Engine(engine_config(proxy.url, **fixed)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == BatchTooLargeError.__name__
    assert (report.calls, report.retries) == (1, 0)
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_too_many_sql_variables_splits_an_id_chunk(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """An ID chunk refused as too large is split in halves; every ID is still deleted once."""
    world = await seed_world(mlflow_server, old=40, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_sql_variables()])
    config = engine_config(proxy.url, initial_id_chunk=40, max_id_chunk=40, max_concurrency=1)
    async with Engine(config) as engine:
        run = await engine.run(
            [DeleteSpec(experiment_id=experiment.experiment_id, trace_ids=tuple(experiment.old))]
        )

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=True)
    assert report.batch_sizes == (40, 20, 20)
    assert (report.deleted, report.ambiguous, report.not_found) == (40, 0, 0)
    TALLY.add_survived(proxy)


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


# -- issue 11: safe to leave unattended -----------------------------------------------------

# Answers from something in front of MLflow after the server did the work: not MLflow's JSON.
GATEWAY_AFTER_WORK = {
    "envoy-503": Fault.envoy_503_after(),
    "nginx-500": Fault.nginx_500_after(),
    "cloudflare-522": Fault.cloudflare_after(522),
    "empty-599": Fault.status_after(599, body=b""),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("gateway", sorted(GATEWAY_AFTER_WORK))
async def test_gateway_5xx_after_the_work_is_ambiguous_and_never_passes_the_cap(
    gateway: str, mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.1) A 5xx that is not MLflow's JSON, sent after the server deleted, counts against
    the cap as ambiguous: a capped job never deletes past its cap."""
    world = await seed_world(mlflow_server, old=300, new=20)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[GATEWAY_AFTER_WORK[gateway]])
    events: list[Event] = []
    fixed = {"min_batch_size": 100, "initial_batch_size": 100, "max_batch_size": 100}
    async with Engine(engine_config(proxy.url, **fixed), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff, max_traces=150)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=True)
    # The lost answer deleted 100; only 50 of the cap were left to ask for.
    assert lost[experiment.experiment_id] == 150
    assert (report.deleted, report.ambiguous, report.ambiguous_calls) == (50, 100, 1)
    assert report.state is JobState.COMPLETED
    assert [batch.outcome_unknown for batch in report.batches] == [True, False]
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert [event.outcome_unknown for event in retries] == [True]
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_mlflow_json_503_stays_certain(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.1) MLflow's own JSON 503 ("database is locked": rolled back) is not ambiguous."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.database_locked()])
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff, max_traces=120)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=True)
    assert lost[experiment.experiment_id] == report.deleted == 120
    assert (report.ambiguous, report.ambiguous_calls) == (0, 0)
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_a_redirect_fails_at_once_and_teaches_the_controllers_nothing(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.10) A 3xx (an SSO login page) fails the job after one call: no retry, no cut."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.redirect().repeat(10)])
    events: list[Event] = []
    async with Engine(engine_config(proxy.url), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == "RedirectError"
    assert report.error is not None
    assert "sso.example.com" in report.error
    assert (report.calls, report.retries, report.deleted) == (1, 0, 0)
    assert len(proxy.stats.requests(DELETE)) == 1
    assert not [event for event in events if isinstance(event, BatchSizeChanged)]
    assert not [event for event in events if isinstance(event, Throttled)]
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_a_failed_verification_keeps_the_run_report(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.8) A search failure after the deletes marks verification failed, keeps the counts;
    a transient one is retried and verification succeeds."""
    world = await seed_world(mlflow_server, targets=2, old=200, new=10)
    flaky, broken = world.targets
    # Searches, in order: flaky's count before, broken's count before, then the counts after.
    proxy.script(
        path_contains="traces/search",
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
    # The dry-run count, the count before: pass; every count after: refused.
    proxy.script(
        path_contains="traces/search", faults=[Fault.PASS, Fault.PASS, Fault.forbidden().repeat(5)]
    )
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


# About 4 in 10 delete calls meet a transient fault; none says anything about batch size.
FLAKY_WEIGHTS: dict[Fault, float] = {
    Fault.database_locked(): 0.12,
    Fault.too_many_requests(retry_after=1): 0.04,
    Fault.reset_after(): 0.10,
    Fault.envoy_503_after(): 0.06,
    Fault.reset_before(): 0.04,
    Fault.delay(0.3): 0.04,
}


@pytest.mark.asyncio
async def test_a_flaky_path_slows_the_run_but_does_not_fail_it(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.14) With ~40% of delete calls meeting transient faults, no attempt limit and a
    retry budget of 5, a 2-experiment cleanup finishes; the batch is not pinned at its minimum."""
    world = await seed_world(mlflow_server, targets=2, old=3_000, new=20)
    proxy.script_random(path_contains=DELETE, seed=11, weights=FLAKY_WEIGHTS)
    config = EngineConfig(
        client=ClientConfig(tracking_uri=proxy.url, timeout=30.0),
        retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.5),  # no attempt limit
        min_batch_size=25,
        initial_batch_size=100,
        max_batch_size=200,
        rate_limit=50.0,
        retry_budget=5,
        retry_budget_ratio=0.0,
        request_timeout=REQUEST_TIMEOUT,
    )
    async with Engine(config) as engine:
        run = await engine.run([cutoff_job(target, world.cutoff) for target in world.targets])

    reports = by_experiment(run.jobs)
    lost = await check_invariants(world, reports, transient=True)
    faults = sum(fault_kinds(proxy).values())
    calls = len(proxy.stats.requests(DELETE))
    assert faults >= calls // 4, (faults, calls)
    assert run.retries > config.retry_budget  # past the budget, and still finished
    for target in world.targets:
        report = reports[target.experiment_id]
        assert report.state is JobState.COMPLETED, report.error
        assert lost[target.experiment_id] == 3_000
        sizes = [batch.requested for batch in report.batches if batch.outcome == "ok"]
        assert max(sizes[-5:]) > 4 * config.min_batch_size, sizes
    TALLY.add_survived(proxy)


def test_fault_tally_is_clean() -> None:
    """No invariant was violated by any fault test of this module (run after them)."""
    assert TALLY.violations == []
