"""The CLI's audit log: what a run did, one JSON object per line, append-only.

Every line has ``time`` (UTC, ISO 8601), ``run_id`` and ``event``:

=========================  ==================================================================
``run_start``              who (user, host, pid), what (command, jobs), where (tracking URI,
                           auth scheme; never a secret), dry run or execute
``plan``                   per job: what it would delete (count, oldest, newest)
``job_start``              a job started; its cutoff, pinned
``batch``                  a delete call answered: job, experiment, requested, deleted,
                           latency, attempt; for ID and filter jobs the call's ``trace_ids``,
                           all confirmed gone (a rerun of an ID file skips them)
``retry``                  a call failed and will be tried again (error, delay, outcome unknown)
``throttled``              the server pushed back; every job pauses
``interrupt``              a signal: the first stops scheduling, the second cancels calls
``batch_outcome_unknown``  a call whose answer never came (cancelled in flight, lost)
``job_end``                a job's final report
``run_end``                outcome, exit code and totals
=========================  ==================================================================

Each line is flushed as soon as it is written, so the log is exact up to a crash. Known
secrets are scrubbed from every line as a last line of defence.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .._config import ClientConfig
from .._events import BatchDeleted, Event, JobFinished, JobStarted, RetryScheduled, Throttled
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

    def __init__(self, path: Path | None, *, run_id: str, redactor: Redactor) -> None:
        self.path = path
        self.run_id = run_id
        self._redactor = redactor
        self._file: TextIO | None = None

    def open(self) -> None:
        """Open for appending (creating parent-less files only). Raises ``OSError``."""
        if self.path is not None and self._file is None:
            self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def write(self, event: str, **fields: Any) -> None:
        """Append one line and flush it."""
        if self._file is None:
            return
        record = {"time": iso_now(), "run_id": self.run_id, "event": event, **fields}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        self._file.write(self._redactor(line) + "\n")
        self._file.flush()

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
            case JobFinished():
                self._job_finished(event.report)
            case _:
                pass

    def _job_finished(self, report: JobReport) -> None:
        for batch in report.batches:
            if batch.outcome_unknown:
                self.write(
                    "batch_outcome_unknown",
                    job=report.label,
                    experiment_id=report.experiment_id,
                    requested=batch.requested,
                    attempt=batch.attempt,
                    outcome=batch.outcome,
                    latency=round(batch.latency, 4),
                )
        summary = job_summary(report)
        self.write("job_end", job=summary.pop("label"), **summary)


def job_summary(report: JobReport) -> dict[str, Any]:
    """A job report without its per-call records (those are the ``batch`` lines)."""
    return report.model_dump(mode="json", exclude={"batches"})


def read_confirmed_ids(path: Path) -> dict[str, set[str]]:
    """Trace IDs an audit log confirms gone (its ``batch`` lines), by experiment ID.

    Empty if there is no log.

    A line cut short by a crash is skipped: only complete records count.

    Raises:
        OSError: the log exists but cannot be read.
    """
    confirmed: dict[str, set[str]] = {}
    if not path.exists():
        return confirmed
    with path.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if not isinstance(record, dict):
                    continue
                event = record.get("event")
                ids = record.get("trace_ids")
                experiment_id = record.get("experiment_id")
                if event != "batch" or not isinstance(ids, list):
                    continue
                if isinstance(experiment_id, str):
                    confirmed.setdefault(experiment_id, set()).update(
                        item for item in ids if isinstance(item, str)
                    )
    return confirmed
