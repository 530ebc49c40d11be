"""Where a trace's artifacts are, and whether the server's artifact API reaches them.

Pure: no I/O. MLflow keeps a trace's files (``traces.json``, an archived ``traces.pb``) in
``<experiment artifact location>/traces/<trace_id>/artifacts`` and says so in the trace's
``mlflow.artifactLocation`` tag. When the server serves artifacts (``mlflow server``'s
default), that location is ``mlflow-artifacts:/<experiment>/traces/<id>/artifacts``, and the
folder ``<experiment>/traces/<id>`` can be listed and removed through the server. Any other
location (``s3://``, ``gs://``, ``dbfs:``, a local path, another server) is out of our reach:
it is reported, never guessed at.

The one rule that matters for safety: a folder is only ever named from a trace ID that is a
single plain path segment, under the experiment's own ``traces`` folder, and only when the
trace's tag (if it has one) names that same folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._wire import Experiment, TraceSummary

__all__ = ["PROXY_SCHEME", "TraceFolders", "proxied_path", "trace_folders", "unreachable_note"]

PROXY_SCHEME = "mlflow-artifacts"
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def proxied_path(uri: str, *, server_netloc: str = "") -> str | None:
    """The path under the server's artifact root that ``uri`` names, or ``None`` when the
    server's artifact API does not reach it.

    Args:
        uri: An artifact URI (``mlflow-artifacts:/1/traces/...``).
        server_netloc: Our server's ``host:port``: a ``mlflow-artifacts://host:port/...`` URI
            is ours only when it names that server.
    """
    parsed = urlsplit(uri)
    if parsed.scheme != PROXY_SCHEME or parsed.query or parsed.fragment:
        return None
    if parsed.netloc and parsed.netloc != server_netloc:
        return None
    path = parsed.path.strip("/")
    segments = path.split("/") if path else []
    if any(segment in {"", ".", ".."} or "\\" in segment for segment in segments):
        return None
    return "/".join(segments)


def unreachable_note(location: str) -> str:
    """Why an experiment's trace artifacts are left, and where a user cleans them."""
    return (
        f"its artifacts are at {location!r}, which this server does not serve "
        "(mlflow server --serve-artifacts with mlflow-artifacts:/ locations); they were "
        f"left: delete {location.rstrip('/')}/traces/<trace_id>/ in that store yourself"
    )


@dataclass(frozen=True)
class TraceFolders:
    """One experiment's trace folders, as paths of the server's artifact API.

    Attributes:
        location: The experiment's artifact location, as the server gave it.
        traces_path: The folder that holds one folder per trace (``<exp>/traces``).
    """

    location: str
    traces_path: str

    def folder(self, trace_id: str) -> str | None:
        """The folder of ``trace_id``, or ``None`` if the ID is not one plain path segment."""
        if not _SAFE_SEGMENT.fullmatch(trace_id) or ".." in trace_id:
            return None
        return f"{self.traces_path}/{trace_id}"

    def folder_of(self, trace: TraceSummary, *, server_netloc: str = "") -> str | None:
        """The folder ``trace`` keeps its artifacts in, when it is ours to remove.

        ``None`` when the ID is not a plain segment, or when the trace's
        ``mlflow.artifactLocation`` tag names another place than this experiment's own
        folder for it (a tag set by hand, a moved store): that folder is not touched.
        """
        folder = self.folder(trace.trace_id)
        if folder is None:
            return None
        tag = trace.artifact_location
        if tag is None:
            return folder  # MLflow's own layout: the folder named by the ID
        if proxied_path(tag, server_netloc=server_netloc) != f"{folder}/artifacts":
            return None
        return folder


def trace_folders(experiment: Experiment, *, server_netloc: str = "") -> TraceFolders | str:
    """Where ``experiment``'s trace folders are through the server, or why they cannot be
    reached (a note for the report)."""
    location = experiment.artifact_location
    if not location:
        return "the server did not say where the experiment's artifacts are"
    path = proxied_path(location, server_netloc=server_netloc)
    if path is None:
        return unreachable_note(location)
    traces_path = f"{path}/traces" if path else "traces"
    return TraceFolders(location=location, traces_path=traces_path)
