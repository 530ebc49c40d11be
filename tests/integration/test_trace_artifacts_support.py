"""The trace-artifact test support against the session's real ``mlflow server``: SDK traces get
their folder where their ``mlflow.artifactLocation`` tag points, the artifact API sees and
deletes exactly those folders, and orphan folders made on disk are what the API lists."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.seed import (
    ARTIFACT_LOCATION_TAG,
    create_experiment,
    make_trace_id,
    make_traces,
    remaining_ids,
    remaining_traces,
    seed_traces_api,
)
from tests.support.trace_artifacts import (
    ARTIFACTS_API_PATH,
    TRACE_DATA_FILE,
    folder_size_bytes,
    folders_on_disk,
    give_every_trace_a_folder,
    log_sdk_traces_with_folders,
    make_orphan_folders,
    trace_artifact_path,
    trace_folder,
)

pytestmark = pytest.mark.integration

BASE_MS = 1_700_000_000_000
DELETE_TRACES_PATH = "/api/2.0/mlflow/traces/delete-traces"


def artifact_client(url: str) -> httpx.AsyncClient:
    """A client for the server's REST and artifact APIs."""
    return httpx.AsyncClient(base_url=url, timeout=60.0)


def data_file(artifacts_dir: Path, experiment_id: str, trace_id: str) -> Path:
    """Where a trace's `traces.json` is on disk."""
    return trace_folder(artifacts_dir, experiment_id, trace_id) / "artifacts" / TRACE_DATA_FILE


@pytest.mark.asyncio
async def test_sdk_traces_get_folders_where_their_tag_points_and_delete_removes_just_one(
    mlflow_url: str, artifacts_dir: Path
) -> None:
    """Three SDK traces (one ERROR) each get a folder at their ``mlflow.artifactLocation``; a
    DELETE of one folder through the artifact API removes exactly it, and not its trace."""
    name = f"art-sdk-{uuid.uuid4().hex[:12]}"
    experiment_id = await create_experiment(mlflow_url, name)

    logged = await log_sdk_traces_with_folders(mlflow_url, name, ok=2, error=1)

    trace_ids = {*logged["ok"], *logged["error"]}
    assert (len(logged["ok"]), len(logged["error"])) == (2, 1)
    assert folders_on_disk(artifacts_dir, experiment_id) == trace_ids
    assert all(data_file(artifacts_dir, experiment_id, t).is_file() for t in trace_ids)
    traces = await remaining_traces(mlflow_url, experiment_id)
    assert {t.trace_id: t.tags[ARTIFACT_LOCATION_TAG] for t in traces} == {
        t: f"mlflow-artifacts:/{experiment_id}/traces/{t}/artifacts" for t in trace_ids
    }

    (doomed,) = logged["error"]
    kept = {t: data_file(artifacts_dir, experiment_id, t).read_bytes() for t in logged["ok"]}
    async with artifact_client(mlflow_url) as client:
        response = await client.delete(
            f"{ARTIFACTS_API_PATH}/{trace_artifact_path(experiment_id, doomed)}"
        )

    assert response.status_code == 200, response.text
    assert folders_on_disk(artifacts_dir, experiment_id) == set(logged["ok"])
    assert {t: data_file(artifacts_dir, experiment_id, t).read_bytes() for t in kept} == kept
    assert await remaining_ids(mlflow_url, experiment_id) == trace_ids


@pytest.mark.asyncio
async def test_deleting_a_trace_leaves_its_folder_behind(
    mlflow_url: str, artifacts_dir: Path, experiment_id: str
) -> None:
    """The server's delete-traces removes rows only: the folder stays, an orphan from then on
    (why ``--with-artifacts`` and ``sweep-artifacts`` exist)."""
    traces = make_traces(2, start_ms=BASE_MS)
    await seed_traces_api(mlflow_url, experiment_id, traces)
    await give_every_trace_a_folder(mlflow_url, experiment_id, [t.trace_id for t in traces])

    async with artifact_client(mlflow_url) as client:
        response = await client.post(
            DELETE_TRACES_PATH,
            json={"experiment_id": experiment_id, "request_ids": [traces[0].trace_id]},
        )

    assert response.status_code == 200, response.text
    assert response.json() == {"traces_deleted": 1}
    assert await remaining_ids(mlflow_url, experiment_id) == {traces[1].trace_id}
    assert folders_on_disk(artifacts_dir, experiment_id) == {t.trace_id for t in traces}


