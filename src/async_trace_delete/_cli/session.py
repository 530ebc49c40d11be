"""One CLI run against the server: check the experiments, plan, execute, handle signals.

The order never changes: experiments are looked up (read-only), the plan is counted by
search (read-only), and only then, with ``--execute``, ``Engine.run`` deletes. A signal before
that point ends the run with nothing deleted. During the run the first SIGINT/SIGTERM stops
scheduling (calls in flight finish and are counted), the second cancels calls in flight
(reported as outcome unknown); either way the exact partial report is printed and logged,
with exit code 130.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .. import __version__
from .._config import redact_url
from .._engine import Engine
from .._exceptions import (
    GuardrailError,
    InvalidParameterError,
    TraceDeleteError,
    UsageError,
)
from .._jobs import NOT_VERIFIED
from .._planning import JobPlan, PlanReport
from .._reports import RunReport
from .._specs import ResolvedSpec
from .audit import AuditLog, Redactor, job_summary, who_and_where
from .inputs import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    BadInputError,
    Invocation,
    describe_guardrail,
)
from .lookup import Lookup
from .plan_file import checked_plan, save_plan
from .progress import ProgressDisplay
from .render import plan_json, render_plan
from .summary import render_summary, report_json
from .terminal import make_console, print_json, watch_signals

__all__ = ["Session"]


class Session:
    """Runs one :class:`Invocation`: the async part of the CLI.

    Args:
        invocation: The checked command line.
        engine_seams: Keyword arguments for :class:`Engine` (``transport``, ``clock``, ...;
            test seams).
    """

    def __init__(
        self,
        invocation: Invocation,
        *,
        engine_seams: Mapping[str, Any] | None = None,
    ) -> None:
        self.invocation = invocation
        args = invocation.args
        self._engine_options = dict(engine_seams or {})
        self._wall_clock_ms: Callable[[], int] = self._engine_options.get(
            "wall_clock_ms", lambda: time.time_ns() // 1_000_000
        )
        self.redact = Redactor(invocation.secrets)
        self.out = make_console(sys.stdout)
        self.err = make_console(sys.stderr)
        self.quiet = bool(args.quiet)
        self.json = bool(args.json)
        self.progress = ProgressDisplay(
            self.err, enabled=invocation.execute and not self.quiet and not self.json
        )
        path = Path(args.audit_log).expanduser() if args.audit_log else None
        self.audit = AuditLog(
            path, run_id=uuid.uuid4().hex, redactor=self.redact, on_failure=self._audit_broke
        )
        self.lookup = Lookup(
            invocation, audit=self.audit, note=self._note, now_ms=self._wall_clock_ms
        )
        plan_out = getattr(invocation.args, "plan_out", None)
        self.plan_out = Path(plan_out).expanduser() if plan_out else None
        self.signals = 0
        self.late_signals = 0  # signals that came after every job had finished
        self.engine: Engine | None = None
        self.scope: anyio.CancelScope | None = None  # the phase a signal cancels

    # -- the run ------------------------------------------------------------------------------

    def server_line(self) -> str:
        """``Server: URL (from ...)``: which server this run talks to, and why."""
        return self.redact(self.invocation.server_line())

    def server_json(self) -> dict[str, Any] | None:
        """The ``server`` object of ``--json`` (None without a client config)."""
        return self.invocation.server_json()

    def run(self) -> int:
        """Run to the end and return the exit code."""
        path = self.audit.path
        if path is not None:
            try:
                self.audit.open()
            except OSError as error:
                return self._error(
                    f"--audit-log: cannot use {str(path)!r}: {error.strerror or error}",
                    EXIT_BAD_INPUT,
                )
        try:
            self.audit.write("run_start", **self._run_start())
            if self.audit.failure is not None:
                return self._audit_failed()
            return anyio.run(self._main)
        finally:
            self.audit.close()

    def _run_start(self) -> dict[str, Any]:
        invocation = self.invocation
        client = invocation.config.client
        jobs = []
        for spec, _ in invocation.jobs:
            item = spec.model_dump(mode="json", exclude={"trace_ids"}, exclude_none=True)
            if spec.trace_ids is not None:
                item["trace_ids"] = len(spec.trace_ids)
            jobs.append(item)
        return {
            **who_and_where(),
            "version": __version__,
            "command": invocation.command(),
            "tracking_uri": redact_url(client.tracking_uri) if client else None,
            "server": self.server_json(),  # and where the URL came from
            "auth": client.auth_scheme if client else None,
            "execute": invocation.execute,
            "jobs": jobs,
            "engine": invocation.config.model_dump(mode="json", exclude={"client"}),
        }

    async def _main(self) -> int:
        async with anyio.create_task_group() as group:
            await group.start(self._watch_signals)
            try:
                code = await self._work()
            finally:
                group.cancel_scope.cancel()
        return code

    async def _work(self) -> int:
        invocation = self.invocation
        try:
            async with Engine(
                invocation.config, hooks=[self.audit, self.progress], **self._engine_options
            ) as engine:
                self.engine = engine
                plan: PlanReport | None = None
                specs: list[ResolvedSpec] = []
                with self._phase():
                    if invocation.plan_file is not None:
                        specs, plan = await self._planned(engine)
                    else:
                        specs = await self.lookup.resolve(engine)
                        plan = await self._plan(engine, specs)
                if plan is None:
                    return self._finish_unstarted()
                self.audit.write("plan", would_delete=plan.would_delete, jobs=_plan_lines(plan))
                if self.audit.failure is not None:
                    return self._audit_failed()
                if not invocation.execute:
                    if self.plan_out is not None:
                        await self._write_plan(engine, plan)
                    return self._dry_run_done(plan)
                return await self._execute(engine, specs, plan)
        except BadInputError as error:
            return self._error(str(error), EXIT_BAD_INPUT)
        except GuardrailError as error:
            return self._error(describe_guardrail(error, None), EXIT_BAD_INPUT)
        except UsageError as error:
            return self._error(str(error), EXIT_BAD_INPUT)
        except TraceDeleteError as error:  # the server could not be used: say which, and why
            if not self.quiet:
                sys.stderr.write(self.server_line() + "\n")
            return self._error(str(error), EXIT_FAILED)

    def _phase(self) -> anyio.CancelScope:
        """A new scope for a signal to cancel (already cancelled if one came)."""
        self.scope = anyio.CancelScope()
        if self.signals:
            self.scope.cancel()
        return self.scope

    async def _planned(self, engine: Engine) -> tuple[list[ResolvedSpec], PlanReport]:
        """``apply``: the plan file's jobs, each experiment still there under its name."""
        plan = await checked_plan(
            engine, self.invocation.plan_file, growth=self.invocation.args.max_growth
        )
        return [job.planned() for job in plan.jobs], plan

    async def _write_plan(self, engine: Engine, plan: PlanReport) -> None:
        """``--plan-out``: the dry run, pinned."""
        assert self.plan_out is not None
        settings = self.invocation.config.model_dump(mode="json", exclude={"client"})
        await save_plan(engine, plan, self.plan_out, self._wall_clock_ms(), settings)

    async def _plan(self, engine: Engine, specs: list[ResolvedSpec]) -> PlanReport:
        """Count each job once (a refusal names its job's flag or key). With ``--execute``
        the count is all that is needed: no sample, and ID jobs are bounded by their IDs."""
        execute = self.invocation.execute
        sample = self.invocation.args.sample if not execute else 0
        jobs: list[JobPlan] = []
        for spec in specs:
            definition = self.lookup.definitions[spec.label]
            try:
                report = await engine.plan([spec], sample_size=sample, counts_only=execute)
            except GuardrailError as error:
                raise BadInputError(describe_guardrail(error, definition)) from None
            except InvalidParameterError as error:
                if spec.spec.filter_string is None:
                    raise
                raise BadInputError(
                    f"{definition.namer.qualified('filter_string')}: the server rejected the "
                    f"filter {spec.spec.filter_string!r}: {error.message}"
                ) from None
            jobs.extend(report.jobs)
        return PlanReport(jobs=tuple(jobs))

    async def _execute(self, engine: Engine, specs: list[ResolvedSpec], plan: PlanReport) -> int:
        if not specs:
            return self._dry_run_done(plan)
        expected = {job.label: job.would_delete for job in plan.jobs}
        started = time.monotonic()
        report: RunReport | None = None
        self._note(self.server_line())  # before the bars: where the deleting happens
        self.progress.start(expected)
        for job in plan.jobs:
            if job.count_method == "upper_bound":
                self._note(
                    f"{job.label}: expected is the {job.would_delete:,} IDs given, not counted "
                    "first (unknown IDs are reported as not found)"
                )
        try:
            with self._phase():
                # Exactly the jobs planned: no second lookup, no second count.
                report = await engine.run(plan, verify=bool(self.invocation.args.verify))
        except GuardrailError as error:  # a recount at start found more than expected
            raise BadInputError(describe_guardrail(error, None)) from None
        finally:
            self.progress.stop()
        if report is None:  # a signal cancelled the run: the handles keep exact reports
            report = RunReport(
                jobs=tuple(handle.report() for handle in engine.jobs),
                elapsed=time.monotonic() - started,
            )
        # A signal that came once every delete had finished only cut the verification short:
        # the run's own result decides the exit code.
        interrupted = self.signals > self.late_signals
        unverified = [
            job for job in report.verification_failed if job.verification_error != NOT_VERIFIED
        ]
        failed = bool(report.failed or unverified or self.audit.failure is not None)
        code = EXIT_INTERRUPTED if interrupted else (EXIT_FAILED if failed else EXIT_OK)
        if self.json:
            self._print_json(
                report_json(
                    report,
                    expected,
                    interrupted=interrupted,
                    exit_code=code,
                    skipped=self.lookup.skipped,
                    server=self.server_json(),
                )
            )
        elif not self.quiet:
            render_summary(
                self.out,
                report,
                expected,
                interrupted=interrupted,
                skipped=self.lookup.skipped,
                server=self.server_line(),
            )
        outcome = "interrupted" if interrupted else ("failed" if failed else "completed")
        self.audit.write(
            "run_end",
            outcome=outcome,
            exit_code=code,
            expected=sum(expected.values()),
            deleted=report.deleted,
            ambiguous=report.ambiguous,
            not_found=sum(job.not_found for job in report.jobs),
            calls=report.calls,
            retries=report.retries,
            elapsed=round(report.elapsed, 4),
            signals=self.signals,
            artifacts=None if report.artifacts is None else report.artifacts.model_dump(),
            jobs=[job_summary(job) for job in report.jobs],
        )
        return code

    # -- endings -----------------------------------------------------------------------------

    def _dry_run_done(self, plan: PlanReport) -> int:
        command = self.invocation.command(execute=True)
        if self.json:
            self._print_json(
                plan_json(
                    plan,
                    command=command,
                    skipped=self.lookup.skipped,
                    dry_run=not self.invocation.execute,
                    server=self.server_json(),
                )
            )
        elif not self.quiet:
            render_plan(
                self.out,
                plan,
                command=command,
                skipped=self.lookup.skipped,
                plan_out=None if self.plan_out is None else str(self.plan_out),
                server=self.server_line(),
                now_ms=self._wall_clock_ms(),
            )
        outcome = "dry_run" if not self.invocation.execute else "nothing_to_do"
        self.audit.write(
            "run_end", outcome=outcome, exit_code=EXIT_OK, would_delete=plan.would_delete
        )
        return EXIT_OK

    def _finish_unstarted(self) -> int:
        self._error("interrupted before anything was deleted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED

    def _audit_broke(self, error: OSError) -> None:
        """A line could not be written: nothing more is deleted without its record."""
        if self.engine is not None:
            self.engine.stop_all()
        self._note(f"--audit-log: cannot write: {error.strerror or error}; stopping")

    def _audit_failed(self) -> int:
        error = self.audit.failure
        assert error is not None
        return self._error(
            f"--audit-log: cannot write {str(self.audit.path)!r}: {error.strerror or error}; "
            "nothing was deleted after the last line it holds",
            EXIT_FAILED,
        )

    def _error(self, message: str, code: int) -> int:
        line = self.redact(message.splitlines()[0] if message else "error")
        sys.stderr.write(f"{PROG}: error: {line}\n")
        self.audit.write("run_end", outcome="error", exit_code=code, error=line)
        return code

    def _print_json(self, payload: Mapping[str, Any]) -> None:
        print_json(self.redact, payload)

    def _note(self, message: str) -> None:
        if self.progress.enabled:
            self.progress.note(message)
        elif not self.quiet:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    # -- signals -----------------------------------------------------------------------------

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        await watch_signals(self.on_signal, task_status=task_status)

    def on_signal(self, signum: int) -> None:
        """First signal: stop scheduling; second: cancel calls in flight."""
        self.signals += 1
        name = signal.Signals(signum).name
        engine = self.engine
        if engine is not None and engine.jobs and all(handle.done for handle in engine.jobs):
            self.late_signals += 1  # every delete had finished: only verification is cut
        if self.signals == 1 and engine is not None and engine.jobs:
            engine.stop_all()
            action = "stop"
            message = (
                f"{name}: stopping: no new batches, waiting for the calls in flight "
                "(send it again to cancel them; their outcome will be unknown)"
            )
        else:
            if engine is not None:
                engine.cancel_all()
            if self.scope is not None:
                self.scope.cancel()
            action = "cancel"
            message = f"{name}: cancelling the calls in flight"
        self.audit.write("interrupt", signal=name, action=action, count=self.signals)
        self._note(message)


def _plan_lines(plan: PlanReport) -> list[dict[str, Any]]:
    return [
        {
            "job": job.label,
            "experiment_id": job.experiment_id,
            "mode": job.mode,
            "cutoff_millis": job.cutoff_millis,
            "would_delete": job.would_delete,
            "oldest_ms": job.oldest_ms,
            "newest_ms": job.newest_ms,
        }
        for job in plan.jobs
    ]
