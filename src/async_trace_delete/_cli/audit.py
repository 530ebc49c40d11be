"""The CLI's audit log: what a run did, one JSON object per line, append-only.

Every line has ``time`` (UTC, ISO 8601), ``run_id`` and ``event``:

=========================  ==================================================================
``run_start``              who (user, host, pid), what (command, jobs), where (tracking URI,
                           auth scheme; never a secret), dry run or execute
``selection``              with an experiment selector only, before the plan: the
                           experiment IDs selected, how many were left out, and per
                           selector its filter, IDs and each experiment left out with why
``plan``                   per job: what it would delete (count, oldest, newest)
``job_start``              a job started; its cutoff, pinned
``batch``                  a delete call answered: job, experiment, requested, deleted,
                           latency, attempt; for ID and filter jobs the call's ``trace_ids``,
                           all confirmed gone (a rerun of an ID file skips them)
``retry``                  a call failed and will be tried again (error, delay, outcome unknown)
``throttled``              the server pushed back; every job pauses
``interrupt``              a signal: the first stops scheduling, the second cancels calls
``batch_outcome_unknown``  a call whose answer never came (cancelled in flight, lost), at once
``job_end``                a job's final report
``run_end``                outcome, exit code and totals
=========================  ==================================================================

Durable: each line is written whole and synced to disk (``fsync``) before the run goes on,
so after a crash every complete line is true and at most the last one is cut short; a run
appending to a log whose last line was cut starts on a fresh line. ``batch_outcome_unknown``
is written when the answer is lost, not when the job ends. If a line cannot be written (a
full disk), the run stops before its next delete and exits 1: nothing is deleted without
the record the user asked for. Known secrets are scrubbed from every line as a last line of
defence.

Resuming reads the log as a stream and keeps only what the current run needs: the IDs its
own ID jobs name, confirmed by ``batch`` lines of runs on the same server (``run_start``'s
``tracking_uri``), so memory does not grow with the log.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .._config import ClientConfig
from .._events import (
    BatchDeleted,
    BatchOutcomeUnknown,
    Event,
    JobFinished,
    JobStarted,
    RetryScheduled,
    Throttled,
)
from .._reports import JobReport

__all__ = ["AuditLog", "Redactor", "known_secrets", "read_confirmed_ids", "who_and_where"]

_MIN_SECRET_LENGTH = 4  # shorter "secrets" would mangle every line and protect nothing
SECRET_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")


def iso_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def known_secrets(environ: Mapping[str, str], client: ClientConfig | None) -> list[str]:
    """Every secret this process knows: tokens, passwords and the Basic auth header value."""
    found = [environ.get(name, "") for name in SECRET_VARIABLES]
    if client is not None:
        if client.token is not None:
            found.append(client.token.get_secret_value())
        if client.password is not None:
            password = client.password.get_secret_value()
            found.append(password)
            pair = f"{client.username}:{password}".encode()
            found.append(base64.b64encode(pair).decode("ascii"))
    return [secret for secret in found if secret]


class Redactor:
    """Replaces known secrets (raw or JSON-escaped) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = {secret for secret in secrets if len(secret) >= _MIN_SECRET_LENGTH}
        forms = unique | {json.dumps(secret)[1:-1] for secret in unique}
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, "***")
        return text


