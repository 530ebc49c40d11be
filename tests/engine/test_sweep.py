"""``Engine.sweep_artifacts``: orphan trace folders found exactly, removed only with ``execute``,
and never a live trace's folder, even when the existence checks lie.

Every test runs on the simulated server and its fake clock, and checks what is left in its
artifact store afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from async_trace_delete import Event, FoldersSwept, SweepExperiment, UsageError
from tests.support.sim_engine import make_engine, seeded
from tests.support.simulated_artifacts import ArtifactCall, SimulatedArtifacts
from tests.support.simulated_server import SimTrace, SimulatedServer, sim_traces

pytestmark = pytest.mark.anyio

ODD_NAMES = ("..x", "a b")
ORPHAN_SIZE = 100


@dataclass
class SweepWorld:
    """Experiment ``exp-0`` with 40 traces: 20 with a folder, 7 orphan folders of 100 bytes,
    2 folders whose names are not trace IDs, and the folder of a trace that lives in
    experiment ``other``."""

    server: SimulatedServer
    artifacts: SimulatedArtifacts
    experiment_id: str
    live: set[str]  # folders whose trace exists (in any experiment)
    orphans: set[str]

    def folders(self) -> set[str]:
        return self.artifacts.trace_folders(self.experiment_id)


def sweep_world() -> SweepWorld:
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    experiment_id, _ = seeded(server, old=30, new=10)
    other_trace = sim_traces(1, tag=7)[0]
    server.add_experiment("other", [other_trace])
    ids = [trace.trace_id for trace in server.remaining(experiment_id)]
    live = {*ids[::2], other_trace.trace_id}
    orphans = {f"tr-dead{index:04d}" for index in range(7)}
    artifacts.add_trace_folders(experiment_id, live)
    artifacts.add_trace_folders(experiment_id, orphans, size=ORPHAN_SIZE)
    for name in ODD_NAMES:
        artifacts.files[f"{experiment_id}/traces/{name}/artifacts/traces.json"] = 5
    return SweepWorld(server, artifacts, experiment_id, live, orphans)


def counts(swept: SweepExperiment) -> tuple[int, int, int, int, int, int | None]:
    return (
        swept.folders,
        swept.live,
        swept.orphans,
        swept.deleted,
        swept.failed,
        swept.bytes,
    )


async def test_a_dry_run_counts_orphans_live_and_bytes_and_removes_nothing() -> None:
    """A dry run lists 28 trace folders: 21 live (one of another experiment's trace), 7
    orphans of 700 bytes; nothing is removed and the 2 odd names are noted."""
    w = sweep_world()
    before = dict(w.artifacts.files)

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id])

    (swept,) = report.experiments
    assert report.executed is False
    assert counts(swept) == (28, 21, 7, 0, 0, 7 * ORPHAN_SIZE)
    assert swept.complete is True
    assert swept.notes == ("2 folders whose names are not trace IDs were left alone",)
    assert swept.other_folders == 2
    assert (report.folders, report.orphans, report.deleted, report.bytes) == (28, 7, 0, 700)
    assert w.artifacts.deletes() == []
    assert w.artifacts.files == before
    assert len(w.server.remaining(w.experiment_id)) == 40


async def test_execute_removes_exactly_the_orphans_and_a_second_sweep_finds_none() -> None:
    """``execute`` removes the 7 orphans' folders and nothing else; sweeping again lists the
    21 live folders and finds no orphan."""
    w = sweep_world()

    async with make_engine(w.server) as engine:
        first = await engine.sweep_artifacts([w.experiment_id], execute=True)
        deletes = list(w.artifacts.deletes())
        second = await engine.sweep_artifacts([w.experiment_id], execute=True)

    (swept,) = first.experiments
    assert counts(swept) == (28, 21, 7, 7, 0, 700)
    assert sorted(deletes) == sorted(f"{w.experiment_id}/traces/{name}" for name in w.orphans)
    (again,) = second.experiments
    assert counts(again) == (21, 21, 0, 0, 0, 0)
    assert w.artifacts.deletes() == deletes  # the second sweep removed nothing
    assert w.folders() == w.live | set(ODD_NAMES)
    assert len(w.server.remaining(w.experiment_id)) == 40


async def test_without_count_bytes_only_the_listing_and_the_checks_are_made() -> None:
    """``count_bytes=False``: bytes is ``None`` and the only artifact call is the listing."""
    w = sweep_world()

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], count_bytes=False)

    (swept,) = report.experiments
    assert counts(swept) == (28, 21, 7, 0, 0, None)
    assert report.bytes is None
    assert w.artifacts.calls == [ArtifactCall("GET", f"{w.experiment_id}/traces")]
    assert w.folders() == w.live | w.orphans | set(ODD_NAMES)


async def test_a_check_that_loses_the_canary_removes_nothing() -> None:
    """The canary is found, then batchGetInfos and every check search answer nothing: the
    check lost a live trace, so nothing is removed and the note says why."""
    w = sweep_world()
    searches = 0

    def drop_after_the_first(
        experiment_id: str, page: list[tuple[str, SimTrace]]
    ) -> list[tuple[str, SimTrace]]:
        nonlocal searches
        searches += 1
        return page if searches == 1 else []

    w.server.trace_infos_rule = lambda ids: []
    w.server.search_rule = drop_after_the_first

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], execute=True)

    (swept,) = report.experiments
    assert counts(swept) == (28, 0, 0, 0, 0, 0)
    assert swept.complete is False
    assert report.ok is False
    (note,) = [n for n in swept.notes if "lost trace" in n]
    assert "not trusted" in note
    assert "nothing more is removed" in note
    assert w.artifacts.deletes() == []
    assert w.folders() == w.live | w.orphans | set(ODD_NAMES)


async def test_checks_and_canary_search_answering_nothing_remove_nothing() -> None:
    """batchGetInfos and every search (the canary's too) answer nothing although 41 traces
    exist: no live trace's folder may be removed, and a note says why."""
    w = sweep_world()
    for name in ODD_NAMES:  # no other reason for a note
        del w.artifacts.files[f"{w.experiment_id}/traces/{name}/artifacts/traces.json"]
    w.server.trace_infos_rule = lambda ids: []
    w.server.search_rule = lambda experiment_id, page: []

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], execute=True)

    (swept,) = report.experiments
    assert w.artifacts.deletes() == []
    assert w.folders() == w.live | w.orphans
    assert swept.deleted == 0
    assert swept.notes == (
        "found no trace on the server to check its answers with (an empty server, or answers "
        "that are not MLflow's): nothing was removed; the sweep needs one live trace anywhere "
        "on the server",
    )
    assert report.ok is False


