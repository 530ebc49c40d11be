"""``with_artifacts`` and ``sweep-artifacts`` against the session's real ``mlflow server``, on
traces the real SDK logged (spans, nested spans, ERROR traces, a tag, an assessment, each with
its ``traces.json``): every test checks what is left on the server (search, and the kept
traces' full records) and on disk (the folders, byte for byte), not only the report.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from async_trace_delete import (
    ArtifactReport,
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    JobReport,
    JobState,
)
from async_trace_delete._cli.args import run_cli
from async_trace_delete._cli.inputs import EXIT_OK
from tests.support.mlflow_server import MlflowServer
from tests.support.sdk_traces import log_sdk_traces
from tests.support.seed import (
    StoredTrace,
    create_experiment,
    make_trace_id,
    remaining_ids,
    remaining_traces,
)
from tests.support.trace_artifacts import (
    EMPTY_TRACE_DATA,
    TRACE_DATA_FILE,
    folders_on_disk,
    log_sdk_traces_with_folders,
    make_orphan_folders,
)

pytestmark = pytest.mark.integration

GET_TRACE_PATH = "/api/3.0/mlflow/traces/get"
CREATE_EXPERIMENT_PATH = "/api/2.0/mlflow/experiments/create"
TRACES_DIR = "traces"


# -- what a test seeds and reads back ------------------------------------------------------------


@dataclass
class SdkExperiment:
    """A fresh experiment holding SDK traces, each with a folder; its traces oldest first."""

    experiment_id: str
    name: str
    ok: list[str]
    error: list[str]
    traces: list[StoredTrace]

    @property
    def all_ids(self) -> set[str]:
        """Every trace the SDK logged into it."""
        return {*self.ok, *self.error}

    def split(self, near: int) -> tuple[int, list[str], list[str]]:
        """A cutoff between two timestamps, as close to ``near`` traces as the timestamps
        allow (SDK traces can share a millisecond): (cutoff, IDs at or before it, IDs after)."""
        traces = self.traces
        gaps = [
            index
            for index in range(1, len(traces))
            if traces[index - 1].timestamp_ms < traces[index].timestamp_ms
        ]
        assert gaps, "every trace has the same timestamp"
        index = min(gaps, key=lambda gap: abs(gap - near))
        old = [trace.trace_id for trace in traces[:index]]
        new = [trace.trace_id for trace in traces[index:]]
        return traces[index - 1].timestamp_ms, old, new


async def sdk_experiment(url: str, *, ok: int, error: int) -> SdkExperiment:
    """Log ``ok`` + ``error`` SDK traces into a new experiment; every one gets a folder."""
    name = f"art-int-{uuid.uuid4().hex[:12]}"
    experiment_id = await create_experiment(url, name)
    logged = await log_sdk_traces_with_folders(url, name, ok=ok, error=error)
    traces = sorted(
        await remaining_traces(url, experiment_id), key=lambda t: (t.timestamp_ms, t.trace_id)
    )
    experiment = SdkExperiment(experiment_id, name, logged["ok"], logged["error"], traces)
    assert {trace.trace_id for trace in traces} == experiment.all_ids
    return experiment


def disk_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (an experiment's artifact folder), by relative path."""
    if not root.is_dir():
        return {}
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def files_of(snapshot: dict[str, bytes], trace_ids: Collection[str]) -> dict[str, bytes]:
    """The files of a snapshot that lie in the folders of ``trace_ids``."""
    return {
        path: data
        for path, data in snapshot.items()
        if path.split("/")[:2] in ([TRACES_DIR, trace_id] for trace_id in trace_ids)
    }


def artifact_bytes(snapshot: dict[str, bytes], trace_ids: Collection[str]) -> int:
    """Bytes of the files directly in the ``artifacts/`` folders of ``trace_ids``."""
    return sum(
        len(data)
        for path, data in files_of(snapshot, trace_ids).items()
        if len(path.split("/")) == 4 and path.split("/")[2] == "artifacts"
    )


async def full_traces(url: str, trace_ids: Collection[str]) -> dict[str, Any]:
    """Each trace as ``GET /api/3.0/mlflow/traces/get`` answers it: info, tags, assessments
    and every span."""
    records: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        for trace_id in sorted(trace_ids):
            response = await client.get(GET_TRACE_PATH, params={"trace_id": trace_id})
            assert response.status_code == 200, response.text
            records[trace_id] = response.json()["trace"]
    return records


def engine_config(url: str) -> EngineConfig:
    """The engine's defaults against ``url``."""
    return EngineConfig(client=ClientConfig(tracking_uri=url))


