"""One job's trace folders: found before its deletes, removed once each trace is known gone.

``delete-traces`` removes the database rows and leaves ``<exp>/traces/<id>/artifacts/`` in
the artifact store. A ``with_artifacts`` job lists the experiment's trace folders once, when
it starts (one request: it also tells whether the server serves them at all), learns where
each trace keeps its files from the search that selects it (``mlflow.artifactLocation``,
which the cascade deletes with the trace), and removes a folder only once its trace is
known to be gone:

* the delete that named it answered, and then :func:`absent_ids` finds it neither in the
  server's ``batchGetInfos`` (any experiment) nor in a search of the experiment: the delete's
  answer and two read endpoints must agree (one check per chunk of up to 500 IDs).

A trace whose delete is in doubt keeps its folder until that check says it is gone (at the
end of the job). Folder deletes go through the job's gate (slots, rate, retries, budget) on
their own :class:`~.._calls.Caller`, so a trace job that fails still removes the folders of
what it deleted, and never counts a folder in the trace counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._artifact_paths import TraceFolders, trace_folders
from .._calls import Caller, StopRequested
from .._client import TraceSummary
from .._exceptions import (
    ArtifactsUnavailableError,
    MlflowApiError,
    NotFoundError,
    PermissionDeniedError,
    TraceDeleteError,
)
from .base import ID_SEARCH_CHUNK, ArtifactSide, JobContext, ids_filter, search_all

__all__ = ["ArtifactCleanup", "absent_ids", "reason", "refused_note"]

CHECK_CHUNK = ID_SEARCH_CHUNK  # trace IDs per existence check (one full search page)
_FOLDER_QUEUE = 500  # folders waiting for a worker: past this, deleting traces waits
_STOPPED = "the run was stopped before these folders were removed; sweep-artifacts finds them"
_UNCONFIRMED = (
    "a delete whose outcome is unknown, and no check could tell whether the trace is gone: "
    "its folder was kept"
)
_TAG_ELSEWHERE = (
    "the trace's mlflow.artifactLocation tag names another place than its folder in the "
    "experiment: that folder was not touched"
)
# What the artifact API answers when it cannot or may not serve us: nothing will change.
REFUSALS = (ArtifactsUnavailableError, PermissionDeniedError, NotFoundError)


def reason(error: BaseException) -> str:
    """What kind of failure ``error`` is, without what it was about (no path, no ID), so
    that one reason is one note however many folders it hit."""
    parts = [type(error).__name__]
    if isinstance(error, MlflowApiError):
        if error.status_code is not None:
            parts.append(f"HTTP {error.status_code}")
        if error.error_code:
            parts.append(error.error_code)
        if error.outcome_unknown:
            parts.append("outcome unknown")
    return ", ".join(parts)


def refused_note(error: MlflowApiError) -> str:
    """One line saying the artifact API refused, and what was left."""
    return (
        f"the server's artifact API refused ({reason(error)}: {error.message}); the trace "
        "folders were left (trace deletion is not affected)"
    )


async def absent_ids(
    caller: Caller, experiment_id: str, ids: Sequence[str], *, everywhere: bool = False
) -> set[str]:
    """The IDs neither ``batchGetInfos`` (any experiment) nor a search of the experiment
    knows: gone for both endpoints.

    Args:
        caller: Makes the calls.
        experiment_id: The experiment searched.
        ids: The trace IDs.
        everywhere: The answer must hold for every experiment (a sweep: a folder may belong
            to a trace of another experiment sharing the artifact location): a server
            without ``batchGetInfos`` raises instead of being asked by search alone.

    Raises:
        NotFoundError: no ``batchGetInfos`` and ``everywhere``.
        MlflowApiError, NoProgressError, StopRequested: a check could not be made (then
            nothing is known to be gone).
    """
    client = caller.shared.client
    absent: set[str] = set()
    for start in range(0, len(ids), CHECK_CHUNK):
        chunk = list(ids[start : start + CHECK_CHUNK])

        async def existing(chunk: list[str] = chunk) -> frozenset[str]:
            return await client.existing_trace_ids(chunk)

        try:
            present = set(await caller.read(existing))
        except NotFoundError:
            if everywhere:
                raise
            present = set()  # the traces were found in this experiment: its search decides
        async for trace in search_all(caller, experiment_id, ids_filter(chunk), CHECK_CHUNK):
            present.add(trace.trace_id)
        absent.update(trace_id for trace_id in chunk if trace_id not in present)
    return absent


class ArtifactCleanup:
    """The folders of one job's traces, and the workers that remove them.

    Built by :meth:`open`; a :class:`~.chunks.ChunkListener` of the job's pipeline.
    """

    def __init__(
        self,
        job: JobContext,
        side: ArtifactSide,
        folders: TraceFolders,
        existing: set[str],
        *,
        netloc: str,
    ) -> None:
        self._job = job
        self._ledger = side.ledger
        self._caller = side.caller
        self._folders = folders
        self._existing = existing
        self._netloc = netloc  # our server's host:port, as the folders were read for
        self._pending: dict[str, str | None] = {}  # trace ID -> its folder (None: not ours)
        self._unsettled: list[str] = []
        self._refused: str | None = None
        self._queued = 0  # folders sent to the workers and not yet taken
        send, receive = anyio.create_memory_object_stream[str](_FOLDER_QUEUE)
        self._send: MemoryObjectSendStream[str] = send
        self._receive: MemoryObjectReceiveStream[str] = receive

    @classmethod
    async def open(cls, job: JobContext, side: ArtifactSide) -> ArtifactCleanup | str | None:
        """List the experiment's trace folders: ``None`` when it has none, a note saying
        why when the server cannot reach them (every deleted trace's folder is then left).

        Raises:
            StopRequested: stopped before the listing.
        """
        caller = side.caller
        client = job.shared.client
        experiment_id = job.resolved.experiment_id
        netloc = urlsplit(client.config.base_url).netloc
        try:
            experiment = await caller.read(lambda: client.get_experiment(experiment_id))
            where = trace_folders(experiment, server_netloc=netloc)
            if isinstance(where, str):
                return where
            listing = await caller.read(
                lambda: client.list_artifacts(where.traces_path), files=True
            )
        except REFUSALS as error:
            return refused_note(error)
        except (MlflowApiError, TraceDeleteError) as error:
            return (
                f"listing the trace folders failed ({type(error).__name__}: {error}); they "
                "were left: run sweep-artifacts later"
            )
        existing = {entry.name for entry in listing if entry.is_dir}
        if not existing:
            return None
        return cls(job, side, where, existing, netloc=netloc)

    @property
    def existing(self) -> set[str]:
        """The trace IDs that had a folder when the job started."""
        return self._existing

    def start(self, group: TaskGroup) -> None:
        """Start the folder workers in ``group``."""
        for _ in range(self._job.shared.config.max_concurrency):
            group.start_soon(self._worker, self._receive.clone())
        self._receive.close()

    # -- the pipeline's listener ------------------------------------------------------------

    def expect(self, traces: Sequence[TraceSummary]) -> None:
        """Note the folder of each trace that has one."""
        for trace in traces:
            if trace.trace_id in self._existing:
                self._pending[trace.trace_id] = self._folders.folder_of(
                    trace, server_netloc=self._netloc
                )

    async def deleted(self, ids: Sequence[str], deleted: int) -> None:
        """A delete answered: remove the folders of those of ``ids`` that are gone."""
        holders = [trace_id for trace_id in ids if trace_id in self._pending]
        if not holders:
            return
        # Even an answer that counted every ID is checked: a folder goes only when the
        # delete's answer and two read endpoints agree (a proxy that answers a delete it
        # never forwarded must not cost a live trace its files). One check per chunk.
        try:
            gone = await absent_ids(self._caller, self._job.resolved.experiment_id, holders)
        except (MlflowApiError, TraceDeleteError, StopRequested):
            self._unsettled.extend(holders)
            return
        await self._remove([trace_id for trace_id in holders if trace_id in gone])
        for trace_id in holders:
            self._pending.pop(trace_id, None)  # still there: not deleted, its folder stays

    def unsettled(self, ids: Sequence[str]) -> None:
        """Keep the folders of ``ids`` until :meth:`finish` checks them."""
        self._unsettled.extend(trace_id for trace_id in ids if trace_id in self._pending)

    # -- the end ----------------------------------------------------------------------------

    async def finish(self) -> None:
        """Check the traces whose delete was in doubt, queue the folders of those gone, and
        let the workers drain. A stop or a cancel leaves the rest, counted as skipped."""
        try:
            unsettled = [trace_id for trace_id in self._unsettled if trace_id in self._pending]
            if unsettled:
                try:
                    gone = await absent_ids(
                        self._caller, self._job.resolved.experiment_id, unsettled
                    )
                except (MlflowApiError, TraceDeleteError, StopRequested):
                    self._ledger.skip(len(unsettled), _UNCONFIRMED)
                else:
                    await self._remove([t for t in unsettled if t in gone])
                for trace_id in unsettled:
                    self._pending.pop(trace_id, None)
        finally:
            self._send.close()

    def abandon(self) -> None:
        """The job was cancelled: count what was confirmed but not removed as skipped."""
        left = self._queued + sum(1 for t in self._unsettled if t in self._pending)
        self._ledger.skip(left, _STOPPED)
        self._queued = 0
        self._send.close()

    # -- removing ---------------------------------------------------------------------------

    async def _remove(self, trace_ids: Sequence[str]) -> None:
        for trace_id in trace_ids:
            if trace_id not in self._pending:
                continue
            folder = self._pending.pop(trace_id)
            if folder is None:
                self._ledger.skip(1, _TAG_ELSEWHERE)
            else:
                self._queued += 1
                await self._send.send(folder)

    async def _worker(self, receive: MemoryObjectReceiveStream[str]) -> None:
        caller = self._caller
        client = self._job.shared.client
        timeout = self._job.shared.config.request_timeout
        async with receive:
            async for folder in receive:
                self._queued -= 1
                if self._refused is not None:
                    self._ledger.skip(1, self._refused)
                    continue
                if caller.stopped:
                    self._ledger.skip(1, _STOPPED)
                    continue

                async def remove(folder: str = folder) -> None:
                    await client.delete_artifacts(folder, request_timeout=timeout)

                try:
                    await caller.read(remove, files=True)
                except StopRequested:
                    self._ledger.skip(1, _STOPPED)
                except REFUSALS as error:
                    if self._refused is None:
                        self._refused = refused_note(error)
                    self._ledger.skip(1, self._refused)
                except (MlflowApiError, TraceDeleteError) as error:
                    self._ledger.fail(
                        f"removing folders failed ({reason(error)}); sweep-artifacts finds "
                        "them later"
                    )
                else:
                    self._ledger.deleted += 1