async def test_every_existence_request_carries_the_canary() -> None:
    """539 folders (19 live, 520 orphans) of an experiment whose newest trace has none: each
    batchGetInfos request asks for that canary too, and the 520 orphans go."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    experiment_id, _ = seeded(server, old=20)
    ids = [trace.trace_id for trace in server.remaining(experiment_id)]
    canary = ids[-1]  # the newest trace: the sweep's canary, without a folder
    orphans = [f"tr-dead{index:04d}" for index in range(520)]
    artifacts.add_trace_folders(experiment_id, [*ids[:-1], *orphans])
    asked: list[list[str]] = []

    def record(found: list[str]) -> list[str]:
        asked.append(found)
        return found

    server.trace_infos_rule = record

    async with make_engine(server) as engine:
        report = await engine.sweep_artifacts([experiment_id], execute=True, count_bytes=False)

    (swept,) = report.experiments
    assert counts(swept) == (539, 19, 520, 520, 0, None)
    assert report.ok is True
    assert len(asked) >= 2
    assert [canary in found for found in asked] == [True] * len(asked)  # every request guarded
    assert artifacts.trace_folders(experiment_id) == set(ids[:-1])
    assert len(server.remaining(experiment_id)) == 20


async def test_progress_events_follow_the_sweep() -> None:
    """One check of 28 folders: one progress event, then the last one, with the report's
    counts."""
    w = sweep_world()
    events: list[Event] = []

    async with make_engine(w.server, hooks=[events.append]) as engine:
        await engine.sweep_artifacts([w.experiment_id], execute=True, count_bytes=False)

    progress = [event for event in events if isinstance(event, FoldersSwept)]
    assert [
        (e.experiment_id, e.folders, e.checked, e.orphans, e.deleted, e.done) for e in progress
    ] == [
        (w.experiment_id, 28, 28, 7, 7, False),
        (w.experiment_id, 28, 28, 7, 7, True),
    ]
    assert w.folders() == w.live | set(ODD_NAMES)


async def test_one_experiment_given_by_id_and_by_name_is_swept_once() -> None:
    """The same experiment by ID and by name: one entry, one listing."""
    w = sweep_world()

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], ["exp-0"], count_bytes=False)

    assert [swept.experiment_id for swept in report.experiments] == [w.experiment_id]
    assert report.experiments[0].experiment_name == "exp-0"
    assert w.artifacts.calls == [ArtifactCall("GET", f"{w.experiment_id}/traces")]


async def test_a_sweep_needs_an_experiment() -> None:
    """No experiment given: a UsageError before any call."""
    w = sweep_world()

    async with make_engine(w.server) as engine:
        with pytest.raises(UsageError):
            await engine.sweep_artifacts()

    assert w.server.calls == []


async def test_an_s3_location_is_noted_and_nothing_is_called() -> None:
    """An ``s3://`` experiment: no artifact call, no count, a note naming the location."""
    w = sweep_world()
    w.server.artifact_locations[w.experiment_id] = "s3://bucket/x"

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], execute=True)

    (swept,) = report.experiments
    assert counts(swept) == (0, 0, 0, 0, 0, 0)
    (note,) = swept.notes
    assert "'s3://bucket/x'" in note
    assert w.artifacts.calls == []
    assert w.folders() == w.live | w.orphans | set(ODD_NAMES)


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (httpx.Response(403, text="Permission denied"), "PermissionDeniedError"),
        (httpx.Response(503, text="running with `--no-serve-artifacts`"), "Artifacts"),
    ],
    ids=["403", "503-no-serve-artifacts"],
)
async def test_a_refused_listing_is_noted_once_and_removes_nothing(
    answer: httpx.Response, cause: str
) -> None:
    """The listing is refused (not retried): one artifact call, nothing counted or removed."""
    w = sweep_world()
    w.artifacts.rule = lambda call: httpx.Response(answer.status_code, text=answer.text)

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], execute=True)

    (swept,) = report.experiments
    assert counts(swept) == (0, 0, 0, 0, 0, 0)
    (note,) = swept.notes
    assert cause in note
    assert len(w.artifacts.calls) == 1
    assert w.folders() == w.live | w.orphans | set(ODD_NAMES)


