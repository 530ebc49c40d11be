"""The fault suite's tally: faults injected and survived, and invariant violations.

One `TALLY` for the whole suite (``tests/integration/faults/``): every proxy made with
`fault_proxy` adds what it injected when it closes, a test adds its proxy's faults as survived
once its checks passed, and `violation` counts a failed invariant. The suite's conftest prints
the table at its end; its last test checks that no invariant was violated.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.support.fault_proxy import FaultKind, FaultProxy


@dataclass
class FaultTally:
    """Faults injected and survived across the fault suite's tests, and invariant violations."""

    injected: Counter[str] = field(default_factory=Counter)
    survived: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def add_injected(self, proxy: FaultProxy) -> None:
        """Count what a proxy injected (called once per proxy, when it closes)."""
        self.injected.update(fault_kinds(proxy))

    def add_survived(self, proxy: FaultProxy) -> None:
        """Count a proxy's faults as survived (called once the test's checks all passed)."""
        self.survived.update(fault_kinds(proxy))

    def lines(self) -> list[str]:
        """The summary table."""
        rows = [f"{'fault':<24}{'injected':>10}{'survived':>10}"]
        for kind in sorted(self.injected):
            rows.append(f"{kind:<24}{self.injected[kind]:>10}{self.survived[kind]:>10}")
        total_injected = sum(self.injected.values())
        total_survived = sum(self.survived.values())
        rows.append(f"{'total':<24}{total_injected:>10}{total_survived:>10}")
        rows.append(f"invariant violations: {len(self.violations)}")
        rows += [f"  - {violation}" for violation in self.violations]
        return ["fault suite (real mlflow server behind FaultProxy):", *rows]


TALLY = FaultTally()


def fault_kinds(proxy: FaultProxy) -> Counter[str]:
    """The proxy's injected faults by kind, those with a status of their own split by it.

    A `status` fault shows as `http 503`; the other kinds keep their name, e.g.
    `status_after 503` (the server did the work) or `redirect 302`.
    """
    by_status = proxy.stats.injected_kind_statuses
    split = {kind for kind, _ in by_status}
    kinds: Counter[str] = Counter(
        {kind: count for kind, count in proxy.stats.injected.items() if kind not in split}
    )
    for (kind, status), count in by_status.items():
        kinds[f"http {status}" if kind == FaultKind.STATUS else f"{kind} {status}"] += count
    return kinds


def violation(condition: bool, message: str) -> None:
    """Assert an invariant; a failure is also counted in the suite's tally."""
    if not condition:
        TALLY.violations.append(message)
    assert condition, message


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy whose injected faults go into the suite's tally."""
    async with FaultProxy(upstream=upstream) as proxy:
        try:
            yield proxy
        finally:
            TALLY.add_injected(proxy)
    assert proxy.stats.errors == []
