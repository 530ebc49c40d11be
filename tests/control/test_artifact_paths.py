"""Where a trace's artifacts are, and whether the server's artifact API reaches them (pure).

A folder is only ever named from a trace ID that is one plain path segment, under the
experiment's own ``traces`` folder, and only when the trace's tag (if any) names that folder.
"""

from __future__ import annotations

import pytest

from async_trace_delete import Experiment, TraceSummary
from async_trace_delete._artifact_paths import (
    TraceFolders,
    proxied_path,
    trace_folders,
    unreachable_note,
)

NETLOC = "mlflow.example:5000"
FOLDERS = TraceFolders(location="mlflow-artifacts:/1", traces_path="1/traces")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mlflow-artifacts:/1/x", "1/x"),
        ("mlflow-artifacts:/1/traces/tr-a/artifacts", "1/traces/tr-a/artifacts"),
        ("mlflow-artifacts:/1/traces/tr-a/artifacts/", "1/traces/tr-a/artifacts"),
        ("mlflow-artifacts:///1", "1"),
        ("mlflow-artifacts:/", ""),
        ("mlflow-artifacts:", ""),
        (f"mlflow-artifacts://{NETLOC}/1", "1"),
        ("mlflow-artifacts://other.host:5000/1", None),
        ("mlflow-artifacts://mlflow.example:5001/1", None),
        ("s3://bucket/x", None),
        ("gs://bucket/1", None),
        ("dbfs:/databricks/mlflow/1", None),
        ("file:///tmp/mlruns/1", None),
        ("/tmp/mlruns/1", None),
        ("mlruns/1", None),
        ("MLFLOW-ARTIFACTS:/1", "1"),  # schemes are case-insensitive (urlsplit lowers them)
        ("mlflow-artifacts:/1/../2", None),
        ("mlflow-artifacts:/..", None),
        ("mlflow-artifacts:/1/./x", None),
        ("mlflow-artifacts:/1//x", None),
        ("mlflow-artifacts:/1/a\\b", None),
        ("mlflow-artifacts:/1/x?versionId=3", None),
        ("mlflow-artifacts:/1/x?", "1/x"),  # an empty query is no query
        ("mlflow-artifacts:/1/x#frag", None),
    ],
)
def test_proxied_path(uri: str, expected: str | None) -> None:
    """Only a ``mlflow-artifacts:`` URI of our server, without dot, empty or backslash
    segments and without query or fragment, names a path under the server's root."""
    assert proxied_path(uri, server_netloc=NETLOC) == expected


def test_a_host_in_the_uri_is_never_ours_without_our_netloc() -> None:
    """``mlflow-artifacts://host:port/1`` is out of reach when our netloc is not known."""
    assert proxied_path(f"mlflow-artifacts://{NETLOC}/1") is None
    assert proxied_path("mlflow-artifacts:/1") == "1"


@pytest.mark.parametrize(
    "trace_id",
    [
        "",
        ".",
        "..",
        "..x",
        "tr-1..2",
        ".hidden",
        "-tr",
        "_tr",
        "a/b",
        "../1",
        "a\\b",
        "a b",
        "tr-é",
        "tr\n",
        "tr-a/",
    ],
)
def test_a_trace_id_that_is_not_one_plain_segment_names_no_folder(trace_id: str) -> None:
    """Unsafe IDs are refused, so a folder outside ``<exp>/traces/<id>`` is never named."""
    assert FOLDERS.folder(trace_id) is None


@pytest.mark.parametrize("trace_id", ["tr-0123abcd", "a", "A.b", "tr:1", "tr_1-x.y"])
def test_a_plain_trace_id_names_its_folder(trace_id: str) -> None:
    """A plain segment names ``<traces_path>/<id>``."""
    assert FOLDERS.folder(trace_id) == f"1/traces/{trace_id}"


def summary(trace_id: str, tag: str | None) -> TraceSummary:
    return TraceSummary(
        trace_id=trace_id, timestamp_ms=1, state="OK", experiment_id="1", artifact_location=tag
    )


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (None, "1/traces/tr-a"),
        ("mlflow-artifacts:/1/traces/tr-a/artifacts", "1/traces/tr-a"),
        ("mlflow-artifacts:///1/traces/tr-a/artifacts/", "1/traces/tr-a"),
        (f"mlflow-artifacts://{NETLOC}/1/traces/tr-a/artifacts", "1/traces/tr-a"),
        ("mlflow-artifacts://elsewhere:80/1/traces/tr-a/artifacts", None),
        ("mlflow-artifacts:/1/traces/tr-b/artifacts", None),
        ("mlflow-artifacts:/2/traces/tr-a/artifacts", None),
        ("mlflow-artifacts:/1/traces/tr-a", None),
        ("mlflow-artifacts:/1/traces/tr-a/artifacts/../../tr-b/artifacts", None),
        ("s3://bucket/1/traces/tr-a/artifacts", None),
        ("", None),
    ],
)
def test_folder_of_follows_the_trace_tag(tag: str | None, expected: str | None) -> None:
    """Without a tag, MLflow's layout; with one, only when it names that same folder."""
    assert FOLDERS.folder_of(summary("tr-a", tag), server_netloc=NETLOC) == expected


def test_folder_of_refuses_an_unsafe_id_even_with_a_matching_tag() -> None:
    """An unsafe ID names no folder, whatever its tag says."""
    trace = summary("..", "mlflow-artifacts:/1/traces/../artifacts")
    assert FOLDERS.folder_of(trace) is None


def experiment(location: str | None) -> Experiment:
    return Experiment(
        experiment_id="1", name="e", lifecycle_stage="active", artifact_location=location
    )


@pytest.mark.parametrize(
    ("location", "traces_path"),
    [
        ("mlflow-artifacts:/1", "1/traces"),
        ("mlflow-artifacts:/1/", "1/traces"),
        ("mlflow-artifacts:/team/exp-1", "team/exp-1/traces"),
        ("mlflow-artifacts:/", "traces"),
        (f"mlflow-artifacts://{NETLOC}/7", "7/traces"),
    ],
)
def test_trace_folders_of_a_served_location(location: str, traces_path: str) -> None:
    """A served location gives the folder of the trace folders, the root one included."""
    assert trace_folders(experiment(location), server_netloc=NETLOC) == TraceFolders(
        location=location, traces_path=traces_path
    )


@pytest.mark.parametrize("location", [None, ""])
def test_trace_folders_without_a_location_is_a_note(location: str | None) -> None:
    """No location: a note saying the server did not say where the artifacts are."""
    note = trace_folders(experiment(location))
    assert note == "the server did not say where the experiment's artifacts are"


@pytest.mark.parametrize(
    "location",
    ["s3://bucket/x", "s3://bucket/x/", "/srv/mlruns/1", "mlflow-artifacts://elsewhere/1"],
)
def test_trace_folders_out_of_reach_is_the_unreachable_note(location: str) -> None:
    """Another store: the note names the location and what to delete there."""
    note = trace_folders(experiment(location), server_netloc=NETLOC)
    assert note == unreachable_note(location)
    assert isinstance(note, str)
    assert repr(location) in note
    assert f"delete {location.rstrip('/')}/traces/<trace_id>/" in note
