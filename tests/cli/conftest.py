"""The CLI tests' simulated server: three experiments behind a recording transport."""

from __future__ import annotations

import pytest

from tests.support.cli_harness import DAY_MS, NOW_MS, Recorder
from tests.support.simulated_server import sim_traces


@pytest.fixture
def recorder() -> Recorder:
    """A simulated server with three experiments: 'alpha' (1), 'beta' (2), 'gamma' (3).

    Each has 100 traces 20 days old (every 4th an ERROR) and 10 traces 1 day old.
    """
    rec = Recorder()
    for tag, name in enumerate(("alpha", "beta", "gamma"), start=1):
        old = sim_traces(100, start_ms=NOW_MS - 20 * DAY_MS, error_every=4, tag=tag)
        new = sim_traces(10, start_ms=NOW_MS - DAY_MS, tag=tag + 10)
        rec.server.add_experiment(name, [*old, *new])
    return rec
