"""The engine: runs many cleanup jobs concurrently against one MLflow server.

``async with Engine(config) as engine`` opens the HTTP client, the shared rate limiter, the
adaptive concurrency gate and the batch sizers inside the running loop; leaving the block
waits for submitted jobs (or cancels them if the block raised) and closes everything.

What the engine learns is a property of the server, not of one job: one batch sizer for
cutoff calls and one for ID calls are shared by every job, so a job that starts after others
begins from what they learnt, and jobs running at once share one view of the latency.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Self

import anyio
import httpx
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict

from ._batching import BatchSizer
from ._client import TracesClient
from ._concurrency import ConcurrencyController
from ._config import ClientConfig, EngineConfig
from ._events import Event, Hook, JobFinished
from ._exceptions import EngineClosedError, GuardrailError, UsageError
from ._jobs import JobRunner, SharedState
from ._planning import PlanReport, count_remaining, plan_job
from ._reports import JobReport, JobState, RunReport
from ._retry import RetryBudget
from ._scheduler import Scheduler
from ._specs import DeleteSpec, ResolvedSpec

__all__ = ["Engine", "JobHandle", "JobStatus"]

_logger = logging.getLogger("async_trace_delete")


class _EngineState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class JobStatus(BaseModel):
    """A live view of a running job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    state: JobState
    deleted: int
    ambiguous: int
    calls: int
    retries: int
    batch_size: int
    elapsed: float


class JobHandle:
    """A submitted job: watch it, stop it, cancel it, wait for its report."""

    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner
        self._done = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False

    def __repr__(self) -> str:
        return f"<JobHandle {self.label!r} {self._runner.state.value}>"

    @property
    def label(self) -> str:
        """The job's name (its label, or the experiment)."""
        return self._runner.label

    @property
    def resolved(self) -> ResolvedSpec:
        """The spec as pinned at submission (experiment ID and cutoff)."""
        return self._runner.resolved

    @property
    def done(self) -> bool:
        """True once the job reached a final state."""
        return self._done.is_set()

    @property
    def status(self) -> JobStatus:
        """Deleted so far, calls, retries, current batch size and state."""
        report = self._runner.report()
        return JobStatus(
            label=report.label,
            state=report.state,
            deleted=report.deleted,
            ambiguous=report.ambiguous,
            calls=report.calls,
            retries=report.retries,
            batch_size=self._runner.current_batch_size,
            elapsed=report.elapsed,
        )

    def report(self) -> JobReport:
        """A snapshot report (final once :attr:`done`)."""
        return self._runner.report()

    def stop(self) -> None:
        """Stop gracefully: send no new call, let calls in flight finish and count them."""
        self._runner.stopping = True

    def cancel(self) -> None:
        """Cancel now, including calls in flight (reported as outcome unknown)."""
        self._runner.stopping = True
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait(self) -> JobReport:
        """Wait for the job to end and return its final report."""
        await self._done.wait()
        return self._runner.report()

    async def _run(self) -> None:
        runner = self._runner
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                try:
                    await runner.run()
                except anyio.get_cancelled_exc_class():
                    runner.state = JobState.CANCELLED
                    raise
                except Exception as error:  # the job fails; its siblings go on
                    runner.error = error
                    runner.state = JobState.FAILED
                else:
                    runner.state = JobState.CANCELLED if runner.stopping else JobState.COMPLETED
        finally:
            if not runner.state.finished:
                runner.state = JobState.CANCELLED
            runner.finished_at = runner.shared.clock()
            self._done.set()
            runner.shared.emit(
                JobFinished(report=runner.report(), at=runner.finished_at - runner.shared.opened_at)
            )


