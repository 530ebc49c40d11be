"""``async-trace-delete sweep-artifacts``: find (and with ``--execute`` remove) the artifact
folders of traces that no longer exist.

A dry run by default: it lists and checks, and prints what ``--execute`` would remove.
The first SIGINT/SIGTERM stops (calls in flight finish), the second cancels; the summary
of what was removed so far is printed and logged either way, with exit code 130. Sweeping
again resumes: removed folders are not listed again.
"""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from rich.markup import escape

from .. import __version__
from .._config import redact_url
from .._engine import Engine
from .._exceptions import MlflowApiError, TraceDeleteError
from .._sweep import SweepReport
from .audit import AuditLog, Redactor, who_and_where
from .inputs import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, PROG, Invocation
from .sweep_render import SweepProgress, render_sweep
from .terminal import make_console, print_json, watch_signals

__all__ = ["SweepSession"]


class SweepSession:
    """Runs one ``sweep-artifacts`` invocation.

    Args:
        invocation: The checked command line (no jobs; the experiments are in its args).
        engine_seams: Keyword arguments for :class:`Engine` (test seams).
    """

    def __init__(self, invocation: Invocation, *, engine_seams: dict[str, Any]) -> None:
        self.invocation = invocation
        args = invocation.args
        self._seams = {k: v for k, v in engine_seams.items() if k != "wall_clock_ms"}
        self.redact = Redactor(invocation.secrets)
        self.out = make_console(sys.stdout)
        self.err = make_console(sys.stderr)
        self.json = bool(args.json)
        self.quiet = bool(args.quiet) or self.json
        path = args.audit_log
        self.audit = AuditLog(
            Path(path).expanduser() if path else None,
            run_id=uuid.uuid4().hex,
            redactor=self.redact,
            on_failure=self._audit_broke,
        )
        self.signals = 0
        self.engine: Engine | None = None
        self._progress = SweepProgress(self.err, enabled=not self.quiet)

    def server_line(self) -> str:
        """``Server: URL (from ...)``: which server this sweep talks to, and why."""
        return self.redact(self.invocation.server_line())

    def server_json(self) -> dict[str, Any] | None:
        """The ``server`` object of ``--json`` (None without a client config)."""
        return self.invocation.server_json()

    def run(self) -> int:
        """Run the sweep and return the exit code."""
        if self.audit.path is not None:
            try:
                self.audit.open()
            except OSError as error:
                self.err.print(f"{PROG}: error: --audit-log: {error.strerror or error}")
                return 2
        try:
            client = self.invocation.config.client
            self.audit.write(
                "sweep_start",
                **who_and_where(),
                version=__version__,
                command=self.invocation.command(),
                tracking_uri=redact_url(client.tracking_uri) if client else None,
                server=self.server_json(),  # and where the URL came from
                execute=bool(self.invocation.args.execute),
            )
            if self.audit.failure is not None:
                return self._audit_failed()
            if self.invocation.args.execute and not self.quiet:
                self.err.print(self.server_line(), markup=False, highlight=False, soft_wrap=True)
            code = anyio.run(self._main)
            if self.audit.failure is not None:
                return self._audit_failed()
            return code
        finally:
            self.audit.close()

    async def _main(self) -> int:
        code = EXIT_FAILED
        async with anyio.create_task_group() as group:
            await group.start(self._watch_signals)
            try:
                code = await self._sweep()
            finally:
                group.cancel_scope.cancel()
        return code

    async def _sweep(self) -> int:
        args = self.invocation.args
        try:
            async with Engine(
                self.invocation.config, hooks=[self._progress], **self._seams
            ) as engine:
                self.engine = engine
                try:
                    report = await engine.sweep_artifacts(
                        tuple(args.experiment_id),
                        tuple(args.experiment_name),
                        execute=bool(args.execute),
                        count_bytes=not args.no_bytes,
                    )
                finally:
                    self._progress.stop()
        except (MlflowApiError, TraceDeleteError) as error:
            message = self.redact(f"{type(error).__name__}: {error}")
            self.audit.write("sweep_end", error=message)
            if self.json:
                self._print_json(
                    {"server": self.server_json(), "error": message, "exit_code": EXIT_FAILED}
                )
            else:
                self.err.print(f"{PROG}: error: {escape(message)}", highlight=False)
            return EXIT_FAILED
        interrupted = self.signals > 0
        code = EXIT_INTERRUPTED if interrupted else (EXIT_OK if report.ok else EXIT_FAILED)
        for item in report.experiments:
            self.audit.write("sweep_experiment", **item.model_dump(mode="json"))
        self.audit.write("sweep_end", **_totals(report), exit_code=code)
        if self.json:
            self._print_json(
                {
                    "server": self.server_json(),
                    **_totals(report),
                    "experiments": [item.model_dump(mode="json") for item in report.experiments],
                    "interrupted": interrupted,
                    "exit_code": code,
                }
            )
        elif not args.quiet:
            render_sweep(
                self.out,
                report,
                server=self.server_line(),
                command=self.invocation.command(execute=True),
            )
        return code

    def _audit_broke(self, error: OSError) -> None:
        """A line could not be written: nothing more is removed without its record."""
        if self.engine is not None:
            self.engine.stop_all()
        if not self.quiet:
            self.err.print(
                f"--audit-log: cannot write: {error.strerror or error}; stopping", markup=False
            )

    def _audit_failed(self) -> int:
        error = self.audit.failure
        assert error is not None
        sys.stderr.write(
            f"{PROG}: error: --audit-log: cannot write {str(self.audit.path)!r}: "
            f"{error.strerror or error}; nothing was removed after the last line it holds\n"
        )
        return EXIT_FAILED

    def _print_json(self, payload: dict[str, Any]) -> None:
        print_json(self.redact, payload)

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        await watch_signals(self.on_signal, task_status=task_status)

    def on_signal(self, signum: int) -> None:
        """First signal: stop (calls in flight finish); the sweep reports what it did."""
        self.signals += 1
        name = signal.Signals(signum).name
        if self.engine is not None:
            self.engine.stop_all()
        self.audit.write("interrupt", signal=name, action="stop", count=self.signals)
        if not self.quiet:
            self.err.print(f"{name}: stopping the sweep after the calls in flight", markup=False)


def _totals(report: SweepReport) -> dict[str, Any]:
    return {
        "executed": report.executed,
        "folders": report.folders,
        "orphans": report.orphans,
        "deleted": report.deleted,
        "failed": report.failed,
        "bytes": report.bytes,
        "elapsed": report.elapsed,
    }
