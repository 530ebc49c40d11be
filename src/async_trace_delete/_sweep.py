"""Sweep orphaned trace folders: the artifacts of traces that no longer exist.

Whatever deleted the traces (``MlflowClient.delete_traces``, the UI, a run without
``with_artifacts``, a failed folder delete), their folders stay in the artifact store. A
sweep of one experiment:

1. lists ``<experiment>/traces`` through the server's artifact API (one request);
2. asks, 500 folders at a time, which of those traces still exist (``batchGetInfos``, any
   experiment, and a search of the experiment: both must say a trace is gone), each check
   carrying a *canary* (a trace known to exist) whose absence from the answer stops the
   sweep: an answer that lost a live trace is not trusted with any;
3. with ``execute``, removes the orphans' folders through the engine's gate.

A folder listed in step 1 existed then, and MLflow writes a trace's row before its folder,
so a trace created while the sweep runs either has no folder in the listing or already
exists at the check: the folder of a live trace is never removed. Sweeping again resumes:
what was removed is not listed again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import anyio
from pydantic import BaseModel, ConfigDict

from ._artifact_paths import TraceFolders, trace_folders
from ._calls import Caller, StopRequested
from ._client import TracesClient
from ._events import FoldersSwept
from ._exceptions import MlflowApiError, NotFoundError, TraceDeleteError, UsageError
from ._modes.artifact_cleanup import CHECK_CHUNK, REFUSALS, absent_ids, refused_note
from ._shared import SharedState
from ._wire import Experiment

__all__ = ["SweepExperiment", "SweepReport", "sweep", "sweep_experiment"]

_CANARY_PLACES = 20  # other experiments looked at for a canary when this one has no trace


class SweepExperiment(BaseModel):
    """What a sweep found (and removed) in one experiment.

    Attributes:
        experiment_id: The experiment.
        experiment_name: Its name.
        folders: Trace folders listed.
        live: Folders whose trace still exists (kept).
        orphans: Folders whose trace is gone.
        deleted: Orphan folders removed (``execute`` only).
        failed: Orphan folders whose removal failed.
        bytes: Bytes in the orphans' ``artifacts/`` folders, as the listing gives them
            (``None`` when not counted; a lower bound when ``bytes_unknown`` > 0).
        bytes_unknown: Orphans whose size listing failed (their bytes are not counted).
        other_folders: Folders whose names are not trace IDs (never touched).
        notes: What happened besides the counts (why the sweep stopped or was refused).
        complete: False when the experiment was not swept to its end: out of the server's
            reach, refused, stopped, or a check could not be trusted.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment_id: str
    experiment_name: str
    folders: int = 0
    live: int = 0
    orphans: int = 0
    deleted: int = 0
    failed: int = 0
    bytes: int | None = None
    bytes_unknown: int = 0
    other_folders: int = 0
    notes: tuple[str, ...] = ()
    complete: bool = True