class Engine:
    """Runs cleanup jobs concurrently under one rate limit, adaptive batches and retries.

    Args:
        config: Engine settings; default ``EngineConfig()`` with the client read from
            MLflow's environment variables.
        hooks: Callables receiving every :mod:`event <async_trace_delete._events>`.
        transport: An httpx transport for the client (the test seam).
        clock: Monotonic seconds (injected in tests).
        sleep: Awaitable sleep used for backoff and pauses (injected in tests).
        random: Uniform ``[0, 1)`` source for backoff jitter.
        wall_clock_ms: Current time in epoch milliseconds, for ``older_than`` cutoffs.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        hooks: Sequence[Hook] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        random: Callable[[], float] = random.random,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._config = config if config is not None else EngineConfig()
        self._hooks = list(hooks)
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._wall_clock_ms = wall_clock_ms
        self._state = _EngineState.UNOPENED
        self._shared: SharedState | None = None
        self._group: TaskGroup | None = None
        self._handles: list[JobHandle] = []
        self._stop_requested = False

    def __repr__(self) -> str:
        return f"<Engine {self._state.value}, {len(self._handles)} jobs>"

    @property
    def config(self) -> EngineConfig:
        """The engine's settings."""
        return self._config

    @property
    def jobs(self) -> tuple[JobHandle, ...]:
        """Every job this engine has started, in order."""
        return tuple(self._handles)

    @property
    def client(self) -> TracesClient:
        """The open traces client (for searches alongside the engine)."""
        return self._require_open().client

    @property
    def concurrency(self) -> int:
        """Calls allowed in flight right now."""
        return self._require_open().scheduler.limit

    async def __aenter__(self) -> Self:
        if self._state is not _EngineState.UNOPENED:
            raise EngineClosedError("an Engine can be opened once; create a new one")
        config = self._config
        client_config = config.client if config.client is not None else ClientConfig.from_env()
        client = TracesClient(client_config, transport=self._transport)
        client.open()
        controller = (
            ConcurrencyController(
                max_limit=config.max_concurrency, target_latency=config.target_latency
            )
            if config.adaptive_concurrency and config.max_concurrency > 1
            else None
        )
        opened_at = self._clock()
        self._shared = SharedState(
            config=config,
            client=client,
            scheduler=Scheduler(
                rate_limit=config.rate_limit,
                controller=controller,
                max_concurrency=config.max_concurrency,
                clock=self._clock,
                sleep=self._sleep,
                emit=self._emit,
                origin=opened_at,
            ),
            cutoff_sizer=BatchSizer(
                target_latency=config.target_latency,
                min_size=config.min_batch_size,
                max_size=config.max_batch_size,
                initial_size=config.initial_batch_size,
            ),
            id_sizer=BatchSizer(
                target_latency=config.target_latency,
                min_size=1,
                max_size=config.max_id_chunk,
                initial_size=config.initial_id_chunk,
            ),
            budget=RetryBudget(initial=config.retry_budget, ratio=config.retry_budget_ratio),
            clock=self._clock,
            sleep=self._sleep,
            random=self._random,
            emit=self._emit,
            opened_at=opened_at,
        )
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        self._state = _EngineState.OPEN
        return self

    async def __aexit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if self._state is not _EngineState.OPEN:
            return
        self._state = _EngineState.CLOSED
        assert self._group is not None
        assert self._shared is not None
        try:
            if exc is not None:
                self.cancel_all()
            await self._group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._shared.client.aclose()

    # -- submitting ----------------------------------------------------------------------------

    async def submit(self, spec: DeleteSpec) -> JobHandle:
        """Resolve a spec (experiment, cutoff, guardrails) and start it in the background.

        Raises:
            EngineClosedError: the engine is not open.
            NotFoundError: the experiment does not exist.
            GuardrailError: a guardrail refused the job (nothing was deleted).
        """
        shared = self._require_open()
        resolved = await self._resolve(spec)
        handle = JobHandle(self._runner(resolved, shared))
        self._handles.append(handle)
        assert self._group is not None
        self._group.start_soon(handle._run)
        return handle

    async def run(self, specs: Iterable[DeleteSpec], *, verify: bool = False) -> RunReport:
        """Run several jobs concurrently and return their reports.

        Every spec is resolved and checked first: if any is refused, nothing is deleted.
        Cancelling the caller's scope cancels the jobs; their handles (``engine.jobs``) keep
        the exact partial reports.

        Args:
            specs: The jobs.
            verify: Count what each job matches on the server before it starts and after it
                ends (by search), and report ``matched_before`` / ``verified_remaining``
                beside the summed counts, which can overstate after an ambiguous call.
        """
        shared = self._require_open()
        spec_list = list(specs)
        if not spec_list:
            raise UsageError("run() needs at least one spec")
        resolved = [await self._resolve(spec) for spec in spec_list]
        runners = [self._runner(item, shared) for item in resolved]
        if verify:
            for runner in runners:
                runner.matched_before = await count_remaining(
                    shared.client, runner.resolved, self._config.search_page_size
                )
        handles = [JobHandle(runner) for runner in runners]
        self._handles.extend(handles)
        started = self._clock()
        async with anyio.create_task_group() as group:
            for handle in handles:
                group.start_soon(handle._run)
        if verify:
            for runner in runners:
                runner.verified_remaining = await count_remaining(
                    shared.client, runner.resolved, self._config.search_page_size
                )
        return RunReport(
            jobs=tuple(handle.report() for handle in handles), elapsed=self._clock() - started
        )

    async def plan(self, specs: Iterable[DeleteSpec], *, sample_size: int = 10) -> PlanReport:
        """Dry run: resolve and check every spec exactly as :meth:`run` does, then count
        what each would delete now (by search). No delete call is ever sent.
        """
        shared = self._require_open()
        plans = []
        for spec in specs:
            resolved = await self._resolve(spec)
            plans.append(
                await plan_job(
                    shared.client,
                    resolved,
                    sample_size=sample_size,
                    page_size=self._config.search_page_size,
                )
            )
        return PlanReport(jobs=tuple(plans))

    def stop_all(self) -> None:
        """Stop every job gracefully (calls in flight finish and are counted).

        Jobs that ``run``/``submit`` start afterwards start stopped: they send nothing.
        """
        self._stop_requested = True
        for handle in self._handles:
            handle.stop()

    def cancel_all(self) -> None:
        """Cancel every job now (calls in flight are reported as outcome unknown)."""
        for handle in self._handles:
            handle.cancel()

    def add_hook(self, hook: Hook) -> None:
        """Send future events to ``hook`` too."""
        self._hooks.append(hook)

    # -- internals ---------------------------------------------------------------------------

    def _runner(self, resolved: ResolvedSpec, shared: SharedState) -> JobRunner:
        runner = JobRunner(resolved, shared)
        runner.stopping = self._stop_requested
        return runner

    def _require_open(self) -> SharedState:
        if self._state is not _EngineState.OPEN or self._shared is None:
            state = "closed" if self._state is _EngineState.CLOSED else "not open yet"
            raise EngineClosedError(
                f"the engine is {state}; use `async with Engine(...) as engine:`"
            )
        return self._shared

    async def _resolve(self, spec: DeleteSpec) -> ResolvedSpec:
        shared = self._require_open()
        client = shared.client
        if spec.experiment_id is not None:
            experiment = await client.get_experiment(spec.experiment_id)
        else:
            assert spec.experiment_name is not None
            experiment = await client.get_experiment_by_name(spec.experiment_name)
        resolved = spec.resolve(
            now_millis=self._wall_clock_ms(), experiment_id=experiment.experiment_id
        )
        if spec.expect_at_most is not None:
            plan = await plan_job(
                client, resolved, sample_size=0, page_size=self._config.search_page_size
            )
            expected = plan.would_delete
            if expected > spec.expect_at_most:
                raise GuardrailError(
                    f"expect_at_most: job {resolved.label!r} would delete {expected} traces, "
                    f"more than the {spec.expect_at_most} expected; nothing was deleted"
                )
        return resolved

    def _emit(self, event: Event) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:  # a broken hook must not break a deletion
                _logger.exception("event hook %r failed", hook)