async def run_one(url: str, spec: DeleteSpec) -> JobReport:
    """Run one job to its end; its report."""
    async with Engine(engine_config(url)) as engine:
        run = await engine.run([spec])
    (report,) = run.jobs
    return report


def exact(report: JobReport, deleted: int, *, not_found: int = 0) -> None:
    """The job completed and counted exactly ``deleted`` (nothing ambiguous)."""
    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.not_found) == (deleted, 0, not_found)


# -- with_artifacts through the engine -----------------------------------------------------------


@pytest.mark.asyncio
async def test_cutoff_with_artifacts_removes_the_old_folders_and_keeps_the_new_traces_whole(
    mlflow_url: str, artifacts_dir: Path
) -> None:
    """A cutoff job removes the folder of every trace it deleted, and every newer trace keeps
    its folder byte for byte and its full record (spans, tags, assessment)."""
    experiment = await sdk_experiment(mlflow_url, ok=5, error=3)
    cutoff, old, new = experiment.split(near=4)
    root = artifacts_dir / experiment.experiment_id
    before = disk_files(root)
    kept_records = await full_traces(mlflow_url, new)
    assert all(record["spans"] for record in kept_records.values())

    report = await run_one(
        mlflow_url,
        DeleteSpec(
            experiment_id=experiment.experiment_id, max_timestamp_millis=cutoff, with_artifacts=True
        ),
    )

    exact(report, len(old))
    assert report.artifacts == ArtifactReport(deleted=len(old))
    assert await remaining_ids(mlflow_url, experiment.experiment_id) == set(new)
    assert folders_on_disk(artifacts_dir, experiment.experiment_id) == set(new)
    assert disk_files(root) == files_of(before, new)
    assert await full_traces(mlflow_url, new) == kept_records


@pytest.mark.asyncio
async def test_ids_with_artifacts_removes_the_named_traces_folders_only(
    mlflow_url: str, artifacts_dir: Path
) -> None:
    """An ID job removes the folders of the named traces it deleted; a named ID without a
    trace counts as not found and its (orphan) folder is not touched."""
    experiment = await sdk_experiment(mlflow_url, ok=4, error=2)
    named = [*experiment.ok[:2], experiment.error[0]]
    ghost = make_trace_id()
    make_orphan_folders(artifacts_dir, experiment.experiment_id, [ghost])
    kept = experiment.all_ids - set(named)
    root = artifacts_dir / experiment.experiment_id
    before = disk_files(root)
    kept_records = await full_traces(mlflow_url, kept)

    report = await run_one(
        mlflow_url,
        DeleteSpec(
            experiment_id=experiment.experiment_id,
            trace_ids=(*named, ghost),
            with_artifacts=True,
        ),
    )

    exact(report, len(named), not_found=1)
    assert report.artifacts == ArtifactReport(deleted=len(named))
    assert await remaining_ids(mlflow_url, experiment.experiment_id) == kept
    assert folders_on_disk(artifacts_dir, experiment.experiment_id) == {*kept, ghost}
    assert disk_files(root) == files_of(before, {*kept, ghost})
    assert await full_traces(mlflow_url, kept) == kept_records


@pytest.mark.asyncio
async def test_error_filter_with_artifacts_removes_only_the_error_traces_folders(
    mlflow_url: str, artifacts_dir: Path
) -> None:
    """``status = 'ERROR'`` with artifacts deletes exactly the failed SDK traces and their
    folders; every OK trace keeps its folder and record."""
    experiment = await sdk_experiment(mlflow_url, ok=4, error=3)
    root = artifacts_dir / experiment.experiment_id
    before = disk_files(root)
    kept_records = await full_traces(mlflow_url, experiment.ok)

    report = await run_one(
        mlflow_url,
        DeleteSpec(
            experiment_id=experiment.experiment_id,
            filter_string="status = 'ERROR'",
            with_artifacts=True,
        ),
    )

    exact(report, len(experiment.error))
    assert report.artifacts == ArtifactReport(deleted=len(experiment.error))
    assert await remaining_ids(mlflow_url, experiment.experiment_id) == set(experiment.ok)
    assert folders_on_disk(artifacts_dir, experiment.experiment_id) == set(experiment.ok)
    assert disk_files(root) == files_of(before, experiment.ok)
    assert await full_traces(mlflow_url, experiment.ok) == kept_records