class SweepReport(BaseModel):
    """A whole sweep: its experiments and their totals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiments: tuple[SweepExperiment, ...]
    executed: bool
    elapsed: float

    @property
    def folders(self) -> int:
        """Trace folders listed, over all experiments."""
        return sum(e.folders for e in self.experiments)

    @property
    def orphans(self) -> int:
        """Orphan folders found."""
        return sum(e.orphans for e in self.experiments)

    @property
    def deleted(self) -> int:
        """Orphan folders removed."""
        return sum(e.deleted for e in self.experiments)

    @property
    def failed(self) -> int:
        """Orphan folders whose removal failed."""
        return sum(e.failed for e in self.experiments)

    @property
    def bytes(self) -> int | None:
        """Bytes of the orphans, where counted."""
        counted = [e.bytes for e in self.experiments if e.bytes is not None]
        return sum(counted) if counted else None

    @property
    def ok(self) -> bool:
        """Every experiment swept to its end, every removal done."""
        return all(e.complete and e.failed == 0 for e in self.experiments)


@dataclass
class _Tally:
    folders: int = 0
    checked: int = 0
    live: int = 0
    orphans: int = 0
    deleted: int = 0
    failed: int = 0
    bytes: int = 0
    bytes_unknown: int = 0
    other_folders: int = 0
    notes: list[str] = field(default_factory=list)
    complete: bool = True

    def stopped_by(self, note: str) -> None:
        self.complete = False
        self.notes.append(note)


async def sweep(
    reader: Callable[[str], AbstractContextManager[Caller]],
    shared: SharedState,
    experiment_ids: Sequence[str],
    experiment_names: Sequence[str],
    *,
    execute: bool,
    count_bytes: bool,
    emit: Callable[[FoldersSwept], None],
) -> SweepReport:
    """Look every experiment up (before anything is removed), then sweep them one by one.

    Args:
        reader: Opens a caller for the engine's own reads, stopped with the engine.
        shared: The engine's shared state.
        experiment_ids: By ID.
        experiment_names: By name.
        execute: Remove the orphans (else count them).
        count_bytes: List each orphan's files to count its bytes.
        emit: Sends progress to the engine's hooks.

    Raises:
        UsageError: no experiment given.
        NotFoundError: an experiment does not exist (nothing was removed).
    """
    if not experiment_ids and not experiment_names:
        raise UsageError("give at least one experiment to sweep (by ID or name)")
    client = shared.client
    started = shared.runtime.clock()
    experiments: dict[str, Experiment] = {}
    lookups = [partial(client.get_experiment, i) for i in experiment_ids]
    lookups += [partial(client.get_experiment_by_name, n) for n in experiment_names]
    for lookup in lookups:
        with reader("sweep lookup") as caller:
            experiment = await caller.read(lookup)
        experiments.setdefault(experiment.experiment_id, experiment)
    swept = []
    for experiment in experiments.values():
        with reader(f"sweep {experiment.name}") as caller:
            swept.append(
                await sweep_experiment(
                    caller, experiment, execute=execute, count_bytes=count_bytes, emit=emit
                )
            )
    return SweepReport(
        experiments=tuple(swept), executed=execute, elapsed=shared.runtime.clock() - started
    )


async def sweep_experiment(
    caller: Caller,
    experiment: Experiment,
    *,
    execute: bool,
    count_bytes: bool,
    emit: Callable[[FoldersSwept], None],
) -> SweepExperiment:
    """Find (and with ``execute`` remove) the orphan trace folders of one experiment."""
    client = caller.shared.client
    tally = _Tally()
    runtime = caller.shared.runtime

    def progress(done: bool) -> None:
        emit(
            FoldersSwept(
                experiment_id=experiment.experiment_id,
                folders=tally.folders,
                checked=tally.checked,
                orphans=tally.orphans,
                deleted=tally.deleted,
                done=done,
                at=runtime.since_open(),
            )
        )

    netloc = urlsplit(client.config.base_url).netloc
    where = trace_folders(experiment, server_netloc=netloc)
    try:
        if isinstance(where, str):
            tally.stopped_by(where)
        else:
            await _sweep(caller, client, experiment, where, tally, execute, count_bytes, progress)
    except StopRequested:
        tally.stopped_by("stopped before the sweep of this experiment ended; sweep again to resume")
    except REFUSALS as error:
        tally.stopped_by(refused_note(error))
    except _Untrusted as error:
        tally.stopped_by(str(error))
    except (MlflowApiError, TraceDeleteError) as error:
        tally.stopped_by(f"{type(error).__name__}: {error}")
    progress(True)
    return SweepExperiment(
        experiment_id=experiment.experiment_id,
        experiment_name=experiment.name,
        folders=tally.folders,
        live=tally.live,
        orphans=tally.orphans,
        deleted=tally.deleted,
        failed=tally.failed,
        bytes=tally.bytes if count_bytes else None,
        bytes_unknown=tally.bytes_unknown,
        other_folders=tally.other_folders,
        notes=tuple(tally.notes),
        complete=tally.complete,
    )


async def _sweep(
    caller: Caller,
    client: TracesClient,
    experiment: Experiment,
    where: TraceFolders,
    tally: _Tally,
    execute: bool,
    count_bytes: bool,
    progress: Callable[[bool], None],
) -> None:
    experiment_id = experiment.experiment_id
    listing = await caller.read(lambda: client.list_artifacts(where.traces_path), files=True)
    names = sorted(entry.name for entry in listing if entry.is_dir)
    odd = [name for name in names if where.folder(name) is None]
    if odd:
        tally.other_folders = len(odd)
        tally.notes.append(f"{len(odd)} folders whose names are not trace IDs were left alone")
    names = [name for name in names if where.folder(name) is not None]
    tally.folders = len(names)
    if not names:
        return
    canary = await _canary(caller, client, experiment_id)
    if canary is None:
        raise _Untrusted(
            "found no trace on the server to check its answers with (an empty server, or "
            "answers that are not MLflow's): nothing was removed; the sweep needs one live "
            "trace anywhere on the server"
        )
    step = CHECK_CHUNK - 1  # every existence request carries the canary too
    for start in range(0, len(names), step):
        chunk = names[start : start + step]
        try:
            gone = await absent_ids(caller, experiment_id, [*chunk, canary], everywhere=True)
        except NotFoundError as error:
            raise _Untrusted(
                "the server has no traces/batchGetInfos (MLflow before 3.x?): whether a trace "
                "still exists in another experiment sharing this artifact location cannot be "
                f"checked, so nothing was removed ({error})"
            ) from None
        if canary in gone:
            raise _Untrusted(
                f"the existence check lost trace {canary!r}, which exists: its answers are "
                "not trusted (a proxy or a cache in front of MLflow?); nothing more is removed"
            )
        orphans = [name for name in chunk if name in gone]
        tally.checked += len(chunk)
        tally.live += len(chunk) - len(orphans)
        tally.orphans += len(orphans)
        await _handle_orphans(caller, client, where, orphans, tally, execute, count_bytes)
        progress(False)


class _Untrusted(TraceDeleteError):
    """The sweep cannot trust the server's answers about which traces exist."""


