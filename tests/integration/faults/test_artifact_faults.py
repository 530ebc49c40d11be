"""``with_artifacts`` through the fault proxy, against the session's real ``mlflow server``:
folder deletes that fail, lose their answer after the work, or are refused, a refused listing,
a lost ``delete-traces`` answer, and a server that does not serve artifacts at all. The trace
counts stay exact, and a folder goes only once its trace is known gone: every test checks the
server (search) and the disk (the folders, byte for byte), not only the report.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from async_trace_delete import (
    ArtifactReport,
    DeleteSpec,
    Engine,
    JobReport,
    JobState,
    RetryPolicy,
)
from tests.support.fault_proxy import Fault, FaultKind, FaultProxy
from tests.support.fault_tally import TALLY, fault_proxy, violation
from tests.support.fault_world import DELETE, engine_config
from tests.support.mlflow_server import MlflowServer, running_mlflow_server
from tests.support.seed import (
    create_experiment,
    make_traces,
    remaining_ids,
    seed_traces_api,
)
from tests.support.trace_artifacts import (
    folders_on_disk,
    give_every_trace_a_folder,
    make_orphan_folders,
)

pytestmark = pytest.mark.integration

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
ARTIFACTS = "mlflow-artifacts/artifacts"  # the artifact API: listings (GET) and removals (DELETE)
BATCH_GET_INFOS = "batchGetInfos"  # the existence check's first half


@dataclass
class Folders:
    """A fresh experiment: old traces (at or before the cutoff) and new ones, each with a
    folder in ``root``."""

    url: str
    experiment_id: str
    root: Path  # <artifacts_dir>/<experiment_id>
    old: list[str]
    new: list[str]
    cutoff: int

    @property
    def all_ids(self) -> set[str]:
        """Every trace seeded."""
        return {*self.old, *self.new}

    async def left(self) -> set[str]:
        """The traces still on the server (asked directly, not through the proxy)."""
        return await remaining_ids(self.url, self.experiment_id)

    def on_disk(self) -> set[str]:
        """The trace IDs that have a folder on disk now."""
        return folders_on_disk(self.root.parent, self.experiment_id)


async def seed_folders(
    url: str, artifacts_dir: Path, *, old: int = 6, new: int = 3, upload: bool = True
) -> Folders:
    """Seed ``old`` + ``new`` traces through the REST API; each gets a folder (uploaded
    through the artifact API, or with ``upload=False`` written on disk)."""
    experiment_id = await create_experiment(url, f"art-faults-{uuid.uuid4().hex[:12]}")
    cutoff = BASE_MS + old - 1
    old_traces = make_traces(old, start_ms=BASE_MS)
    new_traces = make_traces(new, start_ms=cutoff + 1_000)
    await seed_traces_api(url, experiment_id, [*old_traces, *new_traces])
    ids = [trace.trace_id for trace in (*old_traces, *new_traces)]
    if upload:
        await give_every_trace_a_folder(url, experiment_id, ids)
    else:
        make_orphan_folders(artifacts_dir, experiment_id, ids)
    folders = Folders(
        url,
        experiment_id,
        artifacts_dir / experiment_id,
        [trace.trace_id for trace in old_traces],
        [trace.trace_id for trace in new_traces],
        cutoff,
    )
    assert await folders.left() == folders.all_ids
    assert folders.on_disk() == folders.all_ids
    return folders


def disk_files(root: Path, trace_ids: set[str] | None = None) -> dict[str, bytes]:
    """Every file under an experiment's folder (or only in the folders of ``trace_ids``)."""
    if not root.is_dir():
        return {}
    files = {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    if trace_ids is None:
        return files
    return {path: data for path, data in files.items() if path.split("/")[1] in trace_ids}


def artifact_calls(proxy: FaultProxy, method: str) -> int:
    """Requests to the artifact API with ``method`` that reached the proxy."""
    return sum(1 for entry in proxy.stats.requests(ARTIFACTS) if entry.method == method)


async def run_job(proxy: FaultProxy, spec: DeleteSpec, **settings: Any) -> JobReport:
    """One job through the proxy, with fast retries; its report."""
    async with Engine(engine_config(proxy.url, **settings)) as engine:
        run = await engine.run([spec])
    (report,) = run.jobs
    return report


def cutoff_spec(folders: Folders) -> DeleteSpec:
    """The cutoff job with artifacts on the seeded experiment."""
    return DeleteSpec(
        experiment_id=folders.experiment_id,
        max_timestamp_millis=folders.cutoff,
        with_artifacts=True,
    )


def refusal_note(report: JobReport, error: str) -> str:
    """The report's one note, which must say the artifact API refused with ``error``."""
    assert report.artifacts is not None
    (note,) = report.artifacts.notes
    assert "artifact API refused" in note, note
    assert error in note, note
    return note


# -- folder deletes that fail and are retried -------------------------------------------------

DELETE_FAULTS: dict[str, list[Fault]] = {
    # MLflow's own 500 twice, then once more: nothing was removed, the retry removes it.
    "500-retried": [Fault.internal_error().repeat(2), Fault.internal_error()],
    # Applied, then the answer lost: the retry finds no folder and answers 200.
    "applied-then-lost": [Fault.reset_after(), Fault.status_after(502), Fault.truncated_json()],
}


@pytest.mark.asyncio
@pytest.mark.parametrize("faults", sorted(DELETE_FAULTS))
async def test_folder_deletes_that_fail_or_lose_their_answer_are_retried_to_the_end(
    faults: str, mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Folder DELETEs answering 500, or applied and then losing their answer, are retried
    until each folder is gone: every old folder removed, counted once, the new ones intact."""
    folders = await seed_folders(mlflow_server.url, mlflow_server.artifacts_dir)
    kept = disk_files(folders.root, set(folders.new))
    script = DELETE_FAULTS[faults]
    proxy.script(path_contains=ARTIFACTS, method="DELETE", faults=script)

    report = await run_job(proxy, cutoff_spec(folders))

    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.not_found) == (len(folders.old), 0, 0)
    injected_faults = sum(fault.times for fault in DELETE_FAULTS[faults])
    assert report.artifacts == ArtifactReport(deleted=len(folders.old), retries=injected_faults)
    assert await folders.left() == set(folders.new)
    violation(folders.on_disk() == set(folders.new), "a folder was left, or a live one removed")
    assert disk_files(folders.root) == kept
    injected = sum(fault.times for fault in script)
    assert proxy.pending_faults == 0
    # Each fault cost one request more; each folder took exactly one that succeeded.
    assert artifact_calls(proxy, "DELETE") == len(folders.old) + injected
    applied = [
        entry
        for entry in proxy.stats.requests(ARTIFACTS)
        if entry.fault is not FaultKind.PASS and entry.method == "DELETE"
    ]
    assert len(applied) == injected
    if faults == "applied-then-lost":
        assert all(entry.upstream_status == 200 for entry in applied)  # the server did it
    TALLY.add_survived(proxy)


# -- refusals: the traces go, the folders stay ------------------------------------------------


@pytest.mark.asyncio
async def test_a_refused_listing_deletes_the_traces_and_leaves_every_folder(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """A 403 on the job's one folder listing: the traces are deleted exactly, no folder is
    touched, all are counted skipped with a note naming the refusal, and it is not retried."""
    folders = await seed_folders(mlflow_server.url, mlflow_server.artifacts_dir)
    before = disk_files(folders.root)
    proxy.script(path_contains=ARTIFACTS, method="GET", faults=[Fault.forbidden()])

    report = await run_job(proxy, cutoff_spec(folders))

    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.not_found) == (len(folders.old), 0, 0)
    assert report.artifacts is not None
    counts = (report.artifacts.deleted, report.artifacts.failed, report.artifacts.skipped)
    assert counts == (0, 0, len(folders.old))
    refusal_note(report, "PermissionDeniedError")
    assert await folders.left() == set(folders.new)
    violation(folders.on_disk() == folders.all_ids, "a folder went although the API refused")
    assert disk_files(folders.root) == before
    assert (artifact_calls(proxy, "GET"), artifact_calls(proxy, "DELETE")) == (1, 0)
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_a_refused_folder_delete_leaves_the_folders_and_counts_them_skipped(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """A 403 on the folder DELETE: the traces are deleted exactly, the first refusal stops
    the folder deletes (one call, not retried), every folder stays and is counted skipped."""
    folders = await seed_folders(mlflow_server.url, mlflow_server.artifacts_dir)
    before = disk_files(folders.root)
    proxy.script(path_contains=ARTIFACTS, method="DELETE", faults=[Fault.forbidden().repeat(50)])

    report = await run_job(proxy, cutoff_spec(folders), max_concurrency=1)

    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.not_found) == (len(folders.old), 0, 0)
    assert report.artifacts is not None
    counts = (report.artifacts.deleted, report.artifacts.failed, report.artifacts.skipped)
    assert counts == (0, 0, len(folders.old))
    refusal_note(report, "PermissionDeniedError")
    assert await folders.left() == set(folders.new)
    violation(folders.on_disk() == folders.all_ids, "a folder went although the API refused")
    assert disk_files(folders.root) == before
    assert (artifact_calls(proxy, "GET"), artifact_calls(proxy, "DELETE")) == (1, 1)
    TALLY.add_survived(proxy)


ATTEMPTS = 2  # of each folder DELETE, when every one answers 500


async def fail_every_folder_delete(proxy: FaultProxy, folders: Folders) -> JobReport:
    """The cutoff job with artifacts, every folder DELETE answering MLflow's 500 for all of
    its ``ATTEMPTS``."""
    proxy.script(
        path_contains=ARTIFACTS,
        method="DELETE",
        faults=[Fault.internal_error().repeat(ATTEMPTS * len(folders.old))],
    )
    retry = RetryPolicy(initial_backoff=0.05, max_backoff=0.1, max_attempts=ATTEMPTS)
    return await run_job(proxy, cutoff_spec(folders), retry=retry)


@pytest.mark.asyncio
async def test_folder_deletes_failing_past_their_retries_are_failed_and_swept_later(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Folder DELETEs answering 500 past their 2 attempts: the traces are deleted exactly,
    every folder is counted failed (not in the trace counts) and left, and a sweep afterwards
    removes exactly those orphans."""
    folders = await seed_folders(mlflow_server.url, mlflow_server.artifacts_dir)
    kept = disk_files(folders.root, set(folders.new))
    before = disk_files(folders.root)

    report = await fail_every_folder_delete(proxy, folders)

    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.not_found) == (len(folders.old), 0, 0)
    assert report.artifacts is not None
    counts = (report.artifacts.deleted, report.artifacts.failed, report.artifacts.skipped)
    assert counts == (0, len(folders.old), 0)
    assert report.artifacts.notes == (
        "removing folders failed (ServerError, HTTP 500, INTERNAL_ERROR); sweep-artifacts "
        "finds them later",
    )
    assert await folders.left() == set(folders.new)
    assert disk_files(folders.root) == before
    assert proxy.pending_faults == 0
    assert artifact_calls(proxy, "DELETE") == ATTEMPTS * len(folders.old)

    async with Engine(engine_config(proxy.url)) as engine:
        sweep = await engine.sweep_artifacts([folders.experiment_id], execute=True)

    (swept,) = sweep.experiments
    assert (swept.folders, swept.live, swept.orphans, swept.deleted, swept.failed) == (
        len(folders.all_ids),
        len(folders.new),
        len(folders.old),
        len(folders.old),
        0,
    )
    assert swept.notes == ()
    violation(folders.on_disk() == set(folders.new), "the sweep left an orphan or took a live one")
    assert disk_files(folders.root) == kept
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_one_reason_for_failed_folders_is_one_note_however_many_folders_failed(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Six folder DELETEs failing for the same reason (MLflow's 500) give one note, as
    ``ArtifactReport.notes`` promises ("one line per reason"), not one per folder."""
    folders = await seed_folders(mlflow_server.url, mlflow_server.artifacts_dir)

    report = await fail_every_folder_delete(proxy, folders)

    assert report.artifacts is not None
    assert report.artifacts.failed == len(folders.old)
    assert await folders.left() == set(folders.new)
    assert folders.on_disk() == folders.all_ids
    TALLY.add_survived(proxy)
    # Observed: one note per folder, each naming its own path in the error text, so the
    # distinct-reasons set (10 kept) fills with copies of one reason.
    assert len(report.artifacts.notes) == 1, report.artifacts.notes


# -- a lost delete-traces answer ---------------------------------------------------------------

CHUNK = {"initial_id_chunk": 4, "max_id_chunk": 4}


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["ids", "cutoff"])
async def test_a_lost_delete_answer_on_an_id_chunk_still_removes_its_folders_after_the_check(
    mode: str, mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """A ``delete-traces`` answer lost after the server deleted a chunk of 4 (502 from a
    gateway): the chunk counts ambiguous as the engine reports it, and its folders are still
    removed once the existence check finds the traces gone; the rest stays exact."""
    folders = await seed_folders(mlflow_server.url, mlflow_server.artifacts_dir, old=8)
    kept = disk_files(folders.root, set(folders.new))
    proxy.script(path_contains=DELETE, faults=[Fault.status_after(502)])
    if mode == "ids":
        spec = DeleteSpec(
            experiment_id=folders.experiment_id, trace_ids=tuple(folders.old), with_artifacts=True
        )
    else:  # the folder holders go by ID first, in chunks of the same sizer
        spec = cutoff_spec(folders)

    report = await run_job(proxy, spec, **CHUNK)

    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.ambiguous_calls) == (4, 4, 1)
    assert report.not_found == 0
    assert report.artifacts == ArtifactReport(deleted=len(folders.old))
    assert await folders.left() == set(folders.new)
    violation(folders.on_disk() == set(folders.new), "a folder was left, or a live one removed")
    assert disk_files(folders.root) == kept
    assert [entry.upstream_status for entry in proxy.stats.requests(DELETE)][:1] == [200]
    assert proxy.stats.requests(BATCH_GET_INFOS), "the folders went without an existence check"
    assert artifact_calls(proxy, "DELETE") == len(folders.old)
    TALLY.add_survived(proxy)


# -- a server that does not serve artifacts ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_server_without_artifact_serving_is_asked_once_and_not_retried(
    tmp_path: Path,
) -> None:
    """(Starts its own server, with ``--no-serve-artifacts``.) Its 503 on the artifact API is
    not retried: the job deletes the traces exactly and leaves every folder, the sweep stops
    at the listing, and both notes say the server does not serve artifacts."""
    with running_mlflow_server(
        tmp_path / "no-serve", serve_artifacts=False, default_artifact_root="mlflow-artifacts:/"
    ) as server:
        # Folders on disk, as a store that was served once would hold them.
        folders = await seed_folders(server.url, server.artifacts_dir, old=5, new=2, upload=False)
        before = disk_files(folders.root)
        async with fault_proxy(server.url) as proxy:
            started = time.monotonic()
            async with Engine(engine_config(proxy.url)) as engine:
                run = await engine.run([cutoff_spec(folders)])
                sweep = await engine.sweep_artifacts([folders.experiment_id], execute=True)
            elapsed = time.monotonic() - started
            calls = proxy.stats.requests(ARTIFACTS)
            left = await folders.left()

    (report,) = run.jobs
    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.not_found) == (len(folders.old), 0, 0)
    assert report.artifacts is not None
    counts = (report.artifacts.deleted, report.artifacts.failed, report.artifacts.skipped)
    assert counts == (0, 0, len(folders.old))
    assert "the server does not serve artifacts" in refusal_note(
        report, "ArtifactsUnavailableError"
    )
    (swept,) = sweep.experiments
    assert (swept.folders, swept.orphans, swept.deleted, swept.failed) == (0, 0, 0, 0)
    (note,) = swept.notes
    assert "the server does not serve artifacts" in note
    # One listing by the job, one by the sweep; each answered 503 once, never asked again.
    assert [(entry.method, entry.upstream_status) for entry in calls] == [("GET", 503)] * 2
    assert elapsed < 10.0  # no backoff (the progress timeout is 300 s)
    assert left == set(folders.new)
    assert disk_files(folders.root) == before
