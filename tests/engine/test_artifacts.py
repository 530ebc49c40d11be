"""``with_artifacts``: a deleted trace's folder goes once the trace is known gone, never before.

Every test runs on the simulated server and its fake clock, and checks what is left on it
afterwards: the traces (``server.remaining``) and the trace folders
(``artifacts.trace_folders``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import httpx
import pytest

from async_trace_delete import DeleteSpec, JobReport, JobState
from tests.support.sim_engine import (
    cutoff_spec,
    fixed_batches,
    id_chunks,
    make_engine,
    seeded,
)
from tests.support.simulated_artifacts import ArtifactCall, SimulatedArtifacts
from tests.support.simulated_server import (
    DeleteCall,
    Fault,
    SimTrace,
    SimulatedServer,
    sim_traces,
)

pytestmark = pytest.mark.anyio

NO_SERVE_TEXT = (
    "Endpoint: /api/2.0/mlflow-artifacts/artifacts disabled due to the mlflow server running "
    "with `--no-serve-artifacts`. To enable artifacts server functionality, run `mlflow "
    "server` with `--serve-artifacts`"
)
STOPPED_NOTE = "the run was stopped before these folders were removed"
TAG_ELSEWHERE_NOTE = "mlflow.artifactLocation tag names another place"


@dataclass
class World:
    """One experiment on a simulated server with an artifact store."""

    server: SimulatedServer
    artifacts: SimulatedArtifacts
    experiment_id: str
    cutoff: int
    ids: list[str]  # every trace, oldest first

    def traces_left(self) -> set[str]:
        return {trace.trace_id for trace in self.server.remaining(self.experiment_id)}

    def folders_left(self) -> set[str]:
        return self.artifacts.trace_folders(self.experiment_id)

    def folder_paths(self, trace_ids: Sequence[str]) -> set[str]:
        return {f"{self.experiment_id}/traces/{trace_id}" for trace_id in trace_ids}


def world(old: int, new: int = 0, *, folders_every: int = 1) -> World:
    """``old`` traces at or before the cutoff, ``new`` after it; every ``folders_every``-th
    trace (from the oldest) has a folder."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    experiment_id, cutoff = seeded(server, old=old, new=new)
    ids = [trace.trace_id for trace in server.remaining(experiment_id)]
    artifacts.add_trace_folders(experiment_id, ids[::folders_every])
    return World(server, artifacts, experiment_id, cutoff, ids)


def folder_counts(job: JobReport) -> tuple[int, int, int]:
    assert job.artifacts is not None
    return job.artifacts.deleted, job.artifacts.failed, job.artifacts.skipped


def trace_counts(job: JobReport) -> tuple[int, int, int]:
    return job.deleted, job.ambiguous, job.not_found


# -- what is removed ---------------------------------------------------------------------------


