"""The fault proxy's pure parts: `Fault` constructors and the stats helpers, without a server."""

from __future__ import annotations

import pytest

from tests.support.fault_proxy import Fault, FaultKind, ProxyLogEntry, ProxyStats

DELETE_PATH = "/api/2.0/mlflow/traces/delete-traces"


def test_gateway_fault_constructors_check_their_codes() -> None:
    """Cloudflare faults are 520 to 524 only, redirects 3xx only; faults stay hashable keys."""
    for code in (519, 525, 503):
        with pytest.raises(ValueError, match="520 to 524"):
            Fault.cloudflare_after(code)
    with pytest.raises(ValueError, match="3xx"):
        Fault.redirect(code=200)
    assert Fault.redirect("https://idp.example.com/", code=307).headers[0] == (
        "Location",
        "https://idp.example.com/",
    )
    assert all(b"cloudflare" in Fault.cloudflare_after(code).body for code in range(520, 525))
    assert (Fault.status_after(503).forwards, Fault.redirect().forwards) == (True, False)
    weights = {Fault.envoy_503_after(): 0.5, Fault.envoy_503_after(): 0.2, Fault.redirect(): 0.1}
    assert len(weights) == 2  # equal faults are one key


def test_stats_helpers_on_a_synthetic_log() -> None:
    """The rate and concurrency helpers count sliding windows and overlaps correctly."""
    stats = ProxyStats()
    for started, finished in [(0.0, 1.0), (0.5, 0.6), (0.9, 2.0), (2.5, 3.0), (2.6, 2.7)]:
        entry = ProxyLogEntry(started, "POST", DELETE_PATH, FaultKind.PASS, finished=finished)
        stats.log.append(entry)
    assert stats.max_calls_in_window("delete-traces", window=1.0) == 3
    assert stats.calls_per_second(window=0.5) == 4.0  # at most 2 starts in any 0.5 s
    assert stats.peak_concurrency() == 2
    assert stats.requests("search") == []
