"""The fault proxy's pure side: which fault each request gets, and the record of what it did.

`FaultScripts` holds a proxy's scripts (`FaultProxy` is one) and `FaultRule` hands out one
script's faults in order, or draws them from seeded weights; `ProxyLogEntry` and `ProxyStats`
are what `FaultProxy.stats` holds. Nothing here does I/O: `tests.support.fault_proxy` applies
the faults on the wire. What a fault is (`Fault`, `FaultKind`) is `tests.support.faults`.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Mapping, Sequence

from tests.support.faults import Fault, FaultKind

__all__ = ["FaultRule", "FaultScripts", "ProxyLogEntry", "ProxyStats"]


@dataclasses.dataclass
class ProxyLogEntry:
    """What happened to one request; times are `time.monotonic()` seconds.

    Attributes:
        started: When the proxy had read the whole request.
        method: The request method.
        path: The request target (path and query).
        fault: What the proxy did.
        forwarded: Whether the request was sent upstream.
        upstream_status: The upstream status, once its response was read.
        upstream_error: Why the upstream call failed, if it did.
        response_status: The status sent to the client (None when reset or gone).
        client_disconnected: The client went away before the response was sent.
        finished: When the proxy was done with the request (None while in flight).
    """

    started: float
    method: str
    path: str
    fault: FaultKind
    forwarded: bool = False
    upstream_status: int | None = None
    upstream_error: str | None = None
    response_status: int | None = None
    client_disconnected: bool = False
    finished: float | None = None


@dataclasses.dataclass
class ProxyStats:
    """Counters and the per-request log of one proxy.

    Attributes:
        injected: Fault kind (e.g. "status", "reset_after") to how many requests got it.
        injected_statuses: Status code to how many faults answered it with their own status
            (`status`, `status_after` and `redirect`).
        injected_kind_statuses: The same, split by kind: `("status_after", 503)` to a count.
        forwarded: How many requests were sent upstream.
        connections: How many client connections the proxy accepted.
        log: One entry per request, in arrival order.
        errors: Unexpected errors inside the proxy; a test may assert this stays empty.
    """

    injected: Counter[str] = dataclasses.field(default_factory=Counter)
    injected_statuses: Counter[int] = dataclasses.field(default_factory=Counter)
    injected_kind_statuses: Counter[tuple[str, int]] = dataclasses.field(default_factory=Counter)
    forwarded: int = 0
    connections: int = 0
    log: list[ProxyLogEntry] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def requests(self, path_contains: str = "") -> list[ProxyLogEntry]:
        """Return the log entries whose path contains `path_contains`."""
        return [entry for entry in self.log if path_contains in entry.path]

    def max_calls_in_window(self, path_contains: str = "", window: float = 1.0) -> int:
        """Return the most matching requests that started within any `window` seconds."""
        starts = sorted(entry.started for entry in self.requests(path_contains))
        best, first = 0, 0
        for last, started in enumerate(starts):
            while started - starts[first] > window:
                first += 1
            best = max(best, last - first + 1)
        return best

    def calls_per_second(self, path_contains: str = "", window: float = 1.0) -> float:
        """Return the peak rate of matching requests, measured over a sliding `window`."""
        return self.max_calls_in_window(path_contains, window) / window

    def peak_concurrency(self, path_contains: str = "") -> int:
        """Return the most matching requests the proxy held in flight at the same time."""
        events: list[tuple[float, int]] = []
        for entry in self.requests(path_contains):
            events.append((entry.started, 1))
            events.append((entry.finished if entry.finished is not None else float("inf"), -1))
        in_flight = peak = 0
        for _, step in sorted(events):  # at equal times, -1 sorts first: end before start
            in_flight += step
            peak = max(peak, in_flight)
        return peak


@dataclasses.dataclass
class FaultRule:
    """Which requests a script applies to, and the faults still to hand out."""

    path_contains: str
    method: str | None
    script: list[Fault] = dataclasses.field(default_factory=list)
    used_of_first: int = 0
    generator: random.Random | None = None
    weights: tuple[tuple[Fault, float], ...] = ()
    random_budget: int | None = None

    def matches(self, method: str, target: str) -> bool:
        return self.path_contains in target and self.method in (None, method.upper())

    def exhausted(self) -> bool:
        if self.generator is None:
            return not self.script
        return self.random_budget is not None and self.random_budget <= 0

    def take(self) -> Fault:
        """Return the fault for the next matching request; call only when not exhausted."""
        if self.generator is not None:
            if self.random_budget is not None:
                self.random_budget -= 1
            draw = self.generator.random()
            for fault, weight in self.weights:
                if draw < weight:
                    return fault
                draw -= weight
            return Fault.PASS
        fault = self.script[0]
        self.used_of_first += 1
        if self.used_of_first >= fault.times:
            self.script.pop(0)
            self.used_of_first = 0
        return fault


class FaultScripts:
    """The scripts of one proxy, and which fault each request gets (see `FaultProxy`)."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def script(
        self, *, path_contains: str = "", faults: Sequence[Fault], method: str | None = None
    ) -> None:
        """Apply `faults`, in order, to the next requests whose target contains `path_contains`.

        Replaces any earlier script for the same `path_contains` and `method`. Rules are tried
        in the order they were first set; the first matching one with faults left wins.
        """
        self._set_rule(FaultRule(path_contains, method and method.upper(), script=list(faults)))

    def script_random(
        self,
        *,
        path_contains: str = "",
        seed: int,
        weights: Mapping[Fault, float],
        method: str | None = None,
        max_requests: int | None = None,
    ) -> None:
        """Give each matching request a fault drawn with probability `weights[fault]`.

        The remaining probability passes through. The same seed and the same request order
        give the same faults. `Fault.times` is ignored here. After `max_requests` matching
        requests (if given) the rule is exhausted and requests pass through.
        """
        if any(weight < 0 for weight in weights.values()) or sum(weights.values()) > 1 + 1e-9:
            raise ValueError("weights must be non-negative and sum to at most 1")
        self._set_rule(
            FaultRule(
                path_contains,
                method and method.upper(),
                generator=random.Random(seed),
                weights=tuple(weights.items()),
                random_budget=max_requests,
            )
        )

    def clear_scripts(self) -> None:
        """Drop every script: all requests pass through from now on."""
        self._rules.clear()

    @property
    def pending_faults(self) -> int:
        """How many scripted (non-random) faults have not been handed out yet."""
        return sum(
            sum(fault.times for fault in rule.script) - rule.used_of_first for rule in self._rules
        )

    def _set_rule(self, rule: FaultRule) -> None:
        for index, existing in enumerate(self._rules):
            if (existing.path_contains, existing.method) == (rule.path_contains, rule.method):
                self._rules[index] = rule
                return
        self._rules.append(rule)

    def _next_fault(self, method: str, target: str) -> Fault:
        for rule in self._rules:
            if rule.matches(method, target) and not rule.exhausted():
                return rule.take()
        return Fault.PASS