async def test_cutoff_removes_exactly_the_deleted_traces_folders() -> None:
    """A cutoff job removes the folders of what it deleted and keeps every newer trace's."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    experiment_id, cutoff = seeded(server, old=1_200, new=300)
    every = [trace.trace_id for trace in server.remaining(experiment_id)]
    with_folders = every[::3]  # one in three has a traces.json
    artifacts.add_trace_folders(experiment_id, with_folders)
    kept = {trace_id for trace_id in with_folders if every.index(trace_id) >= 1_200}

    async with make_engine(server) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert job.deleted == 1_200
    assert len(server.remaining(experiment_id)) == 300
    assert artifacts.trace_folders(experiment_id) == kept
    assert job.artifacts is not None
    assert (job.artifacts.deleted, job.artifacts.failed, job.artifacts.skipped) == (400, 0, 0)


async def test_cutoff_deletes_the_folder_holders_by_id_then_the_rest_by_cutoff() -> None:
    """Without a cap, the 100 old folder holders go in ID calls (40, 40, 20) and the other
    200 old traces in cutoff calls; orphan and newer folders stay."""
    w = world(old=300, new=100, folders_every=3)  # folders at 0, 3, ..., 399: 100 old, 34 new
    orphans = [f"tr-gone{index:04d}" for index in range(5)]
    w.artifacts.add_trace_folders(w.experiment_id, orphans)
    holders = w.ids[:300:3]

    async with make_engine(w.server, **id_chunks(40), **fixed_batches(100)) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (300, 0, 0)
    assert folder_counts(job) == (100, 0, 0)
    by_id = [call for call in w.server.deletes if call.request_ids is not None]
    by_cutoff = [call for call in w.server.deletes if call.request_ids is None]
    assert [len(call.request_ids or ()) for call in by_id] == [40, 40, 20]
    assert sorted(i for call in by_id for i in call.request_ids or ()) == sorted(holders)
    assert w.server.deletes[: len(by_id)] == by_id  # the holders first
    assert [(c.max_timestamp_millis, c.max_traces, c.deleted) for c in by_cutoff] == [
        (w.cutoff, 100, 100),
        (w.cutoff, 100, 100),
        (w.cutoff, 100, 0),
    ]
    # One `request_id IN (...)` search for the 139 folder names, then one check per ID chunk.
    assert w.server.searches == 1 + 3
    assert w.traces_left() == set(w.ids[300:])
    assert w.folders_left() == set(w.ids[300::3]) | set(orphans)
    assert set(w.artifacts.deletes()) == w.folder_paths(holders)
    assert len(w.artifacts.deletes()) == 100


async def test_cutoff_with_max_traces_removes_exactly_the_oldest_ns_folders() -> None:
    """``max_traces=100`` deletes exactly the 100 oldest traces, all by ID, and removes
    exactly the 34 folders among them."""
    w = world(old=300, new=50, folders_every=3)
    spec = cutoff_spec(w.experiment_id, w.cutoff, max_traces=100, with_artifacts=True)

    async with make_engine(w.server, **id_chunks(25)) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (100, 0, 0)
    assert folder_counts(job) == (34, 0, 0)
    assert all(call.request_ids is not None for call in w.server.deletes)
    deleted_ids = [i for call in w.server.deletes for i in call.request_ids or ()]
    assert sorted(deleted_ids) == sorted(w.ids[:100])
    assert w.traces_left() == set(w.ids[100:])
    assert w.folders_left() == set(w.ids[102::3])  # 99 was the last holder deleted
    assert set(w.artifacts.deletes()) == w.folder_paths(w.ids[:100:3])


async def test_ids_remove_named_folders_only_and_leave_other_experiments_alone() -> None:
    """Of 22 named IDs, the 20 of this experiment and their folders go; an unknown ID's
    folder and another experiment's trace and folder stay; both count as not found."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    mine = server.add_experiment("mine", sim_traces(50))
    other_traces = sim_traces(10, tag=1)
    other = server.add_experiment("other", other_traces)
    ids = [trace.trace_id for trace in server.remaining(mine)]
    artifacts.add_trace_folders(mine, [*ids, "tr-unknown"])
    artifacts.add_trace_folders(other, [trace.trace_id for trace in other_traces])
    elsewhere = other_traces[0].trace_id
    spec = DeleteSpec(
        experiment_id=mine, trace_ids=[*ids[:20], "tr-unknown", elsewhere], with_artifacts=True
    )

    async with make_engine(server, **id_chunks(100)) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (20, 0, 2)
    assert job.requested_ids == 22
    assert folder_counts(job) == (20, 0, 0)
    assert report.artifacts == job.artifacts
    assert {t.trace_id for t in server.remaining(mine)} == set(ids[20:])
    assert artifacts.trace_folders(mine) == {*ids[20:], "tr-unknown"}
    assert server.remaining(other) == other_traces
    assert artifacts.trace_folders(other) == {trace.trace_id for trace in other_traces}
    assert set(artifacts.deletes()) == {f"{mine}/traces/{trace_id}" for trace_id in ids[:20]}


