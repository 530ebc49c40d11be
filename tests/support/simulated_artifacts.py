"""The artifact side of the simulated MLflow server: trace folders and the proxied API.

:class:`SimulatedArtifacts` answers what ``mlflow server --serve-artifacts`` answers on
``/api/2.0/mlflow-artifacts/artifacts`` (list a folder, delete a path recursively, a missing
path listing as empty and deleting as 200) over an in-memory tree of files, and lets a test
script faults on those calls. :class:`~tests.support.simulated_server.SimulatedServer` routes
the artifact paths here when it has one (``SimulatedServer(artifacts=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

import httpx

__all__ = ["ARTIFACTS_PATH", "ArtifactCall", "SimulatedArtifacts"]

ARTIFACTS_PATH = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass
class ArtifactCall:
    """One artifact request as the server received it."""

    method: str
    path: str


ArtifactRule = Callable[[ArtifactCall], httpx.Response | None]
"""Answers an artifact call instead of the store (``None``: let the store answer)."""


@dataclass
class SimulatedArtifacts:
    """Files by path (``"1/traces/tr-x/artifacts/traces.json"`` -> size in bytes).

    Attributes:
        files: The store's files.
        calls: Every artifact request, in order.
        rule: Answers (faults) before the store does.
    """

    files: dict[str, int] = field(default_factory=dict)
    calls: list[ArtifactCall] = field(default_factory=list)
    rule: ArtifactRule | None = None

    def add_trace_folders(
        self, experiment_id: str, trace_ids: Iterable[str], size: int = 13
    ) -> None:
        """Give each trace the ``traces.json`` the SDK uploads."""
        for trace_id in trace_ids:
            self.files[f"{experiment_id}/traces/{trace_id}/artifacts/traces.json"] = size

    def trace_folders(self, experiment_id: str) -> set[str]:
        """The trace IDs with a folder in the experiment now."""
        prefix = f"{experiment_id}/traces/"
        return {
            path[len(prefix) :].split("/", 1)[0] for path in self.files if path.startswith(prefix)
        }

    def deletes(self) -> list[str]:
        """The paths of the delete calls received, in order."""
        return [call.path for call in self.calls if call.method == "DELETE"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one artifact request."""
        if request.method == "GET":
            call = ArtifactCall("GET", request.url.params.get("path", ""))
        else:
            call = ArtifactCall(
                request.method, unquote(request.url.path[len(ARTIFACTS_PATH) + 1 :])
            )
        self.calls.append(call)
        if self.rule is not None and (answer := self.rule(call)) is not None:
            return answer
        if call.method == "GET":
            return httpx.Response(200, json=self._list(call.path))
        if call.method == "DELETE":
            if ".." in call.path.split("/"):
                return httpx.Response(404, text="not found")
            prefix = call.path.rstrip("/") + "/"
            for path in [p for p in self.files if p == call.path or p.startswith(prefix)]:
                del self.files[path]
            return httpx.Response(200, json={})
        return httpx.Response(405, text="method not allowed")

    def _list(self, folder: str) -> dict[str, object]:
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries: dict[str, tuple[bool, int]] = {}
        for path, size in self.files.items():
            if not path.startswith(prefix):
                continue
            head, _, rest = path[len(prefix) :].partition("/")
            entries[head] = (True, 0) if rest else (False, size)
        files: list[dict[str, object]] = []
        for name, (is_dir, size) in sorted(entries.items()):
            entry: dict[str, object] = {"path": name, "is_dir": is_dir}
            if not is_dir:
                entry["file_size"] = size
            files.append(entry)
        return {"files": files} if files else {}