async def test_a_failing_folder_delete_is_counted_and_the_others_go() -> None:
    """A 400 on one orphan's delete: failed 1, the 6 others removed, the live ones kept."""
    w = sweep_world()
    broken = f"{w.experiment_id}/traces/tr-dead0003"

    def fail_one(call: ArtifactCall) -> httpx.Response | None:
        if call.method == "DELETE" and call.path == broken:
            return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE"})
        return None

    w.artifacts.rule = fail_one

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], execute=True, count_bytes=False)

    (swept,) = report.experiments
    assert counts(swept) == (28, 21, 7, 6, 1, None)
    assert report.failed == 1
    assert w.folders() == w.live | {"tr-dead0003"} | set(ODD_NAMES)


async def test_an_experiment_without_traces_takes_its_canary_from_another() -> None:
    """An experiment whose traces are all gone: the canary comes from another experiment,
    every check carries it, and exactly the 6 orphans go."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    empty = server.add_experiment("emptied")
    other, _ = seeded(server, old=5, tag=1)
    canary = server.remaining(other)[-1].trace_id
    orphans = [f"tr-gone{index:04d}" for index in range(6)]
    artifacts.add_trace_folders(empty, orphans)
    asked: list[list[str]] = []

    def record(found: list[str]) -> list[str]:
        asked.append(found)
        return found

    server.trace_infos_rule = record

    async with make_engine(server) as engine:
        report = await engine.sweep_artifacts([empty], execute=True)

    (swept,) = report.experiments
    assert (swept.folders, swept.live, swept.orphans, swept.deleted) == (6, 0, 6, 6)
    assert report.ok is True
    assert asked == [[canary]]
    assert artifacts.trace_folders(empty) == set()
    assert len(server.remaining(other)) == 5


async def test_a_server_without_batch_get_infos_is_not_swept() -> None:
    """Without ``batchGetInfos`` a trace of another experiment sharing the artifact location
    cannot be seen: nothing is removed, and the note says why."""
    w = sweep_world()
    real = w.server.handle

    async def without_batch_get_infos(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/traces/batchGetInfos"):
            return httpx.Response(404, text="Not Found")
        return await real(request)

    w.server.handle = without_batch_get_infos  # type: ignore[method-assign]

    async with make_engine(w.server) as engine:
        report = await engine.sweep_artifacts([w.experiment_id], execute=True)

    (swept,) = report.experiments
    assert (swept.deleted, swept.orphans, swept.complete) == (0, 0, False)
    assert any("batchGetInfos" in note for note in swept.notes)
    assert w.artifacts.deletes() == []
    assert w.folders() == w.live | w.orphans | set(ODD_NAMES)
