"""Property tests of the engine: exact accounting under any drawn fault schedule.

On a simulated server with a drawn fault schedule (429, 503, 500, 502 after the work, a
timeout before or after the delete, a connection lost after it, "too many SQL variables"),
what the server lost equals the engine's confirmed count plus part of its ambiguous count,
and no invariant breaks. Nothing sleeps: the engine runs on the server's fake clock.
"""

from __future__ import annotations

import asyncio

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    JobReport,
    JobState,
    RetryPolicy,
)
from tests.support.simulated_server import (
    BASE_MS,
    SIM_URL,
    TOO_MANY_VARIABLES,
    Fault,
    LatencyModel,
    SimulatedServer,
    sim_traces,
)

NOW_MS = BASE_MS + 30 * 86_400_000


# -- the engine on a simulated server under a drawn fault schedule ---------------------------


FAULT_KINDS = (
    "pass",
    "429",
    "503",
    "500",
    "502-after",
    "timeout-before",
    "timeout-after",
    "reset-after",
    "connect",
    "too-large",
)
TRANSIENT = frozenset(FAULT_KINDS) - {"too-large"}


def make_fault(kind: str) -> Fault | None:
    """The simulated server's fault for one drawn kind (built inside the running loop)."""
    match kind:
        case "pass":
            return None
        case "429":
            return Fault(status=429, error_code="REQUEST_LIMIT_EXCEEDED", message="slow down")
        case "503":
            return Fault(status=503, message="(sqlite3.OperationalError) database is locked")
        case "500":
            return Fault(status=500, error_code="INTERNAL_ERROR")
        case "502-after":
            return Fault(status=502, error_code="BAD_GATEWAY", apply_first=True)
        case "timeout-before":
            return Fault(raise_error=httpx.ReadTimeout)
        case "timeout-after":
            return Fault(raise_error=httpx.ReadTimeout, apply_first=True)
        case "reset-after":
            return Fault(raise_error=httpx.RemoteProtocolError, apply_first=True)
        case "connect":
            return Fault(raise_error=httpx.ConnectError)
        case "too-large":
            return Fault(status=503, message=TOO_MANY_VARIABLES)
    raise AssertionError(kind)