async def test_ids_not_found_is_counted_as_without_artifacts() -> None:
    """The same ID job with and without ``with_artifacts`` counts the same deleted and not
    found traces."""
    counts = []
    for with_artifacts in (False, True):
        w = world(old=30)
        spec = DeleteSpec(
            experiment_id=w.experiment_id,
            trace_ids=[*w.ids[:10], "tr-nope-1", "tr-nope-2", "tr-nope-3"],
            with_artifacts=with_artifacts,
        )
        async with make_engine(w.server, **id_chunks(100)) as engine:
            job = (await engine.run([spec])).jobs[0]
        counts.append((trace_counts(job), job.calls))
        assert w.traces_left() == set(w.ids[10:])
        assert w.folders_left() == (set(w.ids[10:]) if with_artifacts else set(w.ids))
    assert counts == [((10, 0, 3), 1), ((10, 0, 3), 1)]


async def test_selective_removes_the_folders_of_the_matches_only() -> None:
    """A ``status = 'ERROR'`` job deletes the 20 ERROR traces and removes the 10 folders
    among them; the 40 OK traces and their 20 folders stay."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    traces = sim_traces(60, error_every=3)  # ERROR at 2, 5, ..., 59
    experiment_id = server.add_experiment("e", traces)
    artifacts.add_trace_folders(experiment_id, [t.trace_id for t in traces[::2]])
    errors = {t.trace_id for t in traces if t.state == "ERROR"}
    spec = DeleteSpec(
        experiment_id=experiment_id, filter_string="status = 'ERROR'", with_artifacts=True
    )

    async with make_engine(server) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (20, 0, 0)
    assert folder_counts(job) == (10, 0, 0)
    left = server.remaining(experiment_id)
    assert len(left) == 40
    assert all(trace.state == "OK" for trace in left)
    assert artifacts.trace_folders(experiment_id) == {t.trace_id for t in traces[::2]} - errors
    assert len(artifacts.trace_folders(experiment_id)) == 20


async def test_no_folders_costs_one_listing_and_deletes_by_cutoff() -> None:
    """An experiment without trace folders: one listing call, no search, only cutoff calls."""
    w = world(old=250, new=10, folders_every=10**9)
    w.artifacts.files.clear()

    async with make_engine(w.server, **fixed_batches(100)) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (250, 0, 0)
    assert w.artifacts.calls == [ArtifactCall("GET", f"{w.experiment_id}/traces")]
    assert w.server.searches == 0
    assert [(c.request_ids, c.max_traces, c.deleted) for c in w.server.deletes] == [
        (None, 100, 100),
        (None, 100, 100),
        (None, 100, 50),
    ]
    assert job.artifacts is not None
    assert job.artifacts == type(job.artifacts)()  # nothing removed, skipped or noted
    assert w.traces_left() == set(w.ids[250:])
    assert w.folders_left() == set()


# -- answers in doubt, failures, liars ----------------------------------------------------------


async def test_a_lost_answer_then_a_retry_removes_the_folders_through_the_absent_check() -> None:
    """The first ID delete is carried out but its answer lost (502); the retry finds 0 left,
    so the engine counts the 50 as ambiguous, and the absent check lets their folders go."""
    w = world(old=100, new=20, folders_every=2)
    w.server.script(Fault(status=502, text="bad gateway", apply_first=True))

    async with make_engine(w.server, **id_chunks(100)) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (50, 50, 0)  # 50 by cutoff; the 50 holders in doubt
    assert (job.calls, job.retries, job.ambiguous_calls) == (3, 1, 1)
    assert [(len(c.request_ids or ()), c.deleted) for c in w.server.deletes[:2]] == [
        (50, 50),
        (50, 0),
    ]
    assert folder_counts(job) == (50, 0, 0)
    assert w.server.searches == 2  # the holders, then the absent check
    assert w.traces_left() == set(w.ids[100:])
    assert w.folders_left() == set(w.ids[100::2])


async def test_a_permanent_delete_failure_keeps_the_folders_and_counts_none() -> None:
    """A 400 on the only delete fails the job: every trace and folder stays, and no folder
    is counted as deleted, failed or skipped."""
    w = world(old=10)
    w.server.script(Fault(status=400, error_code="INVALID_PARAMETER_VALUE", message="no"))
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids, with_artifacts=True)

    async with make_engine(w.server, **id_chunks(10)) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.FAILED
    assert trace_counts(job) == (0, 0, 0)
    assert folder_counts(job) == (0, 0, 0)
    assert w.artifacts.deletes() == []
    assert w.traces_left() == set(w.ids)
    assert w.folders_left() == set(w.ids)


async def test_a_failed_with_artifacts_job_reports_the_error_that_failed_it() -> None:
    """A 400 fails a ``with_artifacts`` job with that error, as without artifacts (not
    with the task group's ExceptionGroup around it)."""
    w = world(old=10)
    w.server.script(Fault(status=400, error_code="INVALID_PARAMETER_VALUE", message="no way"))
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids, with_artifacts=True)

    async with make_engine(w.server, **id_chunks(10)) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.FAILED
    assert job.error_type == "InvalidParameterError"
    assert job.error is not None
    assert "no way" in job.error
    assert w.traces_left() == set(w.ids)