async def _canary(caller: Caller, client: TracesClient, experiment_id: str) -> str | None:
    """A trace that exists now: the experiment's newest, else the newest of one of the
    server's other experiments (the first page of them); ``None`` if none has any."""
    newest = await _newest(caller, client, experiment_id)
    if newest is not None:
        return newest
    try:
        others, _ = await caller.read(lambda: client.search_experiments(max_results=_CANARY_PLACES))
    except NotFoundError:
        return None  # no experiment search (an old server, or not MLflow): no other place
    for other in others:
        if other.experiment_id != experiment_id:
            newest = await _newest(caller, client, other.experiment_id)
            if newest is not None:
                return newest
    return None


async def _newest(caller: Caller, client: TracesClient, experiment_id: str) -> str | None:
    """The ID of the experiment's newest trace, if it has one."""
    page = await caller.read(
        partial(client.search_traces, experiment_id, max_results=1, order_by=("timestamp_ms DESC",))
    )
    return page.traces[0].trace_id if page.traces else None


async def _handle_orphans(
    caller: Caller,
    client: TracesClient,
    where: TraceFolders,
    orphans: Sequence[str],
    tally: _Tally,
    execute: bool,
    count_bytes: bool,
) -> None:
    """Size and (with ``execute``) remove the orphans' folders, a few at once."""
    timeout = caller.shared.config.request_timeout
    limiter = anyio.CapacityLimiter(max(1, caller.shared.config.max_concurrency))
    failure: list[BaseException] = []

    async def one(name: str) -> None:
        folder = where.folder(name)
        assert folder is not None
        async with limiter:
            try:
                if count_bytes:
                    try:
                        files = await caller.read(
                            lambda: client.list_artifacts(f"{folder}/artifacts"), files=True
                        )
                    except REFUSALS:
                        raise
                    except (MlflowApiError, TraceDeleteError):
                        tally.bytes_unknown += 1  # the size is unknown; the folder still goes
                    else:
                        tally.bytes += sum(f.size or 0 for f in files if not f.is_dir)
                if execute:
                    await caller.read(
                        lambda: client.delete_artifacts(folder, request_timeout=timeout),
                        files=True,
                    )
                    tally.deleted += 1
            except REFUSALS as error:
                failure.append(error)  # the API refuses: stop, nothing more will work
            except (MlflowApiError, TraceDeleteError):
                if execute:
                    tally.failed += 1
            except StopRequested as stop:
                failure.append(stop)

    async with anyio.create_task_group() as group:
        for name in orphans:
            group.start_soon(one, name)
    if failure:
        raise failure[0]