@pytest.mark.asyncio
async def test_give_every_trace_a_folder_keeps_a_traces_json_already_there(
    mlflow_url: str, artifacts_dir: Path, experiment_id: str
) -> None:
    """A trace whose ``traces.json`` exists keeps it byte for byte; the others get the SDK's
    empty trace data, and a second call changes nothing."""
    traces = make_traces(3, start_ms=BASE_MS)
    await seed_traces_api(mlflow_url, experiment_id, traces)
    written, *bare = (t.trace_id for t in traces)
    own_data = b'{"spans": [{"name": "written by the SDK"}]}'
    async with artifact_client(mlflow_url) as client:
        response = await client.put(
            f"{ARTIFACTS_API_PATH}/{trace_artifact_path(experiment_id, written)}"
            f"/artifacts/{TRACE_DATA_FILE}",
            content=own_data,
        )
    assert response.status_code == 200, response.text

    for _ in range(2):
        await give_every_trace_a_folder(mlflow_url, experiment_id, [t.trace_id for t in traces])

    assert folders_on_disk(artifacts_dir, experiment_id) == {t.trace_id for t in traces}
    assert data_file(artifacts_dir, experiment_id, written).read_bytes() == own_data
    assert {data_file(artifacts_dir, experiment_id, t).read_bytes() for t in bare} == {
        b'{"spans": []}'
    }


@pytest.mark.asyncio
async def test_orphan_folders_are_what_the_artifact_api_lists(
    mlflow_url: str, artifacts_dir: Path, experiment_id: str
) -> None:
    """Folders made on disk for IDs without a trace show through the artifact API with the
    sizes ``make_orphan_folders`` reported, next to a real trace's folder."""
    (real,) = make_traces(1, start_ms=BASE_MS)
    await seed_traces_api(mlflow_url, experiment_id, [real])
    await give_every_trace_a_folder(mlflow_url, experiment_id, [real.trace_id])
    orphans = [make_trace_id(), make_trace_id()]

    sizes = make_orphan_folders(artifacts_dir, experiment_id, orphans)

    assert set(sizes) == set(orphans)
    assert all(size > 0 for size in sizes.values())
    assert sizes == {
        o: folder_size_bytes(trace_folder(artifacts_dir, experiment_id, o)) for o in orphans
    }
    assert folders_on_disk(artifacts_dir, experiment_id) == {real.trace_id, *orphans}
    assert await remaining_ids(mlflow_url, experiment_id) == {real.trace_id}
    async with artifact_client(mlflow_url) as client:
        folders = await client.get(ARTIFACTS_API_PATH, params={"path": f"{experiment_id}/traces"})
        files = {
            orphan: await client.get(
                ARTIFACTS_API_PATH,
                params={"path": f"{trace_artifact_path(experiment_id, orphan)}/artifacts"},
            )
            for orphan in orphans
        }
    assert folders.status_code == 200, folders.text
    assert {(f["path"], f["is_dir"]) for f in folders.json()["files"]} == {
        (t, True) for t in (real.trace_id, *orphans)
    }
    assert {
        orphan: [(f["path"], f["file_size"]) for f in answer.json()["files"]]
        for orphan, answer in files.items()
    } == {orphan: [(TRACE_DATA_FILE, size)] for orphan, size in sizes.items()}
    with pytest.raises(FileExistsError):
        make_orphan_folders(artifacts_dir, experiment_id, [real.trace_id])


@pytest.mark.asyncio
async def test_the_artifact_api_lists_a_missing_folder_as_empty_and_deletes_it_quietly(
    mlflow_url: str, artifacts_dir: Path, experiment_id: str
) -> None:
    """What the support (and a cleanup) relies on: listing a folder that does not exist answers
    200 with no files, and deleting it answers 200 too (idempotent, no 404)."""
    missing = trace_artifact_path(experiment_id, make_trace_id())
    async with artifact_client(mlflow_url) as client:
        listing = await client.get(ARTIFACTS_API_PATH, params={"path": missing})
        deletion = await client.delete(f"{ARTIFACTS_API_PATH}/{missing}")

    assert (listing.status_code, listing.json().get("files", [])) == (200, [])
    assert deletion.status_code == 200, deletion.text
    assert folders_on_disk(artifacts_dir, experiment_id) == set()