def check_accounting(report: JobReport, lost: int) -> None:
    """What the server lost lies between the confirmed count and confirmed + ambiguous."""
    assert report.deleted <= lost <= report.deleted + report.ambiguous, (
        report.deleted,
        lost,
        report.ambiguous,
    )
    if report.ambiguous == 0:
        assert lost == report.deleted


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    schedule=st.lists(st.sampled_from(FAULT_KINDS), max_size=40),
    old=st.integers(0, 400),
    new=st.integers(0, 30),
    cap=st.none() | st.integers(1, 500),
    id_count=st.integers(1, 120),
    unknown_ids=st.integers(0, 10),
    initial_batch=st.integers(1, 200),
)
def test_server_loss_matches_confirmed_plus_ambiguous_under_any_fault_schedule(
    schedule: list[str],
    old: int,
    new: int,
    cap: int | None,
    id_count: int,
    unknown_ids: int,
    initial_batch: int,
) -> None:
    """Any fault schedule: deleted <= server loss <= deleted + ambiguous; no invariant breaks."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.3, per_trace=1e-4))
    cutoff = BASE_MS + old - 1
    cutoff_traces = sim_traces(old + new, tag=1)
    id_traces = sim_traces(150, tag=2)
    bystander_traces = sim_traces(old + new, tag=3)
    cutoff_experiment = server.add_experiment("cutoff", cutoff_traces)
    id_experiment = server.add_experiment("ids", id_traces)
    bystander = server.add_experiment("bystander", bystander_traces)
    wanted = [trace.trace_id for trace in id_traces[:id_count]]
    strangers = [f"tr-{index:032x}" for index in range(unknown_ids)]

    async def main() -> tuple[JobReport, JobReport]:
        server.script(*(make_fault(kind) for kind in schedule))
        config = EngineConfig(
            client=ClientConfig(tracking_uri=SIM_URL),
            rate_limit=10_000.0,
            min_batch_size=1,
            initial_batch_size=initial_batch,
            max_batch_size=400,
            initial_id_chunk=min(25, initial_batch),
            max_id_chunk=50,
            retry=RetryPolicy(initial_backoff=0.05, max_backoff=1.0, max_attempts=12),
            retry_budget=1_000,
        )
        async with Engine(
            config,
            transport=server.transport,
            clock=server.clock,
            sleep=server.clock.sleep,
            random=lambda: 0.5,
            wall_clock_ms=lambda: NOW_MS,
        ) as engine:
            run = await engine.run(
                [
                    DeleteSpec(
                        experiment_id=cutoff_experiment,
                        max_timestamp_millis=max(cutoff, 1),
                        max_traces=cap,
                    ),
                    DeleteSpec(experiment_id=id_experiment, trace_ids=(*wanted, *strangers)),
                ]
            )
        cutoff_report, id_report = run.jobs
        return cutoff_report, id_report

    cutoff_report, id_report = asyncio.run(main())
    transient = set(schedule) <= TRANSIENT

    # The cutoff job: only the oldest traces, never a new one, never past the cap.
    left = server.remaining(cutoff_experiment)
    lost = len(cutoff_traces) - len(left)
    assert left == cutoff_traces[lost:]
    assert lost <= old
    if cap is not None:
        assert lost <= cap
    check_accounting(cutoff_report, lost)
    if transient:
        assert cutoff_report.state is JobState.COMPLETED, cutoff_report.error
        if cap is None:
            assert lost == old
        elif cutoff_report.ambiguous == 0:
            assert lost == min(old, cap)

    # The ID job: only its IDs; every one accounted for once.
    left_ids = {trace.trace_id for trace in server.remaining(id_experiment)}
    assert left_ids >= {trace.trace_id for trace in id_traces[id_count:]}
    id_lost = len(id_traces) - len(left_ids)
    check_accounting(id_report, id_lost)
    requested = len(wanted) + len(strangers)
    if id_report.state is JobState.COMPLETED:
        assert not left_ids & set(wanted)
        # Exactly `requested` once the split bug below is fixed; bounded until then.
        assert id_report.deleted + id_report.not_found <= requested
        assert requested <= id_report.deleted + id_report.ambiguous + id_report.not_found
    if transient:
        assert id_report.state is JobState.COMPLETED, id_report.error

    # Nobody touched the bystander.
    assert server.remaining(bystander) == sorted(bystander_traces)
    assert all(call.experiment_id in (cutoff_experiment, id_experiment) for call in server.deletes)


def test_id_chunk_split_after_a_lost_answer_counts_each_id_once() -> None:
    """A lost answer then "too many SQL variables" still accounts for each ID exactly once."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.3))
    traces = sim_traces(5, tag=4)
    experiment_id = server.add_experiment("split", traces)
    ids = (traces[0].trace_id, "tr-" + "f" * 32)  # one real trace, one the server never had

    async def main() -> JobReport:
        server.script(
            make_fault("502-after"),  # deleted upstream, the answer is lost: ambiguous
            make_fault("too-large"),  # the retry is refused: split the chunk
        )
        config = EngineConfig(client=ClientConfig(tracking_uri=SIM_URL), rate_limit=10_000.0)
        async with Engine(
            config,
            transport=server.transport,
            clock=server.clock,
            sleep=server.clock.sleep,
            random=lambda: 0.5,
            wall_clock_ms=lambda: NOW_MS,
        ) as engine:
            run = await engine.run([DeleteSpec(experiment_id=experiment_id, trace_ids=ids)])
        return run.jobs[0]

    report = asyncio.run(main())
    assert report.state is JobState.COMPLETED
    assert server.deleted(experiment_id) == 1
    check_accounting(report, 1)
    assert report.deleted + report.ambiguous + report.not_found == len(ids), report
