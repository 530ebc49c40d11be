"""Trace artifact folders on a test server: give traces one, make orphan ones, see what is on disk.

A server started by `tests.support.mlflow_server` proxies artifacts like a default
`mlflow server`: a trace's folder is `<exp>/traces/<trace_id>` under the server's
`artifacts_dir`, holding `artifacts/traces.json`. The SDK writes that file only sometimes (span
logging to the database races the upload) while every trace logged before MLflow 3.6 has one;
`give_every_trace_a_folder` makes every trace look like such a pre-3.6 trace, so tests of
`--with-artifacts` and `sweep-artifacts` do not depend on the race.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import anyio
import anyio.to_thread
import httpx

from tests.support.sdk_traces import log_sdk_traces
from tests.support.seed import SeedError

__all__ = [
    "ARTIFACTS_API_PATH",
    "TRACE_DATA_FILE",
    "folder_size_bytes",
    "folders_on_disk",
    "give_every_trace_a_folder",
    "log_sdk_traces_with_folders",
    "make_orphan_folders",
    "trace_artifact_path",
    "trace_folder",
]

ARTIFACTS_API_PATH = "/api/2.0/mlflow-artifacts/artifacts"
GET_EXPERIMENT_BY_NAME_PATH = "/api/2.0/mlflow/experiments/get-by-name"
TRACES_FOLDER = "traces"
TRACE_ARTIFACTS_FOLDER = "artifacts"
TRACE_DATA_FILE = "traces.json"
EMPTY_TRACE_DATA = b'{"spans": []}'  # what the SDK uploads for a trace without spans
UPLOAD_CONCURRENCY = 4
REQUEST_TIMEOUT_SECONDS = 60.0


def trace_folder(artifacts_dir: Path, experiment_id: str, trace_id: str) -> Path:
    """Return the on-disk folder of a trace: `<artifacts_dir>/<exp>/traces/<trace_id>`."""
    return artifacts_dir / experiment_id / TRACES_FOLDER / trace_id


def trace_artifact_path(experiment_id: str, trace_id: str) -> str:
    """Return a trace's folder as an artifact API path: `<exp>/traces/<trace_id>`."""
    return f"{experiment_id}/{TRACES_FOLDER}/{trace_id}"


def folders_on_disk(artifacts_dir: Path, experiment_id: str) -> set[str]:
    """Return the IDs of the experiment's traces that have a folder on disk now."""
    traces_dir = artifacts_dir / experiment_id / TRACES_FOLDER
    if not traces_dir.is_dir():
        return set()
    return {entry.name for entry in traces_dir.iterdir() if entry.is_dir()}


def folder_size_bytes(folder: Path) -> int:
    """Return the total size of the files under `folder` (0 when it does not exist)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


async def give_every_trace_a_folder(
    url: str, experiment_id: str, trace_ids: Iterable[str], *, concurrency: int = UPLOAD_CONCURRENCY
) -> None:
    """Upload `traces.json` through the artifact API for each trace that has none yet.

    A `traces.json` already there (the SDK's) is left as it is. The artifact API does not know
    about traces, so an ID without a trace gets a folder too.

    Raises:
        SeedError: A list or upload request did not answer 200.
    """
    pending = iter(list(trace_ids))

    async def upload_until_done(client: httpx.AsyncClient) -> None:
        # Workers share one iterator: next() never awaits, so no trace is taken twice.
        for trace_id in pending:
            data_dir = f"{trace_artifact_path(experiment_id, trace_id)}/{TRACE_ARTIFACTS_FOLDER}"
            listing = await client.get(ARTIFACTS_API_PATH, params={"path": data_dir})
            _raise_for_status(listing, f"list artifacts of trace {trace_id}")
            if any(f.get("path") == TRACE_DATA_FILE for f in listing.json().get("files", [])):
                continue
            upload = await client.put(
                f"{ARTIFACTS_API_PATH}/{data_dir}/{TRACE_DATA_FILE}", content=EMPTY_TRACE_DATA
            )
            _raise_for_status(upload, f"upload {TRACE_DATA_FILE} of trace {trace_id}")

    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        try:
            async with anyio.create_task_group() as task_group:
                for _ in range(concurrency):
                    task_group.start_soon(upload_until_done, client)
        except ExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


def make_orphan_folders(
    artifacts_dir: Path, experiment_id: str, trace_ids: Sequence[str]
) -> dict[str, int]:
    """Create a trace folder holding a `traces.json` on disk for each ID, as if its trace was
    deleted without its artifacts (what `sweep-artifacts` cleans up).

    Pass IDs that have no trace (`tests.support.seed.make_trace_id`).

    Returns:
        Each folder's size in bytes, by trace ID.

    Raises:
        FileExistsError: One of the IDs has a folder already; it is left untouched.
    """
    sizes: dict[str, int] = {}
    for trace_id in trace_ids:
        folder = trace_folder(artifacts_dir, experiment_id, trace_id)
        folder.mkdir(parents=True)
        data_dir = folder / TRACE_ARTIFACTS_FOLDER
        data_dir.mkdir()
        (data_dir / TRACE_DATA_FILE).write_text(
            json.dumps({"spans": [], "orphan_of": trace_id}), encoding="utf-8"
        )
        sizes[trace_id] = folder_size_bytes(folder)
    return sizes


async def log_sdk_traces_with_folders(
    url: str, experiment_name: str, *, ok: int, error: int
) -> dict[str, list[str]]:
    """Log traces with the real SDK (`log_sdk_traces`), then give each one a folder.

    The experiment is found by name, and created by the SDK when missing.

    Returns:
        The trace IDs the SDK logged, by outcome (`"ok"`, `"error"`).

    Raises:
        SeedError: The experiment lookup or an artifact request did not answer 200.
    """
    logged = await anyio.to_thread.run_sync(
        functools.partial(log_sdk_traces, url, experiment_name, ok=ok, error=error)
    )
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        response = await client.get(
            GET_EXPERIMENT_BY_NAME_PATH, params={"experiment_name": experiment_name}
        )
    _raise_for_status(response, f"get experiment {experiment_name!r}")
    experiment_id: str = response.json()["experiment"]["experiment_id"]
    await give_every_trace_a_folder(url, experiment_id, [*logged["ok"], *logged["error"]])
    return logged


def _raise_for_status(response: httpx.Response, action: str) -> None:
    if response.status_code != 200:
        raise SeedError(action, response)
