"""The artifact side of TracesClient: folder listings and deletes, batchGetInfos, the
``--no-serve-artifacts`` 503 in the error table, and the local artifact-path check.

No network and no sleeping: every test talks to an ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from async_trace_delete import (
    ArtifactsUnavailableError,
    Experiment,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    ServerUnavailableError,
    UsageError,
)
from async_trace_delete._client import ARTIFACTS_PATH, TRACE_INFOS_PATH
from async_trace_delete._error_table import error_for
from async_trace_delete._outcomes import RetryDecision
from async_trace_delete._requests import check_artifact_path
from async_trace_delete._retry import classify
from async_trace_delete._wire import ArtifactFile
from tests.support.client_doubles import Recorder, answer, assert_no_httpx_leak, make_client

NO_SERVE_TEXT = (
    "Endpoint: /api/2.0/mlflow-artifacts/artifacts disabled due to the mlflow server running "
    "with `--no-serve-artifacts`. To enable artifacts server functionality, run `mlflow "
    "server` with `--serve-artifacts`"
)


def infos(*trace_ids: str) -> dict[str, Any]:
    return {
        "trace_infos": [
            {
                "trace_id": trace_id,
                "trace_location": {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": "1"},
                },
            }
            for trace_id in trace_ids
        ]
    }


# -- the error table -------------------------------------------------------------------------


def test_the_no_serve_artifacts_503_is_artifacts_unavailable() -> None:
    """mlflow's plain-text 503 of a server without ``--serve-artifacts``: certain, not retried."""
    error = error_for(503, None, None, {}, text=NO_SERVE_TEXT, endpoint=ARTIFACTS_PATH)
    assert type(error) is ArtifactsUnavailableError
    assert error.outcome_unknown is False
    assert error.status_code == 503
    assert error.endpoint == ARTIFACTS_PATH
    assert "--no-serve-artifacts" in error.message
    assert classify(error) is RetryDecision.FAIL


@pytest.mark.parametrize(
    ("error_code", "message", "text", "unknown"),
    [
        (None, None, "Service Unavailable", True),
        (None, None, "", True),
        ("TEMPORARILY_UNAVAILABLE", "database is locked", "", False),
    ],
    ids=["plain-text", "empty", "mlflow-json"],
)
def test_another_503_is_server_unavailable(
    error_code: str | None, message: str | None, text: str, unknown: bool
) -> None:
    """Any other 503 stays the transient ServerUnavailableError, retried."""
    error = error_for(503, error_code, message, {}, text=text)
    assert type(error) is ServerUnavailableError
    assert error.outcome_unknown is unknown
    assert classify(error) is RetryDecision.RETRY


def test_the_no_serve_text_under_another_status_is_not_artifacts_unavailable() -> None:
    """Only a 503 with that text means "artifacts not served": a 502 saying it is a gateway's."""
    error = error_for(502, None, None, {}, text=NO_SERVE_TEXT)
    assert type(error) is ServerError
    assert error.outcome_unknown is True


@pytest.mark.asyncio
async def test_the_client_maps_the_no_serve_503_of_a_listing() -> None:
    """list_artifacts against such a server raises ArtifactsUnavailableError after one request."""
    recorder = Recorder(lambda request: httpx.Response(503, text=NO_SERVE_TEXT))
    async with make_client(recorder) as client:
        with pytest.raises(ArtifactsUnavailableError) as caught:
            await client.list_artifacts("1/traces")
    assert len(recorder.requests) == 1
    assert caught.value.endpoint == ARTIFACTS_PATH
    assert caught.value.outcome_unknown is False
    assert_no_httpx_leak(caught.value)


# -- check_artifact_path ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/1/traces/tr-a",
        "1//tr-a",
        "1/traces/",
        "1/./tr-a",
        "1/../2",
        "..",
        ".",
        "1/traces/..",
        "1\\traces",
        None,
        1,
        b"1/traces",
    ],
)
def test_check_artifact_path_refuses(path: object) -> None:
    """Empty, absolute, dot, empty-segment and backslash paths, and non-strings, are refused."""
    with pytest.raises(UsageError):
        check_artifact_path(path)


@pytest.mark.parametrize("path", ["traces", "1/traces/tr-a", "1/traces/tr-a/artifacts", "a..b"])
def test_check_artifact_path_accepts_relative_paths(path: str) -> None:
    """A relative path of plain segments passes."""
    check_artifact_path(path)