@pytest.mark.asyncio
async def test_capped_cutoff_with_artifacts_removes_the_folders_of_the_oldest_it_took(
    mlflow_url: str, artifacts_dir: Path
) -> None:
    """A cutoff job capped at 3 deletes the 3 oldest traces at or before the cutoff and
    removes exactly their folders; the rest of the old ones and the new ones keep theirs."""
    experiment = await sdk_experiment(mlflow_url, ok=6, error=3)
    cutoff, old, new = experiment.split(near=7)
    cap = 3
    assert len(old) > cap
    root = artifacts_dir / experiment.experiment_id
    before = disk_files(root)

    report = await run_one(
        mlflow_url,
        DeleteSpec(
            experiment_id=experiment.experiment_id,
            max_timestamp_millis=cutoff,
            max_traces=cap,
            with_artifacts=True,
        ),
    )

    exact(report, cap)
    assert report.artifacts == ArtifactReport(deleted=cap)
    left = await remaining_ids(mlflow_url, experiment.experiment_id)
    gone = experiment.all_ids - left
    assert len(gone) == cap
    assert gone <= set(old)
    assert set(new) <= left
    stamps = {trace.trace_id: trace.timestamp_ms for trace in experiment.traces}
    assert max(stamps[t] for t in gone) <= min(stamps[t] for t in set(old) - gone)  # the oldest
    assert folders_on_disk(artifacts_dir, experiment.experiment_id) == left
    assert disk_files(root) == files_of(before, left)


@pytest.mark.asyncio
async def test_a_local_artifact_location_is_out_of_reach_traces_go_and_files_stay(
    mlflow_url: str, artifacts_dir: Path, tmp_path: Path
) -> None:
    """An experiment whose artifact_location is a local path: with_artifacts deletes its
    traces exactly, skips every folder with a note naming the location, and the local files
    stay as they were."""
    store = tmp_path / "local-store"
    name = f"art-local-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=mlflow_url, timeout=60.0) as client:
        created = await client.post(
            CREATE_EXPERIMENT_PATH, json={"name": name, "artifact_location": str(store)}
        )
    assert created.status_code == 200, created.text
    experiment_id: str = created.json()["experiment_id"]
    logged = await anyio.to_thread.run_sync(
        functools.partial(log_sdk_traces, mlflow_url, name, ok=3, error=2)
    )
    trace_ids = {*logged["ok"], *logged["error"]}
    for trace_id in trace_ids:  # the SDK writes traces.json itself, but not always
        data = store / TRACES_DIR / trace_id / "artifacts" / TRACE_DATA_FILE
        if not data.is_file():
            data.parent.mkdir(parents=True, exist_ok=True)
            data.write_bytes(EMPTY_TRACE_DATA)
    before = disk_files(store)
    assert {path.split("/")[1] for path in before} == trace_ids
    newest = max(t.timestamp_ms for t in await remaining_traces(mlflow_url, experiment_id))

    report = await run_one(
        mlflow_url,
        DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=newest, with_artifacts=True),
    )

    exact(report, len(trace_ids))
    assert report.artifacts is not None
    assert (report.artifacts.deleted, report.artifacts.failed) == (0, 0)
    assert report.artifacts.skipped == report.deleted == len(trace_ids)
    (note,) = report.artifacts.notes
    assert repr(str(store)) in note
    assert "does not serve" in note
    assert await remaining_ids(mlflow_url, experiment_id) == set()
    assert disk_files(store) == before
    assert folders_on_disk(artifacts_dir, experiment_id) == set()


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cli_delete_with_artifacts_in_a_subprocess_reports_exact_folder_counts(
    mlflow_url: str, artifacts_dir: Path
) -> None:
    """``delete --with-artifacts --execute --json`` in its own process exits 0, reports the
    exact trace and folder counts, and leaves exactly the new traces and their folders."""
    experiment = await sdk_experiment(mlflow_url, ok=4, error=2)
    cutoff, old, new = experiment.split(near=3)
    root = artifacts_dir / experiment.experiment_id
    before = disk_files(root)
    command = [
        sys.executable, "-m", "async_trace_delete", "delete",
        "--tracking-uri", mlflow_url,
        "--experiment-id", experiment.experiment_id,
        "--max-timestamp-millis", str(cutoff),
        "--with-artifacts", "--execute", "--json",
    ]  # fmt: skip

    result = await anyio.run_process(command, check=False, env=dict(os.environ))

    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == EXIT_OK, err
    answer = json.loads(out)
    assert (answer["deleted"], answer["ambiguous"], answer["not_found"]) == (len(old), 0, 0)
    assert answer["artifacts"] == {
        "deleted": len(old),
        "failed": 0,
        "skipped": 0,
        "retries": 0,
        "notes": [],
    }
    (job,) = answer["jobs"]
    assert (job["experiment_id"], job["deleted"]) == (experiment.experiment_id, len(old))
    assert await remaining_ids(mlflow_url, experiment.experiment_id) == set(new)
    assert folders_on_disk(artifacts_dir, experiment.experiment_id) == set(new)
    assert disk_files(root) == files_of(before, new)


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run the CLI in-process; it must exit 0. Its JSON answer."""
    code = run_cli(list(argv), environ={})
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    return json.loads(captured.out)


def test_dry_runs_with_artifacts_change_nothing_on_the_server_or_on_disk(
    mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``delete --with-artifacts`` without ``--execute`` (cutoff, IDs, filter) counts what it
    would delete and changes no trace, no record and no file."""
    url = mlflow_server.url
    experiment = anyio.run(functools.partial(sdk_experiment, url, ok=4, error=2))
    cutoff, old, _ = experiment.split(near=3)
    root = mlflow_server.artifacts_dir / experiment.experiment_id
    before = disk_files(root)
    records = anyio.run(full_traces, url, experiment.all_ids)
    base = ["delete", "--tracking-uri", url, "--experiment-id", experiment.experiment_id]

    plans = [
        cli_json(
            capsys, *base, "--max-timestamp-millis", str(cutoff), "--with-artifacts", "--json"
        ),
        cli_json(
            capsys, *base, "--trace-ids", ",".join(experiment.ok[:2]), "--with-artifacts", "--json"
        ),
        cli_json(capsys, *base, "--filter", "status = 'ERROR'", "--with-artifacts", "--json"),
    ]

    assert [(plan["dry_run"], plan["would_delete"]) for plan in plans] == [
        (True, len(old)),
        (True, 2),
        (True, len(experiment.error)),
    ]
    assert all(job["with_artifacts"] for plan in plans for job in plan["jobs"])
    assert anyio.run(remaining_ids, url, experiment.experiment_id) == experiment.all_ids
    assert anyio.run(full_traces, url, experiment.all_ids) == records
    assert disk_files(root) == before