async def test_a_job_that_fails_still_removes_the_folders_of_what_it_deleted() -> None:
    """The first chunk of 10 is deleted, the second fails (400): the job fails, and the 10
    deleted traces' folders are removed (or counted), the other 90 kept."""
    w = world(old=100)
    w.server.script(None, Fault(status=400, error_code="INVALID_PARAMETER_VALUE", message="no"))
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids, with_artifacts=True)

    async with make_engine(w.server, max_concurrency=1, **id_chunks(10)) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.FAILED
    assert trace_counts(job) == (10, 0, 0)
    assert w.traces_left() == set(w.ids[10:])
    assert folder_counts(job) == (10, 0, 0)
    assert w.folders_left() == set(w.ids[10:])


async def test_a_lost_answer_then_a_permanent_failure_removes_the_folders_found_gone() -> None:
    """The only delete is carried out but its answer lost, its retry fails (400): the job
    fails with the 10 traces ambiguous, the end-of-job check finds them gone, and their 10
    folders are removed."""
    w = world(old=10)
    w.server.script(
        Fault(status=502, text="bad gateway", apply_first=True),
        Fault(status=400, error_code="INVALID_PARAMETER_VALUE", message="no way"),
    )
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids, with_artifacts=True)

    async with make_engine(w.server, **id_chunks(10)) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.FAILED
    assert trace_counts(job) == (0, 10, 0)
    assert w.traces_left() == set()
    assert folder_counts(job) == (10, 0, 0)
    assert w.folders_left() == set()


async def test_a_transient_folder_delete_failure_is_retried() -> None:
    """One folder delete answers MLflow's 503 "database is locked": it is retried, and all
    10 folders go."""
    w = world(old=10)
    refused: list[str] = []

    def lock_once(call: ArtifactCall) -> httpx.Response | None:
        if call.method == "DELETE" and not refused:
            refused.append(call.path)
            return httpx.Response(
                503, json={"error_code": "TEMPORARILY_UNAVAILABLE", "message": "database is locked"}
            )
        return None

    w.artifacts.rule = lock_once
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids, with_artifacts=True)

    async with make_engine(w.server, **id_chunks(10)) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (10, 0, 0)
    assert folder_counts(job) == (10, 0, 0)
    assert len(w.artifacts.deletes()) == 11
    assert w.artifacts.deletes().count(refused[0]) == 2
    assert job.artifacts is not None
    assert (job.retries, job.artifacts.retries) == (0, 1)  # never in the trace job's count
    assert w.traces_left() == set()
    assert w.folders_left() == set()