@pytest.mark.parametrize("path", ["", "/1/traces", "1/../2", "1/traces/", "1//x"])
@pytest.mark.asyncio
async def test_delete_artifacts_refuses_a_bad_path_without_a_request(path: str) -> None:
    """A refused path raises UsageError and nothing is sent."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        with pytest.raises(UsageError):
            await client.delete_artifacts(path)
    assert recorder.requests == []


# -- list_artifacts --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_list_artifacts_sends_the_path_and_parses_the_entries() -> None:
    """GET artifacts?path=...; each entry's name is its last segment, sizes only for files."""
    payload = {
        "files": [
            {"path": "tr-a", "is_dir": True},
            {"path": "1/traces/tr-b", "is_dir": True},
            {"path": "traces.json", "is_dir": False, "file_size": 13},
            {"path": "traces.pb", "is_dir": False, "file_size": "2048"},
            {"path": "odd", "is_dir": "yes", "file_size": -1},
            {"path": "float", "file_size": 1.5},
        ]
    }
    recorder = Recorder(answer(200, payload))
    async with make_client(recorder) as client:
        entries = await client.list_artifacts("1/traces")
    assert entries == (
        ArtifactFile(name="tr-a", is_dir=True, size=None),
        ArtifactFile(name="tr-b", is_dir=True, size=None),
        ArtifactFile(name="traces.json", is_dir=False, size=13),
        ArtifactFile(name="traces.pb", is_dir=False, size=2048),
        ArtifactFile(name="odd", is_dir=False, size=None),
        ArtifactFile(name="float", is_dir=False, size=None),
    )
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == ARTIFACTS_PATH
    assert dict(request.url.params) == {"path": "1/traces"}


@pytest.mark.asyncio
async def test_an_empty_listing_is_no_entries() -> None:
    """A missing folder lists as ``{}``: no entries."""
    async with make_client(Recorder(answer(200, {}))) as client:
        assert await client.list_artifacts("1/traces") == ()


@pytest.mark.parametrize(
    "payload",
    [
        {"files": "tr-a"},
        {"files": ["tr-a"]},
        {"files": [{"is_dir": True}]},
        {"files": [{"path": 1}]},
    ],
    ids=["not-a-list", "not-an-object", "no-path", "path-not-text"],
)
@pytest.mark.asyncio
async def test_a_listing_of_another_shape_is_an_invalid_response(payload: Any) -> None:
    """An unexpected listing is an InvalidResponseError of the artifacts endpoint, certain."""
    async with make_client(Recorder(answer(200, payload))) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.list_artifacts("1/traces")
    assert caught.value.endpoint == ARTIFACTS_PATH
    assert caught.value.outcome_unknown is False


@pytest.mark.asyncio
async def test_a_refused_listing_is_permission_denied() -> None:
    """The basic-auth app's 403 on the artifact API is a PermissionDeniedError."""
    recorder = Recorder(lambda request: httpx.Response(403, text="Permission denied"))
    async with make_client(recorder) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            await client.list_artifacts("1/traces")
    assert caught.value.endpoint == ARTIFACTS_PATH


# -- delete_artifacts ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_delete_artifacts_sends_a_delete_of_the_quoted_path() -> None:
    """DELETE artifacts/<path>, each segment URL-quoted, slashes kept, no body."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        await client.delete_artifacts("1/traces/tr-a")
        await client.delete_artifacts("1/traces/tr:a b%", request_timeout=5.0)
    first, second = recorder.requests
    assert first.method == second.method == "DELETE"
    assert first.url.raw_path == f"{ARTIFACTS_PATH}/1/traces/tr-a".encode()
    assert second.url.raw_path == f"{ARTIFACTS_PATH}/1/traces/tr%3Aa%20b%25".encode()
    assert first.content == second.content == b""
    assert second.extensions["timeout"]["read"] == 5.0


@pytest.mark.asyncio
async def test_a_failed_folder_delete_maps_to_our_errors() -> None:
    """A 403 on a delete is PermissionDeniedError of the folder's endpoint."""
    recorder = Recorder(lambda request: httpx.Response(403, text="Permission denied"))
    async with make_client(recorder) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            await client.delete_artifacts("1/traces/tr-a")
    assert caught.value.endpoint == f"{ARTIFACTS_PATH}/1/traces/tr-a"
    assert_no_httpx_leak(caught.value)


