"""Fault tests: the engine against a real `mlflow server` behind a fault-injecting proxy.

Every test seeds fresh experiments (old traces at or before the cutoff, new ones after it, and
a bystander experiment no job names), runs the engine through a `FaultProxy`, and checks the
server's truth afterwards, not only the report:

* no trace newer than the cutoff is deleted, no trace of an experiment outside the job is
  deleted, no job deletes more than its cap, and when the faults are transient every old trace
  is gone;
* what the server lost lies in ``[deleted, deleted + ambiguous]`` (exactly ``deleted`` when no
  call was ambiguous).

The faults injected and survived are tallied across this package (``tests.support.fault_tally``)
and printed at its end, with the number of invariant violations; ``test_tally.py``, which sorts
last, checks that there were none.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.support.fault_proxy import FaultProxy
from tests.support.fault_tally import TALLY, fault_proxy
from tests.support.mlflow_server import MlflowServer


@pytest.fixture(scope="package", autouse=True)
def _print_fault_tally(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of this package, write the fault tally to the terminal (past output capture)."""
    yield
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    lines = TALLY.lines()
    disabled = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with disabled:
        if reporter is not None:
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
        else:  # pragma: no cover - the terminal plugin is disabled (-p no:terminal)
            print("\n" + "\n".join(lines))


@pytest_asyncio.fixture
async def proxy(mlflow_server: MlflowServer) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the session's server."""
    async with fault_proxy(mlflow_server.url) as running:
        yield running
