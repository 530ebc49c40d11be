"""The engine: runs many cleanup jobs concurrently against one MLflow server.

``async with Engine(config) as engine`` opens the HTTP client, the shared rate limiter, the
adaptive concurrency gate and the batch sizers inside the running loop; leaving the block
waits for submitted jobs (or cancels them if the block raised) and closes everything.

What the engine learns is a property of the server, not of one job: one batch sizer for
cutoff calls and one for ID calls are shared by every job, so a job that starts after others
begins from what they learnt, and jobs running at once share one view of the latency.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Self

import anyio
import httpx
from anyio.abc import TaskGroup

from ._calls import Caller, StopRequested
from ._client import TracesClient
from ._config import ClientConfig, EngineConfig
from ._controls import ConcurrencyLimit, Sizer
from ._events import Event, Hook
from ._exceptions import (
    ConflictingJobsError,
    EngineClosedError,
    MlflowApiError,
    TraceDeleteError,
    UsageError,
)
from ._foreground import ForegroundWatch
from ._jobs import NOT_VERIFIED, JobHandle, JobRunner, JobStatus, Verification
from ._ledger import Counters
from ._planning import JobPlan, PlanReport, check_expected, count_remaining, plan_job
from ._reports import RunReport
from ._selection import Selection, SkippedExperiment, expand
from ._shared import Controls, Runtime, SharedState, open_shared
from ._specs import DeleteSpec, ResolvedSpec, conflict_message, one_job_per_experiment
from ._sweep import SweepReport, sweep
from ._wire import Experiment

__all__ = ["Engine", "JobHandle", "JobStatus", "one_job_per_experiment"]

_logger = logging.getLogger("async_trace_delete")


class _EngineState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


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
        concurrency_limit: Decides the calls in flight instead of the one ``config`` asks
            for (a :class:`ConcurrencyController` when ``adaptive_concurrency`` and
            ``max_concurrency > 1``, else a :class:`FixedLimit` of ``max_concurrency``).
        cutoff_sizer: Sizes cutoff calls instead of a :class:`BatchSizer` on the config's
            batch settings.
        id_sizer: Sizes chunks of IDs instead of a :class:`BatchSizer` on the config's ID
            chunk settings.
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
        concurrency_limit: ConcurrencyLimit | None = None,
        cutoff_sizer: Sizer | None = None,
        id_sizer: Sizer | None = None,
    ) -> None:
        self._config = config if config is not None else EngineConfig()
        self._controls = Controls(
            limit=concurrency_limit, cutoff_sizer=cutoff_sizer, id_sizer=id_sizer
        )
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
        self._readers: set[Caller] = set()
        self._stop_requested = False
        self._watch: ForegroundWatch | None = None

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
        self._shared = open_shared(
            config,
            client,
            self._controls,
            Runtime(
                clock=self._clock, sleep=self._sleep, random=self._random, opened_at=self._clock()
            ),
            self._emit,
        )
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        shared = self._shared
        self._watch = ForegroundWatch(
            config=config,
            scheduler=shared.scheduler,
            canary=self._canary,
            clock=self._clock,
            sleep=self._sleep,
            emit=self._emit,
            origin=shared.runtime.opened_at,
            transport=self._transport,
        )
        self._watch.start(group)
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
            try:
                index = 0  # each job once, in order; one submitted meanwhile is waited for too
                while index < len(self._handles):
                    await self._handles[index].wait()
                    index += 1
            finally:
                if self._watch is not None:
                    await self._watch.aclose()
            await self._group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._shared.client.aclose()

    # -- submitting ----------------------------------------------------------------------------

    async def submit(self, spec: DeleteSpec) -> JobHandle:
        """Resolve a spec (experiment, cutoff, guardrails) and start it in the background.

        At most one unfinished job per experiment: submitting the same selection again
        while the first runs returns the first job's handle; a different one is refused.

        Raises:
            EngineClosedError: the engine is not open.
            NotFoundError: the experiment does not exist.
            GuardrailError: a guardrail refused the job (nothing was deleted).
            ConflictingJobsError: an unfinished job of this engine deletes from the same
                experiment with another selection.
        """
        shared = self._require_open()
        resolved = await self._resolve(spec, now_millis=self._wall_clock_ms())
        await self._guard(resolved)
        running = self._same_job_running(resolved)
        if running is not None:
            return running
        handle = JobHandle(self._runner(resolved, shared))
        self._handles.append(handle)
        assert self._group is not None
        self._group.start_soon(handle._run)
        return handle

    async def run(
        self, specs: Iterable[DeleteSpec] | PlanReport, *, verify: bool = False
    ) -> RunReport:
        """Run several jobs concurrently and return their reports.

        Every spec is resolved and checked first: if any is refused, nothing is deleted.
        After names are resolved a run holds at most one job per experiment: identical
        selections collapse into one job (the first label is kept), different ones are
        refused (:class:`ConflictingJobsError`) before anything is sent. Cancelling the
        caller's scope cancels the jobs; their handles (``engine.jobs``) keep the exact
        partial reports.

        Given the :class:`PlanReport` of :meth:`plan`, the run deletes in exactly the jobs
        planned (their experiments and pinned cutoffs) without looking anything up or counting
        again: ``plan`` then ``run`` costs one count per job in all.

        Args:
            specs: The jobs, or a plan of them.
            verify: Count what each job matches on the server before it starts (the plan's
                count, when given a plan) and after it ends, and report ``matched_before`` /
                ``verified_remaining`` beside the summed counts, which can overstate after
                an ambiguous call. A count that fails (or a stop before it) is reported as
                the job's ``verification_error``; the run's counts are kept.
        """
        shared = self._require_open()
        planned: list[JobPlan | None]
        skipped: list[SkippedExperiment] = []
        if isinstance(specs, PlanReport):
            resolved = [job.planned() for job in specs.jobs]
            planned = list(specs.jobs)
            skipped = list(specs.skipped)
            if not resolved:
                raise UsageError("run() needs at least one job; the plan has none")
        else:
            spec_list = list(specs)
            if not spec_list:
                raise UsageError("run() needs at least one spec")
            every, skipped = await self._expand_all(spec_list)
            guarded = [await self._guard(item) for item in every]  # refusals before conflicts
            resolved = one_job_per_experiment(every)
            planned = [guarded[_index_of(every, item)] for item in resolved]
        for item in resolved:
            running = self._same_job_running(item)
            if running is not None:
                raise ConflictingJobsError(
                    f"job {running.label!r} of this engine is still running the same "
                    f"selection on experiment {item.experiment_id} as {item.label!r}: wait "
                    "for its handle instead; nothing was deleted"
                )
        runners = [self._runner(item, shared) for item in resolved]
        handles = [JobHandle(runner) for runner in runners]
        # Registered before the counts, so a submit() meanwhile sees these experiments taken.
        self._handles.extend(handles)
        before: dict[JobRunner, int | str] = {}
        if verify:
            for runner, job in zip(runners, planned, strict=True):
                if job is not None and job.count_method != "upper_bound":
                    before[runner] = job.matched
                else:
                    before[runner] = await self._verify_count(runner)
        started = self._clock()
        async with anyio.create_task_group() as group:
            for handle in handles:
                group.start_soon(handle._run)
        if verify:
            for runner in runners:
                counted = before[runner]
                if isinstance(counted, str):
                    runner.verified(Verification(error=counted))
                    continue
                after = await self._verify_count(runner)
                runner.verified(
                    Verification(matched_before=counted, error=after)
                    if isinstance(after, str)
                    else Verification(matched_before=counted, remaining=after)
                )
        return RunReport(
            jobs=tuple(handle.report() for handle in handles),
            elapsed=self._clock() - started,
            skipped=tuple(skipped),
        )

    async def resolve(self, specs: Iterable[DeleteSpec]) -> list[ResolvedSpec]:
        """Look every experiment up and pin every cutoff, as :meth:`run` does, without
        counting or deleting; at most one job per experiment (see :meth:`run`). A spec with
        an experiment selector becomes one job per experiment it selects.

        Raises:
            NotFoundError: an experiment does not exist.
            UsageError: a named experiment is deleted.
            GuardrailError: a cutoff breaks a time rule.
            ConflictingJobsError: two specs select one experiment differently.
        """
        return list((await self.select(specs)).resolved)

    async def select(self, specs: Iterable[DeleteSpec]) -> Selection:
        """:meth:`resolve`, and the experiments the specs' selectors left out (deleted,
        excluded, an unreadable retention tag), each with its reason."""
        every, skipped = await self._expand_all(specs)
        return Selection(resolved=tuple(one_job_per_experiment(every)), skipped=tuple(skipped))

    async def plan(
        self,
        specs: Iterable[DeleteSpec | ResolvedSpec] | Selection,
        *,
        sample_size: int = 10,
        counts_only: bool = False,
    ) -> PlanReport:
        """Dry run: resolve and check every spec exactly as :meth:`run` does, then count
        what each would delete now. No delete call is ever sent.

        A count is one ``traces/metrics`` request where the server can express the job,
        else search pages (the plan says which: ``JobPlan.count_method``). Hand the plan to
        :meth:`run` to delete exactly these jobs without counting again.

        Args:
            specs: The jobs (a :class:`ResolvedSpec` from :meth:`resolve` is not looked up
                again; a :class:`Selection` from :meth:`select` keeps what it left out).
            sample_size: How many of the oldest traces each job would delete to show.
            counts_only: Count only: no sample, no oldest/newest, and ID jobs without
                ``expect_at_most`` are not counted (their number of IDs is the bound).

        Raises:
            GuardrailError: a job would delete more than its ``expect_at_most``.
        """
        every, skipped = await self._expand_all(specs)
        resolved = one_job_per_experiment(every)
        plans = await self._count_all(resolved, sample_size, counts_only)
        return PlanReport(jobs=tuple(plans), skipped=tuple(skipped))

    async def sweep_artifacts(
        self,
        experiment_ids: Sequence[str] = (),
        experiment_names: Sequence[str] = (),
        *,
        execute: bool = False,
        count_bytes: bool = True,
    ) -> SweepReport:
        """Find the trace folders whose trace no longer exists, and with ``execute`` remove
        them (see :mod:`._sweep`); paced by the engine's gate like every call.

        Args:
            experiment_ids: Experiments to sweep, by ID.
            experiment_names: Experiments to sweep, by name.
            execute: Remove the orphans (else only count them: a dry run).
            count_bytes: List each orphan's ``artifacts/`` folder to count its bytes.

        Raises:
            UsageError: no experiment given.
            NotFoundError: an experiment does not exist (nothing was removed).
        """
        shared = self._require_open()
        return await sweep(
            self._reader,
            shared,
            experiment_ids,
            experiment_names,
            execute=execute,
            count_bytes=count_bytes,
            emit=self._emit,
        )

    def stop_all(self) -> None:
        """Stop every job gracefully (calls in flight finish and are counted).

        Jobs that ``run``/``submit`` start afterwards start stopped: they send nothing.
        """
        self._stop_requested = True
        for handle in self._handles:
            handle.stop()
        for reader in self._readers:
            reader.stop()

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
        if self._stop_requested:
            runner.stop()
        return runner

    def _same_job_running(self, resolved: ResolvedSpec) -> JobHandle | None:
        """The unfinished job of this engine on the experiment, if it has the same selection.

        Raises:
            ConflictingJobsError: it has another selection.
        """
        for handle in self._handles:
            if handle.done or handle.resolved.experiment_id != resolved.experiment_id:
                continue
            if handle.resolved.conflict_key() != resolved.conflict_key():
                raise ConflictingJobsError(conflict_message(handle.resolved, resolved))
            return handle
        return None

    @contextlib.contextmanager
    def _reader(self, label: str) -> Iterator[Caller]:
        """A caller for the engine's own reads (lookups, plans, verification), stopped with
        the engine while it is in use.

        Raises:
            _StoppedError: the engine was stopped before the reads finished (the Caller's
                internal stop signal never reaches the user).
        """
        shared = self._require_open()
        caller = Caller(shared, key=label, label=label, experiment_id=None, counts=Counters())
        if self._stop_requested:
            caller.stop()
        self._readers.add(caller)
        try:
            yield caller
        except StopRequested:
            raise _StoppedError(
                f"job {label!r}: the engine was stopped before it started; nothing was deleted"
            ) from None
        finally:
            self._readers.discard(caller)

    def _require_open(self) -> SharedState:
        if self._state is not _EngineState.OPEN or self._shared is None:
            state = "closed" if self._state is _EngineState.CLOSED else "not open yet"
            raise EngineClosedError(
                f"the engine is {state}; use `async with Engine(...) as engine:`"
            )
        return self._shared

    async def _resolve(self, spec: DeleteSpec, now_millis: int) -> ResolvedSpec:
        """The one job a spec naming one experiment is (see :meth:`_expand`)."""
        if spec.experiments is not None:
            raise UsageError(
                "a spec with an experiment selector is many jobs: give it to run() or plan() "
                "(or select() it first), not submit()"
            )
        resolved, _ = await self._expand(spec, now_millis)
        (item,) = resolved
        return item

    async def _expand_all(
        self, specs: Iterable[DeleteSpec | ResolvedSpec] | Selection
    ) -> tuple[list[ResolvedSpec], list[SkippedExperiment]]:
        """Every spec's jobs (one per experiment, pinned at one ``now``; a resolved spec as
        it is) and what the selectors left out (a :class:`Selection` keeps its own)."""
        now = self._wall_clock_ms()
        every: list[ResolvedSpec] = []
        skipped: list[SkippedExperiment] = []
        if isinstance(specs, Selection):  # select()ed already: keep what it left out
            skipped += specs.skipped
            specs = specs.resolved
        for spec in specs:
            if isinstance(spec, ResolvedSpec):
                every.append(spec)
                continue
            found, left_out = await self._expand(spec, now)
            every += found
            skipped += left_out
        return every, skipped

    async def _expand(
        self, spec: DeleteSpec, now_millis: int
    ) -> tuple[list[ResolvedSpec], list[SkippedExperiment]]:
        """Look the spec's experiment(s) up once and pin one job per experiment."""
        client = self._require_open().client
        with self._reader(spec.label or spec.experiment) as caller:

            async def lookup() -> Experiment:
                if spec.experiment_id is not None:
                    experiment_id = spec.experiment_id
                    return await caller.read(lambda: client.get_experiment(experiment_id))
                name = spec.experiment_name
                assert name is not None
                return await caller.read(lambda: client.get_experiment_by_name(name))

            async def search(
                filter_string: str | None, view: str, token: str | None
            ) -> tuple[tuple[Experiment, ...], str | None]:
                return await caller.read(
                    lambda: client.search_experiments(
                        filter_string=filter_string, view_type=view, page_token=token
                    )
                )

            expanded, skipped = await expand(
                spec, lookup=lookup, search=search, now_millis=now_millis
            )
        resolved = [
            one.resolve(now_millis=now_millis, experiment_id=experiment.experiment_id)
            for one, experiment in expanded
        ]
        return resolved, skipped

    async def _count_all(
        self, resolved: Sequence[ResolvedSpec], sample_size: int, counts_only: bool
    ) -> list[JobPlan]:
        """Plan every job, ``max_concurrency`` counts at a time, in the jobs' order.

        A plan of 2,000 small experiments is 2,000 round trips: one after another they take
        minutes, side by side seconds (the reads fill the slots, see ``read_rate_limit``).
        The first failure, in the jobs' order, is raised, as counting them in turn would:
        once one fails no new count starts, and the ones already started (all the jobs
        before it among them) finish first.
        """
        plans: list[JobPlan | None] = [None] * len(resolved)
        failures: dict[int, Exception] = {}
        slots = anyio.CapacityLimiter(self._config.max_concurrency)

        async def count(index: int, item: ResolvedSpec) -> None:
            async with slots:
                if failures:
                    return
                try:
                    plans[index] = await self._count(item, sample_size, counts_only)
                except Exception as error:  # raised below, in the jobs' order
                    failures[index] = error

        async with anyio.create_task_group() as group:
            for index, item in enumerate(resolved):
                group.start_soon(count, index, item)
        if failures:
            raise failures[min(failures)]
        return [plan for plan in plans if plan is not None]

    async def _count(self, resolved: ResolvedSpec, sample_size: int, counts_only: bool) -> JobPlan:
        """Plan one job (one count) and hold it to its ``expect_at_most``."""
        with self._reader(resolved.label) as reader:
            plan = await plan_job(
                reader,
                resolved,
                sample_size=sample_size,
                page_size=self._config.search_page_size,
                counts_only=counts_only,
            )
        check_expected(plan)
        return plan

    async def _guard(self, resolved: ResolvedSpec) -> JobPlan | None:
        """The one count a job with ``expect_at_most`` needs before it starts."""
        if resolved.spec.expect_at_most is None:
            return None
        return await self._count(resolved, 0, True)

    async def _verify_count(self, runner: JobRunner) -> int | str:
        """Count what a job matches, for ``verify``; a failure comes back as its text.

        Through the engine's own reader, not the job's caller: a job that failed (halted) is
        still verified; a stopped job, or a stop of the engine, ends the count.
        """
        stopped = NOT_VERIFIED
        if runner.stopping:
            return stopped
        try:
            with self._reader(runner.label) as reader:
                return await count_remaining(reader, runner.resolved, self._config.search_page_size)
        except _StoppedError:
            return stopped
        except (MlflowApiError, TraceDeleteError) as error:
            return f"{type(error).__name__}: {error}"

    def _canary(self) -> Awaitable[object] | None:
        """One canary in a running job's experiment (the oldest running), or ``None``."""
        running = next((handle for handle in self._handles if not handle.done), None)
        if running is None or self._shared is None:
            return None
        experiment_id = running.resolved.experiment_id
        return self._shared.client.search_traces(experiment_id, max_results=1)

    def _emit(self, event: Event) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:  # a broken hook must not break a deletion
                _logger.exception("event hook %r failed", hook)


class _StoppedError(TraceDeleteError):
    """The engine was stopped while one of its own reads (lookup, plan, count) waited."""


def _index_of(items: Sequence[ResolvedSpec], item: ResolvedSpec) -> int:
    return next(position for position, other in enumerate(items) if other is item)