# -- existing_trace_ids (batchGetInfos) ------------------------------------------------------


@pytest.mark.asyncio
async def test_existing_trace_ids_posts_the_ids_and_returns_those_found() -> None:
    """POST batchGetInfos ``{"trace_ids": [...]}``; the answer's IDs come back as a set."""
    recorder = Recorder(answer(200, infos("tr-a", "tr-c")))
    async with make_client(recorder) as client:
        found = await client.existing_trace_ids(["tr-a", "tr-b", "tr-c"])
    assert found == frozenset({"tr-a", "tr-c"})
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.path == TRACE_INFOS_PATH
    assert json.loads(request.content) == {"trace_ids": ["tr-a", "tr-b", "tr-c"]}


@pytest.mark.asyncio
async def test_existing_trace_ids_of_an_empty_answer_is_none() -> None:
    """``{}`` (no trace_infos): none of them exists."""
    async with make_client(Recorder(answer(200, {}))) as client:
        assert await client.existing_trace_ids(["tr-a"]) == frozenset()


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (infos("tr-a", "tr-z"), "not asked for"),
        ({"trace_infos": {"trace_id": "tr-a"}}, "unexpected shape"),
        ({"trace_infos": [{"id": "tr-a"}]}, "unexpected shape"),
        ({"trace_infos": ["tr-a"]}, "unexpected shape"),
    ],
    ids=["unasked-id", "not-a-list", "no-trace-id", "not-an-object"],
)
@pytest.mark.asyncio
async def test_an_unexpected_batch_get_infos_answer_is_invalid(payload: Any, text: str) -> None:
    """An answer naming an ID not asked for, or of another shape, is not trusted."""
    async with make_client(Recorder(answer(200, payload))) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.existing_trace_ids(["tr-a", "tr-b"])
    assert text in str(caught.value)
    assert caught.value.endpoint == TRACE_INFOS_PATH
    assert caught.value.outcome_unknown is False


@pytest.mark.asyncio
async def test_a_server_without_batch_get_infos_is_not_found() -> None:
    """Before MLflow 3.x the endpoint is missing: NotFoundError (the check falls back)."""
    missing = {"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}
    async with make_client(Recorder(answer(404, missing))) as client:
        with pytest.raises(NotFoundError):
            await client.existing_trace_ids(["tr-a"])


# -- where the artifacts are, as answers say -------------------------------------------------


@pytest.mark.parametrize(
    ("location", "parsed"),
    [("mlflow-artifacts:/5", "mlflow-artifacts:/5"), (None, None), (5, None)],
)
@pytest.mark.asyncio
async def test_get_experiment_reads_the_artifact_location(
    location: Any, parsed: str | None
) -> None:
    """The experiment's ``artifact_location`` is kept when it is text."""
    data: dict[str, Any] = {"experiment_id": "5", "name": "e", "lifecycle_stage": "active"}
    if location is not None:
        data["artifact_location"] = location
    async with make_client(Recorder(answer(200, {"experiment": data}))) as client:
        experiment = await client.get_experiment("5")
    assert experiment == Experiment(
        experiment_id="5", name="e", lifecycle_stage="active", artifact_location=parsed
    )


@pytest.mark.parametrize(
    ("tags", "parsed"),
    [
        (
            {"mlflow.artifactLocation": "mlflow-artifacts:/1/traces/tr-a/artifacts"},
            "mlflow-artifacts:/1/traces/tr-a/artifacts",
        ),
        ({"mlflow.traceName": "t"}, None),
        ({"mlflow.artifactLocation": 3}, None),
        (None, None),
    ],
    ids=["tag", "no-tag", "not-text", "no-tags"],
)
@pytest.mark.asyncio
async def test_search_reads_each_traces_artifact_location_tag(
    tags: dict[str, Any] | None, parsed: str | None
) -> None:
    """A searched trace keeps its ``mlflow.artifactLocation`` tag when it is text."""
    item: dict[str, Any] = {
        "trace_id": "tr-a",
        "request_time": "2025-01-01T00:00:00Z",
        "state": "OK",
    }
    if tags is not None:
        item["tags"] = tags
    async with make_client(Recorder(answer(200, {"traces": [item]}))) as client:
        page = await client.search_traces("1")
    (trace,) = page.traces
    assert trace.artifact_location == parsed