def test_sweep_dry_run_changes_nothing_and_execute_removes_exactly_the_orphans(
    mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Orphans (traces deleted without artifacts, and folders without a trace): the dry run
    finds them and changes nothing, ``--execute`` removes exactly them with the bytes on disk
    reported, the live folders stay byte for byte, and a second sweep finds none."""
    url = mlflow_server.url
    artifacts_dir = mlflow_server.artifacts_dir
    experiment = anyio.run(functools.partial(sdk_experiment, url, ok=4, error=2))
    deleted = [*experiment.ok[:2], experiment.error[0]]
    plain = anyio.run(
        run_one,
        url,
        DeleteSpec(experiment_id=experiment.experiment_id, trace_ids=tuple(deleted)),
    )
    exact(plain, len(deleted))
    assert plain.artifacts is None
    ghosts = [make_trace_id(), make_trace_id()]
    make_orphan_folders(artifacts_dir, experiment.experiment_id, ghosts)
    orphans = {*deleted, *ghosts}
    live = experiment.all_ids - set(deleted)
    root = artifacts_dir / experiment.experiment_id
    before = disk_files(root)
    assert folders_on_disk(artifacts_dir, experiment.experiment_id) == live | orphans
    orphan_bytes = artifact_bytes(before, orphans)
    assert orphan_bytes > 0
    sweep = ["sweep-artifacts", "--tracking-uri", url, "--experiment-id", experiment.experiment_id]

    dry = cli_json(capsys, *sweep, "--json")
    after_dry = disk_files(root)
    executed = cli_json(capsys, *sweep, "--execute", "--json")
    after_execute = disk_files(root)
    again = cli_json(capsys, *sweep, "--execute", "--json")

    def totals(answer: Any) -> tuple[Any, ...]:
        (item,) = answer["experiments"]
        return (
            answer["executed"],
            (item["folders"], item["live"], item["orphans"], item["deleted"], item["failed"]),
            answer["bytes"],
            item["notes"],
        )

    assert totals(dry) == (False, (8, 3, 5, 0, 0), orphan_bytes, [])
    assert after_dry == before
    assert totals(executed) == (True, (8, 3, 5, 5, 0), orphan_bytes, [])
    assert after_execute == files_of(before, live)
    assert totals(again) == (True, (3, 3, 0, 0, 0), 0, [])
    assert disk_files(root) == files_of(before, live)
    assert folders_on_disk(artifacts_dir, experiment.experiment_id) == live
    assert anyio.run(remaining_ids, url, experiment.experiment_id) == live