def who_and_where() -> dict[str, Any]:
    """User, host, process and working directory of this run."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers) and no LOGNAME/USER
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(), "cwd": os.getcwd()}


class AuditLog:
    """Append-only JSON-lines log; a no-op when ``path`` is None.

    Args:
        path: Where to append.
        run_id: Identifies this run's lines among earlier runs'.
        redactor: Scrubs secrets from every line.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        run_id: str,
        redactor: Redactor,
        on_failure: Callable[[OSError], None] | None = None,
    ) -> None:
        self.path = path
        self.run_id = run_id
        self._redactor = redactor
        self._file: TextIO | None = None
        self._on_failure = on_failure
        self.failure: OSError | None = None
        """The first write that failed; nothing is written after it."""

    def open(self) -> None:
        """Open for appending, on a fresh line (a crash may have cut the last one).

        Raises:
            OSError: the file cannot be opened.
        """
        if self.path is None or self._file is not None:
            return
        cut = False
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as existing:
            existing.seek(0, os.SEEK_END)
            if existing.tell() > 0:
                existing.seek(-1, os.SEEK_END)
                cut = existing.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if cut:
            self._file.write("\n")

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as error:  # every line was synced: only a failed line's rest is lost
                if self.failure is None:
                    self.failure = error

    def write(self, event: str, **fields: Any) -> None:
        """Append one line and sync it to disk; a failure is kept and reported, once."""
        if self._file is None or self.failure is not None:
            return
        record = {"time": iso_now(), "run_id": self.run_id, "event": event, **fields}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        try:
            self._file.write(self._redactor(line) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as error:
            self.failure = error
            if self._on_failure is not None:
                self._on_failure(error)

    def __call__(self, event: Event) -> None:
        """The engine hook: one line per event that matters for an audit."""
        match event:
            case JobStarted():
                self.write(
                    "job_start",
                    job=event.job,
                    experiment_id=event.experiment_id,
                    mode=event.mode,
                    cutoff_millis=event.cutoff_millis,
                    at=round(event.at, 4),
                )
            case BatchDeleted():
                ids = {} if event.trace_ids is None else {"trace_ids": list(event.trace_ids)}
                self.write(
                    "batch",
                    job=event.job,
                    experiment_id=event.experiment_id,
                    requested=event.requested,
                    deleted=event.deleted,
                    latency=round(event.latency, 4),
                    attempt=event.attempt,
                    total_deleted=event.total_deleted,
                    at=round(event.at, 4),
                    **ids,
                )
            case RetryScheduled():
                self.write(
                    "retry",
                    job=event.job,
                    experiment_id=event.experiment_id,
                    requested=event.requested,
                    attempt=event.attempt,
                    delay=round(event.delay, 4),
                    error_type=event.error_type,
                    error=event.error,
                    outcome_unknown=event.outcome_unknown,
                    at=round(event.at, 4),
                )
            case Throttled():
                self.write(
                    "throttled",
                    job=event.job,
                    retry_after=event.retry_after,
                    pause=round(event.pause, 4),
                    rate=event.rate,
                    at=round(event.at, 4),
                )
            case BatchOutcomeUnknown():
                self.write(
                    "batch_outcome_unknown",
                    job=event.job,
                    experiment_id=event.experiment_id,
                    requested=event.requested,
                    attempt=event.attempt,
                    outcome=event.outcome,
                    latency=round(event.latency, 4),
                    at=round(event.at, 4),
                )
            case JobFinished():
                self._job_finished(event.report)
            case _:
                pass

    def _job_finished(self, report: JobReport) -> None:
        summary = job_summary(report)
        self.write("job_end", job=summary.pop("label"), **summary)


def job_summary(report: JobReport) -> dict[str, Any]:
    """A job report without its per-call records (those are the ``batch`` lines)."""
    return report.model_dump(mode="json", exclude={"batches"})


def read_confirmed_ids(
    path: Path, *, server: str, wanted: Mapping[str, Iterable[str]]
) -> dict[str, set[str]]:
    """The trace IDs of ``wanted`` (by experiment ID) that the log confirms gone on ``server``.

    Reads the log line by line and keeps only those IDs: memory is bounded by ``wanted``, not
    by the log. A ``batch`` line counts when its run's ``run_start`` names the same server
    (the redacted tracking URI); a line cut short by a crash is skipped. Empty if there is no
    log.

    Raises:
        OSError: the log exists but cannot be read.
    """
    targets = {experiment: set(ids) for experiment, ids in wanted.items()}
    confirmed: dict[str, set[str]] = {}
    if not targets or not path.exists():
        return confirmed
    same_server: set[str] = set()
    with path.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            if '"run_start"' not in line and '"batch"' not in line:
                continue  # cheap: most lines are neither
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if not isinstance(record, dict):
                    continue
                run = record.get("run_id")
                if record.get("event") == "run_start":
                    if record.get("tracking_uri") == server and isinstance(run, str):
                        same_server.add(run)
                    continue
                ids = record.get("trace_ids")
                target = targets.get(str(record.get("experiment_id")))
                if run not in same_server or target is None or not isinstance(ids, list):
                    continue
                found = target.intersection(item for item in ids if isinstance(item, str))
                if found:
                    confirmed.setdefault(str(record["experiment_id"]), set()).update(found)
    return confirmed
