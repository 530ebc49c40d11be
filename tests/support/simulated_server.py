"""A simulated MLflow tracking server for the engine's unit tests: an httpx MockTransport handler.

It keeps each experiment's traces in memory and answers the endpoints the engine uses with
MLflow's semantics (mlflow 3.17.2, see /work/shared/MLFLOW_API.md):

* ``POST /api/2.0/mlflow/traces/delete-traces`` — a cutoff (``timestamp_ms <= cutoff``, oldest
  first by ``(timestamp_ms, request_id)``, at most ``max_traces``) or ``request_ids``; unknown
  experiments and IDs answer 200 with 0; MLflow's 400s for bad parameter combinations; an
  optional SQLite-like "too many SQL variables" 503 above ``max_sql_variables`` rows;
* ``POST /api/3.0/mlflow/traces/search`` — v3 shape (each trace names its experiment in
  ``trace_location``, as MLflow 3 does), offset page tokens, ``order_by``
  ``timestamp_ms ASC|DESC`` and AND-joined filters on ``timestamp_ms``, ``status`` and
  ``request_id IN (...)``; :attr:`SimulatedServer.search_rule` can rewrite a page (a proxy's
  or a cache's wrong answer);
* ``GET /api/2.0/mlflow/experiments/get`` and ``/get-by-name``;
* ``POST /api/2.0/mlflow/experiments/search`` — ``name LIKE``/``=`` and tag clauses,
  ``view_type``, offset page tokens; :attr:`SimulatedServer.experiment_search_rule` can
  rewrite a page (an answer that is not MLflow's).

Each delete advances a :class:`FakeClock` by a :class:`LatencyModel` ``a + b*n + c*n**2``
(``n`` = traces deleted), so the engine measures a latency without anything sleeping. Faults
can be scripted per delete call (:meth:`SimulatedServer.script`) or by a rule
(:attr:`SimulatedServer.fault_rule`): an error answer, a transport error (optionally after the
delete was carried out: an ambiguous call), or a hold until an event is set.

Every request is logged in :attr:`SimulatedServer.calls` (kind, start and end on the fake
clock, how many other calls were in flight when it arrived); with
:attr:`SimulatedServer.in_flight_turns` each request lets other tasks run while it is in
flight, so calls the engine makes at once really overlap.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import anyio
import anyio.lowlevel
import httpx

from tests.support.seed import format_request_time
from tests.support.simulated_artifacts import ARTIFACTS_PATH, SimulatedArtifacts

__all__ = [
    "BASE_MS",
    "SIM_URL",
    "CallRecord",
    "DeleteCall",
    "FakeClock",
    "Fault",
    "LatencyModel",
    "SimTrace",
    "SimulatedServer",
    "sim_traces",
]

SIM_URL = "http://mlflow.sim:5000"
BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MAX_SEARCH_RESULTS = 500
TOO_MANY_VARIABLES = "(sqlite3.OperationalError) too many SQL variables"

_DELETE = "/api/2.0/mlflow/traces/delete-traces"
_DELETE_V3 = "/api/3.0/mlflow/traces/delete-traces"
_SEARCH = "/api/3.0/mlflow/traces/search"
_GET = "/api/2.0/mlflow/experiments/get"
_GET_BY_NAME = "/api/2.0/mlflow/experiments/get-by-name"
_TRACE_INFOS = "/api/3.0/mlflow/traces/batchGetInfos"
_SEARCH_EXPERIMENTS = "/api/2.0/mlflow/experiments/search"

_CLAUSE = re.compile(
    r"^\s*(?P<field>timestamp_ms|status|request_id)\s*(?P<op><=|>=|<|>|!=|=|IN)\s*(?P<value>.+?)\s*$",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


class FakeClock:
    """A monotonic clock that only moves when told to; its ``sleep`` records and advances it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """The current fake time in seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the delay, advance the clock by it, and yield to other tasks once."""
        self.sleeps.append(seconds)
        if seconds > 0:
            self.now += seconds
        await anyio.lowlevel.checkpoint()


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Seconds a delete of ``n`` traces takes: ``fixed + per_trace*n + quadratic*n**2``."""

    fixed: float = 0.0
    per_trace: float = 0.0
    quadratic: float = 0.0

    def __call__(self, deleted: int) -> float:
        """The latency of a delete that removed ``deleted`` traces."""
        return self.fixed + self.per_trace * deleted + self.quadratic * deleted * deleted

    def size_for(self, latency: float) -> float:
        """The batch size whose delete takes ``latency`` seconds (the controller's target)."""
        if self.quadratic == 0:
            return (latency - self.fixed) / self.per_trace
        a, b, c = self.quadratic, self.per_trace, self.fixed - latency
        return float((-b + (b * b - 4 * a * c) ** 0.5) / (2 * a))


class SimTrace(NamedTuple):
    """One stored trace, ordered as MLflow deletes them: ``(timestamp_ms, trace_id)``."""

    timestamp_ms: int
    trace_id: str
    state: str = "OK"


def sim_traces(
    count: int,
    *,
    start_ms: int = BASE_MS,
    step_ms: int = 1,
    state: str = "OK",
    error_every: int | None = None,
    tag: int = 0,
) -> list[SimTrace]:
    """Build ``count`` traces with timestamps ``start_ms + i*step_ms`` and deterministic IDs.

    Args:
        count: How many.
        start_ms: Timestamp of the first.
        step_ms: Gap between consecutive timestamps.
        state: State of each trace, except every ``error_every``-th which is ``ERROR``.
        error_every: See ``state``.
        tag: Distinguishes the IDs of separate calls (part of the ID).
    """
    prefix = f"tr-{tag:08x}"
    ids = [prefix + "%024x" % index for index in range(count)]  # noqa: UP031 - fastest for 100k+
    states = [
        "ERROR" if error_every and (index + 1) % error_every == 0 else state
        for index in range(count)
    ]
    timestamps = (
        range(start_ms, start_ms + count * step_ms, step_ms) if step_ms else [start_ms] * count
    )
    # tuple.__new__ through map stays in C: NamedTuple's own __new__ is slow for 100k+ traces.
    return list(map(partial(tuple.__new__, SimTrace), zip(timestamps, ids, states, strict=True)))


@dataclass
class Fault:
    """What to do to one delete call instead of (or besides) answering it normally.

    Attributes:
        status: Answer this HTTP status with an MLflow JSON error (or ``text``); ``None``
            answers normally (after ``hold``), unless ``raise_error`` is set.
        message: The error's ``message``.
        error_code: The error's ``error_code``.
        text: A plain-text body instead of JSON (basic auth's 401/403 are not JSON).
        headers: Response headers (e.g. ``Retry-After``).
        apply_first: Carry the delete out before failing (the answer is lost: ambiguous).
        raise_error: Raise this httpx transport error instead of answering.
        hold: Wait for this event before answering (forever, until cancelled, if never set).
        arrived: Set when the call reaches the server.
    """

    status: int | None = None
    message: str = "simulated failure"
    error_code: str = "TEMPORARILY_UNAVAILABLE"
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    apply_first: bool = False
    raise_error: type[httpx.TransportError] | None = None
    hold: anyio.Event | None = None
    arrived: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class DeleteCall:
    """One delete request as the server received it."""

    index: int
    experiment_id: str
    max_timestamp_millis: int | None
    max_traces: int | None
    request_ids: list[str] | None
    started_at: float
    fault: Fault | None = None
    deleted: int | None = None  # what the server actually removed (None: nothing was done)

    @property
    def requested(self) -> int:
        """``max_traces`` or the number of IDs (0 for an uncapped cutoff)."""
        if self.request_ids is not None:
            return len(self.request_ids)
        return self.max_traces or 0


@dataclass
class CallRecord:
    """One request of any kind as the server received it, for checking overlap and pacing.

    Attributes:
        kind: ``"delete"``, ``"search"``, ``"get"`` (an experiment lookup) or ``"other"``.
        started_at: The fake clock when it arrived.
        concurrent: How many other requests were in flight when it arrived.
        ended_at: The fake clock when it was answered (``None`` while in flight).
        filter_string: The filter of a search (``None`` for other kinds, or no filter).
    """

    kind: str
    started_at: float
    concurrent: int
    ended_at: float | None = None
    filter_string: str | None = None


SearchRule = Callable[[str, list[tuple[str, SimTrace]]], list[tuple[str, SimTrace]]]
"""Rewrites one search page: gets the experiment searched and the page as ``(experiment_id,
trace)`` pairs, returns the pairs to answer."""

ExperimentSearchRule = Callable[[str | None, str, list[str]], list[str]]
"""Rewrites one ``experiments/search`` page: gets the filter (``None``: none), the view type
and the IDs of the experiments on the page, returns the IDs of the experiments to answer
(any known experiment, as it is: its lifecycle stage and tags)."""


@dataclass
class _Experiment:
    experiment_id: str
    name: str
    traces: list[SimTrace] = field(default_factory=list)
    deleted: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    lifecycle_stage: str = "active"

    def answer(self, artifact_location: str) -> dict[str, Any]:
        """The experiment as MLflow's JSON answers it."""
        payload: dict[str, Any] = {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "lifecycle_stage": self.lifecycle_stage,
            "artifact_location": artifact_location,
        }
        if self.tags:
            payload["tags"] = [{"key": k, "value": v} for k, v in self.tags.items()]
        return payload


class SimulatedServer:
    """An in-memory MLflow server answering through ``httpx.MockTransport``.

    Args:
        clock: The fake clock deletes advance (share it with the engine).
        latency: Seconds one delete takes as a function of the traces it removed.
        max_sql_variables: Above this many selected rows a delete fails as SQLite does
            (503 "too many SQL variables"); ``None`` never fails.
    """

    def __init__(
        self,
        clock: FakeClock | None = None,
        *,
        latency: LatencyModel | None = None,
        max_sql_variables: int | None = None,
        artifacts: SimulatedArtifacts | None = None,
    ) -> None:
        self.clock = clock if clock is not None else FakeClock()
        self.latency = latency if latency is not None else LatencyModel()
        self.max_sql_variables = max_sql_variables
        self.deletes: list[DeleteCall] = []
        self.searches = 0
        self.fault_rule: Callable[[DeleteCall], Fault | None] | None = None
        self.calls: list[CallRecord] = []
        self.in_flight_turns = 0  # times each request yields to other tasks while in flight
        self.search_rule: SearchRule | None = None
        self._in_flight = 0
        self._scripted: deque[Fault | None] = deque()
        self._experiments: dict[str, _Experiment] = {}
        self.artifacts = artifacts
        self.artifact_locations: dict[str, str] = {}  # experiment ID -> its artifact location
        self.tag_rule: Callable[[str, SimTrace], str | None] | None = None  # artifactLocation
        self.trace_infos_rule: Callable[[list[str]], list[str]] | None = None
        self.experiment_searches = 0
        self.experiment_search_rule: ExperimentSearchRule | None = None

    # -- set-up and read-back --------------------------------------------------------------

    @property
    def transport(self) -> httpx.MockTransport:
        """A transport that routes every request to this server."""
        return httpx.MockTransport(self.handle)

    def add_experiment(
        self,
        name: str,
        traces: Iterable[SimTrace] = (),
        *,
        tags: Mapping[str, str] | None = None,
        deleted: bool = False,
    ) -> str:
        """Create an experiment holding ``traces`` (with ``tags``; soft-deleted when
        ``deleted``, as ``mlflow experiments delete`` leaves one); return its ID."""
        experiment_id = str(len(self._experiments) + 1)
        self._experiments[experiment_id] = _Experiment(
            experiment_id,
            name,
            sorted(traces),
            tags=dict(tags or {}),
            lifecycle_stage="deleted" if deleted else "active",
        )
        return experiment_id

    def add_traces(self, experiment_id: str, traces: Iterable[SimTrace]) -> None:
        """Add traces to an existing experiment."""
        experiment = self._experiments[experiment_id]
        experiment.traces = sorted([*experiment.traces, *traces])

    def remaining(self, experiment_id: str) -> list[SimTrace]:
        """The experiment's traces, oldest first."""
        return list(self._experiments[experiment_id].traces)

    def deleted(self, experiment_id: str) -> int:
        """How many traces the experiment lost to deletes."""
        return self._experiments[experiment_id].deleted

    def deletes_for(self, experiment_id: str) -> list[DeleteCall]:
        """The delete calls received for one experiment, in order."""
        return [call for call in self.deletes if call.experiment_id == experiment_id]

    def script(self, *faults: Fault | None) -> None:
        """Apply these to the next delete calls, in order (``None``: answer normally)."""
        self._scripted.extend(faults)

    # -- the handler -----------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as MLflow would (logged in :attr:`calls`)."""
        record = CallRecord(_kind(request), self.clock(), self._in_flight)
        self.calls.append(record)
        self._in_flight += 1
        try:
            for _ in range(self.in_flight_turns):
                await anyio.lowlevel.checkpoint()
            return await self._route(request, record)
        finally:
            self._in_flight -= 1
            record.ended_at = self.clock()

    async def _route(self, request: httpx.Request, record: CallRecord) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path in (_DELETE, _DELETE_V3):
            return await self._delete(request)
        if request.method == "POST" and path == _SEARCH:
            body = _json(request)
            record.filter_string = body.get("filter")
            return self._search(body)
        if request.method == "GET" and path == _GET:
            return self._get_experiment(request.url.params.get("experiment_id", ""))
        if request.method == "GET" and path == _GET_BY_NAME:
            return self._get_by_name(request.url.params.get("experiment_name", ""))
        if request.method == "POST" and path == _SEARCH_EXPERIMENTS:
            return self._search_experiments(_json(request))
        if request.method == "POST" and path == _TRACE_INFOS:
            return self._trace_infos(_json(request).get("trace_ids", []))
        if self.artifacts is not None and path.startswith(ARTIFACTS_PATH):
            return self.artifacts.handle(request)
        return _error(404, "ENDPOINT_NOT_FOUND", f"no such endpoint: {request.method} {path}")

    async def _delete(self, request: httpx.Request) -> httpx.Response:
        body = _json(request)
        experiment_id = body.get("experiment_id")
        cutoff = body.get("max_timestamp_millis")
        max_traces = body.get("max_traces")
        request_ids = body.get("request_ids")
        if not isinstance(experiment_id, str) or not experiment_id.isdigit():
            return _invalid(f"Invalid experiment_id: {experiment_id!r}")
        if (cutoff is None) == (request_ids is None):
            return _invalid("Either `max_timestamp_millis` or `trace_ids` must be specified.")
        if max_traces is not None and (request_ids is not None or max_traces <= 0):
            return _invalid("`max_traces` must be a positive integer used with a cutoff.")
        call = DeleteCall(
            index=len(self.deletes),
            experiment_id=experiment_id,
            max_timestamp_millis=cutoff,
            max_traces=max_traces,
            request_ids=list(request_ids) if request_ids is not None else None,
            started_at=self.clock(),
        )
        self.deletes.append(call)
        call.fault = self._scripted.popleft() if self._scripted else None
        if call.fault is None and self.fault_rule is not None:
            call.fault = self.fault_rule(call)
        fault = call.fault
        if fault is None:
            return self._carry_out(call)
        fault.arrived.set()
        answer: httpx.Response | None = None
        if fault.apply_first:
            answer = self._carry_out(call)
        if fault.hold is not None:
            await fault.hold.wait()
        if fault.raise_error is not None:
            raise fault.raise_error("simulated transport failure", request=request)
        if fault.status is not None:
            if fault.text is not None:
                return httpx.Response(fault.status, text=fault.text, headers=dict(fault.headers))
            return _error(fault.status, fault.error_code, fault.message, fault.headers)
        return answer if answer is not None else self._carry_out(call)

    def _carry_out(self, call: DeleteCall) -> httpx.Response:
        experiment = self._experiments.get(call.experiment_id)
        if experiment is None:
            call.deleted = 0
            return httpx.Response(200, json={"traces_deleted": 0})
        traces = experiment.traces
        if call.request_ids is not None:
            wanted = set(call.request_ids)
            selected = sum(1 for trace in traces if trace.trace_id in wanted)
        else:
            assert call.max_timestamp_millis is not None
            older = bisect.bisect_right(
                traces, call.max_timestamp_millis, key=lambda trace: trace.timestamp_ms
            )
            selected = older if call.max_traces is None else min(older, call.max_traces)
        if self.max_sql_variables is not None and selected > self.max_sql_variables:
            self.clock.advance(self.latency.fixed)
            return _error(503, "TEMPORARILY_UNAVAILABLE", TOO_MANY_VARIABLES)
        if call.request_ids is not None:
            experiment.traces = [trace for trace in traces if trace.trace_id not in wanted]
        else:
            del traces[:selected]
        experiment.deleted += selected
        call.deleted = selected
        self.clock.advance(self.latency(selected))
        return httpx.Response(200, json={"traces_deleted": selected})

    def _search(self, body: Mapping[str, Any]) -> httpx.Response:
        self.searches += 1
        try:
            experiment_id = body["locations"][0]["mlflow_experiment"]["experiment_id"]
        except (KeyError, IndexError, TypeError):
            return _invalid("locations must name one MLflow experiment")
        max_results = body.get("max_results", 100)
        if not isinstance(max_results, int) or not 1 <= max_results <= MAX_SEARCH_RESULTS:
            return _invalid(f"Invalid value {max_results} for parameter 'max_results'")
        try:
            keep = _parse_filter(body.get("filter") or "")
        except ValueError as error:
            return _invalid(str(error))
        order_by = body.get("order_by") or ["timestamp_ms DESC"]
        ascending = order_by[0].strip().lower() == "timestamp_ms asc"
        experiment = self._experiments.get(experiment_id)
        traces = [t for t in experiment.traces if keep(t)] if experiment is not None else []
        if not ascending:
            traces.sort(key=lambda trace: (-trace.timestamp_ms, trace.trace_id))
        offset = int(body.get("page_token") or 0)
        page = [(experiment_id, trace) for trace in traces[offset : offset + max_results]]
        if self.search_rule is not None:
            page = self.search_rule(experiment_id, page)
        payload: dict[str, Any] = {
            "traces": [
                {
                    "trace_id": trace.trace_id,
                    "trace_location": {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": located_in},
                    },
                    "request_time": format_request_time(trace.timestamp_ms),
                    "state": trace.state,
                    "tags": self._tags(located_in, trace),
                }
                for located_in, trace in page
            ]
        }
        if offset + max_results < len(traces):
            payload["next_page_token"] = str(offset + max_results)
        return httpx.Response(200, json=payload)

    def _tags(self, experiment_id: str, trace: SimTrace) -> dict[str, str]:
        """The ``mlflow.artifactLocation`` tag MLflow gives every trace it stores."""
        if self.tag_rule is not None:
            tag = self.tag_rule(experiment_id, trace)
            return {} if tag is None else {"mlflow.artifactLocation": tag}
        location = self._artifact_location(experiment_id)
        return {"mlflow.artifactLocation": f"{location}/traces/{trace.trace_id}/artifacts"}

    def _artifact_location(self, experiment_id: str) -> str:
        return self.artifact_locations.get(experiment_id, f"mlflow-artifacts:/{experiment_id}")

    def _search_experiments(self, body: Mapping[str, Any]) -> httpx.Response:
        """``experiments/search``: ``name LIKE``/``=`` and ``tags.`k` = 'v'`` clauses joined
        by AND, ``view_type`` (ACTIVE_ONLY by default), paged by an offset token."""
        try:
            keep = _experiment_filter(body.get("filter") or "")
        except ValueError as error:
            return _invalid(str(error))
        view = body.get("view_type") or "ACTIVE_ONLY"
        stages = {"ACTIVE_ONLY": {"active"}, "DELETED_ONLY": {"deleted"}}.get(
            view, {"active", "deleted"}
        )
        matching = [
            e for e in self._experiments.values() if e.lifecycle_stage in stages and keep(e)
        ]
        max_results = int(body.get("max_results", 1000))
        offset = int(body.get("page_token") or 0)
        page = matching[offset : offset + max_results]
        if self.experiment_search_rule is not None:
            ids = self.experiment_search_rule(
                body.get("filter") or None, view, [e.experiment_id for e in page]
            )
            page = [self._experiments[experiment_id] for experiment_id in ids]
        self.experiment_searches += 1
        payload: dict[str, Any] = {
            "experiments": [e.answer(self._artifact_location(e.experiment_id)) for e in page]
        }
        if offset + max_results < len(matching):
            payload["next_page_token"] = str(offset + max_results)
        return httpx.Response(200, json=payload)

    def _trace_infos(self, trace_ids: list[str]) -> httpx.Response:
        wanted = set(trace_ids)
        found = [
            (experiment.experiment_id, trace.trace_id)
            for experiment in self._experiments.values()
            for trace in experiment.traces
            if trace.trace_id in wanted
        ]
        if self.trace_infos_rule is not None:
            kept = set(self.trace_infos_rule([trace_id for _, trace_id in found]))
            found = [pair for pair in found if pair[1] in kept]
        infos = [
            {
                "trace_id": trace_id,
                "trace_location": {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": experiment_id},
                },
            }
            for experiment_id, trace_id in found
        ]
        return httpx.Response(200, json={"trace_infos": infos} if infos else {})

    def _get_experiment(self, experiment_id: str) -> httpx.Response:
        if not experiment_id.isdigit():
            return _invalid(f"Invalid experiment ID: {experiment_id!r}")
        experiment = self._experiments.get(experiment_id)
        if experiment is None:
            return _error(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"No Experiment with id={experiment_id} exists",
            )
        return _experiment_answer(experiment, self._artifact_location(experiment_id))

    def _get_by_name(self, name: str) -> httpx.Response:
        for experiment in self._experiments.values():
            if experiment.name == name:
                return _experiment_answer(
                    experiment, self._artifact_location(experiment.experiment_id)
                )
        return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name {name}")


def _kind(request: httpx.Request) -> str:
    path = request.url.path
    if path in (_DELETE, _DELETE_V3):
        return "delete"
    if path == _SEARCH:
        return "search"
    if path in (_GET, _GET_BY_NAME):
        return "get"
    return "other"


def _parse_filter(text: str) -> Callable[[SimTrace], bool]:
    """Compile an AND-joined filter over ``timestamp_ms``, ``status`` and ``request_id``."""
    tests: list[Callable[[SimTrace], bool]] = []
    for clause in _AND.split(text.strip()) if text.strip() else []:
        match = _CLAUSE.match(clause)
        if match is None:
            raise ValueError(f"Invalid clause(s) in filter string: {clause!r}")
        name, op, value = match["field"].lower(), match["op"].upper(), match["value"]
        if name == "timestamp_ms":
            tests.append(_compare_timestamp(op, int(value)))
        elif name == "status" and op in ("=", "!="):
            wanted = _quoted(value)[0]
            tests.append(_compare_status(op, wanted))
        elif name == "request_id" and op == "IN":
            tests.append(_among(frozenset(_quoted(value))))
        else:
            raise ValueError(f"Unsupported filter clause: {clause!r}")
    return lambda trace: all(test(trace) for test in tests)


def _compare_timestamp(op: str, bound: int) -> Callable[[SimTrace], bool]:
    compare: dict[str, Callable[[int], bool]] = {
        "<=": lambda ts: ts <= bound,
        ">=": lambda ts: ts >= bound,
        "<": lambda ts: ts < bound,
        ">": lambda ts: ts > bound,
        "=": lambda ts: ts == bound,
        "!=": lambda ts: ts != bound,
    }
    if op not in compare:
        raise ValueError(f"Unsupported timestamp_ms comparator {op!r}")
    check = compare[op]
    return lambda trace: check(trace.timestamp_ms)


def _among(ids: frozenset[str]) -> Callable[[SimTrace], bool]:
    return lambda trace: trace.trace_id in ids


def _compare_status(op: str, wanted: str) -> Callable[[SimTrace], bool]:
    if op == "=":
        return lambda trace: trace.state == wanted
    return lambda trace: trace.state != wanted


def _quoted(text: str) -> list[str]:
    values = [value.replace("''", "'") for value in _QUOTED.findall(text)]
    if not values:
        raise ValueError(f"Expected quoted values, got {text!r}")
    return values


def _json(request: httpx.Request) -> dict[str, Any]:
    payload = json.loads(request.content or b"{}")
    assert isinstance(payload, dict)
    return payload


def _error(
    status: int, error_code: str, message: str, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error_code": error_code, "message": message},
        headers=dict(headers or {}),
    )


def _invalid(message: str) -> httpx.Response:
    return _error(400, "INVALID_PARAMETER_VALUE", message)


def _experiment_answer(experiment: _Experiment, artifact_location: str) -> httpx.Response:
    return httpx.Response(200, json={"experiment": experiment.answer(artifact_location)})


_EXPERIMENT_CLAUSE = re.compile(
    r"\s*(?:name\s+(?P<op>LIKE|=)\s*'(?P<name>[^']*)'|tags\.`?(?P<key>[^`=\s]+)`?\s*=\s*'(?P<value>[^']*)')"
    r"\s*(?:$|AND\b)",
    re.IGNORECASE,
)


def _name_like(pattern: re.Pattern[str], experiment: _Experiment) -> bool:
    return pattern.fullmatch(experiment.name) is not None


def _name_is(name: str, experiment: _Experiment) -> bool:
    return experiment.name == name


def _tag_is(key: str, value: str, experiment: _Experiment) -> bool:
    return experiment.tags.get(key) == value


def _experiment_filter(text: str) -> Callable[[_Experiment], bool]:
    """Compile an experiment search filter (``name LIKE``/``=``, ``tags.k = v``, AND)."""
    tests: list[Callable[[_Experiment], bool]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _EXPERIMENT_CLAUSE.match(text, position)
        if match is None:
            raise ValueError(f"Invalid experiment filter: {text!r}")
        if match["name"] is not None:
            wanted = match["name"]
            if match["op"].upper() == "LIKE":
                regex = "".join(
                    ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in wanted
                )
                tests.append(partial(_name_like, re.compile(regex, re.DOTALL)))
            else:
                tests.append(partial(_name_is, wanted))
        else:
            tests.append(partial(_tag_is, match["key"], match["value"]))
        position = match.end()
    return lambda experiment: all(test(experiment) for test in tests)