async def test_a_proxy_answering_zero_without_deleting_keeps_every_folder() -> None:
    """Every delete answers 200 ``traces_deleted: 0`` and deletes nothing: the absent check
    still finds the 50 holders, so no folder is touched."""
    w = world(old=100, new=20, folders_every=2)
    w.server.fault_rule = lambda call: Fault(status=200, text='{"traces_deleted": 0}')

    async with make_engine(w.server, **id_chunks(100)) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (0, 0, 50)
    assert [(len(c.request_ids or ()), c.deleted) for c in w.server.deletes] == [
        (50, None),
        (0, None),  # the cutoff part: "0 deleted" ends it
    ]
    assert folder_counts(job) == (0, 0, 0)
    assert w.artifacts.deletes() == []
    assert w.traces_left() == set(w.ids)
    assert w.folders_left() == set(w.ids[::2])


async def test_a_proxy_answering_the_full_count_without_deleting_keeps_every_folder() -> None:
    """Every ID delete answers 200 with ``traces_deleted`` equal to the IDs it named, and
    deletes nothing: the check after it still finds the 50 holders, so no folder goes."""
    w = world(old=100, new=20, folders_every=2)

    def pretend(call: DeleteCall) -> Fault | None:
        if call.request_ids is None:
            return None  # the cutoff part is answered for real
        return Fault(status=200, text=f'{{"traces_deleted": {len(call.request_ids)}}}')

    w.server.fault_rule = pretend

    async with make_engine(w.server, **id_chunks(100)) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert job.deleted == 150  # the 50 the proxy claimed, then 100 by the real cutoff calls
    assert folder_counts(job) == (0, 0, 0)  # the holders existed when their chunk was checked
    assert w.artifacts.deletes() == []
    assert w.folders_left() == set(w.ids[::2])  # orphans now: sweep-artifacts finds them
    assert w.traces_left() == set(w.ids[100:])


# -- folders out of reach --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (httpx.Response(403, text="Permission denied"), "PermissionDeniedError"),
        (httpx.Response(503, text=NO_SERVE_TEXT), "ArtifactsUnavailableError"),
    ],
    ids=["403", "503-no-serve-artifacts"],
)
async def test_a_refused_listing_leaves_the_folders_and_deletes_every_trace(
    answer: httpx.Response, cause: str
) -> None:
    """The listing is refused once, never retried: all 100 old traces go by cutoff, their
    folders stay, and every deleted trace counts as skipped with a note naming the cause."""
    w = world(old=100, new=20, folders_every=2)
    w.artifacts.rule = lambda call: httpx.Response(answer.status_code, text=answer.text)

    async with make_engine(w.server, **fixed_batches(1_000)) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (100, 0, 0)
    assert (job.calls, job.retries) == (1, 0)
    assert w.artifacts.calls == [ArtifactCall("GET", f"{w.experiment_id}/traces")]
    assert w.server.searches == 0
    assert folder_counts(job) == (0, 0, 100)
    assert job.artifacts is not None
    (note,) = job.artifacts.notes
    assert cause in note
    assert "refused" in note
    assert w.traces_left() == set(w.ids[100:])
    assert w.folders_left() == set(w.ids[::2])


async def test_a_refused_folder_delete_stops_the_folder_calls_not_the_traces() -> None:
    """The listing works but the first folder delete is refused (403): no other folder call
    is made, all 30 holders count as skipped, and the 60 traces are deleted."""
    w = world(old=60, folders_every=2)

    def refuse(call: ArtifactCall) -> httpx.Response | None:
        return httpx.Response(403, text="Permission denied") if call.method == "DELETE" else None

    w.artifacts.rule = refuse

    async with make_engine(w.server, max_concurrency=1) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (60, 0, 0)
    assert len(w.artifacts.deletes()) == 1
    assert folder_counts(job) == (0, 0, 30)
    assert job.artifacts is not None
    assert any("PermissionDeniedError" in note for note in job.artifacts.notes)
    assert w.traces_left() == set()
    assert w.folders_left() == set(w.ids[::2])


async def test_an_s3_location_is_reported_and_nothing_goes_through_the_api() -> None:
    """An experiment whose artifacts are on ``s3://bucket/x``: no artifact call at all, the
    100 deleted traces skipped, and the note names the location and what to delete."""
    w = world(old=100, new=20, folders_every=2)
    w.server.artifact_locations[w.experiment_id] = "s3://bucket/x"

    async with make_engine(w.server) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (100, 0, 0)
    assert w.artifacts.calls == []
    assert folder_counts(job) == (0, 0, 100)
    assert job.artifacts is not None
    (note,) = job.artifacts.notes
    assert "'s3://bucket/x'" in note
    assert "delete s3://bucket/x/traces/<trace_id>/" in note
    assert w.traces_left() == set(w.ids[100:])
    assert w.folders_left() == set(w.ids[::2])


async def test_a_tag_naming_another_folder_keeps_that_folder() -> None:
    """One trace's ``mlflow.artifactLocation`` names another folder: the trace is deleted,
    its folder and the other stay (skipped 1), the other 9 folders go."""
    w = world(old=10, new=1)
    odd = w.ids[4]
    decoy = w.ids[10]  # a newer trace, not deleted

    def tag(experiment_id: str, trace: SimTrace) -> str:
        name = decoy if trace.trace_id == odd else trace.trace_id
        return f"mlflow-artifacts:/{experiment_id}/traces/{name}/artifacts"

    w.server.tag_rule = tag
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids[:10], with_artifacts=True)

    async with make_engine(w.server) as engine:
        report = await engine.run([spec])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (10, 0, 0)
    assert folder_counts(job) == (9, 0, 1)
    assert job.artifacts is not None
    assert any(TAG_ELSEWHERE_NOTE in note for note in job.artifacts.notes)
    assert w.traces_left() == {decoy}
    assert w.folders_left() == {odd, decoy}
    assert f"{w.experiment_id}/traces/{odd}" not in w.artifacts.deletes()


async def test_one_folder_delete_failing_counts_one_failure_only() -> None:
    """A 400 on one folder's delete: failed 1, the other 29 removed, the trace counts as
    without the failure."""
    w = world(old=60, folders_every=2)
    broken = f"{w.experiment_id}/traces/{w.ids[20]}"

    def fail_one(call: ArtifactCall) -> httpx.Response | None:
        if call.method == "DELETE" and call.path == broken:
            return httpx.Response(
                400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "bad path"}
            )
        return None

    w.artifacts.rule = fail_one

    async with make_engine(w.server, **id_chunks(100), **fixed_batches(100)) as engine:
        report = await engine.run([cutoff_spec(w.experiment_id, w.cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert trace_counts(job) == (60, 0, 0)
    assert (job.calls, job.retries) == (2, 0)  # the 30 holders by ID, the other 30 by cutoff
    assert folder_counts(job) == (29, 1, 0)
    assert job.artifacts is not None
    (note,) = job.artifacts.notes
    assert "InvalidParameterError" in note
    assert w.artifacts.deletes().count(broken) == 1
    assert w.traces_left() == set()
    assert w.folders_left() == {w.ids[20]}


# -- a stop ------------------------------------------------------------------------------------


async def test_a_stop_removes_nothing_unconfirmed_and_the_counts_add_up() -> None:
    """``stop_all`` while the third of ten chunks is in flight: that chunk finishes, nothing
    else is sent, no trace still there loses its folder, and every folder counted belongs to
    one of the 30 deleted traces."""
    w = world(old=100)
    hold = anyio.Event()
    third = Fault(hold=hold)
    w.server.script(None, None, third)
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids, with_artifacts=True)

    async with make_engine(w.server, max_concurrency=2, **id_chunks(10)) as engine:
        handle = await engine.submit(spec)
        await third.arrived.wait()
        engine.stop_all()
        hold.set()
        job = await handle.wait()

    assert job.state is JobState.CANCELLED
    assert trace_counts(job) == (30, 0, 0)
    assert len(w.server.deletes) == 3
    left = w.traces_left()
    assert len(left) == 70
    assert left <= w.folders_left()  # no trace still there lost its folder
    deleted, failed, skipped = folder_counts(job)
    assert deleted == len(w.artifacts.deletes()) == 100 - len(w.folders_left())
    assert deleted <= job.deleted
    assert failed == 0
    assert deleted + skipped == job.deleted  # the 30 deleted traces' folders, each once
    assert job.artifacts is not None
    assert any(STOPPED_NOTE in note for note in job.artifacts.notes)


# -- the run's account -----------------------------------------------------------------------


async def test_the_run_report_sums_the_with_artifacts_jobs_only() -> None:
    """Three jobs: folders removed in one, out of reach in another, not asked in the third;
    the run's account sums the first two and the third has none."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    served = server.add_experiment("served", sim_traces(10))
    on_s3 = server.add_experiment("on-s3", sim_traces(6, tag=1))
    plain = server.add_experiment("plain", sim_traces(4, tag=2))
    server.artifact_locations[on_s3] = "s3://bucket/x"
    for experiment_id in (served, on_s3, plain):
        ids = [trace.trace_id for trace in server.remaining(experiment_id)]
        artifacts.add_trace_folders(experiment_id, ids)
    cutoff = max(t.timestamp_ms for e in (served, on_s3, plain) for t in server.remaining(e))
    specs = [
        cutoff_spec(served, cutoff, with_artifacts=True),
        cutoff_spec(on_s3, cutoff, with_artifacts=True),
        cutoff_spec(plain, cutoff),
    ]

    async with make_engine(server) as engine:
        report = await engine.run(specs)

    assert [job.deleted for job in report.jobs] == [10, 6, 4]
    assert [folder_counts(job) for job in report.jobs[:2]] == [(10, 0, 0), (0, 0, 6)]
    assert report.jobs[2].artifacts is None
    assert report.artifacts is not None
    assert (report.artifacts.deleted, report.artifacts.failed, report.artifacts.skipped) == (
        10,
        0,
        6,
    )
    s3_account = report.jobs[1].artifacts
    assert s3_account is not None
    assert report.artifacts.notes == s3_account.notes
    assert artifacts.trace_folders(served) == set()
    assert len(artifacts.trace_folders(on_s3)) == 6
    assert len(artifacts.trace_folders(plain)) == 4
    assert all(server.remaining(e) == [] for e in (served, on_s3, plain))


async def test_folder_calls_have_their_own_slots_and_rate() -> None:
    """With the deletes' concurrency limit at 1 (its start), 40 folder removals still run
    up to ``max_concurrency`` at once, spaced by ``artifact_rate_limit`` (10/s: >= 3.9 s of
    the fake clock), not by the deletes' rate."""
    w = world(old=40)
    w.server.in_flight_turns = 5  # each request stays in flight over a few scheduler turns
    spec = DeleteSpec(experiment_id=w.experiment_id, trace_ids=w.ids, with_artifacts=True)

    async with make_engine(
        w.server, max_concurrency=4, artifact_rate_limit=10.0, **id_chunks(40)
    ) as engine:
        started = w.server.clock()
        report = await engine.run([spec])
        elapsed = w.server.clock() - started

    job = report.jobs[0]
    assert trace_counts(job) == (40, 0, 0)
    assert folder_counts(job) == (40, 0, 0)
    assert w.folders_left() == set()
    removals = [call for call in w.server.calls if call.kind == "other"]
    assert len(removals) == 42  # the listing, the chunk's batchGetInfos check, 40 removals
    assert max(call.concurrent for call in removals) >= 1  # they overlapped
    assert elapsed >= 3.9
